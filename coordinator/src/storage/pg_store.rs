//! [`PoolStore`] on PostgreSQL, for several coordinators on one database.
//!
//! Safety comes from the database, not from any one process: the duplicate
//! key of a share is a unique key, ledger positions are handed out under a
//! row lock held to the commit ([`super::pg_schema`]'s
//! `pool_append_shares_of_templates`, a batch at a time:
//! [`super::pg_share_appender`]), a share whose key another coordinator
//! may have pruned is refused rather than credited again,
//! balances move in transactions that lock their rows and refuse a part
//! below zero, and ids come from a sequence. Every write is committed
//! (durable) when its call returns, so [`PoolStore::flush`] has nothing to do
//! (a database with `synchronous_commit=off`, which would break that, is
//! refused at connect).
//!
//! Connections come from three `deadpool-postgres` pools (the share path's
//! own `SHARE_PATH_CONNECTIONS`, one of them the appender's alone, and the
//! rest); a call that cannot get
//! one within [`CONNECTION_WAIT`] fails with [`StoreError::Backend`], which the
//! API answers with 503 (nothing was acknowledged).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{NoTls, Row};

use super::pg_schema::{migrate, pg_error, pg_update_error};
use super::pg_share_appender::ShareAppender;
use super::{
    AppendOutcome, BalanceBucket, BalanceRecord, BanChanges, BanRecord, BlockRewardRecord, CoordinatorRules, Credit,
    Expectation, FoundBlockRecord, JobRecord, LeaseTerms, PayoutRecord, PayoutStatus, PoolSettings, PoolStore,
    RewardUpdate, SessionRecord, ShareAggregate, ShareRecord, StoreError, TemplateRecord, WorkerRecord,
    BAN_CHANGES_KEPT_MS,
};

/// How long a call waits for a free connection before it fails.
const CONNECTION_WAIT: Duration = Duration::from_secs(5);
/// Connections kept for shares, beyond `--database-connections`: one for the
/// appender (one batch at a time, a pool of its own: the duplicate checks of
/// a flood of shares must not queue it), the rest for duplicate checks and
/// the jobs of shares issued elsewhere.
const SHARE_PATH_CONNECTIONS: usize = 8;
/// The advisory lock key that makes compaction one coordinator at a time.
const COMPACTION_LOCK: i64 = 0x5653_4e43;
/// The advisory lock key that makes coordinators meet one at a time ("VSNR"),
/// so of two starting at once with different rules the second sees the first.
const RULES_LOCK: i64 = 0x5653_4e52;

/// How [`PgStore`]'s connections use TLS (with `sslmode=require` in the URL).
#[derive(Debug, Clone, Default)]
pub struct DatabaseTls {
    /// Certificate authorities (PEM) to check the server against; `None`:
    /// the system's trust store.
    pub ca_pem: Option<Vec<u8>>,
    /// The certificate this coordinator shows the server, for `cert`
    /// authentication (`--database-cert`, `--database-key`).
    pub client: Option<ClientCertificate>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct ClientCertificate {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").field("cert_pem", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

/// [`PoolStore`] on a PostgreSQL database (see the module doc).
#[derive(Clone)]
pub struct PgStore {
    /// Everything but the share path: rewards, payouts, sessions, reads.
    pool: Pool,
    /// The share path's own connections ([`SHARE_PATH_CONNECTIONS`]): the
    /// appender's batches and the duplicate check, so a flood of reads on
    /// `pool` never holds back a share's acknowledgement.
    share_path: Pool,
    /// Read once at open: it keys every share, so it must not cost a read per share.
    secret: [u8; 32],
    /// Appends shares in batches, one transaction each.
    appender: ShareAppender,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .field("share_path", &self.share_path.status())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (libpq style: `postgres://user:pass@host:5432/db`,
    /// or a Unix-socket directory as `postgres://user@/db?host=/run/postgresql`),
    /// brings the schema up to date and reads (or creates) the pool secret.
    /// With `sslmode=require` in the URL, connections use TLS, the server's
    /// certificate checked against `tls.ca_pem` or the system's trust store,
    /// and show `tls.client` when given (which needs `sslmode=require`).
    pub async fn connect(url: &str, max_connections: usize, tls: &DatabaseTls) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Backend(format!("the database URL does not parse: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECTION_WAIT);
        }
        if config.get_application_name().is_none() {
            config.application_name("vision-coordinator");
        }
        notice_dead_connections(&mut config);
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        if tls.client.is_some() && config.get_ssl_mode() != SslMode::Require {
            return Err(StoreError::Backend(
                "a client certificate (--database-cert) needs sslmode=require in the database URL".into(),
            ));
        }
        let manager = || -> Result<Manager, StoreError> {
            Ok(match config.get_ssl_mode() {
                SslMode::Require => Manager::from_config(config.clone(), tls_connector(tls)?, recycling.clone()),
                // `prefer` (the default) without TLS: plain, as libpq does without SSL support.
                _ => Manager::from_config(config.clone(), NoTls, recycling.clone()),
            })
        };
        let pool = connection_pool(manager()?, max_connections.max(2))?;
        let share_path = connection_pool(manager()?, SHARE_PATH_CONNECTIONS - 1)?;
        let appending = connection_pool(manager()?, 1)?;
        let mut client =
            pool.get().await.map_err(|e| StoreError::Backend(format!("postgresql: {}", super::with_causes(&e))))?;
        check_durable_commits(&client).await?;
        check_read_committed(&client).await?;
        migrate(&mut client).await?;
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Backend(format!("no OS randomness: {e}")))?;
        // Whichever coordinator inserts first sets the pool's secret.
        client
            .execute("INSERT INTO pool_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", &[&&fresh[..]])
            .await
            .map_err(pg_error)?;
        let row = client.query_one("SELECT secret FROM pool_secret WHERE id = 1", &[]).await.map_err(pg_error)?;
        let stored: Vec<u8> = row.get(0);
        let secret = stored
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt { tree: "pool_secret", message: "not 32 bytes".into() })?;
        drop(client);
        let appender = ShareAppender::start(appending);
        Ok(PgStore { pool, share_path, secret, appender })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Backend(format!("postgresql: {}", super::with_causes(&e))))
    }

