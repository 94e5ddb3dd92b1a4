//! Sans-IO parsing of the frames a client sends (RFC 6455 §5.2), with the rules the connection
//! applied when fastwebsockets read them (auto-pong, auto-close, UTF-8 of unfragmented text,
//! size limit), but without a read buffer of its own: the caller keeps the unparsed bytes in a
//! `Vec` that is empty (and released) whenever a connection is idle. A partial frame is bounded by
//! the size limit plus its header (at most 14 bytes): the limit is checked as soon as the header
//! is in.

use fastwebsockets::{CloseCode, OpCode};

/// What the next bytes of the input are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A frame was taken from the front of the input.
    Event(Event),
    /// The next frame is not complete: at least this many bytes of input are needed.
    Need(usize),
}

/// One frame from the client, and what the protocol says to do about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A data frame (text, binary or continuation), unmasked.
    Data {
        /// Its opcode.
        opcode: OpCode,
        /// Whether it ends its message.
        fin: bool,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// A ping: answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// A pong (nothing to do).
    Pong,
    /// A valid close: echo this payload in a close frame, then end the connection.
    Close(Vec<u8>),
    /// The frame breaks the protocol: end the connection, sending this close frame payload first
    /// if there is one.
    Fail {
        /// Close frame payload to send before ending, if any.
        reply: Option<Vec<u8>>,
        /// What was wrong (for the debug log).
        reason: &'static str,
    },
    /// A frame with a payload over the size limit.
    TooBig,
}

/// Close code sent back for a close frame with a code a peer must not send.
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

fn fail(reason: &'static str) -> Step {
    Step::Event(Event::Fail {
        reply: None,
        reason,
    })
}

