//! The session: one per WebSocket connection. It holds the client's identity, its open
//! documents and its rate limiter, answers what it can itself (hello, ping, errors) and hands
//! opens and closes to the document supervisor and ops and cursors straight to document actors.
//! Document actors write acks, broadcasts and presence directly to the connection's queue, so
//! their order per document is the order the document applied them.
//!
//! A [`Session`] is driven by its connection's own task rather than being a ractor actor of its
//! own (no task or mailboxes of its own: an idle connection costs a few hundred bytes here instead
//! of ≈ 12 KB; docs/DESIGN.md). It keeps an actor's discipline: one message at a time, in order,
//! and its failures are supervised by the `SessionSupervisor`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ractor::ActorRef;
use tokio::sync::Notify;

use crate::document::actor::DocumentMsg;
use crate::document::supervisor::Subscription;
use crate::document::ConnId;
use crate::ids::{ClientId, DocId};
use crate::outbound::{Outbound, CLOSE_POLICY};
use crate::protocol::{
    clean_name, default_color, error_frame, is_valid_color, ClientMsg, DecodeError, ErrorCode,
    ServerMsg, PROTOCOL_VERSION,
};
use crate::routing::{Directory, DocRoute, SubscriberEvents};

/// What a connection's token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open, edit, show cursors.
    ReadWrite,
    /// Open and show cursors; ops are `forbidden`.
    ReadOnly,
}

/// Per-connection limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLimits {
    /// Token bucket refill, ops per second.
    pub op_rate_per_s: f64,
    /// Token bucket size.
    pub op_burst: u32,
    /// Documents open at once on one connection.
    pub max_open_documents: usize,
}

/// Messages a session handles, in order.
#[derive(Debug)]
pub enum SessionMsg {
    /// A decoded message from the client.
    Client(ClientMsg),
    /// A text frame that did not decode.
    Malformed(DecodeError),
    /// A binary frame (the protocol uses text frames only).
    Binary,
    /// The document actor was restarted; ops go to the new one (it already re-opened us).
    DocumentRestarted {
        /// The document.
        doc: DocId,
        /// Where its ops go now.
        route: DocRoute,
    },
    /// The document is no longer served where it was (failed for good, moved, or its node
    /// stopped serving it): open it again through the directory, once.
    DocumentLost {
        /// The document.
        doc: DocId,
        /// Why.
        reason: String,
    },
    /// The socket is gone (or the node is shutting down): close every document and stop.
    Disconnected,
}

/// Everything a session needs to start.
pub struct SessionArgs {
    /// This connection's id on the node.
    pub conn: ConnId,
    /// Its send queue.
    pub outbound: Outbound,
    /// Name of this node, for `welcome`.
    pub node_name: Arc<str>,
    /// Where documents are opened (the local supervisor, or the cluster router).
    pub directory: Arc<dyn Directory>,
    /// Limits.
    pub limits: SessionLimits,
    /// What the connection's token allows.
    pub access: Access,
}

struct Identity {
    client: ClientId,
    name: Arc<str>,
    color: Arc<str>,
}

/// A token bucket: `rate` tokens a second up to `burst`; one op costs one token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_s,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A session's state.
pub struct SessionState {
    args: SessionArgs,
    /// Where document supervisors report restarts and losses for this session.
    events: Arc<dyn SubscriberEvents>,
    identity: Option<Identity>,
    docs: HashMap<DocId, DocRoute>,
    bucket: TokenBucket,
}

impl SessionState {
    fn new(args: SessionArgs, events: Arc<dyn SubscriberEvents>) -> SessionState {
        let bucket = TokenBucket::new(
            args.limits.op_rate_per_s,
            args.limits.op_burst,
            Instant::now(),
        );
        SessionState {
            args,
            events,
            identity: None,
            docs: HashMap::new(),
            bucket,
        }
    }

    fn send(&self, msg: ServerMsg<'_>) {
        self.args.outbound.push(msg.encode());
    }

    fn error(&self, code: ErrorCode, message: &str, doc: Option<&str>, seq: Option<u64>) {
        self.args
            .outbound
            .push(error_frame(code, message, doc, seq));
    }

