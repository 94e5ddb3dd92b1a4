//! The Redis store: each document's snapshot, op log and fenced owner in Redis, so that any node of a cluster can take a document over (single server or Sentinel).
//!
//! # Keys
//! With the default prefix `chorus:`, document `d` uses four keys in one hash slot (the `{d}`
//! hash tag; doc ids never contain braces), so the layout also fits Redis Cluster:
//! - `chorus:doc:{d}:owner`: hash `node`, `incarnation`, `token`. A released document keeps
//!   only `token`, the high-water mark every later claim must exceed.
//! - `chorus:doc:{d}:meta`: hash `rev` (last logged revision), `first` (revision of the first
//!   record in the log list); always `first + LLEN(log) - 1 = rev`.
//! - `chorus:doc:{d}:log`: list of log records, oldest first, each encoded as one record frame
//!   of the embedded store's codec (checksummed).
//! - `chorus:doc:{d}:snap`: the newest snapshot in the embedded store's snapshot encoding
//!   (checksummed, with the doc id).
//!
//! Node liveness is `chorus:live:<incarnation>` (written by the membership code, which renews
//! it with `SET … XX PX`, so a key that expired never comes back).
//!
//! # Ownership and fencing
//! [`Store::open`] claims the document, then loads it. The claim reads the owner; an owner that
//! is another incarnation whose liveness key exists refuses the claim with
//! [`StoreError::OwnedElsewhere`]; otherwise a compare-and-set script installs this incarnation
//! with a new token, larger than every earlier one (see `scripts.rs` for why it is not a bare
//! counter). Every append, compaction and release runs a script that first checks the owner is
//! still exactly (our incarnation, our token), and otherwise writes nothing and returns
//! [`StoreError::Fenced`].
//!
//! # Durability
//! An append is one script call (several for a huge batch, each checked) and, with
//! `wait_replicas > 0`, a `WAIT` in the same pipeline on the same connection, so that the
//! replicas' confirmation covers this write. Appends also check that the batch follows the
//! stored revision exactly, so a repeated or skipped batch is refused rather than logged twice
//! or with a hole. A failed append may or may not have reached Redis; none of its records may be
//! acknowledged, and a reload shows what is there.
//!
//! # Connections and deadlines
//! One multiplexed connection per store, replaced after any failure (with Sentinel the primary
//! is looked up again, so a failover is followed). Every call has its own deadline instead of
//! the client library's 500 ms default: `response_timeout_ms`, plus the size of what it sends at
//! [`MIN_TRANSFER_BYTES_PER_SEC`], plus `wait_timeout_ms` for an append with `WAIT`; loads get
//! [`LOAD_DEADLINE_FACTOR`] times the response timeout.

mod conn;
mod scripts;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Cmd, FromRedisValue, Pipeline, Value};

use self::conn::{invalid, Connector, Retry};
use self::scripts::{describe, optional_text, LuaScript, Reply, Scripts};
use super::embedded::codec;
use super::{AppendBatch, DocumentStore, LogRecord, Snapshot, Store, StoreError, StoredDocument};
use crate::ids::DocId;

/// Default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "chorus:";

/// Default deadline of one Redis call, in ms.
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 2_000;

/// Default time `WAIT` gives replicas to confirm an append, in ms.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 1_000;

/// Most records one script call appends; larger batches are split over several calls in one
/// pipeline (each fenced and revision-checked).
pub const MAX_RECORDS_PER_CALL: usize = 1_000;

/// Most record bytes one script call appends (a single larger record still goes alone).
pub const MAX_BYTES_PER_CALL: usize = 8 << 20;

/// Longest log a load accepts, in records. Compaction keeps logs far shorter (every
/// `compact_every_ops`, 10 000 by default); a longer one is reported as corrupt rather than
/// loaded into memory.
pub const MAX_LOG_RECORDS: usize = 1_000_000;

/// Most bytes (snapshot + log) a load accepts; the server checks before replying.
pub const MAX_LOAD_BYTES: usize = 1 << 30;

/// Largest value Redis stores by default (`proto-max-bulk-len`): a bigger snapshot is refused
/// before it is sent.
pub const MAX_VALUE_BYTES: usize = 512 << 20;

