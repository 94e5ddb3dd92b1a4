//! One WebSocket connection, served by one task: it reads and decodes client frames (once) and
//! hands them to the connection's session (run by this task, one message at a time, in order),
//! writes the connection's queue to the socket,
//! sends WebSocket pings and drops a client that stays silent past the timeout, and closes the
//! socket when the session, the queue's overflow signal or node shutdown says so.
//!
//! An idle connection holds no socket buffer: bytes are read into a stack buffer and only a
//! partial frame is kept on the heap (released once parsed), and the write buffer is released
//! after every write.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use chorus_actors::outbound::{
    Outbound, OutboundReceiver, Outgoing, CLOSE_GOING_AWAY, CLOSE_INTERNAL, CLOSE_POLICY,
    CLOSE_TOO_BIG, CLOSE_TRY_AGAIN,
};
use chorus_actors::protocol::{ack_len, decode_client, push_ack};
use chorus_actors::session::{
    Access, Session, SessionArgs, SessionEvents, SessionLimits, SessionMsg,
};
use chorus_actors::session_supervisor::SessionSupervisorMsg;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::OpCode;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::frame::{self, Event, Step};
use crate::server::{ConnectionGuard, Phase, WebContext};

/// The upgraded socket.
type Socket = TokioIo<Upgraded>;

/// Bytes read at once when no partial frame is buffered. They go to a stack buffer (so an idle
/// connection holds no read buffer); 8 KiB is what fastwebsockets read at once, enough for a
/// burst of keystroke frames in one system call.
const READ_CHUNK: usize = 8 * 1024;

/// Serves one upgraded connection until it closes.
pub async fn run(fut: UpgradeFut, ctx: Arc<WebContext>, access: Access, guard: ConnectionGuard) {
    let _guard = guard;
    // fastwebsockets completes the upgrade; the frames are ours both ways (see the module doc).
    let io = match fut.await {
        Ok(ws) => ws.into_inner(),
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };

    let conn = ctx.next_conn_id();
    let (outbound, queue) = Outbound::channel(ctx.config.websocket.outbound_queue_frames);
    let limits = &ctx.config.limits;
    let args = SessionArgs {
        conn,
        outbound: outbound.clone(),
        node_name: ctx.node_name.clone(),
        directory: ctx.directory.clone(),
        limits: SessionLimits {
            op_rate_per_s: limits.op_rate_per_s,
            op_burst: limits.op_burst,
            max_open_documents: limits.max_open_documents,
        },
        access,
    };
    let started = Session::new(args);
    let mut session = SessionSlot {
        conn,
        events: started.events(),
        idle: Some(started),
        busy: None,
        mailbox: VecDeque::new(),
        failed: false,
    };
    let _ = ctx.sessions.cast(SessionSupervisorMsg::Started);

    let write = FrameWriter {
        io,
        buffer: Vec::new(),
    };
    if let Err(e) = serve(write, &mut session, queue, &outbound, &ctx).await {
        tracing::debug!(conn, error = %e, "connection ended with an error");
    }
    // As an actor's mailbox would: what was read is handled, then the documents are closed.
    session.finish(&outbound, &ctx).await;
    drop(session);
    let _ = ctx.sessions.cast(SessionSupervisorMsg::Ended);
    drop(outbound);
}

/// The connection's session and its mailbox. Messages are handled one at a time, in order; one
/// that waits (an open awaits the document) is polled alongside the socket, so reading and
/// writing go on meanwhile and later messages wait their turn, as in an actor's mailbox.
struct SessionSlot {
    conn: u64,
    /// Where the session's document events arrive.
    events: Arc<SessionEvents>,
    /// The session, when no message is being handled.
    idle: Option<Session>,
    /// The message being handled; yields the session back.
    busy: Option<Pin<Box<dyn Future<Output = Session> + Send>>>,
    /// Messages waiting their turn. Unbounded, as an actor mailbox is; it only grows while an
    /// open is in flight, and the client's reads are bounded by the socket.
    mailbox: VecDeque<SessionMsg>,
    /// The session panicked: messages are dropped, the connection is closing with 1011.
    failed: bool,
}

