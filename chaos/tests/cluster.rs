//! Cluster chaos tests with real processes: one `redis-server` and three `chorus` nodes on
//! loopback ports (ractor keeps process-wide registries, so every node is its own process).
//! Typing clients fail over between the nodes; every insert carries a unique token, so each
//! scenario ends by checking that no acknowledged insert was lost or applied twice and that all
//! clients converged on a fresh snapshot.
//!
//! Needs `redis-server` on PATH and the `chorus` binary built with the same profile and target
//! dir (`cargo build --bin chorus`; `cargo test --workspace` builds it), or `CHORUS_BIN`.
//! The scenarios run one at a time (they measure timings). Numbers for the cluster issue's
//! closing note are printed: run with `--nocapture`. The long forms are `#[ignore]`d:
//! `cargo test -p chorus-chaos --test cluster -- --ignored --nocapture`. A failing scenario
//! prints the nodes' last log lines and keeps their directory; `CHORUS_CHAOS_KEEP=1` always
//! keeps it.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::client::{open_and_close, snapshot, AckKind};
use support::fleet::{distribution_ms, first_ack_after, longest_ack_gap, slowest_resume, Fleet};
use support::procs::Cluster;
use tokio::sync::Mutex;

/// Mean pause between an ack and a client's next insert into a document.
const EDIT_EVERY: Duration = Duration::from_millis(40);

/// Deadline for clients' first acks after the cluster starts.
const WARM_UP_DEADLINE: Duration = Duration::from_secs(30);

/// Deadline for a document owned by a killed or paused node to take an op again. The target
/// is 2 s at default settings (lease 1.5 s, heartbeat timeout 1 s); this is the failure bound.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);

/// Recovery-time target at default settings (reported; the median must meet it).
const RECOVERY_TARGET: Duration = Duration::from_secs(2);

/// Failure bound for every client (also those of a killed or drained node, which reconnect
/// elsewhere) to have an op acknowledged again after the fault. Typically ~1.6 s after a kill;
/// an open that waits for the answer of a dead node instead of retrying takes 10 s.
const CLIENT_RESUME_BOUND: Duration = Duration::from_secs(5);

/// Per-document pause target of a drain (reported; the worst must stay under the bound below).
const DRAIN_PAUSE_TARGET: Duration = Duration::from_millis(500);

/// Failure bound of a drain's per-document pause: generous for a debug build on two busy cores.
const DRAIN_PAUSE_BOUND: Duration = Duration::from_secs(3);

/// How long a SIGTERMed node may take to drain and exit.
const DRAIN_EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// Frames already in a socket when a node is stopped may still reach the client after this.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(250);

/// Exit code of a node whose lease was lost (EX_TEMPFAIL).
const FENCED_EXIT_CODE: i32 = 75;

/// Deadline for clients to make progress again after a fault.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(30);

/// One scenario at a time: they measure timings and each starts four processes. (An async
/// mutex: the guard is held across the whole test; each test has its own runtime.)
static SERIAL: Mutex<()> = Mutex::const_new(());

/// `CHORUS_TEST_SEED` or a fresh one (positions and pauses of the clients), printed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHORUS_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("[{test}] seed {seed} (CHORUS_TEST_SEED={seed} replays the clients' choices, not the timing)");
    seed
}

fn docs(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Clients on all three nodes edit two documents at once; everything converges, no token is
/// lost or duplicated, and ops really crossed nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_editing_converges() {
    let _serial = SERIAL.lock().await;
    let seed = seed("cross_node");
    let cluster = Cluster::start("xnode", 3, &[]).await;
    let docs = docs(&["xnode/a.rs", "xnode/notes/b.md"]);
    let fleet = Fleet::spawn(&cluster, "x", 2, &docs, EDIT_EVERY, seed);
    fleet.wait_progress(25, WARM_UP_DEADLINE).await;
    let mut owners = BTreeMap::new();
    for doc in &docs {
        owners.insert(
            doc.clone(),
            cluster.owner_of(doc).await.expect("an owner in Redis"),
        );
    }
    let acks = fleet.acks();
    for (doc, owner) in &owners {
        let via_others = acks
            .iter()
            .filter(|a| a.doc == *doc && a.node != *owner)
            .count();
        assert!(
            via_others > 0,
            "{doc} (owned by {owner}) got no ack through another node"
        );
    }
    for i in 0..3 {
        assert!(
            acks.iter().any(|a| a.node == cluster.name(i)),
            "no ack through {}",
            cluster.name(i)
        );
    }
    let verdict = fleet.settle_and_verify(&cluster, 0).await;
    eprintln!("[cross_node] owners {owners:?}; {}", verdict.summary());
}

