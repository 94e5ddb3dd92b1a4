//! The op types, their validation and normalisation, and the builder that merges components.

/// Largest length a single retain or delete may have (2^40 code points, about a terabyte):
/// far above any document this server holds, far below overflow of `usize` sums on 64-bit targets.
pub const MAX_COMPONENT: u64 = 1 << 40;

/// Text an op inserts: up to 24 bytes are held inline (typing allocates nothing), longer text on
/// the heap.
pub type InsertText = compact_str::CompactString;

/// One step of an op, applied left to right from position 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// Skip over this many code points.
    Retain(usize),
    /// Remove this many code points.
    Delete(usize),
    /// Insert this text at the current position.
    Insert(InsertText),
}

/// A validated, normalized operation that spans its whole base document.
///
/// Invariants: no zero-length component; adjacent components of one kind are merged; an insert
/// and a delete at the same position are stored insert first; the components cover exactly
/// `base_len` code points of the base (a trailing retain is stored explicitly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub(crate) components: Vec<Component>,
    pub(crate) base_len: usize,
    pub(crate) target_len: usize,
}

/// Why an op was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The op has no component at all.
    #[error("an op must have at least one component")]
    Empty,
    /// A component is `0` or `""`.
    #[error("an op component must not be 0 or an empty string")]
    ZeroLength,
    /// A component is neither an integer nor a string (a float, a bool, null, an array, an object).
    #[error("an op component must be an integer (without fraction or exponent) or a string")]
    NotAnInteger,
    /// A retain or delete is longer than any document can be.
    #[error("an op component is longer than {MAX_COMPONENT} code points")]
    TooLong,
    /// The op reaches past the end of its base document.
    #[error("the op reaches code point {reach}, past the end of its {base_len}-code-point base document")]
    PastEnd {
        /// How far into the base document the op reaches (retains plus deletes).
        reach: usize,
        /// The length of the base document.
        base_len: usize,
    },
    /// A length precondition of compose, transform or apply does not hold.
    #[error("length mismatch: expected {expected} code points, got {got}")]
    LengthMismatch {
        /// The length required.
        expected: usize,
        /// The length found.
        got: usize,
    },
}

/// An op as decoded from the wire, before validation; becomes an [`Op`] through [`Op::from_raw`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawOp(pub RawComponents);

/// The components of a [`RawOp`]: held inline up to four (a client's op is nearly always
/// `[position, text or -count]`, optionally with a delete or trailing retain), so decoding an op
/// and dropping it after validation allocate nothing.
pub type RawComponents = smallvec::SmallVec<[RawComponent; 4]>;

/// One wire component as decoded, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawComponent {
    /// A non-negative integer.
    Retain(u64),
    /// A negative integer, by its absolute value.
    Delete(u64),
    /// A string.
    Insert(InsertText),
    /// Anything else (float, bool, null, array, object, integer beyond 64 bits), with the reason.
    Invalid(OpError),
}

impl Op {
    /// Validates a client's op against the length of the document it is based on: non-empty, no 0, no "", integers only, does not reach past base_len; adjacent same-kind components merged, insert-before-delete canonical order, trailing retain implied to reach base_len.
    pub fn from_raw(mut raw: RawOp, base_len: usize) -> Result<Op, OpError> {
        Op::from_raw_into(&mut raw, base_len, Vec::new())
    }

    /// Same as [`from_raw`](Self::from_raw), building the op in `components` (cleared first): a
    /// caller that recycles ops passes an old op's list to save an allocation. `raw` is left
    /// empty (taken by reference: an inline list is not copied to be moved).
    pub fn from_raw_into(
        raw: &mut RawOp,
        base_len: usize,
        mut components: Vec<Component>,
    ) -> Result<Op, OpError> {
        if raw.0.is_empty() {
            return Err(OpError::Empty);
        }
        components.clear();
        components.reserve(raw.0.len() + 1);
        let mut builder = OpBuilder::in_list(components);
        let mut reach: usize = 0;
        // Drained in place: moving the inline list into an iterator would copy it.
        for component in raw.0.drain(..) {
            match component {
                RawComponent::Retain(n) => {
                    let n = checked_length(n)?;
                    reach = check_reach(reach, n, base_len)?;
                    builder.retain(n);
                }
                RawComponent::Delete(n) => {
                    let n = checked_length(n)?;
                    reach = check_reach(reach, n, base_len)?;
                    builder.delete(n);
                }
                RawComponent::Insert(text) => {
                    if text.is_empty() {
                        return Err(OpError::ZeroLength);
                    }
                    let chars = text.chars().count();
                    builder.insert(text, chars);
                }
                RawComponent::Invalid(error) => return Err(error),
            }
        }
        builder.retain(base_len - reach);
        Ok(builder.finish())
    }

