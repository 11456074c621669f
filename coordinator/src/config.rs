//! Coordinator configuration: command-line flags, environment variables
//! and a TOML file, in that order of precedence, over built-in defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::chain::check_address;
use crate::chain::devnet::DevnetConfig;
use crate::client_source::TrustedProxies;
use crate::pool::PoolConfig;
use crate::rewards::reward_split::PayoutScheme;
use crate::rewards::{CrashPoint, RewardConfig, DEFAULT_FOUNDATION_ADDRESS, FOUNDATION_FEE_BPS};

/// The vardiff floor unless set: a proven session's forged shares are
/// verified a few at a time until its ban, and proving one must cost the
/// sender more hashes than that. The slowest rigs still get a share every
/// few seconds.
pub const DEFAULT_MIN_SHARE_DIFFICULTY: u64 = 64;
use crate::storage::{ClientCertificate, DatabaseTls, PoolSettings};

/// Every setting, as flags (each also readable from `VISION_*` env vars
/// and from the `--config` TOML file under the same name with underscores).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorArgs {
    /// Directory for the sled database (created if missing) [default: ./vision-data].
    #[arg(long, env = "VISION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the pool's books in this PostgreSQL database instead of sled
    /// (libpq-style URL: `postgres://user:pass@host/db`, or a Unix socket
    /// directory as `postgres://user@/db?host=/run/postgresql`). Several
    /// coordinators on one database act as one pool (docs/OPERATIONS.md),
    /// all with the same reward flags (one that differs from a running one
    /// refuses to start); `synchronous_commit=off` is refused.
    #[arg(long, env = "VISION_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PEM file of the certificate authorities to trust for the database's
    /// TLS (with `sslmode=require` in the URL) [default: the system's trust store].
    #[arg(long, env = "VISION_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
    /// PEM file of the client certificate (chain) to show the database over
    /// TLS, for PostgreSQL's `cert` authentication; needs `--database-key`
    /// and `sslmode=require`.
    #[arg(long, env = "VISION_DATABASE_CERT")]
    pub database_cert: Option<PathBuf>,
    /// PEM file of the private key of `--database-cert`.
    #[arg(long, env = "VISION_DATABASE_KEY")]
    pub database_key: Option<PathBuf>,
    /// Connections to the database this coordinator may hold for everything
    /// but shares [default: 16]; shares have 8 more of their own.
    #[arg(long, env = "VISION_DATABASE_CONNECTIONS")]
    pub database_connections: Option<usize>,
    /// Address to serve HTTP on [default: 127.0.0.1:7072].
    #[arg(long, env = "VISION_BIND")]
    pub bind: Option<String>,
    /// Bearer token for the admin routes (at least 16 visible ASCII
    /// characters); without one they are off.
    #[arg(long, env = "VISION_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bearer token for the embedded devnet's write routes (/node/submit,
    /// /node/transfer; at least 16 visible ASCII characters); the admin
    /// token works too. Without either they are off.
    #[arg(long, env = "VISION_NODE_TOKEN", hide_env_values = true)]
    pub node_token: Option<String>,
    /// Use the node API at this URL instead of the embedded devnet chain.
    #[arg(long, env = "VISION_UPSTREAM")]
    pub upstream: Option<String>,
    /// Bearer token the upstream node wants for submissions and transfers.
    #[arg(long, env = "VISION_UPSTREAM_TOKEN", hide_env_values = true)]
    pub upstream_token: Option<String>,
    /// PEM file of the certificate authorities to trust for an `https://`
    /// upstream, in place of the system's (for a node with a private CA)
    /// [default: the system's trust store].
    #[arg(long, env = "VISION_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Open HTTP connections at most; more wait to be accepted [default: 4096].
    #[arg(long, env = "VISION_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open HTTP connections one source address (an IPv6 /64; the TCP peer)
    /// may hold [default: 256]; once a quarter of --max-connections or fewer
    /// are free, one holding 16 gets no more (a --trusted-proxy excepted).
    #[arg(long, env = "VISION_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Reverse proxies (addresses or CIDR blocks; repeat the flag or separate
    /// with commas) whose `X-Forwarded-For` names the client for the
    /// per-source registration and verification budgets and bans (not
    /// --max-connections-per-ip, which counts TCP peers) [default: none].
    #[arg(long, env = "VISION_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Option<Vec<String>>,
    /// Seconds a client has to send a request's headers (idle keep-alive connections included) [default: 30].
    #[arg(long, env = "VISION_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a request may take, long-poll wait excluded [default: 30].
    #[arg(long, env = "VISION_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// Long-polls waiting at once; past it, job requests answer at once [default: 1024].
    #[arg(long, env = "VISION_MAX_LONG_POLLS")]
    pub max_long_polls: Option<usize>,
    /// Sessions with no accepted share yet active at once; past it, one seen
    /// long ago leaves the active set [default: 10000].
    #[arg(long, env = "VISION_MAX_UNPROVEN_SESSIONS")]
    pub max_unproven_sessions: Option<usize>,
    /// The embedded devnet's chain id [default: devnet].
    #[arg(long, env = "VISION_CHAIN_ID")]
    pub chain_id: Option<String>,
    /// Starting network difficulty of the embedded devnet [default: 1000].
    #[arg(long, env = "VISION_DEVNET_DIFFICULTY")]
    pub devnet_difficulty: Option<u64>,
    /// Target block time in seconds (devnet retarget; miners' job watchdog) [default: 30].
    #[arg(long, env = "VISION_BLOCK_TIME")]
    pub block_time: Option<u64>,
    /// Devnet block reward in base units [default: 50000000000].
    #[arg(long, env = "VISION_BLOCK_REWARD")]
    pub block_reward: Option<u64>,
    /// Blocks before a devnet coinbase can be spent [default: 10].
    #[arg(long, env = "VISION_COINBASE_MATURITY")]
    pub coinbase_maturity: Option<u64>,
    /// Address block rewards are paid to (the pool's wallet; miners cannot
    /// register with it) [default: vision-pool].
    #[arg(long, env = "VISION_POOL_ADDRESS")]
    pub pool_address: Option<String>,
    /// Pool name shown to miners [default: Vision pool].
    #[arg(long, env = "VISION_POOL_NAME")]
    pub pool_name: Option<String>,
    /// Pool fee in basis points, 0-1000 (0-10%) [default: 100].
    #[arg(long, env = "VISION_POOL_FEE_BPS")]
    pub pool_fee_bps: Option<u32>,
    /// Starting share difficulty of a new worker [default: 1000].
    #[arg(long, env = "VISION_SHARE_DIFFICULTY")]
    pub share_difficulty: Option<u64>,
    /// Lowest share difficulty vardiff may set; 1 makes every hash a share [default: 64].
    #[arg(long, env = "VISION_MIN_SHARE_DIFFICULTY")]
    pub min_share_difficulty: Option<u64>,
    /// Highest share difficulty vardiff may set [default: 2^62].
    #[arg(long, env = "VISION_MAX_SHARE_DIFFICULTY")]
    pub max_share_difficulty: Option<u64>,
    /// Seconds between a worker's shares that vardiff aims for [default: 10].
    #[arg(long, env = "VISION_TARGET_SHARE_SECONDS")]
    pub target_share_seconds: Option<u64>,
    /// Shares per second a worker may send (token bucket) [default: 100].
    #[arg(long, env = "VISION_SHARES_PER_SEC")]
    pub shares_per_sec: Option<f64>,
    /// Registrations per second per source address (an IPv6 /64; behind
    /// --trusted-proxy, the forwarded client) [default: 5].
    #[arg(long, env = "VISION_REGISTRATIONS_PER_SEC")]
    pub registrations_per_sec: Option<f64>,
    /// Share verifications per second that the not-yet-proven sessions of
    /// one source address may cost together (burst 10x) [default: 2].
    #[arg(long, env = "VISION_UNPROVEN_VERIFICATIONS_PER_SEC")]
    pub unproven_verifications_per_sec: Option<f64>,
    /// Invalid shares that ban a session with no accepted share yet [default: 5].
    #[arg(long, env = "VISION_UNPROVEN_INVALID_LIMIT")]
    pub unproven_invalid_limit: Option<u64>,
    /// Shares a worker must have sent before the invalid ratio can ban it [default: 100].
    #[arg(long, env = "VISION_BAN_MIN_SHARES")]
    pub ban_min_shares: Option<u64>,
    /// Invalid-share ratio above which a worker is banned [default: 0.10].
    #[arg(long, env = "VISION_BAN_INVALID_RATIO")]
    pub ban_invalid_ratio: Option<f64>,
    /// Ban length in seconds [default: 3600].
    #[arg(long, env = "VISION_BAN_SECONDS")]
    pub ban_seconds: Option<u64>,
    /// Seconds without requests before a worker leaves the active set [default: 600].
    #[arg(long, env = "VISION_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Days before an unused session's credential is forgotten [default: 7];
    /// never-proven sessions, and worker ids no session names, go after 6 h.
    #[arg(long, env = "VISION_SESSION_TTL_DAYS")]
    pub session_ttl_days: Option<u64>,
    /// Share verification threads [default: one per core].
    #[arg(long, env = "VISION_VERIFY_THREADS")]
    pub verify_threads: Option<usize>,
    /// CPU engine that verifies shares: fast (the best this CPU runs),
    /// scalar, avx2 or avx512 [default: fast].
    #[arg(long, env = "VISION_VERIFY_ENGINE")]
    pub verify_engine: Option<String>,
    /// Shares that may wait for verification before the pool answers 503 [default: 256].
    #[arg(long, env = "VISION_VERIFY_QUEUE")]
    pub verify_queue: Option<usize>,
    /// Memory for the database's page cache, in MiB (the bulk of the
    /// coordinator's resident memory) [default: 256].
    #[arg(long, env = "VISION_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Seconds between the dashboards' chart samples (1-300) [default: 10].
    #[arg(long, env = "VISION_CHART_INTERVAL_SECS")]
    pub chart_interval_secs: Option<u64>,
    /// How block rewards are shared: pplns, prop or solo [default: pplns].
    #[arg(long, env = "VISION_PAYOUT_SCHEME")]
    pub payout_scheme: Option<String>,
    /// PPLNS window N as a multiple of the block's network difficulty [default: 2].
    #[arg(long, env = "VISION_PPLNS_WINDOW_FACTOR")]
    pub pplns_window_factor: Option<f64>,
    /// Confirmations (the block itself counting one) before a block's reward is payable [default: 10].
    #[arg(long, env = "VISION_CONFIRMATIONS")]
    pub confirmations: Option<u64>,
    /// Blocks past its confirmations a credited block is still watched for a
    /// reorganisation (then settled: rounds stop reading it) [default: 100].
    #[arg(long, env = "VISION_ORPHAN_WATCH_DEPTH")]
    pub orphan_watch_depth: Option<u64>,
    /// Confirmed balance, in base units, at which a wallet is paid [default: 100000000 = 1 LAND].
    #[arg(long, env = "VISION_PAYOUT_THRESHOLD")]
    pub payout_threshold: Option<u64>,
    /// Address of the mandatory foundation fee [default: vision-foundation].
    #[arg(long, env = "VISION_FOUNDATION_ADDRESS")]
    pub foundation_address: Option<String>,
    /// Foundation fee in basis points; 100 (1%) at least [default: 100].
    #[arg(long, env = "VISION_FOUNDATION_FEE_BPS")]
    pub foundation_fee_bps: Option<u32>,
    /// Address the pool fee goes to [default: the pool address, where it simply stays].
    #[arg(long, env = "VISION_POOL_FEE_ADDRESS")]
    pub pool_fee_address: Option<String>,
    /// Milliseconds between reward rounds (chain polls, payouts) [default: 5000].
    #[arg(long, env = "VISION_REWARD_POLL_MS")]
    pub reward_poll_ms: Option<u64>,
    /// Test hook: kill the process with SIGKILL at this point of the money
    /// path (block_recorded, block_share_appended, block_share_noted,
    /// credit_block, after_sending, after_transfer).
    #[arg(long, env = "VISION_CRASH_AT", hide = true)]
    #[serde(skip)]
    pub crash_at: Option<String>,
}

