//! The embedded store: each document as a snapshot file plus an append-only op log on local disk, so that an acknowledged op survives `kill -9` (and, with [`FsyncPolicy::Always`], power loss).
//!
//! # Files
//! `data_dir/docs/<sha256(doc id) in hex>/` holds `log` (created by the first append) and
//! `snapshot` (created by the first compaction); both start with the doc id, which is checked on
//! load. Byte layouts are in the `codec` submodule. `log.tmp` and `snapshot.tmp` exist only while
//! a write is in progress; one found on load is left over from a crash and deleted.
//!
//! # Writes and crashes
//! An append is one `write` of all its records followed by `fdatasync`; the caller acknowledges
//! only after it returns. A crash during it leaves a torn tail: a prefix of the write, or with
//! power loss any subset of its pages. Load keeps the good records before the first bad frame
//! and truncates the rest (nothing there was acknowledged). A bad frame followed by a good
//! record of a *different* write cannot be a torn tail, since each write starts only after the
//! previous one is durable: that is corruption and the document is refused.
//!
//! Whole files (a new log, a snapshot, a compacted log) are written to a `.tmp` file, synced,
//! renamed over the real name, and the directory synced, so each name always holds a complete,
//! synced file. Crash points of [`DocumentStore::compact`]:
//! 1. while writing `snapshot.tmp`: old snapshot and full log are intact; the tmp file is deleted.
//! 2. after renaming the snapshot: new snapshot, old log; log records at or below the snapshot's
//!    revision are skipped on load, the rest follow it.
//! 3. while writing `log.tmp`: as 2, and the tmp file is deleted.
//! 4. after renaming the log: new snapshot, log holding only newer records. Done.
//!
//! A handle whose write failed half way (or whose write future was dropped) refuses further
//! writes: the caller reopens the document, and load's recovery decides what is on disk.
//!
//! With [`FsyncPolicy::Group`] an append to an existing log is written without a sync and made
//! durable by the node-wide group commit (`group_sync`): one `syncfs` per round for every
//! document that appended meanwhile. Everything else (new logs, snapshots, compactions,
//! directories) is synced as with `Always`. Since an append's write is durable before the next
//! append starts, recovery reasons about torn tails exactly as with `Always`.
//!
//! With [`FsyncPolicy::Never`] nothing is synced: `kill -9` loses nothing (the kernel still has
//! every write), but power loss may lose recent ops or leave a document that does not load.

pub(super) mod codec;
mod group_sync;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use super::{AppendBatch, DocumentStore, LogRecord, Snapshot, Store, StoreError, StoredDocument};
use crate::ids::DocId;

/// Whether writes wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` every append and every replaced file (and `fsync` their directories): an
    /// acknowledged op survives power loss.
    Always,
    /// As `Always`, but appends of all documents are made durable together, by one `syncfs` of
    /// the data dir's file system per round (Linux; elsewhere the same as `Always`). Far cheaper
    /// under many active documents; meant for a data dir on a file system of its own, since
    /// `syncfs` also flushes whatever else is dirty there.
    Group,
    /// Never sync: an acknowledged op survives a process crash but not power loss (tests, demos).
    Never,
}

impl FsyncPolicy {
    /// Whether files and directories are synced (everything but `Never`).
    fn syncs(self) -> bool {
        self != FsyncPolicy::Never
    }
}

/// Directory under the data dir that holds one directory per document.
const DOCS_DIR: &str = "docs";
/// A document's snapshot file.
const SNAPSHOT_FILE: &str = "snapshot";
/// A snapshot being written.
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";
/// A document's op log.
const LOG_FILE: &str = "log";
/// A log being written (a new document's first append, or a compaction).
const LOG_TMP_FILE: &str = "log.tmp";

/// How long [`Store::open`] waits for an earlier handle of the same document (or a write it
/// started) to finish. A restarted document actor can race the write task of its predecessor;
/// 30 s is far above any healthy write, and past it the disk is stuck and the open should fail
/// loudly rather than wait forever.
const DOC_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Holds a document's files for one handle (and for any blocking task that handle started).
type DocLock = Arc<OwnedMutexGuard<()>>;

