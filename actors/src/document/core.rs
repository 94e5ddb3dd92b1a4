//! The document state machine: revisions, bounded history, exactly-once by (client, seq),
//! presence, group commit. Sans-IO and deterministic: inputs are method calls, outputs are queued
//! and drained with [`DocumentCore::poll_output`] and [`DocumentCore::poll_store_job`].
//!
//! An op is *assigned* a revision as soon as it is accepted (later ops transform over it), but it
//! is applied to the text, acknowledged and broadcast only once the store reports it durable.
//! Everything a client can see (snapshots, `ops` of `opened`, cursors) is therefore at the
//! durable revision, and nothing a client saw can be lost by a crash.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use self::subscribers::Subscribers;
use super::text::DocumentText;
use crate::ids::{ClientId, DocId};
use crate::ot::{transform_range, Component, Op, RawOp};
use crate::protocol::{
    ack_prefix, encode_ack_after, encode_op_after, error_frame, op_prefix, ErrorCode, Frame, RevOp,
    ServerMsg, MAX_CURSOR_RANGES,
};
use crate::store::{ClientSeq, LogRecord, Snapshot, StoreError, StoredDocument};

/// Identifies one WebSocket connection on this node.
pub type ConnId = u64;

/// Limits and tuning of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreSettings {
    /// Durable ops kept for transforming late ops and for resuming clients.
    pub history_ops: usize,
    /// Largest document, in code points, that an op may produce.
    pub max_document_chars: usize,
    /// Most ops in one store write (group commit batch).
    pub max_batch_ops: usize,
    /// Most accepted-but-not-yet-durable ops; past this, new ops get `unavailable` (the store
    /// is not keeping up, and an unbounded queue would only hide that).
    pub max_pending_ops: usize,
    /// Bound of the exactly-once table (clients remembered per document).
    pub max_dedup_clients: usize,
    /// Snapshot and truncate the log after this many logged ops.
    pub compact_every_ops: usize,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            history_ops: 10_000,
            max_document_chars: 10_000_000,
            max_batch_ops: 1_024,
            max_pending_ops: 8_192,
            max_dedup_clients: 100_000,
            compact_every_ops: 10_000,
        }
    }
}

/// Something the driver must deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<S> {
    /// Send `frame` to one subscriber.
    Send {
        /// The subscriber's handle.
        to: S,
        /// Encoded message.
        frame: Frame,
    },
    /// Send an `ack` to one subscriber: the driver does not get a frame of its own for it but
    /// writes it from [`DocumentCore::ack_prefix`] (an ack is the one frame every op produces,
    /// and a connection can put it straight into its socket buffer).
    Ack {
        /// The subscriber's handle.
        to: S,
        /// The acknowledged op's seq.
        seq: u64,
        /// The revision it became.
        rev: u64,
    },
    /// Send `frame` to every subscriber except `except` (see [`DocumentCore::subscribers`]).
    Broadcast {
        /// The connection that must not get it (the author).
        except: Option<ConnId>,
        /// Encoded once for everyone.
        frame: Frame,
    },
}

/// A write the driver must perform with the document's store, then report with
/// [`DocumentCore::store_done`]. At most one is in flight.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreJob {
    /// Append the records of revisions `first_rev..=last_rev` durably: the driver reads them with
    /// [`DocumentCore::append_records`] and encodes them for its store before it starts the write
    /// (the write then owns bytes, not records shared with the history).
    Append {
        /// Revision of the first record.
        first_rev: u64,
        /// Revision of the last record.
        last_rev: u64,
    },
    /// Replace the stored state up to `snapshot.rev` by this snapshot.
    Compact(Snapshot),
}

/// The store failed to make ops durable: the driver must stop this document (its accepted but
/// undurable ops were never acknowledged) and let it be reloaded from the store.
#[derive(Debug, thiserror::Error)]
#[error("store write failed for document {doc}: {detail}")]
pub struct StoreFailed {
    /// The document.
    pub doc: DocId,
    /// What the store said.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    seq: u64,
    rev: u64,
}

