//! PDF: lopdf loads the file (mending a broken cross-reference table), checks encryption and
//! the page count; pdf-extract reads each page (after [`quotes`] spelled out the operators it
//! ignores), and a page it fails, panics or finds no text on is read again by the lopdf-based
//! [`fallback`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use documents::{ExtractError, ExtractLimits, ExtractProgress};
use lopdf::{Document, Object, ObjectId};

mod fallback;
mod filters;
mod mend;
mod names;
mod quotes;

/// The pages and title of a PDF, each page's text cleaned and trimmed.
#[derive(Debug)]
pub(crate) struct PdfText {
    pub(crate) title: Option<String>,
    pub(crate) pages: Vec<String>,
}

/// Reads a PDF page by page, telling `progress` each page read.
pub(crate) fn pdf_to_text(
    bytes: &[u8],
    limits: &ExtractLimits,
    progress: &dyn ExtractProgress,
) -> Result<PdfText, ExtractError> {
    let (mut doc, mended) = load(bytes)?;
    filters::normalize(&mut doc);
    names::map_code_point_names(&mut doc);
    quotes::spell_out(&mut doc, limits.max_pages);
    let text = read_pages(&doc, limits, progress)?;
    if mended || text.pages.iter().any(|p| !p.is_empty()) {
        return Ok(text);
    }
    // No text at all: objects the table pointed past (a wrong stream `/Length` makes lopdf
    // drop the object) may be found by rebuilding the file.
    if let mend::Mended::Rebuilt(fixed) = mend::rebuild(bytes)
        && let Ok(mut again) = Document::load_mem(&fixed)
        && !again.is_encrypted()
    {
        filters::normalize(&mut again);
        names::map_code_point_names(&mut again);
        quotes::spell_out(&mut again, limits.max_pages);
        if let Ok(second) = read_pages(&again, limits, progress)
            && second.pages.iter().any(|p| !p.is_empty())
        {
            return Ok(second);
        }
    }
    Ok(text)
}

/// The text of every page: pdf-extract first, the fallback for a page it fails, panics or
/// finds no text on (a content stream lopdf parses only in part gives pdf-extract nothing,
/// and the fallback still reads what parses).
fn read_pages(
    doc: &Document,
    limits: &ExtractLimits,
    progress: &dyn ExtractProgress,
) -> Result<PdfText, ExtractError> {
    let pages: Vec<ObjectId> = doc.get_pages().into_values().collect();
    let count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    if count > limits.max_pages {
        return Err(ExtractError::TooManyPages {
            pages: count,
            limit: limits.max_pages,
        });
    }
    if pages.is_empty() {
        return Err(ExtractError::Corrupt("the PDF has no pages".into()));
    }

    let mut fallback = fallback::Fallback::new(doc);
    let mut texts = Vec::with_capacity(pages.len());
    let mut chars: u64 = 0;
    for (i, &page_id) in pages.iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let text = match primary(doc, number).map(|t| crate::clean_pdf_page(&t)) {
            Some(text) if !text.is_empty() => text,
            _ => crate::clean_pdf_page(&fallback.page_text(page_id)),
        };
        chars += u64::try_from(text.chars().count()).unwrap_or(u64::MAX) + 2;
        if chars > limits.max_chars.saturating_add(2) {
            return Err(crate::too_many_chars(limits));
        }
        texts.push(text);
        progress.pages(number, count);
    }
    Ok(PdfText {
        title: info_title(doc),
        pages: texts,
    })
}

/// pdf-extract's text of page `number`, or `None` when it fails or panics.
fn primary(doc: &Document, number: u32) -> Option<String> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut text = String::new();
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut output, number).map(|()| text)
    }));
    match result {
        Ok(Ok(text)) => Some(text),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Loads the document; a file whose cross-reference table is broken (it does not load, or
/// shows no page) is rebuilt first. The flag says whether it was.
fn load(bytes: &[u8]) -> Result<(Document, bool), ExtractError> {
    let rebuilt = || match mend::rebuild(bytes) {
        mend::Mended::Rebuilt(fixed) => match Document::load_mem(&fixed) {
            Ok(doc) if doc.is_encrypted() => Some(Err(ExtractError::Encrypted)),
            Ok(doc) => Some(Ok(doc)),
            Err(_) => None,
        },
        mend::Mended::Encrypted => Some(Err(ExtractError::Encrypted)),
        mend::Mended::Hopeless => None,
    };
    // An AES-128 file that left out its key length is given it, so that the empty password
    // opens it as it does in other readers (see `mend::with_aes_key_length`).
    let encrypted = || {
        mend::with_aes_key_length(bytes)
            .and_then(|patched| Document::load_mem(&patched).ok())
            .filter(|doc| !doc.is_encrypted() && !doc.get_pages().is_empty())
            .map(|doc| (doc, false))
            .ok_or(ExtractError::Encrypted)
    };
    match Document::load_mem(bytes) {
        Ok(doc) if doc.is_encrypted() => encrypted(),
        Ok(doc) if !doc.get_pages().is_empty() => Ok((doc, false)),
        Ok(doc) => match rebuilt() {
            Some(Ok(mended)) if !mended.get_pages().is_empty() => Ok((mended, true)),
            _ => Ok((doc, false)),
        },
        Err(lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword) => encrypted(),
        Err(e) => match rebuilt() {
            Some(result) => result.map(|doc| (doc, true)),
            None => Err(damaged(&e)),
        },
    }
}

/// A short reason, without object numbers or offsets.
fn damaged(e: &lopdf::Error) -> ExtractError {
    let what = match e {
        lopdf::Error::Xref(_) | lopdf::Error::MissingXrefEntry => "its cross-reference table",
        lopdf::Error::Parse(_) | lopdf::Error::Syntax(_) => "its syntax",
        lopdf::Error::Decompress(_) => "its compressed data",
        lopdf::Error::IO(_) => "it is truncated",
        _ => "its structure",
    };
    ExtractError::Corrupt(format!("damaged PDF ({what})"))
}

/// The `/Title` of the document information dictionary.
fn info_title(doc: &Document) -> Option<String> {
    let mut info = doc.trailer.get(b"Info").ok()?;
    for _ in 0..8 {
        if let Object::Reference(id) = info {
            info = doc.objects.get(id)?;
        }
    }
    let mut title = info.as_dict().ok()?.get(b"Title").ok()?;
    for _ in 0..8 {
        if let Object::Reference(id) = title {
            title = doc.objects.get(id)?;
        }
    }
    let title = lopdf::decode_text_string(title).ok()?;
    let title: String = title
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    (!title.is_empty()).then_some(title)
}
