//! Positions and lengths count code points: astral characters are one position (not two UTF-16
//! units, not four bytes) and a combining mark is a position of its own.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_count_code_points_around_astral_characters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("u.txt", None).await;
    b.open("u.txt", None).await;
    assert_eq!(a.op_acked("u.txt", 0, 1, json!(["a😀b"])).await, 1);
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":"u.txt","rev":1,"client":a.id,"op":["a😀b"]})
    );
    // Position 2 is right after the emoji.
    assert_eq!(a.op_acked("u.txt", 1, 2, json!([2, "X"])).await, 2);
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":"u.txt","rev":2,"client":a.id,"op":[2,"X"]})
    );
    assert_eq!(obs.snapshot("u.txt").await, (2, "a😀Xb".to_owned()));
    // Deleting one position removes the whole emoji.
    assert_eq!(b.op_acked("u.txt", 2, 1, json!([1, -1])).await, 3);
    assert_eq!(obs.snapshot("u.txt").await, (3, "aXb".to_owned()));
    // "𝄞" is one position: retaining 2 over it would reach past the end.
    assert_eq!(a.recv_type("op").await["rev"], 3);
    assert_eq!(a.op_acked("u.txt", 3, 3, json!([-3, "𝄞"])).await, 4);
    a.send_op("u.txt", 4, 4, json!([2, "x"])).await;
    a.expect_error("invalid_op", Some("u.txt"), Some(4)).await;
    assert_eq!(a.op_acked("u.txt", 4, 4, json!([1, "x"])).await, 5);
    // A JSON surrogate-pair escape is one code point too.
    a.send_text(r#"{"type":"op","doc":"u.txt","rev":5,"seq":5,"op":[2,"\ud83d\ude00"]}"#)
        .await;
    assert_eq!(
        a.recv_type("ack").await,
        json!({"type":"ack","doc":"u.txt","seq":5,"rev":6})
    );
    assert_eq!(obs.snapshot("u.txt").await, (6, "𝄞x😀".to_owned()));
    // A lone surrogate is not valid JSON text.
    a.send_text(r#"{"type":"op","doc":"u.txt","rev":6,"seq":6,"op":["\ud83d"]}"#)
        .await;
    let error = a.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "bad_message", "{error}");
    a.ping_pong().await;
    assert_eq!(obs.snapshot("u.txt").await, (6, "𝄞x😀".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combining_mark_is_a_position_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("c.txt", None).await;
    b.open("c.txt", None).await;
    assert_eq!(a.op_acked("c.txt", 0, 1, json!(["e\u{301}x"])).await, 1);
    assert_eq!(b.recv_type("op").await["rev"], 1);
    // Delete the combining mark alone: "e" stays.
    assert_eq!(a.op_acked("c.txt", 1, 2, json!([1, -1])).await, 2);
    assert_eq!(obs.snapshot("c.txt").await, (2, "ex".to_owned()));
    // B, still at revision 1, puts a mark after the "x" (position 3 there): transformed to 2.
    b.send_op("c.txt", 1, 1, json!([3, "\u{308}"])).await;
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":"c.txt","rev":2,"client":a.id,"op":[1,-1]})
    );
    assert_eq!(
        b.recv().await,
        json!({"type":"ack","doc":"c.txt","seq":1,"rev":3})
    );
    assert_eq!(
        a.recv().await,
        json!({"type":"op","doc":"c.txt","rev":3,"client":b.id,"op":[2,"\u{308}"]})
    );
    assert_eq!(obs.snapshot("c.txt").await, (3, "ex\u{308}".to_owned()));
    // Cursor positions count code points too: after "x" and before its mark is position 2.
    a.send(json!({"type":"cursor","doc":"c.txt","rev":3,"ranges":[[2,3]]}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"type":"cursor","doc":"c.txt","client":a.id,"name":"Ada","color":TEST_COLOR,"ranges":[[2,3]]})
    );
    a.send(json!({"type":"cursor","doc":"c.txt","rev":3,"ranges":[[4,4]]}))
        .await;
    a.expect_error("bad_message", Some("c.txt"), None).await;
    node.shutdown().await;
}