    async fn share_client(&self) -> Result<Object, StoreError> {
        self.share_path.get().await.map_err(|e| StoreError::Backend(format!("postgresql: {}", super::with_causes(&e))))
    }

    fn share_key(&self, height: u64, template_id: &str, nonce: u64) -> Vec<u8> {
        super::share_key(&self.secret, height, template_id, nonce)
    }

    /// The `record` column (the first) of every row, decoded.
    async fn records<T: DeserializeOwned>(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        let rows = client.query(&statement, params).await.map_err(pg_error)?;
        rows.iter().map(|row| decode(table, row, 0)).collect()
    }

    async fn record<T: DeserializeOwned>(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        record_on(&self.client().await?, table, sql, params).await
    }

    /// Runs `sql` on the ban of `session_id` (`$1`, and `with` as `$2`
    /// when given) and logs the change, in one transaction, trimming the
    /// log of changes older than it keeps. Returns the rows `sql` changed.
    async fn change_ban(
        &self,
        session_id: &str,
        sql: &str,
        with: Option<&(dyn tokio_postgres::types::ToSql + Sync)>,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let changed = match with {
            Some(with) => tx.execute(sql, &[&session_id, with]).await,
            None => tx.execute(sql, &[&session_id]).await,
        }
        .map_err(pg_error)?;
        tx.execute("INSERT INTO pool_ban_changes (session_id) VALUES ($1)", &[&session_id]).await.map_err(pg_error)?;
        tx.execute(
            "DELETE FROM pool_ban_changes WHERE at_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1",
            &[&big(BAN_CHANGES_KEPT_MS)],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(changed)
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.execute(&statement, params).await.map_err(pg_error)
    }

    async fn shares(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        let rows = client.query(&statement, params).await.map_err(pg_error)?;
        rows.iter().map(|row| Ok((row.get::<_, i64>(0) as u64, decode("pool_shares", row, 1)?))).collect()
    }
}

/// The `record` column (the first) of the row `sql` finds on `client`, decoded.
async fn record_on<T: DeserializeOwned>(
    client: &Object,
    table: &'static str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<T>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
    let row = client.query_opt(&statement, params).await.map_err(pg_error)?;
    row.map(|row| decode(table, &row, 0)).transpose()
}

fn connection_pool(manager: Manager, size: usize) -> Result<Pool, StoreError> {
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECTION_WAIT))
        .create_timeout(Some(CONNECTION_WAIT))
        .recycle_timeout(Some(CONNECTION_WAIT))
        .build()
        .map_err(|e| StoreError::Backend(format!("postgresql pool: {e}")))
}

