//! Keep-alive: the application-level ping, the server's WebSocket pings, and dropping a client
//! that answers nothing for `websocket.ping_timeout_ms`.

mod common;

use std::time::Duration;

use common::raw::{self, RawWs};
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn keepalive_config(dir: &std::path::Path) -> chorus_config::Config {
    let mut config = test_config(dir);
    config.websocket.ping_interval_ms = 100;
    config.websocket.ping_timeout_ms = 300;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.send(json!({"type":"ping"})).await;
    assert_eq!(a.recv().await, json!({"type":"pong"}));
    // Unknown extra fields are ignored.
    a.send(json!({"type":"ping","id":7})).await;
    assert_eq!(a.recv().await, json!({"type":"pong"}));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(keepalive_config(dir.path())).await;
    let mut silent = RawWs::connect(node.node.local_addr()).await;
    silent
        .send_text(r#"{"type":"hello","client":null,"name":"Silent"}"#)
        .await;
    // From here on the client reads but never writes, not even a pong.
    let frames = silent.read_until_eof(Duration::from_secs(5)).await;
    let pings = frames.iter().filter(|f| f.opcode == raw::PING).count();
    assert!(pings >= 1, "the server pings: {frames:?}");
    let text = frames
        .iter()
        .find(|f| f.opcode == raw::TEXT)
        .expect("a welcome");
    let welcome: serde_json::Value =
        serde_json::from_slice(&text.payload).expect("welcome is JSON");
    assert_eq!(welcome["type"], "welcome");
    let close = frames.last().expect("frames before EOF");
    assert_eq!(
        close.opcode,
        raw::CLOSE,
        "the server says goodbye before closing: {frames:?}"
    );
    assert_eq!(close.close_code(), Some(1008));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_pings_stays_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(keepalive_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("k.txt", None).await;
    // Keep reading (tungstenite answers each ping with a pong) for well past the timeout.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while let Ok(next) = tokio::time::timeout_at(until, a.ws.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("only pings while idle, got {other:?}"),
        }
    }
    assert!(pings >= 5, "about one ping per 100 ms, got {pings}");
    a.ping_pong().await;
    assert_eq!(a.op_acked("k.txt", 0, 1, json!(["still here"])).await, 1);
    node.shutdown().await;
}
