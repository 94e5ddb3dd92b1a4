//! The `chorus` command line: one flag and one `CHORUS_*` env var per setting, overriding the file.
//!
//! Every argument is an untyped `String` for clap; the typed parse happens in
//! [`Parsed::apply`] so that a bad value read from the environment is reported with the variable's
//! name (clap itself would only name the flag). Defaults are declared to clap for `--help` only: a
//! value whose source is the default counts as unset and falls through to the file.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};

use crate::{defaults, Config, ConfigError, FsyncPolicy};

/// Shown at the top of `--help`.
const ABOUT: &str = "Chorus: a clustered, fault-tolerant collaborative code editor node";

/// Shown at the bottom of `--help`.
const AFTER_HELP: &str = "\
Every setting can be given as a flag, as the CHORUS_* environment variable shown with it, or as a \
key in the TOML file named by --config (top-level keys and [auth], [limits], [document], [store], \
[websocket], [cluster] tables named after the flag with '_' for '-'; --token / --read-only-token / \
--redis-sentinel are the keys `tokens` / `read_only_tokens` / `redis_sentinels`). Precedence: flag > \
environment > file > default. List variables are comma-separated; an empty variable counts as \
unset. Without --redis the node runs alone and the other Cluster settings are unused.";

/// Command-line flags and environment variables of a `chorus` node.
#[derive(Debug, Parser)]
#[command(
    name = "chorus",
    bin_name = "chorus",
    version,
    about = ABOUT,
    long_about = None,
    after_long_help = AFTER_HELP,
    allow_negative_numbers = true,
    max_term_width = 100
)]
struct Cli {
    /// TOML configuration file. Its settings are overridden by environment variables and flags.
    /// No file is read unless this is given.
    #[arg(long, env = "CHORUS_CONFIG", value_name = "FILE")]
    config: Option<String>,

