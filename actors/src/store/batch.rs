//! One append's records, encoded once in the log's record format (`embedded::codec`, which the
//! Redis store keeps per record too) by the document's driver before the write starts: the write
//! then owns bytes, and the document's history keeps plain records that nothing else shares.

use std::io;
use std::ops::RangeInclusive;

use super::embedded::codec;
use super::{LogRecord, StoreError};

/// The records of one append (at least one, consecutive revisions), encoded: the bytes of each
/// one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendBatch {
    first_rev: u64,
    bytes: Vec<u8>,
    /// Where each record's bytes end in `bytes`.
    ends: Vec<usize>,
}

impl AppendBatch {
    /// Encodes `records`, which must be exactly the revisions `revs` (1 or more, at least one
    /// record, in order). Anything else, and a record the format cannot hold, is refused with an
    /// `InvalidInput` error: nothing is written, so nothing can be acknowledged by mistake.
    pub fn encode<'a>(
        revs: RangeInclusive<u64>,
        records: impl ExactSizeIterator<Item = &'a LogRecord>,
    ) -> Result<AppendBatch, StoreError> {
        let (first_rev, last_rev) = (*revs.start(), *revs.end());
        let count = records.len();
        if count == 0
            || first_rev == 0
            || first_rev > last_rev
            || last_rev - first_rev != count as u64 - 1
        {
            return Err(invalid(format!(
                "an append of revisions {first_rev}..={last_rev} was given {count} records"
            )));
        }
        let mut batch = AppendBatch {
            first_rev,
            bytes: Vec::with_capacity(64 * count),
            ends: Vec::with_capacity(count),
        };
        for (index, record) in records.enumerate() {
            let expected = first_rev + index as u64;
            if record.rev != expected {
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

    /// Revision of the first record.
    pub fn first_rev(&self) -> u64 {
        self.first_rev
    }

    /// Revision of the last record.
    pub fn last_rev(&self) -> u64 {
        self.first_rev + self.ends.len() as u64 - 1
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
        let batch = AppendBatch::encode(4..=6, records.iter()).expect("consecutive");
        assert_eq!(
            (batch.first_rev(), batch.last_rev(), batch.records().len()),
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
    fn anything_but_exactly_the_given_revisions_is_refused() {
        let refused = |revs: RangeInclusive<u64>, records: &[u64]| {
            let records: Vec<LogRecord> = records.iter().map(|&r| record(r)).collect();
            let error = AppendBatch::encode(revs.clone(), records.iter()).expect_err("refused");
            assert!(
                matches!(&error, StoreError::Io(e) if e.kind() == io::ErrorKind::InvalidInput),
                "{revs:?} {records:?}: {error}"
            );
        };
        // Gaps, repeats, disorder, revision 0.
        refused(4..=5, &[4, 6]);
        refused(4..=5, &[4, 4]);
        refused(4..=5, &[5, 4]);
        refused(0..=1, &[0, 1]);
        // Not the job's revisions: too few, too many, none, shifted.
        refused(4..=6, &[4, 5]);
        refused(4..=5, &[4, 5, 6]);
        refused(4..=4, &[]);
        refused(5..=6, &[4, 5]);
    }
}
