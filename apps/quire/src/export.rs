//! An organization's export archive (docs/exports.md): built by the `export_organization`
//! workflow into a temporary file (one page of rows or one original file in memory at a
//! time), stored through the `BlobStore` port under the organization's prefix (so erasing the
//! organization removes it: `{org}/export-{run}.zip`), and read back by `quire import`.
//!
//! The archive is a zip file: `manifest.json` (format, organization, time, counts, and the
//! SHA-256 and size of every other entry), `members.ndjson`, one `<table>.ndjson` per table of
//! [`store_sql::EXPORTED`] (the stored columns of each row; no secret: an API key's hash is
//! left out) and `files/<document-id>` (each document's original file).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use documents::{BlobKey, BlobStore};
use kernel::{AuditEvent, AuditLog, ClientInfo, Clock, Principal, TenantId};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use store_sql::SqlStore;

/// The archive format this build writes and reads.
pub const FORMAT: &str = "quire-export/1";

/// Builds, finds and deletes export archives.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// The rows.
    pub store: SqlStore,
    /// Original files and archives.
    pub blobs: Arc<dyn BlobStore>,
    /// The audit log (`export.completed`).
    pub audit: Arc<dyn AuditLog>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// How long an archive stays downloadable.
    pub ttl: Duration,
    /// Where archives are built before they are stored.
    pub scratch: PathBuf,
}

/// Where the archive of export `run` is kept: under the organization's prefix.
#[must_use]
pub fn archive_key(tenant: TenantId, run: workflows::RunId) -> BlobKey {
    BlobKey::for_export(tenant, run)
}

/// A zip writer that hashes each entry as it is written.
struct Archive {
    zip: zip::ZipWriter<std::fs::File>,
    entries: Vec<Value>,
    /// The entry being written: its name, hash and size so far.
    open: Option<(String, Sha256, u64)>,
}

impl Archive {
    /// Starts an entry (ending the one before).
    fn start(&mut self, name: &str) -> anyhow::Result<()> {
        self.end();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        self.zip
            .start_file(name, opts)
            .with_context(|| format!("starting {name} in the archive"))?;
        self.open = Some((name.to_owned(), Sha256::new(), 0));
        Ok(())
    }

