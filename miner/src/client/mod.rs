//! The mining client: pool and solo modes, the devices' work, and what the
//! owner sees.
//!
//! - [`pool_client`], [`node_client`]: the pool and node HTTP APIs, failures classified.
//! - [`session`]: pool mode: long-polled jobs with failover and backoff,
//!   shares submitted (and queued while no pool answers); `job_pace` says
//!   how soon the next job request goes.
//! - [`solo_session`]: solo mode: a node's template, blocks submitted.
//! - `found_submitter`: found nonces from the devices to whichever mode
//!   sends them, several at once, and the last finds on a stop.
//! - `retry_policy`: backoff, `Retry-After` and a block's tries, both modes.
//! - [`work_dispatch`]: one OS thread per device, each mining its slice of the
//!   current work, switched by a generation number.
//! - [`hashrate_meter`], [`miner_status`]: 10 s / 60 s / 15 min rates, counts,
//!   the status line.
//! - [`local_api`]: `/status`, the owner's page, pause/resume/threads and
//!   the pool switch ([`pool_switch`]), served by [`api_listener`] within
//!   its connection limits.
//! - [`miner_config`]: flags, env vars and TOML.

pub mod api_listener;
pub(crate) mod found_submitter;
pub mod hashrate_meter;
pub(crate) mod job_pace;
pub mod local_api;
pub mod miner_config;
pub mod miner_status;
pub mod node_client;
pub mod pool_client;
pub mod pool_switch;
pub(crate) mod retry_policy;
pub mod session;
pub mod solo_session;
pub mod work_dispatch;