    // ---- Server ----
    /// Address (IP:port) the HTTP / WebSocket server listens on.
    #[arg(long, env = "CHORUS_LISTEN", value_name = "ADDR", help_heading = "Server",
          default_value_t = defaults::LISTEN.to_string())]
    listen: String,

    /// Directory holding the document store (created if missing). A relative path is relative to
    /// the working directory.
    #[arg(long, env = "CHORUS_DATA_DIR", value_name = "DIR", help_heading = "Server",
          default_value_t = defaults::DATA_DIR.to_string())]
    data_dir: String,

    /// Name of this node: 1-64 characters from A-Z a-z 0-9 . _ -
    #[arg(long, env = "CHORUS_NODE_NAME", value_name = "NAME", help_heading = "Server",
          default_value_t = defaults::NODE_NAME.to_string())]
    node_name: String,

    /// Log filter, in tracing EnvFilter syntax (e.g. "info,chorus_actors=debug").
    #[arg(long, env = "CHORUS_LOG", value_name = "FILTER", help_heading = "Server",
          default_value_t = defaults::LOG.to_string())]
    log: String,

    /// On SIGTERM, how long to wait for in-flight ops and store flushes before closing sockets, in
    /// milliseconds.
    #[arg(long, env = "CHORUS_SHUTDOWN_GRACE_MS", value_name = "MS", help_heading = "Server",
          default_value_t = defaults::SHUTDOWN_GRACE_MS.to_string())]
    shutdown_grace_ms: String,

    /// Threads of the async runtime that runs actors and connections (0 ..= 1024; 0 = one per
    /// CPU core). Disk writes use separate blocking threads.
    #[arg(long, env = "CHORUS_WORKER_THREADS", value_name = "N", help_heading = "Server",
          default_value_t = defaults::WORKER_THREADS.to_string())]
    worker_threads: String,

    // ---- Auth ----
    /// Whether clients without a token may connect (with read-write access): true or false.
    #[arg(long, env = "CHORUS_ALLOW_ANONYMOUS", value_name = "true|false", help_heading = "Auth",
          default_value_t = defaults::ALLOW_ANONYMOUS.to_string())]
    allow_anonymous: String,

    /// A bearer token granting read-write access. Repeat the flag for several tokens; the
    /// environment variable takes a comma-separated list. Default: none.
    #[arg(long = "token", env = "CHORUS_TOKENS", value_name = "TOKEN", help_heading = "Auth",
          action = ArgAction::Append, hide_env_values = true)]
    tokens: Option<Vec<String>>,

    /// A bearer token granting read-only access. Repeat the flag for several tokens; the
    /// environment variable takes a comma-separated list. Default: none.
    #[arg(long = "read-only-token", env = "CHORUS_READ_ONLY_TOKENS", value_name = "TOKEN",
          help_heading = "Auth", action = ArgAction::Append, hide_env_values = true)]
    read_only_tokens: Option<Vec<String>>,

    // ---- Limits ----
    /// Largest WebSocket frame accepted from a client, in bytes (1024 ..= 67108864, i.e. 1 KiB ..=
    /// 64 MiB).
    #[arg(long, env = "CHORUS_MAX_FRAME_BYTES", value_name = "BYTES", help_heading = "Limits",
          default_value_t = defaults::MAX_FRAME_BYTES.to_string())]
    max_frame_bytes: String,

    /// Largest document, in Unicode code points (1 ..= 100000000).
    #[arg(long, env = "CHORUS_MAX_DOCUMENT_CHARS", value_name = "CHARS", help_heading = "Limits",
          default_value_t = defaults::MAX_DOCUMENT_CHARS.to_string())]
    max_document_chars: String,

    /// Op rate limit: token-bucket refill per connection, in ops per second (> 0, fractions
    /// allowed).
    #[arg(long, env = "CHORUS_OP_RATE_PER_S", value_name = "OPS", help_heading = "Limits",
          default_value_t = defaults::OP_RATE_PER_S.to_string())]
    op_rate_per_s: String,

    /// Op rate limit: token-bucket size, i.e. ops a connection may send in one burst (>= 1).
    #[arg(long, env = "CHORUS_OP_BURST", value_name = "OPS", help_heading = "Limits",
          default_value_t = defaults::OP_BURST.to_string())]
    op_burst: String,

    /// Documents one connection may have open at once, in documents (>= 1).
    #[arg(long, env = "CHORUS_MAX_OPEN_DOCUMENTS", value_name = "N", help_heading = "Limits",
          default_value_t = defaults::MAX_OPEN_DOCUMENTS.to_string())]
    max_open_documents: String,

    /// Concurrent client connections this node accepts, in connections (>= 1).
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS", value_name = "N", help_heading = "Limits",
          default_value_t = defaults::MAX_CONNECTIONS.to_string())]
    max_connections: String,

    // ---- Document ----
    /// Ops of history each document keeps for transforming late ops and resuming clients, in ops
    /// (>= 1).
    #[arg(long, env = "CHORUS_HISTORY_OPS", value_name = "OPS", help_heading = "Document",
          default_value_t = defaults::HISTORY_OPS.to_string())]
    history_ops: String,

    /// A document actor with no subscribers stops after this long, in milliseconds.
    #[arg(long, env = "CHORUS_IDLE_TIMEOUT_MS", value_name = "MS", help_heading = "Document",
          default_value_t = defaults::IDLE_TIMEOUT_MS.to_string())]
    idle_timeout_ms: String,

    /// Snapshot a document and truncate its log after this many logged ops, in ops (>= 1).
    #[arg(long, env = "CHORUS_COMPACT_EVERY_OPS", value_name = "OPS", help_heading = "Document",
          default_value_t = defaults::COMPACT_EVERY_OPS.to_string())]
    compact_every_ops: String,

    /// Group commit: most ops written to the store in one write, in ops (>= 1).
    #[arg(long, env = "CHORUS_MAX_BATCH_OPS", value_name = "OPS", help_heading = "Document",
          default_value_t = defaults::MAX_BATCH_OPS.to_string())]
    max_batch_ops: String,

    /// Bound on each document's exactly-once (client, sequence) table, in clients (>= 1).
    #[arg(long, env = "CHORUS_MAX_DEDUP_CLIENTS", value_name = "N", help_heading = "Document",
          default_value_t = defaults::MAX_DEDUP_CLIENTS.to_string())]
    max_dedup_clients: String,

    /// Supervisor restart intensity: restarts of a document actor allowed within one restart
    /// window, in restarts (0 = never restart).
    #[arg(long, env = "CHORUS_MAX_RESTARTS", value_name = "N", help_heading = "Document",
          default_value_t = defaults::MAX_RESTARTS.to_string())]
    max_restarts: String,

    /// Supervisor restart window, in milliseconds (>= 1).
    #[arg(long, env = "CHORUS_RESTART_WINDOW_MS", value_name = "MS", help_heading = "Document",
          default_value_t = defaults::RESTART_WINDOW_MS.to_string())]
    restart_window_ms: String,

    // ---- Store ----
    /// When the store forces writes to disk: "always" = fsync each batch before acknowledging it
    /// (survives power loss); "group" = the same guarantee, with one syncfs of the data dir's file
    /// system for the batches of all documents at once (far cheaper with many active documents;
    /// give the data dir its own file system); "never" = leave flushing to the OS (survives kill
    /// -9 of the process, not power loss).
    #[arg(long, env = "CHORUS_FSYNC", value_name = "always|group|never", help_heading = "Store",
          default_value_t = FsyncPolicy::default().to_string())]
    fsync: String,

    // ---- WebSocket ----
    /// Interval between server WebSocket pings, in milliseconds (>= 1).
    #[arg(long, env = "CHORUS_PING_INTERVAL_MS", value_name = "MS", help_heading = "WebSocket",
          default_value_t = defaults::PING_INTERVAL_MS.to_string())]
    ping_interval_ms: String,

    /// Drop a client that sent nothing (not even a pong) for this long, in milliseconds (must be
    /// greater than --ping-interval-ms).
    #[arg(long, env = "CHORUS_PING_TIMEOUT_MS", value_name = "MS", help_heading = "WebSocket",
          default_value_t = defaults::PING_TIMEOUT_MS.to_string())]
    ping_timeout_ms: String,

    /// Per-connection send queue bound, in frames; a client this far behind is disconnected
    /// (>= 1).
    #[arg(long, env = "CHORUS_OUTBOUND_QUEUE_FRAMES", value_name = "FRAMES",
          help_heading = "WebSocket", default_value_t = defaults::OUTBOUND_QUEUE_FRAMES.to_string())]
    outbound_queue_frames: String,

    // ---- Cluster ----
    /// Redis URL (redis:// or rediss:// for TLS), e.g. redis://127.0.0.1:6379/0. Setting it makes
    /// this node a cluster member; node names must then be unique within the cluster. With
    /// --redis-sentinel, the URL still supplies scheme, credentials and database while the
    /// primary's address comes from the sentinels. Default: none (a single node on the embedded
    /// store).
    #[arg(
        long,
        env = "CHORUS_REDIS",
        value_name = "URL",
        help_heading = "Cluster",
        hide_env_values = true
    )]
    redis: Option<String>,

    /// A Redis Sentinel (HOST:PORT) through which the Redis primary is found. Repeat the flag for
    /// several sentinels; the environment variable takes a comma-separated list. Requires --redis.
    /// Default: none (connect to the --redis address directly).
    #[arg(long = "redis-sentinel", env = "CHORUS_REDIS_SENTINELS", value_name = "HOST:PORT",
          help_heading = "Cluster", action = ArgAction::Append)]
    redis_sentinels: Option<Vec<String>>,

    /// Name of the primary the sentinels are asked for (as in the sentinels' "sentinel monitor"
    /// configuration).
    #[arg(long, env = "CHORUS_REDIS_MASTER_NAME", value_name = "NAME", help_heading = "Cluster",
          default_value_t = defaults::REDIS_MASTER_NAME.to_string())]
    redis_master_name: String,

    /// Prefix of every Redis key this cluster uses: 1-64 characters without whitespace or braces.
    #[arg(long, env = "CHORUS_REDIS_KEY_PREFIX", value_name = "PREFIX", help_heading = "Cluster",
          default_value_t = defaults::REDIS_KEY_PREFIX.to_string())]
    redis_key_prefix: String,

    /// Replicas that must confirm a write (Redis WAIT) before it is acknowledged, in replicas
    /// (0 = the primary's confirmation suffices).
    #[arg(long, env = "CHORUS_REDIS_WAIT_REPLICAS", value_name = "N", help_heading = "Cluster",
          default_value_t = defaults::REDIS_WAIT_REPLICAS.to_string())]
    redis_wait_replicas: String,

    /// How long WAIT waits for --redis-wait-replicas, in milliseconds (>= 1; less than
    /// --redis-timeout-ms when --redis-wait-replicas > 0).
    #[arg(long, env = "CHORUS_REDIS_WAIT_TIMEOUT_MS", value_name = "MS",
          help_heading = "Cluster", default_value_t = defaults::REDIS_WAIT_TIMEOUT_MS.to_string())]
    redis_wait_timeout_ms: String,

    /// Response timeout of every Redis command, in milliseconds (>= 1); replaces the redis
    /// client's own default.
    #[arg(long, env = "CHORUS_REDIS_TIMEOUT_MS", value_name = "MS", help_heading = "Cluster",
          default_value_t = defaults::REDIS_TIMEOUT_MS.to_string())]
    redis_timeout_ms: String,

    /// Address (IP:port) the node-to-node cluster listener binds; port 0 = any free port. Must not
    /// share a port with --listen.
    #[arg(long, env = "CHORUS_CLUSTER_LISTEN", value_name = "ADDR", help_heading = "Cluster",
          default_value_t = defaults::CLUSTER_LISTEN.to_string())]
    cluster_listen: String,

    /// HOST:PORT other nodes use to reach this node's cluster listener. Default: the address
    /// --cluster-listen is bound to (then required if that is 0.0.0.0 or [::]).
    #[arg(
        long,
        env = "CHORUS_CLUSTER_ADVERTISE",
        value_name = "HOST:PORT",
        help_heading = "Cluster"
    )]
    cluster_advertise: Option<String>,

    /// Shared secret of the cluster, at least 8 characters; every node needs the same one.
    /// Required with --redis. Prefer the environment variable: flags are visible to other users
    /// of the host. Default: none.
    #[arg(
        long,
        env = "CHORUS_CLUSTER_COOKIE",
        value_name = "SECRET",
        help_heading = "Cluster",
        hide_env_values = true
    )]
    cluster_cookie: Option<String>,

    /// This node's client-facing WebSocket URL (ws:// or wss://) as advertised to clients, e.g.
    /// for redirects: ws://host:port/ws. Default: ws://<bound --listen address>/ws (then required
    /// if --listen is 0.0.0.0 or [::]).
    #[arg(
        long,
        env = "CHORUS_PUBLIC_URL",
        value_name = "URL",
        help_heading = "Cluster",
        hide_env_values = true
    )]
    public_url: Option<String>,

    /// TTL of this node's liveness key in Redis, in milliseconds (500 ..= 60000).
    #[arg(long, env = "CHORUS_LEASE_MS", value_name = "MS", help_heading = "Cluster",
          default_value_t = defaults::LEASE_MS.to_string())]
    lease_ms: String,

    /// Interval between renewals of the liveness key, in milliseconds (1 ..= --lease-ms / 2).
    #[arg(long, env = "CHORUS_RENEW_INTERVAL_MS", value_name = "MS", help_heading = "Cluster",
          default_value_t = defaults::RENEW_INTERVAL_MS.to_string())]
    renew_interval_ms: String,

    /// Interval between node-to-node heartbeats, in milliseconds (>= 1).
    #[arg(long, env = "CHORUS_HEARTBEAT_INTERVAL_MS", value_name = "MS",
          help_heading = "Cluster", default_value_t = defaults::HEARTBEAT_INTERVAL_MS.to_string())]
    heartbeat_interval_ms: String,

    /// A peer silent for this long is considered failed, in milliseconds (must be greater than
    /// --heartbeat-interval-ms).
    #[arg(long, env = "CHORUS_HEARTBEAT_TIMEOUT_MS", value_name = "MS", help_heading = "Cluster",
          default_value_t = defaults::HEARTBEAT_TIMEOUT_MS.to_string())]
    heartbeat_timeout_ms: String,

    /// On SIGTERM, how long handing this node's documents over to other nodes may take, in
    /// milliseconds.
    #[arg(long, env = "CHORUS_DRAIN_TIMEOUT_MS", value_name = "MS", help_heading = "Cluster",
          default_value_t = defaults::DRAIN_TIMEOUT_MS.to_string())]
    drain_timeout_ms: String,
}

