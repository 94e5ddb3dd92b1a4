//! Helpers for whole-system tests: start a real node on 127.0.0.1:0 with its own data
//! directory, and talk to it over real WebSockets with exact protocol messages.
#![allow(dead_code)]

pub mod editor;
pub mod process;
pub mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chorus_config::Config;
use chorus_node::Node;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one expected message before failing.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a bounded poll loop keeps looking at a condition that has no event to await.
pub const POLL_DEADLINE: Duration = Duration::from_secs(10);

/// The pause between two looks of a bounded poll loop.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The color every test client sends in `hello`.
pub const TEST_COLOR: &str = "#e06c75";

/// A config for a test node: loopback port 0, the given data dir, generous limits.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("static address"),
        data_dir: data_dir.to_path_buf(),
        log: "warn".into(),
        ..Config::default()
    }
}

/// A node started in this process, with its data directory.
pub struct TestNode {
    pub node: Node,
    pub dir: PathBuf,
}

impl TestNode {
    pub async fn start(config: Config) -> TestNode {
        let dir = config.data_dir.clone();
        let node = Node::start(config).await.expect("node starts");
        TestNode { node, dir }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.node.local_addr())
    }

    /// Graceful shutdown, which must succeed.
    pub async fn shutdown(self) {
        tokio::time::timeout(Duration::from_secs(30), self.node.shutdown())
            .await
            .expect("shutdown finishes in time")
            .expect("clean shutdown");
    }
}

/// The WebSocket type every test client uses.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended, as seen by a client reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code (None: a close frame without a code).
    Close(Option<u16>),
    /// The stream ended or failed without a close frame.
    Dropped(String),
}

/// One WebSocket client speaking the protocol.
pub struct Client {
    pub ws: Ws,
    pub id: String,
}

impl Client {
    /// Connects without saying hello.
    pub async fn connect_raw(url: &str) -> Ws {
        let (ws, _) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket connects in time")
            .expect("websocket connects");
        ws
    }

    /// Connects and says hello (resuming `client` if given).
    pub async fn connect(url: &str, client: Option<&str>, name: &str) -> Client {
        let ws = Self::connect_raw(url).await;
        Self::hello(ws, client, name).await
    }

    /// Connects with `Authorization: Bearer <token>` and says hello.
    pub async fn connect_bearer(url: &str, token: &str, name: &str) -> Client {
        let ws = try_upgrade(url, Some(token))
            .await
            .expect("upgrade with a valid token");
        Self::hello(ws, None, name).await
    }

    /// Says hello on a fresh socket and checks `welcome`.
    pub async fn hello(mut ws: Ws, client: Option<&str>, name: &str) -> Client {
        let hello = json!({"type":"hello","client":client,"name":name,"color":TEST_COLOR});
        ws.send(Message::text(hello.to_string()))
            .await
            .expect("send hello");
        let mut c = Client {
            ws,
            id: String::new(),
        };
        let welcome = c.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["protocol"], 1, "{welcome}");
        assert!(welcome["node"].is_string(), "{welcome}");
        c.id = welcome["client"].as_str().expect("client id").to_owned();
        if let Some(id) = client {
            assert_eq!(c.id, id, "resume keeps the id");
        }
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// Sends an op without waiting for anything.
    pub async fn send_op(&mut self, doc: &str, rev: u64, seq: u64, op: Value) {
        self.send(json!({"type":"op","doc":doc,"rev":rev,"seq":seq,"op":op}))
            .await;
    }

