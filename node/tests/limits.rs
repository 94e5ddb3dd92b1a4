//! Configured limits over real sockets: frame size, document size, op rate, open documents per
//! connection, connections per node. Each refusal applies nothing.

mod common;

use std::time::Duration;

use common::raw::{self, RawWs};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_max_frame_bytes_closes_the_connection_with_1009() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_frame_bytes = 1024;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("f.txt", None).await;
    assert_eq!(a.op_acked("f.txt", 0, 1, json!(["x"])).await, 1);
    a.send_op("f.txt", 1, 2, json!(["y".repeat(2000)])).await;
    match a.recv_end().await {
        Ended::Close(code) => assert_eq!(code, Some(1009)),
        other => panic!("expected a close with 1009, got {other:?}"),
    }
    assert_eq!(snapshot(&node.url(), "f.txt").await, (1, "x".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_exactly_max_frame_bytes_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_frame_bytes = 1024;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    // JSON allows trailing whitespace: a ping padded to exactly the limit.
    let ping = r#"{"type":"ping"}"#;
    let padded = format!("{ping}{}", " ".repeat(1024 - ping.len()));
    assert_eq!(padded.len(), 1024);
    a.send_text(&padded).await;
    assert_eq!(a.recv().await, json!({"type":"pong"}), "a 1024-byte frame is within max_frame_bytes = 1024");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_over_max_frame_bytes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_frame_bytes = 1024;
    let node = TestNode::start(config).await;
    let mut observer = Client::connect(&node.url(), None, "Observer").await;
    observer.open("frag.txt", None).await;
    let mut ws = RawWs::connect(node.node.local_addr()).await;
    ws.send_text(r#"{"type":"hello","client":null,"name":"Frag"}"#).await;
    ws.read_until(|f| f.opcode == raw::TEXT).await;
    ws.send_text(r#"{"type":"open","doc":"frag.txt","rev":null}"#).await;
    ws.read_until(|f| f.opcode == raw::TEXT).await;
    // One 4000-byte message in five frames of at most 800 bytes each.
    let message = json!({"type":"op","doc":"frag.txt","rev":0,"seq":1,"op":["z".repeat(4000 - 60)]}).to_string();
    let chunks: Vec<&[u8]> = message.as_bytes().chunks(800).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { raw::TEXT } else { raw::CONTINUATION };
        ws.send_frame(i + 1 == chunks.len(), opcode, chunk).await;
    }
    ws.send_text(r#"{"type":"ping"}"#).await;
    // Either the message is refused with too_large, or the connection is closed with 1009.
    let frames = ws.read_until(|f| f.opcode == raw::CLOSE || f.opcode == raw::TEXT).await;
    let last = frames.last().expect("a frame");
    if last.opcode == raw::TEXT {
        let v: serde_json::Value = serde_json::from_slice(&last.payload).expect("JSON");
        assert_eq!(v["code"], "too_large", "a {}-byte message over max_frame_bytes = 1024 was accepted: {v}", message.len());
    } else {
        assert_eq!(last.close_code(), Some(1009));
    }
    observer.ping_pong().await;
    assert_eq!(snapshot(&node.url(), "frag.txt").await, (0, String::new()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_making_the_document_too_large_gets_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_document_chars = 10;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("big.txt", None).await;
    a.send_op("big.txt", 0, 1, json!(["x".repeat(11)])).await;
    a.expect_error("too_large", Some("big.txt"), Some(1)).await;
    // Limits count code points: ten astral characters (40 bytes, 20 UTF-16 units) fit.
    let full = "😀".repeat(10);
    assert_eq!(a.op_acked("big.txt", 0, 1, json!([full])).await, 1);
    a.send_op("big.txt", 1, 2, json!([5, "x"])).await;
    a.expect_error("too_large", Some("big.txt"), Some(2)).await;
    // Deleting, and replacing without growing, still work at the limit.
    assert_eq!(a.op_acked("big.txt", 1, 2, json!(["ab", -2])).await, 2);
    assert_eq!(a.op_acked("big.txt", 2, 3, json!([-1])).await, 3);
    assert_eq!(snapshot(&node.url(), "big.txt").await, (3, format!("b{}", "😀".repeat(8))));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_over_the_rate_are_rate_limited_and_a_later_resubmission_applies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.op_rate_per_s = 1.0;
    config.limits.op_burst = 2;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("rate.txt", None).await;
    assert_eq!(a.op_acked("rate.txt", 0, 1, json!(["a"])).await, 1);
    assert_eq!(a.op_acked("rate.txt", 1, 2, json!([1, "b"])).await, 2);
    a.send_op("rate.txt", 2, 3, json!([2, "c"])).await;
    a.expect_error("rate_limited", Some("rate.txt"), Some(3)).await;
    assert_eq!(snapshot(&node.url(), "rate.txt").await, (2, "ab".to_owned()));
    // Resubmit the same op (same seq and base) until the bucket has refilled.
    let mut attempts = 0;
    let ack = loop {
        attempts += 1;
        assert!(attempts < 100, "still rate limited after {attempts} attempts");
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.send_op("rate.txt", 2, 3, json!([2, "c"])).await;
        let v = a.recv().await;
        if v["type"] == "ack" {
            break v;
        }
        assert_error(&v, "rate_limited", Some("rate.txt"), Some(3));
    };
    assert_eq!(ack, json!({"type":"ack","doc":"rate.txt","seq":3,"rev":3}));
    assert_eq!(snapshot(&node.url(), "rate.txt").await, (3, "abc".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_more_than_max_open_documents_gets_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_open_documents = 2;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("one.txt", None).await;
    a.open("two.txt", None).await;
    a.send(json!({"type":"open","doc":"three.txt","rev":null})).await;
    a.expect_error("too_large", Some("three.txt"), None).await;
    // Re-opening an open document is a resync, not a new one.
    a.open("two.txt", None).await;
    a.send_op("three.txt", 0, 1, json!(["x"])).await;
    a.expect_error("not_open", Some("three.txt"), Some(1)).await;
    a.send(json!({"type":"close","doc":"one.txt"})).await;
    a.open("three.txt", None).await;
    assert_eq!(a.op_acked("three.txt", 0, 1, json!(["x"])).await, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_past_max_connections_are_refused_with_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_connections = 2;
    let node = TestNode::start(config).await;
    let a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    assert_eq!(try_upgrade(&node.url(), None).await.err(), Some(503));
    b.ping_pong().await;
    drop(a);
    // The slot frees once the server has seen the socket go: no event to await, so poll.
    let url = node.url();
    poll_until("a connection slot is free again", || {
        let url = url.clone();
        async move { try_upgrade(&url, None).await.is_ok() }
    })
    .await;
    node.shutdown().await;
}