/// The `chorus` command: every flag with its env var, default and help.
pub(crate) fn command() -> Command {
    Cli::command()
}

/// For `ConfigError::Invalid`'s message: which flag and variable set `setting` (a TOML key path).
pub(crate) fn where_set(setting: &str) -> String {
    let field = setting.rsplit('.').next().unwrap_or(setting);
    let cmd = command();
    let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == field) else {
        return String::new();
    };
    match (arg.get_long(), arg.get_env()) {
        (Some(long), Some(env)) => format!(
            " (set by --{long}, {} or `{field}` in the config file)",
            env.to_string_lossy()
        ),
        _ => String::new(),
    }
}

/// A setting's value type as read from a flag or an environment variable.
trait SettingValue: Sized {
    /// Parses `s`, or says what is wrong and what is expected.
    fn parse_setting(s: &str) -> Result<Self, String>;
}

/// Implements [`SettingValue`] through `FromStr`, adding what the setting expects to the error.
macro_rules! setting_from_str {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl SettingValue for $ty {
            fn parse_setting(s: &str) -> Result<Self, String> {
                <$ty as FromStr>::from_str(s).map_err(|e| format!("{e}; expected {}", $expected))
            }
        }
    )*};
}

setting_from_str! {
    SocketAddr => "an IP address and port such as 127.0.0.1:8080 or [::1]:8080",
    u64 => "a whole number >= 0",
    u32 => "a whole number from 0 to 4294967295",
    usize => "a whole number >= 0",
    f64 => "a number such as 200 or 0.5",
    FsyncPolicy => "always or never",
}