/// `kill -9` of a document's owner while clients type, `rounds` times (the killed node is
/// restarted between rounds). Returns the recovery times.
async fn kill_owner_rounds(tag: &str, rounds: usize) -> Vec<Duration> {
    let seed = seed(tag);
    let mut cluster = Cluster::start(tag, 3, &[]).await;
    let mut recoveries = Vec::new();
    let mut slowest_resumes = Vec::new();
    for round in 0..rounds {
        let docs = vec![
            format!("{tag}/r{round}/a.rs"),
            format!("{tag}/r{round}/b.rs"),
        ];
        let round_started = Instant::now();
        let fleet = Fleet::spawn(
            &cluster,
            &format!("k{round}."),
            2,
            &docs,
            EDIT_EVERY,
            seed.wrapping_add(round as u64 * 1000),
        );
        fleet.wait_progress(3, WARM_UP_DEADLINE).await;
        let victim = cluster.wait_owner(&docs[0], Duration::from_secs(5)).await;
        let victim_name = cluster.name(victim).to_owned();
        let mut victim_docs = Vec::new();
        for doc in &docs {
            if cluster.owner_of(doc).await.as_deref() == Some(victim_name.as_str()) {
                victim_docs.push(doc.clone());
            }
        }
        let killed_at = cluster.kill9(victim);
        let mut round_recoveries = Vec::new();
        for doc in &victim_docs {
            fleet
                .wait_for_acks(
                    &format!("{doc} writable after the kill of {victim_name}"),
                    RECOVERY_DEADLINE,
                    |acks| first_ack_after(acks, doc, killed_at).is_some(),
                )
                .await;
            let (recovery, ack) =
                first_ack_after(&fleet.acks(), doc, killed_at).expect("waited for it");
            assert_ne!(ack.node, victim_name, "an ack through the killed node");
            round_recoveries.push((doc.clone(), recovery, ack.node.clone()));
            recoveries.push(recovery);
        }
        let new_owner = cluster.wait_owner(&docs[0], Duration::from_secs(5)).await;
        assert_ne!(
            new_owner, victim,
            "{} is still owned by the killed node",
            docs[0]
        );
        // Every client (also those of the killed node, after reconnecting) types again.
        let recovered_at = Instant::now();
        fleet
            .wait_progress_since(Some(recovered_at), 2, PROGRESS_DEADLINE)
            .await;
        let all_typing_after = recovered_at.elapsed();
        let verdict = fleet.settle_and_verify(&cluster, new_owner).await;
        let (slowest, who) = slowest_resume(&verdict.records, &docs, killed_at)
            .expect("every client typed after the kill");
        let shown: Vec<String> = round_recoveries
            .iter()
            .map(|(d, r, n)| format!("{d} {} ms (first ack via {n})", r.as_millis()))
            .collect();
        eprintln!(
            "[{tag}] round {round} ({} ms): killed {victim_name}; recovery {shown:?}; every client typing again {} ms after the kill \
             (slowest: {who}), two more acks each {} ms after recovery; {}",
            round_started.elapsed().as_millis(),
            slowest.as_millis(),
            all_typing_after.as_millis(),
            verdict.summary()
        );
        assert!(
            slowest < CLIENT_RESUME_BOUND,
            "round {round}: {who} typed again only {slowest:?} after the kill"
        );
        slowest_resumes.push(slowest);
        cluster.restart(victim).await;
    }
    let (min, median, max) = distribution_ms(&recoveries);
    let mut all: Vec<u128> = recoveries.iter().map(Duration::as_millis).collect();
    all.sort_unstable();
    eprintln!(
        "[{tag}] RECOVERY after kill -9 of the owner over {} documents in {rounds} rounds: min {min} ms, median {median} ms, max {max} ms (target ≤ {} ms); all: {all:?}",
        recoveries.len(),
        RECOVERY_TARGET.as_millis()
    );
    let (min, median, max) = distribution_ms(&slowest_resumes);
    eprintln!("[{tag}] EVERY CLIENT typing again after the kill (slowest client per round): min {min} ms, median {median} ms, max {max} ms");
    recoveries
}

