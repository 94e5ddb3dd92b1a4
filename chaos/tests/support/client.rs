//! The chaos tests' client: a typist speaking the wire protocol over a WebSocket, with a list of
//! node URLs to fail over to. Every insert carries a unique token, so the final texts show
//! whether an acknowledged op was lost or applied twice. On a reconnect it resumes with its
//! client id, re-opens with its last revision and resubmits its op in flight with the same seq
//! and base revision, as ../shared/PROTOCOL.md says (an op of its own in the `ops` of `opened`,
//! or in a broadcast from its previous connection, is that op's ack; a snapshot means
//! "resubmit"). A server-initiated `opened` (resync) is handled like the answer to an `open`.
//!
//! To stay exact without guessing, the client keeps the server's text at its revision plus one
//! op in flight (no local composition: it types its next token only after the ack). After a
//! snapshot with an op in flight it cannot know whether the snapshot holds the op, so it
//! resubmits, ignores the document until the ack, then asks for a fresh snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_actors::ot::{Component, Op, RawOp};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Granularity of the client's timers (edits, resubmissions, watchdog).
const TICK: Duration = Duration::from_millis(5);

/// How long one connection attempt (TCP + upgrade + hello/welcome) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client keeps trying to reach any node before it gives up (covers a node restart).
const RECONNECT_DEADLINE: Duration = Duration::from_secs(40);

/// Pause between rounds of connection attempts over the URL list.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Pause before resubmitting after `unavailable` / `rate_limited`, or re-opening after a refused open.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// An op without ack, error or resync for this long is a stall (a product bug: the server
/// answers every op); the client records it and resyncs so the test can go on and report.
const OP_STALL: Duration = Duration::from_secs(15);

/// An `open` without answer for this long is a stall, likewise.
const OPEN_STALL: Duration = Duration::from_secs(15);

/// Opening and closing delimiters of a token (BMP, not ASCII: positions count code points).
pub const TOKEN_OPEN: char = '⟨';
/// See [`TOKEN_OPEN`].
pub const TOKEN_CLOSE: char = '⟩';

/// What a client does.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Short name, part of every token (unique per test).
    pub label: String,
    /// Node URLs in fail-over order; the first is where it connects first.
    pub urls: Vec<String>,
    /// Documents it opens and types into.
    pub docs: Vec<String>,
    /// Mean pause between one ack and the next edit of a document.
    pub edit_every: Duration,
    /// RNG seed (positions, pauses).
    pub seed: u64,
}

/// How an op was learnt to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// An `ack` in order.
    Ack,
    /// An `ack` after a resubmission that followed a snapshot (may be a duplicate's ack).
    AfterSnapshot,
    /// Its op inside the `ops` of a re-open's `opened`.
    InReopen,
    /// A broadcast of its own op sent on an earlier connection.
    OwnBroadcast,
    /// An `ack` while the document was being re-opened.
    WhileReopening,
}

/// One acknowledged insert.
#[derive(Debug, Clone)]
pub struct AckRecord {
    /// Document.
    pub doc: String,
    /// The token the op inserted.
    pub token: String,
    /// Its seq.
    pub seq: u64,
    /// Revision it got (as far as this client learnt it).
    pub rev: u64,
    /// When it was first sent.
    pub first_sent: Instant,
    /// When it was last (re)sent.
    pub last_sent: Instant,
    /// When the client learnt it was applied.
    pub acked_at: Instant,
    /// Node of the connection on which that was learnt.
    pub node: String,
    /// How.
    pub kind: AckKind,
}

/// A connection's life, as seen by the client.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// Node name from `welcome`.
    pub node: String,
    /// When `welcome` arrived.
    pub since: Instant,
    /// How it ended (None while open).
    pub ended: Option<String>,
}

