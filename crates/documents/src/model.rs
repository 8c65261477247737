//! Types of the documents domain: collections, documents, chunks, ingestion jobs, formats and
//! the extracted text that flows from extraction to chunking.

use std::fmt;
use std::str::FromStr;

use kernel::{InvalidInput, TenantId};
use time::OffsetDateTime;

/// Gives a fieldless enum its wire names: `ALL`, `as_str` and `FromStr` (an unknown name is
/// [`UnknownValue`]).
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in a stable order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The wire name.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or(UnknownValue)
            }
        }
    };
}

kernel::define_id!(
    /// A collection (knowledge base).
    CollectionId
);
kernel::define_id!(
    /// An uploaded document.
    DocumentId
);
kernel::define_id!(
    /// One chunk of a document's text.
    ChunkId
);
kernel::define_id!(
    /// A background job (ingestion, reindexing).
    JobId
);

/// Longest collection name, in characters.
pub const MAX_COLLECTION_NAME: usize = 200;
/// Longest collection description, in characters.
pub const MAX_DESCRIPTION: usize = 2_000;
/// Longest stored document name, in characters.
pub const MAX_DOCUMENT_NAME: usize = 255;
/// Largest `metadata` object, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The formats Quire reads. The format of an upload is decided by its content (magic bytes),
/// checked against the extension of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// PDF, page by page.
    Pdf,
    /// Word (Office Open XML).
    Docx,
    /// HTML: title and main text.
    Html,
    /// Markdown.
    Markdown,
    /// Plain text (UTF-8, or UTF-16 with a BOM).
    Text,
    /// Comma-separated values: rows as text, with the header for context.
    Csv,
}

wire_names!(Format {
    Pdf => "pdf",
    Docx => "docx",
    Html => "html",
    Markdown => "markdown",
    Text => "text",
    Csv => "csv",
});

impl Format {
    /// The accepted file extensions (lower case, without the dot).
    #[must_use]
    pub const fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Pdf => &["pdf"],
            Format::Docx => &["docx"],
            Format::Html => &["html", "htm"],
            Format::Markdown => &["md", "markdown"],
            Format::Text => &["txt", "text"],
            Format::Csv => &["csv"],
        }
    }

    /// The usual media type.
    #[must_use]
    pub const fn media_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Html => "text/html",
            Format::Markdown => "text/markdown",
            Format::Text => "text/plain",
            Format::Csv => "text/csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored string that names no known variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown value")]
pub struct UnknownValue;

/// The tokenizers chunking can count with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tokenizer {
    /// OpenAI `cl100k_base` (GPT-4, GPT-3.5, text-embedding-3).
    #[default]
    Cl100kBase,
    /// OpenAI `o200k_base` (GPT-4o and later).
    O200kBase,
}

wire_names!(Tokenizer {
    Cl100kBase => "cl100k_base",
    O200kBase => "o200k_base",
});

/// How a collection cuts text into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkingSettings {
    max_tokens: u32,
    overlap: u32,
    tokenizer: Tokenizer,
}

impl Default for ChunkingSettings {
    /// 400 tokens with 40 overlap on `cl100k_base`.
    fn default() -> Self {
        Self {
            max_tokens: 400,
            overlap: 40,
            tokenizer: Tokenizer::Cl100kBase,
        }
    }
}

impl ChunkingSettings {
    /// Smallest chunk size.
    pub const MIN_TOKENS: u32 = 32;
    /// Largest chunk size.
    pub const MAX_TOKENS: u32 = 8_192;

    /// Validated settings: `max_tokens` in 32..=8192, `overlap` below half of it.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `chunking.max_tokens` or `chunking.overlap`.
    pub fn new(max_tokens: u32, overlap: u32, tokenizer: Tokenizer) -> Result<Self, InvalidInput> {
        if !(Self::MIN_TOKENS..=Self::MAX_TOKENS).contains(&max_tokens) {
            return Err(InvalidInput::field(
                "chunking.max_tokens",
                format!(
                    "must be between {} and {}",
                    Self::MIN_TOKENS,
                    Self::MAX_TOKENS
                ),
            ));
        }
        if overlap.saturating_mul(2) >= max_tokens {
            return Err(InvalidInput::field(
                "chunking.overlap",
                "must be less than half of max_tokens",
            ));
        }
        Ok(Self {
            max_tokens,
            overlap,
            tokenizer,
        })
    }

