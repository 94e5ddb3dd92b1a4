//! Replays of real editing traces (Joseph Gentle's editing-traces, CC BY 4.0) through the sans-IO
//! `DocumentCore`, in process: shared by `tests/trace_replay.rs` (correctness) and
//! `benches/replay.rs` (speed).
//!
//! # Layout
//! - [`traces_dir`], [`load_sequential`], [`load_concurrent`]: find and read the `.json.gz` files.
//! - [`replay_sequential`]: each patch becomes one op at the current revision; the store job is
//!   completed at once (a no-op store).
//! - [`simulate_concurrent`]: the 2–3 agents of a concurrent trace as OT clients of one
//!   `DocumentCore`; records the server's inputs as a [`Script`].
//! - [`run_script`]: feeds a recorded [`Script`] to a fresh core (the server path alone).

#![allow(dead_code)] // Each including crate uses a different part.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chorus_actors::document::{CoreSettings, DocumentCore, Output};
use chorus_actors::ids::{ClientId, DocId};
use chorus_actors::ot::{Component, Op, RawComponent, RawOp};
use chorus_actors::store::StoredDocument;
use ropey::Rope;
use serde::Deserialize;

/// Environment variable naming the folder that holds the traces.
pub const TRACES_ENV: &str = "CHORUS_TRACES";

/// Most store jobs one `drive_store` call completes: a compaction and an append are the most a
/// single step can need; the bound turns a core that never stops asking into a panic.
const MAX_STORE_JOBS_PER_STEP: usize = 8;

/// Where the traces are: `$CHORUS_TRACES`, else `../shared/traces` next to the workspace.
pub fn traces_dir() -> PathBuf {
    match std::env::var_os(TRACES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces"),
    }
}

/// The path of trace `name` (without `.json.gz`) if the file exists.
pub fn trace_path(name: &str) -> Option<PathBuf> {
    let path = traces_dir().join(format!("{name}.json.gz"));
    path.is_file().then_some(path)
}

/// One patch: at code point `position`, delete `deleted` code points, then insert `inserted`.
#[derive(Debug, Clone, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

/// A trace written by one person.
#[derive(Debug, Clone)]
pub struct SequentialTrace {
    /// Text before the first patch.
    pub start: String,
    /// Text after the last patch.
    pub end: String,
    /// Every patch of every transaction, in order.
    pub patches: Vec<Patch>,
}

/// One transaction of a concurrent trace.
#[derive(Debug, Clone, Deserialize)]
pub struct Txn {
    /// Who made it.
    pub agent: usize,
    /// Transactions it was made after (indices into the trace).
    pub parents: Vec<usize>,
    /// Its patches, applied in order to the document its parents produced.
    pub patches: Vec<Patch>,
}

/// A trace of 2–3 people editing together.
#[derive(Debug, Clone)]
pub struct ConcurrentTrace {
    /// What a correct merge of every transaction gives.
    pub end: String,
    /// Transactions, parents before children.
    pub txns: Vec<Txn>,
    /// Number of agents.
    pub agents: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    #[serde(default)]
    start_content: String,
    end_content: String,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    #[serde(default)]
    agent: Option<usize>,
    #[serde(default)]
    parents: Option<Vec<usize>>,
    patches: Vec<Patch>,
}

fn read_raw(path: &Path) -> Result<RawTrace, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(BufReader::new(file))
        .read_to_end(&mut json)
        .map_err(|e| format!("{}: not gzip: {e}", path.display()))?;
    serde_json::from_slice(&json).map_err(|e| format!("{}: not a trace: {e}", path.display()))
}

/// Reads a sequential trace.
pub fn load_sequential(path: &Path) -> Result<SequentialTrace, String> {
    let raw = read_raw(path)?;
    let patches = raw.txns.into_iter().flat_map(|t| t.patches).collect();
    Ok(SequentialTrace { start: raw.start_content, end: raw.end_content, patches })
}

