//! The pool's counters as the world reads them: `/pool/metrics` (JSON, the
//! dashboards' and operators' scripts') and `/metrics` (Prometheus text).
//! Both read one [`MetricsSnapshot`](super::stats::MetricsSnapshot) taken
//! under a public-read slot; names and meanings are in `docs/API.md`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::api::PoolApiState;
use super::{now_ms, Pool};
use crate::api_error::{ApiError, AppJson};

async fn metrics_value(pool: &Pool) -> serde_json::Value {
    let read = pool.wait_public_read().await;
    let m = pool.metrics_snapshot().await;
    drop(read);
    let latency: serde_json::Map<String, serde_json::Value> = pool
        .latency_summaries()
        .into_iter()
        .map(|(name, s)| (name.to_string(), serde_json::to_value(s).unwrap_or_default()))
        .collect();
    serde_json::json!({
        "ledger_shares": m.ledger_shares,
        "shares": {
            "valid": m.shares_valid,
            "invalid": m.shares_invalid,
            "stale": m.shares_stale,
            "duplicate": m.shares_duplicate,
            "replayed": m.shares_replayed,
            "rate_limited": m.shares_rate_limited,
            "busy": m.shares_busy,
        },
        "public_reads_shed": m.public_reads_shed,
        "connections_refused": m.connections_refused,
        "share_verifications": m.share_verifications,
        "blocks_found": m.blocks_found,
        "blocks_rejected": m.blocks_rejected,
        "block_submit_retries": m.block_submit_retries,
        "templates_refused": m.templates_refused,
        "template_failures": m.template_failures,
        "chain_up": m.chain_up,
        "behind": m.behind,
        "jobs_served": m.jobs_served,
        "jobs_issued": m.jobs_issued,
        "jobs_in_memory": m.jobs_in_memory,
        "bans": m.bans,
        "stats_builds": m.stats_builds,
        "sessions_active": m.sessions_active,
        "sessions_unproven": m.sessions_unproven,
        "unproven_evicted": m.unproven_evicted,
        "sources_tracked": m.sources_tracked,
        "verification": {
            "queue_depth": m.verify_queue_depth,
            "queue_capacity": m.verify_queue_capacity,
            "threads": pool.config().verify_threads,
            "engine": pool.config().verify_engine.unwrap_or_else(visionx::CpuEngine::best).name(),
            "latency": latency["verify"],
        },
        "share_response": latency["share_response"],
        "job_response": latency["job_response"],
        "rewards": pool.rewards().counters(),
        "storage": {"backend": m.store_backend, "commits": m.store_commits},
        "uptime_seconds": pool.uptime().as_secs(),
    })
}

pub(super) async fn metrics_json(State(state): State<PoolApiState>) -> impl IntoResponse {
    AppJson(metrics_value(&state.pool).await)
}

