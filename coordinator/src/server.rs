//! Assembles the coordinator: storage, chain, pool, HTTP router and the
//! background tasks, and serves it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;

use crate::api_error::{method_not_allowed, route_not_found};
use crate::chain::devnet::DevnetChain;
use crate::chain::upstream::UpstreamNode;
use crate::chain::{node_api, Chain};
use crate::config::CoordinatorConfig;
use crate::pool::api::{self, PoolApiState};
use crate::pool::Pool;
use crate::storage::{PoolStore, SledStore};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the data directory {path}: {message}")]
    Storage { path: String, message: String },
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
}

impl Coordinator {
    pub async fn build(config: &CoordinatorConfig) -> Result<Self, StartError> {
        let storage_error = |e: &dyn std::fmt::Display| StartError::Storage {
            path: config.data_dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| storage_error(&e))?;
        let db = sled::open(config.data_dir.join("db")).map_err(|e| storage_error(&e))?;
        let store: Arc<dyn PoolStore> = Arc::new(SledStore::open(&db).map_err(|e| storage_error(&e))?);

        let (chain, devnet) = match &config.upstream {
            Some(url) => (Chain::Upstream(UpstreamNode::new(url).map_err(|e| StartError::Chain(e.to_string()))?), None),
            None => {
                let devnet = Arc::new(
                    DevnetChain::open(&db, config.devnet.clone()).map_err(|e| StartError::Chain(e.to_string()))?,
                );
                (Chain::Devnet(devnet.clone()), Some(devnet))
            }
        };
        let pool = Pool::new(config.pool.clone(), config.settings.clone(), store, chain, config.block_time_secs)
            .map_err(|e| StartError::Pool(e.message))?;
        if let Err(err) = pool.refresh_template().await {
            // An upstream node may come up later; the refresher keeps trying.
            tracing::warn!("no block template yet: {}", err.message);
        }

        let state = PoolApiState { pool: pool.clone(), admin_token: config.admin_token.as_deref().map(Arc::from) };
        let mut router = api::router(state);
        if let Some(devnet) = &devnet {
            router = router.merge(node_api::router(devnet.clone()));
        }
        let router = router
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(tower_http::trace::TraceLayer::new_for_http());
        Ok(Coordinator { pool, devnet, router })
    }

    /// The HTTP application (for in-process tests without a socket).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `listener` until `shutdown` resolves, then makes all state durable.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tasks = self.spawn_background_tasks();
        let app = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        for task in tasks {
            task.abort();
            // Wait for the task to be dropped, so nothing holds the pool (and its store).
            let _ = task.await;
        }
        if let Err(err) = self.pool.flush() {
            tracing::error!("flushing state at shutdown failed: {}", err.message);
        }
        result
    }

    fn spawn_background_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let pool = self.pool.clone();
        let devnet_tip = self.devnet.as_ref().map(|d| d.subscribe());
        tasks.push(tokio::spawn(async move {
            match devnet_tip {
                // Embedded chain: a new template the moment a block lands.
                Some(mut tip) => loop {
                    if let Err(err) = pool.refresh_template().await {
                        tracing::warn!("template refresh failed: {}", err.message);
                    }
                    if tip.changed().await.is_err() {
                        return;
                    }
                },
                // Upstream: poll, so blocks found elsewhere switch jobs within a second.
                None => loop {
                    if let Err(err) = pool.refresh_template().await {
                        tracing::warn!("template refresh failed: {}", err.message);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                },
            }
        }));
        let pool = self.pool.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let pruned = pool.prune_idle();
                if pruned > 0 {
                    tracing::info!("pruned {pruned} idle workers from the active set");
                }
            }
        }));
        tasks
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
