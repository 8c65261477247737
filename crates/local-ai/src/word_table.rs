//! The static model's word table saved in a folder (`quire-local-static.words`), so a restart
//! does not run every word of its corpus through the bundled model again.
//!
//! The file is keyed by what determines the vectors ([`identity`]): a file written by another
//! model, tokenizer, algorithm or platform is ignored, as is one that is corrupt, truncated or
//! not a word table at all (each is logged and the table is rebuilt, never read half-way).
//! Layout, little-endian:
//!
//! ```text
//! magic "QSWORDS1" | u32 identity length | identity (UTF-8) | u32 dimensions | u32 words
//! | per word: u8 length, the word (UTF-8), dimensions × f32 | u64 FNV-1a of all before
//! ```
//!
//! It is written whole to a temporary file of its own (the process id and a random number in
//! its name), flushed to disk and renamed over the old one, so a reader (another process
//! sharing the folder, or this one after a crash) sees the old table or the new one, never a
//! mix; two writers each rename a complete file and the last one wins.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};

/// The file's name in the folder.
pub(crate) const FILE_NAME: &str = "quire-local-static.words";

const MAGIC: &[u8; 8] = b"QSWORDS1";

/// Temporary files older than this are left-overs of a crashed writer and are removed.
const STALE_TEMPORARY: Duration = Duration::from_secs(600);

/// What determines a word's vector, as the file's key: the static model's algorithm (`algorithm`,
/// bumped whenever the words, the common direction or the vectors change), the bundled model
/// (pocket-encoder's identity, weights and tokenizer hashes), the function words (the common
/// direction is theirs) and the platform (float results may differ in the last bits).
pub(crate) fn identity(algorithm: &str, stop_words: &[&str]) -> String {
    let model = pocket_encoder::model_info();
    let mut h = Fnv::new();
    for w in stop_words {
        h.write(w.as_bytes());
        h.write(&[0]);
    }
    format!(
        "{algorithm}; {} {} tokenizer {}; stop words {:016x}; {} {}",
        model.id,
        model.revision,
        model.tokenizer_sha256,
        h.0,
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The largest file a table of `cap` words of at most `max_word` bytes can make.
fn largest(identity: &str, dims: usize, cap: usize, max_word: usize) -> u64 {
    let header = MAGIC.len() + 4 + identity.len() + 4 + 4;
    let entry = 1 + max_word + dims * 4;
    (header + cap * entry + 8) as u64
}

/// The words of the file at `path`: `Ok(None)` when there is none, an error (saying what is
/// wrong) when it is not a table of this `identity`, `dims`, at most `cap` words of at most
/// `max_word` bytes, whole and intact.
pub(crate) fn read(
    path: &Path,
    identity: &str,
    dims: usize,
    cap: usize,
    max_word: usize,
) -> anyhow::Result<Option<HashMap<String, Arc<[f32]>>>> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    ensure!(
        len <= largest(identity, dims, cap, max_word),
        "{len} bytes, more than a table of {cap} words can take"
    );
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, identity, dims, cap, max_word).map(Some)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            bail!("truncated at byte {}", self.at);
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> anyhow::Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

fn parse(
    bytes: &[u8],
    identity: &str,
    dims: usize,
    cap: usize,
    max_word: usize,
) -> anyhow::Result<HashMap<String, Arc<[f32]>>> {
    ensure!(
        bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] == MAGIC,
        "not a word table"
    );
    ensure!(bytes.len() >= MAGIC.len() + 8, "truncated");
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut h = Fnv::new();
    h.write(body);
    let mut stored = [0u8; 8];
    stored.copy_from_slice(sum);
    ensure!(
        h.0 == u64::from_le_bytes(stored),
        "the checksum does not match (corrupt or truncated)"
    );
    let mut r = Reader {
        bytes: body,
        at: MAGIC.len(),
    };
    let n = r.u32()?;
    let theirs = r.take(n)?;
    ensure!(
        theirs == identity.as_bytes(),
        "made for another model or algorithm ({:?})",
        String::from_utf8_lossy(theirs)
    );
    ensure!(r.u32()? == dims, "another dimension");
    let count = r.u32()?;
    ensure!(count <= cap, "{count} words, more than {cap}");
    let mut words = HashMap::with_capacity(count);
    for _ in 0..count {
        let n = usize::from(r.take(1)?[0]);
        ensure!(n > 0 && n <= max_word, "a word of {n} bytes");
        let word = std::str::from_utf8(r.take(n)?).context("a word that is not UTF-8")?;
        let vector: Vec<f32> = r
            .take(dims * 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        ensure!(
            vector.iter().all(|x| x.is_finite()),
            "a vector that is not finite"
        );
        ensure!(
            words.insert(word.to_owned(), vector.into()).is_none(),
            "a word twice"
        );
    }
    ensure!(
        r.at == body.len(),
        "{} bytes after the last word",
        body.len() - r.at
    );
    Ok(words)
}

/// The file's bytes for `words`.
fn encode(words: &[(String, Arc<[f32]>)], identity: &str, dims: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + identity.len() + words.len() * (16 + dims * 4));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(identity.len())?.to_le_bytes());
    out.extend_from_slice(identity.as_bytes());
    out.extend_from_slice(&u32::try_from(dims)?.to_le_bytes());
    out.extend_from_slice(&u32::try_from(words.len())?.to_le_bytes());
    for (w, v) in words {
        ensure!(v.len() == dims, "a vector of another dimension");
        out.push(u8::try_from(w.len()).context("a word too long")?);
        out.extend_from_slice(w.as_bytes());
        for x in v.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut h = Fnv::new();
    h.write(&out);
    out.extend_from_slice(&h.0.to_le_bytes());
    Ok(out)
}

