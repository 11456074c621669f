//! Registration, credentials, the active set of sessions, and admission
//! (the bans themselves are `session_bans`').
//!
//! A worker id is its wallet and the rig's name, `wallet.rig` (addresses
//! hold no `.`), so every wallet names its rigs as it likes and nobody can
//! take another wallet's names; its record is written, atomically, by its
//! first registration. Every registration opens a new *session* with a fresh
//! random token; only the token's hash is stored, and the session id is a
//! prefix of that hash. Nothing public (worker id, wallet) yields a
//! credential, so no one can act as another miner's session. Rate limits,
//! invalid-share accounting and bans are per session (and, for sessions
//! that have shown no valid work yet, per source address): an outsider who
//! registers an honest worker's id gets a session of their own, whose
//! garbage bans only that session, and new registrations of that worker id
//! *from that source address*; a source with too many bans in force may
//! not register at all until some run out. A rename needs the token of the
//! registration that bound the worker id. Registering does not enter the
//! active set: a session enters it with its first authenticated request.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::job_book::IssuedJob;
use super::metrics::PoolMetrics;
use super::recent_shares::{RecentShares, WindowSum, HOUR_MS, TEN_MINUTES_MS};
use super::session_bans::BanCounts;
use super::token_bucket::TokenBucket;
use super::vardiff::Vardiff;
use super::worker_names::{normalized, shows_as_itself};
use super::{Hashrate, Pool, PoolError, RegisterRequest, RegisterResponse, ShareCounts};
use crate::bearer_auth::tokens_match;
use crate::chain::check_address;
use crate::storage::{SessionRecord, WorkerRecord};

/// How long a token not seen since start waits for its storage lookup.
const TOKEN_LOOKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An active session.
pub(crate) struct SessionState {
    pub(crate) record: SessionRecord,
    pub(crate) worker_name: Option<String>,
    pub(crate) counts: ShareCounts,
    pub(crate) ban_counts: BanCounts,
    /// Has had a share accepted.
    pub(crate) proven: bool,
    /// Accepted shares of the last hour, with the rate windows' sums.
    pub(crate) recent: RecentShares,
    pub(crate) vardiff: Vardiff,
    pub(crate) bucket: TokenBucket,
    pub(crate) reported_hashrate: Option<f64>,
    pub(crate) last_share_ms: Option<u64>,
    pub(crate) last_seen_ms: u64,
    /// When it entered the active set (a young session's rate is averaged
    /// over its time here, not the whole window).
    pub(crate) active_since_ms: u64,
    /// The template version of its last job (for long-polling).
    pub(crate) last_template_version: u64,
    pub(crate) blocks_found: u64,
    /// The job it was last given: reused while its template and difficulty hold.
    pub(crate) live_job: Option<Arc<IssuedJob>>,
    /// New jobs it got, or is being issued, on template `jobs_template`
    /// (counted before the issue, so concurrent requests cannot pass the cap).
    pub(crate) jobs_on_template: u32,
    pub(crate) jobs_template: Option<String>,
    /// Set on a ban: its shares still queued for verification are skipped.
    pub(crate) banned: Arc<AtomicBool>,
    /// Its shares being verified now (at most [`VERIFYING_PER_SESSION`]).
    pub(crate) verifying: Arc<AtomicUsize>,
}

impl SessionState {
    /// Its ban lifted (run out, or by the operator): its shares are
    /// verified again, and its counts start afresh (one more invalid share
    /// would otherwise ban it again at once). Only the ban it was working
    /// under: an expired record read back from the store later (it was
    /// never in force here) leaves the counts of its work since alone.
    pub(crate) fn ban_lifted(&mut self) {
        if self.banned.swap(false, Ordering::Relaxed) {
            self.ban_counts = BanCounts::default();
        }
    }
}

/// Whether a pool stopped at `stopped_at_ms` (0: before this coordinator
/// started) still takes shares at `now`.
fn in_stop_grace(stopped_at_ms: u64, now: u64) -> bool {
    stopped_at_ms > 0 && now.saturating_sub(stopped_at_ms) <= super::STOPPED_SHARE_GRACE_MS
}

/// A session's shares verified at once: twice what an honest miner keeps
/// in flight (vision-miner sends 8, and resends queued ones beside them),
/// so one session, however fast it sends, holds a bounded share of the
/// verification queue, and forged shares racing its ban cost at most this
/// many hashes beyond the ban rule's.
pub(crate) const VERIFYING_PER_SESSION: usize = 16;

/// Unproven sessions looked at to choose the one that leaves at the cap.
const EVICTION_SAMPLE: usize = 32;

/// A session's place among its shares being verified, given back on drop.
pub(crate) struct VerifySlot(Arc<AtomicUsize>);

