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

    /// Blocks at `timestamps`, the `i`-th of difficulty `difficulties[i]`.
    fn chain(timestamps: &[u64], difficulties: &[u64]) -> Vec<ChainBlock> {
        timestamps.iter().zip(difficulties).enumerate().map(|(h, (&t, &d))| block(h as u64, t, d)).collect()
    }

    proptest! {
        /// Solve times are clamped to 1..6 targets, so whatever the
        /// timestamps (out of order, far apart) the next difficulty lies
        /// between a sixth of the window's least and the target times its
        /// greatest.
        #[test]
        fn lwma_stays_within_what_its_clamps_allow(
            timestamps in proptest::collection::vec(0u64..u64::MAX / 2, 2..50),
            difficulties in proptest::collection::vec(1u64..u64::MAX, 50),
            target in 1u64..100_000,
        ) {
            let next = lwma(&chain(&timestamps, &difficulties), target, 1);
            // (Each step's difficulty is its later block's.)
            let window = &difficulties[1..timestamps.len()];
            let (least, most) = (*window.iter().min().unwrap(), *window.iter().max().unwrap());
            prop_assert!(next >= (least / 6).max(1), "{next} below {least} / 6");
            let ceiling = (u128::from(most) * u128::from(target)).min(u128::from(u64::MAX));
            prop_assert!(u128::from(next) <= ceiling, "{next} above {most} x {target}");
        }

        /// Faster blocks never lower the next difficulty.
        #[test]
        fn faster_blocks_never_lower_it(
            gaps in proptest::collection::vec(0u64..1_000_000, 1..50),
            difficulty in 1u64..1 << 50,
            target in 1u64..100_000,
        ) {
            let at = |gaps: &[u64]| -> Vec<u64> {
                std::iter::once(1000).chain(gaps.iter().scan(1000, |t, g| { *t += g; Some(*t) })).collect()
            };
            let faster: Vec<u64> = gaps.iter().map(|g| g / 2).collect();
            let same = vec![difficulty; gaps.len() + 1];
            let (before, after) = (lwma(&chain(&at(&gaps), &same), target, 1), lwma(&chain(&at(&faster), &same), target, 1));
            prop_assert!(after >= before, "{after} < {before}");
        }

        /// Blocks exactly on time keep the difficulty, whatever it is.
        #[test]
        fn blocks_on_time_keep_their_difficulty(n in 1u64..60, difficulty in 1u64..u64::MAX / 2, target in 1u64..100_000) {
            let blocks: Vec<ChainBlock> = (0..=n).map(|h| block(h, 1000 + h * target, difficulty)).collect();
            prop_assert_eq!(lwma(&blocks, target, 1), difficulty);
        }
    }
}