    /// Most tokens in one chunk.
    #[must_use]
    pub const fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Tokens repeated from the end of one chunk at the start of the next.
    #[must_use]
    pub const fn overlap(&self) -> u32 {
        self.overlap
    }

    /// The tokenizer that counts.
    #[must_use]
    pub const fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }
}

/// Changes to a collection's chunking, as a client asks for them: absent fields keep their
/// current values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkingChange {
    /// Most tokens per chunk.
    pub max_tokens: Option<u32>,
    /// Tokens shared by neighbouring chunks; when absent and `max_tokens` shrinks, the current
    /// overlap capped below half of the new size.
    pub overlap: Option<u32>,
    /// The tokenizer's wire name (`cl100k_base`, `o200k_base`).
    pub tokenizer: Option<String>,
}

impl ChunkingChange {
    /// `base` with these changes.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `chunking.tokenizer`, `chunking.max_tokens` or
    /// `chunking.overlap`.
    pub fn apply(&self, base: ChunkingSettings) -> Result<ChunkingSettings, InvalidInput> {
        let tokenizer = match &self.tokenizer {
            None => base.tokenizer(),
            Some(t) => t.parse::<Tokenizer>().map_err(|_| {
                InvalidInput::field("chunking.tokenizer", "must be cl100k_base or o200k_base")
            })?,
        };
        let max = self.max_tokens.unwrap_or(base.max_tokens());
        let overlap = self
            .overlap
            .unwrap_or_else(|| base.overlap().min(max.saturating_sub(1) / 2));
        ChunkingSettings::new(max, overlap, tokenizer)
    }
}

/// A validated collection name: 1 to 200 characters after trimming, no control characters, its
/// invisible characters removed ([`kernel::text::clean_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionName(String);