/// This machine's name, as a coordinator names itself to its peers.
fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut name = [0u8; 256];
        // SAFETY: gethostname writes at most `name.len()` bytes into `name`.
        if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0 {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            if let Ok(name) = std::str::from_utf8(&name[..end]) {
                if !name.is_empty() {
                    return name.to_string();
                }
            }
        }
    }
    "localhost".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// HTTP connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub data_dir: PathBuf,
    /// The PostgreSQL store's URL; `None`: sled in `data_dir`.
    pub database_url: Option<String>,
    /// `--database-ca` (checked to hold at least one certificate) and the
    /// client certificate of `--database-cert` and `--database-key`
    /// (checked to parse).
    pub database_tls: DatabaseTls,
    pub database_connections: usize,
    /// sled's page cache, MiB.
    pub cache_mb: u64,
    pub bind: String,
    pub admin_token: Option<String>,
    pub node_token: Option<String>,
    pub upstream: Option<String>,
    pub upstream_token: Option<String>,
    /// The certificates of `--upstream-ca` (PEM, checked to hold at least one).
    pub upstream_ca_pem: Option<Vec<u8>>,
    pub limits: ConnectionLimits,
    pub trusted_proxies: TrustedProxies,
    pub devnet: DevnetConfig,
    pub pool: PoolConfig,
    /// The operator settings a new data directory starts with (the stored
    /// ones win once there are any).
    pub initial_settings: PoolSettings,
    pub block_time_secs: u64,
}

