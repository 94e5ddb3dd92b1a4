//! Typed configuration of a Chorus node: TOML file < `CHORUS_*` env < CLI flags, with defaults.
//!
//! # Layout
//! - this file: [`Config`] and its sections, their defaults, and [`Config::load`] / [`Config::load_from`].
//! - [`defaults`]: the default value of every setting, as constants.
//! - `cli`: the `chorus` command line (one flag and one environment variable per setting) and how
//!   flag / env values override the file.
//! - `file`: reading the TOML file.
//! - `validate`: range and consistency checks behind [`Config::validate`].
//! - [`ConfigError`]: everything that can go wrong, naming the file, variable, flag or setting.
//!
//! # Sources and precedence
//! 1. Defaults ([`Config::default`]) for a single node.
//! 2. The TOML file named by `--config FILE` or `CHORUS_CONFIG` (no file by default). Missing keys
//!    keep their default; an unknown key is an error that names it.
//! 3. Environment variables `CHORUS_<SETTING>` (upper snake case of the field name, e.g.
//!    `CHORUS_MAX_FRAME_BYTES`; lists are comma-separated: `CHORUS_TOKENS=a,b`). An empty variable
//!    counts as unset.
//! 4. Flags `--<setting>` (kebab case of the field name, e.g. `--max-frame-bytes`; `--token`,
//!    `--read-only-token` and `--redis-sentinel` are repeatable). A flag wins over its variable.
//!
//! The merged result is then checked by [`Config::validate`].
//!
//! # Single node or cluster
//! By default a node runs alone on its embedded store. Setting `cluster.redis` (`--redis`,
//! `CHORUS_REDIS`) makes it a cluster member ([`Config::is_cluster`]): nodes coordinate through
//! that Redis and talk to each other over their cluster listener (`cluster.cluster_listen`), and
//! then `cluster.cluster_cookie` is required and `node_name` must be unique within the cluster.
//! Without `cluster.redis` the other `[cluster]` settings are range-checked but unused.
//!
//! # TOML file
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "./data"          # relative paths are relative to the working directory
//! node_name = "chorus-1"
//! log = "info"
//! shutdown_grace_ms = 10000
//! worker_threads = 0           # async runtime threads; 0 = one per CPU core
//!
//! [auth]
//! allow_anonymous = true
//! tokens = []
//! read_only_tokens = []
//!
//! [limits]
//! max_frame_bytes = 1048576
//! max_document_chars = 10000000
//! op_rate_per_s = 200.0
//! op_burst = 400
//! max_open_documents = 64
//! max_connections = 20000
//!
//! [document]
//! history_ops = 10000
//! idle_timeout_ms = 60000
//! compact_every_ops = 10000
//! max_batch_ops = 1024
//! max_dedup_clients = 100000
//! max_restarts = 5
//! restart_window_ms = 60000
//!
//! [store]
//! fsync = "always"             # or "group" (node-wide group commit), or "never"
//!
//! [websocket]
//! ping_interval_ms = 15000
//! ping_timeout_ms = 45000
//! outbound_queue_frames = 4096
//!
//! [cluster]                    # all optional; only used when `redis` is set
//! redis = "redis://127.0.0.1:6379/0"   # or rediss:// for TLS; unset = single node
//! redis_sentinels = []         # ["10.0.0.1:26379", ...]: find the Redis primary through these
//! redis_master_name = "mymaster"
//! redis_key_prefix = "chorus:"
//! redis_wait_replicas = 0
//! redis_wait_timeout_ms = 200
//! redis_timeout_ms = 1000
//! cluster_listen = "127.0.0.1:8090"
//! # cluster_advertise = "10.0.0.5:8090"     # default: the bound cluster_listen address
//! cluster_cookie = ""          # shared secret, required (>= 8 characters) when redis is set
//! # public_url = "ws://chorus-1.example.com:8080/ws"   # default: derived from listen
//! lease_ms = 1500
//! renew_interval_ms = 1000
//! heartbeat_interval_ms = 250
//! heartbeat_timeout_ms = 1500
//! drain_timeout_ms = 10000
//! ```

#![warn(missing_docs)]

mod cli;
pub mod defaults;
mod error;
mod file;
mod validate;

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

pub use error::ConfigError;

