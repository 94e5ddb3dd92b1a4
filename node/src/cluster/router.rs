//! The router: this node's one remote endpoint. Sessions stay local and open documents through
//! it ([`ClusterDirectory`]); it asks Redis who owns a document (ownership decisions come only
//! from Redis), opens it locally when this node owns it or is its preferred owner, and otherwise
//! subscribes the session at the owner's router. On the owner side it keeps a proxy connection
//! per remote session that forwards the document's frames back in order. Node-to-node
//! heartbeats detect failed or paused peers; their documents are opened again (and claimed once
//! the owner's lease lapses) for every affected session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chorus_actors::document::actor::DocumentMsg;
use chorus_actors::document::supervisor::{OpenRefused, Subscription};
use chorus_actors::document::ConnId;
use chorus_actors::ids::{ClientId, DocId};
use chorus_actors::ot::RawOp;
use chorus_actors::outbound::{Outbound, OutboundReceiver};
use chorus_actors::routing::{Directory, DocRoute, LocalDirectory, RemoteDoc, SubscriberEvents};
use chorus_actors::store::redis::RedisStore;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::NodeServerMessage;
use tokio::sync::watch;

use super::membership::{MemberInfo, Membership};
use super::placement::{preferred_owner, Candidate};
use super::wire::{raw_op_from_json, raw_op_to_json, Refusal, Wire, MAX_FRAMES_PER_MESSAGE};

/// Pause between attempts to open a document whose owner cannot serve it yet.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// How long a session's open keeps retrying (covers a dead owner's lease running out).
const OPEN_DEADLINE: Duration = Duration::from_secs(9);

/// Bound on redirects between owners for one open.
const MAX_REDIRECTS: u32 = 8;

/// Proxy connection ids live above this, apart from the front's own connection ids.
const PROXY_CONN_BASE: u64 = 1 << 62;

/// How long a proxy connection whose last document was closed lingers before it is dropped:
/// frames its documents queued before the close (e.g. the `opened` of an open closed at once,
/// whose OpenResult overtook it) still reach the origin, in order; a re-open meanwhile reuses
/// it. Long enough for a busy forwarder to drain, short enough to bound idle proxies.
const PROXY_LINGER: Duration = Duration::from_secs(5);

/// The process group a node's router endpoint joins, found by peers through ractor's pg.
pub fn endpoint_group(incarnation: &str) -> String {
    format!("chorus.router.{incarnation}")
}

fn endpoint_of(incarnation: &str) -> Option<ActorRef<Vec<u8>>> {
    ractor::pg::get_members(&endpoint_group(incarnation))
        .into_iter()
        .next()
        .map(ActorRef::from)
}

fn send_to(incarnation: &str, wire: &Wire) -> bool {
    match endpoint_of(incarnation) {
        Some(endpoint) => endpoint.cast(wire.encode()).is_ok(),
        None => false,
    }
}

