//! The bounded send queue of one WebSocket connection, shared by its session and the document
//! actors it subscribes to. Producers never block: a full queue means the client is too far
//! behind, and the connection is told to close (the client reconnects and resumes).

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::protocol::Frame;

/// What a connection's writer task is asked to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Send this text frame.
    Frame(Frame),
    /// Send an `ack` text frame: the writer puts it straight into its socket buffer
    /// ([`crate::protocol::push_ack`]), so an ack costs no allocation of its own.
    Ack {
        /// The document's [`crate::protocol::ack_prefix`].
        prefix: Arc<[u8]>,
        /// The acknowledged op's seq.
        seq: u64,
        /// The revision it became.
        rev: u64,
    },
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

impl Outgoing {
    /// The text frame this item sends, if it is one (`Close` is not): for writers that forward
    /// frames whole, e.g. to another node.
    pub fn into_text_frame(self) -> Option<Frame> {
        match self {
            Outgoing::Frame(frame) => Some(frame),
            Outgoing::Ack { prefix, seq, rev } => {
                Some(crate::protocol::encode_ack_after(&prefix, seq, rev))
            }
            Outgoing::Close(..) => None,
        }
    }
}

/// WebSocket close code for a normal close.
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for a server going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a policy violation (e.g. no `hello` first).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for a message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code for an unexpected server condition.
pub const CLOSE_INTERNAL: u16 = 1011;
/// WebSocket close code for "try again later" (the client fell too far behind).
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// Sending side of a connection's queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Outgoing>,
    overflow: Arc<Notify>,
}

/// Receiving side, owned by the connection's writer.
#[derive(Debug)]
pub struct OutboundReceiver {
    /// Frames and close requests in order.
    pub rx: mpsc::Receiver<Outgoing>,
    /// Signalled when a producer found the queue full or closed.
    pub overflow: Arc<Notify>,
}

impl Outbound {
    /// A queue holding at most `capacity` items.
    pub fn channel(capacity: usize) -> (Outbound, OutboundReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Notify::new());
        (
            Outbound {
                tx,
                overflow: overflow.clone(),
            },
            OutboundReceiver { rx, overflow },
        )
    }

    /// Queues a frame; returns false (and signals overflow) if the queue is full or gone.
    pub fn push(&self, frame: Frame) -> bool {
        self.push_item(Outgoing::Frame(frame))
    }

    /// Queues an `ack` (see [`Outgoing::Ack`]); returns false (and signals overflow) if the queue
    /// is full or gone.
    pub fn push_ack(&self, prefix: &Arc<[u8]>, seq: u64, rev: u64) -> bool {
        self.push_item(Outgoing::Ack {
            prefix: Arc::clone(prefix),
            seq,
            rev,
        })
    }

    /// Queues a close request; returns false if the queue is full or gone.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        self.push_item(Outgoing::Close(code, reason))
    }

    fn push_item(&self, item: Outgoing) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(_) => {
                self.overflow.notify_one();
                false
            }
        }
    }

    /// True once the connection's writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