    /// Same, from typed components (used by stores, traces, tests). Zero-length components are rejected here too.
    pub fn from_components(components: Vec<Component>, base_len: usize) -> Result<Op, OpError> {
        if components.is_empty() {
            return Err(OpError::Empty);
        }
        let mut builder = OpBuilder::with_capacity(components.len() + 1);
        let mut reach: usize = 0;
        for component in components {
            match component {
                Component::Retain(n) => {
                    let n = checked_length(n as u64)?;
                    reach = check_reach(reach, n, base_len)?;
                    builder.retain(n);
                }
                Component::Delete(n) => {
                    let n = checked_length(n as u64)?;
                    reach = check_reach(reach, n, base_len)?;
                    builder.delete(n);
                }
                Component::Insert(text) => {
                    if text.is_empty() {
                        return Err(OpError::ZeroLength);
                    }
                    let chars = text.chars().count();
                    builder.insert(text, chars);
                }
            }
        }
        builder.retain(base_len - reach);
        Ok(builder.finish())
    }

    /// Empties the op and hands over its component list, emptied, for reuse by
    /// [`from_raw_into`](Self::from_raw_into) (inserted text is freed; a list grown by a large op
    /// is not kept, so what is kept for reuse holds nothing large). The op is then invalid until
    /// rebuilt.
    pub(crate) fn take_components(&mut self) -> Vec<Component> {
        /// Larger lists are freed rather than kept for the next op.
        const KEPT_CAPACITY: usize = 8;
        self.base_len = 0;
        self.target_len = 0;
        let mut components = std::mem::take(&mut self.components);
        if components.capacity() > KEPT_CAPACITY {
            return Vec::new();
        }
        components.clear();
        components
    }

    /// The op that retains a whole document of `len` code points and changes nothing.
    pub fn identity(len: usize) -> Op {
        let mut builder = OpBuilder::with_capacity(1);
        builder.retain(len);
        builder.finish()
    }

    /// Length in code points of the document this op applies to.
    pub fn base_len(&self) -> usize {
        self.base_len
    }

    /// Length in code points of the document this op produces.
    pub fn target_len(&self) -> usize {
        self.target_len
    }

    /// The normalized components, including the trailing retain if any.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The normalized components without a trailing retain (what goes on the wire).
    pub fn wire_components(&self) -> &[Component] {
        match self.components.split_last() {
            Some((Component::Retain(_), rest)) => rest,
            _ => &self.components,
        }
    }

    /// Whether the op changes nothing (only retains, or nothing at all on an empty document).
    pub fn is_noop(&self) -> bool {
        self.components
            .iter()
            .all(|component| matches!(component, Component::Retain(_)))
    }

    /// Number of code points the op inserts.
    pub fn inserted_chars(&self) -> usize {
        // target = base - deleted + inserted.
        self.target_len + self.deleted_chars() - self.base_len
    }

    /// Number of code points the op deletes.
    pub fn deleted_chars(&self) -> usize {
        self.components
            .iter()
            .map(|component| match component {
                Component::Delete(n) => *n,
                _ => 0,
            })
            .sum()
    }
}

/// Converts a wire length to `usize`, refusing 0 and anything longer than [`MAX_COMPONENT`].
fn checked_length(n: u64) -> Result<usize, OpError> {
    if n == 0 {
        return Err(OpError::ZeroLength);
    }
    if n > MAX_COMPONENT {
        return Err(OpError::TooLong);
    }
    usize::try_from(n).map_err(|_| OpError::TooLong)
}

/// Adds a retain or delete of `n` to `reach`, refusing a reach past `base_len`.
fn check_reach(reach: usize, n: usize, base_len: usize) -> Result<usize, OpError> {
    let reach = reach.saturating_add(n);
    if reach > base_len {
        return Err(OpError::PastEnd { reach, base_len });
    }
    Ok(reach)
}

/// Builds a normalized [`Op`] one component at a time, merging as it goes.
#[derive(Debug)]
pub(crate) struct OpBuilder {
    components: Vec<Component>,
    base_len: usize,
    target_len: usize,
}

