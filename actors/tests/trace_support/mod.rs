//! Replays of real editing traces (Joseph Gentle's editing-traces, CC BY 4.0) through the sans-IO
//! `DocumentCore`, in process: shared by `tests/trace_replay.rs` (correctness) and
//! `benches/replay.rs` (speed).
//!
//! # Layout
//! - [`traces_dir`], [`load_sequential`], [`load_concurrent`]: find and read the `.json.gz` files.
//! - [`replay_sequential`]: each patch becomes one op at the current revision; the store job is
//!   completed at once (a no-op store).
//! - [`merge`]: the trace's own merge (a list CRDT) as the reference: where each inserted
//!   character sits in the merged text; it reproduces `endContent`.
//! - [`plan_concurrent`] + [`replay_planned`]: the 2–3 agents of a concurrent trace as OT
//!   clients of one `DocumentCore` (one op in flight, later edits buffered, broadcasts and acks
//!   in order). `plan` searches for a server order and op boundaries under which every agent
//!   makes each transaction having seen exactly what the trace says (or, where strict OT
//!   cannot, a few broadcasts early); each agent writes its transactions as their author meant
//!   them on the text it has (by the reference merge); the
//!   plan is run with the server's text checked against the reference after every op, and where
//!   the server's tie rule orders two concurrent inserts unlike the trace's merge, the op that
//!   must win the tie is made to reach the server first and the search runs again. Records the
//!   server's inputs as a [`Script`].
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
use chorus_actors::protocol::push_ack;
use chorus_actors::store::StoredDocument;
use ropey::Rope;
use serde::Deserialize;

mod merge;

use merge::{Merge, View};

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
    Ok(SequentialTrace {
        start: raw.start_content,
        end: raw.end_content,
        patches,
    })
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
            return Err(format!(
                "txn {index} has no agent or parents: not a concurrent trace"
            ));
        };
        if let Some(p) = parents.iter().find(|&&p| p >= index) {
            return Err(format!(
                "txn {index} has parent {p}, which does not come before it"
            ));
        }
        txns.push(Txn {
            agent,
            parents,
            patches: t.patches,
        });
    }
    let agents = txns.iter().map(|t| t.agent + 1).max().unwrap_or(0);
    Ok(ConcurrentTrace {
        end: raw.end_content,
        txns,
        agents,
    })
}

/// The raw (wire) form of a patch, as a client would send it, decoded from its JSON text the way
/// the node decodes an `op` message (so the list has the capacity the decoder gives it).
pub fn patch_raw(patch: &Patch) -> RawOp {
    let mut components = Vec::with_capacity(3);
    if patch.0 > 0 {
        components.push(serde_json::Value::from(patch.0 as u64));
    }
    if patch.1 > 0 {
        components.push(serde_json::Value::from(-(patch.1 as i64)));
    }
    if !patch.2.is_empty() {
        components.push(serde_json::Value::from(patch.2.as_str()));
    }
    let json = serde_json::Value::Array(components).to_string();
    serde_json::from_str(&json).expect("a patch's wire form decodes")
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
    DocumentCore::load(doc, StoredDocument::default(), CoreSettings::default())
        .expect("empty document loads")
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

/// What the sequential replay does with each `ack` the core asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Writes it into one reused buffer, as a connection's writer puts it into its socket buffer
    /// (in the node that runs in the connection's task, not the document's).
    Encoded,
    /// Only counts it: the document state machine alone.
    Counted,
}

/// Replays a sequential trace: each patch is one op based on the current revision, made durable
/// at once. Returns the core (its text must equal `trace.end`).
#[inline(never)] // a profiler can then measure the replay alone
pub fn replay_sequential(
    trace: &SequentialTrace,
    raws: Vec<RawOp>,
    acks: Acks,
) -> (DocumentCore<u32>, SequentialOutcome) {
    let mut core = new_core();
    let mut outcome = SequentialOutcome {
        ops: 0,
        acks: 0,
        errors: 0,
        first_error: None,
    };
    let client = ClientId::generate();
    let name: Arc<str> = Arc::from("seph");
    let color: Arc<str> = Arc::from("#e06c75");
    core.open(1, 1, client, name, color, None);
    while core.poll_output().is_some() {}
    debug_assert!(trace.start.is_empty() || core.text().len_chars() == 0);
    let mut seq = 0;
    let mut socket = Vec::with_capacity(4096);
    for raw in raws {
        seq += 1;
        outcome.ops += 1;
        core.submit(1, seq, core.durable_rev(), raw);
        drive_store(&mut core);
        while let Some(output) = core.poll_output() {
            match output {
                Output::Ack { seq, rev, .. } => {
                    if acks == Acks::Encoded {
                        push_ack(&mut socket, core.ack_prefix(), seq, rev);
                    }
                    outcome.acks += 1;
                }
                Output::Send { frame, .. } if is_error(&frame) => {
                    outcome.errors += 1;
                    if outcome.first_error.is_none() {
                        outcome.first_error = Some(String::from_utf8_lossy(&frame).into_owned());
                    }
                }
                Output::Send { .. } | Output::Broadcast { .. } => {}
            }
        }
        if socket.len() > 3072 {
            // Written, as a socket would read it, before it is reused.
            std::hint::black_box(&socket);
            socket.clear();
        }
    }
    (core, outcome)
}