/// Where `err` is in `text` and what it says, without the line or the
/// string it quotes (`toml`'s own text shows the line, and a type error
/// the string: the admin token or the database password would end up in
/// the log).
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let before = err.span().and_then(|span| text.get(..span.start)).unwrap_or_default();
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {}, column {column}: {}", before.matches('\n').count() + 1, without_value(err.message()))
}

/// `message` without the value serde quotes in it (`invalid type: string
/// "…", expected u32`, ``unknown variant `…`, expected …``): what was found
/// and what was expected, not the value itself.
fn without_value(message: &str) -> String {
    let message = message.trim();
    let quotes_value = ["invalid type", "invalid value", "unknown variant"];
    if !quotes_value.iter().any(|kind| message.starts_with(kind)) {
        return message.to_string();
    }
    let kind = message.split([':', '`', '"']).next().unwrap_or_default().trim();
    // The expectation is serde's own words, after the value.
    let expected = message.rfind(", expected ").map_or("", |at| &message[at..]);
    format!("{kind}{expected}")
}

impl CoordinatorArgs {
    /// Reads a TOML file of settings.
    pub fn from_file(path: &Path) -> Result<CoordinatorArgs, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: toml_error(&text, &e) })
    }

    /// `self` where set, else `fallback`.
    pub fn or(self, fallback: CoordinatorArgs) -> CoordinatorArgs {
        macro_rules! pick {
            ($($field:ident),*) => { CoordinatorArgs { $($field: self.$field.or(fallback.$field)),* } };
        }
        pick!(
            data_dir,
            database_url,
            database_ca,
            database_cert,
            database_key,
            database_connections,
            bind,
            admin_token,
            node_token,
            upstream,
            upstream_token,
            upstream_ca,
            max_connections,
            max_connections_per_ip,
            trusted_proxy,
            header_timeout,
            request_timeout,
            max_long_polls,
            max_unproven_sessions,
            chain_id,
            devnet_difficulty,
            block_time,
            block_reward,
            coinbase_maturity,
            pool_address,
            pool_name,
            pool_fee_bps,
            share_difficulty,
            min_share_difficulty,
            max_share_difficulty,
            target_share_seconds,
            shares_per_sec,
            registrations_per_sec,
            unproven_verifications_per_sec,
            unproven_invalid_limit,
            ban_min_shares,
            ban_invalid_ratio,
            ban_seconds,
            idle_timeout,
            session_ttl_days,
            verify_threads,
            verify_engine,
            verify_queue,
            cache_mb,
            chart_interval_secs,
            payout_scheme,
            pplns_window_factor,
            confirmations,
            orphan_watch_depth,
            payout_threshold,
            foundation_address,
            foundation_fee_bps,
            pool_fee_address,
            reward_poll_ms,
            crash_at
        )
    }

    /// The reward settings, checked: the foundation fee cannot go below 1%.
    fn reward_config(&self, pool_address: &str, block_time_secs: u64) -> Result<RewardConfig, ConfigError> {
        let defaults = RewardConfig::default();
        let scheme = match &self.payout_scheme {
            Some(name) => {
                name.parse::<PayoutScheme>().map_err(|e| ConfigError::Invalid(format!("--payout-scheme: {e}")))?
            }
            None => defaults.scheme,
        };
        let factor = self.pplns_window_factor.unwrap_or(defaults.pplns_window_factor);
        if !(factor.is_finite() && factor > 0.0 && factor <= 1000.0) {
            return Err(ConfigError::Invalid("--pplns-window-factor must be above 0 and at most 1000".into()));
        }
        let confirmations = self.confirmations.unwrap_or(defaults.confirmations);
        if !(1..=10_000).contains(&confirmations) {
            return Err(ConfigError::Invalid("--confirmations must be 1-10000".into()));
        }
        let orphan_watch_depth = self.orphan_watch_depth.unwrap_or(defaults.orphan_watch_depth);
        if !(1..=1_000_000).contains(&orphan_watch_depth) {
            return Err(ConfigError::Invalid("--orphan-watch-depth must be 1-1000000".into()));
        }
        let foundation_fee_bps = self.foundation_fee_bps.unwrap_or(FOUNDATION_FEE_BPS);
        if !(FOUNDATION_FEE_BPS..=10_000 - crate::pool::MAX_POOL_FEE_BPS).contains(&foundation_fee_bps) {
            return Err(ConfigError::Invalid(format!(
                "--foundation-fee-bps must be {FOUNDATION_FEE_BPS}-9000: the foundation's 1% is mandatory"
            )));
        }
        let address = |flag: &str, value: Option<&String>, default: &str| -> Result<String, ConfigError> {
            let address = value.cloned().unwrap_or_else(|| default.to_string());
            check_address("address", &address).map_err(|_| {
                ConfigError::Invalid(format!("--{flag} must be 1-128 ASCII letters, digits, '_', '-' or ':'"))
            })?;
            Ok(address)
        };
        let crash_at = match &self.crash_at {
            Some(name) => Some(
                CrashPoint::parse(name)
                    .ok_or_else(|| ConfigError::Invalid(format!("--crash-at: unknown point {name:?}")))?,
            ),
            None => None,
        };
        Ok(RewardConfig {
            scheme,
            pplns_window_factor: factor,
            confirmations,
            orphan_watch_depth,
            payout_threshold: self.payout_threshold.unwrap_or(defaults.payout_threshold).max(1),
            foundation_address: address(
                "foundation-address",
                self.foundation_address.as_ref(),
                DEFAULT_FOUNDATION_ADDRESS,
            )?,
            foundation_fee_bps,
            pool_fee_address: address("pool-fee-address", self.pool_fee_address.as_ref(), pool_address)?,
            pool_address: pool_address.to_string(),
            block_time_secs,
            poll_interval: Duration::from_millis(self.reward_poll_ms.unwrap_or(5000).max(50)),
            crash_at,
            ..defaults
        })
    }

    /// Fills in defaults and checks ranges.
    pub fn resolve(self) -> Result<CoordinatorConfig, ConfigError> {
        let pool_defaults = PoolConfig::default();
        let devnet_defaults = DevnetConfig::default();
        let block_time_secs = self.block_time.unwrap_or(devnet_defaults.block_time_secs);
        if block_time_secs == 0 {
            return Err(ConfigError::Invalid("--block-time must be at least 1 second".into()));
        }
        let fee = self.pool_fee_bps.unwrap_or(100);
        if fee > crate::pool::MAX_POOL_FEE_BPS {
            return Err(ConfigError::Invalid("--pool-fee-bps must be 0-1000 (0-10%)".into()));
        }
        // A share must cost its miner more hashes than its check costs the pool:
        // a session proven at difficulty 1 buys forged checks at par.
        let min_share = self.min_share_difficulty.unwrap_or(DEFAULT_MIN_SHARE_DIFFICULTY).max(1);
        let max_share = self.max_share_difficulty.unwrap_or(1 << 62);
        if max_share < min_share {
            return Err(ConfigError::Invalid("--max-share-difficulty is below --min-share-difficulty".into()));
        }
        let ratio = self.ban_invalid_ratio.unwrap_or(pool_defaults.ban_invalid_ratio);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::Invalid("--ban-invalid-ratio must be within 0-1".into()));
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(ConfigError::Invalid(format!("--{name} must be a positive number")))
            }
        };
        let pool_address = self.pool_address.clone().unwrap_or(pool_defaults.pool_address.clone());
        check_address("address", &pool_address).map_err(|_| {
            ConfigError::Invalid("--pool-address must be 1-128 ASCII letters, digits, '_', '-' or ':'".into())
        })?;
        let shares_per_sec = positive("shares-per-sec", self.shares_per_sec.unwrap_or(pool_defaults.shares_per_sec))?;
        let unproven_per_sec = positive(
            "unproven-verifications-per-sec",
            self.unproven_verifications_per_sec.unwrap_or(pool_defaults.unproven_verifications_per_sec),
        )?;
        let nonzero = |name: &str, v: u64| {
            if v > 0 {
                Ok(v)
            } else {
                Err(ConfigError::Invalid(format!("--{name} must be at least 1")))
            }
        };
        let limits = ConnectionLimits {
            max_connections: nonzero("max-connections", self.max_connections.unwrap_or(4096) as u64)? as usize,
            max_connections_per_ip: nonzero(
                "max-connections-per-ip",
                self.max_connections_per_ip.unwrap_or(256) as u64,
            )? as usize,
            header_timeout: Duration::from_secs(nonzero("header-timeout", self.header_timeout.unwrap_or(30))?),
            request_timeout: Duration::from_secs(nonzero("request-timeout", self.request_timeout.unwrap_or(30))?),
        };
        let mut proxies = Vec::new();
        for proxy in self.trusted_proxy.iter().flatten().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let network = proxy.parse::<ipnet::IpNet>().or_else(|_| proxy.parse::<std::net::IpAddr>().map(Into::into));
            proxies.push(network.map_err(|_| {
                ConfigError::Invalid(format!("--trusted-proxy {proxy:?}: not an IP address or CIDR block"))
            })?);
        }
        let non_empty = |t: Option<String>| t.filter(|t| !t.is_empty());
        // The operator's credentials (the upstream token is the node's to
        // choose): refused at start, not accepted weak.
        let credential = |option: &str, token: Option<String>| match non_empty(token) {
            Some(token) => match vision_protocol::bearer_token::token_weakness(&token) {
                Some(weakness) => Err(ConfigError::Invalid(format!("{option} {weakness}"))),
                None => Ok(Some(token)),
            },
            None => Ok(None),
        };
        let admin_token = credential("--admin-token", self.admin_token.clone())?;
        let node_token = credential("--node-token", self.node_token.clone())?;
        let mut rewards = self.reward_config(&pool_address, block_time_secs)?;
        let bind = non_empty(self.bind.clone()).unwrap_or_else(|| "127.0.0.1:7072".into());
        // Checked here (a mistake is bad input, exit 2), before anything is
        // created in the data directory.
        if let Err(err) = std::net::ToSocketAddrs::to_socket_addrs(bind.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "--bind {bind:?}: not an address and port such as 127.0.0.1:7072 ({err})"
            )));
        }
        let upstream = non_empty(self.upstream.clone());
        if let Some(url) = &upstream {
            let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(ConfigError::Invalid(format!("--upstream {url:?}: not an http(s) URL of a node")));
            }
        }
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./vision-data"));
        let data_dir_shown = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
        rewards.coordinator_name = format!("{} {bind} {}", host_name(), data_dir_shown.display());
        let database_url = non_empty(self.database_url).map(check_database_url).transpose()?;
        let database_connections = self.database_connections.unwrap_or(16).clamp(2, 1024);
        // With PostgreSQL, half the general connections: the rest stay for
        // rewards, payouts and registrations.
        let public_reads =
            if database_url.is_some() { (database_connections / 2).max(1) } else { pool_defaults.public_reads };
        let client = client_certificate(self.database_cert.as_deref(), self.database_key.as_deref())?;
        if client.is_some() {
            match database_url.as_deref().map(str::parse::<tokio_postgres::Config>) {
                None => return Err(ConfigError::Invalid("--database-cert is for --database-url (PostgreSQL)".into())),
                Some(Ok(url)) if url.get_ssl_mode() != tokio_postgres::config::SslMode::Require => {
                    return Err(ConfigError::Invalid("--database-cert needs sslmode=require in --database-url".into()))
                }
                Some(_) => {}
            }
        }
        Ok(CoordinatorConfig {
            data_dir,
            database_url,
            database_tls: DatabaseTls {
                ca_pem: self.database_ca.as_deref().map(|p| read_ca_file("--database-ca", p)).transpose()?,
                client,
            },
            database_connections,
            cache_mb: self.cache_mb.unwrap_or(256).clamp(4, 1 << 20),
            bind,
            admin_token,
            node_token,
            upstream,
            upstream_token: non_empty(self.upstream_token),
            upstream_ca_pem: self.upstream_ca.as_deref().map(|p| read_ca_file("--upstream-ca", p)).transpose()?,
            limits,
            trusted_proxies: TrustedProxies::new(proxies),
            devnet: DevnetConfig {
                chain_id: self.chain_id.unwrap_or(devnet_defaults.chain_id),
                start_difficulty: self.devnet_difficulty.unwrap_or(devnet_defaults.start_difficulty).max(1),
                block_time_secs,
                block_reward: self.block_reward.unwrap_or(devnet_defaults.block_reward),
                coinbase_maturity: self.coinbase_maturity.unwrap_or(devnet_defaults.coinbase_maturity),
                key_addresses: vec![pool_address.clone()],
                ..devnet_defaults
            },
            pool: PoolConfig {
                pool_address,
                start_share_difficulty: self.share_difficulty.unwrap_or(pool_defaults.start_share_difficulty),
                shares_per_sec,
                share_burst: shares_per_sec * 2.0,
                registrations_per_sec: positive(
                    "registrations-per-sec",
                    self.registrations_per_sec.unwrap_or(pool_defaults.registrations_per_sec),
                )?,
                unproven_verifications_per_sec: unproven_per_sec,
                unproven_verification_burst: unproven_per_sec * 10.0,
                unproven_invalid_limit: self
                    .unproven_invalid_limit
                    .unwrap_or(pool_defaults.unproven_invalid_limit)
                    .max(1),
                ban_min_shares: self.ban_min_shares.unwrap_or(pool_defaults.ban_min_shares),
                ban_invalid_ratio: ratio,
                ban_duration: self.ban_seconds.map_or(pool_defaults.ban_duration, Duration::from_secs),
                idle_timeout: self.idle_timeout.map_or(pool_defaults.idle_timeout, Duration::from_secs),
                session_ttl: self
                    .session_ttl_days
                    .map_or(pool_defaults.session_ttl, |days| Duration::from_secs(days.max(1) * 86_400)),
                max_long_polls: self.max_long_polls.unwrap_or(pool_defaults.max_long_polls).max(1),
                max_unproven_sessions: self.max_unproven_sessions.unwrap_or(pool_defaults.max_unproven_sessions).max(1),
                verify_threads: self.verify_threads.unwrap_or(pool_defaults.verify_threads).max(1),
                verify_engine: match self.verify_engine.as_deref() {
                    None | Some("fast") => None,
                    Some(name) => Some(verify_engine(name)?),
                },
                verify_queue: self.verify_queue.unwrap_or(pool_defaults.verify_queue).max(1),
                public_reads,
                history_interval: match self.chart_interval_secs {
                    None => pool_defaults.history_interval,
                    Some(secs @ 1..=300) => Duration::from_secs(secs),
                    Some(_) => return Err(ConfigError::Invalid("--chart-interval-secs must be 1-300".into())),
                },
                rewards,
                ..pool_defaults
            },
            initial_settings: PoolSettings {
                pool_name: self.pool_name.unwrap_or_else(|| "Vision pool".into()),
                pool_fee_bps: fee,
                target_share_seconds: self.target_share_seconds.unwrap_or(10).clamp(1, 3600),
                min_share_difficulty: min_share,
                max_share_difficulty: max_share,
                running: true,
            },
            block_time_secs,
        })
    }
}

