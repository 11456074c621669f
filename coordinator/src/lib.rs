//! `vision-coordinator`: the Vision pool server.
//!
//! Pool hosts run it to serve VisionX jobs over HTTP, verify every share by
//! recomputing it on the CPU, credit shares durably, find blocks and keep
//! bad actors out. It carries an embedded devnet chain so it runs on a fresh
//! machine with nothing else installed.
//!
//! # Layout
//! - [`server`]: assembles storage, chain, pool and router; serves until shutdown.
//! - [`config`]: flags, env vars and TOML, resolved into one config.
//! - [`demo`]: `vision-coordinator demo`, a pool plus a miner on one machine.
//! - [`pool`]: workers, jobs, share judgement, vardiff, bans, stats; its
//!   HTTP routes in [`pool::api`].
//! - [`share_verifier`]: batched recomputation of claimed shares.
//! - [`chain`]: the embedded devnet and the upstream node client, and the
//!   node API the devnet serves.
//! - [`storage`]: the [`storage::PoolStore`] trait and its sled implementation.
//! - [`api_error`]: the single mapping of errors to HTTP status and JSON.
//!
//! **Architecture invariant:** the coordinator never trusts a digest a
//! worker sends; every verdict comes from its own recomputation, which never
//! runs on an async runtime thread.

pub mod api_error;
pub mod chain;
pub mod config;
pub mod demo;
pub mod pool;
pub mod server;
pub mod share_verifier;
pub mod storage;