impl CollectionName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`InvalidInput`] on the `name` field.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let cleaned = kernel::text::clean_name(s);
        let s = cleaned.as_str();
        if s.is_empty()
            || s.chars().count() > MAX_COLLECTION_NAME
            || s.chars().any(char::is_control)
        {
            return Err(InvalidInput::field(
                "name",
                format!("must be 1 to {MAX_COLLECTION_NAME} characters, no control characters"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Wraps a stored name.
    #[must_use]
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates an optional description (up to 2,000 characters).
///
/// # Errors
/// [`InvalidInput`] on the `description` field.
pub fn parse_description(s: Option<&str>) -> Result<Option<String>, InvalidInput> {
    match s.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(InvalidInput::field(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        )),
        Some(d) => Ok(Some(d.to_owned())),
    }
}

/// The languages OCR reads scanned pages in: 1 to 8 Tesseract language codes (`eng`, `deu`,
/// `chi_sim`, `srp_latn`...), each 3 lower-case letters followed by at most two `_` parts of
/// 3 to 4 lower-case letters. Nothing else passes, so a value can never be read as an option or
/// a path by the OCR tool (which is never started through a shell anyway).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OcrLanguages(Vec<String>);

impl OcrLanguages {
    /// Most languages at once.
    pub const MAX: usize = 8;

    /// Validated languages, in the order given, duplicates removed.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `ocr_languages`.
    pub fn new<S: AsRef<str>>(codes: &[S]) -> Result<Self, InvalidInput> {
        let bad = |m: String| InvalidInput::field("ocr_languages", m);
        if codes.is_empty() {
            return Err(bad("must name at least one language".into()));
        }
        let mut out: Vec<String> = Vec::with_capacity(codes.len());
        for code in codes {
            let code = code.as_ref();
            if !Self::is_code(code) {
                return Err(bad(format!(
                    "{:?} is not a language code (three lower-case letters such as eng, deu or chi_sim)",
                    code.chars().take(32).collect::<String>()
                )));
            }
            if !out.iter().any(|c| c == code) {
                out.push(code.to_owned());
            }
        }
        if out.len() > Self::MAX {
            return Err(bad(format!("must name at most {} languages", Self::MAX)));
        }
        Ok(Self(out))
    }

    /// Parses Tesseract's form, `eng+deu` (as stored).
    ///
    /// # Errors
    /// [`InvalidInput`] when a code is not valid.
    pub fn parse_joined(s: &str) -> Result<Self, InvalidInput> {
        Self::new(&s.split('+').collect::<Vec<_>>())
    }

    /// Whether `code` is one language code of the allowed shape.
    #[must_use]
    pub fn is_code(code: &str) -> bool {
        let mut parts = code.split('_');
        let lower = |p: &str, min: usize, max: usize| {
            (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase())
        };
        let Some(first) = parts.next() else {
            return false;
        };
        let rest: Vec<&str> = parts.collect();
        lower(first, 3, 3) && rest.len() <= 2 && rest.iter().all(|p| lower(p, 3, 4))
    }

    /// The codes.
    #[must_use]
    pub fn codes(&self) -> &[String] {
        &self.0
    }

    /// Tesseract's form: the codes joined with `+`.
    #[must_use]
    pub fn joined(&self) -> String {
        self.0.join("+")
    }
}

/// A knowledge base: a named set of documents with its chunking settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// Id.
    pub id: CollectionId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// Name.
    pub name: CollectionName,
    /// Optional description.
    pub description: Option<String>,
    /// How its documents are cut into chunks.
    pub chunking: ChunkingSettings,
    /// The embedding model of its vectors; `None`: the configured default.
    pub embedding_model: Option<String>,
    /// The languages OCR reads its scanned pages in; `None`: the configured default.
    pub ocr_languages: Option<OcrLanguages>,
    /// How many of a search's first results are reranked (1 to [`MAX_RERANK_TOP_N`]);
    /// `None`: no reranking.
    pub rerank_top_n: Option<u32>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// Most results of a search a collection may have reranked.
pub const MAX_RERANK_TOP_N: u32 = 150;

/// Checks a collection's `rerank_top_n`.
///
/// # Errors
/// [`InvalidInput`] on `rerank_top_n` outside 1 to [`MAX_RERANK_TOP_N`].
pub fn check_rerank_top_n(n: Option<u32>) -> Result<(), InvalidInput> {
    match n {
        Some(n) if !(1..=MAX_RERANK_TOP_N).contains(&n) => Err(InvalidInput::field(
            "rerank_top_n",
            format!("must be between 1 and {MAX_RERANK_TOP_N}, or null (off)"),
        )),
        _ => Ok(()),
    }
}

/// Changes to a collection (absent fields stay).
#[derive(Debug, Clone, Default)]
pub struct CollectionPatch {
    /// New name.
    pub name: Option<CollectionName>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New chunking settings (apply to documents ingested or reindexed afterwards).
    pub chunking: Option<ChunkingSettings>,
    /// New embedding model (`Some(None)`: back to the default); the collection re-embeds in
    /// the background and search cuts over when it is done.
    pub embedding_model: Option<Option<String>>,
    /// New OCR languages (`Some(None)`: back to the default); apply to documents ingested or
    /// reindexed afterwards.
    pub ocr_languages: Option<Option<OcrLanguages>>,
    /// New reranking (`Some(None)`: off).
    pub rerank_top_n: Option<Option<u32>>,
}

/// Totals of a collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectionStats {
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Tokens over all chunks.
    pub tokens: u64,
    /// Bytes of the original files.
    pub bytes: u64,
}

/// Where a document is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is on it.
    Processing,
    /// Chunks are stored (and, with retrieval, indexed).
    Ready,
    /// Extraction failed for good; `error` says why.
    Failed,
}

wire_names!(DocumentStatus {
    Queued => "queued",
    Processing => "processing",
    Ready => "ready",
    Failed => "failed",
});

/// What the file name of an export archive's key starts with ([`BlobKey::for_export`]).
pub const EXPORT_PREFIX: &str = "export-";

/// Where an original file is kept in the blob store: `{tenant}/{document}`, never a client name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// The key of a document's original file.
    #[must_use]
    pub fn for_document(tenant: TenantId, document: DocumentId) -> Self {
        Self(format!("{tenant}/{document}"))
    }

    /// The key of an organization's export archive: `{tenant}/export-{export}.zip`, under the
    /// organization's prefix (erased with it) and never a document's (those are bare ids).
    #[must_use]
    pub fn for_export(tenant: TenantId, export: impl std::fmt::Display) -> Self {
        Self(format!("{tenant}/{EXPORT_PREFIX}{export}.zip"))
    }

    /// What the key of every blob of `tenant` starts with (`{tenant}/`).
    #[must_use]
    pub fn tenant_prefix(tenant: TenantId) -> String {
        format!("{tenant}/")
    }

    /// The organization the key belongs to: its prefix (`None` for a key that does not start
    /// with a tenant id, which no constructor makes).
    #[must_use]
    pub fn tenant(&self) -> Option<TenantId> {
        let (prefix, _) = self.0.split_once('/')?;
        TenantId::parse(prefix).ok()
    }

    /// Wraps a stored key.
    #[must_use]
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A document's name for display: the client's file name, without any path, trimmed to
/// 255 characters and free of control and invisible characters ([`kernel::text::clean_name`]:
/// `report\u{202E}exe.txt` is `reportexe.txt`). It never names a file on disk.
#[must_use]
pub fn display_name(raw: Option<&str>, format: Format) -> String {
    let base = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let clean: String = kernel::text::clean_name(base)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DOCUMENT_NAME)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        format!("untitled.{}", format.extensions()[0])
    } else {
        clean.to_owned()
    }
}

