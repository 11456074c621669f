//! What the multi-process pool tests share: simulated workers that mine
//! real VisionX shares over HTTP, and the audit of a pool's books after a
//! run (from its store and the chain), including an independent PPLNS
//! computation from the ledger.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vision_coordinator::chain::devnet::DevnetChain;
use vision_coordinator::storage::{BlockStatus, PoolStore, RewardStatus};
use visionx::{FastEngine, PowEngine};

use crate::job_input;

/// Acknowledged shares: (job id, nonce).
pub type Acked = Arc<Mutex<Vec<(String, u64)>>>;

/// One simulated worker: registers (again after a 401), mines honestly,
/// records every share a pool acknowledged, and rides out kills. Each
/// request goes to the next of `urls` in turn (several coordinators of one
/// pool, no sticky routing).
pub async fn sim_worker(n: usize, urls: Vec<String>, acked: Acked, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client");
    let mut engine = FastEngine::new();
    let mut token: Option<String> = None;
    // Where mining of each job got to: with several coordinators, jobs of
    // different ones come in turn, and each must go on where it stopped.
    let mut cursors: HashMap<String, u64> = HashMap::new();
    let mut turn = n;
    let mut next_url = move || {
        turn += 1;
        urls[turn % urls.len()].clone()
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(session) = token.clone() else {
            let body = json!({"worker_id": format!("sim{n}"), "wallet_address": format!("land1sim{}", n % 4)});
            match http.post(format!("{}/pool/register", next_url())).json(&body).send().await {
                Ok(r) if r.status() == 200 => {
                    token = r.json::<Value>().await.ok().and_then(|v| v["worker_token"].as_str().map(str::to_string));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            continue;
        };
        let job = match http.get(format!("{}/pool/job", next_url())).bearer_auth(&session).send().await {
            Ok(r) if r.status() == 200 => r.json::<Value>().await.expect("a job"),
            Ok(r) if r.status() == 401 => {
                token = None; // its session was not yet durable when the pool died
                continue;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = job["job_id"].as_str().expect("job id").to_string();
        let input = job_input(&job);
        let start = cursors.get(&id).copied().unwrap_or_else(|| job["nonce_start"].as_u64().expect("nonce_start"));
        let end = job["nonce_end"].as_u64().expect("nonce_end").min(start + 16);
        cursors.insert(id.clone(), end);
        for nonce in start..end {
            let digest = engine.hash(&input, nonce);
            if !digest.meets_difficulty(job["share_difficulty"].as_u64().expect("share_difficulty")) {
                continue;
            }
            let body = json!({"job_id": id, "nonce": nonce, "digest": digest.to_hex()});
            let Ok(response) =
                http.post(format!("{}/pool/share", next_url())).bearer_auth(&session).json(&body).send().await
            else {
                break; // killed mid-request: not acknowledged
            };
            let Ok(answer) = response.json::<Value>().await else { break };
            if answer["accepted"] == true {
                acked.lock().expect("acked lock").push((id.clone(), nonce));
            }
            if answer["accepted"] != true || answer["block_status"].is_string() {
                break;
            }
        }
    }
}

/// The pool's reward rules, as an audit needs them.
#[derive(Debug, Clone)]
pub struct SplitRules {
    /// PPLNS's N as a multiple of the network difficulty.
    pub window_factor: u64,
    pub pool_fee_bps: u64,
    pub pool_fee_address: String,
}

/// PPLNS as the issue states it, written here from the ledger alone: the
/// last `window_factor` x difficulty units before and including the block's
/// share, the crossing share in part; fees floored; miners floored; dust to
/// the foundation.
pub fn independent_split(
    ledger: &BTreeMap<u64, (String, u64)>,
    position: u64,
    difficulty: u64,
    reward: u64,
    rules: &SplitRules,
) -> BTreeMap<String, u64> {
    let target = u128::from(difficulty) * u128::from(rules.window_factor);
    let mut weights: BTreeMap<String, u128> = BTreeMap::new();
    let mut sum = 0u128;
    for (_, (wallet, share_difficulty)) in ledger.range(..=position).rev() {
        if sum >= target {
            break;
        }
        let counted = u128::from(*share_difficulty).min(target - sum);
        sum += counted;
        *weights.entry(wallet.clone()).or_default() += counted;
    }
    let foundation = reward / 100;
    let pool_fee = reward * rules.pool_fee_bps / 10_000;
    let miners = reward - foundation - pool_fee;
    let mut split = BTreeMap::new();
    let mut paid = 0;
    for (wallet, weight) in &weights {
        let amount = (u128::from(miners) * weight / sum) as u64;
        paid += amount;
        *split.entry(wallet.clone()).or_default() += amount;
    }
    *split.entry("vision-foundation".to_string()).or_default() += foundation + (miners - paid);
    *split.entry(rules.pool_fee_address.clone()).or_default() += pool_fee;
    split.retain(|_, amount| *amount > 0);
    split
}

/// What [`audit_books`] counted.
#[derive(Debug, Clone, Default)]
pub struct BooksAudit {
    pub ledger_shares: usize,
    pub pool_blocks: usize,
    pub credited_blocks: usize,
    pub paid: u64,
}

/// Audits a pool's books after a run, panicking at the first fault:
/// - every share in `acked` is in the ledger, exactly once (nothing may have
///   been compacted);
/// - every chain block paying `pool_address` has its found-block record;
/// - every credited block's split equals [`independent_split`], each
///   wallet's balance parts add up to what the splits owe it (a block
///   credited twice would show here), and the chain holds exactly what the
///   pool says it paid (a payout sent twice would show here).
pub async fn audit_books(
    store: &dyn PoolStore,
    chain: &DevnetChain,
    acked: &[(String, u64)],
    pool_address: &str,
    rules: &SplitRules,
) -> BooksAudit {
    let ledger_rows = store.shares_from(0, usize::MAX).await.expect("ledger");
    assert_eq!(store.ledger_floor().await.expect("floor"), 0, "nothing compacted: raise the window factor");
    let mut in_ledger: HashMap<(String, u64), usize> = HashMap::new();
    for (_, share) in &ledger_rows {
        *in_ledger.entry((share.job_id.clone(), share.nonce)).or_default() += 1;
    }
    assert!(in_ledger.values().all(|n| *n == 1), "a share credited twice");
    for share in acked {
        assert_eq!(in_ledger.get(share), Some(&1), "an acknowledged share is missing: {share:?}");
    }

    let found = store.found_blocks().await.expect("found blocks");
    let recorded: HashSet<(u64, String)> = found.iter().map(|b| (b.height, b.hash.clone())).collect();
    let tip = chain.tip().expect("chain tip").expect("blocks were found").height;
    let mut pool_blocks = 0;
    for height in 0..=tip {
        let block = chain.block(height).expect("chain block");
        if block.miner == pool_address {
            pool_blocks += 1;
            assert!(recorded.contains(&(height, block.hash.clone())), "chain block {height} has no record");
        }
    }

    let ledger: BTreeMap<u64, (String, u64)> =
        ledger_rows.iter().map(|(p, s)| (*p, (s.wallet_address.clone(), s.share_difficulty))).collect();
    let by_key: HashMap<(u64, String), _> = found.iter().map(|b| ((b.height, b.hash.clone()), b)).collect();
    let mut owed: BTreeMap<String, u64> = BTreeMap::new();
    let mut credited_blocks = 0;
    for record in store.block_rewards().await.expect("block rewards") {
        let (Some(credit), true) = (&record.credit, record.status != RewardStatus::Orphaned) else { continue };
        credited_blocks += 1;
        let block = by_key[&(record.height, record.hash.clone())];
        assert_eq!(block.status, BlockStatus::Accepted);
        let expected = independent_split(
            &ledger,
            block.share_position.expect("share position"),
            block.submission.header.difficulty,
            chain.block(record.height).expect("credited block").reward,
            rules,
        );
        let mut actual: BTreeMap<String, u64> = BTreeMap::new();
        for entry in &credit.split.entries {
            *actual.entry(entry.recipient.clone()).or_default() += entry.amount;
        }
        assert_eq!(actual, expected, "block {}: the pool's split against the independent one", record.height);
        for (wallet, amount) in actual {
            *owed.entry(wallet).or_default() += amount;
        }
    }
    let mut paid = 0;
    for (wallet, amount) in &owed {
        let b = store.balance(wallet).await.expect("balance").unwrap_or_default();
        assert_eq!(b.immature + b.confirmed + b.sending + b.paid + b.set_aside, *amount, "{wallet}: {b:?}");
        assert_eq!(
            chain.balance(wallet).expect("chain balance").spendable,
            b.paid,
            "{wallet}: the chain paid exactly what the pool says"
        );
        paid += b.paid;
    }
    assert!(owed.keys().any(|w| w.starts_with("land1sim")), "the simulated workers earned");
    BooksAudit { ledger_shares: ledger_rows.len(), pool_blocks, credited_blocks, paid }
}
