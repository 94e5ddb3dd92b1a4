//! Composing two consecutive ops into one.

use super::op::{Op, OpBuilder, OpError, Piece, Pieces};

impl Op {
    /// self then next, as one op; next.base_len() must equal self.target_len().
    pub fn compose(&self, next: &Op) -> Result<Op, OpError> {
        if next.base_len != self.target_len {
            return Err(OpError::LengthMismatch {
                expected: self.target_len,
                got: next.base_len,
            });
        }
        let mut builder = OpBuilder::with_capacity(self.components.len() + next.components.len());
        let mut first = Pieces::new(self);
        let mut second = Pieces::new(next);
        loop {
            match (first.peek(), second.peek()) {
                (None, None) => break,
                // Deletes of the first op touch nothing the second op sees.
                (Some(Piece::Delete(n)), _) => {
                    builder.delete(n);
                    first.advance(n);
                }
                // Inserts of the second op touch nothing of the first op's base.
                (_, Some(Piece::Insert(text, n))) => {
                    builder.insert(text, n);
                    second.advance(n);
                }
                (Some(Piece::Retain(n)), Some(Piece::Retain(m))) => {
                    let k = n.min(m);
                    builder.retain(k);
                    first.advance(k);
                    second.advance(k);
                }
                (Some(Piece::Retain(n)), Some(Piece::Delete(m))) => {
                    let k = n.min(m);
                    builder.delete(k);
                    first.advance(k);
                    second.advance(k);
                }
                (Some(Piece::Insert(_, n)), Some(Piece::Retain(m))) => {
                    let k = n.min(m);
                    let text = first.advance(k);
                    builder.insert(text, k);
                    second.advance(k);
                }
                // Inserted by the first op, deleted by the second: nothing remains.
                (Some(Piece::Insert(_, n)), Some(Piece::Delete(m))) => {
                    let k = n.min(m);
                    first.advance(k);
                    second.advance(k);
                }
                // Unreachable for ops built by this module: the lengths were checked above.
                (None, Some(_)) | (Some(_), None) => {
                    debug_assert!(false, "compose ran off the end of an op");
                    return Err(OpError::LengthMismatch {
                        expected: self.target_len,
                        got: next.base_len,
                    });
                }
            }
        }
        let composed = builder.finish();
        debug_assert_eq!(composed.base_len, self.base_len);
        debug_assert_eq!(composed.target_len, next.target_len);
        Ok(composed)
    }
}
