//! A fleet of typing clients spread over the cluster's nodes, and the checker that ends a
//! scenario: stop typing, let every client settle, compare every client's text with a fresh
//! snapshot, and check the tokens (no acknowledged insert lost, none applied twice, nothing
//! that nobody sent).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::client::{
    snapshot, AckRecord, ClientConfig, ClientHandle, FinalDoc, Record, TOKEN_CLOSE, TOKEN_OPEN,
};
use super::procs::{Cluster, POLL_INTERVAL};

/// How long clients may take to get every op acknowledged once typing stops (covers a failover
/// in progress: lease lapse, claim, resubmission).
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(40);

/// How long a fresh snapshot may take (a document may be moving).
pub const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(20);

/// How long clients may take to reach a snapshot's revision once nobody types.
pub const CATCH_UP_DEADLINE: Duration = Duration::from_secs(10);

/// Clients typing into a set of documents.
pub struct Fleet {
    /// The clients.
    pub clients: Vec<ClientHandle>,
    /// The documents every client edits.
    pub docs: Vec<String>,
}

/// What a finished scenario showed.
pub struct Verdict {
    /// Per document: (revision, tokens in the text, acknowledged tokens).
    pub docs: BTreeMap<String, (u64, usize, usize)>,
    /// Every client's record.
    pub records: Vec<Record>,
}

impl Verdict {
    /// Every acknowledged insert of every client.
    pub fn acks(&self) -> Vec<AckRecord> {
        self.records
            .iter()
            .flat_map(|r| r.acks.iter().cloned())
            .collect()
    }

    /// One line per document for the test output.
    pub fn summary(&self) -> String {
        let resyncs: u32 = self.records.iter().map(|r| r.resyncs).sum();
        let reconnects: usize = self
            .records
            .iter()
            .map(|r| r.connections.len().saturating_sub(1))
            .sum();
        let duplicate_acks: u32 = self.records.iter().map(|r| r.duplicate_acks).sum();
        let mut errors: BTreeMap<String, u32> = BTreeMap::new();
        for r in &self.records {
            for (code, n) in &r.errors {
                *errors.entry(code.clone()).or_default() += n;
            }
        }
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for a in self.records.iter().flat_map(|r| r.acks.iter()) {
            *kinds.entry(format!("{:?}", a.kind)).or_default() += 1;
        }
        let docs: Vec<String> = self
            .docs
            .iter()
            .map(|(d, (rev, tokens, acked))| {
                format!("{d}: rev {rev}, {tokens} tokens, {acked} acked")
            })
            .collect();
        format!(
            "{}; reconnects {reconnects}, server resyncs {resyncs}, acks by kind {kinds:?}, duplicate acks {duplicate_acks}, errors {errors:?}",
            docs.join("; ")
        )
    }
}

impl Fleet {
    /// `per_node` clients on each node (client k starts on node k mod n and fails over to the
    /// next ones), all editing all of `docs`.
    pub fn spawn(
        cluster: &Cluster,
        tag: &str,
        per_node: usize,
        docs: &[String],
        edit_every: Duration,
        seed: u64,
    ) -> Fleet {
        let n = cluster.nodes.len();
        let clients = (0..per_node * n)
            .map(|k| {
                ClientHandle::spawn(ClientConfig {
                    label: format!("{tag}{k}"),
                    urls: cluster.urls_from(k % n),
                    docs: docs.to_vec(),
                    edit_every,
                    seed: seed.wrapping_add(k as u64),
                })
            })
            .collect();
        Fleet {
            clients,
            docs: docs.to_vec(),
        }
    }

    /// Starts or stops typing everywhere.
    pub fn set_typing(&self, on: bool) {
        for c in &self.clients {
            c.set_typing(on);
        }
    }

    /// Every acknowledged insert so far.
    pub fn acks(&self) -> Vec<AckRecord> {
        self.clients
            .iter()
            .flat_map(|c| c.with_record(|r| r.acks.clone()))
            .collect()
    }

