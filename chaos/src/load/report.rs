//! The end of a load run: the convergence and loss checks, and the report as a table, a
//! one-line summary and JSON.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::{Fnv, ThreadStats};
use super::system::ProcSample;
use super::{typing, DocOutcome, LoadArgs, WindowSample};

/// Most failure details kept in the report.
const MAX_DETAILS: usize = 20;

/// Result of the end-of-run checks.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// Documents checked.
    pub documents: usize,
    /// Client texts compared with a fresh snapshot.
    pub clients_compared: usize,
    /// Every client's text equals the fresh snapshot at the same revision.
    pub converged: bool,
    /// Acknowledged inserts checked.
    pub acked_inserts: usize,
    /// Every acknowledged insert is present exactly once, and nothing unknown is.
    pub no_loss: bool,
    /// What went wrong (first few).
    pub failures: Vec<String>,
}

/// Compares every client's final text with a fresh snapshot of its document and looks for every
/// acknowledged insert's token in it.
pub fn check(
    docs: &[DocOutcome],
    snapshots: impl FnOnce(&[String]) -> anyhow::Result<Vec<(u64, String)>>,
) -> anyhow::Result<Checks> {
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let snaps = snapshots(&ids)?;
    let mut checks = Checks {
        documents: docs.len(),
        clients_compared: 0,
        converged: true,
        acked_inserts: 0,
        no_loss: true,
        failures: Vec::new(),
    };
    let fail = |checks: &mut Checks, message: String| {
        if checks.failures.len() < MAX_DETAILS {
            checks.failures.push(message);
        }
    };
    for (doc, (rev, text)) in docs.iter().zip(&snaps) {
        let mut h = Fnv::new();
        h.add(text.as_bytes());
        let len = text.chars().count();
        for f in &doc.finals {
            checks.clients_compared += 1;
            if !f.drained || f.rev != *rev || f.hash != h.0 || f.len != len {
                checks.converged = false;
                let message = format!(
                    "{}: client {} has revision {} ({} chars{}), the snapshot has revision {rev} ({len} chars){}",
                    doc.id,
                    f.index,
                    f.rev,
                    f.len,
                    if f.drained { "" } else { ", not drained in time" },
                    if f.rev == *rev { ": texts differ" } else { "" }
                );
                fail(&mut checks, message);
            }
        }
        let tokens = match typing::tokens_in(text) {
            Ok(tokens) => tokens,
            Err(position) => {
                checks.no_loss = false;
                fail(
                    &mut checks,
                    format!("{}: a token is split at code point {position}", doc.id),
                );
                continue;
            }
        };
        let mut counts: HashMap<u64, u32> = HashMap::with_capacity(tokens.len());
        for t in tokens {
            *counts.entry(t).or_insert(0) += 1;
        }
        checks.acked_inserts += doc.acked_tokens.len();
        for t in &doc.acked_tokens {
            let n = counts.get(t).copied().unwrap_or(0);
            if n != 1 {
                checks.no_loss = false;
                fail(
                    &mut checks,
                    format!("{}: acknowledged insert {t} is present {n} times", doc.id),
                );
            }
        }
        for (t, n) in &counts {
            if *n > 1 || !doc.sent_tokens.contains(t) {
                checks.no_loss = false;
                fail(
                    &mut checks,
                    format!(
                        "{}: insert {t} is present {n} times (sent: {})",
                        doc.id,
                        doc.sent_tokens.contains(t)
                    ),
                );
            }
        }
    }
    Ok(checks)
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One server's figures over the measurement window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFigures {
    /// Process id.
    pub pid: u32,
    /// CPU seconds used inside the window.
    pub cpu_s: Option<f64>,
    /// RSS before the clients connected, bytes.
    pub rss_before_connect_bytes: Option<u64>,
    /// RSS once every client had connected, bytes.
    pub rss_connected_bytes: Option<u64>,
    /// RSS at the end of the window, bytes.
    pub rss_end_bytes: Option<u64>,
    /// Peak RSS so far, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Settings.
    pub clients: usize,
    /// Documents.
    pub docs: usize,
    /// Offered rate per client, or "closed-loop".
    pub mode: String,
    /// Typing mix.
    pub mix: String,
    /// Seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: Vec<String>,
    /// Clients that connected.
    pub connected: usize,
    /// Clients that could not connect.
    pub connect_failed: usize,
    /// Seconds connecting took.
    pub connect_s: f64,
    /// Clients that lost their connection during the run.
    pub disconnects: u64,
    /// First disconnect reasons.
    pub disconnect_reasons: Vec<String>,
    /// Length of the measurement window, seconds.
    pub window_s: f64,
    /// Acks received in the window per second.
    pub accepted_ops_per_s: f64,
    /// Local edits made in the window per second (edits made while an op is in flight are
    /// composed into one op).
    pub edits_per_s: f64,
    /// Op on the wire → sender's ack.
    pub ack_latency: Latency,
    /// Op on the wire → every other client of the document has it.
    pub peers_latency: Latency,
    /// Ops whose peer latency could not be tracked or completed.
    pub peers_untracked: u64,
    /// Error messages by code.
    pub errors: BTreeMap<String, u64>,
    /// Ops resubmitted after rate_limited / unavailable.
    pub resends: u64,
    /// Documents reopened after an error.
    pub resyncs: u64,
    /// Cursor messages sent.
    pub cursors_sent: u64,
    /// Servers measured.
    pub servers: Vec<ServerFigures>,
    /// Total server CPU seconds in the window.
    pub server_cpu_s: Option<f64>,
    /// Accepted ops per server CPU second.
    pub ops_per_server_cpu_s: Option<f64>,
    /// Server CPU microseconds per accepted op.
    pub server_cpu_us_per_op: Option<f64>,
    /// Server RSS growth per connected client (end of window − before connecting), bytes.
    pub server_rss_per_client_bytes: Option<f64>,
    /// Load generator CPU seconds in the window.
    pub generator_cpu_s: f64,
    /// Bytes clients sent per accepted op (WebSocket framing included).
    pub bytes_out_per_op: Option<f64>,
    /// Bytes clients received per accepted op.
    pub bytes_in_per_op: Option<f64>,
    /// Bytes clients sent per second.
    pub bytes_out_per_s: f64,
    /// Bytes clients received per second.
    pub bytes_in_per_s: f64,
    /// End-of-run checks (absent for idle runs or with --no-check).
    pub checks: Option<Checks>,
    /// 1-minute load average of the machine at the start and end of the window (the generator
    /// shares the machine with the server and whatever else runs: read the figures with it).
    pub loadavg: (f64, f64),
}

