//! Reconnecting and resuming: `open` with `rev` returns exactly the missed ops (or a snapshot
//! where it cannot), and an op whose ack was lost with the socket is applied exactly once.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_whose_ack_was_lost_shows_up_as_the_clients_own_op_in_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let id = a.id.clone();
    a.open("r.txt", None).await;
    assert_eq!(a.op_acked("r.txt", 0, 1, json!(["one "])).await, 1);
    // Send seq 2 and drop the socket without reading its ack (the pong proves the server read it).
    a.send_op("r.txt", 1, 2, json!([4, "two"])).await;
    a.send(json!({"type":"ping"})).await;
    a.recv_type("pong").await;
    drop(a);
    let mut a = Client::connect(&node.url(), Some(&id), "Ada").await;
    let opened = a.open("r.txt", Some(1)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"r.txt","rev":2,"ops":[{"rev":2,"client":id,"op":[4,"two"]}],"lang":"plaintext"})
    );
    // The client takes that as its ack; resubmitting anyway changes nothing.
    a.send_op("r.txt", 1, 2, json!([4, "two"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"r.txt","seq":2,"rev":2})
    );
    assert_eq!(a.op_acked("r.txt", 2, 3, json!([7, "!"])).await, 3);
    assert_eq!(obs.snapshot("r.txt").await, (3, "one two!".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_after_a_reconnect_is_applied_once_whether_or_not_the_ack_was_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    b.open("x.txt", None).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let id = a.id.clone();
    a.open("x.txt", None).await;

    // (1) Dropped before reading the ack: a snapshot comes back, the op is resubmitted.
    a.send_op("x.txt", 0, 1, json!(["[A1]"])).await;
    a.send(json!({"type":"ping"})).await;
    a.recv_type("pong").await;
    drop(a);
    // The op and A's departure are independent events: either order is correct.
    let mut seen = vec![b.recv().await, b.recv().await];
    seen.sort_by_key(|v| v["type"].as_str().map(str::to_owned));
    assert_eq!(
        seen,
        vec![
            json!({"type":"left","doc":"x.txt","client":id}),
            json!({"type":"op","doc":"x.txt","rev":1,"client":id,"op":["[A1]"]}),
        ]
    );
    assert_eq!(b.op_acked("x.txt", 1, 1, json!([4, "[B1]"])).await, 2);
    let mut a = Client::connect(&node.url(), Some(&id), "Ada").await;
    assert_eq!(a.open_snapshot("x.txt").await, (2, "[A1][B1]".to_owned()));
    a.send_op("x.txt", 0, 1, json!(["[A1]"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"x.txt","seq":1,"rev":1})
    );

    // (2) Dropped after reading the ack: resubmitting is still harmless.
    assert_eq!(a.op_acked("x.txt", 2, 2, json!([8, "[A2]"])).await, 3);
    drop(a);
    assert_eq!(b.recv_type("op").await["rev"], 3);
    assert_eq!(b.op_acked("x.txt", 3, 2, json!(["[B2]"])).await, 4);
    let mut a = Client::connect(&node.url(), Some(&id), "Ada").await;
    let opened = a.open("x.txt", Some(3)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"x.txt","rev":4,"ops":[{"rev":4,"client":b.id,"op":["[B2]"]}],"lang":"plaintext"})
    );
    a.send_op("x.txt", 2, 2, json!([8, "[A2]"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"x.txt","seq":2,"rev":3})
    );

    let (rev, text) = obs.snapshot("x.txt").await;
    assert_eq!((rev, text.as_str()), (4, "[B2][A1][B1][A2]"));
    for token in ["[A1]", "[A2]", "[B1]", "[B2]"] {
        assert_eq!(count(&text, token), 1, "{token} in {text}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_with_rev_returns_exactly_the_ops_after_it_or_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.document.history_ops = 5;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("h.rs", None).await;
    b.open("h.rs", None).await;
    // Alternate authors; revision k inserts the digit k % 10 at the end.
    let mut expected_ops = Vec::new();
    for rev in 1..=4u64 {
        let (author, other) = if rev % 2 == 1 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let seq = rev.div_ceil(2);
        let op = if rev == 1 {
            json!(["1"])
        } else {
            json!([rev - 1, (rev % 10).to_string()])
        };
        assert_eq!(author.op_acked("h.rs", rev - 1, seq, op.clone()).await, rev);
        assert_eq!(other.recv_type("op").await["rev"], rev);
        expected_ops.push(json!({"rev":rev,"client":author.id,"op":op}));
    }
    let mut c = Client::connect(&node.url(), None, "Cy").await;
    for since in 0..=4u64 {
        let opened = c.open("h.rs", Some(since)).await;
        let ops = expected_ops[since as usize..].to_vec();
        assert_eq!(
            opened,
            json!({"type":"opened","doc":"h.rs","rev":4,"ops":ops,"lang":"rust"}),
            "since {since}"
        );
    }
    // Newer than the document: a snapshot.
    let opened = c.open("h.rs", Some(5)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":4,"text":"1234","lang":"rust"})
    );
    let opened = c.open("h.rs", Some(u64::MAX)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":4,"text":"1234","lang":"rust"})
    );

    // Make 10 revisions in all: the history (5 ops) holds revisions 6..=10.
    for rev in 5..=10u64 {
        let seq = rev - 4;
        assert_eq!(
            a.op_acked(
                "h.rs",
                rev - 1,
                seq + 2,
                json!([rev - 1, (rev % 10).to_string()])
            )
            .await,
            rev
        );
    }
    let text = "1234567890";
    let opened = c.open("h.rs", Some(4)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":10,"text":text,"lang":"rust"}),
        "older than the history"
    );
    let opened = c.open("h.rs", Some(0)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":10,"text":text,"lang":"rust"}),
        "older than the history"
    );
    let opened = c.open("h.rs", Some(5)).await;
    let ops: Vec<_> = (6..=10u64)
        .map(|rev| json!({"rev":rev,"client":a.id,"op":[rev - 1, (rev % 10).to_string()]}))
        .collect();
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":10,"ops":ops,"lang":"rust"}),
        "the whole history"
    );
    let opened = c.open("h.rs", Some(10)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":10,"ops":[],"lang":"rust"}),
        "up to date"
    );
    let opened = c.open("h.rs", Some(11)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"h.rs","rev":10,"text":text,"lang":"rust"}),
        "newer than the document"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_one_subscription_and_closing_ends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("sub.txt", None).await;
    b.open("sub.txt", None).await;
    // Re-opening is a resync: still one subscription, so each op arrives once.
    assert_eq!(a.open("sub.txt", None).await["rev"], 0);
    assert_eq!(
        a.open("sub.txt", Some(0)).await,
        json!({"type":"opened","doc":"sub.txt","rev":0,"ops":[],"lang":"plaintext"})
    );
    assert_eq!(b.op_acked("sub.txt", 0, 1, json!(["x"])).await, 1);
    assert_eq!(
        a.recv().await,
        json!({"type":"op","doc":"sub.txt","rev":1,"client":b.id,"op":["x"]})
    );
    a.ping_pong().await;
    // After close, nothing more arrives for the document.
    a.send(json!({"type":"close","doc":"sub.txt"})).await;
    assert_eq!(
        b.recv().await,
        json!({"type":"left","doc":"sub.txt","client":a.id})
    );
    assert_eq!(b.op_acked("sub.txt", 1, 2, json!([1, "y"])).await, 2);
    a.ping_pong().await;
    node.shutdown().await;
}
