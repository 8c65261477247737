//! The features of the local embedder and the stable hash that places them in the vector.
//!
//! A text is lower-cased and cut into words: runs of Unicode alphanumerics (letters of any
//! script, the combining vowel signs that Unicode counts as alphabetic, digits). The most
//! frequent function words of a few languages ([`STOP_WORDS`]: `the`, `of`, `und`, `و` …) are
//! skipped, since each would outweigh a chunk's content words, unless the text has nothing
//! else. Each remaining word gives:
//!
//! | family | example for `running shoes` | weight | why |
//! |---|---|---|---|
//! | word | `running`, `shoes` | [`WORD_WEIGHT`] 1.0 | the exact word is the strongest single signal |
//! | word bigram | `running shoes` | [`BIGRAM_WEIGHT`] 0.6 | phrases and word order: rarer, so a match says more, but a text has about as many as words |
//! | character 3- to 5-grams of `<word>` | `<ru`, `run`, …, `<run`, … | [`NGRAM_WEIGHT`] 0.5 | morphology and spelling: `run`, `running` and `runners` share `<ru`, `run`, `<run` … |
//! | the same, ending the word | `ng>`, `ing>`, `ning>` | [`SUFFIX_WEIGHT`] 0.25 | suffixes (`-ing`, `-es`, `-tion`) are shared by unrelated words |
//!
//! A word of six letters has 12 inner and 3 final n-grams: their squared weights add up to
//! about three times the word's own (12 × 0.25 + 3 × 0.0625 ≈ 3.2). So a word that shares its
//! stem (`runners` for `running`: `<ru`, `run`, `unn`, `<run`, `runn`, `<runn`) scores about a
//! third of an exact match, enough for a text that only shares morphology to rank above an
//! unrelated one, while an exact match (the word and every n-gram) still counts most.
//!
//! Scripts written without spaces (Chinese, Japanese kana, Thai, Lao, Khmer, Myanmar) make a
//! clause of one "word"; their runs are indexed the way CJK search engines do instead: every
//! pair of adjacent characters is a word (1.0) and every character a character gram (0.5).
//!
//! Each distinct feature counts `weight × (1 + ln tf)` (sublinear term frequency), at the index
//! and with the sign (±1) that its hash gives (signed feature hashing: colliding features
//! cancel out on average instead of adding up). The sum is L2-normalized. Hashing adds noise
//! of about `1/√dimensions` to a cosine similarity (±0.05 at 384): scores below that say
//! nothing.
//!
//! The hash is FNV-1a 64 over a family tag and the feature's UTF-8 bytes, finished with the
//! `fmix64` step of MurmurHash3 so that every output bit depends on every input bit. It is
//! written here, so a vector never changes with the Rust version or a dependency (stored
//! vectors stay comparable with new ones); `DefaultHasher` makes no such promise.

/// Weight of a word.
pub const WORD_WEIGHT: f32 = 1.0;
/// Weight of two consecutive words.
pub const BIGRAM_WEIGHT: f32 = 0.6;
/// Weight of a character n-gram (and of a character of a dense script).
pub const NGRAM_WEIGHT: f32 = 0.5;
/// Weight of a character n-gram that ends a word.
pub const SUFFIX_WEIGHT: f32 = 0.25;

/// Shortest and longest character n-gram of `<word>`.
const NGRAM_MIN: usize = 3;
const NGRAM_MAX: usize = 5;

/// Function words skipped (unless a text has nothing else): the most frequent words of
/// English, French, German, Spanish and Persian that carry no topic, each of which would
/// otherwise outweigh the content words of a chunk. Sorted (binary search).
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "al",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "au",
    "auch",
    "auf",
    "aux",
    "avec",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "ce",
    "ces",
    "cette",
    "como",
    "con",
    "could",
    "d",
    "dans",
    "das",
    "dass",
    "de",
    "del",
    "dem",
    "den",
    "der",
    "des",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "du",
    "during",
    "each",
    "ein",
    "eine",
    "einem",
    "einen",
    "einer",
    "eines",
    "el",
    "elle",
    "elles",
    "en",
    "er",
    "es",
    "est",
    "et",
    "few",
    "for",
    "from",
    "further",
    "für",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "ich",
    "if",
    "ihr",
    "il",
    "ils",
    "im",
    "in",
    "into",
    "is",
    "ist",
    "it",
    "its",
    "itself",
    "just",
    "la",
    "las",
    "le",
    "les",
    "leur",
    "leurs",
    "ll",
    "lo",
    "los",
    "m",
    "me",
    "mit",
    "more",
    "most",
    "my",
    "myself",
    "más",
    "nicht",
    "no",
    "nor",
    "not",
    "nous",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "par",
    "para",
    "pas",
    "pero",
    "por",
    "pour",
    "que",
    "qui",
    "re",
    "s",
    "same",
    "se",
    "she",
    "should",
    "sich",
    "sie",
    "so",
    "some",
    "sont",
    "su",
    "such",
    "sur",
    "sus",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "un",
    "una",
    "und",
    "under",
    "une",
    "until",
    "up",
    "ve",
    "very",
    "von",
    "vous",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "wir",
    "with",
    "would",
    "y",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "zu",
    "été",
    "être",
    "آن",
    "از",
    "است",
    "این",
    "با",
    "بر",
    "برای",
    "به",
    "تا",
    "در",
    "را",
    "شد",
    "شود",
    "می",
    "نیز",
    "ها",
    "های",
    "هم",
    "و",
    "کرد",
    "که",
    "یک",
];

