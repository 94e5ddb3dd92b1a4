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
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use ractor::ActorRef;
use tokio::io::WriteHalf;
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

type Writer = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

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
    let (mut read, write) = ws.split(tokio::io::split);
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

async fn write_frame(write: &mut Writer, frame: Frame<'_>) -> Result<(), WebSocketError> {
    write.write_frame(frame).await
}

async fn write_loop(
    mut write: Writer,
    mut queue: OutboundReceiver,
    mut control: mpsc::Receiver<Control>,
    last_seen_ms: Arc<AtomicU64>,
    ctx: &WebContext,
) -> Result<(), WebSocketError> {
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
                    write_frame(&mut write, Frame::new(true, opcode, None, Payload::Owned(payload))).await?;
                    if opcode == OpCode::Close {
                        return Ok(());
                    }
                }
                Some(Control::TooBig) => {
                    let reason = b"frame over the configured limit";
                    return write_frame(&mut write, Frame::close(CLOSE_TOO_BIG, reason)).await;
                }
                Some(Control::ReaderDone) | None => return Ok(()),
            },
            item = queue.rx.recv() => match item {
                Some(Outgoing::Frame(frame)) => {
                    write_frame(&mut write, Frame::text(Payload::Borrowed(&frame))).await?;
                }
                Some(Outgoing::Close(code, reason)) => {
                    return write_frame(&mut write, Frame::close(code, reason.as_bytes())).await;
                }
                None => return Ok(()),
            },
            _ = queue.overflow.notified() => {
                let reason = b"client too slow: send queue full; reconnect and resume";
                return write_frame(&mut write, Frame::close(CLOSE_TRY_AGAIN, reason)).await;
            }
            _ = ping.tick() => {
                let silent_ms = elapsed_ms(ctx).saturating_sub(last_seen_ms.load(Ordering::Relaxed));
                if silent_ms > settings.ping_timeout_ms {
                    tracing::debug!(silent_ms, "client answered no ping in time; dropping it");
                    return write_frame(&mut write, Frame::close(CLOSE_POLICY, b"ping timeout")).await;
                }
                write_frame(&mut write, Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"chorus"))).await?;
            }
            changed = phase.changed() => {
                let now = *phase.borrow();
                if changed.is_err() || now == Phase::Closing {
                    // Everything accepted is durable and queued: send it, then say goodbye.
                    while let Ok(item) = queue.rx.try_recv() {
                        match item {
                            Outgoing::Frame(frame) => write_frame(&mut write, Frame::text(Payload::Borrowed(&frame))).await?,
                            Outgoing::Close(code, reason) => {
                                return write_frame(&mut write, Frame::close(code, reason.as_bytes())).await;
                            }
                        }
                    }
                    return write_frame(&mut write, Frame::close(CLOSE_GOING_AWAY, b"server shutting down")).await;
                }
            }
        }
    }
}