/// Messages of the router.
#[derive(Debug)]
pub enum RouterMsg {
    /// A local session opens a document.
    Open {
        /// The document.
        doc: DocId,
        /// The subscriber.
        subscription: Subscription,
        /// Revision the client has.
        since: Option<u64>,
        /// Where to send ops, or why not.
        reply: RpcReplyPort<Result<DocRoute, OpenRefused>>,
    },
    /// Try a pending open again.
    RetryOpen {
        /// The pending open.
        request: u64,
    },
    /// A local session closes a document.
    Close {
        /// The document.
        doc: DocId,
        /// The connection.
        conn: ConnId,
    },
    /// An op for a document another node owns.
    RemoteSubmit {
        /// Owner incarnation.
        owner: String,
        /// The document.
        doc: DocId,
        /// The local connection.
        conn: ConnId,
        /// Seq.
        seq: u64,
        /// Base revision.
        rev: u64,
        /// The op.
        op: RawOp,
    },
    /// Cursors for a document another node owns.
    RemoteCursor {
        /// Owner incarnation.
        owner: String,
        /// The document.
        doc: DocId,
        /// The local connection.
        conn: ConnId,
        /// Revision of the ranges.
        rev: u64,
        /// The ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// A decoded message from a peer.
    Peer(Wire),
    /// Heartbeats, failure detection, peer connections.
    Tick,
    /// A remote subscriber's document restarted here.
    ProxyRestarted {
        /// Origin incarnation.
        from: String,
        /// Origin connection.
        conn: u64,
        /// The document.
        doc: DocId,
        /// Its new actor.
        actor: ActorRef<DocumentMsg>,
    },
    /// A remote subscriber's document is no longer served here.
    ProxyLost {
        /// Origin incarnation.
        from: String,
        /// Origin connection.
        conn: u64,
        /// The document.
        doc: DocId,
        /// Why.
        reason: String,
    },
    /// A proxy connection's queue overflowed or its origin is unreachable.
    ProxyGone {
        /// Origin incarnation.
        from: String,
        /// Origin connection.
        conn: u64,
    },
    /// Drop a proxy connection that has had no document since `generation`.
    ReapProxy {
        /// Origin incarnation.
        from: String,
        /// Origin connection.
        conn: u64,
        /// The proxy's local connection id (a newer proxy for the same key has another).
        local_conn: ConnId,
        /// Its idle generation when the reap was scheduled.
        generation: u64,
    },
    /// This node is draining: place nothing here, tell peers.
    Leaving,
    /// A local connection went away without closing its documents.
    ConnectionGone {
        /// The connection.
        conn: ConnId,
    },
}

impl ractor::Message for RouterMsg {}

/// Settings of the router.
pub struct RouterArgs {
    /// This node.
    pub me: MemberInfo,
    /// For owner look-ups.
    pub store: Arc<RedisStore>,
    /// The local document supervisor.
    pub local: LocalDirectory,
    /// Membership (live members).
    pub membership: Arc<Membership>,
    /// The ractor_cluster node server, to connect peers.
    pub node_server: ActorRef<NodeServerMessage>,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// A peer silent this long is failed.
    pub heartbeat_timeout: Duration,
    /// Per-proxy-connection queue bound.
    pub queue_frames: usize,
    /// Counter of cluster messages that failed to decode.
    pub decode_errors: Arc<AtomicU64>,
}

struct PendingOpen {
    doc: DocId,
    subscription: Subscription,
    since: Option<u64>,
    reply: RpcReplyPort<Result<DocRoute, OpenRefused>>,
    deadline: Instant,
    /// Incarnation asked, when waiting for its answer.
    asked: Option<String>,
    redirects: u32,
    /// Owner to ask directly on the next attempt (after a redirect).
    redirect_to: Option<String>,
    last_reason: String,
}

struct OriginSub {
    owner: String,
    events: Arc<dyn SubscriberEvents>,
}

struct Peer {
    info: MemberInfo,
    last_ack: Instant,
    failed: bool,
    connecting: bool,
    draining: bool,
}

struct Proxy {
    local_conn: ConnId,
    outbound: Outbound,
    docs: HashMap<DocId, ActorRef<DocumentMsg>>,
    forwarder: tokio::task::JoinHandle<()>,
    /// Bumped each time the last document closes (see [`PROXY_LINGER`]).
    idle_generation: u64,
}

/// The router actor.
pub struct Router;

/// Its state.
pub struct RouterState {
    args: RouterArgs,
    members: watch::Receiver<Vec<MemberInfo>>,
    peers: HashMap<String, Peer>,
    pending: HashMap<u64, PendingOpen>,
    next_request: u64,
    origin_subs: HashMap<(DocId, ConnId), OriginSub>,
    origin_conns: HashMap<ConnId, Outbound>,
    proxies: HashMap<(String, u64), Proxy>,
    next_proxy_conn: u64,
    nonce: u64,
    leaving: bool,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.heartbeat_interval, || RouterMsg::Tick);
        let members = args.membership.members();
        Ok(RouterState {
            args,
            members,
            peers: HashMap::new(),
            pending: HashMap::new(),
            next_request: 1,
            origin_subs: HashMap::new(),
            origin_conns: HashMap::new(),
            proxies: HashMap::new(),
            next_proxy_conn: PROXY_CONN_BASE,
            nonce: 0,
            leaving: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::Open {
                doc,
                subscription,
                since,
                reply,
            } => {
                let request = state.next_request;
                state.next_request += 1;
                state.pending.insert(
                    request,
                    PendingOpen {
                        doc,
                        subscription,
                        since,
                        reply,
                        deadline: Instant::now() + OPEN_DEADLINE,
                        asked: None,
                        redirects: 0,
                        redirect_to: None,
                        last_reason: String::new(),
                    },
                );
                state.attempt_open(&myself, request).await;
            }
            RouterMsg::RetryOpen { request } => state.attempt_open(&myself, request).await,
            RouterMsg::Close { doc, conn } => {
                if let Some(sub) = state.origin_subs.remove(&(doc.clone(), conn)) {
                    send_to(
                        &sub.owner,
                        &Wire::Close {
                            from: state.me(),
                            conn,
                            doc: doc.to_string(),
                        },
                    );
                    // Keep the connection's queue: frames the owner sent before it sees the
                    // close are still on their way (among them the `opened` of an open that
                    // was closed at once: its OpenResult can overtake it). The entry goes
                    // with the connection (`tick`).
                } else {
                    state.args.local.close(doc, conn);
                }
            }
            RouterMsg::RemoteSubmit {
                owner,
                doc,
                conn,
                seq,
                rev,
                op,
            } => {
                let wire = Wire::Submit {
                    from: state.me(),
                    conn,
                    doc: doc.to_string(),
                    seq,
                    rev,
                    op: raw_op_to_json(&op),
                };
                if !send_to(&owner, &wire) {
                    state.origin_lost(&doc, conn, "the owner node is unreachable");
                }
            }
            RouterMsg::RemoteCursor {
                owner,
                doc,
                conn,
                rev,
                ranges,
            } => {
                let wire = Wire::Cursor {
                    from: state.me(),
                    conn,
                    doc: doc.to_string(),
                    rev,
                    ranges,
                };
                send_to(&owner, &wire);
            }
            RouterMsg::Peer(wire) => state.handle_peer(&myself, wire).await,
            RouterMsg::Tick => state.tick(&myself),
            RouterMsg::ProxyRestarted {
                from,
                conn,
                doc,
                actor,
            } => {
                if let Some(proxy) = state.proxies.get_mut(&(from, conn)) {
                    proxy.docs.insert(doc, actor);
                }
            }
            RouterMsg::ProxyLost {
                from,
                conn,
                doc,
                reason,
            } => {
                if let Some(proxy) = state.proxies.get_mut(&(from.clone(), conn)) {
                    proxy.docs.remove(&doc);
                }
                send_to(
                    &from,
                    &Wire::Lost {
                        from: state.me(),
                        conn,
                        doc: doc.to_string(),
                        reason,
                    },
                );
            }
            RouterMsg::ProxyGone { from, conn } => {
                if let Some(proxy) = state.proxies.remove(&(from.clone(), conn)) {
                    for doc in proxy.docs.keys() {
                        state.args.local.close(doc.clone(), proxy.local_conn);
                        send_to(
                            &from,
                            &Wire::Lost {
                                from: state.me(),
                                conn,
                                doc: doc.to_string(),
                                reason: "connection too slow".into(),
                            },
                        );
                    }
                    proxy.forwarder.abort();
                }
            }
            RouterMsg::ConnectionGone { conn } => {
                let remote: Vec<(DocId, String)> = state
                    .origin_subs
                    .iter()
                    .filter(|((_, c), _)| *c == conn)
                    .map(|((d, _), s)| (d.clone(), s.owner.clone()))
                    .collect();
                for (doc, owner) in remote {
                    state.origin_subs.remove(&(doc.clone(), conn));
                    send_to(
                        &owner,
                        &Wire::Close {
                            from: state.me(),
                            conn,
                            doc: doc.to_string(),
                        },
                    );
                }
                state.forget_origin_conn(conn);
                state.args.local.connection_gone(conn);
            }
            RouterMsg::ReapProxy {
                from,
                conn,
                local_conn,
                generation,
            } => {
                let idle = state.proxies.get(&(from.clone(), conn)).is_some_and(|p| {
                    p.local_conn == local_conn
                        && p.idle_generation == generation
                        && p.docs.is_empty()
                });
                if idle {
                    state.drop_proxy(&from, conn);
                }
            }
            RouterMsg::Leaving => {
                state.leaving = true;
                let me = state.me();
                for inc in state.peers.keys() {
                    send_to(inc, &Wire::Draining { from: me.clone() });
                }
            }
        }
        Ok(())
    }
}

