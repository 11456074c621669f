//! Templates and the jobs handed out for them.
//!
//! Every job is one session's view of the current template: its share
//! difficulty and a nonce range reserved for it alone. A job id is a
//! counter that never repeats across restarts and a keyed hash binding it
//! to its session ([`job_id`]), so an id nobody issued is refused without
//! a storage read. Ranges are
//! numbered per template from the counter's value when the template was
//! first installed (stored with it), and a template issues at most
//! [`MAX_JOBS_PER_TEMPLATE`] ranges, so two jobs of one template never
//! share a nonce, restarts included. Jobs are persisted by the pool, so a
//! restarted pool still judges shares of its earlier jobs. A watch channel
//! tells long-polling workers about new templates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use visionx::{NonceRange, PowInput};

use crate::chain::BlockTemplate;

/// Nonces reserved per job: 2^40, about 11 days for a 1 MH/s device.
pub(crate) const NONCES_PER_JOB: u64 = 1 << 40;
/// Ranges one template can give out before the nonce space is used up.
pub(crate) const MAX_JOBS_PER_TEMPLATE: u64 = u64::MAX / NONCES_PER_JOB;
/// Jobs of templates this many heights back are still known (and stale).
pub(crate) const HEIGHTS_KEPT: u64 = 4;
/// The highest template height taken (2^48: millennia of blocks).
const MAX_TEMPLATE_HEIGHT: u64 = 1 << 48;