/// The exactly-once table: each client's last accepted op, keyed by server-issued random ids,
/// hashed with a fast keyed hash (SipHash was a visible share of an op's cost).
type ClientTable = HashMap<ClientId, Seen, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Entry {
    record: LogRecord,
    /// Revision of the same client's op before this one (seq - 1), 0 if none: the snapshot
    /// walks these back from a client's last op to its last durable one, so that no table of
    /// durable state has to be updated per op.
    prev_rev: u64,
}

#[derive(Debug)]
struct Subscriber<S> {
    handle: S,
    client: ClientId,
    name: Arc<str>,
    color: Arc<str>,
    ranges: Option<Vec<(usize, usize)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Append { up_to: u64 },
    Compact { rev: u64 },
}

/// One document's authoritative state.
#[derive(Debug)]
pub struct DocumentCore<S> {
    doc: DocId,
    /// Start of every `ack` frame of this document, encoded once.
    ack_prefix: Arc<[u8]>,
    /// Start of every `op` broadcast of this document, encoded once.
    op_prefix: Box<[u8]>,
    lang: &'static str,
    settings: CoreSettings,
    /// Text at `durable_rev`.
    text: DocumentText,
    durable_rev: u64,
    /// Newest assigned revision (>= durable_rev).
    rev: u64,
    /// Length at `rev`.
    len: usize,
    /// Consecutive entries ending at `rev`; every entry after `durable_rev` is kept.
    history: VecDeque<Entry>,
    /// The component list and the client id of the last record trimmed from the history, kept
    /// for the next op: a steady stream of ops then allocates no component lists, and an author
    /// who keeps typing costs no reference count.
    spare_components: Vec<Component>,
    spare_client: Option<ClientId>,
    /// Exactly-once table including accepted-but-undurable ops (the state as of `durable_rev`,
    /// which a snapshot stores, is found with [`Entry::prev_rev`]).
    clients: ClientTable,
    subscribers: Subscribers<ConnId, Subscriber<S>>,
    outputs: VecDeque<Output<S>>,
    job: Option<Job>,
    logged_since_snapshot: usize,
    opens_seen: u64,
}

