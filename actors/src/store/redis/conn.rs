//! The Redis store's connection: one multiplexed connection to the primary (given directly or found through Sentinel), replaced after any failure, with a deadline on every call.
//!
//! A call that fails in a way that says "this connection is broken or no longer talks to the
//! primary" (I/O error, dropped connection, our deadline, `READONLY`, `MASTERDOWN`) drops the
//! connection; the next call opens a new one, which with Sentinel re-resolves the primary. Each
//! connection has a generation number so that a late failure on an old connection never
//! drops its replacement.
//!
//! Writes are never retried here: after a failure their outcome is unknown, and the store's
//! scripts (which compare revisions and tokens) make the caller's next step safe instead.
//! Reads may be retried once after a connection failure.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, Value};

use super::{RedisSettings, SentinelSettings};
use crate::store::StoreError;

/// Whether a failed call may be sent again on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// A read: send it once more after a connection failure.
    Once,
    /// A write (or anything whose repetition is not harmless): never.
    Never,
}

/// Where connections go.
enum Target {
    /// A fixed server.
    Direct(Client),
    /// The primary Sentinel names for a master name, looked up for every new connection.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// An open connection and its generation.
#[derive(Clone)]
struct Live {
    generation: u64,
    connection: MultiplexedConnection,
}

/// The shared connection of one store.
pub(super) struct Connector {
    target: Target,
    config: AsyncConnectionConfig,
    response_timeout: Duration,
    current: Mutex<Option<Live>>,
    /// Held while opening a connection, so that concurrent callers wait for one attempt.
    opening: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Direct(_) => "direct",
            Target::Sentinel(_) => "sentinel",
        };
        f.debug_struct("Connector")
            .field("target", &target)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Prepares connections per `settings` (opening none yet).
    pub(super) fn new(settings: &RedisSettings) -> Result<Connector, StoreError> {
        let response_timeout = Duration::from_millis(settings.response_timeout_ms);
        // Every call runs under its own deadline (`tokio::time::timeout` in `call`), sized for
        // what it does (a `WAIT`, a large snapshot). The library's response timeout (500 ms by
        // default) would cut those short, so it is switched off explicitly.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(response_timeout))
            .set_response_timeout(None);
        let target = match &settings.sentinel {
            None => Target::Direct(
                Client::open(settings.url.as_str())
                    .map_err(|e| invalid(format!("redis url {:?}: {e}", settings.url)))?,
            ),
            Some(sentinel) => Target::Sentinel(tokio::sync::Mutex::new(sentinel_client(
                &settings.url,
                sentinel,
            )?)),
        };
        Ok(Connector {
            target,
            config,
            response_timeout,
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
        })
    }

    /// The deadline of an ordinary call.
    pub(super) fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Sends one command and returns its reply; `what` names it in errors.
    pub(super) async fn query(
        &self,
        what: &str,
        cmd: &Cmd,
        deadline: Duration,
        retry: Retry,
    ) -> Result<Value, StoreError> {
        self.call(what, deadline, retry, |mut connection| async move {
            cmd.query_async::<Value>(&mut connection).await
        })
        .await
    }

    /// Sends a pipeline (one write on one connection) and returns every reply, server errors
    /// included as [`Value::ServerError`] (the pipeline must be built with `ignore_errors`).
    pub(super) async fn pipeline(
        &self,
        what: &str,
        pipe: &Pipeline,
        deadline: Duration,
        retry: Retry,
    ) -> Result<Vec<Value>, StoreError> {
        self.call(what, deadline, retry, |mut connection| async move {
            pipe.query_async::<Vec<Value>>(&mut connection).await
        })
        .await
    }