    fn close_all(&mut self) {
        for (doc, _) in self.docs.drain() {
            self.args.directory.close(doc, self.args.conn);
        }
    }
}

/// What the connection does after a message.
enum Handled {
    /// Keep going.
    Continue,
    /// The session is over (its documents are closed).
    Stop,
}

/// Handles one message.
async fn handle(msg: SessionMsg, state: &mut SessionState) -> Handled {
    if state.identity.is_none() {
        return handle_before_hello(msg, state);
    }
    match msg {
        SessionMsg::Client(msg) => handle_client(msg, state).await,
        SessionMsg::Malformed(e) => {
            state.error(ErrorCode::BadMessage, &e.message, e.doc.as_deref(), e.seq);
        }
        SessionMsg::Binary => state.error(
            ErrorCode::BadMessage,
            "binary frames are not part of the protocol; send JSON text frames",
            None,
            None,
        ),
        SessionMsg::DocumentRestarted { doc, route } => {
            if let Some(slot) = state.docs.get_mut(&doc) {
                *slot = route;
            }
        }
        SessionMsg::DocumentLost { doc, reason } => {
            if state.docs.remove(&doc).is_some() {
                tracing::debug!(%doc, %reason, "document lost; opening it again");
                if let Err(refused) = open_document(state, doc.clone(), None).await {
                    state.error(ErrorCode::Unavailable, &refused, Some(doc.as_str()), None);
                }
            }
        }
        SessionMsg::Disconnected => {
            state.close_all();
            return Handled::Stop;
        }
    }
    Handled::Continue
}

fn handle_before_hello(msg: SessionMsg, state: &mut SessionState) -> Handled {
    let refuse = |state: &SessionState, code: ErrorCode, message: &str| {
        state.error(code, message, None, None);
        state
            .args
            .outbound
            .close(CLOSE_POLICY, "hello must be the first message");
    };
    match msg {
        SessionMsg::Client(ClientMsg::Hello {
            client,
            name,
            color,
        }) => {
            let client = match client {
                None => ClientId::generate(),
                Some(id) => match ClientId::parse(&id) {
                    Some(id) => id,
                    None => {
                        refuse(
                            state,
                            ErrorCode::Forbidden,
                            "this client id was not issued by this server",
                        );
                        return Handled::Continue;
                    }
                },
            };
            let name: Arc<str> = Arc::from(clean_name(name.as_deref()));
            let color: Arc<str> = match color {
                Some(c) if is_valid_color(&c) => Arc::from(c),
                _ => Arc::from(default_color(client.as_str())),
            };
            state.send(ServerMsg::Welcome {
                client: client.as_str(),
                node: &state.args.node_name,
                protocol: PROTOCOL_VERSION,
            });
            state.identity = Some(Identity {
                client,
                name,
                color,
            });
        }
        SessionMsg::Disconnected => return Handled::Stop,
        SessionMsg::DocumentRestarted { .. } | SessionMsg::DocumentLost { .. } => {}
        SessionMsg::Client(_) | SessionMsg::Malformed(_) | SessionMsg::Binary => {
            refuse(
                state,
                ErrorCode::BadMessage,
                "the first message must be {\"type\":\"hello\"}",
            );
        }
    }
    Handled::Continue
}