/// A `--database-url` that parses (the message never repeats the URL: it
/// may hold a password).
fn check_database_url(url: String) -> Result<String, ConfigError> {
    match url.parse::<tokio_postgres::Config>() {
        Ok(_) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(url),
        Ok(_) => Err(ConfigError::Invalid("--database-url must be a postgres:// URL".into())),
        Err(e) => Err(ConfigError::Invalid(format!("--database-url does not parse: {e}"))),
    }
}

/// The PEM bytes of a CA file (`--upstream-ca`, `--database-ca`) that holds
/// at least one certificate.
fn read_ca_file(flag: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("{flag} {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(invalid("no certificate in it".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// The client certificate of `--database-cert` and `--database-key`: both
/// or neither, a certificate and a private key that parse.
fn client_certificate(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<ClientCertificate>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => return Err(ConfigError::Invalid("--database-cert needs --database-key".into())),
        (None, Some(_)) => return Err(ConfigError::Invalid("--database-key needs --database-cert".into())),
    };
    let invalid =
        |flag: &str, path: &Path, why: String| ConfigError::Invalid(format!("{flag} {}: {why}", path.display()));
    let cert_pem = std::fs::read(cert).map_err(|e| invalid("--database-cert", cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("--database-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("--database-cert", cert, "no certificate in it".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| invalid("--database-key", key, e.to_string()))?;
    // The messages never repeat the key's contents.
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| invalid("--database-key", key, "no private key in it (PEM: PKCS#8, PKCS#1 or SEC1)".into()))?;
    // Loaded as the connection will load it, and checked against the
    // certificate: a wrong or broken key is refused here, at start.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => invalid("--database-key", key, "not the key of --database-cert".into()),
        _ => invalid("--database-key", key, "no usable private key in it (RSA, ECDSA or Ed25519)".into()),
    })?;
    Ok(Some(ClientCertificate { cert_pem, key_pem }))
}

/// A `--verify-engine` name other than `fast`: an on-demand engine this CPU runs.
fn verify_engine(name: &str) -> Result<visionx::CpuEngine, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("--verify-engine {name:?}: {why}"));
    match name.parse::<visionx::EngineKind>() {
        Ok(visionx::EngineKind::Cpu(engine)) if engine.is_supported() => Ok(engine),
        Ok(visionx::EngineKind::Cpu(engine)) => Err(invalid(visionx::EngineUnavailable(engine).to_string())),
        Ok(_) => Err(invalid("expected fast, scalar, avx2 or avx512".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broken config file is reported by line and column, never by
    /// quoting its line: the admin token's would land in the log.
    #[test]
    fn a_broken_config_file_does_not_quote_its_secrets() {
        let cases = [
            // (file, where)
            ("bind = \"0.0.0.0:9000\"\nadmin_token = \"s3cret\\q-token\"\n", "line 2, column 23"),
            ("admin_token = \"s3cret-token\"\npool_fee_bps = \"s3cret-token\"\n", "line 2, column 16"),
            ("database_url = \"postgres://u:s3cret-token@db/pool\nbind = 1", "line 1, column "),
            ("pool_fee_bps = \"ab\\\"s3cret, expected cd\"", "invalid type, expected u32"),
            ("bind = \"0.0.0.0:9000\"\nmax_connections = -7", "line 2, column 19: invalid value, expected usize"),
        ];
        let path = std::env::temp_dir().join(format!("vision-config-secret-{}.toml", std::process::id()));
        for (text, at) in cases {
            std::fs::write(&path, text).unwrap();
            let err = CoordinatorArgs::from_file(&path).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains(at), "{err} should say {at}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file: CoordinatorArgs =
            toml::from_str("bind = \"0.0.0.0:9000\"\npool_fee_bps = 250\nchain_id = \"filenet\"").unwrap();
        let flags = CoordinatorArgs { chain_id: Some("flagnet".into()), ..CoordinatorArgs::default() };
        let config = flags.or(file).resolve().unwrap();
        assert_eq!(config.bind, "0.0.0.0:9000");
        assert_eq!(config.initial_settings.pool_fee_bps, 250);
        assert_eq!(config.devnet.chain_id, "flagnet");
        assert_eq!(config.data_dir, PathBuf::from("./vision-data"));
    }

    #[test]
    fn trusted_proxies_come_from_the_file_as_a_list() {
        let file: CoordinatorArgs = toml::from_str("trusted_proxy = [\"127.0.0.1\", \"10.0.0.0/8\"]").unwrap();
        let config = file.resolve().unwrap();
        let headers: axum::http::HeaderMap =
            [(axum::http::header::HeaderName::from_static("x-forwarded-for"), "203.0.113.9".parse().unwrap())]
                .into_iter()
                .collect();
        for proxy in ["127.0.0.1", "10.1.2.3"] {
            let source = config.trusted_proxies.source(proxy.parse().unwrap(), &headers);
            assert_eq!(source, "203.0.113.9".parse::<std::net::IpAddr>().unwrap(), "{proxy}");
        }
    }

    #[test]
    fn out_of_range_settings_are_errors() {
        for bad in [
            CoordinatorArgs { pool_fee_bps: Some(1001), ..CoordinatorArgs::default() },
            CoordinatorArgs { block_time: Some(0), ..CoordinatorArgs::default() },
            CoordinatorArgs {
                min_share_difficulty: Some(10),
                max_share_difficulty: Some(5),
                ..CoordinatorArgs::default()
            },
            CoordinatorArgs { ban_invalid_ratio: Some(1.5), ..CoordinatorArgs::default() },
            CoordinatorArgs { shares_per_sec: Some(0.0), ..CoordinatorArgs::default() },
            CoordinatorArgs { foundation_fee_bps: Some(99), ..CoordinatorArgs::default() },
            CoordinatorArgs { foundation_fee_bps: Some(0), ..CoordinatorArgs::default() },
            CoordinatorArgs { payout_scheme: Some("pps".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { pplns_window_factor: Some(0.0), ..CoordinatorArgs::default() },
            CoordinatorArgs { foundation_address: Some("bad address".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { crash_at: Some("nowhere".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { confirmations: Some(0), ..CoordinatorArgs::default() },
            CoordinatorArgs { pool_address: Some("no spaces".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { confirmations: Some(u64::MAX), ..CoordinatorArgs::default() },
            CoordinatorArgs { verify_engine: Some("reference".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { verify_engine: Some("avx9".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { trusted_proxy: Some(vec!["proxy.example".into()]), ..CoordinatorArgs::default() },
            CoordinatorArgs { trusted_proxy: Some(vec!["10.0.0.0/33".into()]), ..CoordinatorArgs::default() },
            CoordinatorArgs { bind: Some("foo".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { bind: Some("127.0.0.1".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { upstream: Some("foo".into()), ..CoordinatorArgs::default() },
            CoordinatorArgs { upstream: Some("ftp://node:1".into()), ..CoordinatorArgs::default() },
        ] {
            assert!(bad.resolve().is_err());
        }
        // Empty values (an env file's VISION_BIND=) are unset.
        let blank = CoordinatorArgs { bind: Some(String::new()), upstream: Some(String::new()), ..Default::default() };
        let config = blank.resolve().unwrap();
        assert_eq!((config.bind.as_str(), config.upstream), ("127.0.0.1:7072", None));
        assert!(toml::from_str::<CoordinatorArgs>("unknown_key = 1").is_err());
    }

    #[test]
    fn weak_admin_and_node_tokens_are_refused() {
        let strong = "0123456789abcdef";
        for (admin, node, refused) in [
            (Some("s3cret"), None, Some("--admin-token is shorter than 16")),
            (None, Some("n0de"), Some("--node-token is shorter than 16")),
            (Some(strong), Some("0123456789 abcdef"), Some("--node-token holds a space")),
            (Some(strong), Some(strong), None),
            // Blank is unset (an env file's VISION_ADMIN_TOKEN=).
            (Some(""), Some(""), None),
        ] {
            let args = CoordinatorArgs {
                admin_token: admin.map(Into::into),
                node_token: node.map(Into::into),
                ..CoordinatorArgs::default()
            };
            match (args.resolve(), refused) {
                (Ok(_), None) => {}
                (Err(err), Some(reason)) => {
                    let message = err.to_string();
                    assert!(message.starts_with(reason), "{message}");
                    assert!(!message.contains("s3cret") && !message.contains("n0de"), "{message}");
                }
                (result, _) => panic!("{admin:?} {node:?}: {:?}", result.map(|_| ())),
            }
        }
        // The upstream's token is the node's choice, not checked here.
        let upstream = CoordinatorArgs {
            upstream: Some("http://127.0.0.1:1".into()),
            upstream_token: Some("short".into()),
            ..CoordinatorArgs::default()
        };
        assert!(upstream.resolve().is_ok());
    }

    #[test]
    fn a_client_certificate_needs_both_files_and_each_must_parse() {
        let dir = std::env::temp_dir().join(format!("vision-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
        let error = |cert: Option<&str>, key: Option<&str>| {
            let args = CoordinatorArgs {
                database_cert: cert.map(|c| dir.join(c)),
                database_key: key.map(|k| dir.join(k)),
                ..CoordinatorArgs::default()
            };
            args.resolve().err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(error(Some("junk.pem"), None).contains("--database-cert needs --database-key"));
        assert!(error(None, Some("junk.pem")).contains("--database-key needs --database-cert"));
        assert!(error(Some("missing.pem"), Some("junk.pem")).contains("--database-cert"));
        assert!(error(Some("junk.pem"), Some("junk.pem")).contains("no certificate in it"));
        assert!(CoordinatorArgs::default().resolve().unwrap().database_tls.client.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn verify_engine_names_an_engine_this_cpu_runs() {
        let engine = |name: &str| {
            CoordinatorArgs { verify_engine: Some(name.into()), ..CoordinatorArgs::default() }
                .resolve()
                .map(|config| config.pool.verify_engine)
        };
        assert_eq!(engine("fast").unwrap(), None);
        assert_eq!(engine("scalar").unwrap(), Some(visionx::CpuEngine::Scalar));
        for simd in [visionx::CpuEngine::Avx2, visionx::CpuEngine::Avx512] {
            match engine(simd.name()) {
                Ok(chosen) => assert!(simd.is_supported() && chosen == Some(simd)),
                Err(e) => assert!(!simd.is_supported() && e.to_string().contains("lacks"), "{e}"),
            }
        }
    }
}
