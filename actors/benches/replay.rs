//! Replays of real editing traces (Joseph Gentle's editing-traces, CC BY 4.0) through the sans-IO
//! `DocumentCore`, in process, printing ns per op: the sequential `seph-blog1` (one op per patch,
//! each made durable at once by a no-op store) and the concurrent `friendsforever` and
//! `clownschool` (their agents as OT clients along a plan found beforehand; timed as the whole
//! simulation and as the server path alone, fed the recorded inputs). Traces come from
//! `$CHORUS_TRACES`, else `../shared/traces` next to the workspace; missing traces are skipped
//! with a message.
//!
//! `seph-blog1` is also applied straight to a rope, as the reference for what the state machine
//! adds per op.
//!
//! Run: `cargo bench -p chorus-actors --bench replay` (set `REPLAY_RUNS` to change the 7 runs,
//! `REPLAY_ONLY=seph-blog1` to run one trace, e.g. under `valgrind --tool=callgrind`, and
//! `REPLAY_CORE_ALONE=0` to skip the replay that leaves acks unencoded).

#[path = "../tests/trace_support/mod.rs"]
mod trace_support;

use std::time::{Duration, Instant};

use chorus_actors::document::DocumentText;
use chorus_actors::ot::TextBuffer;

use trace_support::{
    load_concurrent, load_sequential, plan_concurrent, replay_planned, replay_sequential,
    run_script, sequential_raws, trace_path, Acks,
};

/// Runs of each measurement; the median is reported.
const DEFAULT_RUNS: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, ops: usize, samples: Vec<Duration>) {
    let best = *samples.iter().min().expect("at least one run");
    let median = median(samples);
    let ns = median.as_nanos() as f64 / ops as f64;
    println!(
        "{name:<50} {ops:>7} ops  median {:>8.2} ms  {ns:>8.1} ns/op  {:>6.2} M ops/s  (best {:.1} ns/op)",
        median.as_secs_f64() * 1e3,
        1e3 / ns,
        best.as_nanos() as f64 / ops as f64
    );
}

/// Applies every patch of a sequential trace to a fresh document text directly.
fn edit_text_only(trace: &trace_support::SequentialTrace) -> DocumentText {
    let mut text = DocumentText::new();
    for patch in trace.patches.iter() {
        if patch.1 > 0 {
            text.remove(patch.0..patch.0 + patch.1);
        }
        if !patch.2.is_empty() {
            text.insert(patch.0, &patch.2);
        }
    }
    text
}

fn main() {
    // `cargo bench` passes `--bench` (this harness ignores filters); `cargo test --all-targets`
    // does not, and then one run checks that the replays still work.
    let benching = std::env::args().any(|a| a == "--bench");
    let default_runs = if benching { DEFAULT_RUNS } else { 1 };
    let runs = std::env::var("REPLAY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default_runs)
        .max(1);
    println!(
        "trace replay through DocumentCore, median of {runs} runs (traces: {})",
        trace_support::traces_dir().display()
    );
    // `REPLAY_ONLY=name` runs one trace (for profiling).
    let only = std::env::var("REPLAY_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    match trace_path("seph-blog1").filter(|_| wanted("seph-blog1")) {
        None => println!(
            "SKIPPED seph-blog1: not found (set {})",
            trace_support::TRACES_ENV
        ),
        Some(path) => {
            let trace = load_sequential(&path).expect("trace loads");
            let raws = sequential_raws(&trace);
            let ops = raws.len();
            // The document's work per op, with each ack written as the connection's writer
            // writes it; then the document state machine alone (in the node the ack is written
            // by the connection's task, not the document's).
            let variants = [
                ("seph-blog1 sequential (submit+store+ack)", Acks::Encoded),
                (
                    "seph-blog1 document core alone (acks not encoded)",
                    Acks::Counted,
                ),
            ];
            let core_alone = std::env::var("REPLAY_CORE_ALONE").map_or(true, |v| v != "0");
            for (label, acks) in variants
                .into_iter()
                .filter(|(_, acks)| core_alone || *acks == Acks::Encoded)
            {
                let mut samples = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let input = raws.clone();
                    let started = Instant::now();
                    let (core, outcome) = replay_sequential(&trace, input, acks);
                    samples.push(started.elapsed());
                    assert_eq!(outcome.errors, 0, "{:?}", outcome.first_error);
                    assert_eq!(outcome.acks, ops, "one ack per op");
                    assert!(
                        core.text() == trace.end.as_str(),
                        "seph-blog1 did not end in endContent"
                    );
                }
                report(label, ops, samples);
            }
            // The same edits straight into the document's rope, without the state machine: the
            // part of an op's cost that any design of the server pays.
            let mut samples = Vec::with_capacity(runs);
            for _ in 0..runs {
                let started = Instant::now();
                let text = edit_text_only(&trace);
                samples.push(started.elapsed());
                assert!(
                    text == trace.end.as_str(),
                    "the rope alone did not end in endContent"
                );
            }
            report("seph-blog1 rope edits alone (reference)", ops, samples);
        }
    }
    for name in ["friendsforever", "clownschool"]
        .into_iter()
        .filter(|n| wanted(n))
    {
        let Some(path) = trace_path(name) else {
            println!(
                "SKIPPED {name}: not found (set {})",
                trace_support::TRACES_ENV
            );
            continue;
        };
        let trace = load_concurrent(&path).expect("trace loads");
        // Planning (the search for a server order, checked against the trace's merge) is not
        // timed; the replay along the plan is.
        // A trace that cannot be replayed, or ends elsewhere than `endContent`, is a regression
        // (tests/trace_replay.rs gates the same): fail rather than print a smaller table.
        let planned = plan_concurrent(&trace).unwrap_or_else(|e| {
            panic!("{name}: cannot be replayed through the OT server path: {e}")
        });
        let mut samples = Vec::with_capacity(runs);
        let mut outcome = None;
        for _ in 0..runs {
            let started = Instant::now();
            let result = replay_planned(&trace, &planned);
            samples.push(started.elapsed());
            outcome = Some(result.unwrap_or_else(|e| {
                panic!("{name}: cannot be replayed through the OT server path: {e}")
            }));
        }
        let Some(outcome) = outcome else { continue };
        assert!(
            outcome.server_text == trace.end,
            "{name}: the server did not end in endContent"
        );
        report(
            &format!("{name} agents+server, per txn"),
            outcome.txns,
            samples,
        );
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let core = run_script(&outcome.script);
            samples.push(started.elapsed());
            assert!(
                core.text() == outcome.server_text.as_str(),
                "{name}: the server path is not deterministic"
            );
        }
        report(
            &format!("{name} server path, per server op"),
            outcome.server_ops,
            samples.clone(),
        );
        report(
            &format!("{name} server path, per txn"),
            outcome.txns,
            samples,
        );
    }
}