enum Target {
    Local,
    Remote(String),
    Wait(String),
}

impl RouterState {
    fn me(&self) -> String {
        self.args.me.incarnation.clone()
    }

    fn is_member(&self, incarnation: &str) -> bool {
        self.members
            .borrow()
            .iter()
            .any(|m| m.incarnation == incarnation)
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.members
            .borrow()
            .iter()
            .filter(|m| !m.draining)
            .filter(|m| {
                if m.incarnation == self.args.me.incarnation {
                    !self.leaving
                } else {
                    self.peers
                        .get(&m.incarnation)
                        .is_some_and(|p| !p.failed && !p.draining)
                }
            })
            .map(|m| Candidate {
                node: m.node.clone(),
                incarnation: m.incarnation.clone(),
            })
            .collect()
    }

    async fn choose(&self, doc: &DocId) -> Target {
        let owner = match self.args.store.owner_of(doc).await {
            Ok(owner) => owner,
            Err(e) => return Target::Wait(format!("cannot read the owner from Redis: {e}")),
        };
        if let Some(owner) = owner.filter(|o| !o.incarnation.is_empty()) {
            if owner.incarnation == self.args.me.incarnation {
                return Target::Local;
            }
            if self.is_member(&owner.incarnation) {
                return match self.peers.get(&owner.incarnation) {
                    Some(p) if !p.failed => Target::Remote(owner.incarnation),
                    _ => Target::Wait(format!(
                        "owner {} is not reachable; waiting for its lease",
                        owner.node
                    )),
                };
            }
        }
        match preferred_owner(doc.as_str(), &self.candidates()) {
            Some(c) if c.incarnation == self.args.me.incarnation => Target::Local,
            Some(c) => Target::Remote(c.incarnation.clone()),
            None => Target::Wait("no live node can take the document".into()),
        }
    }

