//! A WebSocket client written by hand over a raw TCP stream, for what a library client hides:
//! never answering pings, sending fragmented messages, seeing every byte until EOF.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opcodes of RFC 6455.
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Longest handshake response read, in bytes.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A hand-driven client connection.
pub struct RawWs {
    pub stream: TcpStream,
}

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawWs {
    /// Connects and performs the upgrade handshake (expects 101).
    pub async fn connect(addr: SocketAddr) -> RawWs {
        let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("tcp connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade request");
        // Byte by byte, so that nothing after the response head is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < MAX_RESPONSE_HEAD, "response head too long");
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
                .await
                .expect("handshake answered in time")
                .expect("read the handshake");
            assert_eq!(
                n,
                1,
                "the server closed during the handshake: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got {head}"
        );
        RawWs { stream }
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.stream
            .write_all(&encode_client_frame(fin, opcode, payload))
            .await
            .expect("send a frame");
    }

    /// Sends one whole text message in a single frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, TEXT, text.as_bytes()).await;
    }

    /// Reads frames until one satisfies `want`, returning everything read; panics on timeout or EOF.
    pub async fn read_until(&mut self, mut want: impl FnMut(&RawFrame) -> bool) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.stream))
                .await
                .expect("a frame in time")
                .expect("a frame before EOF");
            let done = want(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Reads without ever answering until the server closes the TCP stream (EOF or reset);
    /// returns every frame read. Panics if the server keeps the stream open past `limit`.
    pub async fn read_until_eof(&mut self, limit: Duration) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, read_frame(&mut self.stream)).await {
                Err(_) => panic!(
                    "the server kept the connection open past {limit:?}; frames so far: {frames:?}"
                ),
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return frames,
            }
        }
    }
}

/// Reads one server frame (unmasked); None at EOF or on a reset.
async fn read_frame(stream: &mut TcpStream) -> Option<RawFrame> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.ok()?;
    let fin = header[0] & 0x80 != 0;
    let opcode = header[0] & 0x0F;
    assert_eq!(header[1] & 0x80, 0, "server frames are not masked");
    let len = match header[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await.ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).expect("frame length fits")];
    stream.read_exact(&mut payload).await.ok()?;
    Some(RawFrame {
        fin,
        opcode,
        payload,
    })
}

/// Encodes a client frame (masked, as RFC 6455 requires of clients).
pub fn encode_client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}