/// Largest revision or token the store handles: the scripts do arithmetic in Lua, whose numbers
/// are doubles, exact up to 2^53.
pub const MAX_SCRIPT_INT: u64 = 1 << 52;

/// Slowest transfer rate a call's deadline allows for, in bytes per second: a write's deadline
/// grows by its size over this rate, so that a large snapshot or batch is not cut off by a
/// deadline meant for small commands (and then retried forever).
pub const MIN_TRANSFER_BYTES_PER_SEC: u64 = 16 << 20;

/// A load's deadline, in multiples of the response timeout: its size is unknown in advance.
pub const LOAD_DEADLINE_FACTOR: u32 = 5;

/// How often a claim re-reads the owner when it changed between the read and the
/// compare-and-set, before giving up.
const CLAIM_ATTEMPTS: usize = 4;

/// Longest key prefix, node name or incarnation accepted.
const MAX_NAME_BYTES: usize = 200;

/// Where Sentinel runs and which master it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    /// Sentinel addresses as URLs, e.g. `redis://10.0.0.1:26379`.
    pub sentinels: Vec<String>,
    /// The master name the sentinels monitor.
    pub master_name: String,
}

/// How to reach Redis and who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db`; with Sentinel only its db, user and password count.
    pub url: String,
    /// Find the primary through these sentinels instead of `url`'s host.
    pub sentinel: Option<SentinelSettings>,
    /// Prefix of every key (tests use a unique one); no braces.
    pub key_prefix: String,
    /// This node's name, recorded as the owner of its documents.
    pub node_name: String,
    /// Unique per process start; ownership and liveness belong to an incarnation.
    pub incarnation: String,
    /// Replicas that must confirm each append (`WAIT`) before it counts; 0 = don't wait.
    pub wait_replicas: u32,
    /// How long `WAIT` waits for them, in ms.
    pub wait_timeout_ms: u64,
    /// Deadline of one Redis call (and of connecting), in ms; an append with `WAIT` gets
    /// `wait_timeout_ms` on top.
    pub response_timeout_ms: u64,
}

impl RedisSettings {
    /// Settings for `url` with the default prefix and timeouts, no Sentinel and no `WAIT`.
    pub fn new(
        url: impl Into<String>,
        node_name: impl Into<String>,
        incarnation: impl Into<String>,
    ) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            sentinel: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            node_name: node_name.into(),
            incarnation: incarnation.into(),
            wait_replicas: 0,
            wait_timeout_ms: DEFAULT_WAIT_TIMEOUT_MS,
            response_timeout_ms: DEFAULT_RESPONSE_TIMEOUT_MS,
        }
    }
}

/// A document's owner as recorded in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owning node's name.
    pub node: String,
    /// The owning process start.
    pub incarnation: String,
    /// The fencing token of its claim.
    pub token: u64,
}

/// The Redis store of one node (cheap to clone; clones share the connection).
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Connector,
    scripts: Scripts,
    prefix: String,
    node: String,
    incarnation: String,
    wait_replicas: u32,
    wait_timeout: Duration,
}

/// The keys of one document.
#[derive(Debug, Clone)]
struct DocKeys {
    owner: String,
    meta: String,
    log: String,
    snap: String,
}

impl RedisStore {
    /// Checks `settings` and connects (with Sentinel: asks the sentinels for the primary first).
    pub async fn connect(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        check_name("key prefix", &settings.key_prefix, true)?;
        check_name("node name", &settings.node_name, false)?;
        check_name("incarnation", &settings.incarnation, false)?;
        if settings.response_timeout_ms == 0 {
            return Err(invalid(
                "redis response timeout must be at least 1 ms".to_owned(),
            ));
        }
        if settings.wait_replicas > 0 && settings.wait_timeout_ms == 0 {
            // WAIT with timeout 0 blocks forever.
            return Err(invalid(
                "redis wait timeout must be at least 1 ms when waiting for replicas".to_owned(),
            ));
        }
        let wait_timeout = Duration::from_millis(settings.wait_timeout_ms);
        let response_timeout = Duration::from_millis(settings.response_timeout_ms);
        let conn = Connector::new(&settings)?;
        let inner = Inner {
            conn,
            scripts: Scripts::new(),
            prefix: settings.key_prefix,
            node: settings.node_name,
            incarnation: settings.incarnation,
            wait_replicas: settings.wait_replicas,
            wait_timeout,
        };
        let reply = inner
            .conn
            .query("ping", &::redis::cmd("PING"), response_timeout, Retry::Once)
            .await?;
        if scripts::text(&reply) != Some("PONG") {
            return Err(StoreError::Io(io::Error::other(format!(
                "redis ping: unexpected reply {}",
                describe(&reply)
            ))));
        }
        Ok(RedisStore {
            inner: Arc::new(inner),
        })
    }