/// An uploaded document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Id.
    pub id: DocumentId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// The collection it belongs to, if any.
    pub collection_id: Option<CollectionId>,
    /// Display name (see [`display_name`]).
    pub name: String,
    /// Format, decided from the content.
    pub format: Format,
    /// Size of the original file.
    pub bytes: u64,
    /// SHA-256 of the original file, hex.
    pub content_hash: String,
    /// Pages (PDF), once extracted.
    pub pages: Option<u32>,
    /// Pages read by OCR (scanned pages without a text layer), once extracted.
    pub ocr_pages: u32,
    /// Where it is in its life.
    pub status: DocumentStatus,
    /// 0..1 through the current job's stages.
    pub progress: f32,
    /// The current job's stage, while `processing`.
    pub stage: Option<Stage>,
    /// Units of that stage ([`Stage::unit`]) done, while `processing`.
    pub done: u32,
    /// Units of that stage in all, while `processing` (0: not known yet).
    pub total: u32,
    /// Chunks stored.
    pub chunks: u32,
    /// Tokens over all chunks.
    pub tokens: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The client's metadata (a JSON object of at most 16 KiB).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The current (or last) job.
    pub job_id: Option<JobId>,
    /// Where the original file is.
    pub blob_key: BlobKey,
    /// Uploaded.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// List filters of documents.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    /// Only this collection.
    pub collection_id: Option<CollectionId>,
    /// Only this status.
    pub status: Option<DocumentStatus>,
}

/// One stored chunk of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Id.
    pub id: ChunkId,
    /// The document.
    pub document_id: DocumentId,
    /// Position in the document, from 0.
    pub ordinal: u32,
    /// The text.
    pub text: String,
    /// Tokens (by the collection's tokenizer).
    pub tokens: u32,
    /// The page it starts on (PDF), from 1.
    pub page: Option<u32>,
    /// Start, in characters (Unicode scalar values) of the extracted text.
    pub start: u64,
    /// End (exclusive), in characters of the extracted text.
    pub end: u64,
    /// Some of its text was read by OCR from a scanned page.
    pub ocr: bool,
}

