//! The access-token key file of a single-node install: created with one fresh key on first
//! start, so the embedded default works without configuration.
//!
//! Format: one PASERK secret key (`k4.secret.…`) per line, newest first; blank lines and lines
//! starting with `#` are ignored. To rotate, add a new key as the first line and remove the old
//! one after an access-token lifetime.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::PasetoTokens;
use crate::access::parse_secret_key;

const HEADER: &str = "\
# Quire access-token signing keys (PASERK k4.secret), newest first.
# The first key signs; every key listed verifies. Keep this file secret.
";

/// Reads the access-token keys in `path`, or creates the file (and its parent directories)
/// with one fresh key when it does not exist. On Unix a created file has mode `0600`.
///
/// Format: one PASERK secret key (`k4.secret.…`) per line, newest first; blank lines and lines
/// starting with `#` are ignored. To rotate, add a new key as the first line and remove the old
/// one after an access-token lifetime. An existing file readable by other users is used, with
/// a warning.
///
/// Returns the keys, newest first, and whether the file was just created.
///
/// # Errors
/// When the file cannot be read or written, holds no key, or holds a line that is not a valid
/// PASERK v4 secret key (the error names the line number, never its content).
pub fn load_or_create_key_file(path: &Path) -> anyhow::Result<(Vec<String>, bool)> {
    match fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            Ok((parse(&text, path)?, false))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => match create(path) {
            Ok(key) => Ok((vec![key], true)),
            // Another process created it between our read and our create: use theirs.
            Err(e) if is_already_exists(&e) => {
                let text = fs::read_to_string(path)
                    .with_context(|| format!("reading the key file {}", path.display()))?;
                Ok((parse(&text, path)?, false))
            }
            Err(e) => Err(e),
        },
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("reading the key file {}", path.display())))
        }
    }
}

fn is_already_exists(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == ErrorKind::AlreadyExists)
}

fn parse(text: &str, path: &Path) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parse_secret_key(line)
            .with_context(|| format!("line {} of the key file {}", n + 1, path.display()))?;
        keys.push(line.to_owned());
    }
    if keys.is_empty() {
        bail!("the key file {} holds no key", path.display());
    }
    Ok(keys)
}

/// Creates the file with one fresh key; fails with an `AlreadyExists` I/O error (unwrapped, so
/// the caller can tell) when the file exists.
fn create(path: &Path) -> anyhow::Result<String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut dirs = fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            dirs.mode(0o700);
        }
        dirs.create(dir)
            .with_context(|| format!("creating the directory {}", dir.display()))?;
    }
    let key = PasetoTokens::generate_key()?;

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(anyhow::Error::new)?;
    let written = file
        .write_all(format!("{HEADER}{key}\n").as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Do not leave a half-written file behind: the next start would refuse it.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(
            anyhow::Error::new(e).context(format!("writing the key file {}", path.display()))
        );
    }
    tracing::info!(path = %path.display(), "created a new access-token key file");
    Ok(key)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the access-token key file is accessible to other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn creates_then_reloads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/keys.paserk");

        let (keys, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        assert_eq!(keys.len(), 1);
        assert!(keys[0].starts_with("k4.secret."));
        assert!(PasetoTokens::new(&keys, "iss", "aud", Duration::from_secs(60)).is_ok());

        let (again, created) = load_or_create_key_file(&path).unwrap();
        assert!(!created);
        assert_eq!(again, keys);
    }

    #[cfg(unix)]
    #[test]
    fn created_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        load_or_create_key_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn reads_several_keys_skipping_comments_and_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (a, b) = (
            PasetoTokens::generate_key().unwrap(),
            PasetoTokens::generate_key().unwrap(),
        );
        fs::write(&path, format!("# newest first\n\n  {a}  \n# old\n{b}\n\n")).unwrap();
        let (keys, created) = load_or_create_key_file(&path).unwrap();
        assert!(!created);
        assert_eq!(keys, vec![a, b]);
    }

    #[test]
    fn refuses_an_empty_or_broken_file_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        fs::write(&path, "# nothing\n\n").unwrap();
        let err = load_or_create_key_file(&path).unwrap_err();
        assert!(format!("{err:#}").contains("no key"), "{err:#}");

        let good = PasetoTokens::generate_key().unwrap();
        let bad = "k4.secret.c2VjcmV0c2VjcmV0";
        fs::write(&path, format!("{good}\n{bad}\n")).unwrap();
        let err = load_or_create_key_file(&path).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains(bad) && !msg.contains(&good), "{msg}");
    }
}
