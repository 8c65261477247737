//! Words and terms, what every task of the answerer compares: a word is a run of Unicode
//! alphanumerics (as in the embedder's features); a term is a word lower-cased, with
//! Arabic-script letters and digits folded (`ي` → `ی`, `۲` → `2`, harakat dropped), stemmed
//! lightly when it is ASCII (`leases`, `leased`, `leasing` → `leas`); stop words of English,
//! Persian and a few other languages are no term. Sentences are `text.rs`'s.

use crate::features::STOP_WORDS;

/// Function words skipped beside the embedder's [`STOP_WORDS`]. Sorted (binary search).
const EXTRA_STOP_WORDS: &[&str] = &[
    "also",
    "although",
    "among",
    "another",
    "anyone",
    "anything",
    "aren",
    "around",
    "become",
    "becomes",
    "besides",
    "cannot",
    "couldn",
    "didn",
    "doesn",
    "don",
    "dr",
    "e",
    "either",
    "else",
    "etc",
    "even",
    "ever",
    "every",
    "g",
    "get",
    "gets",
    "got",
    "hadn",
    "hasn",
    "haven",
    "however",
    "ie",
    "isn",
    "let",
    "may",
    "might",
    "mr",
    "mrs",
    "ms",
    "much",
    "must",
    "neither",
    "never",
    "often",
    "onto",
    "per",
    "please",
    "prof",
    "quite",
    "rather",
    "really",
    "shall",
    "shouldn",
    "since",
    "still",
    "thus",
    "upon",
    "us",
    "via",
    "wasn",
    "weren",
    "whether",
    "whose",
    "within",
    "without",
    "won",
    "wouldn",
    "yet",
    "آیا",
    "اما",
    "اند",
    "او",
    "اگر",
    "ای",
    "ایشان",
    "ایم",
    "باشد",
    "باشند",
    "باید",
    "بود",
    "بودن",
    "بودند",
    "بوده",
    "بی",
    "تو",
    "تواند",
    "توانم",
    "توانند",
    "توانید",
    "خود",
    "خیلی",
    "دارد",
    "دارند",
    "داشت",
    "داشته",
    "درباره",
    "دهد",
    "دهند",
    "دیگر",
    "روی",
    "زمانی",
    "زیرا",
    "سپس",
    "شان",
    "شدن",
    "شده",
    "شما",
    "شوند",
    "صورت",
    "ما",
    "مثل",
    "من",
    "نه",
    "نیست",
    "هر",
    "هست",
    "هستند",
    "همه",
    "همین",
    "هیچ",
    "وقتی",
    "وی",
    "پس",
    "پیش",
    "چرا",
    "چطور",
    "چند",
    "چه",
    "چون",
    "چگونه",
    "چی",
    "کجا",
    "کردن",
    "کرده",
    "کند",
    "کنم",
    "کنند",
    "کنید",
    "کنیم",
    "کی",
    "گردد",
    "یا",
];

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok() || EXTRA_STOP_WORDS.binary_search(&word).is_ok()
}

/// The words of `text` (runs of Unicode alphanumerics) with their byte offsets.
pub(super) fn words(text: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let start = loop {
            let (i, c) = chars.next()?;
            if c.is_alphanumeric() {
                break i;
            }
        };
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_alphanumeric() {
                chars.next();
            } else {
                end = i;
                break;
            }
        }
        Some((start, &text[start..end]))
    })
}

/// `word` lower-cased, with Arabic-script letters and digits folded to the Persian and ASCII
/// forms and harakat and tatweel dropped.
pub(super) fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            'ي' | 'ى' => out.push('ی'),
            'ك' => out.push('ک'),
            '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{0640}' => {}
            '۰'..='۹' => out.push(ascii_digit(c as u32 - 0x06F0)),
            '٠'..='٩' => out.push(ascii_digit(c as u32 - 0x0660)),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

fn ascii_digit(d: u32) -> char {
    char::from_digit(d, 10).unwrap_or('0')
}

/// The term `word` stands for, or `None` for a stop word or a lone letter.
pub(super) fn term(word: &str) -> Option<String> {
    let folded = fold(word);
    let mut chars = folded.chars();
    let first = chars.next()?;
    if (chars.next().is_none() && !first.is_numeric()) || is_stop_word(&folded) {
        return None;
    }
    Some(stem(folded))
}

