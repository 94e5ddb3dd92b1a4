//! The `chorus` node: wires configuration, store, actors and the web front together, and shuts
//! them down in order. `main.rs` only parses the config and calls [`run`]; tests call
//! [`Node::start`] on `127.0.0.1:0` and drive the same code over real sockets.
//!
//! # Layout
//! - [`Node`]: a running node (start, address, graceful shutdown or drain).
//! - [`run`]: start, wait for a shutdown signal, shut down.
//! - [`cluster`]: cluster mode (Redis membership and store, placement, router).

pub mod cluster;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_actors::document::supervisor::{DocumentSupervisor, SupervisorArgs, SupervisorMsg};
use chorus_actors::document::CoreSettings;
use chorus_actors::routing::{Directory, LocalDirectory};
use chorus_actors::session_supervisor::{
    SessionSupervisor, SessionSupervisorArgs, SessionSupervisorMsg,
};
use chorus_actors::store::embedded::{EmbeddedStore, FsyncPolicy};
use chorus_actors::store::Store;
use chorus_config::Config;
use chorus_web::{Phase, WebContext};
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long shutdown waits for sockets to finish closing after the 1001 close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A running node.
pub struct Node {
    addr: SocketAddr,
    config: Arc<Config>,
    phase: watch::Sender<Phase>,
    web: Arc<WebContext>,
    accept: JoinHandle<()>,
    documents: ActorRef<SupervisorMsg>,
    sessions: ActorRef<SessionSupervisorMsg>,
    cluster: Option<cluster::Cluster>,
}

impl Node {
    /// Opens the store, starts the supervisors and begins accepting connections.
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        config.validate().context("invalid configuration")?;
        let config = Arc::new(config);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (store, cluster_base): (Arc<dyn Store>, Option<cluster::ClusterBase>) = if config
            .is_cluster()
        {
            let base = cluster::start_base(&config, addr).await?;
            let fenced =
                cluster::fenced::FencedStore::new(base.store.clone(), base.membership.clone());
            (Arc::new(fenced), Some(base))
        } else {
            let fsync = match config.store.fsync {
                chorus_config::FsyncPolicy::Always => FsyncPolicy::Always,
                chorus_config::FsyncPolicy::Group => FsyncPolicy::Group,
                chorus_config::FsyncPolicy::Never => FsyncPolicy::Never,
            };
            let embedded = EmbeddedStore::open_dir(&config.data_dir, fsync).with_context(|| {
                format!("opening the data directory {}", config.data_dir.display())
            })?;
            (Arc::new(embedded), None)
        };
        let d = &config.document;
        let settings = CoreSettings {
            history_ops: d.history_ops,
            max_document_chars: config.limits.max_document_chars,
            max_batch_ops: d.max_batch_ops,
            max_pending_ops: d.max_batch_ops.saturating_mul(8).max(1),
            max_dedup_clients: d.max_dedup_clients,
            compact_every_ops: d.compact_every_ops,
        };
        let (documents, _) = Actor::spawn(
            None,
            DocumentSupervisor,
            SupervisorArgs {
                store,
                settings,
                idle_timeout: Duration::from_millis(d.idle_timeout_ms),
                max_restarts: d.max_restarts,
                restart_window: Duration::from_millis(d.restart_window_ms),
            },
        )
        .await
        .context("starting the document supervisor")?;
        let (sessions, _) = Actor::spawn(
            None,
            SessionSupervisor,
            SessionSupervisorArgs {
                max_failures: d.max_restarts,
                failure_window: Duration::from_millis(d.restart_window_ms),
            },
        )
        .await
        .context("starting the session supervisor")?;
        let (cluster, directory): (Option<cluster::Cluster>, Arc<dyn Directory>) =
            match cluster_base {
                Some(base) => {
                    let cluster = cluster::start_router(&config, base, documents.clone()).await?;
                    let directory = Arc::new(cluster::router::ClusterDirectory {
                        router: cluster.router.clone(),
                    });
                    let membership = cluster.base.membership.clone();
                    tokio::spawn(async move {
                        membership.lost().await;
                        // Others may already own this node's documents: serve nothing more. A
                        // process supervisor restarts the node as a new incarnation.
                        tracing::error!("this node's cluster lease was lost; exiting");
                        std::process::exit(75);
                    });
                    (Some(cluster), directory)
                }
                None => (
                    None,
                    Arc::new(LocalDirectory {
                        supervisor: documents.clone(),
                    }),
                ),
            };
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let web = Arc::new(WebContext::new(
            config.clone(),
            documents.clone(),
            directory,
            sessions.clone(),
            phase_rx,
        ));
        let accept = tokio::spawn(chorus_web::serve(listener, web.clone()));
        tracing::info!(%addr, node = %config.node_name, data_dir = %config.data_dir.display(), "chorus node listening");
        Ok(Node {
            addr,
            config,
            phase,
            web,
            accept,
            documents,
            sessions,
            cluster,
        })
    }

    /// The address the front listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Documents with a running actor on this node (for health reporting and tests).
    pub async fn running_documents(&self) -> anyhow::Result<usize> {
        match self
            .documents
            .call(SupervisorMsg::Stats, Some(Duration::from_secs(5)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(stats)) => Ok(stats.documents),
            other => anyhow::bail!("the document supervisor did not answer: {other:?}"),
        }
    }

    /// Graceful shutdown: stop accepting, stop reading client messages, make every accepted op
    /// durable (its ack is queued), send what is queued and close sockets with 1001, stop actors.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        tracing::info!("shutting down: draining");
        let _ = self.phase.send(Phase::Draining);
        let _ = self.accept.await;
        if let Some(cluster) = &self.cluster {
            // Drain: hand every document over (flush, release ownership, subscribers reopen
            // it on another node), so that a rolling restart loses nothing.
            cluster.begin_drain().await;
            let drain = Duration::from_millis(self.config.cluster.drain_timeout_ms);
            match self
                .documents
                .call(SupervisorMsg::ReleaseAll, Some(drain))
                .await
            {
                Ok(ractor::rpc::CallResult::Success(count)) => {
                    tracing::info!(documents = count, "documents handed over")
                }
                other => tracing::warn!(?other, "document hand-over did not finish in time"),
            }
        } else {
            let flushed = tokio::time::timeout(
                grace,
                self.documents.call(SupervisorMsg::FlushAll, Some(grace)),
            )
            .await;
            match flushed {
                Ok(Ok(ractor::rpc::CallResult::Success(count))) => {
                    tracing::info!(documents = count, "store flushed")
                }
                other => {
                    tracing::warn!(?other, "store flush did not finish within the grace period")
                }
            }
        }
        let _ = self.phase.send(Phase::Closing);
        if tokio::time::timeout(CLOSE_WAIT, self.web.wait_all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.web.active_connections(),
                "some connections did not close in time"
            );
        }
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
        }
        self.sessions.stop(Some("shutdown".into()));
        self.documents.stop(Some("shutdown".into()));
        tracing::info!("shut down");
        Ok(())
    }
}

/// Runs a node until `shutdown` completes, then shuts it down gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    shutdown.await;
    node.shutdown().await
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
