//! Coordinator configuration: command-line flags, environment variables
//! and a TOML file, in that order of precedence, over built-in defaults.
//!
//! - `flags`: [`CoordinatorArgs`], every setting as a flag, a `VISION_*`
//!   variable and a TOML key, as given; reading the file (whose errors
//!   never quote a value: it holds the tokens).
//! - this module: checking them and resolving them, with the defaults,
//!   into a [`CoordinatorConfig`].
//! - `credential_files`: the database URL, CA bundles and the database
//!   client certificate, read and checked at start.

mod credential_files;
mod flags;

pub use flags::CoordinatorArgs;

use std::path::PathBuf;
use std::time::Duration;

use crate::chain::check_address;
use crate::chain::devnet::DevnetConfig;
use crate::chain::upstream::shown_url;
use crate::client_source::TrustedProxies;
use crate::pool::PoolConfig;
use crate::rewards::reward_split::PayoutScheme;
use crate::rewards::{CrashPoint, RewardConfig, DEFAULT_FOUNDATION_ADDRESS, FOUNDATION_FEE_BPS};
use crate::storage::{DatabaseTls, PoolSettings};
use credential_files::{check_database_url, client_certificate, read_ca_file};

/// The vardiff floor unless set: a proven session's forged shares are
/// verified a few at a time until its ban, and proving one must cost the
/// sender more hashes than that. The slowest rigs still get a share every
/// few seconds.
pub const DEFAULT_MIN_SHARE_DIFFICULTY: u64 = 64;

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
impl CoordinatorConfig {
    /// What this configuration runs, for `--check-config`: where it
    /// listens, keeps its books and finds its chain, and how it pays. Never
    /// a secret: tokens only as set or not, URLs without their user,
    /// password or query.
    pub fn summary(&self) -> String {
        let storage = match &self.database_url {
            Some(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(db) => {
                    let hosts: Vec<String> = db
                        .get_hosts()
                        .iter()
                        .map(|host| match host {
                            tokio_postgres::config::Host::Tcp(name) => name.clone(),
                            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                        })
                        .collect();
                    format!(
                        "PostgreSQL, database {:?} on {} ({} connections)",
                        db.get_dbname().unwrap_or("(default)"),
                        hosts.join(", "),
                        self.database_connections
                    )
                }
                Err(_) => "PostgreSQL".to_string(),
            },
            None => format!("sled in {} (page cache {} MiB)", self.data_dir.display(), self.cache_mb),
        };
        let chain = match &self.upstream {
            Some(url) => format!("upstream node {}", shown_url(url)),
            None => format!(
                "embedded devnet {:?} ({} s blocks, data in {})",
                self.devnet.chain_id,
                self.devnet.block_time_secs,
                self.data_dir.display()
            ),
        };
        let set = |token: &Option<String>| if token.is_some() { "set" } else { "not set: its routes are off" };
        let r = &self.pool.rewards;
        let bps = |bps: u32| format!("{:.2}%", f64::from(bps) / 100.0);
        [
            format!("listen: http://{}", self.bind),
            format!("storage: {storage}"),
            format!("chain: {chain}"),
            format!(
                "pool (a new data directory's; stored settings win): {:?}, fee {} to {}, foundation {} to {}",
                self.initial_settings.pool_name,
                bps(self.initial_settings.pool_fee_bps),
                r.pool_fee_address,
                bps(r.foundation_fee_bps),
                r.foundation_address
            ),
            format!(
                "payouts: {} from {}, {} confirmations, threshold {}",
                r.scheme, r.pool_address, r.confirmations, r.payout_threshold
            ),
            format!("admin token: {}", set(&self.admin_token)),
            format!(
                "connections: {} at most, {} from one address",
                self.limits.max_connections, self.limits.max_connections_per_ip
            ),
        ]
        .map(|line| format!("  {line}"))
        .join("\n")
    }
}

impl CoordinatorArgs {
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
        // Kept as the parser writes it (scheme in lower case, no spaces):
        // what was checked here is what the node client is given.
        let upstream = match non_empty(self.upstream.clone()) {
            Some(url) => match reqwest::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u.as_str().to_string()),
                // (Not repeated: it may carry a user and password.)
                _ => return Err(ConfigError::Invalid("--upstream: not an http(s) URL of a node".into())),
            },
            None => None,
        };
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
                public_answer_bytes: pool_defaults.public_answer_bytes,
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

    /// `--check-config` shows what runs, and no secret.
    #[test]
    fn the_summary_names_what_runs_and_no_secret() {
        let args = CoordinatorArgs {
            database_url: Some("postgres://pool:s3cret-pass@db.example:5432/books?sslmode=require".into()),
            upstream: Some("https://node-user:node-pass@node.example:8443/rpc?key=k3y".into()),
            upstream_token: Some("upstream-token-0123456789".into()),
            admin_token: Some("admin-token-0123456789abcdef".into()),
            bind: Some("0.0.0.0:7072".into()),
            ..CoordinatorArgs::default()
        };
        let summary = args.resolve().unwrap().summary();
        for needed in
            ["http://0.0.0.0:7072", "\"books\" on db.example", "https://node.example:8443/...", "admin token: set"]
        {
            assert!(summary.contains(needed), "{needed}: {summary}");
        }
        for secret in ["s3cret", "node-user", "node-pass", "k3y", "upstream-token", "admin-token"] {
            assert!(!summary.contains(secret), "{secret} shown: {summary}");
        }
        let summary = CoordinatorArgs::default().resolve().unwrap().summary();
        assert!(summary.contains("sled in ") && summary.contains("embedded devnet"), "{summary}");
        assert_eq!(shown_url("https://node.example/v1/api-key-123"), "https://node.example/...");
        assert_eq!(shown_url("http://10.0.0.5:7072"), "http://10.0.0.5:7072");
        // What is checked is what the node client gets: the parser's form.
        let args =
            CoordinatorArgs { upstream: Some(" HTTPS://u:pw-secret@node.example/".into()), ..Default::default() };
        assert_eq!(args.resolve().unwrap().upstream.as_deref(), Some("https://u:pw-secret@node.example/"));
        let fine = CoordinatorArgs {
            database_url: Some("postgres://pool:p%40ss@db.example/books".into()),
            ..Default::default()
        };
        assert!(fine.resolve().is_ok(), "an @ written %40");
        assert!(summary.contains("admin token: not set"), "{summary}");
        // A raw `@` in a password is refused (the parser would take the
        // rest for the host), and a bad upstream is not repeated.
        for (args, flag) in [
            (
                CoordinatorArgs {
                    database_url: Some("postgres://pool:p@ss@db.example/books".into()),
                    ..Default::default()
                },
                "--database-url",
            ),
            (
                CoordinatorArgs { upstream: Some("htps://user:pw-secret@node".into()), ..Default::default() },
                "--upstream",
            ),
            (
                CoordinatorArgs {
                    database_url: Some("postgres://db.example/books?password=p@ss".into()),
                    ..Default::default()
                },
                "--database-url",
            ),
        ] {
            let message = args.resolve().unwrap_err().to_string();
            assert!(message.contains(flag) && !message.contains("ss@") && !message.contains("pw-secret"), "{message}");
        }
    }

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
