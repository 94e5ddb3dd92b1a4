//! A correct client-side OT state machine, as a browser tab runs it: one op in flight per
//! document, later local edits composed into one pending op, incoming ops transformed over both.
//! It also checks the server's ordering promises (acks and ops in increasing revision, no gap).

use chorus_actors::ot::{Component, Op, RawOp};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// Text pieces random edits insert: ASCII, astral characters (two UTF-16 units, one code point),
/// a combining mark on its own and after a base letter, a newline, other BMP letters.
pub const PIECES: &[&str] = &[
    "a", "b", "xyz", "😀", "𝄞", "e\u{301}", "\u{301}", "\n", "ü", "中", " ",
];

/// One document as one client sees it.
#[derive(Debug, Clone)]
pub struct Editor {
    /// Document id.
    pub doc: String,
    /// Newest server revision this client has (from `opened`, an ack or an op).
    pub rev: u64,
    /// The local text: the server text at `rev` plus the in-flight and pending ops.
    pub text: String,
    /// The op sent and not yet acknowledged: (seq, base rev, op as transformed since).
    pub inflight: Option<(u64, u64, Op)>,
    /// Local edits made while an op is in flight, composed.
    pub pending: Option<Op>,
    /// Seq of the next op to send.
    pub next_seq: u64,
    /// How many ops this client has sent (each becomes one revision).
    pub sent: u64,
}

impl Editor {
    /// A client that has just received a snapshot `opened`.
    pub fn from_opened(opened: &Value) -> Editor {
        assert_eq!(opened["type"], "opened", "{opened}");
        Editor {
            doc: opened["doc"].as_str().expect("opened doc").to_owned(),
            rev: opened["rev"].as_u64().expect("opened rev"),
            text: opened["text"].as_str().expect("a snapshot").to_owned(),
            inflight: None,
            pending: None,
            next_seq: 1,
            sent: 0,
        }
    }

    /// Length in code points of the server's text at `rev`.
    pub fn server_len(&self) -> usize {
        match (&self.inflight, &self.pending) {
            (Some((_, _, op)), _) => op.base_len(),
            (None, Some(op)) => op.base_len(),
            (None, None) => self.text.chars().count(),
        }
    }

    /// Whether every local edit has been acknowledged.
    pub fn is_settled(&self) -> bool {
        self.inflight.is_none() && self.pending.is_none()
    }

    /// A local edit: applied to the local text at once; returns the `op` message to send if
    /// nothing is in flight.
    pub fn edit(&mut self, op: Op) -> Option<Value> {
        self.text = op
            .apply_to_str(&self.text)
            .expect("a local edit applies to the local text");
        if op.is_noop() {
            return None;
        }
        if self.inflight.is_some() {
            self.pending = Some(match self.pending.take() {
                Some(pending) => pending.compose(&op).expect("pending then edit compose"),
                None => op,
            });
            if self.pending.as_ref().is_some_and(Op::is_noop) {
                self.pending = None;
            }
            None
        } else {
            Some(self.send(op))
        }
    }

    fn send(&mut self, op: Op) -> Value {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent += 1;
        let msg = json!({"type":"op","doc":self.doc,"rev":self.rev,"seq":seq,"op":wire(&op)});
        self.inflight = Some((seq, self.rev, op));
        msg
    }

    /// Handles a server message for this document; returns an op message to send, if any.
    pub fn handle(&mut self, msg: &Value) -> Option<Value> {
        assert_eq!(msg["doc"], self.doc.as_str(), "{msg}");
        match msg["type"].as_str() {
            Some("ack") => self.on_ack(msg),
            Some("op") => {
                self.on_op(msg);
                None
            }
            Some("cursor") => {
                self.check_cursor(msg);
                None
            }
            Some("left") => None,
            _ => panic!("{}: unexpected message {msg}", self.doc),
        }
    }