/// What each session asks of the server, unless the URL's `options` set
/// it: to abort a transaction of ours left idle for 60 s, and the same TCP
/// limits as this side's for the server's end of the connection, so that a
/// backend of a coordinator that vanished (blocked sending a batch's results,
/// the ledger head locked meanwhile) gives up within about a minute, not
/// after TCP's fifteen.
const SERVER_SIDE: [(&str, &str); 5] = [
    ("idle_in_transaction_session_timeout", "60s"),
    ("tcp_user_timeout", "30000"),
    ("tcp_keepalives_idle", "30"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
];

/// A database that vanished (a failover, a cut link) leaves connections that
/// hang until TCP gives up: two hours when idle, about fifteen minutes with
/// data in flight, by default. Unless the URL says otherwise, this side
/// notices within about a minute: keepalive probes from 30 s idle, every
/// 10 s, and (on Linux, where it also bounds the probes) a 30 s limit on
/// unacknowledged data; the pool then opens a fresh connection. The server
/// side is asked for the same ([`SERVER_SIDE`]), so one whose connection
/// died does not hold its locks (the ledger head) until the server's own
/// keepalives notice. (A `keepalives_idle` of exactly 7200, the driver's
/// default, counts as unset.)
fn notice_dead_connections(config: &mut tokio_postgres::Config) {
    if config.get_keepalives_idle() == tokio_postgres::Config::new().get_keepalives_idle() {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    // Added to the URL's own `options`, not dropped because it has some.
    let mut options = config.get_options().unwrap_or_default().to_string();
    for (name, value) in SERVER_SIDE {
        if !options.contains(name) {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {name}={value}"));
        }
    }
    config.options(options);
}

/// Refuses a database that acknowledges commits before they are on disk: with
/// `synchronous_commit=off` a server crash loses the last moments of
/// commits, and the pool has already answered those shares as accepted and
/// those payouts as sent. (`local` and the `remote_*` levels all wait for
/// the local flush.)
async fn check_durable_commits(client: &Object) -> Result<(), StoreError> {
    let row = client.query_one("SHOW synchronous_commit", &[]).await.map_err(pg_error)?;
    let level: String = row.get(0);
    if level == "off" {
        return Err(StoreError::Backend(
            "the database has synchronous_commit=off, so a crash would lose shares the pool has acknowledged; \
             turn it on (ALTER ROLE ... SET synchronous_commit = on), or add options=-c%20synchronous_commit%3Don \
             to the database URL"
                .into(),
        ));
    }
    Ok(())
}

/// Refuses a database whose transactions default to a stricter isolation
/// than READ COMMITTED: the reward updates lock the rows they check and
/// read them locked, which is what READ COMMITTED gives; under REPEATABLE
/// READ or SERIALIZABLE two coordinators' updates touching one wallet (the
/// fee addresses are in every split) fail each other with serialization
/// errors, round after round.
async fn check_read_committed(client: &Object) -> Result<(), StoreError> {
    let row = client.query_one("SHOW default_transaction_isolation", &[]).await.map_err(pg_error)?;
    let level: String = row.get(0);
    if level != "read committed" {
        return Err(StoreError::Backend(format!(
            "the database's transactions default to {level}; the coordinator needs read committed (the \
             server's default): ALTER ROLE ... SET default_transaction_isolation = 'read committed'"
        )));
    }
    Ok(())
}

/// TLS for `sslmode=require`: the server's certificate must chain to `ca_pem`
/// (PEM) or, without it, to the system's trust store, and name the host.
fn tls_connector(tls: &DatabaseTls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |why: String| StoreError::Backend(format!("database TLS: {why}"));
    let mut roots = rustls::RootCertStore::empty();
    match tls.ca_pem.as_deref() {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.map_err(|e| invalid(e.to_string()))?).map_err(|e| invalid(e.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert); // one unreadable system certificate spoils no other
            }
        }
    }
    if roots.is_empty() {
        return Err(invalid("no certificate authority to check the server against".into()));
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots);
    let config = match &tls.client {
        Some(client) => {
            let chain = CertificateDer::pem_slice_iter(&client.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("--database-cert: {e}")))?;
            let key =
                PrivateKeyDer::from_pem_slice(&client.key_pem).map_err(|e| invalid(format!("--database-key: {e}")))?;
            // Also checks that the key belongs to the certificate.
            builder.with_client_auth_cert(chain, key).map_err(|e| invalid(format!("--database-cert: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn decode<T: DeserializeOwned>(table: &'static str, row: &Row, column: usize) -> Result<T, StoreError> {
    row.try_get::<_, Json<T>>(column)
        .map(|json| json.0)
        .map_err(|e| StoreError::Corrupt { tree: table, message: e.to_string() })
}

fn json<T: Serialize>(value: &T) -> Json<&T> {
    Json(value)
}

/// A count or limit as PostgreSQL's bigint.
pub(super) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn limit(n: usize) -> i64 {
    big(n as u64)
}

#[async_trait::async_trait]
impl PoolStore for PgStore {
    async fn bind_worker(&self, worker: &WorkerRecord) -> Result<WorkerRecord, StoreError> {
        let client = self.client().await?;
        // A racing first registration waits for the other's commit, then
        // updates the one binding. Registering again moves its time on, so
        // a prune running meanwhile (`prune_workers_without_sessions`, whose
        // DELETE re-checks the time on the updated row) keeps it; one that
        // deleted it first is waited for, and the id is bound anew.
        record_on(
            &client,
            "pool_workers",
            "INSERT INTO pool_workers (worker_id, record) VALUES ($1, $2)
             ON CONFLICT (worker_id) DO UPDATE SET record = jsonb_set(pool_workers.record, '{registered_at_ms}',
                 to_jsonb(greatest((pool_workers.record->>'registered_at_ms')::bigint,
                                   (EXCLUDED.record->>'registered_at_ms')::bigint)))
             RETURNING record",
            &[&worker.worker_id, &json(worker)],
        )
        .await?
        .ok_or_else(|| StoreError::Backend(format!("binding worker {} returned nothing", worker.worker_id)))
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO pool_workers (worker_id, record) VALUES ($1, $2)
             ON CONFLICT (worker_id) DO UPDATE SET record = EXCLUDED.record",
            &[&worker.worker_id, &json(worker)],
        )
        .await
        .map(drop)
    }

    async fn worker(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError> {
        self.record("pool_workers", "SELECT record FROM pool_workers WHERE worker_id = $1", &[&worker_id]).await
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO pool_sessions (token_hash, last_seen_ms, record) VALUES ($1, $2, $3)
             ON CONFLICT (token_hash) DO UPDATE SET last_seen_ms = EXCLUDED.last_seen_ms, record = EXCLUDED.record",
            &[&session.token_hash, &big(session.last_seen_ms), &json(session)],
        )
        .await
        .map(drop)
    }

    async fn touch_session(
        &self,
        token_hash: &str,
        seen_ms: u64,
        proven: bool,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // A prune's DELETE racing it re-checks its condition on the row
        // this updates (or this finds the row gone).
        self.record(
            "pool_sessions",
            "UPDATE pool_sessions SET last_seen_ms = greatest(last_seen_ms, $2),
                 record = jsonb_set(jsonb_set(record, '{last_seen_ms}', to_jsonb(greatest(last_seen_ms, $2))),
                     '{proven}', to_jsonb(coalesce((record->>'proven')::boolean, false) OR $3))
             WHERE token_hash = $1
             RETURNING record",
            &[&token_hash, &big(seen_ms), &proven],
        )
        .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.record("pool_sessions", "SELECT record FROM pool_sessions WHERE token_hash = $1", &[&token_hash]).await
    }

    async fn prune_sessions(&self, seen_before_ms: u64, unproven_seen_before_ms: u64) -> Result<usize, StoreError> {
        let n = self
            .execute(
                "DELETE FROM pool_sessions WHERE last_seen_ms < $1 \
                 OR (last_seen_ms < $2 AND NOT coalesce((record->>'proven')::boolean, false))",
                &[&big(seen_before_ms), &big(unproven_seen_before_ms)],
            )
            .await?;
        Ok(n as usize)
    }

    async fn prune_workers_without_sessions(&self, registered_before_ms: u64) -> Result<usize, StoreError> {
        // Hourly: an anti-join over both tables is cheaper than an index
        // every registration would pay for.
        let n = self
            .execute(
                "DELETE FROM pool_workers w WHERE (w.record->>'registered_at_ms')::bigint < $1 \
                 AND NOT EXISTS (SELECT 1 FROM pool_sessions s WHERE s.record->>'worker_id' = w.worker_id)",
                &[&big(registered_before_ms)],
            )
            .await?;
        Ok(n as usize)
    }

    async fn append_share(&self, share: &ShareRecord) -> Result<AppendOutcome, StoreError> {
        let key = self.share_key(share.height, &share.template_id, share.nonce);
        self.appender.append(key, share).await
    }

    async fn credited(&self, height: u64, template_id: &str, nonce: u64) -> Result<Option<Credit>, StoreError> {
        let key = self.share_key(height, template_id, nonce);
        let client = self.share_client().await?;
        let row = client
            .query_opt(
                "SELECT position, session_id FROM pool_share_keys WHERE key = $1 AND height = $2",
                &[&key, &big(height)],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|row| Credit { position: row.get::<_, i64>(0) as u64, session_id: row.get(1) }))
    }

    async fn shares_from(&self, from: u64, limit_n: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.shares(
            "SELECT position, record FROM pool_shares WHERE position >= $1 ORDER BY position LIMIT $2",
            &[&big(from), &limit(limit_n)],
        )
        .await
    }

    async fn ledger_len(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row =
            client.query_one("SELECT next_position FROM pool_ledger_head WHERE id = 1", &[]).await.map_err(pg_error)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn prune_share_keys_below(&self, height: u64) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        // First the mark, under the head's row lock (so after any append in
        // flight, and before any key goes): appends below it check their
        // template from then on.
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.batch_execute("SET LOCAL lock_timeout = '10s'").await.map_err(pg_error)?;
        tx.execute(
            "UPDATE pool_ledger_head SET share_keys_pruned_below = GREATEST(share_keys_pruned_below, $1) WHERE id = 1",
            &[&big(height)],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        // Then the height's templates, locked first (appends skip a locked
        // one as gone), its keys, and the templates, remembered as pruned:
        // while a template is stored and not remembered, its keys are whole.
        // (Jobs are `prune_jobs_below`'s, as on sled.)
        let tx = client.transaction().await.map_err(pg_error)?;
        let below = big(height);
        tx.execute("SELECT 1 FROM pool_templates WHERE height < $1 ORDER BY template_id FOR UPDATE", &[&below])
            .await
            .map_err(pg_error)?;
        let n = tx.execute("DELETE FROM pool_share_keys WHERE height < $1", &[&below]).await.map_err(pg_error)?;
        tx.execute(
            "WITH gone AS (DELETE FROM pool_templates WHERE height < $1 RETURNING template_id, height) \
             INSERT INTO pool_pruned_templates (template_id, height) SELECT template_id, height FROM gone \
             ON CONFLICT DO NOTHING",
            &[&below],
        )
        .await
        .map_err(pg_error)?;
        tx.execute("DELETE FROM pool_pruned_templates WHERE height < $1::bigint - 1000", &[&below])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(n as usize)
    }

    async fn shares_back_from(&self, last: u64, limit_n: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.shares(
            "SELECT position, record FROM pool_shares WHERE position <= $1 ORDER BY position DESC LIMIT $2",
            &[&big(last), &limit(limit_n)],
        )
        .await
    }

    async fn ledger_floor(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        ledger_floor(&client).await
    }

    async fn compact_shares_below(&self, below: u64, max: usize) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // One compactor at a time across coordinators: two would fold the
        // same shares into the aggregates twice.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COMPACTION_LOCK]).await.map_err(pg_error)?;
        let floor = ledger_floor(&tx).await?;
        let len: i64 = tx
            .query_one("SELECT next_position FROM pool_ledger_head WHERE id = 1", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let below = below.min(len as u64);
        if below <= floor || max == 0 {
            return Ok(0);
        }
        let rows = tx
            .query(
                "SELECT position, record FROM pool_shares WHERE position >= $1 AND position < $2
                 ORDER BY position LIMIT $3",
                &[&big(floor), &big(below), &limit(max)],
            )
            .await
            .map_err(pg_error)?;
        let batch: Vec<(u64, ShareRecord)> = rows
            .iter()
            .map(|row| Ok((row.get::<_, i64>(0) as u64, decode("pool_shares", row, 1)?)))
            .collect::<Result<_, StoreError>>()?;
        let new_floor = batch.last().map_or(below, |(p, _)| p + 1);
        let mut folded = ShareAggregate::fold(&batch);
        let workers: Vec<&str> = folded.keys().map(String::as_str).collect();
        let existing = tx
            .query(
                "SELECT record FROM pool_share_aggregates WHERE worker_id = ANY($1) ORDER BY worker_id FOR UPDATE",
                &[&workers],
            )
            .await
            .map_err(pg_error)?;
        for row in &existing {
            let mut old: ShareAggregate = decode("pool_share_aggregates", row, 0)?;
            if let Some(add) = folded.get_mut(&old.worker_id) {
                old.absorb(add);
                *add = old;
            }
        }
        for aggregate in folded.values() {
            tx.execute(
                "INSERT INTO pool_share_aggregates (worker_id, record) VALUES ($1, $2)
                 ON CONFLICT (worker_id) DO UPDATE SET record = EXCLUDED.record",
                &[&aggregate.worker_id, &json(aggregate)],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.execute("DELETE FROM pool_shares WHERE position >= $1 AND position < $2", &[&big(floor), &big(new_floor)])
            .await
            .map_err(pg_error)?;
        tx.execute("UPDATE pool_ledger_head SET floor = GREATEST(floor, $1) WHERE id = 1", &[&big(new_floor)])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(batch.len())
    }

    async fn share_aggregates(&self) -> Result<Vec<ShareAggregate>, StoreError> {
        self.records("pool_share_aggregates", "SELECT record FROM pool_share_aggregates ORDER BY worker_id", &[]).await
    }

    async fn apply_reward_update(&self, update: &RewardUpdate) -> Result<(), StoreError> {
        // Net movements per wallet and part, so a wallet is read once.
        let mut deltas: BTreeMap<&str, Vec<(BalanceBucket, i128)>> = BTreeMap::new();
        for delta in &update.balances {
            deltas.entry(delta.wallet.as_str()).or_default().push((delta.bucket, delta.amount));
        }
        // Wallets whose balance is expected are locked with the others.
        for expectation in &update.expects {
            if let Expectation::Balance { wallet, .. } = expectation {
                deltas.entry(wallet.as_str()).or_default();
            }
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_update_error)?;
        check_expectations(&tx, update).await?;
        let wallets: Vec<&str> = deltas.keys().copied().collect();
        // Every wallet gets a row first, so the lock below covers new
        // wallets too (two first credits of one wallet must not both start
        // from zero). Rows are created and locked in wallet order: two
        // updates never wait on each other in a circle.
        let empty: Vec<Json<BalanceRecord>> =
            wallets.iter().map(|w| Json(BalanceRecord { wallet: w.to_string(), ..BalanceRecord::default() })).collect();
        tx.execute(
            "INSERT INTO pool_balances (wallet, confirmed, record)
             SELECT w, 0, r FROM unnest($1::text[], $2::jsonb[]) AS t(w, r) ORDER BY w
             ON CONFLICT (wallet) DO NOTHING",
            &[&wallets, &empty],
        )
        .await
        .map_err(pg_update_error)?;
        let rows = tx
            .query(
                "SELECT wallet, record FROM pool_balances WHERE wallet = ANY($1) ORDER BY wallet FOR UPDATE",
                &[&wallets],
            )
            .await
            .map_err(pg_update_error)?;
        let mut balances: BTreeMap<String, BalanceRecord> = BTreeMap::new();
        for row in &rows {
            balances.insert(row.get(0), decode("pool_balances", row, 1)?);
        }
        for expectation in &update.expects {
            if let Expectation::Balance { wallet, .. } = expectation {
                if !expectation.holds_for_balance(balances.get(wallet)) {
                    return Err(StoreError::Conflict(format!("{expectation:?}")));
                }
            }
        }
        for (wallet, moves) in &deltas {
            let record = balances
                .entry(wallet.to_string())
                .or_insert_with(|| BalanceRecord { wallet: wallet.to_string(), ..BalanceRecord::default() });
            for (bucket, amount) in moves {
                let part = record.bucket_mut(*bucket);
                let next = i128::from(*part) + amount;
                // Dropping the transaction rolls it back: nothing applied.
                *part = u64::try_from(next)
                    .map_err(|_| StoreError::Refused(format!("{wallet}: {bucket:?} would become {next}")))?;
            }
        }
        for record in balances.values().filter(|b| deltas.contains_key(b.wallet.as_str())) {
            tx.execute(
                "INSERT INTO pool_balances (wallet, confirmed, record) VALUES ($1, $2, $3)
                 ON CONFLICT (wallet) DO UPDATE SET confirmed = EXCLUDED.confirmed, record = EXCLUDED.record",
                &[&record.wallet, &big(record.confirmed), &json(record)],
            )
            .await
            .map_err(pg_update_error)?;
        }
        let mut blocks: Vec<&BlockRewardRecord> = update.blocks.iter().collect();
        blocks.sort_by(|a, b| (a.height, &a.hash).cmp(&(b.height, &b.hash)));
        for block in blocks {
            tx.execute(
                "INSERT INTO pool_block_rewards (height, hash, record) VALUES ($1, $2, $3)
                 ON CONFLICT (height, hash) DO UPDATE SET record = EXCLUDED.record",
                &[&big(block.height), &block.hash, &json(block)],
            )
            .await
            .map_err(pg_update_error)?;
        }
        let mut removed: Vec<i64> = update.payouts_removed.iter().map(|id| big(*id)).collect();
        removed.sort_unstable();
        if !removed.is_empty() {
            tx.execute("DELETE FROM pool_payouts WHERE id = ANY($1)", &[&removed]).await.map_err(pg_update_error)?;
        }
        let mut payouts: Vec<&PayoutRecord> = update.payouts.iter().collect();
        payouts.sort_by_key(|p| p.id);
        for payout in payouts {
            let wallets: Vec<&str> = payout.outputs.iter().map(|o| o.address.as_str()).collect();
            tx.execute(
                "INSERT INTO pool_payouts (id, sending, wallets, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE
                 SET sending = EXCLUDED.sending, wallets = EXCLUDED.wallets, record = EXCLUDED.record",
                &[&big(payout.id), &(payout.status == PayoutStatus::Sending), &wallets, &json(payout)],
            )
            .await
            .map_err(pg_update_error)?;
        }
        tx.commit().await.map_err(pg_update_error)
    }

    async fn block_rewards(&self) -> Result<Vec<BlockRewardRecord>, StoreError> {
        self.records("pool_block_rewards", "SELECT record FROM pool_block_rewards ORDER BY height, hash", &[]).await
    }

    async fn block_rewards_from(&self, height: u64) -> Result<Vec<BlockRewardRecord>, StoreError> {
        self.records(
            "pool_block_rewards",
            "SELECT record FROM pool_block_rewards WHERE height >= $1 ORDER BY height, hash",
            &[&big(height)],
        )
        .await
    }

    async fn block_reward(&self, height: u64, hash: &str) -> Result<Option<BlockRewardRecord>, StoreError> {
        self.record(
            "pool_block_rewards",
            "SELECT record FROM pool_block_rewards WHERE height = $1 AND hash = $2",
            &[&big(height), &hash],
        )
        .await
    }

    async fn balance(&self, wallet: &str) -> Result<Option<BalanceRecord>, StoreError> {
        self.record("pool_balances", "SELECT record FROM pool_balances WHERE wallet = $1", &[&wallet]).await
    }

    async fn balances(&self) -> Result<Vec<BalanceRecord>, StoreError> {
        self.records("pool_balances", "SELECT record FROM pool_balances ORDER BY wallet", &[]).await
    }

    async fn balances_confirmed(&self) -> Result<Vec<BalanceRecord>, StoreError> {
        self.records("pool_balances", "SELECT record FROM pool_balances WHERE confirmed > 0 ORDER BY wallet", &[]).await
    }

    async fn payouts(&self) -> Result<Vec<PayoutRecord>, StoreError> {
        self.records("pool_payouts", "SELECT record FROM pool_payouts ORDER BY id", &[]).await
    }

    async fn payouts_newest(
        &self,
        limit_n: usize,
        wallet: Option<&str>,
        before: Option<u64>,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        // (Ids are below i64::MAX: `big` refuses more.)
        let before = before.map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX));
        match wallet {
            None => {
                self.records(
                    "pool_payouts",
                    "SELECT record FROM pool_payouts WHERE id < $2 ORDER BY id DESC LIMIT $1",
                    &[&limit(limit_n), &before],
                )
                .await
            }
            Some(wallet) => {
                self.records(
                    "pool_payouts",
                    "SELECT record FROM pool_payouts WHERE wallets @> ARRAY[$1::text] AND id < $3
                     ORDER BY id DESC LIMIT $2",
                    &[&wallet, &limit(limit_n), &before],
                )
                .await
            }
        }
    }

    async fn claim_payout(&self, id: u64, holder: &str, terms: LeaseTerms) -> Result<Option<PayoutRecord>, StoreError> {
        // The database's clock, not each coordinator's: leases compare alike.
        self.record(
            "pool_payouts",
            "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms)
             UPDATE pool_payouts
             SET lease_holder = $2,
                 lease_until = CASE WHEN lease_holder = $2 AND lease_until > now.ms THEN lease_until
                                    ELSE now.ms + $3 END
             FROM now
             WHERE id = $1 AND sending
               AND ((lease_holder = $2 AND lease_until >= now.ms + $4::bigint)
                    OR lease_until <= now.ms - CASE WHEN lease_holder = $2 THEN $5::bigint ELSE 0 END)
             RETURNING record",
            &[&big(id), &holder, &big(terms.lease_ms), &big(terms.send_ms), &big(terms.handover_ms)],
        )
        .await
    }

    async fn payout(&self, id: u64) -> Result<Option<PayoutRecord>, StoreError> {
        self.record("pool_payouts", "SELECT record FROM pool_payouts WHERE id = $1", &[&big(id)]).await
    }

    async fn payouts_sending(&self) -> Result<Vec<PayoutRecord>, StoreError> {
        self.records("pool_payouts", "SELECT record FROM pool_payouts WHERE sending ORDER BY id", &[]).await
    }

    async fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError> {
        self.change_ban(
            &ban.session_id,
            "INSERT INTO pool_bans (session_id, record) VALUES ($1, $2)
             ON CONFLICT (session_id) DO UPDATE SET record = EXCLUDED.record",
            Some(&json(ban)),
        )
        .await
        .map(drop)
    }

    async fn remove_ban(&self, session_id: &str) -> Result<bool, StoreError> {
        Ok(self.change_ban(session_id, "DELETE FROM pool_bans WHERE session_id = $1", None).await? > 0)
    }

    async fn remove_expired_ban(&self, session_id: &str, until_ms: u64) -> Result<bool, StoreError> {
        let sql = "DELETE FROM pool_bans WHERE session_id = $1 AND (record->>'until_ms')::numeric = $2::bigint";
        Ok(self.change_ban(session_id, sql, Some(&big(until_ms))).await? > 0)
    }

    async fn bans(&self) -> Result<Vec<BanRecord>, StoreError> {
        self.records("pool_bans", "SELECT record FROM pool_bans ORDER BY session_id", &[]).await
    }

    async fn ban_changes_since(&self, since_ms: u64) -> Result<BanChanges, StoreError> {
        let client = self.client().await?;
        // The clock first: a change it does not cover is at or after it.
        let now: i64 = client
            .query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let rows = client
            .query(
                "SELECT c.session_id, b.record FROM (SELECT DISTINCT session_id FROM pool_ban_changes \
                 WHERE at_ms >= $1) c LEFT JOIN pool_bans b ON b.session_id = c.session_id ORDER BY c.session_id",
                &[&big(since_ms)],
            )
            .await
            .map_err(pg_error)?;
        let mut changes = BanChanges { now_ms: now.max(0) as u64, ..BanChanges::default() };
        for row in &rows {
            match row.try_get::<_, Option<Json<BanRecord>>>(1).map_err(pg_error)? {
                Some(Json(ban)) => changes.bans.push(ban),
                None => changes.lifted.push(row.try_get(0).map_err(pg_error)?),
            }
        }
        Ok(changes)
    }

    async fn claim_template(
        &self,
        template_id: &str,
        template: &TemplateRecord,
    ) -> Result<(String, TemplateRecord), StoreError> {
        let client = self.client().await?;
        let (height, parent) = (big(template.template.height), &template.template.parent_hash);
        // A racing claim of the same tip waits for the other's commit, then
        // inserts nothing: both read the one template. One pruned before is
        // never stored again.
        client
            .execute(
                "INSERT INTO pool_templates (template_id, height, parent_hash, record)
                 SELECT $1, $2, $3, $4
                 WHERE NOT EXISTS (SELECT 1 FROM pool_pruned_templates WHERE template_id = $1)
                 ON CONFLICT DO NOTHING",
                &[&template_id, &height, parent, &json(template)],
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(
                "SELECT template_id, record FROM pool_templates WHERE height = $1 AND parent_hash = $2",
                &[&height, parent],
            )
            .await
            .map_err(pg_error)?;
        match row {
            Some(row) => Ok((row.get(0), decode("pool_templates", &row, 1)?)),
            // Pruned with its keys (a node handing out a template of a tip
            // long gone), or its id was stored for another tip.
            None => Err(StoreError::Refused(format!(
                "template {template_id} was pruned or is stored for another tip: waiting for another"
            ))),
        }
    }

    async fn exchange_tips(&self, name: &str, height: u64, live: Duration) -> Result<Vec<u64>, StoreError> {
        // The database's clock: coordinators' clocks need not agree. A few
        // rows, one a coordinator; those unseen for a day go.
        let rows = self
            .client()
            .await?
            .query(
                "WITH noted AS (
                     INSERT INTO pool_coordinator_tips (name, height, seen_at) VALUES ($1, $2, now())
                     ON CONFLICT (name) DO UPDATE SET height = EXCLUDED.height, seen_at = EXCLUDED.seen_at
                 ), forgotten AS (
                     DELETE FROM pool_coordinator_tips WHERE seen_at < now() - interval '1 day'
                 )
                 SELECT height FROM pool_coordinator_tips
                 WHERE name <> $1 AND seen_at > now() - make_interval(secs => $3)",
                &[&name, &big(height), &live.as_secs_f64()],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| row.try_get::<_, i64>(0).map(|h| h.max(0) as u64).map_err(pg_error)).collect()
    }

    async fn highest_template_height_below(&self, height: u64) -> Result<Option<u64>, StoreError> {
        // The (height, parent_hash) index answers it.
        let sql = "SELECT max(height) FROM pool_templates WHERE height < $1";
        let row = self.client().await?.query_one(sql, &[&big(height)]).await.map_err(pg_error)?;
        let height: Option<i64> = row.try_get(0).map_err(pg_error)?;
        Ok(height.map(|h| h.max(0) as u64))
    }

    async fn template(&self, template_id: &str) -> Result<Option<TemplateRecord>, StoreError> {
        self.record("pool_templates", "SELECT record FROM pool_templates WHERE template_id = $1", &[&template_id]).await
    }

    async fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO pool_jobs (job_id, height, record) VALUES ($1, $2, $3)
             ON CONFLICT (job_id) DO UPDATE SET height = EXCLUDED.height, record = EXCLUDED.record",
            &[&job.job_id, &big(job.height), &json(job)],
        )
        .await
        .map(drop)
    }

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        // On the share path (a share for a job another coordinator issued).
        let client = self.share_client().await?;
        record_on(&client, "pool_jobs", "SELECT record FROM pool_jobs WHERE job_id = $1", &[&job_id]).await
    }

    async fn jobs_from_height(&self, height: u64) -> Result<Vec<JobRecord>, StoreError> {
        self.records(
            "pool_jobs",
            "SELECT record FROM pool_jobs WHERE height >= $1 ORDER BY height, job_id",
            &[&big(height)],
        )
        .await
    }

    async fn prune_jobs_below(&self, height: u64) -> Result<(), StoreError> {
        // Templates go with their keys (`prune_share_keys_below`).
        self.execute("DELETE FROM pool_jobs WHERE height < $1", &[&big(height)]).await.map(|_| ())
    }

    async fn put_found_block(&self, block: &FoundBlockRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let key: [&(dyn ToSql + Sync); 2] = [&big(block.height), &block.hash];
        let inserted = tx
            .execute(
                "INSERT INTO pool_found_blocks (height, hash, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[key[0], key[1], &json(block)],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            // One row locked per transaction: writers of a block take turns.
            let row = tx
                .query_one("SELECT record FROM pool_found_blocks WHERE height = $1 AND hash = $2 FOR UPDATE", &key)
                .await
                .map_err(pg_error)?;
            let merged = block.written_over(&decode::<FoundBlockRecord>("pool_found_blocks", &row, 0)?);
            tx.execute(
                "UPDATE pool_found_blocks SET record = $3 WHERE height = $1 AND hash = $2",
                &[key[0], key[1], &json(&merged)],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    }

    async fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.records("pool_found_blocks", "SELECT record FROM pool_found_blocks ORDER BY height, hash", &[]).await
    }

    async fn found_blocks_newest(&self, limit_n: usize) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.records(
            "pool_found_blocks",
            "SELECT record FROM pool_found_blocks ORDER BY height DESC, hash DESC LIMIT $1",
            &[&limit(limit_n)],
        )
        .await
    }

    async fn found_blocks_from(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.records(
            "pool_found_blocks",
            "SELECT record FROM pool_found_blocks WHERE height >= $1 ORDER BY height, hash",
            &[&big(height)],
        )
        .await
    }

    async fn found_blocks_at(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.records(
            "pool_found_blocks",
            "SELECT record FROM pool_found_blocks WHERE height = $1 ORDER BY hash",
            &[&big(height)],
        )
        .await
    }

    async fn settings(&self) -> Result<Option<PoolSettings>, StoreError> {
        self.record("pool_settings", "SELECT record FROM pool_settings WHERE id = 1", &[]).await
    }

    async fn meet_coordinators(
        &self,
        name: &str,
        rules: &serde_json::Value,
        live: Duration,
    ) -> Result<Vec<CoordinatorRules>, StoreError> {
        let mut client = self.client().await?;
        // Read committed whatever the server's default: the check after the
        // lock must see the rows of whoever held it before.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RULES_LOCK]).await.map_err(pg_error)?;
        // The database's clock, so coordinators' clocks need not agree; and
        // jsonb equality: the same rules whatever the key order or spacing.
        let rows = tx
            .query(
                "SELECT name, rules::text, extract(epoch FROM now() - seen_at)::bigint FROM pool_coordinators
                 WHERE name <> $1 AND rules <> $2 AND seen_at > now() - make_interval(secs => $3)
                 ORDER BY name",
                &[&name, &Json(rules), &live.as_secs_f64()],
            )
            .await
            .map_err(pg_error)?;
        // Only one that agrees with every live peer counts as running: one
        // refused at start leaves no trace, and of two that disagree at run
        // time the one that noticed stops counting.
        if rows.is_empty() {
            tx.execute(
                "INSERT INTO pool_coordinators (name, rules, seen_at) VALUES ($1, $2, now())
                 ON CONFLICT (name) DO UPDATE SET rules = EXCLUDED.rules, seen_at = EXCLUDED.seen_at",
                &[&name, &Json(rules)],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.execute("DELETE FROM pool_coordinators WHERE seen_at < now() - interval '7 days'", &[])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| CoordinatorRules {
                name: row.get(0),
                rules: row.get(1),
                seen_secs_ago: row.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    async fn put_settings(&self, settings: &PoolSettings, expected: Option<&PoolSettings>) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict("the pool's settings changed since they were read".into());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_update_error)?;
        let row = tx
            .query_opt("SELECT record FROM pool_settings WHERE id = 1 FOR UPDATE", &[])
            .await
            .map_err(pg_update_error)?;
        let read: Option<PoolSettings> = row.map(|row| decode("pool_settings", &row, 0)).transpose()?;
        if read.as_ref() != expected {
            return Err(conflict());
        }
        // A first record inserted by another coordinator since the read
        // (no row to lock then) inserts nothing here.
        let written = tx
            .execute(
                "INSERT INTO pool_settings (id, record) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record WHERE $2",
                &[&json(settings), &read.is_some()],
            )
            .await
            .map_err(pg_update_error)?;
        if written == 0 {
            return Err(conflict());
        }
        tx.commit().await.map_err(pg_update_error)
    }

    async fn next_id(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT nextval('pool_ids')", &[]).await.map_err(pg_error)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn secret(&self) -> [u8; 32] {
        self.secret
    }

    /// Every write was committed before its call returned.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn flush_off_runtime(&self) -> Result<(), StoreError> {
        // Durable when a write returns: nothing to wait for.
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn commits(&self) -> u64 {
        self.appender.batches_committed()
    }
}

/// Checks what `update` was decided on, locking those rows for the rest of
/// the transaction (in key order). A block expected to have no record is
/// inserted here with the record the update writes, so of two coordinators
/// crediting it at once, the second waits for the first and then conflicts.
async fn check_expectations(tx: &deadpool_postgres::Transaction<'_>, update: &RewardUpdate) -> Result<(), StoreError> {
    let mut expects: Vec<&Expectation> = update.expects.iter().collect();
    expects.sort_by_key(|e| match e {
        Expectation::Block { height, hash, .. } => (0, *height, hash.clone()),
        Expectation::Payout { id, .. } | Expectation::Lease { id, .. } => (1, *id, String::new()),
        Expectation::Balance { wallet, .. } => (2, 0, wallet.clone()),
    });
    for expectation in expects {
        let holds = match expectation {
            Expectation::Block { height, hash, record: None } => {
                let written = update.blocks.iter().find(|b| b.height == *height && &b.hash == hash);
                match written {
                    Some(record) => {
                        tx.execute(
                            "INSERT INTO pool_block_rewards (height, hash, record) VALUES ($1, $2, $3)
                             ON CONFLICT (height, hash) DO NOTHING",
                            &[&big(*height), hash, &json(record)],
                        )
                        .await
                        .map_err(pg_update_error)?
                            == 1
                    }
                    None => tx
                        .query_opt(
                            "SELECT 1 FROM pool_block_rewards WHERE height = $1 AND hash = $2",
                            &[&big(*height), hash],
                        )
                        .await
                        .map_err(pg_update_error)?
                        .is_none(),
                }
            }
            Expectation::Block { height, hash, .. } => {
                let row = tx
                    .query_opt(
                        "SELECT record FROM pool_block_rewards WHERE height = $1 AND hash = $2 FOR UPDATE",
                        &[&big(*height), hash],
                    )
                    .await
                    .map_err(pg_update_error)?;
                let stored: Option<BlockRewardRecord> =
                    row.map(|row| decode("pool_block_rewards", &row, 0)).transpose()?;
                expectation.holds_for_block(stored.as_ref())
            }
            Expectation::Payout { id, .. } => {
                let row = tx
                    .query_opt("SELECT record FROM pool_payouts WHERE id = $1 FOR UPDATE", &[&big(*id)])
                    .await
                    .map_err(pg_update_error)?;
                let stored: Option<PayoutRecord> = row.map(|row| decode("pool_payouts", &row, 0)).transpose()?;
                expectation.holds_for_payout(stored.as_ref())
            }
            Expectation::Lease { id, holder } => tx
                .query_opt(
                    "SELECT 1 FROM pool_payouts WHERE id = $1 AND lease_holder = $2 FOR UPDATE",
                    &[&big(*id), holder],
                )
                .await
                .map_err(pg_update_error)?
                .is_some(),
            // Checked with the balances, locked in wallet order with them.
            Expectation::Balance { .. } => true,
        };
        if !holds {
            return Err(StoreError::Conflict(format!("{expectation:?}")));
        }
    }
    Ok(())
}

/// The lowest uncompacted position: the stored floor, or the first share
/// left, or the ledger's end when it is empty.
async fn ledger_floor(client: &impl deadpool_postgres::GenericClient) -> Result<u64, StoreError> {
    let row = client
        .query_one(
            "SELECT h.floor, h.next_position, (SELECT min(position) FROM pool_shares) FROM pool_ledger_head h
             WHERE h.id = 1",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let (stored, len, first): (i64, i64, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    Ok((first.map_or(len, |f| f.max(stored)).max(stored)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_connections_are_noticed_unless_the_url_says_otherwise() {
        let configured = |url: &str| {
            let mut config = tokio_postgres::Config::from_str(url).unwrap();
            notice_dead_connections(&mut config);
            config
        };
        let config = configured("postgres://pool@db.example/pool");
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(config.get_keepalives_interval(), Some(Duration::from_secs(10)));
        assert_eq!(config.get_keepalives_retries(), Some(3));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
        let ours = "-c idle_in_transaction_session_timeout=60s -c tcp_user_timeout=30000 -c tcp_keepalives_idle=30 \
                    -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3";
        assert_eq!(config.get_options(), Some(ours));
        // A password that mentions a setting sets nothing.
        let config = configured("postgres://pool:keepalives_idle@db.example/pool");
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        let config = configured(
            "postgres://pool@db.example/pool?keepalives_idle=600&keepalives_interval=60&keepalives_retries=9\
             &tcp_user_timeout=120&options=-c%20statement_timeout%3D5s",
        );
        assert_eq!(config.get_options(), Some(format!("-c statement_timeout=5s {ours}").as_str()));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(600));
        assert_eq!(config.get_keepalives_interval(), Some(Duration::from_secs(60)));
        assert_eq!(config.get_keepalives_retries(), Some(9));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(120)));
        let config = configured(
            "postgres://pool@db.example/pool?options=-c%20idle_in_transaction_session_timeout%3D0\
             %20-c%20tcp_user_timeout%3D0",
        );
        let theirs = "-c idle_in_transaction_session_timeout=0 -c tcp_user_timeout=0 -c tcp_keepalives_idle=30 \
                      -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3";
        assert_eq!(config.get_options(), Some(theirs));
    }
}
