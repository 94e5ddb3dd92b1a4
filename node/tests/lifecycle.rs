//! Document and node lifecycle: an idle document stops and comes back from its store intact;
//! graceful shutdown acknowledges every accepted op before closing sockets with 1001, and a node
//! restarted on the same data directory has them.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_document_stops_and_reloads_from_its_store_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.document.idle_timeout_ms = 200;
    config.document.compact_every_ops = 3;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("idle.txt", None).await;
    assert_eq!(a.op_acked("idle.txt", 0, 1, json!(["1"])).await, 1);
    for seq in 2..=4u64 {
        assert_eq!(
            a.op_acked("idle.txt", seq - 1, seq, json!([seq - 1, seq.to_string()]))
                .await,
            seq
        );
    }
    a.send(json!({"type":"close","doc":"idle.txt"})).await;
    a.ping_pong().await;
    // The idle document's actor stops, so the next open reloads it from the store.
    wait_until_no_document_runs(&node).await;
    assert_eq!(a.open_snapshot("idle.txt").await, (4, "1234".to_owned()));
    // Exactly-once survived the reload: the last op is acked with its first revision.
    a.send_op("idle.txt", 3, 4, json!([3, "4"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"idle.txt","seq":4,"rev":4})
    );
    // Resuming from the op logged after the compaction still works.
    let opened = a.open("idle.txt", Some(3)).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"idle.txt","rev":4,"ops":[{"rev":4,"client":a.id,"op":[3,"4"]}],"lang":"plaintext"})
    );
    assert_eq!(a.op_acked("idle.txt", 4, 5, json!([4, "5"])).await, 5);
    a.send(json!({"type":"close","doc":"idle.txt"})).await;
    a.ping_pong().await;
    wait_until_no_document_runs(&node).await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    assert_eq!(b.open_snapshot("idle.txt").await, (5, "12345".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_acks_accepted_ops_then_closes_with_1001_and_a_restart_has_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let url = node.url();
    let docs = ["g/a.txt", "g/b.txt", "g/c.txt"];
    let mut clients = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut c = Client::connect(&url, None, &format!("C{i}")).await;
        c.open(doc, None).await;
        assert_eq!(
            c.op_acked(doc, 0, 1, json!([format!("first-{i} ")])).await,
            1
        );
        clients.push(c);
    }
    // Each submits one more op; the pong proves the server read it before shutdown began.
    for (i, (c, doc)) in clients.iter_mut().zip(docs).enumerate() {
        c.send_op(doc, 1, 2, json!([8, format!("second-{i}")]))
            .await;
        c.send(json!({"type":"ping"})).await;
    }
    let mut acked_early = Vec::new();
    for c in clients.iter_mut() {
        let mut early = false;
        loop {
            let v = c.recv().await;
            if v["type"] == "pong" {
                break;
            }
            assert_eq!(v["type"], "ack", "{v}");
            early = true;
        }
        acked_early.push(early);
    }
    let shutdown = tokio::spawn(node.node.shutdown());
    for ((c, doc), early) in clients.iter_mut().zip(docs).zip(acked_early) {
        if !early {
            assert_eq!(
                c.recv().await,
                json!({"type":"ack","doc":doc,"seq":2,"rev":2})
            );
        }
        assert_eq!(
            c.recv_close().await,
            Some(1001),
            "{doc}: closed as going away"
        );
    }
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("shutdown in time")
        .expect("shutdown task")
        .expect("clean shutdown");
    // New connections are refused once the node is down.
    assert!(tokio::net::TcpStream::connect(
        url.trim_start_matches("ws://").trim_end_matches("/ws")
    )
    .await
    .is_err());

    let node = TestNode::start(test_config(dir.path())).await;
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(
            snapshot(&node.url(), doc).await,
            (2, format!("first-{i} second-{i}"))
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_document_while_it_goes_idle_never_loses_ops_or_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    // Stop idle documents almost at once and compact often, so that every close races a stop
    // and every open races a reload.
    config.document.idle_timeout_ms = 1;
    config.document.compact_every_ops = 2;
    let node = TestNode::start(config).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    let doc = "churn.txt";
    let mut expected = String::new();
    let mut rev = 0;
    for round in 1..=30u64 {
        let (writer, seq) = if round % 2 == 1 {
            (&mut a, round.div_ceil(2))
        } else {
            (&mut b, round / 2)
        };
        assert_eq!(
            writer.open_snapshot(doc).await,
            (rev, expected.clone()),
            "round {round}"
        );
        let piece = format!("{}", round % 10);
        let op = if rev == 0 {
            json!([piece])
        } else {
            json!([rev, piece])
        };
        rev = writer.op_acked(doc, rev, seq, op.clone()).await;
        assert_eq!(rev, round);
        expected.push_str(&piece);
        writer.send(json!({"type":"close","doc":doc})).await;
        // A duplicate after the document may have stopped and reloaded: the same revision.
        writer.open(doc, Some(rev)).await;
        writer.send_op(doc, rev - 1, seq, op).await;
        assert_eq!(
            writer.recv_type("ack").await,
            json!({"type":"ack","doc":doc,"seq":seq,"rev":rev})
        );
        writer.send(json!({"type":"close","doc":doc})).await;
    }
    let mut c = Client::connect(&node.url(), None, "Cy").await;
    assert_eq!(c.open_snapshot(doc).await, (30, expected));
    node.shutdown().await;
}

/// Waits (bounded) until the node runs no document actor: the idle stop happened.
async fn wait_until_no_document_runs(node: &TestNode) {
    poll_until("the idle document's actor has stopped", || async {
        node.node
            .running_documents()
            .await
            .expect("supervisor answers")
            == 0
    })
    .await;
}