impl<S: Clone> DocumentCore<S> {
    /// Rebuilds a document from what its store holds.
    pub fn load(
        doc: DocId,
        stored: StoredDocument,
        settings: CoreSettings,
    ) -> Result<Self, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            doc: doc.clone(),
            detail,
        };
        let (text, mut rev, mut clients) = match stored.snapshot {
            Some(s) => {
                let clients = s
                    .clients
                    .into_iter()
                    .map(|c| {
                        (
                            c.client,
                            Seen {
                                seq: c.seq,
                                rev: c.rev,
                            },
                        )
                    })
                    .collect::<ClientTable>();
                (DocumentText::from(s.text.as_str()), s.rev, clients)
            }
            None => (DocumentText::new(), 0, ClientTable::default()),
        };
        let mut text = text;
        let mut history = VecDeque::new();
        let logged = stored.log.len();
        for record in stored.log {
            if record.rev != rev + 1 {
                return Err(corrupt(format!(
                    "log jumps from revision {rev} to {}",
                    record.rev
                )));
            }
            record.op.apply(&mut text).map_err(|e| {
                corrupt(format!("op at revision {} does not apply: {e}", record.rev))
            })?;
            rev = record.rev;
            clients.insert(
                record.client.clone(),
                Seen {
                    seq: record.seq,
                    rev,
                },
            );
            // Loaded ops are durable: no walk back to a durable op ever starts from them.
            history.push_back(Entry {
                record,
                prev_rev: 0,
            });
            if history.len() > settings.history_ops {
                history.pop_front();
            }
        }
        let len = text.len_chars();
        Ok(DocumentCore {
            ack_prefix: ack_prefix(doc.as_str()),
            op_prefix: op_prefix(doc.as_str()),
            lang: doc.language(),
            doc,
            settings,
            text,
            durable_rev: rev,
            rev,
            len,
            history,
            spare_components: Vec::new(),
            spare_client: None,
            clients,
            subscribers: Subscribers::new(),
            outputs: VecDeque::new(),
            job: None,
            logged_since_snapshot: logged,
            opens_seen: 0,
        })
    }

    /// The document id.
    pub fn doc(&self) -> &DocId {
        &self.doc
    }

    /// The start of every `ack` of this document, for writing [`Output::Ack`]
    /// ([`crate::protocol::push_ack`]).
    pub fn ack_prefix(&self) -> &Arc<[u8]> {
        &self.ack_prefix
    }

    /// An [`Output::Ack`] as a frame of its own.
    pub fn ack_frame(&self, seq: u64, rev: u64) -> Frame {
        encode_ack_after(&self.ack_prefix, seq, rev)
    }

    /// Newest durable revision: what clients see.
    pub fn durable_rev(&self) -> u64 {
        self.durable_rev
    }

    /// Newest accepted revision (durable or not).
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The text at the durable revision.
    pub fn text(&self) -> &DocumentText {
        &self.text
    }

    /// How many `open`s this document has handled (the supervisor compares it with how many it
    /// forwarded before letting an idle document stop).
    pub fn opens_seen(&self) -> u64 {
        self.opens_seen
    }

    /// True when nothing would be lost or missed by stopping: no subscriber, nothing undurable,
    /// no store write in flight.
    pub fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.rev == self.durable_rev && self.job.is_none()
    }

    /// True when every accepted op is durable and no write is in flight.
    pub fn is_flushed(&self) -> bool {
        self.rev == self.durable_rev && self.job.is_none()
    }

    /// Number of subscribed connections.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Handles of every subscriber except `except`, for delivering a broadcast.
    pub fn subscribers(&self, except: Option<ConnId>) -> impl Iterator<Item = (ConnId, &S)> + '_ {
        self.subscribers
            .iter()
            .filter(move |(conn, _)| Some(**conn) != except)
            .map(|(conn, s)| (*conn, &s.handle))
    }

    /// Next frame to deliver.
    pub fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    /// A connection opens (or re-opens, to resync) the document. Answers `opened` with the ops
    /// after `since` when the history still holds them, else with a snapshot, then one `cursor`
    /// per other collaborator with a cursor.
    pub fn open(
        &mut self,
        conn: ConnId,
        handle: S,
        client: ClientId,
        name: Arc<str>,
        color: Arc<str>,
        since: Option<u64>,
    ) {
        self.opens_seen += 1;
        let ranges = self.subscribers.remove(&conn).and_then(|s| s.ranges);
        let frame = self.opened_frame(since);
        self.outputs.push_back(Output::Send {
            to: handle.clone(),
            frame,
        });
        // Per other client: not the cursor of this client's own older connection.
        for (other, sub) in self
            .subscribers
            .iter()
            .filter(|(_, sub)| sub.client != client)
        {
            if let Some(r) = &sub.ranges {
                debug_assert_ne!(*other, conn);
                let frame = ServerMsg::Cursor {
                    doc: self.doc.as_str(),
                    client: sub.client.as_str(),
                    name: &sub.name,
                    color: &sub.color,
                    ranges: r,
                }
                .encode();
                self.outputs.push_back(Output::Send {
                    to: handle.clone(),
                    frame,
                });
            }
        }
        self.subscribers.insert(
            conn,
            Subscriber {
                handle,
                client,
                name,
                color,
                ranges,
            },
        );
    }

    fn opened_frame(&self, since: Option<u64>) -> Frame {
        let doc = self.doc.as_str();
        if let Some(since) = since {
            if since <= self.durable_rev && since + 1 >= self.first_history_rev() {
                let ops: Vec<RevOp<'_>> = self
                    .history
                    .iter()
                    .filter(|e| e.record.rev > since && e.record.rev <= self.durable_rev)
                    .map(|e| RevOp {
                        rev: e.record.rev,
                        client: e.record.client.as_str(),
                        op: &e.record.op,
                    })
                    .collect();
                return ServerMsg::OpenedOps {
                    doc,
                    rev: self.durable_rev,
                    ops: &ops,
                    lang: self.lang,
                }
                .encode();
            }
        }
        let text = self.text.to_text();
        ServerMsg::OpenedSnapshot {
            doc,
            rev: self.durable_rev,
            text: &text,
            lang: self.lang,
        }
        .encode()
    }

    /// Revision of the oldest op in the history (`rev + 1` when the history is empty).
    ///
    /// Computed, not read from the oldest record: that record is the one least likely to be in
    /// the CPU's cache, and reading it on every op was the largest single cost of an op.
    fn first_history_rev(&self) -> u64 {
        first_rev_of(&self.history, self.rev)
    }

    /// Where in the history the entry that produced revision `rev` is, if it holds it.
    fn history_index(&self, rev: u64) -> Option<usize> {
        index_of(&self.history, self.rev, rev)
    }

    /// The entry that produced revision `rev`, if the history holds it.
    fn entry(&self, rev: u64) -> Option<&Entry> {
        entry_of(&self.history, self.rev, rev)
    }

    /// Length of the document at revision `rev` (which must be within the history or current).
    fn len_at(&self, rev: u64) -> Option<usize> {
        len_of(&self.history, self.rev, self.len, rev)
    }

    /// A connection stops following the document; the others are told it left.
    pub fn close(&mut self, conn: ConnId) {
        let Some(sub) = self.subscribers.remove(&conn) else {
            return;
        };
        let still_here = self.subscribers.values().any(|s| s.client == sub.client);
        if !still_here && !self.subscribers.is_empty() {
            let frame = ServerMsg::Left {
                doc: self.doc.as_str(),
                client: sub.client.as_str(),
            }
            .encode();
            self.outputs.push_back(Output::Broadcast {
                except: Some(conn),
                frame,
            });
        }
    }

    /// Refuses a message from `conn` with an error (used by the driver, e.g. while the
    /// document is being handed to another node).
    pub fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str, seq: Option<u64>) {
        self.reply_error(conn, code, message, seq);
    }

    fn reply_error(&mut self, conn: ConnId, code: ErrorCode, message: &str, seq: Option<u64>) {
        if let Some(sub) = self.subscribers.get(&conn) {
            let frame = error_frame(code, message, Some(self.doc.as_str()), seq);
            self.outputs.push_back(Output::Send {
                to: sub.handle.clone(),
                frame,
            });
        }
    }

    /// An op from a subscribed connection, written against `base_rev`.
    pub fn submit(&mut self, conn: ConnId, seq: u64, base_rev: u64, mut raw: RawOp) {
        let Some(sub) = self.subscribers.get(&conn) else {
            return;
        };
        // One lookup: the client's entry is updated in place once the op is accepted (so the
        // history is read below through its fields, not through `&self` methods). The id is
        // borrowed, not cloned: a clone and its drop are two atomic operations.
        let slot = self.clients.get_mut(&sub.client);
        let last = slot.as_deref().copied();
        let last_seq = last.map_or(0, |s| s.seq);
        if seq == 0 {
            return self.reply_error(conn, ErrorCode::BadMessage, "seq starts at 1", Some(seq));
        }
        if seq <= last_seq {
            // Already applied: acknowledge with the revision it first became.
            let rev = match last {
                Some(s) if s.seq == seq => s.rev,
                _ => self
                    .find_rev(&sub.client, seq)
                    .unwrap_or(last.map_or(0, |s| s.rev)),
            };
            // Not durable yet: every connection of this client gets the ack once it is.
            if rev <= self.durable_rev {
                self.ack(conn, seq, rev);
            }
            return;
        }
        if seq != last_seq + 1 {
            let message = format!(
                "seq {seq} skips numbers: the next seq for this document is {}",
                last_seq + 1
            );
            return self.reply_error(conn, ErrorCode::BadMessage, &message, Some(seq));
        }
        if base_rev > self.durable_rev {
            let message = format!(
                "base revision {base_rev} is newer than the document's revision {}",
                self.durable_rev
            );
            return self.reply_error(conn, ErrorCode::InvalidOp, &message, Some(seq));
        }
        let first_rev = first_rev_of(&self.history, self.rev);
        let Some(base_len) = (base_rev + 1 >= first_rev)
            .then(|| len_of(&self.history, self.rev, self.len, base_rev))
            .flatten()
        else {
            let message = format!(
                "base revision {base_rev} is older than the history kept (from revision {})",
                first_rev.saturating_sub(1)
            );
            return self.reply_error(conn, ErrorCode::StaleRev, &message, Some(seq));
        };
        if (self.rev - self.durable_rev) as usize >= self.settings.max_pending_ops {
            return self.reply_error(
                conn,
                ErrorCode::Unavailable,
                "the document's store is not keeping up; resubmit later",
                Some(seq),
            );
        }
        // The trimmed record's component list, if one is spare, is reused for this op.
        let components = std::mem::take(&mut self.spare_components);
        let mut op = match Op::from_raw_into(&mut raw, base_len, components) {
            Ok(op) => op,
            Err(e) => {
                return self.reply_error(conn, ErrorCode::InvalidOp, &e.to_string(), Some(seq))
            }
        };
        for rev in base_rev + 1..=self.rev {
            let rebased = match entry_of(&self.history, self.rev, rev) {
                Some(e) => op.transform_over(&e.record.op),
                None => {
                    debug_assert!(false, "history must hold every revision after the base");
                    return self.reply_error(
                        conn,
                        ErrorCode::StaleRev,
                        "history no longer holds the base",
                        Some(seq),
                    );
                }
            };
            op = match rebased {
                Ok(op) => op,
                Err(e) => {
                    return self.reply_error(conn, ErrorCode::InvalidOp, &e.to_string(), Some(seq))
                }
            };
        }
        debug_assert_eq!(op.base_len(), self.len);
        if op.target_len() > self.settings.max_document_chars && op.target_len() > op.base_len() {
            let message = format!(
                "the document would have {} characters; the limit is {}",
                op.target_len(),
                self.settings.max_document_chars
            );
            return self.reply_error(conn, ErrorCode::TooLarge, &message, Some(seq));
        }
        // Accepted: nothing above changed any state.
        self.rev += 1;
        self.len = op.target_len();
        let rev = self.rev;
        let seen = Seen { seq, rev };
        match slot {
            Some(entry) => *entry = seen,
            None => {
                self.clients.insert(sub.client.clone(), seen);
            }
        }
        // The spare client id when it is this client's (no reference count touched).
        let client = match self.spare_client.take() {
            Some(spare) if spare == sub.client => spare,
            _ => sub.client.clone(),
        };
        let record = LogRecord {
            rev,
            client,
            seq,
            op,
        };
        let prev_rev = last.map_or(0, |s| s.rev);
        self.history.push_back(Entry { record, prev_rev });
        self.bound_dedup_table();
    }

    /// A client's last durable op, from its last accepted one (`last`, from the table): the
    /// client's undurable ops are all in the history, each pointing at the one before.
    fn durable_seen(&self, last: Seen) -> Option<Seen> {
        let mut seen = last;
        while seen.rev > self.durable_rev {
            let Some(entry) = self.entry(seen.rev) else {
                debug_assert!(false, "undurable entries are never trimmed");
                return None;
            };
            debug_assert_eq!(entry.record.seq, seen.seq);
            if entry.prev_rev == 0 {
                return None;
            }
            seen = Seen {
                seq: seen.seq - 1,
                rev: entry.prev_rev,
            };
        }
        Some(seen)
    }

    fn find_rev(&self, client: &ClientId, seq: u64) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|e| e.record.seq == seq && &e.record.client == client)
            .map(|e| e.record.rev)
    }

    fn ack(&mut self, conn: ConnId, seq: u64, rev: u64) {
        if let Some(sub) = self.subscribers.get(&conn) {
            self.outputs.push_back(Output::Ack {
                to: sub.handle.clone(),
                seq,
                rev,
            });
        }
    }

    /// A connection's cursors at revision `rev`; stored (kept transformed) and sent to the others.
    pub fn cursor(&mut self, conn: ConnId, rev: u64, ranges: Vec<(u64, u64)>) {
        if !self.subscribers.contains_key(&conn) {
            return;
        }
        if ranges.len() > MAX_CURSOR_RANGES {
            let message = format!("at most {MAX_CURSOR_RANGES} cursor ranges");
            return self.reply_error(conn, ErrorCode::BadMessage, &message, None);
        }
        if rev > self.durable_rev {
            let message = format!(
                "cursor revision {rev} is newer than the document's revision {}",
                self.durable_rev
            );
            return self.reply_error(conn, ErrorCode::BadMessage, &message, None);
        }
        let len = if rev == self.durable_rev {
            self.text.len_chars()
        } else if rev + 1 >= self.first_history_rev() {
            match self.entry(rev + 1) {
                Some(e) => e.record.op.base_len(),
                None => return,
            }
        } else {
            // Older than the history: the client will send a fresh cursor after catching up.
            return;
        };
        let mut ranges: Vec<(usize, usize)> = match ranges
            .into_iter()
            .map(|(a, h)| Some((usize::try_from(a).ok()?, usize::try_from(h).ok()?)))
            .collect::<Option<Vec<_>>>()
        {
            Some(r) if r.iter().all(|&(a, h)| a <= len && h <= len) => r,
            _ => {
                let message = format!(
                    "cursor position past the end of the document (length {len} at revision {rev})"
                );
                return self.reply_error(conn, ErrorCode::BadMessage, &message, None);
            }
        };
        for r in rev + 1..=self.durable_rev {
            if let Some(e) = self.entry(r) {
                for range in ranges.iter_mut() {
                    *range = transform_range(*range, &e.record.op);
                }
            }
        }
        let Some(sub) = self.subscribers.get_mut(&conn) else {
            return;
        };
        let frame = ServerMsg::Cursor {
            doc: self.doc.as_str(),
            client: sub.client.as_str(),
            name: &sub.name,
            color: &sub.color,
            ranges: &ranges,
        }
        .encode();
        sub.ranges = Some(ranges);
        self.outputs.push_back(Output::Broadcast {
            except: Some(conn),
            frame,
        });
    }

    /// The next store write, if none is in flight and there is something to write.
    pub fn poll_store_job(&mut self) -> Option<StoreJob> {
        if self.job.is_some() {
            return None;
        }
        if self.logged_since_snapshot >= self.settings.compact_every_ops {
            self.job = Some(Job::Compact {
                rev: self.durable_rev,
            });
            let mut clients: Vec<ClientSeq> = self
                .clients
                .iter()
                .filter_map(|(client, last)| {
                    let s = self.durable_seen(*last)?;
                    Some(ClientSeq {
                        client: client.clone(),
                        seq: s.seq,
                        rev: s.rev,
                    })
                })
                .collect();
            clients.sort_by(|a, b| a.client.cmp(&b.client));
            return Some(StoreJob::Compact(Snapshot {
                rev: self.durable_rev,
                text: self.text.to_text(),
                clients,
            }));
        }
        let pending = (self.rev - self.durable_rev) as usize;
        if pending == 0 {
            return None;
        }
        let count = pending.min(self.settings.max_batch_ops.max(1));
        let up_to = self.durable_rev + count as u64;
        self.job = Some(Job::Append { up_to });
        Some(StoreJob::Append {
            first_rev: self.durable_rev + 1,
            last_rev: up_to,
        })
    }

    /// The records of the append in flight ([`StoreJob::Append`]), in revision order; nothing when
    /// no append is in flight.
    pub fn append_records(&self) -> impl ExactSizeIterator<Item = &LogRecord> + '_ {
        let range = match self.job {
            Some(Job::Append { up_to }) => match (
                self.history_index(self.durable_rev + 1),
                self.history_index(up_to),
            ) {
                (Some(first), Some(last)) => first..last + 1,
                _ => {
                    debug_assert!(false, "undurable entries are never trimmed");
                    0..0
                }
            },
            _ => 0..0,
        };
        self.history.range(range).map(|e| &e.record)
    }

    /// The store finished the job [`poll_store_job`](Self::poll_store_job) gave. On a successful
    /// append the ops are applied, acknowledged and broadcast, in revision order.
    pub fn store_done(&mut self, result: Result<(), StoreError>) -> Result<(), StoreFailed> {
        match self.job.take() {
            None => {
                debug_assert!(false, "store_done without a job");
                Ok(())
            }
            Some(Job::Compact { rev }) => {
                // A failed compaction loses nothing (the log still has every op); try again
                // after another `compact_every_ops` ops rather than in a hot loop.
                self.logged_since_snapshot = match result {
                    Ok(()) => (self.durable_rev - rev) as usize,
                    Err(e) => {
                        tracing::warn!(doc = %self.doc, error = %e, "compaction failed; will retry later");
                        0
                    }
                };
                Ok(())
            }
            Some(Job::Append { up_to }) => match result {
                Ok(()) => {
                    self.make_durable(up_to);
                    Ok(())
                }
                Err(e) => Err(StoreFailed {
                    doc: self.doc.clone(),
                    detail: e.to_string(),
                }),
            },
        }
    }

    fn make_durable(&mut self, up_to: u64) {
        let first = self.durable_rev + 1;
        for rev in first..=up_to {
            let Some(index) = self.history_index(rev) else {
                debug_assert!(false, "undurable entries are never trimmed");
                continue;
            };
            let entry = &self.history[index];
            if let Err(e) = entry.record.op.apply(&mut self.text) {
                debug_assert!(false, "an accepted op must apply: {e}");
                tracing::error!(doc = %self.doc, rev, error = %e, "accepted op did not apply");
            }
            let record = &entry.record;
            // One pass over the subscribers: move their cursors over the op, and acknowledge it
            // to its author's connections. The author's client gets the ack, every other client
            // the op (PROTOCOL "Edits"), on every connection it has the document open on: after a
            // reconnect the client may not have resubmitted from the new one yet, and the old one
            // may not be closed yet. Sent its own op instead, a client would apply it a second
            // time.
            let mut own_count = 0;
            let mut first_own = None;
            for (conn, sub) in self.subscribers.iter_mut() {
                if let Some(ranges) = sub.ranges.as_mut() {
                    for range in ranges.iter_mut() {
                        *range = transform_range(*range, &record.op);
                    }
                }
                if sub.client == record.client {
                    own_count += 1;
                    first_own.get_or_insert(*conn);
                    self.outputs.push_back(Output::Ack {
                        to: sub.handle.clone(),
                        seq: record.seq,
                        rev,
                    });
                }
            }
            let doc = self.doc.as_str();
            if self.subscribers.len() > own_count {
                let client = record.client.as_str();
                let frame = encode_op_after(&self.op_prefix, rev, client, &record.op)
                    .unwrap_or_else(|_| {
                        ServerMsg::Op {
                            doc,
                            rev,
                            client,
                            op: &record.op,
                        }
                        .encode()
                    });
                if own_count <= 1 {
                    self.outputs.push_back(Output::Broadcast {
                        except: first_own,
                        frame,
                    });
                } else {
                    for sub in self
                        .subscribers
                        .values()
                        .filter(|s| s.client != record.client)
                    {
                        self.outputs.push_back(Output::Send {
                            to: sub.handle.clone(),
                            frame: frame.clone(),
                        });
                    }
                }
            }
        }
        self.logged_since_snapshot += (up_to + 1 - first) as usize;
        self.durable_rev = up_to;
        debug_assert_eq!(
            self.text.len_chars(),
            self.len_at(self.durable_rev).unwrap_or(usize::MAX)
        );
        self.trim_history();
    }

    /// Drops the oldest durable entries past `history_ops`, keeping the component list and the
    /// client id of one for the next op.
    fn trim_history(&mut self) {
        while self.history.len() > self.settings.history_ops
            && self.first_history_rev() <= self.durable_rev
        {
            let Some(Entry { mut record, .. }) = self.history.pop_front() else {
                break;
            };
            if self.spare_components.capacity() == 0 {
                self.spare_components = record.op.take_components();
            }
            self.spare_client = Some(record.client);
        }
    }

    /// Keeps the exactly-once table within `max_dedup_clients` by forgetting the clients whose
    /// last op is oldest (never one with an undurable op).
    #[inline]
    fn bound_dedup_table(&mut self) {
        if self.clients.len() > self.settings.max_dedup_clients.max(1) {
            self.evict_dedup_clients();
        }
    }

    /// Forgets the tenth of the clients whose last op is oldest.
    #[cold]
    fn evict_dedup_clients(&mut self) {
        let max = self.settings.max_dedup_clients.max(1);
        // Evict a tenth at once so that the O(n) scan is amortised over many ops.
        let evict = (max / 10).max(1).min(self.clients.len());
        let mut revs: Vec<u64> = self.clients.values().map(|s| s.rev).collect();
        revs.sort_unstable();
        let cutoff = revs[evict - 1].min(self.durable_rev);
        self.clients.retain(|_, s| s.rev > cutoff);
    }
}

