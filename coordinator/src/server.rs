//! Assembles the coordinator: storage, chain, pool, HTTP router and the
//! background tasks, and serves it until a shutdown signal.
//!
//! The accept loop is our own (hyper with tokio) rather than `axum::serve`,
//! for the limits a public server needs: at most `max_connections` open
//! connections (more wait in the kernel's backlog), at most
//! `max_connections_per_ip` from one source (an IPv6 /64; the TCP peer) (more
//! are answered `503 too_many_connections` and closed), a header-read timeout
//! (a client that trickles bytes is dropped), and a per-request timeout
//! (the pool routes add it; a long-poll keeps its own wait bound).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service as _;

use crate::api_error::{method_not_allowed, route_not_found};
use crate::bearer_auth::CredentialGuesses;
use crate::chain::devnet::DevnetChain;
use crate::chain::upstream::UpstreamNode;
use crate::chain::{node_routes, Chain};
use crate::config::{ConnectionLimits, CoordinatorConfig};
use crate::connection_limits::{ConnectionsPerSource, RefusalAnswers, REFUSAL_ANSWERS};
use crate::data_directory::{DataDirectory, DataDirectoryError};
use crate::pool::api::{self, PoolApiState};
use crate::pool::{now_ms, Pool};
use crate::storage::{PgStore, PoolStore, SledStore};
use crate::write_deadline::{WriteDeadline, WRITE_STALL_LIMIT};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a graceful stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDirectory(#[from] DataDirectoryError),
    #[error("cannot open the data directory {path}: {message}")]
    Storage { path: String, message: String },
    #[error("cannot use the database (--database-url): {0}")]
    Database(String),
    #[error("{0}")]
    Chain(String),
    #[error("{0}")]
    Pool(String),
}

/// A built coordinator, ready to serve.
pub struct Coordinator {
    pub pool: Arc<Pool>,
    pub devnet: Option<Arc<DevnetChain>>,
    router: Router,
    limits: ConnectionLimits,
    /// Proxies' connections carry many clients: no fair-share cap on them.
    trusted_proxies: crate::client_source::TrustedProxies,
}

