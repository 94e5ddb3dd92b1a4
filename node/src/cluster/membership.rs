//! Cluster membership in Redis: one liveness key per node incarnation with a short TTL, renewed
//! well inside it, and a hash of member records (how to reach each incarnation).
//!
//! Self-fencing: the node counts itself live only until `sent + lease - margin` of its last
//! confirmed renewal (measured on its own monotonic clock from *before* the request was sent, so
//! the key in Redis can only expire later than that). Past it, the node serves nothing that needs
//! ownership. Renewal uses `SET ... XX`, so an incarnation whose key expired can never come back:
//! every other node may then claim its documents, and this process must start afresh.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chorus_actors::store::redis::RedisStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

/// Fraction of the lease kept as a safety margin for clock-rate differences and scheduling.
const LEASE_MARGIN_FRACTION: u64 = 5;

/// Most member records read at once (a cluster larger than this is not something one hash
/// read should pretend to handle).
const MAX_MEMBERS: usize = 1_024;

/// How a member is reached; stored as JSON in the members hash under its incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node name (stable across restarts).
    pub node: String,
    /// Unique per process start.
    pub incarnation: String,
    /// `host:port` of its ractor_cluster listener.
    pub cluster_addr: String,
    /// Its client-facing WebSocket URL.
    pub public_url: String,
    /// Handing its documents over; takes no new ones.
    #[serde(default)]
    pub draining: bool,
}

/// This node's membership.
pub struct Membership {
    redis: Arc<RedisStore>,
    prefix: String,
    me: std::sync::Mutex<MemberInfo>,
    lease: Duration,
    renew_every: Duration,
    origin: Instant,
    /// Milliseconds since `origin` until which this node may serve (0 = not live).
    valid_until_ms: AtomicU64,
    lost: AtomicBool,
    lost_notify: Notify,
    members: watch::Sender<Vec<MemberInfo>>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh incarnation id: node name, start time, random bits.
pub fn new_incarnation(node: &str) -> String {
    let bits: u64 = rand::random();
    format!("{node}.{}.{bits:016x}", now_unix_ms())
}

impl Membership {
    /// The liveness key of an incarnation.
    pub fn liveness_key(prefix: &str, incarnation: &str) -> String {
        format!("{prefix}live:{incarnation}")
    }

    fn members_key(&self) -> String {
        format!("{}members", self.prefix)
    }

    /// Joins: removes this node name's previous incarnations (so their documents move at once),
    /// creates this incarnation's liveness key and member record.
    pub async fn join(
        redis: Arc<RedisStore>,
        prefix: &str,
        me: MemberInfo,
        lease: Duration,
        renew_every: Duration,
    ) -> anyhow::Result<Arc<Membership>> {
        let (members, _) = watch::channel(Vec::new());
        let membership = Arc::new(Membership {
            redis,
            prefix: prefix.to_owned(),
            me: std::sync::Mutex::new(me.clone()),
            lease,
            renew_every,
            origin: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            lost_notify: Notify::new(),
            members,
        });
        let redis = membership.redis.clone();
        let records: Vec<(String, String)> = redis
            .query(
                "read members",
                redis::cmd("HGETALL").arg(membership.members_key()),
            )
            .await
            .context("reading cluster members from Redis")?;
        for (incarnation, record) in records {
            let previous: Option<MemberInfo> = serde_json::from_str(&record).ok();
            if previous.is_some_and(|p| p.node == me.node) && incarnation != me.incarnation {
                tracing::info!(%incarnation, "removing this node's previous incarnation");
                let _: i64 = redis
                    .query(
                        "remove old incarnation",
                        redis::cmd("DEL").arg(Self::liveness_key(prefix, &incarnation)),
                    )
                    .await
                    .context("removing the previous incarnation")?;
                let _: i64 = redis
                    .query(
                        "remove old member",
                        redis::cmd("HDEL")
                            .arg(membership.members_key())
                            .arg(&incarnation),
                    )
                    .await
                    .context("removing the previous member record")?;
            }
        }
        let sent = membership.origin.elapsed();
        let created: Option<String> = redis
            .query(
                "create liveness key",
                redis::cmd("SET")
                    .arg(Self::liveness_key(prefix, &me.incarnation))
                    .arg(&me.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease.as_millis() as u64),
            )
            .await
            .context("creating the liveness key")?;
        anyhow::ensure!(
            created.is_some(),
            "incarnation {} already exists in Redis",
            me.incarnation
        );
        membership.confirm(sent);
        let record = serde_json::to_string(&me).context("encoding the member record")?;
        let _: i64 = redis
            .query(
                "write member",
                redis::cmd("HSET")
                    .arg(membership.members_key())
                    .arg(&me.incarnation)
                    .arg(record),
            )
            .await
            .context("writing the member record")?;
        membership.refresh_members().await?;
        Ok(membership)
    }