/// Short form of the kill -9 scenario (5 rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_owner_under_load() {
    let _serial = SERIAL.lock().await;
    let recoveries = kill_owner_rounds("kill", 5).await;
    let (_, median, _) = distribution_ms(&recoveries);
    assert!(
        median <= RECOVERY_TARGET.as_millis(),
        "median recovery {median} ms over the {RECOVERY_TARGET:?} target"
    );
}

/// Long form: 20 rounds, for the distribution in the issue's closing note (about a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long form (20 kill rounds, about a minute): run with --ignored --nocapture for the distribution"]
async fn kill9_owner_under_load_long() {
    let _serial = SERIAL.lock().await;
    let recoveries = kill_owner_rounds("killlong", 20).await;
    let (_, median, _) = distribution_ms(&recoveries);
    assert!(
        median <= RECOVERY_TARGET.as_millis(),
        "median recovery {median} ms over the {RECOVERY_TARGET:?} target"
    );
}

/// A node killed and restarted at once (same name, same ports) removes its previous
/// incarnation at boot, so its documents move without waiting for the old lease (10 s here),
/// and it takes new documents again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_rejoins_and_takes_documents() {
    const LEASE: Duration = Duration::from_secs(10);
    let _serial = SERIAL.lock().await;
    let seed = seed("rejoin");
    let mut cluster = Cluster::start("rejoin", 3, &["--lease-ms", "10000"]).await;
    let docs = docs(&["rejoin/a.rs", "rejoin/b.rs"]);
    let fleet = Fleet::spawn(&cluster, "j", 2, &docs, EDIT_EVERY, seed);
    fleet.wait_progress(3, WARM_UP_DEADLINE).await;
    let victim = cluster.wait_owner(&docs[0], Duration::from_secs(5)).await;
    let victim_name = cluster.name(victim).to_owned();
    let old: Vec<String> = cluster
        .members()
        .await
        .into_iter()
        .filter(|m| m.node == victim_name)
        .map(|m| m.incarnation)
        .collect();
    assert_eq!(
        old.len(),
        1,
        "one incarnation of {victim_name} before the kill"
    );

    let killed_at = cluster.kill9(victim);
    assert!(
        cluster.liveness_exists(&old[0]).await,
        "the killed incarnation's lease outlives the process"
    );
    cluster.restart(victim).await;
    let ready_after = killed_at.elapsed();
    assert!(
        ready_after < LEASE / 2,
        "the restart took {ready_after:?}: too slow to tell boot removal from lease expiry"
    );
    let members: Vec<_> = cluster
        .members()
        .await
        .into_iter()
        .filter(|m| m.node == victim_name)
        .collect();
    assert_eq!(
        members.len(),
        1,
        "only the new incarnation of {victim_name} is listed: {members:?}"
    );
    assert_ne!(members[0].incarnation, old[0], "a new incarnation");
    assert!(
        !cluster.liveness_exists(&old[0]).await,
        "the previous incarnation's liveness key was removed at boot"
    );

    fleet
        .wait_for_acks(
            &format!("{} writable after the restart", docs[0]),
            RECOVERY_DEADLINE,
            |acks| first_ack_after(acks, &docs[0], killed_at).is_some(),
        )
        .await;
    let (recovery, _) = first_ack_after(&fleet.acks(), &docs[0], killed_at).expect("waited for it");
    assert!(
        recovery < LEASE / 2,
        "{} writable only {recovery:?} after the kill: it waited for the old lease",
        docs[0]
    );

    // Open new documents until the rendezvous placement gives one to the restarted node.
    let reader = (victim + 1) % 3;
    let mut taken = None;
    for k in 0..60 {
        let doc = format!("rejoin/new-{k}.rs");
        snapshot(&cluster.url(reader), &doc, Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if cluster.owner_of(&doc).await.as_deref() == Some(victim_name.as_str()) {
            taken = Some((k, doc));
            break;
        }
    }
    let (tries, new_doc) = taken
        .unwrap_or_else(|| panic!("none of 60 new documents went to the restarted {victim_name}"));
    let second = Fleet::spawn(
        &cluster,
        "jn",
        1,
        std::slice::from_ref(&new_doc),
        EDIT_EVERY,
        seed ^ 0x5eed,
    );
    second.wait_progress(5, WARM_UP_DEADLINE).await;
    assert_eq!(
        cluster.owner_of(&new_doc).await.as_deref(),
        Some(victim_name.as_str()),
        "{new_doc} stays on {victim_name}"
    );
    let verdict_new = second.settle_and_verify(&cluster, reader).await;
    let verdict = fleet.settle_and_verify(&cluster, reader).await;
    eprintln!(
        "[rejoin] {victim_name} killed and restarted (ready {} ms after the kill); its document writable again after {} ms; \
         new document #{tries} ({new_doc}) owned by it; {}; {}",
        ready_after.as_millis(),
        recovery.as_millis(),
        verdict.summary(),
        verdict_new.summary()
    );
}

