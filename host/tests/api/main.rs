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
mod bedrock;
mod bedrock_mock;
mod billing;
mod binary;
mod cn_mocks;
mod cn_providers;
mod cohere;
mod cohere_mock;
mod compat;
mod compat_mocks;
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
mod vertex;
