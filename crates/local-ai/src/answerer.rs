//! [`LocalAnswerer`]: the embedded default's language model (`quire-local-extractive`). It
//! generates nothing: it reads [`ChatRequest::task`] and composes its output from the
//! request's sources alone, deterministically, without a network call.
//!
//! | task | output |
//! |---|---|
//! | [`Task::Answer`] | the 1 to 4 sentences of the sources that best answer the question, copied verbatim, one per line, each followed by ` [S<n>]` (see `answer`); or "I could not find this in your documents." (in Persian for a Persian question) |
//! | [`Task::Chat`] | as `Answer` for the last user message when there are sources; else a fixed text saying what this model is |
//! | [`Task::Summarize`] | the 3 (concise), 8 (detailed) or 5 (bullets, `- ` lines) most central sentences, in their order (see `summary`) |
//! | [`Task::Mindmap`] | JSON `{"label", "children"}`: key terms, related terms, then sentences (see `mindmap`) |
//! | [`Task::Analyze`] | JSON with exactly the asked keys: `summary`, `keywords`, `entities`, `sentiment` (see `analyze`) |
//!
//! The output is streamed in pieces of one to three words (16 characters for JSON), the task
//! yielding to the runtime between pieces, then [`ModelEvent::Usage`] (`cl100k_base` tokens of
//! the prompt messages and of the output). Requests of more than 64 KB of text are composed
//! on the blocking pool. `temperature` and `max_tokens` are not used: the output is bounded by
//! construction (an answer quotes at most 4 sentences of at most 400 characters).

mod analyze;
mod answer;
mod entities;
mod keyterms;
mod mindmap;
mod sentiment;
mod summary;
mod terms;
mod text;

use async_trait::async_trait;
use chat::{
    ChatModel, ChatRequest, Locale, ModelError, ModelEvent, ModelStream, PromptRole, Task, Usage,
};

/// The model name of the local extractive answerer.
pub const LOCAL_ANSWERER_MODEL: &str = "quire-local-extractive";

/// Its context window, in tokens.
pub const LOCAL_CONTEXT_WINDOW: u32 = 32_768;

/// Requests with more text than this (bytes of sources and prompt) are composed on the
/// blocking pool, so that a large one never holds an async worker for long (the slowest
/// task, analysis, reads about 250 KB of text a second in a debug build).
const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// Characters per streamed piece of a JSON output.
const JSON_PIECE_CHARS: usize = 16;

/// The reply to a free conversation (no sources), in English.
pub(crate) const CHAT_EN: &str = "I am Quire's local extractive answerer. I do not write free \
     text: I answer only by quoting the passages of your organization's documents that match a \
     question. Ask about your documents in a chat grounded in one or more collections, or ask an \
     administrator to configure a model provider for free conversation.";

/// The reply to a free conversation (no sources), in Persian.
pub(crate) const CHAT_FA: &str = "من پاسخ‌دهندهٔ محلی و استخراجی Quire هستم. متن آزاد نمی‌نویسم \
     و فقط با نقل بخش‌هایی از اسناد سازمان شما که با پرسش جور درمی‌آیند پاسخ می‌دهم. دربارهٔ \
     اسناد خود در گفت‌وگویی بپرسید که به یک یا چند مجموعه متصل است، یا از مدیر بخواهید برای \
     گفت‌وگوی آزاد یک ارائه‌دهندهٔ مدل تنظیم کند.";

/// The local extractive answerer: a [`ChatModel`] that quotes, summarizes and analyzes the
/// request's sources without any model (see the module documentation).
///
/// ```
/// use local_ai::{LOCAL_ANSWERER_MODEL, LocalAnswerer};
/// use chat::ChatModel;
///
/// let model = LocalAnswerer::new();
/// assert_eq!(model.models(), [LOCAL_ANSWERER_MODEL]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAnswerer {
    _private: (),
}

