use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{
    AppendOutcome, FoundBlockRecord, JobRecord, PoolSettings, PoolStore, ShareRecord, StoreError, WorkerRecord,
};
use crate::chain::BlockTemplate;

/// [`PoolStore`] on sled trees, in the coordinator's data directory.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    workers: sled::Tree,
    shares: sled::Tree,
    share_keys: sled::Tree,
    bans: sled::Tree,
    blocks: sled::Tree,
    meta: sled::Tree,
    /// height BE ++ job id -> JobRecord.
    jobs: sled::Tree,
    /// template id -> (height BE ++ template JSON).
    templates: sled::Tree,
    /// Read once at open: it keys every share, so it must not cost a read per share.
    secret: [u8; 32],
}

/// The pool's secret, created on first open (kept across restarts).
fn load_or_create_secret(db: &sled::Db, meta: &sled::Tree) -> Result<[u8; 32], StoreError> {
    if meta.get("secret")?.is_none() {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Backend(format!("no OS randomness: {e}")))?;
        // Another opener may have raced us: keep whichever landed first.
        let _ = meta.compare_and_swap("secret", None as Option<&[u8]>, Some(&fresh[..]))?;
        db.flush()?;
    }
    let stored = meta.get("secret")?.ok_or_else(|| StoreError::Backend("pool secret vanished".into()))?;
    stored.as_ref().try_into().map_err(|_| StoreError::Corrupt { tree: "pool_meta", message: "secret".into() })
}

impl SledStore {
    /// Opens (or creates) the pool's trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let meta = db.open_tree("pool_meta")?;
        Ok(SledStore {
            secret: load_or_create_secret(db, &meta)?,
            db: db.clone(),
            workers: db.open_tree("pool_workers")?,
            shares: db.open_tree("pool_shares")?,
            share_keys: db.open_tree("pool_share_keys")?,
            bans: db.open_tree("pool_bans")?,
            blocks: db.open_tree("pool_found_blocks")?,
            meta,
            jobs: db.open_tree("pool_jobs")?,
            templates: db.open_tree("pool_templates")?,
        })
    }

    /// Opens a sled database at `path` (for tests and tools).
    pub fn open_path(path: &Path) -> Result<Self, StoreError> {
        Self::open(&sled::open(path)?)
    }

    fn share_key(&self, template_id: &str, nonce: u64) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(b"share");
        hasher.update(template_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(&nonce.to_le_bytes());
        *hasher.finalize().as_bytes()
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

fn decode<T: serde::de::DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { tree, message: e.to_string() })
}

