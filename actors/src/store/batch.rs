//! One append's records, encoded once in the log's record format (`embedded::codec`, which the
//! Redis store keeps per record too) by the document's driver before the write starts: the write
//! then owns bytes, and the document's history keeps plain records that nothing else shares.

use std::io;

use super::embedded::codec;
use super::{LogRecord, StoreError};

/// Consecutive records, encoded: the bytes of each one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendBatch {
    first_rev: u64,
    bytes: Vec<u8>,
    /// Where each record's bytes end in `bytes`.
    ends: Vec<usize>,
}

impl AppendBatch {
    /// Encodes `records`, which must have consecutive revisions from 1 or more; refuses anything
    /// else (and a record the format cannot hold) with an `InvalidInput` error.
    pub fn encode<'a>(
        records: impl ExactSizeIterator<Item = &'a LogRecord>,
    ) -> Result<AppendBatch, StoreError> {
        let count = records.len();
        let mut batch = AppendBatch {
            first_rev: 0,
            bytes: Vec::with_capacity(64 * count),
            ends: Vec::with_capacity(count),
        };
        for (index, record) in records.enumerate() {
            if index == 0 {
                batch.first_rev = record.rev;
            }
            let expected = batch.first_rev.saturating_add(index as u64);
            if record.rev == 0 || record.rev != expected {
                return Err(invalid(format!(
                    "record {index} of an append has revision {} where {expected} comes next",
                    record.rev
                )));
            }
            codec::encode_record(record, index as u64, count as u64, &mut batch.bytes)
                .map_err(invalid)?;
            batch.ends.push(batch.bytes.len());
        }
        Ok(batch)
    }

    /// Revision of the first record (0 when empty).
    pub fn first_rev(&self) -> u64 {
        self.first_rev
    }

    /// Revision of the last record (0 when empty).
    pub fn last_rev(&self) -> u64 {
        (self.first_rev + self.len() as u64).saturating_sub(1)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every record's bytes, one after the other.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, for a writer that must own them (the embedded store appends them to its log as
    /// they are).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Where each record starts in [`bytes`](Self::bytes).
    pub fn starts(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        (0..self.ends.len()).map(|i| if i == 0 { 0 } else { self.ends[i - 1] })
    }

    /// Each record's bytes, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.starts()
            .zip(self.ends.iter())
            .map(|(start, &end)| &self.bytes[start..end])
    }
}

fn invalid(detail: String) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientId;
    use crate::ot::Op;

    fn record(rev: u64) -> LogRecord {
        LogRecord {
            rev,
            client: ClientId::from_stored("c0ffee"),
            seq: rev,
            op: Op::identity(3),
        }
    }

    #[test]
    fn records_are_encoded_one_after_the_other_and_decode_back() {
        let records = [record(4), record(5), record(6)];
        let batch = AppendBatch::encode(records.iter()).expect("consecutive");
        assert_eq!(
            (batch.first_rev(), batch.last_rev(), batch.len()),
            (4, 6, 3)
        );
        let pieces: Vec<&[u8]> = batch.records().collect();
        assert_eq!(pieces.concat(), batch.bytes());
        for (index, (piece, original)) in pieces.iter().zip(&records).enumerate() {
            let mut alone = Vec::new();
            codec::encode_record(original, index as u64, 3, &mut alone).expect("encodes");
            assert_eq!(*piece, &alone[..], "record {index}");
        }
        assert_eq!(
            batch.starts().collect::<Vec<_>>(),
            vec![0, pieces[0].len(), pieces[0].len() + pieces[1].len()]
        );
    }

    #[test]
    fn gaps_repeats_and_revision_zero_are_refused() {
        for revs in [vec![4, 6], vec![4, 4], vec![5, 4], vec![0, 1]] {
            let records: Vec<LogRecord> = revs.iter().map(|&r| record(r)).collect();
            let error = AppendBatch::encode(records.iter()).expect_err("refused");
            assert!(
                matches!(&error, StoreError::Io(e) if e.kind() == io::ErrorKind::InvalidInput),
                "{revs:?}: {error}"
            );
        }
        let empty = AppendBatch::encode(std::iter::empty()).expect("empty is fine");
        assert!(empty.is_empty());
    }
}
