//! OCR of scanned PDF pages: a page without a text layer is rasterized by poppler's
//! `pdftoppm` and read by `tesseract`, both started as children of the extraction process (or
//! thread) without a shell, with an argument vector, an empty environment, a time limit per
//! page, and the resource limits of the extraction child (address space, CPU time), which
//! they inherit.
//!
//! Bounds: at most [`OcrConfig::max_pages`] pages are read per file; a page is rendered at
//! [`OcrConfig::dpi`], lowered so that its longer side never exceeds
//! [`OcrConfig::max_side_px`] pixels (a page a mile wide is as cheap as a letter page); each
//! page has [`OcrConfig::page_timeout_secs`] (then its tools are killed); the text of a page
//! is capped. The PDF is written once into a scratch folder that the caller owns and removes
//! ([`Scratch`]); the image goes from `pdftoppm` to `tesseract` through a pipe, never to disk.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use documents::{ExtractError, OcrLanguages};
use lopdf::{Document, Object};
use serde::{Deserialize, Serialize};

/// Most bytes of text kept from one page.
const MAX_PAGE_TEXT: u64 = 1024 * 1024;
/// Most bytes of a tool's stderr read (only searched, never quoted).
const MAX_STDERR: u64 = 16 * 1024;
/// How often a running tool is checked on.
const POLL: Duration = Duration::from_millis(20);

/// How scanned pages are read. Built by the composition root from the settings; the
/// languages of one extraction come with its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcrConfig {
    /// The `pdftoppm` executable (poppler-utils).
    pub pdftoppm: PathBuf,
    /// The `tesseract` executable.
    pub tesseract: PathBuf,
    /// Tesseract's data folder (`TESSDATA_PREFIX`), when not the one it was built with.
    #[serde(default)]
    pub tessdata: Option<PathBuf>,
    /// Languages when the collection names none, Tesseract's form (`eng+deu`).
    pub languages: String,
    /// Longest OCR of one page (rendering and reading), in seconds.
    pub page_timeout_secs: u64,
    /// Most pages read by OCR in one file; further pages without text stay empty.
    pub max_pages: u32,
    /// Resolution pages are rendered at.
    pub dpi: u32,
    /// Longest side of a rendered page, in pixels (the resolution is lowered to fit).
    pub max_side_px: u32,
}

impl Default for OcrConfig {
    /// `pdftoppm` and `tesseract` from `PATH` (as `/usr/bin`), English, 30 s a page, 50
    /// pages, 300 dpi, at most 5,000 pixels a side.
    fn default() -> Self {
        Self {
            pdftoppm: PathBuf::from("/usr/bin/pdftoppm"),
            tesseract: PathBuf::from("/usr/bin/tesseract"),
            tessdata: None,
            languages: "eng".to_owned(),
            page_timeout_secs: 30,
            max_pages: 50,
            dpi: 300,
            max_side_px: 5_000,
        }
    }
}

impl OcrConfig {
    /// The configuration with each tool given by a bare name (`tesseract`) looked up in this
    /// process's `PATH` (the extraction runs with an empty environment). A name not found
    /// stays as it is: OCR then fails naming it.
    #[must_use]
    pub fn resolved(mut self) -> Self {
        self.pdftoppm = which(self.pdftoppm);
        self.tesseract = which(self.tesseract);
        self
    }
}

fn which(tool: PathBuf) -> PathBuf {
    if tool.components().count() != 1 {
        return tool;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(&tool))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or(tool)
}

/// One extraction's OCR: the configuration, the languages, the scratch folder and when to
/// stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OcrJob {
    pub(crate) config: OcrConfig,
    /// Tesseract's form, validated.
    pub(crate) languages: String,
    /// A folder only this extraction uses (created and removed by its [`Scratch`]).
    pub(crate) scratch: PathBuf,
    /// Seconds from the start of the extraction after which no page is started.
    pub(crate) budget_secs: u64,
}

impl OcrJob {
    pub(crate) fn new(
        config: &OcrConfig,
        languages: Option<&OcrLanguages>,
        scratch: &Scratch,
        budget: Duration,
    ) -> Self {
        Self {
            languages: languages.map_or_else(|| config.languages.clone(), OcrLanguages::joined),
            config: config.clone(),
            scratch: scratch.path().to_owned(),
            budget_secs: budget.as_secs(),
        }
    }
}

