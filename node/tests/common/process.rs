//! The real `chorus` binary as a child process: started on 127.0.0.1:0, its bound address read
//! from its log, and killed with SIGKILL to test crash durability.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long the binary may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `chorus` process.
pub struct ChildNode {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ChildNode {
    /// Starts `chorus --listen 127.0.0.1:0 --data-dir <dir> <extra...>` and waits for its address.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ChildNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the chorus binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let thread_log = log.clone();
        // Drains stderr for the child's whole life, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if line.contains("chorus node listening") {
                    if let Some(addr) = parse_addr(&line) {
                        let _ = tx.send(addr);
                    }
                }
                thread_log.lock().expect("log lock").push(line);
            }
        });
        let mut node = ChildNode {
            child: Some(child),
            addr: "0.0.0.0:0".parse().expect("static"),
            log,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => node.addr = addr,
            Err(_) => panic!(
                "chorus did not report its address in time; its log:\n{}",
                node.log_text()
            ),
        }
        node
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// SIGKILL (`kill -9`) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the chorus process");
            child.wait().expect("reap the chorus process");
        }
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Removes ANSI color sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `addr=...` field of a log line.
fn parse_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find("addr=")? + "addr=".len();
    let value: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    value.trim_matches('"').parse().ok()
}