impl SessionSlot {
    /// Queues a message and starts handling it if the session is free.
    fn deliver(&mut self, msg: SessionMsg) {
        if self.failed {
            return;
        }
        if self.busy.is_none() && self.mailbox.is_empty() {
            // The common case, every op: straight to the session, no queueing.
            return self.start(msg);
        }
        self.mailbox.push_back(msg);
        self.start_next();
    }

    fn start_next(&mut self) {
        if self.busy.is_some() {
            return;
        }
        let Some(msg) = self.mailbox.pop_front() else {
            return;
        };
        if self.mailbox.is_empty() {
            // Usually a handful of messages at most: give the capacity back while idle.
            self.mailbox = VecDeque::new();
        }
        self.start(msg);
    }

    /// Starts handling `msg` (the session must be idle).
    fn start(&mut self, msg: SessionMsg) {
        if let Some(mut session) = self.idle.take() {
            self.busy = Some(Box::pin(async move {
                session.handle(msg).await;
                session
            }));
        }
    }

    /// Drives the message being handled. Ready when it is done (`Err` with the panic message if
    /// the session panicked; the session is then gone).
    fn poll_busy(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let Some(busy) = self.busy.as_mut() else {
            return Poll::Pending;
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| busy.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(session)) => {
                self.busy = None;
                self.idle = Some(session);
                self.start_next();
                Poll::Ready(Ok(()))
            }
            Err(panic) => {
                self.busy = None;
                self.failed = true;
                self.mailbox.clear();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "session panicked".to_owned());
                Poll::Ready(Err(message))
            }
        }
    }

    /// A failed session: as a supervisor would for a failed actor, the connection is
    /// told to close with 1011 and the documents to forget it.
    fn fail(&self, error: String, outbound: &Outbound, ctx: &WebContext) {
        outbound.close(CLOSE_INTERNAL, "session failed; reconnect");
        ctx.directory.connection_gone(self.conn);
        let _ = ctx.sessions.cast(SessionSupervisorMsg::Failed {
            conn: self.conn,
            error,
        });
    }

    /// Handles everything still queued (including the message in progress).
    async fn finish(&mut self, outbound: &Outbound, ctx: &WebContext) {
        while self.busy.is_some() {
            if let Err(error) = poll_fn(|cx| self.poll_busy(cx)).await {
                self.fail(error, outbound, ctx);
            }
        }
    }
}