/// The owner paused with SIGSTOP for twice its lease: another node takes the document over;
/// after SIGCONT the paused node acknowledges nothing it lost and exits with code 75.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_owner_is_fenced() {
    const PAUSE: Duration = Duration::from_secs(3);
    let _serial = SERIAL.lock().await;
    let seed = seed("fence");
    let mut cluster = Cluster::start("fence", 3, &[]).await;
    let docs = docs(&["fence/a.rs", "fence/b.rs"]);
    let fleet = Fleet::spawn(&cluster, "f", 2, &docs, EDIT_EVERY, seed);
    fleet.wait_progress(3, WARM_UP_DEADLINE).await;
    let victim = cluster.wait_owner(&docs[0], Duration::from_secs(5)).await;
    let victim_name = cluster.name(victim).to_owned();
    let incarnation = cluster
        .members()
        .await
        .into_iter()
        .find(|m| m.node == victim_name)
        .expect("a member")
        .incarnation;

    let stopped_at = cluster.signal(victim, libc::SIGSTOP);
    fleet
        .wait_for_acks(
            &format!(
                "{} writable elsewhere while {victim_name} is paused",
                docs[0]
            ),
            RECOVERY_DEADLINE,
            |acks| first_ack_after(acks, &docs[0], stopped_at).is_some(),
        )
        .await;
    let (takeover, ack) =
        first_ack_after(&fleet.acks(), &docs[0], stopped_at).expect("waited for it");
    assert_ne!(ack.node, victim_name);
    let new_owner = cluster.owner_of(&docs[0]).await.expect("an owner");
    assert_ne!(
        new_owner, victim_name,
        "another node owns {} while {victim_name} is paused",
        docs[0]
    );
    // Stay paused well past the lease, then wake it up.
    tokio::time::sleep_until((stopped_at + PAUSE).into()).await;
    assert!(
        !cluster.liveness_exists(&incarnation).await,
        "the paused node's lease lapsed"
    );
    // (Acks already in the sockets when the signal came may arrive just after it.)
    let in_pause = fleet
        .acks()
        .iter()
        .filter(|a| a.node == victim_name && a.acked_at > stopped_at + IN_FLIGHT_GRACE)
        .count();
    assert_eq!(in_pause, 0, "a paused process acknowledged something");
    let continued_at = cluster.signal(victim, libc::SIGCONT);
    let status = cluster.wait_exit(victim, Duration::from_secs(15)).await;
    let exited_after = continued_at.elapsed();
    assert_eq!(
        status.code(),
        Some(FENCED_EXIT_CODE),
        "the fenced node exits with 75: {status}"
    );
    let from_victim: Vec<_> = fleet
        .acks()
        .into_iter()
        .filter(|a| a.node == victim_name && a.acked_at >= continued_at)
        .collect();
    // Whatever it still delivered was made durable before the pause: below every revision the
    // new owner gave (fresh, in-order acks only: a duplicate's ack carries an old revision).
    let takeover_rev = fleet
        .acks()
        .iter()
        .filter(|a| {
            a.doc == docs[0]
                && a.node != victim_name
                && a.acked_at > stopped_at
                && a.kind == AckKind::Ack
        })
        .map(|a| a.rev)
        .min()
        .expect("fresh acks from the new owner");
    for a in from_victim
        .iter()
        .filter(|a| a.doc == docs[0] && a.kind == AckKind::Ack)
    {
        assert!(
            a.rev < takeover_rev,
            "{victim_name} acknowledged {} at rev {} after losing {} (the new owner's revisions start at {takeover_rev})",
            a.token,
            a.rev,
            docs[0]
        );
    }

    fleet
        .wait_progress_since(Some(Instant::now()), 2, PROGRESS_DEADLINE)
        .await;
    let reader = cluster.index_of(&new_owner);
    // The final check includes every ack the paused node's clients got: each token must be in
    // the final text exactly once.
    let verdict = fleet.settle_and_verify(&cluster, reader).await;
    eprintln!(
        "[fence] {victim_name} paused: {} taken over by {new_owner} after {} ms; after SIGCONT it exited with 75 within {} ms, \
         delivering {} acks to its clients after SIGCONT (all present in the final text); {}",
        docs[0],
        takeover.as_millis(),
        exited_after.as_millis(),
        from_victim.len(),
        verdict.summary()
    );
}

