//! Real processes for the cluster chaos tests: one `redis-server` and several `chorus` nodes on
//! free loopback ports, each with its own directory and log file. Everything is killed when the
//! [`Cluster`] is dropped, also when a test panics (then the logs' tails are printed and the
//! directory is kept for a post-mortem; `CHORUS_CHAOS_KEEP=1` keeps it always).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use chorus_node::cluster::placement::{preferred_owner, Candidate};

use super::client::open_and_close;
use super::resp::{Reply, Resp};

/// How long redis-server may take to answer PING after its start.
const REDIS_START_DEADLINE: Duration = Duration::from_secs(10);

/// How long a chorus node may take from spawn to `/readyz` answering 200 (a debug build on a
/// busy two-core machine starts in well under a second; this is the failure bound).
pub const NODE_START_DEADLINE: Duration = Duration::from_secs(30);

/// How long the members list in Redis may take to show every expected node live.
pub const MEMBERS_DEADLINE: Duration = Duration::from_secs(20);

/// Pause between two looks of a bounded poll loop.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long every router may take to place new documents where rendezvous hashing over all
/// running nodes says (routers learn members every renewal and peers by connecting to them).
pub const PLACEMENT_DEADLINE: Duration = Duration::from_secs(20);

/// Fresh probe documents opened through each node per round while waiting for placement.
const PROBES_PER_NODE: usize = 4;

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// The shared secret every test cluster uses.
const COOKIE: &str = "chaos-test-cookie";

/// The `chorus` binary: `$CHORUS_BIN`, else `target/<profile>/chorus` next to this test
/// executable (`target/<profile>/deps/cluster-…`). Panics with a hint when it is missing.
pub fn chorus_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CHORUS_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CHORUS_BIN={} is not a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("chorus{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the chorus binary is missing at {}: build it first with `cargo build --bin chorus` (same \
         CARGO_TARGET_DIR and profile as the tests), or point CHORUS_BIN at it",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port address").port()
}