/// Why a template from the chain is not mined on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateRefusal {
    #[error("its header fields are invalid: {0}")]
    BadHeader(#[from] visionx::Error),
    #[error("it pays {found:?}, not the pool address {expected:?}")]
    WrongMiner { found: String, expected: String },
    #[error("its {field} disagrees with the one computed from its header fields")]
    Inconsistent { field: &'static str },
}

/// A template the pool mines on.
pub(crate) struct TemplateState {
    pub(crate) template: BlockTemplate,
    /// Built from the header fields: what miners are sent and what the
    /// verifier hashes are the same thing.
    pub(crate) input: Arc<PowInput>,
    /// blake3 of the pow message: what a digest depends on besides the nonce.
    pub(crate) id: String,
    /// Increases with every new template (0 for templates restored from disk).
    pub(crate) version: u64,
    /// The job counter's value when this template was first installed.
    pub(crate) first_job_index: u64,
}

impl TemplateState {
    /// Builds the state of `template` from its header fields, checking that
    /// the derived fields it came with agree and that it pays `pool_address`.
    pub(crate) fn checked(template: BlockTemplate, pool_address: &str) -> Result<Self, TemplateRefusal> {
        if template.header.miner != pool_address {
            return Err(TemplateRefusal::WrongMiner { found: template.header.miner, expected: pool_address.into() });
        }
        // Heights are added to under locks: a node's absurd one is refused
        // here rather than overflowing there.
        if template.header.height > MAX_TEMPLATE_HEIGHT {
            return Err(TemplateRefusal::Inconsistent { field: "height" });
        }
        let state = Self::from_header(template, 0, 0)?;
        let t = &state.template;
        if t.epoch != state.input.epoch() {
            return Err(TemplateRefusal::Inconsistent { field: "epoch" });
        }
        if !t.epoch_seed.eq_ignore_ascii_case(&hex::encode(state.input.epoch_seed())) {
            return Err(TemplateRefusal::Inconsistent { field: "epoch_seed" });
        }
        if !t.pow_message.eq_ignore_ascii_case(&hex::encode(state.input.header())) {
            return Err(TemplateRefusal::Inconsistent { field: "pow_message" });
        }
        Ok(state)
    }

    /// The state of a template from its header fields alone (restored ones).
    pub(crate) fn from_header(
        template: BlockTemplate,
        version: u64,
        first_job_index: u64,
    ) -> Result<Self, visionx::Error> {
        let input = Arc::new(template.pow_input()?);
        let id = blake3::hash(input.header()).to_hex().to_string();
        Ok(TemplateState { template, input, id, version, first_job_index })
    }
}

/// The nonce range of the `n`-th job of a template.
pub(crate) fn nonce_range(n: u64) -> NonceRange {
    let start = n * NONCES_PER_JOB;
    NonceRange::new(start, start + NONCES_PER_JOB)
}

/// One session's job.
pub(crate) struct IssuedJob {
    pub(crate) job_id: String,
    pub(crate) worker_id: String,
    pub(crate) session_id: String,
    pub(crate) template: Arc<TemplateState>,
    pub(crate) share_difficulty: u64,
    pub(crate) nonces: NonceRange,
}

pub(crate) struct JobBook {
    current: RwLock<Option<Arc<TemplateState>>>,
    jobs: Mutex<HashMap<String, Arc<IssuedJob>>>,
    versions: watch::Sender<u64>,
}

impl Default for JobBook {
    fn default() -> Self {
        JobBook { current: RwLock::new(None), jobs: Mutex::new(HashMap::new()), versions: watch::channel(0).0 }
    }
}

impl JobBook {
    pub(crate) fn current(&self) -> Option<Arc<TemplateState>> {
        self.current.read().expect("template lock").clone()
    }

    /// Whether a template of this height and parent is current already.
    pub(crate) fn is_current(&self, template: &BlockTemplate) -> bool {
        self.current().is_some_and(|c| {
            c.template.header.height == template.header.height
                && c.template.header.parent_hash == template.header.parent_hash
        })
    }

    /// Makes `state` current (with the next version) and forgets in-memory
    /// jobs of heights no longer kept. Returns the installed state.
    pub(crate) fn install(&self, mut state: TemplateState) -> Arc<TemplateState> {
        let mut current = self.current.write().expect("template lock");
        state.version = current.as_ref().map_or(1, |c| c.version + 1);
        let height = state.template.header.height;
        let state = Arc::new(state);
        *current = Some(state.clone());
        drop(current);
        self.jobs
            .lock()
            .expect("jobs lock")
            .retain(|_, job| job.template.template.header.height.saturating_add(HEIGHTS_KEPT) > height);
        self.versions.send_replace(state.version);
        state
    }

    /// Notified with the template version on every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// Creates a job on `template` with the range of counter value `index`;
    /// `None` once the template's ranges are used up.
    pub(crate) fn issue(
        &self,
        job_id: String,
        index: u64,
        (worker_id, session_id): (&str, &str),
        share_difficulty: u64,
        template: Arc<TemplateState>,
    ) -> Option<Arc<IssuedJob>> {
        let n = index.checked_sub(template.first_job_index).filter(|n| *n < MAX_JOBS_PER_TEMPLATE)?;
        let job = Arc::new(IssuedJob {
            job_id: job_id.clone(),
            worker_id: worker_id.to_string(),
            session_id: session_id.to_string(),
            nonces: nonce_range(n),
            template,
            share_difficulty,
        });
        self.jobs.lock().expect("jobs lock").insert(job_id, job.clone());
        Some(job)
    }

    /// Puts back a job from before a restart.
    pub(crate) fn restore(&self, job: IssuedJob) {
        self.jobs.lock().expect("jobs lock").insert(job.job_id.clone(), Arc::new(job));
    }

    pub(crate) fn get(&self, job_id: &str) -> Option<Arc<IssuedJob>> {
        self.jobs.lock().expect("jobs lock").get(job_id).cloned()
    }

    /// Jobs held in memory.
    pub(crate) fn len(&self) -> usize {
        self.jobs.lock().expect("jobs lock").len()
    }
}

/// The id of job `index` of `session_id`: the index (6 bytes) and 6 bytes
/// of a keyed hash of both, in hex ([`JOB_ID_HEX`](super::JOB_ID_HEX)
/// characters). Every coordinator on a store shares its secret, so each can
/// tell an id one of them issued to that session from a made-up one.
pub(crate) fn job_id(secret: &[u8; 32], index: u64, session_id: &str) -> String {
    let mut id = index.to_be_bytes()[2..].to_vec();
    id.extend_from_slice(&job_id_tag(secret, index, session_id));
    hex::encode(id)
}

/// Whether `job_id` is one [`job_id`] gives `session_id`.
pub(crate) fn job_id_is_issued(secret: &[u8; 32], job_id: &str, session_id: &str) -> bool {
    let Ok(bytes) = hex::decode(job_id) else { return false };
    let Ok(bytes) = <[u8; 12]>::try_from(bytes.as_slice()) else { return false };
    let mut index = [0u8; 8];
    index[2..].copy_from_slice(&bytes[..6]);
    bytes[6..] == job_id_tag(secret, u64::from_be_bytes(index), session_id)
}

fn job_id_tag(secret: &[u8; 32], index: u64, session_id: &str) -> [u8; 6] {
    let mut hasher = blake3::Hasher::new_keyed(secret);
    hasher.update(b"vision job id");
    hasher.update(&index.to_le_bytes());
    hasher.update(session_id.as_bytes());
    let mut tag = [0u8; 6];
    tag.copy_from_slice(&hasher.finalize().as_bytes()[..6]);
    tag
}

#[cfg(test)]
mod tests {
    use visionx::Params;

    use super::*;

    #[test]
    fn a_job_id_is_known_for_its_session_only_and_cannot_be_made_up() {
        let secret = [7u8; 32];
        let id = job_id(&secret, 41, "session-a");
        assert_eq!(id.len(), crate::pool::JOB_ID_HEX);
        assert!(job_id_is_issued(&secret, &id, "session-a"));
        assert_ne!(id, job_id(&secret, 42, "session-a"), "ids never repeat");
        let cases = [
            ("another session's", job_id(&secret, 41, "session-b")),
            ("another secret's", job_id(&[8u8; 32], 41, "session-a")),
            ("another index under this tag", format!("{}{}", &job_id(&secret, 42, "session-a")[..12], &id[12..])),
            ("one character off", format!("{}{}", &id[..23], if id.ends_with('0') { '1' } else { '0' })),
            ("too short", id[..22].to_string()),
            ("not hex", format!("{}zz", &id[..22])),
            ("empty", String::new()),
        ];
        for (case, made_up) in cases {
            assert!(!job_id_is_issued(&secret, &made_up, "session-a"), "{case}: {made_up}");
        }
    }

    fn template(height: u64, parent: u8) -> BlockTemplate {
        let header = vision_protocol::HeaderFields {
            chain_id: "devnet".into(),
            height,
            parent_hash: hex::encode([parent; 32]),
            timestamp: 1,
            difficulty: 10,
            tx_root: hex::encode([0u8; 32]),
            miner: "pool".into(),
        };
        let input = header.pow_input(&Params::CONSENSUS).unwrap();
        BlockTemplate {
            header,
            epoch: input.epoch(),
            epoch_seed: hex::encode(input.epoch_seed()),
            pow_message: hex::encode(input.header()),
            params: Params::CONSENSUS,
            reward: 1,
        }
    }

    fn install(book: &JobBook, height: u64, parent: u8, first: u64) -> Arc<TemplateState> {
        book.install(TemplateState::from_header(template(height, parent), 0, first).unwrap())
    }

    #[test]
    fn jobs_of_one_template_never_share_nonces() {
        let book = JobBook::default();
        let t = install(&book, 1, 1, 100);
        assert!(book.is_current(&template(1, 1)));
        assert!(!book.is_current(&template(1, 2)), "same height, other parent is a new template");
        let a = book.issue("a".into(), 107, ("w1", "s1"), 5, t.clone()).unwrap();
        let b = book.issue("b".into(), 108, ("w2", "s2"), 5, t.clone()).unwrap();
        assert!(a.nonces.end <= b.nonces.start || b.nonces.end <= a.nonces.start);
        assert_eq!(book.get("a").unwrap().session_id, "s1");
        // The last range ends at the top of the nonce space; none lies past it.
        let last = book.issue("z".into(), 100 + MAX_JOBS_PER_TEMPLATE - 1, ("w", "s"), 5, t.clone()).unwrap();
        assert!(last.nonces.end > last.nonces.start);
        assert!(book.issue("over".into(), 100 + MAX_JOBS_PER_TEMPLATE, ("w", "s"), 5, t.clone()).is_none());
        assert!(book.issue("before".into(), 99, ("w", "s"), 5, t).is_none());
    }

    #[test]
    fn templates_are_checked_against_their_header_fields() {
        assert!(TemplateState::checked(template(3, 1), "pool").is_ok());
        assert!(matches!(TemplateState::checked(template(3, 1), "other"), Err(TemplateRefusal::WrongMiner { .. })));
        for (field, edit) in [
            ("pow_message", (|t: &mut BlockTemplate| t.pow_message = "00".repeat(32)) as fn(&mut BlockTemplate)),
            ("epoch_seed", |t| t.epoch_seed = "11".repeat(32)),
            ("epoch", |t| t.epoch += 1),
            ("height", |t| t.header.height = u64::MAX - 1),
        ] {
            let mut t = template(3, 1);
            edit(&mut t);
            match TemplateState::checked(t, "pool") {
                Err(TemplateRefusal::Inconsistent { field: f }) => assert_eq!(f, field),
                other => panic!("{field}: {:?}", other.map(|s| s.id)),
            }
        }
    }

    #[test]
    fn old_heights_are_forgotten_and_versions_increase() {
        let book = JobBook::default();
        let versions = book.subscribe();
        let t = install(&book, 1, 1, 0);
        book.issue("old".into(), 1, ("w", "s"), 1, t).unwrap();
        for h in 2..=4 {
            install(&book, h, h as u8, h);
        }
        assert!(book.get("old").is_some(), "recent heights stay known (as stale)");
        install(&book, 5, 5, 5);
        assert!(book.get("old").is_none());
        assert_eq!(*versions.borrow(), 5);
    }
}
