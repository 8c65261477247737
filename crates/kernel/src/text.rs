//! Bounding a string ([`head`], [`ellipsized`]) and cleaning names.
//!
//! Names a client sets (documents, collections, organizations, assistants, chat sessions, API
//! keys, display names) are shown to other people: [`clean_name`] removes what would show
//! them something else than what is stored, the invisible format characters.
//!
//! Removed: every character of Unicode's general category `Cf` (format: the bidirectional
//! overrides, embeddings and isolates such as U+202E, the marks U+200E/U+200F/U+061C, the
//! zero-width space U+200B, word joiner U+2060, the byte-order mark U+FEFF, soft hyphen,
//! invisible operators, tag characters…) and the line and paragraph separators U+2028/U+2029.
//! The zero-width non-joiner and joiner (U+200C, U+200D) are kept only between two visible
//! non-ASCII characters, where scripts such as Persian and emoji sequences need them; anywhere
//! else (at an edge, next to a space or an ASCII letter) they are removed too.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is a format character (general category `Cf`, from Unicode's own tables in
/// `unicode-properties`) or a line/paragraph separator.
#[must_use]
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}') || c.general_category() == GeneralCategory::Format
}

/// The first `max` characters of `s` (all of `s` when it is shorter), cut on a character
/// boundary: the one way to bound a string a client or a file controls.
#[must_use]
pub fn head(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

/// `s` in at most `max` characters, ended with `…` when it was cut.
#[must_use]
pub fn ellipsized(s: &str, max: usize) -> String {
    let h = head(s, max);
    if h.len() == s.len() {
        s.to_owned()
    } else {
        format!("{h}…")
    }
}

/// `s` without its invisible characters (see the module docs), trimmed.
#[must_use]
pub fn clean_name(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let visible = |c: Option<&char>| {
        c.is_some_and(|c| !c.is_ascii() && !c.is_whitespace() && !is_invisible(*c))
    };
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let joiner = matches!(c, '\u{200C}' | '\u{200D}');
        if joiner {
            if visible(out.chars().last().as_ref()) && visible(chars.get(i + 1)) {
                out.push(c);
            }
        } else if !is_invisible(c) {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_count_characters_not_bytes() {
        assert_eq!(head("abc", 3), "abc");
        assert_eq!(head("abcd", 3), "abc");
        assert_eq!(head("ééééé", 2), "éé");
        assert_eq!(head("", 2), "");
        assert_eq!(ellipsized("abc", 3), "abc");
        assert_eq!(ellipsized("abcd", 3), "abc…");
        assert_eq!(ellipsized("ééééé", 2), "éé…");
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_removed() {
        assert_eq!(clean_name("report\u{202E}exe.txt"), "reportexe.txt");
        assert_eq!(
            clean_name("\u{FEFF} a\u{200B}d\u{2066}m\u{2069}in\u{200F} "),
            "admin"
        );
        assert_eq!(clean_name("x\u{200D}y\u{200C}"), "xy");
        assert_eq!(clean_name("tag\u{E0041}\u{E007F}s"), "tags");
        assert_eq!(clean_name("\u{202E}\u{202E}"), "");
    }

    #[test]
    fn joiners_inside_words_of_other_scripts_stay() {
        assert_eq!(clean_name("می\u{200C}شود"), "می\u{200C}شود");
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        assert_eq!(clean_name(family), family);
        assert_eq!(clean_name("Ünïcödé ok"), "Ünïcödé ok");
    }
}
