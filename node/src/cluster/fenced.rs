//! `FencedStore`: wraps the cluster store so that nothing needing ownership happens while this
//! node's lease is not confirmed (self-fencing). The store's own token check in Redis is what
//! makes a stale owner harmless; this wrapper makes a node that lost contact stop serving even
//! before anyone else claims its documents, and refuses acks decided after the lease lapsed.

use std::sync::Arc;

use chorus_actors::ids::DocId;
use chorus_actors::store::{
    AppendBatch, DocumentStore, Snapshot, Store, StoreError, StoredDocument,
};

use super::membership::Membership;

/// A store that refuses to work while the node's lease is not confirmed.
pub struct FencedStore {
    inner: Arc<dyn Store>,
    membership: Arc<Membership>,
}

impl FencedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, membership: Arc<Membership>) -> FencedStore {
        FencedStore { inner, membership }
    }
}

fn check(membership: &Membership) -> Result<(), StoreError> {
    if membership.is_live() {
        Ok(())
    } else {
        Err(StoreError::Fenced)
    }
}

#[async_trait::async_trait]
impl Store for FencedStore {
    async fn open(
        &self,
        doc: &DocId,
    ) -> Result<(Box<dyn DocumentStore>, StoredDocument), StoreError> {
        check(&self.membership)?;
        let (inner, stored) = self.inner.open(doc).await?;
        check(&self.membership)?;
        Ok((
            Box::new(FencedDocumentStore {
                inner,
                membership: self.membership.clone(),
            }),
            stored,
        ))
    }
}

struct FencedDocumentStore {
    inner: Box<dyn DocumentStore>,
    membership: Arc<Membership>,
}

#[async_trait::async_trait]
impl DocumentStore for FencedDocumentStore {
    async fn append(&mut self, batch: AppendBatch) -> Result<(), StoreError> {
        check(&self.membership)?;
        self.inner.append(batch).await?;
        // Written (token-checked) but if the lease lapsed meanwhile, do not acknowledge: the
        // clients resubmit and exactly-once makes that safe.
        check(&self.membership)
    }

    async fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        check(&self.membership)?;
        self.inner.compact(snapshot).await
    }

    async fn release(&mut self) -> Result<(), StoreError> {
        self.inner.release().await
    }
}
