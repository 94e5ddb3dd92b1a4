//! One WebSocket connection: a reader task decodes frames (once) and hands them to the
//! connection's session actor; this task writes the connection's queue to the socket, sends
//! WebSocket pings and drops a client that stays silent past the timeout, and closes the socket
//! when the session, the queue's overflow signal or node shutdown says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_actors::outbound::{
    Outbound, OutboundReceiver, Outgoing, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
};
use chorus_actors::protocol::decode_client;
use chorus_actors::session::{Access, SessionArgs, SessionLimits, SessionMsg};
use chorus_actors::session_supervisor::SessionSupervisorMsg;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use ractor::ActorRef;
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;

use crate::server::{ConnectionGuard, Phase, WebContext};

/// Control items from the reader to the writer; a handful at most are ever queued.
const CONTROL_QUEUE: usize = 16;

/// How long the session supervisor may take to start a session.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

enum Control {
    /// A frame the protocol obliges us to send (pong, close echo).
    Obligated(OpCode, Vec<u8>),
    /// The client sent a frame over the size limit.
    TooBig,
    /// The reader stopped (socket closed or broken).
    ReaderDone,
}

/// Serves one upgraded connection until it closes.
pub async fn run(fut: UpgradeFut, ctx: Arc<WebContext>, access: Access, guard: ConnectionGuard) {
    let _guard = guard;
    let ws = match fut.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    // The read half stays with fastwebsockets; the write half is ours, so that a burst of queued
    // frames goes out in one write (one syscall) instead of one per frame.
    let write_slot = std::sync::Mutex::new(None);
    let (mut read, _unused) = ws.split(|io| {
        let (read, write) = tokio::io::split(io);
        if let Ok(mut slot) = write_slot.lock() {
            *slot = Some(write);
        }
        (read, tokio::io::sink())
    });
    let Some(write) = write_slot.lock().ok().and_then(|mut slot| slot.take()) else {
        tracing::error!("could not take the socket's write half");
        return;
    };
    let write = FrameWriter {
        io: write,
        buffer: Vec::with_capacity(4096),
    };
    // fastwebsockets refuses a frame whose payload is >= this size; max_frame_bytes is the largest
    // frame accepted, so a frame of exactly max_frame_bytes must pass.
    read.set_max_message_size(ctx.config.limits.max_frame_bytes.saturating_add(1));
    read.set_auto_pong(true);
    read.set_auto_close(true);

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
    let session = match ctx
        .sessions
        .call(
            |reply| SessionSupervisorMsg::Spawn(args, reply),
            Some(SPAWN_TIMEOUT),
        )
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Ok(session))) => session,
        other => {
            tracing::error!(?other, "could not start a session");
            return;
        }
    };

    let last_seen_ms = Arc::new(AtomicU64::new(0));
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let reader = tokio::spawn(read_loop(
        read,
        session.clone(),
        control_tx,
        last_seen_ms.clone(),
        ctx.clone(),
    ));
    if let Err(e) = write_loop(write, queue, control_rx, last_seen_ms, &ctx).await {
        tracing::debug!(conn, error = %e, "connection ended with an error");
    }
    reader.abort();
    let _ = session.cast(SessionMsg::Disconnected);
    drop(outbound);
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
    fn push(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Assembled {
        match (opcode, self.opcode) {
            (OpCode::Text | OpCode::Binary, None) => {
                if payload.len() > self.max_bytes {
                    return Assembled::TooBig;
                }
                if fin {
                    return Assembled::Message(opcode, payload.to_vec());
                }
                self.opcode = Some(opcode);
                self.buffer.clear();
                self.buffer.extend_from_slice(payload);
                Assembled::Partial
            }
            (OpCode::Continuation, Some(first)) => {
                if self.buffer.len() + payload.len() > self.max_bytes {
                    return Assembled::TooBig;
                }
                self.buffer.extend_from_slice(payload);
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

async fn read_loop(
    mut read: WebSocketRead<tokio::io::ReadHalf<TokioIo<Upgraded>>>,
    session: ActorRef<SessionMsg>,
    control: mpsc::Sender<Control>,
    last_seen_ms: Arc<AtomicU64>,
    ctx: Arc<WebContext>,
) {
    let mut reassembly = Reassembly {
        opcode: None,
        buffer: Vec::new(),
        max_bytes: ctx.config.limits.max_frame_bytes,
    };
    loop {
        let obligated = control.clone();
        let frame = read
            .read_frame(&mut move |frame: Frame<'_>| {
                let item = Control::Obligated(frame.opcode, frame.payload.to_vec());
                let obligated = obligated.clone();
                async move {
                    obligated
                        .send(item)
                        .await
                        .map_err(|_| "connection writer is gone")
                }
            })
            .await;
        last_seen_ms.store(elapsed_ms(&ctx), Ordering::Relaxed);
        let frame = match frame {
            Ok(frame) => frame,
            Err(WebSocketError::FrameTooLarge) => {
                let _ = control.send(Control::TooBig).await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                break;
            }
        };
        let (opcode, message) = match frame.opcode {
            OpCode::Close => break,
            OpCode::Ping | OpCode::Pong => continue,
            opcode => match reassembly.push(opcode, frame.fin, &frame.payload) {
                Assembled::Message(opcode, message) => (opcode, message),
                Assembled::Partial => continue,
                Assembled::TooBig => {
                    let _ = control.send(Control::TooBig).await;
                    return;
                }
                Assembled::Invalid => {
                    tracing::debug!("invalid fragmentation; closing");
                    break;
                }
            },
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
        if session.cast(msg).is_err() {
            break;
        }
    }
    let _ = control.send(Control::ReaderDone).await;
}

/// Most queued frames gathered into one write.
const MAX_BATCH_FRAMES: usize = 64;
/// Most bytes gathered into one write (a larger single frame still goes out whole).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Buffer capacity kept between writes; a larger one (after a big frame) is released.
const KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// Writes unmasked server frames (RFC 6455 §5.2) to the socket, several per write.
struct FrameWriter {
    io: WriteHalf<TokioIo<Upgraded>>,
    buffer: Vec<u8>,
}

impl FrameWriter {
    /// Appends one frame to the pending write.
    fn push(&mut self, opcode: OpCode, payload: &[u8]) {
        let len = payload.len();
        self.buffer.push(0x80 | opcode as u8);
        if len < 126 {
            self.buffer.push(len as u8);
        } else if len <= usize::from(u16::MAX) {
            self.buffer.push(126);
            self.buffer.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buffer.push(127);
            self.buffer.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.buffer.extend_from_slice(payload);
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
            self.buffer.clear();
            if self.buffer.capacity() > KEPT_BUFFER_BYTES {
                self.buffer.shrink_to(KEPT_BUFFER_BYTES);
            }
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

async fn write_loop(
    mut write: FrameWriter,
    mut queue: OutboundReceiver,
    mut control: mpsc::Receiver<Control>,
    last_seen_ms: Arc<AtomicU64>,
    ctx: &WebContext,
) -> std::io::Result<()> {
    let settings = &ctx.config.websocket;
    let mut ping = tokio::time::interval(Duration::from_millis(settings.ping_interval_ms.max(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    last_seen_ms.store(elapsed_ms(ctx), Ordering::Relaxed);
    let mut phase = ctx.phase.clone();
    loop {
        tokio::select! {
            biased;
            item = control.recv() => match item {
                Some(Control::Obligated(opcode, payload)) => {
                    write.send(opcode, &payload).await?;
                    if opcode == OpCode::Close {
                        return Ok(());
                    }
                }
                Some(Control::TooBig) => {
                    return write.close(CLOSE_TOO_BIG, b"frame over the configured limit").await;
                }
                Some(Control::ReaderDone) | None => return Ok(()),
            },
            item = queue.rx.recv() => {
                // Gather what else is queued (bounded) into the same write.
                let mut next = item;
                let mut frames = 0;
                loop {
                    match next {
                        Some(Outgoing::Frame(frame)) => write.push(OpCode::Text, &frame),
                        Some(Outgoing::Close(code, reason)) => return write.close(code, reason.as_bytes()).await,
                        None => {
                            write.flush().await?;
                            return Ok(());
                        }
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
                return write.close(CLOSE_TRY_AGAIN, b"client too slow: send queue full; reconnect and resume").await;
            }
            _ = ping.tick() => {
                let silent_ms = elapsed_ms(ctx).saturating_sub(last_seen_ms.load(Ordering::Relaxed));
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
                    while let Ok(item) = queue.rx.try_recv() {
                        match item {
                            Outgoing::Frame(frame) => {
                                write.push(OpCode::Text, &frame);
                                if write.buffer.len() >= MAX_BATCH_BYTES {
                                    write.flush().await?;
                                }
                            }
                            Outgoing::Close(code, reason) => return write.close(code, reason.as_bytes()).await,
                        }
                    }
                    return write.close(CLOSE_GOING_AWAY, b"server shutting down").await;
                }
            }
        }
    }
}