/// Everything a Chorus node is configured with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP / WebSocket server listens on.
    pub listen: SocketAddr,
    /// Directory holding the document store.
    pub data_dir: PathBuf,
    /// Name of this node: 1-64 characters from `A-Z a-z 0-9 . _ -`. In a cluster
    /// ([`Config::is_cluster`]) every node must have a different name.
    pub node_name: String,
    /// Log filter in `tracing_subscriber::EnvFilter` syntax, e.g. `info,chorus_actors=debug`.
    pub log: String,
    /// Client authentication.
    pub auth: AuthConfig,
    /// Per-connection and per-node resource limits.
    pub limits: LimitsConfig,
    /// Document actor behaviour: history, idle stop, compaction, batching, supervision.
    pub document: DocumentConfig,
    /// Durability of the document store.
    pub store: StoreConfig,
    /// WebSocket keep-alive and back-pressure.
    pub websocket: WebSocketConfig,
    /// Clustering through Redis; a single node unless `cluster.redis` is set.
    pub cluster: ClusterConfig,
    /// How long SIGTERM waits for in-flight ops and store flushes before closing sockets, in ms.
    pub shutdown_grace_ms: u64,
    /// Threads of the async runtime that runs every actor and connection (0 = one per CPU
    /// core). Disk writes run on separate blocking threads either way. On a machine shared with
    /// other busy processes (a load generator, say), fewer threads than cores can cost less CPU
    /// per op and cut latency (docs/BENCHMARKS.md).
    pub worker_threads: usize,
}

/// Who may connect: anonymous clients and bearer tokens.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether clients without a token may connect (read-write).
    pub allow_anonymous: bool,
    /// Bearer tokens granting read-write access.
    pub tokens: Vec<String>,
    /// Bearer tokens granting read-only access.
    pub read_only_tokens: Vec<String>,
}

/// Resource limits that protect a node from any single client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest WebSocket frame accepted, in bytes (1 KiB ..= 64 MiB).
    pub max_frame_bytes: usize,
    /// Largest document, in Unicode code points (1 ..= 100 000 000).
    pub max_document_chars: usize,
    /// Token-bucket refill rate for ops, per connection per second (> 0).
    pub op_rate_per_s: f64,
    /// Token-bucket size: ops a connection may send in a burst (>= 1).
    pub op_burst: u32,
    /// Documents one connection may have open at once (>= 1).
    pub max_open_documents: usize,
    /// Concurrent connections this node accepts (>= 1).
    pub max_connections: usize,
}

/// How document actors keep history, persist, and recover.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentConfig {
    /// Ops kept in memory for transforming late ops and resuming clients (>= 1).
    pub history_ops: usize,
    /// A document actor with no subscribers stops after this long, in ms.
    pub idle_timeout_ms: u64,
    /// Snapshot the document and truncate its log after this many logged ops (>= 1).
    pub compact_every_ops: usize,
    /// Group commit: most ops written to the store in one write (>= 1).
    pub max_batch_ops: usize,
    /// Bound on the per-document exactly-once (client, sequence) table, in clients (>= 1).
    pub max_dedup_clients: usize,
    /// Supervisor restart intensity: restarts allowed within one window.
    pub max_restarts: u32,
    /// Supervisor restart window, in ms (>= 1).
    pub restart_window_ms: u64,
}

/// Durability settings of the document store.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// When the store forces writes to disk.
    pub fsync: FsyncPolicy,
}

/// When the store calls fsync; written `"always"`, `"group"` or `"never"` in the file, env and
/// flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync every committed batch before acknowledging it: survives power loss.
    #[default]
    Always,
    /// As `always`, but one `syncfs` of the data dir's file system makes the batches of every
    /// document durable together (node-wide group commit): much less CPU and latency under many
    /// active documents. For a data dir on a file system of its own (`syncfs` flushes everything
    /// dirty there).
    Group,
    /// Leave flushing to the OS: survives `kill -9` of the process, not power loss.
    Never,
}

/// WebSocket keep-alive and outbound back-pressure.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Interval between server pings, in ms (>= 1).
    pub ping_interval_ms: u64,
    /// Drop a client that sent nothing for this long, in ms (> `ping_interval_ms`).
    pub ping_timeout_ms: u64,
    /// Per-connection send queue bound, in frames; a client this far behind is disconnected (>= 1).
    pub outbound_queue_frames: usize,
}