    /// Appends to the open entry.
    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let Some((name, hash, n)) = self.open.as_mut() else {
            bail!("no entry is open");
        };
        self.zip
            .write_all(bytes)
            .with_context(|| format!("writing {name} to the archive"))?;
        hash.update(bytes);
        *n += bytes.len() as u64;
        Ok(())
    }

    /// Lists the open entry with its size and checksum.
    fn end(&mut self) {
        if let Some((name, hash, n)) = self.open.take() {
            self.entries.push(json!({
                "name": name,
                "bytes": n,
                "sha256": hex(&hash.finalize()),
            }));
        }
    }

    fn entry(&mut self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.start(name)?;
        self.write(bytes)?;
        self.end();
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn actor_of(p: Principal) -> Option<kernel::UserId> {
    match p {
        Principal::User(u) => Some(u),
        Principal::ApiKey(_) => None,
    }
}

impl Exporter {
    /// Builds the archive of `tenant` for `run`, stores it and returns the run's result.
    ///
    /// # Errors
    /// Storage failures (nothing is stored then).
    pub async fn build(
        &self,
        tenant: TenantId,
        actor: Principal,
        run: workflows::RunId,
    ) -> anyhow::Result<Value> {
        std::fs::create_dir_all(&self.scratch).context("creating the export folder")?;
        let path = self.scratch.join(format!("{run}.zip.part"));
        let result = self.build_at(&path, tenant, run).await;
        let _ = std::fs::remove_file(&path);
        let result = result?;
        kernel::audit::record(
            &*self.audit,
            AuditEvent {
                at: self.clock.now(),
                action: "export.completed",
                actor: actor_of(actor),
                tenant: Some(tenant),
                target: Some(format!("run={run} bytes={}", result["bytes"])),
                client: ClientInfo::default(),
                access: None,
            },
        )
        .await;
        Ok(result)
    }

    async fn build_at(
        &self,
        path: &Path,
        tenant: TenantId,
        run: workflows::RunId,
    ) -> anyhow::Result<Value> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .context("creating the archive file")?;
        let mut archive = Archive {
            zip: zip::ZipWriter::new(file),
            entries: Vec::new(),
            open: None,
        };
        let mut counts = serde_json::Map::new();

        let members = self.store.exported_members(tenant).await?;
        let mut ndjson = Vec::new();
        for m in &members {
            serde_json::to_writer(&mut ndjson, m).context("a member as JSON")?;
            ndjson.push(b'\n');
        }
        archive.entry("members.ndjson", &ndjson)?;
        counts.insert("members".to_owned(), json!(members.len()));

        let mut organization = None;
        let mut documents = Vec::new();
        // One page of rows in memory at a time.
        for table in store_sql::EXPORTED {
            archive.start(&format!("{table}.ndjson"))?;
            let mut n = 0_u64;
            for page in 0.. {
                let rows = self.store.tenant_rows(tenant, table, page).await?;
                if rows.is_empty() {
                    break;
                }
                let mut ndjson = Vec::new();
                for row in &rows {
                    if *table == "organizations" {
                        organization = Some(row.clone());
                    }
                    if *table == "documents" {
                        documents.push((
                            row["id"].as_str().unwrap_or_default().to_owned(),
                            row["blob_key"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                    serde_json::to_writer(&mut ndjson, row).context("a row as JSON")?;
                    ndjson.push(b'\n');
                    n += 1;
                }
                archive.write(&ndjson)?;
            }
            archive.end();
            counts.insert((*table).to_owned(), json!(n));
        }
        let organization = organization.context("the organization is gone")?;

        let mut files = 0_u64;
        for (id, key) in &documents {
            match self.blobs.read(&BlobKey::from_stored(key.clone())).await {
                Ok(bytes) => {
                    archive.entry(&format!("files/{id}"), &bytes)?;
                    files += 1;
                }
                // Deleted meanwhile, or a document whose upload never finished.
                Err(documents::BlobError::NotFound) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("reading an original file")),
            }
        }
        counts.insert("files".to_owned(), json!(files));

        let created = self.clock.now();
        let manifest = json!({
            "format": FORMAT,
            "organization": {
                "id": organization["id"],
                "slug": organization["slug"],
                "name": organization["name"],
            },
            "created_at": created.format(&time::format_description::well_known::Rfc3339)
                .context("formatting a time")?,
            "counts": counts,
            "not_exported": store_sql::LEFT_OUT.iter()
                .map(|(t, why)| json!({"table": t, "why": why}))
                .collect::<Vec<_>>(),
            "entries": archive.entries,
        });
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        archive
            .zip
            .start_file("manifest.json", opts)
            .context("starting the manifest")?;
        serde_json::to_writer_pretty(&mut archive.zip, &manifest).context("the manifest")?;
        let mut file = archive.zip.finish().context("finishing the archive")?;

        // Stored in parts, hashed on the way.
        file.rewind().context("rewinding the archive")?;
        let key = archive_key(tenant, run);
        let mut writer = self.blobs.writer(&key).await?;
        let mut hash = Sha256::new();
        let mut bytes = 0_u64;
        let mut buf = vec![0_u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).context("reading the archive")?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            writer.write(&buf[..n]).await?;
            bytes += n as u64;
        }
        writer.commit().await?;
        let expires = created + self.ttl;
        Ok(json!({
            "format": FORMAT,
            "bytes": bytes,
            "sha256": hex(&hash.finalize()),
            "counts": counts,
            "expires_at": expires.format(&time::format_description::well_known::Rfc3339)
                .context("formatting a time")?,
            "content_type": "application/zip",
            "download": format!("/api/v1/orgs/{tenant}/exports/{run}/download"),
        }))
    }
}

/// An archive read back and checked: every entry's SHA-256 and size match the manifest, no
/// entry is missing or unlisted.
#[derive(Debug)]
pub struct Checked {
    /// The manifest.
    pub manifest: Value,
    archive: zip::ZipArchive<std::fs::File>,
}

impl Checked {
    /// Opens `path` and checks it against its manifest.
    ///
    /// # Errors
    /// Not a zip file, no manifest, another format, a checksum or size that does not match,
    /// an entry missing or not listed.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut archive = zip::ZipArchive::new(file).context("the archive is not a zip file")?;
        let manifest: Value = {
            let entry = archive
                .by_name("manifest.json")
                .context("the archive has no manifest.json")?;
            serde_json::from_reader(entry.take(16 << 20)).context("manifest.json is not JSON")?
        };
        if manifest["format"] != FORMAT {
            bail!(
                "the archive's format is {}, this build reads {FORMAT}",
                manifest["format"]
            );
        }
        let entries = manifest["entries"]
            .as_array()
            .context("the manifest lists no entries")?;
        let mut listed = std::collections::HashSet::new();
        for e in entries {
            let name = e["name"].as_str().context("an entry without a name")?;
            listed.insert(name.to_owned());
            let mut entry = archive
                .by_name(name)
                .with_context(|| format!("{name} is listed in the manifest but missing"))?;
            let mut hash = Sha256::new();
            let n =
                std::io::copy(&mut entry, &mut hash).with_context(|| format!("reading {name}"))?;
            if Some(n) != e["bytes"].as_u64() || hex(&hash.finalize()) != e["sha256"] {
                bail!(
                    "{name} does not match its checksum in the manifest: the archive was changed"
                );
            }
        }
        for i in 0..archive.len() {
            let name = archive
                .name_for_index(i)
                .context("an entry without a name")?
                .to_owned();
            if name != "manifest.json" && !listed.contains(&name) {
                bail!("{name} is in the archive but not in its manifest: the archive was changed");
            }
        }
        Ok(Self { manifest, archive })
    }

    /// An entry's bytes (checked by [`Checked::open`]).
    ///
    /// # Errors
    /// Missing; unreadable.
    pub fn read(&mut self, name: &str) -> anyhow::Result<Vec<u8>> {
        let mut entry = self
            .archive
            .by_name(name)
            .with_context(|| format!("{name} is missing"))?;
        let mut out = Vec::new();
        entry
            .read_to_end(&mut out)
            .with_context(|| format!("reading {name}"))?;
        Ok(out)
    }

    /// An NDJSON entry's rows, all of them (the members: one line per member).
    ///
    /// # Errors
    /// Missing; a line that is not JSON.
    pub fn rows(&mut self, name: &str) -> anyhow::Result<Vec<Value>> {
        let mut lines = self.lines(name)?;
        let mut rows = Vec::new();
        while let Some(line) = lines.next_line()? {
            rows.push(serde_json::from_str(&line).with_context(|| format!("a line of {name}"))?);
        }
        Ok(rows)
    }

    /// An NDJSON entry read line by line: one line in memory at a time.
    ///
    /// # Errors
    /// Missing.
    pub fn lines(&mut self, name: &str) -> anyhow::Result<Lines<'_>> {
        let entry = self
            .archive
            .by_name(name)
            .with_context(|| format!("{name} is missing"))?;
        Ok(Lines {
            name: name.to_owned(),
            reader: std::io::BufReader::new(entry),
        })
    }

    /// An entry read one part of at most 1 MiB at a time (an original file, never whole in
    /// memory).
    ///
    /// # Errors
    /// Missing; unreadable.
    pub fn parts(&mut self, name: &str) -> anyhow::Result<Parts<'_>> {
        let entry = self
            .archive
            .by_name(name)
            .with_context(|| format!("{name} is missing"))?;
        Ok(Parts {
            name: name.to_owned(),
            entry,
        })
    }
}

