//! Applying an op to a rope (in place, O(components · log n)) or to a string.

use ropey::Rope;

use super::op::{Component, Op, OpError};

impl Op {
    /// Applies to a rope whose len_chars() == base_len, in place with rope.insert / rope.remove; Err(LengthMismatch) if the length differs.
    pub fn apply(&self, rope: &mut Rope) -> Result<(), OpError> {
        let got = rope.len_chars();
        if got != self.base_len {
            return Err(OpError::LengthMismatch {
                expected: self.base_len,
                got,
            });
        }
        let mut position = 0;
        for component in &self.components {
            match component {
                Component::Retain(n) => position += n,
                Component::Delete(n) => rope.remove(position..position + n),
                Component::Insert(text) => {
                    rope.insert(position, text);
                    position += text.chars().count();
                }
            }
        }
        debug_assert_eq!(rope.len_chars(), self.target_len);
        Ok(())
    }

    /// Applies to a string whose code-point count equals base_len and returns the new text (for tests and tools).
    pub fn apply_to_str(&self, text: &str) -> Result<String, OpError> {
        let got = text.chars().count();
        if got != self.base_len {
            return Err(OpError::LengthMismatch {
                expected: self.base_len,
                got,
            });
        }
        let mut output = String::with_capacity(text.len() + self.inserted_bytes());
        let mut rest = text;
        for component in &self.components {
            match component {
                Component::Retain(n) => {
                    let (head, tail) = super::op::split_at_char(rest, *n);
                    output.push_str(head);
                    rest = tail;
                }
                Component::Delete(n) => rest = super::op::split_at_char(rest, *n).1,
                Component::Insert(inserted) => output.push_str(inserted),
            }
        }
        debug_assert!(rest.is_empty());
        Ok(output)
    }

    /// Number of bytes (UTF-8) the op inserts.
    fn inserted_bytes(&self) -> usize {
        self.components
            .iter()
            .map(|component| match component {
                Component::Insert(text) => text.len(),
                _ => 0,
            })
            .sum()
    }
}