/// Clustering: the Redis that coordinates the nodes, the node-to-node listener, and the timings of
/// leases, heartbeats and hand-over. Only `redis` decides whether the node is a cluster member.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Redis URL, `redis://` or `rediss://` (TLS), e.g. `redis://127.0.0.1:6379/0`. Setting it
    /// makes this node a cluster member; `None` = a single node on the embedded store. With
    /// `redis_sentinels`, the URL still supplies scheme, credentials and database, while the
    /// primary's address comes from the sentinels.
    pub redis: Option<String>,
    /// Redis Sentinels as `HOST:PORT`; when non-empty, the Redis primary is found through them
    /// (requires `redis`).
    pub redis_sentinels: Vec<String>,
    /// Name of the monitored primary that the sentinels are asked for.
    pub redis_master_name: String,
    /// Prefix of every Redis key this cluster uses: 1-64 characters, no whitespace or braces.
    pub redis_key_prefix: String,
    /// Replicas that must confirm a write (Redis `WAIT`) before it is acknowledged; 0 = the
    /// primary's confirmation suffices.
    pub redis_wait_replicas: u32,
    /// How long `WAIT` waits for `redis_wait_replicas`, in ms (>= 1; below `redis_timeout_ms`
    /// when `redis_wait_replicas` > 0).
    pub redis_wait_timeout_ms: u64,
    /// Response timeout of every Redis command, in ms (>= 1); replaces the redis crate's own
    /// default.
    pub redis_timeout_ms: u64,
    /// Address the node-to-node (ractor_cluster) listener binds; port 0 = any free port.
    pub cluster_listen: SocketAddr,
    /// `HOST:PORT` other nodes use to reach this node's cluster listener; `None` = the address
    /// `cluster_listen` is bound to (required if that is 0.0.0.0 or `[::]`).
    pub cluster_advertise: Option<String>,
    /// Shared secret of the cluster (at least 8 characters, required when `redis` is set). Never
    /// shown by `Debug`, `--help` or errors.
    pub cluster_cookie: String,
    /// This node's client-facing WebSocket URL (`ws://` or `wss://`) as advertised to clients, for
    /// redirects; `None` = `ws://<bound listen address>/ws` (required if `listen` is 0.0.0.0 or
    /// `[::]`).
    pub public_url: Option<String>,
    /// TTL of this node's liveness key in Redis, in ms (500 ..= 60 000).
    pub lease_ms: u64,
    /// Interval between renewals of the liveness key, in ms (1 ..= `lease_ms` / 2).
    pub renew_interval_ms: u64,
    /// Interval between node-to-node heartbeats, in ms (>= 1).
    pub heartbeat_interval_ms: u64,
    /// A peer silent for this long is considered failed, in ms (> `heartbeat_interval_ms`).
    pub heartbeat_timeout_ms: u64,
    /// How long the hand-over of this node's documents on SIGTERM may take, in ms.
    pub drain_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: defaults::LISTEN,
            data_dir: PathBuf::from(defaults::DATA_DIR),
            node_name: defaults::NODE_NAME.to_owned(),
            log: defaults::LOG.to_owned(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            document: DocumentConfig::default(),
            store: StoreConfig::default(),
            websocket: WebSocketConfig::default(),
            cluster: ClusterConfig::default(),
            shutdown_grace_ms: defaults::SHUTDOWN_GRACE_MS,
            worker_threads: defaults::WORKER_THREADS,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: defaults::ALLOW_ANONYMOUS,
            tokens: Vec::new(),
            read_only_tokens: Vec::new(),
        }
    }
}

/// Tokens are secrets: `Debug` prints how many there are, never their values.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field(
                "read_only_tokens",
                &format_args!("<{} redacted>", self.read_only_tokens.len()),
            )
            .finish()
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: defaults::MAX_FRAME_BYTES,
            max_document_chars: defaults::MAX_DOCUMENT_CHARS,
            op_rate_per_s: defaults::OP_RATE_PER_S,
            op_burst: defaults::OP_BURST,
            max_open_documents: defaults::MAX_OPEN_DOCUMENTS,
            max_connections: defaults::MAX_CONNECTIONS,
        }
    }
}