/// The lines of an NDJSON entry ([`Checked::lines`]).
#[allow(missing_debug_implementations)]
pub struct Lines<'a> {
    name: String,
    reader: std::io::BufReader<zip::read::ZipFile<'a, std::fs::File>>,
}

impl Lines<'_> {
    /// The next non-empty line, without its end.
    ///
    /// # Errors
    /// Unreadable, not UTF-8.
    pub fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        use std::io::BufRead as _;
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .with_context(|| format!("reading a line of {}", self.name))?;
            if n == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if !line.is_empty() {
                return Ok(Some(line.to_owned()));
            }
        }
    }
}

/// An entry read in parts ([`Checked::parts`]).
#[allow(missing_debug_implementations)]
pub struct Parts<'a> {
    name: String,
    entry: zip::read::ZipFile<'a, std::fs::File>,
}

impl Parts<'_> {
    /// The next part, at most 1 MiB; `None` at the end.
    ///
    /// # Errors
    /// Unreadable.
    pub fn next_part(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut part = Vec::with_capacity(1 << 20);
        (&mut self.entry)
            .take(1 << 20)
            .read_to_end(&mut part)
            .with_context(|| format!("reading {}", self.name))?;
        Ok((!part.is_empty()).then_some(part))
    }
}

/// Rows an import loads per statement batch (and holds in memory at most).
const IMPORT_BATCH: usize = 500;

