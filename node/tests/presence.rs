//! Presence: cursors carry the author's name and color, are kept transformed as ops land, are
//! replayed after `opened`, and `left` tells when a collaborator closes or goes away.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn cursor(doc: &str, who: &Client, name: &str, color: &str, ranges: Value) -> Value {
    json!({"type":"cursor","doc":doc,"client":who.id,"name":name,"color":color,"ranges":ranges})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_shown_transformed_and_replayed_and_left_is_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let url = node.url();
    let mut a = Client::connect(&url, None, "Ada").await;
    let ws = Client::connect_raw(&url).await;
    let mut b = Client {
        ws,
        id: String::new(),
    };
    b.send(json!({"type":"hello","client":null,"name":"Bob","color":"#98c379"}))
        .await;
    b.id = b.recv().await["client"]
        .as_str()
        .expect("client id")
        .to_owned();
    a.open("p.txt", None).await;
    b.open("p.txt", None).await;
    assert_eq!(a.op_acked("p.txt", 0, 1, json!(["hello world"])).await, 1);
    assert_eq!(b.recv_type("op").await["rev"], 1);

    a.send(json!({"type":"cursor","doc":"p.txt","rev":1,"ranges":[[5,5]]}))
        .await;
    assert_eq!(
        b.recv().await,
        cursor("p.txt", &a, "Ada", TEST_COLOR, json!([[5, 5]]))
    );
    // An insert exactly at A's cursor moves it right, after the inserted text.
    assert_eq!(b.op_acked("p.txt", 1, 1, json!([5, "XX"])).await, 2);
    assert_eq!(
        a.recv().await,
        json!({"type":"op","doc":"p.txt","rev":2,"client":b.id,"op":[5,"XX"]})
    );
    let mut c = Client::connect(&url, None, "Cy").await;
    let opened = c.open("p.txt", None).await;
    assert_eq!(
        opened,
        json!({"type":"opened","doc":"p.txt","rev":2,"text":"helloXX world","lang":"plaintext"})
    );
    assert_eq!(
        c.recv().await,
        cursor("p.txt", &a, "Ada", TEST_COLOR, json!([[7, 7]]))
    );
    c.ping_pong().await;

    // A cursor sent at an older revision is transformed to the current one.
    a.send(json!({"type":"cursor","doc":"p.txt","rev":1,"ranges":[[3,6],[11,0]]}))
        .await;
    let expected = cursor("p.txt", &a, "Ada", TEST_COLOR, json!([[3, 8], [13, 0]]));
    assert_eq!(b.recv().await, expected);
    assert_eq!(c.recv().await, expected);
    b.send(json!({"type":"cursor","doc":"p.txt","rev":2,"ranges":[[0,13]]}))
        .await;
    let expected = cursor("p.txt", &b, "Bob", "#98c379", json!([[0, 13]]));
    assert_eq!(a.recv().await, expected);
    assert_eq!(c.recv().await, expected);
    // A deletion inside a range pulls its end back.
    assert_eq!(a.op_acked("p.txt", 2, 2, json!([-5])).await, 3);
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":"p.txt","rev":3,"client":a.id,"op":[-5]})
    );
    assert_eq!(
        c.recv().await,
        json!({"type":"op","doc":"p.txt","rev":3,"client":a.id,"op":[-5]})
    );

    // A closes the document: the others are told.
    a.send(json!({"type":"close","doc":"p.txt"})).await;
    let left_a = json!({"type":"left","doc":"p.txt","client":a.id});
    assert_eq!(b.recv().await, left_a);
    assert_eq!(c.recv().await, left_a);
    // A newcomer sees B's cursor (transformed over the delete) and not A's.
    let mut d = Client::connect(&url, None, "Di").await;
    let opened = d.open("p.txt", None).await;
    assert_eq!(opened["text"], "XX world");
    assert_eq!(
        d.recv().await,
        cursor("p.txt", &b, "Bob", "#98c379", json!([[0, 8]]))
    );
    d.ping_pong().await;

    // B's socket goes away: the others are told too.
    let left_b = json!({"type":"left","doc":"p.txt","client":b.id});
    b.ws.send(Message::Close(None)).await.expect("send close");
    drop(b);
    assert_eq!(c.recv().await, left_b);
    assert_eq!(d.recv().await, left_b);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_announces_left_on_every_document_it_had_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    for doc in ["one.txt", "two/two.txt"] {
        a.open(doc, None).await;
        b.open(doc, None).await;
        a.send(json!({"type":"cursor","doc":doc,"rev":0,"ranges":[[0,0]]}))
            .await;
        assert_eq!(
            b.recv().await,
            cursor(doc, &a, "Ada", TEST_COLOR, json!([[0, 0]]))
        );
    }
    let id = a.id.clone();
    drop(a);
    let mut lefts = vec![b.recv().await, b.recv().await];
    lefts.sort_by_key(|v| v["doc"].as_str().map(str::to_owned));
    assert_eq!(
        lefts,
        vec![
            json!({"type":"left","doc":"one.txt","client":id}),
            json!({"type":"left","doc":"two/two.txt","client":id}),
        ]
    );
    // The cursor is gone with its owner.
    let mut c = Client::connect(&node.url(), None, "Cy").await;
    c.open("one.txt", None).await;
    c.ping_pong().await;
    node.shutdown().await;
}