    fn on_ack(&mut self, msg: &Value) -> Option<Value> {
        let rev = msg["rev"].as_u64().expect("ack rev");
        let seq = msg["seq"].as_u64().expect("ack seq");
        let (inflight_seq, _, _) = self
            .inflight
            .take()
            .unwrap_or_else(|| panic!("ack without an op in flight: {msg}"));
        assert_eq!(seq, inflight_seq, "ack for the op in flight: {msg}");
        assert_eq!(
            rev,
            self.rev + 1,
            "acks and ops come in revision order without a gap: {msg}"
        );
        self.rev = rev;
        self.pending.take().map(|pending| self.send(pending))
    }

    fn on_op(&mut self, msg: &Value) {
        let rev = msg["rev"].as_u64().expect("op rev");
        assert_eq!(
            rev,
            self.rev + 1,
            "acks and ops come in revision order without a gap: {msg}"
        );
        assert!(msg["client"].is_string(), "{msg}");
        let mut incoming = parse_op(&msg["op"], self.server_len())
            .unwrap_or_else(|e| panic!("the server broadcast an invalid op ({e}): {msg}"));
        if let Some((seq, base, inflight)) = self.inflight.take() {
            // The server applied `incoming` first: it goes left on ties.
            let (incoming_prime, inflight_prime) =
                Op::transform(&incoming, &inflight).expect("transform over in-flight");
            self.inflight = Some((seq, base, inflight_prime));
            incoming = incoming_prime;
        }
        if let Some(pending) = self.pending.take() {
            let (incoming_prime, pending_prime) =
                Op::transform(&incoming, &pending).expect("transform over pending");
            self.pending = Some(pending_prime);
            incoming = incoming_prime;
        }
        self.text = incoming
            .apply_to_str(&self.text)
            .expect("a transformed op applies to the local text");
        self.rev = rev;
    }

    fn check_cursor(&self, msg: &Value) {
        let len = self.server_len() as u64;
        for range in msg["ranges"].as_array().expect("cursor ranges") {
            for position in range.as_array().expect("a range is a pair") {
                let position = position.as_u64().expect("a position is an integer");
                assert!(
                    position <= len,
                    "cursor past the end ({len}) of the text at rev {}: {msg}",
                    self.rev
                );
            }
        }
    }

    /// A cursor message at `rev`, if nothing is unacknowledged (the protocol's rule).
    pub fn cursor(&self, rng: &mut StdRng) -> Option<Value> {
        if !self.is_settled() {
            return None;
        }
        let len = self.text.chars().count();
        let anchor = rng.random_range(0..=len);
        let head = rng.random_range(0..=len);
        Some(json!({"type":"cursor","doc":self.doc,"rev":self.rev,"ranges":[[anchor, head]]}))
    }
}

/// The wire form of an op.
pub fn wire(op: &Op) -> Value {
    serde_json::to_value(op).expect("an op serializes")
}

/// Parses a wire op against a base document of `base_len` code points.
pub fn parse_op(wire: &Value, base_len: usize) -> Result<Op, String> {
    let raw: RawOp = serde_json::from_value(wire.clone()).map_err(|e| e.to_string())?;
    Op::from_raw(raw, base_len).map_err(|e| e.to_string())
}

/// A random edit of `text`: an insert, a delete, or a replacement.
pub fn random_edit(rng: &mut StdRng, text: &str) -> Op {
    let len = text.chars().count();
    let choice = rng.random_range(0..10);
    let mut components = Vec::new();
    if len == 0 || choice < 6 {
        let position = rng.random_range(0..=len);
        if position > 0 {
            components.push(Component::Retain(position));
        }
        components.push(Component::Insert(random_text(rng).into()));
    } else {
        let position = rng.random_range(0..len);
        let n = rng.random_range(1..=(len - position).min(4));
        if position > 0 {
            components.push(Component::Retain(position));
        }
        if choice == 9 {
            components.push(Component::Insert(random_text(rng).into()));
        }
        components.push(Component::Delete(n));
    }
    Op::from_components(components, len).expect("a random edit is valid")
}

/// One to three random pieces.
pub fn random_text(rng: &mut StdRng) -> String {
    let n = rng.random_range(1..=3);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}