/// The raw ops of a sequential trace, one per patch that changes something.
pub fn sequential_raws(trace: &SequentialTrace) -> Vec<RawOp> {
    trace
        .patches
        .iter()
        .filter(|p| p.1 > 0 || !p.2.is_empty())
        .map(patch_raw)
        .collect()
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
    /// Broadcasts an agent received before the transaction the trace says it saw them at
    /// (it rebased its transactions in between over them).
    pub early_deliveries: usize,
}

/// Per-agent version vector: `vv[b]` = how many of agent b's transactions are included.
type Version = Vec<u32>;

/// "Never" for an agent's clock: after its last transaction.
const END: u32 = u32::MAX;

/// One op of the schedule: an agent's transactions `(previous end, end]`, composed.
#[derive(Debug, Clone)]
struct Planned {
    author: usize,
    /// Own transactions sent before it (it carries `start + 1..=end`).
    start: u32,
    /// Own transactions it completes.
    end: u32,
    /// For each agent, how many of its own transactions it has made when this op's message
    /// (an ack for the author, a broadcast for the others) reaches it.
    arrives: Vec<u32>,
    /// For each agent, when its transactions start to include this op (`arrives` may be
    /// earlier: the agent then rebases its transactions in between over the op).
    exact: Vec<u32>,
}

