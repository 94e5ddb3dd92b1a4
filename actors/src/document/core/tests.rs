//! Tests of the document state machine: one focused test per rule of PROTOCOL.md that the core
//! enforces, then a seeded simulation of clients, network, store and crashes (STYLE item 9).
//!
//! Frames are checked as JSON values, the way a client outside the project sees them. Replay one
//! simulation seed with `CHORUS_SIM_SEED=<seed> cargo test -p chorus-actors --lib simulated`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{ConnId, CoreSettings, DocumentCore, Output, StoreJob};
use crate::ids::{ClientId, DocId};
use crate::ot::{Component, Op, RawOp};
use crate::protocol::MAX_CURSOR_RANGES;
use crate::store::{ClientSeq, LogRecord, Snapshot, StoreError, StoredDocument};

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Document of the focused tests (a `.rs` file, so its language is `rust`).
const DOC: &str = "src/main.rs";

fn doc_id(id: &str) -> DocId {
    DocId::parse(id).expect("test document ids are valid")
}

/// Client `n` of a test: a stable 128-bit hex id.
fn client_id(n: usize) -> ClientId {
    ClientId::from_stored(&format!("{n:032x}"))
}

fn client_str(n: usize) -> String {
    client_id(n).as_str().to_owned()
}

fn name_of(n: usize) -> String {
    format!("user-{n}")
}

fn color_of(n: usize) -> &'static str {
    const COLORS: [&str; 4] = ["#e06c75", "#98c379", "#61afef", "#c678dd"];
    COLORS[n % COLORS.len()]
}

/// Decodes a wire op the way the protocol layer does.
fn raw(value: Value) -> RawOp {
    serde_json::from_value(value).expect("a test op is a JSON array")
}

/// The wire form of `op`, decoded back as a client submission.
fn raw_of(op: &Op) -> RawOp {
    raw(serde_json::to_value(op).expect("ops serialize"))
}

fn parse_frame(frame: &[u8]) -> Value {
    serde_json::from_slice(frame).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {frame:?}"))
}

fn io_error() -> StoreError {
    StoreError::Io(std::io::Error::other("disk unplugged"))
}

fn ack(seq: u64, rev: u64) -> Value {
    json!({"type": "ack", "doc": DOC, "seq": seq, "rev": rev})
}

fn op_frame(rev: u64, client: usize, op: Value) -> Value {
    json!({"type": "op", "doc": DOC, "rev": rev, "client": client_str(client), "op": op})
}

fn cursor_frame(client: usize, ranges: Value) -> Value {
    json!({
        "type": "cursor", "doc": DOC, "client": client_str(client),
        "name": name_of(client), "color": color_of(client), "ranges": ranges,
    })
}

fn snapshot_frame(rev: u64, text: &str) -> Value {
    json!({"type": "opened", "doc": DOC, "rev": rev, "text": text, "lang": "rust"})
}

fn ops_frame(rev: u64, ops: Value) -> Value {
    json!({"type": "opened", "doc": DOC, "rev": rev, "ops": ops, "lang": "rust"})
}

/// Asserts that `frames` is exactly one error with `code`, the test document and `seq`.
#[track_caller]
fn assert_error(frames: &[Value], code: &str, seq: Option<u64>) {
    assert_eq!(frames.len(), 1, "expected one {code} error, got {frames:?}");
    let frame = &frames[0];
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    assert_eq!(frame["doc"], DOC, "{frame}");
    assert_eq!(frame.get("seq").and_then(Value::as_u64), seq, "{frame}");
    assert!(
        frame["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{frame}"
    );
}

/// A store in memory: the newest snapshot and the log after it.
#[derive(Debug, Clone, Default)]
struct FakeStore {
    snapshot: Option<Snapshot>,
    log: Vec<LogRecord>,
}

impl FakeStore {
    fn last_rev(&self) -> u64 {
        self.log
            .last()
            .map(|r| r.rev)
            .or(self.snapshot.as_ref().map(|s| s.rev))
            .unwrap_or(0)
    }

    /// Performs `job`, which `core` has in flight, as a real store would (appends follow what is
    /// stored).
    fn apply<S: Clone>(&mut self, job: &StoreJob, core: &DocumentCore<S>) {
        match job {
            StoreJob::Append {
                first_rev,
                last_rev,
            } => {
                let records: Vec<&LogRecord> = core.append_records().collect();
                assert!(!records.is_empty(), "an append job has records");
                assert_eq!(
                    (records[0].rev, records[records.len() - 1].rev),
                    (*first_rev, *last_rev),
                    "the job's records are its revisions"
                );
                for record in records {
                    assert_eq!(
                        record.rev,
                        self.last_rev() + 1,
                        "appends have consecutive revisions"
                    );
                    self.log.push(LogRecord::clone(record));
                }
            }
            StoreJob::Compact(snapshot) => {
                assert!(
                    snapshot.rev <= self.last_rev(),
                    "a snapshot is of stored revisions"
                );
                self.log.retain(|r| r.rev > snapshot.rev);
                self.snapshot = Some(snapshot.clone());
            }
        }
    }

    fn stored(&self) -> StoredDocument {
        StoredDocument {
            snapshot: self.snapshot.clone(),
            log: self.log.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Focused tests: a driver that delivers every output at once, per connection.

/// One core, a fake store, and the frames each connection received (handles are the conn ids).
struct Fixture {
    core: DocumentCore<ConnId>,
    store: FakeStore,
    inbox: BTreeMap<ConnId, Vec<Value>>,
}

impl Fixture {
    fn new(settings: CoreSettings) -> Fixture {
        Fixture::load(DOC, FakeStore::default(), settings)
    }

    fn load(doc: &str, store: FakeStore, settings: CoreSettings) -> Fixture {
        let core = DocumentCore::load(doc_id(doc), store.stored(), settings)
            .expect("the fake store loads");
        Fixture {
            core,
            store,
            inbox: BTreeMap::new(),
        }
    }

    /// Delivers the core's outputs, as the actor does after every input.
    fn pump(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send { to, frame } => {
                    self.inbox.entry(to).or_default().push(parse_frame(&frame))
                }
                Output::Ack { to, seq, rev } => {
                    let frame = self.core.ack_frame(seq, rev);
                    self.inbox.entry(to).or_default().push(parse_frame(&frame))
                }
                Output::Broadcast { except, frame } => {
                    let value = parse_frame(&frame);
                    let conns: Vec<ConnId> = self
                        .core
                        .subscribers(except)
                        .map(|(conn, handle)| {
                            assert_eq!(
                                conn, *handle,
                                "subscribers() pairs each conn with its handle"
                            );
                            conn
                        })
                        .collect();
                    for conn in conns {
                        self.inbox.entry(conn).or_default().push(value.clone());
                    }
                }
            }
        }
    }

    /// Opens the document on `conn` for client `client`; returns what `conn` got.
    fn open(&mut self, conn: ConnId, client: usize, since: Option<u64>) -> Vec<Value> {
        self.core.open(
            conn,
            conn,
            client_id(client),
            Arc::from(name_of(client)),
            Arc::from(color_of(client)),
            since,
        );
        self.pump();
        self.take(conn)
    }

    fn submit(&mut self, conn: ConnId, seq: u64, rev: u64, op: Value) {
        self.core.submit(conn, seq, rev, raw(op));
        self.pump();
    }

    fn cursor(&mut self, conn: ConnId, rev: u64, ranges: &[(u64, u64)]) {
        self.core.cursor(conn, rev, ranges.to_vec());
        self.pump();
    }

    fn close(&mut self, conn: ConnId) {
        self.core.close(conn);
        self.pump();
    }

    /// Frames `conn` received since the last `take`.
    fn take(&mut self, conn: ConnId) -> Vec<Value> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.inbox.clear();
    }

    /// Performs the next store job successfully, if there is one.
    fn run_job(&mut self) -> Option<StoreJob> {
        let job = self.core.poll_store_job()?;
        self.store.apply(&job, &self.core);
        self.core
            .store_done(Ok(()))
            .expect("a successful write is not an error");
        self.pump();
        Some(job)
    }

    /// Performs store jobs until none is left.
    fn flush(&mut self) {
        for _ in 0..1_000 {
            if self.run_job().is_none() {
                return;
            }
        }
        panic!("store jobs never ran out");
    }

    /// Submits `op` against the durable revision and makes it durable.
    fn commit(&mut self, conn: ConnId, seq: u64, op: Value) {
        let rev = self.core.durable_rev();
        self.submit(conn, seq, rev, op);
        let before = self.core.rev();
        self.flush();
        assert_eq!(
            self.core.durable_rev(),
            before,
            "commit made the op durable"
        );
    }

    fn text(&self) -> String {
        self.core.text().to_string()
    }
}

fn settings() -> CoreSettings {
    CoreSettings::default()
}

#[test]
fn open_of_a_new_document_answers_an_empty_snapshot_with_its_language() {
    let mut fx = Fixture::new(settings());
    assert_eq!(fx.open(1, 1, None), vec![snapshot_frame(0, "")]);
    assert_eq!(fx.open(2, 2, Some(0)), vec![ops_frame(0, json!([]))]);
    let mut plain = Fixture::load("notes/todo", FakeStore::default(), settings());
    let opened = plain.open(1, 1, None);
    assert_eq!(
        opened,
        vec![
            json!({"type": "opened", "doc": "notes/todo", "rev": 0, "text": "", "lang": "plaintext"})
        ]
    );
    assert_eq!(fx.core.subscriber_count(), 2);
    assert_eq!(fx.core.opens_seen(), 2);
}

#[test]
fn open_since_a_revision_in_history_answers_the_ops_after_it() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.commit(1, 1, json!(["fn"]));
    fx.commit(1, 2, json!([2, " main"]));
    fx.commit(1, 3, json!([-2, "FN"]));
    assert_eq!(fx.text(), "FN main");
    let expected = ops_frame(
        3,
        json!([
            {"rev": 2, "client": client_str(1), "op": [2, " main"]},
            // Normalized: an insert and a delete at one position are sent insert first.
            {"rev": 3, "client": client_str(1), "op": ["FN", -2]},
        ]),
    );
    assert_eq!(fx.open(2, 2, Some(1)), vec![expected]);
    assert_eq!(fx.open(3, 2, Some(3)), vec![ops_frame(3, json!([]))]);
}

