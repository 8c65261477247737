//! Overall sentiment by a small lexicon, for [`chat::AnalysisTask::Sentiment`].
//!
//! Each positive word counts +1 and each negative word −1 (×1.5 after an intensifier such as
//! `very`). A negation within the three words before (`not`, `never`, `don't`, `بدون` …) or,
//! in Persian, a negated verb just after (`خوب نیست`) flips a word and weakens it (`not bad`
//! is mildly positive, `not good` negative). The score is `(positive − negative) /
//! (positive + negative + 1 + sentences / 2)`, in −1..1, rounded to two decimals (a long text
//! with a word or two of opinion stays near 0); its label is `positive` from 0.2, `negative`
//! from −0.2, `neutral` between (a text with no opinion word scores 0).

use super::terms::{fold, words};
use super::text::Corpus;

/// The overall sentiment of a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sentiment {
    /// `positive`, `negative` or `neutral`.
    pub label: &'static str,
    /// −1 (negative) to 1 (positive).
    pub score: f64,
}

const POSITIVE: &[&str] = &[
    "accurate",
    "affordable",
    "amazing",
    "awesome",
    "beautiful",
    "beneficial",
    "benefit",
    "benefits",
    "best",
    "better",
    "brilliant",
    "clean",
    "comfortable",
    "convenient",
    "delighted",
    "easy",
    "effective",
    "efficient",
    "enjoy",
    "enjoyed",
    "excellent",
    "exceptional",
    "fantastic",
    "fast",
    "favorite",
    "friendly",
    "glad",
    "good",
    "great",
    "happy",
    "helpful",
    "impressive",
    "improved",
    "improvement",
    "love",
    "loved",
    "lovely",
    "nice",
    "outstanding",
    "perfect",
    "pleased",
    "positive",
    "profitable",
    "quick",
    "recommend",
    "recommended",
    "reliable",
    "responsive",
    "safe",
    "satisfied",
    "smooth",
    "solid",
    "strong",
    "success",
    "successful",
    "superb",
    "thank",
    "thanks",
    "valuable",
    "wonderful",
    "بهتر",
    "بهترین",
    "خوب",
    "خوشحال",
    "راضی",
    "رضایت",
    "زیبا",
    "سریع",
    "عالی",
    "مفید",
    "ممتاز",
    "موفق",
    "موفقیت",
];

const NEGATIVE: &[&str] = &[
    "angry",
    "annoying",
    "awful",
    "bad",
    "broke",
    "broken",
    "bug",
    "bugs",
    "complain",
    "complaint",
    "complaints",
    "confusing",
    "crash",
    "crashed",
    "damaged",
    "defective",
    "delay",
    "delayed",
    "difficult",
    "dirty",
    "disappointed",
    "disappointing",
    "disappointment",
    "error",
    "errors",
    "expensive",
    "fail",
    "failed",
    "failure",
    "faulty",
    "fraud",
    "frustrated",
    "frustrating",
    "hate",
    "hated",
    "horrible",
    "late",
    "loss",
    "losses",
    "negative",
    "overpriced",
    "poor",
    "problem",
    "problems",
    "rude",
    "sad",
    "slow",
    "terrible",
    "unfortunately",
    "unhappy",
    "unreliable",
    "unusable",
    "useless",
    "waste",
    "wasted",
    "weak",
    "worse",
    "worst",
    "افتضاح",
    "بد",
    "بدتر",
    "بدترین",
    "تأخیر",
    "تاخیر",
    "خراب",
    "خطا",
    "زیان",
    "شکایت",
    "ضرر",
    "ضعیف",
    "مشکل",
    "ناامید",
    "ناراضی",
    "گران",
];

/// Words that negate what follows.
const NEGATORS: &[&str] = &[
    "barely", "cannot", "hardly", "lack", "lacks", "neither", "never", "no", "nobody", "none",
    "nor", "not", "nothing", "without", "بدون", "نه", "هیچ",
];

/// Persian negated verbs that negate what comes before (`خوب نیست`).
const NEGATORS_AFTER: &[&str] = &[
    "نبود",
    "نبودم",
    "نبودند",
    "ندارد",
    "نداریم",
    "نشد",
    "نمی",
    "نیست",
    "نیستم",
    "نیستند",
];

/// The least score, either way, of a text that is not neutral.
const THRESHOLD: f64 = 0.2;

