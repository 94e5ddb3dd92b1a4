//! Wire protocol v1 (../shared/PROTOCOL.md): every client and server message as a serde type,
//! and the one place frames are encoded and decoded.
//!
//! Decoding is strict about shapes (a missing or mistyped field is `bad_message`) but an op's
//! components are decoded leniently into [`RawOp`] so that a malformed op is reported as
//! `invalid_op` with its `doc` and `seq`, not as a generic `bad_message`.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ot::{Op, RawOp};

/// Protocol version this server speaks, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most cursor ranges one `cursor` message may carry (multi-cursor editing rarely needs more).
pub const MAX_CURSOR_RANGES: usize = 64;

/// Longest display name kept, in characters; longer names are cut.
pub const MAX_NAME_CHARS: usize = 64;

/// An encoded text frame, shared by reference count between every recipient of a broadcast.
pub type Frame = Bytes;

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message of a connection; `client` resumes an earlier identity.
    Hello {
        /// Id issued earlier by a server, to resume with.
        #[serde(default)]
        client: Option<String>,
        /// Display name.
        #[serde(default)]
        name: Option<String>,
        /// Display color, `#rgb` or `#rrggbb`.
        #[serde(default)]
        color: Option<String>,
    },
    /// Open (or resync) a document, optionally from a revision the client has.
    Open {
        /// Document id.
        doc: String,
        /// Revision the client already has.
        #[serde(default)]
        rev: Option<u64>,
    },
    /// Stop updates for a document.
    Close {
        /// Document id.
        doc: String,
    },
    /// Submit an edit written against revision `rev`.
    Op {
        /// Document id.
        doc: String,
        /// Base revision.
        rev: u64,
        /// The client's sequence number for this document.
        seq: u64,
        /// The edit.
        op: RawOp,
    },
    /// The client's cursors and selections at revision `rev`.
    Cursor {
        /// Document id.
        doc: String,
        /// Revision the positions refer to.
        rev: u64,
        /// `[anchor, head]` pairs.
        ranges: Vec<(u64, u64)>,
    },
    /// Application-level ping; answered with `pong`.
    Ping,
}

/// One op in the `ops` list of an `opened` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevOp<'a> {
    /// Revision after this op.
    pub rev: u64,
    /// Author.
    pub client: &'a str,
    /// The op as applied.
    pub op: &'a Op,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// Answer to `hello`.
    Welcome {
        /// The client's id (new, or the resumed one).
        client: &'a str,
        /// Name of the node that answered.
        node: &'a str,
        /// Protocol version.
        protocol: u32,
    },
    /// Answer to `open` with the whole text.
    #[serde(rename = "opened")]
    OpenedSnapshot {
        /// Document id.
        doc: &'a str,
        /// Revision of `text`.
        rev: u64,
        /// The document.
        text: &'a str,
        /// Language from the document's extension.
        lang: &'a str,
    },
    /// Answer to `open` with the ops after the client's revision.
    #[serde(rename = "opened")]
    OpenedOps {
        /// Document id.
        doc: &'a str,
        /// Newest revision.
        rev: u64,
        /// Ops after the client's revision, oldest first.
        ops: &'a [RevOp<'a>],
        /// Language from the document's extension (an extension of the protocol).
        lang: &'a str,
    },
    /// The sender's op became revision `rev`.
    Ack {
        /// Document id.
        doc: &'a str,
        /// The op's seq.
        seq: u64,
        /// Revision the op became.
        rev: u64,
    },
    /// Another client's op, now revision `rev`.
    Op {
        /// Document id.
        doc: &'a str,
        /// Revision after this op.
        rev: u64,
        /// Author.
        client: &'a str,
        /// The op as applied.
        op: &'a Op,
    },
    /// Another client's cursors.
    Cursor {
        /// Document id.
        doc: &'a str,
        /// Whose.
        client: &'a str,
        /// Their name.
        name: &'a str,
        /// Their color.
        color: &'a str,
        /// `[anchor, head]` pairs at the receiver's current revision.
        ranges: &'a [(usize, usize)],
    },
    /// A collaborator closed the document or went away.
    Left {
        /// Document id.
        doc: &'a str,
        /// Who left.
        client: &'a str,
    },
    /// Answer to `ping`.
    Pong,
    /// Something went wrong; see [`ErrorCode`].
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: &'a str,
        /// Document concerned, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        doc: Option<&'a str>,
        /// Seq of the op concerned, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
}

