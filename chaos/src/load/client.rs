//! One simulated collaborator: a WebSocket connection speaking PROTOCOL.md and a correct OT
//! client (one op in flight, later edits composed into a buffer, incoming ops transformed over
//! both with the server's op first on ties), typing per the mix until the plan says stop, then
//! draining until every op is acknowledged and every peer's op received.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chorus_actors::ot::{transform_position, Op, RawOp};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ropey::Rope;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::system::Counted;
use super::typing::{self, Action, Mix};
use super::{Global, Plan};

/// Most op revisions tracked at once per document for the op-to-all-peers latency; past this,
/// ops are counted as untracked rather than growing the table.
const MAX_TRACKED_REVS: usize = 100_000;
/// Wait before resubmitting an op the server refused with `rate_limited` or `unavailable`.
const RETRY_AFTER: Duration = Duration::from_millis(50);
/// Largest insert sent while preloading a document (the server's frame limit is 1 MiB).
const PRELOAD_CHUNK_CHARS: usize = 200_000;
/// Most cursor moves drawn in a row before a closed-loop client forces an edit.
const MAX_CURSOR_MOVES_IN_A_ROW: usize = 4;
/// How often a draining client re-checks whether its document has settled.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// What every client of a run shares (read-only).
#[derive(Debug)]
pub struct ClientConfig {
    /// Ops per second per client; 0 with `closed_loop` false means idle.
    pub rate_per_s: f64,
    /// Send the next edit as soon as the previous is acknowledged.
    pub closed_loop: bool,
    /// The typing mix.
    pub mix: Mix,
    /// Preload every document to this many code points before the run.
    pub doc_chars: usize,
    /// Inserts turn into deletes past this document length.
    pub max_doc_chars: usize,
    /// Deadline for connecting, `hello` and `open`.
    pub connect_timeout: Duration,
    /// Seed of the run.
    pub seed: u64,
}

/// Latency histograms and counters of one worker thread.
pub struct ThreadStats {
    /// Op on the wire → the sender's ack, microseconds.
    pub ack_us: Histogram<u64>,
    /// Op on the wire → the last other client in the document has it, microseconds.
    pub peers_us: Histogram<u64>,
    /// Acks received inside the measurement window.
    pub acks_in_window: u64,
    /// Local edits (composed or not) made inside the window.
    pub edits_in_window: u64,
    /// Ops put on the wire inside the window.
    pub ops_sent_in_window: u64,
    /// Cursor messages sent.
    pub cursors_sent: u64,
    /// Error messages by code.
    pub errors: HashMap<String, u64>,
    /// Ops resubmitted after `rate_limited` / `unavailable`.
    pub resends: u64,
    /// Documents reopened after an error.
    pub resyncs: u64,
    /// Connections that failed or closed before the end, with the first few reasons.
    pub disconnects: u64,
    /// First reasons for disconnects (bounded).
    pub disconnect_reasons: Vec<String>,
    /// Ops whose peer latency was not tracked (table full or a peer left).
    pub untracked: u64,
}

/// Most disconnect reasons kept for the report.
const MAX_REASONS: usize = 8;

impl ThreadStats {
    /// Empty statistics.
    pub fn new() -> ThreadStats {
        let histogram =
            || Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        ThreadStats {
            ack_us: histogram(),
            peers_us: histogram(),
            acks_in_window: 0,
            edits_in_window: 0,
            ops_sent_in_window: 0,
            cursors_sent: 0,
            errors: HashMap::new(),
            resends: 0,
            resyncs: 0,
            disconnects: 0,
            disconnect_reasons: Vec::new(),
            untracked: 0,
        }
    }

    fn error(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_insert(0) += 1;
    }
}

/// A client's state at the end, for the convergence check.
#[derive(Debug, Clone)]
pub struct ClientFinal {
    /// Client index.
    pub index: usize,
    /// Its last revision.
    pub rev: u64,
    /// Code points of its text.
    pub len: usize,
    /// FNV-1a of its text's UTF-8 bytes.
    pub hash: u64,
    /// False if it gave up waiting for its ops and its peers' (the drain deadline passed).
    pub drained: bool,
}

#[derive(Debug, Default)]
struct Track {
    sent: Option<(Instant, bool)>,
    received: u32,
    last: Option<Instant>,
}

