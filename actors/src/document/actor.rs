//! The document actor: the I/O shell around [`DocumentCore`]. It feeds the core one message at a
//! time, runs the store job the core asks for in a task of its own (group commit: whatever
//! arrives meanwhile goes into the next write), and pushes frames to subscribers' queues.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::core::{ConnId, CoreSettings, DocumentCore, Output, StoreJob};
use super::supervisor::SupervisorMsg;
use crate::ids::{ClientId, DocId};
use crate::ot::RawOp;
use crate::outbound::Outbound;
use crate::protocol::ErrorCode;
use crate::store::{AppendBatch, DocumentStore, Snapshot, Store, StoreError};

/// Messages a document actor handles.
#[derive(Debug)]
pub enum DocumentMsg {
    /// A connection opens (or resyncs) the document.
    Open {
        /// Connection id.
        conn: ConnId,
        /// Its send queue.
        outbound: Outbound,
        /// The client on that connection.
        client: ClientId,
        /// Display name.
        name: Arc<str>,
        /// Display color.
        color: Arc<str>,
        /// Revision the client has, if any.
        since: Option<u64>,
    },
    /// A connection closes the document or went away.
    Close {
        /// Connection id.
        conn: ConnId,
    },
    /// An op from a connection.
    Submit {
        /// Connection id.
        conn: ConnId,
        /// Client's seq.
        seq: u64,
        /// Base revision.
        rev: u64,
        /// The op, validated by the core against its base.
        op: RawOp,
    },
    /// A connection's cursors.
    Cursor {
        /// Connection id.
        conn: ConnId,
        /// Revision the ranges refer to.
        rev: u64,
        /// `[anchor, head]` pairs.
        ranges: Vec<(u64, u64)>,
    },
    /// The store task finished; it hands the store back.
    StoreDone {
        /// The document's store handle.
        store: Box<dyn DocumentStore>,
        /// How the write went.
        result: Result<(), StoreError>,
    },
    /// Timer: check whether the document has been idle long enough to stop.
    IdleCheck {
        /// Generation of the idle timer, to ignore stale ones.
        generation: u64,
    },
    /// Reply once every accepted op is durable (graceful shutdown).
    Flush(RpcReplyPort<()>),
    /// Hand the document over (drain): refuse new ops, make everything durable, give up
    /// ownership in the store, then reply; the supervisor stops the actor.
    Release(RpcReplyPort<Result<(), String>>),
    /// The store task finished releasing ownership.
    Released {
        /// How it went.
        result: Result<(), StoreError>,
    },
}

impl ractor::Message for DocumentMsg {}

/// Everything a document actor needs to start.
pub struct DocumentArgs {
    /// Which document.
    pub doc: DocId,
    /// Where it is stored.
    pub store: Arc<dyn Store>,
    /// The core's limits.
    pub settings: CoreSettings,
    /// How long without subscribers before the actor stops.
    pub idle_timeout: Duration,
    /// The supervisor, told when the document is idle.
    pub supervisor: ActorRef<SupervisorMsg>,
}

/// The document actor (state lives in [`DocumentState`]).
pub struct DocumentActor;

/// A document actor's state.
pub struct DocumentState {
    core: DocumentCore<(ConnId, Outbound)>,
    /// `None` while a store job is in flight.
    store: Option<Box<dyn DocumentStore>>,
    idle_timeout: Duration,
    idle_generation: u64,
    supervisor: ActorRef<SupervisorMsg>,
    flush_waiters: Vec<RpcReplyPort<()>>,
    release_waiters: Vec<RpcReplyPort<Result<(), String>>>,
    releasing: bool,
}

