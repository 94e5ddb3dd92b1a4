//! Node-wide group commit for [`FsyncPolicy::Group`](super::FsyncPolicy::Group): one thread
//! makes every document's appended records durable with one `syncfs` of the data dir's file
//! system per round, instead of one `fdatasync` per document per batch.
//!
//! A document writes its records (no sync), then asks for a round and waits. The thread takes
//! every request queued so far, calls `syncfs`, and answers them all: a request is answered only
//! by a `syncfs` that started after it was queued, so after its write. One `syncfs` of 100 dirty
//! logs cost about a tenth of the CPU and of the time of 100 `fdatasync`s on the benchmark machine
//! (docs/BENCHMARKS.md). It flushes everything dirty on that file system, so the data dir should
//! have its own file system when other processes write a lot.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use tokio::sync::oneshot;

/// Most requests waiting for a round. Each document has at most one write in flight, so this
/// bounds the documents writing at once; past it an append fails (the document reloads and its
/// clients resubmit) rather than queueing without bound.
const MAX_QUEUED: usize = 65_536;

type Waiter = oneshot::Sender<Result<(), (io::ErrorKind, String)>>;

/// Handle to the group-sync thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub(super) struct GroupSync {
    requests: SyncSender<Waiter>,
    /// Successful `syncfs` calls so far (a test observes that rounds really sync).
    #[cfg(test)]
    rounds: Arc<AtomicU64>,
}

impl GroupSync {
    /// Starts the thread for the file system that holds `dir`.
    pub(super) fn start(dir: &Path) -> io::Result<GroupSync> {
        let dir = File::open(dir)?;
        let (requests, queue) = sync_channel(MAX_QUEUED);
        let rounds = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&rounds);
        std::thread::Builder::new()
            .name("chorus-group-sync".into())
            .spawn(move || run(|| sync_file_system(&dir), &queue, &counted))?;
        Ok(GroupSync {
            requests,
            #[cfg(test)]
            rounds,
        })
    }

    /// Successful `syncfs` rounds so far.
    #[cfg(test)]
    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Returns once everything this process wrote to the file system before the call is durable.
    pub(super) async fn sync(&self) -> io::Result<()> {
        let (waiter, answer) = oneshot::channel();
        self.requests
            .try_send(waiter)
            .map_err(|error| match error {
                TrySendError::Full(_) => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("more than {MAX_QUEUED} documents are waiting for a group sync"),
                ),
                TrySendError::Disconnected(_) => io::Error::other("the group sync thread stopped"),
            })?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, message))) => Err(io::Error::new(kind, message)),
            Err(_) => Err(io::Error::other("the group sync thread stopped")),
        }
    }
}

/// The thread: one `syncfs` (`sync`) per round for every request queued before it started.
///
/// A failed round fails every later one too, until the process restarts: the kernel reports a
/// write-back error to one `syncfs` only, and that may be a round that started before a document's
/// write yet flushed (and lost) it; a later round would then succeed over lost data. Failing the
/// appends stops their documents, and nothing is acknowledged that may not be on disk.
fn run(mut sync: impl FnMut() -> io::Result<()>, queue: &Receiver<Waiter>, rounds: &AtomicU64) {
    let mut failed: Option<(io::ErrorKind, String)> = None;
    let mut waiters = Vec::new();
    while let Ok(first) = queue.recv() {
        waiters.push(first);
        while waiters.len() < MAX_QUEUED {
            match queue.try_recv() {
                Ok(waiter) => waiters.push(waiter),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some((kind, message)) => Err((
                *kind,
                format!("an earlier group sync failed ({message}); restart the node"),
            )),
            None => sync().map_err(|e| (e.kind(), e.to_string())),
        };
        match &result {
            Ok(()) => {
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) if failed.is_none() => {
                tracing::error!(error = %error.1, "group sync failed; every later append fails until the node restarts");
                failed = Some(error.clone());
            }
            Err(_) => {}
        }
        for waiter in waiters.drain(..) {
            // A waiter that gave up (its document stopped) needs no answer.
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(target_os = "linux")]
fn sync_file_system(dir: &File) -> io::Result<()> {
    rustix::fs::syncfs(dir).map_err(io::Error::from)
}

/// Without `syncfs`, `sync_all` of the directory would not cover the files in it: refuse, so
/// that nothing is acknowledged undurable (the store maps `Group` to `Always` off Linux anyway).
#[cfg(not(target_os = "linux"))]
fn sync_file_system(_dir: &File) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "group sync needs Linux's syncfs",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_requests_are_all_answered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let group = std::sync::Arc::new(GroupSync::start(dir.path()).expect("starts"));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let group = std::sync::Arc::clone(&group);
            let path = dir.path().join(format!("f{i}"));
            tasks.push(tokio::spawn(async move {
                std::fs::write(&path, b"data").expect("write");
                group.sync().await
            }));
        }
        for task in tasks {
            // A round that never answers would hang the append: fail instead.
            tokio::time::timeout(std::time::Duration::from_secs(30), task)
                .await
                .expect("answered within 30 s")
                .expect("task")
                .expect("synced");
        }
        // Every answer came from a real `syncfs` (at least one round, at most one per request).
        let rounds = group.rounds();
        assert!(
            (1..=64).contains(&rounds),
            "{rounds} syncfs rounds for 64 requests"
        );
    }

    #[test]
    fn after_a_failed_round_every_later_round_fails() {
        let (requests, queue) = sync_channel(8);
        let (first, first_answer) = oneshot::channel();
        let (second, second_answer) = oneshot::channel();
        requests.send(first).expect("queued");
        // The second request is queued while the first round runs, so it gets a round of its own.
        let mut late = Some((requests, second));
        let calls = std::cell::Cell::new(0);
        let rounds = AtomicU64::new(0);
        run(
            || {
                calls.set(calls.get() + 1);
                if let Some((requests, second)) = late.take() {
                    requests.send(second).expect("queued");
                }
                if calls.get() == 1 {
                    Err(io::Error::other("EIO"))
                } else {
                    Ok(())
                }
            },
            &queue,
            &rounds,
        );
        assert!(first_answer.blocking_recv().expect("answered").is_err());
        let second = second_answer.blocking_recv().expect("answered");
        assert!(
            second.is_err(),
            "a round after a failed one must not succeed"
        );
        assert_eq!(calls.get(), 1, "the failed state is not synced over");
        assert_eq!(rounds.load(Ordering::Relaxed), 0);
    }
}