impl OpBuilder {
    /// An empty builder with room for `capacity` components.
    pub(crate) fn with_capacity(capacity: usize) -> OpBuilder {
        OpBuilder::in_list(Vec::with_capacity(capacity))
    }

    /// An empty builder that builds in `components`, which must be empty.
    fn in_list(components: Vec<Component>) -> OpBuilder {
        debug_assert!(components.is_empty());
        OpBuilder {
            components,
            base_len: 0,
            target_len: 0,
        }
    }

    /// Appends a retain of `n` code points (nothing if `n` is 0).
    pub(crate) fn retain(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.base_len += n;
        self.target_len += n;
        if let Some(Component::Retain(last)) = self.components.last_mut() {
            *last += n;
        } else {
            self.components.push(Component::Retain(n));
        }
    }

    /// Appends a delete of `n` code points (nothing if `n` is 0).
    pub(crate) fn delete(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.base_len += n;
        if let Some(Component::Delete(last)) = self.components.last_mut() {
            *last += n;
        } else {
            self.components.push(Component::Delete(n));
        }
    }

    /// Appends an insert of `text`, which has `chars` code points (nothing if empty); an insert
    /// that follows a delete is moved before it.
    pub(crate) fn insert<S: AsRef<str> + Into<InsertText>>(&mut self, text: S, chars: usize) {
        debug_assert_eq!(text.as_ref().chars().count(), chars);
        if chars == 0 {
            return;
        }
        self.target_len += chars;
        let len = self.components.len();
        match self.components.last_mut() {
            Some(Component::Insert(last)) => last.push_str(text.as_ref()),
            Some(Component::Delete(_)) => {
                if let Some(Component::Insert(previous)) =
                    len.checked_sub(2).and_then(|i| self.components.get_mut(i))
                {
                    previous.push_str(text.as_ref());
                } else {
                    self.components
                        .insert(len - 1, Component::Insert(text.into()));
                }
            }
            _ => self.components.push(Component::Insert(text.into())),
        }
    }

    /// The op built so far.
    pub(crate) fn finish(self) -> Op {
        Op {
            components: self.components,
            base_len: self.base_len,
            target_len: self.target_len,
        }
    }
}

/// A remaining part of a component, as walked by compose, transform and cursor moves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    /// Retain this many code points.
    Retain(usize),
    /// Delete this many code points.
    Delete(usize),
    /// Insert this text, which has this many code points.
    Insert(&'a str, usize),
}

/// Walks an op's components, allowing part of a component to be consumed at a time.
#[derive(Debug)]
pub(crate) struct Pieces<'a> {
    rest: std::slice::Iter<'a, Component>,
    current: Option<Piece<'a>>,
}

impl<'a> Pieces<'a> {
    /// Starts at the first component of `op`.
    pub(crate) fn new(op: &'a Op) -> Pieces<'a> {
        let mut rest = op.components.iter();
        let current = rest.next().map(Piece::from_component);
        Pieces { rest, current }
    }

    /// The remaining part of the current component, or `None` at the end.
    pub(crate) fn peek(&self) -> Option<Piece<'a>> {
        self.current
    }

    /// Consumes `n` code points (at most what remains) of the current component and returns the
    /// consumed text if it is an insert ("" otherwise).
    pub(crate) fn advance(&mut self, n: usize) -> &'a str {
        let (consumed, remaining) = match self.current {
            Some(Piece::Retain(m)) if n < m => ("", Some(Piece::Retain(m - n))),
            Some(Piece::Delete(m)) if n < m => ("", Some(Piece::Delete(m - n))),
            Some(Piece::Insert(text, m)) if n < m => {
                let (head, tail) = split_at_char(text, n);
                (head, Some(Piece::Insert(tail, m - n)))
            }
            Some(Piece::Insert(text, _)) => (text, None),
            _ => ("", None),
        };
        self.current = match remaining {
            Some(piece) => Some(piece),
            None => self.rest.next().map(Piece::from_component),
        };
        consumed
    }
}

impl<'a> Piece<'a> {
    /// The whole of `component` as a piece.
    fn from_component(component: &'a Component) -> Piece<'a> {
        match component {
            Component::Retain(n) => Piece::Retain(*n),
            Component::Delete(n) => Piece::Delete(*n),
            Component::Insert(text) => Piece::Insert(text, text.chars().count()),
        }
    }
}

/// Splits `text` after its first `chars` code points.
pub(crate) fn split_at_char(text: &str, chars: usize) -> (&str, &str) {
    let byte = text
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(index, _)| index);
    text.split_at(byte)
}
