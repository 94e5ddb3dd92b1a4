//! Applying an op in place to any [`TextBuffer`] (a rope: O(components · log n)) or to a string.

use std::ops::Range;

use super::op::{Component, Op, OpError};

/// Text that an op can edit in place, addressed in code points.
pub trait TextBuffer {
    /// Length in code points.
    fn len_chars(&self) -> usize;
    /// Inserts `text` before code point `at` (`at <= len_chars()`).
    fn insert(&mut self, at: usize, text: &str);
    /// Removes the code points in `range` (within `0..=len_chars()`).
    fn remove(&mut self, range: Range<usize>);
}

impl TextBuffer for ropey::Rope {
    fn len_chars(&self) -> usize {
        ropey::Rope::len_chars(self)
    }
    fn insert(&mut self, at: usize, text: &str) {
        ropey::Rope::insert(self, at, text)
    }
    fn remove(&mut self, range: Range<usize>) {
        ropey::Rope::remove(self, range)
    }
}

impl Op {
    /// Applies to text whose length is base_len, in place with insert / remove; Err(LengthMismatch) if the length differs.
    pub fn apply<T: TextBuffer + ?Sized>(&self, rope: &mut T) -> Result<(), OpError> {
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

    /// Rough size of the op's JSON encoding, to size buffers.
    pub(crate) fn encoded_len_hint(&self) -> usize {
        self.inserted_bytes() + 12 * self.components.len() + 2
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
