//! First whole-system checks: hello/open/op/ack/broadcast over real sockets.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_edit_and_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    let opened = a.open("src/main.rs", None).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"src/main.rs","rev":0,"text":"","lang":"rust"})
    );
    b.open("src/main.rs", None).await;
    assert_eq!(a.op_acked("src/main.rs", 0, 1, json!(["hello"])).await, 1);
    let seen = b.recv_type("op").await;
    assert_eq!(
        seen,
        json!({"type":"op","doc":"src/main.rs","rev":1,"client":a.id,"op":["hello"]})
    );
    assert_eq!(
        b.op_acked("src/main.rs", 1, 1, json!([5, " world"])).await,
        2
    );
    let seen = a.recv_type("op").await;
    assert_eq!(seen["op"], json!([5, " world"]));
    let mut c = Client::connect(&node.url(), None, "Cy").await;
    let opened = c.open("src/main.rs", None).await;
    assert_eq!(opened["text"], "hello world");
    assert_eq!(opened["rev"], 2);
    node.node.shutdown().await.expect("clean shutdown");
}