/// Plans how the trace happened over a central OT server: which transactions each agent's ops
/// carry, and the order the server received them in.
///
/// An agent sends everything it has typed when the ack of its previous op arrives (or a
/// transaction at once when nothing is in flight), so the ack's arrival decides where its next op
/// ends. Every agent receives acks and broadcasts in server order and processes a broadcast right
/// before its first transaction made after it (the trace says which), so in server order each
/// agent's arrival times must not go down, and an op must end exactly where another agent's
/// transaction stopped seeing that agent's work. The plan is a greedy merge: the next op is one
/// that arrives nowhere later than any other agent's next op could; its ack arrives as early as
/// the receiving agent's clock allows. `constraints` are orders the server must keep (found by
/// [`plan_concurrent`]); to keep them an op may also end earlier, where another agent's next op
/// reaches its author (its ack came just before), tried only after the usual ends.
fn plan(
    trace: &ConcurrentTrace,
    versions: &[Version],
    by_agent: &[Vec<usize>],
    constraints: &[Before],
) -> Result<Vec<Planned>, String> {
    let n = trace.agents;
    let made: Vec<u32> = by_agent.iter().map(|txns| txns.len() as u32).collect();
    // For each (seer b, author c): c's transaction count in each of b's versions, in b's order.
    let seen_by: Vec<Vec<Vec<u32>>> = (0..n)
        .map(|b| {
            (0..n)
                .map(|c| by_agent[b].iter().map(|&j| versions[j][c]).collect())
                .collect()
        })
        .collect();
    // Where each agent's ops must end: every count another agent's transaction saw, and the last.
    let mut must_end: Vec<Vec<u32>> = Vec::with_capacity(n);
    for c in 0..n {
        let mut ends: Vec<u32> = (0..n)
            .filter(|&b| b != c)
            .flat_map(|b| seen_by[b][c].iter().copied())
            .collect();
        ends.push(made[c]);
        ends.retain(|&e| e > 0);
        ends.sort_unstable();
        ends.dedup();
        must_end.push(ends);
    }
    // The first count after `end` where an op of c must end (END after the last).
    let next_must = |c: usize, end: u32| -> u32 {
        let ends = &must_end[c];
        ends.get(ends.partition_point(|&e| e <= end))
            .copied()
            .unwrap_or(END)
    };
    // When agent b sees c's op ending at `end`: before its first transaction whose version has it.
    let arrival = |b: usize, c: usize, end: u32| -> u32 {
        let counts = &seen_by[b][c];
        let index = counts.partition_point(|&count| count < end);
        if index == counts.len() {
            END
        } else {
            index as u32
        }
    };
    // Where agent e's next op ends if it is placed after something that reaches e at `arrives_e`:
    // its ack comes as late as possible, so everything typed until then is in the next op.
    let next_end = |e: usize, state: &PlanState, arrives_e: u32| -> Option<u32> {
        let sent = state.sent[e];
        if sent >= made[e] {
            return None;
        }
        Some(match state.waiting[e] {
            None => sent + 1,
            Some((_, _, first_after)) => first_after
                .min(arrives_e)
                .clamp(sent + 1, next_must(e, sent)),
        })
    };
    // Every op that may be sent next, best first: (author, end, arrival at each agent).
    let candidates = |state: &PlanState| -> Vec<Candidate> {
        let mut found: Vec<((bool, u64, u64, u64), Candidate)> = Vec::new();
        // Each agent's op ends where its ack arrives as late as possible; as a last resort it
        // ends earlier, where another agent's next op reaches it (the ack came before that), so
        // that it can reach the server before that op (see `Before`).
        let mut ends: Vec<(usize, u32, bool)> = Vec::with_capacity(n * n);
        for c in 0..n {
            let Some(end) = next_end(c, state, END) else {
                continue;
            };
            ends.push((c, end, false));
            if constraints.is_empty() {
                continue;
            }
            for e in (0..n).filter(|&e| e != c) {
                let Some(other_end) = next_end(e, state, END) else {
                    continue;
                };
                let earlier = arrival(c, e, other_end);
                if state.sent[c] < earlier && earlier < end && !ends.contains(&(c, earlier, true)) {
                    ends.push((c, earlier, true));
                }
            }
        }
        'candidates: for (c, end, extra) in ends {
            let sent = state.sent[c];
            if constraints.iter().any(|k| {
                k.then.0 == c
                    && sent < k.then.1
                    && k.then.1 <= end
                    && state.sent[k.first.0] < k.first.1
            }) {
                continue;
            }
            let ack_lo = end.max(state.clock[c]);
            if end < made[c] && ack_lo > next_must(c, end) {
                continue;
            }
            let exact: Vec<u32> = (0..n)
                .map(|b| if b == c { ack_lo } else { arrival(b, c, end) })
                .collect();
            // Where the trace cannot be followed exactly (strict OT with one op in flight orders
            // some concurrent ops differently than the trace's agents saw them), an agent may
            // receive an op a few transactions early and rebase its next transactions over it.
            let mut arrives = exact.clone();
            for _ in 0..n {
                for b in (0..n).filter(|&b| b != c) {
                    for e in (0..n).filter(|&e| e != c) {
                        let Some(other_end) = next_end(e, state, arrives[e]) else {
                            continue;
                        };
                        let theirs = if b == e {
                            if other_end < made[e] {
                                next_must(e, other_end)
                            } else {
                                END
                            }
                        } else {
                            arrival(b, e, other_end)
                        };
                        // Never before the author made the op's last transaction.
                        let made_at = by_agent[c][end as usize - 1];
                        let earliest = by_agent[b].partition_point(|&j| j < made_at) as u32;
                        arrives[b] = arrives[b].min(theirs.max(earliest));
                    }
                }
            }
            let early = (0..n).filter(|&b| arrives[b] < exact[b]).count() as u64;
            if (0..n).any(|b| arrives[b] < state.clock[b]) {
                continue;
            }
            for e in (0..n).filter(|&e| e != c) {
                let Some(other_end) = next_end(e, state, arrives[e]) else {
                    continue;
                };
                // This op must not arrive anywhere later than e's next op will.
                for (b, &mine) in arrives.iter().enumerate() {
                    let theirs = if b == e {
                        if other_end < made[e] {
                            next_must(e, other_end)
                        } else {
                            END
                        }
                    } else {
                        arrival(b, e, other_end)
                    };
                    if mine > theirs {
                        continue 'candidates;
                    }
                }
            }
            // Placing this op first makes each waiting agent's ack come no later than this op
            // reaches it; prefer the op that cuts those windows least, then the earliest.
            let cut: u64 = (0..n)
                .filter(|&e| e != c)
                .filter_map(|e| state.waiting[e].map(|(_, _, first_after)| (e, first_after)))
                .map(|(e, first_after)| {
                    let wanted = first_after.min(next_must(e, state.sent[e]));
                    u64::from(wanted.saturating_sub(arrives[e]))
                })
                .sum();
            let earliest = arrives.iter().map(|&t| u64::from(t)).sum::<u64>();
            found.push(((extra, early, cut, earliest), (c, end, arrives, exact)));
        }
        found.sort_by_key(|(score, _)| *score);
        found.into_iter().map(|(_, candidate)| candidate).collect()
    };
    let mut state = PlanState {
        clock: vec![0; n],
        sent: vec![0; n],
        waiting: vec![None; n],
    };
    let mut order: Vec<Planned> = Vec::new();
    // Decision points for backtracking: the state before, the alternatives not tried yet, and
    // the ack time the chosen op overwrote (author's previous op).
    let mut stack: Vec<Decision> = Vec::new();
    let mut pending: Vec<Candidate> = candidates(&state);
    pending.reverse();
    let mut steps = 0usize;
    let mut deepest = 0usize;
    loop {
        steps += 1;
        if steps > MAX_PLAN_STEPS {
            return Err(format!(
                "no server order found within {MAX_PLAN_STEPS} search steps (deepest: {deepest} of the ops placed)"
            ));
        }
        let Some((c, end, arrives, exact)) = pending.pop() else {
            // Dead end: go back to the last decision with an alternative left.
            let Some((before, len, alternatives, overwritten)) = stack.pop() else {
                return Err(format!(
                    "no server order fits the trace (deepest: {deepest} ops placed)"
                ));
            };
            order.truncate(len);
            if let Some((index, old)) = overwritten {
                let author = order[index].author;
                order[index].arrives[author] = old;
            }
            state = before;
            pending = alternatives;
            continue;
        };
        let before = state.clone();
        let len = order.len();
        // The author's previous op's ack came just in time for this op to end at `end`.
        let mut overwritten = None;
        if let Some((index, ack_lo, first_after)) = state.waiting[c].take() {
            overwritten = Some((index, order[index].arrives[c]));
            order[index].arrives[c] = ack_lo.max(first_after.min(end));
        }
        for e in (0..n).filter(|&e| e != c) {
            if let Some((_, _, first_after)) = state.waiting[e].as_mut() {
                *first_after = (*first_after).min(arrives[e]);
            }
        }
        for (clock, &arrive) in state.clock.iter_mut().zip(&arrives) {
            *clock = (*clock).max(arrive);
        }
        state.sent[c] = end;
        state.waiting[c] = Some((order.len(), arrives[c], END));
        order.push(Planned {
            author: c,
            start: before.sent[c],
            end,
            arrives,
            exact,
        });
        stack.push((before, len, std::mem::take(&mut pending), overwritten));
        deepest = deepest.max(order.len());
        if (0..n).all(|e| state.sent[e] >= made[e]) {
            for w in state.waiting.iter_mut() {
                if let Some((index, ack_lo, first_after)) = w.take() {
                    let author = order[index].author;
                    order[index].arrives[author] = ack_lo.max(first_after);
                }
            }
            return Ok(order);
        }
        pending = candidates(&state);
        pending.reverse();
    }
}