/// A chunk as the chunker makes it, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDraft {
    /// Position in the document, from 0.
    pub ordinal: u32,
    /// The text: the characters `text[start..end]` of the extracted text, preceded, when the
    /// span continues a table past its header row, by that header row and a line break.
    pub text: String,
    /// Tokens.
    pub tokens: u32,
    /// The tokenizer `tokens` is the exact count of `text` by, when it is (the chunker's
    /// drafts, but for a window holding a run it counted in parts): an embedder that bills
    /// that tokenizer's count takes it instead of counting again. `None` (a chunk read back,
    /// a count by parts) makes the embedder count.
    pub tokens_by: Option<Tokenizer>,
    /// The page it starts on (PDF), from 1.
    pub page: Option<u32>,
    /// Start, in characters of the extracted text.
    pub start: u64,
    /// End (exclusive), in characters.
    pub end: u64,
    /// Some of its span lies on a page read by OCR.
    pub ocr: bool,
}

impl ChunkDraft {
    /// The tokens of `drafts` by one tokenizer, when each draft's count is exact by that
    /// tokenizer (`tokens_by`); `None` when one is not, or they differ, or there are none.
    #[must_use]
    pub fn counted<'a>(
        drafts: impl IntoIterator<Item = &'a ChunkDraft>,
    ) -> Option<(Tokenizer, u64)> {
        let mut by = None;
        let mut total = 0u64;
        for d in drafts {
            let t = d.tokens_by?;
            if *by.get_or_insert(t) != t {
                return None;
            }
            total += u64::from(d.tokens);
        }
        by.map(|t| (t, total))
    }
}

/// A chunk with the id it is stored (and indexed) under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChunk {
    /// The id it gets.
    pub id: ChunkId,
    /// The chunk.
    pub draft: ChunkDraft,
}

impl NewChunk {
    /// Gives each draft a new id.
    #[must_use]
    pub fn assign(drafts: Vec<ChunkDraft>) -> Vec<NewChunk> {
        drafts
            .into_iter()
            .map(|draft| NewChunk {
                id: ChunkId::new(),
                draft,
            })
            .collect()
    }
}

/// The text of a file, as extraction gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtractedText {
    /// All the text; pages are separated by a blank line.
    pub text: String,
    /// For paged formats (PDF): the character offset in `text` where each page starts,
    /// one entry per page, ascending. Empty for unpaged formats.
    pub page_starts: Vec<u64>,
    /// The document's title, when the format has one (HTML `<title>`, DOCX core properties).
    pub title: Option<String>,
    /// The pages (from 1, ascending) whose text was read by OCR.
    pub ocr_pages: Vec<u32>,
    /// The tables in `text`, in order, not overlapping.
    pub tables: Vec<TableSpan>,
}

/// Where a table is in the extracted text (characters): its header row is
/// `text[start..header_end]` (one line), its rows follow up to `end`. The chunker repeats the
/// header at the top of every chunk that starts inside the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpan {
    /// First character of the header row.
    pub start: u64,
    /// End (exclusive) of the header row.
    pub header_end: u64,
    /// End (exclusive) of the last row.
    pub end: u64,
}

impl ExtractedText {
    /// Pages (PDF), or `None` for unpaged formats.
    #[must_use]
    pub fn pages(&self) -> Option<u32> {
        (!self.page_starts.is_empty())
            .then(|| u32::try_from(self.page_starts.len()).unwrap_or(u32::MAX))
    }

    /// Whether any of the characters `start..end` lies on a page read by OCR.
    #[must_use]
    pub fn ocr_within(&self, start: u64, end: u64) -> bool {
        if self.ocr_pages.is_empty() || end <= start {
            return false;
        }
        let (Some(first), Some(last)) = (self.page_at(start), self.page_at(end - 1)) else {
            return false;
        };
        self.ocr_pages.iter().any(|p| (first..=last).contains(p))
    }

    /// The page (from 1) holding character offset `at`, for paged formats.
    #[must_use]
    pub fn page_at(&self, at: u64) -> Option<u32> {
        if self.page_starts.is_empty() {
            return None;
        }
        let idx = self.page_starts.partition_point(|&s| s <= at).max(1);
        u32::try_from(idx).ok()
    }
}