/// What the test can see of a document while the client runs.
#[derive(Debug, Clone, Default)]
pub struct DocView {
    /// The client's revision.
    pub rev: u64,
    /// Open and in sync (not waiting for an answer).
    pub open: bool,
    /// Nothing unacknowledged.
    pub settled: bool,
}

/// Everything a client records (shared with the test while it runs).
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The client id the server issued.
    pub client_id: Option<String>,
    /// Per document.
    pub docs: BTreeMap<String, DocView>,
    /// Acknowledged inserts, in the order learnt.
    pub acks: Vec<AckRecord>,
    /// Every token sent: token → document.
    pub sent: HashMap<String, String>,
    /// Connections, oldest first.
    pub connections: Vec<ConnectionRecord>,
    /// Snapshots received for a document that was open and in sync (server-initiated resyncs).
    pub resyncs: u32,
    /// Error messages received, by code.
    pub errors: BTreeMap<String, u32>,
    /// Duplicate acks (ignored, as the protocol says).
    pub duplicate_acks: u32,
    /// Protocol violations seen (each fails the test).
    pub violations: Vec<String>,
    /// Ops or opens that got no answer in time (each fails the test).
    pub stalls: Vec<String>,
    /// Set when the client gave up (no node reachable).
    pub fatal: Option<String>,
}

/// A document's final state in a stopped client.
#[derive(Debug, Clone)]
pub struct FinalDoc {
    /// Revision.
    pub rev: u64,
    /// Text at that revision.
    pub text: String,
    /// Whether it was open, in sync and settled.
    pub settled: bool,
}

/// A running client.
pub struct ClientHandle {
    /// Its label.
    pub label: String,
    record: Arc<Mutex<Record>>,
    typing: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<BTreeMap<String, FinalDoc>>,
}

impl ClientHandle {
    /// Starts a client (typing from the start).
    pub fn spawn(config: ClientConfig) -> ClientHandle {
        let record = Arc::new(Mutex::new(Record::default()));
        let typing = Arc::new(AtomicBool::new(true));
        let (stop, stop_rx) = watch::channel(false);
        let label = config.label.clone();
        let task = tokio::spawn(run(config, record.clone(), typing.clone(), stop_rx));
        ClientHandle {
            label,
            record,
            typing,
            stop,
            task,
        }
    }

    /// Starts or stops typing (the client keeps following the documents either way).
    pub fn set_typing(&self, on: bool) {
        self.typing.store(on, Ordering::Release);
    }

    /// A copy of what it recorded so far.
    pub fn record(&self) -> Record {
        self.record.lock().expect("client record lock").clone()
    }

    /// Reads the record without copying it.
    pub fn with_record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.lock().expect("client record lock"))
    }

    /// Stops the client (closing its socket) and returns its record and final documents.
    pub async fn stop(self) -> (Record, BTreeMap<String, FinalDoc>) {
        let _ = self.stop.send(true);
        let docs = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("a client stops in time")
            .expect("the client task does not panic");
        let record = self.record.lock().expect("client record lock").clone();
        (record, docs)
    }
}

/// The op in flight.
#[derive(Debug, Clone)]
struct Inflight {
    seq: u64,
    base_rev: u64,
    /// As sent (resubmitted unchanged).
    sent_op: Op,
    /// Rebased over every op applied since, i.e. based on the client's current server text.
    now_op: Op,
    token: String,
    first_sent: Instant,
    last_sent: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not open on the current connection; re-open at `reopen_at`.
    Closed,
    /// `open` sent, waiting for `opened`.
    Opening,
    /// Open and in sync.
    Open,
    /// A snapshot came while an op was in flight: resubmitted, waiting for its ack.
    Blind,
}

struct DocState {
    doc: String,
    phase: Phase,
    /// `rev`, `text` and the in-flight op's `now_op` are consistent (false while blind).
    valid: bool,
    rev: u64,
    text: String,
    inflight: Option<Inflight>,
    next_seq: u64,
    reopen_at: Option<Instant>,
    resubmit_at: Option<Instant>,
    next_edit_at: Instant,
    open_sent_at: Instant,
}