fn elapsed_ms(ctx: &WebContext) -> u64 {
    u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A message being reassembled from fragments, bounded by `max_frame_bytes` in total (the
/// library's own collector bounds single frames only).
struct Reassembly {
    opcode: Option<OpCode>,
    buffer: Vec<u8>,
    max_bytes: usize,
}

enum Assembled {
    /// A whole message.
    Message(OpCode, Vec<u8>),
    /// More fragments to come.
    Partial,
    /// Over the size limit.
    TooBig,
    /// Fragments that break RFC 6455 (a continuation with nothing to continue, or a new message
    /// inside a fragmented one).
    Invalid,
}

impl Reassembly {
    fn push(&mut self, opcode: OpCode, fin: bool, payload: Vec<u8>) -> Assembled {
        match (opcode, self.opcode) {
            (OpCode::Text | OpCode::Binary, None) => {
                if payload.len() > self.max_bytes {
                    return Assembled::TooBig;
                }
                if fin {
                    return Assembled::Message(opcode, payload);
                }
                self.opcode = Some(opcode);
                self.buffer = payload;
                Assembled::Partial
            }
            (OpCode::Continuation, Some(first)) => {
                if self.buffer.len() + payload.len() > self.max_bytes {
                    return Assembled::TooBig;
                }
                self.buffer.extend_from_slice(&payload);
                if fin {
                    self.opcode = None;
                    Assembled::Message(first, std::mem::take(&mut self.buffer))
                } else {
                    Assembled::Partial
                }
            }
            _ => Assembled::Invalid,
        }
    }
}

/// Appends the header of an unmasked server frame (RFC 6455 §5.2) with a payload of `len` bytes.
fn push_header(buffer: &mut Vec<u8>, opcode: OpCode, len: usize) {
    buffer.reserve(len + 10);
    buffer.push(0x80 | opcode as u8);
    if len < 126 {
        buffer.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        buffer.push(126);
        buffer.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buffer.push(127);
        buffer.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends an `ack` text frame straight from its document's prefix: no frame of its own.
fn push_ack_frame(buffer: &mut Vec<u8>, prefix: &[u8], seq: u64, rev: u64) {
    push_header(buffer, OpCode::Text, ack_len(prefix, seq, rev));
    push_ack(buffer, prefix, seq, rev);
}

/// Most queued frames gathered into one write.
const MAX_BATCH_FRAMES: usize = 64;
/// Most bytes gathered into one write (a larger single frame still goes out whole).
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Writes unmasked server frames (RFC 6455 §5.2) to the socket, several per write.
struct FrameWriter {
    io: Socket,
    /// Frames not written yet; released after each write (the queue was drained, so the
    /// connection is likely idle, and an idle connection should hold no buffer).
    buffer: Vec<u8>,
}

impl FrameWriter {
    /// Appends one frame to the pending write.
    fn push(&mut self, opcode: OpCode, payload: &[u8]) {
        push_header(&mut self.buffer, opcode, payload.len());
        self.buffer.extend_from_slice(payload);
    }

    /// Appends a queued text frame or ack; a close request is returned, not written.
    fn push_outgoing(&mut self, item: Outgoing) -> Option<(u16, &'static str)> {
        match item {
            Outgoing::Frame(frame) => self.push(OpCode::Text, &frame),
            Outgoing::Ack { prefix, seq, rev } => {
                push_ack_frame(&mut self.buffer, &prefix, seq, rev)
            }
            Outgoing::Close(code, reason) => return Some((code, reason)),
        }
        None
    }

    /// Appends a close frame with `code` and `reason`.
    fn push_close(&mut self, code: u16, reason: &[u8]) {
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason);
        self.push(OpCode::Close, &payload);
    }

    /// Writes everything pending.
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.io.write_all(&self.buffer).await?;
            self.io.flush().await?;
            self.buffer = Vec::new();
        }
        Ok(())
    }

    /// Writes one frame now.
    async fn send(&mut self, opcode: OpCode, payload: &[u8]) -> std::io::Result<()> {
        self.push(opcode, payload);
        self.flush().await
    }

    /// Writes a close frame now.
    async fn close(&mut self, code: u16, reason: &[u8]) -> std::io::Result<()> {
        self.push_close(code, reason);
        self.flush().await
    }
}

/// Reads what the socket has into `input`: into a stack buffer when `input` is empty (so an idle
/// connection keeps no read buffer), else straight onto the partial frame, up to the `need` bytes
/// it is known to need. Ready with the number of bytes read (0: end of stream).
fn poll_fill(
    io: &mut Socket,
    input: &mut Vec<u8>,
    need: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if input.is_empty() {
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(io).poll_read(cx, &mut buf))?;
        input.extend_from_slice(buf.filled());
        return Poll::Ready(Ok(buf.filled().len()));
    }
    let start = input.len();
    input.resize(start + need.saturating_sub(start).max(READ_CHUNK), 0);
    let mut buf = ReadBuf::new(&mut input[start..]);
    let result = Pin::new(io).poll_read(cx, &mut buf);
    let read = buf.filled().len();
    input.truncate(start + read);
    result.map_ok(|()| read)
}

/// What the frames of one read asked for.
enum AfterRead {
    /// Keep serving.
    Continue,
    /// The connection is over (close handshake answered, protocol error, session gone).
    Done,
}

/// State of the reading side.
struct Reader {
    /// Bytes read but not parsed yet: a partial frame at most, empty when idle.
    input: Vec<u8>,
    /// Bytes `input` must hold before the next frame can be parsed.
    need: usize,
    reassembly: Reassembly,
    /// When a frame last arrived (ms since the front started).
    last_seen_ms: u64,
}