#[test]
fn open_since_a_revision_older_than_the_history_answers_a_snapshot() {
    let mut fx = Fixture::new(CoreSettings {
        history_ops: 2,
        ..settings()
    });
    fx.open(1, 1, None);
    for seq in 1..=5 {
        fx.commit(1, seq, json!(["x"]));
    }
    // The history holds revisions 4 and 5: a client at 3 still gets ops, one at 2 a snapshot.
    let ops = json!([
        {"rev": 4, "client": client_str(1), "op": ["x"]},
        {"rev": 5, "client": client_str(1), "op": ["x"]},
    ]);
    assert_eq!(fx.open(2, 2, Some(3)), vec![ops_frame(5, ops)]);
    assert_eq!(fx.open(2, 2, Some(2)), vec![snapshot_frame(5, "xxxxx")]);
    assert_eq!(fx.open(2, 2, Some(0)), vec![snapshot_frame(5, "xxxxx")]);
}

#[test]
fn open_since_a_revision_newer_than_the_document_answers_a_snapshot() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.commit(1, 1, json!(["a😀"]));
    assert_eq!(fx.open(2, 2, Some(7)), vec![snapshot_frame(1, "a😀")]);
    assert_eq!(fx.open(2, 2, Some(2)), vec![snapshot_frame(1, "a😀")]);
    // An accepted but undurable revision is invisible: nobody could have seen it.
    fx.submit(1, 2, 1, json!([2, "b"]));
    assert_eq!(fx.core.rev(), 2);
    assert_eq!(fx.open(3, 3, Some(2)), vec![snapshot_frame(1, "a😀")]);
    assert_eq!(fx.open(3, 3, Some(1)), vec![ops_frame(1, json!([]))]);
}

#[test]
fn an_op_is_applied_acked_and_broadcast_only_once_durable() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.submit(1, 1, 0, json!(["he\u{301}llo 😀"]));
    assert!(
        fx.take(1).is_empty() && fx.take(2).is_empty(),
        "nothing is sent before the op is durable"
    );
    assert_eq!(
        (fx.core.rev(), fx.core.durable_rev(), fx.text().as_str()),
        (1, 0, "")
    );
    assert!(!fx.core.is_flushed());

    let job = fx.core.poll_store_job().expect("an accepted op is written");
    assert_eq!(
        job,
        StoreJob::Append {
            first_rev: 1,
            last_rev: 1
        }
    );
    let records: Vec<&LogRecord> = fx.core.append_records().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].rev, &records[0].client, records[0].seq),
        (1, &client_id(1), 1)
    );
    assert_eq!(fx.core.poll_store_job(), None, "one store job at a time");
    fx.pump();
    assert!(
        fx.take(1).is_empty() && fx.take(2).is_empty(),
        "nothing is sent while the write is in flight"
    );

    fx.store.apply(&job, &fx.core);
    fx.core.store_done(Ok(())).expect("the write succeeded");
    fx.pump();
    assert_eq!(
        fx.take(1),
        vec![ack(1, 1)],
        "the author gets the ack and not its own op"
    );
    assert_eq!(fx.take(2), vec![op_frame(1, 1, json!(["he\u{301}llo 😀"]))]);
    assert_eq!(fx.text(), "he\u{301}llo 😀");
    assert_eq!(fx.core.durable_rev(), 1);
    assert!(fx.core.is_flushed());
}

#[test]
fn ops_submitted_while_a_write_is_in_flight_are_written_together() {
    for (max_batch_ops, batches) in [(1_024, vec![vec![2, 3, 4]]), (2, vec![vec![2, 3], vec![4]])] {
        let mut fx = Fixture::new(CoreSettings {
            max_batch_ops,
            ..settings()
        });
        for n in 1..=4 {
            fx.open(n as ConnId, n, None);
        }
        fx.submit(1, 1, 0, json!(["a"]));
        let first = fx.core.poll_store_job().expect("first write");
        for (n, text) in [(2, "b"), (3, "c"), (4, "d")] {
            fx.submit(n, 1, 0, json!([text]));
        }
        assert_eq!(
            fx.core.poll_store_job(),
            None,
            "no second write while one is in flight"
        );
        fx.store.apply(&first, &fx.core);
        fx.core.store_done(Ok(())).expect("written");
        fx.pump();
        assert_eq!(fx.take(1), vec![ack(1, 1)]);
        assert!(
            fx.take(2).iter().all(|f| f["type"] == "op"),
            "no ack before the op's own write"
        );

        for expected in &batches {
            let job = fx.run_job().expect("a batch is written");
            let StoreJob::Append {
                first_rev,
                last_rev,
            } = job
            else {
                panic!("expected an append")
            };
            assert_eq!(
                (first_rev..=last_rev).collect::<Vec<_>>(),
                *expected,
                "max_batch_ops {max_batch_ops}"
            );
        }
        assert_eq!(fx.core.poll_store_job(), None);
        for n in 2..=4u64 {
            let acks: Vec<Value> = fx
                .take(n)
                .into_iter()
                .filter(|f| f["type"] == "ack")
                .collect();
            assert_eq!(acks, vec![ack(1, n)], "client {n}");
        }
        // Concurrent inserts at one position: the op the server applied first ends up left.
        assert_eq!(fx.text(), "abcd");
    }
}

#[test]
fn a_duplicate_seq_is_acked_with_its_original_revision() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(1, 1, json!(["a"]));
    fx.commit(2, 1, json!([1, "b"]));
    fx.clear();

    // Durable: acknowledged at once with the revision it became; its content is not compared.
    fx.submit(1, 1, 0, json!(["zzz"]));
    assert_eq!(fx.take(1), vec![ack(1, 1)]);
    assert_eq!((fx.core.rev(), fx.text().as_str()), (2, "ab"));
    assert_eq!(
        fx.core.poll_store_job(),
        None,
        "a duplicate is not written again"
    );
    assert!(fx.take(2).is_empty());

    // Not durable yet, resubmitted on the same connection (a client resyncing): one ack, once durable.
    fx.submit(1, 2, 2, json!(["x"]));
    fx.submit(1, 2, 2, json!(["x"]));
    assert!(
        fx.take(1).is_empty(),
        "the ack waits until the op is durable"
    );
    assert_eq!(fx.core.rev(), 3);
    fx.flush();
    assert_eq!(fx.take(1), vec![ack(2, 3)]);
    assert_eq!(fx.take(2), vec![op_frame(3, 1, json!(["x"]))]);
    assert_eq!(fx.text(), "xab");

    // Not durable yet, resubmitted by the client from a new connection after the old one closed.
    fx.submit(1, 3, 3, json!(["y"]));
    fx.close(1);
    assert_eq!(fx.open(3, 1, Some(3)), vec![ops_frame(3, json!([]))]);
    fx.submit(3, 3, 3, json!(["y"]));
    assert!(
        fx.take(3).is_empty(),
        "the ack waits until the op is durable"
    );
    fx.flush();
    assert_eq!(
        fx.take(3),
        vec![ack(3, 4)],
        "the new connection gets the ack in revision order, and not its own op as a broadcast"
    );
    let left = json!({"type": "left", "doc": DOC, "client": client_str(1)});
    assert_eq!(fx.take(2), vec![left, op_frame(4, 1, json!(["y"]))]);

    // Same, while the old connection is still subscribed (its socket is not known dead yet).
    fx.submit(3, 4, 4, json!([4, "w"]));
    assert_eq!(fx.open(4, 1, Some(4)), vec![ops_frame(4, json!([]))]);
    fx.submit(4, 4, 4, json!([4, "w"]));
    fx.flush();
    assert_eq!(fx.take(4), vec![ack(4, 5)]);
    assert_eq!(
        fx.take(3),
        vec![ack(4, 5)],
        "every connection of the client gets the ack"
    );
    assert_eq!(fx.take(2), vec![op_frame(5, 1, json!([4, "w"]))]);
    assert_eq!(fx.text(), "yxabw");
}

#[test]
fn a_seq_that_skips_numbers_or_is_zero_is_a_bad_message() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.submit(1, 2, 0, json!(["a"]));
    assert_error(&fx.take(1), "bad_message", Some(2));
    fx.submit(1, 0, 0, json!(["a"]));
    assert_error(&fx.take(1), "bad_message", Some(0));
    assert_eq!(fx.core.rev(), 0);
    fx.commit(1, 1, json!(["a"]));
    fx.take(1);
    fx.submit(1, 3, 1, json!(["b"]));
    assert_error(&fx.take(1), "bad_message", Some(3));
    assert_eq!((fx.core.rev(), fx.core.poll_store_job()), (1, None));
}