/// Everything the report is built from.
pub struct Inputs<'a> {
    pub args: &'a LoadArgs,
    pub connected: usize,
    pub failed: usize,
    pub connect_s: f64,
    pub stats: &'a ThreadStats,
    pub docs: &'a [DocOutcome],
    pub before_connect: Vec<Option<ProcSample>>,
    pub connected_at: Vec<Option<ProcSample>>,
    pub window_start: WindowSample,
    pub window_end: WindowSample,
    pub checks: Option<Checks>,
}

impl Report {
    /// Builds the report.
    pub fn build(i: Inputs<'_>) -> Report {
        let window_s = i
            .window_end
            .at
            .duration_since(i.window_start.at)
            .as_secs_f64()
            .max(1e-9);
        let acks = i.stats.acks_in_window;
        let per_op = |x: f64| (acks > 0).then(|| x / acks as f64);
        let servers: Vec<ServerFigures> = i
            .args
            .server_pids
            .iter()
            .enumerate()
            .map(|(n, &pid)| {
                let at = |v: &Vec<Option<ProcSample>>| v.get(n).copied().flatten();
                let start = at(&i.window_start.servers);
                let end = at(&i.window_end.servers);
                ServerFigures {
                    pid,
                    cpu_s: start.zip(end).map(|(s, e)| e.cpu_s - s.cpu_s),
                    rss_before_connect_bytes: at(&i.before_connect).map(|s| s.rss_bytes),
                    rss_connected_bytes: at(&i.connected_at).map(|s| s.rss_bytes),
                    rss_end_bytes: end.map(|s| s.rss_bytes),
                    peak_rss_bytes: end.map(|s| s.peak_rss_bytes),
                }
            })
            .collect();
        let server_cpu_s = (!servers.is_empty() && servers.iter().all(|s| s.cpu_s.is_some()))
            .then(|| servers.iter().filter_map(|s| s.cpu_s).sum::<f64>());
        let rss_growth: Option<f64> = (!servers.is_empty())
            .then(|| {
                servers
                    .iter()
                    .map(|s| {
                        s.rss_end_bytes
                            .zip(s.rss_before_connect_bytes)
                            .map(|(e, b)| e as f64 - b as f64)
                    })
                    .sum::<Option<f64>>()
            })
            .flatten();
        let bytes_in = (i.window_end.bytes_in - i.window_start.bytes_in) as f64;
        let bytes_out = (i.window_end.bytes_out - i.window_start.bytes_out) as f64;
        let untracked = i.stats.untracked
            + i.docs
                .iter()
                .map(|d| d.unfinished_tracks as u64)
                .sum::<u64>();
        Report {
            clients: i.args.clients,
            docs: i.args.docs,
            mode: if i.args.closed_loop {
                "closed-loop".into()
            } else {
                format!("{} ops/s per client", i.args.rate)
            },
            mix: i.args.mix.clone(),
            seed: i.args.seed,
            nodes: i.args.nodes.clone(),
            connected: i.connected,
            connect_failed: i.failed,
            connect_s: i.connect_s,
            disconnects: i.stats.disconnects,
            disconnect_reasons: i.stats.disconnect_reasons.clone(),
            window_s,
            accepted_ops_per_s: acks as f64 / window_s,
            edits_per_s: i.stats.edits_in_window as f64 / window_s,
            ack_latency: Latency::of(&i.stats.ack_us),
            peers_latency: Latency::of(&i.stats.peers_us),
            peers_untracked: untracked,
            errors: i
                .stats
                .errors
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            resends: i.stats.resends,
            resyncs: i.stats.resyncs,
            cursors_sent: i.stats.cursors_sent,
            ops_per_server_cpu_s: server_cpu_s.filter(|c| *c > 0.0).map(|c| acks as f64 / c),
            server_cpu_us_per_op: server_cpu_s.and_then(|c| per_op(c * 1e6)),
            server_cpu_s,
            server_rss_per_client_bytes: rss_growth.map(|g| g / i.connected.max(1) as f64),
            servers,
            generator_cpu_s: i.window_end.own_cpu_s - i.window_start.own_cpu_s,
            bytes_out_per_op: per_op(bytes_out),
            bytes_in_per_op: per_op(bytes_in),
            bytes_out_per_s: bytes_out / window_s,
            bytes_in_per_s: bytes_in / window_s,
            checks: i.checks,
            loadavg: (i.window_start.loadavg, i.window_end.loadavg),
        }
    }

