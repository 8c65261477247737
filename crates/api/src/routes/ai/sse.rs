//! The encoder of a streamed completion: OpenAI's server-sent events over a model call.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chat::{Answer, CallEvent, Completion, ModelCall};
use serde::Serialize;
use tracing::Instrument as _;
use utoipa::ToSchema;

use super::wire::{ChunkChoice, ChunkDto, ChunkMeta, Delivery, DeltaDto, QuireResultDto};
use crate::error::{ApiError, OpenAiError};

/// A streamed completion whose model is silent this long sends an SSE comment. actix notices
/// that a client went away only when a write fails (actix-web#1313), so without it a stalled
/// model would keep its upstream call open for a client long gone.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// One server-sent event of a streamed completion (`text/event-stream`), as OpenAI sends them:
/// a `data` line alone (no `event` or `id`); `: keep-alive` comments between events carry
/// nothing.
#[derive(Debug, ToSchema)]
pub struct CompletionEvent {
    /// A `chat.completion.chunk` (JSON), OpenAI's error object (JSON) when the model broke
    /// the stream, or `[DONE]`, the last event.
    data: String,
}

/// `data: <json>` and a blank line.
fn sse_frame(value: &impl Serialize) -> web::Bytes {
    match serde_json::to_string(value) {
        Ok(data) => {
            let event = CompletionEvent { data };
            web::Bytes::from(format!("data: {}\n\n", event.data))
        }
        Err(e) => {
            tracing::error!(error = %e, "a stream event could not be serialized");
            error_frame("an event could not be encoded")
        }
    }
}

/// The event that ends a stream the model broke: OpenAI's error object, as the error answers
/// of these routes (the OpenAI client raises it as `APIError`).
fn error_frame(message: &str) -> web::Bytes {
    sse_frame(&OpenAiError::new(
        "server_error",
        "provider_unavailable",
        message.to_owned(),
    ))
}

/// Where a streamed completion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Body,
    Finish,
    Usage,
    Done,
    End,
}

/// A streamed completion: the model call, and its answer once it is done.
struct Streamed {
    call: ModelCall,
    meta: ChunkMeta,
    delivery: Delivery,
    phase: Phase,
    answer: Answer,
}

impl Streamed {
    fn chunk(&self, delta: DeltaDto, finish: Option<&'static str>) -> ChunkDto<'_> {
        ChunkDto {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
            quire: None,
        }
    }

    /// The next content chunk (or a heartbeat comment); `None` (in phase `Finish`) once the
    /// model is done, or the error frame (then phase `End`) when it broke.
    async fn next_delta(&mut self) -> Option<web::Bytes> {
        let Ok(next) = tokio::time::timeout(HEARTBEAT, self.call.next()).await else {
            return Some(web::Bytes::from_static(b": keep-alive\n\n"));
        };
        match next {
            Some(CallEvent::Delta(t)) => {
                let delta = DeltaDto {
                    role: None,
                    content: Some(t),
                };
                Some(sse_frame(&self.chunk(delta, None)))
            }
            Some(CallEvent::Finished(answer)) => {
                self.answer = answer;
                self.phase = Phase::Finish;
                None
            }
            Some(CallEvent::Failed(f)) => {
                tracing::warn!(error = %f.error, "the model stream broke");
                self.phase = Phase::End;
                Some(error_frame(&f.error.to_string()))
            }
            None => {
                self.phase = Phase::End;
                None
            }
        }
    }

    /// The next frame, or `None` after the last.
    async fn next_frame(&mut self) -> Option<web::Bytes> {
        if self.phase == Phase::Body
            && let Some(frame) = self.next_delta().await
        {
            return Some(frame);
        }
        match self.phase {
            Phase::Start => {
                self.phase = Phase::Body;
                let delta = DeltaDto {
                    role: Some("assistant"),
                    content: Some(String::new()),
                };
                Some(sse_frame(&self.chunk(delta, None)))
            }
            Phase::Finish => {
                self.phase = if self.delivery.include_usage {
                    Phase::Usage
                } else {
                    Phase::Done
                };
                let usage = self.answer.usage;
                tracing::info!(
                    model = %self.meta.model,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    "completion streamed"
                );
                let finish = super::wire::finish_reason(&self.answer);
                let mut chunk = self.chunk(DeltaDto::default(), Some(finish));
                if self.delivery.grounded {
                    chunk.quire = Some(QuireResultDto::verified(&self.answer.citations));
                }
                Some(sse_frame(&chunk))
            }
            Phase::Usage => {
                self.phase = Phase::Done;
                let mut chunk = self.chunk(DeltaDto::default(), None);
                chunk.choices.clear();
                chunk.usage = Some(self.answer.usage.into());
                Some(sse_frame(&chunk))
            }
            Phase::Done => {
                self.phase = Phase::End;
                Some(web::Bytes::from_static(b"data: [DONE]\n\n"))
            }
            Phase::Body | Phase::End => None,
        }
    }
}

/// The `text/event-stream` response of a streamed completion.
pub(super) fn sse_response(completion: Completion, delivery: Delivery) -> HttpResponse {
    let state = Streamed {
        meta: ChunkMeta::new(&completion.model),
        call: completion.call,
        delivery,
        phase: Phase::Start,
        answer: Answer::default(),
    };
    let span = tracing::Span::current();
    let frames = futures_util::stream::unfold(state, move |mut s| {
        async move {
            let frame = s.next_frame().await?;
            Some((Ok::<_, ApiError>(frame), s))
        }
        .instrument(span.clone())
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_are_openai_errors() {
        let frame = error_frame("down");
        let text = std::str::from_utf8(&frame).expect("utf-8");
        assert!(
            text.starts_with("data: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        let v: serde_json::Value =
            serde_json::from_str(text.trim_start_matches("data: ").trim()).expect("json");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "provider_unavailable");
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
        assert_eq!(v["error"]["message"], "down");
    }
}
