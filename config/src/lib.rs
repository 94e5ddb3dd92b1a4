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
//! 4. Flags `--<setting>` (kebab case of the field name, e.g. `--max-frame-bytes`; `--token` and
//!    `--read-only-token` are repeatable). A flag wins over its variable.
//!
//! The merged result is then checked by [`Config::validate`].
//!
//! # TOML file
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "./data"          # relative paths are relative to the working directory
//! node_name = "chorus-1"
//! log = "info"
//! shutdown_grace_ms = 10000
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
//! fsync = "always"             # or "never"
//!
//! [websocket]
//! ping_interval_ms = 15000
//! ping_timeout_ms = 45000
//! outbound_queue_frames = 4096
//! ```

#![warn(missing_docs)]

mod cli;
pub mod defaults;
mod error;
mod file;
mod validate;

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
    /// Name of this node: 1-64 characters from `A-Z a-z 0-9 . _ -`.
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
    // ==== CLUSTER SETTINGS GO HERE: a `cluster: ClusterConfig` section (see cli.rs). ====
    /// How long SIGTERM waits for in-flight ops and store flushes before closing sockets, in ms.
    pub shutdown_grace_ms: u64,
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

/// When the store calls fsync; written `"always"` or `"never"` in the file, env and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync every committed batch before acknowledging it: survives power loss.
    #[default]
    Always,
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
            shutdown_grace_ms: defaults::SHUTDOWN_GRACE_MS,
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

impl FsyncPolicy {
    /// The spelling used in the file, env and flags: `"always"` or `"never"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Never => "never",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses exactly `"always"` or `"never"`.
impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
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
        c.validate().unwrap();
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
    fn fsync_policy_round_trips() {
        for p in [FsyncPolicy::Always, FsyncPolicy::Never] {
            assert_eq!(p.as_str().parse::<FsyncPolicy>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
