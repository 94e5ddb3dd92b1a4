//! The document supervisor: the node's registry of document actors and their supervisor.
//!
//! Every `open` and `close` goes through it, so it knows which connections follow which document.
//! That lets it (a) stop an idle document only when no open is on its way to it, and (b) restart
//! a document actor that failed from its store and re-open it for every connection that had it
//! open: each client gets a fresh `opened` snapshot (PROTOCOL.md's resync) and resubmits its op
//! in flight, which exactly-once makes safe. Ops and cursors go straight to the document actor.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use super::actor::{DocumentActor, DocumentArgs, DocumentMsg};
use super::core::{ConnId, CoreSettings};
use crate::ids::{ClientId, DocId};
use crate::outbound::Outbound;
use crate::routing::SubscriberEvents;
use crate::store::Store;

/// How long a flush waits for one document during shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection following a document, as the supervisor remembers it for re-opening.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Told when the document restarts or is lost.
    pub events: Arc<dyn SubscriberEvents>,
    /// Connection id.
    pub conn: ConnId,
    /// Its send queue.
    pub outbound: Outbound,
    /// The client.
    pub client: ClientId,
    /// Display name.
    pub name: Arc<str>,
    /// Display color.
    pub color: Arc<str>,
}

/// Why an open was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenRefused {
    /// The document could not be loaded or keeps failing.
    #[error("document unavailable: {0}")]
    Unavailable(String),
    /// Another live node owns the document (cluster stores only).
    #[error("document owned by node {node}")]
    OwnedElsewhere {
        /// The owner's node name.
        node: String,
        /// The owner's incarnation.
        incarnation: String,
    },
}

/// Messages of the document supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Open `doc` for a connection; replies with the document actor to send ops to.
    Open {
        /// The document.
        doc: DocId,
        /// Who opens it.
        subscription: Subscription,
        /// Revision the client has.
        since: Option<u64>,
        /// The document actor, or why not.
        reply: RpcReplyPort<Result<ActorRef<DocumentMsg>, OpenRefused>>,
    },
    /// A connection closes `doc`.
    Close {
        /// The document.
        doc: DocId,
        /// The connection.
        conn: ConnId,
    },
    /// A connection went away without closing its documents (its session failed).
    ConnectionGone {
        /// The connection.
        conn: ConnId,
    },
    /// A document actor has been idle; stop it if no open is on its way.
    Idle {
        /// The document.
        doc: DocId,
        /// The actor that says so.
        actor: ActorId,
        /// Opens it has handled.
        opens_seen: u64,
    },
    /// Wait until every document's accepted ops are durable; replies with how many documents.
    FlushAll(RpcReplyPort<usize>),
    /// Counts for health and metrics.
    Stats(RpcReplyPort<SupervisorStats>),
    /// Drain: hand every document over (flush, release ownership, stop) and tell each
    /// subscriber to open it again elsewhere; replies with how many documents.
    ReleaseAll(RpcReplyPort<usize>),
}

impl ractor::Message for SupervisorMsg {}

/// Counts the supervisor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SupervisorStats {
    /// Documents with a running actor.
    pub documents: usize,
    /// Document actor restarts since start.
    pub restarts: u64,
}

/// Settings of the supervisor and the documents it starts.
#[derive(Clone)]
pub struct SupervisorArgs {
    /// The node's store.
    pub store: Arc<dyn Store>,
    /// Core limits of every document.
    pub settings: CoreSettings,
    /// Idle time before a document with no subscriber stops.
    pub idle_timeout: Duration,
    /// Restart intensity: at most this many restarts of one document ...
    pub max_restarts: u32,
    /// ... within this window; past it the document is given up for the window.
    pub restart_window: Duration,
}

struct Entry {
    actor: ActorRef<DocumentMsg>,
    subscriptions: HashMap<ConnId, Subscription>,
    opens_forwarded: u64,
    restarts: VecDeque<Instant>,
}

/// The supervisor actor.
pub struct DocumentSupervisor;

/// Its state.
pub struct DocumentSupervisorState {
    args: SupervisorArgs,
    docs: HashMap<DocId, Entry>,
    by_actor: HashMap<ActorId, DocId>,
    /// Documents given up on after too many restarts, until the instant.
    failed: HashMap<DocId, Instant>,
    restarts: u64,
}

