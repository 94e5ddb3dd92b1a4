//! Byte layout of the embedded store's files (log header, log record frames, snapshot) with decoding that checks every bound and never panics.
//!
//! All integers are little-endian. `varint` is unsigned LEB128 (at most 10 bytes for a `u64`).
//!
//! Log file: a header, then records.
//! - header: magic `CHORUSLG`, format version `u32`, doc id length `u32`, doc id (UTF-8),
//!   crc32 `u32` of everything before it.
//! - record frame: `[payload length u32][crc32 u32 of payload][payload]`.
//! - payload: rev `u64`, batch index `varint`, batch length `varint`, client id length `varint`,
//!   client id (UTF-8), seq `u64`, op base length `varint`, component count `varint`, then per
//!   component a tag byte (`0` retain, `1` delete: `varint` length; `2` insert: `varint` byte
//!   length then UTF-8 text).
//!
//! The batch index and length say which `append` call wrote a record (record `index` of `len`),
//! so recovery can tell a torn final write from damage to earlier, acknowledged writes.
//!
//! Snapshot file: magic `CHORUSSN`, format version `u32`, doc id length `u32`, doc id, rev `u64`,
//! text byte length `u64`, text (UTF-8), client count `u32`, per client: id length `u32`, id,
//! seq `u64`, rev `u64`; then crc32 `u32` of everything before it.

use crate::ids::{ClientId, DocId};
use crate::ot::{Component, Op, MAX_COMPONENT};
use crate::store::{ClientSeq, LogRecord, Snapshot};

/// Largest record payload accepted, 256 MiB. One record holds one op, and ops are bounded far
/// below this by the server's frame and document limits; a length field above it can only be
/// damage, and must be reported as corruption rather than trusted for an allocation.
pub(crate) const MAX_RECORD_BYTES: usize = 256 << 20;

/// Largest snapshot file accepted, 4 GiB: a document's text is held in memory (a rope), so a
/// larger file cannot be one this server wrote.
pub(super) const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// Longest stored document id, in bytes: ids are at most 256 ASCII characters (see
/// [`crate::ids::MAX_DOC_ID_LEN`]); the slack only keeps the check independent of that limit.
const MAX_DOC_ID_BYTES: usize = 1024;

/// Longest stored client id, in bytes: issued ids are 32 hex characters; anything near this
/// bound is damage.
pub(super) const MAX_CLIENT_ID_BYTES: usize = 1024;

/// Largest revision accepted in a file, 2^62. Revisions count ops, so no document comes near it;
/// the bound keeps `rev + count` arithmetic on stored values free of overflow.
pub(crate) const MAX_REV: u64 = 1 << 62;

/// Bytes before a record's payload: length and checksum.
pub(super) const FRAME_HEADER_BYTES: usize = 8;

/// First bytes of every log file.
const LOG_MAGIC: [u8; 8] = *b"CHORUSLG";

/// First bytes of every snapshot file.
const SNAPSHOT_MAGIC: [u8; 8] = *b"CHORUSSN";

/// Version of the layout described above; a file with another version is refused.
const FORMAT_VERSION: u32 = 1;

/// Component tags in a record payload.
const TAG_RETAIN: u8 = 0;
const TAG_DELETE: u8 = 1;
const TAG_INSERT: u8 = 2;

/// A record as decoded from the log, with the position it had in the `append` that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodedRecord {
    /// The record.
    pub record: LogRecord,
    /// Index of this record within its write (0-based).
    pub batch_index: u64,
    /// Number of records in its write.
    pub batch_len: u64,
}

impl DecodedRecord {
    /// Revision of the first record of the write this record belongs to.
    fn batch_first_rev(&self) -> u64 {
        // Decoding guarantees batch_index < rev.
        self.record.rev - self.batch_index
    }

    /// Whether this record's write had more records after it.
    fn batch_continues(&self) -> bool {
        self.batch_index + 1 < self.batch_len
    }
}