/// Error codes of PROTOCOL.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, unknown type, missing or mistyped field.
    BadMessage,
    /// Op malformed or out of bounds for its base revision.
    InvalidOp,
    /// Base revision older than the history the server keeps.
    StaleRev,
    /// Op or cursor for a document not opened on this connection.
    NotOpen,
    /// The token does not allow this.
    Forbidden,
    /// Frame, op or resulting document over the configured limit.
    TooLarge,
    /// Over the configured op rate; nothing was applied.
    RateLimited,
    /// The document is moving or its store is unreachable; nothing was applied.
    Unavailable,
}

impl ServerMsg<'_> {
    /// Encodes this message as one text frame.
    pub fn encode(&self) -> Frame {
        // The two messages sent once per op are written by hand (same bytes as serde's): the
        // generic serializer costs more than the rest of an ack's path through the document.
        match *self {
            ServerMsg::Ack { doc, seq, rev } => return encode_ack(doc, seq, rev),
            ServerMsg::Op {
                doc,
                rev,
                client,
                op,
            } => return encode_op(doc, rev, client, op),
            _ => {}
        }
        self.encode_generic()
    }

    fn encode_generic(&self) -> Frame {
        match serde_json::to_vec(self) {
            Ok(bytes) => Bytes::from(bytes),
            // Serializing these types cannot fail (no maps with non-string keys, no I/O);
            // fall back to a valid frame rather than panic.
            Err(e) => Bytes::from(format!(
                "{{\"type\":\"error\",\"code\":\"unavailable\",\"message\":\"encode failed: {}\"}}",
                e.to_string().replace(['"', '\\'], "'")
            )),
        }
    }
}

/// Appends `s` as a JSON string: copied as is when nothing in it needs escaping (ids, typing),
/// else through serde_json.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a string into a Vec cannot fail; keep the frame valid regardless.
        out.extend_from_slice(b"\"\"");
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `{"type":"ack","doc":…,"seq":…,"rev":…}`.
fn encode_ack(doc: &str, seq: u64, rev: u64) -> Frame {
    encode_ack_after(&ack_prefix(doc), seq, rev)
}