    async fn attempt_open(&mut self, myself: &ActorRef<RouterMsg>, request: u64) {
        let Some(pending) = self.pending.get_mut(&request) else {
            return;
        };
        let forced = pending.redirect_to.take();
        if Instant::now() > pending.deadline || pending.redirects > MAX_REDIRECTS {
            if let Some(p) = self.pending.remove(&request) {
                let reason = format!(
                    "no node could serve the document in time ({})",
                    p.last_reason
                );
                let _ = p.reply.send(Err(OpenRefused::Unavailable(reason)));
            }
            return;
        }
        let doc = pending.doc.clone();
        let target = match forced {
            Some(inc) if inc == self.args.me.incarnation => Target::Local,
            Some(inc) => Target::Remote(inc),
            None => self.choose(&doc).await,
        };
        match target {
            Target::Local => {
                let Some(p) = self.pending.get(&request) else {
                    return;
                };
                let opened = self
                    .args
                    .local
                    .open(doc.clone(), p.subscription.clone(), p.since)
                    .await;
                match opened {
                    Ok(route) => {
                        if let Some(p) = self.pending.remove(&request) {
                            let _ = p.reply.send(Ok(route));
                        }
                    }
                    Err(OpenRefused::OwnedElsewhere { node, incarnation })
                        if self.is_member(&incarnation) =>
                    {
                        self.redirect(myself, request, incarnation, format!("owned by {node}"));
                    }
                    Err(refused) => self.retry_later(myself, request, refused.to_string()),
                }
            }
            Target::Remote(incarnation) => {
                let Some(p) = self.pending.get_mut(&request) else {
                    return;
                };
                let sub = &p.subscription;
                let wire = Wire::Open {
                    from: self.args.me.incarnation.clone(),
                    request,
                    conn: sub.conn,
                    doc: doc.to_string(),
                    client: sub.client.to_string(),
                    name: sub.name.to_string(),
                    color: sub.color.to_string(),
                    since: p.since,
                };
                let outbound = sub.outbound.clone();
                let conn = sub.conn;
                p.asked = Some(incarnation.clone());
                self.origin_conns.insert(conn, outbound);
                if !send_to(&incarnation, &wire) {
                    self.retry_later(
                        myself,
                        request,
                        "the owner's router is not connected".into(),
                    );
                }
            }
            Target::Wait(reason) => self.retry_later(myself, request, reason),
        }
    }

    fn retry_later(&mut self, myself: &ActorRef<RouterMsg>, request: u64, reason: String) {
        if let Some(p) = self.pending.get_mut(&request) {
            p.asked = None;
            p.last_reason = reason;
            myself.send_after(RETRY_DELAY, move || RouterMsg::RetryOpen { request });
        }
    }