#[test]
fn a_base_revision_newer_than_the_document_is_an_invalid_op() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.submit(1, 1, 0, json!(["a"]));
    // Revision 1 is accepted but not durable: no client can have written against it.
    fx.submit(2, 1, 1, json!(["b"]));
    assert_error(&fx.take(2), "invalid_op", Some(1));
    fx.submit(2, 1, 9, json!(["b"]));
    assert_error(&fx.take(2), "invalid_op", Some(1));
    assert_eq!(fx.core.rev(), 1);
    // The error did not use up the seq.
    fx.submit(2, 1, 0, json!(["b"]));
    assert_eq!(fx.core.rev(), 2);
    fx.flush();
    assert_eq!(fx.text(), "ab");
}

#[test]
fn a_base_revision_older_than_the_history_is_a_stale_rev() {
    let mut fx = Fixture::new(CoreSettings {
        history_ops: 2,
        ..settings()
    });
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    for seq in 1..=5 {
        fx.commit(1, seq, json!(["x"]));
    }
    fx.clear();
    fx.submit(2, 1, 2, json!(["q"]));
    assert_error(&fx.take(2), "stale_rev", Some(1));
    assert_eq!(fx.core.rev(), 5);
    // Revision 3 is the base of the oldest op still held (4): ops written against it rebase.
    fx.submit(2, 1, 3, json!([1, "q"]));
    fx.flush();
    assert_eq!(fx.take(2), vec![ack(1, 6)]);
    assert_eq!(fx.text(), "xxxqxx");
}

#[test]
fn a_malformed_op_is_an_invalid_op_and_changes_nothing() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(1, 1, json!(["abc"]));
    fx.clear();
    let malformed = [
        json!([]),
        json!([0]),
        json!([""]),
        json!([4]),
        json!([-4]),
        json!([2, -2]),
        json!([1.5]),
        json!(["x", true]),
        json!([null]),
        json!([[1]]),
        json!([{"insert": "x"}]),
    ];
    for op in malformed {
        fx.submit(1, 2, 1, op.clone());
        assert_error(&fx.take(1), "invalid_op", Some(2));
        assert_eq!(
            (fx.core.rev(), fx.core.durable_rev()),
            (1, 1),
            "{op} changed the revision"
        );
        assert_eq!(fx.core.poll_store_job(), None, "{op} was written");
        assert!(fx.take(2).is_empty());
    }
    // The same seq is still free.
    fx.commit(1, 2, json!([3, "d"]));
    assert_eq!(fx.take(1), vec![ack(2, 2)]);
    assert_eq!(fx.text(), "abcd");
}

#[test]
fn an_op_that_makes_the_document_too_large_is_refused() {
    let limits = CoreSettings {
        max_document_chars: 5,
        ..settings()
    };
    let mut fx = Fixture::new(limits.clone());
    fx.open(1, 1, None);
    fx.commit(1, 1, json!(["abcd"]));
    fx.take(1);
    fx.submit(1, 2, 1, json!([4, "e😀"]));
    assert_error(&fx.take(1), "too_large", Some(2));
    assert_eq!(fx.core.rev(), 1);
    fx.commit(1, 2, json!([4, "😀"]));
    assert_eq!(fx.take(1), vec![ack(2, 2)]);
    assert_eq!(fx.text().chars().count(), 5);

    // A document already over the limit (e.g. the limit was lowered) can still shrink.
    let store = FakeStore {
        snapshot: Some(Snapshot {
            rev: 7,
            text: "abcdefgh".to_owned(),
            clients: Vec::new(),
        }),
        log: Vec::new(),
    };
    let mut fx = Fixture::load(DOC, store, limits);
    fx.open(1, 1, None);
    fx.commit(1, 1, json!([-1]));
    assert_eq!(fx.take(1), vec![ack(1, 8)]);
    fx.commit(1, 2, json!(["X", -1]));
    assert_eq!(fx.take(1), vec![ack(2, 9)]);
    fx.submit(1, 3, 9, json!(["Y"]));
    assert_error(&fx.take(1), "too_large", Some(3));
    assert_eq!(fx.text(), "Xcdefgh");
}

#[test]
fn too_many_undurable_ops_is_unavailable() {
    let mut fx = Fixture::new(CoreSettings {
        max_pending_ops: 2,
        ..settings()
    });
    for n in 1..=3 {
        fx.open(n as ConnId, n, None);
    }
    fx.submit(1, 1, 0, json!(["a"]));
    fx.submit(2, 1, 0, json!(["b"]));
    fx.submit(3, 1, 0, json!(["c"]));
    assert_error(&fx.take(3), "unavailable", Some(1));
    assert_eq!(fx.core.rev(), 2);
    fx.flush();
    fx.clear();
    // Resubmitting the same seq later works.
    fx.commit(3, 1, json!(["c"]));
    assert_eq!(fx.take(3), vec![ack(1, 3)]);
}

#[test]
fn cursors_are_broadcast_with_name_and_color_and_follow_later_ops() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(1, 1, json!(["hello"]));
    fx.clear();

    fx.cursor(2, 1, &[(2, 2), (0, 5)]);
    assert_eq!(fx.take(1), vec![cursor_frame(2, json!([[2, 2], [0, 5]]))]);
    assert!(
        fx.take(2).is_empty(),
        "a cursor is not echoed to its sender"
    );

    // An insert exactly at the cursor moves it right, after the inserted text.
    fx.commit(1, 2, json!([2, "XY"]));
    assert_eq!(fx.text(), "heXYllo");
    let opened = fx.open(3, 3, None);
    assert_eq!(
        opened,
        vec![
            snapshot_frame(2, "heXYllo"),
            cursor_frame(2, json!([[4, 4], [0, 7]]))
        ]
    );

    // A cursor written against an older revision is transformed to the current one.
    fx.clear();
    fx.cursor(2, 1, &[(5, 5), (1, 3)]);
    let expected = cursor_frame(2, json!([[7, 7], [1, 5]]));
    assert_eq!(
        (fx.take(1), fx.take(3)),
        (vec![expected.clone()], vec![expected])
    );

    // A cursor inside deleted text lands at the start of the deletion.
    fx.commit(1, 3, json!([1, -5]));
    fx.clear();
    assert_eq!(
        fx.open(4, 4, None),
        vec![
            snapshot_frame(3, "ho"),
            cursor_frame(2, json!([[2, 2], [1, 1]]))
        ]
    );

    // A connection that has not opened the document is ignored.
    fx.cursor(9, 3, &[(0, 0)]);
    assert!(fx.inbox.is_empty());
}

#[test]
fn a_bad_cursor_is_a_bad_message() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(1, 1, json!(["hello"]));
    fx.clear();
    let too_many = vec![(0, 0); MAX_CURSOR_RANGES + 1];
    fx.cursor(2, 1, &too_many);
    assert_error(&fx.take(2), "bad_message", None);
    fx.cursor(2, 1, &[(0, 6)]);
    assert_error(&fx.take(2), "bad_message", None);
    fx.cursor(2, 1, &[(u64::MAX, 0)]);
    assert_error(&fx.take(2), "bad_message", None);
    fx.cursor(2, 2, &[(0, 0)]);
    assert_error(&fx.take(2), "bad_message", None);
    assert!(fx.take(1).is_empty(), "a refused cursor is not broadcast");
    // The most ranges allowed is fine.
    fx.cursor(2, 1, &vec![(5, 0); MAX_CURSOR_RANGES]);
    assert_eq!(fx.take(1).len(), 1);
}

#[test]
fn opened_is_followed_by_the_cursors_of_the_others() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.open(3, 3, None);
    fx.commit(1, 1, json!(["abc"]));
    fx.cursor(1, 1, &[(1, 1)]);
    fx.cursor(3, 1, &[(0, 3)]);
    fx.clear();
    let expected = vec![
        snapshot_frame(1, "abc"),
        cursor_frame(1, json!([[1, 1]])),
        cursor_frame(3, json!([[0, 3]])),
    ];
    assert_eq!(fx.open(4, 4, None), expected);
    // A resync on the same connection keeps its subscription and gets the others' cursors only.
    let resync = fx.open(1, 1, Some(1));
    assert_eq!(
        resync,
        vec![ops_frame(1, json!([])), cursor_frame(3, json!([[0, 3]]))]
    );
    assert_eq!(fx.core.subscriber_count(), 4);
    // ... and keeps its own cursor for those who open later.
    assert_eq!(fx.open(5, 5, None)[1], cursor_frame(1, json!([[1, 1]])));
    // One subscription per connection: an op reaches the resynced connection once.
    fx.clear();
    fx.commit(2, 1, json!(["z"]));
    assert_eq!(fx.take(1), vec![op_frame(2, 2, json!(["z"]))]);
}

#[test]
fn closing_tells_the_others_unless_the_client_is_still_there() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 1, None);
    fx.open(3, 2, None);
    fx.close(1);
    assert!(
        fx.inbox.is_empty(),
        "client 1 still has the document open on connection 2"
    );
    fx.close(2);
    assert_eq!(
        fx.take(3),
        vec![json!({"type": "left", "doc": DOC, "client": client_str(1)})]
    );
    assert!(fx.inbox.is_empty());
    fx.close(2);
    fx.close(99);
    assert!(
        fx.inbox.is_empty(),
        "closing twice or an unknown connection says nothing"
    );
    // A closed connection gets nothing more, and its ops are ignored.
    fx.commit(3, 1, json!(["a"]));
    assert_eq!(fx.take(3), vec![ack(1, 1)]);
    fx.submit(1, 1, 1, json!(["b"]));
    assert_eq!((fx.core.rev(), fx.inbox.is_empty()), (1, true));
    fx.close(3);
    assert!(fx.core.is_idle());
}