/// Most steps the plan's search may take (each places or takes back one op): a few times the
/// ops of a trace when little backtracking is needed; a bound so a trace that does not fit fails.
const MAX_PLAN_STEPS: usize = 2_000_000;

/// An op that may be placed next: author, end, when it reaches each agent, and when each
/// agent's transactions start to include it.
type Candidate = (usize, u32, Vec<u32>, Vec<u32>);

/// A decision point of the plan's search: the state before it, how many ops were placed, the
/// alternatives not tried yet, and the ack time the chosen op overwrote (index, old value).
type Decision = (PlanState, usize, Vec<Candidate>, Option<(usize, u32)>);

/// Where the plan's search is.
#[derive(Debug, Clone)]
struct PlanState {
    /// Per agent: no message still to be placed can reach it earlier.
    clock: Vec<u32>,
    /// Per agent: own transactions sent so far (the end of its last placed op).
    sent: Vec<u32>,
    /// Per agent: its placed op still waiting for its ack (index in the order), the earliest the
    /// ack can arrive, and the earliest arrival of anything placed after it (its ack comes
    /// before that).
    waiting: Vec<Option<(usize, u32, u32)>>,
}

/// A server message waiting in an agent's (simulated, in-order) downlink.
#[derive(Debug)]
struct Pending {
    /// Own transaction count at which the agent processes it.
    at: u32,
    /// For a broadcast, whose transactions it carries: (author, first count - 1, last count).
    txns: Option<(usize, u32, u32)>,
    frame: chorus_actors::protocol::Frame,
}

