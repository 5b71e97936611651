//! Switchboard: a real-time presence and call broker for 1:1 video calling.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
pub mod auth;
pub mod availability;
pub mod calls;
pub mod census;
pub mod client_addr;
pub mod config;
pub mod db;
pub mod descriptors;
pub mod error;
pub mod http;
pub mod ice;
pub mod ids;
pub mod metrics;
pub mod origin;
pub mod people;
pub mod presence;
pub mod push;
pub mod rate_limit;
pub mod severed;
pub mod startup;
pub mod state;
pub mod time;
pub mod vocabulary;
pub mod wire;
pub mod ws;