    /// The key whose existence says incarnation `incarnation` is alive.
    pub fn liveness_key(&self, incarnation: &str) -> String {
        format!("{}live:{incarnation}", self.inner.prefix)
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.node
    }

    /// This process's incarnation.
    pub fn incarnation(&self) -> &str {
        &self.inner.incarnation
    }

    /// Who owns `doc` now, per Redis; `None` if nobody (never claimed, or released).
    pub async fn owner_of(&self, doc: &DocId) -> Result<Option<Owner>, StoreError> {
        let keys = self.inner.keys(doc);
        let raw = self.inner.read_owner(doc, &keys).await?;
        if raw.incarnation.is_empty() {
            return Ok(None);
        }
        let token = parse_int(&raw.token).ok_or_else(|| StoreError::Corrupt {
            doc: doc.clone(),
            detail: format!("owner token {:?} is not a number", raw.token),
        })?;
        Ok(Some(Owner {
            node: raw.node,
            incarnation: raw.incarnation,
            token,
        }))
    }

    /// Sends one command on the store's connection (which follows Sentinel failovers), e.g. for
    /// the membership code's liveness key; `what` names it in errors. Not retried.
    pub async fn query<T: FromRedisValue>(&self, what: &str, cmd: &Cmd) -> Result<T, StoreError> {
        let value = self
            .inner
            .conn
            .query(what, cmd, self.inner.conn.response_timeout(), Retry::Never)
            .await?;
        if let Value::ServerError(error) = &value {
            return Err(StoreError::Io(io::Error::other(format!(
                "redis {what}: server error {}: {}",
                error.code(),
                error.details().unwrap_or_default()
            ))));
        }
        ::redis::from_redis_value(value).map_err(|e| {
            StoreError::Io(io::Error::other(format!(
                "redis {what}: unexpected reply: {e}"
            )))
        })
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn open(
        &self,
        doc: &DocId,
    ) -> Result<(Box<dyn DocumentStore>, StoredDocument), StoreError> {
        let keys = self.inner.keys(doc);
        let token = self.inner.claim(doc, &keys).await?;
        let stored = self.inner.load(doc, &keys, &token).await?;
        tracing::debug!(doc = %doc, token = %token, "claimed and loaded document from redis");
        let handle = RedisDocumentStore {
            inner: self.inner.clone(),
            doc: doc.clone(),
            keys,
            token,
        };
        Ok((Box::new(handle), stored))
    }
}

/// One claimed document: every write is fenced by the token of the claim.
#[derive(Debug)]
pub struct RedisDocumentStore {
    inner: Arc<Inner>,
    doc: DocId,
    keys: DocKeys,
    /// The token as stored (decimal), compared as a string by the scripts.
    token: String,
}

#[async_trait::async_trait]
impl DocumentStore for RedisDocumentStore {
    async fn append(&mut self, batch: AppendBatch) -> Result<(), StoreError> {
        self.inner
            .append(&self.doc, &self.keys, &self.token, &batch)
            .await
    }

    async fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner
            .compact(&self.doc, &self.keys, &self.token, snapshot)
            .await
    }

    async fn release(&mut self) -> Result<(), StoreError> {
        let s = &self.inner.scripts.release;
        let call = ScriptCall {
            script: s,
            keys: vec![self.keys.owner.clone()],
            args: vec![
                self.inner.incarnation.as_bytes().to_vec(),
                self.token.as_bytes().to_vec(),
            ],
        };
        let reply = self
            .inner
            .eval(
                &self.doc,
                call,
                self.inner.conn.response_timeout(),
                Retry::Never,
            )
            .await?;
        match reply.status.as_str() {
            "OK" => {
                tracing::debug!(doc = %self.doc, "released document");
                Ok(())
            }
            "FENCED" => Err(StoreError::Fenced),
            _ => Err(unexpected(s, &reply)),
        }
    }
}

