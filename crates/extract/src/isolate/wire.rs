//! The framing between [`ProcessExtractor`](crate::ProcessExtractor) and its child.
//!
//! Request (stdin): `QXRQ`, a u32 (little-endian) length and that many bytes of JSON
//! ([`Header`]), a u64 length and the file's bytes. Response (stdout): `QXRS`, a u32 length
//! and JSON ([`Response`]), a u64 length and the extracted text (UTF-8).

use std::io::{self, Read, Write};

use documents::{ExtractError, ExtractLimits, ExtractedText, TableSpan};
use serde::{Deserialize, Serialize};

use crate::ocr::OcrJob;

const REQUEST_MAGIC: &[u8; 4] = b"QXRQ";
/// What a progress line on the child's stderr starts with: `QXPG <done> <total>`.
const PROGRESS_TAG: &str = "QXPG";
const RESPONSE_MAGIC: &[u8; 4] = b"QXRS";
/// Largest JSON header either side accepts.
const MAX_HEADER: u32 = 1024 * 1024;

/// What the child needs besides the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) format: String,
    pub(crate) max_pages: u32,
    pub(crate) max_chars: u64,
    pub(crate) max_inflated_bytes: u64,
    pub(crate) max_archive_entries: u32,
    /// Address-space limit of the child (0: none).
    pub(crate) memory_limit_bytes: u64,
    /// CPU-time limit of the child, in seconds (0: none).
    pub(crate) cpu_seconds: u64,
    /// Stack of the extraction thread.
    pub(crate) stack_bytes: u64,
    /// OCR of scanned pages, when on.
    #[serde(default)]
    pub(crate) ocr: Option<OcrJob>,
    /// The child waits for another request after answering this one (a warm child of
    /// [`ProcessExtractor`](crate::ProcessExtractor)); otherwise it exits.
    #[serde(default)]
    pub(crate) serve: bool,
}

impl Header {
    pub(crate) fn limits(&self) -> ExtractLimits {
        ExtractLimits {
            max_pages: self.max_pages,
            max_chars: self.max_chars,
            max_inflated_bytes: self.max_inflated_bytes,
            max_archive_entries: self.max_archive_entries,
        }
    }
}

/// The outcome, without the text itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Response {
    Ok {
        page_starts: Vec<u64>,
        title: Option<String>,
        #[serde(default)]
        ocr_pages: Vec<u32>,
        /// `[start, header_end, end]` of each table.
        #[serde(default)]
        tables: Vec<[u64; 3]>,
    },
    Encrypted,
    TooManyPages {
        pages: u32,
        limit: u32,
    },
    TooLarge {
        detail: String,
    },
    NoText,
    OcrFailed {
        detail: String,
    },
    Corrupt {
        detail: String,
    },
    Crashed {
        detail: String,
    },
}

pub(crate) fn write_request(
    out: &mut Vec<u8>,
    header: &Header,
    bytes: &[u8],
) -> Result<(), serde_json::Error> {
    let json = serde_json::to_vec(header)?;
    out.reserve(json.len() + bytes.len() + 16);
    out.extend_from_slice(REQUEST_MAGIC);
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads the header of a request (the body follows, see [`read_body`]).
pub(crate) fn read_header(input: &mut impl Read) -> io::Result<Header> {
    let json = read_frame(input, REQUEST_MAGIC)?;
    serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads the body of a request, at most `max` bytes.
pub(crate) fn read_body(input: &mut impl Read, max: u64) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    input.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request too large",
        ));
    }
    let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    input.take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

pub(crate) fn write_response(
    out: &mut impl Write,
    result: &Result<ExtractedText, ExtractError>,
) -> io::Result<()> {
    let (response, text) = match result {
        Ok(t) => (
            Response::Ok {
                page_starts: t.page_starts.clone(),
                title: t.title.clone(),
                ocr_pages: t.ocr_pages.clone(),
                tables: t
                    .tables
                    .iter()
                    .map(|s| [s.start, s.header_end, s.end])
                    .collect(),
            },
            t.text.as_str(),
        ),
        Err(e) => (
            match e {
                ExtractError::Encrypted => Response::Encrypted,
                ExtractError::TooManyPages { pages, limit } => Response::TooManyPages {
                    pages: *pages,
                    limit: *limit,
                },
                ExtractError::TooLarge(detail) => Response::TooLarge {
                    detail: detail.clone(),
                },
                ExtractError::NoText => Response::NoText,
                ExtractError::OcrFailed(detail) => Response::OcrFailed {
                    detail: detail.clone(),
                },
                ExtractError::Corrupt(detail) => Response::Corrupt {
                    detail: detail.clone(),
                },
                // The child has no clock or sub-process of its own: these cannot happen there.
                ExtractError::Crashed(detail) => Response::Crashed {
                    detail: detail.clone(),
                },
                ExtractError::TimedOut(_) | ExtractError::Unavailable(_) => Response::Crashed {
                    detail: "unexpected error".into(),
                },
            },
            "",
        ),
    };
    let json = serde_json::to_vec(&response)?;
    out.write_all(RESPONSE_MAGIC)?;
    out.write_all(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes())?;
    out.write_all(&json)?;
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Reads one whole response from `input` (its text at most `max_text` bytes), as
/// [`parse_response`] takes it; `Ok(None)` for a malformed one, an error when `input` ends
/// or fails first.
pub(crate) async fn read_response(
    input: &mut (impl tokio::io::AsyncRead + Unpin),
    max_text: u64,
) -> io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let mut head = [0u8; 8];
    input.read_exact(&mut head).await?;
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if &head[..4] != RESPONSE_MAGIC || len > MAX_HEADER {
        return Ok(None);
    }
    let mut out = head.to_vec();
    out.resize(8 + len as usize + 8, 0);
    input.read_exact(&mut out[8..]).await?;
    let at = out.len() - 8;
    let mut text_len = [0u8; 8];
    text_len.copy_from_slice(&out[at..]);
    let text_len = u64::from_le_bytes(text_len);
    if text_len > max_text {
        return Ok(None);
    }
    let Ok(text_len) = usize::try_from(text_len) else {
        return Ok(None);
    };
    out.resize(out.len() + text_len, 0);
    input.read_exact(&mut out[at + 8..]).await?;
    Ok(Some(out))
}

