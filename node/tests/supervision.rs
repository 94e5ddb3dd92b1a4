//! Supervision with the test-only fault hook: a document actor that panics is restarted from its
//! store, its clients get a fresh `opened` (server-initiated resync) and keep editing, nothing
//! acknowledged is lost, and the rest of the node keeps serving meanwhile.

mod common;

use chorus_actors::document::actor::PANIC_MARKER;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_document_restarts_from_its_store_and_clients_resync_and_keep_editing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let url = node.url();
    let doc = "sup/a.txt";
    let mut a = Client::connect(&url, None, "Ada").await;
    let mut b = Client::connect(&url, None, "Bob").await;
    let mut c = Client::connect(&url, None, "Cy").await;
    a.open(doc, None).await;
    b.open(doc, None).await;
    c.open("sup/other.txt", None).await;
    assert_eq!(a.op_acked(doc, 0, 1, json!(["hello "])).await, 1);
    assert_eq!(b.recv_type("op").await["rev"], 1);
    assert_eq!(b.op_acked(doc, 1, 1, json!([6, "world"])).await, 2);
    assert_eq!(a.recv_type("op").await["rev"], 2);
    assert_eq!(c.op_acked("sup/other.txt", 0, 1, json!(["c1"])).await, 1);

    // B's op races A's fatal one; C edits another document meanwhile.
    b.send_op(doc, 2, 2, json!(["B:"])).await;
    a.send_op(doc, 2, 2, json!([11, PANIC_MARKER])).await;
    assert_eq!(
        c.op_acked("sup/other.txt", 1, 2, json!([2, " c2"])).await,
        2
    );

    // A gets a fresh snapshot (possibly after B's op, if it became durable before the crash).
    let a_opened = loop {
        let v = a.recv().await;
        match v["type"].as_str() {
            Some("opened") => break v,
            Some("op") => assert_eq!(
                v,
                json!({"type":"op","doc":doc,"rev":3,"client":b.id,"op":["B:"]})
            ),
            _ => panic!("A: unexpected {v}"),
        }
    };
    assert_eq!(a_opened["doc"], doc);
    assert!(
        a_opened["text"].is_string(),
        "a snapshot, not ops: {a_opened}"
    );
    assert!(!a_opened["text"]
        .as_str()
        .unwrap_or_default()
        .contains(PANIC_MARKER));
    // B gets a snapshot too; if its op was not acknowledged it resubmits it (same seq and rev).
    let mut b_acked = false;
    let b_opened = loop {
        let v = b.recv().await;
        match v["type"].as_str() {
            Some("opened") => break v,
            Some("ack") => {
                assert_eq!(v, json!({"type":"ack","doc":doc,"seq":2,"rev":3}));
                b_acked = true;
            }
            _ => panic!("B: unexpected {v}"),
        }
    };
    if b_acked {
        assert_eq!(
            b_opened,
            json!({"type":"opened","doc":doc,"rev":3,"text":"B:hello world","lang":"plaintext"})
        );
    } else {
        assert!(b_opened["rev"] == 2 || b_opened["rev"] == 3, "{b_opened}");
        b.send_op(doc, 2, 2, json!(["B:"])).await;
        assert_eq!(
            b.recv().await,
            json!({"type":"ack","doc":doc,"seq":2,"rev":3})
        );
    }
    // Nothing acknowledged was lost, B's op is there once, A's fatal op is not.
    assert_eq!(a.open_snapshot(doc).await, (3, "B:hello world".to_owned()));

    // Both keep editing: A's seq 2 was never applied, so it is still A's next seq.
    assert_eq!(a.op_acked(doc, 3, 2, json!([13, "!"])).await, 4);
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":doc,"rev":4,"client":a.id,"op":[13,"!"]})
    );
    assert_eq!(b.op_acked(doc, 4, 3, json!([-2])).await, 5);
    assert_eq!(
        a.recv().await,
        json!({"type":"op","doc":doc,"rev":5,"client":b.id,"op":[-2]})
    );
    assert_eq!(snapshot(&url, doc).await, (5, "hello world!".to_owned()));
    assert_eq!(
        snapshot(&url, "sup/other.txt").await,
        (2, "c1 c2".to_owned())
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_keeps_crashing_is_given_up_as_unavailable_and_others_are_unaffected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.document.max_restarts = 1;
    config.document.restart_window_ms = 60_000;
    let node = TestNode::start(config).await;
    let url = node.url();
    let doc = "sup/flaky.txt";
    let mut a = Client::connect(&url, None, "Ada").await;
    a.open(doc, None).await;
    a.open("sup/fine.txt", None).await;
    assert_eq!(a.op_acked(doc, 0, 1, json!(["kept"])).await, 1);
    a.send_op(doc, 1, 2, json!([PANIC_MARKER])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"opened","doc":doc,"rev":1,"text":"kept","lang":"plaintext"})
    );
    a.send_op(doc, 1, 2, json!([PANIC_MARKER])).await;
    a.expect_error("unavailable", Some(doc), None).await;
    // Given up for the window: opening it again is refused, other documents work.
    a.send(json!({"type":"open","doc":doc,"rev":null})).await;
    a.expect_error("unavailable", Some(doc), None).await;
    assert_eq!(a.op_acked("sup/fine.txt", 0, 1, json!(["fine"])).await, 1);
    node.shutdown().await;

    // After a restart of the node the acknowledged op is still there.
    let node = TestNode::start(test_config(dir.path())).await;
    assert_eq!(snapshot(&node.url(), doc).await, (1, "kept".to_owned()));
    node.shutdown().await;
}