#[test]
fn a_failed_append_stops_the_document_and_nothing_is_acked() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.submit(1, 1, 0, json!(["a"]));
    let job = fx.core.poll_store_job().expect("a write");
    assert!(matches!(job, StoreJob::Append { .. }));
    let failed = fx
        .core
        .store_done(Err(io_error()))
        .expect_err("a failed append is fatal to the document");
    assert_eq!(failed.doc, doc_id(DOC));
    assert!(failed.detail.contains("disk unplugged"), "{failed}");
    fx.pump();
    assert!(fx.inbox.is_empty(), "nothing was acknowledged or broadcast");
    assert_eq!(fx.core.durable_rev(), 0);

    // The driver reloads from the store, which does not have the op; the client resubmits.
    let mut fx = Fixture::load(DOC, fx.store.clone(), settings());
    assert_eq!(fx.open(3, 1, Some(0)), vec![ops_frame(0, json!([]))]);
    fx.commit(3, 1, json!(["a"]));
    assert_eq!(fx.take(3), vec![ack(1, 1)]);
}

#[test]
fn a_failed_compaction_loses_nothing_and_is_retried_later() {
    let mut fx = Fixture::new(CoreSettings {
        compact_every_ops: 2,
        ..settings()
    });
    fx.open(1, 1, None);
    fx.commit(1, 1, json!(["a"]));
    fx.submit(1, 2, 1, json!(["b"]));
    fx.run_job().expect("append");
    let job = fx.core.poll_store_job();
    assert!(
        matches!(job, Some(StoreJob::Compact(Snapshot { rev: 2, .. }))),
        "{job:?}"
    );
    fx.core
        .store_done(Err(io_error()))
        .expect("a failed compaction is not fatal");
    assert_eq!(fx.core.poll_store_job(), None, "no retry in a hot loop");
    fx.commit(1, 3, json!(["c"]));
    fx.submit(1, 4, 3, json!(["d"]));
    fx.run_job().expect("append");
    assert!(matches!(
        fx.core.poll_store_job(),
        Some(StoreJob::Compact(Snapshot { rev: 4, .. }))
    ));
}

#[test]
fn compaction_writes_a_snapshot_that_loads_back_with_text_revision_and_dedup() {
    let mut fx = Fixture::new(CoreSettings {
        compact_every_ops: 3,
        ..settings()
    });
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(1, 1, json!(["ab"]));
    fx.commit(2, 1, json!([2, "cd"]));
    fx.submit(1, 2, 2, json!([4, "😀"]));
    fx.run_job().expect("append");
    let job = fx
        .core
        .poll_store_job()
        .expect("compaction after 3 logged ops");
    let mut clients = vec![
        ClientSeq {
            client: client_id(1),
            seq: 2,
            rev: 3,
        },
        ClientSeq {
            client: client_id(2),
            seq: 1,
            rev: 2,
        },
    ];
    clients.sort_by(|a, b| a.client.cmp(&b.client));
    assert_eq!(
        job,
        StoreJob::Compact(Snapshot {
            rev: 3,
            text: "abcd😀".to_owned(),
            clients
        })
    );
    fx.store.apply(&job, &fx.core);
    fx.core.store_done(Ok(())).expect("compacted");
    assert_eq!(fx.core.poll_store_job(), None);
    fx.commit(2, 2, json!([-1]));
    assert_eq!(
        fx.store.log.iter().map(|r| r.rev).collect::<Vec<_>>(),
        vec![4]
    );

    let mut loaded = Fixture::load(DOC, fx.store.clone(), fx.core.settings.clone());
    assert_eq!(
        (loaded.text(), loaded.core.rev(), loaded.core.durable_rev()),
        (fx.text(), 4, 4)
    );
    assert_eq!(loaded.text(), "bcd😀");
    assert_eq!(
        loaded.core.poll_store_job(),
        None,
        "one logged op since the snapshot"
    );
    // The history starts after the snapshot.
    assert_eq!(
        loaded.open(5, 3, Some(3)),
        vec![ops_frame(
            4,
            json!([{"rev": 4, "client": client_str(2), "op": [-1]}])
        )]
    );
    assert_eq!(loaded.open(6, 3, Some(2)), vec![snapshot_frame(4, "bcd😀")]);
    // Exactly once survives the reload, from the snapshot and from the log.
    loaded.open(7, 1, Some(4));
    loaded.submit(7, 2, 2, json!(["again"]));
    assert_eq!(loaded.take(7), vec![ack(2, 3)]);
    loaded.open(8, 2, Some(4));
    loaded.submit(8, 2, 3, json!(["again"]));
    assert_eq!(loaded.take(8), vec![ack(2, 4)]);
    loaded.submit(8, 4, 4, json!(["x"]));
    assert_error(&loaded.take(8), "bad_message", Some(4));
    assert_eq!((loaded.core.rev(), loaded.core.poll_store_job()), (4, None));
}

#[test]
fn a_snapshot_taken_while_a_client_has_ops_pipelined_stores_its_last_durable_op() {
    // One op per append and a history of one op: when the snapshot is taken, the client's last
    // durable op has already been trimmed, and its last accepted op is not durable yet.
    let mut fx = Fixture::new(CoreSettings {
        history_ops: 1,
        max_batch_ops: 1,
        compact_every_ops: 2,
        ..settings()
    });
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(2, 1, json!(["x"]));
    // Client 1 sends three ops without waiting for acks (PROTOCOL allows it; seqs are
    // consecutive).
    fx.submit(1, 1, 1, json!([1, "a"]));
    fx.submit(1, 2, 1, json!([1, "b"]));
    fx.submit(1, 3, 1, json!([1, "c"]));
    assert_eq!(fx.core.rev(), 4);
    let appended = fx.run_job().expect("the append of revision 2");
    assert!(matches!(appended, StoreJob::Append { .. }));
    let job = fx
        .core
        .poll_store_job()
        .expect("a compaction after 2 logged ops");
    let StoreJob::Compact(snapshot) = &job else {
        panic!("expected a compaction, got {job:?}");
    };
    assert_eq!(snapshot.rev, 2);
    let mut expected = vec![
        ClientSeq {
            client: client_id(1),
            seq: 1,
            rev: 2,
        },
        ClientSeq {
            client: client_id(2),
            seq: 1,
            rev: 1,
        },
    ];
    expected.sort_by(|a, b| a.client.cmp(&b.client));
    assert_eq!(snapshot.clients, expected, "as of revision 2, not 4");
    fx.store.apply(&job, &fx.core);
    fx.core.store_done(Ok(())).expect("compacted");
    fx.pump();
    // One more op durable, then the next snapshot: client 1's seq 2 at revision 3.
    fx.run_job().expect("the append of revision 3");
    fx.run_job().expect("the append of revision 4");
    let job = fx.core.poll_store_job().expect("a compaction after 2 more");
    let StoreJob::Compact(snapshot) = &job else {
        panic!("expected a compaction, got {job:?}");
    };
    let own = snapshot.clients.iter().find(|c| c.client == client_id(1));
    assert_eq!(own.map(|c| (c.seq, c.rev)), Some((3, 4)));

    // A node that reloads from the first snapshot (ops 3 and 4 lost before they were durable)
    // acknowledges seq 1 again with its revision and accepts seq 2 as new.
    let mut store = FakeStore::default();
    store.snapshot = Some(match fx.store.snapshot.clone() {
        Some(s) if s.rev == 2 => s,
        other => panic!("the first snapshot is stored: {other:?}"),
    });
    let mut loaded = Fixture::load(DOC, store, settings());
    loaded.open(5, 1, Some(2));
    loaded.submit(5, 1, 1, json!([1, "a"]));
    assert_eq!(loaded.take(5), vec![ack(1, 2)]);
    loaded.commit(5, 2, json!([1, "b"]));
    assert_eq!(loaded.take(5), vec![ack(2, 3)]);
}

#[test]
fn the_exactly_once_table_is_bounded_but_never_forgets_an_undurable_op() {
    let mut fx = Fixture::new(CoreSettings {
        max_dedup_clients: 10,
        compact_every_ops: 12,
        ..settings()
    });
    for n in 1..=12 {
        fx.open(n as ConnId, n, None);
        fx.commit(n as ConnId, 1, json!(["x"]));
        assert!(fx.core.clients.len() <= 10);
    }
    let snapshot = fx.store.snapshot.clone().expect("compacted after 12 ops");
    assert_eq!(snapshot.rev, 12);
    assert_eq!(snapshot.clients.len(), 10);
    let kept: BTreeSet<ClientId> = snapshot.clients.iter().map(|c| c.client.clone()).collect();
    assert_eq!(
        kept,
        (3..=12).map(client_id).collect(),
        "the clients whose last op is oldest are forgotten"
    );

    let mut fx = Fixture::new(CoreSettings {
        max_dedup_clients: 2,
        ..settings()
    });
    for n in 1..=3 {
        fx.open(n as ConnId, n, None);
        fx.submit(n as ConnId, 1, 0, json!(["x"]));
    }
    assert_eq!(fx.core.rev(), 3);
    fx.submit(1, 1, 0, json!(["x"]));
    assert_eq!(
        fx.core.rev(),
        3,
        "a duplicate of an undurable op must be recognised"
    );
    fx.flush();
    let acks: Vec<Value> = fx
        .take(1)
        .into_iter()
        .filter(|f| f["type"] == "ack")
        .collect();
    assert_eq!(acks, vec![ack(1, 1)]);
    assert_eq!(fx.text(), "xxx");
}