impl VerifySlot {
    /// A place, or `None` when the session already has its fill.
    pub(crate) fn take(verifying: &Arc<AtomicUsize>) -> Option<VerifySlot> {
        verifying
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < VERIFYING_PER_SESSION).then_some(n + 1))
            .ok()
            .map(|_| VerifySlot(verifying.clone()))
    }
}

impl Drop for VerifySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionState {
    /// Its rates as of `now` (cheapest after `recent.expire(now)`).
    pub(crate) fn hashrate(&self, now: u64) -> Hashrate {
        let (ten_minutes, hour) = self.recent.windows(now);
        let rate = |sum: WindowSum, ms: u64| {
            let span_ms = ms.min(now.saturating_sub(self.active_since_ms)).max(1000);
            (sum.work as f64 / (span_ms as f64 / 1000.0), sum.shares)
        };
        let (effective_10m, shares_10m) = rate(ten_minutes, TEN_MINUTES_MS);
        let (effective_1h, shares_1h) = rate(hour, HOUR_MS);
        Hashrate { effective_10m, shares_10m, effective_1h, shares_1h, reported: self.reported_hashrate }
    }
}

fn check_id(field: &'static str, value: &str, max: usize) -> Result<(), PoolError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if value.is_empty() || value.len() > max || !value.chars().all(ok) {
        return Err(PoolError::bad_field(format!(
            "{field} must be 1-{max} ASCII letters, digits, '_', '-', '.' or ':'"
        )));
    }
    Ok(())
}

/// The stored form of a bearer token.
pub(crate) fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn session_id_of(token_hash: &str) -> String {
    token_hash[..24].to_string()
}

impl Pool {
    /// Registers a worker: its id is `wallet.rig`, its record written by the
    /// first registration; opens a new session. `presented` is the caller's Bearer token, if any: a
    /// session of the same worker may rename it.
    pub(crate) async fn register(
        &self,
        mut request: RegisterRequest,
        source: Option<IpAddr>,
        presented: Option<&str>,
        now: u64,
    ) -> Result<RegisterResponse, PoolError> {
        check_address("wallet_address", &request.wallet_address)?;
        // Trimmed, single spaces; a blank one is none (a cosmetic field
        // costs no miner its registration). A name cannot be cleared, only
        // replaced.
        for text in [&mut request.worker_name, &mut request.version] {
            *text = text.as_deref().and_then(normalized);
        }
        // Given as the rig's name, or whole (as a previous registration answered).
        let rig = request.worker_id.strip_prefix(&format!("{}.", request.wallet_address)).unwrap_or(&request.worker_id);
        check_id("worker_id", rig, 64)?;
        if request.wallet_address == self.rewards.config().pool_address {
            return Err(PoolError::BadField {
                reason: "pool_wallet",
                message: "wallet_address is this pool's own wallet; mine to a wallet of yours".into(),
            });
        }
        let worker_id = format!("{}.{rig}", request.wallet_address);
        let text_ok = |s: &Option<String>| s.as_ref().is_none_or(|s| s.len() <= 64 && shows_as_itself(s));
        if !text_ok(&request.worker_name) || !text_ok(&request.version) {
            return Err(PoolError::bad_field(
                "worker_name and version are at most 64 bytes of visible text: no control, format (bidi, \
                 zero-width), separator or private-use characters, nor variation selectors outside emoji",
            ));
        }
        if let Some(source) = source {
            self.sources.take_registration(source, now).map_err(|e| PoolError::RateLimited {
                message: "too many registrations from this address",
                retry_after_secs: e.retry_after_secs,
            })?;
        }
        if let Some(until) = source.and_then(|source| self.capped_until(source, now)) {
            return Err(PoolError::Banned { secs: until.saturating_sub(now).div_ceil(1000) });
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| PoolError::Internal(format!("no OS randomness: {e}")))?;
        let token = hex::encode(raw);
        let hash = token_hash(&token);
        let wanted = WorkerRecord {
            worker_id,
            wallet_address: request.wallet_address.clone(),
            worker_name: request.worker_name.clone(),
            registered_at_ms: now,
            owner_token_hash: hash.clone(),
        };
        let mut bound = self.store.bind_worker(&wanted).await?;
        if bound.wallet_address != request.wallet_address {
            return Err(PoolError::WorkerIdTaken);
        }
        // A name stored before today's rules is shown as none.
        bound.worker_name = bound.worker_name.as_deref().and_then(normalized).filter(|name| shows_as_itself(name));
        if let Some(until) = self.banned_registration(&bound.worker_id, source, now) {
            return Err(PoolError::Banned { secs: until.saturating_sub(now).div_ceil(1000) });
        }
        let renaming = request.worker_name.is_some() && request.worker_name != bound.worker_name;
        let owner = presented.is_some_and(|t| tokens_match(&token_hash(t), &bound.owner_token_hash));
        if renaming && owner {
            bound.worker_name = request.worker_name.clone();
            self.store.put_worker(&bound).await?;
        }
        let record = SessionRecord {
            session_id: session_id_of(&hash),
            token_hash: hash,
            worker_id: bound.worker_id.clone(),
            wallet_address: bound.wallet_address.clone(),
            version: request.version,
            source: source.map(|s| s.to_string()),
            created_ms: now,
            last_seen_ms: now,
            proven: false,
        };
        self.store.put_session(&record).await?;
        let session_id = record.session_id.clone();
        let settings = self.settings();
        Ok(RegisterResponse {
            worker_id: bound.worker_id,
            worker_token: token,
            session_id,
            worker_name: bound.worker_name,
            pool_fee_bps: settings.pool_fee_bps,
            foundation_fee_bps: self.rewards.config().foundation_fee_bps,
            foundation_address: self.rewards.config().foundation_address.clone(),
            pool_name: settings.pool_name,
        })
    }

