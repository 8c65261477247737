//! [`chat::Task::Analyze`]: a JSON object with one key per task asked — `summary` (the concise
//! extractive summary), `keywords` (up to 10 key terms), `entities` (up to 20 `{"text",
//! "type"}`) and `sentiment` (`{"label", "score"}`).

use chat::{AnalysisTask, Source, SummaryStyle};
use serde_json::{Map, Value, json};

use super::entities::entities;
use super::keyterms::key_terms;
use super::sentiment::sentiment;
use super::summary::{central_sentences, sentences_for};
use super::text::{self, Corpus};

/// Most keywords.
const MAX_KEYWORDS: usize = 10;
/// Most entities.
const MAX_ENTITIES: usize = 20;

/// The analysis of `sources` as compact JSON, with exactly the keys of `tasks`.
pub(super) fn analyze(sources: &[Source], tasks: &[AnalysisTask]) -> String {
    let corpus = Corpus::new(sources);
    let mut out = Map::new();
    for task in tasks {
        if out.contains_key(task.as_str()) {
            continue;
        }
        let value = match task {
            AnalysisTask::Summary => Value::String(
                central_sentences(&corpus, sentences_for(SummaryStyle::Concise))
                    .into_iter()
                    .map(|i| text::clip(corpus.sentences[i].text, |_| 0.0))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            AnalysisTask::Keywords => {
                let all: Vec<usize> = (0..corpus.sentences.len()).collect();
                key_terms(&corpus, &all, &[], MAX_KEYWORDS)
                    .into_iter()
                    .map(|k| Value::String(k.label))
                    .collect()
            }
            AnalysisTask::Entities => entities(&corpus, MAX_ENTITIES)
                .into_iter()
                .map(|e| json!({ "text": e.text, "type": e.kind.as_str() }))
                .collect(),
            AnalysisTask::Sentiment => {
                let s = sentiment(&corpus);
                json!({ "label": s.label, "score": s.score })
            }
        };
        out.insert(task.as_str().to_owned(), value);
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::source;

    fn review() -> Vec<Source> {
        vec![source(
            "S1",
            "I ordered the desk from Acme Corp on 12 March 2024. The desk arrived broken and the \
             drawer was damaged. Support at Acme Corp was rude and the refund took weeks. \
             The desk wobbles and the drawer sticks. Terrible experience, I do not recommend it.",
        )]
    }

    #[test]
    fn only_the_asked_keys_with_sane_values() {
        let out = analyze(
            &review(),
            &[
                AnalysisTask::Sentiment,
                AnalysisTask::Entities,
                AnalysisTask::Sentiment,
            ],
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["entities", "sentiment"]);
        assert_eq!(v["sentiment"]["label"], "negative", "{out}");
        let score = v["sentiment"]["score"].as_f64().unwrap();
        assert!((-1.0..0.0).contains(&score), "{out}");
        let entities = v["entities"].as_array().unwrap();
        assert!(entities.len() <= MAX_ENTITIES);
        assert!(
            entities.contains(&json!({"text": "Acme Corp", "type": "organization"})),
            "{out}"
        );
        assert!(
            entities.contains(&json!({"text": "12 March 2024", "type": "date"})),
            "{out}"
        );
        assert_eq!(entities[0]["text"], "Acme Corp");
    }

    #[test]
    fn summary_and_keywords() {
        let out = analyze(&review(), &[AnalysisTask::Keywords, AnalysisTask::Summary]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 2);
        let keywords: Vec<&str> = v["keywords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert!((1..=MAX_KEYWORDS).contains(&keywords.len()), "{out}");
        assert!(
            keywords.contains(&"desk") && keywords.contains(&"drawer"),
            "{out}"
        );
        let summary = v["summary"].as_str().unwrap();
        assert!(summary.contains("desk"), "{out}");
        assert!(summary.len() < review()[0].text.len());
    }

    #[test]
    fn empty_sources_give_empty_values() {
        let all = [
            AnalysisTask::Summary,
            AnalysisTask::Keywords,
            AnalysisTask::Entities,
            AnalysisTask::Sentiment,
        ];
        let v: Value = serde_json::from_str(&analyze(&[], &all)).unwrap();
        assert_eq!(
            v,
            json!({
                "summary": "",
                "keywords": [],
                "entities": [],
                "sentiment": {"label": "neutral", "score": 0.0}
            })
        );
        let v: Value = serde_json::from_str(&analyze(&[], &[])).unwrap();
        assert_eq!(v, json!({}));
    }
}
