//! Named entities by simple rules, for [`chat::AnalysisTask::Entities`].
//!
//! - Names: runs of capitalized words (joined by spaces, `&`, a hyphen, or a connector such as
//!   `of` between two of them: `University of Tehran`), leading function words dropped (`The`,
//!   `In`). A run at the very start of a sentence is a name only when it also occurs inside
//!   one, or, for a run of several words, twice (its capital may be the sentence's); a run of words that the text also writes in lower
//!   case (`Payment Terms`) is a heading, not a name, unless a rule below types it.
//!   - `organization`: it ends with a company or institution word (`Inc`, `Ltd`, `GmbH`,
//!     `Corp`, `University`, `Bank` …), or starts with one of the latter (`Bank of …`);
//!   - `person`: it follows a title (`Mr`, `Ms`, `Dr`, `Prof` …), which is left out;
//!   - `place`: it follows `in`, `at`, `from` or `near`, or ends with `Street`, `Road`,
//!     `River` …;
//!   - `other` otherwise.
//! - `date`: a month name (English, or Persian) with a day and/or a year (`12 March 2024`,
//!   `March 12, 2024`, `۳۱ اسفند ۱۴۰۵`), an ISO date (`2024-03-12`) or a numeric one
//!   (`12/03/2024`, `31.03.2027`).
//! - `number`: an amount of money or a percentage (`$1,200`, `1,200 EUR`, `5%`, `20 درصد`).
//!
//! Entities are counted case-insensitively, typed by their most specific reading, and listed
//! most frequent first (first seen on a tie).

use std::collections::{HashMap, HashSet};

use super::terms::{fold, words};
use super::text::Corpus;

/// An entity's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    /// A person.
    Person,
    /// A company or an institution.
    Organization,
    /// A place.
    Place,
    /// A date.
    Date,
    /// An amount or a percentage.
    Number,
    /// Another name.
    Other,
}

impl Kind {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Organization => "organization",
            Self::Place => "place",
            Self::Date => "date",
            Self::Number => "number",
            Self::Other => "other",
        }
    }
}

/// An entity found in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entity {
    /// As written (its first occurrence).
    pub text: String,
    /// Its kind.
    pub kind: Kind,
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];
const PERSIAN_MONTHS: &[&str] = &[
    "فروردین",
    "اردیبهشت",
    "خرداد",
    "تیر",
    "مرداد",
    "شهریور",
    "مهر",
    "آبان",
    "آذر",
    "دی",
    "بهمن",
    "اسفند",
];
const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const ORG_SUFFIXES: &[&str] = &[
    "ag",
    "agency",
    "association",
    "bank",
    "co",
    "college",
    "company",
    "corp",
    "corporation",
    "council",
    "foundation",
    "gmbh",
    "group",
    "holdings",
    "hospital",
    "inc",
    "institute",
    "llc",
    "llp",
    "ltd",
    "ministry",
    "plc",
    "sa",
    "school",
    "university",
];
const ORG_PREFIXES: &[&str] = &["bank", "department", "ministry", "university"];
const PLACE_SUFFIXES: &[&str] = &[
    "avenue",
    "bay",
    "boulevard",
    "city",
    "county",
    "island",
    "lake",
    "lane",
    "mountains",
    "province",
    "river",
    "road",
    "square",
    "street",
    "valley",
];
const TITLES: &[&str] = &["dr", "madam", "miss", "mr", "mrs", "ms", "prof", "sir"];
const PLACE_WORDS: &[&str] = &["at", "from", "in", "near"];
const CONNECTORS: &[&str] = &["de", "del", "der", "du", "la", "of", "van", "von"];
/// Capitalized words that start sentences without naming anything.
const STARTERS: &[&str] = &[
    "also",
    "although",
    "however",
    "meanwhile",
    "moreover",
    "please",
    "therefore",
    "yes",
];
const CURRENCY_WORDS: &[&str] = &[
    "dollars",
    "eur",
    "euro",
    "euros",
    "gbp",
    "irr",
    "irt",
    "percent",
    "pounds",
    "rials",
    "tomans",
    "usd",
    "درصد",
    "دلار",
    "ریال",
    "تومان",
    "یورو",
];
const MULTIPLIERS: &[&str] = &[
    "billion",
    "million",
    "thousand",
    "هزار",
    "میلیارد",
    "میلیون",
];
const CURRENCY_SYMBOLS: &[char] = &['$', '€', '£', '¥', '₹', '﷼'];

