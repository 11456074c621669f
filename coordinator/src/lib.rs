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
//! - [`data_directory`]: the data directory, sled opened in it, and the
//!   marker that refuses a database emptied under a pool.
//! - [`demo`]: `vision-coordinator demo`, a pool plus a miner on one machine.
//! - [`pool`]: sessions, jobs, share judgement (with its batched
//!   recomputation), found blocks, vardiff, bans, stats; its HTTP routes in
//!   [`pool::api`].
//! - [`rewards`]: block maturity (pending, confirmed, orphaned), the
//!   PPLNS/PROP/SOLO splits with fees, balances, exactly-once payouts and
//!   share-ledger compaction.
//! - [`chain`]: the embedded devnet and the upstream node client, and the
//!   node API the devnet serves (writes need the node or admin token).
//! - [`storage`]: the [`storage::PoolStore`] trait and its sled and
//!   PostgreSQL implementations.
//! - [`api_error`]: the single mapping of errors to HTTP status and JSON.
//! - [`client_source`]: which client a request counts as (trusted proxies'
//!   `X-Forwarded-For`, IPv6 by /64), for per-source limits and bans.
//! - `bearer_auth`: reading and comparing bearer credentials.
//! - `connection_limits`: open connections, in all and per source, and the
//!   answer a refused one gets.
//! - `write_deadline`: closes a connection whose client stops reading its
//!   answer.
//! - `blocking_calls`: calls on the blocking pool that hold a database,
//!   counted so a stopping server waits for them.
//!
//! **Architecture invariant:** the coordinator never trusts a digest a
//! worker sends; every verdict comes from its own recomputation, which never
//! runs on an async runtime thread.

pub mod api_error;
mod bearer_auth;
mod blocking_calls;
pub mod chain;
pub mod client_source;
pub mod config;
mod connection_limits;
pub mod data_directory;
pub mod demo;
pub mod pool;
pub mod rewards;
pub mod server;
pub mod storage;
mod write_deadline;