// The history's lookups as functions of its fields, so that `submit` can use them while it holds
// the client's exactly-once entry (one table lookup per op).

/// Revision of the oldest op in `history`, which ends at `rev` (`rev + 1` when empty). Computed,
/// not read from the oldest record: that is the memory an op is least likely to find in cache.
fn first_rev_of(history: &VecDeque<Entry>, rev: u64) -> u64 {
    let first = rev + 1 - history.len() as u64;
    debug_assert_eq!(
        first,
        history.front().map_or(rev + 1, |e| e.record.rev),
        "the history holds consecutive revisions ending at rev"
    );
    first
}

/// Where in `history` (ending at `rev`) the entry that produced revision `at` is.
fn index_of(history: &VecDeque<Entry>, rev: u64, at: u64) -> Option<usize> {
    let index = usize::try_from(at.checked_sub(first_rev_of(history, rev))?).ok()?;
    (index < history.len()).then_some(index)
}

/// The entry of `history` (ending at `rev`) that produced revision `at`.
fn entry_of(history: &VecDeque<Entry>, rev: u64, at: u64) -> Option<&Entry> {
    history.get(index_of(history, rev, at)?)
}

/// Length of the document at revision `at`, from `history` ending at `rev` with length `len`.
fn len_of(history: &VecDeque<Entry>, rev: u64, len: usize, at: u64) -> Option<usize> {
    if at == rev {
        Some(len)
    } else {
        entry_of(history, rev, at + 1).map(|e| e.record.op.base_len())
    }
}

mod subscribers;
#[cfg(test)]
mod tests;
