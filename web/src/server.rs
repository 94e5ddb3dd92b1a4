//! The accept loop and routes: `/ws` (WebSocket upgrade), `/livez` and `/health` (the process
//! is up), `/readyz` and `/ready` (it accepts new connections), and the browser editor (`/`,
//! `/d/<doc id>`, `/assets/*`, embedded: see [`assets`]). Connections are counted against
//! `limits.max_connections`; shutdown moves through [`Phase`]s.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chorus_actors::document::supervisor::SupervisorMsg;
use chorus_actors::routing::Directory;
use chorus_actors::session_supervisor::SessionSupervisorMsg;
use chorus_config::Config;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ractor::ActorRef;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::auth::authorize;
use crate::connection;

use crate::assets;

/// Where the node is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting connections and messages.
    Running,
    /// Shutting down: no new connections, no new client messages; in-flight ops finish.
    Draining,
    /// Every accepted op is durable: send what is queued, then close sockets with 1001.
    Closing,
}

/// What the front shares with every connection.
pub struct WebContext {
    /// The node's configuration.
    pub config: Arc<Config>,
    /// This node's name (for `welcome`).
    pub node_name: Arc<str>,
    /// The document supervisor.
    pub documents: ActorRef<SupervisorMsg>,
    /// Where sessions open documents (the supervisor, or the cluster router).
    pub directory: Arc<dyn Directory>,
    /// The session supervisor.
    pub sessions: ActorRef<SessionSupervisorMsg>,
    /// The shutdown phase.
    pub phase: watch::Receiver<Phase>,
    /// When the front started (the origin of connection liveness clocks).
    pub started: Instant,
    active: AtomicUsize,
    next_conn: AtomicU64,
    all_closed: Notify,
}

impl WebContext {
    /// A context for a front that has not accepted anything yet.
    pub fn new(
        config: Arc<Config>,
        documents: ActorRef<SupervisorMsg>,
        directory: Arc<dyn Directory>,
        sessions: ActorRef<SessionSupervisorMsg>,
        phase: watch::Receiver<Phase>,
    ) -> WebContext {
        WebContext {
            node_name: Arc::from(config.node_name.as_str()),
            config,
            documents,
            directory,
            sessions,
            phase,
            started: Instant::now(),
            active: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            all_closed: Notify::new(),
        }
    }

    /// Open WebSocket connections.
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until no WebSocket connection is open.
    pub async fn wait_all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            if self.active_connections() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A fresh connection id.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn try_admit(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let max = self.config.limits.max_connections;
        let mut current = self.active.load(Ordering::Acquire);
        loop {
            if current >= max {
                return None;
            }
            match self.active.compare_exchange(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(ConnectionGuard(self.clone())),
                Err(now) => current = now,
            }
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

/// Holds one slot of `max_connections` until dropped.
pub struct ConnectionGuard(Arc<WebContext>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// Completes once the phase is no longer `Running` (or its sender is gone).
async fn leave_running(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p != Phase::Running).await;
}

/// Accepts connections until the phase leaves `Running`.
pub async fn serve(listener: TcpListener, ctx: Arc<WebContext>) {
    let mut phase = ctx.phase.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = leave_running(&mut phase) => break,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut phase = ctx.phase.clone();
            let service_ctx = ctx.clone();
            let service = service_fn(move |req| route(req, service_ctx.clone()));
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "http connection ended with an error");
                    }
                }
                _ = leave_running(&mut phase) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracing::info!("stopped accepting connections");
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn route(
    mut req: Request<Incoming>,
    ctx: Arc<WebContext>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let response = match (req.method(), path) {
        (&Method::GET, "/livez") | (&Method::GET, "/health") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") | (&Method::GET, "/ready") => match ctx.phase() {
            Phase::Running => text(StatusCode::OK, "ready\n"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        },
        (&Method::GET, "/ws") => upgrade(&mut req, &ctx),
        (_, "/ws") | (_, "/livez") | (_, "/health") | (_, "/readyz") | (_, "/ready") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        (method, path) if assets::handles(path) => assets::serve(method, path, req.headers()),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

fn upgrade(req: &mut Request<Incoming>, ctx: &Arc<WebContext>) -> Response<Full<Bytes>> {
    if ctx.phase() != Phase::Running {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let access = match authorize(&ctx.config.auth, header, req.uri().query()) {
        Ok(access) => access,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade refused");
            return text(StatusCode::UNAUTHORIZED, "a valid token is required\n");
        }
    };
    let Some(guard) = ctx.try_admit() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
    };
    match fastwebsockets::upgrade::upgrade(req) {
        Ok((response, fut)) => {
            tokio::spawn(connection::run(fut, ctx.clone(), access, guard));
            response.map(|_| Full::new(Bytes::new()))
        }
        Err(e) => {
            tracing::debug!(error = %e, "bad upgrade request");
            text(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request\n")
        }
    }
}
