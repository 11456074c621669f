//! The owner's "join a pool" control: the local API asks the pool session to
//! mine at another URL; the session picks the request up at its next step
//! (a running long-poll is cut short).

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

/// A request not yet taken, and the failover list's URLs in order (the
/// session's, kept in step: a request taken is listed in the same step as
/// it is handed over, so a new pool past the limit is refused, never
/// answered and dropped).
#[derive(Default)]
struct SwitchState {
    requested: Option<PoolClient>,
    listed: Vec<String>,
}

#[derive(Default)]
pub struct PoolSwitch {
    state: Mutex<SwitchState>,
    pub(crate) notify: Notify,
    /// The miner's `--pool-ca`: a pool switched to is trusted as the configured ones are.
    ca: Option<PoolCa>,
}

impl PoolSwitch {
    pub fn new(ca: Option<PoolCa>) -> Self {
        PoolSwitch { ca, ..PoolSwitch::default() }
    }

    /// Checks `url` and asks the session to make it the primary pool (added
    /// to the failover list when new). Its query and fragment are dropped (a
    /// URL copied from a dashboard's address bar carries `#/wallet`); its
    /// path is kept, as for a configured pool (a balancer's route to one
    /// pool of several); credentials in it are
    /// refused, and so is a new pool once the list holds `MAX_POOLS`. A
    /// later request replaces an earlier one not yet taken.
    pub fn request(&self, url: &str) -> Result<String, PoolSwitchError> {
        let mut parsed =
            reqwest::Url::parse(url.trim()).map_err(|e| MinerError::bad_input(format!("{url:?} is not a URL: {e}")))?;
        parsed.set_query(None);
        parsed.set_fragment(None);
        let pool = PoolClient::new(parsed.as_str(), self.ca.as_ref())?;
        let url = pool.url.clone();
        let mut state = self.state.lock().expect("pool switch lock");
        if state.listed.len() >= MAX_POOLS && !state.listed.contains(&url) {
            return Err(PoolSwitchError::ListFull);
        }
        state.requested = Some(pool);
        drop(state);
        self.notify.notify_one();
        Ok(url)
    }

    /// The session's failover list as it starts (the configured pools).
    pub(crate) fn set_listed(&self, urls: Vec<String>) {
        self.state.lock().expect("pool switch lock").listed = urls;
    }

    /// The request not yet taken, listed (when new) as the session will
    /// list it.
    pub(crate) fn take(&self) -> Option<PoolClient> {
        let mut state = self.state.lock().expect("pool switch lock");
        let pool = state.requested.take()?;
        if !state.listed.contains(&pool.url) && state.listed.len() < MAX_POOLS {
            state.listed.push(pool.url.clone());
        }
        Some(pool)
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
    fn a_configured_pool_however_typed_is_the_pool_switched_to() {
        let configured = PoolClient::new("http://Pool.Example:80/", None).unwrap();
        assert_eq!(configured.url, "http://pool.example");
        // A path is part of the pool (a balancer's route), kept.
        assert_eq!(PoolClient::new("https://lb.example/pool-a/", None).unwrap().url, "https://lb.example/pool-a");
        let switch = PoolSwitch::default();
        switch.set_listed(vec![configured.url.clone(); MAX_POOLS]);
        assert_eq!(switch.request("http://POOL.example/#/wallet").unwrap(), "http://pool.example");
    }

    #[test]
    fn a_pool_behind_a_balancers_route_is_that_route() {
        let switch = PoolSwitch::default();
        assert_eq!(switch.request("https://lb.example/pool-a/#/wallet").unwrap(), "https://lb.example/pool-a");
        assert_eq!(switch.request("https://lb.example/pool-a?from=page").unwrap(), "https://lb.example/pool-a");
        assert_eq!(switch.take().map(|p| p.url).as_deref(), Some("https://lb.example/pool-a"));
    }

    #[test]
    fn a_new_pool_is_refused_once_the_list_is_full() {
        let switch = PoolSwitch::default();
        // Configured pools count as listed, a repeated one twice (as the
        // session lists them).
        let mut configured: Vec<String> = (1..MAX_POOLS).map(|port| format!("http://127.0.0.1:{port}")).collect();
        configured[1] = configured[0].clone();
        switch.set_listed(configured);
        // One place left: taken by the first new pool once handed over.
        assert_eq!(switch.request("http://127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000");
        assert_eq!(switch.take().map(|p| p.url), Some("http://127.0.0.1:9000".to_string()));
        assert!(matches!(switch.request("http://127.0.0.1:9999"), Err(PoolSwitchError::ListFull)));
        assert!(switch.take().is_none(), "nothing asked of the session");
        // One already listed is still a switch.
        assert_eq!(switch.request("http://127.0.0.1:5/").unwrap(), "http://127.0.0.1:5");
        assert_eq!(switch.request("http://127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000");
    }
}