/// A light stemmer: plural and verb endings of ASCII words (`leases` `leased` `leasing` →
/// `leas`, `companies` → `company`, `running` → `run`), and a plural `ها` glued to a Persian
/// word. Other words are kept as they are.
pub(super) fn stem(word: String) -> String {
    if !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return stem_persian(word);
    }
    let mut w = word;
    if w.len() <= 3 {
        return w;
    }
    if w.ends_with("ies") && w.len() > 4 {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with("es")
        && w.len() > 4
        && ["s", "x", "z", "ch", "sh"]
            .iter()
            .any(|e| w[..w.len() - 2].ends_with(e))
    {
        w.truncate(w.len() - 2);
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.truncate(w.len() - 1);
    }
    let mut verb = false;
    if w.ends_with("ied") && w.len() > 4 {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with("ing") && w.len() >= 6 {
        w.truncate(w.len() - 3);
        undouble(&mut w);
        verb = true;
    } else if w.ends_with("ed") && w.len() >= 5 {
        w.truncate(w.len() - 2);
        undouble(&mut w);
        verb = true;
    }
    // A few derivations: `termination` `terminate` `terminated` → `termin`, `payment` →
    // `pay`, `monthly` → `month`.
    if w.ends_with("ation") && w.len() >= 9 {
        w.truncate(w.len() - 5);
    } else if w.ends_with("ment") && w.len() >= 7 {
        w.truncate(w.len() - 4);
    } else if w.ends_with("ly") && w.len() >= 7 {
        w.truncate(w.len() - 2);
    }
    if (w.ends_with("ate") && w.len() >= 8) || (verb && w.ends_with("at") && w.len() >= 7) {
        w.truncate(w.len() - if w.ends_with('e') { 3 } else { 2 });
    }
    if !verb && w.ends_with('e') && w.len() > 3 {
        w.truncate(w.len() - 1);
    }
    w
}

/// `runn` → `run` (not `fall`, `miss`, `buzz`).
fn undouble(w: &mut String) {
    let b = w.as_bytes();
    if let [.., x, y] = b
        && x == y
        && !matches!(x, b'l' | b's' | b'z' | b'a' | b'e' | b'i' | b'o' | b'u')
    {
        w.pop();
    }
}

fn stem_persian(word: String) -> String {
    let count = word.chars().count();
    for suffix in ["های", "ها"] {
        if count >= 5
            && let Some(rest) = word.strip_suffix(suffix)
        {
            return rest.to_owned();
        }
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_word_lists_are_sorted_and_apart() {
        let list = EXTRA_STOP_WORDS;
        assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        for w in EXTRA_STOP_WORDS {
            assert!(STOP_WORDS.binary_search(w).is_err(), "{w} is in both lists");
        }
    }

    #[test]
    fn terms_are_folded_stemmed_and_skip_stop_words() {
        for w in ["leases", "leased", "leasing", "Lease"] {
            assert_eq!(term(w).as_deref(), Some("leas"), "{w}");
        }
        assert_eq!(term("companies").as_deref(), Some("company"));
        assert_eq!(term("running").as_deref(), Some("run"));
        assert_eq!(term("boxes").as_deref(), Some("box"));
        assert_eq!(term("glasses"), term("glass"));
        assert_eq!(term("status").as_deref(), Some("status"));
        assert_eq!(term("ends"), term("ended"));
        for w in [
            "terminate",
            "terminated",
            "terminating",
            "termination",
            "terminations",
        ] {
            assert_eq!(term(w).as_deref(), Some("termin"), "{w}");
        }
        assert_eq!(term("payment"), term("pay"));
        assert_eq!(term("agreement"), term("agreed"));
        assert_eq!(term("monthly"), term("months"));
        assert_eq!(term("early").as_deref(), Some("early"));
        assert_eq!(term("format").as_deref(), Some("format"));
        assert_eq!(term("The"), None);
        assert_eq!(term("x"), None);
        assert_eq!(term("7").as_deref(), Some("7"));
        assert_eq!(term("۱۴۰۵").as_deref(), Some("1405"));
        assert_eq!(term("كتاب"), term("کتاب"));
        assert_eq!(term("کتابهای").as_deref(), Some("کتاب"));
        assert_eq!(term("چه"), None);
    }
}