/// One agent: an OT client with one op in flight and buffered edits.
struct Agent {
    /// Last server revision it has.
    rev: u64,
    /// The op in flight (transformed as server ops arrive).
    inflight: Option<Op>,
    /// Edits made since, one per transaction, each based on the previous (the first on the op in
    /// flight), with the own transaction count it completes. Kept apart so that an op can carry
    /// exactly the transactions the plan says (the real client composes at once; the result is
    /// the same).
    buffer: VecDeque<(u32, Op)>,
    next_seq: u64,
    /// Own transactions made.
    made: u32,
    /// Its text (every edit applies to it).
    text: Rope,
    /// Which characters of the reference merge its text holds: its edits are written as their
    /// author meant them (these characters deleted, this insert between these characters), also
    /// where it has received an op earlier than the trace says its author saw it.
    view: View,
    /// Messages the server sent it that it has not processed yet, in order.
    downlink: VecDeque<Pending>,
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

impl Agent {
    /// Processes the messages due by now: acks, and other agents' ops transformed over its op in
    /// flight and its buffer (the server's op wins ties).
    fn catch_up(&mut self, a: usize, merge: &Merge, by_agent: &[Vec<usize>]) -> Result<(), String> {
        while self.downlink.front().is_some_and(|m| m.at <= self.made) {
            let Some(message) = self.downlink.pop_front() else {
                break;
            };
            if message.frame.starts_with(br#"{"type":"ack""#) {
                let ack: Ack = serde_json::from_slice(&message.frame).map_err(|e| e.to_string())?;
                if self.inflight.take().is_none() {
                    return Err(format!("agent {a} got an ack with nothing in flight"));
                }
                self.rev = ack.rev;
                continue;
            }
            let msg: BroadcastOp =
                serde_json::from_slice(&message.frame).map_err(|e| e.to_string())?;
            if msg.rev != self.rev + 1 {
                return Err(format!(
                    "agent {a}: revision {} after {}",
                    msg.rev, self.rev
                ));
            }
            let base_len = match self
                .inflight
                .as_ref()
                .or_else(|| self.buffer.front().map(|(_, op)| op))
            {
                Some(op) => op.base_len(),
                None => self.text.len_chars(),
            };
            let mut remote = Op::from_raw(msg.op, base_len).map_err(|e| e.to_string())?;
            if let Some(inflight) = self.inflight.take() {
                let (remote2, inflight2) =
                    Op::transform(&remote, &inflight).map_err(|e| e.to_string())?;
                self.inflight = Some(inflight2);
                remote = remote2;
            }
            for (_, op) in self.buffer.iter_mut() {
                let (remote2, op2) = Op::transform(&remote, op).map_err(|e| e.to_string())?;
                *op = op2;
                remote = remote2;
            }
            remote.apply(&mut self.text).map_err(|e| e.to_string())?;
            self.rev = msg.rev;
            if let Some((author, from, to)) = message.txns {
                for count in from..to {
                    self.view.absorb(merge, by_agent[author][count as usize]);
                }
            }
        }
        Ok(())
    }

    /// Makes transaction `t`: its patches as its author meant them, on the agent's text.
    fn make(&mut self, merge: &Merge, t: usize) -> Result<(), String> {
        let mut local: Option<Op> = None;
        for op in self.view.ops(merge, t)? {
            op.apply(&mut self.text).map_err(|e| e.to_string())?;
            local = Some(match local {
                None => op,
                Some(previous) => previous.compose(&op).map_err(|e| e.to_string())?,
            });
        }
        self.made += 1;
        // A transaction whose deletes others made first changes nothing: an identity edit.
        let local = local.unwrap_or_else(|| Op::identity(self.text.len_chars()));
        self.buffer.push_back((self.made, local));
        Ok(())
    }
}

/// Why a run of a plan stopped.
#[derive(Debug)]
enum Failure {
    /// The server's text differs from the reference merge of what it has applied, right after
    /// op `step` of the plan; `applied` counts the transactions the server had applied before.
    Mismatch {
        step: usize,
        base_rev: u64,
        applied: u64,
    },
    /// Anything else (a bug or a trace that does not fit).
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Other(e)
    }
}

/// The simulated system: one server core, its agents, the plan and how far the server is in it.
struct Simulation<'a> {
    core: DocumentCore<u32>,
    agents: Vec<Agent>,
    plan: Vec<Planned>,
    next: usize,
    script: Script,
    merge: &'a Merge,
    by_agent: &'a [Vec<usize>],
    /// The reference merge of what the server has applied, when checked.
    expected: Option<(View, Rope)>,
    /// Transactions the server has applied.
    applied: u64,
}