impl Default for DocumentConfig {
    fn default() -> Self {
        DocumentConfig {
            history_ops: defaults::HISTORY_OPS,
            idle_timeout_ms: defaults::IDLE_TIMEOUT_MS,
            compact_every_ops: defaults::COMPACT_EVERY_OPS,
            max_batch_ops: defaults::MAX_BATCH_OPS,
            max_dedup_clients: defaults::MAX_DEDUP_CLIENTS,
            max_restarts: defaults::MAX_RESTARTS,
            restart_window_ms: defaults::RESTART_WINDOW_MS,
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            ping_interval_ms: defaults::PING_INTERVAL_MS,
            ping_timeout_ms: defaults::PING_TIMEOUT_MS,
            outbound_queue_frames: defaults::OUTBOUND_QUEUE_FRAMES,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            redis_sentinels: Vec::new(),
            redis_master_name: defaults::REDIS_MASTER_NAME.to_owned(),
            redis_key_prefix: defaults::REDIS_KEY_PREFIX.to_owned(),
            redis_wait_replicas: defaults::REDIS_WAIT_REPLICAS,
            redis_wait_timeout_ms: defaults::REDIS_WAIT_TIMEOUT_MS,
            redis_timeout_ms: defaults::REDIS_TIMEOUT_MS,
            cluster_listen: defaults::CLUSTER_LISTEN,
            cluster_advertise: None,
            cluster_cookie: String::new(),
            public_url: None,
            lease_ms: defaults::LEASE_MS,
            renew_interval_ms: defaults::RENEW_INTERVAL_MS,
            heartbeat_interval_ms: defaults::HEARTBEAT_INTERVAL_MS,
            heartbeat_timeout_ms: defaults::HEARTBEAT_TIMEOUT_MS,
            drain_timeout_ms: defaults::DRAIN_TIMEOUT_MS,
        }
    }
}

/// The cookie is a secret: `Debug` shows whether it is set, never its value. Credentials in the
/// Redis and public URLs (`user:password@`) are redacted too.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cookie = if self.cluster_cookie.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        };
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redis.as_deref().map(redact_url))
            .field("redis_sentinels", &self.redis_sentinels)
            .field("redis_master_name", &self.redis_master_name)
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("redis_wait_replicas", &self.redis_wait_replicas)
            .field("redis_wait_timeout_ms", &self.redis_wait_timeout_ms)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("cluster_listen", &self.cluster_listen)
            .field("cluster_advertise", &self.cluster_advertise)
            .field("cluster_cookie", &format_args!("{cookie}"))
            .field("public_url", &self.public_url.as_deref().map(redact_url))
            .field("lease_ms", &self.lease_ms)
            .field("renew_interval_ms", &self.renew_interval_ms)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("heartbeat_timeout_ms", &self.heartbeat_timeout_ms)
            .field("drain_timeout_ms", &self.drain_timeout_ms)
            .finish()
    }
}

/// `url` with any `user:password@` before the host replaced by `<redacted>@`, for `Debug` and
/// error messages (also when the scheme is missing or wrong).
pub(crate) fn redact_url(url: &str) -> Cow<'_, str> {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}<redacted>{}", &rest[at..])),
        None => Cow::Borrowed(url),
    }
}

impl FsyncPolicy {
    /// The spelling used in the file, env and flags: `"always"`, `"group"` or `"never"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Group => "group",
            FsyncPolicy::Never => "never",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses exactly `"always"`, `"group"` or `"never"`.
impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "group" => Ok(FsyncPolicy::Group),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!("unknown fsync policy {other:?}")),
        }
    }
}