impl Actor for DocumentSupervisor {
    type Msg = SupervisorMsg;
    type State = DocumentSupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(DocumentSupervisorState {
            args,
            docs: HashMap::new(),
            by_actor: HashMap::new(),
            failed: HashMap::new(),
            restarts: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Open {
                doc,
                subscription,
                since,
                reply,
            } => {
                let result = state.open(&myself, doc, subscription, since).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Close { doc, conn } => {
                if let Some(entry) = state.docs.get_mut(&doc) {
                    entry.subscriptions.remove(&conn);
                    let _ = entry.actor.cast(DocumentMsg::Close { conn });
                }
            }
            SupervisorMsg::ConnectionGone { conn } => {
                for entry in state.docs.values_mut() {
                    if entry.subscriptions.remove(&conn).is_some() {
                        let _ = entry.actor.cast(DocumentMsg::Close { conn });
                    }
                }
            }
            SupervisorMsg::Idle {
                doc,
                actor,
                opens_seen,
            } => {
                let stop = state.docs.get(&doc).is_some_and(|e| {
                    e.actor.get_id() == actor
                        && e.opens_forwarded == opens_seen
                        && e.subscriptions.is_empty()
                });
                if stop {
                    if let Some(entry) = state.docs.remove(&doc) {
                        state.by_actor.remove(&actor);
                        entry.actor.stop(Some("idle".to_owned()));
                        tracing::debug!(%doc, "idle document stopped");
                    }
                }
            }
            SupervisorMsg::FlushAll(reply) => {
                let actors: Vec<_> = state.docs.values().map(|e| e.actor.clone()).collect();
                tokio::spawn(async move {
                    let count = actors.len();
                    let waits = actors.into_iter().map(|a| async move {
                        let _ = a.call(DocumentMsg::Flush, Some(FLUSH_TIMEOUT)).await;
                    });
                    futures_join_all(waits).await;
                    let _ = reply.send(count);
                });
            }
            SupervisorMsg::ReleaseAll(reply) => {
                let entries: Vec<(DocId, Entry)> = state.docs.drain().collect();
                for (_, entry) in &entries {
                    state.by_actor.remove(&entry.actor.get_id());
                }
                tokio::spawn(async move {
                    let count = entries.len();
                    let releases = entries.into_iter().map(|(doc, entry)| async move {
                        let started = Instant::now();
                        let released = entry.actor.call(DocumentMsg::Release, Some(FLUSH_TIMEOUT)).await;
                        entry.actor.stop(Some("released".to_owned()));
                        match released {
                            Ok(ractor::rpc::CallResult::Success(Ok(()))) => {
                                tracing::info!(%doc, pause_ms = started.elapsed().as_millis() as u64, "document handed over");
                            }
                            other => tracing::warn!(%doc, ?other, "document release did not complete"),
                        }
                        for s in entry.subscriptions.values() {
                            s.events.lost(&doc, "the document moved to another node");
                        }
                    });
                    futures_join_all(releases).await;
                    let _ = reply.send(count);
                });
            }
            SupervisorMsg::Stats(reply) => {
                let _ = reply.send(SupervisorStats {
                    documents: state.docs.len(),
                    restarts: state.restarts,
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Always handled here: ractor's default would stop the supervisor when a child dies.
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let error = error.to_string();
                state.restart(&myself, &cell, &error).await;
            }
            // Stopped on its own (not by the idle or release paths, which unmap first): treat
            // as a failure.
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if state.by_actor.contains_key(&cell.get_id()) =>
            {
                let why = reason.unwrap_or_else(|| "stopped".to_owned());
                state.restart(&myself, &cell, &why).await;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Finds a store's `OwnedElsewhere` refusal inside a failed start.
fn owned_elsewhere(error: &ractor::SpawnErr) -> Option<OpenRefused> {
    let ractor::SpawnErr::StartupFailed(inner) = error else {
        return None;
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(e) = source {
        if let Some(crate::store::StoreError::OwnedElsewhere { node, incarnation }) =
            e.downcast_ref::<crate::store::StoreError>()
        {
            return Some(OpenRefused::OwnedElsewhere {
                node: node.clone(),
                incarnation: incarnation.clone(),
            });
        }
        source = e.source();
    }
    None
}

/// Awaits every future (a tiny join_all, to avoid a dependency for one call site).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

impl DocumentSupervisorState {
    async fn spawn_document(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        doc: &DocId,
    ) -> Result<ActorRef<DocumentMsg>, OpenRefused> {
        let args = DocumentArgs {
            doc: doc.clone(),
            store: self.args.store.clone(),
            settings: self.args.settings.clone(),
            idle_timeout: self.args.idle_timeout,
            supervisor: myself.clone(),
        };
        match Actor::spawn_linked(None, DocumentActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_actor.insert(actor.get_id(), doc.clone());
                Ok(actor)
            }
            Err(e) => {
                if let Some(refused) = owned_elsewhere(&e) {
                    return Err(refused);
                }
                tracing::error!(%doc, error = %e, "document failed to start");
                Err(OpenRefused::Unavailable(format!(
                    "the document could not be loaded: {e}"
                )))
            }
        }
    }

    async fn open(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        doc: DocId,
        subscription: Subscription,
        since: Option<u64>,
    ) -> Result<ActorRef<DocumentMsg>, OpenRefused> {
        if let Some(until) = self.failed.get(&doc) {
            if Instant::now() < *until {
                return Err(OpenRefused::Unavailable(
                    "the document keeps failing; try again later".into(),
                ));
            }
            self.failed.remove(&doc);
        }
        if !self.docs.contains_key(&doc) {
            let actor = self.spawn_document(myself, &doc).await?;
            self.docs.insert(
                doc.clone(),
                Entry {
                    actor,
                    subscriptions: HashMap::new(),
                    opens_forwarded: 0,
                    restarts: VecDeque::new(),
                },
            );
        }
        let Some(entry) = self.docs.get_mut(&doc) else {
            return Err(OpenRefused::Unavailable("document vanished".into()));
        };
        let open = DocumentMsg::Open {
            conn: subscription.conn,
            outbound: subscription.outbound.clone(),
            client: subscription.client.clone(),
            name: subscription.name.clone(),
            color: subscription.color.clone(),
            since,
        };
        entry
            .actor
            .cast(open)
            .map_err(|e| OpenRefused::Unavailable(format!("document actor unreachable: {e}")))?;
        entry.opens_forwarded += 1;
        entry.subscriptions.insert(subscription.conn, subscription);
        Ok(entry.actor.clone())
    }

    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, cell: &ActorCell, error: &str) {
        let Some(doc) = self.by_actor.remove(&cell.get_id()) else {
            return;
        };
        let Some(mut entry) = self.docs.remove(&doc) else {
            return;
        };
        tracing::error!(%doc, %error, "document actor failed");
        let now = Instant::now();
        while entry
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.args.restart_window)
        {
            entry.restarts.pop_front();
        }
        let give_up = |reason: String,
                       entry: Entry,
                       failed: &mut HashMap<DocId, Instant>,
                       window: Duration| {
            failed.insert(doc.clone(), now + window);
            for s in entry.subscriptions.values() {
                s.events.lost(&doc, &reason);
            }
        };
        if entry.restarts.len() >= self.args.max_restarts as usize {
            tracing::error!(%doc, restarts = entry.restarts.len(), "restart intensity exceeded; document given up for the window");
            let window = self.args.restart_window;
            give_up(
                "the document failed repeatedly".into(),
                entry,
                &mut self.failed,
                window,
            );
            return;
        }
        entry.restarts.push_back(now);
        self.restarts += 1;
        let actor = match self.spawn_document(myself, &doc).await {
            Ok(actor) => actor,
            Err(refused) => {
                // Moved to another node, or cannot load: every subscriber opens it again
                // through its directory (which finds the new owner, or reports unavailable).
                let reason = refused.to_string();
                if matches!(refused, OpenRefused::OwnedElsewhere { .. }) {
                    for s in entry.subscriptions.values() {
                        s.events.lost(&doc, &reason);
                    }
                    return;
                }
                let window = self.args.restart_window;
                give_up(reason, entry, &mut self.failed, window);
                return;
            }
        };
        entry.actor = actor.clone();
        entry.opens_forwarded = 0;
        for s in entry.subscriptions.values() {
            let open = DocumentMsg::Open {
                conn: s.conn,
                outbound: s.outbound.clone(),
                client: s.client.clone(),
                name: s.name.clone(),
                color: s.color.clone(),
                since: None,
            };
            if actor.cast(open).is_ok() {
                entry.opens_forwarded += 1;
            }
            s.events.restarted(&doc, &actor);
        }
        tracing::info!(%doc, "document actor restarted from its store");
        self.docs.insert(doc, entry);
    }
}