/// What `quire import` did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The organization's id (kept from the archive).
    pub id: String,
    /// Its slug.
    pub slug: String,
    /// Rows loaded per table.
    pub rows: Vec<(String, u64)>,
    /// Original files stored.
    pub files: u64,
    /// Members who had no account here: created without a password (they sign in with an
    /// emailed code, or set one with a password reset).
    pub new_accounts: Vec<String>,
    /// Vector spaces queued for rebuilding.
    pub spaces: usize,
}

/// Loads a checked archive into the deployment of `store`: refuses an organization whose id
/// or slug exists (importing twice changes nothing), maps members by email (creating missing
/// accounts without a password), stores the original files, loads the rows in one
/// transaction and queues the vectors' rebuild from the chunks (the deployment's workers fill
/// them).
///
/// # Errors
/// A tampered or unreadable archive, a taken id or slug, storage failures (the files stored
/// before a failure are removed).
pub async fn import(
    settings: &settings::Settings,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
    path: &Path,
) -> anyhow::Result<Imported> {
    use identity::ports::UserRepository as _;

    let mut archive = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Checked::open(&path))
            .await
            .context("checking the archive")??
    };
    let org = &archive.manifest["organization"];
    let id = org["id"]
        .as_str()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .context("the manifest names no organization id")?;
    let slug = org["slug"]
        .as_str()
        .context("the manifest names no organization slug")?
        .to_owned();
    if store.organization_taken(id, &slug).await? {
        bail!(
            "an organization with id {id} or slug {slug} exists in this deployment already \
             (was this archive imported before?); nothing was imported"
        );
    }
    let tenant = TenantId::from_uuid(id);

    // Members by email: an account here joins; a missing one is made without a password.
    let members: Vec<store_sql::ExportedMember> = archive
        .rows("members.ndjson")?
        .into_iter()
        .map(|v| serde_json::from_value(v).context("a line of members.ndjson"))
        .collect::<anyhow::Result<_>>()?;
    let mut remap = Vec::new();
    let mut new_accounts = Vec::new();
    for m in &members {
        let email = identity::EmailAddress::parse(&m.email)
            .map_err(|e| anyhow::anyhow!("a member's email {}: {e}", m.email))?;
        let user = match store.find_by_email(&email).await? {
            Some(u) => u,
            None => {
                let name = identity::DisplayName::parse(&m.name, "name")
                    .or_else(|_| identity::DisplayName::parse("Imported member", "name"))
                    .map_err(|e| anyhow::anyhow!("a member's name: {e}"))?;
                new_accounts.push(m.email.clone());
                store
                    .create(
                        identity::NewUser {
                            email,
                            name,
                            password_hash: None,
                            email_verified_at: None,
                        },
                        clock.now(),
                    )
                    .await?
            }
        };
        if user.id.as_uuid() != m.user_id {
            remap.push((m.user_id.to_string(), user.id.to_string()));
        }
    }

    // The files first, streamed part by part: a failure after leaves no rows pointing at
    // missing files.
    let blobs = crate::blob_store(settings, store)?;
    let file_names: Vec<String> = archive.manifest["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .filter(|n| n.starts_with("files/"))
        .map(str::to_owned)
        .collect();
    let mut files = 0_u64;
    let stored = async {
        for name in &file_names {
            let doc = name
                .strip_prefix("files/")
                .and_then(|d| documents::DocumentId::parse(d).ok())
                .with_context(|| format!("{name} names no document"))?;
            let mut w = blobs.writer(&BlobKey::for_document(tenant, doc)).await?;
            let mut parts = archive.parts(name)?;
            while let Some(part) = parts.next_part()? {
                w.write(&part).await?;
            }
            w.commit().await?;
            files += 1;
        }
        anyhow::Ok(())
    }
    .await;

    // Then the rows, table by table and line by line, in one transaction: at most one batch
    // of rows in memory, with the members' ids of this deployment and the documents' files
    // under this deployment's keys.
    let mut scopes: Vec<Option<documents::CollectionId>> = Vec::new();
    let loaded = match stored {
        Ok(()) => load_rows(store, &mut archive, tenant, &remap, &mut scopes).await,
        Err(e) => Err(e),
    };
    let rows = match loaded {
        Ok(rows) => rows,
        Err(e) => {
            if let Err(d) = blobs.delete_tenant(tenant).await {
                tracing::warn!(error = ?d, "removing the files of a failed import");
            }
            return Err(e);
        }
    };

    // Vectors: rebuilt from the chunks by this deployment's models.
    let ports = crate::retrieval_ports(
        settings,
        store,
        clock,
        Arc::new(kernel::metering::Unmetered),
    )
    .await?;
    let spaces = retrieval::Reembedder::new(ports, Duration::from_secs(60))
        .rebuild(tenant, &scopes)
        .await?;
    Ok(Imported {
        id: id.to_string(),
        slug,
        rows,
        files,
        new_accounts,
        spaces,
    })
}