/// SIGTERM, wait for the exit, restart, next node — under load: nothing lost or duplicated,
/// and each document pauses only briefly while its owner drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load() {
    let _serial = SERIAL.lock().await;
    let seed = seed("roll");
    let mut cluster = Cluster::start("roll", 3, &[]).await;
    let docs = docs(&["roll/a.rs", "roll/b.rs", "roll/c.rs"]);
    let fleet = Fleet::spawn(&cluster, "r", 2, &docs, EDIT_EVERY, seed);
    fleet.wait_progress(3, WARM_UP_DEADLINE).await;
    let mut pauses = Vec::new();
    let mut lines = Vec::new();
    for i in 0..3 {
        let mut owned = Vec::new();
        for doc in &docs {
            if cluster.owner_of(doc).await.as_deref() == Some(cluster.name(i)) {
                owned.push(doc.clone());
            }
        }
        let term_at = cluster.signal(i, libc::SIGTERM);
        let status = cluster.wait_exit(i, DRAIN_EXIT_DEADLINE).await;
        let exit_at = Instant::now();
        assert!(
            status.success(),
            "{} exits cleanly after a drain: {status}",
            cluster.name(i)
        );
        let name = cluster.name(i).to_owned();
        cluster.restart(i).await;
        fleet
            .wait_progress_since(Some(Instant::now()), 1, PROGRESS_DEADLINE)
            .await;
        let records: Vec<_> = fleet.clients.iter().map(|c| c.record()).collect();
        let (slowest, who) =
            slowest_resume(&records, &docs, term_at).expect("every client typed after the drain");
        assert!(
            slowest < CLIENT_RESUME_BOUND,
            "{who} typed again only {slowest:?} after the SIGTERM of {name}"
        );
        let acks = fleet.acks();
        let mut per_doc = Vec::new();
        for doc in &docs {
            let gap = longest_ack_gap(&acks, doc, term_at, exit_at).unwrap_or_default();
            if owned.contains(doc) {
                pauses.push(gap);
            }
            per_doc.push(format!(
                "{doc}{} {} ms",
                if owned.contains(doc) { " (owned)" } else { "" },
                gap.as_millis()
            ));
        }
        lines.push(format!(
            "{name}: drained and exited in {} ms; longest ack gap per document during the drain: {}; every client typing again {} ms after the SIGTERM (slowest: {who})",
            (exit_at - term_at).as_millis(),
            per_doc.join(", "),
            slowest.as_millis()
        ));
    }
    let verdict = fleet.settle_and_verify(&cluster, 0).await;
    for line in &lines {
        eprintln!("[roll] {line}");
    }
    let (min, median, max) = distribution_ms(&pauses);
    eprintln!(
        "[roll] DRAIN PAUSE of documents owned by the drained node: min {min} ms, median {median} ms, max {max} ms over {} hand-overs (target < {} ms); {}",
        pauses.len(),
        DRAIN_PAUSE_TARGET.as_millis(),
        verdict.summary()
    );
    assert!(
        max < DRAIN_PAUSE_BOUND.as_millis(),
        "a document paused {max} ms during a drain"
    );
}