/// Makes the child die with the test process, even if the test process is SIGKILLed (e.g. by a
/// CI timeout). PDEATHSIG follows the spawning *thread*: the harness spawns from the test's own
/// thread (or a runtime worker), which lives as long as the test.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Sends a signal to a process by its id.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid of a child this harness started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// A `redis-server` child with its own directory, no persistence.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts it and waits until it answers PING.
    pub async fn start(dir: &Path) -> RedisServer {
        std::fs::create_dir_all(dir).expect("create the redis directory");
        let port = free_port();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .expect("spawn redis-server (is Redis installed and on PATH?)");
        let server = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + REDIS_START_DEADLINE;
        loop {
            if let Ok(mut conn) = Resp::connect(port).await {
                if let Ok(Reply::Simple(pong)) = conn.command(&["PING"]).await {
                    if pong == "PONG" {
                        return server;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING in time"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A new connection.
    pub async fn connect(&self) -> Resp {
        Resp::connect(self.port)
            .await
            .expect("connect to the test redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How to start one node (kept for restarts with the same name and ports).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `--node-name`.
    pub name: String,
    /// `--listen` port.
    pub http_port: u16,
    /// `--cluster-listen` port.
    pub cluster_port: u16,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Where stdout and stderr go (appended across restarts).
    pub log_path: PathBuf,
}

/// One `chorus` process (or none, between a kill and a restart).
pub struct NodeProc {
    /// How it is started.
    pub spec: NodeSpec,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl NodeProc {
    /// The client URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.spec.http_port)
    }

    /// Its process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A live member as recorded in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node name.
    pub node: String,
    /// Incarnation id.
    pub incarnation: String,
    /// Handing its documents over.
    pub draining: bool,
    /// Whether its liveness key exists.
    pub live: bool,
}

/// Redis plus chorus nodes, all killed on drop.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    /// The Redis server.
    pub redis: RedisServer,
    /// `--redis-key-prefix` of this cluster.
    pub prefix: String,
    /// The nodes, by index.
    pub nodes: Vec<NodeProc>,
    extra_args: Vec<String>,
    bin: PathBuf,
    probe_rounds: u32,
}

impl Cluster {
    /// Starts Redis and `count` nodes named `<test>-n<i>` with `extra_args` appended to each
    /// command line; waits until each is ready and all are live members.
    pub async fn start(test: &str, count: usize, extra_args: &[&str]) -> Cluster {
        let bin = chorus_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("chorus-chaos-{test}-"))
            .tempdir()
            .expect("a temp dir");
        let redis = RedisServer::start(&dir.path().join("redis")).await;
        let prefix = format!("chaos:{test}:{:08x}:", rand::random::<u32>());
        let mut cluster = Cluster {
            nodes: Vec::new(),
            redis,
            prefix,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            bin,
            dir: Some(dir),
            probe_rounds: 0,
        };
        let mut ports = BTreeSet::new();
        ports.insert(cluster.redis.port);
        let mut next_port = || loop {
            let port = free_port();
            if ports.insert(port) {
                return port;
            }
        };
        for i in 0..count {
            let name = format!("{test}-n{i}");
            let base = cluster.dir().join(&name);
            let spec = NodeSpec {
                name,
                http_port: next_port(),
                cluster_port: next_port(),
                data_dir: base.join("data"),
                log_path: cluster.dir().join(format!("n{i}.log")),
            };
            cluster.nodes.push(NodeProc {
                spec,
                child: None,
                starts: 0,
            });
        }
        for i in 0..count {
            cluster.spawn(i);
        }
        for i in 0..count {
            cluster.wait_ready(i).await;
        }
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.spec.name.clone()).collect();
        cluster.wait_members(&names).await;
        cluster.wait_placement_settled().await;
        eprintln!(
            "[{test}] cluster up: redis :{}, nodes {:?}",
            cluster.redis.port,
            cluster.describe()
        );
        cluster
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the cluster directory").path()
    }

    /// `name@http_port` of every node, for messages.
    pub fn describe(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}@{}", n.spec.name, n.spec.http_port))
            .collect()
    }

    /// Name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].spec.name
    }

    /// Index of the node called `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("no node named {name} in {:?}", self.describe()))
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Every node's URL, starting with node `first` (a client's fail-over order).
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        let n = self.nodes.len();
        (0..n).map(|k| self.url((first + k) % n)).collect()
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(
            node.child.is_none(),
            "node {} is already running",
            node.spec.name
        );
        std::fs::create_dir_all(&node.spec.data_dir).expect("create the data dir");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.spec.log_path)
            .expect("open the node log");
        let _ = writeln!(
            log,
            "===== chaos harness: start #{} of {} =====",
            node.starts + 1,
            node.spec.name
        );
        let err_log: File = log.try_clone().expect("clone the log handle");
        let redis_url = format!("redis://127.0.0.1:{}/0", self.redis.port);
        let mut command = Command::new(&self.bin);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.spec.http_port))
            .arg("--data-dir")
            .arg(&node.spec.data_dir)
            .args([
                "--node-name",
                &node.spec.name,
                "--redis",
                &redis_url,
                "--redis-key-prefix",
                &self.prefix,
            ])
            .arg("--cluster-listen")
            .arg(format!("127.0.0.1:{}", node.spec.cluster_port))
            .args(["--log", "info"])
            .args(&self.extra_args)
            .env("CHORUS_CLUSTER_COOKIE", COOKIE)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log));
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        node.child = Some(child);
        node.starts += 1;
    }

    /// Polls `/readyz` of node `i` until it answers 200; panics (with its log) if the process
    /// exits or the deadline passes.
    pub async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + NODE_START_DEADLINE;
        let port = self.nodes[i].spec.http_port;
        loop {
            if let Some(status) = self.try_exit_status(i) {
                panic!(
                    "node {} exited with {status} while starting; log:\n{}",
                    self.name(i),
                    self.log_tail(i, LOG_TAIL_LINES)
                );
            }
            if http_status(port, "/readyz").await == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready in time; log:\n{}",
                self.name(i),
                self.log_tail(i, LOG_TAIL_LINES)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until every name in `names` has a live, non-draining member record.
    pub async fn wait_members(&self, names: &[String]) {
        let deadline = Instant::now() + MEMBERS_DEADLINE;
        loop {
            let members = self.members().await;
            let live: BTreeSet<&str> = members
                .iter()
                .filter(|m| m.live && !m.draining)
                .map(|m| m.node.as_str())
                .collect();
            if names.iter().all(|n| live.contains(n.as_str())) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "members not all live in time: want {names:?}, have {members:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The member records in Redis, with whether each one's liveness key exists.
    pub async fn members(&self) -> Vec<Member> {
        let mut conn = self.redis.connect().await;
        let key = format!("{}members", self.prefix);
        let reply = conn
            .command(&["HGETALL", &key])
            .await
            .expect("HGETALL members");
        let items = reply.items();
        let mut members = Vec::new();
        for pair in items.chunks(2) {
            let (Some(incarnation), Some(record)) =
                (pair[0].text(), pair.get(1).and_then(Reply::text))
            else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_str(&record).unwrap_or_default();
            let live_key = format!("{}live:{incarnation}", self.prefix);
            let live = conn
                .command(&["EXISTS", &live_key])
                .await
                .expect("EXISTS")
                .integer()
                == Some(1);
            members.push(Member {
                node: value["node"].as_str().unwrap_or_default().to_owned(),
                incarnation,
                draining: value["draining"].as_bool().unwrap_or(false),
                live,
            });
        }
        members.sort_by(|a, b| a.node.cmp(&b.node));
        members
    }

    /// Whether the liveness key of `incarnation` exists.
    pub async fn liveness_exists(&self, incarnation: &str) -> bool {
        let mut conn = self.redis.connect().await;
        let key = format!("{}live:{incarnation}", self.prefix);
        conn.command(&["EXISTS", &key])
            .await
            .expect("EXISTS")
            .integer()
            == Some(1)
    }

    /// The Redis key of a document's owner hash.
    pub fn owner_key(&self, doc: &str) -> String {
        format!("{}doc:{{{doc}}}:owner", self.prefix)
    }

    /// The node name recorded as the owner of `doc` (None when unowned or released).
    pub async fn owner_of(&self, doc: &str) -> Option<String> {
        let mut conn = self.redis.connect().await;
        let reply = conn
            .command(&["HGET", &self.owner_key(doc), "node"])
            .await
            .expect("HGET owner");
        reply.text().filter(|s| !s.is_empty())
    }

    /// Owners of many documents in one pipelined round trip.
    pub async fn owners_of(&self, docs: &[String]) -> Vec<Option<String>> {
        let mut conn = self.redis.connect().await;
        let commands: Vec<Vec<String>> = docs
            .iter()
            .map(|d| vec!["HGET".into(), self.owner_key(d), "node".into()])
            .collect();
        let replies = conn
            .pipeline(&commands)
            .await
            .expect("pipelined HGET owners");
        replies
            .into_iter()
            .map(|r| r.text().filter(|s| !s.is_empty()))
            .collect()
    }

    /// Waits until `doc` has an owner in Redis and returns its node index.
    pub async fn wait_owner(&self, doc: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(owner) = self.owner_of(doc).await {
                return self.index_of(&owner);
            }
            assert!(
                Instant::now() < deadline,
                "{doc} has no owner in Redis after {within:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Process id of node `i` (panics if it is not running).
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i]
            .pid()
            .unwrap_or_else(|| panic!("node {} is not running", self.name(i)))
    }

    /// `kill -9` node `i` and reap it; returns the instant just before the signal.
    pub fn kill9(&mut self, i: usize) -> Instant {
        let mut child = self.nodes[i]
            .child
            .take()
            .unwrap_or_else(|| panic!("node {} is not running", self.name(i)));
        let at = Instant::now();
        child.kill().expect("SIGKILL a chorus node");
        child.wait().expect("reap a chorus node");
        at
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to node `i`; returns the instant just before.
    pub fn signal(&self, i: usize, signal: i32) -> Instant {
        let at = Instant::now();
        send_signal(self.pid(i), signal);
        at
    }

    /// The exit status of node `i` if it has exited (reaping it).
    pub fn try_exit_status(&mut self, i: usize) -> Option<ExitStatus> {
        let node = &mut self.nodes[i];
        let status = node
            .child
            .as_mut()?
            .try_wait()
            .expect("try_wait on a chorus node")?;
        node.child = None;
        Some(status)
    }

    /// Waits until node `i` exits (deadline `within`) and returns its status.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit_status(i) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not exit within {within:?}; log:\n{}",
                self.name(i),
                self.log_tail(i, LOG_TAIL_LINES)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Starts node `i` again with the same name, ports and data dir; waits until it is ready
    /// and a live member.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready(i).await;
        let name = self.name(i).to_owned();
        self.wait_members(&[name]).await;
        self.wait_placement_settled().await;
    }

    /// Index of the node that rendezvous placement prefers for a new document among the
    /// running nodes (the product's own function, by node name).
    pub fn preferred(&self, doc: &str) -> usize {
        let candidates: Vec<Candidate> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| Candidate {
                node: n.spec.name.clone(),
                incarnation: String::new(),
            })
            .collect();
        let owner = preferred_owner(doc, &candidates).expect("a running node");
        self.index_of(&owner.node)
    }

    /// Waits until new documents opened through every node land on their preferred owner:
    /// every router knows every running member and reaches it.
    pub async fn wait_placement_settled(&mut self) {
        let deadline = Instant::now() + PLACEMENT_DEADLINE;
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        loop {
            self.probe_rounds += 1;
            let round = self.probe_rounds;
            let mut misplaced = Vec::new();
            for &i in &running {
                let docs: Vec<String> = (0..PROBES_PER_NODE)
                    .map(|k| format!("probe/r{round}/via{i}-{k}"))
                    .collect();
                if let Err(e) =
                    open_and_close(&self.url(i), &docs, PROBES_PER_NODE, PLACEMENT_DEADLINE).await
                {
                    misplaced.push(format!("through {}: {e}", self.name(i)));
                    continue;
                }
                for (doc, owner) in docs.iter().zip(self.owners_of(&docs).await) {
                    let want = self.name(self.preferred(doc)).to_owned();
                    if owner.as_deref() != Some(want.as_str()) {
                        misplaced.push(format!(
                            "{doc} via {} on {owner:?}, preferred {want}",
                            self.name(i)
                        ));
                    }
                }
            }
            if misplaced.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "placement not settled after {PLACEMENT_DEADLINE:?}: {misplaced:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].spec.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log of node `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].spec.log_path).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("CHORUS_CHAOS_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "CHORUS_CHAOS_KEEP: logs and data kept in {}",
                    dir.keep().display()
                );
            }
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                eprintln!(
                    "----- last lines of {} -----\n{}",
                    self.name(i),
                    self.log_tail(i, LOG_TAIL_LINES)
                );
            }
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "chaos test failed: logs and data kept in {}",
                    kept.display()
                );
            }
        }
    }
}

/// The HTTP status of `GET path` on 127.0.0.1:port (None if the connection fails).
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    let work = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut head[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let head = String::from_utf8_lossy(&head[..got]).into_owned();
        head.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .ok()
        .flatten()
}