/// Limits extraction enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most pages of a PDF.
    pub max_pages: u32,
    /// Most characters of extracted text kept (a larger text fails as too large).
    pub max_chars: u64,
    /// Most bytes inflated from an archive (DOCX), all entries together.
    pub max_inflated_bytes: u64,
    /// Most entries in an archive (DOCX).
    pub max_archive_entries: u32,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_pages: 500,
            max_chars: 20_000_000,
            max_inflated_bytes: 200 * 1024 * 1024,
            max_archive_entries: 10_000,
        }
    }
}

/// The kinds of background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// First ingestion of an upload.
    Ingest,
    /// Rerunning the pipeline on a stored document.
    Reindex,
}

wire_names!(JobKind {
    Ingest => "ingest",
    Reindex => "reindex",
});

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting (first run or a retry after `run_at`).
    Queued,
    /// Leased by a worker.
    Running,
    /// Done.
    Succeeded,
    /// Failed for good on a permanent error (a hostile or empty file).
    Failed,
    /// Dead letter: transient failures used up every attempt; `error` is the last one.
    Dead,
    /// Cancelled (its document was deleted or reindexed again).
    Canceled,
}

wire_names!(JobStatus {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Dead => "dead",
    Canceled => "canceled",
});

impl JobStatus {
    /// Whether the job will not run again.
    #[must_use]
    pub const fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// The stages of the ingestion pipeline, each owning a slice of the progress 0..1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading the file's text.
    Extracting,
    /// Cutting it into chunks.
    Chunking,
    /// Embedding the chunks (retrieval).
    Embedding,
    /// Writing chunks and vectors to the indexes.
    Indexing,
}

wire_names!(Stage {
    Extracting => "extracting",
    Chunking => "chunking",
    Embedding => "embedding",
    Indexing => "indexing",
});

impl Stage {
    /// The overall progress when this stage is `fraction` (0..1) done.
    #[must_use]
    pub fn progress(self, fraction: f32) -> f32 {
        let (from, to) = match self {
            Stage::Extracting => (0.0, 0.4),
            Stage::Chunking => (0.4, 0.55),
            Stage::Embedding => (0.55, 0.9),
            Stage::Indexing => (0.9, 1.0),
        };
        from + (to - from) * fraction.clamp(0.0, 1.0)
    }

    /// What the stage counts: `pages` while extracting, `chunks` after.
    #[must_use]
    pub const fn unit(self) -> &'static str {
        match self {
            Stage::Extracting => "pages",
            Stage::Chunking | Stage::Embedding | Stage::Indexing => "chunks",
        }
    }
}

/// How far a running job is: its stage, the fraction through every stage, and how many units
/// of the stage ([`Stage::unit`]) are done of how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The stage it is in.
    pub stage: Stage,
    /// 0..1 through every stage ([`Stage::progress`]).
    pub fraction: f32,
    /// Units of the stage done.
    pub done: u32,
    /// Units of the stage in all; 0 while not known.
    pub total: u32,
}

impl Progress {
    /// `done` of `total` units of `stage` (0 of 0: the stage began, its size not known yet);
    /// the fraction follows from them.
    #[must_use]
    pub fn of(stage: Stage, done: u32, total: u32) -> Self {
        let done = done.min(total);
        #[allow(clippy::cast_precision_loss)] // a fraction for people
        let within = if total == 0 {
            0.0
        } else {
            done as f32 / total as f32
        };
        Self {
            stage,
            fraction: stage.progress(within),
            done,
            total,
        }
    }
}

/// A background job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// What it does.
    pub kind: JobKind,
    /// The document it works on.
    pub document_id: Option<DocumentId>,
    /// Where it is.
    pub status: JobStatus,
    /// The stage it is in, while running.
    pub stage: Option<Stage>,
    /// 0..1.
    pub progress: f32,
    /// Units of the stage ([`Stage::unit`]) done, while running.
    pub done: u32,
    /// Units of the stage in all, while running (0: not known yet).
    pub total: u32,
    /// Runs started so far (claims).
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
    /// Not before this time (backoff).
    pub run_at: OffsetDateTime,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Finished (any final status).
    pub finished_at: Option<OffsetDateTime>,
}

