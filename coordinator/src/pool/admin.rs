//! The operator's controls: settings, start/stop, bans. Each change is
//! durable (through the group commit, off the runtime) before it is answered.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::{BanView, ConfigureRequest, Pool, PoolError, MAX_POOL_FEE_BPS};

use crate::storage::{BanRecord, PoolSettings, StoreError};

/// How far before its last look a coordinator asks for ban changes again:
/// a change committed late carries a time before the look that missed it.
const BAN_LOOK_BACK_MS: u64 = 10_000;
/// How often a coordinator reads every ban on the store.
const FULL_BAN_READ_EVERY_MS: u64 = 60_000;
/// Reads and writes of an operator's settings change, each against a
/// change made between them, before it is answered 409.
const SETTINGS_TRIES: u32 = 5;

impl Pool {
    pub(crate) async fn configure(&self, request: ConfigureRequest) -> Result<PoolSettings, PoolError> {
        self.change_settings(|next| {
            if let Some(name) = &request.pool_name {
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(PoolError::bad_field("pool_name is 1-64 printable characters"));
                }
                next.pool_name = name.clone();
            }
            if let Some(fee) = request.pool_fee_bps {
                if fee > MAX_POOL_FEE_BPS {
                    return Err(PoolError::BadField {
                        reason: "bad_fee",
                        message: format!("pool_fee_bps must be 0-{MAX_POOL_FEE_BPS} (0-10%)"),
                    });
                }
                next.pool_fee_bps = fee;
            }
            if let Some(secs) = request.target_share_seconds {
                if !(1..=3600).contains(&secs) {
                    return Err(PoolError::bad_field("target_share_seconds must be 1-3600"));
                }
                next.target_share_seconds = secs;
            }
            if let Some(min) = request.min_share_difficulty {
                next.min_share_difficulty = min.max(1);
            }
            if let Some(max) = request.max_share_difficulty {
                next.max_share_difficulty = max;
            }
            if next.max_share_difficulty < next.min_share_difficulty {
                return Err(PoolError::bad_field("max_share_difficulty is below min_share_difficulty"));
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn set_running(&self, running: bool) -> Result<PoolSettings, PoolError> {
        self.change_settings(|next| {
            next.running = running;
            Ok(())
        })
        .await
    }

    /// Applies the operator's `edit` to the pool's settings as stored (a
    /// change made through another coordinator a moment ago is kept), and
    /// stores them only while they are as read: a change made between the
    /// read and the write is read again and edited, not undone. Stored and
    /// taken on before the wait for durability, so a client hanging up
    /// cannot leave the two apart.
    async fn change_settings(
        &self,
        edit: impl Fn(&mut PoolSettings) -> Result<(), PoolError>,
    ) -> Result<PoolSettings, PoolError> {
        let mut tries = 1;
        let next = loop {
            let stored = self.store.settings().await?;
            let mut next = stored.clone().unwrap_or_else(|| self.settings());
            edit(&mut next)?;
            match self.store.put_settings(&next, stored.as_ref()).await {
                Ok(()) => break next,
                Err(StoreError::Conflict(_)) if tries < SETTINGS_TRIES => tries += 1,
                Err(err) => return Err(err.into()),
            }
        };
        self.take_on_settings(next.clone());
        self.commits.durable().await?;
        Ok(next)
    }

    /// Takes on settings the store holds (changed through this coordinator
    /// or another): running or stopped, and the sessions' vardiff bounds.
    fn take_on_settings(&self, settings: PoolSettings) {
        let running = settings.running;
        *self.settings.write().expect("settings lock") = settings;
        let was_running = self.running.swap(running, Ordering::Relaxed);
        if was_running && !running {
            self.stopped_at_ms.store(super::now_ms(), Ordering::Relaxed);
        }
        // (What the pool's figures show changed.)
        self.state_changes.fetch_add(1, Ordering::Release);
        let vardiff_config = self.vardiff_config();
        for session in self.sessions.lock().values_mut() {
            session.vardiff.apply_bounds(&vardiff_config);
        }
    }

    /// Bans in force.
    pub(crate) fn bans(&self, now: u64) -> Vec<BanView> {
        let bans = self.bans.read();
        let mut list: Vec<BanView> = bans
            .values()
            .filter(|b| b.until_ms > now)
            .map(|b| BanView {
                session_id: b.session_id.clone(),
                worker_id: b.worker_id.clone(),
                banned_until_ms: b.until_ms,
                reason: b.reason.clone(),
            })
            .collect();
        list.sort_by(|a, b| (&a.worker_id, &a.session_id).cmp(&(&b.worker_id, &b.session_id)));
        list
    }

    /// Lifts the ban of a session, or of every session of a worker id.
    /// Returns how many bans were lifted.
    pub(crate) async fn unban(&self, session_or_worker: &str) -> Result<usize, PoolError> {
        let lifted: Vec<String> = self
            .bans
            .read()
            .values()
            .filter(|b| b.session_id == session_or_worker || b.worker_id == session_or_worker)
            .map(|b| b.session_id.clone())
            .collect();
        // The store first: a ban lifted in memory only would come back.
        let mut removed = Ok(());
        for session_id in &lifted {
            if let Err(err) = self.store.remove_ban(session_id).await {
                removed = Err(err);
                break;
            }
            self.bans.lock().remove(session_id);
            if let Some(session) = self.sessions.lock().get_mut(session_id) {
                session.ban_lifted();
            }
        }
        // Counted again whatever was lifted, a failure part-way included.
        self.recount_capped_sources(super::now_ms());
        removed?;
        self.commits.durable().await?;
        Ok(lifted.len())
    }

    /// Notes its tip and reads the others' (readiness), and takes on the
    /// settings and bans another coordinator on the shared
    /// store has changed (an operator's fee change, ban or unban made
    /// through any coordinator holds on all within a second). On a store
    /// of its own, it finds nothing new.
    pub async fn sync_shared_state(&self, now: u64) -> Result<(), PoolError> {
        let settings = self.store.settings().await?;
        // The store answers (readiness), whatever the bans below do.
        self.store_answered_ms.store(super::now_ms(), Ordering::Relaxed);
        if let Some(stored) = settings {
            // (`running` follows the settings: only `take_on_settings` sets it.)
            if stored != self.settings() {
                tracing::info!(pool_fee_bps = stored.pool_fee_bps, running = stored.running, "settings changed");
                self.take_on_settings(stored);
            }
        }
        // Each whatever the other does: the first failure is reported.
        let bans = self.sync_bans(now).await;
        let tips = self.look_for_tips_ahead(now).await;
        bans.and(tips)
    }

    /// Takes on the bans put or lifted through other coordinators: those
    /// changed since the last look (a few seconds back, for changes that
    /// committed late), and all of them once a minute (for coordinators
    /// that do not log their changes, and anything missed).
    async fn sync_bans(&self, now: u64) -> Result<(), PoolError> {
        let since = self.ban_clock_ms.load(Ordering::Relaxed).saturating_sub(BAN_LOOK_BACK_MS);
        let changes = self.store.ban_changes_since(since).await?;
        let last_full = self.last_full_ban_read_ms.load(Ordering::Relaxed);
        // (A clock that stepped back reads everything too.)
        let full = now < last_full || now - last_full >= FULL_BAN_READ_EVERY_MS;
        let stored = if full { Some(self.store.bans().await?) } else { None };
        self.ban_clock_ms.store(changes.now_ms, Ordering::Relaxed);
        if full {
            self.last_full_ban_read_ms.store(now, Ordering::Relaxed);
        }
        // (session id, ban in force now) of bans new to this coordinator.
        let (banned, lifted): (Vec<(String, bool)>, Vec<String>) = {
            // Counted as a change only when it is one.
            let same = {
                let bans = self.bans.read();
                match &stored {
                    Some(stored) => {
                        stored.len() == bans.len() && stored.iter().all(|b| bans.get(&b.session_id) == Some(b))
                    }
                    None => {
                        changes.bans.iter().all(|b| bans.get(&b.session_id) == Some(b))
                            && changes.lifted.iter().all(|id| !bans.contains_key(id))
                    }
                }
            };
            if same {
                return Ok(());
            }
            let mut bans = self.bans.lock();
            let (put, lifted): (Vec<BanRecord>, Vec<String>) = match stored {
                Some(stored) => {
                    let ids: HashSet<&str> = stored.iter().map(|b| b.session_id.as_str()).collect();
                    let lifted = bans.keys().filter(|id| !ids.contains(id.as_str())).cloned().collect();
                    (stored, lifted)
                }
                None => (changes.bans, changes.lifted.into_iter().filter(|id| bans.contains_key(id)).collect()),
            };
            // (A ban replaced by another, put again elsewhere, counts as new.)
            let banned = put
                .iter()
                .filter(|b| bans.get(&b.session_id).map(|old| old.until_ms) != Some(b.until_ms))
                .map(|b| (b.session_id.clone(), b.until_ms > now))
                .collect();
            for id in &lifted {
                bans.remove(id);
            }
            for ban in put {
                bans.insert(ban.session_id.clone(), ban);
            }
            (banned, lifted)
        };
        // Another coordinator's bans and unbans change which networks are
        // at the cap here too.
        self.recount_capped_sources(now);
        let mut sessions = self.sessions.lock();
        for (session_id, in_force) in banned {
            if let Some(session) = sessions.get_mut(&session_id) {
                session.banned.store(in_force, Ordering::Relaxed);
            }
        }
        for session_id in &lifted {
            if let Some(session) = sessions.get_mut(session_id) {
                session.ban_lifted();
            }
        }
        Ok(())
    }
}