/// Reads a concurrent trace and checks its shape (parents before children, each agent's
/// transactions a chain).
pub fn load_concurrent(path: &Path) -> Result<ConcurrentTrace, String> {
    let raw = read_raw(path)?;
    if !raw.start_content.is_empty() {
        return Err("concurrent traces are expected to start empty".into());
    }
    let mut txns = Vec::with_capacity(raw.txns.len());
    for (index, t) in raw.txns.into_iter().enumerate() {
        let (Some(agent), Some(parents)) = (t.agent, t.parents) else {
            return Err(format!("txn {index} has no agent or parents: not a concurrent trace"));
        };
        if let Some(p) = parents.iter().find(|&&p| p >= index) {
            return Err(format!("txn {index} has parent {p}, which does not come before it"));
        }
        txns.push(Txn { agent, parents, patches: t.patches });
    }
    let agents = txns.iter().map(|t| t.agent + 1).max().unwrap_or(0);
    Ok(ConcurrentTrace { end: raw.end_content, txns, agents })
}

/// The op of one patch on a document of `len` code points.
pub fn patch_op(patch: &Patch, len: usize) -> Result<Op, String> {
    let mut components = Vec::with_capacity(3);
    if patch.0 > 0 {
        components.push(Component::Retain(patch.0));
    }
    if patch.1 > 0 {
        components.push(Component::Delete(patch.1));
    }
    if !patch.2.is_empty() {
        components.push(Component::Insert(patch.2.clone()));
    }
    if components.is_empty() {
        return Ok(Op::identity(len));
    }
    Op::from_components(components, len).map_err(|e| format!("patch {patch:?} on {len} chars: {e}"))
}

/// The raw (wire) form of a patch, as a client would send it.
pub fn patch_raw(patch: &Patch) -> RawOp {
    let mut components = Vec::with_capacity(3);
    if patch.0 > 0 {
        components.push(RawComponent::Retain(patch.0 as u64));
    }
    if patch.1 > 0 {
        components.push(RawComponent::Delete(patch.1 as u64));
    }
    if !patch.2.is_empty() {
        components.push(RawComponent::Insert(patch.2.clone()));
    }
    RawOp(components)
}

/// The raw (wire) form of an op.
pub fn op_raw(op: &Op) -> RawOp {
    RawOp(
        op.components()
            .iter()
            .map(|c| match c {
                Component::Retain(n) => RawComponent::Retain(*n as u64),
                Component::Delete(n) => RawComponent::Delete(*n as u64),
                Component::Insert(s) => RawComponent::Insert(s.clone()),
            })
            .collect(),
    )
}

/// A fresh, empty document core for a replay, with the node's default settings.
pub fn new_core() -> DocumentCore<u32> {
    let doc = DocId::parse("traces/replay.txt").expect("valid id");
    DocumentCore::load(doc, StoredDocument::default(), CoreSettings::default()).expect("empty document loads")
}

/// Completes every store job the core has with a no-op store (everything is durable at once).
pub fn drive_store(core: &mut DocumentCore<u32>) {
    for _ in 0..MAX_STORE_JOBS_PER_STEP {
        if core.poll_store_job().is_none() {
            return;
        }
        core.store_done(Ok(())).expect("a no-op store never fails");
    }
    panic!("the core asked for more than {MAX_STORE_JOBS_PER_STEP} store jobs in one step");
}

/// True if `frame` is an `error` message.
pub fn is_error(frame: &[u8]) -> bool {
    frame.starts_with(br#"{"type":"error""#)
}

/// What a sequential replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialOutcome {
    /// Ops submitted (one per patch that changes something).
    pub ops: usize,
    /// Acks received.
    pub acks: usize,
    /// Error frames received (must be 0).
    pub errors: usize,
    /// The first error frame, for the failure message.
    pub first_error: Option<String>,
}

/// Replays a sequential trace: each patch is one op based on the current revision, made durable
/// at once. Returns the core (its text must equal `trace.end`).
pub fn replay_sequential(trace: &SequentialTrace, raws: Vec<RawOp>) -> (DocumentCore<u32>, SequentialOutcome) {
    let mut core = new_core();
    let mut outcome = SequentialOutcome { ops: 0, acks: 0, errors: 0, first_error: None };
    let client = ClientId::generate();
    let name: Arc<str> = Arc::from("seph");
    let color: Arc<str> = Arc::from("#e06c75");
    core.open(1, 1, client, name, color, None);
    while core.poll_output().is_some() {}
    debug_assert!(trace.start.is_empty() || core.text().len_chars() == 0);
    let mut seq = 0;
    for raw in raws {
        seq += 1;
        outcome.ops += 1;
        core.submit(1, seq, core.durable_rev(), raw);
        drive_store(&mut core);
        while let Some(output) = core.poll_output() {
            match output {
                Output::Send { frame, .. } if is_error(&frame) => {
                    outcome.errors += 1;
                    if outcome.first_error.is_none() {
                        outcome.first_error = Some(String::from_utf8_lossy(&frame).into_owned());
                    }
                }
                Output::Send { .. } => outcome.acks += 1,
                Output::Broadcast { .. } => {}
            }
        }
    }
    (core, outcome)
}

