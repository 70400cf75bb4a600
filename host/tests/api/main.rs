//! Integration tests: the real gateway, in-process, against real databases
//! and mock upstreams that speak each provider's wire protocol.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod adapters;
mod admin;
mod anthropic;
mod billing;
mod binary;
mod endpoints;
mod errors;
mod gemini_mock;
mod helpers;
mod hotswap;
mod inbound;
mod limits;
mod relay;
mod sdk;
mod surface;
mod surface_mocks;
mod task_mocks;
mod tasks;