impl Simulation<'_> {
    /// The next op of the plan leaves its author (which takes its ack first) and the server
    /// applies it; its ack and broadcasts go into the downlinks, due when the plan says.
    fn server_step(&mut self) -> Result<(), Failure> {
        let step = self.next;
        let planned = self.plan[step].clone();
        self.next += 1;
        let a = planned.author;
        let agent = &mut self.agents[a];
        if agent.made < planned.end {
            return Err(Failure::Other(format!(
                "agent {a} must send transactions up to {} but has made {}",
                planned.end, agent.made
            )));
        }
        agent.catch_up(a, self.merge, self.by_agent)?;
        if agent.inflight.is_some() {
            return Err(Failure::Other(format!(
                "agent {a} must send its next op but has not had its ack"
            )));
        }
        let mut composed: Option<Op> = None;
        while agent
            .buffer
            .front()
            .is_some_and(|(count, _)| *count <= planned.end)
        {
            let Some((_, op)) = agent.buffer.pop_front() else {
                break;
            };
            composed = Some(match composed {
                None => op,
                Some(c) => c.compose(&op).map_err(|e| e.to_string())?,
            });
        }
        // Transactions that cancel out still make an op (`[len]` changes nothing but is one).
        let Some(op) = composed.filter(|op| !op.components().is_empty()) else {
            return Err(Failure::Other(format!(
                "agent {a}'s op up to transaction {} is empty on an empty document",
                planned.end
            )));
        };
        let seq = agent.next_seq;
        agent.next_seq += 1;
        let raw = op_raw(&op);
        agent.inflight = Some(op);
        let base_rev = agent.rev;
        self.script.submissions.push(Submission {
            conn: a as u64,
            seq,
            base_rev,
            raw: raw.clone(),
        });
        let before = self.core.durable_rev();
        self.core.submit(a as u64, seq, base_rev, raw);
        drive_store(&mut self.core);
        if self.core.durable_rev() != before + 1 {
            let mut detail = String::new();
            while let Some(o) = self.core.poll_output() {
                if let Output::Send { frame, .. } = o {
                    detail.push_str(&String::from_utf8_lossy(&frame));
                }
            }
            return Err(Failure::Other(format!(
                "the server did not apply agent {a}'s op {seq}: {detail}"
            )));
        }
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send { to, frame } => {
                    if is_error(&frame) {
                        return Err(Failure::Other(format!(
                            "server error to agent {to}: {}",
                            String::from_utf8_lossy(&frame)
                        )));
                    }
                    let at = planned.arrives[to as usize];
                    self.agents[to as usize].downlink.push_back(Pending {
                        at,
                        txns: None,
                        frame,
                    });
                }
                Output::Ack { to, seq, rev } => {
                    let at = planned.arrives[to as usize];
                    self.agents[to as usize].downlink.push_back(Pending {
                        at,
                        txns: None,
                        frame: self.core.ack_frame(seq, rev),
                    });
                }
                Output::Broadcast { except, frame } => {
                    for (b, agent) in self.agents.iter_mut().enumerate() {
                        if Some(b as u64) != except {
                            agent.downlink.push_back(Pending {
                                at: planned.arrives[b],
                                txns: Some((a, planned.start, planned.end)),
                                frame: frame.clone(),
                            });
                        }
                    }
                }
            }
        }
        let applied = self.applied;
        self.applied += u64::from(planned.end - planned.start);
        if let Some((view, text)) = self.expected.as_mut() {
            for count in planned.start..planned.end {
                for op in view.ops(self.merge, self.by_agent[a][count as usize])? {
                    op.apply(text).map_err(|e| e.to_string())?;
                }
            }
            if self.core.text() != text.to_string().as_str() {
                return Err(Failure::Mismatch {
                    step,
                    base_rev,
                    applied,
                });
            }
        }
        Ok(())
    }
}

/// An order the plan must keep: agent `first.0`'s transactions up to count `first.1` reach the
/// server before agent `then.0`'s transaction `then.1` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Before {
    first: (usize, u32),
    then: (usize, u32),
}

/// Most orders the search adds to the plan (each fixes one place where the server's tie rule
/// would order two concurrent inserts unlike the trace's merge).
const MAX_REPAIRS: usize = 64;

/// Most alternatives tried for one such place (the concurrent ops, latest first).
const MAX_TRIES_PER_REPAIR: usize = 8;

/// The trace's transactions in the shapes the simulation uses.
struct Prepared {
    versions: Vec<Version>,
    by_agent: Vec<Vec<usize>>,
    merge: Merge,
}