/// The raw ops of a sequential trace, one per patch that changes something.
pub fn sequential_raws(trace: &SequentialTrace) -> Vec<RawOp> {
    trace.patches.iter().filter(|p| p.1 > 0 || !p.2.is_empty()).map(patch_raw).collect()
}

/// One input of the server path: an op from connection `conn`.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The agent's connection.
    pub conn: u64,
    /// Its seq.
    pub seq: u64,
    /// The revision it was written against.
    pub base_rev: u64,
    /// The op as sent.
    pub raw: RawOp,
}

/// Everything the server saw during a concurrent replay, in order: replaying it against a fresh
/// core measures the server path alone.
#[derive(Debug, Clone)]
pub struct Script {
    /// Number of agents (connections 0..agents).
    pub agents: usize,
    /// The ops, in the order the server received them.
    pub submissions: Vec<Submission>,
}

/// What a concurrent replay did.
#[derive(Debug, Clone)]
pub struct ConcurrentOutcome {
    /// Transactions of the trace.
    pub txns: usize,
    /// Ops the server applied (transactions made while an op was in flight are composed).
    pub server_ops: usize,
    /// The server's final text.
    pub server_text: String,
    /// Each agent's final text.
    pub agent_texts: Vec<String>,
    /// The inputs of the server, for [`run_script`].
    pub script: Script,
}

/// Per-agent version vector: `vv[b]` = how many of agent b's transactions are included.
type Version = Vec<u32>;

/// A server message waiting in an agent's (simulated, in-order) downlink.
#[derive(Debug)]
struct Pending {
    rev: u64,
    frame: chorus_actors::protocol::Frame,
}

/// An op an agent has sent that the server has not received yet.
#[derive(Debug)]
struct Uplink {
    seq: u64,
    base_rev: u64,
    raw: RawOp,
    /// The op completes this many of the agent's own transactions.
    upto: u32,
}

/// One agent: an OT client with one op in flight and a composed buffer.
struct Agent {
    /// Last server revision it has.
    rev: u64,
    /// The op in flight (transformed as server ops arrive).
    inflight: Option<Op>,
    /// Edits made while an op is in flight, one per transaction, each based on the previous
    /// (the first on the op in flight), with how many own transactions it completes; `None`
    /// for a transaction that changed nothing. Kept apart, not composed, so that the simulation
    /// can send exactly the transactions another agent had seen.
    buffer: VecDeque<(u32, Option<Op>)>,
    next_seq: u64,
    /// Its text (for checking; every edit applies to it).
    text: Rope,
    /// The op in flight while the network still carries it to the server.
    uplink: Option<Uplink>,
    /// How many of its own transactions the server has received.
    at_server: u32,
    /// Messages the server sent it that it has not processed yet, in order.
    downlink: VecDeque<Pending>,
    /// What it has seen: its own transactions plus every foreign one delivered.
    seen: Version,
    /// What it may see before its next transaction (that transaction's version); `None`: all.
    allowed: Option<Version>,
}

#[derive(Deserialize)]
struct BroadcastOp {
    rev: u64,
    op: RawOp,
}

#[derive(Deserialize)]
struct Ack {
    rev: u64,
}

/// The simulated system: one server core, its agents, and the network between them.
struct Simulation {
    core: DocumentCore<u32>,
    agents: Vec<Agent>,
    /// For every revision: the agent whose op it is and how many of its transactions it completes.
    revs: Vec<(usize, u32)>,
    script: Script,
}

