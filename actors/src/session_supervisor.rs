//! The session supervisor: the account of the node's sessions, which run inside their
//! connection's task ([`crate::session::Session`]); they report their start, end and failure
//! here.
//!
//! A session's state (identity, open documents, rate limiter) is tied to its socket, so a failed
//! session is not restarted in place: its connection is closed with 1011 and the client
//! reconnects and resumes with the same client id (exactly-once keeps resubmissions safe); the
//! connection also tells its directory to forget it, so documents drop it. Failures are counted, and past
//! the restart intensity they are logged as an error for operators (one faulty client must not
//! take the node down, so it does not escalate further).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::document::ConnId;

/// Messages of the session supervisor.
#[derive(Debug)]
pub enum SessionSupervisorMsg {
    /// How many sessions are running.
    Count(RpcReplyPort<usize>),
    /// A session started.
    Started,
    /// A session ended.
    Ended,
    /// A session failed (panicked); its connection has already been told to close with
    /// 1011 and its directory to forget the connection. Counted against the restart intensity.
    Failed {
        /// Its connection.
        conn: ConnId,
        /// What went wrong.
        error: String,
    },
}

impl ractor::Message for SessionSupervisorMsg {}

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
    /// Sessions running.
    running: usize,
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
            running: 0,
            failures: VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionSupervisorMsg::Count(reply) => {
                let _ = reply.send(state.running);
            }
            SessionSupervisorMsg::Started => state.running += 1,
            SessionSupervisorMsg::Ended => state.running = state.running.saturating_sub(1),
            SessionSupervisorMsg::Failed { conn, error } => {
                tracing::error!(conn, error = %error, "session failed; closing its connection");
                state.failed();
            }
        }
        Ok(())
    }
}