/// The embedded store of one node. Use one per data dir per process: it keeps two handles of
/// one document from writing the same files at once.
#[derive(Debug)]
pub struct EmbeddedStore {
    docs_dir: PathBuf,
    fsync: FsyncPolicy,
    /// The group commit thread, with [`FsyncPolicy::Group`].
    group: Option<Arc<group_sync::GroupSync>>,
    /// One mutex per document with a live handle (pruned when unused).
    doc_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `data_dir`. Blocks briefly on the file system.
    pub fn open_dir(data_dir: &Path, fsync: FsyncPolicy) -> Result<EmbeddedStore, StoreError> {
        let docs_dir = data_dir.join(DOCS_DIR);
        fs::create_dir_all(&docs_dir)?;
        if fsync.syncs() {
            sync_dir(data_dir)?;
        }
        let fsync = if cfg!(target_os = "linux") || fsync != FsyncPolicy::Group {
            fsync
        } else {
            FsyncPolicy::Always
        };
        let group = match fsync {
            FsyncPolicy::Group => Some(Arc::new(group_sync::GroupSync::start(&docs_dir)?)),
            _ => None,
        };
        Ok(EmbeddedStore {
            docs_dir,
            fsync,
            group,
            doc_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The directory that holds `doc`'s files (it exists only once something was written).
    pub fn doc_dir(&self, doc: &DocId) -> PathBuf {
        self.docs_dir.join(doc_dir_name(doc))
    }

    /// Waits until no other handle of `doc` (nor a task it started) uses its files.
    async fn lock_doc(&self, doc: &DocId) -> Result<DocLock, StoreError> {
        let mutex = {
            let mut locks = self
                .doc_locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            locks.retain(|_, mutex| Arc::strong_count(mutex) > 1);
            Arc::clone(locks.entry(doc_dir_name(doc)).or_default())
        };
        match tokio::time::timeout(DOC_LOCK_WAIT, mutex.lock_owned()).await {
            Ok(guard) => Ok(Arc::new(guard)),
            Err(_) => Err(StoreError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "document {doc} is still open in this process (an earlier handle or its write \
                     has not finished after {DOC_LOCK_WAIT:?})"
                ),
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn open(
        &self,
        doc: &DocId,
    ) -> Result<(Box<dyn DocumentStore>, StoredDocument), StoreError> {
        let lock = self.lock_doc(doc).await?;
        let paths = Arc::new(DocPaths {
            dir: self.doc_dir(doc),
            docs_dir: self.docs_dir.clone(),
        });
        let fsync = self.fsync;
        let task_paths = Arc::clone(&paths);
        let task_doc = doc.clone();
        let task_lock = Arc::clone(&lock);
        let loaded = run_blocking(move || {
            let _lock = task_lock;
            load(&task_paths, &task_doc, fsync)
        })
        .await??;
        let handle = EmbeddedDocument {
            doc: doc.clone(),
            paths,
            fsync,
            group: self.group.clone(),
            log: loaded.log,
            snapshot_rev: loaded.snapshot_rev,
            kept_offsets: loaded.kept_offsets,
            lock,
        };
        Ok((Box::new(handle), loaded.stored))
    }
}

/// The paths a document's blocking tasks need.
#[derive(Debug)]
struct DocPaths {
    /// `docs/<hash>/`.
    dir: PathBuf,
    /// `docs/`, synced when a document directory is created.
    docs_dir: PathBuf,
}

impl DocPaths {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The open log file of a document, for appends (and reading back during compaction).
#[derive(Debug)]
struct LogFile {
    file: File,
    /// Bytes in the file, header included.
    len: u64,
}

/// What a handle knows about its log file.
#[derive(Debug)]
enum LogState {
    /// No log file yet: the first append creates it.
    Absent,
    /// The log file, open for appends.
    Open(LogFile),
    /// A write failed half way or was abandoned; the handle refuses writes until reopened.
    Broken(String),
}

/// Reason a handle is left broken when a write's future is dropped before the write finished.
const INTERRUPTED: &str = "an earlier write was interrupted before it finished";

/// One document's handle: owns its log file and the bookkeeping compaction needs.
#[derive(Debug)]
struct EmbeddedDocument {
    doc: DocId,
    paths: Arc<DocPaths>,
    fsync: FsyncPolicy,
    /// The node's group commit, with [`FsyncPolicy::Group`].
    group: Option<Arc<group_sync::GroupSync>>,
    log: LogState,
    /// Revision of the snapshot on disk (0 without one).
    snapshot_rev: u64,
    /// Byte offset in the log of each record after the snapshot: `kept_offsets[i]` holds
    /// revision `snapshot_rev + 1 + i`.
    kept_offsets: Vec<u64>,
    lock: DocLock,
}

impl EmbeddedDocument {
    /// The revision the next appended record must have.
    fn next_rev(&self) -> u64 {
        self.snapshot_rev + 1 + self.kept_offsets.len() as u64
    }

    /// Takes the log state out for a blocking task, leaving the handle broken until it is put
    /// back (so a dropped future leaves the handle refusing writes). A broken state is an error.
    fn take_log(&mut self) -> Result<LogState, StoreError> {
        match std::mem::replace(&mut self.log, LogState::Broken(INTERRUPTED.to_owned())) {
            LogState::Broken(reason) => {
                let error = io::Error::other(format!(
                    "store handle of document {} is unusable ({reason}); reopen the document",
                    self.doc
                ));
                self.log = LogState::Broken(reason);
                Err(StoreError::Io(error))
            }
            state => Ok(state),
        }
    }
}

#[async_trait::async_trait]
impl DocumentStore for EmbeddedDocument {
    async fn append(&mut self, batch: AppendBatch) -> Result<(), StoreError> {
        let expected = self.next_rev();
        if batch.first_rev() != expected {
            return Err(invalid_input(format!(
                "document {}: appending revision {} where {expected} comes next",
                self.doc,
                batch.first_rev()
            )));
        }
        let relative_offsets: Vec<u64> = batch.starts().map(|start| start as u64).collect();
        let bytes = batch.into_bytes();
        let state = self.take_log()?;
        // With group commit an append to an open log is only written here and synced below; a
        // new log is created fully synced, as with `Always`.
        let group = match (&self.group, &state) {
            (Some(group), LogState::Open(_)) => Some(Arc::clone(group)),
            _ => None,
        };
        let fsync = if group.is_some() {
            FsyncPolicy::Never
        } else {
            self.fsync
        };
        let paths = Arc::clone(&self.paths);
        let doc = self.doc.clone();
        let lock = Arc::clone(&self.lock);
        let (state, result) = run_blocking(move || {
            let _lock = lock;
            match state {
                LogState::Open(log) => append_to_log(log, &bytes, fsync),
                _ => create_log(&paths, &doc, &bytes, fsync),
            }
        })
        .await?;
        if let (Some(group), Ok(_)) = (group, &result) {
            // Until the sync answers, the records are on file but not durable: a dropped future
            // must leave the handle refusing writes (load sorts out what is on disk).
            if let Err(error) = group.sync().await {
                self.log = LogState::Broken(format!("a group sync failed: {error}"));
                return Err(error.into());
            }
        }
        self.log = state;
        let start = result?;
        self.kept_offsets
            .extend(relative_offsets.into_iter().map(|offset| start + offset));
        Ok(())
    }

    async fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let last_rev = self.next_rev() - 1;
        if snapshot.rev < self.snapshot_rev || snapshot.rev > last_rev {
            return Err(invalid_input(format!(
                "document {}: a snapshot at revision {} must lie between the stored snapshot ({}) \
                 and the last stored revision ({last_rev})",
                self.doc, snapshot.rev, self.snapshot_rev
            )));
        }
        let snapshot_bytes = codec::encode_snapshot(&self.doc, snapshot)
            .map_err(|detail| invalid_input(format!("document {}: {detail}", self.doc)))?;
        // In range: snapshot.rev - snapshot_rev <= kept_offsets.len().
        let keep_index = (snapshot.rev - self.snapshot_rev) as usize;
        let job = CompactJob {
            paths: Arc::clone(&self.paths),
            doc: self.doc.clone(),
            snapshot_bytes,
            keep_from: self.kept_offsets.get(keep_index).copied(),
            keep_count: self.kept_offsets.len() - keep_index,
            fsync: self.fsync,
        };
        let state = self.take_log()?;
        let lock = Arc::clone(&self.lock);
        let (state, result) = run_blocking(move || {
            let _lock = lock;
            compact_files(&job, state)
        })
        .await?;
        self.log = state;
        let rebase = result?;
        let kept = self.kept_offsets.split_off(keep_index);
        self.kept_offsets = match rebase {
            Some((old_start, new_start)) => kept
                .into_iter()
                .map(|offset| offset - old_start + new_start)
                .collect(),
            None => kept,
        };
        self.snapshot_rev = snapshot.rev;
        Ok(())
    }
}

/// What [`load`] found for a document.
struct Loaded {
    stored: StoredDocument,
    log: LogState,
    snapshot_rev: u64,
    kept_offsets: Vec<u64>,
}

/// Reads a document's snapshot and log, recovering from an interrupted write (see the module
/// docs), and with [`FsyncPolicy::Always`] makes what it returns durable: a record that was
/// written but never synced before a crash may be acknowledged again (by dedup) after it.
fn load(paths: &DocPaths, doc: &DocId, fsync: FsyncPolicy) -> Result<Loaded, StoreError> {
    let empty = || Loaded {
        stored: StoredDocument::default(),
        log: LogState::Absent,
        snapshot_rev: 0,
        kept_offsets: Vec::new(),
    };
    match fs::metadata(&paths.dir) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(empty()),
        Err(error) => return Err(error.into()),
    }
    for leftover in [SNAPSHOT_TMP_FILE, LOG_TMP_FILE] {
        if remove_if_present(&paths.file(leftover))? {
            tracing::warn!(%doc, file = leftover, "removed a file left over from an interrupted write");
        }
    }
    let snapshot = read_snapshot(&paths.file(SNAPSHOT_FILE), doc)?;
    let snapshot_rev = snapshot.as_ref().map_or(0, |snapshot| snapshot.rev);
    let (log, records, kept_offsets) = read_log(&paths.file(LOG_FILE), doc, snapshot_rev, fsync)?;
    if fsync.syncs() {
        sync_dir(&paths.dir)?;
        sync_dir(&paths.docs_dir)?;
    }
    Ok(Loaded {
        stored: StoredDocument {
            snapshot,
            log: records,
        },
        log,
        snapshot_rev,
        kept_offsets,
    })
}

/// Reads and checks the snapshot file, if there is one.
fn read_snapshot(path: &Path, doc: &DocId) -> Result<Option<Snapshot>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let size = file.metadata()?.len();
    if size > codec::MAX_SNAPSHOT_BYTES {
        return Err(corrupt(
            doc,
            format!(
                "snapshot file is {size} bytes, over {}",
                codec::MAX_SNAPSHOT_BYTES
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (stored_id, snapshot) = codec::decode_snapshot(&bytes)
        .map_err(|detail| corrupt(doc, format!("snapshot: {detail}")))?;
    if stored_id != doc.as_str() {
        return Err(corrupt(
            doc,
            format!("snapshot belongs to document {stored_id:?}"),
        ));
    }
    Ok(Some(snapshot))
}

/// Reads the log file: the records after the snapshot, their offsets, and the file open for
/// appends. Truncates a torn tail; refuses corruption, a foreign header and revision gaps.
fn read_log(
    path: &Path,
    doc: &DocId,
    snapshot_rev: u64,
    fsync: FsyncPolicy,
) -> Result<(LogState, Vec<LogRecord>, Vec<u64>), StoreError> {
    let mut file = match OpenOptions::new().read(true).append(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok((LogState::Absent, Vec::new(), Vec::new()));
        }
        Err(error) => return Err(error.into()),
    };
    // The log is bounded by compaction; everything in it is returned in memory anyway.
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        // Only a crash right after an unsynced rename (FsyncPolicy::Never) leaves an empty log:
        // it held nothing durable. The next append replaces it.
        tracing::warn!(%doc, "empty log file (interrupted first write); treating the document as new");
        return Ok((LogState::Absent, Vec::new(), Vec::new()));
    }
    let (stored_id, header_len) = codec::decode_log_header(&bytes)
        .map_err(|detail| corrupt(doc, format!("log header: {detail}")))?;
    if stored_id != doc.as_str() {
        return Err(corrupt(
            doc,
            format!("log belongs to document {stored_id:?}"),
        ));
    }
    let scan = codec::scan_log(&bytes, header_len).map_err(|at| {
        corrupt(
            doc,
            format!("log record at byte offset {}: {}", at.offset, at.detail),
        )
    })?;
    let mut records = Vec::with_capacity(scan.records.len());
    let mut kept_offsets = Vec::with_capacity(scan.records.len());
    for (offset, decoded) in scan.records {
        let rev = decoded.record.rev;
        if records.is_empty() && rev <= snapshot_rev {
            // Already in the snapshot: left by a compaction interrupted before its log rewrite.
            continue;
        }
        let expected = snapshot_rev + 1 + records.len() as u64;
        if rev != expected {
            return Err(corrupt(
                doc,
                format!(
                    "log record at byte offset {offset} has revision {rev}, expected {expected}"
                ),
            ));
        }
        records.push(decoded.record);
        kept_offsets.push(offset);
    }
    if let Some(reason) = scan.torn {
        tracing::warn!(
            %doc,
            offset = scan.valid_len,
            "truncating the torn tail of the log (an unacknowledged write): {reason}"
        );
        file.set_len(scan.valid_len)?;
    }
    if fsync.syncs() {
        file.sync_data()?;
    }
    Ok((
        LogState::Open(LogFile {
            file,
            len: scan.valid_len,
        }),
        records,
        kept_offsets,
    ))
}

/// Appends encoded records to an open log; returns the state to keep and where they start.
fn append_to_log(
    mut log: LogFile,
    bytes: &[u8],
    fsync: FsyncPolicy,
) -> (LogState, io::Result<u64>) {
    let start = log.len;
    let written = log.file.write_all(bytes).and_then(|()| {
        if fsync.syncs() {
            log.file.sync_data()
        } else {
            Ok(())
        }
    });
    match written {
        Ok(()) => {
            log.len += bytes.len() as u64;
            (LogState::Open(log), Ok(start))
        }
        // Some of the records may be on disk: only load can sort that out.
        Err(error) => (
            LogState::Broken(format!("a log append failed: {error}")),
            Err(error),
        ),
    }
}

/// A new document's first append: writes header and records to `log.tmp`, syncs, renames it to
/// `log` and syncs the directories, so `log` never exists without a complete header.
fn create_log(
    paths: &DocPaths,
    doc: &DocId,
    records: &[u8],
    fsync: FsyncPolicy,
) -> (LogState, io::Result<u64>) {
    let mut bytes = Vec::with_capacity(64 + records.len());
    codec::encode_log_header(doc, &mut bytes);
    let header_len = bytes.len() as u64;
    bytes.extend_from_slice(records);
    let tmp = paths.file(LOG_TMP_FILE);
    let file = match create_doc_dir(paths, fsync).and_then(|()| write_tmp(&tmp, &bytes, fsync)) {
        Ok(file) => file,
        // Nothing is in place under the real name.
        Err(error) => return (LogState::Absent, Err(error)),
    };
    if let Err(error) = fs::rename(&tmp, paths.file(LOG_FILE)) {
        let _ = fs::remove_file(&tmp);
        return (LogState::Absent, Err(error));
    }
    let log = LogFile {
        file,
        len: bytes.len() as u64,
    };
    match sync_dirs(paths, fsync) {
        Ok(()) => (LogState::Open(log), Ok(header_len)),
        Err(error) => (
            LogState::Broken(format!("syncing a new log failed: {error}")),
            Err(error),
        ),
    }
}

/// Everything a compaction's blocking task needs.
struct CompactJob {
    paths: Arc<DocPaths>,
    doc: DocId,
    snapshot_bytes: Vec<u8>,
    /// Offset of the first record to keep; `None` keeps none.
    keep_from: Option<u64>,
    /// How many records the kept bytes hold (checked while copying).
    keep_count: usize,
    fsync: FsyncPolicy,
}

/// Installs the snapshot, then rewrites the log without the records it covers. Returns the state
/// to keep and, if the log was rewritten, (old offset, new offset) of the first kept record.
fn compact_files(
    job: &CompactJob,
    state: LogState,
) -> (LogState, Result<Option<(u64, u64)>, StoreError>) {
    let mut log = match state {
        LogState::Open(log) => log,
        // No log: only the snapshot to write.
        state => {
            let result = create_doc_dir(&job.paths, job.fsync)
                .and_then(|()| install_snapshot(job))
                .map(|()| None)
                .map_err(StoreError::from);
            return (state, result);
        }
    };
    // Read (and check) what to keep before changing anything.
    let keep_from = job.keep_from.unwrap_or(log.len);
    let kept = match read_kept(&mut log, keep_from, job) {
        Ok(kept) => kept,
        Err(error) => return (LogState::Open(log), Err(error)),
    };
    // Crash points 1 and 2 (module docs): the old log stays complete and in use.
    if let Err(error) = install_snapshot(job) {
        return (LogState::Open(log), Err(error.into()));
    }
    // Crash point 3: `log.tmp` is deleted on load; the old log still follows the new snapshot.
    let mut bytes = Vec::with_capacity(64 + kept.len());
    codec::encode_log_header(&job.doc, &mut bytes);
    let new_start = bytes.len() as u64;
    bytes.extend_from_slice(&kept);
    let tmp = job.paths.file(LOG_TMP_FILE);
    let new_file = match write_tmp(&tmp, &bytes, job.fsync) {
        Ok(file) => file,
        Err(error) => return (LogState::Open(log), Err(error.into())),
    };
    if let Err(error) = fs::rename(&tmp, job.paths.file(LOG_FILE)) {
        let _ = fs::remove_file(&tmp);
        return (LogState::Open(log), Err(error.into()));
    }
    // Crash point 4: the new log is in place (the old file handle now points at nothing).
    let new_log = LogFile {
        file: new_file,
        len: bytes.len() as u64,
    };
    match sync_dir_if(&job.paths.dir, job.fsync) {
        Ok(()) => (LogState::Open(new_log), Ok(Some((keep_from, new_start)))),
        Err(error) => (
            LogState::Broken(format!("syncing a compacted log failed: {error}")),
            Err(error.into()),
        ),
    }
}

/// Reads the log from `keep_from` to its end and checks it holds exactly the expected frames.
fn read_kept(log: &mut LogFile, keep_from: u64, job: &CompactJob) -> Result<Vec<u8>, StoreError> {
    let len = usize::try_from(log.len - keep_from)
        .map_err(|_| io::Error::other("log too large to compact on this platform"))?;
    let mut kept = vec![0; len];
    log.file.seek(SeekFrom::Start(keep_from))?;
    log.file.read_exact(&mut kept)?;
    match codec::count_frames(&kept) {
        Ok(count) if count == job.keep_count => Ok(kept),
        Ok(count) => Err(corrupt(
            &job.doc,
            format!(
                "log after byte offset {keep_from} holds {count} records, expected {}",
                job.keep_count
            ),
        )),
        Err(at) => Err(corrupt(
            &job.doc,
            format!(
                "log record at byte offset {}: {}",
                keep_from + at.offset,
                at.detail
            ),
        )),
    }
}

/// Writes the snapshot to `snapshot.tmp`, syncs it, renames it over `snapshot`, syncs the dir.
fn install_snapshot(job: &CompactJob) -> io::Result<()> {
    let tmp = job.paths.file(SNAPSHOT_TMP_FILE);
    drop(write_tmp(&tmp, &job.snapshot_bytes, job.fsync)?);
    if let Err(error) = fs::rename(&tmp, job.paths.file(SNAPSHOT_FILE)) {
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir_if(&job.paths.dir, job.fsync)
}

/// Creates `path` afresh (replacing a leftover) with `bytes`, synced per `fsync`; returns it open
/// for reading and appending.
fn write_tmp(path: &Path, bytes: &[u8], fsync: FsyncPolicy) -> io::Result<File> {
    remove_if_present(path)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)?;
    let written = file.write_all(bytes).and_then(|()| {
        if fsync.syncs() {
            file.sync_data()
        } else {
            Ok(())
        }
    });
    if let Err(error) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(file)
}

/// Creates the document's directory and makes its entry in `docs/` durable.
fn create_doc_dir(paths: &DocPaths, fsync: FsyncPolicy) -> io::Result<()> {
    fs::create_dir_all(&paths.dir)?;
    sync_dir_if(&paths.docs_dir, fsync)
}

/// Makes the document directory's entries, and its own entry in `docs/`, durable.
fn sync_dirs(paths: &DocPaths, fsync: FsyncPolicy) -> io::Result<()> {
    sync_dir_if(&paths.dir, fsync)?;
    sync_dir_if(&paths.docs_dir, fsync)
}

fn sync_dir_if(dir: &Path, fsync: FsyncPolicy) -> io::Result<()> {
    if fsync.syncs() {
        sync_dir(dir)
    } else {
        Ok(())
    }
}

/// `fsync` of a directory, which makes renames and new entries in it durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Off Unix a directory cannot be opened to sync it; its entries are left to the file system.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Deletes `path`; `Ok(false)` if it was not there.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Name of a document's directory: ids contain `/` and may be too long for a file name.
fn doc_dir_name(doc: &DocId) -> String {
    hex::encode(Sha256::digest(doc.as_str().as_bytes()))
}

/// Runs blocking file work off the async runtime.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Io(io::Error::other(format!("store task failed: {error}"))))
}

fn corrupt(doc: &DocId, detail: String) -> StoreError {
    StoreError::Corrupt {
        doc: doc.clone(),
        detail,
    }
}

/// A caller broke the store's contract (a revision out of order, an unencodable record).
fn invalid_input(detail: String) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, detail))
}