impl DocState {
    fn view(&self) -> DocView {
        DocView {
            rev: self.rev,
            open: self.phase == Phase::Open,
            settled: self.phase == Phase::Open && self.inflight.is_none(),
        }
    }
}

/// The client's whole state on its task.
struct Typist {
    config: ClientConfig,
    rng: StdRng,
    client_id: Option<String>,
    node: String,
    docs: Vec<DocState>,
    next_token: u64,
    record: Arc<Mutex<Record>>,
    typing: Arc<AtomicBool>,
    out: Vec<Value>,
}

async fn run(
    config: ClientConfig,
    record: Arc<Mutex<Record>>,
    typing: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> BTreeMap<String, FinalDoc> {
    let now = Instant::now();
    let docs = config
        .docs
        .iter()
        .map(|d| DocState {
            doc: d.clone(),
            phase: Phase::Closed,
            valid: false,
            rev: 0,
            text: String::new(),
            inflight: None,
            next_seq: 1,
            reopen_at: Some(now),
            resubmit_at: None,
            next_edit_at: now,
            open_sent_at: now,
        })
        .collect();
    let mut typist = Typist {
        rng: StdRng::seed_from_u64(config.seed),
        config,
        client_id: None,
        node: String::new(),
        docs,
        next_token: 1,
        record,
        typing,
        out: Vec::new(),
    };
    let mut url_index = 0;
    'connections: loop {
        if *stop.borrow() {
            break;
        }
        let Some((mut ws, index)) = typist.connect(url_index, &mut stop).await else {
            break;
        };
        url_index = index;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                        Ok(v) => typist.handle(&v),
                        Err(e) => typist.violation(format!("a frame that is not JSON ({e}): {text}")),
                    },
                    Some(Ok(Message::Close(frame))) => break format!("close {:?}", frame.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("error: {e}"),
                    None => break "end of stream".to_owned(),
                },
                _ = tick.tick() => typist.on_tick(),
                _ = stop.changed() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    typist.end_connection("stopped by the test".into());
                    break 'connections;
                }
            }
            if !typist.flush(&mut ws).await {
                break "send failed".to_owned();
            }
        };
        typist.end_connection(ended);
        url_index = (url_index + 1) % typist.config.urls.len();
    }
    typist
        .docs
        .iter()
        .map(|d| {
            let settled = d.phase == Phase::Open && d.inflight.is_none();
            (
                d.doc.clone(),
                FinalDoc {
                    rev: d.rev,
                    text: d.text.clone(),
                    settled,
                },
            )
        })
        .collect()
}

impl Typist {
    fn rec(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().expect("client record lock")
    }

    fn violation(&mut self, what: String) {
        let what = format!("{what} (connection to {}, at {})", self.node, wall_clock());
        eprintln!("[{}] PROTOCOL VIOLATION: {what}", self.config.label);
        self.rec().violations.push(what);
    }

    fn publish(&self, i: usize) {
        let view = self.docs[i].view();
        self.rec().docs.insert(self.docs[i].doc.clone(), view);
    }

