//! Fixtures shared by the store tests (`store_embedded.rs`, `store_redis.rs`): documents whose
//! record `rev` appends a known piece of text, so any stored state can be checked exactly.

#![allow(dead_code)] // Each including test uses a different part.

use chorus_actors::ids::{ClientId, DocId};
use chorus_actors::ot::{Component, Op};
use chorus_actors::store::{AppendBatch, ClientSeq, LogRecord, Snapshot};

/// The one client of every fixture record.
const CLIENT: &str = "0123456789abcdef0123456789abcdef";

pub fn doc(id: &str) -> DocId {
    DocId::parse(id).expect("valid doc id")
}

/// The text record `rev` inserts at the end of the document.
pub fn piece(rev: u64) -> String {
    format!("<{rev}é>")
}

/// The document text after `rev` records.
pub fn text_at(rev: u64) -> String {
    (1..=rev).map(piece).collect()
}

/// Record `rev`: appends `piece(rev)` to the text at `rev - 1`.
pub fn record(rev: u64) -> LogRecord {
    let base_len: usize = (1..rev).map(|r| piece(r).chars().count()).sum();
    let mut components = Vec::new();
    if base_len > 0 {
        components.push(Component::Retain(base_len));
    }
    components.push(Component::Insert(piece(rev).into()));
    LogRecord {
        rev,
        client: ClientId::from_stored(CLIENT),
        seq: rev + 100,
        op: Op::from_components(components, base_len).expect("valid op"),
    }
}

pub fn records(revs: std::ops::RangeInclusive<u64>) -> Vec<LogRecord> {
    revs.map(record).collect()
}

/// Records as the store takes them: encoded into one append (at least one record, consecutive
/// revisions).
pub fn batch(records: Vec<LogRecord>) -> AppendBatch {
    let first = records.first().map_or(0, |r| r.rev);
    let last = records.last().map_or(0, |r| r.rev);
    AppendBatch::encode(first..=last, records.iter()).expect("consecutive records encode")
}

/// The snapshot after `rev` records.
pub fn snapshot(rev: u64) -> Snapshot {
    Snapshot {
        rev,
        text: text_at(rev),
        clients: vec![ClientSeq {
            client: ClientId::from_stored(CLIENT),
            seq: rev + 100,
            rev,
        }],
    }
}