/// Writes `words` to `path` (its folder made if missing) through a temporary file renamed
/// over it.
pub(crate) fn write(
    path: &Path,
    words: &[(String, Arc<[f32]>)],
    identity: &str,
    dims: usize,
) -> anyhow::Result<()> {
    let bytes = encode(words, identity, dims)?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = dir.join(format!(
        "{FILE_NAME}.{}.{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let written = (|| {
        // Owner-only, as the data folder's other files: the words are the documents' words.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&temporary)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Removes the temporary files of writers that stopped half-way (older than ten minutes, so a
/// live writer's is left alone).
pub(crate) fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{FILE_NAME}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMPORARY);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The file's path in `dir`.
pub(crate) fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<(String, Arc<[f32]>)> {
        vec![
            ("alpha".to_owned(), Arc::from(vec![0.5f32, -1.25, 3.0])),
            (
                "béta".to_owned(),
                Arc::from(vec![f32::MIN_POSITIVE, 0.0, -0.0]),
            ),
        ]
    }

    #[test]
    fn a_table_reads_back_exactly() {
        let bytes = encode(&table(), "id", 3).unwrap();
        let back = parse(&bytes, "id", 3, 10, 48).unwrap();
        assert_eq!(back.len(), 2);
        for (w, v) in table() {
            let got = &back[&w];
            let same = got
                .iter()
                .zip(v.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{w}: {got:?} against {v:?}");
        }
    }

    #[test]
    fn every_damage_is_refused() {
        let bytes = encode(&table(), "id", 3).unwrap();
        // Every truncation, and a flipped bit at every byte.
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n], "id", 3, 10, 48).is_err(), "cut at {n}");
            let mut flipped = bytes.clone();
            flipped[n] ^= 0x10;
            assert!(
                parse(&flipped, "id", 3, 10, 48).is_err(),
                "bit flipped at {n}"
            );
        }
        let err = parse(&bytes, "other", 3, 10, 48).unwrap_err();
        assert!(format!("{err}").contains("another model"), "{err}");
        assert!(parse(&bytes, "id", 4, 10, 48).is_err(), "another dimension");
        assert!(
            parse(&bytes, "id", 3, 1, 48).is_err(),
            "more words than the cap"
        );
        assert!(
            parse(&bytes, "id", 3, 10, 4).is_err(),
            "a word longer than allowed"
        );
        assert!(parse(b"{\"json\": true}", "id", 3, 10, 48).is_err());
    }

    /// Two writers (two processes sharing the data folder) replacing the file over and over
    /// while a reader reads it: every read is one writer's whole table, never a mix or a
    /// half-written file.
    #[test]
    fn racing_writers_never_show_a_reader_half_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let big = |x: f32| -> Vec<(String, Arc<[f32]>)> {
            (0..300)
                .map(|i| (format!("w{i}"), Arc::from(vec![x; 384])))
                .collect()
        };
        let (a, b) = (big(1.0), big(2.0));
        write(&path, &a, "id", 384).unwrap();
        std::thread::scope(|s| {
            for table in [&a, &b] {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..40 {
                        write(path, table, "id", 384).unwrap();
                    }
                });
            }
            for _ in 0..200 {
                let got = read(&path, "id", 384, 1000, 48).unwrap().unwrap();
                assert_eq!(got.len(), 300);
                let first = got["w0"][0];
                assert!(first == 1.0 || first == 2.0);
                assert!(got.values().all(|v| v.iter().all(|x| *x == first)), "a mix");
            }
        });
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only");
        }
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