/// Takes the next frame off the front of `input` if it is complete; a frame whose payload is over
/// `max_payload` bytes is [`Event::TooBig`] as soon as its header is in.
pub(crate) fn next(input: &mut Vec<u8>, max_payload: usize) -> Step {
    let [b0, b1, ..] = input[..] else {
        return Step::Need(2);
    };
    if b0 & 0x70 != 0 {
        return fail("reserved bits set");
    }
    let fin = b0 & 0x80 != 0;
    let opcode = match b0 & 0x0F {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xA => OpCode::Pong,
        _ => return fail("unknown opcode"),
    };
    let masked = b1 & 0x80 != 0;
    let length_code = b1 & 0x7F;
    let extra = match length_code {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header = 2 + extra + if masked { 4 } else { 0 };
    let Some(rest) = input.get(2..header) else {
        return Step::Need(header);
    };
    let (length, mask) = rest.split_at(extra);
    let payload_len = match *length {
        [a, b] => usize::from(u16::from_be_bytes([a, b])),
        [a, b, c, d, e, f, g, h] => {
            match usize::try_from(u64::from_be_bytes([a, b, c, d, e, f, g, h])) {
                Ok(len) => len,
                Err(_) => return Step::Event(Event::TooBig),
            }
        }
        _ => usize::from(length_code),
    };
    let mask: Option<[u8; 4]> = mask.try_into().ok();
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && !fin {
        return fail("fragmented control frame");
    }
    if opcode == OpCode::Ping && payload_len > 125 {
        return fail("ping payload over 125 bytes");
    }
    if payload_len > max_payload {
        return Step::Event(Event::TooBig);
    }
    let total = header + payload_len;
    if input.len() < total {
        return Step::Need(total);
    }
    let mut payload = input[header..total].to_vec();
    input.drain(..total);
    if let Some(mask) = mask {
        fastwebsockets::unmask(&mut payload, mask);
    }
    Step::Event(match opcode {
        OpCode::Close => match payload.len() {
            0 => Event::Close(payload),
            1 => {
                return fail("close frame with a 1-byte payload");
            }
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return fail("close reason is not UTF-8");
                }
                if CloseCode::from(code).is_allowed() {
                    Event::Close(payload)
                } else {
                    let mut reply = Vec::with_capacity(payload.len());
                    reply.extend_from_slice(&CLOSE_PROTOCOL_ERROR.to_be_bytes());
                    reply.extend_from_slice(&payload[2..]);
                    Event::Fail {
                        reply: Some(reply),
                        reason: "close code a peer must not send",
                    }
                }
            }
        },
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong,
        OpCode::Text if fin && std::str::from_utf8(&payload).is_err() => {
            return fail("text frame is not UTF-8");
        }
        opcode => Event::Data {
            opcode,
            fin,
            payload,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![b0];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn data(opcode: OpCode, fin: bool, payload: &[u8]) -> Step {
        Step::Event(Event::Data {
            opcode,
            fin,
            payload: payload.to_vec(),
        })
    }

    #[test]
    fn parses_frames_byte_by_byte_and_back_to_back() {
        let big = vec![b'x'; 70_000];
        let mut wire = frame(0x81, b"{\"type\":\"ping\"}");
        wire.extend(frame(0x01, &big[..300]));
        wire.extend(frame(0x80, &big));
        wire.extend(frame(0x89, b"hi"));
        wire.extend(frame(0x8A, b""));
        let mut input = Vec::new();
        let mut events = Vec::new();
        for byte in wire {
            input.push(byte);
            loop {
                match next(&mut input, 100_000) {
                    Step::Need(n) => {
                        assert!(n > input.len());
                        break;
                    }
                    Step::Event(e) => events.push(Step::Event(e)),
                }
            }
        }
        assert!(input.is_empty());
        assert_eq!(
            events,
            vec![
                data(OpCode::Text, true, b"{\"type\":\"ping\"}"),
                data(OpCode::Text, false, &big[..300]),
                data(OpCode::Continuation, true, &big),
                Step::Event(Event::Ping(b"hi".to_vec())),
                Step::Event(Event::Pong),
            ]
        );
    }

    #[test]
    fn unmasked_frames_are_taken_as_they_are() {
        let mut input = vec![0x81, 2, b'o', b'k'];
        assert_eq!(next(&mut input, 10), data(OpCode::Text, true, b"ok"));
    }

    #[test]
    fn size_limit_is_inclusive_and_known_from_the_header() {
        let mut input = frame(0x81, b"12345");
        assert_eq!(next(&mut input, 5), data(OpCode::Text, true, b"12345"));
        let mut input = frame(0x82, &[0; 300]);
        input.truncate(8);
        assert_eq!(next(&mut input, 299), Step::Event(Event::TooBig));
        let mut input = vec![0x82, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(next(&mut input, 1 << 20), Step::Event(Event::TooBig));
    }

    #[test]
    fn protocol_violations_fail() {
        let is_fail = |mut input: Vec<u8>| {
            matches!(
                next(&mut input, 1 << 20),
                Step::Event(Event::Fail { reply: None, .. })
            )
        };
        assert!(is_fail(frame(0xC1, b"x")), "reserved bit");
        assert!(is_fail(frame(0x83, b"x")), "unknown opcode");
        assert!(is_fail(frame(0x09, b"x")), "fragmented ping");
        assert!(is_fail(frame(0x89, &[0; 126])), "long ping");
        assert!(is_fail(frame(0x81, &[0xFF, 0xFE])), "text not UTF-8");
        assert!(is_fail(frame(0x88, &[3])), "1-byte close");
        assert!(
            is_fail(frame(0x88, &[3, 232, 0xFF])),
            "close reason not UTF-8"
        );
        // A fragment's UTF-8 is checked once the message is whole (by the decoder).
        let mut input = frame(0x01, &[0xFF]);
        assert_eq!(next(&mut input, 10), data(OpCode::Text, false, &[0xFF]));
    }

    #[test]
    fn close_is_echoed_and_a_forbidden_code_answered_with_1002() {
        let mut input = frame(0x88, &[3, 232, b'b', b'y', b'e']);
        assert_eq!(
            next(&mut input, 10),
            Step::Event(Event::Close(vec![3, 232, b'b', b'y', b'e']))
        );
        let mut input = frame(0x88, b"");
        assert_eq!(next(&mut input, 10), Step::Event(Event::Close(Vec::new())));
        // 1005 (no status) must not be sent by a peer.
        let mut input = frame(0x88, &[0x03, 0xED, b'x']);
        assert_eq!(
            next(&mut input, 10),
            Step::Event(Event::Fail {
                reply: Some(vec![0x03, 0xEA, b'x']),
                reason: "close code a peer must not send",
            })
        );
    }
}