async fn handle_client(msg: ClientMsg, state: &mut SessionState) {
    match msg {
        ClientMsg::Hello { .. } => state.error(
            ErrorCode::BadMessage,
            "hello was already received",
            None,
            None,
        ),
        ClientMsg::Ping => state.send(ServerMsg::Pong),
        ClientMsg::Open { doc, rev } => {
            let Some(doc) = parse_doc(state, &doc, None) else {
                return;
            };
            if !state.docs.contains_key(&doc)
                && state.docs.len() >= state.args.limits.max_open_documents
            {
                let message = format!(
                    "at most {} documents may be open on one connection; close one first",
                    state.args.limits.max_open_documents
                );
                return state.error(ErrorCode::TooLarge, &message, Some(doc.as_str()), None);
            }
            if let Err(refused) = open_document(state, doc.clone(), rev).await {
                state.error(ErrorCode::Unavailable, &refused, Some(doc.as_str()), None);
            }
        }
        ClientMsg::Close { doc } => {
            let Some(doc) = parse_doc(state, &doc, None) else {
                return;
            };
            if state.docs.remove(&doc).is_some() {
                state.args.directory.close(doc, state.args.conn);
            } else {
                state.error(
                    ErrorCode::NotOpen,
                    "the document is not open on this connection",
                    Some(doc.as_str()),
                    None,
                );
            }
        }
        ClientMsg::Op { doc, rev, seq, op } => {
            let Some(doc) = parse_doc(state, &doc, Some(seq)) else {
                return;
            };
            let Some(route) = state.docs.get(&doc) else {
                return state.error(
                    ErrorCode::NotOpen,
                    "open the document before sending ops",
                    Some(doc.as_str()),
                    Some(seq),
                );
            };
            if state.args.access == Access::ReadOnly {
                return state.error(
                    ErrorCode::Forbidden,
                    "this token is read-only",
                    Some(doc.as_str()),
                    Some(seq),
                );
            }
            if !state.bucket.try_take(Instant::now()) {
                let message = format!(
                    "over {} ops per second on this connection; resubmit the same op later",
                    state.args.limits.op_rate_per_s
                );
                return state.error(
                    ErrorCode::RateLimited,
                    &message,
                    Some(doc.as_str()),
                    Some(seq),
                );
            }
            if !route.submit(state.args.conn, seq, rev, op) {
                state.error(
                    ErrorCode::Unavailable,
                    "the document is restarting; resubmit the same op",
                    Some(doc.as_str()),
                    Some(seq),
                );
            }
        }
        ClientMsg::Cursor { doc, rev, ranges } => {
            let Some(doc) = parse_doc(state, &doc, None) else {
                return;
            };
            let Some(route) = state.docs.get(&doc) else {
                return state.error(
                    ErrorCode::NotOpen,
                    "open the document before sending cursors",
                    Some(doc.as_str()),
                    None,
                );
            };
            route.cursor(state.args.conn, rev, ranges);
        }
    }
}

/// Opens `doc` through the directory and remembers its route; the error text on refusal.
async fn open_document(
    state: &mut SessionState,
    doc: DocId,
    since: Option<u64>,
) -> Result<(), String> {
    let Some(identity) = state.identity.as_ref() else {
        return Ok(());
    };
    let subscription = Subscription {
        events: state.events.clone(),
        conn: state.args.conn,
        outbound: state.args.outbound.clone(),
        client: identity.client.clone(),
        name: identity.name.clone(),
        color: identity.color.clone(),
    };
    match state
        .args
        .directory
        .open(doc.clone(), subscription, since)
        .await
    {
        Ok(route) => {
            state.docs.insert(doc, route);
            Ok(())
        }
        Err(refused) => Err(refused.to_string()),
    }
}

fn parse_doc(state: &SessionState, doc: &str, seq: Option<u64>) -> Option<DocId> {
    match DocId::parse(doc) {
        Ok(doc) => Some(doc),
        Err(e) => {
            state.error(ErrorCode::BadMessage, &e.to_string(), Some(doc), seq);
            None
        }
    }
}

/// A session driven by its connection's task instead of an actor: the task passes it each client
/// message ([`Session::handle`]) and the document events it collects ([`SessionEvents`]), one
/// at a time, in order, as an actor's mailbox would. Dropping it closes its documents.
pub struct Session {
    state: SessionState,
    events: Arc<SessionEvents>,
}

impl Session {
    /// A session that has not seen `hello` yet.
    pub fn new(args: SessionArgs) -> Session {
        let events = Arc::new(SessionEvents::default());
        Session {
            state: SessionState::new(args, events.clone()),
            events,
        }
    }

    /// Where this session's document events arrive; the connection waits on it.
    pub fn events(&self) -> Arc<SessionEvents> {
        self.events.clone()
    }

    /// Handles one message; false once the session is over (after [`SessionMsg::Disconnected`]).
    pub async fn handle(&mut self, msg: SessionMsg) -> bool {
        matches!(handle(msg, &mut self.state).await, Handled::Continue)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.close_all();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.state.args.conn)
            .field("open_documents", &self.state.docs.len())
            .finish_non_exhaustive()
    }
}