    /// Runs `f` on the current connection (opening one if needed) within `deadline`.
    async fn call<T, F, Fut>(
        &self,
        what: &str,
        deadline: Duration,
        retry: Retry,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
        T: Replied,
    {
        let mut attempts = match retry {
            Retry::Once => 2,
            Retry::Never => 1,
        };
        loop {
            attempts -= 1;
            let live = self.connection().await?;
            let error = match tokio::time::timeout(deadline, f(live.connection.clone())).await {
                Ok(Ok(reply)) => {
                    if reply.says_not_primary() {
                        // The server answered but is not (or no longer) the primary: the reply
                        // is returned for the caller to report, and the next call re-resolves.
                        self.drop_connection(live.generation);
                    }
                    return Ok(reply);
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    self.drop_connection(live.generation);
                    return Err(StoreError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("redis {what}: no reply within {} ms", deadline.as_millis()),
                    )));
                }
            };
            let broken = connection_broken(&error);
            if broken {
                self.drop_connection(live.generation);
            }
            if !(broken && attempts > 0) {
                return Err(redis_error(what, &error));
            }
            tracing::debug!(what, error = %error, "redis connection failed; retrying on a new one");
        }
    }

    /// The current connection, or a new one.
    async fn connection(&self) -> Result<Live, StoreError> {
        if let Some(live) = self.current_connection() {
            return Ok(live);
        }
        let _opening = self.opening.lock().await;
        if let Some(live) = self.current_connection() {
            return Ok(live);
        }
        let budget = match self.target {
            Target::Direct(_) => self.response_timeout,
            // Ask the sentinels, then connect to the primary and check its role.
            Target::Sentinel(_) => self.response_timeout * 3,
        };
        let connection = tokio::time::timeout(budget, self.open())
            .await
            .map_err(|_| {
                StoreError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis connect: no connection within {} ms",
                        budget.as_millis()
                    ),
                ))
            })?
            .map_err(|e| redis_error("connect", &e))?;
        let live = Live {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            connection,
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(live.clone());
        Ok(live)
    }

    fn current_connection(&self) -> Option<Live> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Opens a connection to the server (with Sentinel: to the primary it names now).
    async fn open(&self) -> Result<MultiplexedConnection, RedisError> {
        match &self.target {
            Target::Direct(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
            Target::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                tracing::debug!(primary = ?client.get_connection_info().addr(), "sentinel named the redis primary");
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
        }
    }

    /// Forgets connection `generation` if it is still the current one.
    fn drop_connection(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|live| live.generation == generation)
        {
            *current = None;
        }
    }
}

/// Replies that can tell that the server is not the primary.
pub(super) trait Replied {
    /// Whether the reply holds a `READONLY` or `MASTERDOWN` error.
    fn says_not_primary(&self) -> bool;
}

impl Replied for Value {
    fn says_not_primary(&self) -> bool {
        value_says_not_primary(self)
    }
}

impl Replied for Vec<Value> {
    fn says_not_primary(&self) -> bool {
        self.iter().any(value_says_not_primary)
    }
}

fn value_says_not_primary(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if matches!(e.code(), "READONLY" | "MASTERDOWN"))
}

/// Whether `error` means the connection must be replaced: it broke, or the server is not (or
/// no longer) the primary.
fn connection_broken(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// Maps a Redis error to the store's error type.
pub(super) fn redis_error(what: &str, error: &RedisError) -> StoreError {
    let kind = if error.is_timeout() {
        io::ErrorKind::TimedOut
    } else if error.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if error.is_connection_dropped() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    StoreError::Io(io::Error::new(kind, format!("redis {what}: {error}")))
}

/// An invalid-settings error.
pub(super) fn invalid(detail: String) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, detail))
}

/// Builds the Sentinel client; `url` only contributes the primary's db, user and password.
fn sentinel_client(url: &str, sentinel: &SentinelSettings) -> Result<SentinelClient, StoreError> {
    if sentinel.sentinels.is_empty() {
        return Err(invalid(
            "redis sentinel: no sentinel addresses given".to_owned(),
        ));
    }
    if sentinel.master_name.is_empty() {
        return Err(invalid("redis sentinel: empty master name".to_owned()));
    }
    let mut node = SentinelNodeConnectionInfo::default();
    if !url.is_empty() {
        let info = url
            .into_connection_info()
            .map_err(|e| invalid(format!("redis url {url:?}: {e}")))?;
        node = node.set_redis_connection_info(info.redis_settings().clone());
    }
    let sentinels = sentinel
        .sentinels
        .iter()
        .map(|address| {
            address
                .as_str()
                .into_connection_info()
                .map_err(|e| invalid(format!("redis sentinel address {address:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    SentinelClient::build(
        sentinels,
        sentinel.master_name.clone(),
        Some(node),
        SentinelServerType::Master,
    )
    .map_err(|e| invalid(format!("redis sentinel: {e}")))
}