/// What the clients of one document share (all of them run on one thread).
pub struct DocState {
    /// Document id.
    pub id: String,
    /// Clients of this document still connected (or still trying to).
    pub live: usize,
    /// Clients that finished typing and have nothing unacknowledged.
    pub done: usize,
    /// Highest revision any of its clients had when done.
    pub final_rev: u64,
    /// Tokens of acknowledged inserts.
    pub acked_tokens: Vec<u64>,
    /// Tokens of every insert ever sent.
    pub sent_tokens: HashSet<u64>,
    /// Final states of its clients.
    pub finals: Vec<ClientFinal>,
    /// Set once the first client has preloaded the document.
    pub preloaded: bool,
    /// Wakes clients waiting for the preload or for the others to finish.
    pub changed: Rc<Notify>,
    tracks: HashMap<u64, Track>,
}

impl DocState {
    /// A document with `clients` clients.
    pub fn new(id: String, clients: usize) -> DocState {
        DocState {
            id,
            live: clients,
            done: 0,
            final_rev: 0,
            acked_tokens: Vec::new(),
            sent_tokens: HashSet::new(),
            finals: Vec::new(),
            preloaded: false,
            changed: Rc::new(Notify::new()),
            tracks: HashMap::new(),
        }
    }

    /// Ops still waiting for a peer at the end (a peer left or never got them).
    pub fn unfinished_tracks(&self) -> usize {
        self.tracks.len()
    }

    fn settle(&mut self, rev: u64, stats: &mut ThreadStats) {
        let peers = self.live.saturating_sub(1) as u32;
        let Some(track) = self.tracks.get(&rev) else {
            return;
        };
        if let (Some((sent, measured)), Some(last)) = (track.sent, track.last) {
            if track.received >= peers {
                if measured {
                    let us = last.saturating_duration_since(sent).as_micros().max(1) as u64;
                    let _ = stats.peers_us.record(us);
                }
                self.tracks.remove(&rev);
            }
        }
    }

    fn received(&mut self, rev: u64, now: Instant, stats: &mut ThreadStats) {
        if self.live < 2 {
            return;
        }
        if !self.tracks.contains_key(&rev) && self.tracks.len() >= MAX_TRACKED_REVS {
            stats.untracked += 1;
            return;
        }
        let track = self.tracks.entry(rev).or_default();
        track.received += 1;
        track.last = Some(track.last.map_or(now, |t| t.max(now)));
        self.settle(rev, stats);
    }

    fn acked(&mut self, rev: u64, sent: Instant, measured: bool, stats: &mut ThreadStats) {
        if self.live < 2 {
            return;
        }
        if !self.tracks.contains_key(&rev) && self.tracks.len() >= MAX_TRACKED_REVS {
            stats.untracked += 1;
            return;
        }
        self.tracks.entry(rev).or_default().sent = Some((sent, measured));
        self.settle(rev, stats);
    }
}

/// FNV-1a 64 over UTF-8 bytes, fed in pieces.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    /// The empty hash.
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// Adds bytes.
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Hash of a rope's text (same as hashing the whole string at once).
pub fn hash_rope(text: &Rope) -> u64 {
    let mut h = Fnv::new();
    for chunk in text.chunks() {
        h.add(chunk.as_bytes());
    }
    h.0
}

/// A server message, decoded in one pass (fields a message does not have are `None`).
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// Message type.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Revision (`opened`, `ack`, `op`).
    #[serde(default)]
    pub rev: Option<u64>,
    /// Seq (`ack`, some errors).
    #[serde(default)]
    pub seq: Option<u64>,
    /// The op of an `op` broadcast.
    #[serde(default)]
    pub op: Option<RawOp>,
    /// Snapshot text of `opened`.
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    /// Error code.
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// Document of the message, if any.
    #[serde(default, borrow)]
    pub doc: Option<Cow<'a, str>>,
}

/// A WebSocket client connection with counted bytes.
pub type Socket = WebSocketStream<Counted<TcpStream>>;

/// Bytes read from a socket at once (and zero-filled before each read by tungstenite).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Connects to `url` (`ws://host:port/path`).
pub async fn connect(url: &str) -> anyhow::Result<Socket> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("{url}: only ws:// URLs are supported"))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let tcp = TcpStream::connect(host_port)
        .await
        .with_context(|| format!("connecting to {host_port}"))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every read: with
    // thousands of connections that memset was 41 % of the generator's CPU, taken from the cores
    // the node under test shares. Frames are small; a larger one still grows the buffer.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (socket, _) = tokio_tungstenite::client_async_with_config(url, Counted(tcp), Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(socket)
}

