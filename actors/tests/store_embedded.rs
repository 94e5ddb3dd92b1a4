//! The embedded store against real files: round trips, compaction, crash recovery and corruption.

use std::path::{Path, PathBuf};
use std::task::Poll;
use std::time::Duration;

use chorus_actors::ids::{ClientId, DocId};
use chorus_actors::ot::Op;
use chorus_actors::store::embedded::{EmbeddedStore, FsyncPolicy};
use chorus_actors::store::{DocumentStore, LogRecord, Snapshot, Store, StoreError, StoredDocument};
use proptest::prelude::*;

mod store_support;
use store_support::{batch, doc, record, records, snapshot};

fn store(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open_dir(dir, FsyncPolicy::Always).expect("open store")
}

async fn open(store: &EmbeddedStore, id: &DocId) -> (Box<dyn DocumentStore>, StoredDocument) {
    store.open(id).await.expect("open document")
}

/// Opens in a fresh store instance (as after a restart) and returns what was loaded.
async fn reload(dir: &Path, id: &DocId) -> Result<StoredDocument, StoreError> {
    store(dir).open(id).await.map(|(_, stored)| stored)
}

/// Writes revisions 1..=n, one append each.
async fn write_separately(dir: &Path, id: &DocId, n: u64) {
    let store = store(dir);
    let (mut handle, _) = open(&store, id).await;
    for rev in 1..=n {
        handle
            .append(batch(vec![record(rev)]))
            .await
            .expect("append");
    }
}

fn log_path(dir: &Path, id: &DocId) -> PathBuf {
    store(dir).doc_dir(id).join("log")
}