impl Job {
    /// A new queued job for a document.
    #[must_use]
    pub fn for_document(
        tenant_id: TenantId,
        kind: JobKind,
        document_id: DocumentId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: JobId::new(),
            tenant_id,
            kind,
            document_id: Some(document_id),
            status: JobStatus::Queued,
            stage: None,
            progress: 0.0,
            done: 0,
            total: 0,
            attempts: 0,
            error: None,
            run_at: now,
            created_at: now,
            finished_at: None,
        }
    }
}

/// Which jobs `GET /jobs` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this document's.
    pub document_id: Option<DocumentId>,
}

/// A job a worker holds: the lease token proves the hold on every later write, so a worker
/// whose lease expired (and whose job another worker took over) can change nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The job, as claimed (status `running`, attempts counted).
    pub job: Job,
    /// Proof of the lease.
    pub lease: uuid::Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(tokens: u32, by: Option<Tokenizer>) -> ChunkDraft {
        ChunkDraft {
            ordinal: 0,
            text: "x".into(),
            tokens,
            tokens_by: by,
            page: None,
            start: 0,
            end: 1,
            ocr: false,
        }
    }

    #[test]
    fn chunk_counts_stand_only_when_every_one_is_exact_by_one_tokenizer() {
        let cl = Some(Tokenizer::Cl100kBase);
        let o2 = Some(Tokenizer::O200kBase);
        assert_eq!(
            ChunkDraft::counted(&[draft(3, cl), draft(4, cl)]),
            Some((Tokenizer::Cl100kBase, 7))
        );
        assert_eq!(ChunkDraft::counted(&[draft(3, cl), draft(4, None)]), None);
        assert_eq!(ChunkDraft::counted(&[draft(3, cl), draft(4, o2)]), None);
        assert_eq!(ChunkDraft::counted(&[]), None);
    }

    #[test]
    fn chunking_rules() {
        assert!(ChunkingSettings::new(400, 40, Tokenizer::Cl100kBase).is_ok());
        assert!(ChunkingSettings::new(31, 0, Tokenizer::Cl100kBase).is_err());
        assert!(ChunkingSettings::new(8_193, 0, Tokenizer::Cl100kBase).is_err());
        assert!(ChunkingSettings::new(100, 50, Tokenizer::Cl100kBase).is_err());
        assert!(ChunkingSettings::new(100, 49, Tokenizer::O200kBase).is_ok());
        assert_eq!(ChunkingSettings::default().max_tokens(), 400);
        assert_eq!(ChunkingSettings::default().overlap(), 40);
    }

    #[test]
    fn chunking_changes_merge_over_the_current_settings() {
        let base = ChunkingSettings::new(400, 150, Tokenizer::O200kBase).expect("settings");
        let same = ChunkingChange::default().apply(base).expect("no change");
        assert_eq!(same, base);
        // A smaller size keeps the overlap below half of it, and the tokenizer stays.
        let smaller = ChunkingChange {
            max_tokens: Some(64),
            ..ChunkingChange::default()
        }
        .apply(base)
        .expect("smaller");
        assert_eq!(
            (smaller.max_tokens(), smaller.overlap(), smaller.tokenizer()),
            (64, 31, Tokenizer::O200kBase)
        );
        let bad = ChunkingChange {
            tokenizer: Some("gpt2".to_owned()),
            ..ChunkingChange::default()
        }
        .apply(base)
        .expect_err("unknown tokenizer");
        assert_eq!(bad.0[0].field, "chunking.tokenizer");
        let overlap = ChunkingChange {
            overlap: Some(200),
            ..ChunkingChange::default()
        };
        assert!(overlap.apply(base).is_err());
    }

    #[test]
    fn display_names_never_carry_paths_or_controls() {
        assert_eq!(
            display_name(Some("../../etc/passwd"), Format::Text),
            "passwd"
        );
        assert_eq!(
            display_name(Some("C:\\x\\report.pdf"), Format::Pdf),
            "report.pdf"
        );
        assert_eq!(
            display_name(Some("a\u{0}b\nc.txt"), Format::Text),
            "abc.txt"
        );
        assert_eq!(display_name(Some("  "), Format::Pdf), "untitled.pdf");
        assert_eq!(display_name(None, Format::Markdown), "untitled.md");
        assert_eq!(
            display_name(Some(&"x".repeat(1000)), Format::Text)
                .chars()
                .count(),
            MAX_DOCUMENT_NAME
        );
    }

    #[test]
    fn page_lookup() {
        let t = ExtractedText {
            text: "aaa\n\nbbb\n\nccc".into(),
            page_starts: vec![0, 5, 10],
            title: None,
            ocr_pages: Vec::new(),
            tables: Vec::new(),
        };
        assert_eq!(t.pages(), Some(3));
        assert_eq!(t.page_at(0), Some(1));
        assert_eq!(t.page_at(4), Some(1));
        assert_eq!(t.page_at(5), Some(2));
        assert_eq!(t.page_at(12), Some(3));
        assert_eq!(ExtractedText::default().page_at(3), None);
    }

    #[test]
    fn stage_progress_is_monotonic() {
        let mut last = 0.0;
        for &s in Stage::ALL {
            for f in [0.0, 0.5, 1.0] {
                let p = s.progress(f);
                assert!(p >= last, "{s:?} {f}");
                last = p;
            }
        }
        assert!((Stage::Indexing.progress(1.0) - 1.0).abs() < f32::EPSILON);
    }

    #[test]
    fn progress_counts_units_of_its_stage() {
        let p = Progress::of(Stage::Embedding, 32, 128);
        assert_eq!((p.done, p.total), (32, 128));
        assert!((p.fraction - Stage::Embedding.progress(0.25)).abs() < 1e-6);
        let unknown = Progress::of(Stage::Extracting, 0, 0);
        assert!(unknown.fraction.abs() < f32::EPSILON);
        let over = Progress::of(Stage::Indexing, 9, 4);
        assert_eq!(over.done, 4, "never more done than there is");
        assert_eq!(Stage::Extracting.unit(), "pages");
        assert_eq!(Stage::Embedding.unit(), "chunks");
    }

    #[test]
    fn wire_names_round_trip() {
        for &f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        for &s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        for &s in DocumentStatus::ALL {
            assert_eq!(s.as_str().parse::<DocumentStatus>(), Ok(s));
        }
    }
    #[test]
    fn ocr_languages_are_tesseract_codes_only() {
        let ok = OcrLanguages::new(&["eng", "deu", "chi_sim", "srp_latn", "chi_sim_vert", "eng"])
            .expect("valid");
        assert_eq!(ok.joined(), "eng+deu+chi_sim+srp_latn+chi_sim_vert");
        assert_eq!(
            OcrLanguages::parse_joined("eng+deu")
                .expect("valid")
                .codes(),
            ["eng", "deu"]
        );
        for bad in [
            "eng;rm -rf /",
            "eng deu",
            "eng+deu",
            "$(id)",
            "-l",
            "--psm",
            "../eng",
            "/usr/share/x",
            "ENG",
            "en",
            "engl",
            "eng_",
            "eng_s",
            "eng_abc_def_ghi",
            "",
            "e\u{301}ng",
        ] {
            let e = OcrLanguages::new(&[bad]).expect_err(bad);
            assert_eq!(e.0[0].field, "ocr_languages", "{bad}");
        }
        assert!(OcrLanguages::new::<&str>(&[]).is_err());
        let nine = [
            "aaa", "bbb", "ccc", "ddd", "eee", "fff", "ggg", "hhh", "iii",
        ];
        assert!(OcrLanguages::new(&nine).is_err());
        assert!(OcrLanguages::new(&nine[..8]).is_ok());
    }

    #[test]
    fn ocr_marks_follow_pages() {
        let t = ExtractedText {
            text: "aaa\n\nbbb\n\nccc".into(),
            page_starts: vec![0, 5, 10],
            ocr_pages: vec![2],
            ..ExtractedText::default()
        };
        assert!(!t.ocr_within(0, 3));
        assert!(t.ocr_within(0, 6));
        assert!(t.ocr_within(5, 8));
        assert!(!t.ocr_within(10, 13));
        assert!(!t.ocr_within(6, 6));
    }
}
