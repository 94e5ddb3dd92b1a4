//! Crash durability with the real binary: clients edit in a burst, the process is killed with
//! SIGKILL mid-burst, restarted on the same data directory; every acknowledged insert is there
//! exactly once, and resubmitting the ops that were in flight applies each at most once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::process::ChildNode;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const DOC: &str = "crash/burst.txt";
const WRITERS: usize = 4;
/// Acknowledged ops (over all writers) after which the process is killed.
const KILL_AFTER_ACKS: usize = 60;

/// What one writer knows when its connection dies.
struct Outcome {
    id: String,
    acked: Vec<String>,
    /// The op sent and not acknowledged: (seq, base rev, token).
    in_flight: Option<(u64, u64, String)>,
}

fn token(writer: usize, seq: u64) -> String {
    format!("<w{writer}-{seq}>")
}

/// Next text message, or None once the connection is gone.
async fn next_message(c: &mut Client) -> Option<Value> {
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, c.ws.next())
            .await
            .expect("a message or the end in time")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Inserts one unique token per op, one op in flight, until the connection dies.
async fn write_until_killed(
    mut c: Client,
    writer: usize,
    acks: Arc<watch::Sender<usize>>,
) -> Outcome {
    let opened = c.open(DOC, None).await;
    let mut rev = opened["rev"].as_u64().expect("rev");
    let mut outcome = Outcome {
        id: c.id.clone(),
        acked: Vec::new(),
        in_flight: None,
    };
    for seq in 1.. {
        let tok = token(writer, seq);
        // Inserting at position 0 is valid on any base, so no text needs to be tracked.
        let msg = json!({"type":"op","doc":DOC,"rev":rev,"seq":seq,"op":[tok]});
        outcome.in_flight = Some((seq, rev, tok.clone()));
        if c.ws.send(Message::text(msg.to_string())).await.is_err() {
            return outcome;
        }
        loop {
            let Some(v) = next_message(&mut c).await else {
                return outcome;
            };
            match v["type"].as_str() {
                // Others' ops come before our ack; the ack's revision is the newest.
                Some("op") => {}
                Some("ack") => {
                    assert_eq!(v["seq"], seq, "{v}");
                    rev = v["rev"].as_u64().expect("rev");
                    outcome.acked.push(tok.clone());
                    outcome.in_flight = None;
                    acks.send_modify(|n| *n += 1);
                    break;
                }
                _ => panic!("writer {writer}: unexpected {v}"),
            }
        }
    }
    unreachable!("the loop ends when the connection dies")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ops_survive_kill_9_and_resubmissions_apply_at_most_once() {
    crash_and_recover(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ops_survive_kill_9_during_frequent_compactions() {
    // Compacting every 3 ops puts a snapshot write in flight most of the time.
    crash_and_recover(&["--compact-every-ops", "3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ops_survive_kill_9_with_group_commit() {
    // Appends written first, then synced by the node-wide syncfs round. kill -9 keeps the page
    // cache, so this checks acks, ordering and recovery under the group policy, not the sync
    // itself (group_sync's unit test counts real syncfs rounds).
    crash_and_recover(&["--fsync", "group", "--compact-every-ops", "50"]).await;
}

/// Burst, kill -9, restart, check, resubmit, check.
async fn crash_and_recover(args: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = ChildNode::start(dir.path(), args);
    let url = first.url();
    let (acks, mut acked_count) = watch::channel(0usize);
    let acks = Arc::new(acks);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let c = Client::connect(&url, None, &format!("W{writer}")).await;
        writers.push(tokio::spawn(write_until_killed(c, writer, acks.clone())));
    }
    tokio::time::timeout(
        Duration::from_secs(30),
        acked_count.wait_for(|n| *n >= KILL_AFTER_ACKS),
    )
    .await
    .expect("enough acks in time")
    .expect("writers alive");
    first.kill();
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(20), w)
                .await
                .expect("writer ends")
                .expect("writer task"),
        );
    }
    let acked_total: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    assert!(acked_total >= KILL_AFTER_ACKS);

    let second = ChildNode::start(dir.path(), args);
    let (rev, text) = snapshot(&second.url(), DOC).await;
    for o in &outcomes {
        for tok in &o.acked {
            assert_eq!(
                count(&text, tok),
                1,
                "acknowledged {tok} exactly once after kill -9: {text}"
            );
        }
        if let Some((_, _, tok)) = &o.in_flight {
            assert!(
                count(&text, tok) <= 1,
                "in-flight {tok} at most once: {text}"
            );
        }
    }
    assert!(
        rev as usize >= acked_total,
        "rev {rev} counts every acknowledged op ({acked_total})"
    );

    // Every writer resumes with its id and resubmits its op in flight (same seq and base). If the
    // base is older than the history the restarted node holds, the protocol's answer is stale_rev:
    // the client opens again and resubmits rebased (an insert at 0 needs no rebasing).
    for o in &outcomes {
        let Some((seq, base, tok)) = &o.in_flight else {
            continue;
        };
        let mut c = Client::connect(&second.url(), Some(&o.id), "again").await;
        c.open(DOC, None).await;
        let mut msg = json!({"type":"op","doc":DOC,"rev":base,"seq":seq,"op":[tok]});
        c.send(msg.clone()).await;
        let mut answer = c.recv_type_of(&["ack", "error"]).await;
        if answer["type"] == "error" {
            assert_error(&answer, "stale_rev", Some(DOC), Some(*seq));
            eprintln!("{tok}: base {base} is older than the reloaded history: stale_rev, rebased");
            let (rev, _) = c.open_snapshot(DOC).await;
            msg["rev"] = json!(rev);
            c.send(msg.clone()).await;
            answer = c.recv_type("ack").await;
        }
        assert_eq!(answer["seq"], *seq, "{answer}");
        // A second resubmission is a duplicate with the same revision.
        c.send(msg).await;
        assert_eq!(c.recv_type("ack").await, answer);
    }
    let (_, text) = snapshot(&second.url(), DOC).await;
    for o in &outcomes {
        for tok in o
            .acked
            .iter()
            .chain(o.in_flight.as_ref().map(|(_, _, t)| t))
        {
            assert_eq!(
                count(&text, tok),
                1,
                "{tok} exactly once after resubmission: {text}"
            );
        }
    }
    eprintln!(
        "{acked_total} acknowledged before kill -9; final text has {} tokens",
        count(&text, "<")
    );
}
