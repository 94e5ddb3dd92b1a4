//! The node-to-node message codec: versioned and fallible. Every message between routers is
//! one [`Wire`] value encoded as a version byte followed by JSON; a message that fails to decode
//! is an error the receiver logs and counts, never a silent drop.

use chorus_actors::ot::{RawComponent, RawOp};
use serde::{Deserialize, Serialize};

/// Version of the wire format this node writes and reads.
pub const WIRE_VERSION: u8 = 1;

/// Most frames one `Frames` message carries (a batch, bounded so one message stays small).
pub const MAX_FRAMES_PER_MESSAGE: usize = 256;

/// A message between two nodes' routers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Wire {
    /// Failure-detector probe.
    Heartbeat {
        /// Sender's incarnation.
        from: String,
        /// Echoed back, to measure round trips.
        nonce: u64,
    },
    /// Answer to a heartbeat.
    HeartbeatAck {
        /// Sender's incarnation.
        from: String,
        /// The probe's nonce.
        nonce: u64,
    },
    /// Subscribe a connection of the sender to a document this node should own.
    Open {
        /// Sender's incarnation.
        from: String,
        /// Correlates the `OpenResult`.
        request: u64,
        /// The connection on the sender.
        conn: u64,
        /// Document id.
        doc: String,
        /// Client id.
        client: String,
        /// Display name.
        name: String,
        /// Display color.
        color: String,
        /// Revision the client has.
        since: Option<u64>,
    },
    /// Answer to `Open`.
    OpenResult {
        /// Sender's incarnation.
        from: String,
        /// The request.
        request: u64,
        /// `None` on success, else why not.
        refused: Option<Refusal>,
    },
    /// The connection closes the document.
    Close {
        /// Sender's incarnation.
        from: String,
        /// The connection on the sender.
        conn: u64,
        /// Document id.
        doc: String,
    },
    /// An op from the sender's connection.
    Submit {
        /// Sender's incarnation.
        from: String,
        /// The connection on the sender.
        conn: u64,
        /// Document id.
        doc: String,
        /// Client seq.
        seq: u64,
        /// Base revision.
        rev: u64,
        /// The op as the client sent it.
        op: Vec<serde_json::Value>,
    },
    /// Cursors from the sender's connection.
    Cursor {
        /// Sender's incarnation.
        from: String,
        /// The connection on the sender.
        conn: u64,
        /// Document id.
        doc: String,
        /// Revision of the ranges.
        rev: u64,
        /// `[anchor, head]` pairs.
        ranges: Vec<(u64, u64)>,
    },
    /// Frames for a connection of the receiver, in order.
    Frames {
        /// The connection on the receiver.
        conn: u64,
        /// Encoded protocol messages (JSON text).
        frames: Vec<String>,
    },
    /// The document is no longer served for this connection: open it again.
    Lost {
        /// Sender's incarnation (the owner that stopped serving); a `Lost` from a node that is
        /// no longer the connection's owner of the document is ignored.
        #[serde(default)]
        from: String,
        /// The connection on the receiver.
        conn: u64,
        /// Document id.
        doc: String,
        /// Why.
        reason: String,
    },
    /// The sender is draining: do not place new documents on it.
    Draining {
        /// Sender's incarnation.
        from: String,
    },
    /// A connection of the sender went away.
    ConnectionGone {
        /// Sender's incarnation.
        from: String,
        /// The connection on the sender.
        conn: u64,
    },
}

/// Why an `Open` was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// Another live node owns it.
    OwnedElsewhere {
        /// Owner node name.
        node: String,
        /// Owner incarnation.
        incarnation: String,
    },
    /// It cannot be served now.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Empty message.
    #[error("empty cluster message")]
    Empty,
    /// Written by a version this node does not speak.
    #[error("cluster message of wire version {0}; this node speaks version {WIRE_VERSION}")]
    Version(u8),
    /// The body did not parse.
    #[error("malformed cluster message: {0}")]
    Malformed(String),
}

impl Wire {
    /// Encodes with the version byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        // Serializing these types cannot fail (string keys only, no I/O).
        if let Err(e) = serde_json::to_writer(&mut out, self) {
            tracing::error!(error = %e, "cluster message failed to encode");
        }
        out
    }

    /// Decodes, checking the version.
    pub fn decode(bytes: &[u8]) -> Result<Wire, WireError> {
        let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
        if version != WIRE_VERSION {
            return Err(WireError::Version(version));
        }
        serde_json::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

/// A client's raw op as JSON values, to forward it unchanged (invalid components stay invalid).
pub fn raw_op_to_json(op: &RawOp) -> Vec<serde_json::Value> {
    op.0.iter()
        .map(|c| match c {
            RawComponent::Retain(n) => serde_json::Value::from(*n),
            RawComponent::Delete(n) => {
                i64::try_from(*n).map_or(serde_json::Value::Null, |n| serde_json::Value::from(-n))
            }
            RawComponent::Insert(s) => serde_json::Value::from(s.as_str()),
            RawComponent::Invalid(_) => serde_json::Value::Null,
        })
        .collect()
}

/// The inverse of [`raw_op_to_json`].
pub fn raw_op_from_json(values: Vec<serde_json::Value>) -> RawOp {
    serde_json::from_value(serde_json::Value::Array(values)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let msg = Wire::Submit {
            from: "inc".into(),
            conn: 7,
            doc: "a/b.rs".into(),
            seq: 3,
            rev: 9,
            op: vec![2.into(), "x😀".into(), (-1).into()],
        };
        let bytes = msg.encode();
        assert_eq!(Wire::decode(&bytes), Ok(msg));
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(Wire::decode(&other), Err(WireError::Version(2)));
        assert_eq!(Wire::decode(&[]), Err(WireError::Empty));
        assert!(matches!(
            Wire::decode(&[WIRE_VERSION, b'{']),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn raw_ops_keep_their_meaning() {
        let raw: RawOp = serde_json::from_str(r#"[3, "ab", -2, 1.5]"#).expect("decodes");
        let back = raw_op_from_json(raw_op_to_json(&raw));
        assert_eq!(back.0.len(), 4);
        assert!(matches!(back.0[0], RawComponent::Retain(3)));
        assert!(matches!(back.0[2], RawComponent::Delete(2)));
        assert!(matches!(back.0[3], RawComponent::Invalid(_)));
    }
}
