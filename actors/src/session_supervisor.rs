//! The session supervisor: parent of every session actor on the node, and the account of the
//! sessions that run inside their connection's task ([`crate::session::Session`], what the web
//! front uses): those report their start, end and failure here.
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
    /// How many sessions are running (actors and in-task sessions).
    Count(RpcReplyPort<usize>),
    /// An in-task session started.
    Started,
    /// An in-task session ended.
    Ended,
    /// An in-task session failed (panicked); its connection has already been told to close with
    /// 1011 and its directory to forget the connection. Counted against the restart intensity.
    Failed {
        /// Its connection.
        conn: ConnId,
        /// What went wrong.
        error: String,
    },
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
    /// In-task sessions running.
    in_task: usize,
    failures: VecDeque<Instant>,
}

impl SessionSupervisorState {
    /// Counts a failure and alarms past the restart intensity.
    fn failed(&mut self) {
        let now = Instant::now();
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.args.failure_window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() > self.args.max_failures as usize {
            tracing::error!(
                failures = self.failures.len(),
                window_s = self.args.failure_window.as_secs(),
                "session failures exceed the restart intensity"
            );
        }
    }
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
            in_task: 0,
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
                let _ = reply.send(state.sessions.len() + state.in_task);
            }
            SessionSupervisorMsg::Started => state.in_task += 1,
            SessionSupervisorMsg::Ended => state.in_task = state.in_task.saturating_sub(1),
            SessionSupervisorMsg::Failed { conn, error } => {
                tracing::error!(conn, error = %error, "session failed; closing its connection");
                state.failed();
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
                    state.failed();
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
