//! Helpers of the cluster chaos tests: real processes, a small Redis client, a failing-over
//! protocol client, and the fleet that types and then checks what survived.
#![allow(dead_code)]

pub mod client;
pub mod fleet;
pub mod procs;
pub mod resp;