/// The owner hash as strings ('' for a missing field).
#[derive(Debug)]
struct RawOwner {
    node: String,
    incarnation: String,
    token: String,
}

/// One script invocation.
struct ScriptCall<'a> {
    script: &'a LuaScript,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl ScriptCall<'_> {
    fn evalsha(&self) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(&self.script.hash).arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(key);
        }
        for arg in &self.args {
            cmd.arg(arg.as_slice());
        }
        cmd
    }
}

impl Inner {
    fn keys(&self, doc: &DocId) -> DocKeys {
        let base = format!("{}doc:{{{}}}", self.prefix, doc.as_str());
        DocKeys {
            owner: format!("{base}:owner"),
            meta: format!("{base}:meta"),
            log: format!("{base}:log"),
            snap: format!("{base}:snap"),
        }
    }

    async fn read_owner(&self, doc: &DocId, keys: &DocKeys) -> Result<RawOwner, StoreError> {
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(&keys.owner)
            .arg("node")
            .arg("incarnation")
            .arg("token");
        let value = self
            .conn
            .query(
                "read owner",
                &cmd,
                self.conn.response_timeout(),
                Retry::Once,
            )
            .await?;
        let corrupt = |detail: String| StoreError::Corrupt {
            doc: doc.clone(),
            detail,
        };
        let fields = match value {
            Value::Array(fields) if fields.len() == 3 => fields,
            other => return Err(read_error("read owner", &other)),
        };
        let mut texts = Vec::with_capacity(3);
        for field in &fields {
            let text = optional_text(field).map_err(|e| corrupt(format!("owner hash: {e}")))?;
            texts.push(text.unwrap_or_default().to_owned());
        }
        let mut texts = texts.into_iter();
        Ok(RawOwner {
            node: texts.next().unwrap_or_default(),
            incarnation: texts.next().unwrap_or_default(),
            token: texts.next().unwrap_or_default(),
        })
    }