    /// Connects to the first URL that answers, starting at `start`; sends hello and opens.
    async fn connect(
        &mut self,
        start: usize,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Ws, usize)> {
        let deadline = Instant::now() + RECONNECT_DEADLINE;
        let n = self.config.urls.len();
        let mut k = 0;
        loop {
            if *stop.borrow() {
                return None;
            }
            let index = (start + k) % n;
            k += 1;
            let url = self.config.urls[index].clone();
            if let Ok(Ok((mut ws, node))) =
                tokio::time::timeout(CONNECT_TIMEOUT, self.hello(&url)).await
            {
                self.node = node.clone();
                self.rec().connections.push(ConnectionRecord {
                    node,
                    since: Instant::now(),
                    ended: None,
                });
                let now = Instant::now();
                for i in 0..self.docs.len() {
                    let d = &mut self.docs[i];
                    d.phase = Phase::Closed;
                    d.reopen_at = Some(now);
                    d.resubmit_at = None;
                    self.publish(i);
                }
                self.on_tick();
                if self.flush(&mut ws).await {
                    return Some((ws, index));
                }
            }
            if Instant::now() > deadline {
                let what = format!(
                    "no node reachable for {RECONNECT_DEADLINE:?} (urls {:?})",
                    self.config.urls
                );
                eprintln!("[{}] FATAL: {what}", self.config.label);
                self.rec().fatal = Some(what);
                return None;
            }
            if k % n == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    _ = stop.changed() => return None,
                }
            }
        }
    }

    async fn hello(&mut self, url: &str) -> Result<(Ws, String), String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        let name = self.config.label.clone();
        let hello = json!({"type":"hello","client":self.client_id,"name":name,"color":"#61afef"});
        ws.send(Message::text(hello.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    if v["type"] != "welcome" {
                        return Err(format!("expected welcome, got {v}"));
                    }
                    let id = v["client"]
                        .as_str()
                        .ok_or("welcome without client")?
                        .to_owned();
                    if let Some(old) = &self.client_id {
                        if *old != id {
                            self.violation(format!(
                                "resume changed the client id from {old} to {id}"
                            ));
                        }
                    }
                    self.client_id = Some(id.clone());
                    self.rec().client_id = Some(id);
                    return Ok((ws, v["node"].as_str().unwrap_or_default().to_owned()));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("closed before welcome: {frame:?}"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("ended before welcome".into()),
            }
        }
    }

    fn end_connection(&mut self, how: String) {
        if let Some(c) = self.rec().connections.last_mut() {
            c.ended.get_or_insert(how);
        }
        for i in 0..self.docs.len() {
            self.docs[i].phase = Phase::Closed;
            self.publish(i);
        }
    }

    async fn flush(&mut self, ws: &mut Ws) -> bool {
        for v in std::mem::take(&mut self.out) {
            if ws.feed(Message::text(v.to_string())).await.is_err() {
                return false;
            }
        }
        ws.flush().await.is_ok()
    }

    fn send_open(&mut self, i: usize, now: Instant) {
        let d = &mut self.docs[i];
        let rev = d.valid.then_some(d.rev);
        d.phase = Phase::Opening;
        d.reopen_at = None;
        d.open_sent_at = now;
        self.out.push(json!({"type":"open","doc":d.doc,"rev":rev}));
    }

    fn resubmit(&mut self, i: usize, now: Instant) {
        let d = &mut self.docs[i];
        d.resubmit_at = None;
        if let Some(f) = &mut d.inflight {
            f.last_sent = now;
            self.out.push(
                json!({"type":"op","doc":d.doc,"rev":f.base_rev,"seq":f.seq,"op":wire(&f.sent_op)}),
            );
        }
    }

    /// Timers: re-opens, resubmissions, the watchdog, and new edits.
    fn on_tick(&mut self) {
        let now = Instant::now();
        let typing = self.typing.load(Ordering::Acquire);
        for i in 0..self.docs.len() {
            let d = &self.docs[i];
            if d.phase == Phase::Closed && d.reopen_at.is_some_and(|t| t <= now) {
                self.send_open(i, now);
                continue;
            }
            if d.phase == Phase::Opening && now.duration_since(d.open_sent_at) > OPEN_STALL {
                let what = format!(
                    "{}: no answer to open for {OPEN_STALL:?} (node {})",
                    d.doc, self.node
                );
                self.rec().stalls.push(what);
                self.send_open(i, now);
                continue;
            }
            if matches!(d.phase, Phase::Open | Phase::Blind) {
                if d.resubmit_at.is_some_and(|t| t <= now) {
                    self.resubmit(i, now);
                    continue;
                }
                if let Some(f) = &d.inflight {
                    if d.resubmit_at.is_none() && now.duration_since(f.last_sent) > OP_STALL {
                        let what = format!(
                            "{}: no answer to op seq {} for {OP_STALL:?} (node {})",
                            d.doc, f.seq, self.node
                        );
                        self.rec().stalls.push(what);
                        self.docs[i].valid = false;
                        self.send_open(i, now);
                        continue;
                    }
                }
            }
            if typing && d.phase == Phase::Open && d.inflight.is_none() && d.next_edit_at <= now {
                self.edit(i, now);
            }
        }
    }

    /// Inserts a fresh token at a random token boundary.
    fn edit(&mut self, i: usize, now: Instant) {
        let token = format!(
            "{TOKEN_OPEN}{}.{}🎵{TOKEN_CLOSE}",
            self.config.label, self.next_token
        );
        self.next_token += 1;
        let d = &self.docs[i];
        let mut boundaries = vec![0usize];
        let mut len = 0;
        for c in d.text.chars() {
            len += 1;
            if c == TOKEN_CLOSE {
                boundaries.push(len);
            }
        }
        let position = boundaries[self.rng.random_range(0..boundaries.len())];
        let mut components = Vec::new();
        if position > 0 {
            components.push(Component::Retain(position));
        }
        components.push(Component::Insert(token.as_str().into()));
        let op = Op::from_components(components, len).expect("an insert at a boundary is valid");
        let d = &mut self.docs[i];
        let seq = d.next_seq;
        d.next_seq += 1;
        self.out
            .push(json!({"type":"op","doc":d.doc,"rev":d.rev,"seq":seq,"op":wire(&op)}));
        d.inflight = Some(Inflight {
            seq,
            base_rev: d.rev,
            sent_op: op.clone(),
            now_op: op,
            token: token.clone(),
            first_sent: now,
            last_sent: now,
        });
        let doc = d.doc.clone();
        self.rec().sent.insert(token, doc);
        self.publish(i);
    }

    fn schedule_edit(&mut self, i: usize) {
        let mean = self.config.edit_every.as_secs_f64();
        let pause = Duration::from_secs_f64(mean * self.rng.random_range(0.5..1.5));
        self.docs[i].next_edit_at = Instant::now() + pause;
    }

    fn record_ack(&mut self, i: usize, f: Inflight, rev: u64, kind: AckKind) {
        let ack = AckRecord {
            doc: self.docs[i].doc.clone(),
            token: f.token,
            seq: f.seq,
            rev,
            first_sent: f.first_sent,
            last_sent: f.last_sent,
            acked_at: Instant::now(),
            node: self.node.clone(),
            kind,
        };
        self.rec().acks.push(ack);
        self.schedule_edit(i);
    }

    fn handle(&mut self, v: &Value) {
        let ty = v["type"].as_str().unwrap_or_default();
        if ty == "pong" {
            return;
        }
        let doc = v["doc"].as_str().unwrap_or_default();
        let Some(i) = self.docs.iter().position(|d| d.doc == doc) else {
            if ty == "error" {
                self.violation(format!("an error without a document of ours: {v}"));
            } else {
                self.violation(format!("a message for a document not opened: {v}"));
            }
            return;
        };
        match ty {
            "opened" => self.on_opened(i, v),
            "ack" => self.on_ack(i, v),
            "op" => self.on_op(i, v),
            "error" => self.on_error(i, v),
            "cursor" | "left" => {}
            _ => self.violation(format!("an unexpected message: {v}")),
        }
        self.publish(i);
    }

    /// Asks for a fresh snapshot after something that should not happen.
    fn resync(&mut self, i: usize) {
        self.docs[i].valid = false;
        self.send_open(i, Instant::now());
    }

    fn on_opened(&mut self, i: usize, v: &Value) {
        let now = Instant::now();
        let Some(rev) = v["rev"].as_u64() else {
            return self.violation(format!("opened without rev: {v}"));
        };
        if let Some(text) = v["text"].as_str() {
            let d = &mut self.docs[i];
            let was_in_sync = d.phase == Phase::Open;
            d.rev = rev;
            d.text = text.to_owned();
            d.valid = true;
            d.reopen_at = None;
            if was_in_sync {
                self.rec().resyncs += 1;
            }
            let d = &mut self.docs[i];
            if d.inflight.is_some() {
                // Is the op in the snapshot? Unknown: resubmit it as it was sent.
                d.valid = false;
                d.phase = Phase::Blind;
                self.resubmit(i, now);
            } else {
                d.phase = Phase::Open;
                self.schedule_edit(i);
            }
            return;
        }
        let Some(ops) = v["ops"].as_array() else {
            return self.violation(format!("opened with neither text nor ops: {v}"));
        };
        if !self.docs[i].valid {
            // Blind or waiting for a snapshot: only a snapshot helps.
            return;
        }
        let me = self.client_id.clone().unwrap_or_default();
        for entry in ops {
            let (Some(entry_rev), Some(client)) = (entry["rev"].as_u64(), entry["client"].as_str())
            else {
                self.violation(format!("a malformed entry in opened ops: {v}"));
                return self.resync(i);
            };
            let d = &self.docs[i];
            if entry_rev <= d.rev {
                continue;
            }
            if entry_rev != d.rev + 1 {
                self.violation(format!(
                    "a gap in opened ops: have rev {}, got {entry_rev}: {v}",
                    d.rev
                ));
                return self.resync(i);
            }
            let mine = client == me && d.inflight.is_some();
            if let Err(e) = self.apply_server_op(i, &entry["op"], !mine) {
                self.violation(format!("an op in opened ops does not apply ({e}): {v}"));
                return self.resync(i);
            }
            self.docs[i].rev = entry_rev;
            if mine {
                let f = self.docs[i].inflight.take().expect("checked above");
                self.record_ack(i, f, entry_rev, AckKind::InReopen);
            }
        }
        let d = &mut self.docs[i];
        if rev > d.rev {
            let have = d.rev;
            self.violation(format!(
                "opened ops end at {have} but opened says rev {rev}: {v}"
            ));
            return self.resync(i);
        }
        if d.phase != Phase::Open {
            d.phase = Phase::Open;
            d.reopen_at = None;
            if d.inflight.is_some() {
                // Not in the log as of this durable revision: resubmit (same seq and base rev).
                self.resubmit(i, now);
            } else {
                self.schedule_edit(i);
            }
        }
    }

    /// Applies a server op to the server text; rebases the op in flight over it unless the op
    /// *is* the op in flight (then the caller resolves it).
    fn apply_server_op(
        &mut self,
        i: usize,
        wire_op: &Value,
        rebase_inflight: bool,
    ) -> Result<(), String> {
        let d = &mut self.docs[i];
        let len = d.text.chars().count();
        let op = parse_op(wire_op, len)?;
        if rebase_inflight {
            if let Some(f) = &mut d.inflight {
                f.now_op = f
                    .now_op
                    .transform_over(&op)
                    .map_err(|e| format!("rebase in-flight op: {e}"))?;
            }
        }
        d.text = op.apply_to_str(&d.text).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn on_ack(&mut self, i: usize, v: &Value) {
        let (Some(seq), Some(rev)) = (v["seq"].as_u64(), v["rev"].as_u64()) else {
            return self.violation(format!("an ack without seq or rev: {v}"));
        };
        let d = &mut self.docs[i];
        let matches = d.inflight.as_ref().is_some_and(|f| f.seq == seq);
        if !matches {
            let next_seq = d.next_seq;
            if seq >= next_seq {
                return self.violation(format!(
                    "an ack for seq {seq}, never sent (next seq {next_seq}): {v}"
                ));
            }
            self.rec().duplicate_acks += 1;
            return;
        }
        match d.phase {
            Phase::Open => {
                let f = d.inflight.take().expect("checked above");
                if rev == d.rev + 1 {
                    match f.now_op.apply_to_str(&d.text) {
                        Ok(text) => d.text = text,
                        Err(e) => {
                            self.violation(format!("the acked op does not apply locally ({e})"));
                            self.record_ack(i, f, rev, AckKind::Ack);
                            return self.resync(i);
                        }
                    }
                    d.rev = rev;
                    self.record_ack(i, f, rev, AckKind::Ack);
                } else {
                    let have = d.rev;
                    self.violation(format!(
                        "ack rev {rev} is not the next revision after {have}: {v}"
                    ));
                    self.record_ack(i, f, rev, AckKind::Ack);
                    self.resync(i);
                }
            }
            Phase::Blind => {
                let f = d.inflight.take().expect("checked above");
                self.record_ack(i, f, rev, AckKind::AfterSnapshot);
                self.send_open(i, Instant::now());
            }
            Phase::Opening | Phase::Closed => {
                // The re-open's answer will show it (as an op of the log, or in the snapshot).
                let f = d.inflight.take().expect("checked above");
                self.record_ack(i, f, rev, AckKind::WhileReopening);
            }
        }
    }

    fn on_op(&mut self, i: usize, v: &Value) {
        let d = &self.docs[i];
        if d.phase != Phase::Open {
            return;
        }
        let (Some(rev), Some(client)) = (v["rev"].as_u64(), v["client"].as_str()) else {
            return self.violation(format!("an op broadcast without rev or client: {v}"));
        };
        if rev != d.rev + 1 {
            let have = d.rev;
            self.violation(format!(
                "op broadcast rev {rev} is not the next revision after {have}: {v}"
            ));
            return self.resync(i);
        }
        let mine = self.client_id.as_deref() == Some(client) && d.inflight.is_some();
        if let Err(e) = self.apply_server_op(i, &v["op"], !mine) {
            self.violation(format!("a broadcast op does not apply ({e}): {v}"));
            return self.resync(i);
        }
        self.docs[i].rev = rev;
        if mine {
            let f = self.docs[i].inflight.take().expect("checked above");
            self.record_ack(i, f, rev, AckKind::OwnBroadcast);
        }
    }

    fn on_error(&mut self, i: usize, v: &Value) {
        let code = v["code"].as_str().unwrap_or_default().to_owned();
        *self.rec().errors.entry(code.clone()).or_default() += 1;
        let seq = v["seq"].as_u64();
        let now = Instant::now();
        let d = &mut self.docs[i];
        let about_inflight = seq.is_some() && d.inflight.as_ref().map(|f| f.seq) == seq;
        match (code.as_str(), seq) {
            ("unavailable" | "rate_limited", Some(_)) if about_inflight => {
                d.resubmit_at = Some(now + RETRY_PAUSE);
            }
            ("not_open", Some(_)) => {
                // The session lost the document (its re-open failed): open it again.
                d.phase = Phase::Closed;
                d.reopen_at = Some(now);
            }
            ("unavailable", None) => {
                d.phase = Phase::Closed;
                d.reopen_at = Some(now + RETRY_PAUSE);
            }
            _ => {
                self.violation(format!("an unexpected error: {v}"));
                self.resync(i);
            }
        }
    }
}