fn prepare(trace: &ConcurrentTrace) -> Result<Prepared, String> {
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
            return Err(format!(
                "txn {i}: agent {} had not seen all its own earlier transactions",
                txn.agent
            ));
        }
        own_count[txn.agent] += 1;
        v[txn.agent] = own_count[txn.agent];
        versions.push(v);
    }
    let mut by_agent: Vec<Vec<usize>> = vec![Vec::new(); agents_n];
    for (i, txn) in trace.txns.iter().enumerate() {
        by_agent[txn.agent].push(i);
    }
    let merge = Merge::build(trace, &versions, &by_agent)?;
    Ok(Prepared {
        versions,
        by_agent,
        merge,
    })
}

/// A server order for a concurrent trace, found by [`plan_concurrent`]; [`replay_planned`] runs it.
pub struct ConcurrentPlan {
    prepared: Prepared,
    plan: Vec<Planned>,
    /// Orders added to the plain plan so that every tie lands as in the trace's merge.
    pub repairs: usize,
}

/// Plans the replay of a concurrent trace: [`plan`] searches a server order and op boundaries;
/// the plan is then run with the server's text checked against the trace's own merge after every
/// op. Where the server's tie rule (the op applied first goes left) orders two concurrent inserts
/// unlike the merge, the op that must win the tie is made to reach the server before the other
/// (an added [`Before`]), and the search runs again; bounded by [`MAX_REPAIRS`].
pub fn plan_concurrent(trace: &ConcurrentTrace) -> Result<ConcurrentPlan, String> {
    let prepared = prepare(trace)?;
    let mut constraints: Vec<Before> = Vec::new();
    let mut order = plan(trace, &prepared.versions, &prepared.by_agent, &constraints)?;
    let mut failure = run_plan(trace, &prepared, order.clone(), true).err();
    for _ in 0..=MAX_REPAIRS {
        let Some(f) = failure.take() else {
            return Ok(ConcurrentPlan {
                prepared,
                plan: order,
                repairs: constraints.len(),
            });
        };
        let (step, base_rev, applied) = match f {
            Failure::Other(e) => return Err(e),
            Failure::Mismatch {
                step,
                base_rev,
                applied,
            } => (step, base_rev, applied),
        };
        let op = &order[step];
        // The ops by other agents that this op was rebased over, at the server (applied since
        // its base) or at its author (received after it made the op's first transaction): one
        // of them won a tie this op should have won. Try making this op reach the server first.
        let concurrent: Vec<usize> = (0..step)
            .rev()
            .filter(|&j| {
                order[j].author != op.author
                    && (j >= base_rev as usize || order[j].arrives[op.author] > op.start)
            })
            .take(MAX_TRIES_PER_REPAIR)
            .collect();
        let mut repaired = None;
        for j in concurrent {
            let mut trial = constraints.clone();
            trial.push(Before {
                first: (op.author, op.end),
                then: (order[j].author, order[j].start + 1),
            });
            let Ok(candidate) = plan(trace, &prepared.versions, &prepared.by_agent, &trial) else {
                continue;
            };
            // Kept if the server now gets further before its text differs (or never does).
            match run_plan(trace, &prepared, candidate.clone(), true) {
                Ok(_) => {
                    repaired = Some((trial, candidate, None));
                    break;
                }
                Err(next @ Failure::Mismatch { applied: later, .. }) if later > applied => {
                    repaired = Some((trial, candidate, Some(next)));
                    break;
                }
                Err(_) => continue,
            }
        }
        let Some((trial, candidate, next)) = repaired else {
            return Err(format!(
                "the server's text differs from the trace's merge after op {step} of the plan ({applied} transactions applied), and no order of the concurrent ops fixes it"
            ));
        };
        constraints = trial;
        order = candidate;
        failure = next;
    }
    Err(format!("more than {MAX_REPAIRS} ties had to be repaired"))
}

/// Replays a concurrent trace along a plan: each agent an OT client (one op in flight, later
/// edits composed, incoming ops transformed, the server's op first on ties) of one
/// `DocumentCore`, the server receiving ops in the plan's order. Each transaction is made once
/// its agent has processed the server messages the plan delivers by then (those the trace says it
/// was made after, and a few early where strict OT needs it), written as its author meant it.
pub fn replay_planned(
    trace: &ConcurrentTrace,
    planned: &ConcurrentPlan,
) -> Result<ConcurrentOutcome, String> {
    match run_plan(trace, &planned.prepared, planned.plan.clone(), false) {
        Ok(outcome) => Ok(outcome),
        Err(Failure::Other(e)) => Err(e),
        Err(Failure::Mismatch { step, .. }) => Err(format!("mismatch after op {step}")),
    }
}