    /// Every client connected and stayed, no protocol error, and the checks (if run) passed.
    pub fn passed(&self) -> bool {
        let protocol_errors = [
            "bad_message",
            "invalid_op",
            "not_open",
            "rev_gap",
            "unexpected_ack",
        ]
        .iter()
        .any(|code| self.errors.get(*code).is_some_and(|n| *n > 0));
        self.connect_failed == 0
            && self.disconnects == 0
            && !protocol_errors
            && self
                .checks
                .as_ref()
                .is_none_or(|c| c.converged && c.no_loss)
    }

    /// One line for scripts and CI logs.
    pub fn summary_line(&self) -> String {
        let checks = match &self.checks {
            Some(c) => format!(
                "converged={} no_loss={} ({} clients, {} acked inserts)",
                c.converged, c.no_loss, c.clients_compared, c.acked_inserts
            ),
            None => "checks skipped".into(),
        };
        let first_problem = self
            .checks
            .iter()
            .flat_map(|c| c.failures.first())
            .chain(self.disconnect_reasons.first())
            .next()
            .map_or(String::new(), |p| format!("; first problem: {p}"));
        format!(
            "load {}: {} clients/{} docs {}: {:.0} ops/s, ack p99 {:.2} ms, peers p99 {:.2} ms, errors {:?}, {checks}{first_problem}",
            if self.passed() { "PASSED" } else { "FAILED" },
            self.clients,
            self.docs,
            self.mode,
            self.accepted_ops_per_s,
            self.ack_latency.p99_ms,
            self.peers_latency.p99_ms,
            self.errors,
        )
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<34} {v}\n"));
        let opt = |v: Option<f64>, unit: &str, digits: usize| match v {
            Some(v) => format!("{v:.digits$}{unit}"),
            None => "n/a".into(),
        };
        line(
            "scenario",
            format!(
                "{} clients / {} docs, {}",
                self.clients, self.docs, self.mode
            ),
        );
        line(
            "connected",
            format!(
                "{} ({} failed) in {:.1} s",
                self.connected, self.connect_failed, self.connect_s
            ),
        );
        line("disconnects during run", self.disconnects.to_string());
        line("window", format!("{:.1} s", self.window_s));
        line("accepted ops/s", format!("{:.0}", self.accepted_ops_per_s));
        line("local edits/s", format!("{:.0}", self.edits_per_s));
        for (name, l) in [
            ("op -> ack", &self.ack_latency),
            ("op -> all peers", &self.peers_latency),
        ] {
            line(
                &format!("{name} latency (ms)"),
                format!(
                    "p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
                ),
            );
        }
        line("errors by code", format!("{:?}", self.errors));
        line(
            "resends / resyncs",
            format!("{} / {}", self.resends, self.resyncs),
        );
        line("server CPU in window", opt(self.server_cpu_s, " s", 2));
        line(
            "ops per server CPU-second",
            opt(self.ops_per_server_cpu_s, "", 0),
        );
        line(
            "server CPU per op",
            opt(self.server_cpu_us_per_op, " us", 1),
        );
        for s in &self.servers {
            let mb =
                |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.1} MB", b as f64 / 1e6));
            line(
                &format!("server {} RSS", s.pid),
                format!(
                    "before {}  connected {}  end {}  peak {}",
                    mb(s.rss_before_connect_bytes),
                    mb(s.rss_connected_bytes),
                    mb(s.rss_end_bytes),
                    mb(s.peak_rss_bytes)
                ),
            );
        }
        line(
            "server RSS per connection",
            opt(
                self.server_rss_per_client_bytes.map(|b| b / 1024.0),
                " KiB",
                1,
            ),
        );
        line(
            "generator CPU in window",
            format!("{:.2} s", self.generator_cpu_s),
        );
        line(
            "machine load average",
            format!(
                "{:.2} at start, {:.2} at end",
                self.loadavg.0, self.loadavg.1
            ),
        );
        line(
            "bytes per op (out / in)",
            format!(
                "{} / {}",
                opt(self.bytes_out_per_op, "", 0),
                opt(self.bytes_in_per_op, "", 0)
            ),
        );
        match &self.checks {
            Some(c) => {
                line(
                    "convergence",
                    format!(
                        "{} ({} clients over {} docs)",
                        if c.converged { "ok" } else { "FAILED" },
                        c.clients_compared,
                        c.documents
                    ),
                );
                line(
                    "loss",
                    format!(
                        "{} ({} acknowledged inserts)",
                        if c.no_loss { "ok" } else { "FAILED" },
                        c.acked_inserts
                    ),
                );
                for f in &c.failures {
                    line("  failure", f.clone());
                }
            }
            None => line("checks", "skipped".into()),
        }
        for r in &self.disconnect_reasons {
            line("  disconnect", r.clone());
        }
        line(
            "result",
            if self.passed() {
                "PASSED".into()
            } else {
                "FAILED".into()
            },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;
    use crate::load::client::ClientFinal;

    fn final_of(index: usize, rev: u64, text: &str) -> ClientFinal {
        let mut h = Fnv::new();
        h.add(text.as_bytes());
        ClientFinal {
            index,
            rev,
            len: text.chars().count(),
            hash: h.0,
            drained: true,
        }
    }

    fn doc(text: &str, acked: &[u64], sent: &[u64]) -> DocOutcome {
        DocOutcome {
            id: "d".into(),
            finals: vec![final_of(0, 5, text), final_of(1, 5, text)],
            acked_tokens: acked.to_vec(),
            sent_tokens: sent.iter().copied().collect::<HashSet<u64>>(),
            unfinished_tracks: 0,
        }
    }

    #[test]
    fn checks_find_divergence_loss_duplicates_and_unknown_inserts() {
        let mut rng = SmallRng::seed_from_u64(4);
        let (a, b) = (
            typing::insert_text(2, 1, &mut rng),
            typing::insert_text(3, 2, &mut rng),
        );
        let text = format!("{a}{b}");
        let ok = check(&[doc(&text, &[1, 2], &[1, 2, 3])], |_| {
            Ok(vec![(5, text.clone())])
        })
        .expect("checks run");
        assert!(ok.converged && ok.no_loss, "{:?}", ok.failures);

        let mut diverged = doc(&text, &[1, 2], &[1, 2]);
        diverged.finals[1] = final_of(1, 5, &a);
        let c = check(&[diverged], |_| Ok(vec![(5, text.clone())])).expect("checks run");
        assert!(!c.converged && c.no_loss);

        let lost =
            check(&[doc(&a, &[1, 2], &[1, 2])], |_| Ok(vec![(5, a.clone())])).expect("checks run");
        assert!(!lost.no_loss, "acknowledged insert 2 is missing");

        let twice = format!("{a}{a}");
        let doubled = check(&[doc(&twice, &[1], &[1])], |_| Ok(vec![(5, twice.clone())]))
            .expect("checks run");
        assert!(!doubled.no_loss, "insert 1 is present twice");

        let unknown =
            check(&[doc(&text, &[1], &[1])], |_| Ok(vec![(5, text.clone())])).expect("checks run");
        assert!(!unknown.no_loss, "insert 2 was never sent");
    }
}
