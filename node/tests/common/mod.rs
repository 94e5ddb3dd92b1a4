//! Helpers for whole-system tests: start a real node on 127.0.0.1:0 with its own data
//! directory, and talk to it over real WebSockets with exact protocol messages.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chorus_config::Config;
use chorus_node::Node;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one expected message before failing.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A config for a test node: loopback port 0, the given data dir, generous limits.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().expect("static address");
    config.data_dir = data_dir.to_path_buf();
    config.log = "warn".into();
    config
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
}

/// One WebSocket client speaking the protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub id: String,
}

impl Client {
    /// Connects without saying hello.
    pub async fn connect_raw(url: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        ws
    }

    /// Connects and says hello (resuming `client` if given).
    pub async fn connect(url: &str, client: Option<&str>, name: &str) -> Client {
        let mut ws = Self::connect_raw(url).await;
        let hello = json!({"type":"hello","client":client,"name":name,"color":"#e06c75"});
        ws.send(Message::text(hello.to_string())).await.expect("send hello");
        let mut c = Client { ws, id: String::new() };
        let welcome = c.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["protocol"], 1);
        c.id = welcome["client"].as_str().expect("client id").to_owned();
        if let Some(id) = client {
            assert_eq!(c.id, id, "resume keeps the id");
        }
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
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

    /// Waits for the close frame; returns its code.
    pub async fn recv_close(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(RECV_TIMEOUT, self.ws.next()).await.expect("close within timeout") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
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

    /// Sends an op and waits for its ack; returns the ack's rev.
    pub async fn op_acked(&mut self, doc: &str, rev: u64, seq: u64, op: Value) -> u64 {
        self.send(json!({"type":"op","doc":doc,"rev":rev,"seq":seq,"op":op})).await;
        let ack = self.recv_type("ack").await;
        assert_eq!(ack["seq"], seq, "{ack}");
        ack["rev"].as_u64().expect("ack rev")
    }
}
