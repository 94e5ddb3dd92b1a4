//! Cluster mode: Redis membership with self-fencing, the fenced Redis store, placement, and the
//! router that connects sessions to documents on any node over ractor_cluster.
//!
//! # Layout
//! - [`membership`]: liveness key per incarnation, member records, self-fencing.
//! - [`fenced`]: a store wrapper that refuses work while the lease is unconfirmed.
//! - [`placement`]: rendezvous hashing over live members.
//! - [`wire`]: the versioned node-to-node codec.
//! - [`router`]: the node's remote endpoint, routing and failure detection.

pub mod fenced;
pub mod membership;
pub mod placement;
pub mod router;
pub mod wire;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_actors::document::supervisor::SupervisorMsg;
use chorus_actors::routing::LocalDirectory;
use chorus_actors::store::redis::{RedisSettings, RedisStore, SentinelSettings};
use chorus_config::Config;
use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};

use membership::{MemberInfo, Membership};
use router::{endpoint_group, EndpointArgs, Router, RouterArgs, RouterEndpoint, RouterMsg};

/// What cluster mode adds to a node before its documents start.
pub struct ClusterBase {
    /// This incarnation.
    pub incarnation: String,
    /// The Redis store (owner look-ups, claims, appends).
    pub store: Arc<RedisStore>,
    /// Membership and self-fencing.
    pub membership: Arc<Membership>,
    /// The ractor_cluster server.
    pub node_server: ActorRef<NodeServerMessage>,
    /// Where peers reach this node.
    pub cluster_addr: String,
}

/// The running cluster parts.
pub struct Cluster {
    /// Base parts.
    pub base: ClusterBase,
    /// The router.
    pub router: ActorRef<RouterMsg>,
    /// Its remote endpoint.
    pub endpoint: ActorRef<Vec<u8>>,
    /// Cluster messages that failed to decode.
    pub decode_errors: Arc<AtomicU64>,
    renewal: tokio::task::JoinHandle<()>,
}

/// Resolves port 0 to a free port (ractor_cluster needs a concrete one to advertise).
fn concrete_addr(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = StdListener::bind(addr).context("finding a free cluster port")?;
    probe.local_addr().context("reading the probed port")
}

/// Connects to Redis, starts the cluster listener and joins the membership.
pub async fn start_base(config: &Config, public_addr: SocketAddr) -> anyhow::Result<ClusterBase> {
    let c = &config.cluster;
    let url = c.redis.clone().context("cluster mode needs --redis")?;
    let incarnation = membership::new_incarnation(&config.node_name);
    let sentinel = (!c.redis_sentinels.is_empty()).then(|| SentinelSettings {
        sentinels: c.redis_sentinels.clone(),
        master_name: c.redis_master_name.clone(),
    });
    let settings = RedisSettings {
        url: url.clone(),
        sentinel,
        key_prefix: c.redis_key_prefix.clone(),
        node_name: config.node_name.clone(),
        incarnation: incarnation.clone(),
        wait_replicas: c.redis_wait_replicas,
        wait_timeout_ms: c.redis_wait_timeout_ms,
        response_timeout_ms: c.redis_timeout_ms,
    };
    let store = Arc::new(
        RedisStore::connect(settings)
            .await
            .context("connecting the Redis store")?,
    );

    let listen = concrete_addr(c.cluster_listen)?;
    let server = NodeServer::new(
        listen.port(),
        c.cluster_cookie.clone(),
        incarnation.clone(),
        listen.ip().to_string(),
        None,
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr(listen.ip());
    let (node_server, _) = Actor::spawn(None, server, ())
        .await
        .context("starting the cluster listener")?;
    let cluster_addr = c
        .cluster_advertise
        .clone()
        .unwrap_or_else(|| listen.to_string());
    let public_url = c
        .public_url
        .clone()
        .unwrap_or_else(|| format!("ws://{public_addr}/ws"));
    let me = MemberInfo {
        node: config.node_name.clone(),
        incarnation: incarnation.clone(),
        cluster_addr: cluster_addr.clone(),
        public_url,
        draining: false,
    };
    let membership = Membership::join(
        store.clone(),
        &c.redis_key_prefix,
        me,
        Duration::from_millis(c.lease_ms),
        Duration::from_millis(c.renew_interval_ms),
    )
    .await
    .context("joining the cluster")?;
    tracing::info!(%incarnation, %cluster_addr, "joined the cluster");
    Ok(ClusterBase {
        incarnation,
        store,
        membership,
        node_server,
        cluster_addr,
    })
}

/// Starts the router and its endpoint once the document supervisor runs.
pub async fn start_router(
    config: &Config,
    base: ClusterBase,
    documents: ActorRef<SupervisorMsg>,
) -> anyhow::Result<Cluster> {
    let c = &config.cluster;
    let decode_errors = Arc::new(AtomicU64::new(0));
    let me = MemberInfo {
        node: config.node_name.clone(),
        incarnation: base.incarnation.clone(),
        cluster_addr: base.cluster_addr.clone(),
        public_url: String::new(),
        draining: false,
    };
    let (router, _) = Actor::spawn(
        None,
        Router,
        RouterArgs {
            me,
            store: base.store.clone(),
            local: LocalDirectory {
                supervisor: documents,
            },
            membership: base.membership.clone(),
            node_server: base.node_server.clone(),
            heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(c.heartbeat_timeout_ms),
            queue_frames: config.websocket.outbound_queue_frames,
            decode_errors: decode_errors.clone(),
        },
    )
    .await
    .context("starting the router")?;
    let (endpoint, _) = Actor::spawn(
        None,
        RouterEndpoint,
        EndpointArgs {
            router: router.clone(),
            decode_errors: decode_errors.clone(),
        },
    )
    .await
    .context("starting the router endpoint")?;
    ractor::pg::join(endpoint_group(&base.incarnation), vec![endpoint.get_cell()]);
    let renewal = tokio::spawn(base.membership.clone().run());
    Ok(Cluster {
        base,
        router,
        endpoint,
        decode_errors,
        renewal,
    })
}

impl Cluster {
    /// Drain step one: take no new documents, tell peers.
    pub async fn begin_drain(&self) {
        let _ = self.router.cast(RouterMsg::Leaving);
        if let Err(e) = self.base.membership.set_draining().await {
            tracing::warn!(error = %e, "could not mark this node as draining in Redis");
        }
    }

    /// Last step: leave the membership and stop the cluster actors.
    pub async fn leave(self) {
        if let Err(e) = self.base.membership.leave().await {
            tracing::warn!(error = %e, "could not remove this node from Redis");
        }
        self.renewal.abort();
        self.endpoint.stop(None);
        self.router.stop(None);
        self.base.node_server.stop(None);
    }
}
