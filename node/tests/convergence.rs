//! Convergence: several clients, each running a correct client-side OT state machine, edit two
//! documents at once with random inserts and deletes (astral characters, combining marks) and
//! random pauses in reading; in the end every client's text equals a fresh snapshot. Seeded.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::editor::{random_edit, Editor};
use common::*;
use futures_util::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

/// Connections editing at once; each has both documents open.
const CONNECTIONS: u64 = 5;
/// Random steps (edit, read, pause, cursor) each connection takes.
const STEPS: usize = 400;
const DOCS: [&str; 2] = ["conv/one.rs", "conv/two.md"];

struct Connection {
    client: Client,
    editors: BTreeMap<String, Editor>,
}

impl Connection {
    async fn handle(&mut self, msg: Value) {
        let doc = msg["doc"]
            .as_str()
            .unwrap_or_else(|| panic!("a message without doc: {msg}"))
            .to_owned();
        let editor = self
            .editors
            .get_mut(&doc)
            .unwrap_or_else(|| panic!("a message for a document not open: {msg}"));
        if let Some(out) = editor.handle(&msg) {
            self.client.send(out).await;
        }
    }

    /// Handles whatever has already arrived, without waiting.
    async fn drain_ready(&mut self) {
        loop {
            let Some(next) = self.client.ws.next().now_or_never() else {
                return;
            };
            match next.expect("the socket stays open").expect("a valid frame") {
                Message::Text(t) => self.handle(serde_json::from_str(&t).expect("JSON")).await,
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    fn in_flight(&self) -> bool {
        self.editors.values().any(|e| e.inflight.is_some())
    }
}

async fn run_connection(url: String, index: u64, seed: u64, start: Arc<Barrier>) -> Connection {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let client = Client::connect(&url, None, &format!("Client{index}")).await;
    let mut conn = Connection {
        client,
        editors: BTreeMap::new(),
    };
    for doc in DOCS {
        let opened = conn.client.open(doc, None).await;
        conn.editors
            .insert(doc.to_owned(), Editor::from_opened(&opened));
    }
    // Nobody edits before everyone has opened everything (open skips messages before `opened`).
    start.wait().await;
    for _ in 0..STEPS {
        let doc = DOCS[rng.random_range(0..DOCS.len())];
        match rng.random_range(0..100) {
            0..50 => {
                let editor = conn.editors.get_mut(doc).expect("open");
                let op = random_edit(&mut rng, &editor.text);
                if let Some(msg) = editor.edit(op) {
                    conn.client.send(msg).await;
                }
            }
            50..72 => conn.drain_ready().await,
            72..82 => {
                if conn.in_flight() {
                    let msg = conn.client.recv().await;
                    conn.handle(msg).await;
                }
            }
            82..90 => {
                if let Some(msg) = conn.editors[doc].cursor(&mut rng) {
                    conn.client.send(msg).await;
                }
            }
            // A pause in delivery: nothing is read meanwhile, the others keep editing.
            _ => tokio::time::sleep(Duration::from_millis(rng.random_range(0..5))).await,
        }
    }
    // Edit no more, but keep composing: send pending ops as acks come, until all are acked.
    while conn.in_flight() {
        let msg = conn.client.recv().await;
        conn.handle(msg).await;
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_concurrent_edits_converge_on_every_client() {
    let (seed, _guard) = test_seed("random_concurrent_edits_converge_on_every_client");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let start = Arc::new(Barrier::new(CONNECTIONS as usize));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| tokio::spawn(run_connection(node.url(), i, seed, start.clone())))
        .collect();
    let mut connections = Vec::new();
    for task in tasks {
        connections.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("clients finish")
                .expect("client task"),
        );
    }
    for doc in DOCS {
        let total: u64 = connections.iter().map(|c| c.editors[doc].sent).sum();
        for conn in connections.iter_mut() {
            while conn.editors[doc].rev < total {
                let msg = conn.client.recv().await;
                let target = msg["doc"].as_str().expect("doc").to_owned();
                let editor = conn.editors.get_mut(&target).expect("open");
                assert!(editor.handle(&msg).is_none(), "nothing left to send");
            }
        }
        let (rev, text) = snapshot(&node.url(), doc).await;
        assert_eq!(rev, total, "{doc}: one revision per op sent");
        for (i, conn) in connections.iter().enumerate() {
            let editor = &conn.editors[doc];
            assert!(editor.is_settled());
            assert_eq!(editor.rev, total, "{doc}: client {i} revision");
            assert_eq!(
                editor.text, text,
                "{doc}: client {i} diverged from the server"
            );
        }
        eprintln!(
            "{doc}: converged at rev {rev} with {} code points",
            text.chars().count()
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_at_one_position_keep_the_order_the_server_applied_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("tie.txt", None).await;
    b.open("tie.txt", None).await;
    assert_eq!(a.op_acked("tie.txt", 0, 1, json!(["<>"])).await, 1);
    assert_eq!(b.recv().await["rev"], 1);
    // Both insert at position 1 of revision 1; the server applies A's first.
    assert_eq!(a.op_acked("tie.txt", 1, 2, json!([1, "A"])).await, 2);
    b.send_op("tie.txt", 1, 1, json!([1, "B"])).await;
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":"tie.txt","rev":2,"client":a.id,"op":[1,"A"]})
    );
    assert_eq!(
        b.recv().await,
        json!({"type":"ack","doc":"tie.txt","seq":1,"rev":3})
    );
    assert_eq!(
        a.recv().await,
        json!({"type":"op","doc":"tie.txt","rev":3,"client":b.id,"op":[2,"B"]})
    );
    assert_eq!(
        snapshot(&node.url(), "tie.txt").await,
        (3, "<AB>".to_owned())
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_of_the_same_text_leave_valid_ops_on_the_wire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(test_config(dir.path())).await;
    let mut a = Client::connect(&node.url(), None, "Ada").await;
    let mut b = Client::connect(&node.url(), None, "Bob").await;
    a.open("del.txt", None).await;
    b.open("del.txt", None).await;
    assert_eq!(a.op_acked("del.txt", 0, 1, json!(["x"])).await, 1);
    assert_eq!(b.recv().await["rev"], 1);
    // Both delete the only character; B's delete becomes a no-op on an empty document.
    assert_eq!(a.op_acked("del.txt", 1, 2, json!([-1])).await, 2);
    b.send_op("del.txt", 1, 1, json!([-1])).await;
    assert_eq!(
        b.recv().await,
        json!({"type":"op","doc":"del.txt","rev":2,"client":a.id,"op":[-1]})
    );
    let ack = b.recv().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let rev = ack["rev"].as_u64().expect("rev");
    if rev == 3 {
        // A revision was spent on the no-op: A must receive it as a valid op.
        let op = a.recv().await;
        assert_eq!(op["rev"], 3, "{op}");
        // docs/PROTOCOL.md: the identity on an empty document is the one op written `[]`.
        assert_eq!(op["op"], json!([]), "{op}");
    }
    assert_eq!(snapshot(&node.url(), "del.txt").await, (rev, String::new()));
    node.shutdown().await;
}