pub(super) async fn metrics_prometheus(State(state): State<PoolApiState>) -> impl IntoResponse {
    let pool = &state.pool;
    let read = pool.wait_public_read().await;
    let m = pool.metrics_snapshot().await;
    drop(read);
    let snapshot = match pool.stats_snapshot(now_ms()).await {
        Ok(snapshot) => snapshot,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let stats = &snapshot.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let counter = |v: u64| v as f64;
    metric(
        "vision_pool_shares_total",
        "counter",
        "Shares judged, by outcome.",
        &[
            ("{outcome=\"valid\"}", counter(m.shares_valid)),
            ("{outcome=\"invalid\"}", counter(m.shares_invalid)),
            ("{outcome=\"stale\"}", counter(m.shares_stale)),
            ("{outcome=\"duplicate\"}", counter(m.shares_duplicate)),
            ("{outcome=\"replayed\"}", counter(m.shares_replayed)),
            ("{outcome=\"rate_limited\"}", counter(m.shares_rate_limited)),
            ("{outcome=\"busy\"}", counter(m.shares_busy)),
        ],
    );
    metric(
        "vision_pool_share_verifications_total",
        "counter",
        "VisionX recomputations by the share verifiers.",
        &[("", counter(m.share_verifications))],
    );
    metric(
        "vision_pool_blocks_total",
        "counter",
        "Found blocks by what the chain did.",
        &[("{status=\"accepted\"}", counter(m.blocks_found)), ("{status=\"rejected\"}", counter(m.blocks_rejected))],
    );
    metric(
        "vision_pool_blocks_found_total",
        "counter",
        "Blocks the pool found and the chain accepted.",
        &[("", counter(m.blocks_found))],
    );
    metric(
        "vision_pool_block_submit_retries_total",
        "counter",
        "Block submissions that failed transiently and were retried.",
        &[("", counter(m.block_submit_retries))],
    );
    metric(
        "vision_pool_template_failures_total",
        "counter",
        "Template requests the chain failed (unreachable or an error).",
        &[("", counter(m.template_failures))],
    );
    metric(
        "vision_pool_chain_up",
        "gauge",
        "1 while the chain answers (an upstream node within 3 block times), else 0: no jobs are handed out.",
        &[("", if m.chain_up { 1.0 } else { 0.0 })],
    );
    metric(
        "vision_pool_behind",
        "gauge",
        "1 while most other coordinators on the database are 2+ heights ahead (this one's node lags): no jobs.",
        &[("", if m.behind { 1.0 } else { 0.0 })],
    );
    metric(
        "vision_pool_templates_refused_total",
        "counter",
        "Templates refused: paying another address, or fields that disagree with the header.",
        &[("", counter(m.templates_refused))],
    );
    metric("vision_pool_jobs_served_total", "counter", "Job answers.", &[("", counter(m.jobs_served))]);
    metric(
        "vision_pool_jobs_issued_total",
        "counter",
        "New jobs (the other answers reuse a live job).",
        &[("", counter(m.jobs_issued))],
    );
    metric("vision_pool_bans_total", "counter", "Sessions banned.", &[("", counter(m.bans))]);
    metric(
        "vision_pool_public_reads_shed_total",
        "counter",
        "Public reads (blocks, balances, payouts) answered 503 busy: too many in flight.",
        &[("", counter(m.public_reads_shed))],
    );
    metric(
        "vision_pool_connections_refused_total",
        "counter",
        "Connections refused because their address held too many (answered 503 too_many_connections, or closed past the answer slots).",
        &[("", counter(m.connections_refused))],
    );
    let r = pool.rewards().counters();
    metric(
        "vision_pool_blocks_matured_total",
        "counter",
        "Found blocks that reached their confirmations, or left the chain.",
        &[
            ("{status=\"confirmed\"}", counter(r.blocks_confirmed)),
            ("{status=\"orphaned\"}", counter(r.blocks_orphaned)),
        ],
    );
    metric(
        "vision_pool_blocks_pending_overdue",
        "gauge",
        "Blocks pending longer than several times their expected confirmation time, or that the chain does not show though past their height.",
        &[("", counter(r.blocks_overdue))],
    );
    metric(
        "vision_pool_orphans_after_payout_total",
        "counter",
        "Orphaned blocks whose credits had been paid out already (see operator_flag in /pool/blocks).",
        &[("", counter(r.orphans_after_payout))],
    );
    metric(
        "vision_pool_payouts_total",
        "counter",
        "Payout batches, by outcome.",
        &[("{status=\"paid\"}", counter(r.payouts_paid)), ("{status=\"set_aside\"}", counter(r.payouts_set_aside))],
    );
    metric("vision_pool_ledger_shares", "gauge", "Shares in the ledger.", &[("", counter(m.ledger_shares))]);
    let backend = format!("{{backend=\"{}\"}}", m.store_backend);
    metric(
        "vision_pool_store_commits_total",
        "counter",
        "Commits that made writes durable: sled flushes, or PostgreSQL share-append batches.",
        &[(backend.as_str(), counter(m.store_commits))],
    );
    metric(
        "vision_pool_verify_queue_depth",
        "gauge",
        "Shares waiting for or in verification.",
        &[("", m.verify_queue_depth as f64)],
    );
    for (name, summary) in pool.latency_summaries() {
        let (metric_name, help) = match name {
            "verify" => ("vision_pool_verify_latency_ms", "Share verification latency (queue wait plus hash)."),
            "share_response" => ("vision_pool_share_response_ms", "POST /pool/share response time."),
            _ => ("vision_pool_job_response_ms", "GET /pool/job response time, long-poll wait excluded."),
        };
        metric(
            metric_name,
            "summary",
            help,
            &[("{quantile=\"0.5\"}", summary.p50_ms), ("{quantile=\"0.99\"}", summary.p99_ms)],
        );
    }
    metric("vision_pool_sessions_active", "gauge", "Sessions in the active set.", &[("", m.sessions_active as f64)]);
    let unproven = [("", m.sessions_unproven as f64)];
    metric("vision_pool_sessions_unproven", "gauge", "Active sessions with no accepted share yet.", &unproven);
    let evicted = [("", m.unproven_evicted as f64)];
    let help = "Unproven sessions that left the active set for a new one at --max-unproven-sessions.";
    metric("vision_pool_unproven_evicted_total", "counter", help, &evicted);
    metric(
        "vision_pool_workers_active",
        "gauge",
        "Worker ids in the active set.",
        &[("", stats.workers_active as f64)],
    );
    metric(
        "vision_pool_workers_online",
        "gauge",
        "Workers with a recent accepted share.",
        &[("", stats.workers_online as f64)],
    );
    metric(
        "vision_pool_hashrate_10m",
        "gauge",
        "Effective hash rate from accepted shares, 10-minute window (H/s).",
        &[("", stats.hashrate.effective_10m)],
    );
    metric("vision_pool_height", "gauge", "Height of the current job.", &[("", stats.height.unwrap_or(0) as f64)]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