/// Wall-clock time of day (UTC, to the microsecond), to line a client's event up with the
/// nodes' logs.
pub fn wall_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let day_us = now.as_micros() % 86_400_000_000;
    let (h, m, s, us) = (
        day_us / 3_600_000_000,
        day_us / 60_000_000 % 60,
        day_us / 1_000_000 % 60,
        day_us % 1_000_000,
    );
    format!("{h:02}:{m:02}:{s:02}.{us:06}Z")
}

/// The wire form of an op.
pub fn wire(op: &Op) -> Value {
    serde_json::to_value(op).expect("an op serializes")
}

/// Parses a wire op against a base of `base_len` code points (`[]` is the identity on an
/// empty document, the one case the server sends it).
pub fn parse_op(wire: &Value, base_len: usize) -> Result<Op, String> {
    if wire.as_array().is_some_and(Vec::is_empty) && base_len == 0 {
        return Ok(Op::identity(0));
    }
    let raw: RawOp = serde_json::from_value(wire.clone()).map_err(|e| e.to_string())?;
    Op::from_raw(raw, base_len).map_err(|e| e.to_string())
}

/// A one-shot reader: a fresh connection's snapshot of `doc` (retrying `unavailable` until
/// `within` passes). Returns (rev, text, node name).
pub async fn snapshot(
    url: &str,
    doc: &str,
    within: Duration,
) -> Result<(u64, String, String), String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            snapshot_once(url, doc),
        )
        .await
        {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(format!(
        "no snapshot of {doc} from {url} within {within:?}: {last}"
    ))
}

