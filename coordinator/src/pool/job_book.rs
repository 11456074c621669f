//! Templates and the jobs handed out for them.
//!
//! Every job is one worker's view of the current template: its share
//! difficulty and a nonce range reserved for it alone (ranges are carved
//! from a per-template counter, so no two jobs overlap). Job ids are keyed
//! hashes of a store-wide counter, so they never repeat, across heights or
//! restarts. A watch channel tells long-polling workers about new templates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use visionx::{NonceRange, PowInput};

use crate::chain::BlockTemplate;

/// Nonces reserved per job: 2^40, about 11 days for a 1 MH/s device.
pub const NONCES_PER_JOB: u64 = 1 << 40;
/// Jobs of templates this many heights back are still known (and stale).
const HEIGHTS_KEPT: u64 = 4;

/// A template the pool mines on.
pub struct TemplateState {
    pub template: BlockTemplate,
    pub input: Arc<PowInput>,
    /// Increases with every new template.
    pub version: u64,
    next_range: AtomicU64,
}

impl TemplateState {
    /// The next unused nonce range of this template.
    fn reserve_range(&self) -> NonceRange {
        let index = self.next_range.fetch_add(1, Ordering::Relaxed);
        // 2^24 jobs per template before wrapping into u64::MAX's range end.
        let start = (index % (1 << 23)) * NONCES_PER_JOB;
        NonceRange::new(start, start + NONCES_PER_JOB)
    }
}

/// One worker's job.
pub struct PoolJob {
    pub job_id: String,
    pub worker_id: String,
    pub template: Arc<TemplateState>,
    pub share_difficulty: u64,
    pub nonces: NonceRange,
}

pub struct JobBook {
    current: RwLock<Option<Arc<TemplateState>>>,
    jobs: Mutex<HashMap<String, Arc<PoolJob>>>,
    versions: watch::Sender<u64>,
}

impl Default for JobBook {
    fn default() -> Self {
        JobBook { current: RwLock::new(None), jobs: Mutex::new(HashMap::new()), versions: watch::channel(0).0 }
    }
}

impl JobBook {
    pub fn current(&self) -> Option<Arc<TemplateState>> {
        self.current.read().expect("template lock").clone()
    }

    /// Installs a new template unless it is the one already current
    /// (same height and parent). Returns whether it changed.
    pub fn set_template(&self, template: BlockTemplate) -> Result<bool, visionx::Error> {
        let input = Arc::new(template.pow_input()?);
        let mut current = self.current.write().expect("template lock");
        if current
            .as_ref()
            .is_some_and(|c| c.template.height == template.height && c.template.parent_hash == template.parent_hash)
        {
            return Ok(false);
        }
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        let height = template.height;
        *current = Some(Arc::new(TemplateState { template, input, version, next_range: AtomicU64::new(0) }));
        drop(current);
        self.jobs.lock().expect("jobs lock").retain(|_, job| job.template.template.height + HEIGHTS_KEPT > height);
        self.versions.send_replace(version);
        Ok(true)
    }

    /// Notified with the template version on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// Creates a job for `worker_id` on the current template.
    pub fn issue(&self, job_id: String, worker_id: &str, share_difficulty: u64) -> Option<Arc<PoolJob>> {
        let template = self.current()?;
        let job = Arc::new(PoolJob {
            job_id: job_id.clone(),
            worker_id: worker_id.to_string(),
            nonces: template.reserve_range(),
            template,
            share_difficulty,
        });
        self.jobs.lock().expect("jobs lock").insert(job_id, job.clone());
        Some(job)
    }

    pub fn get(&self, job_id: &str) -> Option<Arc<PoolJob>> {
        self.jobs.lock().expect("jobs lock").get(job_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use visionx::Params;

    use super::*;

    fn template(height: u64, parent: u8) -> BlockTemplate {
        BlockTemplate {
            chain_id: "devnet".into(),
            height,
            parent_hash: hex::encode([parent; 32]),
            timestamp: 1,
            difficulty: 10,
            tx_root: hex::encode([0u8; 32]),
            miner: "pool".into(),
            epoch: 0,
            epoch_seed: String::new(),
            pow_message: String::new(),
            params: Params::CONSENSUS,
            reward: 1,
        }
    }

    #[test]
    fn jobs_of_one_template_never_share_nonces() {
        let book = JobBook::default();
        assert!(book.set_template(template(1, 1)).unwrap());
        assert!(!book.set_template(template(1, 1)).unwrap(), "same template is not a change");
        let a = book.issue("a".into(), "w1", 5).unwrap();
        let b = book.issue("b".into(), "w2", 5).unwrap();
        assert!(a.nonces.end <= b.nonces.start || b.nonces.end <= a.nonces.start);
        assert_eq!(book.get("a").unwrap().worker_id, "w1");
    }

    #[test]
    fn old_heights_are_forgotten_and_versions_increase() {
        let book = JobBook::default();
        let versions = book.subscribe();
        book.set_template(template(1, 1)).unwrap();
        book.issue("old".into(), "w", 1).unwrap();
        for h in 2..=4 {
            book.set_template(template(h, h as u8)).unwrap();
        }
        assert!(book.get("old").is_some(), "recent heights stay known (as stale)");
        book.set_template(template(5, 5)).unwrap();
        assert!(book.get("old").is_none());
        assert_eq!(*versions.borrow(), 5);
    }
}