/// Written in capitals only.
fn is_shouting(text: &str) -> bool {
    !text.chars().any(char::is_lowercase)
}

fn is_capitalized(word: &str) -> bool {
    word.chars().count() >= 2 && word.chars().next().is_some_and(char::is_uppercase)
}

fn is_month(word: &str) -> bool {
    let lower = word.to_lowercase();
    (is_capitalized(word) && MONTHS.contains(&lower.as_str())) || PERSIAN_MONTHS.contains(&word)
}

fn lower_in(word: &str, list: &[&str]) -> bool {
    list.contains(&word.to_lowercase().as_str())
}

/// A day (1 to 31, maybe `12th`) or a year (four digits), in any script's digits.
fn day_or_year(word: &str) -> Option<bool> {
    let folded = fold(word);
    let digits: String = folded.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &folded[digits.len()..];
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    match (digits.len(), suffix.is_empty()) {
        (4, true) => Some(false),
        (1 | 2, _) => digits
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=31).contains(d))
            .map(|_| true),
        _ => None,
    }
}

#[derive(Debug)]
struct Found {
    text: String,
    kind: Kind,
    /// The name starts its sentence (only names can).
    at_start: bool,
    /// A name whose every word the text also writes in lower case.
    common: bool,
}

/// The kinds of the entities of one sentence (names typed as if seen once, at their place).
pub(super) fn kinds_in(sentence: &str) -> Vec<Kind> {
    let mut found = Vec::new();
    dates(sentence, &mut found);
    amounts(sentence, &mut found);
    names(sentence, &HashSet::new(), &mut found);
    found
        .into_iter()
        .filter(|f| !f.at_start || f.kind != Kind::Other)
        .map(|f| f.kind)
        .collect()
}

/// The entities of the corpus, most frequent first, at most `limit`.
pub(super) fn entities(corpus: &Corpus<'_>, limit: usize) -> Vec<Entity> {
    let mut lower_words: HashSet<String> = HashSet::new();
    for s in &corpus.sentences {
        for (_, w) in words(s.text) {
            if w.chars().next().is_some_and(char::is_lowercase) {
                lower_words.insert(w.to_owned());
            }
        }
    }
    let mut found: Vec<Found> = Vec::new();
    for s in &corpus.sentences {
        dates(s.text, &mut found);
        amounts(s.text, &mut found);
        names(s.text, &lower_words, &mut found);
    }

    #[derive(Debug)]
    struct Tally {
        text: String,
        kind: Kind,
        count: usize,
        first: usize,
        named_inside: bool,
        common: bool,
    }
    let mut tallies: Vec<Tally> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (order, f) in found.into_iter().enumerate() {
        let key = f.text.to_lowercase();
        let i = *by_key.entry(key).or_insert_with(|| {
            tallies.push(Tally {
                text: f.text.clone(),
                kind: f.kind,
                count: 0,
                first: order,
                named_inside: false,
                common: true,
            });
            tallies.len() - 1
        });
        let t = &mut tallies[i];
        if is_shouting(&t.text) && !is_shouting(&f.text) {
            t.text.clone_from(&f.text); // `Residential Lease` rather than `RESIDENTIAL LEASE`
        }
        t.count += 1;
        t.named_inside |= !f.at_start;
        t.common &= f.common;
        // The most specific reading wins (`other` is the least).
        if f.kind < t.kind {
            t.kind = f.kind;
        }
    }
    tallies.retain(|t| {
        let typed = matches!(
            t.kind,
            Kind::Person | Kind::Organization | Kind::Date | Kind::Number
        );
        let multiword = t.text.split_whitespace().nth(1).is_some();
        typed || ((t.named_inside || (multiword && t.count >= 2)) && !t.common)
    });
    tallies.sort_by(|a, b| b.count.cmp(&a.count).then(a.first.cmp(&b.first)));
    tallies
        .into_iter()
        .take(limit)
        .map(|t| Entity {
            text: t.text,
            kind: t.kind,
        })
        .collect()
}

