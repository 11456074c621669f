//! The owner's "join a pool" control: the local API asks the pool session to
//! mine at another URL; the session picks the request up at its next step
//! (a running long-poll is cut short).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::pool_client::{PoolCa, PoolClient};
use crate::MinerError;

/// Pools in the failover list at most (the configured ones and the owner's).
pub(crate) const MAX_POOLS: usize = 32;

/// Why a switch was refused.
#[derive(Debug, thiserror::Error)]
pub enum PoolSwitchError {
    /// Not an http(s) URL, or one carrying credentials.
    #[error(transparent)]
    BadUrl(#[from] MinerError),
    #[error("the failover list is full ({MAX_POOLS} pools): switch to one of them, or restart the miner with the pools you want")]
    ListFull,
}

#[derive(Default)]
pub struct PoolSwitch {
    requested: Mutex<Option<PoolClient>>,
    /// The failover list's URLs, as the session notes them: a new one is
    /// refused once it is full (not answered and dropped).
    listed: Mutex<HashSet<String>>,
    pub(crate) notify: Notify,
    /// The miner's `--pool-ca`: a pool switched to is trusted as the configured ones are.
    ca: Option<PoolCa>,
}

impl PoolSwitch {
    pub fn new(ca: Option<PoolCa>) -> Self {
        PoolSwitch { ca, ..PoolSwitch::default() }
    }

    /// Checks `url` and asks the session to make it the primary pool (added
    /// to the failover list when new). Only its origin counts (a URL copied
    /// from a dashboard's address bar carries a path); credentials in it are
    /// refused, and so is a new pool once the list holds [`MAX_POOLS`]. A
    /// later request replaces an earlier one not yet taken.
    pub fn request(&self, url: &str) -> Result<String, PoolSwitchError> {
        let parsed =
            reqwest::Url::parse(url.trim()).map_err(|e| MinerError::bad_input(format!("{url:?} is not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(MinerError::bad_input("a pool URL carries no user name or password").into());
        }
        let pool = PoolClient::new(&parsed.origin().ascii_serialization(), self.ca.as_ref())?;
        let url = pool.url.clone();
        let listed = self.listed.lock().expect("pool switch lock");
        if listed.len() >= MAX_POOLS && !listed.contains(&url) {
            return Err(PoolSwitchError::ListFull);
        }
        drop(listed);
        *self.requested.lock().expect("pool switch lock") = Some(pool);
        self.notify.notify_one();
        Ok(url)
    }

    /// The session's note of a pool in its failover list.
    pub(crate) fn listed(&self, url: &str) {
        self.listed.lock().expect("pool switch lock").insert(url.to_string());
    }

    pub(crate) fn take(&self) -> Option<PoolClient> {
        self.requested.lock().expect("pool switch lock").take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_and_the_last_good_one_wins() {
        let switch = PoolSwitch::default();
        assert!(switch.request("ftp://example").is_err());
        assert!(switch.take().is_none());
        assert!(switch.request("http://user:pw@127.0.0.1:1").is_err());
        switch.request("http://127.0.0.1:1/").unwrap();
        assert_eq!(switch.request("http://127.0.0.1:2/#/wallet").unwrap(), "http://127.0.0.1:2");
        assert_eq!(switch.take().map(|p| p.url), Some("http://127.0.0.1:2".to_string()));
        assert!(switch.take().is_none());
    }

    #[test]
    fn a_new_pool_is_refused_once_the_list_is_full() {
        let switch = PoolSwitch::default();
        for port in 1..=MAX_POOLS {
            switch.listed(&format!("http://127.0.0.1:{port}"));
        }
        assert!(matches!(switch.request("http://127.0.0.1:9999"), Err(PoolSwitchError::ListFull)));
        assert!(switch.take().is_none(), "nothing asked of the session");
        // One already listed is still a switch.
        assert_eq!(switch.request("http://127.0.0.1:5/").unwrap(), "http://127.0.0.1:5");
    }
}