    /// The session a bearer token opens (loading it into the active set if
    /// it was pruned). Returns its session id.
    pub(crate) async fn authenticate(&self, token: &str, now: u64) -> Result<String, PoolError> {
        let hash = token_hash(token);
        let session_id = session_id_of(&hash);
        {
            // Seen again: nothing the figures show.
            let mut sessions = self.sessions.lock_quietly();
            if let Some(state) = sessions.get_mut(&session_id).filter(|s| s.record.token_hash == hash) {
                state.last_seen_ms = now;
                return Ok(session_id);
            }
        }
        // Anyone can send a made-up token: the lookup takes its turn, for a
        // while (a flood of them must not hold returning miners for long).
        let read = tokio::time::timeout(TOKEN_LOOKUP_WAIT, self.wait_public_read())
            .await
            .map_err(|_| PoolError::Busy("too many unknown tokens are being looked up; retry shortly"))?;
        // Seen now; never a write of a session a prune has forgotten.
        let record = self
            .store
            .touch_session(&hash, now, false)
            .await?
            .ok_or(PoolError::Unauthorized("unknown worker token; register first"))?;
        drop(read);
        let name = self.store.worker(&record.worker_id).await?.and_then(|w| w.worker_name);
        // (A name stored before today's rules is shown as none.)
        self.activate(record, name.as_deref().and_then(normalized).filter(|name| shows_as_itself(name)), now);
        Ok(session_id)
    }

    /// Puts a session in the active set (fresh counters, starting difficulty).
    fn activate(&self, record: SessionRecord, worker_name: Option<String>, now: u64) {
        let vardiff_config = self.vardiff_config();
        let banned = self.bans.read().get(&record.session_id).is_some_and(|b| b.until_ms > now);
        let state = SessionState {
            worker_name,
            counts: ShareCounts::default(),
            ban_counts: BanCounts::default(),
            proven: record.proven,
            recent: RecentShares::default(),
            vardiff: Vardiff::new(self.config.start_share_difficulty, now, &vardiff_config),
            bucket: TokenBucket::new(self.config.share_burst, self.config.shares_per_sec, now),
            reported_hashrate: None,
            last_share_ms: None,
            last_seen_ms: now,
            active_since_ms: now,
            last_template_version: 0,
            blocks_found: 0,
            live_job: None,
            jobs_on_template: 0,
            jobs_template: None,
            banned: Arc::new(AtomicBool::new(banned)),
            verifying: Arc::default(),
            record,
        };
        // Requests racing in with one token all get here: the first one's
        // state stands (its counts, its jobs), the others' are dropped.
        let mut sessions = self.sessions.lock();
        if sessions.contains_key(&state.record.session_id) {
            return;
        }
        if !state.proven {
            // Sessions are free to make: however many are made, only so many
            // with no accepted share hold memory at once. At the cap one seen
            // long ago leaves (it comes back at its next request), so a flood
            // of them cannot lock new miners out; an honest one leaves the
            // count at its first accepted share. The stalest of a sample, not
            // of all: this runs under the sessions lock, per activation.
            if self.unproven_active.load(Ordering::Relaxed) >= self.config.max_unproven_sessions {
                let stalest = sessions
                    .iter()
                    .filter(|(_, s)| !s.proven)
                    .take(EVICTION_SAMPLE)
                    .min_by_key(|(_, s)| s.last_seen_ms)
                    .map(|(id, _)| id.clone());
                if let Some(id) = stalest {
                    sessions.remove(&id);
                    self.unproven_active.fetch_sub(1, Ordering::Relaxed);
                    PoolMetrics::bump(&self.metrics.unproven_evicted);
                }
            }
            self.unproven_active.fetch_add(1, Ordering::Relaxed);
        }
        sessions.insert(state.record.session_id.clone(), state);
    }