    /// Asks the named owner directly on the next attempt.
    fn redirect(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        request: u64,
        incarnation: String,
        reason: String,
    ) {
        if let Some(p) = self.pending.get_mut(&request) {
            p.redirects += 1;
            p.last_reason = reason;
            p.asked = None;
            p.redirect_to = Some(incarnation);
            let _ = myself.cast(RouterMsg::RetryOpen { request });
        }
    }

    fn forget_origin_conn(&mut self, conn: ConnId) {
        if !self.origin_subs.keys().any(|(_, c)| *c == conn)
            && !self.pending.values().any(|p| p.subscription.conn == conn)
        {
            self.origin_conns.remove(&conn);
        }
    }

    fn origin_lost(&mut self, doc: &DocId, conn: ConnId, reason: &str) {
        if let Some(sub) = self.origin_subs.remove(&(doc.clone(), conn)) {
            sub.events.lost(doc, reason);
        }
        self.forget_origin_conn(conn);
    }

    async fn handle_peer(&mut self, myself: &ActorRef<RouterMsg>, wire: Wire) {
        match wire {
            Wire::Heartbeat { from, nonce } => {
                send_to(
                    &from,
                    &Wire::HeartbeatAck {
                        from: self.me(),
                        nonce,
                    },
                );
            }
            Wire::HeartbeatAck { from, .. } => {
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.last_ack = Instant::now();
                    if peer.failed {
                        tracing::info!(peer = %peer.info.node, "peer answers heartbeats again");
                    }
                    peer.failed = false;
                }
            }
            Wire::Draining { from } => {
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.draining = true;
                }
            }
            Wire::Open {
                from,
                request,
                conn,
                doc,
                client,
                name,
                color,
                since,
            } => {
                let refused = self
                    .open_for_peer(myself, &from, conn, &doc, &client, name, color, since)
                    .await;
                send_to(
                    &from,
                    &Wire::OpenResult {
                        from: self.me(),
                        request,
                        refused,
                    },
                );
            }
            Wire::OpenResult {
                from,
                request,
                refused,
            } => {
                let asked = self.pending.get(&request).and_then(|p| p.asked.clone());
                if asked.as_deref() != Some(from.as_str()) {
                    return;
                }
                match refused {
                    None => {
                        let Some(p) = self.pending.remove(&request) else {
                            return;
                        };
                        let node = self
                            .peers
                            .get(&from)
                            .map(|p| p.info.node.clone())
                            .unwrap_or_default();
                        self.origin_subs.insert(
                            (p.doc.clone(), p.subscription.conn),
                            OriginSub {
                                owner: from.clone(),
                                events: p.subscription.events.clone(),
                            },
                        );
                        let route = RemoteDocHandle {
                            router: myself.clone(),
                            owner: from,
                            node,
                            doc: p.doc.clone(),
                        };
                        let _ = p.reply.send(Ok(DocRoute::Remote(Arc::new(route))));
                    }
                    Some(Refusal::OwnedElsewhere { node, incarnation })
                        if self.is_member(&incarnation) =>
                    {
                        self.redirect(myself, request, incarnation, format!("owned by {node}"));
                    }
                    Some(Refusal::OwnedElsewhere { node, .. }) => {
                        self.retry_later(
                            myself,
                            request,
                            format!("owned by {node}, which is not live"),
                        );
                    }
                    Some(Refusal::Unavailable { reason }) => {
                        self.retry_later(myself, request, reason)
                    }
                }
            }
            Wire::Close { from, conn, doc } => {
                let Ok(doc) = DocId::parse(&doc) else { return };
                let key = (from, conn);
                if let Some(proxy) = self.proxies.get_mut(&key) {
                    proxy.docs.remove(&doc);
                    self.args.local.close(doc, proxy.local_conn);
                    if proxy.docs.is_empty() {
                        // Not at once: frames queued before the close are still to be sent.
                        proxy.idle_generation += 1;
                        let (local_conn, generation) = (proxy.local_conn, proxy.idle_generation);
                        let (from, conn) = key;
                        myself.send_after(PROXY_LINGER, move || RouterMsg::ReapProxy {
                            from,
                            conn,
                            local_conn,
                            generation,
                        });
                    }
                }
            }
            Wire::ConnectionGone { from, conn } => self.drop_proxy(&from, conn),
            Wire::Submit {
                from,
                conn,
                doc,
                seq,
                rev,
                op,
            } => {
                let actor = DocId::parse(&doc).ok().and_then(|d| {
                    self.proxies
                        .get(&(from.clone(), conn))
                        .and_then(|p| p.docs.get(&d).map(|a| (a.clone(), p.local_conn)))
                });
                match actor {
                    Some((actor, local_conn)) => {
                        let op = raw_op_from_json(op);
                        if actor
                            .cast(DocumentMsg::Submit {
                                conn: local_conn,
                                seq,
                                rev,
                                op,
                            })
                            .is_err()
                        {
                            send_to(
                                &from,
                                &Wire::Lost {
                                    from: self.me(),
                                    conn,
                                    doc,
                                    reason: "the document restarted".into(),
                                },
                            );
                        }
                    }
                    None => {
                        send_to(
                            &from,
                            &Wire::Lost {
                                from: self.me(),
                                conn,
                                doc,
                                reason: "the document is not open here".into(),
                            },
                        );
                    }
                }
            }
            Wire::Cursor {
                from,
                conn,
                doc,
                rev,
                ranges,
            } => {
                let actor = DocId::parse(&doc).ok().and_then(|d| {
                    self.proxies
                        .get(&(from, conn))
                        .and_then(|p| p.docs.get(&d).map(|a| (a.clone(), p.local_conn)))
                });
                if let Some((actor, local_conn)) = actor {
                    let _ = actor.cast(DocumentMsg::Cursor {
                        conn: local_conn,
                        rev,
                        ranges,
                    });
                }
            }
            Wire::Frames { conn, frames } => {
                if let Some(outbound) = self.origin_conns.get(&conn) {
                    for frame in frames {
                        outbound.push(Bytes::from(frame));
                    }
                }
            }
            Wire::Lost {
                from,
                conn,
                doc,
                reason,
            } => {
                let Ok(doc) = DocId::parse(&doc) else { return };
                // Only the node this connection follows for the document may say it is lost: a
                // late `Lost` from a former owner must not cancel the subscription to the new one.
                let current = self
                    .origin_subs
                    .get(&(doc.clone(), conn))
                    .map(|s| s.owner.as_str());
                if from.is_empty() || current == Some(from.as_str()) {
                    self.origin_lost(&doc, conn, &reason);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_for_peer(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        from: &str,
        conn: u64,
        doc: &str,
        client: &str,
        name: String,
        color: String,
        since: Option<u64>,
    ) -> Option<Refusal> {
        if self.leaving {
            return Some(Refusal::Unavailable {
                reason: "the node is draining".into(),
            });
        }
        let (Ok(doc), Some(client)) = (DocId::parse(doc), ClientId::parse(client)) else {
            return Some(Refusal::Unavailable {
                reason: "malformed open from a peer".into(),
            });
        };
        let key = (from.to_owned(), conn);
        if !self.proxies.contains_key(&key) {
            let local_conn = self.next_proxy_conn;
            self.next_proxy_conn += 1;
            let (outbound, queue) = Outbound::channel(self.args.queue_frames);
            let membership = self.args.membership.clone();
            let forwarder = tokio::spawn(forward_frames(
                queue,
                from.to_owned(),
                conn,
                myself.clone(),
                membership,
            ));
            self.proxies.insert(
                key.clone(),
                Proxy {
                    local_conn,
                    outbound,
                    docs: HashMap::new(),
                    forwarder,
                    idle_generation: 0,
                },
            );
        }
        let proxy = self.proxies.get(&key)?;
        let subscription = Subscription {
            events: Arc::new(ProxyEvents {
                router: myself.clone(),
                from: from.to_owned(),
                conn,
            }),
            conn: proxy.local_conn,
            outbound: proxy.outbound.clone(),
            client,
            name: Arc::from(name),
            color: Arc::from(color),
        };
        match self.args.local.open(doc.clone(), subscription, since).await {
            Ok(DocRoute::Local(actor)) => {
                if let Some(proxy) = self.proxies.get_mut(&key) {
                    proxy.docs.insert(doc, actor);
                }
                None
            }
            Ok(DocRoute::Remote(_)) => Some(Refusal::Unavailable {
                reason: "not local".into(),
            }),
            Err(OpenRefused::OwnedElsewhere { node, incarnation }) => {
                Some(Refusal::OwnedElsewhere { node, incarnation })
            }
            Err(OpenRefused::Unavailable(reason)) => Some(Refusal::Unavailable { reason }),
        }
    }

    fn drop_proxy(&mut self, from: &str, conn: u64) {
        if let Some(proxy) = self.proxies.remove(&(from.to_owned(), conn)) {
            for doc in proxy.docs.keys() {
                self.args.local.close(doc.clone(), proxy.local_conn);
            }
            proxy.forwarder.abort();
        }
    }

    fn tick(&mut self, myself: &ActorRef<RouterMsg>) {
        // Queues of connections that are gone (kept after closes for frames in flight).
        self.origin_conns
            .retain(|_, outbound| !outbound.is_closed());
        let members: Vec<MemberInfo> = self.members.borrow().clone();
        let me = self.me();
        let now = Instant::now();
        // New members become peers; vanished ones (lease gone) fail.
        for m in &members {
            if m.incarnation != me && !self.peers.contains_key(&m.incarnation) {
                self.peers.insert(
                    m.incarnation.clone(),
                    Peer {
                        info: m.clone(),
                        last_ack: now,
                        failed: false,
                        connecting: false,
                        draining: m.draining,
                    },
                );
            }
            if let Some(p) = self.peers.get_mut(&m.incarnation) {
                p.draining |= m.draining;
            }
        }
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|inc| !members.iter().any(|m| &m.incarnation == *inc))
            .cloned()
            .collect();
        for inc in gone {
            self.peers.remove(&inc);
            self.fail_peer(myself, &inc, "its lease lapsed");
        }
        self.nonce += 1;
        let nonce = self.nonce;
        let mut newly_failed = Vec::new();
        for (inc, peer) in self.peers.iter_mut() {
            let connected = endpoint_of(inc).is_some();
            if !connected && !peer.connecting && me < *inc {
                peer.connecting = true;
                let server = self.args.node_server.clone();
                let addr = peer.info.cluster_addr.clone();
                let router_inc = inc.clone();
                tokio::spawn(async move {
                    if let Err(e) = ractor_cluster::client_connect(&server, addr.as_str()).await {
                        tracing::debug!(peer = %router_inc, %addr, error = %e, "cluster connect failed");
                    }
                });
            } else if connected {
                peer.connecting = false;
            }
            if connected {
                send_to(
                    inc,
                    &Wire::Heartbeat {
                        from: me.clone(),
                        nonce,
                    },
                );
            }
            if now.duration_since(peer.last_ack) > self.args.heartbeat_timeout {
                if !peer.failed {
                    peer.failed = true;
                    newly_failed.push(inc.clone());
                }
                // Allow a new connection attempt.
                peer.connecting = false;
            }
        }
        for inc in newly_failed {
            tracing::warn!(peer = %inc, "peer missed its heartbeats; treating it as failed");
            self.fail_peer(myself, &inc, "the owner node stopped answering");
        }
    }

    fn fail_peer(&mut self, myself: &ActorRef<RouterMsg>, incarnation: &str, reason: &str) {
        // Opens waiting for this peer's answer would wait for it until their caller times out.
        let waiting: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.asked.as_deref() == Some(incarnation))
            .map(|(r, _)| *r)
            .collect();
        for request in waiting {
            self.retry_later(myself, request, format!("{reason} (asked {incarnation})"));
        }
        let lost: Vec<(DocId, ConnId)> = self
            .origin_subs
            .iter()
            .filter(|(_, s)| s.owner == incarnation)
            .map(|(k, _)| k.clone())
            .collect();
        for (doc, conn) in lost {
            self.origin_lost(&doc, conn, reason);
        }
        let proxies: Vec<u64> = self
            .proxies
            .keys()
            .filter(|(f, _)| f == incarnation)
            .map(|(_, c)| *c)
            .collect();
        for conn in proxies {
            self.drop_proxy(incarnation, conn);
        }
    }
}