#[test]
fn the_history_is_bounded() {
    let mut fx = Fixture::new(CoreSettings {
        history_ops: 3,
        ..settings()
    });
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    for seq in 1..=10 {
        fx.commit(1, seq, json!([format!("{}", seq % 10)]));
        assert!(fx.core.history.len() <= 3);
    }
    let ops = fx.open(3, 3, Some(7));
    let revs: Vec<u64> = ops[0]["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["rev"].as_u64().expect("rev"))
        .collect();
    assert_eq!(revs, vec![8, 9, 10]);
    assert_eq!(
        fx.open(3, 3, Some(6)),
        vec![snapshot_frame(10, "0987654321")]
    );
    fx.clear();
    fx.submit(2, 1, 6, json!(["q"]));
    assert_error(&fx.take(2), "stale_rev", Some(1));
    fx.commit(2, 1, json!(["q"]));
    assert_eq!(fx.take(2), vec![ack(1, 11)]);
}

/// Two clients delete the last character concurrently: the second op rebases to the identity on
/// an empty document. It still takes a revision (exactly-once needs its seq stored), and it is
/// sent as `[]`, the one documented exception in docs/PROTOCOL.md; every other op is valid.
#[test]
fn a_rebased_no_op_on_an_empty_document_is_sent_as_the_documented_empty_op() {
    let mut fx = Fixture::new(settings());
    fx.open(1, 1, None);
    fx.open(2, 2, None);
    fx.commit(1, 1, json!(["x"]));
    fx.submit(1, 2, 1, json!([-1]));
    fx.submit(2, 1, 1, json!([-1]));
    fx.flush();
    let mut sent: Vec<Value> = fx
        .take(1)
        .into_iter()
        .chain(fx.take(2))
        .filter(|f| f["type"] == "op")
        .collect();
    sent.extend(
        fx.open(3, 3, Some(0)).remove(0)["ops"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let mut empty = 0;
    for frame in sent {
        if frame["op"] == json!([]) {
            empty += 1;
            continue;
        }
        let op = Op::from_raw(raw(frame["op"].clone()), 1)
            .or_else(|_| Op::from_raw(raw(frame["op"].clone()), 0));
        assert!(op.is_ok(), "the server sent an invalid op: {frame}");
    }
    assert!(empty >= 1, "the rebased no-op is sent as []");
}

// ---------------------------------------------------------------------------------------------
// Simulation: clients with real client-side OT over an in-order network, a fake store with group
// commit, reconnects, resyncs, store failures and crashes, all chosen by one seeded RNG.
// Clients check every frame strictly against PROTOCOL, except that they accept (and count) `[]`
// for a no-op on an empty document: the documented exception (docs/PROTOCOL.md).

/// Seeds run by default; `CHORUS_SIM_SEED` runs one.
const SIM_SEEDS: u64 = 200;
/// Random steps per seed before draining.
const SIM_STEPS: usize = 300;
/// Rounds the drain may take before the simulation is declared stuck (each round delivers every
/// queued frame and runs one store job; a few hundred ops settle in far fewer).
const DRAIN_ROUNDS: usize = 10_000;
/// Events kept for the failure report.
const TRACE_EVENTS: usize = 60;
/// The simulated document (markdown, to check `lang` on every `opened`).
const SIM_DOC: &str = "sim/notes.md";
/// Pieces of inserted text: astral characters, combining marks, a ZWJ sequence, newlines.
const PIECES: [&str; 9] = [
    "a",
    "b",
    "z",
    " ",
    "\n",
    "😀",
    "e\u{301}",
    "中",
    "\u{1F469}\u{200D}\u{1F4BB}",
];

/// The client's op that the server has not acknowledged yet.
#[derive(Debug, Clone)]
struct InFlight {
    seq: u64,
    /// Revision the op was first written against, and the op as first written: what is
    /// resubmitted after a snapshot (PROTOCOL "Resuming").
    base_rev: u64,
    original: Op,
    /// The op rebased over every op received since: based on `SimClient::server_text`.
    current: Op,
    /// A snapshot past `base_rev` replaced the text: the op is not in `text` and its rebased
    /// form is unknown; it is resubmitted as `original`.
    blind: bool,
    /// The server refused it for now (`unavailable`, or `stale_rev` of a lagging client).
    retry: bool,
}

/// A client as a browser tab would be: one connection, one op in flight, later edits composed.
#[derive(Debug)]
struct SimClient {
    index: usize,
    id: ClientId,
    conn: Option<ConnId>,
    /// Frames sent to `conn` and not yet delivered.
    inbox: VecDeque<Value>,
    /// Revision of the last `opened`, `ack` or `op` this connection received.
    conn_rev: Option<u64>,
    /// `open`s sent on `conn` whose `opened` has not arrived.
    opens_outstanding: u32,
    /// The client knows it lacks an op (its own op, acked while blind): it ignores ops until
    /// the `opened` of the resync it sent.
    drop_until_opened: bool,
    /// That op's revision: it must come back in the resync's `ops`.
    unknown_own_rev: Option<u64>,
    /// Server revision the client is at, and the text at it.
    rev: u64,
    server_text: String,
    /// What the user sees: `server_text` with the op in flight and the pending edits.
    text: String,
    inflight: Option<InFlight>,
    pending: Option<Op>,
    acked_seq: u64,
    /// (seq, rev) of every op of this client the server confirmed (ack or own op in `ops`).
    acks: Vec<(u64, u64)>,
}

/// What happened, summed over seeds, to show (and assert) that every path ran.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    edits: u64,
    acks: u64,
    dedup_acks: u64,
    acks_in_opened: u64,
    multi_op_batches: u64,
    compactions: u64,
    crashes: u64,
    store_failures: u64,
    reconnects: u64,
    resyncs: u64,
    snapshots_while_in_flight: u64,
    stale_blind_ops_dropped: u64,
    retries: u64,
    cursors: u64,
    empty_no_ops: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.edits += o.edits;
        self.acks += o.acks;
        self.dedup_acks += o.dedup_acks;
        self.acks_in_opened += o.acks_in_opened;
        self.multi_op_batches += o.multi_op_batches;
        self.compactions += o.compactions;
        self.crashes += o.crashes;
        self.store_failures += o.store_failures;
        self.reconnects += o.reconnects;
        self.resyncs += o.resyncs;
        self.snapshots_while_in_flight += o.snapshots_while_in_flight;
        self.stale_blind_ops_dropped += o.stale_blind_ops_dropped;
        self.retries += o.retries;
        self.cursors += o.cursors;
        self.empty_no_ops += o.empty_no_ops;
    }
}

struct Sim {
    seed: u64,
    rng: StdRng,
    doc: DocId,
    settings: CoreSettings,
    core: DocumentCore<ConnId>,
    store: FakeStore,
    /// Every record ever made durable, never compacted: the truth the end state is checked against.
    audit: Vec<LogRecord>,
    audit_text: String,
    job: Option<StoreJob>,
    clients: Vec<SimClient>,
    /// Current connection of each client (old and zombie connections are not here).
    owners: HashMap<ConnId, usize>,
    /// Connections a client abandoned that the server has not been told about yet.
    zombies: Vec<ConnId>,
    next_conn: ConnId,
    trace: VecDeque<String>,
    stats: Stats,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed: seed {} (replay with CHORUS_SIM_SEED={})",
                self.seed, self.seed
            );
            eprintln!("settings: {:?}", self.settings);
            eprintln!("last events:");
            for event in &self.trace {
                eprintln!("  {event}");
            }
        }
    }
}

/// The durable record at `rev`, which a frame about `rev` must match.
fn audited(audit: &[LogRecord], rev: u64) -> &LogRecord {
    let index = usize::try_from(rev).ok().and_then(|r| r.checked_sub(1));
    index.and_then(|i| audit.get(i)).unwrap_or_else(|| {
        panic!(
            "revision {rev} was sent but is not durable (durable: {})",
            audit.len()
        )
    })
}

