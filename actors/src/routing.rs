//! How a session reaches a document: the [`Directory`] a session opens documents through (the
//! local document supervisor on a single node, the cluster router in a cluster), the
//! [`DocRoute`] it then sends ops on, and the [`SubscriberEvents`] a supervisor uses to tell a
//! subscriber that its document restarted or was lost.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use crate::document::actor::DocumentMsg;
use crate::document::supervisor::{OpenRefused, Subscription, SupervisorMsg};
use crate::document::ConnId;
use crate::ids::DocId;
use crate::ot::RawOp;

/// How long an open may take before the session reports `unavailable`.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A document owned by another node, reached through this node's router.
pub trait RemoteDoc: Send + Sync + fmt::Debug {
    /// Forwards an op; false if the route is gone.
    fn submit(&self, conn: ConnId, seq: u64, rev: u64, op: RawOp) -> bool;
    /// Forwards cursors; false if the route is gone.
    fn cursor(&self, conn: ConnId, rev: u64, ranges: Vec<(u64, u64)>) -> bool;
    /// The node that owns the document.
    fn node(&self) -> &str;
}

/// Where a session sends a document's ops and cursors.
#[derive(Debug, Clone)]
pub enum DocRoute {
    /// The document actor runs on this node.
    Local(ActorRef<DocumentMsg>),
    /// Another node owns it.
    Remote(Arc<dyn RemoteDoc>),
}

impl DocRoute {
    /// Sends an op; false if the document actor or route is gone.
    pub fn submit(&self, conn: ConnId, seq: u64, rev: u64, op: RawOp) -> bool {
        match self {
            DocRoute::Local(actor) => actor
                .cast(DocumentMsg::Submit { conn, seq, rev, op })
                .is_ok(),
            DocRoute::Remote(remote) => remote.submit(conn, seq, rev, op),
        }
    }

    /// Sends cursors; false if the document actor or route is gone.
    pub fn cursor(&self, conn: ConnId, rev: u64, ranges: Vec<(u64, u64)>) -> bool {
        match self {
            DocRoute::Local(actor) => actor
                .cast(DocumentMsg::Cursor { conn, rev, ranges })
                .is_ok(),
            DocRoute::Remote(remote) => remote.cursor(conn, rev, ranges),
        }
    }
}

/// Opens and closes documents for sessions.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Subscribes a connection to `doc`; the document answers `opened` on the connection's
    /// queue. Returns where to send the document's ops.
    async fn open(
        &self,
        doc: DocId,
        subscription: Subscription,
        since: Option<u64>,
    ) -> Result<DocRoute, OpenRefused>;
    /// Unsubscribes a connection from `doc`.
    fn close(&self, doc: DocId, conn: ConnId);
    /// A connection went away without closing its documents (its session failed).
    fn connection_gone(&self, conn: ConnId);
}

/// Told by a document's supervisor about the document's life, on behalf of one subscriber.
pub trait SubscriberEvents: Send + Sync + fmt::Debug {
    /// The document actor was restarted and has already re-opened the subscription (the client
    /// got a fresh `opened`); ops now go to `actor`.
    fn restarted(&self, doc: &DocId, actor: &ActorRef<DocumentMsg>);
    /// The document is no longer served here (failed for good, moved to another node, or this
    /// node stopped serving it); the subscriber should open it again through its directory.
    fn lost(&self, doc: &DocId, reason: &str);
}

/// The single-node directory: every document is local, opened through the document supervisor.
#[derive(Debug, Clone)]
pub struct LocalDirectory {
    /// The document supervisor.
    pub supervisor: ActorRef<SupervisorMsg>,
}

#[async_trait::async_trait]
impl Directory for LocalDirectory {
    async fn open(
        &self,
        doc: DocId,
        subscription: Subscription,
        since: Option<u64>,
    ) -> Result<DocRoute, OpenRefused> {
        let answer = self
            .supervisor
            .call(
                move |reply| SupervisorMsg::Open {
                    doc,
                    subscription,
                    since,
                    reply,
                },
                Some(OPEN_TIMEOUT),
            )
            .await;
        match answer {
            Ok(ractor::rpc::CallResult::Success(result)) => result.map(DocRoute::Local),
            Ok(_) | Err(_) => Err(OpenRefused::Unavailable(
                "the node could not open the document in time".into(),
            )),
        }
    }

    fn close(&self, doc: DocId, conn: ConnId) {
        let _ = self.supervisor.cast(SupervisorMsg::Close { doc, conn });
    }

    fn connection_gone(&self, conn: ConnId) {
        let _ = self.supervisor.cast(SupervisorMsg::ConnectionGone { conn });
    }
}