/// Runs of capitalized words.
fn names(text: &str, lower_words: &HashSet<String>, found: &mut Vec<Found>) {
    let ws: Vec<(usize, &str)> = words(text).collect();
    let end_of = |k: usize| ws[k].0 + ws[k].1.len();
    let gap = |k: usize| &text[end_of(k - 1)..ws[k].0];
    let joins = |k: usize| {
        let g = gap(k);
        let title = lower_in(ws[k - 1].1, TITLES);
        matches!(g, " " | "-" | " & ")
            || (title && matches!(g, ". " | "."))
            || (g == ", " && lower_in(ws[k].1, &["inc", "ltd", "llc", "plc", "gmbh"]))
    };
    let name_word = |k: usize| {
        is_capitalized(ws[k].1)
            && !is_month(ws[k].1)
            && !lower_in(ws[k].1, WEEKDAYS)
            && !lower_in(ws[k].1, CURRENCY_WORDS)
    };
    let mut i = 0;
    while i < ws.len() {
        if !name_word(i) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < ws.len() {
            if name_word(j) && joins(j) {
                j += 1;
            } else if CONNECTORS.contains(&ws[j].1)
                && j + 1 < ws.len()
                && name_word(j + 1)
                && gap(j) == " "
                && gap(j + 1) == " "
            {
                j += 2;
            } else {
                break;
            }
        }
        let run_end = j;
        // Leading function words: `The Acme Corp`, `In Tehran`.
        let mut a = i;
        let mut place = i > 0 && lower_in(ws[i - 1].1, PLACE_WORDS) && gap(i) == " ";
        while a < run_end {
            let lower = fold(ws[a].1);
            let title = TITLES.contains(&lower.as_str());
            if !title
                && (super::terms::term(ws[a].1).is_none() || STARTERS.contains(&lower.as_str()))
            {
                place = PLACE_WORDS.contains(&lower.as_str());
                a += 1;
            } else {
                break;
            }
        }
        let mut kind = Kind::Other;
        if a < run_end && lower_in(ws[a].1, TITLES) {
            a += 1;
            kind = Kind::Person;
        }
        if a < run_end {
            let last = ws[run_end - 1].1;
            let several = run_end - a >= 2;
            if several && (lower_in(last, ORG_SUFFIXES) || lower_in(ws[a].1, ORG_PREFIXES)) {
                kind = Kind::Organization;
            } else if kind == Kind::Other && (place || (several && lower_in(last, PLACE_SUFFIXES)))
            {
                kind = Kind::Place;
            }
            let words_of_run = &ws[a..run_end];
            let common = words_of_run
                .iter()
                .all(|(_, w)| CONNECTORS.contains(w) || lower_words.contains(&w.to_lowercase()));
            found.push(Found {
                text: text[ws[a].0..end_of(run_end - 1)].to_owned(),
                kind,
                at_start: a == 0,
                common,
            });
        }
        i = run_end;
    }
}

/// Dates written with a month name, and numeric dates.
fn dates(text: &str, found: &mut Vec<Found>) {
    let ws: Vec<(usize, &str)> = words(text).collect();
    let end_of = |k: usize| ws[k].0 + ws[k].1.len();
    let gap = |k: usize| &text[end_of(k - 1)..ws[k].0];
    let mut k = 0;
    while k < ws.len() {
        if !is_month(ws[k].1) {
            k += 1;
            continue;
        }
        let mut start = k;
        if k >= 1 && day_or_year(ws[k - 1].1) == Some(true) && gap(k).trim().is_empty() {
            start = k - 1;
        } else if k >= 2
            && ws[k - 1].1 == "of"
            && day_or_year(ws[k - 2].1) == Some(true)
            && gap(k) == " "
        {
            start = k - 2;
        }
        let mut end = k;
        let next_ok = |n: usize| n < ws.len() && matches!(gap(n).trim(), "" | ",");
        if next_ok(k + 1) {
            match day_or_year(ws[k + 1].1) {
                Some(false) => end = k + 1,
                Some(true) if start == k => {
                    end = k + 1;
                    if next_ok(k + 2) && day_or_year(ws[k + 2].1) == Some(false) {
                        end = k + 2;
                    }
                }
                _ => {}
            }
        }
        if start < k || end > k {
            found.push(Found {
                text: text[ws[start].0..end_of(end)].to_owned(),
                kind: Kind::Date,
                at_start: false,
                common: false,
            });
        }
        k = end + 1;
    }
    numeric_dates(text, found);
}

