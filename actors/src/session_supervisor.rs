//! The session supervisor: parent of every session actor on the node.
//!
//! A session's state (identity, open documents, rate limiter) is tied to its socket, so a failed
//! session is not restarted in place: its connection is closed with 1011 and the client
//! reconnects and resumes with the same client id (exactly-once keeps resubmissions safe). The
//! supervisor makes sure the documents forget the dead connection. Failures are counted, and past
//! the restart intensity they are logged as an error for operators (one faulty client must not
//! take the node down, so it does not escalate further).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::document::ConnId;
use crate::outbound::{Outbound, CLOSE_INTERNAL};
use crate::routing::Directory;
use crate::session::{SessionActor, SessionArgs, SessionMsg};

/// Messages of the session supervisor.
#[derive(Debug)]
pub enum SessionSupervisorMsg {
    /// Start a session for a new connection.
    Spawn(
        SessionArgs,
        RpcReplyPort<Result<ActorRef<SessionMsg>, String>>,
    ),
    /// How many sessions are running.
    Count(RpcReplyPort<usize>),
}

impl ractor::Message for SessionSupervisorMsg {}

impl std::fmt::Debug for SessionArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionArgs")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// Settings of the session supervisor.
pub struct SessionSupervisorArgs {
    /// Failures tolerated per window before alarming.
    pub max_failures: u32,
    /// The window.
    pub failure_window: Duration,
}

/// The session supervisor actor.
pub struct SessionSupervisor;

/// Its state.
pub struct SessionSupervisorState {
    args: SessionSupervisorArgs,
    sessions: HashMap<ActorId, (ConnId, Outbound, Arc<dyn Directory>)>,
    failures: VecDeque<Instant>,
}

impl Actor for SessionSupervisor {
    type Msg = SessionSupervisorMsg;
    type State = SessionSupervisorState;
    type Arguments = SessionSupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SessionSupervisorState {
            args,
            sessions: HashMap::new(),
            failures: VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionSupervisorMsg::Spawn(args, reply) => {
                let conn = args.conn;
                let outbound = args.outbound.clone();
                let directory = args.directory.clone();
                let result =
                    match Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await {
                        Ok((session, _)) => {
                            state
                                .sessions
                                .insert(session.get_id(), (conn, outbound, directory));
                            Ok(session)
                        }
                        Err(e) => Err(e.to_string()),
                    };
                let _ = reply.send(result);
            }
            SessionSupervisorMsg::Count(reply) => {
                let _ = reply.send(state.sessions.len());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Always handled: ractor's default would stop this supervisor when a session dies.
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some((conn, outbound, directory)) = state.sessions.remove(&cell.get_id()) {
                    tracing::error!(conn, error = %error, "session failed; closing its connection");
                    outbound.close(CLOSE_INTERNAL, "session failed; reconnect");
                    directory.connection_gone(conn);
                    let now = Instant::now();
                    state.failures.push_back(now);
                    while state
                        .failures
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > state.args.failure_window)
                    {
                        state.failures.pop_front();
                    }
                    if state.failures.len() > state.args.max_failures as usize {
                        tracing::error!(
                            failures = state.failures.len(),
                            window_s = state.args.failure_window.as_secs(),
                            "session failures exceed the restart intensity"
                        );
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.sessions.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
