//! A minimal Redis client over raw TCP (RESP2), enough for the chaos tests to look at what the
//! cluster wrote: members, liveness keys, document owners. Every call has a deadline.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one command (or one pipelined batch) may take before the test gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:n`
    Integer(i64),
    /// `$n …` (None for the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*n …` (None for the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string); None for null or other kinds.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply as an integer.
    pub fn integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an array reply (empty for a null array).
    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items.clone(),
            _ => Vec::new(),
        }
    }
}

/// One connection to a Redis server.
pub struct Resp {
    stream: BufReader<TcpStream>,
}

impl Resp {
    /// Connects to `127.0.0.1:port`.
    pub async fn connect(port: u16) -> std::io::Result<Resp> {
        let stream = tokio::time::timeout(COMMAND_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting to redis")
            })??;
        stream.set_nodelay(true)?;
        Ok(Resp {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply.
    pub async fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut replies = self
            .pipeline(&[args.iter().map(|a| a.to_string()).collect()])
            .await?;
        Ok(replies.remove(0))
    }

    /// Sends several commands at once and reads their replies, in order.
    pub async fn pipeline(&mut self, commands: &[Vec<String>]) -> std::io::Result<Vec<Reply>> {
        let work = async {
            let mut out = Vec::new();
            for args in commands {
                out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
                for arg in args {
                    out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                    out.extend_from_slice(arg.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            self.stream.get_mut().write_all(&out).await?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                replies.push(read_reply(&mut self.stream).await?);
            }
            Ok(replies)
        };
        tokio::time::timeout(COMMAND_TIMEOUT, work)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time")
            })?
    }
}

fn protocol_error(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    let n = stream.read_line(&mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one reply; arrays recurse (boxed, since async recursion needs it).
fn read_reply(
    stream: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| protocol_error(format!("bad RESP line {line:?}")))
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut data = vec![0u8; n as usize + 2];
                stream.read_exact(&mut data).await?;
                data.truncate(n as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(stream).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(protocol_error(format!("unknown RESP reply {line:?}"))),
        }
    })
}
