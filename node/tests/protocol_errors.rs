//! Every bad-input class of PROTOCOL.md gets its error code and changes nothing: checked over
//! real sockets, with a second client's snapshot proving the document did not move.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_but_hello_first_is_bad_message_and_closes_with_1008() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let firsts = [
        Message::text(r#"{"type":"ping"}"#),
        Message::text(r#"{"type":"open","doc":"a.txt","rev":null}"#),
        Message::text("not json"),
        Message::text(r#"{"type":"hello","client":5}"#),
        Message::binary(vec![1u8, 2, 3]),
    ];
    for first in firsts {
        let shown = format!("{first:?}");
        let ws = Client::connect_raw(&node.url()).await;
        let mut c = Client {
            ws,
            id: String::new(),
        };
        c.ws.send(first).await.expect("send the first message");
        c.expect_error("bad_message", None, None).await;
        assert_eq!(c.recv_close().await, Some(1008), "close code after {shown}");
    }
    // Nothing was opened or created by any of them.
    assert_eq!(obs.snapshot("a.txt").await, (0, String::new()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_bad_message_and_the_connection_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("d.txt", None).await;
    assert_eq!(a.op_acked("d.txt", 0, 1, json!(["x"])).await, 1);
    let cases: &[(&str, Option<&str>, Option<u64>)] = &[
        ("not json", None, None),
        ("", None, None),
        ("[1,2]", None, None),
        ("\"op\"", None, None),
        (r#"{"type":"fly"}"#, None, None),
        (
            r#"{"type":"fly","doc":"d.txt","seq":4}"#,
            Some("d.txt"),
            Some(4),
        ),
        (r#"{"doc":"d.txt"}"#, Some("d.txt"), None),
        (r#"{"type":7}"#, None, None),
        (r#"{"type":"open"}"#, None, None),
        (r#"{"type":"open","doc":5}"#, None, None),
        (r#"{"type":"close"}"#, None, None),
        (
            r#"{"type":"op","doc":"d.txt","rev":"x","seq":2,"op":["a"]}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":1.5,"seq":2,"op":["a"]}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":-1,"seq":2,"op":["a"]}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":null,"seq":2,"op":["a"]}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","seq":2,"op":["a"]}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":1,"seq":2}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":1,"seq":2,"op":"a"}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":1,"seq":2,"op":{"0":"a"}}"#,
            Some("d.txt"),
            Some(2),
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":1,"seq":"2","op":["a"]}"#,
            Some("d.txt"),
            None,
        ),
        (
            r#"{"type":"op","doc":"d.txt","rev":1,"seq":2.5,"op":["a"]}"#,
            Some("d.txt"),
            None,
        ),
        (r#"{"type":"op","rev":1,"seq":2,"op":["a"]}"#, None, Some(2)),
        (
            r#"{"type":"cursor","doc":"d.txt","rev":1}"#,
            Some("d.txt"),
            None,
        ),
        (
            r#"{"type":"cursor","doc":"d.txt","rev":1,"ranges":[[1]]}"#,
            Some("d.txt"),
            None,
        ),
        (
            r#"{"type":"cursor","doc":"d.txt","rev":1,"ranges":[["a",1]]}"#,
            Some("d.txt"),
            None,
        ),
        (
            r#"{"type":"cursor","doc":"d.txt","rev":1,"ranges":[[-1,1]]}"#,
            Some("d.txt"),
            None,
        ),
    ];
    for (text, doc, seq) in cases {
        a.send_text(text).await;
        let error = a.recv().await;
        assert_error(&error, "bad_message", *doc, *seq);
        a.ping_pong().await;
    }
    a.ws.send(Message::binary(b"{\"type\":\"ping\"}".to_vec()))
        .await
        .expect("send binary");
    a.expect_error("bad_message", None, None).await;
    a.ping_pong().await;
    // Nothing above changed the document, and seq 2 is still the next one.
    assert_eq!(obs.snapshot("d.txt").await, (1, "x".to_owned()));
    assert_eq!(a.op_acked("d.txt", 1, 2, json!([1, "y"])).await, 2);
    assert_eq!(obs.snapshot("d.txt").await, (2, "xy".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_document_ids_get_bad_message_with_doc_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let too_long = "x".repeat(257);
    let bad = [
        "",
        "/a",
        "a/",
        "a//b",
        "a/../b",
        "a/./b",
        "..",
        ".",
        "a b",
        "é.txt",
        "a\\b",
        too_long.as_str(),
    ];
    for id in bad {
        a.send(json!({"type":"open","doc":id,"rev":null})).await;
        a.expect_error("bad_message", Some(id), None).await;
        a.send(json!({"type":"op","doc":id,"rev":0,"seq":1,"op":["x"]}))
            .await;
        a.expect_error("bad_message", Some(id), Some(1)).await;
        a.send(json!({"type":"cursor","doc":id,"rev":0,"ranges":[[0,0]]}))
            .await;
        a.expect_error("bad_message", Some(id), None).await;
        a.send(json!({"type":"close","doc":id})).await;
        a.expect_error("bad_message", Some(id), None).await;
    }
    a.ping_pong().await;
    let docs = dir.path().join("docs");
    let created = std::fs::read_dir(&docs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        created,
        0,
        "no document was created under {}",
        docs.display()
    );
    // The longest id allowed (256 characters) and every allowed character work.
    let longest = "y".repeat(256);
    for id in [longest.as_str(), "A-z_0.9/b-.c/..d", ".hidden/x..y"] {
        let opened = a.open(id, None).await;
        assert_eq!(
            opened,
            json!({"type":"opened","doc":id,"rev":0,"text":"","lang":opened["lang"]})
        );
        assert_eq!(a.op_acked(id, 0, 1, json!(["ok"])).await, 1);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_and_cursors_on_a_document_not_open_get_not_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.send_op("n.txt", 0, 1, json!(["x"])).await;
    a.expect_error("not_open", Some("n.txt"), Some(1)).await;
    a.send(json!({"type":"cursor","doc":"n.txt","rev":0,"ranges":[[0,0]]}))
        .await;
    a.expect_error("not_open", Some("n.txt"), None).await;
    // Open, edit, close: then it is not open any more.
    a.open("n.txt", None).await;
    assert_eq!(a.op_acked("n.txt", 0, 1, json!(["x"])).await, 1);
    a.send(json!({"type":"close","doc":"n.txt"})).await;
    a.send_op("n.txt", 1, 2, json!(["y"])).await;
    a.expect_error("not_open", Some("n.txt"), Some(2)).await;
    a.ping_pong().await;
    assert_eq!(obs.snapshot("n.txt").await, (1, "x".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ops_get_invalid_op_and_do_not_use_up_the_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("m.txt", None).await;
    assert_eq!(a.op_acked("m.txt", 0, 1, json!(["a😀c"])).await, 1);
    // Raw text, so that numbers keep their exact spelling (1e2, 1.0, -0).
    let bad_ops = [
        "[]",
        "[0]",
        "[-0]",
        "[\"\"]",
        "[1.5]",
        "[1.0]",
        "[1e2]",
        "[true]",
        "[null]",
        "[[1]]",
        "[{}]",
        "[4]",
        "[-4]",
        "[3,-1]",
        "[2,-2]",
        "[\"x\",0]",
        "[1,0,\"x\"]",
        "[3,\"\"]",
        "[18446744073709551616]",
        "[-18446744073709551616]",
        "[1099511627777]",
    ];
    for op in bad_ops {
        a.send_text(&format!(
            r#"{{"type":"op","doc":"m.txt","rev":1,"seq":2,"op":{op}}}"#
        ))
        .await;
        let error = a.recv().await;
        assert_eq!(error["code"], "invalid_op", "op {op}: {error}");
        assert_error(&error, "invalid_op", Some("m.txt"), Some(2));
    }
    // A base revision newer than the document is invalid_op too.
    a.send_op("m.txt", 2, 2, json!(["x"])).await;
    a.expect_error("invalid_op", Some("m.txt"), Some(2)).await;
    a.send_op("m.txt", u64::MAX, 2, json!(["x"])).await;
    a.expect_error("invalid_op", Some("m.txt"), Some(2)).await;
    a.ping_pong().await;
    assert_eq!(obs.snapshot("m.txt").await, (1, "a😀c".to_owned()));
    // Seq 2 was never used up; a trailing retain may be given explicitly.
    assert_eq!(a.op_acked("m.txt", 1, 2, json!([2, "b", 1])).await, 2);
    assert_eq!(obs.snapshot("m.txt").await, (2, "a😀bc".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_older_than_the_history_gets_stale_rev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.document.history_ops = 3;
    let node = TestNode::start(config).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("s.txt", None).await;
    b.open("s.txt", None).await;
    for seq in 1..=10 {
        assert_eq!(a.op_acked("s.txt", seq - 1, seq, json!(["a"])).await, seq);
    }
    for rev in 1..=10 {
        assert_eq!(b.recv_type("op").await["rev"], rev);
    }
    // The history holds revisions 8..=10: a base of 6 (or 0) is stale, a base of 7 is not.
    b.send_op("s.txt", 0, 1, json!(["B"])).await;
    b.expect_error("stale_rev", Some("s.txt"), Some(1)).await;
    b.send_op("s.txt", 6, 1, json!([6, "B"])).await;
    b.expect_error("stale_rev", Some("s.txt"), Some(1)).await;
    b.ping_pong().await;
    assert_eq!(obs.snapshot("s.txt").await, (10, "a".repeat(10)));
    assert_eq!(b.op_acked("s.txt", 7, 1, json!([7, "B"])).await, 11);
    assert_eq!(
        obs.snapshot("s.txt").await,
        (11, format!("{}B", "a".repeat(10)))
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_skipping_is_bad_message_and_a_duplicate_seq_is_acked_with_its_first_rev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("q.txt", None).await;
    b.open("q.txt", None).await;
    a.send_op("q.txt", 0, 2, json!(["x"])).await;
    a.expect_error("bad_message", Some("q.txt"), Some(2)).await;
    a.send_op("q.txt", 0, 0, json!(["x"])).await;
    a.expect_error("bad_message", Some("q.txt"), Some(0)).await;
    assert_eq!(a.op_acked("q.txt", 0, 1, json!(["x"])).await, 1);
    a.send_op("q.txt", 1, 3, json!(["x"])).await;
    a.expect_error("bad_message", Some("q.txt"), Some(3)).await;
    assert_eq!(b.recv_type("op").await["rev"], 1);
    assert_eq!(b.op_acked("q.txt", 1, 1, json!([1, "y"])).await, 2);
    assert_eq!(a.recv_type("op").await["rev"], 2);
    // Seq 1 again, whatever its content and base: acked with the revision it first became.
    a.send_op("q.txt", 2, 1, json!(["zzz"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"q.txt","seq":1,"rev":1})
    );
    assert_eq!(a.op_acked("q.txt", 2, 2, json!([2, "!"])).await, 3);
    a.send_op("q.txt", 0, 1, json!(["x"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"q.txt","seq":1,"rev":1})
    );
    a.send_op("q.txt", 3, 2, json!(["x"])).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"ack","doc":"q.txt","seq":2,"rev":3})
    );
    assert_eq!(obs.snapshot("q.txt").await, (3, "xy!".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_tokens_may_read_and_show_cursors_but_ops_are_forbidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.auth.allow_anonymous = false;
    config.auth.tokens = vec!["rw-secret".into()];
    config.auth.read_only_tokens = vec!["ro~secret".into()];
    let node = TestNode::start(config).await;
    let mut writer = Client::connect_bearer(&node.url(), "rw-secret", "Writer").await;
    let mut reader =
        Client::connect(&format!("{}?token=ro%7Esecret", node.url()), None, "Reader").await;
    writer.open("r.txt", None).await;
    reader.open("r.txt", None).await;
    assert_eq!(writer.op_acked("r.txt", 0, 1, json!(["hi"])).await, 1);
    assert_eq!(
        reader.recv().await,
        json!({"type":"op","doc":"r.txt","rev":1,"client":writer.id,"op":["hi"]})
    );
    reader.send_op("r.txt", 1, 1, json!(["no"])).await;
    reader
        .expect_error("forbidden", Some("r.txt"), Some(1))
        .await;
    reader
        .send(json!({"type":"cursor","doc":"r.txt","rev":1,"ranges":[[1,2]]}))
        .await;
    assert_eq!(
        writer.recv().await,
        json!({"type":"cursor","doc":"r.txt","client":reader.id,"name":"Reader","color":TEST_COLOR,"ranges":[[1,2]]})
    );
    // A token in the query also works for read-write.
    let mut query = Client::connect(&format!("{}?token=rw-secret", node.url()), None, "Q").await;
    assert_eq!(query.open_snapshot("r.txt").await, (1, "hi".to_owned()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_missing_tokens_are_refused_with_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.auth.allow_anonymous = false;
    config.auth.tokens = vec!["rw-secret".into()];
    config.auth.read_only_tokens = vec!["ro-secret".into()];
    let node = TestNode::start(config).await;
    assert_eq!(try_upgrade(&node.url(), None).await.err(), Some(401));
    assert_eq!(
        try_upgrade(&node.url(), Some("guess")).await.err(),
        Some(401)
    );
    assert_eq!(
        try_upgrade(&node.url(), Some("rw-secret-longer"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        try_upgrade(&format!("{}?token=guess", node.url()), None)
            .await
            .err(),
        Some(401)
    );
    assert!(try_upgrade(&node.url(), Some("rw-secret")).await.is_ok());
    assert!(try_upgrade(&node.url(), Some("ro-secret")).await.is_ok());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_an_id_the_server_cannot_have_issued_is_forbidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    for id in [
        "nope",
        "",
        "ABCDEF0123456789ABCDEF0123456789",
        &"a".repeat(33),
        "../../etc/passwd",
    ] {
        let ws = Client::connect_raw(&node.url()).await;
        let mut c = Client {
            ws,
            id: String::new(),
        };
        c.send(json!({"type":"hello","client":id,"name":"Mallory"}))
            .await;
        c.expect_error("forbidden", None, None).await;
        assert!(matches!(
            c.recv_end().await,
            Ended::Close(_) | Ended::Dropped(_)
        ));
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_an_old_seq_beyond_the_history_is_acked_and_not_applied_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.document.history_ops = 2;
    let node = TestNode::start(config).await;
    let mut obs = Observer::new(&node.url()).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    a.open("old.txt", None).await;
    assert_eq!(a.op_acked("old.txt", 0, 1, json!(["a"])).await, 1);
    for seq in 2..=5u64 {
        assert_eq!(a.op_acked("old.txt", seq - 1, seq, json!(["a"])).await, seq);
    }
    a.send_op("old.txt", 0, 1, json!(["a"])).await;
    let ack = a.recv().await;
    assert_eq!(
        ack["type"], "ack",
        "a duplicate is never applied again: {ack}"
    );
    assert_eq!(obs.snapshot("old.txt").await, (5, "aaaaa".to_owned()));
    // docs/PROTOCOL.md: a duplicate older than the client's last seq whose op has left the
    // history window is acknowledged with the client's last known revision.
    assert_eq!(
        ack,
        json!({"type":"ack","doc":"old.txt","seq":1,"rev":5}),
        "acked, never applied again"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_answered_with_welcome_and_an_unguessable_id_that_can_be_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.node_name = "node-under-test".into();
    let node = TestNode::start(config).await;
    // Every field but the type is optional.
    let ws = Client::connect_raw(&node.url()).await;
    let mut a = Client {
        ws,
        id: String::new(),
    };
    a.send(json!({"type":"hello"})).await;
    let welcome = a.recv().await;
    let id = welcome["client"].as_str().expect("an id").to_owned();
    assert_eq!(
        welcome,
        json!({"type":"welcome","client":id,"node":"node-under-test","protocol":1})
    );
    assert!(
        id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "at least 128 random bits: {id}"
    );
    let other = Client::connect(&node.url(), None, "Other").await;
    assert_ne!(other.id, id);
    // Resuming echoes the same id.
    let ws = Client::connect_raw(&node.url()).await;
    let mut again = Client {
        ws,
        id: String::new(),
    };
    again
        .send(json!({"type":"hello","client":id,"name":"Ada","color":null}))
        .await;
    assert_eq!(
        again.recv().await,
        json!({"type":"welcome","client":id,"node":"node-under-test","protocol":1})
    );
    node.shutdown().await;
}
