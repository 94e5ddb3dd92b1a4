//! Configured limits over real sockets: frame size, document size, op rate, open documents per
//! connection, connections per node. Each refusal applies nothing.

mod common;

use std::time::Duration;

use common::raw::{self, RawWs};
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_max_frame_bytes_closes_the_connection_with_1009() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_frame_bytes = 1024;
    let node = TestNode::start(config).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("f.txt", None).await;
    assert_eq!(a.op_acked("f.txt", 0, 1, json!(["x"])).await, 1);
    a.send_op("f.txt", 1, 2, json!(["y".repeat(2000)])).await;
    match a.recv_end().await {
        Ended::Close(code) => assert_eq!(code, Some(1009)),
        other => panic!("expected a close with 1009, got {other:?}"),
    }
    assert_eq!(obs.snapshot("f.txt").await, (1, "x".to_owned()));
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
    assert_eq!(
        a.recv().await,
        json!({"type":"pong"}),
        "a 1024-byte frame is within max_frame_bytes = 1024"
    );
    // One byte more is over it.
    a.send_text(&format!("{padded} ")).await;
    assert_eq!(a.recv_end().await, Ended::Close(Some(1009)));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_over_max_frame_bytes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_frame_bytes = 1024;
    let node = TestNode::start(config).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut ws = RawWs::connect(node.node.local_addr()).await;
    ws.send_text(r#"{"type":"hello","client":null,"name":"Frag"}"#)
        .await;
    ws.read_until(|f| f.opcode == raw::TEXT).await;
    ws.send_text(r#"{"type":"open","doc":"frag.txt","rev":null}"#)
        .await;
    ws.read_until(|f| f.opcode == raw::TEXT).await;
    // One 4000-byte message in five frames of at most 800 bytes each.
    let message =
        json!({"type":"op","doc":"frag.txt","rev":0,"seq":1,"op":["z".repeat(4000 - 60)]})
            .to_string();
    let chunks: Vec<&[u8]> = message.as_bytes().chunks(800).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { raw::TEXT } else { raw::CONTINUATION };
        ws.send_frame(i + 1 == chunks.len(), opcode, chunk).await;
    }
    // Either the message is refused with too_large, or the connection is closed with 1009.
    let is_answer = |f: &raw::RawFrame| {
        f.opcode == raw::CLOSE
            || (f.opcode == raw::TEXT
                && serde_json::from_slice::<serde_json::Value>(&f.payload)
                    .is_ok_and(|v| v["type"] == "ack" || v["type"] == "error"))
    };
    let frames = ws.read_until(is_answer).await;
    let last = frames.last().expect("a frame");
    if last.opcode == raw::TEXT {
        let v: serde_json::Value = serde_json::from_slice(&last.payload).expect("JSON");
        assert_eq!(
            v["code"],
            "too_large",
            "a {}-byte message over max_frame_bytes = 1024 got {v}",
            message.len()
        );
    } else {
        assert_eq!(last.close_code(), Some(1009));
    }
    assert_eq!(obs.snapshot("frag.txt").await, (0, String::new()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_making_the_document_too_large_gets_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.max_document_chars = 10;
    let node = TestNode::start(config).await;
    let mut obs = Observer::new(&node.url()).await;
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
    assert_eq!(
        obs.snapshot("big.txt").await,
        (3, format!("b{}", "😀".repeat(8)))
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_over_the_rate_are_rate_limited_and_a_later_resubmission_applies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.limits.op_rate_per_s = 1.0;
    config.limits.op_burst = 2;
    let node = TestNode::start(config).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("rate.txt", None).await;
    assert_eq!(a.op_acked("rate.txt", 0, 1, json!(["a"])).await, 1);
    assert_eq!(a.op_acked("rate.txt", 1, 2, json!([1, "b"])).await, 2);
    a.send_op("rate.txt", 2, 3, json!([2, "c"])).await;
    a.expect_error("rate_limited", Some("rate.txt"), Some(3))
        .await;
    assert_eq!(obs.snapshot("rate.txt").await, (2, "ab".to_owned()));
    // Resubmit the same op (same seq and base) until the bucket has refilled.
    let mut attempts = 0;
    let ack = loop {
        attempts += 1;
        assert!(
            attempts < 100,
            "still rate limited after {attempts} attempts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.send_op("rate.txt", 2, 3, json!([2, "c"])).await;
        let v = a.recv().await;
        if v["type"] == "ack" {
            break v;
        }
        assert_error(&v, "rate_limited", Some("rate.txt"), Some(3));
    };
    assert_eq!(ack, json!({"type":"ack","doc":"rate.txt","seq":3,"rev":3}));
    assert_eq!(obs.snapshot("rate.txt").await, (3, "abc".to_owned()));
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
    a.send(json!({"type":"open","doc":"three.txt","rev":null}))
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_read_is_disconnected_the_others_are_told_and_it_resumes() {
    /// Most ops the writer sends before the slow client must have been dropped.
    const MAX_OPS: u64 = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.websocket.outbound_queue_frames = 4;
    config.limits.max_document_chars = 100_000_000;
    config.store.fsync = chorus_config::FsyncPolicy::Never;
    let node = TestNode::start(config).await;
    let doc = "slow.txt";
    // A small receive buffer, so that the kernel stops taking the server's frames early.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(node.node.local_addr())
        .await
        .expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(node.url(), MaybeTlsStream::Plain(stream))
        .await
        .expect("upgrade");
    let mut slow = Client::hello(ws, None, "Slow").await;
    assert_eq!(slow.open(doc, None).await["rev"], 0);
    let mut slow_rev = 0;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open(doc, None).await;
    // A writes 16 KiB per op while the slow client reads nothing, until A is told it left.
    let chunk = "s".repeat(16 * 1024);
    let mut rev = 0;
    let mut left = None;
    while left.is_none() {
        assert!(rev < MAX_OPS, "the slow client was never disconnected");
        let op = if rev == 0 {
            json!([chunk])
        } else {
            json!([rev as usize * chunk.len(), chunk])
        };
        a.send_op(doc, rev, rev + 1, op).await;
        loop {
            let v = a.recv().await;
            match v["type"].as_str() {
                Some("ack") => {
                    rev = v["rev"].as_u64().expect("rev");
                    break;
                }
                Some("left") => left = Some(v),
                _ => panic!("unexpected {v}"),
            }
        }
    }
    assert_eq!(
        left,
        Some(json!({"type":"left","doc":doc,"client":slow.id}))
    );
    // The slow client finds a gap-free prefix of the ops, then the close.
    let ended = loop {
        match tokio::time::timeout(RECV_TIMEOUT, slow.ws.next())
            .await
            .expect("frames in time")
        {
            Some(Ok(Message::Text(t))) => {
                // Only revisions are checked here: applying megabytes of text in a debug build
                // is slow, and the final snapshot checks the text.
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                assert_eq!(v["type"], "op", "{v}");
                assert_eq!(v["rev"], slow_rev + 1, "no gap before the close");
                slow_rev += 1;
            }
            Some(Ok(Message::Close(frame))) => {
                break Ended::Close(frame.map(|f| u16::from(f.code)))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break Ended::Dropped(e.to_string()),
            None => break Ended::Dropped("end of stream".into()),
        }
    };
    assert_eq!(ended, Ended::Close(Some(1013)), "closed as try-again-later");
    assert!(
        slow_rev < rev,
        "it was dropped before the end ({slow_rev} of {rev})"
    );
    // It resumes with its id from the last revision it has, and gets exactly the missed ops.
    let mut slow = Client::connect(&node.url(), Some(&slow.id), "Slow").await;
    let opened = slow.open(doc, Some(slow_rev)).await;
    let revs: Vec<u64> = opened["ops"]
        .as_array()
        .expect("the missed ops")
        .iter()
        .map(|op| op["rev"].as_u64().expect("rev"))
        .collect();
    assert_eq!(revs, (slow_rev + 1..=rev).collect::<Vec<_>>());
    assert_eq!(opened["rev"], rev);
    let (_, text) = slow.open_snapshot(doc).await;
    assert!(
        text == chunk.repeat(rev as usize),
        "the text is every op once"
    );
    eprintln!("dropped after {rev} ops of {} bytes", chunk.len());
    node.shutdown().await;
}
