//! `chorus-chaos load`: N collaborators over D documents over real WebSockets, spread over the
//! given nodes; reports accepted ops/s, latency percentiles (HDR histograms), errors by code,
//! server CPU and memory (from /proc for the given pids), bytes on the wire per op, and checks
//! convergence (every client's text equals a fresh snapshot) and loss (every acknowledged insert
//! present exactly once) at the end.
//!
//! Clients run on `--threads` worker threads, each a single-threaded runtime; all clients of a
//! document share a thread, so per-document bookkeeping needs no locks. Every phase has a
//! deadline: connecting, the run itself, draining, and the final check.

mod client;
mod report;
mod system;
mod typing;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use client::{ClientConfig, ClientFinal, DocState, Incoming, ThreadStats};
pub use report::Report;
use system::ProcSample;

/// Most clients one run may simulate (the open-file limit and ephemeral ports run out past this).
const MAX_CLIENTS: usize = 50_000;
/// Most documents one run may use.
const MAX_DOCS: usize = 50_000;
/// Most worker threads.
const MAX_THREADS: usize = 64;
/// Delay between publishing the plan and the first edit, so every client is listening.
const START_DELAY: Duration = Duration::from_millis(200);
/// How often the coordinator checks progress while clients connect.
const POLL: Duration = Duration::from_millis(50);
/// Deadline for each document's snapshot in the final check.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of `chorus-chaos load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// WebSocket URL of a node (repeat, or comma-separate, to spread clients over several).
    #[arg(
        long = "nodes",
        alias = "node",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub nodes: Vec<String>,
    /// Simulated collaborators.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Documents; client i edits document i mod docs.
    #[arg(long, default_value_t = 1)]
    pub docs: usize,
    /// Edits per second per client (a Poisson process); 0 = idle connections.
    #[arg(long, default_value_t = 2.0, conflicts_with = "closed_loop")]
    pub rate: f64,
    /// Each client sends its next edit as soon as its previous op is acknowledged.
    #[arg(long)]
    pub closed_loop: bool,
    /// Typing mix as kind=weight: chars, words, pastes, deletes, cursor.
    #[arg(long, default_value = "chars=55,words=20,pastes=2,deletes=18,cursor=5")]
    pub mix: String,
    /// Seconds of typing before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds allowed after the run for every op to be acknowledged and received.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout_s: f64,
    /// Seconds allowed for every client to connect, say hello and open its document.
    #[arg(long, default_value_t = 120.0)]
    pub connect_timeout_s: f64,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Preload every document to this many code points before the run.
    #[arg(long, default_value_t = 0)]
    pub doc_chars: usize,
    /// Past this many code points, a client deletes instead of inserting.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_doc_chars: usize,
    /// Prefix of document ids (a fresh one per run keeps runs apart).
    #[arg(long, default_value = "load")]
    pub doc_prefix: String,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads running the clients.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// A server process to measure (CPU seconds and RSS from /proc); repeatable.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the convergence and loss checks.
    #[arg(long)]
    pub no_check: bool,
    /// Print one summary line instead of the table.
    #[arg(long)]
    pub quiet: bool,
}

/// When things happen; published once every client is connected.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// First edit.
    pub start: Instant,
    /// Start of the measurement window.
    pub measure_from: Instant,
    /// End of the window; clients stop typing.
    pub stop: Instant,
    /// Clients give up draining.
    pub drain_until: Instant,
}

/// What every thread shares.
#[derive(Debug)]
pub struct Global {
    /// Clients connected, hello'd and opened.
    pub connected: AtomicUsize,
    /// Clients that could not connect.
    pub failed: AtomicUsize,
    /// The plan, once published.
    pub plan: watch::Receiver<Option<Plan>>,
    /// Next insert token.
    pub next_token: AtomicU64,
}

/// What a worker thread hands back.
struct ThreadResult {
    stats: ThreadStats,
    docs: Vec<DocOutcome>,
}

