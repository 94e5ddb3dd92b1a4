//! Durable storage of documents behind one trait: snapshot + op log + per-client dedup state.
//!
//! The document actor owns one [`DocumentStore`] per open document and moves it into the task that
//! performs a write, so "a write is in flight" is simply "the actor does not hold its store".
//! Implementations: [`embedded::EmbeddedStore`] (local disk, the single-node default).

mod batch;
pub mod embedded;
pub mod redis;

pub use self::batch::AppendBatch;

use crate::ids::{ClientId, DocId};
use crate::ot::Op;

/// One applied operation as it is logged: the revision it produced, who sent it, and the op as
/// applied (already transformed; its base length is the document length at `rev - 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The document revision after this op (the first op of a document is revision 1).
    pub rev: u64,
    /// The author.
    pub client: ClientId,
    /// The author's sequence number for this document.
    pub seq: u64,
    /// The op as applied at `rev`.
    pub op: Op,
}

/// The exactly-once state for one client of one document: its last applied seq and the revision
/// that op became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSeq {
    /// The client.
    pub client: ClientId,
    /// Last seq the document applied from this client.
    pub seq: u64,
    /// Revision that op produced.
    pub rev: u64,
}

/// A document's full state at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Revision of `text`.
    pub rev: u64,
    /// The whole document text at `rev`.
    pub text: String,
    /// Dedup state as of `rev`.
    pub clients: Vec<ClientSeq>,
}

/// What a store holds for a document: the newest snapshot (if any) and every logged op after it,
/// oldest first, with consecutive revisions starting at `snapshot.rev + 1` (or 1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredDocument {
    /// Newest snapshot; `None` for a document that was never compacted.
    pub snapshot: Option<Snapshot>,
    /// Ops after the snapshot.
    pub log: Vec<LogRecord>,
}

/// Errors from a store. None of them means an acknowledged op was lost.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying disk or server failed; the write did not happen (or is not known durable).
    #[error("store I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data failed its checksum or does not parse at a place other than a torn tail;
    /// the document is refused rather than loaded with acknowledged ops missing.
    #[error("stored data for document {doc} is corrupt: {detail}")]
    Corrupt {
        /// The document.
        doc: DocId,
        /// What was wrong, and where.
        detail: String,
    },
    /// This node no longer owns the document (cluster stores); nothing was written.
    #[error("fenced: this node no longer owns the document")]
    Fenced,
    /// Another live node owns the document (cluster stores); nothing was loaded or written.
    #[error("document owned by node {node} (incarnation {incarnation})")]
    OwnedElsewhere {
        /// The owner's node name.
        node: String,
        /// The owner's incarnation.
        incarnation: String,
    },
    /// The write reached the primary but fewer replicas than required confirmed it in time
    /// (cluster stores with `WAIT`); it must not be acknowledged. It may still be loaded later.
    #[error("document {doc}: {confirmed} of {wanted} replicas confirmed the write within {timeout_ms} ms")]
    NotReplicated {
        /// The document.
        doc: DocId,
        /// Replicas required.
        wanted: u32,
        /// Replicas that confirmed.
        confirmed: u32,
        /// How long the store waited.
        timeout_ms: u64,
    },
}

/// Opens per-document handles. Shared by every document actor of a node.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Opens `doc` (creating nothing on disk until the first append) and loads what is stored.
    async fn open(
        &self,
        doc: &DocId,
    ) -> Result<(Box<dyn DocumentStore>, StoredDocument), StoreError>;
}

/// One document's durable state, owned by its document actor.
#[async_trait::async_trait]
pub trait DocumentStore: Send + 'static {
    /// Appends the records of `batch` (consecutive revisions following what is stored) as one
    /// write. Returns only once they are durable per the configured fsync policy; on error none
    /// of them may be treated as durable.
    async fn append(&mut self, batch: AppendBatch) -> Result<(), StoreError>;

    /// Replaces everything up to `snapshot.rev` with `snapshot`, so that disk use and load time
    /// stay bounded. Records after `snapshot.rev` are kept.
    async fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Gives up ownership of the document (cluster stores, on drain) once everything is
    /// durable; a store without ownership has nothing to do.
    async fn release(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl std::fmt::Debug for dyn DocumentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocumentStore")
    }
}