/// Forwards a proxy connection's frames to the origin node, batched, in order. Stops (the
/// router then tells the origin the documents are lost, and its clients resync) once this
/// node's lease is not confirmed: the origin may already follow another owner, and frames
/// queued before a pause (SIGSTOP, a long stall) must not reach its clients after newer ones.
async fn forward_frames(
    mut queue: OutboundReceiver,
    origin: String,
    conn: u64,
    router: ActorRef<RouterMsg>,
    membership: Arc<Membership>,
) {
    loop {
        let first = tokio::select! {
            item = queue.rx.recv() => item,
            _ = queue.overflow.notified() => None,
        };
        let Some(first) = first else { break };
        let mut frames = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if let Some(f) = item.into_text_frame() {
                frames.push(String::from_utf8_lossy(&f).into_owned());
            }
            if frames.len() < MAX_FRAMES_PER_MESSAGE {
                next = queue.rx.try_recv().ok();
            }
        }
        if frames.is_empty() {
            continue;
        }
        if !membership.is_live() {
            tracing::warn!(origin = %origin, conn, "lease not confirmed: not forwarding frames to another node");
            break;
        }
        if !send_to(&origin, &Wire::Frames { conn, frames }) {
            break;
        }
    }
    let _ = router.cast(RouterMsg::ProxyGone { from: origin, conn });
}