/// One document at the end of the run.
pub struct DocOutcome {
    /// Document id.
    pub id: String,
    /// Final states of its clients that stayed.
    pub finals: Vec<ClientFinal>,
    /// Tokens of acknowledged inserts.
    pub acked_tokens: Vec<u64>,
    /// Tokens of every insert sent.
    pub sent_tokens: std::collections::HashSet<u64>,
    /// Ops whose peer latency never completed.
    pub unfinished_tracks: usize,
}

/// Runs the load; `Ok(true)` if every check passed.
pub fn run(args: LoadArgs) -> anyhow::Result<bool> {
    validate(&args)?;
    let open_files = system::raise_open_files_limit();
    if (open_files as usize) < args.clients + 64 {
        bail!(
            "the open-file limit is {open_files}, too low for {} clients (raise the hard limit)",
            args.clients
        );
    }
    let mix = typing::Mix::parse(&args.mix)
        .map_err(anyhow::Error::msg)
        .context("--mix")?;
    let config = ClientConfig {
        rate_per_s: args.rate,
        closed_loop: args.closed_loop,
        mix,
        doc_chars: args.doc_chars,
        max_doc_chars: args.max_doc_chars.max(args.doc_chars + 1),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout_s),
        seed: args.seed,
    };
    let sample_servers = || -> Vec<Option<ProcSample>> {
        args.server_pids
            .iter()
            .map(|&pid| system::sample_process(pid).ok())
            .collect()
    };
    let before_connect = sample_servers();
    let (plan_tx, plan_rx) = watch::channel(None);
    let global = Arc::new(Global {
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        plan: plan_rx,
        next_token: AtomicU64::new(0),
    });
    let threads = args.threads.clamp(1, MAX_THREADS).min(args.docs);
    let connect_started = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for thread in 0..threads {
        let args = args.clone();
        let global = global.clone();
        let config = ClientConfig {
            mix,
            ..config_clone(&config)
        };
        let handle = std::thread::Builder::new()
            .name(format!("load-{thread}"))
            .spawn(move || worker(thread, threads, &args, config, global))
            .context("starting a worker thread")?;
        handles.push(handle);
    }
    // Wait for every client to connect (or fail), bounded by the connect deadline.
    let connect_deadline =
        connect_started + Duration::from_secs_f64(args.connect_timeout_s) + Duration::from_secs(5);
    loop {
        let done = global.connected.load(Ordering::Relaxed) + global.failed.load(Ordering::Relaxed);
        if done >= args.clients
            || Instant::now() >= connect_deadline
            || handles.iter().all(|h| h.is_finished())
        {
            break;
        }
        std::thread::sleep(POLL);
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let start = Instant::now() + START_DELAY;
    let measure_from = start + Duration::from_secs_f64(args.warmup_s);
    let stop = measure_from + Duration::from_secs_f64(args.duration_s);
    let plan = Plan {
        start,
        measure_from,
        stop,
        drain_until: stop + Duration::from_secs_f64(args.drain_timeout_s),
    };
    let connected_at = sample_servers();
    let _ = plan_tx.send(Some(plan));
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let window_start = WindowSample::take(&sample_servers);
    std::thread::sleep(stop.saturating_duration_since(Instant::now()));
    let window_end = WindowSample::take(&sample_servers);
    let mut stats = ThreadStats::new();
    let mut docs = Vec::with_capacity(args.docs);
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        merge(&mut stats, result.stats);
        docs.extend(result.docs);
    }
    drop(plan_tx);
    let checks = if args.no_check || (args.rate == 0.0 && !args.closed_loop && args.doc_chars == 0)
    {
        None
    } else {
        Some(report::check(&docs, |ids| snapshots(&args.nodes[0], ids))?)
    };
    let report = Report::build(report::Inputs {
        args: &args,
        connected: global.connected.load(Ordering::Relaxed),
        failed: global.failed.load(Ordering::Relaxed),
        connect_s,
        stats: &stats,
        docs: &docs,
        before_connect,
        connected_at,
        window_start,
        window_end,
        checks,
    });
    if args.quiet {
        println!("{}", report.summary_line());
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.passed())
}

