//! Chorus's HTTP/WebSocket front: hyper serves `/ws` (upgraded with fastwebsockets), health
//! endpoints, and shuts down gracefully.
//!
//! # Layout
//! - [`server`]: the accept loop, routing, connection limit, and the shutdown phases.
//! - [`connection`]: one WebSocket: frames in → session actor; queue → frames out; pings.
//! - [`auth`]: bearer tokens from the header or `?token=`.

pub mod auth;
pub mod connection;
pub mod server;

pub use server::{serve, Phase, WebContext};