impl Coordinator {
    pub async fn build(config: &CoordinatorConfig) -> Result<Self, StartError> {
        let storage_error = |e: &dyn std::fmt::Display| StartError::Storage {
            path: config.data_dir.display().to_string(),
            message: e.to_string(),
        };
        // sled holds the books unless PostgreSQL does, and the embedded
        // devnet's chain unless there is an upstream node.
        let sled_needed = config.database_url.is_none() || config.upstream.is_none();
        let (db, data_directory) = if sled_needed {
            let data = DataDirectory::prepare(&config.data_dir)?;
            // sled's page cache is the bulk of the process's memory: bounded.
            (Some(data.open_sled(config.cache_mb.saturating_mul(1024 * 1024))?), Some(data))
        } else {
            (None, None)
        };
        let store: Arc<dyn PoolStore> = match (&config.database_url, &db) {
            (Some(url), _) => Arc::new(
                PgStore::connect(url, config.database_connections, &config.database_tls)
                    .await
                    .map_err(|e| StartError::Database(e.to_string()))?,
            ),
            (None, Some(db)) => Arc::new(SledStore::open(db).map_err(|e| storage_error(&e))?),
            (None, None) => unreachable!("sled is opened whenever there is no database URL"),
        };

        let (chain, devnet) = match (&config.upstream, &db) {
            (Some(url), _) => {
                let node = UpstreamNode::new(url, config.upstream_token.clone(), config.upstream_ca_pem.as_deref())
                    .map_err(|e| StartError::Chain(e.to_string()))?;
                (Chain::Upstream(node), None)
            }
            (None, Some(db)) => {
                let devnet = Arc::new(
                    DevnetChain::open(db, config.devnet.clone()).map_err(|e| StartError::Chain(e.to_string()))?,
                );
                (Chain::Devnet(devnet.clone()), Some(devnet))
            }
            (None, None) => unreachable!("sled is opened whenever there is no upstream"),
        };
        let pool =
            Pool::new(config.pool.clone(), config.initial_settings.clone(), store, chain, config.block_time_secs)
                .await
                .map_err(|e| StartError::Pool(e.to_string()))?;
        // Several coordinators on one database must credit by the same rules.
        pool.rewards().meet_coordinators().await.map_err(|e| StartError::Pool(e.to_string()))?;
        // The books exist now: from here on an empty database is a loss.
        if let (Some(data), Some(db)) = (data_directory, db.clone()) {
            tokio::task::spawn_blocking(move || data.mark(&db)).await.map_err(|e| storage_error(&e))??;
        }
        if let Err(err) = pool.refresh_template().await {
            // An upstream node may come up later; the refresher keeps trying.
            tracing::warn!("no block template yet: {err}");
        }

        let admin_token: Option<Arc<str>> = config.admin_token.as_deref().map(Arc::from);
        let credential_guesses = Arc::new(CredentialGuesses::default());
        let state = PoolApiState {
            pool: pool.clone(),
            admin_token: admin_token.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            credential_guesses: credential_guesses.clone(),
        };
        // The dashboard (`/`, `/assets/*`) reads the same public API.
        let mut router =
            api::router(state, config.limits.request_timeout).merge(vision_web::router(vision_web::Page::Coordinator));
        if let Some(devnet) = &devnet {
            let writers: Vec<Arc<str>> =
                config.node_token.as_deref().map(Arc::from).into_iter().chain(admin_token).collect();
            let node = node_routes::router(devnet.clone(), writers, credential_guesses, config.trusted_proxies.clone())
                .route_layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    config.limits.request_timeout,
                ));
            router = router.merge(node);
        }
        let router = router
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::map_response(crate::api_error::explain_timeout))
            .layer(axum::middleware::map_response(vision_web::no_sniffing))
            // Faults are logged once where they are decided (api_error); a
            // 503 per request under backpressure is not an error to log.
            .layer(
                tower_http::trace::TraceLayer::new_for_http()
                    .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
            );
        Ok(Coordinator { pool, devnet, router, limits: config.limits, trusted_proxies: config.trusted_proxies.clone() })
    }

    /// The HTTP application (for in-process tests without a socket).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `listener` until `shutdown` resolves, then lets requests in
    /// flight finish (for a while) and makes all state durable. Also stops,
    /// with an error, when the data directory fails (see `watch_storage`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (storage_failed, mut storage_failure) = tokio::sync::watch::channel(None::<String>);
        let mut tasks = self.spawn_background_tasks();
        tasks.push(tokio::spawn(watch_storage(self.pool.clone(), storage_failed)));
        let mut failure_seen = storage_failure.clone();
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                _ = failure_seen.changed() => {}
            }
        };
        let Coordinator { pool, router, limits, devnet, trusted_proxies } = self;
        match pool.resume_block_submissions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("resuming {n} block submissions left unsettled by the last run"),
            Err(err) => tracing::error!("cannot read found blocks: {err}"),
        }
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let per_source = ConnectionsPerSource::new(limits.max_connections_per_ip);
        let refusals = RefusalAnswers::new(REFUSAL_ANSWERS);
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        tokio::pin!(shutdown);
        let (mut accept_failures, mut last_accept_warning) = (0u64, None);
        loop {
            // Take a connection slot before accepting: past the limit,
            // clients wait in the listen backlog instead of costing memory.
            let permit = tokio::select! {
                permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: pause, do not
                        // spin, and say so once a minute, not 20 times a second.
                        accept_failures += 1;
                        if last_accept_warning.is_none_or(|at: tokio::time::Instant| at.elapsed() >= Duration::from_secs(60)) {
                            tracing::warn!("accept failed ({accept_failures} times so far): {err}");
                            last_accept_warning = Some(tokio::time::Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // A quarter of the slots or fewer left: kept for sources holding
            // few (a trusted proxy carries many clients: never held to it).
            let scarce =
                connections.available_permits() < limits.max_connections / 4 && !trusted_proxies.trusts(peer.ip());
            let source = crate::client_source::source_network(peer.ip());
            let Some(source_slot) = per_source.try_acquire(source, scarce) else {
                pool.note_connection_refused();
                refusals.answer(stream, peer, source);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let mut router = router.clone();
                async move { router.call(request).await }
            });
            let connection = graceful
                .watch(http.serve_connection(TokioIo::new(WriteDeadline::new(stream, WRITE_STALL_LIMIT)), service));
            tokio::spawn(async move {
                let _slots = (permit, source_slot);
                if let Err(err) = connection.await {
                    tracing::debug!("connection from {peer} ended: {err}");
                }
            });
        }
        drop(listener);
        drop(router);
        pool.begin_stop();
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        // Connection tasks and blocking housekeeping may still hold the pool
        // for a moment: wait (a while) so the store is released when this
        // returns and the data directory can be opened again.
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        // Store and devnet calls cut short (their requests or tasks gone)
        // may still run on blocking threads, holding the database.
        let busy = || pool.store_calls_in_flight() > 0 || devnet.as_ref().is_some_and(|d| d.calls_in_flight() > 0);
        while (Arc::strong_count(&pool) > 1 || busy()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failure = storage_failure.borrow_and_update().clone();
        if let Some(failure) = failure {
            return Err(std::io::Error::other(format!(
                "the data directory failed ({failure}): stopped; every acknowledged share is on disk, \
                 start again once the disk is fixed"
            )));
        }
        // A flush that failed leaves the last writes unsaved: not a clean stop.
        match tokio::task::spawn_blocking(move || pool.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(std::io::Error::other(format!("flushing state at shutdown failed: {err}"))),
            Err(err) => Err(std::io::Error::other(format!("flushing state at shutdown failed: {err}"))),
        }
    }

    fn spawn_background_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let pool = self.pool.clone();
        let devnet_tip = self.devnet.as_ref().map(|d| d.subscribe());
        tasks.push(tokio::spawn(async move {
            let mut failing = false;
            match devnet_tip {
                // Embedded chain: a new template the moment the tip changes,
                // and again after a second while a refresh keeps failing
                // (the tip may not change again for a long time).
                Some(mut tip) => loop {
                    refresh_logged(&pool, &mut failing).await;
                    if failing {
                        tokio::select! {
                            changed = tip.changed() => if changed.is_err() { return },
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    } else if tip.changed().await.is_err() {
                        return;
                    }
                },
                // Upstream: poll, so blocks found elsewhere switch jobs within a second.
                None => loop {
                    refresh_logged(&pool, &mut failing).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                },
            }
        }));
        let pool = self.pool.clone();
        tasks.push(tokio::spawn(async move {
            // Settings and bans changed through another coordinator on a
            // shared store hold here within a second.
            let mut failing = false;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Said when it starts and stops failing, not every second.
                match pool.sync_shared_state(now_ms()).await {
                    Err(err) if !failing => {
                        failing = true;
                        tracing::warn!("cannot sync shared settings, bans and tips (retrying): {err}");
                    }
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("shared settings, bans and tips are synced again");
                    }
                    _ => {}
                }
            }
        }));
        let pool = self.pool.clone();
        tasks.push(tokio::spawn(async move {
            // Reward rules, told to the other coordinators on a shared store
            // on a beat of their own (a long rewards round must not make this
            // one look stopped); a conflict also stops the rounds.
            let mut conflict = false;
            loop {
                tokio::time::sleep(crate::rewards::RULES_HEARTBEAT).await;
                match pool.rewards().meet_coordinators().await {
                    Ok(()) => conflict = false,
                    Err(err) if !conflict => {
                        conflict = true;
                        tracing::error!("{err}");
                    }
                    Err(_) => {}
                }
            }
        }));
        let pool = self.pool.clone();
        tasks.push(tokio::spawn(async move {
            // Rewards: follow found blocks on the chain, credit, pay.
            let interval = pool.rewards().config().poll_interval;
            let (mut failing, mut review_failing) = (false, false);
            loop {
                // Blocks a stopped coordinator on the shared store left
                // unsubmitted would hold up every credit after them; blocks
                // rejected on a node's word may be on the chain after all.
                // (Said when it starts failing; the round runs regardless.)
                match pool.review_found_blocks(now_ms()).await {
                    Err(err) if !review_failing => {
                        review_failing = true;
                        tracing::warn!("cannot review the found blocks (retrying): {err}");
                    }
                    Ok(_) => review_failing = false,
                    Err(_) => {}
                }
                match pool.run_rewards_round(now_ms()).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("reward rounds are back");
                    }
                    Ok(()) => {}
                    Err(err) if !failing => {
                        failing = true;
                        tracing::warn!("reward round failed (retrying): {err}");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(interval).await;
            }
        }));
        let pool = self.pool.clone();
        tasks.push(tokio::spawn(async move {
            // The dashboards' charts: a sample every interval.
            let mut ticks = tokio::time::interval(pool.config().history_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // A walk of every session's recent shares: off the runtime,
                // as the stats snapshot's is.
                let sampling = pool.clone();
                if let Err(err) = tokio::task::spawn_blocking(move || sampling.sample_history(now_ms())).await {
                    tracing::error!("sampling the charts failed: {err}");
                }
            }
        }));
        let pool = self.pool.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                // The store's scans and prunes run off the runtime (the store's job).
                if let Err(err) = pool.housekeeping(now_ms()).await {
                    tracing::warn!("housekeeping failed: {err}");
                }
            }
        }));
        tasks
    }
}