fn config_clone(config: &ClientConfig) -> ClientConfig {
    ClientConfig {
        rate_per_s: config.rate_per_s,
        closed_loop: config.closed_loop,
        mix: config.mix,
        doc_chars: config.doc_chars,
        max_doc_chars: config.max_doc_chars,
        connect_timeout: config.connect_timeout,
        seed: config.seed,
    }
}

fn validate(args: &LoadArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        bail!("--clients must be 1..={MAX_CLIENTS}");
    }
    if args.docs == 0 || args.docs > MAX_DOCS || args.docs > args.clients {
        bail!("--docs must be 1..={MAX_DOCS} and at most --clients");
    }
    if args.nodes.is_empty() || args.nodes.iter().any(|n| !n.starts_with("ws://")) {
        bail!("--nodes must list ws:// URLs");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite() && args.rate <= 100_000.0) {
        bail!("--rate must be 0..=100000 ops/s");
    }
    for (name, v) in [
        ("--warmup-s", args.warmup_s),
        ("--duration-s", args.duration_s),
        ("--drain-timeout-s", args.drain_timeout_s),
        ("--connect-timeout-s", args.connect_timeout_s),
    ] {
        if !(v.is_finite() && (0.0..=86_400.0).contains(&v)) {
            bail!("{name} must be between 0 and 86400 seconds");
        }
    }
    if args.duration_s <= 0.0 {
        bail!("--duration-s must be above 0");
    }
    if args.connect_concurrency == 0 {
        bail!("--connect-concurrency must be at least 1");
    }
    if !args
        .doc_prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        bail!("--doc-prefix may use only A-Z a-z 0-9 . _ - /");
    }
    Ok(())
}

/// Document id of document `d`.
fn doc_id(args: &LoadArgs, d: usize) -> String {
    format!("{}/doc-{d}.rs", args.doc_prefix)
}

/// Server and own counters at one edge of the measurement window.
#[derive(Debug, Clone)]
pub struct WindowSample {
    /// When.
    pub at: Instant,
    /// Each server, if readable.
    pub servers: Vec<Option<ProcSample>>,
    /// Bytes received by the clients so far.
    pub bytes_in: u64,
    /// Bytes sent by the clients so far.
    pub bytes_out: u64,
    /// CPU seconds of the load generator.
    pub own_cpu_s: f64,
    /// 1-minute load average of the machine.
    pub loadavg: f64,
}

impl WindowSample {
    fn take(servers: &dyn Fn() -> Vec<Option<ProcSample>>) -> WindowSample {
        WindowSample {
            at: Instant::now(),
            servers: servers(),
            bytes_in: system::BYTES_IN.load(Ordering::Relaxed),
            bytes_out: system::BYTES_OUT.load(Ordering::Relaxed),
            own_cpu_s: system::own_cpu_s(),
            loadavg: system::load_average(),
        }
    }
}

fn merge(into: &mut ThreadStats, from: ThreadStats) {
    let _ = into.ack_us.add(&from.ack_us);
    let _ = into.peers_us.add(&from.peers_us);
    into.acks_in_window += from.acks_in_window;
    into.edits_in_window += from.edits_in_window;
    into.ops_sent_in_window += from.ops_sent_in_window;
    into.cursors_sent += from.cursors_sent;
    for (code, n) in from.errors {
        *into.errors.entry(code).or_insert(0) += n;
    }
    into.resends += from.resends;
    into.resyncs += from.resyncs;
    into.disconnects += from.disconnects;
    for reason in from.disconnect_reasons {
        if into.disconnect_reasons.len() < 8 {
            into.disconnect_reasons.push(reason);
        }
    }
    into.untracked += from.untracked;
}