/// Handles every complete frame in `reader.input`: data to the session, pongs and close
/// answers into `write`.
async fn handle_input(
    reader: &mut Reader,
    write: &mut FrameWriter,
    session: &mut SessionSlot,
    ctx: &WebContext,
) -> std::io::Result<AfterRead> {
    let max_frame = ctx.config.limits.max_frame_bytes;
    loop {
        let event = match frame::next(&mut reader.input, max_frame) {
            Step::Need(need) => {
                reader.need = need;
                break;
            }
            Step::Event(event) => event,
        };
        let (opcode, fin, payload) = match event {
            Event::Data {
                opcode,
                fin,
                payload,
            } => (opcode, fin, payload),
            Event::Ping(payload) => {
                write.push(OpCode::Pong, &payload);
                continue;
            }
            Event::Pong => continue,
            Event::Close(echo) => {
                write.send(OpCode::Close, &echo).await?;
                return Ok(AfterRead::Done);
            }
            Event::Fail { reply, reason } => {
                tracing::debug!(reason, "client broke the WebSocket protocol; closing");
                match reply {
                    Some(payload) => write.send(OpCode::Close, &payload).await?,
                    None => write.flush().await?,
                }
                return Ok(AfterRead::Done);
            }
            Event::TooBig => {
                write
                    .close(CLOSE_TOO_BIG, b"frame over the configured limit")
                    .await?;
                return Ok(AfterRead::Done);
            }
        };
        let (opcode, message) = match reader.reassembly.push(opcode, fin, payload) {
            Assembled::Message(opcode, message) => (opcode, message),
            Assembled::Partial => continue,
            Assembled::TooBig => {
                write
                    .close(CLOSE_TOO_BIG, b"frame over the configured limit")
                    .await?;
                return Ok(AfterRead::Done);
            }
            Assembled::Invalid => {
                tracing::debug!("invalid fragmentation; closing");
                write.flush().await?;
                return Ok(AfterRead::Done);
            }
        };
        if *ctx.phase.borrow() != Phase::Running {
            // Draining: no new client messages are taken (nothing unacknowledged is lost: the
            // client resubmits after reconnecting elsewhere).
            continue;
        }
        let msg = match opcode {
            OpCode::Text => match decode_client(&message) {
                Ok(msg) => SessionMsg::Client(msg),
                Err(e) => SessionMsg::Malformed(e),
            },
            _ => SessionMsg::Binary,
        };
        session.deliver(msg);
    }
    if reader.input.is_empty() {
        // Nothing partial: give the capacity back (an idle connection holds no read buffer).
        reader.input = Vec::new();
        reader.need = 0;
    }
    write.flush().await?;
    Ok(AfterRead::Continue)
}

