//! Chorus core: the pure OT engine, the document state machine and its actor, the
//! per-connection session, and the stores behind one trait.
//!
//! # Layout
//! - [`ids`]: validated document and client ids.
//! - [`ot`]: operations on code-point text: validate, apply, compose, transform, cursors. Pure.
//! - [`protocol`]: wire protocol v1 messages and their one encoder/decoder.
//! - [`document`]: the document state machine (sans-IO), its actor, and the supervisor that is
//!   also the registry of open documents.
//! - [`session`]: the per-connection session (run by its connection's task);
//!   [`session_supervisor`] accounts for sessions and their failures.
//! - [`outbound`]: the bounded per-connection send queue.
//! - [`routing`]: how sessions reach documents (local supervisor or cluster router).
//! - [`store`]: the `Store` trait and the embedded on-disk store.

pub mod document;
pub mod ids;
pub mod ot;
pub mod outbound;
pub mod protocol;
pub mod routing;
pub mod session;
pub mod session_supervisor;
pub mod store;