const INTENSIFIERS: &[&str] = &[
    "absolutely",
    "extremely",
    "highly",
    "really",
    "so",
    "very",
    "بسیار",
    "خیلی",
];

/// Whether `word` is in the sorted `list`.
fn is_in(list: &[&str], word: &str) -> bool {
    list.binary_search(&word).is_ok()
}

/// The sentiment of the corpus's sentences.
pub(super) fn sentiment(corpus: &Corpus<'_>) -> Sentiment {
    let (mut positive, mut negative) = (0.0f64, 0.0f64);
    for s in &corpus.sentences {
        let ws: Vec<String> = words(s.text).map(|(_, w)| fold(w)).collect();
        for (i, w) in ws.iter().enumerate() {
            let polarity = if is_in(POSITIVE, w) {
                1.0
            } else if is_in(NEGATIVE, w) {
                -1.0
            } else {
                continue;
            };
            let mut weight = 1.0;
            if i > 0 && is_in(INTENSIFIERS, &ws[i - 1]) {
                weight = 1.5;
            }
            let before = &ws[i.saturating_sub(3)..i];
            let negated = before.iter().enumerate().any(|(k, b)| {
                is_in(NEGATORS, b)
                    // `don't`, `isn't`, `can't`: `t` after a word ending in `n`.
                    || (b == "t" && k > 0 && before[k - 1].ends_with('n'))
            }) || ws[i + 1..].iter().take(2).any(|a| is_in(NEGATORS_AFTER, a));
            let value = if negated {
                // `not good` is bad; `not bad` only mildly good.
                if polarity > 0.0 { -0.8 } else { 0.5 }
            } else {
                polarity
            } * weight;
            if value > 0.0 {
                positive += value;
            } else {
                negative -= value;
            }
        }
    }
    // A text with a word or two of opinion among many sentences (`good condition`, `late fee`
    // in a contract) is neutral.
    #[allow(clippy::cast_precision_loss)]
    let damping = 1.0 + 0.5 * corpus.sentences.len() as f64;
    let score = (positive - negative) / (positive + negative + damping);
    let score = (score * 100.0).round() / 100.0;
    let label = if score >= THRESHOLD {
        "positive"
    } else if score <= -THRESHOLD {
        "negative"
    } else {
        "neutral"
    };
    Sentiment { label, score }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::source;

    fn of(text: &str) -> Sentiment {
        let sources = [source("S1", text)];
        sentiment(&Corpus::new(&sources))
    }

    #[test]
    fn reviews_get_their_sentiment() {
        let bad = of(
            "The product broke after two days. Terrible support, and the refund never came. I am not happy.",
        );
        assert_eq!(bad.label, "negative");
        assert!(bad.score < -0.5 && bad.score >= -1.0, "{bad:?}");
        let good = of("Excellent service and a very helpful team. I would recommend them.");
        assert_eq!(good.label, "positive");
        assert!(good.score > 0.5 && good.score <= 1.0, "{good:?}");
        let neutral = of("The lease ends on 31 March 2027. The rent is paid monthly.");
        assert_eq!(
            neutral,
            Sentiment {
                label: "neutral",
                score: 0.0
            }
        );
        // A contract that keeps the flat "clean and in good condition" and has a "late fee".
        let contract = format!(
            "{} The tenant keeps the flat clean and in good condition. A late fee applies.",
            "The rent is paid monthly by bank transfer. ".repeat(8)
        );
        assert_eq!(of(&contract).label, "neutral", "{:?}", of(&contract));
    }

    #[test]
    fn negation_flips() {
        assert_eq!(of("The food was not good.").label, "negative");
        assert_eq!(of("The room wasn't bad at all.").label, "positive");
        assert_eq!(of("The room isn't clean.").label, "negative");
        assert_eq!(
            of("کیفیت خدمات عالی بود و کارکنان راضی هستند.").label,
            "positive"
        );
        assert_eq!(
            of("کیفیت خدمات خوب نیست و ارسال با تاخیر بود.").label,
            "negative"
        );
    }

    #[test]
    fn lexicons_are_sorted_and_do_not_overlap() {
        for list in [POSITIVE, NEGATIVE, NEGATORS, NEGATORS_AFTER, INTENSIFIERS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
        assert!(POSITIVE.iter().all(|w| !NEGATIVE.contains(w)));
        assert!(POSITIVE.iter().chain(NEGATIVE).all(|w| fold(w) == *w));
    }
}