/// Events for a remote subscriber: relayed through the router to the origin node.
#[derive(Debug)]
struct ProxyEvents {
    router: ActorRef<RouterMsg>,
    from: String,
    conn: u64,
}

impl SubscriberEvents for ProxyEvents {
    fn restarted(&self, doc: &DocId, actor: &ActorRef<DocumentMsg>) {
        let _ = self.router.cast(RouterMsg::ProxyRestarted {
            from: self.from.clone(),
            conn: self.conn,
            doc: doc.clone(),
            actor: actor.clone(),
        });
    }

    fn lost(&self, doc: &DocId, reason: &str) {
        let _ = self.router.cast(RouterMsg::ProxyLost {
            from: self.from.clone(),
            conn: self.conn,
            doc: doc.clone(),
            reason: reason.to_owned(),
        });
    }
}

/// A document on another node, as a local session's route.
#[derive(Debug)]
struct RemoteDocHandle {
    router: ActorRef<RouterMsg>,
    owner: String,
    node: String,
    doc: DocId,
}

impl RemoteDoc for RemoteDocHandle {
    fn submit(&self, conn: ConnId, seq: u64, rev: u64, op: RawOp) -> bool {
        self.router
            .cast(RouterMsg::RemoteSubmit {
                owner: self.owner.clone(),
                doc: self.doc.clone(),
                conn,
                seq,
                rev,
                op,
            })
            .is_ok()
    }

