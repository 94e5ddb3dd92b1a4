//! Rebasing concurrent ops over each other (with the tie rule) and moving cursors over an op.

use super::op::{Component, Op, OpBuilder, OpError, Piece, Pieces};

impl Op {
    /// Concurrent ops on one base: (first', second') with apply(apply(d, first), second') == apply(apply(d, second), first'); on a same-position insert tie, first's insert ends up left.
    pub fn transform(first: &Op, second: &Op) -> Result<(Op, Op), OpError> {
        let (first_prime, second_prime) = transform_impl(first, second, true)?;
        match first_prime {
            Some(first_prime) => Ok((first_prime, second_prime)),
            // transform_impl always builds first' when asked to.
            None => Err(OpError::LengthMismatch {
                expected: first.base_len,
                got: second.base_len,
            }),
        }
    }

    /// Only second': self (the incoming op) rebased over an op the server already applied; builds no first'.
    ///
    /// Rebase over each op applied since the incoming op's base, one at a time, as the client
    /// does with its unacknowledged op: rebasing over their composition instead can place an
    /// insert differently where the applied ops deleted the text around it.
    pub fn transform_over(&self, applied_first: &Op) -> Result<Op, OpError> {
        transform_impl(applied_first, self, false).map(|(_, second_prime)| second_prime)
    }
}

/// The transform itself; builds first' only if `build_first` is set.
fn transform_impl(first: &Op, second: &Op, build_first: bool) -> Result<(Option<Op>, Op), OpError> {
    if first.base_len != second.base_len {
        return Err(OpError::LengthMismatch {
            expected: first.base_len,
            got: second.base_len,
        });
    }
    let capacity = first.components.len() + second.components.len();
    let mut first_prime = build_first.then(|| OpBuilder::with_capacity(capacity));
    let mut second_prime = OpBuilder::with_capacity(capacity);
    let mut a = Pieces::new(first);
    let mut b = Pieces::new(second);
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            // Tie rule: the first op's insert is placed before anything the second op inserts
            // at the same position, so it ends up left.
            (Some(Piece::Insert(text, n)), _) => {
                if let Some(builder) = first_prime.as_mut() {
                    builder.insert(text, n);
                }
                second_prime.retain(n);
                a.advance(n);
            }
            (_, Some(Piece::Insert(text, n))) => {
                if let Some(builder) = first_prime.as_mut() {
                    builder.retain(n);
                }
                second_prime.insert(text, n);
                b.advance(n);
            }
            (Some(Piece::Retain(n)), Some(Piece::Retain(m))) => {
                let k = n.min(m);
                if let Some(builder) = first_prime.as_mut() {
                    builder.retain(k);
                }
                second_prime.retain(k);
                a.advance(k);
                b.advance(k);
            }
            // Both delete the same text: neither needs to delete it again.
            (Some(Piece::Delete(n)), Some(Piece::Delete(m))) => {
                let k = n.min(m);
                a.advance(k);
                b.advance(k);
            }
            (Some(Piece::Delete(n)), Some(Piece::Retain(m))) => {
                let k = n.min(m);
                if let Some(builder) = first_prime.as_mut() {
                    builder.delete(k);
                }
                a.advance(k);
                b.advance(k);
            }
            (Some(Piece::Retain(n)), Some(Piece::Delete(m))) => {
                let k = n.min(m);
                second_prime.delete(k);
                a.advance(k);
                b.advance(k);
            }
            // Unreachable for ops built by this module: the base lengths were checked above.
            (None, Some(_)) | (Some(_), None) => {
                debug_assert!(false, "transform ran off the end of an op");
                return Err(OpError::LengthMismatch {
                    expected: first.base_len,
                    got: second.base_len,
                });
            }
        }
    }
    let second_prime = second_prime.finish();
    debug_assert_eq!(second_prime.base_len, first.target_len);
    Ok((first_prime.map(OpBuilder::finish), second_prime))
}

/// Where a cursor position (code points, <= op.base_len()) lands after op: an insert exactly at the position moves it right; positions inside a deleted range move to the delete's start.
pub fn transform_position(position: usize, op: &Op) -> usize {
    // A position from outside may exceed the base; treat it as the end of the document.
    let mut position = position.min(op.base_len);
    // `old` walks the base document, `new` the target document.
    let mut old = 0;
    let mut new = 0;
    for component in &op.components {
        match component {
            Component::Retain(n) => {
                if position < old + n {
                    return new + (position - old);
                }
                old += n;
                new += n;
            }
            // Reached only while old <= position: an insert at or before the cursor pushes it.
            Component::Insert(text) => new += text.chars().count(),
            Component::Delete(n) => {
                if position < old + n {
                    // Inside the deleted range: continue from the range's end, which lands at
                    // the delete's start in the target.
                    position = old + n;
                }
                old += n;
            }
        }
    }
    debug_assert_eq!(position, old);
    new + (position - old)
}

/// Same for an [anchor, head] range pair.
pub fn transform_range(range: (usize, usize), op: &Op) -> (usize, usize) {
    (
        transform_position(range.0, op),
        transform_position(range.1, op),
    )
}