/// How often [`watch_storage`] looks at the data directory.
const STORAGE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Watches the data directory: a flush every [`STORAGE_CHECK_EVERY`] (next to
/// nothing when the group commits have made everything durable). Once a
/// write fails (a full disk, an I/O error), sled refuses every later write
/// until the database is opened again, and meanwhile every request that
/// would write is answered 503 `storage_unavailable`: so the coordinator
/// reports the failure here, and `serve` stops for its supervisor to start
/// it again once the disk is fixed. Nothing acknowledged is lost: a share is
/// acknowledged only once durable.
async fn watch_storage(pool: Arc<Pool>, failed: tokio::sync::watch::Sender<Option<String>>) {
    loop {
        tokio::time::sleep(STORAGE_CHECK_EVERY).await;
        let probe = pool.clone();
        let failure = match tokio::task::spawn_blocking(move || probe.flush()).await {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => err.to_string(),
            // The flush itself panicked inside the store: as bad.
            Err(err) => format!("the storage flush failed: {err}"),
        };
        tracing::error!("the data directory failed: {failure}; stopping");
        let _ = failed.send(Some(failure));
        return;
    }
}

/// Refreshes the template, logging when refreshes start and stop failing
/// (not every failed attempt).
async fn refresh_logged(pool: &Pool, failing: &mut bool) {
    match pool.refresh_template().await {
        Ok(_) if *failing => {
            *failing = false;
            tracing::info!("block templates are back");
        }
        Ok(_) => {}
        Err(err) if !*failing => {
            *failing = true;
            tracing::warn!("template refresh failed (retrying): {err}");
        }
        Err(_) => {}
    }
}

/// SIGINT and SIGTERM, caught from the moment this is made: a signal that
/// comes before anything waits on it is kept for the next wait, not left to
/// the default action (the process killed outright, the drain skipped).
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside a tokio runtime).
    pub fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves at the next SIGINT or SIGTERM (or one that came since the
    /// last wait).
    pub async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves on SIGINT or SIGTERM (listening from its first poll).
pub async fn shutdown_signal() {
    match StopSignals::install() {
        Ok(mut signals) => signals.next().await,
        Err(_) => std::future::pending::<()>().await,
    }
}