impl Simulation {
    /// The server receives agent `a`'s op in flight.
    fn server_receives(&mut self, a: usize) -> Result<(), String> {
        let Some(up) = self.agents[a].uplink.take() else { return Ok(()) };
        let core = &mut self.core;
        self.script.submissions.push(Submission { conn: a as u64, seq: up.seq, base_rev: up.base_rev, raw: up.raw.clone() });
        let before = core.durable_rev();
        core.submit(a as u64, up.seq, up.base_rev, up.raw);
        drive_store(core);
        if core.durable_rev() != before + 1 {
            let mut detail = String::new();
            while let Some(o) = core.poll_output() {
                if let Output::Send { frame, .. } = o {
                    detail.push_str(&String::from_utf8_lossy(&frame));
                }
            }
            return Err(format!("the server did not apply agent {a}'s op {}: {detail}", up.seq));
        }
        let rev = core.durable_rev();
        self.revs.push((a, up.upto));
        self.agents[a].at_server = up.upto;
        while let Some(output) = core.poll_output() {
            match output {
                Output::Send { to, frame } => {
                    if is_error(&frame) {
                        return Err(format!("server error to agent {to}: {}", String::from_utf8_lossy(&frame)));
                    }
                    self.agents[to as usize].downlink.push_back(Pending { rev, frame });
                }
                Output::Broadcast { except, frame } => {
                    for (b, agent) in self.agents.iter_mut().enumerate() {
                        if Some(b as u64) != except {
                            agent.downlink.push_back(Pending { rev, frame: frame.clone() });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether agent `a` may process the next message of its downlink now.
    fn may_deliver(&self, a: usize) -> bool {
        let Some(front) = self.agents[a].downlink.front() else { return false };
        let (author, upto) = self.revs[front.rev as usize];
        author == a || self.agents[a].allowed.as_ref().is_none_or(|allowed| upto <= allowed[author])
    }

    /// Agent `a` processes the next message of its downlink: an ack (then it sends its buffered
    /// transactions up to `send_upto`) or another agent's op (transformed over its op in flight
    /// and its buffer).
    fn deliver(&mut self, a: usize, send_upto: u32) -> Result<(), String> {
        let Some(message) = self.agents[a].downlink.pop_front() else { return Ok(()) };
        let (author, upto) = self.revs[message.rev as usize];
        let agent = &mut self.agents[a];
        if author == a {
            let ack: Ack = serde_json::from_slice(&message.frame).map_err(|e| e.to_string())?;
            if agent.inflight.take().is_none() {
                return Err(format!("agent {a} got an ack with nothing in flight"));
            }
            agent.rev = ack.rev;
            return Self::send_buffer(agent, send_upto);
        }
        let msg: BroadcastOp = serde_json::from_slice(&message.frame).map_err(|e| e.to_string())?;
        if msg.rev != agent.rev + 1 {
            return Err(format!("agent {a}: revision {} after {}", msg.rev, agent.rev));
        }
        let base_len = match agent.inflight.as_ref().or_else(|| agent.buffer.iter().find_map(|(_, op)| op.as_ref())) {
            Some(op) => op.base_len(),
            None => agent.text.len_chars(),
        };
        let mut remote = Op::from_raw(msg.op, base_len).map_err(|e| e.to_string())?;
        // The server applied `remote` first: it wins ties.
        if let Some(inflight) = agent.inflight.take() {
            let (remote2, inflight2) = Op::transform(&remote, &inflight).map_err(|e| e.to_string())?;
            agent.inflight = Some(inflight2);
            remote = remote2;
        }
        for (_, segment) in agent.buffer.iter_mut() {
            if let Some(op) = segment.take() {
                let (remote2, op2) = Op::transform(&remote, &op).map_err(|e| e.to_string())?;
                *segment = Some(op2);
                remote = remote2;
            }
        }
        remote.apply(&mut agent.text).map_err(|e| e.to_string())?;
        agent.rev = msg.rev;
        agent.seen[author] = agent.seen[author].max(upto);
        Ok(())
    }

    /// With nothing in flight: composes the buffered transactions up to `upto` and puts them in
    /// flight; the op leaves the agent now and reaches the server when someone needs it.
    fn send_buffer(agent: &mut Agent, upto: u32) -> Result<(), String> {
        debug_assert!(agent.inflight.is_none() && agent.uplink.is_none());
        let mut composed: Option<Op> = None;
        let mut last = None;
        while let Some((count, _)) = agent.buffer.front() {
            if *count > upto {
                break;
            }
            let Some((count, segment)) = agent.buffer.pop_front() else { break };
            last = Some(count);
            if let Some(op) = segment {
                composed = Some(match composed {
                    None => op,
                    Some(c) => c.compose(&op).map_err(|e| e.to_string())?,
                });
            }
        }
        let Some(last) = last else { return Ok(()) };
        match composed.filter(|op| !op.is_noop()) {
            Some(op) => {
                let seq = agent.next_seq;
                agent.next_seq += 1;
                agent.uplink = Some(Uplink { seq, base_rev: agent.rev, raw: op_raw(&op), upto: last });
                agent.inflight = Some(op);
            }
            // Nothing changed: the server has these transactions as much as it ever will.
            None => agent.at_server = last,
        }
        Ok(())
    }

    /// Makes the server hold agent `b`'s first `count` transactions: delivers its op in flight,
    /// and if they are still in its buffer, lets it take its ack and send the buffer.
    fn ensure_at_server(&mut self, b: usize, count: u32) -> Result<(), String> {
        // Each round moves one op to the server or delivers one message; both are bounded.
        while self.agents[b].at_server < count {
            let agent = &self.agents[b];
            if agent.uplink.is_some() {
                self.server_receives(b)?;
                continue;
            }
            if agent.inflight.is_none() {
                if agent.buffer.front().is_none_or(|(c, _)| *c > count) {
                    return Err(format!("agent {b} has not made {count} transactions yet"));
                }
                Self::send_buffer(&mut self.agents[b], count)?;
                continue;
            }
            // Its op in flight is at the server; it needs the ack. If it has made more than
            // `count` transactions, the ack must have come right after the count-th: only an
            // ack with nothing before it can be taken that late.
            let front_is_own_ack = agent.downlink.front().is_some_and(|m| self.revs[m.rev as usize].0 == b);
            let made = agent.seen[b];
            if front_is_own_ack || (made == count && self.may_deliver(b)) {
                self.deliver(b, count)?;
            } else {
                return Err(format!(
                    "agent {b}'s first {count} transactions are needed, but it cannot take its ack \
                     without first seeing an op that its later transactions were not made after"
                ));
            }
        }
        Ok(())
    }

    /// Agent `a` processes every message it may see now.
    fn catch_up(&mut self, a: usize) -> Result<(), String> {
        while self.may_deliver(a) {
            self.deliver(a, u32::MAX)?;
        }
        Ok(())
    }
}

/// Replays a concurrent trace: each agent an OT client (one op in flight, later edits composed,
/// incoming ops transformed, the server's op first on ties) of one `DocumentCore`. An agent makes
/// transaction `i` once it has seen exactly the transactions `i` was made after. The network is
/// as slow as the trace allows: an op reaches the server when another agent needs it, and an
/// agent processes the server's messages in order, when it needs them, as far as its next
/// transaction allows. Errors if the trace cannot be replayed that way or the server refuses an op.
pub fn simulate_concurrent(trace: &ConcurrentTrace) -> Result<ConcurrentOutcome, String> {
    let agents_n = trace.agents;
    // Version of each transaction (what it includes, itself too).
    let mut versions: Vec<Version> = Vec::with_capacity(trace.txns.len());
    let mut own_count = vec![0u32; agents_n];
    for (i, txn) in trace.txns.iter().enumerate() {
        let mut v = vec![0u32; agents_n];
        for &p in &txn.parents {
            for (x, y) in v.iter_mut().zip(&versions[p]) {
                *x = (*x).max(*y);
            }
        }
        if v[txn.agent] != own_count[txn.agent] {
            return Err(format!("txn {i}: agent {} had not seen all its own earlier transactions", txn.agent));
        }
        own_count[txn.agent] += 1;
        v[txn.agent] = own_count[txn.agent];
        versions.push(v);
    }
    let mut by_agent: Vec<Vec<usize>> = vec![Vec::new(); agents_n];
    for (i, txn) in trace.txns.iter().enumerate() {
        by_agent[txn.agent].push(i);
    }
    let mut sim = Simulation {
        core: new_core(),
        agents: (0..agents_n)
            .map(|a| Agent {
                rev: 0,
                inflight: None,
                buffer: VecDeque::new(),
                next_seq: 1,
                text: Rope::new(),
                uplink: None,
                at_server: 0,
                downlink: VecDeque::new(),
                seen: vec![0; agents_n],
                allowed: by_agent[a].first().map(|&i| versions[i].clone()),
            })
            .collect(),
        revs: vec![(usize::MAX, 0)],
        script: Script { agents: agents_n, submissions: Vec::with_capacity(trace.txns.len()) },
    };
    for a in 0..agents_n {
        let name: Arc<str> = Arc::from(format!("agent{a}"));
        sim.core.open(a as u64, a as u32, ClientId::generate(), name, Arc::from("#61afef"), None);
    }
    while sim.core.poll_output().is_some() {}
    let mut next_own = vec![0usize; agents_n];
    for (i, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent;
        let version = &versions[i];
        for b in (0..agents_n).filter(|&b| b != a) {
            sim.ensure_at_server(b, version[b]).map_err(|e| format!("txn {i} (agent {a}): {e}"))?;
        }
        sim.catch_up(a)?;
        for b in (0..agents_n).filter(|&b| b != a) {
            if sim.agents[a].seen[b] != version[b] {
                return Err(format!(
                    "txn {i} (agent {a}) was made after {} transactions of agent {b}, but the server order lets it see {}",
                    version[b], sim.agents[a].seen[b]
                ));
            }
        }
        let agent = &mut sim.agents[a];
        let mut local: Option<Op> = None;
        for patch in &txn.patches {
            let op = patch_op(patch, agent.text.len_chars()).map_err(|e| format!("txn {i}: {e}"))?;
            op.apply(&mut agent.text).map_err(|e| format!("txn {i}: {e}"))?;
            local = Some(match local {
                None => op,
                Some(previous) => previous.compose(&op).map_err(|e| e.to_string())?,
            });
        }
        agent.seen[a] += 1;
        next_own[a] += 1;
        agent.allowed = by_agent[a].get(next_own[a]).map(|&n| versions[n].clone());
        agent.buffer.push_back((agent.seen[a], local.filter(|op| !op.is_noop())));
        if agent.inflight.is_none() {
            Simulation::send_buffer(agent, u32::MAX)?;
        }
    }
    // Everyone sends and receives everything.
    for agent in sim.agents.iter_mut() {
        agent.allowed = None;
    }
    // Each round moves at least one op or message, and there are finitely many.
    loop {
        let mut progress = false;
        for a in 0..agents_n {
            if sim.agents[a].uplink.is_some() {
                sim.server_receives(a)?;
                progress = true;
            }
            while sim.may_deliver(a) {
                sim.deliver(a, u32::MAX)?;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    if let Some((a, _)) = sim.agents.iter().enumerate().find(|(_, x)| x.inflight.is_some() || !x.buffer.is_empty()) {
        return Err(format!("agent {a} still has unacknowledged edits at the end"));
    }
    Ok(ConcurrentOutcome {
        txns: trace.txns.len(),
        server_ops: sim.script.submissions.len(),
        server_text: sim.core.text().to_string(),
        agent_texts: sim.agents.iter().map(|x| x.text.to_string()).collect(),
        script: sim.script,
    })
}

/// Feeds a recorded script to a fresh core, completing each store job at once; returns the core.
/// Panics if the server answers anything but acks and broadcasts (the script was valid once).
pub fn run_script(script: &Script) -> DocumentCore<u32> {
    let mut core = new_core();
    for a in 0..script.agents {
        let name: Arc<str> = Arc::from(format!("agent{a}"));
        core.open(a as u64, a as u32, ClientId::generate(), name, Arc::from("#61afef"), None);
    }
    while core.poll_output().is_some() {}
    for s in &script.submissions {
        core.submit(s.conn, s.seq, s.base_rev, s.raw.clone());
        drive_store(&mut core);
        while let Some(output) = core.poll_output() {
            if let Output::Send { frame, .. } = &output {
                assert!(!is_error(frame), "{}", String::from_utf8_lossy(frame));
            }
        }
    }
    core
}