    /// Claims `doc` for this incarnation; returns the new token.
    async fn claim(&self, doc: &DocId, keys: &DocKeys) -> Result<String, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let current = self.read_owner(doc, keys).await?;
            if !current.incarnation.is_empty() && current.incarnation != self.incarnation {
                // The liveness key is in another hash slot, so it cannot be read inside the
                // script. Reading it first is safe: a liveness key that is gone never comes
                // back (membership renews with SET XX), so "dead" cannot turn into "alive"
                // before the compare-and-set, which fails if the owner changed meanwhile.
                let mut exists = ::redis::cmd("EXISTS");
                exists.arg(self.liveness_key(&current.incarnation));
                let alive = self
                    .conn
                    .query(
                        "check owner liveness",
                        &exists,
                        self.conn.response_timeout(),
                        Retry::Once,
                    )
                    .await?;
                match alive {
                    Value::Int(0) => {
                        tracing::info!(doc = %doc, node = %current.node, incarnation = %current.incarnation,
                            "taking over a document whose owner is not alive");
                    }
                    Value::Int(_) => {
                        return Err(StoreError::OwnedElsewhere {
                            node: current.node,
                            incarnation: current.incarnation,
                        });
                    }
                    other => return Err(read_error("check owner liveness", &other)),
                }
            }
            let s = &self.scripts.claim;
            let call = ScriptCall {
                script: s,
                keys: vec![keys.owner.clone()],
                args: vec![
                    current.incarnation.into_bytes(),
                    current.token.into_bytes(),
                    self.node.as_bytes().to_vec(),
                    self.incarnation.as_bytes().to_vec(),
                ],
            };
            // Not retried: after an unknown outcome the loop reads the owner again (and finds
            // either the old owner or this incarnation, and claims anew).
            let reply = self
                .eval(doc, call, self.conn.response_timeout(), Retry::Never)
                .await?;
            match reply.status.as_str() {
                "OK" => {
                    let token = reply.text(0).map_err(|e| unexpected_detail(s, e))?;
                    if parse_int(token).is_none_or(|t| t > MAX_SCRIPT_INT) {
                        return Err(StoreError::Corrupt {
                            doc: doc.clone(),
                            detail: format!(
                                "claim issued token {token:?}, not a number below 2^52"
                            ),
                        });
                    }
                    return Ok(token.to_owned());
                }
                "CHANGED" => continue,
                "BADTOKEN" => {
                    return Err(StoreError::Corrupt {
                        doc: doc.clone(),
                        detail: format!("owner token {} is not a usable number", reply.shown(0)),
                    })
                }
                _ => return Err(unexpected(s, &reply)),
            }
        }
        Err(StoreError::Io(io::Error::other(format!(
            "claim of {doc}: the owner changed {CLAIM_ATTEMPTS} times while claiming"
        ))))
    }

    /// Loads `doc` (which this incarnation must own with `token`).
    async fn load(
        &self,
        doc: &DocId,
        keys: &DocKeys,
        token: &str,
    ) -> Result<StoredDocument, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            doc: doc.clone(),
            detail,
        };
        let s = &self.scripts.load;
        let call = ScriptCall {
            script: s,
            keys: vec![
                keys.owner.clone(),
                keys.meta.clone(),
                keys.log.clone(),
                keys.snap.clone(),
            ],
            args: vec![
                self.incarnation.as_bytes().to_vec(),
                token.as_bytes().to_vec(),
                MAX_LOG_RECORDS.to_string().into_bytes(),
                MAX_LOAD_BYTES.to_string().into_bytes(),
            ],
        };
        let reply = self
            .eval(
                doc,
                call,
                self.conn.response_timeout() * LOAD_DEADLINE_FACTOR,
                Retry::Once,
            )
            .await?;
        match reply.status.as_str() {
            "OK" => {}
            "FENCED" => return Err(StoreError::Fenced),
            "TOOLONG" => {
                return Err(corrupt(format!(
                    "log holds {} records, over the limit of {MAX_LOG_RECORDS}",
                    reply.shown(0)
                )))
            }
            "TOOBIG" => {
                return Err(corrupt(format!(
                    "snapshot and log hold {} bytes, over the limit of {MAX_LOAD_BYTES}",
                    reply.shown(0)
                )))
            }
            _ => return Err(unexpected(s, &reply)),
        }
        let meta_rev = reply.text(0).map_err(|e| unexpected_detail(s, e))?;
        let meta_first = reply.text(1).map_err(|e| unexpected_detail(s, e))?;
        let meta_rev = match meta_rev {
            "" => 0,
            text => parse_int(text)
                .ok_or_else(|| corrupt(format!("meta rev {text:?} is not a number")))?,
        };
        let meta_first = match meta_first {
            "" => 1,
            text => parse_int(text)
                .ok_or_else(|| corrupt(format!("meta first {text:?} is not a number")))?,
        };
        let snapshot = match reply.rest.get(2) {
            Some(Value::BulkString(bytes)) if bytes.is_empty() => None,
            Some(Value::BulkString(bytes)) => {
                let (id, snapshot) =
                    codec::decode_snapshot(bytes).map_err(|e| corrupt(format!("snapshot: {e}")))?;
                if id != doc.as_str() {
                    return Err(corrupt(format!("snapshot belongs to document {id:?}")));
                }
                Some(snapshot)
            }
            Some(other) => {
                return Err(unexpected_detail(
                    s,
                    format!("snapshot is {}", describe(other)),
                ))
            }
            None => return Err(unexpected_detail(s, "reply has no snapshot".to_owned())),
        };
        let entries = match reply.rest.get(3) {
            Some(Value::Array(entries)) => entries,
            Some(other) => return Err(unexpected_detail(s, format!("log is {}", describe(other)))),
            None => return Err(unexpected_detail(s, "reply has no log".to_owned())),
        };
        if entries.len() > MAX_LOG_RECORDS {
            return Err(corrupt(format!(
                "log holds {} records, over the limit of {MAX_LOG_RECORDS}",
                entries.len()
            )));
        }
        let expected_last = meta_first
            .checked_add(entries.len() as u64)
            .and_then(|end| end.checked_sub(1));
        if expected_last != Some(meta_rev) {
            return Err(corrupt(format!(
                "meta says revisions {meta_first}..={meta_rev} but the log holds {} records",
                entries.len()
            )));
        }
        let mut log = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let Value::BulkString(bytes) = entry else {
                return Err(corrupt(format!("log entry {index} is {}", describe(entry))));
            };
            let record =
                decode_record(bytes).map_err(|e| corrupt(format!("log entry {index}: {e}")))?;
            let expected = meta_first + index as u64;
            if record.rev != expected {
                return Err(corrupt(format!(
                    "log entry {index} has revision {}, expected {expected}",
                    record.rev
                )));
            }
            log.push(record);
        }
        let base = snapshot.as_ref().map_or(0, |snapshot| snapshot.rev);
        if base > meta_rev {
            return Err(corrupt(format!(
                "snapshot is at revision {base}, after the last logged revision {meta_rev}"
            )));
        }
        if meta_first > base + 1 {
            return Err(corrupt(format!(
                "revisions {}..={} are missing between the snapshot and the log",
                base + 1,
                meta_first - 1
            )));
        }
        log.retain(|record| record.rev > base);
        Ok(StoredDocument { snapshot, log })
    }

    async fn append(
        &self,
        doc: &DocId,
        keys: &DocKeys,
        token: &str,
        batch: &AppendBatch,
    ) -> Result<(), StoreError> {
        let refuse =
            |detail: String| StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, detail));
        // The batch's revisions are consecutive from 1 or more (`AppendBatch::encode`).
        if batch.last_rev() > MAX_SCRIPT_INT {
            return Err(refuse(format!(
                "append to {doc}: revision {} is over 2^52",
                batch.last_rev()
            )));
        }
        let encoded: Vec<&[u8]> = batch.records().collect();
        let rev_of = |index: usize| batch.first_rev() + index as u64;
        // Split into script calls of bounded size, all in one pipeline.
        let mut calls = Vec::new();
        let mut firsts = Vec::new();
        let mut start = 0;
        while start < encoded.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < encoded.len()
                && end - start < MAX_RECORDS_PER_CALL
                && (end == start || bytes + encoded[end].len() <= MAX_BYTES_PER_CALL)
            {
                bytes += encoded[end].len();
                end += 1;
            }
            let prev = rev_of(start) - 1;
            let last = rev_of(end - 1);
            let mut args = Vec::with_capacity(4 + end - start);
            args.push(self.incarnation.as_bytes().to_vec());
            args.push(token.as_bytes().to_vec());
            args.push(prev.to_string().into_bytes());
            args.push(last.to_string().into_bytes());
            args.extend(encoded[start..end].iter().map(|record| record.to_vec()));
            firsts.push(rev_of(start));
            calls.push(ScriptCall {
                script: &self.scripts.append,
                keys: vec![keys.owner.clone(), keys.meta.clone(), keys.log.clone()],
                args,
            });
            start = end;
        }
        drop(encoded);
        let wait = (self.wait_replicas > 0).then_some((self.wait_replicas, self.wait_timeout));
        let (replies, confirmed) = self
            .eval_pipeline(
                doc,
                &calls,
                wait,
                self.conn.response_timeout(),
                Retry::Never,
            )
            .await?;
        for (first_rev, reply) in firsts.into_iter().zip(replies) {
            match reply.status.as_str() {
                "OK" => {}
                "FENCED" => return Err(StoreError::Fenced),
                "GAP" => {
                    return Err(StoreError::Corrupt {
                        doc: doc.clone(),
                        detail: format!(
                            "append of revisions from {first_rev} does not follow the stored revision {}",
                            reply.shown(0)
                        ),
                    })
                }
                _ => return Err(unexpected(&self.scripts.append, &reply)),
            }
        }
        if let Some(confirmed) = confirmed {
            if confirmed < u64::from(self.wait_replicas) {
                return Err(StoreError::NotReplicated {
                    doc: doc.clone(),
                    wanted: self.wait_replicas,
                    confirmed: u32::try_from(confirmed).unwrap_or(u32::MAX),
                    timeout_ms: millis(self.wait_timeout),
                });
            }
        }
        Ok(())
    }

    async fn compact(
        &self,
        doc: &DocId,
        keys: &DocKeys,
        token: &str,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        let refuse =
            |detail: String| StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, detail));
        if snapshot.rev > MAX_SCRIPT_INT {
            return Err(refuse(format!(
                "compact {doc}: revision {} is over 2^52",
                snapshot.rev
            )));
        }
        let bytes = codec::encode_snapshot(doc, snapshot)
            .map_err(|e| refuse(format!("compact {doc}: {e}")))?;
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(refuse(format!(
                "compact {doc}: snapshot of {} bytes is over the {MAX_VALUE_BYTES}-byte limit of a redis value",
                bytes.len()
            )));
        }
        let s = &self.scripts.compact;
        let call = ScriptCall {
            script: s,
            keys: vec![
                keys.owner.clone(),
                keys.meta.clone(),
                keys.log.clone(),
                keys.snap.clone(),
            ],
            args: vec![
                self.incarnation.as_bytes().to_vec(),
                token.as_bytes().to_vec(),
                snapshot.rev.to_string().into_bytes(),
                (snapshot.rev + 1).to_string().into_bytes(),
                bytes,
            ],
        };
        // A compaction that failed half way is harmless (the script is atomic, and either
        // state loads), so the caller may simply try again later.
        let reply = self
            .eval(doc, call, self.conn.response_timeout(), Retry::Never)
            .await?;
        let corrupt = |detail: String| StoreError::Corrupt {
            doc: doc.clone(),
            detail,
        };
        match reply.status.as_str() {
            "OK" => Ok(()),
            "FENCED" => Err(StoreError::Fenced),
            "AHEAD" => Err(corrupt(format!(
                "snapshot at revision {} is after the last logged revision {}",
                snapshot.rev,
                reply.shown(0)
            ))),
            "BEHIND" => Err(corrupt(format!(
                "snapshot at revision {} is older than the log, which starts at {}",
                snapshot.rev,
                reply.shown(0)
            ))),
            "CORRUPT" => Err(corrupt(reply.shown(0))),
            _ => Err(unexpected(s, &reply)),
        }
    }

    /// Runs one script.
    async fn eval(
        &self,
        doc: &DocId,
        call: ScriptCall<'_>,
        base_deadline: Duration,
        retry: Retry,
    ) -> Result<Reply, StoreError> {
        let script = call.script;
        let (replies, _) = self
            .eval_pipeline(doc, std::slice::from_ref(&call), None, base_deadline, retry)
            .await?;
        replies
            .into_iter()
            .next()
            .ok_or_else(|| unexpected_detail(script, format!("{doc}: no reply")))
    }

    /// Runs `calls` (and `WAIT` if asked) in one pipeline; returns each call's reply and the
    /// number of replicas `WAIT` reported. The deadline is `base_deadline`, plus the time to
    /// send the arguments at [`MIN_TRANSFER_BYTES_PER_SEC`], plus the `WAIT` timeout.
    async fn eval_pipeline(
        &self,
        doc: &DocId,
        calls: &[ScriptCall<'_>],
        wait: Option<(u32, Duration)>,
        base_deadline: Duration,
        retry: Retry,
    ) -> Result<(Vec<Reply>, Option<u64>), StoreError> {
        let mut pipe = Pipeline::with_capacity(calls.len() + 1);
        pipe.ignore_errors();
        for call in calls {
            pipe.add_command(call.evalsha());
        }
        let sent: usize = calls
            .iter()
            .flat_map(|call| call.args.iter().map(Vec::len))
            .sum();
        let mut deadline = base_deadline
            + Duration::from_secs_f64(sent as f64 / MIN_TRANSFER_BYTES_PER_SEC as f64);
        if let Some((replicas, timeout)) = wait {
            pipe.cmd("WAIT").arg(replicas).arg(millis(timeout));
            deadline += timeout;
        }
        let Some(first_call) = calls.first() else {
            return Ok((Vec::new(), None));
        };
        let mut attempt = 0;
        let values = loop {
            attempt += 1;
            let values = self
                .conn
                .pipeline(first_call.script.name, &pipe, deadline, retry)
                .await?;
            let no_script =
                |v: &Value| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT");
            // NOSCRIPT from the first call means no call ran (they all use one script, loaded
            // or not on this server); load it and send the pipeline again.
            if attempt == 1 && values.first().is_some_and(no_script) {
                self.load_script(first_call.script).await?;
                continue;
            }
            break values;
        };
        let expected = calls.len() + usize::from(wait.is_some());
        if values.len() != expected {
            return Err(unexpected_detail(
                first_call.script,
                format!(
                    "{doc}: {} replies to a pipeline of {expected}",
                    values.len()
                ),
            ));
        }
        let mut values = values.into_iter();
        let mut replies = Vec::with_capacity(calls.len());
        for (call, value) in calls.iter().zip(values.by_ref()) {
            if let Value::ServerError(error) = &value {
                return Err(StoreError::Io(io::Error::other(format!(
                    "redis {} of {doc}: server error {}: {}",
                    call.script.name,
                    error.code(),
                    error.details().unwrap_or_default()
                ))));
            }
            replies.push(
                Reply::parse(value)
                    .map_err(|e| unexpected_detail(call.script, format!("{doc}: {e}")))?,
            );
        }
        let confirmed = match (wait, values.next()) {
            (None, _) => None,
            (Some(_), Some(Value::Int(n))) => Some(u64::try_from(n).unwrap_or(0)),
            (Some(_), Some(Value::ServerError(error))) => {
                return Err(StoreError::Io(io::Error::other(format!(
                    "redis WAIT for {doc}: server error {}: {}",
                    error.code(),
                    error.details().unwrap_or_default()
                ))))
            }
            (Some(_), other) => {
                return Err(StoreError::Io(io::Error::other(format!(
                    "redis WAIT for {doc}: unexpected reply {}",
                    other
                        .as_ref()
                        .map_or_else(|| "nothing".to_owned(), describe)
                ))))
            }
        };
        Ok((replies, confirmed))
    }

    async fn load_script(&self, script: &LuaScript) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(script.code);
        let value = self
            .conn
            .query(
                "script load",
                &cmd,
                self.conn.response_timeout(),
                Retry::Once,
            )
            .await?;
        match scripts::text(&value) {
            Some(hash) if hash == script.hash => Ok(()),
            _ => Err(StoreError::Io(io::Error::other(format!(
                "redis script load of {}: unexpected reply {}",
                script.name,
                describe(&value)
            )))),
        }
    }

    fn liveness_key(&self, incarnation: &str) -> String {
        format!("{}live:{incarnation}", self.prefix)
    }
}