    /// The stored records of active sessions whose `last_seen_ms` is older
    /// than a quarter of their time-to-forget (at most a day; an hour, not
    /// yet proven), brought up to date, so a session in use is never pruned
    /// as unused; the caller touches them in the store.
    pub(crate) fn sessions_to_touch(&self) -> Vec<SessionRecord> {
        // Well within the times after which stored sessions are forgotten
        // (by any coordinator on the store), however short they are set.
        let every = |ttl: std::time::Duration, most_ms: u64| most_ms.min(ttl.as_millis() as u64 / 4);
        let proven_every = every(self.config.session_ttl, 86_400_000);
        let unproven_every = every(self.config.unproven_session_ttl, 3_600_000);
        let mut sessions = self.sessions.lock_quietly();
        sessions
            .values_mut()
            .filter(|s| s.record.last_seen_ms + if s.proven { proven_every } else { unproven_every } < s.last_seen_ms)
            .map(|s| {
                s.record.last_seen_ms = s.last_seen_ms;
                s.record.clone()
            })
            .collect()
    }

    /// Drops sessions idle longer than the timeout from the active set (their
    /// credentials and credited shares stay). Returns how many.
    pub fn prune_idle(&self, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(self.config.idle_timeout.as_millis() as u64);
        let mut sessions = self.sessions.lock();
        let before = sessions.len();
        let mut unproven = 0;
        sessions.retain(|_, s| {
            let keep = s.last_seen_ms >= cutoff;
            unproven += usize::from(!keep && !s.proven);
            keep
        });
        self.unproven_active.fetch_sub(unproven, Ordering::Relaxed);
        before - sessions.len()
    }

    /// Whether `session_id` may be given work now: the pool runs, and the
    /// session may send shares.
    pub(crate) fn admit(&self, session_id: &str, now: u64) -> Result<(), PoolError> {
        if !self.running.load(Ordering::Relaxed) {
            return Err(PoolError::Stopped);
        }
        self.admit_shares(session_id, now)
    }

    /// Whether `session_id` may send shares now: it is not banned (expired
    /// bans are lifted). A pool stopped here less than
    /// [`super::STOPPED_SHARE_GRACE_MS`] ago still takes them: they are of
    /// jobs given out before the stop (none are after), so a block found as
    /// the operator stops is not lost.
    pub(crate) fn admit_shares(&self, session_id: &str, now: u64) -> Result<(), PoolError> {
        if !self.running.load(Ordering::Relaxed) && !in_stop_grace(self.stopped_at_ms.load(Ordering::Relaxed), now) {
            return Err(PoolError::Stopped);
        }
        // Read apart from the match: a guard in its scrutinee would live
        // through the arms, and the expired arm locks the same mutex.
        let recorded = self.bans.read().get(session_id).map(|b| b.until_ms);
        let until = match recorded {
            Some(until) if until > now => Some(until),
            Some(_) => {
                self.lift_expired_ban(session_id, now);
                None
            }
            None => None,
        };
        if let Some(until) = until {
            return Err(PoolError::Banned { secs: until.saturating_sub(now).div_ceil(1000) });
        }
        // An unproven session of a source that may not register any more
        // may not work either: sessions opened before its bans piled up
        // would otherwise each earn a stored ban of their own. (Read from
        // the count of bans in force: no scan on this path, and no session
        // lookup while no network is at the cap, the usual case.)
        if !self.any_source_capped() {
            return Ok(());
        }
        let unproven_source = self
            .sessions
            .read()
            .get(session_id)
            .filter(|s| !s.proven)
            .and_then(|s| s.record.source.as_deref()?.parse::<IpAddr>().ok());
        match unproven_source.and_then(|source| self.capped_until(source, now)) {
            Some(until) => Err(PoolError::Banned { secs: until.saturating_sub(now).div_ceil(1000) }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_pool_takes_shares_for_a_minute_after_its_stop() {
        let grace = super::super::STOPPED_SHARE_GRACE_MS;
        let table = [
            (0, 1_000, false, "stopped before this coordinator started"),
            (1_000, 1_000, true, "at the stop"),
            (1_000, 1_000 + grace, true, "the last moment"),
            (1_000, 1_001 + grace, false, "past the minute"),
            (5_000, 1_000, true, "a clock stepped back"),
        ];
        for (stopped_at, now, takes, what) in table {
            assert_eq!(in_stop_grace(stopped_at, now), takes, "{what}");
        }
    }

    #[test]
    fn session_ids_are_prefixes_of_the_token_hash() {
        let hash = token_hash("abc");
        assert_eq!(hash.len(), 64);
        assert_eq!(session_id_of(&hash), &hash[..24]);
        assert_ne!(token_hash("abd"), hash);
    }
}