/// The family of a feature; its tag is hashed first, and kept in the key's two low bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Family {
    Word = 0,
    Bigram = 1,
    CharGram = 2,
    /// A character n-gram ending a word (`ng>`, `ing>`): suffixes like `-ing`, `-es`,
    /// `-tion` are shared by unrelated words, so these count half.
    Suffix = 3,
}

impl Family {
    fn from_tag(tag: u64) -> Self {
        match tag & 0b11 {
            0 => Self::Word,
            1 => Self::Bigram,
            2 => Self::CharGram,
            _ => Self::Suffix,
        }
    }

    fn weight(self) -> f32 {
        match self {
            Self::Word => WORD_WEIGHT,
            Self::Bigram => BIGRAM_WEIGHT,
            Self::CharGram => NGRAM_WEIGHT,
            Self::Suffix => SUFFIX_WEIGHT,
        }
    }
}

/// FNV-1a 64 (streaming), finished by `fmix64`.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new(family: Family) -> Self {
        let mut h = Self(Self::OFFSET);
        h.write(&[family as u8]);
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// The key of the feature: the mixed hash with the family in its two low bits.
    fn key(self, family: Family) -> u64 {
        (fmix64(self.0) & !0b11) | family as u64
    }
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Scripts written without spaces between words (a run of their letters is a clause).
fn is_dense_script(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF      // Thai, Lao
        | 0x1000..=0x109F    // Myanmar
        | 0x1780..=0x17FF    // Khmer
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x3FFFF  // CJK extensions B and later
    )
}

/// Reusable buffers of one featurization.
#[derive(Debug, Default)]
struct Scratch {
    /// `<word>`.
    wrapped: String,
    /// Byte offset of every char of `wrapped`, and its length last.
    bounds: Vec<usize>,
}

pub(crate) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// The keys of every feature of `text`, sorted (equal keys adjacent: their run is the term
/// frequency; the order makes the vector's sums deterministic).
fn feature_keys(text: &str) -> Vec<u64> {
    let lower = text.to_lowercase();
    let mut keys = Vec::with_capacity(lower.len() * 4);
    push_features(&lower, false, &mut keys);
    if keys.is_empty() {
        // Only function words ("to be or not to be"): better them than nothing.
        push_features(&lower, true, &mut keys);
    }
    keys.sort_unstable();
    keys
}

/// The features of a lower-cased text. Function words are skipped unless `stop_words`; a
/// word bigram joins consecutive kept words (so `shoes for runners` gives `shoes runners`).
fn push_features(lower: &str, stop_words: bool, keys: &mut Vec<u64>) {
    let mut scratch = Scratch::default();
    let mut previous: Option<&str> = None;
    for run in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        for (dense, word) in segments(run) {
            if dense {
                dense_grams(word, keys);
                previous = None;
                continue;
            }
            if !stop_words && is_stop_word(word) {
                continue;
            }
            let mut h = Fnv::new(Family::Word);
            h.write(word.as_bytes());
            keys.push(h.key(Family::Word));

            if let Some(prev) = previous {
                let mut h = Fnv::new(Family::Bigram);
                h.write(prev.as_bytes());
                h.write(&[0x1f]);
                h.write(word.as_bytes());
                keys.push(h.key(Family::Bigram));
            }
            previous = Some(word);

            char_grams(word, &mut scratch, keys);
        }
    }
}

/// The pieces of a run of alphanumerics in and out of dense scripts (`abc漢字` →
/// `(false, "abc")`, `(true, "漢字")`).
fn segments(run: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = run;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let dense = is_dense_script(first);
        let end = rest
            .char_indices()
            .find(|(_, c)| is_dense_script(*c) != dense)
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some((dense, piece))
    })
}

/// The features of a run of a dense script, as CJK search engines index it: each pair of
/// adjacent characters is a word (a lone character too), and each character a character
/// gram.
fn dense_grams(run: &str, keys: &mut Vec<u64>) {
    let mut chars = run.char_indices().peekable();
    let mut prev: Option<usize> = None;
    let mut pairs = 0;
    while let Some((i, c)) = chars.next() {
        let end = i + c.len_utf8();
        let mut h = Fnv::new(Family::CharGram);
        h.write(&run.as_bytes()[i..end]);
        keys.push(h.key(Family::CharGram));
        if let Some(start) = prev {
            let mut h = Fnv::new(Family::Word);
            h.write(&run.as_bytes()[start..end]);
            keys.push(h.key(Family::Word));
            pairs += 1;
        }
        prev = Some(i);
        if chars.peek().is_none() && pairs == 0 {
            let mut h = Fnv::new(Family::Word);
            h.write(&run.as_bytes()[i..end]);
            keys.push(h.key(Family::Word));
        }
    }
}