/// `2024-03-12`, `12/03/2024`, `31.03.2027` (ASCII digits).
fn numeric_dates(text: &str, found: &mut Vec<Found>) {
    let b = text.as_bytes();
    let digits_at = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let d1 = digits_at(i);
        let mut matched = None;
        let sep_at = i + d1;
        if sep_at < b.len() && matches!(b[sep_at], b'-' | b'/' | b'.') {
            let sep = b[sep_at];
            let d2 = digits_at(sep_at + 1);
            let sep2 = sep_at + 1 + d2;
            if d2 > 0 && sep2 < b.len() && b[sep2] == sep {
                let d3 = digits_at(sep2 + 1);
                let end = sep2 + 1 + d3;
                let iso = sep == b'-' && d1 == 4 && (1..=2).contains(&d2) && (1..=2).contains(&d3);
                let dmy = sep != b'-'
                    && (1..=2).contains(&d1)
                    && (1..=2).contains(&d2)
                    && (d3 == 2 || d3 == 4);
                if iso || dmy {
                    matched = Some(end);
                }
            }
        }
        match matched {
            Some(end) => {
                found.push(Found {
                    text: text[i..end].to_owned(),
                    kind: Kind::Date,
                    at_start: false,
                    common: false,
                });
                i = end;
            }
            None => i += d1,
        }
    }
}

/// The length in bytes of the currency (or percent) word that starts `text`, maybe after a
/// multiplier (`EUR`, `million tomans`, `میلیون تومان`).
fn currency_after(text: &str) -> Option<usize> {
    let mut ws = words(text);
    let (at, w) = ws.next().filter(|(at, _)| *at == 0)?;
    let folded = fold(w);
    if CURRENCY_WORDS.contains(&folded.as_str()) {
        return Some(at + w.len());
    }
    if !MULTIPLIERS.contains(&folded.as_str()) {
        return None;
    }
    let (next_at, next) = ws.next()?;
    (next_at == w.len() + 1
        && text[w.len()..next_at] == *" "
        && CURRENCY_WORDS.contains(&fold(next).as_str()))
    .then_some(next_at + next.len())
}

