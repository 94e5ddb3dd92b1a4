//! Single-node default of every setting; `Config::default()` and the `--help` text both use these.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Default `listen`: 127.0.0.1:8080.
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Default `data_dir`: `./data`, relative to the working directory.
pub const DATA_DIR: &str = "./data";
/// Default `node_name`.
pub const NODE_NAME: &str = "chorus-1";
/// Default `log` filter.
pub const LOG: &str = "info";
/// Default `shutdown_grace_ms`: 10 s.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Default `worker_threads`: 0, one per CPU core.
pub const WORKER_THREADS: usize = 0;
/// Default `auth.allow_anonymous`.
pub const ALLOW_ANONYMOUS: bool = true;
/// Default `limits.max_frame_bytes`: 1 MiB.
pub const MAX_FRAME_BYTES: usize = 1_048_576;
/// Default `limits.max_document_chars`: 10 million code points.
pub const MAX_DOCUMENT_CHARS: usize = 10_000_000;
/// Default `limits.op_rate_per_s`.
pub const OP_RATE_PER_S: f64 = 200.0;
/// Default `limits.op_burst`.
pub const OP_BURST: u32 = 400;
/// Default `limits.max_open_documents`.
pub const MAX_OPEN_DOCUMENTS: usize = 64;
/// Default `limits.max_connections`.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Default `document.history_ops`.
pub const HISTORY_OPS: usize = 10_000;
/// Default `document.idle_timeout_ms`: 60 s.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default `document.compact_every_ops`.
pub const COMPACT_EVERY_OPS: usize = 10_000;
/// Default `document.max_batch_ops`.
pub const MAX_BATCH_OPS: usize = 1_024;
/// Default `document.max_dedup_clients`.
pub const MAX_DEDUP_CLIENTS: usize = 100_000;
/// Default `document.max_restarts`.
pub const MAX_RESTARTS: u32 = 5;
/// Default `document.restart_window_ms`: 60 s.
pub const RESTART_WINDOW_MS: u64 = 60_000;
/// Default `websocket.ping_interval_ms`: 15 s.
pub const PING_INTERVAL_MS: u64 = 15_000;
/// Default `websocket.ping_timeout_ms`: 45 s.
pub const PING_TIMEOUT_MS: u64 = 45_000;
/// Default `websocket.outbound_queue_frames`.
pub const OUTBOUND_QUEUE_FRAMES: usize = 4_096;
/// Default `cluster.redis_master_name`: the name Redis Sentinel's sample configuration uses.
pub const REDIS_MASTER_NAME: &str = "mymaster";
/// Default `cluster.redis_key_prefix`.
pub const REDIS_KEY_PREFIX: &str = "chorus:";
/// Default `cluster.redis_wait_replicas`: acknowledge once the primary has confirmed.
pub const REDIS_WAIT_REPLICAS: u32 = 0;
/// Default `cluster.redis_wait_timeout_ms`.
pub const REDIS_WAIT_TIMEOUT_MS: u64 = 200;
/// Default `cluster.redis_timeout_ms`: 1 s, set explicitly instead of the redis crate's own default.
pub const REDIS_TIMEOUT_MS: u64 = 1_000;
/// Default `cluster.cluster_listen`: 127.0.0.1:8090.
pub const CLUSTER_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8090));
/// Default `cluster.lease_ms`: 1.5 s, so that a dead owner's documents are writable again within ~2 s.
pub const LEASE_MS: u64 = 1_500;
/// Default `cluster.renew_interval_ms`: 300 ms (five renewals per lease).
pub const RENEW_INTERVAL_MS: u64 = 300;
/// Default `cluster.heartbeat_interval_ms`.
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
/// Default `cluster.heartbeat_timeout_ms`: 1 s (five missed heartbeats).
pub const HEARTBEAT_TIMEOUT_MS: u64 = 1_000;
/// Default `cluster.drain_timeout_ms`: 10 s.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;