    /// Polls until `condition` holds over all acks so far; panics after `within`.
    pub async fn wait_for_acks(
        &self,
        what: &str,
        within: Duration,
        condition: impl Fn(&[AckRecord]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            if condition(&self.acks()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; {}",
                self.status()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until every client has at least `n` acks on every document.
    pub async fn wait_progress(&self, n: usize, within: Duration) {
        self.wait_progress_since(None, n, within).await;
    }

    /// Waits until every client has at least `n` acks on every document, counting only acks
    /// learnt at or after `since` (when given).
    pub async fn wait_progress_since(&self, since: Option<Instant>, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let behind: Vec<String> = self
                .clients
                .iter()
                .flat_map(|c| {
                    let counts = c.with_record(|r| {
                        let mut counts: HashMap<String, usize> = HashMap::new();
                        for a in r
                            .acks
                            .iter()
                            .filter(|a| since.is_none_or(|s| a.acked_at >= s))
                        {
                            *counts.entry(a.doc.clone()).or_default() += 1;
                        }
                        counts
                    });
                    self.docs
                        .iter()
                        .filter(|d| counts.get(*d).copied().unwrap_or(0) < n)
                        .map(|d| format!("{}/{d}", c.label))
                        .collect::<Vec<_>>()
                })
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} acks after {within:?} for {behind:?}; {}",
                self.status()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// One line per client: connections, document views, errors, violations.
    pub fn status(&self) -> String {
        let lines: Vec<String> = self
            .clients
            .iter()
            .map(|c| {
                c.with_record(|r| {
                    let nodes: Vec<&str> = r.connections.iter().map(|c| c.node.as_str()).collect();
                    format!(
                        "{}: nodes {nodes:?}, docs {:?}, acks {}, errors {:?}, violations {:?}, stalls {:?}, fatal {:?}",
                        c.label,
                        r.docs,
                        r.acks.len(),
                        r.errors,
                        r.violations,
                        r.stalls,
                        r.fatal
                    )
                })
            })
            .collect();
        format!("clients:\n  {}", lines.join("\n  "))
    }

    /// Stops typing, lets everything settle, and checks convergence and tokens against a fresh
    /// snapshot read from node `reader` (a live node). Panics with every problem found.
    pub async fn settle_and_verify(self, cluster: &Cluster, reader: usize) -> Verdict {
        self.set_typing(false);
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let unsettled: Vec<String> = self
                .clients
                .iter()
                .flat_map(|c| {
                    c.with_record(|r| {
                        self.docs
                            .iter()
                            .filter(|d| !r.docs.get(*d).is_some_and(|v| v.settled))
                            .map(|d| format!("{}/{d}", c.label))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            if unsettled.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not settled after {SETTLE_DEADLINE:?}: {unsettled:?}; {}",
                self.status()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let mut snapshots = BTreeMap::new();
        for doc in &self.docs {
            let (rev, text, _) = snapshot(&cluster.url(reader), doc, SNAPSHOT_DEADLINE)
                .await
                .unwrap_or_else(|e| panic!("a fresh snapshot: {e}"));
            snapshots.insert(doc.clone(), (rev, text));
        }
        let deadline = Instant::now() + CATCH_UP_DEADLINE;
        loop {
            let behind: Vec<String> = self
                .clients
                .iter()
                .flat_map(|c| {
                    c.with_record(|r| {
                        snapshots
                            .iter()
                            .filter(|(d, (rev, _))| r.docs.get(*d).map(|v| v.rev) != Some(*rev))
                            .map(|(d, (rev, _))| {
                                format!(
                                    "{}/{d}: {:?} vs snapshot {rev}",
                                    c.label,
                                    r.docs.get(d).map(|v| v.rev)
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            if behind.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "clients not at the snapshot's revision: {behind:?}; {}",
                self.status()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let mut records = Vec::new();
        let mut finals: Vec<(String, BTreeMap<String, FinalDoc>)> = Vec::new();
        for c in self.clients {
            let label = c.label.clone();
            let (record, docs) = c.stop().await;
            records.push(record);
            finals.push((label, docs));
        }
        let mut problems = Vec::new();
        let mut verdict_docs = BTreeMap::new();
        for (doc, (rev, text)) in &snapshots {
            for (label, docs) in &finals {
                let Some(f) = docs.get(doc) else { continue };
                if f.text != *text || f.rev != *rev {
                    problems.push(format!(
                        "{label}/{doc}: diverged: client rev {} ({} chars) vs snapshot rev {rev} ({} chars), first difference at char {}",
                        f.rev,
                        f.text.chars().count(),
                        text.chars().count(),
                        f.text.chars().zip(text.chars()).take_while(|(a, b)| a == b).count()
                    ));
                }
            }
            let acked: Vec<&AckRecord> = records
                .iter()
                .flat_map(|r| r.acks.iter())
                .filter(|a| a.doc == *doc)
                .collect();
            let sent: HashMap<&str, &str> = records
                .iter()
                .flat_map(|r| r.sent.iter())
                .map(|(t, d)| (t.as_str(), d.as_str()))
                .collect();
            let tokens = match parse_tokens(text) {
                Ok(tokens) => tokens,
                Err(e) => {
                    problems.push(format!("{doc}: {e}"));
                    continue;
                }
            };
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for t in &tokens {
                *counts.entry(t).or_default() += 1;
            }
            let mut lost = Vec::new();
            for a in &acked {
                if !counts.contains_key(a.token.as_str()) {
                    lost.push(format!(
                        "{} (seq {}, acked rev {} via {} as {:?})",
                        a.token, a.seq, a.rev, a.node, a.kind
                    ));
                }
            }
            let duplicated: Vec<String> = counts
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(t, n)| format!("{t} ×{n}"))
                .collect();
            let unknown: Vec<&str> = counts
                .keys()
                .filter(|t| sent.get(**t) != Some(&doc.as_str()))
                .copied()
                .collect();
            if !lost.is_empty() {
                problems.push(format!(
                    "{doc}: {} acknowledged inserts LOST: {lost:?}",
                    lost.len()
                ));
            }
            if !duplicated.is_empty() {
                problems.push(format!(
                    "{doc}: {} inserts DUPLICATED: {duplicated:?}",
                    duplicated.len()
                ));
            }
            if !unknown.is_empty() {
                problems.push(format!("{doc}: tokens nobody sent to it: {unknown:?}"));
            }
            let distinct_acked: std::collections::HashSet<&str> =
                acked.iter().map(|a| a.token.as_str()).collect();
            verdict_docs.insert(doc.clone(), (*rev, tokens.len(), distinct_acked.len()));
        }
        for r in &records {
            let who = r.client_id.clone().unwrap_or_default();
            for v in &r.violations {
                problems.push(format!("client {who}: protocol violation: {v}"));
            }
            for s in &r.stalls {
                problems.push(format!("client {who}: stall: {s}"));
            }
            if let Some(f) = &r.fatal {
                problems.push(format!("client {who}: gave up: {f}"));
            }
        }
        let verdict = Verdict {
            docs: verdict_docs,
            records,
        };
        assert!(
            problems.is_empty(),
            "{} problems:\n  {}\n({})",
            problems.len(),
            problems.join("\n  "),
            verdict.summary()
        );
        verdict
    }
}

/// Splits a text made only of tokens `⟨…⟩` into them; anything else is an error.
pub fn parse_tokens(text: &str) -> Result<Vec<&str>, String> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if !rest.starts_with(TOKEN_OPEN) {
            return Err(format!(
                "text outside tokens at byte {}: {:?}",
                text.len() - rest.len(),
                rest.chars().take(20).collect::<String>()
            ));
        }
        let Some(end) = rest.find(TOKEN_CLOSE) else {
            return Err(format!(
                "an unterminated token: {:?}",
                rest.chars().take(20).collect::<String>()
            ));
        };
        let token = &rest[..end + TOKEN_CLOSE.len_utf8()];
        if token[TOKEN_OPEN.len_utf8()..].contains(TOKEN_OPEN) {
            return Err(format!("a token inside a token: {token:?}"));
        }
        tokens.push(token);
        rest = &rest[end + TOKEN_CLOSE.len_utf8()..];
    }
    Ok(tokens)
}

/// (min, median, max) of durations, as milliseconds.
pub fn distribution_ms(values: &[Duration]) -> (u128, u128, u128) {
    let mut ms: Vec<u128> = values.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    if ms.is_empty() {
        return (0, 0, 0);
    }
    (ms[0], ms[ms.len() / 2], ms[ms.len() - 1])
}

/// Time from `since` to the first ack of an op on `doc` (re)sent at or after `since`.
pub fn first_ack_after(
    acks: &[AckRecord],
    doc: &str,
    since: Instant,
) -> Option<(Duration, AckRecord)> {
    acks.iter()
        .filter(|a| a.doc == doc && a.last_sent >= since && a.acked_at >= since)
        .min_by_key(|a| a.acked_at)
        .map(|a| (a.acked_at - since, a.clone()))
}

/// For each client label and document: time from `since` to its first ack of an op (re)sent
/// at or after `since`; the largest such time (how long until every client typed again).
pub fn slowest_resume(
    records: &[Record],
    docs: &[String],
    since: Instant,
) -> Option<(Duration, String)> {
    let mut slowest: Option<(Duration, String)> = None;
    for r in records {
        for doc in docs {
            let who = format!(
                "{}/{doc}",
                r.connections.last().map(|c| c.node.as_str()).unwrap_or("?")
            );
            let resumed = first_ack_after(&r.acks, doc, since).map(|(d, _)| d);
            let Some(resumed) = resumed else { continue };
            if slowest.as_ref().is_none_or(|(d, _)| resumed > *d) {
                slowest = Some((
                    resumed,
                    format!("client {} on {who}", r.client_id.as_deref().unwrap_or("?")),
                ));
            }
        }
    }
    slowest
}

/// The longest gap between consecutive acks on `doc` (any client) that overlaps [from, to].
pub fn longest_ack_gap(
    acks: &[AckRecord],
    doc: &str,
    from: Instant,
    to: Instant,
) -> Option<Duration> {
    let mut times: Vec<Instant> = acks
        .iter()
        .filter(|a| a.doc == doc)
        .map(|a| a.acked_at)
        .collect();
    times.sort_unstable();
    times
        .windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| w[1] - w[0])
        .max()
}