/// Byte offsets of the record frames in a log file, parsed independently of the store.
fn frame_offsets(log: &[u8]) -> Vec<usize> {
    let id_len = u32::from_le_bytes(log[12..16].try_into().expect("4 bytes")) as usize;
    let mut at = 16 + id_len + 4;
    let mut offsets = Vec::new();
    while at < log.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(log[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 8 + len;
    }
    assert_eq!(at, log.len(), "frames fill the log exactly");
    offsets
}

fn corrupt_detail(result: Result<StoredDocument, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt { detail, .. }) => detail,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// The tests, in a module so that `cargo test store` selects them.
mod store_embedded {
    use super::*;

    #[tokio::test]
    async fn appends_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("src/main.rs");
        {
            let store = store(dir.path());
            let (mut handle, stored) = open(&store, &id).await;
            assert_eq!(stored, StoredDocument::default());
            handle.append(batch(records(1..=1))).await.expect("append");
            handle.append(batch(records(2..=4))).await.expect("append");
            handle.append(batch(records(5..=5))).await.expect("append");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(
            stored,
            StoredDocument {
                snapshot: None,
                log: records(1..=5)
            }
        );
        // And appending goes on where it stopped.
        let store = store(dir.path());
        let (mut handle, _) = open(&store, &id).await;
        handle.append(batch(records(6..=6))).await.expect("append");
        drop(handle);
        assert_eq!(
            reload(dir.path(), &id).await.expect("load").log,
            records(1..=6)
        );
    }

    #[tokio::test]
    async fn opening_a_new_document_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let id = doc("never/written.txt");
        let (handle, stored) = open(&store, &id).await;
        assert_eq!(stored, StoredDocument::default());
        drop(handle);
        assert!(!store.doc_dir(&id).exists());
        let docs = std::fs::read_dir(dir.path().join("docs"))
            .expect("docs dir")
            .count();
        assert_eq!(docs, 0);
    }

    #[tokio::test]
    async fn the_empty_noop_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("empty");
        let noop = LogRecord {
            rev: 1,
            client: ClientId::from_stored("c"),
            seq: 1,
            op: Op::identity(0),
        };
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle
                .append(batch(vec![noop.clone()]))
                .await
                .expect("append");
        }
        assert_eq!(reload(dir.path(), &id).await.expect("load").log, vec![noop]);
    }

    #[tokio::test]
    async fn compaction_keeps_later_records_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("a/compacted.rs");
        let log = log_path(dir.path(), &id);
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            for rev in 1..=50 {
                handle
                    .append(batch(vec![record(rev)]))
                    .await
                    .expect("append");
            }
            let before = std::fs::metadata(&log).expect("log").len();
            handle.compact(&snapshot(30)).await.expect("compact");
            assert!(std::fs::metadata(&log).expect("log").len() < before / 2);
            handle
                .append(batch(records(51..=55)))
                .await
                .expect("append after compaction");
            handle
                .append(batch(records(56..=60)))
                .await
                .expect("append after compaction");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(stored.snapshot, Some(snapshot(30)));
        assert_eq!(stored.log, records(31..=60));

        // Compact twice with one handle, records kept in between each time.
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.compact(&snapshot(35)).await.expect("compact");
            handle
                .append(batch(records(61..=61)))
                .await
                .expect("append");
            handle.compact(&snapshot(40)).await.expect("compact again");
            handle.compact(&snapshot(41)).await.expect("and again");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(stored.snapshot, Some(snapshot(41)));
        assert_eq!(stored.log, records(42..=61));

        // Compact again from a reopened handle, up to the last revision, then keep going.
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.compact(&snapshot(45)).await.expect("compact");
            handle.compact(&snapshot(61)).await.expect("compact");
            assert_eq!(frame_offsets(&std::fs::read(&log).expect("log")).len(), 0);
            handle
                .append(batch(records(62..=63)))
                .await
                .expect("append");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(stored.snapshot, Some(snapshot(61)));
        assert_eq!(stored.log, records(62..=63));
    }

    #[tokio::test]
    async fn a_new_document_can_be_compacted_before_its_first_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("seeded");
        let seed = Snapshot {
            rev: 0,
            text: String::new(),
            clients: Vec::new(),
        };
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.compact(&seed).await.expect("compact");
            handle.append(batch(records(1..=2))).await.expect("append");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(
            stored,
            StoredDocument {
                snapshot: Some(seed),
                log: records(1..=2)
            }
        );
    }

    #[tokio::test]
    async fn contract_violations_are_refused_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("strict");
        let store = store(dir.path());
        let (mut handle, _) = open(&store, &id).await;
        handle.append(batch(records(1..=3))).await.expect("append");
        let log = log_path(dir.path(), &id);
        let len = std::fs::metadata(&log).expect("log").len();
        // A batch with a gap is refused when it is encoded (AppendBatch's own tests); one that
        // does not follow what is stored, by the store.
        for bad in [records(3..=3), records(5..=5), records(5..=6)] {
            let error = handle
                .append(batch(bad.clone()))
                .await
                .expect_err("out of order");
            assert!(
                matches!(&error, StoreError::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput),
                "{error}"
            );
        }
        assert!(
            handle.compact(&snapshot(4)).await.is_err(),
            "snapshot past the log"
        );
        handle.compact(&snapshot(2)).await.expect("compact");
        assert!(
            handle.compact(&snapshot(1)).await.is_err(),
            "snapshot going back"
        );
        assert!(std::fs::metadata(&log).expect("log").len() < len);
        handle
            .append(batch(records(4..=4)))
            .await
            .expect("the handle still works");
        drop(handle);
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(stored.log, records(3..=4));
    }

    #[tokio::test]
    async fn every_torn_tail_is_truncated_and_appending_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("torn");
        write_separately(dir.path(), &id, 5).await;
        let log = log_path(dir.path(), &id);
        let full = std::fs::read(&log).expect("log");
        let last = *frame_offsets(&full).last().expect("records");
        for cut in last + 1..full.len() {
            std::fs::write(&log, &full[..cut]).expect("write torn log");
            let store = store(dir.path());
            let (mut handle, stored) = open(&store, &id).await;
            assert_eq!(stored.log, records(1..=4), "cut at {cut}");
            assert_eq!(
                std::fs::metadata(&log).expect("log").len(),
                last as u64,
                "cut at {cut}"
            );
            handle
                .append(batch(records(5..=6)))
                .await
                .expect("append after recovery");
            drop(handle);
            assert_eq!(
                reload(dir.path(), &id).await.expect("load").log,
                records(1..=6),
                "cut at {cut}"
            );
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("flip/last");
        write_separately(dir.path(), &id, 5).await;
        let log = log_path(dir.path(), &id);
        let full = std::fs::read(&log).expect("log");
        let last = *frame_offsets(&full).last().expect("records");
        for at in last..full.len() {
            let mut damaged = full.clone();
            damaged[at] ^= 0x20;
            std::fs::write(&log, &damaged).expect("write damaged log");
            let stored = reload(dir.path(), &id).await.expect("torn tail loads");
            assert_eq!(stored.log, records(1..=4), "flip at {at}");
            assert_eq!(std::fs::metadata(&log).expect("log").len(), last as u64);
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_in_an_earlier_record_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("flip/middle");
        write_separately(dir.path(), &id, 5).await;
        let log = log_path(dir.path(), &id);
        let full = std::fs::read(&log).expect("log");
        let offsets = frame_offsets(&full);
        for (index, &start) in offsets.iter().enumerate().take(4) {
            for at in [start, start + 5, start + 8, offsets[index + 1] - 1] {
                let mut damaged = full.clone();
                damaged[at] ^= 0x01;
                std::fs::write(&log, &damaged).expect("write damaged log");
                let detail = corrupt_detail(reload(dir.path(), &id).await);
                assert!(
                    detail.contains(&format!("byte offset {start}:")),
                    "flip at {at}: {detail}"
                );
                assert_eq!(
                    std::fs::read(&log).expect("log"),
                    damaged,
                    "a refused log is left alone"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_damaged_log_header_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("header");
        write_separately(dir.path(), &id, 2).await;
        let log = log_path(dir.path(), &id);
        let full = std::fs::read(&log).expect("log");
        let first = frame_offsets(&full)[0];
        for at in 0..first {
            let mut damaged = full.clone();
            damaged[at] ^= 0x04;
            std::fs::write(&log, &damaged).expect("write damaged log");
            corrupt_detail(reload(dir.path(), &id).await);
        }
    }

    #[tokio::test]
    async fn a_hole_in_the_final_multi_record_write_is_a_torn_tail() {
        // Power loss may persist any subset of the pages of an unsynced write.
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("hole");
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.append(batch(records(1..=3))).await.expect("append");
            handle.append(batch(records(4..=7))).await.expect("append");
        }
        let log = log_path(dir.path(), &id);
        let full = std::fs::read(&log).expect("log");
        let offsets = frame_offsets(&full);
        let mut damaged = full.clone();
        damaged[offsets[4]..offsets[5]].fill(0);
        std::fs::write(&log, &damaged).expect("write damaged log");
        assert_eq!(
            reload(dir.path(), &id).await.expect("load").log,
            records(1..=4)
        );

        // The same hole in the first write, with the second write after it, is corruption.
        let mut damaged = full.clone();
        damaged[offsets[1]..offsets[2]].fill(0);
        std::fs::write(&log, &damaged).expect("write damaged log");
        let detail = corrupt_detail(reload(dir.path(), &id).await);
        assert!(
            detail.contains(&format!("byte offset {}:", offsets[1])),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn a_revision_gap_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("gap");
        write_separately(dir.path(), &id, 5).await;
        let log = log_path(dir.path(), &id);
        let full = std::fs::read(&log).expect("log");
        let offsets = frame_offsets(&full);
        let mut spliced = full[..offsets[2]].to_vec();
        spliced.extend_from_slice(&full[offsets[3]..]);
        std::fs::write(&log, &spliced).expect("write spliced log");
        let detail = corrupt_detail(reload(dir.path(), &id).await);
        assert!(detail.contains("revision 4, expected 3"), "{detail}");
    }

    #[tokio::test]
    async fn interrupted_compactions_load_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("crash/compaction");
        write_separately(dir.path(), &id, 6).await;
        let doc_dir = store(dir.path()).doc_dir(&id);
        let old_log = std::fs::read(doc_dir.join("log")).expect("log");

        // Crash points 1 and 3: leftover temporary files (partial, garbage) next to intact files.
        std::fs::write(doc_dir.join("snapshot.tmp"), b"CHORUSSN partial").expect("tmp");
        std::fs::write(doc_dir.join("log.tmp"), b"CHORUSLG\x01").expect("tmp");
        assert_eq!(
            reload(dir.path(), &id).await.expect("load").log,
            records(1..=6)
        );
        assert!(!doc_dir.join("snapshot.tmp").exists() && !doc_dir.join("log.tmp").exists());

        // Crash point 2: the new snapshot is in place, the old log (with revisions 1..=6) too.
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.compact(&snapshot(3)).await.expect("compact");
        }
        std::fs::write(doc_dir.join("log"), &old_log).expect("restore old log");
        std::fs::write(doc_dir.join("log.tmp"), &old_log[..old_log.len() / 2]).expect("tmp");
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(stored.snapshot, Some(snapshot(3)));
        assert_eq!(stored.log, records(4..=6));
        // ... and the handle loaded from that state appends and compacts correctly.
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.append(batch(records(7..=8))).await.expect("append");
            handle.compact(&snapshot(5)).await.expect("compact");
            handle.append(batch(records(9..=9))).await.expect("append");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(stored.snapshot, Some(snapshot(5)));
        assert_eq!(stored.log, records(6..=9));

        // A snapshot at the log's last revision with the old log: nothing after it.
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            let before = std::fs::read(doc_dir.join("log")).expect("log");
            handle.compact(&snapshot(9)).await.expect("compact");
            std::fs::write(doc_dir.join("log"), &before).expect("restore old log");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(
            stored,
            StoredDocument {
                snapshot: Some(snapshot(9)),
                log: Vec::new()
            }
        );
    }

    #[tokio::test]
    async fn a_damaged_snapshot_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("snap");
        {
            let store = store(dir.path());
            let (mut handle, _) = open(&store, &id).await;
            handle.append(batch(records(1..=3))).await.expect("append");
            handle.compact(&snapshot(2)).await.expect("compact");
        }
        let path = store(dir.path()).doc_dir(&id).join("snapshot");
        let good = std::fs::read(&path).expect("snapshot");
        for at in [0, 9, 20, good.len() / 2, good.len() - 1] {
            let mut damaged = good.clone();
            damaged[at] ^= 0x08;
            std::fs::write(&path, &damaged).expect("write");
            corrupt_detail(reload(dir.path(), &id).await);
        }
        std::fs::write(&path, &good[..good.len() - 1]).expect("write");
        corrupt_detail(reload(dir.path(), &id).await);
    }

    #[tokio::test]
    async fn files_of_another_document_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (doc("a.rs"), doc("b.rs"));
        write_separately(dir.path(), &a, 2).await;
        let store = store(dir.path());
        std::fs::rename(store.doc_dir(&a), store.doc_dir(&b)).expect("move files");
        let detail = corrupt_detail(reload(dir.path(), &b).await);
        assert!(
            detail.contains("log belongs to document \"a.rs\""),
            "{detail}"
        );

        // The same for a snapshot.
        let (c, d) = (doc("c.rs"), doc("d.rs"));
        write_separately(dir.path(), &c, 2).await;
        write_separately(dir.path(), &d, 2).await;
        {
            let (mut handle, _) = open(&store, &c).await;
            handle.compact(&snapshot(1)).await.expect("compact");
        }
        std::fs::copy(
            store.doc_dir(&c).join("snapshot"),
            store.doc_dir(&d).join("snapshot"),
        )
        .expect("copy snapshot");
        let detail = corrupt_detail(reload(dir.path(), &d).await);
        assert!(
            detail.contains("snapshot belongs to document \"c.rs\""),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn documents_do_not_interfere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let long = "d/".repeat(127) + "xy";
        let ids = [doc("one"), doc("two/nested/path.md"), doc(&long)];
        let mut handles = Vec::new();
        for id in &ids {
            handles.push(open(&store, id).await.0);
        }
        for rev in 1..=6 {
            for (index, handle) in handles.iter_mut().enumerate() {
                if rev as usize <= 4 + index {
                    handle
                        .append(batch(vec![record(rev)]))
                        .await
                        .expect("append");
                }
            }
        }
        handles[1].compact(&snapshot(3)).await.expect("compact");
        drop(handles);
        for (index, id) in ids.iter().enumerate() {
            let stored = reload(dir.path(), id).await.expect("load");
            let last = 4 + index as u64;
            if index == 1 {
                assert_eq!(stored.snapshot, Some(snapshot(3)));
                assert_eq!(stored.log, records(4..=last));
            } else {
                assert_eq!(
                    stored,
                    StoredDocument {
                        snapshot: None,
                        log: records(1..=last)
                    }
                );
            }
        }
    }

    #[tokio::test]
    async fn an_acknowledged_append_is_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("synced");
        let store = store(dir.path());
        let (mut handle, _) = open(&store, &id).await;
        let log = log_path(dir.path(), &id);
        for (n, written) in [records(1..=1), records(2..=5), records(6..=6)]
            .into_iter()
            .enumerate()
        {
            let expected = written.last().expect("records").rev as usize;
            handle.append(batch(written)).await.expect("append");
            // A second, independent handle on the file sees every record, without closing the first.
            let bytes = std::fs::read(&log).expect("log");
            assert_eq!(frame_offsets(&bytes).len(), expected, "after append {n}");
        }
    }

    #[tokio::test]
    async fn a_second_open_waits_for_the_first_handle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(store(dir.path()));
        let id = doc("shared");
        let (mut first, _) = open(&store, &id).await;
        first.append(batch(records(1..=1))).await.expect("append");
        let second = tokio::spawn({
            let store = store.clone();
            let id = id.clone();
            async move { store.open(&id).await.map(|(_, stored)| stored) }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "the second open must wait");
        first.append(batch(records(2..=2))).await.expect("append");
        drop(first);
        let stored = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second open finishes")
            .expect("task")
            .expect("load");
        assert_eq!(stored.log, records(1..=2));
    }

    #[tokio::test]
    async fn an_abandoned_append_breaks_the_handle_and_a_reopen_sees_the_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("abandoned");
        let store = store(dir.path());
        let (mut handle, _) = open(&store, &id).await;
        handle.append(batch(records(1..=1))).await.expect("append");
        // Poll the append once (its write starts on a blocking thread), then drop it.
        let mut append = handle.append(batch(records(2..=2)));
        let first_poll =
            std::future::poll_fn(|context| Poll::Ready(append.as_mut().poll(context))).await;
        drop(append);
        if first_poll.is_pending() {
            let error = handle
                .append(batch(records(2..=2)))
                .await
                .expect_err("broken handle");
            assert!(error.to_string().contains("reopen"), "{error}");
        }
        drop(handle);
        // The reopen waits for the abandoned write, so it sees it whole.
        let (_, stored) = open(&store, &id).await;
        assert_eq!(stored.log, records(1..=2));
    }

    #[tokio::test]
    async fn an_empty_log_file_is_a_new_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("emptied");
        write_separately(dir.path(), &id, 2).await;
        std::fs::write(log_path(dir.path(), &id), b"").expect("empty the log");
        {
            let store = store(dir.path());
            let (mut handle, stored) = open(&store, &id).await;
            assert_eq!(stored, StoredDocument::default());
            handle.append(batch(records(1..=1))).await.expect("append");
        }
        assert_eq!(
            reload(dir.path(), &id).await.expect("load").log,
            records(1..=1)
        );
    }

    #[tokio::test]
    async fn never_policy_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = doc("fast");
        {
            let store = EmbeddedStore::open_dir(dir.path(), FsyncPolicy::Never).expect("store");
            let (mut handle, _) = open(&store, &id).await;
            handle.append(batch(records(1..=3))).await.expect("append");
            handle.compact(&snapshot(2)).await.expect("compact");
        }
        let stored = reload(dir.path(), &id).await.expect("load");
        assert_eq!(
            stored,
            StoredDocument {
                snapshot: Some(snapshot(2)),
                log: records(3..=3)
            }
        );
    }

    #[tokio::test]
    // What the group policy changes is when data reaches the disk; a test cannot pull the power,
    // so this checks that 40 documents appending and compacting at once are all answered, in
    // order, and read back exactly. That the answers wait for a real `syncfs` is checked by
    // `group_sync`'s own test, which counts the rounds.
    async fn group_policy_answers_concurrent_appends_of_many_documents_and_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<DocId> = (0..40).map(|i| doc(&format!("group/{i}.rs"))).collect();
        {
            let store = std::sync::Arc::new(
                EmbeddedStore::open_dir(dir.path(), FsyncPolicy::Group).expect("store"),
            );
            let mut tasks = Vec::new();
            for (index, id) in ids.iter().enumerate() {
                let store = std::sync::Arc::clone(&store);
                let id = id.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut handle, _) = open(&store, &id).await;
                    // The first append creates the log (fully synced); the others are written
                    // and then made durable by a shared group round.
                    for written in [
                        records(1..=1),
                        records(2..=4),
                        records(5..=5),
                        records(6..=9),
                    ] {
                        handle.append(batch(written)).await.expect("append");
                    }
                    if index % 10 == 0 {
                        handle.compact(&snapshot(7)).await.expect("compact");
                        handle
                            .append(batch(records(10..=10)))
                            .await
                            .expect("append");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        }
        for (index, id) in ids.iter().enumerate() {
            let stored = reload(dir.path(), id).await.expect("load");
            if index % 10 == 0 {
                assert_eq!(stored.snapshot, Some(snapshot(7)), "{id}");
                assert_eq!(stored.log, records(8..=10), "{id}");
            } else {
                assert_eq!(
                    stored,
                    StoredDocument {
                        snapshot: None,
                        log: records(1..=9)
                    },
                    "{id}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the log holds, loading returns a result or an error; it never panics.
        #[test]
        fn random_log_bytes_never_panic(
            keep_header in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let id = doc("random");
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(write_separately(dir.path(), &id, 3));
            let log = log_path(dir.path(), &id);
            let mut bytes = std::fs::read(&log).expect("log");
            bytes.truncate(if keep_header { frame_offsets(&bytes)[1] } else { 0 });
            bytes.extend_from_slice(&tail);
            std::fs::write(&log, &bytes).expect("write");
            let result = runtime.block_on(reload(dir.path(), &id));
            if let Ok(stored) = result {
                if keep_header {
                    prop_assert!(!stored.log.is_empty());
                }
            }
        }
    }
}