/// The character n-grams of `<word>`.
fn char_grams(word: &str, scratch: &mut Scratch, keys: &mut Vec<u64>) {
    let Scratch { wrapped, bounds } = scratch;
    wrapped.clear();
    wrapped.push('<');
    wrapped.push_str(word);
    wrapped.push('>');
    bounds.clear();
    bounds.extend(wrapped.char_indices().map(|(i, _)| i));
    bounds.push(wrapped.len());
    let chars = bounds.len() - 1;
    for n in NGRAM_MIN..=NGRAM_MAX {
        if n > chars {
            break;
        }
        for start in 0..=chars - n {
            let family = if start + n == chars {
                Family::Suffix
            } else {
                Family::CharGram
            };
            let mut h = Fnv::new(family);
            h.write(&wrapped.as_bytes()[bounds[start]..bounds[start + n]]);
            keys.push(h.key(family));
        }
    }
}

/// The L2-normalized vector of `text` in `dimensions` (the zero vector when the text has no
/// word: no letter or digit at all).
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dimensions];
    if dimensions == 0 {
        return v;
    }
    let keys = feature_keys(text);
    let dims = dimensions as u64;
    let mut i = 0;
    while i < keys.len() {
        let key = keys[i];
        let mut j = i + 1;
        while j < keys.len() && keys[j] == key {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let tf = (j - i) as f32;
        let value = Family::from_tag(key).weight() * (1.0 + tf.ln());
        let sign = if key >> 63 == 0 { 1.0 } else { -1.0 };
        // Bits 2..62 choose the slot (bit 63 is the sign, bits 0..1 the family).
        #[allow(clippy::cast_possible_truncation)]
        let slot = (((key >> 2) & ((1 << 61) - 1)) % dims) as usize;
        v[slot] += sign * value;
        i = j;
    }
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        #[allow(clippy::cast_possible_truncation)]
        let inv = (1.0 / norm) as f32;
        for x in &mut v {
            *x *= inv;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(keys: &[u64], family: Family) -> usize {
        keys.iter()
            .filter(|k| Family::from_tag(**k) == family)
            .count()
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        // FNV-1a 64 of "a" and "foobar" (the published test vectors), before the finalizer.
        let mut h = Fnv(Fnv::OFFSET);
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv(Fnv::OFFSET);
        h.write(b"foobar");
        assert_eq!(h.0, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_is_pinned() {
        // Stored vectors depend on these values: changing them is a new model.
        let mut h = Fnv::new(Family::Word);
        h.write("running".as_bytes());
        assert_eq!(h.key(Family::Word), 0x8169_e075_da3b_b838);
    }

    #[test]
    fn features_of_a_phrase() {
        let keys = feature_keys("Running shoes!");
        assert_eq!(words(&keys, Family::Word), 2);
        assert_eq!(words(&keys, Family::Bigram), 1);
        // <running>: 9 chars → 7 + 6 + 5 n-grams; <shoes>: 7 chars → 5 + 4 + 3; of which
        // three per word end it.
        assert_eq!(words(&keys, Family::CharGram), 15 + 9);
        assert_eq!(words(&keys, Family::Suffix), 3 + 3);
    }

    #[test]
    fn words_are_runs_of_alphanumerics_in_any_script() {
        let keys = feature_keys("کفش‌های دویدن، 42");
        // ZWNJ separates: کفش, های (a function suffix, skipped), دویدن, 42.
        assert_eq!(words(&keys, Family::Word), 3);
        assert_eq!(words(&keys, Family::Bigram), 2);
    }

    #[test]
    fn dense_scripts_give_characters_and_pairs() {
        let keys = feature_keys("我喜欢跑步");
        assert_eq!(words(&keys, Family::Word), 4);
        assert_eq!(words(&keys, Family::CharGram), 5);
        assert_eq!(words(&keys, Family::Bigram), 0);
        // A lone character is a word; Latin letters around are words of their own.
        let keys = feature_keys("书 abc漢字");
        assert_eq!(words(&keys, Family::Word), 1 + 1 + 1);
        // 书; <ab, abc, <abc (and bc>, abc>, <abc> ending it); 漢, 字.
        assert_eq!(words(&keys, Family::CharGram), 1 + 3 + 2);
        assert_eq!(words(&keys, Family::Suffix), 3);
    }

    #[test]
    fn function_words_are_skipped_unless_alone() {
        let with = feature_keys("shoes for the runners");
        let without = feature_keys("shoes runners");
        assert_eq!(with, without);
        let alone = feature_keys("to be or not to be");
        assert_eq!(words(&alone, Family::Word), 6);
    }

    #[test]
    fn stop_words_are_sorted_and_lower_case() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.iter().all(|w| w.to_lowercase() == *w));
        assert!(is_stop_word("the") && is_stop_word("و") && !is_stop_word("shoes"));
    }

    #[test]
    fn no_word_no_feature() {
        assert!(feature_keys("  ,.;!? -- …").is_empty());
        assert!(vector("", 16).iter().all(|x| *x == 0.0));
    }
}
