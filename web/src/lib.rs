//! Chorus's HTTP/WebSocket front: hyper serves `/ws` (upgraded with fastwebsockets), the browser
//! editor, health endpoints, and shuts down gracefully.
//!
//! # Layout
//! - [`server`]: the accept loop, routing, connection limit, and the shutdown phases.
//! - [`connection`]: one WebSocket: frames in → session; queue → frames out; pings.
//! - [`auth`]: bearer tokens from the header or `?token=`.
//! - [`assets`]: the browser editor's pages and assets, embedded at build time (`build.rs`).

pub mod assets;
pub mod auth;
pub mod connection;
mod frame;
pub mod server;

pub use server::{serve, Phase, WebContext};