async fn snapshot_once(url: &str, doc: &str) -> Result<(u64, String, String), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let hello = json!({"type":"hello","name":"observer"});
    ws.send(Message::text(hello.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::text(json!({"type":"open","doc":doc}).to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let mut node = String::new();
    loop {
        let msg = ws.next().await.ok_or("ended")?.map_err(|e| e.to_string())?;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("welcome") => node = v["node"].as_str().unwrap_or_default().to_owned(),
            Some("opened") => {
                let rev = v["rev"].as_u64().ok_or("opened without rev")?;
                let text = v["text"].as_str().ok_or("opened without text")?.to_owned();
                let _ = ws.close(None).await;
                return Ok((rev, text, node));
            }
            Some("error") => return Err(v.to_string()),
            _ => {}
        }
    }
}

/// Opens each of `docs` on one connection to `url` and closes it again at once (so the
/// per-connection limit of open documents does not apply), keeping `window` opens in flight;
/// retries `unavailable`. Returns the node name of the connection.
pub async fn open_and_close(
    url: &str,
    docs: &[String],
    window: usize,
    within: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let hello = json!({"type":"hello","name":"placer"});
    ws.send(Message::text(hello.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let mut node = String::new();
    let mut queue: std::collections::VecDeque<String> = docs.iter().cloned().collect();
    let mut in_flight = 0usize;
    let mut done = 0usize;
    let mut waiting: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    while done < docs.len() {
        while in_flight < window {
            let Some(doc) = queue.pop_front() else { break };
            waiting.insert(doc.clone());
            ws.feed(Message::text(json!({"type":"open","doc":doc}).to_string()))
                .await
                .map_err(|e| e.to_string())?;
            ws.feed(Message::text(json!({"type":"close","doc":doc}).to_string()))
                .await
                .map_err(|e| e.to_string())?;
            in_flight += 1;
        }
        ws.flush().await.map_err(|e| e.to_string())?;
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| {
                format!(
                    "{done} of {} documents opened in {within:?}; no answer for {waiting:?}",
                    docs.len()
                )
            })?
            .ok_or("ended")?
            .map_err(|e| e.to_string())?;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("welcome"), _) => node = v["node"].as_str().unwrap_or_default().to_owned(),
            (Some("opened"), _) => {
                waiting.remove(v["doc"].as_str().unwrap_or_default());
                in_flight -= 1;
                done += 1;
            }
            (Some("error"), Some("unavailable")) => {
                waiting.remove(v["doc"].as_str().unwrap_or_default());
                in_flight -= 1;
                queue.push_back(v["doc"].as_str().unwrap_or_default().to_owned());
            }
            // The close after a refused open.
            (Some("error"), Some("not_open")) => {}
            (Some("error"), _) => return Err(format!("unexpected error: {v}")),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(node)
}
