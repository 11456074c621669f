//! The owner's "join a pool" control: the local API asks the pool session to
//! mine at another URL; the session picks the request up at its next step
//! (a running long-poll is cut short).

use std::sync::Mutex;

use tokio::sync::Notify;

use super::pool_client::{PoolCa, PoolClient};
use crate::MinerError;

#[derive(Default)]
pub struct PoolSwitch {
    requested: Mutex<Option<PoolClient>>,
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
    /// refused. A later request replaces an earlier one not yet taken.
    pub fn request(&self, url: &str) -> Result<String, MinerError> {
        let parsed =
            reqwest::Url::parse(url.trim()).map_err(|e| MinerError::bad_input(format!("{url:?} is not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(MinerError::bad_input("a pool URL carries no user name or password"));
        }
        let pool = PoolClient::new(&parsed.origin().ascii_serialization(), self.ca.as_ref())?;
        let url = pool.url.clone();
        *self.requested.lock().expect("pool switch lock") = Some(pool);
        self.notify.notify_one();
        Ok(url)
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
}
