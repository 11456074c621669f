//! Mining configuration: flags, `VISION_*` environment variables and a TOML
//! file (`--config`), in that order of precedence.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Args;
use serde::Deserialize;
use vision_protocol::settings_errors::without_value;

use crate::backend::gpu::shader::UnknownShader;
use crate::client::pool_client::{read_pool_ca, PoolCa, PoolClient};
use crate::device_selection::BackendChoice;
use crate::MinerError;

/// How to mine (every flag also as `VISION_*` env var or a TOML key).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineArgs {
    /// Pool URL (http://host:port); repeat for failover pools, in order of preference.
    #[arg(long = "pool", value_name = "URL", env = "VISION_POOLS", value_delimiter = ',')]
    #[serde(default, rename = "pool")]
    pub pools: Vec<String>,
    /// PEM file of the CA certificates trusted for https:// pools, in place of
    /// the system's (a pool behind a private CA).
    #[arg(long, value_name = "FILE", env = "VISION_POOL_CA")]
    pub pool_ca: Option<std::path::PathBuf>,
    /// Mine solo against this node's API (http://host:port) instead of a pool.
    #[arg(long, value_name = "NODE_URL", env = "VISION_SOLO", conflicts_with = "pools")]
    pub solo: Option<String>,
    /// Bearer token for the node's block submission route (solo mining on a
    /// node that requires one, such as the coordinator's devnet).
    #[arg(long, env = "VISION_NODE_TOKEN", hide_env_values = true)]
    pub node_token: Option<String>,
    /// Wallet address rewards are paid to (1-128 letters, digits, '_', '-', ':').
    #[arg(long, env = "VISION_WALLET")]
    pub wallet: Option<String>,
    /// Worker name, shown by the pool [default: the host name].
    #[arg(long, env = "VISION_WORKER")]
    pub worker: Option<String>,
    /// Which devices: auto (every usable GPU, else the CPU), gpu, cpu, or
    /// all (every usable GPU and the CPU beside them).
    #[arg(long, value_enum, env = "VISION_BACKEND")]
    pub backend: Option<BackendChoice>,
    /// CPU threads [default: all cores; with --backend all, one fewer per GPU].
    #[arg(long, env = "VISION_THREADS")]
    pub threads: Option<usize>,
    /// GPU adapter indexes to mine on, e.g. 0,2 (see `vision-miner devices`);
    /// those only, no CPU beside them but with --backend all [default:
    /// every usable GPU].
    #[arg(long = "device", value_name = "N[,N...]", env = "VISION_DEVICE", value_delimiter = ',')]
    #[serde(default, rename = "device", deserialize_with = "one_or_many")]
    pub devices: Vec<usize>,
    /// GPU shader variant: native or emulated [default: native where supported].
    #[arg(long, env = "VISION_SHADER")]
    pub shader: Option<String>,
    /// Device memory a GPU batch may use, MiB [default, where Vulkan reports
    /// the memory: on a discrete GPU 85% of its free memory (or heap), at
    /// most 32768; otherwise half, at most 4096. Elsewhere: 32768 on a
    /// discrete GPU, 4096 otherwise].
    #[arg(long, env = "VISION_GPU_MEMORY_MB")]
    pub gpu_memory_mb: Option<u64>,
    /// Local status API address [default: 127.0.0.1:7073].
    #[arg(long, env = "VISION_API_BIND")]
    pub api_bind: Option<String>,
    /// Do not serve the local status API.
    #[arg(long, num_args = 0, default_missing_value = "true", env = "VISION_NO_API", value_parser = BoolishValueParser::new())]
    pub no_api: Option<bool>,
    /// Token for the API's control routes (at least 16 visible ASCII
    /// characters); required when --api-bind is not loopback.
    #[arg(long, env = "VISION_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Seconds between status lines [default: 10].
    #[arg(long, env = "VISION_STATUS_INTERVAL")]
    pub status_interval: Option<u64>,
    /// No status lines; warnings and errors only.
    #[arg(long, num_args = 0, default_missing_value = "true", env = "VISION_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: Option<bool>,
    /// Seconds between attempts to go back to the first pool after a failover [default: 60].
    #[arg(long, env = "VISION_FAILBACK_SECS")]
    pub failback_secs: Option<u64>,
    /// Longest long-poll for a new job, seconds [default: 30].
    #[arg(long, env = "VISION_LONG_POLL_SECS")]
    pub long_poll_secs: Option<u64>,
    /// Exit (code 4) when every pool bans this miner, rather than stop
    /// hashing and wait the soonest ban out.
    #[arg(long, num_args = 0, default_missing_value = "true", env = "VISION_EXIT_ON_BAN", value_parser = BoolishValueParser::new())]
    pub exit_on_ban: Option<bool>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    pub mode: MiningMode,
    /// `--pool-ca`, read and checked.
    pub pool_ca: Option<PoolCa>,
    /// Sent as `Authorization: Bearer` with solo block submissions.
    pub node_token: Option<String>,
    pub wallet: String,
    pub worker: String,
    pub backend: BackendChoice,
    pub threads: Option<usize>,
    /// `--device`: the adapters to mine on, exactly (empty: every usable GPU).
    pub devices: Vec<usize>,
    pub shader: Option<crate::backend::gpu::ShaderVariant>,
    /// `None`: the adapter's default (`tuning::default_memory_budget`).
    pub gpu_memory_mb: Option<u64>,
    pub api: Option<(SocketAddr, Option<String>)>,
    pub status_interval: Option<Duration>,
    pub quiet: bool,
    pub failback: Duration,
    pub long_poll: Duration,
    /// Banned by every pool: exit (code 4) rather than wait the ban out.
    pub exit_on_ban: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MiningMode {
    Pool(Vec<String>),
    Solo(String),
}