/// Loads every exported table's rows of `archive` into `tenant`, in one transaction, one
/// batch of [`IMPORT_BATCH`] rows at a time; collects the documents' collections (the vector
/// spaces to rebuild) into `scopes`. Returns the rows per table.
async fn load_rows(
    store: &SqlStore,
    archive: &mut Checked,
    tenant: TenantId,
    remap: &[(String, String)],
    scopes: &mut Vec<Option<documents::CollectionId>>,
) -> anyhow::Result<Vec<(String, u64)>> {
    let import = store.begin_import(tenant).await?;
    let mut counts = Vec::new();
    for table in store_sql::EXPORTED {
        let name = format!("{table}.ndjson");
        let mut lines = archive.lines(&name)?;
        let mut n = 0_u64;
        loop {
            let mut batch = Vec::with_capacity(IMPORT_BATCH);
            while batch.len() < IMPORT_BATCH {
                let Some(mut line) = lines.next_line()? else {
                    break;
                };
                for (from, to) in remap {
                    line = line.replace(from, to);
                    line = line.replace(&from.replace('-', ""), &to.replace('-', ""));
                }
                let mut row: Value =
                    serde_json::from_str(&line).with_context(|| format!("a line of {name}"))?;
                if *table == "documents" {
                    let doc = row["id"]
                        .as_str()
                        .and_then(|s| documents::DocumentId::parse(s).ok())
                        .context("a document without an id")?;
                    let scope = row["collection_id"]
                        .as_str()
                        .and_then(|s| documents::CollectionId::parse(s).ok());
                    if !scopes.contains(&scope) {
                        scopes.push(scope);
                    }
                    row["blob_key"] = Value::from(BlobKey::for_document(tenant, doc).as_str());
                }
                batch.push(row);
            }
            if batch.is_empty() {
                break;
            }
            n += import.load(table, batch).await?;
        }
        counts.push(((*table).to_owned(), n));
    }
    import.commit().await?;
    Ok(counts)
}
