//! Every setting of the coordinator as given: a flag, a `VISION_*`
//! environment variable, or a key of the `--config` TOML file, before any
//! check (`CoordinatorArgs::resolve`, in the parent module, checks them).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use super::ConfigError;
use vision_protocol::settings_errors::without_value;

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
/// Where `err` is in `text` and what it says, without the line or the
/// string it quotes (`toml`'s own text shows the line, and a type error
/// the string: the admin token or the database password would end up in
/// the log).
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let before = err.span().and_then(|span| text.get(..span.start)).unwrap_or_default();
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {}, column {column}: {}", before.matches('\n').count() + 1, without_value(err.message()))
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
}
