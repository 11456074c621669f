//! Reading the shares of a window out of the ledger, page by page: the last
//! N units of difficulty before a position (PPLNS) or a round (PROP).

use super::{RewardError, Rewards};
use crate::storage::ShareRecord;

/// Shares read from the ledger per page.
const PAGE: usize = 4096;

impl Rewards {
    /// Shares at positions <= `last`, newest first, until their difficulty
    /// reaches `target` (the crossing share included) or the ledger ends.
    pub(super) async fn pplns_shares(&self, last: u64, target: u128) -> Result<Vec<(u64, ShareRecord)>, RewardError> {
        let mut shares = Vec::new();
        let (mut sum, mut next) = (0u128, Some(last));
        while let Some(from) = next.filter(|_| sum < target) {
            let page = self.store.shares_back_from(from, PAGE).await?;
            next = match page.last() {
                Some((p, _)) if page.len() == PAGE => p.checked_sub(1),
                _ => None,
            };
            for (position, share) in page {
                sum += u128::from(share.share_difficulty);
                shares.push((position, share));
                if sum >= target {
                    break;
                }
            }
        }
        Ok(shares)
    }

    /// Shares at positions `first..=last`, oldest first.
    pub(super) async fn round_shares(&self, first: u64, last: u64) -> Result<Vec<(u64, ShareRecord)>, RewardError> {
        let mut shares = Vec::new();
        let mut from = first;
        while from <= last {
            let page = self.store.shares_from(from, PAGE).await?;
            let full = page.len() == PAGE;
            from = page.last().map_or(from, |(p, _)| p + 1);
            shares.extend(page.into_iter().filter(|(p, _)| *p <= last));
            if !full {
                break;
            }
        }
        Ok(shares)
    }
}