/// One worker thread: its documents' clients on a single-threaded runtime.
fn worker(
    thread: usize,
    threads: usize,
    args: &LoadArgs,
    config: ClientConfig,
    global: Arc<Global>,
) -> anyhow::Result<ThreadResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a runtime")?;
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(ThreadStats::new()));
    let config = Rc::new(config);
    let permits = (args.connect_concurrency / threads).max(1);
    let connect_permit = Rc::new(tokio::sync::Semaphore::new(permits));
    let mut docs: HashMap<usize, Rc<RefCell<DocState>>> = HashMap::new();
    for d in (thread..args.docs).step_by(threads) {
        let clients = (d..args.clients).step_by(args.docs).count();
        docs.insert(
            d,
            Rc::new(RefCell::new(DocState::new(doc_id(args, d), clients))),
        );
    }
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        let d = index % args.docs;
        let Some(doc) = docs.get(&d) else { continue };
        let url = args.nodes[index % args.nodes.len()].clone();
        tasks.push(local.spawn_local(client::run_client(
            index,
            index == d,
            url,
            doc.clone(),
            stats.clone(),
            config.clone(),
            global.clone(),
            connect_permit.clone(),
        )));
    }
    local.block_on(&runtime, async {
        for task in tasks {
            let _ = task.await;
        }
    });
    drop(local);
    let stats = Rc::try_unwrap(stats)
        .map_err(|_| anyhow::anyhow!("clients still hold the statistics"))?
        .into_inner();
    let mut outcomes: Vec<DocOutcome> = docs
        .into_values()
        .map(|doc| {
            let doc = doc.borrow();
            DocOutcome {
                id: doc.id.clone(),
                finals: doc.finals.clone(),
                acked_tokens: doc.acked_tokens.clone(),
                sent_tokens: doc.sent_tokens.clone(),
                unfinished_tracks: doc.unfinished_tracks(),
            }
        })
        .collect();
    outcomes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(ThreadResult {
        stats,
        docs: outcomes,
    })
}

/// Fresh snapshots (revision and text) of `ids`, one after another over one new connection.
fn snapshots(url: &str, ids: &[String]) -> anyhow::Result<Vec<(u64, String)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut socket = tokio::time::timeout(SNAPSHOT_TIMEOUT, client::connect(url))
            .await
            .context("connect timed out")??;
        socket
            .send(Message::text(
                r##"{"type":"hello","client":null,"name":"checker","color":"#98c379"}"##,
            ))
            .await?;
        tokio::time::timeout(SNAPSHOT_TIMEOUT, client::expect(&mut socket, "welcome"))
            .await
            .context("hello timed out")??;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            socket
                .send(Message::text(format!(r#"{{"type":"open","doc":"{id}"}}"#)))
                .await?;
            let snapshot = tokio::time::timeout(SNAPSHOT_TIMEOUT, async {
                while let Some(message) = socket.next().await {
                    if let Message::Text(text) = message? {
                        let msg: Incoming<'_> = serde_json::from_str(text.as_str())?;
                        if msg.kind == "opened" && msg.doc.as_deref() == Some(id.as_str()) {
                            let rev = msg.rev.unwrap_or(0);
                            let text = msg
                                .text
                                .map(|t| t.into_owned())
                                .context("opened without text")?;
                            return Ok::<_, anyhow::Error>((rev, text));
                        }
                        if msg.kind == "error" {
                            bail!("opening {id}: {}", text.as_str());
                        }
                    }
                }
                bail!("the connection closed while opening {id}")
            })
            .await
            .with_context(|| format!("snapshot of {id} timed out"))??;
            socket
                .send(Message::text(format!(r#"{{"type":"close","doc":"{id}"}}"#)))
                .await?;
            out.push(snapshot);
        }
        let _ = socket.close(None).await;
        Ok(out)
    })
}