/// What reading the records of a log file found.
#[derive(Debug)]
pub(super) struct LogScan {
    /// Every good record with its byte offset in the file, in file order.
    pub records: Vec<(u64, DecodedRecord)>,
    /// Length of the file up to the end of the last good record.
    pub valid_len: u64,
    /// Why the bytes after `valid_len` were judged a torn final write, if there are any.
    pub torn: Option<String>,
}

/// Where and why a log is corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CorruptAt {
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong there.
    pub detail: String,
}

/// Appends the log header for `doc` to `out`.
pub(super) fn encode_log_header(doc: &DocId, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&LOG_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    put_len_u32(out, doc.as_str().as_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Decodes a log header: the stored doc id and the header's length in bytes.
pub(super) fn decode_log_header(bytes: &[u8]) -> Result<(String, usize), String> {
    let mut reader = Reader::new(bytes);
    if reader.take(LOG_MAGIC.len())? != LOG_MAGIC {
        return Err("not a log file (bad magic)".to_owned());
    }
    let version = reader.u32()?;
    let id_len = reader.u32_len(MAX_DOC_ID_BYTES, "document id")?;
    let id = reader.str(id_len)?.to_owned();
    let covered = reader.position();
    let stored_crc = reader.u32()?;
    let crc = crc32fast::hash(bytes.get(..covered).unwrap_or_default());
    if crc != stored_crc {
        return Err(format!(
            "header checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        ));
    }
    if version != FORMAT_VERSION {
        return Err(format!("unsupported log format version {version}"));
    }
    Ok((id, reader.position()))
}

/// Appends one record frame to `out`: record `batch_index` of a write of `batch_len` records.
/// Refuses (writing nothing) a record that could not be read back: an oversized payload or
/// client id, or a revision the batch position cannot belong to.
pub(crate) fn encode_record(
    record: &LogRecord,
    batch_index: u64,
    batch_len: u64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if batch_index >= batch_len || batch_index >= record.rev || record.rev > MAX_REV {
        return Err(format!(
            "record {batch_index} of {batch_len} in one write cannot have revision {}",
            record.rev
        ));
    }
    let client = record.client.as_str().as_bytes();
    if client.len() > MAX_CLIENT_ID_BYTES {
        return Err(format!(
            "client id is {} bytes, over {MAX_CLIENT_ID_BYTES}",
            client.len()
        ));
    }
    let frame_start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let payload_start = out.len();
    out.extend_from_slice(&record.rev.to_le_bytes());
    put_varint(out, batch_index);
    put_varint(out, batch_len);
    put_varint(out, client.len() as u64);
    out.extend_from_slice(client);
    out.extend_from_slice(&record.seq.to_le_bytes());
    put_varint(out, record.op.base_len() as u64);
    let components = record.op.components();
    put_varint(out, components.len() as u64);
    for component in components {
        match component {
            Component::Retain(n) => {
                out.push(TAG_RETAIN);
                put_varint(out, *n as u64);
            }
            Component::Delete(n) => {
                out.push(TAG_DELETE);
                put_varint(out, *n as u64);
            }
            Component::Insert(text) => {
                out.push(TAG_INSERT);
                put_varint(out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    let payload_len = out.len() - payload_start;
    if payload_len > MAX_RECORD_BYTES {
        out.truncate(frame_start);
        return Err(format!(
            "record of {payload_len} bytes is over {MAX_RECORD_BYTES}"
        ));
    }
    let crc = crc32fast::hash(&out[payload_start..]);
    // payload_len <= MAX_RECORD_BYTES < u32::MAX.
    out[frame_start..frame_start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[frame_start + 4..payload_start].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes a record payload (after its checksum was verified).
pub(super) fn decode_payload(payload: &[u8]) -> Result<DecodedRecord, String> {
    let mut reader = Reader::new(payload);
    let rev = reader.u64()?;
    let batch_index = reader.varint()?;
    let batch_len = reader.varint()?;
    if batch_index >= batch_len || batch_index >= rev || rev > MAX_REV {
        return Err(format!(
            "record {batch_index} of {batch_len} in one write cannot have revision {rev}"
        ));
    }
    let client_len = reader.varint_len(MAX_CLIENT_ID_BYTES, "client id")?;
    let client = ClientId::from_stored(reader.str(client_len)?);
    let seq = reader.u64()?;
    let base_len = reader.varint_usize()?;
    // Inserted code points are fewer than payload bytes, so with this bound the op's lengths
    // cannot overflow while it is built.
    if base_len as u64 > MAX_COMPONENT || base_len.checked_add(payload.len()).is_none() {
        return Err(format!("op base length {base_len} is over {MAX_COMPONENT}"));
    }
    let count = reader.varint()?;
    // Every component takes at least two bytes, so a count beyond that is damage.
    if count > (reader.remaining() / 2) as u64 {
        return Err(format!(
            "{count} components cannot fit in {} bytes",
            reader.remaining()
        ));
    }
    let mut components = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let component = match reader.u8()? {
            TAG_RETAIN => Component::Retain(reader.varint_usize()?),
            TAG_DELETE => Component::Delete(reader.varint_usize()?),
            TAG_INSERT => {
                let len = reader.varint_len(usize::MAX, "insert")?;
                Component::Insert(reader.str(len)?.into())
            }
            tag => return Err(format!("unknown component tag {tag}")),
        };
        components.push(component);
    }
    reader.finish()?;
    let op = if components.is_empty() && base_len == 0 {
        // The only normalized op without components: the no-op on an empty document.
        Op::identity(0)
    } else {
        Op::from_components(components, base_len).map_err(|error| format!("invalid op: {error}"))?
    };
    Ok(DecodedRecord {
        record: LogRecord {
            rev,
            client,
            seq,
            op,
        },
        batch_index,
        batch_len,
    })
}

/// Why the bytes at some offset are not a good record.
pub(crate) enum FrameFault {
    /// Not a complete frame with a matching checksum: what a torn write leaves.
    Bad(String),
    /// A frame whose checksum matches but whose payload does not decode: never torn, always
    /// damage (or a bug).
    Undecodable(String),
}

/// Reads the record frame starting at `at`: the record and the offset just past it.
pub(crate) fn read_frame(bytes: &[u8], at: usize) -> Result<(DecodedRecord, usize), FrameFault> {
    let available = bytes.len().saturating_sub(at);
    let header = bytes
        .get(at..)
        .and_then(|rest| rest.get(..FRAME_HEADER_BYTES))
        .ok_or_else(|| FrameFault::Bad(format!("incomplete record header ({available} bytes)")))?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        // An empty payload has crc 0, so a run of zero bytes (what some file systems show after a
        // crash) would otherwise pass as records.
        return Err(FrameFault::Bad("zero record length".to_owned()));
    }
    if len > MAX_RECORD_BYTES {
        return Err(FrameFault::Bad(format!(
            "record length {len} is over {MAX_RECORD_BYTES}"
        )));
    }
    let start = at + FRAME_HEADER_BYTES;
    let payload = start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| {
            FrameFault::Bad(format!(
                "incomplete record ({len}-byte payload, {} bytes present)",
                available - FRAME_HEADER_BYTES
            ))
        })?;
    let crc = crc32fast::hash(payload);
    if crc != stored_crc {
        return Err(FrameFault::Bad(format!(
            "record checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        )));
    }
    let record = decode_payload(payload).map_err(FrameFault::Undecodable)?;
    Ok((record, start + len))
}

/// Reads the records of a log file from `start` (the end of its header) to the end.
///
/// A bad frame is a torn final write (and `torn` says why) when nothing after it is a good
/// record, or when every good record after it belongs to the same write as the bad frame: the
/// file system may persist the pages of an unfinished write in any order. Any other bad frame,
/// and any frame whose checksum matches but which does not decode, is corruption.
pub(super) fn scan_log(bytes: &[u8], start: usize) -> Result<LogScan, CorruptAt> {
    let mut records: Vec<(u64, DecodedRecord)> = Vec::new();
    let mut at = start;
    while at < bytes.len() {
        match read_frame(bytes, at) {
            Ok((record, end)) => {
                records.push((at as u64, record));
                at = end;
            }
            Err(FrameFault::Undecodable(detail)) => {
                return Err(CorruptAt {
                    offset: at as u64,
                    detail,
                });
            }
            Err(FrameFault::Bad(detail)) => {
                check_torn_tail(bytes, at, records.last().map(|(_, record)| record), &detail)?;
                let dropped = bytes.len() - at;
                return Ok(LogScan {
                    records,
                    valid_len: at as u64,
                    torn: Some(format!(
                        "{detail}; {dropped} bytes from an unfinished write"
                    )),
                });
            }
        }
    }
    Ok(LogScan {
        records,
        valid_len: at as u64,
        torn: None,
    })
}

/// Counts the good record frames that exactly fill `bytes`. For ranges whose records were all
/// acknowledged (compaction copies them), so any fault is corruption, never a torn tail.
pub(super) fn count_frames(bytes: &[u8]) -> Result<usize, CorruptAt> {
    let mut count = 0;
    let mut at = 0;
    while at < bytes.len() {
        match read_frame(bytes, at) {
            Ok((_, end)) => {
                count += 1;
                at = end;
            }
            Err(FrameFault::Bad(detail) | FrameFault::Undecodable(detail)) => {
                return Err(CorruptAt {
                    offset: at as u64,
                    detail,
                });
            }
        }
    }
    Ok(count)
}

/// Decides whether the bad frame at `bad_at` can be the torn final write: every good frame found
/// after it must belong to the write that was in progress at `bad_at`.
fn check_torn_tail(
    bytes: &[u8],
    bad_at: usize,
    last_good: Option<&DecodedRecord>,
    detail: &str,
) -> Result<(), CorruptAt> {
    // The write in progress at bad_at: the unfinished write of the last good record, or a new
    // write that starts at bad_at (its first record is the bad one).
    let (first_rev, min_index, batch_len) = match last_good {
        Some(last) if last.batch_continues() => (
            Some(last.batch_first_rev()),
            last.batch_index + 1,
            Some(last.batch_len),
        ),
        Some(last) => (Some(last.record.rev + 1), 1, None),
        None => (None, 1, None),
    };
    let mut first_rev = first_rev;
    let mut batch_len = batch_len;
    let mut at = bad_at + 1;
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        let Ok((record, end)) = read_frame(bytes, at) else {
            at += 1;
            continue;
        };
        let same_write = first_rev.is_none_or(|rev| rev == record.batch_first_rev())
            && batch_len.is_none_or(|len| len == record.batch_len)
            && record.batch_index >= min_index;
        if !same_write {
            return Err(CorruptAt {
                offset: bad_at as u64,
                detail: format!(
                    "{detail}, but a good record (revision {}) follows at byte offset {at}",
                    record.record.rev
                ),
            });
        }
        first_rev = Some(record.batch_first_rev());
        batch_len = Some(record.batch_len);
        at = end;
    }
    Ok(())
}

/// Encodes a whole snapshot file for `doc`.
pub(crate) fn encode_snapshot(doc: &DocId, snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64 + snapshot.text.len() + 64 * snapshot.clients.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    put_len_u32(&mut out, doc.as_str().as_bytes());
    out.extend_from_slice(&snapshot.rev.to_le_bytes());
    out.extend_from_slice(&(snapshot.text.len() as u64).to_le_bytes());
    out.extend_from_slice(snapshot.text.as_bytes());
    let count = u32::try_from(snapshot.clients.len())
        .map_err(|_| format!("{} clients in one snapshot", snapshot.clients.len()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for client in &snapshot.clients {
        let id = client.client.as_str().as_bytes();
        if id.len() > MAX_CLIENT_ID_BYTES {
            return Err(format!(
                "client id is {} bytes, over {MAX_CLIENT_ID_BYTES}",
                id.len()
            ));
        }
        put_len_u32(&mut out, id);
        out.extend_from_slice(&client.seq.to_le_bytes());
        out.extend_from_slice(&client.rev.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    if snapshot.rev > MAX_REV {
        return Err(format!("revision {} is over {MAX_REV}", snapshot.rev));
    }
    if out.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(format!(
            "snapshot of {} bytes is over {MAX_SNAPSHOT_BYTES}",
            out.len()
        ));
    }
    Ok(out)
}

/// Decodes a snapshot file: the stored doc id and the snapshot.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<(String, Snapshot), String> {
    let Some(covered) = bytes.len().checked_sub(4) else {
        return Err(format!("{} bytes is too short for a snapshot", bytes.len()));
    };
    let (body, crc_bytes) = bytes.split_at(covered);
    let stored_crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let crc = crc32fast::hash(body);
    if crc != stored_crc {
        return Err(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        ));
    }
    let mut reader = Reader::new(body);
    if reader.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
        return Err("not a snapshot file (bad magic)".to_owned());
    }
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!("unsupported snapshot format version {version}"));
    }
    let id_len = reader.u32_len(MAX_DOC_ID_BYTES, "document id")?;
    let id = reader.str(id_len)?.to_owned();
    let rev = reader.u64()?;
    if rev > MAX_REV {
        return Err(format!("revision {rev} is over {MAX_REV}"));
    }
    let text_len =
        usize::try_from(reader.u64()?).map_err(|_| "text length overflows".to_owned())?;
    let text = reader.str(text_len)?.to_owned();
    let count = reader.u32()? as usize;
    // Every entry takes at least 20 bytes.
    if count > reader.remaining() / 20 {
        return Err(format!(
            "{count} clients cannot fit in {} bytes",
            reader.remaining()
        ));
    }
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let len = reader.u32_len(MAX_CLIENT_ID_BYTES, "client id")?;
        let client = ClientId::from_stored(reader.str(len)?);
        let seq = reader.u64()?;
        let rev = reader.u64()?;
        clients.push(ClientSeq { client, seq, rev });
    }
    reader.finish()?;
    Ok((id, Snapshot { rev, text, clients }))
}

/// Appends `bytes` with a `u32` length prefix; callers bound the length far below `u32::MAX`.
fn put_len_u32(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends `value` as unsigned LEB128.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over untrusted bytes: every read checks the remaining length and fails with a
/// description instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    fn position(&self) -> usize {
        self.position
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self
            .position
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.position..end))
            .ok_or_else(|| {
                format!(
                    "needs {n} bytes at byte {}, only {} left",
                    self.position,
                    self.remaining()
                )
            })?;
        self.position += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let slice = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("varint overflows 64 bits".to_owned());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    fn varint_usize(&mut self) -> Result<usize, String> {
        usize::try_from(self.varint()?).map_err(|_| "length overflows usize".to_owned())
    }

    /// A `varint` length of at most `max` (and of what is left).
    fn varint_len(&mut self, max: usize, what: &str) -> Result<usize, String> {
        let len = self.varint()?;
        self.check_len(len, max, what)
    }

    /// A `u32` length of at most `max` (and of what is left).
    fn u32_len(&mut self, max: usize, what: &str) -> Result<usize, String> {
        let len = self.u32()?;
        self.check_len(u64::from(len), max, what)
    }

    fn check_len(&self, len: u64, max: usize, what: &str) -> Result<usize, String> {
        if len > max as u64 || len > self.remaining() as u64 {
            return Err(format!(
                "{what} length {len} is over the limit or what is left"
            ));
        }
        Ok(len as usize)
    }

    fn str(&mut self, len: usize) -> Result<&'a str, String> {
        let at = self.position;
        std::str::from_utf8(self.take(len)?).map_err(|_| format!("invalid UTF-8 at byte {at}"))
    }

    fn finish(&self) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(format!("{extra} unexpected bytes at the end")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(rev: u64, components: Vec<Component>, base_len: usize) -> LogRecord {
        LogRecord {
            rev,
            client: ClientId::from_stored("0123456789abcdef0123456789abcdef"),
            seq: rev * 3,
            op: Op::from_components(components, base_len).expect("valid test op"),
        }
    }

    fn frame(record: &LogRecord, index: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(record, index, len, &mut out).expect("encodable");
        out
    }

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Reader::new(&out).varint(), Ok(value));
        }
        assert!(Reader::new(&[0xff; 10]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(Reader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn records_round_trip() {
        let original = record(
            7,
            vec![
                Component::Retain(2),
                Component::Insert("hé🦀".into()),
                Component::Delete(1),
            ],
            5,
        );
        let bytes = frame(&original, 2, 3);
        let (decoded, end) = read_frame(&bytes, 0).ok().expect("good frame");
        assert_eq!(end, bytes.len());
        assert_eq!(
            decoded,
            DecodedRecord {
                record: original,
                batch_index: 2,
                batch_len: 3
            }
        );
    }

    #[test]
    fn the_empty_noop_round_trips() {
        let original = LogRecord {
            rev: 1,
            client: ClientId::from_stored("c"),
            seq: 1,
            op: Op::identity(0),
        };
        let bytes = frame(&original, 0, 1);
        let (decoded, _) = read_frame(&bytes, 0).ok().expect("good frame");
        assert_eq!(decoded.record, original);
    }

    /// A payload built by hand, for values `encode_record` refuses to write.
    fn raw_payload(rev: u64, base_len: u64, components: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = rev.to_le_bytes().to_vec();
        put_varint(&mut out, 0);
        put_varint(&mut out, 1);
        put_varint(&mut out, 1);
        out.push(b'c');
        out.extend_from_slice(&9u64.to_le_bytes());
        put_varint(&mut out, base_len);
        put_varint(&mut out, components.len() as u64);
        for (tag, body) in components {
            out.push(*tag);
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn out_of_range_stored_values_are_errors_not_panics() {
        let insert: &[u8] = &[1, b'a'];
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert!(decode_payload(&raw_payload(1, 0, &[(TAG_INSERT, insert)])).is_ok());
        assert!(decode_payload(&raw_payload(u64::MAX, 0, &[(TAG_INSERT, insert)])).is_err());
        assert!(decode_payload(&raw_payload(1, u64::MAX, &[(TAG_INSERT, insert)])).is_err());
        assert!(
            decode_payload(&raw_payload(1, MAX_COMPONENT + 1, &[(TAG_INSERT, insert)])).is_err()
        );
        assert!(decode_payload(&raw_payload(1, 5, &[(TAG_RETAIN, &huge)])).is_err());
        assert!(decode_payload(&raw_payload(1, 5, &[(TAG_DELETE, &[6])])).is_err());
        assert!(decode_payload(&raw_payload(1, 5, &[(TAG_RETAIN, &[0])])).is_err());
        assert!(decode_payload(&raw_payload(1, 5, &[(TAG_INSERT, &[2, 0xff, 0xfe])])).is_err());
        assert!(decode_payload(&raw_payload(1, 5, &[(7, &[1])])).is_err());
        assert!(
            decode_payload(&raw_payload(1, 5, &[])).is_err(),
            "no components, base 5"
        );
        let mut trailing = raw_payload(1, 0, &[(TAG_INSERT, insert)]);
        trailing.push(0);
        assert!(decode_payload(&trailing).is_err());
    }

    #[test]
    fn impossible_batch_positions_are_refused() {
        let r = record(2, vec![Component::Insert("a".into())], 0);
        assert!(encode_record(&r, 2, 2, &mut Vec::new()).is_err());
        assert!(encode_record(&r, 2, 5, &mut Vec::new()).is_err());
    }

    #[test]
    fn snapshots_round_trip_and_detect_flips() {
        let doc = DocId::parse("a/b.rs").expect("valid id");
        let snapshot = Snapshot {
            rev: 42,
            text: "fn main() {}\n".into(),
            clients: vec![ClientSeq {
                client: ClientId::from_stored("x"),
                seq: 9,
                rev: 41,
            }],
        };
        let bytes = encode_snapshot(&doc, &snapshot).expect("encodable");
        assert_eq!(decode_snapshot(&bytes), Ok(("a/b.rs".to_owned(), snapshot)));
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert!(
                decode_snapshot(&flipped).is_err(),
                "flip at {i} went unnoticed"
            );
        }
        for len in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..len]).is_err());
        }
    }

    #[test]
    fn log_headers_round_trip() {
        let doc = DocId::parse("x").expect("valid id");
        let mut out = Vec::new();
        encode_log_header(&doc, &mut out);
        assert_eq!(decode_log_header(&out), Ok(("x".to_owned(), out.len())));
        for len in 0..out.len() {
            assert!(decode_log_header(&out[..len]).is_err());
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut bytes = frame(&record(1, vec![Component::Insert("a".into())], 0), 0, 1);
        let good = bytes.len();
        bytes.extend_from_slice(&[0; 4096]);
        let scan = scan_log(&bytes, 0).expect("torn, not corrupt");
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.valid_len, good as u64);
        assert!(scan.torn.is_some());
    }

    /// Three writes: [1], [2, 3, 4], [5]. Returns the bytes and each record's offset.
    fn three_writes() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        let writes: [&[u64]; 3] = [&[1], &[2, 3, 4], &[5]];
        for write in writes {
            for (index, rev) in write.iter().enumerate() {
                offsets.push(bytes.len());
                let r = record(*rev, vec![Component::Insert("ab".into())], 0);
                encode_record(&r, index as u64, write.len() as u64, &mut bytes).expect("encodable");
            }
        }
        (bytes, offsets)
    }

    #[test]
    fn a_hole_inside_the_final_write_is_torn() {
        let (bytes, offsets) = three_writes();
        // Only the last three records: one write [2, 3, 4] whose middle page never reached disk.
        let mut tail = bytes[..offsets[4]].to_vec();
        tail[offsets[2]..offsets[3]].fill(0);
        let scan = scan_log(&tail, 0).expect("torn, not corrupt");
        assert_eq!(scan.records.len(), 2, "keeps 1 and 2");
        assert_eq!(scan.valid_len, offsets[2] as u64);
        // A hole at the first record of the final write, with the rest of it present.
        let mut tail = bytes[..offsets[4]].to_vec();
        tail[offsets[1] + 3] ^= 1;
        let scan = scan_log(&tail, 0).expect("torn, not corrupt");
        assert_eq!(scan.records.len(), 1);
    }

    #[test]
    fn a_bad_record_before_a_later_write_is_corrupt() {
        let (bytes, offsets) = three_writes();
        for bad in 0..4 {
            let mut damaged = bytes.clone();
            damaged[offsets[bad] + FRAME_HEADER_BYTES + 1] ^= 0x40;
            let error = scan_log(&damaged, 0).expect_err("corrupt");
            assert_eq!(error.offset, offsets[bad] as u64, "{}", error.detail);
        }
        // The very last record is the final write: torn.
        let mut damaged = bytes.clone();
        damaged[offsets[4] + FRAME_HEADER_BYTES + 1] ^= 0x40;
        assert_eq!(
            scan_log(&damaged, 0).expect("torn").valid_len,
            offsets[4] as u64
        );
    }

    fn component() -> impl Strategy<Value = Component> {
        prop_oneof![
            (1usize..1000).prop_map(Component::Retain),
            (1usize..1000).prop_map(Component::Delete),
            "\\PC{1,8}".prop_map(|s: String| Component::Insert(s.into())),
        ]
    }

    proptest! {
        #[test]
        fn ops_round_trip(components in proptest::collection::vec(component(), 1..12), extra in 0usize..50, rev in 1u64..1_000_000, seq: u64) {
            let reach: usize = components.iter().map(|c| match c {
                Component::Retain(n) | Component::Delete(n) => *n,
                Component::Insert(_) => 0,
            }).sum();
            let op = Op::from_components(components, reach + extra).expect("valid op");
            let original = LogRecord { rev, client: ClientId::from_stored("c1"), seq, op };
            let mut bytes = Vec::new();
            encode_record(&original, 0, 1, &mut bytes).expect("encodable");
            let (decoded, _) = read_frame(&bytes, 0).ok().expect("good frame");
            prop_assert_eq!(decoded.record, original);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_payload(&bytes);
            let _ = decode_snapshot(&bytes);
            let _ = decode_log_header(&bytes);
            let _ = scan_log(&bytes, 0);
        }

        #[test]
        fn flipped_payload_bytes_never_panic(flip_at in 0usize..4096, flip in 1u8..=255) {
            let (mut bytes, _) = three_writes();
            let at = flip_at % bytes.len();
            bytes[at] ^= flip;
            let _ = scan_log(&bytes, 0);
        }
    }
}