/// Reads text frames until one of type `kind` arrives (bounded by the caller's timeout);
/// returns it owned. Fails on close or on an `error`.
pub async fn expect(socket: &mut Socket, kind: &str) -> anyhow::Result<String> {
    while let Some(message) = socket.next().await {
        match message.context("reading")? {
            Message::Text(text) => {
                let msg: Incoming<'_> =
                    serde_json::from_str(text.as_str()).context("decoding a server message")?;
                if msg.kind == kind {
                    return Ok(text.as_str().to_owned());
                }
                if msg.kind == "error" {
                    bail!("server error while waiting for {kind}: {}", text.as_str());
                }
            }
            Message::Close(frame) => bail!("closed while waiting for {kind}: {frame:?}"),
            _ => {}
        }
    }
    bail!("connection ended while waiting for {kind}")
}

/// Connects, says hello and opens `doc`; returns the socket, revision and text.
pub async fn join(url: &str, name: &str, doc: &str) -> anyhow::Result<(Socket, u64, String)> {
    let mut socket = connect(url).await?;
    let hello = format!(r##"{{"type":"hello","client":null,"name":"{name}","color":"#61afef"}}"##);
    socket
        .send(Message::text(hello))
        .await
        .context("sending hello")?;
    expect(&mut socket, "welcome").await?;
    socket
        .send(Message::text(format!(r#"{{"type":"open","doc":"{doc}"}}"#)))
        .await
        .context("sending open")?;
    let opened = expect(&mut socket, "opened").await?;
    let msg: Incoming<'_> = serde_json::from_str(&opened)?;
    let rev = msg.rev.ok_or_else(|| anyhow!("opened without rev"))?;
    let text = msg
        .text
        .ok_or_else(|| anyhow!("opened without a snapshot text"))?
        .into_owned();
    Ok((socket, rev, text))
}

struct Inflight {
    seq: u64,
    op: Op,
    tokens: Vec<u64>,
    sent: Instant,
    measured: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected, waiting for the plan.
    Waiting,
    /// Typing.
    Running,
    /// Stopped typing; waiting for acks and peers.
    Draining,
}

/// One collaborator.
struct Client {
    index: usize,
    doc: Rc<RefCell<DocState>>,
    doc_id: String,
    stats: Rc<RefCell<ThreadStats>>,
    config: Rc<ClientConfig>,
    global: Arc<Global>,
    rng: SmallRng,
    rev: u64,
    text: Rope,
    cursor: usize,
    inflight: Option<Inflight>,
    buffer: Option<(Op, Vec<u64>)>,
    next_seq: u64,
    /// Reopened the document after an error; waiting for the snapshot.
    resyncing: bool,
    retry_at: Option<Instant>,
    /// Frames to send, in order.
    outbox: Vec<String>,
    plan: Option<Plan>,
    /// Counted in the document's `done` already.
    counted_done: bool,
}

/// Runs client `index` of document `doc` against `url` until the plan's drain deadline.
#[allow(clippy::too_many_arguments)]
pub async fn run_client(
    index: usize,
    leader: bool,
    url: String,
    doc: Rc<RefCell<DocState>>,
    stats: Rc<RefCell<ThreadStats>>,
    config: Rc<ClientConfig>,
    global: Arc<Global>,
    connect_permit: Rc<tokio::sync::Semaphore>,
) {
    let result = client_main(
        index,
        leader,
        &url,
        &doc,
        &stats,
        &config,
        &global,
        &connect_permit,
    )
    .await;
    if let Err(e) = result {
        let mut doc = doc.borrow_mut();
        doc.live = doc.live.saturating_sub(1);
        doc.changed.notify_waiters();
        let mut stats = stats.borrow_mut();
        stats.disconnects += 1;
        if stats.disconnect_reasons.len() < MAX_REASONS {
            stats
                .disconnect_reasons
                .push(format!("client {index}: {e:#}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_main(
    index: usize,
    leader: bool,
    url: &str,
    doc: &Rc<RefCell<DocState>>,
    stats: &Rc<RefCell<ThreadStats>>,
    config: &Rc<ClientConfig>,
    global: &Arc<Global>,
    connect_permit: &Rc<tokio::sync::Semaphore>,
) -> anyhow::Result<()> {
    let connected_by = Instant::now() + config.connect_timeout;
    let doc_id = doc.borrow().id.clone();
    // Everyone but the first client waits for the document to be preloaded.
    if !leader {
        loop {
            let changed = doc.borrow().changed.clone();
            let notified = changed.notified();
            if doc.borrow().preloaded {
                break;
            }
            if tokio::time::timeout_at(connected_by.into(), notified)
                .await
                .is_err()
            {
                global.failed.fetch_add(1, Ordering::Relaxed);
                bail!("the document was not preloaded in time");
            }
        }
    }
    let joined = {
        let _permit = connect_permit
            .acquire()
            .await
            .context("connect semaphore closed")?;
        tokio::time::timeout_at(
            connected_by.into(),
            join(url, &format!("load-{index}"), &doc_id),
        )
        .await
    };
    let (mut socket, rev, text) = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(e)) => {
            global.failed.fetch_add(1, Ordering::Relaxed);
            return Err(e.context(format!("joining {url}")));
        }
        Err(_) => {
            global.failed.fetch_add(1, Ordering::Relaxed);
            bail!(
                "joining {url} took longer than {:?}",
                config.connect_timeout
            );
        }
    };
    let mut client = Client {
        index,
        doc: doc.clone(),
        doc_id,
        stats: stats.clone(),
        config: config.clone(),
        global: global.clone(),
        rng: SmallRng::seed_from_u64(
            config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ),
        rev,
        cursor: 0,
        text: Rope::from_str(&text),
        inflight: None,
        buffer: None,
        next_seq: 1,
        resyncing: false,
        retry_at: None,
        outbox: Vec::new(),
        plan: None,
        counted_done: false,
    };
    client.cursor = client.text.len_chars();
    if leader {
        let preloaded =
            tokio::time::timeout_at(connected_by.into(), client.preload(&mut socket)).await;
        let mut d = doc.borrow_mut();
        d.preloaded = true;
        d.changed.notify_waiters();
        drop(d);
        match preloaded {
            Ok(result) => result?,
            Err(_) => bail!("preloading took longer than {:?}", config.connect_timeout),
        }
    }
    global.connected.fetch_add(1, Ordering::Relaxed);
    client.run(&mut socket).await?;
    let _ = socket.close(None).await;
    Ok(())
}

impl Client {
    /// Brings the document to `doc_chars` code points with large inserts, one at a time.
    async fn preload(&mut self, socket: &mut Socket) -> anyhow::Result<()> {
        let chunks = self
            .config
            .doc_chars
            .saturating_sub(self.text.len_chars())
            .div_ceil(PRELOAD_CHUNK_CHARS);
        for _ in 0..chunks {
            let missing = self.config.doc_chars.saturating_sub(self.text.len_chars());
            let n = missing.min(PRELOAD_CHUNK_CHARS).saturating_sub(2).max(1);
            let id = self.global.next_token.fetch_add(1, Ordering::Relaxed);
            let insert = typing::insert_text(n, id, &mut self.rng);
            let len = self.text.len_chars();
            let op = typing::insert_op(len, len, insert);
            op.apply(&mut self.text)
                .map_err(|e| anyhow!("preload op: {e}"))?;
            self.doc.borrow_mut().sent_tokens.insert(id);
            self.send_op(op, vec![id], Instant::now());
            self.flush(socket).await?;
            while self.inflight.is_some() {
                let message = socket
                    .next()
                    .await
                    .ok_or_else(|| anyhow!("closed while preloading"))?;
                self.receive(message.context("reading")?, Instant::now())?;
            }
        }
        self.cursor = self.text.len_chars();
        Ok(())
    }

    async fn flush(&mut self, socket: &mut Socket) -> anyhow::Result<()> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        for frame in self.outbox.drain(..) {
            socket.feed(Message::text(frame)).await.context("sending")?;
        }
        socket.flush().await.context("sending")
    }

    /// The main loop: wait for the plan, type, drain; every wait bounded by the plan's deadlines.
    async fn run(&mut self, socket: &mut Socket) -> anyhow::Result<()> {
        let mut plan_rx = self.global.plan.clone();
        let mut phase = Phase::Waiting;
        let mut next_edit: Option<Instant> = None;
        let changed = self.doc.borrow().changed.clone();
        loop {
            let now = Instant::now();
            // Phase changes.
            if phase == Phase::Waiting {
                if let Some(plan) = *plan_rx.borrow() {
                    self.plan = Some(plan);
                }
                if let Some(plan) = self.plan {
                    if now >= plan.start {
                        phase = Phase::Running;
                        if self.config.closed_loop {
                            self.edit_closed_loop(now);
                        } else if self.config.rate_per_s > 0.0 {
                            next_edit = Some(now + self.interval());
                        }
                    }
                }
            }
            let plan = self.plan;
            if phase == Phase::Running && plan.is_some_and(|p| now >= p.stop) {
                phase = Phase::Draining;
                next_edit = None;
            }
            if phase == Phase::Draining {
                let plan = plan.expect("draining needs a plan");
                if self.finished_draining() {
                    self.record_final(true);
                    return Ok(());
                }
                if now >= plan.drain_until {
                    self.record_final(false);
                    return Ok(());
                }
            }
            // Timed work.
            if let Some(at) = self.retry_at.filter(|at| now >= *at) {
                let _ = at;
                self.retry_at = None;
                self.resend(now);
            }
            if let Some(at) = next_edit.filter(|at| now >= *at) {
                self.edit_once(now);
                let mut next = at + self.interval();
                if next < now {
                    // Behind schedule (a stalled thread): do not burst to catch up.
                    next = now + self.interval();
                }
                next_edit = Some(next);
            }
            self.flush(socket).await?;
            // Sleep until a message, a timer, or a document change.
            let mut wake = match phase {
                Phase::Waiting => self
                    .plan
                    .map_or(now + Duration::from_millis(100), |p| p.start),
                Phase::Running => plan.map_or(now, |p| p.stop),
                Phase::Draining => (now + DRAIN_POLL).min(plan.map_or(now, |p| p.drain_until)),
            };
            if let Some(at) = next_edit {
                wake = wake.min(at);
            }
            if let Some(at) = self.retry_at {
                wake = wake.min(at);
            }
            let notified = changed.notified();
            tokio::select! {
                message = socket.next() => {
                    let message = message.ok_or_else(|| anyhow!("the server closed the connection"))?;
                    let now = Instant::now();
                    let closed_loop_ready = self.receive(message.context("reading")?, now)?;
                    if closed_loop_ready && self.config.closed_loop && phase == Phase::Running && plan.is_some_and(|p| now < p.stop) {
                        self.edit_closed_loop(now);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                changed = plan_rx.changed(), if phase == Phase::Waiting && self.plan.is_none() => {
                    if changed.is_err() {
                        bail!("the run was abandoned before it started");
                    }
                }
                _ = notified, if phase == Phase::Draining => {}
            }
        }
    }

    fn interval(&mut self) -> Duration {
        // Exponential gaps: a Poisson process of `rate_per_s` edits a second.
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        Duration::from_secs_f64(-u.ln() / self.config.rate_per_s)
    }

    fn in_window(&self, at: Instant) -> bool {
        self.plan
            .is_some_and(|p| at >= p.measure_from && at < p.stop)
    }

    /// Nothing unacknowledged, and every op of the document received.
    fn finished_draining(&mut self) -> bool {
        if self.inflight.is_some()
            || self.buffer.is_some()
            || self.resyncing
            || self.retry_at.is_some()
        {
            return false;
        }
        let mut doc = self.doc.borrow_mut();
        if !self.counted_done {
            doc.done += 1;
            doc.final_rev = doc.final_rev.max(self.rev);
            doc.changed.notify_waiters();
            self.counted_done = true;
        }
        doc.done >= doc.live && self.rev >= doc.final_rev
    }

    fn record_final(&mut self, drained: bool) {
        let final_state = ClientFinal {
            index: self.index,
            rev: self.rev,
            len: self.text.len_chars(),
            hash: hash_rope(&self.text),
            drained,
        };
        self.doc.borrow_mut().finals.push(final_state);
    }

    fn edit_closed_loop(&mut self, now: Instant) {
        for _ in 0..MAX_CURSOR_MOVES_IN_A_ROW {
            if self.edit_once(now) {
                return;
            }
        }
        self.insert(1, now);
    }

    /// One drawn action; true if it produced an op.
    fn edit_once(&mut self, now: Instant) -> bool {
        if self.resyncing {
            return false;
        }
        let mut action = typing::draw(&self.config.mix, &mut self.rng);
        if matches!(action, Action::Insert(_)) && self.text.len_chars() > self.config.max_doc_chars
        {
            action = Action::Delete(8);
        }
        match action {
            Action::MoveCursor => {
                let position = self.rng.random_range(0..=self.text.len_chars());
                self.cursor = typing::snap(&self.text, position);
                if self.inflight.is_none() && self.buffer.is_none() {
                    let frame = format!(
                        r#"{{"type":"cursor","doc":"{}","rev":{},"ranges":[[{},{}]]}}"#,
                        self.doc_id, self.rev, self.cursor, self.cursor
                    );
                    self.outbox.push(frame);
                    self.stats.borrow_mut().cursors_sent += 1;
                }
                false
            }
            Action::Insert(n) => {
                self.insert(n, now);
                true
            }
            Action::Delete(n) => {
                self.cursor = typing::snap(&self.text, self.cursor);
                match typing::delete_op(&self.text, self.cursor, n) {
                    Some((op, from)) => {
                        op.apply(&mut self.text).expect("a local delete applies");
                        self.cursor = from;
                        self.local(op, Vec::new(), now);
                    }
                    None => self.insert(1, now),
                }
                true
            }
        }
    }

    fn insert(&mut self, n: usize, now: Instant) {
        let id = self.global.next_token.fetch_add(1, Ordering::Relaxed);
        let insert = typing::insert_text(n, id, &mut self.rng);
        let chars = insert.chars().count();
        let at = typing::snap(&self.text, self.cursor);
        let op = typing::insert_op(self.text.len_chars(), at, insert);
        op.apply(&mut self.text).expect("a local insert applies");
        self.cursor = at + chars;
        self.doc.borrow_mut().sent_tokens.insert(id);
        self.local(op, vec![id], now);
    }

    /// A local edit (already applied to the text): send it, or compose it into the buffer.
    fn local(&mut self, op: Op, tokens: Vec<u64>, now: Instant) {
        if self.in_window(now) {
            self.stats.borrow_mut().edits_in_window += 1;
        }
        if self.inflight.is_none() && self.retry_at.is_none() {
            self.send_op(op, tokens, now);
            return;
        }
        self.buffer = Some(match self.buffer.take() {
            None => (op, tokens),
            Some((buffer, mut buffered)) => {
                buffered.extend(tokens);
                (
                    buffer
                        .compose(&op)
                        .expect("a local edit composes onto the buffer"),
                    buffered,
                )
            }
        });
    }

    fn send_op(&mut self, op: Op, tokens: Vec<u64>, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let measured = self.in_window(now);
        self.outbox.push(self.op_frame(seq, &op));
        if measured {
            self.stats.borrow_mut().ops_sent_in_window += 1;
        }
        self.inflight = Some(Inflight {
            seq,
            op,
            tokens,
            sent: now,
            measured,
        });
    }

    fn op_frame(&self, seq: u64, op: &Op) -> String {
        let wire = serde_json::to_string(op).expect("an op serializes");
        format!(
            r#"{{"type":"op","doc":"{}","rev":{},"seq":{seq},"op":{wire}}}"#,
            self.doc_id, self.rev
        )
    }

    /// Resubmits the op in flight (same seq), rebased to the current revision.
    fn resend(&mut self, now: Instant) {
        if let Some(inflight) = self.inflight.as_mut() {
            inflight.sent = now;
            let (seq, op) = (inflight.seq, inflight.op.clone());
            self.outbox.push(self.op_frame(seq, &op));
            self.stats.borrow_mut().resends += 1;
        }
    }

    /// Handles one message; true if a closed-loop client may now send its next edit.
    fn receive(&mut self, message: Message, now: Instant) -> anyhow::Result<bool> {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => bail!("the server closed the connection: {frame:?}"),
            _ => return Ok(false),
        };
        let msg: Incoming<'_> =
            serde_json::from_str(text.as_str()).context("decoding a server message")?;
        match &*msg.kind {
            "ack" => {
                let (Some(seq), Some(rev)) = (msg.seq, msg.rev) else {
                    bail!("ack without seq or rev")
                };
                let Some(inflight) = self.inflight.take() else {
                    self.stats.borrow_mut().error("unexpected_ack");
                    return Ok(false);
                };
                if inflight.seq != seq {
                    self.stats.borrow_mut().error("unexpected_ack");
                    self.inflight = Some(inflight);
                    return Ok(false);
                }
                if rev != self.rev + 1 {
                    self.stats.borrow_mut().error("rev_gap");
                    self.resync();
                    return Ok(false);
                }
                self.rev = rev;
                {
                    let mut stats = self.stats.borrow_mut();
                    if inflight.measured {
                        let us = now
                            .saturating_duration_since(inflight.sent)
                            .as_micros()
                            .max(1) as u64;
                        let _ = stats.ack_us.record(us);
                    }
                    if self.in_window(now) {
                        stats.acks_in_window += 1;
                    }
                    let mut doc = self.doc.borrow_mut();
                    doc.acked_tokens.extend(&inflight.tokens);
                    doc.acked(rev, inflight.sent, inflight.measured, &mut stats);
                }
                if let Some((op, tokens)) = self.buffer.take() {
                    self.send_op(op, tokens, now);
                    return Ok(false);
                }
                Ok(true)
            }
            "op" => {
                if self.resyncing {
                    return Ok(false);
                }
                let (Some(rev), Some(raw)) = (msg.rev, msg.op) else {
                    bail!("op without rev or op")
                };
                if rev <= self.rev {
                    return Ok(false);
                }
                if rev != self.rev + 1 {
                    self.stats.borrow_mut().error("rev_gap");
                    self.resync();
                    return Ok(false);
                }
                let base_len = match (&self.inflight, &self.buffer) {
                    (Some(inflight), _) => inflight.op.base_len(),
                    (None, Some((buffer, _))) => buffer.base_len(),
                    (None, None) => self.text.len_chars(),
                };
                let mut remote = Op::from_raw(raw, base_len)
                    .map_err(|e| anyhow!("the server sent an invalid op: {e}"))?;
                // The server applied `remote` before our ops: it goes first on ties.
                if let Some(inflight) = self.inflight.as_mut() {
                    let (remote2, mine) = Op::transform(&remote, &inflight.op)
                        .map_err(|e| anyhow!("transform: {e}"))?;
                    inflight.op = mine;
                    remote = remote2;
                }
                if let Some((buffer, _)) = self.buffer.as_mut() {
                    let (remote2, mine) =
                        Op::transform(&remote, buffer).map_err(|e| anyhow!("transform: {e}"))?;
                    *buffer = mine;
                    remote = remote2;
                }
                remote
                    .apply(&mut self.text)
                    .map_err(|e| anyhow!("apply: {e}"))?;
                self.cursor = transform_position(self.cursor, &remote);
                self.rev = rev;
                let mut stats = self.stats.borrow_mut();
                self.doc.borrow_mut().received(rev, now, &mut stats);
                Ok(false)
            }
            "opened" => {
                if let (Some(rev), Some(text)) = (msg.rev, msg.text) {
                    self.text = Rope::from_str(&text);
                    self.rev = rev;
                    self.cursor = self.cursor.min(self.text.len_chars());
                    self.resyncing = false;
                    return Ok(self.inflight.is_none());
                }
                Ok(false)
            }
            "error" => {
                let code = msg.code.as_deref().unwrap_or("unknown").to_owned();
                self.stats.borrow_mut().error(&code);
                let about_inflight =
                    msg.seq.is_some() && self.inflight.as_ref().map(|i| i.seq) == msg.seq;
                if !about_inflight {
                    return Ok(false);
                }
                match code.as_str() {
                    "rate_limited" | "unavailable" => self.retry_at = Some(now + RETRY_AFTER),
                    _ => self.resync(),
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Drops the unacknowledged edits (the server applied none of them) and reopens the document.
    fn resync(&mut self) {
        if let Some(inflight) = self.inflight.take() {
            // An op that got an error does not use up its seq.
            self.next_seq = inflight.seq;
        }
        self.buffer = None;
        self.retry_at = None;
        self.resyncing = true;
        self.stats.borrow_mut().resyncs += 1;
        self.outbox
            .push(format!(r#"{{"type":"open","doc":"{}"}}"#, self.doc_id));
    }
}