/// Document restarts and losses reported for a [`Session`], waiting for its connection's task.
/// Rare (a document actor failed or moved), so a plain locked list.
#[derive(Debug, Default)]
pub struct SessionEvents {
    pending: Mutex<Vec<SessionMsg>>,
    arrived: Notify,
}

impl SessionEvents {
    fn push(&self, msg: SessionMsg) {
        // A panic elsewhere cannot leave the list half-updated; never drop an event for it.
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(msg);
        self.arrived.notify_one();
    }

    /// Waits until an event has arrived (cancel-safe: a wake-up is kept until awaited).
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The events that arrived, oldest first.
    pub fn take(&self) -> Vec<SessionMsg> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SubscriberEvents for SessionEvents {
    fn restarted(&self, doc: &DocId, actor: &ActorRef<DocumentMsg>) {
        self.push(SessionMsg::DocumentRestarted {
            doc: doc.clone(),
            route: DocRoute::Local(actor.clone()),
        });
    }

    fn lost(&self, doc: &DocId, reason: &str) {
        self.push(SessionMsg::DocumentLost {
            doc: doc.clone(),
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }

    /// A directory whose opens succeed with a remote route, recording opens and closes.
    #[derive(Debug, Default)]
    struct Recording {
        log: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct Nowhere;

    impl crate::routing::RemoteDoc for Nowhere {
        fn submit(&self, _: ConnId, _: u64, _: u64, _: crate::ot::RawOp) -> bool {
            true
        }
        fn cursor(&self, _: ConnId, _: u64, _: Vec<(u64, u64)>) -> bool {
            true
        }
        fn node(&self) -> &str {
            "elsewhere"
        }
    }

    #[async_trait::async_trait]
    impl Directory for Recording {
        async fn open(
            &self,
            doc: DocId,
            _subscription: Subscription,
            _since: Option<u64>,
        ) -> Result<DocRoute, crate::document::supervisor::OpenRefused> {
            self.log.lock().unwrap().push(format!("open {doc}"));
            Ok(DocRoute::Remote(Arc::new(Nowhere)))
        }
        fn close(&self, doc: DocId, _conn: ConnId) {
            self.log.lock().unwrap().push(format!("close {doc}"));
        }
        fn connection_gone(&self, _conn: ConnId) {}
    }

    #[tokio::test]
    async fn in_task_session_reopens_a_lost_document_and_closes_all_when_dropped() {
        let directory = Arc::new(Recording::default());
        let (outbound, mut queue) = crate::outbound::Outbound::channel(16);
        let mut session = Session::new(SessionArgs {
            conn: 7,
            outbound,
            node_name: Arc::from("node-1"),
            directory: directory.clone(),
            limits: SessionLimits {
                op_rate_per_s: 10.0,
                op_burst: 10,
                max_open_documents: 4,
            },
            access: Access::ReadWrite,
        });
        let hello = ClientMsg::Hello {
            client: None,
            name: None,
            color: None,
        };
        assert!(session.handle(SessionMsg::Client(hello)).await);
        let open = ClientMsg::Open {
            doc: "notes".into(),
            rev: None,
        };
        assert!(session.handle(SessionMsg::Client(open)).await);
        // The document supervisor reports the document lost: the session opens it again.
        let events = session.events();
        let doc = DocId::parse("notes").unwrap();
        crate::routing::SubscriberEvents::lost(&*events, &doc, "moved");
        let pending = events.take();
        assert_eq!(pending.len(), 1);
        for msg in pending {
            assert!(session.handle(msg).await);
        }
        assert!(events.take().is_empty());
        match queue.rx.try_recv() {
            Ok(crate::outbound::Outgoing::Frame(frame)) => {
                assert!(String::from_utf8_lossy(&frame).contains("welcome"))
            }
            other => panic!("expected welcome, got {other:?}"),
        }
        drop(session);
        assert_eq!(
            *directory.log.lock().unwrap(),
            ["open notes", "open notes", "close notes"]
        );
    }
}
