//! Templates and the jobs handed out for them.
//!
//! Every job is one worker's view of the current template: its share
//! difficulty and a nonce range reserved for it alone. Both the job id (a
//! keyed hash) and the range come from the store's counter, which never
//! repeats across restarts, so ids never repeat and ranges of one template
//! never overlap. Jobs are persisted by the pool, so a restarted pool still
//! judges shares of its earlier jobs. A watch channel tells long-polling
//! workers about new templates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use visionx::{NonceRange, PowInput};

use crate::chain::BlockTemplate;

/// Nonces reserved per job: 2^40, about 11 days for a 1 MH/s device.
pub const NONCES_PER_JOB: u64 = 1 << 40;
/// Jobs of templates this many heights back are still known (and stale).
pub const HEIGHTS_KEPT: u64 = 4;

/// A template the pool mines on.
pub struct TemplateState {
    pub template: BlockTemplate,
    pub input: Arc<PowInput>,
    /// blake3 of the pow message: what a digest depends on besides the nonce.
    pub id: String,
    /// Increases with every new template (0 for templates restored from disk).
    pub version: u64,
}

impl TemplateState {
    pub fn new(template: BlockTemplate, version: u64) -> Result<Self, visionx::Error> {
        let input = Arc::new(template.pow_input()?);
        let id = blake3::hash(input.header()).to_hex().to_string();
        Ok(TemplateState { template, input, id, version })
    }
}

/// The nonce range for the `index`-th job: 2^40 nonces each; indices
/// wrap after 2^23 jobs, far beyond the jobs one template sees.
pub fn nonce_range(index: u64) -> NonceRange {
    let start = (index % (1 << 23)) * NONCES_PER_JOB;
    NonceRange::new(start, start + NONCES_PER_JOB)
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

    /// Installs a new template unless one of the same height and parent is
    /// current. Returns the new template when it changed.
    pub fn set_template(&self, template: BlockTemplate) -> Result<Option<Arc<TemplateState>>, visionx::Error> {
        let mut current = self.current.write().expect("template lock");
        let same = |c: &Arc<TemplateState>| {
            c.template.height == template.height && c.template.parent_hash == template.parent_hash
        };
        if current.as_ref().is_some_and(same) {
            return Ok(None);
        }
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        let height = template.height;
        let state = Arc::new(TemplateState::new(template, version)?);
        *current = Some(state.clone());
        drop(current);
        self.jobs.lock().expect("jobs lock").retain(|_, job| job.template.template.height + HEIGHTS_KEPT > height);
        self.versions.send_replace(version);
        Ok(Some(state))
    }

    /// Notified with the template version on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// Creates a job for `worker_id` on the current template, with the
    /// nonce range of job `index` (a number never used before).
    pub fn issue(&self, job_id: String, index: u64, worker_id: &str, share_difficulty: u64) -> Option<Arc<PoolJob>> {
        let template = self.current()?;
        let job = Arc::new(PoolJob {
            job_id: job_id.clone(),
            worker_id: worker_id.to_string(),
            nonces: nonce_range(index),
            template,
            share_difficulty,
        });
        self.jobs.lock().expect("jobs lock").insert(job_id, job.clone());
        Some(job)
    }

    /// Puts back a job from before a restart.
    pub fn restore(&self, job: PoolJob) {
        self.jobs.lock().expect("jobs lock").insert(job.job_id.clone(), Arc::new(job));
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
        assert!(book.set_template(template(1, 1)).unwrap().is_some());
        assert!(book.set_template(template(1, 1)).unwrap().is_none(), "same template is not a change");
        let a = book.issue("a".into(), 7, "w1", 5).unwrap();
        let b = book.issue("b".into(), 8, "w2", 5).unwrap();
        assert!(a.nonces.end <= b.nonces.start || b.nonces.end <= a.nonces.start);
        assert_eq!(book.get("a").unwrap().worker_id, "w1");
    }

    #[test]
    fn old_heights_are_forgotten_and_versions_increase() {
        let book = JobBook::default();
        let versions = book.subscribe();
        book.set_template(template(1, 1)).unwrap();
        book.issue("old".into(), 1, "w", 1).unwrap();
        for h in 2..=4 {
            book.set_template(template(h, h as u8)).unwrap();
        }
        assert!(book.get("old").is_some(), "recent heights stay known (as stale)");
        book.set_template(template(5, 5)).unwrap();
        assert!(book.get("old").is_none());
        assert_eq!(*versions.borrow(), 5);
    }
}