    fn cursor(&self, conn: ConnId, rev: u64, ranges: Vec<(u64, u64)>) -> bool {
        self.router
            .cast(RouterMsg::RemoteCursor {
                owner: self.owner.clone(),
                doc: self.doc.clone(),
                conn,
                rev,
                ranges,
            })
            .is_ok()
    }

    fn node(&self) -> &str {
        &self.node
    }
}

/// Sessions' directory in a cluster: everything goes through the router.
#[derive(Debug, Clone)]
pub struct ClusterDirectory {
    /// The router.
    pub router: ActorRef<RouterMsg>,
}

#[async_trait::async_trait]
impl Directory for ClusterDirectory {
    async fn open(
        &self,
        doc: DocId,
        subscription: Subscription,
        since: Option<u64>,
    ) -> Result<DocRoute, OpenRefused> {
        let timeout = OPEN_DEADLINE + Duration::from_secs(1);
        match self
            .router
            .call(
                move |reply| RouterMsg::Open {
                    doc,
                    subscription,
                    since,
                    reply,
                },
                Some(timeout),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(_) | Err(_) => Err(OpenRefused::Unavailable(
                "the cluster router did not answer in time".into(),
            )),
        }
    }

    fn close(&self, doc: DocId, conn: ConnId) {
        let _ = self.router.cast(RouterMsg::Close { doc, conn });
    }

    fn connection_gone(&self, conn: ConnId) {
        let _ = self.router.cast(RouterMsg::ConnectionGone { conn });
    }
}

/// The remote endpoint: decodes peers' messages (versioned, fallible) and hands them to the router.
pub struct RouterEndpoint;

/// Endpoint settings.
pub struct EndpointArgs {
    /// The router.
    pub router: ActorRef<RouterMsg>,
    /// Counter of messages that failed to decode.
    pub decode_errors: Arc<AtomicU64>,
}

impl Actor for RouterEndpoint {
    type Msg = Vec<u8>;
    type State = EndpointArgs;
    type Arguments = EndpointArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: EndpointArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Vec<u8>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match Wire::decode(&msg) {
            Ok(wire) => {
                let _ = state.router.cast(RouterMsg::Peer(wire));
            }
            Err(e) => {
                state.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, bytes = msg.len(), "cluster message failed to decode");
            }
        }
        Ok(())
    }
}