/// The part of every `ack` of document `doc` before its seq: a document encodes it once and
/// shares it with the connections it acknowledges (see [`crate::outbound::Outgoing::Ack`]; each
/// queued ack holds a reference, one atomic increment and decrement per ack).
pub fn ack_prefix(doc: &str) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(32 + doc.len());
    out.extend_from_slice(br#"{"type":"ack","doc":"#);
    push_json_str(&mut out, doc);
    out.extend_from_slice(br#","seq":"#);
    Arc::from(out)
}

/// What follows the seq in an `ack`, before the revision.
const ACK_REV_KEY: &[u8] = br#","rev":"#;

/// Number of decimal digits of `n`.
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Length in bytes of the `ack` that [`push_ack`] writes, without writing it (a connection's
/// writer puts the WebSocket header first).
pub fn ack_len(prefix: &[u8], seq: u64, rev: u64) -> usize {
    prefix.len() + decimal_digits(seq) + ACK_REV_KEY.len() + decimal_digits(rev) + 1
}

/// Appends an `ack` to `out`, from its document's [`ack_prefix`]: how a connection's writer puts
/// it straight into its socket buffer, without a frame of its own. Writes exactly
/// [`ack_len`] bytes.
pub fn push_ack(out: &mut Vec<u8>, prefix: &[u8], seq: u64, rev: u64) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(prefix);
    out.extend_from_slice(digits.format(seq).as_bytes());
    out.extend_from_slice(ACK_REV_KEY);
    out.extend_from_slice(digits.format(rev).as_bytes());
    out.push(b'}');
}

/// An `ack` frame of its own from its document's [`ack_prefix`], allocated at its exact size (a
/// `Bytes` made from a `Vec` with spare capacity costs a second allocation).
pub fn encode_ack_after(prefix: &[u8], seq: u64, rev: u64) -> Frame {
    let mut out = Vec::with_capacity(ack_len(prefix, seq, rev));
    push_ack(&mut out, prefix, seq, rev);
    Bytes::from(out)
}

/// `{"type":"op","doc":…,"rev":…,"client":…,"op":[…]}`.
fn encode_op(doc: &str, rev: u64, client: &str, op: &Op) -> Frame {
    encode_op_after(&op_prefix(doc), rev, client, op).unwrap_or_else(|_| {
        ServerMsg::Op {
            doc,
            rev,
            client,
            op,
        }
        .encode_generic()
    })
}

/// The part of every `op` broadcast of document `doc` before its revision: a document encodes it
/// once instead of scanning its id for characters to escape on every broadcast.
pub fn op_prefix(doc: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(32 + doc.len());
    out.extend_from_slice(br#"{"type":"op","doc":"#);
    push_json_str(&mut out, doc);
    out.extend_from_slice(br#","rev":"#);
    out.into_boxed_slice()
}

/// An `op` broadcast from its document's [`op_prefix`]. Fails only if the op cannot be written
/// as JSON (it always can; the caller then falls back to the generic encoder).
pub fn encode_op_after(
    prefix: &[u8],
    rev: u64,
    client: &str,
    op: &Op,
) -> Result<Frame, serde_json::Error> {
    let mut out = Vec::with_capacity(64 + prefix.len() + client.len() + op.encoded_len_hint());
    out.extend_from_slice(prefix);
    push_u64(&mut out, rev);
    out.extend_from_slice(br#","client":"#);
    push_json_str(&mut out, client);
    out.extend_from_slice(br#","op":"#);
    serde_json::to_writer(&mut out, op)?;
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// Encodes an `error` frame.
pub fn error_frame(code: ErrorCode, message: &str, doc: Option<&str>, seq: Option<u64>) -> Frame {
    ServerMsg::Error {
        code,
        message,
        doc,
        seq,
    }
    .encode()
}

/// A frame that could not be decoded, with whatever could still be read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// What was wrong, for the `message` of the error.
    pub message: String,
    /// The `doc` field, if the frame had a string one.
    pub doc: Option<String>,
    /// The `seq` field, if the frame had an integer one.
    pub seq: Option<u64>,
}

/// Decodes one text frame from a client.
pub fn decode_client(text: &[u8]) -> Result<ClientMsg, DecodeError> {
    match serde_json::from_slice::<ClientMsg>(text) {
        Ok(msg) => Ok(msg),
        Err(e) => {
            // Error path only: look again, leniently, for the fields the error should carry.
            let value: Option<serde_json::Value> = serde_json::from_slice(text).ok();
            let field = |name: &str| value.as_ref().and_then(|v| v.get(name).cloned());
            Err(DecodeError {
                message: describe_decode_error(&e, value.as_ref()),
                doc: field("doc").and_then(|d| d.as_str().map(str::to_owned)),
                seq: field("seq").and_then(|s| s.as_u64()),
            })
        }
    }
}

fn describe_decode_error(e: &serde_json::Error, value: Option<&serde_json::Value>) -> String {
    match value {
        None => format!("not a JSON message: {e}"),
        Some(v) if !v.is_object() => "a message must be a JSON object".to_owned(),
        Some(v) => match v.get("type") {
            None => "message has no \"type\" field".to_owned(),
            Some(t) if !t.is_string() => "\"type\" must be a string".to_owned(),
            Some(_) => format!("malformed message: {e}"),
        },
    }
}

/// Checks a display color: `#rgb` or `#rrggbb` hex.
pub fn is_valid_color(color: &str) -> bool {
    let hex = match color.strip_prefix('#') {
        Some(h) => h,
        None => return false,
    };
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A stable, readable color for a client that sent none (or an invalid one).
pub fn default_color(client: &str) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d19a66", "#be5046",
    ];
    let h = client
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    PALETTE[h % PALETTE.len()]
}

/// Cleans a display name: trimmed, control characters removed, at most [`MAX_NAME_CHARS`].
pub fn clean_name(name: Option<&str>) -> String {
    let name: String = name
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        "Anonymous".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_client_message() {
        let hello =
            decode_client(br##"{"type":"hello","client":null,"name":"Ada","color":"#e06c75"}"##);
        assert_eq!(
            hello,
            Ok(ClientMsg::Hello {
                client: None,
                name: Some("Ada".into()),
                color: Some("#e06c75".into())
            })
        );
        assert_eq!(
            decode_client(br#"{"type":"hello"}"#),
            Ok(ClientMsg::Hello {
                client: None,
                name: None,
                color: None
            })
        );
        assert_eq!(
            decode_client(br#"{"type":"open","doc":"a.rs","rev":null}"#),
            Ok(ClientMsg::Open {
                doc: "a.rs".into(),
                rev: None
            })
        );
        assert_eq!(
            decode_client(br#"{"type":"open","doc":"a.rs"}"#),
            Ok(ClientMsg::Open {
                doc: "a.rs".into(),
                rev: None
            })
        );
        assert_eq!(
            decode_client(br#"{"type":"close","doc":"a"}"#),
            Ok(ClientMsg::Close { doc: "a".into() })
        );
        assert!(matches!(
            decode_client(br#"{"type":"op","doc":"a","rev":0,"seq":1,"op":["x",-1,2]}"#),
            Ok(ClientMsg::Op { rev: 0, seq: 1, .. })
        ));
        assert_eq!(
            decode_client(br#"{"type":"cursor","doc":"a","rev":3,"ranges":[[1,2]]}"#),
            Ok(ClientMsg::Cursor {
                doc: "a".into(),
                rev: 3,
                ranges: vec![(1, 2)]
            })
        );
        assert_eq!(decode_client(br#"{"type":"ping"}"#), Ok(ClientMsg::Ping));
        // Unknown extra fields are ignored (compatible extensions).
        assert_eq!(
            decode_client(br#"{"type":"ping","x":1}"#),
            Ok(ClientMsg::Ping)
        );
    }

    #[test]
    fn a_bad_op_still_decodes_so_it_can_be_reported_as_invalid_op() {
        let msg = decode_client(br#"{"type":"op","doc":"a","rev":0,"seq":1,"op":[0, 1.5, true]}"#);
        assert!(matches!(msg, Ok(ClientMsg::Op { .. })), "{msg:?}");
    }

    #[test]
    fn bad_messages_carry_doc_and_seq_when_present() {
        for (text, doc, seq) in [
            (&b"not json"[..], None, None),
            (b"[1,2]", None, None),
            (b"{\"type\":\"fly\"}", None, None),
            (b"{\"doc\":\"a\"}", Some("a"), None),
            (
                b"{\"type\":\"op\",\"doc\":\"a\",\"seq\":3,\"rev\":\"x\",\"op\":[1]}",
                Some("a"),
                Some(3),
            ),
            (
                b"{\"type\":\"op\",\"doc\":\"a\",\"seq\":3,\"rev\":1.5,\"op\":[1]}",
                Some("a"),
                Some(3),
            ),
            (
                b"{\"type\":\"op\",\"doc\":\"a\",\"seq\":3,\"rev\":1,\"op\":\"x\"}",
                Some("a"),
                Some(3),
            ),
            (b"{\"type\":\"open\"}", None, None),
            (
                b"{\"type\":\"cursor\",\"doc\":\"a\",\"rev\":1,\"ranges\":[[1]]}",
                Some("a"),
                None,
            ),
        ] {
            let err = decode_client(text).expect_err(std::str::from_utf8(text).unwrap_or("?"));
            assert_eq!(err.doc.as_deref(), doc);
            assert_eq!(err.seq, seq);
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn server_messages_encode_per_protocol() {
        let f = ServerMsg::Welcome {
            client: "c",
            node: "n",
            protocol: 1,
        }
        .encode();
        assert_eq!(
            &f[..],
            br#"{"type":"welcome","client":"c","node":"n","protocol":1}"#
        );
        let f = ServerMsg::Ack {
            doc: "d",
            seq: 2,
            rev: 9,
        }
        .encode();
        assert_eq!(&f[..], br#"{"type":"ack","doc":"d","seq":2,"rev":9}"#);
        let f = error_frame(ErrorCode::StaleRev, "old", Some("d"), None);
        assert_eq!(
            &f[..],
            br#"{"type":"error","code":"stale_rev","message":"old","doc":"d"}"#
        );
        let f = ServerMsg::OpenedSnapshot {
            doc: "d",
            rev: 0,
            text: "",
            lang: "plaintext",
        }
        .encode();
        assert_eq!(
            &f[..],
            br#"{"type":"opened","doc":"d","rev":0,"text":"","lang":"plaintext"}"#
        );
        assert_eq!(&ServerMsg::Pong.encode()[..], br#"{"type":"pong"}"#);
    }

    #[test]
    fn hand_written_ack_and_op_match_serde_byte_for_byte() {
        use crate::ot::RawComponent;
        let docs = ["d", "dir/a \"q\" \\ \u{1}.rs", "ünï/😀.py", ""];
        let texts = ["x", "line\n\t\"quoted\" \\ \u{7f} 😀", ""];
        for doc in docs {
            for (seq, rev) in [(0, 0), (1, 2), (u64::MAX, u64::MAX - 1)] {
                let msg = ServerMsg::Ack { doc, seq, rev };
                let generic = msg.encode_generic();
                assert_eq!(msg.encode(), generic, "ack {doc:?}");
                // The connection writer's path: appended to a buffer, its length known first.
                let prefix = ack_prefix(doc);
                let mut buffer = b"before".to_vec();
                push_ack(&mut buffer, &prefix, seq, rev);
                assert_eq!(buffer[6..], generic, "pushed ack {doc:?}");
                assert_eq!(ack_len(&prefix, seq, rev), generic.len(), "ack_len {doc:?}");
            }
            for text in texts {
                let raw = RawOp(smallvec::smallvec![
                    RawComponent::Retain(3),
                    RawComponent::Insert(text.into()),
                    RawComponent::Delete(2),
                    RawComponent::Retain(1),
                ]);
                let Ok(op) = Op::from_raw(raw, 6) else {
                    continue; // an empty insert is not a valid component
                };
                for client in ["c", "a\"b"] {
                    let msg = ServerMsg::Op {
                        doc,
                        rev: 7,
                        client,
                        op: &op,
                    };
                    assert_eq!(msg.encode(), msg.encode_generic(), "op {doc:?} {text:?}");
                    let value: serde_json::Value =
                        serde_json::from_slice(&msg.encode()).expect("valid JSON");
                    assert_eq!(value["doc"], doc);
                }
            }
            let identity = Op::from_raw(RawOp(smallvec::smallvec![RawComponent::Retain(4)]), 4)
                .expect("identity op");
            let msg = ServerMsg::Op {
                doc,
                rev: 1,
                client: "c",
                op: &identity,
            };
            assert_eq!(msg.encode(), msg.encode_generic());
        }
    }

    #[test]
    fn names_and_colors_are_cleaned() {
        assert!(is_valid_color("#abc") && is_valid_color("#A0b1C2"));
        assert!(!is_valid_color("red") && !is_valid_color("#12345") && !is_valid_color("#ggg"));
        assert_eq!(clean_name(Some("  Ada\u{7} ")), "Ada");
        assert_eq!(clean_name(None), "Anonymous");
        assert_eq!(
            clean_name(Some(&"x".repeat(100))).chars().count(),
            MAX_NAME_CHARS
        );
    }
}