impl PoolStore for SledStore {
    fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        self.workers.insert(worker.worker_id.as_bytes(), encode(worker))?;
        Ok(())
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        self.workers.iter().values().map(|v| decode("pool_workers", &v?)).collect()
    }

    fn worker(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError> {
        self.workers.get(worker_id.as_bytes())?.map(|v| decode("pool_workers", &v)).transpose()
    }

    fn append_share(&self, share: &ShareRecord) -> Result<AppendOutcome, StoreError> {
        let key = self.share_key(&share.template_id, share.nonce);
        let seq = self.db.generate_id()?;
        let value = encode(share);
        let result = (&self.shares, &self.share_keys).transaction(|(shares, keys)| {
            if keys.get(key)?.is_some() {
                return Ok(AppendOutcome::Duplicate);
            }
            keys.insert(&key[..], &seq.to_be_bytes()[..])?;
            shares.insert(&seq.to_be_bytes()[..], value.as_slice())?;
            Ok::<_, ConflictableTransactionError<()>>(AppendOutcome::Appended(seq))
        });
        match result {
            Ok(outcome) => Ok(outcome),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    fn is_duplicate(&self, template_id: &str, nonce: u64) -> Result<bool, StoreError> {
        Ok(self.share_keys.contains_key(self.share_key(template_id, nonce))?)
    }

    fn put_template(&self, template_id: &str, template: &BlockTemplate) -> Result<(), StoreError> {
        let mut value = template.height.to_be_bytes().to_vec();
        value.extend_from_slice(&encode(template));
        self.templates.insert(template_id.as_bytes(), value)?;
        Ok(())
    }

    fn template(&self, template_id: &str) -> Result<Option<BlockTemplate>, StoreError> {
        match self.templates.get(template_id.as_bytes())? {
            Some(v) if v.len() > 8 => Ok(Some(decode("pool_templates", &v[8..])?)),
            Some(_) => Err(StoreError::Corrupt { tree: "pool_templates", message: "short record".into() }),
            None => Ok(None),
        }
    }

    fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let mut key = job.height.to_be_bytes().to_vec();
        key.extend_from_slice(job.job_id.as_bytes());
        self.jobs.insert(key, encode(job))?;
        Ok(())
    }

    fn jobs_from_height(&self, height: u64) -> Result<Vec<JobRecord>, StoreError> {
        self.jobs.range(height.to_be_bytes()..).values().map(|v| decode("pool_jobs", &v?)).collect()
    }

    fn prune_jobs_below(&self, height: u64) -> Result<(), StoreError> {
        for key in self.jobs.range(..height.to_be_bytes()).keys() {
            self.jobs.remove(key?)?;
        }
        for item in self.templates.iter() {
            let (key, value) = item?;
            if value.len() >= 8 && u64::from_be_bytes(value[..8].try_into().expect("8 bytes")) < height {
                self.templates.remove(key)?;
            }
        }
        Ok(())
    }

    fn shares_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.shares
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                let seq =
                    u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        tree: "pool_shares",
                        message: "key is not 8 bytes".into(),
                    })?);
                Ok((seq, decode("pool_shares", &v)?))
            })
            .collect()
    }

    fn share_count(&self) -> Result<u64, StoreError> {
        Ok(self.shares.len() as u64)
    }

    fn put_ban(&self, worker_id: &str, until_ms: u64) -> Result<(), StoreError> {
        self.bans.insert(worker_id.as_bytes(), &until_ms.to_be_bytes())?;
        Ok(())
    }

    fn remove_ban(&self, worker_id: &str) -> Result<bool, StoreError> {
        Ok(self.bans.remove(worker_id.as_bytes())?.is_some())
    }

    fn bans(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.bans
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let until = v
                    .as_ref()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt { tree: "pool_bans", message: "value is not 8 bytes".into() })?;
                Ok((String::from_utf8_lossy(&k).into_owned(), until))
            })
            .collect()
    }

    fn put_found_block(&self, block: &FoundBlockRecord) -> Result<(), StoreError> {
        let mut key = block.height.to_be_bytes().to_vec();
        key.extend_from_slice(block.hash.as_bytes());
        self.blocks.insert(key, encode(block))?;
        Ok(())
    }

    fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocks.iter().values().map(|v| decode("pool_found_blocks", &v?)).collect()
    }

    fn settings(&self) -> Result<Option<PoolSettings>, StoreError> {
        self.meta.get("settings")?.map(|v| decode("pool_meta", &v)).transpose()
    }

    fn put_settings(&self, settings: &PoolSettings) -> Result<(), StoreError> {
        self.meta.insert("settings", encode(settings))?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    fn secret(&self) -> Result<[u8; 32], StoreError> {
        Ok(self.secret)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(job: &str, nonce: u64) -> ShareRecord {
        ShareRecord {
            worker_id: "w1".into(),
            wallet_address: "land1abc".into(),
            template_id: format!("t-{job}"),
            job_id: job.into(),
            nonce,
            share_difficulty: 10,
            height: 3,
            time_ms: 1,
            is_block: false,
        }
    }

    fn temp_store() -> (SledStore, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (SledStore::open(&db).unwrap(), db)
    }

    #[test]
    fn shares_append_in_order_and_duplicates_are_refused() {
        let (store, _db) = temp_store();
        let a = store.append_share(&share("j1", 1)).unwrap();
        let b = store.append_share(&share("j1", 2)).unwrap();
        assert_eq!(store.append_share(&share("j1", 1)).unwrap(), AppendOutcome::Duplicate);
        let c = store.append_share(&share("j2", 1)).unwrap();
        let (AppendOutcome::Appended(a), AppendOutcome::Appended(b), AppendOutcome::Appended(c)) = (a, b, c) else {
            panic!("appends");
        };
        assert!(a < b && b < c);
        let all = store.shares_from(0, 10).unwrap();
        assert_eq!(
            all.iter().map(|(_, s)| (s.job_id.as_str(), s.nonce)).collect::<Vec<_>>(),
            [("j1", 1), ("j1", 2), ("j2", 1)]
        );
        assert!(store.is_duplicate("t-j1", 2).unwrap());
        assert!(!store.is_duplicate("t-j2", 2).unwrap());
        assert_eq!(store.share_count().unwrap(), 3);
    }

    #[test]
    fn workers_are_found_by_id() {
        let (store, _db) = temp_store();
        let worker = WorkerRecord {
            worker_id: "rig".into(),
            wallet_address: "land1w".into(),
            worker_name: None,
            version: None,
            token: "t".into(),
            registered_at_ms: 5,
        };
        store.put_worker(&worker).unwrap();
        assert_eq!(store.worker("rig").unwrap(), Some(worker));
        assert_eq!(store.worker("other").unwrap(), None);
    }

    #[test]
    fn state_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("vision-sled-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (secret, id) = {
            let store = SledStore::open_path(&dir).unwrap();
            store.append_share(&share("j", 9)).unwrap();
            store.put_ban("bad", 123).unwrap();
            store.flush().unwrap();
            (store.secret().unwrap(), store.next_id().unwrap())
        };
        let store = SledStore::open_path(&dir).unwrap();
        assert_eq!(store.secret().unwrap(), secret);
        assert!(store.next_id().unwrap() > id, "ids never repeat across restarts");
        assert!(store.is_duplicate("t-j", 9).unwrap());
        assert_eq!(store.bans().unwrap(), vec![("bad".to_string(), 123)]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