/// An `open` immediately followed by `close` of a document owned by another node is still
/// answered with `opened` (regression: the origin router forgot the connection's queue on the
/// close while the owner's `opened` was still on its way, and the answer was dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_then_close_through_another_node_is_answered() {
    const DOCUMENTS: usize = 600;
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start("openclose", 3, &[]).await;
    let docs: Vec<String> = (0..DOCUMENTS)
        .map(|i| format!("openclose/doc-{i}.rs"))
        .collect();
    // One at a time, so that the connection has no other document open when it closes one.
    for i in 0..3 {
        let chunk: Vec<String> = docs.iter().skip(i).step_by(3).cloned().collect();
        open_and_close(&cluster.url(i), &chunk, 1, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("through {}: {e}", cluster.name(i)));
    }
}

/// 1 000 new documents opened through all three nodes spread over the three owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_spreads_documents() {
    const DOCUMENTS: usize = 1000;
    const CONNECTIONS: usize = 6;
    let _serial = SERIAL.lock().await;
    // Documents stay owned (and their owner visible in Redis) while they are counted.
    let cluster = Cluster::start("place", 3, &["--idle-timeout-ms", "600000"]).await;
    let docs: Vec<String> = (0..DOCUMENTS)
        .map(|i| format!("place/doc-{i}.rs"))
        .collect();
    let started = Instant::now();
    let chunks: Vec<Vec<String>> = (0..CONNECTIONS)
        .map(|c| docs.iter().skip(c).step_by(CONNECTIONS).cloned().collect())
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(c, chunk)| {
            let url = cluster.url(c % 3);
            tokio::spawn(
                async move { open_and_close(&url, &chunk, 16, Duration::from_secs(20)).await },
            )
        })
        .collect();
    for t in tasks {
        t.await
            .expect("an opener task")
            .unwrap_or_else(|e| panic!("opening documents: {e}"));
    }
    let opened_in = started.elapsed();
    let owners = cluster.owners_of(&docs).await;
    let mut counts: BTreeMap<String, usize> =
        (0..3).map(|i| (cluster.name(i).to_owned(), 0)).collect();
    let mut unowned = Vec::new();
    let mut off_preference = 0;
    for (doc, owner) in docs.iter().zip(&owners) {
        match owner {
            Some(o) => {
                *counts.entry(o.clone()).or_default() += 1;
                off_preference += usize::from(o != cluster.name(cluster.preferred(doc)));
            }
            None => unowned.push(doc.clone()),
        }
    }
    assert!(
        unowned.is_empty(),
        "{} documents without an owner: {:?}",
        unowned.len(),
        &unowned[..unowned.len().min(10)]
    );
    let shown: Vec<String> = counts
        .iter()
        .map(|(n, c)| format!("{n}: {c} ({:.1}%)", *c as f64 * 100.0 / DOCUMENTS as f64))
        .collect();
    eprintln!(
        "[place] PLACEMENT of {DOCUMENTS} documents over 3 nodes (opened in {} ms through all three): {}; {off_preference} not on their rendezvous-preferred node",
        opened_in.as_millis(),
        shown.join(", ")
    );
    assert_eq!(counts.len(), 3, "owners outside the cluster: {counts:?}");
    for (node, count) in &counts {
        let share = *count as f64 / DOCUMENTS as f64;
        assert!(
            (0.20..=0.47).contains(&share),
            "{node} owns {count} of {DOCUMENTS}: {counts:?}"
        );
    }
}
