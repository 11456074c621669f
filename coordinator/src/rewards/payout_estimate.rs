//! "If a block were found now": each worker's part of a block at the
//! current network difficulty and reward, for the stats.

use std::collections::{HashMap, HashSet};

use super::prop_rounds::{awaits_carry, waiting_weights};
use super::reward_split::{pplns_target, split_reward, PayoutScheme, RewardWindow, SplitKind};
use super::window_tally::WindowRule;
use super::{RewardError, Rewards};

impl Rewards {
    /// Base units per worker id a block found now would pay (by the
    /// configured scheme; SOLO pays only whoever finds it, so none), as the
    /// last rewards round computed them.
    pub fn estimated_payouts(&self) -> HashMap<String, u64> {
        self.estimates.lock().expect("estimates lock").clone()
    }

    /// Recomputes the estimates (reads a window of shares: the rewards task
    /// calls it after each round, never a request).
    /// Nothing is read again while the ledger, the template and the fee
    /// are as they were.
    pub async fn refresh_estimates(&self, template_id: &str, network_difficulty: u64, reward: u64, pool_fee_bps: u32) {
        let Ok(len) = self.store.ledger_len().await else { return };
        let basis = (len, template_id.to_string(), pool_fee_bps);
        if self.estimate_basis.lock().expect("estimates lock").as_ref() == Some(&basis) {
            return;
        }
        match self.estimate(network_difficulty, reward, pool_fee_bps).await {
            Ok(estimates) => {
                *self.estimates.lock().expect("estimates lock") = estimates;
                *self.estimate_basis.lock().expect("estimates lock") = Some(basis);
            }
            Err(err) => tracing::debug!("payout estimate failed: {err}"),
        }
    }

    async fn estimate(
        &self,
        network_difficulty: u64,
        reward: u64,
        pool_fee_bps: u32,
    ) -> Result<HashMap<String, u64>, RewardError> {
        if self.store.ledger_len().await? == 0 {
            return Ok(HashMap::new());
        }
        // PROP: the orphans' rounds the next block will also pay, which
        // take their part of it (keyed by wallet; worker ids, always
        // `wallet.rig`, never collide with a wallet).
        let mut carried: Vec<RewardWindow> = Vec::new();
        let rule = match self.config.scheme {
            PayoutScheme::Solo => return Ok(HashMap::new()),
            PayoutScheme::Pplns => {
                WindowRule::LastUnits(pplns_target(network_difficulty, self.config.pplns_window_factor))
            }
            PayoutScheme::Prop => {
                let open = self.open_blocks(None).await?;
                let round_start = open.last_round_end().map_or(0, |p| p + 1);
                let waiting = open.records.values().filter(|r| awaits_carry(r));
                carried = waiting.filter_map(waiting_weights).cloned().collect();
                WindowRule::From(round_start)
            }
        };
        // Keyed by worker id (the split is per wallet, the stats per
        // worker), updated by the shares since the last round.
        let mut window = {
            let mut tally = self.estimate_tally.lock().await;
            tally.fit(&*self.store, rule).await?;
            tally.reward_window(&*self.store).await?
        };
        let workers: HashSet<String> = window.weights.iter().map(|w| w.wallet.clone()).collect();
        for weights in &carried {
            window.absorb(weights);
        }
        let split = split_reward(reward, &self.fees(pool_fee_bps), &window);
        Ok(split
            .entries
            .into_iter()
            .filter(|e| e.kind == SplitKind::Miner && workers.contains(&e.recipient))
            .map(|e| (e.recipient, e.amount))
            .collect())
    }
}