impl MinerConfig {
    /// Settings given that the backend makes moot (a config file's
    /// `threads` on a GPU-only run, say): warned of at start and shown by
    /// `--check-config`, rather than shown as in force or refused.
    pub fn ignored_settings(&self) -> Vec<String> {
        let moot = |flag: &str, set: bool, why: &str| set.then(|| format!("{flag} ({why})"));
        let (gpu_only, cpu_only) = (self.backend == BackendChoice::Gpu, self.backend == BackendChoice::Cpu);
        // (Under auto, adapters named by --device are mined alone.)
        let auto_named = self.backend == BackendChoice::Auto && !self.devices.is_empty();
        [
            moot("--threads", self.threads.is_some() && gpu_only, "--backend gpu mines on no CPU"),
            moot("--threads", self.threads.is_some() && auto_named, "--device names GPUs only"),
            moot("--device", !self.devices.is_empty() && cpu_only, "--backend cpu mines on no GPU"),
            moot("--gpu-memory-mb", self.gpu_memory_mb.is_some() && cpu_only, "--backend cpu mines on no GPU"),
            moot("--shader", self.shader.is_some() && cpu_only, "--backend cpu mines on no GPU"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// What this configuration mines with, for `--check-config`: where,
    /// for whom, on what, and the local API. Tokens only as set or not.
    /// (Devices are what `--backend` asks for; `vision-miner devices`
    /// lists what is there.)
    pub fn summary(&self) -> String {
        // As the status shows them (the form requests go to).
        let shown = |url: &String, what| crate::client::pool_client::server_url(url, what).unwrap_or(url.clone());
        let mode = match &self.mode {
            MiningMode::Pool(urls) => {
                let urls: Vec<String> = urls.iter().map(|url| shown(url, "--pool")).collect();
                format!("pool mode: {} (failover in this order)", urls.join(", "))
            }
            MiningMode::Solo(node) => {
                let token = if self.node_token.is_some() { "set" } else { "not set" };
                format!("solo mode: node {} (node token {token})", shown(node, "--solo"))
            }
        };
        let backend = match self.backend {
            BackendChoice::Cpu => "cpu",
            BackendChoice::Gpu => "gpu",
            BackendChoice::Auto if !self.devices.is_empty() => "auto (the adapters named)",
            BackendChoice::Auto => "auto (every hardware GPU, else the CPU)",
            BackendChoice::All if !self.devices.is_empty() => "all (the adapters named and the CPU)",
            BackendChoice::All => "all (every hardware GPU and the CPU)",
        };
        let mut device_line = format!("devices: {backend}");
        let gpu = self.backend != BackendChoice::Cpu;
        let cpu = match self.backend {
            BackendChoice::Cpu | BackendChoice::All => true,
            BackendChoice::Gpu => false,
            BackendChoice::Auto => self.devices.is_empty(),
        };
        if let Some(threads) = self.threads.filter(|_| cpu) {
            device_line += &format!(", {threads} CPU threads");
        }
        if gpu && !self.devices.is_empty() {
            let named: Vec<String> = self.devices.iter().map(|d| format!("#{d}")).collect();
            device_line += &format!(", adapter {} only", named.join(", "));
        }
        if let Some(mb) = self.gpu_memory_mb.filter(|_| gpu) {
            device_line += &format!(", GPU tables up to {mb} MiB");
        }
        if let Some(shader) = self.shader.filter(|_| gpu) {
            device_line += &format!(", {shader} shader");
        }
        for ignored in self.ignored_settings() {
            device_line += &format!("; ignored: {ignored}");
        }
        let api = match &self.api {
            Some((address, token)) => {
                let token = if token.is_some() { "token set" } else { "no token: loopback clients only" };
                format!("local API: http://{address} ({token})")
            }
            None => "local API: off".to_string(),
        };
        let pacing = match self.mode {
            MiningMode::Pool(_) => format!(
                "long-poll {} s; the primary pool (the first) tried again every {} s while away; banned by \
                 every pool: {}",
                self.long_poll.as_secs(),
                self.failback.as_secs(),
                if self.exit_on_ban { "exit (code 4)" } else { "wait the ban out" }
            ),
            MiningMode::Solo(_) => "solo: the node's template asked for every second".to_string(),
        };
        [
            mode,
            pacing,
            format!("wallet: {}, worker: {}", self.wallet, self.worker),
            device_line,
            api,
            format!("pool CA: {}", if self.pool_ca.is_some() { "--pool-ca" } else { "the system's" }),
        ]
        .map(|line| format!("  {line}"))
        .join("\n")
    }
}

impl MineArgs {
    pub fn from_file(path: &Path) -> Result<MineArgs, MinerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MinerError::bad_input(format!("cannot read {}: {e}", path.display())))?;
        // Not `toml`'s own text, nor a value its message quotes: the line
        // or the value could be the API token.
        let mut args: MineArgs = toml::from_str(&text).map_err(|e| {
            let before = e.span().and_then(|span| text.get(..span.start)).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            MinerError::bad_input(format!("{}: line {line}: {}", path.display(), without_value(e.message())))
        })?;
        // A file named in the config file is where the config file says,
        // wherever the miner is started from.
        if let (Some(ca), Some(dir)) = (&args.pool_ca, path.parent()) {
            if ca.is_relative() {
                args.pool_ca = Some(dir.join(ca));
            }
        }
        Ok(args)
    }

    /// Whether any way to mine was given.
    pub fn wants_mining(&self) -> bool {
        !self.pools.is_empty() || self.solo.is_some()
    }

    /// `self` where set, else `file`. The way to mine is taken whole: a
    /// `--pool` given here replaces the file's `solo`, and `--solo` its pools.
    pub fn or(self, file: MineArgs) -> MineArgs {
        let (pools, solo) = if self.wants_mining() { (self.pools, self.solo) } else { (file.pools, file.solo) };
        MineArgs {
            pools,
            pool_ca: self.pool_ca.or(file.pool_ca),
            solo,
            node_token: self.node_token.or(file.node_token),
            wallet: self.wallet.or(file.wallet),
            // (A blank name, as an env var left empty, is unset here too.)
            worker: self.worker.filter(|w| !w.trim().is_empty()).or(file.worker),
            backend: self.backend.or(file.backend),
            threads: self.threads.or(file.threads),
            devices: if self.devices.is_empty() { file.devices } else { self.devices },
            shader: self.shader.or(file.shader),
            gpu_memory_mb: self.gpu_memory_mb.or(file.gpu_memory_mb),
            api_bind: self.api_bind.or(file.api_bind),
            no_api: self.no_api.or(file.no_api),
            api_token: self.api_token.or(file.api_token),
            status_interval: self.status_interval.or(file.status_interval),
            quiet: self.quiet.or(file.quiet),
            failback_secs: self.failback_secs.or(file.failback_secs),
            long_poll_secs: self.long_poll_secs.or(file.long_poll_secs),
            exit_on_ban: self.exit_on_ban.or(file.exit_on_ban),
        }
    }

    /// Checks everything a person could have mistyped; the message says what.
    pub fn resolve(self) -> Result<MinerConfig, MinerError> {
        let mode = match (&self.solo, self.pools.is_empty()) {
            (Some(_), false) => return Err(MinerError::bad_input("give --pool or --solo, not both")),
            (Some(node), true) => {
                crate::client::node_client::NodeClient::new(node, None)?;
                MiningMode::Solo(node.clone())
            }
            (None, false) => {
                for url in &self.pools {
                    PoolClient::new(url, None)?;
                }
                MiningMode::Pool(self.pools.clone())
            }
            (None, true) => {
                return Err(MinerError::bad_input(
                    "nothing to mine: give --pool URL (or --solo NODE_URL) and --wallet ADDRESS",
                ))
            }
        };
        let wallet = self.wallet.ok_or_else(|| MinerError::bad_input("--wallet ADDRESS is required"))?;
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':');
        if wallet.is_empty() || wallet.len() > 128 || !wallet.chars().all(ok) {
            return Err(MinerError::bad_input(format!(
                "--wallet {wallet:?}: an address is 1-128 ASCII letters, digits, '_', '-' or ':'"
            )));
        }
        // (An empty name, as an env var left blank in a compose file, is unset.)
        let worker = self
            .worker
            .filter(|w| !w.trim().is_empty())
            .or_else(|| host_name(|var| std::env::var(var).ok(), |path| std::fs::read_to_string(path).ok()))
            .unwrap_or_else(|| "rig".into());
        let worker: String = worker
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "_-.:".contains(c) { c } else { '-' })
            .take(64)
            .collect();
        let shader = self
            .shader
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: UnknownShader| MinerError::bad_input(e.to_string()))?;
        let max_threads = crate::backend::cpu::max_threads();
        if self.threads.is_some_and(|n| n == 0 || n > max_threads) {
            return Err(MinerError::bad_input(format!("--threads must be 1-{max_threads} (four per core)")));
        }
        if let Some(mb) = self.gpu_memory_mb {
            check_gpu_memory_mb(mb)?;
        }
        let api = if self.no_api == Some(true) {
            None
        } else {
            let bind = self.api_bind.unwrap_or_else(|| "127.0.0.1:7073".into());
            let addr: SocketAddr = bind.parse().map_err(|_| {
                MinerError::bad_input(format!("--api-bind {bind:?} is not an address like 127.0.0.1:7073"))
            })?;
            if !addr.ip().is_loopback() && self.api_token.as_deref().is_none_or(str::is_empty) {
                return Err(MinerError::bad_input(format!(
                    "--api-bind {addr} is reachable from other machines: give --api-token too (or bind 127.0.0.1)"
                )));
            }
            let token = self.api_token.filter(|t| !t.is_empty());
            if let Some(weakness) = token.as_deref().and_then(vision_protocol::bearer_token::token_weakness) {
                return Err(MinerError::bad_input(format!("--api-token {weakness}")));
            }
            Some((addr, token))
        };
        let quiet = self.quiet == Some(true);
        let pool_ca = match (&self.pool_ca, &mode) {
            (Some(path), MiningMode::Pool(_)) => Some(read_pool_ca(path)?),
            (Some(_), MiningMode::Solo(_)) => return Err(MinerError::bad_input("--pool-ca is for pools, not --solo")),
            (None, _) => None,
        };
        // (A node token in pool mode is not refused: `VISION_NODE_TOKEN` is
        // also the coordinator's, and may be in a shared environment.)
        let node_token = self.node_token.filter(|t| !t.is_empty());
        if let (Some(token), MiningMode::Solo(_)) = (&node_token, &mode) {
            // One no header can carry (a secret file's trailing newline)
            // would fail every block submission, after the block is found.
            // (Its length is the node's to judge.)
            use vision_protocol::bearer_token::{token_weakness, TokenWeakness};
            if let Some(weakness @ (TokenWeakness::PaddedWithSpace | TokenWeakness::NotVisibleAscii)) =
                token_weakness(token)
            {
                return Err(MinerError::bad_input(format!("--node-token {weakness}")));
            }
        }
        let backend = self.backend.unwrap_or(BackendChoice::Auto);
        Ok(MinerConfig {
            mode,
            pool_ca,
            node_token,
            wallet,
            worker,
            backend,
            threads: self.threads,
            devices: self.devices,
            shader,
            gpu_memory_mb: self.gpu_memory_mb,
            api,
            status_interval: (!quiet).then(|| Duration::from_secs(self.status_interval.unwrap_or(10).max(1))),
            quiet,
            failback: Duration::from_secs(self.failback_secs.unwrap_or(60).max(1)),
            long_poll: Duration::from_secs(self.long_poll_secs.unwrap_or(30).clamp(1, 60)),
            exit_on_ban: self.exit_on_ban == Some(true),
        })
    }
}