/// A private folder for one extraction's OCR, removed with everything in it when dropped. The
/// caller that waits for the extraction owns it, so it is removed even when the extraction
/// process is killed.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new folder under the system's temporary folder (mode 0700 on Unix).
    pub(crate) fn new() -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("quire-ocr-{}-{n}-{nanos:08x}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path)?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What OCR did to a file's pages.
#[derive(Debug, Default)]
pub(crate) struct OcrOutcome {
    /// Pages (from 1) whose text OCR filled in.
    pub(crate) pages: Vec<u32>,
    /// Why OCR could not run or read a page, when it could not (the first reason).
    pub(crate) failure: Option<String>,
}

/// Reads the empty pages of `pages` (the text of each page of the PDF `bytes`) by OCR, in
/// order, within the job's bounds. Called only when some page is empty.
pub(crate) fn read_empty_pages(
    bytes: &[u8],
    pages: &mut [String],
    job: &OcrJob,
    started: Instant,
) -> OcrOutcome {
    let mut outcome = OcrOutcome::default();
    if !languages_are_safe(&job.languages) {
        outcome.failure = Some("the OCR languages are not valid".into());
        return outcome;
    }
    let empty: Vec<usize> = pages
        .iter()
        .enumerate()
        .filter(|(_, p)| p.trim().is_empty())
        .map(|(i, _)| i)
        .take(usize::try_from(job.config.max_pages).unwrap_or(usize::MAX))
        .collect();
    if empty.is_empty() {
        return outcome;
    }
    let pdf = job.scratch.join("input.pdf");
    if let Err(e) = std::fs::write(&pdf, bytes) {
        tracing::warn!(error = %e, "OCR: could not write the scratch copy");
        outcome.failure = Some("the scratch folder could not be written".into());
        return outcome;
    }
    let sizes = page_sizes(bytes, pages.len());
    let budget = Duration::from_secs(job.budget_secs);
    for i in empty {
        let left = budget.saturating_sub(started.elapsed());
        if left < Duration::from_secs(1) {
            outcome
                .failure
                .get_or_insert_with(|| "time ran out before every page was read".into());
            break;
        }
        let timeout = Duration::from_secs(job.config.page_timeout_secs.max(1)).min(left);
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let dpi = dpi_for(sizes.get(i).copied().flatten(), &job.config);
        match read_page(&pdf, number, dpi, job, timeout) {
            Ok(text) => {
                let text = crate::clean_pdf_page(&text);
                if !text.is_empty() {
                    pages[i] = text;
                    outcome.pages.push(number);
                }
            }
            Err(reason) => {
                tracing::warn!(page = number, reason = %reason, "OCR of a page failed");
                let missing_tool = reason.contains("not found") || reason.contains("language");
                outcome.failure.get_or_insert(reason);
                if missing_tool {
                    // Every other page would fail the same way.
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&pdf);
    outcome
}

/// The error of a file that has no text: why OCR could not read it, or plain "no text".
pub(crate) fn no_text(outcome: &OcrOutcome) -> ExtractError {
    match &outcome.failure {
        Some(reason) => ExtractError::OcrFailed(reason.clone()),
        None => ExtractError::NoText,
    }
}

/// Tesseract's `-l` value: codes of [`OcrLanguages`] joined by `+` (checked again here, the
/// value crosses a process boundary).
fn languages_are_safe(joined: &str) -> bool {
    !joined.is_empty()
        && joined.split('+').count() <= OcrLanguages::MAX
        && joined.split('+').all(OcrLanguages::is_code)
}

/// The resolution of a page of `size` (width, height in points): the configured one, lowered
/// so that the longer side fits `max_side_px`.
fn dpi_for(size: Option<(f64, f64)>, config: &OcrConfig) -> u32 {
    let dpi = config.dpi.clamp(36, 1200);
    let Some((w, h)) = size else {
        // Unknown size: the lowest resolution that still reads ordinary print.
        return dpi.min(150);
    };
    let longest_inches = w.abs().max(h.abs()) / 72.0;
    if !longest_inches.is_finite() || longest_inches <= 0.0 {
        return dpi.min(150);
    }
    let fit = f64::from(config.max_side_px.max(100)) / longest_inches;
    // Truncation is wanted: the result must not exceed the fit.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let fit = fit.clamp(1.0, 1200.0) as u32;
    dpi.min(fit).max(1)
}

/// The size in points of each page (its media box, inherited or not), `None` where unknown.
fn page_sizes(bytes: &[u8], count: usize) -> Vec<Option<(f64, f64)>> {
    let Ok(doc) = Document::load_mem(bytes) else {
        return vec![None; count];
    };
    let mut sizes: Vec<Option<(f64, f64)>> = doc
        .get_pages()
        .into_values()
        .map(|id| media_box(&doc, id))
        .collect();
    sizes.resize(count, None);
    sizes
}

fn media_box(doc: &Document, page: lopdf::ObjectId) -> Option<(f64, f64)> {
    let mut dict = doc.get_dictionary(page).ok()?;
    for _ in 0..32 {
        if let Ok(object) = dict.get(b"MediaBox") {
            let array = match object {
                Object::Reference(id) => doc.get_object(*id).ok()?.as_array().ok()?,
                other => other.as_array().ok()?,
            };
            let n: Vec<f64> = array
                .iter()
                .filter_map(|o| match o {
                    Object::Integer(i) => Some(*i as f64),
                    Object::Real(r) => Some(f64::from(*r)),
                    _ => None,
                })
                .collect();
            return (n.len() == 4).then(|| (n[2] - n[0], n[3] - n[1]));
        }
        let parent = dict.get(b"Parent").ok()?.as_reference().ok()?;
        dict = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// Renders page `number` and reads it: `pdftoppm` writes a grey image to its stdout, which is
/// `tesseract`'s stdin; `tesseract` writes the text to its stdout.
fn read_page(
    pdf: &Path,
    number: u32,
    dpi: u32,
    job: &OcrJob,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let page = number.to_string();
    let mut render = Command::new(&job.config.pdftoppm)
        .args(["-f", &page, "-l", &page, "-r", &dpi.to_string()])
        .args(["-gray", "-singlefile"])
        .arg(pdf)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tool_error("pdftoppm", &job.config.pdftoppm, &e))?;
    let Some(image) = render.stdout.take() else {
        kill(&mut render);
        return Err("pdftoppm has no output pipe".into());
    };
    let mut read = Command::new(&job.config.tesseract);
    read.args(["stdin", "stdout", "-l", &job.languages, "--psm", "3"])
        .env_clear()
        // One thread: the extraction's CPU limit and the machine's other work stay intact.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::from(image))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(data) = &job.config.tessdata {
        read.env("TESSDATA_PREFIX", data);
    }
    let spawned = read.spawn();
    // The command holds this process's copy of the pipe's read end: without dropping it,
    // `pdftoppm` would never see the pipe close when `tesseract` ends early.
    drop(read);
    let mut reader = match spawned {
        Ok(child) => child,
        Err(e) => {
            kill(&mut render);
            return Err(tool_error("tesseract", &job.config.tesseract, &e));
        }
    };
    let out = reader.stdout.take().map(|s| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = s.take(MAX_PAGE_TEXT).read_to_end(&mut text);
            text
        })
    });
    let err = reader.stderr.take().map(|s| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = s.take(MAX_STDERR).read_to_end(&mut text);
            text
        })
    });
    let statuses = wait_both(&mut render, &mut reader, deadline);
    let text = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let (rendered, read) = statuses.ok_or_else(|| format!("page {number} took too long"))?;
    if !rendered {
        return Err(format!("pdftoppm could not render page {number}"));
    }
    if !read {
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(if stderr.contains("Failed loading language") {
            format!(
                "tesseract could not load the languages {} (is the language pack installed?)",
                job.languages
            )
        } else {
            format!("tesseract could not read page {number}")
        });
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn tool_error(name: &str, path: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "{name} was not found at {} (is it installed?)",
            path.display()
        )
    } else {
        format!("{name} could not be started ({})", e.kind())
    }
}