impl Config {
    /// Parses `std::env::args_os()` and the process environment; exits with clap's help/version on
    /// `--help` / `--version`; returns `Err` on anything invalid.
    pub fn load() -> Result<Config, ConfigError> {
        match Config::load_from(std::env::args_os()) {
            Err(ConfigError::Cli(e))
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                e.exit()
            }
            other => other,
        }
    }

    /// Same as [`Config::load`] from explicit args (`args[0]` is the program name), returning
    /// help/version as `Err(ConfigError::Cli)`. Env vars are still read from the process.
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut parsed = cli::Parsed::parse(args)?;
        let mut config = match parsed.config_file()? {
            Some(path) => file::read(&path)?,
            None => Config::default(),
        };
        parsed.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting; the error names the setting, the bad value and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// Whether this node is a cluster member, i.e. `cluster.redis` is set; otherwise it runs alone
    /// on the embedded store.
    pub fn is_cluster(&self) -> bool {
        self.cluster.redis.is_some()
    }

    /// The `chorus` command definition (every flag, its env var and help), e.g. for `--help` text,
    /// man pages or shell completions.
    pub fn command() -> clap::Command {
        cli::command()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_single_node_values() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.node_name, "chorus-1");
        assert_eq!(c.log, "info");
        assert_eq!(c.shutdown_grace_ms, 10_000);
        assert!(c.auth.allow_anonymous);
        assert!(c.auth.tokens.is_empty());
        assert!(c.auth.read_only_tokens.is_empty());
        assert_eq!(c.limits.max_frame_bytes, 1_048_576);
        assert_eq!(c.limits.max_document_chars, 10_000_000);
        assert_eq!(c.limits.op_rate_per_s, 200.0);
        assert_eq!(c.limits.op_burst, 400);
        assert_eq!(c.limits.max_open_documents, 64);
        assert_eq!(c.limits.max_connections, 20_000);
        assert_eq!(c.document.history_ops, 10_000);
        assert_eq!(c.document.idle_timeout_ms, 60_000);
        assert_eq!(c.document.compact_every_ops, 10_000);
        assert_eq!(c.document.max_batch_ops, 1_024);
        assert_eq!(c.document.max_dedup_clients, 100_000);
        assert_eq!(c.document.max_restarts, 5);
        assert_eq!(c.document.restart_window_ms, 60_000);
        assert_eq!(c.store.fsync, FsyncPolicy::Always);
        assert_eq!(c.websocket.ping_interval_ms, 15_000);
        assert_eq!(c.websocket.ping_timeout_ms, 45_000);
        assert_eq!(c.websocket.outbound_queue_frames, 4_096);
        let k = &c.cluster;
        assert_eq!(k.redis, None);
        assert!(!c.is_cluster(), "a single node by default");
        assert!(k.redis_sentinels.is_empty());
        assert_eq!(k.redis_master_name, "mymaster");
        assert_eq!(k.redis_key_prefix, "chorus:");
        assert_eq!(k.redis_wait_replicas, 0);
        assert_eq!(k.redis_wait_timeout_ms, 200);
        assert_eq!(k.redis_timeout_ms, 1_000);
        assert_eq!(
            k.cluster_listen,
            "127.0.0.1:8090".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(k.cluster_advertise, None);
        assert_eq!(k.cluster_cookie, "");
        assert_eq!(k.public_url, None);
        assert_eq!(k.lease_ms, 1_500);
        assert_eq!(k.renew_interval_ms, 300);
        assert_eq!(k.heartbeat_interval_ms, 200);
        assert_eq!(k.heartbeat_timeout_ms, 1_000);
        assert_eq!(k.drain_timeout_ms, 10_000);
        c.validate().unwrap();
    }

    #[test]
    fn is_cluster_follows_redis() {
        let mut c = Config::default();
        c.cluster.redis_sentinels = vec!["10.0.0.1:26379".into()];
        c.cluster.cluster_cookie = "a-cookie-value".into();
        assert!(!c.is_cluster(), "only redis decides");
        c.cluster.redis = Some("redis://127.0.0.1:6379/0".into());
        assert!(c.is_cluster());
    }

    #[test]
    fn empty_toml_is_the_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn debug_redacts_tokens() {
        let mut c = Config::default();
        c.auth.tokens = vec!["s3cret-rw".into()];
        c.auth.read_only_tokens = vec!["s3cret-ro".into(), "other".into()];
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("<1 redacted>") && shown.contains("<2 redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn debug_redacts_the_cookie_and_url_credentials() {
        let mut c = Config::default();
        assert!(format!("{c:?}").contains("cluster_cookie: <unset>"));
        c.cluster.cluster_cookie = "s3cret-cookie".into();
        c.cluster.redis = Some("rediss://user:s3cret-pw@redis.internal:6380/2".into());
        c.cluster.public_url = Some("wss://u:s3cret-ws@chorus.example.com/ws".into());
        let shown = format!("{c:?} {c:#?} {:?}", c.cluster);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("cluster_cookie: <redacted>"), "{shown}");
        assert!(
            shown.contains("rediss://<redacted>@redis.internal:6380/2"),
            "{shown}"
        );
        assert!(
            shown.contains("wss://<redacted>@chorus.example.com/ws"),
            "{shown}"
        );
    }

    #[test]
    fn redact_url_hides_only_credentials() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:pw@h:1/0", "redis://<redacted>@h:1/0"),
            ("redis://u:p@ss@h", "redis://<redacted>@h"),
            ("u:pw@h:1", "<redacted>@h:1"),
            ("http://h/p@th", "http://h/p@th"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn fsync_policy_round_trips() {
        for p in [FsyncPolicy::Always, FsyncPolicy::Group, FsyncPolicy::Never] {
            assert_eq!(p.as_str().parse::<FsyncPolicy>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