/// A TOML `device` as one index (`device = 1`, as before lists) or several
/// (`device = [0, 2]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(usize),
        Many(Vec<usize>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(index) => vec![index],
        OneOrMany::Many(indexes) => indexes,
    })
}

/// This machine's name, the default worker name: from the environment
/// (`HOSTNAME` is seldom exported, `COMPUTERNAME` on Windows), else from
/// the kernel (Linux), else none. `env` and `read` are the environment and
/// the file system, passed in so the order has a test.
fn host_name(env: impl Fn(&str) -> Option<String>, read: impl Fn(&str) -> Option<String>) -> Option<String> {
    let named = |name: Option<String>| name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    named(env("HOSTNAME"))
        .or_else(|| named(env("COMPUTERNAME")))
        .or_else(|| named(read("/proc/sys/kernel/hostname")))
        .or_else(|| named(read("/etc/hostname")))
}

/// The most a GPU batch may be told to use: 16 TiB, past any card, and far
/// from where MiB to bytes overflows.
pub const MAX_GPU_MEMORY_MB: u64 = 1 << 24;

/// `--gpu-memory-mb` within 1 MiB to [`MAX_GPU_MEMORY_MB`]: 0 would leave the
/// tuner the smallest batch, far below what a GPU needs, without a word.
pub fn check_gpu_memory_mb(mb: u64) -> Result<u64, MinerError> {
    if mb == 0 || mb > MAX_GPU_MEMORY_MB {
        return Err(MinerError::bad_input(format!("--gpu-memory-mb must be 1-{MAX_GPU_MEMORY_MB} (MiB)")));
    }
    Ok(mb)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_worker_name_is_the_machines() {
        let some = |s: &str| Some(s.to_string());
        let kernel = |path: &str| (path == "/proc/sys/kernel/hostname").then(|| "rig-07\n".to_string());
        let nothing = |_: &str| None;
        assert_eq!(super::host_name(|v| (v == "HOSTNAME").then(|| "shell".into()), kernel), some("shell"));
        assert_eq!(super::host_name(|v| (v == "COMPUTERNAME").then(|| "WINBOX".into()), nothing), some("WINBOX"));
        assert_eq!(super::host_name(|v| (v == "HOSTNAME").then(|| " ".into()), kernel), some("rig-07"));
        assert_eq!(super::host_name(|_| None, kernel), some("rig-07"));
        let etc = |path: &str| (path == "/etc/hostname").then(|| "etc-box".to_string());
        assert_eq!(super::host_name(|_| None, etc), some("etc-box"));
        assert_eq!(super::host_name(|_| None, nothing), None);
    }

    use super::*;

    fn args() -> MineArgs {
        MineArgs { pools: vec!["http://127.0.0.1:7072".into()], wallet: Some("land1abc".into()), ..MineArgs::default() }
    }

    #[test]
    fn good_settings_resolve_with_defaults() {
        let config = args().resolve().unwrap();
        assert_eq!(config.mode, MiningMode::Pool(vec!["http://127.0.0.1:7072".into()]));
        assert_eq!(config.api.unwrap().0.port(), 7073);
        assert_eq!(config.backend, BackendChoice::Auto);
    }

    #[test]
    fn mistakes_are_explained() {
        let cases = [
            (MineArgs { pools: vec!["ftp://x".into()], ..args() }, "not a pool URL"),
            (MineArgs { wallet: Some("bad wallet".into()), ..args() }, "--wallet"),
            (MineArgs { wallet: None, ..args() }, "--wallet"),
            (MineArgs { pools: vec![], ..args() }, "nothing to mine"),
            (MineArgs { solo: Some("http://n:1".into()), ..args() }, "not both"),
            (MineArgs { api_bind: Some("0.0.0.0:7073".into()), ..args() }, "--api-token"),
            (MineArgs { api_bind: Some("nowhere".into()), ..args() }, "--api-bind"),
            (MineArgs { api_token: Some("s3cret".into()), ..args() }, "--api-token is shorter than 16"),
            (MineArgs { api_token: Some("0123456789abcdef\n".into()), ..args() }, "--api-token begins or ends"),
            (MineArgs { api_token: Some("0123456789 abcdef".into()), ..args() }, "--api-token holds"),
            (MineArgs { threads: Some(0), ..args() }, "--threads"),
            (MineArgs { threads: Some(100_000), ..args() }, "--threads"),
            (MineArgs { pools: vec!["http://u:p@pool:1".into()], ..args() }, "user name"),
            (MineArgs { pools: vec!["http://pool:1/?k=1".into()], ..args() }, "query"),
            (MineArgs { shader: Some("magic".into()), ..args() }, "shader"),
            (MineArgs { gpu_memory_mb: Some(0), ..args() }, "--gpu-memory-mb"),
            (MineArgs { gpu_memory_mb: Some(1 << 44), ..args() }, "--gpu-memory-mb"),
            (MineArgs { pools: vec![], solo: Some("http://u:secret@node:1".into()), ..args() }, "user name"),
            (MineArgs { pools: vec![], solo: Some("http://node:1/?a=b".into()), ..args() }, "query"),
            (MineArgs { pools: vec![], solo: Some("ftp://node:1".into()), ..args() }, "not a node URL"),
            (
                MineArgs {
                    pools: vec![],
                    solo: Some("http://node:1".into()),
                    node_token: Some("s3cret\n".into()),
                    ..args()
                },
                "--node-token begins or ends",
            ),
            (
                MineArgs {
                    pools: vec![],
                    solo: Some("http://node:1".into()),
                    node_token: Some("s3c\u{7f}ret".into()),
                    ..args()
                },
                "--node-token holds",
            ),
        ];
        for (bad, needle) in cases {
            let err = bad.resolve().unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{err:?} should mention {needle:?}");
            assert!(!err.to_string().contains("s3cret"), "{err:?} quotes the token");
        }
    }

    /// A node token is the node's to judge but for what no header carries;
    /// in pool mode it is not the miner's (a shared environment's).
    #[test]
    fn a_node_token_is_taken_where_a_header_can_carry_it() {
        let solo = |token: &str| MineArgs {
            pools: vec![],
            solo: Some("http://node:1".into()),
            node_token: Some(token.into()),
            ..args()
        };
        assert!(solo("short").resolve().is_ok());
        assert!(MineArgs { node_token: Some("s3cret\n".into()), ..args() }.resolve().is_ok());
    }

    /// A setting the backend makes moot is said to be ignored, not shown
    /// as in force.
    #[test]
    fn settings_the_backend_makes_moot_are_shown_as_ignored() {
        let cpu = MineArgs { backend: Some(BackendChoice::Cpu), devices: vec![1], threads: Some(2), ..args() };
        let gpu = MineArgs { backend: Some(BackendChoice::Gpu), devices: vec![1], threads: Some(2), ..args() };
        let auto = MineArgs { threads: Some(2), gpu_memory_mb: Some(64), ..args() };
        let named = MineArgs { devices: vec![1], ..auto.clone() };
        let all = MineArgs { backend: Some(BackendChoice::All), ..named.clone() };
        let cases = [
            (cpu, vec!["--device (--backend cpu mines on no GPU)"], "2 CPU threads", "adapter #1"),
            (gpu, vec!["--threads (--backend gpu mines on no CPU)"], "adapter #1 only", "CPU threads"),
            (auto, vec![], "2 CPU threads, GPU tables up to 64 MiB", "ignored"),
            (
                named,
                vec!["--threads (--device names GPUs only)"],
                "adapter #1 only, GPU tables up to 64 MiB",
                "CPU threads",
            ),
            (all, vec![], "all (the adapters named and the CPU), 2 CPU threads, adapter #1 only", "ignored"),
        ];
        for (args, ignored, shown, not_shown) in cases {
            let config = args.resolve().unwrap();
            assert_eq!(config.ignored_settings(), ignored);
            let summary = config.summary();
            let devices = summary.lines().find(|l| l.trim_start().starts_with("devices:")).unwrap();
            assert!(devices.contains(shown), "{devices}");
            let in_force = devices.split("; ignored").next().unwrap();
            assert!(!in_force.contains(not_shown), "{devices}");
        }
    }

    #[test]
    fn a_broken_config_file_does_not_quote_its_token() {
        let path = std::env::temp_dir().join(format!("vision-miner-secret-{}.toml", std::process::id()));
        for file in [
            "wallet = \"land1q\"\napi_token = \"s3cret\\q\"\n",
            "wallet = \"land1q\"\nthreads = \"s3cret\"\n",
            "wallet = \"land1q\"\nthreads = \"ab\\\"s3cret, expected cd\"\n",
            "wallet = \"land1q\"\nbackend = [\"s3cret\"]\n",
        ] {
            std::fs::write(&path, file).unwrap();
            let err = MineArgs::from_file(&path).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(!text.contains("s3cret") && text.contains("line 2"), "{text}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_pool_ca_in_a_config_file_is_found_beside_it() {
        let dir = std::env::temp_dir().join(format!("vision-miner-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("miner.toml");
        std::fs::write(&file, "pool = [\"https://a:1\"]\npool_ca = \"ca.pem\"\n").unwrap();
        assert_eq!(MineArgs::from_file(&file).unwrap().pool_ca, Some(dir.join("ca.pem")));
        std::fs::write(&file, "pool_ca = \"/etc/ssl/pool-ca.pem\"\n").unwrap();
        assert_eq!(MineArgs::from_file(&file).unwrap().pool_ca, Some("/etc/ssl/pool-ca.pem".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn toml_file_fills_what_flags_leave_out() {
        let file: MineArgs =
            toml::from_str("pool = [\"http://a:1\", \"http://b:2\"]\nwallet = \"land1file\"\nthreads = 3").unwrap();
        let flags = MineArgs { wallet: Some("land1flag".into()), ..MineArgs::default() };
        let config = flags.or(file).resolve().unwrap();
        assert_eq!(config.wallet, "land1flag");
        assert_eq!(config.threads, Some(3));
        assert_eq!(config.mode, MiningMode::Pool(vec!["http://a:1".into(), "http://b:2".into()]));
    }

    /// A file's `device` is one adapter (as files written before lists say)
    /// or a list; `--device` given replaces it.
    #[test]
    fn devices_from_a_file_are_one_or_a_list() {
        let file = |device: &str| toml::from_str::<MineArgs>(&format!("device = {device}")).map(|f| f.devices);
        assert_eq!(file("1").unwrap(), vec![1]);
        assert_eq!(file("[0, 2]").unwrap(), vec![0, 2]);
        assert!(file("\"gpu0\"").is_err());
        let from_file = args().or(toml::from_str("device = [0, 2]").unwrap()).resolve().unwrap();
        assert_eq!(from_file.devices, vec![0, 2]);
        let flag = MineArgs { devices: vec![3], ..args() }.or(toml::from_str("device = [0, 2]").unwrap());
        assert_eq!(flag.resolve().unwrap().devices, vec![3]);
    }

    /// The way to mine given by flags replaces the file's whole: a file of
    /// `solo` and a `--pool` flag is pool mode, not "both".
    #[test]
    fn a_mode_flag_replaces_the_files_other_mode() {
        let solo_file: MineArgs = toml::from_str("solo = \"http://node:1\"\nwallet = \"land1file\"").unwrap();
        let pool_flag = MineArgs { pools: vec!["http://p:7072".into()], ..MineArgs::default() };
        assert_eq!(
            pool_flag.or(solo_file.clone()).resolve().unwrap().mode,
            MiningMode::Pool(vec!["http://p:7072".into()])
        );
        let pool_file: MineArgs = toml::from_str("pool = [\"http://a:1\"]\nwallet = \"land1file\"").unwrap();
        let solo_flag = MineArgs { solo: Some("http://node:2".into()), ..MineArgs::default() };
        assert_eq!(solo_flag.or(pool_file).resolve().unwrap().mode, MiningMode::Solo("http://node:2".into()));
        assert_eq!(MineArgs::default().or(solo_file).resolve().unwrap().mode, MiningMode::Solo("http://node:1".into()));
    }

    /// A blank worker name (an env var left empty) is the machine's name, as
    /// an unset one is: never an empty id every pool refuses.
    #[test]
    fn a_blank_worker_name_is_unset() {
        let file: MineArgs = toml::from_str("worker = \"rig7\"").unwrap();
        for blank in ["", "  "] {
            let config = MineArgs { worker: Some(blank.into()), ..args() }.resolve().unwrap();
            assert!(!config.worker.trim().is_empty(), "{blank:?} became {:?}", config.worker);
            let over_a_file = MineArgs { worker: Some(blank.into()), ..args() }.or(file.clone()).resolve().unwrap();
            assert_eq!(over_a_file.worker, "rig7", "the file's name, as with no flag");
        }
    }
}