impl LocalAnswerer {
    /// The answerer (it holds no state).
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// The whole output for `request`, on this thread (what [`ChatModel::stream`] streams).
    #[must_use]
    pub fn compose(&self, request: &ChatRequest) -> String {
        let sources = &request.sources;
        match &request.task {
            Task::Answer { question } => answer::answer(sources, question),
            Task::Chat => {
                let question = request
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == PromptRole::User)
                    .map_or("", |m| m.content.as_str());
                if sources.is_empty() || question.trim().is_empty() {
                    match Locale::detect(question) {
                        Locale::Fa => CHAT_FA,
                        Locale::En => CHAT_EN,
                    }
                    .to_owned()
                } else {
                    answer::answer(sources, question)
                }
            }
            Task::Summarize { style } => summary::summarize(sources, *style, locale_of(request)),
            Task::Mindmap { topic, depth } => mindmap::mindmap(sources, topic, *depth),
            Task::Analyze { tasks } => analyze::analyze(sources, tasks),
        }
    }
}

/// The language of the sources (of the last user message when they hold no letter).
fn locale_of(request: &ChatRequest) -> Locale {
    let sample: String = request
        .sources
        .iter()
        .flat_map(|s| s.text.chars())
        .filter(|c| c.is_alphabetic())
        .take(2_000)
        .collect();
    if !sample.is_empty() {
        return Locale::detect(&sample);
    }
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == PromptRole::User)
        .map_or(Locale::En, |m| Locale::detect(&m.content))
}

/// `cl100k_base` tokens of `text`.
fn tokens(text: &str) -> u32 {
    u32::try_from(tiktoken_rs::cl100k_base_singleton().count_ordinary(text)).unwrap_or(u32::MAX)
}

/// The output of `request` and its usage.
fn run(request: &ChatRequest) -> (String, Usage) {
    let output = LocalAnswerer::new().compose(request);
    let prompt_tokens = request
        .messages
        .iter()
        .map(|m| tokens(&m.content))
        .fold(0u32, u32::saturating_add);
    let completion_tokens = tokens(&output);
    (
        output,
        Usage {
            prompt_tokens,
            completion_tokens,
        },
    )
}

/// `output` in pieces whose concatenation is `output`: one to three words each, with the
/// spaces after them (sizes 2, 1, 3, 2, 1, 3 …); or [`JSON_PIECE_CHARS`] characters each.
fn pieces(output: &str, json: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    if json {
        for (n, (i, _)) in output.char_indices().enumerate() {
            if n > 0 && n % JSON_PIECE_CHARS == 0 {
                out.push(output[start..i].to_owned());
                start = i;
            }
        }
    } else {
        let mut sizes = [2, 1, 3].into_iter().cycle();
        let mut want = sizes.next().unwrap_or(1);
        let mut words = 0;
        let mut after_space = true;
        for (i, c) in output.char_indices() {
            let space = c.is_whitespace();
            if !space && after_space {
                if words == want {
                    out.push(output[start..i].to_owned());
                    start = i;
                    words = 0;
                    want = sizes.next().unwrap_or(1);
                }
                words += 1;
            }
            after_space = space;
        }
    }
    if start < output.len() {
        out.push(output[start..].to_owned());
    }
    out
}

/// The events: each piece, the task yielding to the runtime before every one but the first,
/// then the usage.
fn stream_of(pieces: Vec<String>, usage: Usage) -> ModelStream {
    let events = pieces
        .into_iter()
        .map(ModelEvent::Delta)
        .chain(std::iter::once(ModelEvent::Usage(usage)));
    Box::pin(futures_util::stream::unfold(
        (events, true),
        |(mut events, first)| async move {
            let event = events.next()?;
            if !first {
                tokio::task::yield_now().await;
            }
            Some((Ok(event), (events, false)))
        },
    ))
}

#[async_trait]
impl ChatModel for LocalAnswerer {
    fn models(&self) -> Vec<String> {
        vec![LOCAL_ANSWERER_MODEL.to_owned()]
    }

    fn count_tokens(&self, _model: &str, text: &str) -> u32 {
        tokens(text)
    }

    fn context_window(&self, _model: &str) -> u32 {
        LOCAL_CONTEXT_WINDOW
    }