impl SettingValue for String {
    fn parse_setting(s: &str) -> Result<Self, String> {
        Ok(s.to_owned())
    }
}

/// A setting without a default (`Option` in `Config`): a given value is always `Some`.
impl<T: SettingValue> SettingValue for Option<T> {
    fn parse_setting(s: &str) -> Result<Self, String> {
        T::parse_setting(s).map(Some)
    }
}

impl SettingValue for PathBuf {
    fn parse_setting(s: &str) -> Result<Self, String> {
        Ok(PathBuf::from(s))
    }
}

impl SettingValue for bool {
    fn parse_setting(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("not a boolean; expected true or false".to_owned()),
        }
    }
}

/// The command line after clap: the raw values, and where each came from.
pub(crate) struct Parsed {
    cli: Cli,
    src: Sources,
}

/// Where each raw value came from (flag, env or clap default), for typed parsing and errors.
struct Sources {
    cmd: Command,
    matches: ArgMatches,
}

impl Parsed {
    /// Runs clap over `args` (`args[0]` is the program name) and the process environment.
    pub(crate) fn parse<I, T>(args: I) -> Result<Parsed, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cmd = command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        Ok(Parsed {
            cli,
            src: Sources { cmd, matches },
        })
    }

    /// The config file named by `--config` / `CHORUS_CONFIG`, if any.
    pub(crate) fn config_file(&mut self) -> Result<Option<PathBuf>, ConfigError> {
        let raw = self.cli.config.take();
        self.src.take(raw, "config")
    }

    /// Overrides `config` with every setting given as a flag or environment variable.
    pub(crate) fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        let Parsed { cli, mut src } = self;
        /// `set!(field => slot)`: parse `cli.field` (clap id = field name) into `slot` if given.
        macro_rules! set {
            ($($field:ident => $slot:expr;)*) => {$(
                if let Some(v) = src.take(Some(cli.$field), stringify!($field))? {
                    $slot = v;
                }
            )*};
        }
        set! {
            listen => config.listen;
            data_dir => config.data_dir;
            node_name => config.node_name;
            log => config.log;
            shutdown_grace_ms => config.shutdown_grace_ms;
            worker_threads => config.worker_threads;
            allow_anonymous => config.auth.allow_anonymous;
            max_frame_bytes => config.limits.max_frame_bytes;
            max_document_chars => config.limits.max_document_chars;
            op_rate_per_s => config.limits.op_rate_per_s;
            op_burst => config.limits.op_burst;
            max_open_documents => config.limits.max_open_documents;
            max_connections => config.limits.max_connections;
            history_ops => config.document.history_ops;
            idle_timeout_ms => config.document.idle_timeout_ms;
            compact_every_ops => config.document.compact_every_ops;
            max_batch_ops => config.document.max_batch_ops;
            max_dedup_clients => config.document.max_dedup_clients;
            max_restarts => config.document.max_restarts;
            restart_window_ms => config.document.restart_window_ms;
            fsync => config.store.fsync;
            ping_interval_ms => config.websocket.ping_interval_ms;
            ping_timeout_ms => config.websocket.ping_timeout_ms;
            outbound_queue_frames => config.websocket.outbound_queue_frames;
            redis_master_name => config.cluster.redis_master_name;
            redis_key_prefix => config.cluster.redis_key_prefix;
            redis_wait_replicas => config.cluster.redis_wait_replicas;
            redis_wait_timeout_ms => config.cluster.redis_wait_timeout_ms;
            redis_timeout_ms => config.cluster.redis_timeout_ms;
            cluster_listen => config.cluster.cluster_listen;
            lease_ms => config.cluster.lease_ms;
            renew_interval_ms => config.cluster.renew_interval_ms;
            heartbeat_interval_ms => config.cluster.heartbeat_interval_ms;
            heartbeat_timeout_ms => config.cluster.heartbeat_timeout_ms;
            drain_timeout_ms => config.cluster.drain_timeout_ms;
        }
        /// `set_given!(field => slot)`: the same for an `Option<String>` argument (no clap default).
        macro_rules! set_given {
            ($($field:ident => $slot:expr;)*) => {$(
                if let Some(v) = src.take(cli.$field, stringify!($field))? {
                    $slot = v;
                }
            )*};
        }
        set_given! {
            redis => config.cluster.redis;
            cluster_advertise => config.cluster.cluster_advertise;
            cluster_cookie => config.cluster.cluster_cookie;
            public_url => config.cluster.public_url;
        }
        if let Some(v) = src.take_list(cli.tokens, "tokens") {
            config.auth.tokens = v;
        }
        if let Some(v) = src.take_list(cli.read_only_tokens, "read_only_tokens") {
            config.auth.read_only_tokens = v;
        }
        if let Some(v) = src.take_list(cli.redis_sentinels, "redis_sentinels") {
            config.cluster.redis_sentinels = v;
        }
        Ok(())
    }
}