/// A random edit of `text`: an insert, a delete, or a replacement.
fn random_edit(rng: &mut StdRng, text: &str) -> Op {
    let len = text.chars().count();
    let mut components = Vec::new();
    let random_insert = |rng: &mut StdRng| {
        let pieces = rng.random_range(1..=3);
        (0..pieces)
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect::<String>()
    };
    if len > 0 && rng.random_bool(0.4) {
        let start = rng.random_range(0..len);
        let count = rng.random_range(1..=(len - start).min(5));
        if start > 0 {
            components.push(Component::Retain(start));
        }
        if rng.random_bool(0.3) {
            components.push(Component::Insert(random_insert(rng).into()));
        }
        components.push(Component::Delete(count));
    } else {
        let at = rng.random_range(0..=len);
        if at > 0 {
            components.push(Component::Retain(at));
        }
        components.push(Component::Insert(random_insert(rng).into()));
    }
    Op::from_components(components, len).expect("generated edits are valid")
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let settings = CoreSettings {
            history_ops: rng.random_range(4..=40),
            max_document_chars: 100_000,
            max_batch_ops: rng.random_range(1..=6),
            max_pending_ops: if rng.random_bool(0.3) {
                rng.random_range(1..=4)
            } else {
                1_000
            },
            max_dedup_clients: 1_000,
            compact_every_ops: rng.random_range(3..=30),
        };
        let doc = doc_id(SIM_DOC);
        let store = FakeStore::default();
        let core = DocumentCore::load(doc.clone(), store.stored(), settings.clone())
            .expect("empty store loads");
        let clients = (0..rng.random_range(2..=4))
            .map(|index| SimClient {
                index,
                id: client_id(index + 1),
                conn: None,
                inbox: VecDeque::new(),
                conn_rev: None,
                opens_outstanding: 0,
                drop_until_opened: false,
                unknown_own_rev: None,
                rev: 0,
                server_text: String::new(),
                text: String::new(),
                inflight: None,
                pending: None,
                acked_seq: 0,
                acks: Vec::new(),
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            doc,
            settings,
            core,
            store,
            audit: Vec::new(),
            audit_text: String::new(),
            job: None,
            clients,
            owners: HashMap::new(),
            zombies: Vec::new(),
            next_conn: 1,
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        for i in 0..sim.clients.len() {
            sim.connect(i);
        }
        sim
    }

    fn event(&mut self, event: String) {
        if self.trace.len() == TRACE_EVENTS {
            self.trace.pop_front();
        }
        self.trace.push_back(event);
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    fn step(&mut self) {
        let i = self.rng.random_range(0..self.clients.len());
        match self.rng.random_range(0..1_000) {
            0..=299 => self.edit(i),
            300..=549 => {
                let n = self.rng.random_range(1..=4);
                for _ in 0..n {
                    self.deliver(i);
                }
            }
            550..=729 => self.store_step(),
            730..=789 => self.send_cursor(i),
            790..=839 => self.retry(i),
            840..=879 => self.reconnect(i),
            880..=909 => self.resync(i),
            910..=929 => self.close_zombie(),
            930..=939 => self.crash(),
            _ => {
                for i in 0..self.clients.len() {
                    self.deliver(i);
                }
            }
        }
    }

    /// Delivers the core's outputs to the clients' current connections.
    fn pump(&mut self) {
        while let Some(output) = self.core.poll_output() {
            let (conns, frame): (Vec<ConnId>, _) = match output {
                Output::Send { to, frame } => (vec![to], frame),
                Output::Ack { to, seq, rev } => (vec![to], self.core.ack_frame(seq, rev)),
                Output::Broadcast { except, frame } => (
                    self.core.subscribers(except).map(|(c, _)| c).collect(),
                    frame,
                ),
            };
            let value = parse_frame(&frame);
            for conn in conns {
                if let Some(&i) = self.owners.get(&conn) {
                    self.clients[i].inbox.push_back(value.clone());
                }
            }
        }
    }

    // --- Client actions -----------------------------------------------------------------------

    /// Opens the document on a new connection (first connect, reconnect, after a crash).
    fn connect(&mut self, i: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let since = self.rng.random_bool(0.8).then_some(self.clients[i].rev);
        let c = &mut self.clients[i];
        c.conn = Some(conn);
        c.inbox.clear();
        c.conn_rev = None;
        c.opens_outstanding = 1;
        self.owners.insert(conn, i);
        let (id, name, color) = (
            c.id.clone(),
            Arc::from(name_of(i + 1)),
            Arc::from(color_of(i + 1)),
        );
        self.event(format!("client {i} opens on conn {conn} since {since:?}"));
        self.core.open(conn, conn, id, name, color, since);
        self.pump();
    }

    fn edit(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.conn.is_none() || c.drop_until_opened || c.inflight.as_ref().is_some_and(|f| f.blind) {
            return;
        }
        let op = random_edit(&mut self.rng, &c.text);
        self.stats.edits += 1;
        self.event(format!(
            "client {i} edits {}",
            serde_json::to_string(&op).unwrap_or_default()
        ));
        let c = &mut self.clients[i];
        c.text = op
            .apply_to_str(&c.text)
            .expect("an edit applies to the text it was made on");
        if c.inflight.is_none() {
            c.inflight = Some(InFlight {
                seq: c.acked_seq + 1,
                base_rev: c.rev,
                original: op.clone(),
                current: op,
                blind: false,
                retry: false,
            });
            self.send_inflight(i);
        } else {
            c.pending = Some(match c.pending.take() {
                Some(pending) => pending.compose(&op).expect("edits compose"),
                None => op,
            });
        }
    }

    /// Submits (or resubmits) the op in flight: rebased to the client's revision when known,
    /// else as first written.
    fn send_inflight(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let conn = c.conn.expect("a connected client");
        let f = c.inflight.as_mut().expect("an op in flight");
        f.retry = false;
        let (rev, op) = if f.blind {
            (f.base_rev, f.original.clone())
        } else {
            (c.rev, f.current.clone())
        };
        let seq = f.seq;
        self.event(format!(
            "client {i} submits seq {seq} at rev {rev} on conn {conn}"
        ));
        self.core.submit(conn, seq, rev, raw_of(&op));
        self.pump();
    }

    fn send_cursor(&mut self, i: usize) {
        let c = &self.clients[i];
        let Some(conn) = c.conn else { return };
        if c.inflight.is_some() || c.drop_until_opened || c.conn_rev != Some(c.rev) {
            return;
        }
        let len = c.server_text.chars().count() as u64;
        let rev = c.rev;
        let count = self.rng.random_range(1..=3);
        let ranges: Vec<(u64, u64)> = (0..count)
            .map(|_| {
                (
                    self.rng.random_range(0..=len),
                    self.rng.random_range(0..=len),
                )
            })
            .collect();
        self.stats.cursors += 1;
        self.event(format!("client {i} cursor at rev {rev}: {ranges:?}"));
        self.core.cursor(conn, rev, ranges);
        self.pump();
    }

    fn retry(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.conn.is_some() && !c.drop_until_opened && c.inflight.as_ref().is_some_and(|f| f.retry)
        {
            self.stats.retries += 1;
            self.send_inflight(i);
        }
    }

    /// The client's socket breaks; it connects again and resumes.
    fn reconnect(&mut self, i: usize) {
        let Some(old) = self.clients[i].conn.take() else {
            return;
        };
        self.owners.remove(&old);
        self.stats.reconnects += 1;
        if self.rng.random_bool(0.5) {
            self.event(format!("client {i} closes conn {old}"));
            self.core.close(old);
            self.pump();
        } else {
            self.event(format!("client {i} abandons conn {old}"));
            self.zombies.push(old);
        }
        self.connect(i);
    }

    /// The client opens the document again on the same connection.
    fn resync(&mut self, i: usize) {
        let Some(conn) = self.clients[i].conn else {
            return;
        };
        let since = self.rng.random_bool(0.7).then_some(self.clients[i].rev);
        self.stats.resyncs += 1;
        self.open_again(i, conn, since);
    }

    fn open_again(&mut self, i: usize, conn: ConnId, since: Option<u64>) {
        let c = &mut self.clients[i];
        c.opens_outstanding += 1;
        let (id, name, color) = (
            c.id.clone(),
            Arc::from(name_of(i + 1)),
            Arc::from(color_of(i + 1)),
        );
        self.event(format!("client {i} reopens on conn {conn} since {since:?}"));
        self.core.open(conn, conn, id, name, color, since);
        self.pump();
    }

    /// The server finally notices an abandoned connection.
    fn close_zombie(&mut self) {
        if self.zombies.is_empty() {
            return;
        }
        let conn = self
            .zombies
            .swap_remove(self.rng.random_range(0..self.zombies.len()));
        self.event(format!("server closes abandoned conn {conn}"));
        self.core.close(conn);
        self.pump();
    }

    // --- Store, crash ---------------------------------------------------------------------------

    fn store_step(&mut self) {
        match self.job.take() {
            None => self.job = self.core.poll_store_job(),
            Some(job) => self.complete_job(job, true),
        }
    }

    /// Records a write that reached the store.
    fn write(&mut self, job: &StoreJob) {
        match job {
            StoreJob::Append { .. } => {
                let records: Vec<&LogRecord> = self.core.append_records().collect();
                for &record in &records {
                    assert_eq!(
                        record.rev,
                        self.audit.len() as u64 + 1,
                        "appends follow what is durable"
                    );
                    self.audit_text = record
                        .op
                        .apply_to_str(&self.audit_text)
                        .expect("a logged op applies");
                    self.audit.push(LogRecord::clone(record));
                }
                if records.len() > 1 {
                    self.stats.multi_op_batches += 1;
                }
            }
            StoreJob::Compact(snapshot) => {
                assert_eq!(
                    snapshot.rev,
                    self.audit.len() as u64,
                    "a snapshot is of the durable revision"
                );
                assert_eq!(
                    snapshot.text, self.audit_text,
                    "a snapshot has the durable text"
                );
                let mut last: BTreeMap<&ClientId, (u64, u64)> = BTreeMap::new();
                for r in &self.audit {
                    last.insert(&r.client, (r.seq, r.rev));
                }
                let clients: BTreeMap<&ClientId, (u64, u64)> = snapshot
                    .clients
                    .iter()
                    .map(|c| (&c.client, (c.seq, c.rev)))
                    .collect();
                assert_eq!(
                    clients, last,
                    "a snapshot has every client's last seq and its revision"
                );
                self.stats.compactions += 1;
            }
        }
        self.store.apply(job, &self.core);
    }

    fn complete_job(&mut self, job: StoreJob, may_fail: bool) {
        let fail = may_fail && self.rng.random_bool(0.04);
        match (&job, fail) {
            (
                StoreJob::Append {
                    first_rev,
                    last_rev,
                },
                true,
            ) => {
                self.event(format!(
                    "store fails to append revs {first_rev}..={last_rev}"
                ));
                self.stats.store_failures += 1;
                assert!(
                    self.core.store_done(Err(io_error())).is_err(),
                    "a failed append stops the document"
                );
                self.pump();
                self.reload();
            }
            (StoreJob::Compact(_), true) => {
                self.event("store fails to compact".to_owned());
                self.core
                    .store_done(Err(io_error()))
                    .expect("a failed compaction is not fatal");
                self.pump();
            }
            (_, false) => {
                self.event(match &job {
                    StoreJob::Append {
                        first_rev,
                        last_rev,
                    } => format!("store appends revs {first_rev}..={last_rev}"),
                    StoreJob::Compact(s) => format!("store compacts at rev {}", s.rev),
                });
                self.write(&job);
                self.core
                    .store_done(Ok(()))
                    .expect("a successful write is not an error");
                self.pump();
            }
        }
    }

    /// The node dies; a write in flight may or may not have reached the disk.
    fn crash(&mut self) {
        self.stats.crashes += 1;
        if let Some(job) = self.job.take() {
            if self.rng.random_bool(0.5) {
                self.event("crash after the write in flight reached the store".to_owned());
                self.write(&job);
            } else {
                self.event("crash before the write in flight reached the store".to_owned());
            }
        } else {
            self.event("crash".to_owned());
        }
        self.reload();
    }

    /// Loads the document from the store, as the supervisor does after a crash, and every client
    /// reconnects.
    fn reload(&mut self) {
        self.job = None;
        self.core =
            DocumentCore::load(self.doc.clone(), self.store.stored(), self.settings.clone())
                .expect("the store holds a loadable document");
        assert_eq!(
            self.core.rev(),
            self.audit.len() as u64,
            "a reload has every durable op"
        );
        assert_eq!(
            self.core.text().to_string(),
            self.audit_text,
            "a reload has the durable text"
        );
        self.owners.clear();
        self.zombies.clear();
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            c.conn = None;
            c.inbox.clear();
            self.connect(i);
        }
    }

    // --- Client side of the protocol --------------------------------------------------------------

    fn deliver(&mut self, i: usize) {
        let Some(frame) = self.clients[i].inbox.pop_front() else {
            return;
        };
        self.event(format!("client {i} gets {frame}"));
        assert_eq!(
            frame["doc"], SIM_DOC,
            "every frame names the document: {frame}"
        );
        match frame["type"].as_str() {
            Some("opened") => self.on_opened(i, &frame),
            Some("ack") => self.on_ack(i, &frame),
            Some("op") => self.on_op(i, &frame),
            Some("cursor") => self.on_cursor(i, &frame),
            Some("left") => assert_ne!(
                frame["client"],
                self.clients[i].id.as_str(),
                "told that it left itself"
            ),
            Some("error") => self.on_error(i, &frame),
            _ => panic!("unexpected frame {frame}"),
        }
    }

    /// Decodes an op the server sent, strictly per PROTOCOL, with one exception counted in
    /// `Stats::empty_no_ops`: a no-op on an empty document is sent as `[]`, as documented
    /// (see `a_rebased_no_op_on_an_empty_document_is_sent_as_the_documented_empty_op`).
    fn wire_op(&mut self, value: &Value, base_len: usize) -> Op {
        if base_len == 0 && value.as_array().is_some_and(Vec::is_empty) {
            self.stats.empty_no_ops += 1;
            return Op::identity(0);
        }
        Op::from_raw(raw(value.clone()), base_len).unwrap_or_else(|e| {
            panic!("the server sent an invalid op {value} for a {base_len}-char document: {e}")
        })
    }

    fn on_opened(&mut self, i: usize, frame: &Value) {
        let rev = frame["rev"].as_u64().expect("opened has a rev");
        assert_eq!(frame["lang"], "markdown");
        let c = &mut self.clients[i];
        assert!(c.opens_outstanding > 0, "opened without an open");
        c.opens_outstanding -= 1;
        if let Some(previous) = c.conn_rev {
            assert!(
                rev >= previous,
                "opened at {rev} after this connection got {previous}"
            );
        }
        c.conn_rev = Some(rev);
        assert!(
            rev >= c.rev,
            "opened at {rev} behind the client's revision {}",
            c.rev
        );
        if let Some(ops) = frame.get("ops") {
            for entry in ops.as_array().expect("ops is an array") {
                let op_rev = entry["rev"].as_u64().expect("listed op has a rev");
                if op_rev <= self.clients[i].rev {
                    continue;
                }
                let c = &self.clients[i];
                assert_eq!(op_rev, c.rev + 1, "listed ops are consecutive: {frame}");
                let base_len = c.server_text.chars().count();
                let op = self.wire_op(&entry["op"], base_len);
                let author = entry["client"].as_str().expect("listed op has a client");
                let record = audited(&self.audit, op_rev);
                assert_eq!(
                    (record.client.as_str(), &record.op),
                    (author, &op),
                    "listed op differs from the log"
                );
                let c = &mut self.clients[i];
                if author != c.id.as_str() {
                    Sim::apply_foreign(c, op);
                    continue;
                }
                let seq = record.seq;
                self.stats.acks_in_opened += 1;
                match c.inflight.take() {
                    // PROTOCOL "Resuming": its own op after its last ack is the op in flight.
                    Some(f) if !f.blind => {
                        assert_eq!(f.seq, seq, "own listed op is the op in flight");
                        assert_eq!(
                            f.current, op,
                            "own listed op is the op in flight as rebased"
                        );
                        c.inflight = Some(f);
                        Sim::acknowledge(c, op_rev);
                    }
                    // Not in the text (blind) or acked while blind: applied like any other.
                    Some(f) => {
                        assert_eq!(f.seq, seq, "own listed op is the op in flight");
                        Sim::apply_foreign(c, op);
                        c.acked_seq = seq;
                        c.acks.push((seq, op_rev));
                    }
                    None => {
                        assert_eq!(
                            c.unknown_own_rev,
                            Some(op_rev),
                            "own op listed that the client never sent"
                        );
                        c.unknown_own_rev = None;
                        Sim::apply_foreign(c, op);
                    }
                }
            }
            let c = &self.clients[i];
            assert_eq!(c.rev, rev, "the ops of opened reach its rev");
            assert_eq!(
                c.unknown_own_rev, None,
                "the resync listed the client's own op"
            );
        } else {
            let text = frame["text"].as_str().expect("a snapshot has text");
            let c = &mut self.clients[i];
            if rev == c.rev {
                assert_eq!(
                    c.server_text, text,
                    "snapshot at the client's own revision differs"
                );
            } else {
                if let Some(f) = c.inflight.as_mut() {
                    assert!(f.base_rev < rev);
                    f.blind = true;
                    self.stats.snapshots_while_in_flight += 1;
                }
                // Local edits after the op in flight cannot be rebased onto the snapshot.
                c.pending = None;
                c.unknown_own_rev = None;
                c.server_text = text.to_owned();
                c.text = text.to_owned();
                c.rev = rev;
            }
        }
        let c = &mut self.clients[i];
        if c.opens_outstanding == 0 {
            c.drop_until_opened = false;
        }
        // PROTOCOL "Resuming": an op still in flight is resubmitted with its seq.
        if c.inflight.is_some() {
            self.send_inflight(i);
        }
    }

    /// The op in flight became revision `rev`; pending edits become the next op in flight.
    fn acknowledge(c: &mut SimClient, rev: u64) {
        let f = c.inflight.take().expect("an op in flight");
        assert!(!f.blind);
        assert_eq!(rev, c.rev + 1, "an ack follows the client's revision");
        c.server_text = f
            .current
            .apply_to_str(&c.server_text)
            .expect("the op in flight applies");
        c.rev = rev;
        c.acked_seq = f.seq;
        c.acks.push((f.seq, rev));
        if let Some(pending) = c.pending.take().filter(|p| !p.is_noop()) {
            c.inflight = Some(InFlight {
                seq: f.seq + 1,
                base_rev: c.rev,
                original: pending.clone(),
                current: pending,
                blind: false,
                retry: false,
            });
        }
        if c.inflight.is_none() {
            assert_eq!(
                c.text, c.server_text,
                "without local edits the client shows the server's text"
            );
        }
    }

    /// An op of another client (or its own, not in its text): rebase local edits over it.
    fn apply_foreign(c: &mut SimClient, op: Op) {
        c.server_text = op
            .apply_to_str(&c.server_text)
            .expect("a server op applies to the server text");
        c.rev += 1;
        let mut incoming = op;
        if let Some(f) = c.inflight.as_mut().filter(|f| !f.blind) {
            // The server applied `incoming` first: its inserts go left of ours.
            let (rebased_incoming, rebased_ours) =
                Op::transform(&incoming, &f.current).expect("transform");
            incoming = rebased_incoming;
            f.current = rebased_ours;
        }
        if let Some(pending) = c.pending.as_mut() {
            let (rebased_incoming, rebased_pending) =
                Op::transform(&incoming, pending).expect("transform");
            incoming = rebased_incoming;
            *pending = rebased_pending;
        }
        c.text = incoming
            .apply_to_str(&c.text)
            .expect("a rebased op applies to the local text");
    }

    fn on_ack(&mut self, i: usize, frame: &Value) {
        let seq = frame["seq"].as_u64().expect("ack has a seq");
        let rev = frame["rev"].as_u64().expect("ack has a rev");
        let record = audited(&self.audit, rev);
        let me = &self.clients[i].id;
        assert_eq!(
            (&record.client, record.seq),
            (me, seq),
            "ack for an op the log has otherwise"
        );
        let c = &mut self.clients[i];
        let conn_rev = c.conn_rev.expect("ack before opened");
        if seq <= c.acked_seq {
            // A second answer to a resubmitted op: the dedup exception.
            assert!(
                rev <= conn_rev,
                "duplicate ack at {rev} ahead of this connection's {conn_rev}"
            );
            self.stats.dedup_acks += 1;
            return;
        }
        let f = c
            .inflight
            .as_ref()
            .unwrap_or_else(|| panic!("ack {frame} without an op in flight"));
        assert_eq!(f.seq, seq, "ack for an op that is not in flight");
        if rev <= conn_rev {
            // The dedup exception: only an op resubmitted after a snapshot can be acked behind.
            assert!(
                f.blind,
                "ack at {rev} behind this connection's {conn_rev} for an op not resubmitted blind"
            );
            self.stats.dedup_acks += 1;
            c.inflight = None;
            c.acked_seq = seq;
            c.acks.push((seq, rev));
            return;
        }
        assert_eq!(rev, conn_rev + 1, "ack skips revisions on this connection");
        c.conn_rev = Some(rev);
        self.stats.acks += 1;
        assert!(!c.drop_until_opened, "an op in flight while resyncing");
        if f.blind {
            // Applied now, but the client does not know its rebased form: resync from before it.
            c.inflight = None;
            c.acked_seq = seq;
            c.acks.push((seq, rev));
            c.unknown_own_rev = Some(rev);
            c.drop_until_opened = true;
            let (conn, since) = (c.conn.expect("connected"), Some(c.rev));
            self.open_again(i, conn, since);
            return;
        }
        assert_eq!(
            audited(&self.audit, rev).op,
            f.current,
            "the logged op is the op in flight as the client rebased it"
        );
        let c = &mut self.clients[i];
        Sim::acknowledge(c, rev);
        if c.inflight.is_some() {
            self.send_inflight(i);
        }
    }

    fn on_op(&mut self, i: usize, frame: &Value) {
        let rev = frame["rev"].as_u64().expect("op has a rev");
        let c = &mut self.clients[i];
        let conn_rev = c.conn_rev.expect("op before opened");
        assert_eq!(
            rev,
            conn_rev + 1,
            "ops arrive in revision order without a gap on a connection"
        );
        c.conn_rev = Some(rev);
        let author = frame["client"].as_str().expect("op has a client");
        assert_ne!(
            author,
            c.id.as_str(),
            "a client's own op is sent to it as a broadcast"
        );
        if c.drop_until_opened {
            return;
        }
        assert_eq!(rev, c.rev + 1);
        let base_len = c.server_text.chars().count();
        let op = self.wire_op(&frame["op"], base_len);
        let record = audited(&self.audit, rev);
        assert_eq!(
            (record.client.as_str(), &record.op),
            (author, &op),
            "broadcast op differs from the log"
        );
        Sim::apply_foreign(&mut self.clients[i], op);
    }

    fn on_cursor(&mut self, i: usize, frame: &Value) {
        let c = &self.clients[i];
        let author = frame["client"].as_str().expect("cursor has a client");
        assert_ne!(
            author,
            c.id.as_str(),
            "a cursor is echoed to its own client"
        );
        let n = usize::from_str_radix(author, 16).expect("test client ids are hex numbers");
        assert_eq!(
            (&frame["name"], &frame["color"]),
            (&json!(name_of(n)), &json!(color_of(n)))
        );
        if c.drop_until_opened || c.conn_rev != Some(c.rev) {
            return;
        }
        let len = c.server_text.chars().count() as u64;
        for range in frame["ranges"].as_array().expect("ranges") {
            let (a, h) = (
                range[0].as_u64().expect("anchor"),
                range[1].as_u64().expect("head"),
            );
            assert!(
                a <= len && h <= len,
                "cursor {frame} past the end of the {len}-char text at rev {}",
                c.rev
            );
        }
    }

    fn on_error(&mut self, i: usize, frame: &Value) {
        let code = frame["code"].as_str().expect("error has a code");
        let seq = frame.get("seq").and_then(Value::as_u64);
        let c = &mut self.clients[i];
        match c.inflight.as_mut() {
            Some(f) if Some(f.seq) == seq => match code {
                "unavailable" => f.retry = true,
                // Written against a revision the client never saw as rebased: the op is lost
                // (not applied, its seq not used up).
                "stale_rev" if f.blind => {
                    self.stats.stale_blind_ops_dropped += 1;
                    c.inflight = None;
                }
                // A client that lags behind more than the history: resubmit once caught up.
                "stale_rev" => f.retry = true,
                _ => panic!("unexpected error for the op in flight: {frame}"),
            },
            // An earlier submission of an op that another submission got applied.
            _ if seq.is_some_and(|s| s <= c.acked_seq)
                && matches!(code, "unavailable" | "stale_rev") => {}
            _ => panic!("unexpected error: {frame}"),
        }
    }

    // --- End ---------------------------------------------------------------------------------

    /// Delivers everything, retries, closes abandoned connections and runs every store job
    /// until nothing moves.
    fn drain(&mut self) {
        self.event("drain".to_owned());
        for _ in 0..DRAIN_ROUNDS {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while !self.clients[i].inbox.is_empty() {
                    self.deliver(i);
                    moved = true;
                }
            }
            for i in 0..self.clients.len() {
                if self.clients[i].inflight.as_ref().is_some_and(|f| f.retry) {
                    self.retry(i);
                    moved = true;
                }
            }
            while !self.zombies.is_empty() {
                self.close_zombie();
                moved = true;
            }
            match self.job.take() {
                Some(job) => {
                    self.complete_job(job, false);
                    moved = true;
                }
                None => {
                    self.job = self.core.poll_store_job();
                    moved |= self.job.is_some();
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulation did not settle within {DRAIN_ROUNDS} rounds");
    }

    fn check_final(&mut self) {
        assert!(self.core.is_flushed());
        assert_eq!(
            self.core.subscriber_count(),
            self.clients.len(),
            "one subscription per connected client"
        );
        let durable = self.core.durable_rev();
        let server_text = self.core.text().to_string();
        assert_eq!(durable, self.audit.len() as u64);
        assert_eq!(server_text, self.audit_text);
        for (k, record) in self.audit.iter().enumerate() {
            assert_eq!(
                record.rev,
                k as u64 + 1,
                "durable revisions are consecutive"
            );
        }
        for c in &self.clients {
            assert!(
                c.conn.is_some() && c.opens_outstanding == 0 && !c.drop_until_opened,
                "client {}",
                c.index
            );
            assert!(
                c.inflight.is_none() && c.pending.is_none(),
                "client {} still has unacknowledged edits",
                c.index
            );
            assert_eq!(
                (c.rev, c.conn_rev),
                (durable, Some(durable)),
                "client {} revision",
                c.index
            );
            assert_eq!(c.server_text, server_text, "client {} diverged", c.index);
            assert_eq!(c.text, server_text, "client {} shows other text", c.index);
            // Exactly once: the log has this client's seqs 1, 2, 3, … each once, and they are
            // exactly the ops it was told were applied, at the revisions it was told.
            let logged: Vec<(u64, u64)> = self
                .audit
                .iter()
                .filter(|r| r.client == c.id)
                .map(|r| (r.seq, r.rev))
                .collect();
            let seqs: Vec<u64> = logged.iter().map(|&(seq, _)| seq).collect();
            assert_eq!(
                seqs,
                (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "client {} seqs in the log",
                c.index
            );
            assert_eq!(
                c.acks, logged,
                "client {} acks differ from the log",
                c.index
            );
            assert_eq!(c.acked_seq, seqs.len() as u64);
        }
        let reloaded = DocumentCore::<ConnId>::load(
            self.doc.clone(),
            self.store.stored(),
            self.settings.clone(),
        )
        .expect("the store loads");
        assert_eq!(
            (reloaded.rev(), reloaded.text().to_string()),
            (durable, server_text)
        );
    }
}

#[test]
fn simulated_clients_converge_with_every_op_applied_exactly_once() {
    let seeds = match std::env::var("CHORUS_SIM_SEED") {
        Ok(seed) => {
            let seed: u64 = seed.parse().expect("CHORUS_SIM_SEED is a number");
            seed..seed + 1
        }
        Err(_) => 0..SIM_SEEDS,
    };
    let all_seeds = seeds.end - seeds.start == SIM_SEEDS;
    let mut totals = Stats::default();
    for seed in seeds {
        let mut sim = Sim::new(seed);
        sim.run(SIM_STEPS);
        sim.drain();
        sim.check_final();
        totals.add(&sim.stats);
    }
    eprintln!("simulation totals: {totals:?}");
    if all_seeds {
        // The harness must reach every path it claims to test.
        let t = totals;
        for (what, count) in [
            ("acks", t.acks),
            ("duplicate acks", t.dedup_acks),
            ("acks in opened", t.acks_in_opened),
            ("multi-op batches", t.multi_op_batches),
            ("compactions", t.compactions),
            ("crashes", t.crashes),
            ("store failures", t.store_failures),
            ("reconnects", t.reconnects),
            ("resyncs", t.resyncs),
            ("snapshots while in flight", t.snapshots_while_in_flight),
            ("retries", t.retries),
            ("cursors", t.cursors),
        ] {
            assert!(count > 0, "the simulation never produced {what}: {t:?}");
        }
    }
}
