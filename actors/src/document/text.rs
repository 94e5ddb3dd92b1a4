//! The text of a document at its durable revision: a rope addressed in code points.
//!
//! Wraps `jumprope`'s buffered rope, which merges runs of adjacent edits (typing, backspacing)
//! before touching its skip list. In the sequential trace replay it applies an edit in a fraction
//! of the time `ropey` takes (docs/BENCHMARKS.md), and ropey's line and UTF-16 indexes are not
//! needed here. Everything outside the document core sees only this type.

use std::fmt;
use std::ops::Range;

use jumprope::JumpRopeBuf;

use crate::ot::TextBuffer;

/// A document's text.
#[derive(Clone, Default)]
pub struct DocumentText(JumpRopeBuf);

impl DocumentText {
    /// An empty text.
    pub fn new() -> Self {
        DocumentText(JumpRopeBuf::new())
    }

    /// Length in code points.
    pub fn len_chars(&self) -> usize {
        self.0.len_chars()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len_chars() == 0
    }

    /// The whole text as one `String`, allocated once at its final size (`to_string` grows it
    /// chunk by chunk: a snapshot of a large document was a visible share of the replay).
    pub fn to_text(&self) -> String {
        let rope = self.0.borrow();
        let mut out = String::with_capacity(rope.len_bytes());
        for chunk in rope.substrings() {
            out.push_str(chunk);
        }
        out
    }
}

impl From<&str> for DocumentText {
    fn from(text: &str) -> Self {
        DocumentText(JumpRopeBuf::new_from_str(text))
    }
}

impl TextBuffer for DocumentText {
    fn len_chars(&self) -> usize {
        self.0.len_chars()
    }
    fn insert(&mut self, at: usize, text: &str) {
        self.0.insert(at, text)
    }
    fn remove(&mut self, range: Range<usize>) {
        self.0.remove(range)
    }
}

impl fmt::Display for DocumentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DocumentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentText({} chars)", self.len_chars())
    }
}

impl PartialEq<str> for DocumentText {
    fn eq(&self, other: &str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for DocumentText {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other.as_str()
    }
}

impl PartialEq<&str> for DocumentText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::{Op, RawComponent, RawOp};

    #[test]
    fn edits_count_code_points_and_read_back_after_buffered_runs() {
        let mut text = DocumentText::from("héllo 😀");
        assert_eq!(text.len_chars(), 7);
        // A run of adjacent inserts and a backspace, then a distant edit (flushes the buffer).
        text.insert(7, "!");
        text.insert(8, "?");
        text.remove(8..9);
        text.insert(0, "¡");
        assert_eq!(text.len_chars(), 9);
        assert_eq!(text.to_string(), "¡héllo 😀!");
        assert_eq!(text.to_text(), "¡héllo 😀!");
        assert!(text == "¡héllo 😀!");
        let op = Op::from_raw(
            RawOp(smallvec::smallvec![
                RawComponent::Retain(1),
                RawComponent::Delete(5),
                RawComponent::Insert("hi".into()),
                RawComponent::Retain(3),
            ]),
            9,
        )
        .expect("valid");
        op.apply(&mut text).expect("applies");
        assert_eq!(text.to_string(), "¡hi 😀!");
        assert!(op.apply(&mut text).is_err(), "wrong base length is refused");
    }
}