impl Sources {
    /// Parses `raw`, the value of clap argument `id`, if it was given as a flag or a non-empty
    /// environment variable; `None` if it is unset or only clap's default.
    fn take<T: SettingValue>(
        &mut self,
        raw: Option<String>,
        id: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => T::parse_setting(&raw)
                .map(Some)
                .map_err(|message| self.flag_error(id, &raw, &message)),
            Some(ValueSource::EnvVariable) if raw.is_empty() => Ok(None),
            Some(ValueSource::EnvVariable) => {
                T::parse_setting(&raw)
                    .map(Some)
                    .map_err(|message| ConfigError::Env {
                        var: self.env_name(id),
                        value: raw,
                        message,
                    })
            }
            _ => Ok(None),
        }
    }

    /// A list argument: each flag occurrence is one item; an environment variable is split on
    /// commas, trimmed, with empty items dropped. `None` if unset or the variable is empty.
    fn take_list(&self, raw: Option<Vec<String>>, id: &str) -> Option<Vec<String>> {
        let raw = raw?;
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => Some(raw),
            Some(ValueSource::EnvVariable) => {
                let items: Vec<String> = raw
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                let all_blank = raw.iter().all(|v| v.trim().is_empty());
                (!all_blank).then_some(items)
            }
            _ => None,
        }
    }

    /// The environment variable of argument `id`.
    fn env_name(&self, id: &str) -> String {
        self.cmd
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| id.to_owned())
    }

    /// A clap error for a flag value that does not parse, in clap's own wording.
    fn flag_error(&mut self, id: &str, raw: &str, message: &str) -> ConfigError {
        let arg = self.cmd.get_arguments().find(|a| a.get_id() == id);
        let long = arg.and_then(|a| a.get_long()).unwrap_or(id).to_owned();
        let value_name = arg
            .and_then(|a| a.get_value_names())
            .and_then(|names| names.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| id.to_uppercase());
        ConfigError::Cli(self.cmd.error(
            ErrorKind::ValueValidation,
            format!("invalid value '{raw}' for '--{long} <{value_name}>': {message}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting's flag, as the brief names them.
    const FLAGS: &[&str] = &[
        "--config",
        "--listen",
        "--data-dir",
        "--node-name",
        "--log",
        "--shutdown-grace-ms",
        "--worker-threads",
        "--allow-anonymous",
        "--token",
        "--read-only-token",
        "--max-frame-bytes",
        "--max-document-chars",
        "--op-rate-per-s",
        "--op-burst",
        "--max-open-documents",
        "--max-connections",
        "--history-ops",
        "--idle-timeout-ms",
        "--compact-every-ops",
        "--max-batch-ops",
        "--max-dedup-clients",
        "--max-restarts",
        "--restart-window-ms",
        "--fsync",
        "--ping-interval-ms",
        "--ping-timeout-ms",
        "--outbound-queue-frames",
        "--redis",
        "--redis-sentinel",
        "--redis-master-name",
        "--redis-key-prefix",
        "--redis-wait-replicas",
        "--redis-wait-timeout-ms",
        "--redis-timeout-ms",
        "--cluster-listen",
        "--cluster-advertise",
        "--cluster-cookie",
        "--public-url",
        "--lease-ms",
        "--renew-interval-ms",
        "--heartbeat-interval-ms",
        "--heartbeat-timeout-ms",
        "--drain-timeout-ms",
    ];

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn long_help_lists_every_flag_and_env_var() {
        let help = command().render_long_help().to_string();
        assert!(help.contains(ABOUT), "{help}");
        for flag in FLAGS {
            assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        }
        for arg in command().get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(help.contains(&*env), "--help lacks {env}:\n{help}");
            }
        }
        for default in [
            "127.0.0.1:8080",
            "./data",
            "chorus-1",
            "1048576",
            "always",
            "mymaster",
            "chorus:",
            "127.0.0.1:8090",
            "1500",
            "300",
            "1000",
        ] {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "{default}:\n{help}"
            );
        }
        assert!(help.contains("Usage: chorus"), "{help}");
    }

    #[test]
    fn every_argument_has_help_env_and_a_documented_flag() {
        for arg in command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let long = arg.get_long().unwrap_or_default();
            assert!(FLAGS.contains(&&*format!("--{long}")), "{id}: --{long}");
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(
                env.as_deref(),
                Some(&*format!("CHORUS_{}", id.to_uppercase())),
                "{id}"
            );
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string());
            assert!(help.is_some_and(|h| h.len() > 20), "{id} has no help");
        }
        let settings = command()
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .count();
        assert_eq!(settings, FLAGS.len());
    }

    #[test]
    fn help_does_not_show_token_values() {
        let help = command().render_long_help().to_string();
        assert!(help.contains("[env: CHORUS_TOKENS]"), "{help}");
        assert!(help.contains("[env: CHORUS_READ_ONLY_TOKENS]"), "{help}");
        assert!(help.contains("[env: CHORUS_CLUSTER_COOKIE]"), "{help}");
        assert!(help.contains("[env: CHORUS_REDIS]"), "{help}");
    }

    #[test]
    fn cluster_flags_are_under_their_heading() {
        let help = command().render_long_help().to_string();
        let heading = help.find("Cluster:").expect("a Cluster heading");
        for flag in [
            "--redis <URL>",
            "--cluster-cookie <SECRET>",
            "--drain-timeout-ms <MS>",
        ] {
            let at = help.find(flag).unwrap_or_else(|| panic!("{flag}:\n{help}"));
            assert!(at > heading, "{flag} is not under Cluster:\n{help}");
        }
        for arg in command().get_arguments() {
            let long = arg.get_long().unwrap_or_default();
            let cluster = FLAGS.iter().position(|f| *f == "--redis").unwrap();
            let index = FLAGS.iter().position(|f| *f == format!("--{long}"));
            if index.is_some_and(|i| i >= cluster) {
                assert_eq!(arg.get_help_heading(), Some("Cluster"), "--{long}");
            }
        }
    }

    #[test]
    fn bool_values() {
        for s in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(bool::parse_setting(s), Ok(true), "{s}");
        }
        for s in ["false", "False", "0", "no", "off"] {
            assert_eq!(bool::parse_setting(s), Ok(false), "{s}");
        }
        assert!(bool::parse_setting("maybe").is_err());
    }

    #[test]
    fn where_set_names_flag_and_env() {
        let s = where_set("limits.max_frame_bytes");
        assert!(s.contains("--max-frame-bytes"), "{s}");
        assert!(s.contains("CHORUS_MAX_FRAME_BYTES"), "{s}");
        let s = where_set("auth.tokens");
        assert!(s.contains("--token") && s.contains("CHORUS_TOKENS"), "{s}");
        let s = where_set("cluster.redis_sentinels");
        assert!(
            s.contains("--redis-sentinel") && s.contains("CHORUS_REDIS_SENTINELS"),
            "{s}"
        );
        assert_eq!(where_set("no.such"), "");
    }
}