/// Amounts of money and percentages.
fn amounts(text: &str, found: &mut Vec<Found>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |j: usize| chars.get(j).map_or(text.len(), |(b, _)| *b);
    let is_digit = |c: char| c.is_numeric();
    let mut i = 0;
    while i < chars.len() {
        if !is_digit(chars[i].1)
            || (i > 0 && (is_digit(chars[i - 1].1) || chars[i - 1].1.is_alphabetic()))
        {
            i += 1;
            continue;
        }
        // The number: digits with inner separators.
        let mut j = i + 1;
        while j < chars.len() {
            if is_digit(chars[j].1) {
                j += 1;
            } else if matches!(chars[j].1, ',' | '.' | '٬' | '٫')
                && chars.get(j + 1).is_some_and(|(_, c)| is_digit(*c))
            {
                j += 2;
            } else {
                break;
            }
        }
        let mut start = byte_at(i);
        let mut end = byte_at(j);
        let mut amount = false;
        // A currency symbol before (maybe with a space).
        let before = text[..start].trim_end_matches(' ');
        if let Some(c) = before.chars().next_back()
            && CURRENCY_SYMBOLS.contains(&c)
            && start - before.len() <= 1
        {
            start = before.len() - c.len_utf8();
            amount = true;
        } else if let Some((at, w)) = words(before).last()
            && at + w.len() == before.len()
            && start - before.len() == 1
            && ["usd", "eur", "gbp"].contains(&w.to_lowercase().as_str())
        {
            start = at;
            amount = true;
        }
        // A percent sign or a currency word after.
        let after = &text[end..];
        let spaced = after.trim_start_matches(' ');
        let space = after.len() - spaced.len();
        if space <= 1 && (spaced.starts_with('%') || spaced.starts_with('٪')) {
            end += space + spaced.chars().next().map_or(0, char::len_utf8);
            amount = true;
        } else if space == 1
            && let Some(unit) = currency_after(spaced)
        {
            end += space + unit;
            amount = true;
        } else if space <= 1
            && let Some(c) = spaced.chars().next()
            && CURRENCY_SYMBOLS.contains(&c)
        {
            end += space + c.len_utf8();
            amount = true;
        }
        if amount {
            found.push(Found {
                text: text[start..end].to_owned(),
                kind: Kind::Number,
                at_start: false,
                common: false,
            });
        }
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::source;

    fn find(text: &str) -> Vec<(String, &'static str)> {
        let sources = [source("S1", text)];
        let corpus = Corpus::new(&sources);
        entities(&corpus, 20)
            .into_iter()
            .map(|e| (e.text, e.kind.as_str()))
            .collect()
    }

    fn has(found: &[(String, &str)], text: &str, kind: &str) -> bool {
        found.iter().any(|(t, k)| t == text && *k == kind)
    }

    #[test]
    fn entities_by_rules() {
        let found = find(
            "This agreement between Acme Corp and Dr. Sara Karimi was signed on 12 March 2024 in Tehran. \
             The deposit of $1,200 is paid to Acme Corp by the University of Tehran before 2024-04-01. \
             Payment Terms\n\
             Late payment terms add 5% per month. Globex was not involved.",
        );
        assert!(has(&found, "Acme Corp", "organization"), "{found:?}");
        assert!(has(&found, "Sara Karimi", "person"), "{found:?}");
        assert!(has(&found, "12 March 2024", "date"), "{found:?}");
        assert!(has(&found, "2024-04-01", "date"), "{found:?}");
        assert!(has(&found, "Tehran", "place"), "{found:?}");
        assert!(
            has(&found, "University of Tehran", "organization"),
            "{found:?}"
        );
        assert!(has(&found, "$1,200", "number"), "{found:?}");
        assert!(has(&found, "5%", "number"), "{found:?}");
        // Sentence starts and headings are no names; Acme Corp, found twice, comes first.
        assert!(
            !found
                .iter()
                .any(|(t, _)| t == "This" || t == "Payment Terms" || t == "Late")
        );
        assert!(!found.iter().any(|(t, _)| t == "Globex"), "{found:?}");
        assert_eq!(found[0].0, "Acme Corp");
    }

    #[test]
    fn dates_in_many_forms() {
        let found = find(
            "It ends on March 31, 2027 or on the 1st of April. Paid in May 2024 and on 31.03.2027 and 12/03/24. \
             قرارداد در ۳۱ اسفند ۱۴۰۵ تمام می‌شود.",
        );
        for d in [
            "March 31, 2027",
            "1st of April",
            "May 2024",
            "31.03.2027",
            "12/03/24",
            "۳۱ اسفند ۱۴۰۵",
        ] {
            assert!(has(&found, d, "date"), "{d}: {found:?}");
        }
        // Versions, decimals and bare months are no dates.
        assert!(
            find("Version 1.2.3 shipped in March at 3.5 percent.")
                .iter()
                .all(|(_, k)| *k != "date")
        );
    }

    #[test]
    fn amounts_with_currencies() {
        let found = find(
            "Rent is 1,200 EUR or USD 1,300, a fee of € 50 and ۲۰ درصد more, 12 apples, \
             3 million dollars, ۳۰ میلیون تومان.",
        );
        for a in [
            "1,200 EUR",
            "USD 1,300",
            "€ 50",
            "۲۰ درصد",
            "3 million dollars",
            "۳۰ میلیون تومان",
        ] {
            assert!(has(&found, a, "number"), "{a}: {found:?}");
        }
        assert!(!found.iter().any(|(t, _)| t.contains("12")), "{found:?}");
    }
}