/// Runs one plan; with `check`, compares the server's text with the reference merge after
/// every op.
fn run_plan(
    trace: &ConcurrentTrace,
    prepared: &Prepared,
    plan: Vec<Planned>,
    check: bool,
) -> Result<ConcurrentOutcome, Failure> {
    let agents_n = trace.agents;
    let merge = &prepared.merge;
    let early_deliveries = plan
        .iter()
        .map(|p| {
            p.arrives
                .iter()
                .zip(&p.exact)
                .filter(|(a, e)| a < e)
                .count()
        })
        .sum();
    let mut sim = Simulation {
        core: new_core(),
        agents: (0..agents_n)
            .map(|_| Agent {
                rev: 0,
                inflight: None,
                buffer: VecDeque::new(),
                next_seq: 1,
                made: 0,
                text: Rope::new(),
                view: View::new(merge.items()),
                downlink: VecDeque::new(),
            })
            .collect(),
        script: Script {
            agents: agents_n,
            submissions: Vec::with_capacity(plan.len()),
        },
        plan,
        next: 0,
        merge,
        by_agent: &prepared.by_agent,
        expected: check.then(|| (View::new(merge.items()), Rope::new())),
        applied: 0,
    };
    for a in 0..agents_n {
        let name: Arc<str> = Arc::from(format!("agent{a}"));
        sim.core.open(
            a as u64,
            a as u32,
            ClientId::generate(),
            name,
            Arc::from("#61afef"),
            None,
        );
    }
    while sim.core.poll_output().is_some() {}
    for (i, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent;
        // The server applies every op this agent must have heard of by now.
        while sim.next < sim.plan.len() && sim.plan[sim.next].arrives[a] <= sim.agents[a].made {
            sim.server_step().map_err(|e| match e {
                Failure::Other(e) => Failure::Other(format!("before txn {i}: {e}")),
                mismatch => mismatch,
            })?;
        }
        let agent = &mut sim.agents[a];
        agent.catch_up(a, merge, &prepared.by_agent)?;
        agent.make(merge, i).map_err(|e| format!("txn {i}: {e}"))?;
    }
    while sim.next < sim.plan.len() {
        sim.server_step()?;
    }
    for (a, agent) in sim.agents.iter_mut().enumerate() {
        agent.made = END;
        agent.catch_up(a, merge, &prepared.by_agent)?;
        if agent.inflight.is_some() || !agent.buffer.is_empty() || !agent.downlink.is_empty() {
            return Err(Failure::Other(format!(
                "agent {a} still has unacknowledged edits or unread messages at the end"
            )));
        }
    }
    Ok(ConcurrentOutcome {
        txns: trace.txns.len(),
        server_ops: sim.script.submissions.len(),
        server_text: sim.core.text().to_string(),
        agent_texts: sim.agents.iter().map(|x| x.text.to_string()).collect(),
        script: sim.script,
        early_deliveries,
    })
}

/// Feeds a recorded script to a fresh core, completing each store job at once; returns the core.
/// Panics if the server answers anything but acks and broadcasts (the script was valid once).
pub fn run_script(script: &Script) -> DocumentCore<u32> {
    let mut core = new_core();
    for a in 0..script.agents {
        let name: Arc<str> = Arc::from(format!("agent{a}"));
        core.open(
            a as u64,
            a as u32,
            ClientId::generate(),
            name,
            Arc::from("#61afef"),
            None,
        );
    }
    while core.poll_output().is_some() {}
    // Acks are written into one reused buffer, as a connection's writer puts them into its
    // socket buffer.
    let mut socket = Vec::with_capacity(4096);
    for s in &script.submissions {
        core.submit(s.conn, s.seq, s.base_rev, s.raw.clone());
        drive_store(&mut core);
        while let Some(output) = core.poll_output() {
            match &output {
                Output::Send { frame, .. } => {
                    assert!(!is_error(frame), "{}", String::from_utf8_lossy(frame))
                }
                Output::Ack { seq, rev, .. } => {
                    push_ack(&mut socket, core.ack_prefix(), *seq, *rev)
                }
                Output::Broadcast { .. } => {}
            }
        }
        if socket.len() > 3072 {
            // Written, as a socket would read it, before it is reused.
            std::hint::black_box(&socket);
            socket.clear();
        }
    }
    core
}
