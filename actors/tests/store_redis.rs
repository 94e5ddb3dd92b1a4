//! The Redis store against real `redis-server` processes (one per test, plus replicas and a sentinel where needed): claims, fencing, round trips, compaction, corruption, WAIT and Sentinel.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chorus_actors::ids::DocId;
use chorus_actors::store::redis::{
    Owner, RedisSettings, RedisStore, SentinelSettings, MAX_RECORDS_PER_CALL,
};
use chorus_actors::store::{AppendBatch, DocumentStore, Store, StoreError, StoredDocument};

mod store_support;
use store_support::{batch, doc, record, records, snapshot};

/// Where the tests find Redis (the Debian/Ubuntu package's path).
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` (or sentinel) process, killed on drop.
struct RedisProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisProcess {
    /// Starts a server on a free loopback port with persistence off; `extra` is appended to
    /// its command line.
    fn server(extra: &[&str]) -> RedisProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut command = Command::new(redis_server());
        command
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(dir.path())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            // A replica's first sync starts at once instead of after the default 5 s.
            .arg("--repl-diskless-sync-delay")
            .arg("0")
            .args(extra);
        RedisProcess::spawn(command, port, dir)
    }

    /// Starts a sentinel monitoring the primary on `primary_port` as `master_name` (quorum 1,
    /// down after 300 ms).
    fn sentinel(master_name: &str, primary_port: u16) -> RedisProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\n\
                 sentinel monitor {master_name} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {master_name} 300\n\
                 sentinel failover-timeout {master_name} 2000\n",
                dir.path().display()
            ),
        )
        .expect("write sentinel config");
        let mut command = Command::new(redis_server());
        command.arg(&config).arg("--sentinel");
        RedisProcess::spawn(command, port, dir)
    }

    fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir) -> RedisProcess {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("start redis-server");
        let process = RedisProcess {
            child,
            port,
            _dir: dir,
        };
        process.wait_until_ready();
        process
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Waits until the process answers PING (raw RESP, no client library involved).
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis on port {} did not answer PING within 10 s",
            self.port
        );
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server() -> &'static str {
    assert!(
        Path::new(REDIS_SERVER).exists(),
        "these tests need {REDIS_SERVER} (apt-get install redis-server)"
    );
    REDIS_SERVER
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A key prefix no other test uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn settings(url: &str, prefix: &str, node: &str) -> RedisSettings {
    let mut settings =
        RedisSettings::new(url, node, format!("{node}-incarnation-{}", unique_prefix()));
    settings.key_prefix = prefix.to_owned();
    settings.response_timeout_ms = 2_000;
    settings
}

async fn connect(url: &str, prefix: &str, node: &str) -> RedisStore {
    RedisStore::connect(settings(url, prefix, node))
        .await
        .expect("connect to redis")
}

/// A plain client for checking and damaging what the store wrote.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn cmd<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &[&[u8]],
) -> T {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(conn).await.expect("raw command")
}

/// Marks `store`'s incarnation alive (as membership would), for 60 s.
async fn set_alive(store: &RedisStore) {
    let key = store.liveness_key(store.incarnation());
    let mut set = redis::cmd("SET");
    set.arg(&key).arg(store.node_name()).arg("PX").arg(60_000);
    let () = store
        .query("set liveness", &set)
        .await
        .expect("set liveness key");
}

/// Marks `store`'s incarnation dead.
async fn set_dead(store: &RedisStore) {
    let mut del = redis::cmd("DEL");
    del.arg(store.liveness_key(store.incarnation()));
    let _: i64 = store
        .query("delete liveness", &del)
        .await
        .expect("delete liveness key");
}

async fn open(store: &RedisStore, id: &DocId) -> (Box<dyn DocumentStore>, StoredDocument) {
    store.open(id).await.expect("open document")
}

async fn owner(store: &RedisStore, id: &DocId) -> Owner {
    store
        .owner_of(id)
        .await
        .expect("read owner")
        .expect("document has an owner")
}

fn corrupt_detail(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt { detail, .. }) => detail,
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[tokio::test]
async fn claim_append_reload_round_trip() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let store = connect(&server.url(), &prefix, "node-a").await;
    let id = doc("src/main.rs");

    let (mut handle, stored) = open(&store, &id).await;
    assert_eq!(stored, StoredDocument::default());
    handle
        .append(batch(records(1..=3)))
        .await
        .expect("append 1..=3");
    handle
        .append(batch(vec![record(4)]))
        .await
        .expect("append 4");
    // A batch bigger than one script call goes out as several calls in one pipeline.
    let big = (MAX_RECORDS_PER_CALL as u64) * 2 + 17;
    handle
        .append(batch(records(5..=4 + big)))
        .await
        .expect("append a big batch");
    let last = 4 + big;

    let me = owner(&store, &id).await;
    assert_eq!(me.node, "node-a");
    assert_eq!(me.incarnation, store.incarnation());

    // The documented key layout, all in one hash slot.
    let mut conn = raw(&server.url()).await;
    let len: u64 = cmd(
        &mut conn,
        &[
            b"LLEN",
            format!("{prefix}doc:{{src/main.rs}}:log").as_bytes(),
        ],
    )
    .await;
    assert_eq!(len, last);
    let rev: String = cmd(
        &mut conn,
        &[
            b"HGET",
            format!("{prefix}doc:{{src/main.rs}}:meta").as_bytes(),
            b"rev",
        ],
    )
    .await;
    assert_eq!(rev, last.to_string());

    // Reopening in the same process takes the document over with a new token and sees all.
    let (_, stored) = open(&store, &id).await;
    assert_eq!(stored.snapshot, None);
    assert_eq!(stored.log, records(1..=last));
    assert!(owner(&store, &id).await.token > me.token);

    // Another node loads it too once this incarnation is not alive (its liveness key never
    // existed here).
    let other = connect(&server.url(), &prefix, "node-b").await;
    let (_, stored) = open(&other, &id).await;
    assert_eq!(stored.log.len() as u64, last);
}

#[tokio::test]
async fn a_live_owner_keeps_its_document_and_a_dead_one_is_fenced() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let a = connect(&server.url(), &prefix, "node-a").await;
    let b = connect(&server.url(), &prefix, "node-b").await;
    let id = doc("shared/doc.txt");

    set_alive(&a).await;
    let (mut handle_a, _) = open(&a, &id).await;
    handle_a
        .append(batch(records(1..=2)))
        .await
        .expect("a appends");
    let token_a = owner(&a, &id).await.token;

    match b.open(&id).await {
        Err(StoreError::OwnedElsewhere { node, incarnation }) => {
            assert_eq!(node, "node-a");
            assert_eq!(incarnation, a.incarnation());
        }
        other => panic!("expected OwnedElsewhere, got {:?}", other.map(|(_, s)| s)),
    }
    // The refused claim changed nothing.
    assert_eq!(owner(&a, &id).await.token, token_a);
    handle_a
        .append(batch(vec![record(3)]))
        .await
        .expect("a still appends");

    // a's liveness lapses: b takes over with a larger token and loads a's ops.
    set_dead(&a).await;
    let (mut handle_b, stored) = open(&b, &id).await;
    assert_eq!(stored.log, records(1..=3));
    let now_owner = owner(&b, &id).await;
    assert_eq!(now_owner.node, "node-b");
    assert!(now_owner.token > token_a, "{} > {token_a}", now_owner.token);

    // a's writes are refused and leave nothing behind.
    assert!(matches!(
        handle_a.append(batch(vec![record(4)])).await,
        Err(StoreError::Fenced)
    ));
    assert!(matches!(
        handle_a.compact(&snapshot(3)).await,
        Err(StoreError::Fenced)
    ));
    assert!(matches!(handle_a.release().await, Err(StoreError::Fenced)));
    handle_b
        .append(batch(vec![record(4)]))
        .await
        .expect("b appends");
    let (_, stored) = open(&b, &id).await;
    assert_eq!(stored.log, records(1..=4));
    assert_eq!(stored.snapshot, None);
}

#[tokio::test]
async fn tokens_strictly_increase_and_exceed_the_clock() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let a = connect(&server.url(), &prefix, "node-a").await;
    let b = connect(&server.url(), &prefix, "node-b").await;
    let id = doc("t");
    let mut last = 0;
    for round in 0..20 {
        let store = if round % 2 == 0 { &a } else { &b };
        let _ = open(store, &id).await;
        let token = owner(store, &id).await.token;
        assert!(token > last, "round {round}: {token} after {last}");
        last = token;
    }
    // Tokens carry the server clock (µs): far above any count of claims.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64;
    assert!(
        last > now_us - 60_000_000 && last < now_us + 60_000_000,
        "{last} vs {now_us}"
    );

    // A token ahead of the clock (a claim issued by a primary whose clock ran ahead, or many
    // claims within one microsecond) is still exceeded: old + 1.
    let mut conn = raw(&server.url()).await;
    let ahead = now_us + 3_600_000_000;
    let _: i64 = cmd(
        &mut conn,
        &[
            b"HSET",
            format!("{prefix}doc:{{t}}:owner").as_bytes(),
            b"token",
            ahead.to_string().as_bytes(),
        ],
    )
    .await;
    let _ = open(&a, &id).await;
    assert_eq!(owner(&a, &id).await.token, ahead + 1);
}

#[tokio::test]
async fn compaction_trims_the_log_and_loads_back() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let store = connect(&server.url(), &prefix, "node-a").await;
    let id = doc("c.md");
    let log_key = format!("{prefix}doc:{{c.md}}:log");
    let mut conn = raw(&server.url()).await;

    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=10))).await.expect("append");
    handle.compact(&snapshot(6)).await.expect("compact at 6");
    let len: u64 = cmd(&mut conn, &[b"LLEN", log_key.as_bytes()]).await;
    assert_eq!(len, 4);
    handle
        .append(batch(records(11..=12)))
        .await
        .expect("append after compaction");

    let (mut handle, stored) = open(&store, &id).await;
    assert_eq!(stored.snapshot, Some(snapshot(6)));
    assert_eq!(stored.log, records(7..=12));

    // Compacting at the head empties the log.
    handle.compact(&snapshot(12)).await.expect("compact at 12");
    let len: u64 = cmd(&mut conn, &[b"LLEN", log_key.as_bytes()]).await;
    assert_eq!(len, 0);
    let (mut handle, stored) = open(&store, &id).await;
    assert_eq!(stored.snapshot, Some(snapshot(12)));
    assert!(stored.log.is_empty());
    handle
        .append(batch(vec![record(13)]))
        .await
        .expect("append 13");

    // A snapshot ahead of the log, or older than what was already trimmed, is refused and
    // changes nothing.
    let detail = corrupt_detail(handle.compact(&snapshot(20)).await);
    assert!(
        detail.contains("after the last logged revision 13"),
        "{detail}"
    );
    let detail = corrupt_detail(handle.compact(&snapshot(5)).await);
    assert!(detail.contains("older than the log"), "{detail}");
    let (_, stored) = open(&store, &id).await;
    assert_eq!(stored.snapshot, Some(snapshot(12)));
    assert_eq!(stored.log, records(13..=13));
}

#[tokio::test]
async fn gaps_and_damage_are_detected() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let store = connect(&server.url(), &prefix, "node-a").await;
    let mut conn = raw(&server.url()).await;

    // An append that does not follow the stored revision is refused and writes nothing.
    let id = doc("gap/append");
    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=3))).await.expect("append");
    let detail = corrupt_detail(handle.append(batch(records(5..=6))).await);
    assert!(
        detail.contains("revisions from 5 does not follow the stored revision 3"),
        "{detail}"
    );
    let detail = corrupt_detail(handle.append(batch(records(2..=4))).await);
    assert!(detail.contains("stored revision 3"), "{detail}");
    let (mut handle, stored) = open(&store, &id).await;
    assert_eq!(stored.log, records(1..=3));
    // A batch with a hole in it cannot even be encoded: nothing is sent.
    let mut holey = records(4..=6);
    holey.remove(1);
    assert!(matches!(
        AppendBatch::encode(4..=6, holey.iter()),
        Err(StoreError::Io(_))
    ));
    handle
        .append(batch(records(4..=4)))
        .await
        .expect("the store took nothing from the refused batch");

    // A record missing from the front of the log (no snapshot covers it).
    let id = doc("gap/front");
    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=4))).await.expect("append");
    let _: Vec<u8> = cmd(
        &mut conn,
        &[b"LPOP", format!("{prefix}doc:{{gap/front}}:log").as_bytes()],
    )
    .await;
    let detail = corrupt_detail(store.open(&id).await);
    assert!(detail.contains("log holds 3 records"), "{detail}");
    // ... even when meta is made to agree: the snapshot-to-log gap remains.
    let _: i64 = cmd(
        &mut conn,
        &[
            b"HSET",
            format!("{prefix}doc:{{gap/front}}:meta").as_bytes(),
            b"first",
            b"2",
        ],
    )
    .await;
    let detail = corrupt_detail(store.open(&id).await);
    assert!(detail.contains("revisions 1..=1 are missing"), "{detail}");

    // A record missing from the middle.
    let id = doc("gap/middle");
    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=5))).await.expect("append");
    let key = format!("{prefix}doc:{{gap/middle}}:log");
    let _: () = cmd(&mut conn, &[b"LSET", key.as_bytes(), b"2", b"gone"]).await;
    let _: i64 = cmd(&mut conn, &[b"LREM", key.as_bytes(), b"1", b"gone"]).await;
    let _: i64 = cmd(
        &mut conn,
        &[
            b"HSET",
            format!("{prefix}doc:{{gap/middle}}:meta").as_bytes(),
            b"rev",
            b"4",
        ],
    )
    .await;
    let detail = corrupt_detail(store.open(&id).await);
    assert!(detail.contains("has revision 4, expected 3"), "{detail}");

    // A flipped byte in a record, and in the snapshot.
    let id = doc("damaged");
    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=3))).await.expect("append");
    handle.compact(&snapshot(1)).await.expect("compact");
    let key = format!("{prefix}doc:{{damaged}}:log");
    let mut bytes: Vec<u8> = cmd(&mut conn, &[b"LINDEX", key.as_bytes(), b"0"]).await;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    let _: () = cmd(&mut conn, &[b"LSET", key.as_bytes(), b"0", &bytes]).await;
    let detail = corrupt_detail(store.open(&id).await);
    assert!(detail.contains("log entry 0"), "{detail}");
    bytes[last] ^= 0x20;
    let _: () = cmd(&mut conn, &[b"LSET", key.as_bytes(), b"0", &bytes]).await;
    let _ = open(&store, &id).await;
    let snap_key = format!("{prefix}doc:{{damaged}}:snap");
    let mut snap: Vec<u8> = cmd(&mut conn, &[b"GET", snap_key.as_bytes()]).await;
    snap[12] ^= 1;
    let _: () = cmd(&mut conn, &[b"SET", snap_key.as_bytes(), &snap]).await;
    let detail = corrupt_detail(store.open(&id).await);
    assert!(detail.contains("snapshot"), "{detail}");

    // A snapshot of another document.
    let id = doc("elsewhere");
    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=1))).await.expect("append");
    let good: Vec<u8> = {
        let other = doc("donor");
        let (mut donor, _) = open(&store, &other).await;
        donor.append(batch(records(1..=1))).await.expect("append");
        donor.compact(&snapshot(1)).await.expect("compact");
        cmd(
            &mut conn,
            &[b"GET", format!("{prefix}doc:{{donor}}:snap").as_bytes()],
        )
        .await
    };
    let _: () = cmd(
        &mut conn,
        &[
            b"SET",
            format!("{prefix}doc:{{elsewhere}}:snap").as_bytes(),
            &good,
        ],
    )
    .await;
    let detail = corrupt_detail(store.open(&id).await);
    assert!(detail.contains("belongs to document \"donor\""), "{detail}");
}

#[tokio::test]
async fn a_released_document_is_claimed_by_another_node_at_once() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let a = connect(&server.url(), &prefix, "node-a").await;
    let b = connect(&server.url(), &prefix, "node-b").await;
    let id = doc("drain/me.py");
    set_alive(&a).await;

    let (mut handle_a, _) = open(&a, &id).await;
    handle_a
        .append(batch(records(1..=5)))
        .await
        .expect("append");
    let token_a = owner(&a, &id).await.token;
    handle_a.release().await.expect("release");
    assert_eq!(a.owner_of(&id).await.expect("read owner"), None);

    // a is still alive, but released the document: b claims it, above a's token.
    let (mut handle_b, stored) = open(&b, &id).await;
    assert_eq!(stored.log, records(1..=5));
    assert!(owner(&b, &id).await.token > token_a);
    assert!(matches!(
        handle_a.append(batch(vec![record(6)])).await,
        Err(StoreError::Fenced)
    ));
    handle_b
        .append(batch(vec![record(6)]))
        .await
        .expect("b appends");
}

#[tokio::test]
async fn wait_without_a_replica_fails_clearly_and_fast() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let mut s = settings(&server.url(), &prefix, "node-a");
    s.wait_replicas = 1;
    s.wait_timeout_ms = 100;
    let store = RedisStore::connect(s).await.expect("connect");
    let id = doc("w");
    let (mut handle, _) = open(&store, &id).await;
    let started = Instant::now();
    match handle.append(batch(records(1..=2))).await {
        Err(StoreError::NotReplicated {
            wanted: 1,
            confirmed: 0,
            timeout_ms: 100,
            doc,
        }) => {
            assert_eq!(doc, id);
        }
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let message = StoreError::NotReplicated {
        doc: id.clone(),
        wanted: 1,
        confirmed: 0,
        timeout_ms: 100,
    }
    .to_string();
    assert!(message.contains("0 of 1 replicas"), "{message}");
}

#[tokio::test]
async fn wait_with_a_replica_confirms_appends() {
    let primary = RedisProcess::server(&[]);
    let replica_of = primary.port.to_string();
    let replica = RedisProcess::server(&["--replicaof", "127.0.0.1", &replica_of]);
    wait_for_link(&replica.url()).await;

    let prefix = unique_prefix();
    let mut s = settings(&primary.url(), &prefix, "node-a");
    s.wait_replicas = 1;
    s.wait_timeout_ms = 2_000;
    let store = RedisStore::connect(s).await.expect("connect");
    let id = doc("replicated");
    let (mut handle, _) = open(&store, &id).await;
    for rev in 1..=20 {
        handle
            .append(batch(vec![record(rev)]))
            .await
            .expect("append confirmed by the replica");
    }
    // Confirmed means: the replica has it.
    let mut conn = raw(&replica.url()).await;
    let len: u64 = cmd(
        &mut conn,
        &[
            b"LLEN",
            format!("{prefix}doc:{{replicated}}:log").as_bytes(),
        ],
    )
    .await;
    assert_eq!(len, 20);
}

/// Waits until the replica at `url` reports its link to the primary up.
async fn wait_for_link(url: &str) {
    let mut conn = raw(url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = cmd(&mut conn, &[b"INFO", b"replication"]).await;
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(Instant::now() < deadline, "replica link not up: {info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sentinel_finds_the_primary_and_follows_a_failover() {
    let primary_process = RedisProcess::server(&[]);
    let replica_of = primary_process.port.to_string();
    let replica = RedisProcess::server(&["--replicaof", "127.0.0.1", &replica_of]);
    wait_for_link(&replica.url()).await;
    let sentinel = RedisProcess::sentinel("chorus-test", primary_process.port);
    let mut primary = primary_process;

    let prefix = unique_prefix();
    let mut s = settings("", &prefix, "node-a");
    s.sentinel = Some(SentinelSettings {
        sentinels: vec![sentinel.url()],
        master_name: "chorus-test".to_owned(),
    });
    s.response_timeout_ms = 500;
    let store = RedisStore::connect(s)
        .await
        .expect("connect through sentinel");
    let id = doc("via/sentinel");
    let (mut handle, _) = open(&store, &id).await;
    handle
        .append(batch(records(1..=3)))
        .await
        .expect("append through sentinel");
    let token = owner(&store, &id).await.token;

    // Let the replica catch up (the store here does not WAIT), then kill the primary: the
    // sentinel promotes the replica, the store re-resolves the primary and the same claim
    // keeps working. Nothing can reach the dead primary, so failed appends wrote nothing.
    let mut replica_conn = raw(&replica.url()).await;
    let log_key = format!("{prefix}doc:{{via/sentinel}}:log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cmd::<u64>(&mut replica_conn, &[b"LLEN", log_key.as_bytes()]).await < 3 {
        assert!(Instant::now() < deadline, "replica did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    primary.kill();
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match handle.append(batch(vec![record(4)])).await {
            Ok(()) => break,
            Err(StoreError::Io(_)) if started.elapsed() < Duration::from_secs(20) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("append after failover: {other:?}"),
        }
    }
    eprintln!(
        "writable again {:?} after the primary was killed ({failures} failed appends)",
        started.elapsed()
    );
    handle
        .append(batch(vec![record(5)]))
        .await
        .expect("append on the new primary");
    let (_, stored) = open(&store, &id).await;
    assert_eq!(stored.log, records(1..=5));
    assert!(owner(&store, &id).await.token > token);
    // The data is on the old replica, now the primary (which dropped its clients when it
    // changed roles).
    let mut promoted = raw(&replica.url()).await;
    let role: String = cmd(&mut promoted, &[b"INFO", b"replication"]).await;
    assert!(role.contains("role:master"), "{role}");
}

#[tokio::test]
async fn concurrent_claims_by_live_nodes_have_one_winner() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let a = connect(&server.url(), &prefix, "node-a").await;
    let b = connect(&server.url(), &prefix, "node-b").await;
    set_alive(&a).await;
    set_alive(&b).await;
    for i in 0..30 {
        let id = doc(&format!("race/{i}"));
        let (ra, rb) = tokio::join!(a.open(&id), b.open(&id));
        let winner = match (ra, rb) {
            (Ok(_), Err(StoreError::OwnedElsewhere { node, .. })) => {
                assert_eq!(node, "node-a");
                "node-a"
            }
            (Err(StoreError::OwnedElsewhere { node, .. }), Ok(_)) => {
                assert_eq!(node, "node-b");
                "node-b"
            }
            (ra, rb) => panic!(
                "doc {i}: expected one winner, got {:?} and {:?}",
                ra.map(|(_, s)| s),
                rb.map(|(_, s)| s)
            ),
        };
        assert_eq!(owner(&a, &id).await.node, winner);
    }
}

#[tokio::test]
async fn a_paused_server_times_out_and_the_store_reconnects() {
    let server = RedisProcess::server(&[]);
    let prefix = unique_prefix();
    let mut s = settings(&server.url(), &prefix, "node-a");
    s.response_timeout_ms = 300;
    let store = RedisStore::connect(s).await.expect("connect");
    let id = doc("paused");
    let (mut handle, _) = open(&store, &id).await;
    handle.append(batch(records(1..=2))).await.expect("append");

    signal(&server, "-STOP");
    let started = Instant::now();
    match handle.append(batch(vec![record(3)])).await {
        Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1_500),
        "{waited:?}"
    );
    signal(&server, "-CONT");
    let mut conn = raw(&server.url()).await;
    let meta = format!("{prefix}doc:{{paused}}:meta");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cmd::<String>(&mut conn, &[b"HGET", meta.as_bytes(), b"rev"]).await != "3" {
        assert!(Instant::now() < deadline, "the queued append never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The append that timed out was queued on the old connection and ran once the server
    // resumed: its outcome was unknown, and the revision check now tells.
    let detail = corrupt_detail(handle.append(batch(vec![record(3)])).await);
    assert!(detail.contains("stored revision 3"), "{detail}");
    handle
        .append(batch(vec![record(4)]))
        .await
        .expect("append after resume");
    let (_, stored) = open(&store, &id).await;
    assert_eq!(stored.log, records(1..=4));
}

fn signal(process: &RedisProcess, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(process.child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting() {
    let mut s = RedisSettings::new("redis://127.0.0.1:1/", "n", "i");
    s.key_prefix = "chorus:{x}:".to_owned();
    assert!(
        matches!(RedisStore::connect(s).await, Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput)
    );
    let s = RedisSettings::new("redis://127.0.0.1:1/", "", "i");
    assert!(
        matches!(RedisStore::connect(s).await, Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput)
    );
    let mut s = RedisSettings::new("redis://127.0.0.1:1/", "n", "i");
    s.wait_replicas = 1;
    s.wait_timeout_ms = 0;
    assert!(
        matches!(RedisStore::connect(s).await, Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput)
    );
    // Nothing listens on port 1: a clear connection error, quickly.
    let mut s = RedisSettings::new(format!("redis://127.0.0.1:{}/", free_port()), "n", "i");
    s.response_timeout_ms = 300;
    let started = Instant::now();
    assert!(matches!(
        RedisStore::connect(s).await,
        Err(StoreError::Io(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}
