//! Operational Transform on code-point text: validate, apply, compose, transform, move cursors.
//!
//! A document is a sequence of Unicode scalar values (code points); every position and length in
//! this module counts code points, never bytes or UTF-16 units. [`ropey::Rope`] char indices are
//! exactly code points, and so are `jumprope`'s (the document actor's text); [`TextBuffer`] is what
//! [`Op::apply`] needs of either.
//!
//! An [`Op`] is a normalized list of [`Component`]s that spans its whole base document:
//! `base_len = retains + deletes` and `target_len = retains + inserted chars`. Ops from the wire
//! arrive as a [`RawOp`] (lenient decoding, never fails on an element) and become an [`Op`] only
//! through [`Op::from_raw`], which checks them against the length of their base document.
//!
//! The module is pure: no I/O, no clock, no allocation beyond the ops it returns. Inserted text of
//! up to 24 bytes (typing) is held inline, without a heap allocation of its own.
//!
//! # Layout
//! - `op`: the types, validation, normalisation and the internal builder that merges components.
//! - `apply`: applying an op to a [`TextBuffer`] or a string.
//! - `compose`: one op then another, as one op.
//! - `transform`: rebasing concurrent ops (with the tie rule) and moving cursors.
//! - `wire`: the JSON wire format (`Serialize` for [`Op`], `Deserialize` for [`RawOp`]).

mod apply;
mod compose;
mod op;
mod transform;
mod wire;

pub use apply::TextBuffer;
pub use op::{
    Component, InsertText, Op, OpError, RawComponent, RawComponents, RawOp, MAX_COMPONENT,
};
pub use transform::{transform_position, transform_range};

#[cfg(test)]
mod tests;