/// `duration` in whole milliseconds.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Decodes one log list entry: exactly one record frame.
fn decode_record(bytes: &[u8]) -> Result<LogRecord, String> {
    match codec::read_frame(bytes, 0) {
        Ok((decoded, end)) if end == bytes.len() => Ok(decoded.record),
        Ok((_, end)) => Err(format!(
            "{} unexpected bytes after the record",
            bytes.len() - end
        )),
        Err(codec::FrameFault::Bad(detail) | codec::FrameFault::Undecodable(detail)) => Err(detail),
    }
}

/// A non-negative decimal integer.
fn parse_int(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a name that becomes part of keys or owner records.
fn check_name(what: &str, value: &str, may_be_empty: bool) -> Result<(), StoreError> {
    if value.is_empty() && !may_be_empty {
        return Err(invalid(format!("redis {what} must not be empty")));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "redis {what} is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| matches!(c, '{' | '}') || c.is_whitespace() || c.is_control())
    {
        // A brace would change the hash slot of document keys.
        return Err(invalid(format!("redis {what} {value:?} contains {bad:?}")));
    }
    Ok(())
}

fn read_error(what: &str, value: &Value) -> StoreError {
    StoreError::Io(io::Error::other(format!(
        "redis {what}: unexpected reply {}",
        describe(value)
    )))
}

fn unexpected(script: &LuaScript, reply: &Reply) -> StoreError {
    unexpected_detail(script, format!("status {:?}", reply.status))
}

fn unexpected_detail(script: &LuaScript, detail: String) -> StoreError {
    StoreError::Io(io::Error::other(format!(
        "redis {} script: unexpected reply: {detail}",
        script.name
    )))
}