    fn confirm(&self, sent: Duration) {
        let lease_ms = self.lease.as_millis() as u64;
        let valid = sent.as_millis() as u64 + lease_ms - lease_ms / LEASE_MARGIN_FRACTION;
        self.valid_until_ms.fetch_max(valid, Ordering::AcqRel);
    }

    /// This incarnation's id.
    pub fn incarnation(&self) -> String {
        self.me
            .lock()
            .map(|m| m.incarnation.clone())
            .unwrap_or_default()
    }

    /// True while this node may serve documents (its lease is confirmed).
    pub fn is_live(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
            && (self.origin.elapsed().as_millis() as u64)
                < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// Completes when the incarnation is lost for good (its key expired).
    pub async fn lost(&self) {
        loop {
            let notified = self.lost_notify.notified();
            if self.lost.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// The live members, refreshed every renewal.
    pub fn members(&self) -> watch::Receiver<Vec<MemberInfo>> {
        self.members.subscribe()
    }

    /// Renews the lease and refreshes the member list until the incarnation is lost.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let incarnation = self.incarnation();
            let sent = self.origin.elapsed();
            let renewed: Result<Option<String>, _> = self
                .redis
                .query(
                    "renew lease",
                    redis::cmd("SET")
                        .arg(Self::liveness_key(&self.prefix, &incarnation))
                        .arg("1")
                        .arg("XX")
                        .arg("PX")
                        .arg(self.lease.as_millis() as u64),
                )
                .await;
            match renewed {
                Ok(Some(_)) => self.confirm(sent),
                Ok(None) => {
                    tracing::error!(%incarnation, "liveness key expired: this incarnation is fenced");
                    self.lost.store(true, Ordering::Release);
                    self.lost_notify.notify_waiters();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; will retry"),
            }
            if let Err(e) = self.refresh_members().await {
                tracing::warn!(error = %e, "reading cluster members failed");
            }
        }
    }

    /// Reads the member records and keeps those whose liveness key exists.
    pub async fn refresh_members(&self) -> anyhow::Result<()> {
        let records: Vec<(String, String)> = self
            .redis
            .query(
                "read members",
                redis::cmd("HGETALL").arg(self.members_key()),
            )
            .await
            .context("reading members")?;
        let records: Vec<MemberInfo> = records
            .into_iter()
            .take(MAX_MEMBERS)
            .filter_map(|(_, r)| serde_json::from_str::<MemberInfo>(&r).ok())
            .collect();
        let mut live = Vec::new();
        for m in records {
            let key = Self::liveness_key(&self.prefix, &m.incarnation);
            let alive: bool = self
                .redis
                .query("check liveness", redis::cmd("EXISTS").arg(key))
                .await?;
            if alive {
                live.push(m);
            } else {
                // Dead for good (keys never come back): drop its record.
                let _: Result<i64, _> = self
                    .redis
                    .query(
                        "drop dead member",
                        redis::cmd("HDEL")
                            .arg(self.members_key())
                            .arg(&m.incarnation),
                    )
                    .await;
            }
        }
        live.sort_by(|a, b| a.incarnation.cmp(&b.incarnation));
        self.members.send_if_modified(|current| {
            if *current != live {
                *current = live;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// Marks this node as draining (takes no new documents).
    pub async fn set_draining(&self) -> anyhow::Result<()> {
        let me = {
            let Ok(mut me) = self.me.lock() else {
                anyhow::bail!("membership state poisoned")
            };
            me.draining = true;
            me.clone()
        };
        let record = serde_json::to_string(&me)?;
        let _: i64 = self
            .redis
            .query(
                "mark draining",
                redis::cmd("HSET")
                    .arg(self.members_key())
                    .arg(&me.incarnation)
                    .arg(record),
            )
            .await?;
        self.refresh_members().await
    }

    /// Leaves the cluster: deletes the liveness key and the member record.
    pub async fn leave(&self) -> anyhow::Result<()> {
        let incarnation = self.incarnation();
        self.valid_until_ms.store(0, Ordering::Release);
        let _: i64 = self
            .redis
            .query(
                "delete liveness key",
                redis::cmd("DEL").arg(Self::liveness_key(&self.prefix, &incarnation)),
            )
            .await?;
        let _: i64 = self
            .redis
            .query(
                "delete member",
                redis::cmd("HDEL").arg(self.members_key()).arg(&incarnation),
            )
            .await?;
        Ok(())
    }
}