async fn serve(
    mut write: FrameWriter,
    session: &mut SessionSlot,
    mut queue: OutboundReceiver,
    outbound: &Outbound,
    ctx: &WebContext,
) -> std::io::Result<()> {
    let events = session.events.clone();
    let settings = &ctx.config.websocket;
    let mut ping = tokio::time::interval(Duration::from_millis(settings.ping_interval_ms.max(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut reader = Reader {
        input: Vec::new(),
        need: 0,
        reassembly: Reassembly {
            opcode: None,
            buffer: Vec::new(),
            max_bytes: ctx.config.limits.max_frame_bytes,
        },
        last_seen_ms: elapsed_ms(ctx),
    };
    let mut phase = ctx.phase.clone();
    loop {
        // Unbiased: neither a client that keeps sending nor a busy queue starves the other.
        tokio::select! {
            read = poll_fn(|cx| poll_fill(&mut write.io, &mut reader.input, reader.need, cx)) => {
                match read {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "read failed");
                        return Ok(());
                    }
                }
                reader.last_seen_ms = elapsed_ms(ctx);
                if let AfterRead::Done = handle_input(&mut reader, &mut write, session, ctx).await? {
                    return Ok(());
                }
            }
            done = poll_fn(|cx| session.poll_busy(cx)), if session.busy.is_some() => {
                if let Err(error) = done {
                    session.fail(error, outbound, ctx);
                }
            }
            _ = events.arrived() => {
                for msg in events.take() {
                    session.deliver(msg);
                }
            }
            item = queue.rx.recv() => {
                // Gather what else is queued (bounded) into the same write.
                let mut next = item;
                let mut frames = 0;
                loop {
                    let Some(item) = next else {
                        write.flush().await?;
                        return Ok(());
                    };
                    if let Some((code, reason)) = write.push_outgoing(item) {
                        return write.close(code, reason.as_bytes()).await;
                    }
                    frames += 1;
                    if frames >= MAX_BATCH_FRAMES || write.buffer.len() >= MAX_BATCH_BYTES {
                        break;
                    }
                    match queue.rx.try_recv() {
                        Ok(item) => next = Some(item),
                        Err(_) => break,
                    }
                }
                write.flush().await?;
            }
            _ = queue.overflow.notified() => {
                // What is already queued goes out first (as when the queue was served before
                // the overflow signal), then the close.
                if let Some(close) = drain_queue(&mut write, &mut queue).await? {
                    return close;
                }
                return write.close(CLOSE_TRY_AGAIN, b"client too slow: send queue full; reconnect and resume").await;
            }
            _ = ping.tick() => {
                let silent_ms = elapsed_ms(ctx).saturating_sub(reader.last_seen_ms);
                if silent_ms > settings.ping_timeout_ms {
                    tracing::debug!(silent_ms, "client answered no ping in time; dropping it");
                    return write.close(CLOSE_POLICY, b"ping timeout").await;
                }
                write.send(OpCode::Ping, b"chorus").await?;
            }
            changed = phase.changed() => {
                let now = *phase.borrow();
                if changed.is_err() || now == Phase::Closing {
                    // Everything accepted is durable and queued: send it, then say goodbye.
                    if let Some(close) = drain_queue(&mut write, &mut queue).await? {
                        return close;
                    }
                    return write.close(CLOSE_GOING_AWAY, b"server shutting down").await;
                }
            }
        }
    }
}

/// Writes every frame queued now. If the queue holds a close request, sends it and returns
/// `Some` with the result to end the connection with.
async fn drain_queue(
    write: &mut FrameWriter,
    queue: &mut OutboundReceiver,
) -> std::io::Result<Option<std::io::Result<()>>> {
    while let Ok(item) = queue.rx.try_recv() {
        if let Some((code, reason)) = write.push_outgoing(item) {
            return Ok(Some(write.close(code, reason.as_bytes()).await));
        }
        if write.buffer.len() >= MAX_BATCH_BYTES {
            write.flush().await?;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_actors::protocol::{ack_prefix, ServerMsg};

    /// Splits one unmasked server frame into its opcode byte and payload.
    fn parse_frame(bytes: &[u8]) -> (u8, &[u8]) {
        let (len, start) = match bytes[1] {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let mut len = [0; 8];
                len.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(len) as usize, 10)
            }
            len => (usize::from(len), 2),
        };
        assert_eq!(bytes.len(), start + len, "one whole frame");
        (bytes[0], &bytes[start..])
    }

    #[test]
    fn an_ack_frame_is_the_ack_with_a_header_of_the_right_length() {
        // A short id gives a payload under 126 bytes; the longest id (256 characters) one over.
        for doc in ["a.rs".to_owned(), "d/".repeat(128)] {
            for (seq, rev) in [(1, 1), (u64::MAX, u64::MAX - 1)] {
                let mut buffer = Vec::new();
                push_ack_frame(&mut buffer, &ack_prefix(&doc), seq, rev);
                let (first, payload) = parse_frame(&buffer);
                assert_eq!(first, 0x80 | OpCode::Text as u8, "final text frame");
                let expected = ServerMsg::Ack {
                    doc: &doc,
                    seq,
                    rev,
                }
                .encode();
                assert_eq!(payload, &expected[..], "{doc} {seq} {rev}");
                assert_eq!(buffer[1] == 126, payload.len() >= 126, "header form");
            }
        }
    }
}
