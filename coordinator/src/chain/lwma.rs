//! The devnet's difficulty retarget: LWMA (linearly weighted moving
//! average) of solve times over a window of blocks, towards the target
//! block time. Pure: blocks in, difficulty out.

use super::ChainBlock;

/// LWMA difficulty from `blocks` (oldest first): the next difficulty is the
/// window's summed difficulty times the target time, over twice the
/// linearly weighted sum of solve times (each clamped to 1..6 targets).
pub fn lwma(blocks: &[ChainBlock], target_secs: u64, start: u64) -> u64 {
    if blocks.len() < 2 {
        return blocks.last().map_or(start, |b| b.difficulty).max(1);
    }
    let n = (blocks.len() - 1) as u128;
    let target = u128::from(target_secs.max(1));
    let mut weighted: u128 = 0;
    let mut sum_difficulty: u128 = 0;
    for (i, pair) in blocks.windows(2).enumerate() {
        let solve = u128::from(pair[1].timestamp.saturating_sub(pair[0].timestamp)).clamp(1, 6 * target);
        weighted += (i as u128 + 1) * solve;
        sum_difficulty += u128::from(pair[1].difficulty);
    }
    let next = sum_difficulty * target * (n + 1) / (2 * weighted);
    u64::try_from(next).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn block(height: u64, timestamp: u64, difficulty: u64) -> ChainBlock {
        ChainBlock {
            height,
            hash: String::new(),
            parent_hash: String::new(),
            timestamp,
            difficulty,
            tx_root: String::new(),
            miner: "m".into(),
            nonce: 0,
            reward: 0,
        }
    }

    #[test]
    fn lwma_keeps_difficulty_when_blocks_are_on_time() {
        let blocks: Vec<ChainBlock> = (0..46).map(|h| block(h, 1000 + h * 30, 5000)).collect();
        assert_eq!(lwma(&blocks, 30, 1), 5000);
    }

    #[test]
    fn lwma_moves_towards_the_target_time() {
        let fast: Vec<ChainBlock> = (0..46).map(|h| block(h, 1000 + h * 10, 5000)).collect();
        assert!(lwma(&fast, 30, 1) > 5000 * 2);
        let slow: Vec<ChainBlock> = (0..46).map(|h| block(h, 1000 + h * 90, 5000)).collect();
        assert!(lwma(&slow, 30, 1) < 5000 / 2);
        assert_eq!(lwma(&[], 30, 77), 77);
        assert_eq!(lwma(&[block(0, 5, 40)], 30, 77), 40);
    }

    proptest! {
        #[test]
        fn lwma_never_returns_zero_or_panics(
            times in proptest::collection::vec(0u64..u64::MAX / 2, 0..50),
            difficulty in 1u64..u64::MAX,
            target in 0u64..100_000,
        ) {
            let blocks: Vec<ChainBlock> = times.iter().enumerate().map(|(h, &t)| block(h as u64, t, difficulty)).collect();
            prop_assert!(lwma(&blocks, target, 1) >= 1);
        }
    }
}
