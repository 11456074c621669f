//! What can go wrong in the pool, and why a share is refused.
//!
//! [`PoolError`] is a request the pool will not serve (the HTTP status is
//! decided once, in `From<PoolError> for ApiError`). [`ShareRejection`] is
//! a share judged and refused: an ordinary `200` answer with a reason, some
//! of which count toward a ban.

use crate::chain::ChainError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the pool is stopped")]
    Stopped,
    #[error("banned for {secs} more seconds")]
    Banned { secs: u64 },
    /// Over a rate limit; come back in this many seconds.
    #[error("{message}")]
    RateLimited { message: &'static str, retry_after_secs: u64 },
    #[error("share verification queue is full")]
    VerifyQueueFull,
    /// Too much of something shared is in use; nothing was done.
    #[error("{0}")]
    Busy(&'static str),
    #[error("no block template yet")]
    NoTemplate,
    /// The chain sent a template the pool will not mine on.
    #[error("{0}")]
    TemplateRefused(String),
    #[error("this template has issued all its nonce ranges; wait for the next block")]
    JobLimit,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{message}")]
    BadField { reason: &'static str, message: String },
    /// Only a record from before worker ids named their wallet can clash.
    #[error(
        "this worker id was registered by another wallet before worker ids named their wallet; pick another rig name"
    )]
    WorkerIdTaken,
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The data directory failed (disk full, I/O error): nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not ready to serve miners (`GET /healthz`), and why.
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("{0}")]
    Internal(String),
}

impl PoolError {
    pub(crate) fn bad_field(message: impl Into<String>) -> Self {
        PoolError::BadField { reason: "bad_field", message: message.into() }
    }
}

/// Why a judged share was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRejection {
    /// Not a job of this session (or forgotten: older than the heights kept).
    UnknownJob,
    /// Its job's template is not on the current tip.
    Stale,
    OutOfRange,
    /// The digest is malformed or differs from the recomputed one.
    BadDigest,
    /// Credited before, to another session.
    Duplicate,
    LowDifficulty,
}

impl ShareRejection {
    /// The wire reason (`docs/API.md`).
    pub fn reason(self) -> &'static str {
        match self {
            ShareRejection::UnknownJob => "unknown_job",
            ShareRejection::Stale => "stale",
            ShareRejection::OutOfRange => "out_of_range",
            ShareRejection::BadDigest => "bad_digest",
            ShareRejection::Duplicate => "duplicate",
            ShareRejection::LowDifficulty => "low_difficulty",
        }
    }

    /// Whether it counts toward a ban. Honest miners send stale shares
    /// after a block, and shares of jobs a crashed pool forgot: those never
    /// count. The others cannot come from an honest miner.
    pub fn counts_toward_ban(self) -> bool {
        !matches!(self, ShareRejection::Stale | ShareRejection::UnknownJob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dishonest_rejections_count_toward_a_ban() {
        use ShareRejection::*;
        let table = [
            (UnknownJob, "unknown_job", false),
            (Stale, "stale", false),
            (OutOfRange, "out_of_range", true),
            (BadDigest, "bad_digest", true),
            (Duplicate, "duplicate", true),
            (LowDifficulty, "low_difficulty", true),
        ];
        for (rejection, reason, counts) in table {
            assert_eq!((rejection.reason(), rejection.counts_toward_ban()), (reason, counts), "{rejection:?}");
        }
    }
}