impl Actor for DocumentActor {
    type Msg = DocumentMsg;
    type State = DocumentState;
    type Arguments = DocumentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: DocumentArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (store, stored) = args.store.open(&args.doc).await?;
        let core = DocumentCore::load(args.doc, stored, args.settings)?;
        tracing::debug!(doc = %core.doc(), rev = core.rev(), "document loaded");
        Ok(DocumentState {
            core,
            store: Some(store),
            idle_timeout: args.idle_timeout,
            idle_generation: 0,
            supervisor: args.supervisor,
            flush_waiters: Vec::new(),
            release_waiters: Vec::new(),
            releasing: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A document is started for an open that is already on its way; arm the idle timer
        // anyway so that a start whose open never came does not live forever.
        arm_idle_timer(&myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DocumentMsg::Open {
                conn,
                outbound,
                client,
                name,
                color,
                since,
            } => {
                state
                    .core
                    .open(conn, (conn, outbound), client, name, color, since);
            }
            DocumentMsg::Close { conn } => {
                state.core.close(conn);
                if state.core.subscriber_count() == 0 {
                    arm_idle_timer(&myself, state);
                }
            }
            DocumentMsg::Submit { conn, seq, rev, op } => {
                #[cfg(feature = "fault-injection")]
                fault_hook(&op);
                if state.releasing {
                    let message = "the document is moving to another node; resubmit the same op";
                    state
                        .core
                        .refuse(conn, ErrorCode::Unavailable, message, Some(seq));
                } else {
                    state.core.submit(conn, seq, rev, op);
                }
            }
            DocumentMsg::Cursor { conn, rev, ranges } => state.core.cursor(conn, rev, ranges),
            DocumentMsg::StoreDone { store, result } => {
                state.store = Some(store);
                state.core.store_done(result)?;
            }
            DocumentMsg::IdleCheck { generation } => {
                if generation == state.idle_generation && state.core.is_idle() {
                    let doc = state.core.doc().clone();
                    let opens_seen = state.core.opens_seen();
                    // The supervisor decides (it alone forwards opens), then stops us.
                    let _ = state.supervisor.cast(SupervisorMsg::Idle {
                        doc,
                        actor: myself.get_id(),
                        opens_seen,
                    });
                } else if generation == state.idle_generation && state.core.subscriber_count() == 0
                {
                    // Still writing: look again later.
                    arm_idle_timer(&myself, state);
                }
            }
            DocumentMsg::Flush(reply) => state.flush_waiters.push(reply),
            DocumentMsg::Release(reply) => {
                state.releasing = true;
                state.release_waiters.push(reply);
            }
            DocumentMsg::Released { result } => {
                let result = result.map_err(|e| e.to_string());
                for waiter in state.release_waiters.drain(..) {
                    let _ = waiter.send(result.clone());
                }
            }
        }
        drive(&myself, state);
        Ok(())
    }
}

fn arm_idle_timer(myself: &ActorRef<DocumentMsg>, state: &mut DocumentState) {
    state.idle_generation += 1;
    let generation = state.idle_generation;
    myself.send_after(state.idle_timeout, move || DocumentMsg::IdleCheck {
        generation,
    });
}

/// A store job as the write task performs it.
enum StoreWrite {
    Append(AppendBatch),
    Compact(Snapshot),
    /// The records could not be encoded: the write fails without touching the store.
    Refused(StoreError),
}

/// Drains the core's outputs in a fixed order: start the next store job, then deliver frames.
fn drive(myself: &ActorRef<DocumentMsg>, state: &mut DocumentState) {
    if let Some(mut store) = state.store.take() {
        match state.core.poll_store_job() {
            Some(job) => {
                let myself = myself.clone();
                // The records are encoded here, once, so that the write owns bytes and the
                // history keeps plain records.
                let write = match job {
                    // Exactly the job's revisions, or nothing is written (and nothing
                    // acknowledged).
                    StoreJob::Append {
                        first_rev,
                        last_rev,
                    } => {
                        match AppendBatch::encode(first_rev..=last_rev, state.core.append_records())
                        {
                            Ok(batch) => StoreWrite::Append(batch),
                            Err(error) => StoreWrite::Refused(error),
                        }
                    }
                    StoreJob::Compact(snapshot) => StoreWrite::Compact(snapshot),
                };
                tokio::spawn(async move {
                    let result = match write {
                        StoreWrite::Append(batch) => store.append(batch).await,
                        StoreWrite::Compact(snapshot) => store.compact(&snapshot).await,
                        StoreWrite::Refused(error) => Err(error),
                    };
                    // If the actor is gone, its undurable ops were never acknowledged: nothing to do.
                    let _ = myself.cast(DocumentMsg::StoreDone { store, result });
                });
            }
            None => state.store = Some(store),
        }
    }
    let mut overflowed: Vec<ConnId> = Vec::new();
    while let Some(output) = state.core.poll_output() {
        match output {
            Output::Send {
                to: (conn, outbound),
                frame,
            } => {
                if !outbound.push(frame) {
                    overflowed.push(conn);
                }
            }
            Output::Ack {
                to: (conn, outbound),
                seq,
                rev,
            } => {
                if !outbound.push_ack(state.core.ack_prefix(), seq, rev) {
                    overflowed.push(conn);
                }
            }
            Output::Broadcast { except, frame } => {
                for (conn, (_, outbound)) in state.core.subscribers(except) {
                    if !outbound.push(frame.clone()) {
                        overflowed.push(conn);
                    }
                }
            }
        }
    }
    if !overflowed.is_empty() {
        // Too slow or gone: the connection closes (its writer saw the overflow signal) and the
        // client resumes; the others are told it left.
        overflowed.sort_unstable();
        overflowed.dedup();
        for conn in overflowed {
            state.core.close(conn);
        }
        while let Some(output) = state.core.poll_output() {
            if let Output::Broadcast { except, frame } = output {
                for (_, (_, outbound)) in state.core.subscribers(except) {
                    outbound.push(frame.clone());
                }
            }
        }
    }
    if state.core.is_flushed() {
        for waiter in state.flush_waiters.drain(..) {
            let _ = waiter.send(());
        }
        if state.releasing && !state.release_waiters.is_empty() {
            if let Some(mut store) = state.store.take() {
                let myself = myself.clone();
                tokio::spawn(async move {
                    let result = store.release().await;
                    let _ = myself.cast(DocumentMsg::Released { result });
                });
            }
        }
    }
}

/// Test-only fault hook: an op inserting this marker makes the document actor panic, so tests
/// can prove that supervision restarts it from its store and that sessions keep working.
#[cfg(feature = "fault-injection")]
pub const PANIC_MARKER: &str = "\u{1F4A5}chorus-test-panic\u{1F4A5}";

#[cfg(feature = "fault-injection")]
fn fault_hook(op: &RawOp) {
    use crate::ot::RawComponent;
    if op
        .0
        .iter()
        .any(|c| matches!(c, RawComponent::Insert(s) if s.contains(PANIC_MARKER)))
    {
        panic!("fault injection: document actor panics on request");
    }
}