    async fn stream(&self, request: ChatRequest) -> Result<ModelStream, ModelError> {
        let json = matches!(request.task, Task::Mindmap { .. } | Task::Analyze { .. });
        let bytes: usize = request.sources.iter().map(|s| s.text.len()).sum::<usize>()
            + request
                .messages
                .iter()
                .map(|m| m.content.len())
                .sum::<usize>();
        let (output, usage) = if bytes <= BLOCKING_THRESHOLD {
            run(&request)
        } else {
            tokio::task::spawn_blocking(move || run(&request))
                .await
                .map_err(|e| {
                    ModelError::Unknown(anyhow::Error::new(e).context("local extractive answer"))
                })?
        };
        Ok(stream_of(pieces(&output, json), usage))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chat::{AnalysisTask, PromptMessage, Source, SummaryStyle};
    use futures_util::StreamExt;

    use super::*;

    /// A source labelled `label` holding `text`.
    pub(crate) fn source(label: &str, text: &str) -> Source {
        Source {
            label: label.to_owned(),
            chunk_id: Default::default(),
            document_id: Default::default(),
            document_name: format!("{label}.txt"),
            page: None,
            text: text.to_owned(),
            score: 0.5,
        }
    }

    /// Three chunks of a lease, one holding its end date.
    pub(crate) fn lease_sources() -> Vec<Source> {
        vec![
            source(
                "S1",
                "This agreement is made between Acme Corp and Jane Doe. The building has a gym \
                 on the ground floor. Parking spaces are assigned by the office. Pets are \
                 allowed with written consent.",
            ),
            source(
                "S2",
                "The tenant may renew the agreement once, for two more years. The lease ends on \
                 31 March 2027. Notice of termination must be given three months in advance.",
            ),
            source(
                "S3",
                "The monthly rent is 1,200 EUR, due on the first day of each month. Late \
                 payments incur a fee of 5%. The deposit equals two months of rent.",
            ),
        ]
    }

    fn request(task: Task, sources: Vec<Source>, user: &str) -> ChatRequest {
        ChatRequest {
            model: LOCAL_ANSWERER_MODEL.to_owned(),
            messages: vec![
                PromptMessage::new(PromptRole::System, "Answer from the sources only."),
                PromptMessage::new(PromptRole::User, user),
            ],
            temperature: None,
            max_tokens: None,
            task,
            sources,
        }
    }

    /// The deltas and the usage of a stream, checking that the usage comes once, last.
    async fn collect(model: &LocalAnswerer, request: ChatRequest) -> (Vec<String>, Usage) {
        let mut stream = model.stream(request).await.unwrap();
        let mut deltas = Vec::new();
        let mut usage = None;
        while let Some(event) = stream.next().await {
            assert!(usage.is_none(), "an event after the usage");
            match event.unwrap() {
                ModelEvent::Delta(d) => deltas.push(d),
                ModelEvent::Usage(u) => usage = Some(u),
            }
        }
        (deltas, usage.unwrap())
    }

    #[test]
    fn names_tokens_and_window() {
        let m = LocalAnswerer::default();
        assert_eq!(m.models(), [LOCAL_ANSWERER_MODEL]);
        assert_eq!(m.models(), ["quire-local-extractive"]);
        assert_eq!(m.context_window(LOCAL_ANSWERER_MODEL), 32_768);
        // "hello world" is 2 tokens in cl100k_base.
        assert_eq!(m.count_tokens(LOCAL_ANSWERER_MODEL, "hello world"), 2);
        assert_eq!(m.count_tokens(LOCAL_ANSWERER_MODEL, ""), 0);
    }

    #[test]
    fn chat_without_sources_explains_itself() {
        let m = LocalAnswerer::new();
        let out = m.compose(&request(Task::Chat, Vec::new(), "Write me a poem"));
        assert_eq!(out, CHAT_EN);
        let out = m.compose(&request(Task::Chat, Vec::new(), "یک شعر بنویس"));
        assert_eq!(out, CHAT_FA);
        // With sources, the last user message is the question.
        let mut r = request(Task::Chat, lease_sources(), "ignored");
        r.messages
            .push(PromptMessage::new(PromptRole::Assistant, "Sure."));
        r.messages.push(PromptMessage::new(
            PromptRole::User,
            "When does the lease end?",
        ));
        r.messages
            .push(PromptMessage::new(PromptRole::Assistant, "…"));
        let out = m.compose(&r);
        assert!(
            out.starts_with("The lease ends on 31 March 2027. [S2]"),
            "{out}"
        );
    }

    #[test]
    fn composing_is_deterministic() {
        let m = LocalAnswerer::new();
        for task in [
            Task::Answer {
                question: "What is the deposit?".into(),
            },
            Task::Summarize {
                style: SummaryStyle::Detailed,
            },
            Task::Mindmap {
                topic: "Lease".into(),
                depth: 3,
            },
            Task::Analyze {
                tasks: vec![AnalysisTask::Keywords, AnalysisTask::Entities],
            },
        ] {
            let r = request(task, lease_sources(), "q");
            assert_eq!(m.compose(&r), m.compose(&r.clone()));
        }
    }

    #[test]
    fn pieces_keep_every_character() {
        let text = "  The lease ends\non 31 March 2027. [S2]\n\nNext  line ";
        let p = pieces(text, false);
        assert_eq!(p.concat(), text);
        for piece in &p {
            let words = piece.split_whitespace().count();
            assert!((1..=3).contains(&words), "{piece:?}");
        }
        assert_eq!(p[0], "  The lease ");
        assert_eq!(p[1], "ends\n");
        let json = r#"{"label":"Energy – ☀","children":[]}"#;
        let p = pieces(json, true);
        assert_eq!(p.concat(), json);
        assert!(p.iter().all(|s| s.chars().count() <= JSON_PIECE_CHARS));
        assert_eq!(p[0].chars().count(), JSON_PIECE_CHARS);
        assert!(pieces("", false).is_empty());
    }

    #[tokio::test]
    async fn the_stream_concatenates_to_the_output_and_counts_usage() {
        let m = LocalAnswerer::new();
        let r = request(
            Task::Answer {
                question: "When does the lease end, and how much is the rent?".into(),
            },
            lease_sources(),
            "When does the lease end, and how much is the rent?",
        );
        let expected = m.compose(&r);
        let prompt: u32 = r
            .messages
            .iter()
            .map(|msg| m.count_tokens(LOCAL_ANSWERER_MODEL, &msg.content))
            .sum();
        let (deltas, usage) = collect(&m, r).await;
        assert!(deltas.len() > 3);
        assert_eq!(deltas.concat(), expected);
        assert!(
            deltas
                .iter()
                .all(|d| (1..=3).contains(&d.split_whitespace().count()))
        );
        assert_eq!(usage.prompt_tokens, prompt);
        assert_eq!(
            usage.completion_tokens,
            m.count_tokens(LOCAL_ANSWERER_MODEL, &expected)
        );
        assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    }

    #[tokio::test]
    async fn json_tasks_stream_valid_json() {
        let m = LocalAnswerer::new();
        for task in [
            Task::Mindmap {
                topic: "Lease".into(),
                depth: 2,
            },
            Task::Analyze {
                tasks: vec![AnalysisTask::Summary, AnalysisTask::Sentiment],
            },
        ] {
            let (deltas, usage) = collect(&m, request(task, lease_sources(), "x")).await;
            assert!(deltas.iter().all(|d| d.chars().count() <= JSON_PIECE_CHARS));
            let v: serde_json::Value = serde_json::from_str(&deltas.concat()).unwrap();
            assert!(v.is_object());
            assert!(usage.completion_tokens > 0);
        }
    }

    #[tokio::test]
    async fn a_large_request_is_composed_off_the_runtime_with_the_same_result() {
        let m = LocalAnswerer::new();
        let filler = "The committee reviewed the quarterly figures in detail. \
                      Several departments reported steady progress on their goals. "
            .repeat(30);
        let mut sources: Vec<Source> = (1..=80)
            .map(|i| source(&format!("S{i}"), &format!("{filler} Item {i} was closed.")))
            .collect();
        sources.push(source(
            "S81",
            "The warranty on the heat pump lasts seven years from installation.",
        ));
        let r = request(
            Task::Answer {
                question: "How long is the heat pump warranty?".into(),
            },
            sources,
            "How long is the heat pump warranty?",
        );
        assert!(r.sources.iter().map(|s| s.text.len()).sum::<usize>() > BLOCKING_THRESHOLD);
        let expected = m.compose(&r);
        assert_eq!(
            expected,
            "The warranty on the heat pump lasts seven years from installation. [S81]"
        );
        let (deltas, _) = collect(&m, r).await;
        assert_eq!(deltas.concat(), expected);
    }

    #[tokio::test]
    async fn every_task_streams_its_composed_output() {
        let m = LocalAnswerer::new();
        let r = request(
            Task::Summarize {
                style: SummaryStyle::Bullets,
            },
            lease_sources(),
            "Summarize",
        );
        let expected = m.compose(&r);
        assert!(expected.lines().all(|l| l.starts_with("- ")), "{expected}");
        let (deltas, _) = collect(&m, r).await;
        assert_eq!(deltas.concat(), expected);
    }
}