    /// Next JSON message (skipping WebSocket control frames); panics after RECV_TIMEOUT.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("a message within the timeout")
                .expect("the socket stays open")
                .expect("a valid frame");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
                Message::Close(c) => panic!("socket closed: {c:?}"),
                Message::Binary(b) => panic!("the server sent a binary frame: {b:?}"),
                _ => continue,
            }
        }
    }

    /// Next message of the given type, skipping others (e.g. cursors); panics after RECV_TIMEOUT.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Next message whose type is one of `types`, skipping others; panics after RECV_TIMEOUT.
    pub async fn recv_type_of(&mut self, types: &[&str]) -> Value {
        loop {
            let v = self.recv().await;
            if types.iter().any(|t| v["type"] == *t) {
                return v;
            }
        }
    }

    /// Waits for the close frame; returns its code (None if the socket ended without one).
    pub async fn recv_close(&mut self) -> Option<u16> {
        match self.recv_end().await {
            Ended::Close(code) => code,
            Ended::Dropped(_) => None,
        }
    }

    /// Reads until the connection ends, skipping everything before; panics after RECV_TIMEOUT.
    pub async fn recv_end(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("the connection ends in time")
            {
                Some(Ok(Message::Close(frame))) => {
                    return Ended::Close(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Ended::Dropped(e.to_string()),
                None => return Ended::Dropped("end of stream".into()),
            }
        }
    }

    /// Opens `doc` and returns the `opened` message.
    pub async fn open(&mut self, doc: &str, rev: Option<u64>) -> Value {
        self.send(json!({"type":"open","doc":doc,"rev":rev})).await;
        let opened = self.recv_type("opened").await;
        assert_eq!(opened["doc"], doc);
        opened
    }

    /// Opens `doc` expecting a snapshot; returns (rev, text).
    pub async fn open_snapshot(&mut self, doc: &str) -> (u64, String) {
        let opened = self.open(doc, None).await;
        let rev = opened["rev"].as_u64().expect("opened carries rev");
        let text = opened["text"]
            .as_str()
            .expect("a snapshot carries text")
            .to_owned();
        (rev, text)
    }

    /// Sends an op and waits for its ack; returns the ack's rev.
    pub async fn op_acked(&mut self, doc: &str, rev: u64, seq: u64, op: Value) -> u64 {
        self.send_op(doc, rev, seq, op).await;
        let ack = self.recv_type("ack").await;
        assert_eq!(ack["seq"], seq, "{ack}");
        assert_eq!(ack["doc"], doc, "{ack}");
        ack["rev"].as_u64().expect("ack rev")
    }

    /// The next message must be exactly this error (any non-empty human-readable `message`).
    pub async fn expect_error(&mut self, code: &str, doc: Option<&str>, seq: Option<u64>) -> Value {
        let v = self.recv().await;
        assert_error(&v, code, doc, seq);
        v
    }

    /// `{"type":"ping"}` is answered by exactly `{"type":"pong"}` as the next message.
    pub async fn ping_pong(&mut self) {
        self.send(json!({"type":"ping"})).await;
        let pong = self.recv().await;
        assert_eq!(pong, json!({"type":"pong"}));
    }
}

/// Checks that `v` is exactly an error with this code, doc and seq, and a human-readable message.
pub fn assert_error(v: &Value, code: &str, doc: Option<&str>, seq: Option<u64>) {
    let mut expected = json!({"type":"error","code":code});
    if let Some(doc) = doc {
        expected["doc"] = json!(doc);
    }
    if let Some(seq) = seq {
        expected["seq"] = json!(seq);
    }
    let mut got = v.clone();
    let message = got.as_object_mut().and_then(|o| o.remove("message"));
    assert!(
        message
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "an error carries a human-readable message: {v}"
    );
    assert_eq!(got, expected, "full message: {v}");
}

/// A client that stays connected for a whole test and reads snapshots by re-opening documents:
/// a re-open is a resync that keeps the subscription, so the other clients never get a `left`
/// from it (a fresh client per snapshot would announce `left` to everyone when it goes).
pub struct Observer(pub Client);

impl Observer {
    pub async fn new(url: &str) -> Observer {
        Observer(Client::connect(url, None, "Observer").await)
    }

    /// (rev, text) of a fresh snapshot of `doc`.
    pub async fn snapshot(&mut self, doc: &str) -> (u64, String) {
        self.0.open_snapshot(doc).await
    }
}

/// A fresh client's view of `doc`: (rev, text) from a snapshot. The client announces `left` to
/// the document's other subscribers when it goes: use an [`Observer`] while others still read.
pub async fn snapshot(url: &str, doc: &str) -> (u64, String) {
    let mut c = Client::connect(url, None, "Observer").await;
    c.open_snapshot(doc).await
}

/// Tries a WebSocket upgrade, with `Authorization: Bearer <token>` if given; `Err(status)` when
/// the server answers with an HTTP status instead of switching protocols.
pub async fn try_upgrade(url: &str, bearer: Option<&str>) -> Result<Ws, u16> {
    let mut request = url.into_client_request().expect("a valid ws url");
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header-safe token");
        request.headers_mut().insert("Authorization", value);
    }
    match tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the upgrade is answered in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed without an HTTP status: {e}"),
    }
}

/// The seed of a randomised test: `CHORUS_TEST_SEED` if set, else a fresh random one. Keep the
/// returned guard alive for the whole test: it prints the seed if the test fails.
pub fn test_seed(test: &'static str) -> (u64, SeedGuard) {
    let seed = match std::env::var("CHORUS_TEST_SEED") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().expect("CHORUS_TEST_SEED is a u64"),
        _ => rand::random(),
    };
    eprintln!("{test}: seed {seed} (replay with CHORUS_TEST_SEED={seed})");
    (seed, SeedGuard { test, seed })
}

/// Prints the seed when dropped during a panic.
pub struct SeedGuard {
    test: &'static str,
    seed: u64,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} FAILED with seed {}: rerun with CHORUS_TEST_SEED={}",
                self.test, self.seed, self.seed
            );
        }
    }
}

/// Polls `condition` every POLL_INTERVAL until it holds; panics after POLL_DEADLINE.
pub async fn poll_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Number of non-overlapping occurrences of `needle` in `haystack`.
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}