/// Parses a whole response; `None` for anything malformed.
pub(crate) fn parse_response(bytes: &[u8]) -> Option<Result<ExtractedText, ExtractError>> {
    let mut input = bytes;
    let json = read_frame(&mut input, RESPONSE_MAGIC).ok()?;
    let response: Response = serde_json::from_slice(&json).ok()?;
    let mut len = [0u8; 8];
    input.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    if input.len() != len {
        return None;
    }
    let text = std::str::from_utf8(input).ok()?;
    Some(match response {
        Response::Ok {
            page_starts,
            title,
            ocr_pages,
            tables,
        } => Ok(ExtractedText {
            text: text.to_owned(),
            page_starts,
            title,
            ocr_pages,
            tables: tables
                .into_iter()
                .map(|[start, header_end, end]| TableSpan {
                    start,
                    header_end,
                    end,
                })
                .collect(),
        }),
        Response::Encrypted => Err(ExtractError::Encrypted),
        Response::TooManyPages { pages, limit } => Err(ExtractError::TooManyPages { pages, limit }),
        Response::TooLarge { detail } => Err(ExtractError::TooLarge(detail)),
        Response::NoText => Err(ExtractError::NoText),
        Response::OcrFailed { detail } => Err(ExtractError::OcrFailed(detail)),
        Response::Corrupt { detail } => Err(ExtractError::Corrupt(detail)),
        Response::Crashed { detail } => Err(ExtractError::Crashed(detail)),
    })
}

fn read_frame(input: &mut impl Read, magic: &[u8; 4]) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 8];
    input.read_exact(&mut head)?;
    if &head[..4] != magic {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad magic"));
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_HEADER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "header too large",
        ));
    }
    let mut json = vec![0u8; len as usize];
    input.read_exact(&mut json)?;
    Ok(json)
}

/// The child's line telling the parent that `done` of `total` pages are read.
pub(crate) fn progress_line(done: u32, total: u32) -> String {
    format!("{PROGRESS_TAG} {done} {total}\n")
}

/// The line a warm child writes on its stderr when it is done with a file, before its
/// answer: whatever stderr said before it was about that file.
pub(crate) const FILE_END_LINE: &[u8] = b"QXFE\n";

/// Whether a line of the child's stderr (without its newline) is [`FILE_END_LINE`].
pub(crate) fn is_file_end(line: &[u8]) -> bool {
    line == &FILE_END_LINE[..FILE_END_LINE.len() - 1]
}

/// The pages of a progress line of the child's stderr (without its newline), or `None` when
/// the line is something else.
pub(crate) fn parse_progress(line: &[u8]) -> Option<(u32, u32)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line
        .strip_prefix(PROGRESS_TAG)?
        .strip_prefix(' ')?
        .split(' ');
    let done = words.next()?.parse().ok()?;
    let total = words.next()?.parse().ok()?;
    words.next().is_none().then_some((done, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_round_trip_and_nothing_else_parses() {
        let line = progress_line(3, 500);
        assert_eq!(parse_progress(line.trim_end().as_bytes()), Some((3, 500)));
        for other in [
            &b"QXPG 3"[..],
            b"QXPG 3 4 5",
            b"QXPG -1 4",
            b"QXPG3 4",
            b"thread 'x' has overflowed its stack",
            b"QXPG \xff 4",
        ] {
            assert_eq!(parse_progress(other), None, "{other:?}");
        }
    }

    #[test]
    fn request_round_trip() {
        let header = Header {
            format: "pdf".into(),
            max_pages: 1,
            max_chars: 2,
            max_inflated_bytes: 3,
            max_archive_entries: 4,
            memory_limit_bytes: 5,
            cpu_seconds: 6,
            stack_bytes: 7,
            ocr: None,
            serve: true,
        };
        let mut buf = Vec::new();
        write_request(&mut buf, &header, b"body").unwrap();
        let mut input = buf.as_slice();
        assert_eq!(read_header(&mut input).unwrap(), header);
        assert_eq!(read_body(&mut input, 100).unwrap(), b"body");
        let mut input = buf.as_slice();
        read_header(&mut input).unwrap();
        assert!(read_body(&mut input, 3).is_err());
    }

    #[test]
    fn response_round_trip() {
        let text = ExtractedText {
            text: "héllo\n\nworld".into(),
            page_starts: vec![0, 7],
            title: Some("T".into()),
            ocr_pages: vec![2],
            tables: vec![TableSpan {
                start: 1,
                header_end: 2,
                end: 3,
            }],
        };
        let mut buf = Vec::new();
        write_response(&mut buf, &Ok(text.clone())).unwrap();
        assert_eq!(parse_response(&buf).unwrap().unwrap(), text);
        let mut buf = Vec::new();
        write_response(
            &mut buf,
            &Err(ExtractError::TooManyPages { pages: 9, limit: 3 }),
        )
        .unwrap();
        assert!(matches!(
            parse_response(&buf),
            Some(Err(ExtractError::TooManyPages { pages: 9, limit: 3 }))
        ));
        assert!(parse_response(b"garbage").is_none());
        assert!(parse_response(&buf[..buf.len() - 1]).is_none());
    }
}