/// Waits for both tools until `deadline`, then kills what still runs. `None` when time ran
/// out, else whether each succeeded.
fn wait_both(a: &mut Child, b: &mut Child, deadline: Instant) -> Option<(bool, bool)> {
    let mut done_a = None;
    let mut done_b = None;
    loop {
        if done_a.is_none() {
            done_a = a.try_wait().ok().flatten().map(|s| s.success());
        }
        if done_b.is_none() {
            done_b = b.try_wait().ok().flatten().map(|s| s.success());
        }
        if let (Some(x), Some(y)) = (done_a, done_b) {
            return Some((x, y));
        }
        // The reader gave up: the renderer has nobody to write to.
        if done_b == Some(false) {
            kill(a);
            return Some((done_a.unwrap_or(true), false));
        }
        if Instant::now() >= deadline {
            kill(a);
            kill(b);
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_fits_the_longest_side() {
        let config = OcrConfig::default();
        // A4 at 300 dpi fits 5,000 pixels.
        assert_eq!(dpi_for(Some((595.0, 842.0)), &config), 300);
        // A page 200 inches long is rendered at 25 dpi.
        assert_eq!(dpi_for(Some((14_400.0, 14_400.0)), &config), 25);
        assert_eq!(dpi_for(Some((f64::NAN, f64::NAN)), &config), 150);
        assert_eq!(dpi_for(Some((0.0, 0.0)), &config), 150);
        assert_eq!(dpi_for(None, &config), 150);
    }

    #[test]
    fn only_language_codes_pass() {
        assert!(languages_are_safe("eng"));
        assert!(languages_are_safe("eng+deu+chi_sim"));
        for bad in ["", "eng;rm -rf /", "-l", "../eng", "eng+", "ENG", "e ng"] {
            assert!(!languages_are_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn scratch_is_removed() {
        let scratch = Scratch::new().unwrap();
        let path = scratch.path().to_owned();
        std::fs::write(path.join("x"), b"x").unwrap();
        drop(scratch);
        assert!(!path.exists());
    }
}
