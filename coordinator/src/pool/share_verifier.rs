//! Share verification: recompute, never trust.
//!
//! A batch of submitted shares goes through the `visionx` fast engine's
//! lockstep path ([`visionx::FastEngine::hash_many`]), which verifies several
//! shares at close to the mining rate instead of one latency-bound hash at a
//! time. Each share is judged at the difficulty of the job it answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use visionx::{Digest, FastEngine, PowInput};

/// A submitted share, as far as verification is concerned.
#[derive(Debug, Clone)]
pub(crate) struct ShareClaim {
    pub(crate) input: Arc<PowInput>,
    pub(crate) nonce: u64,
    /// The digest the worker says it found.
    pub(crate) claimed_digest: Digest,
    /// The share difficulty of the job the share answers.
    pub(crate) share_difficulty: u64,
    /// The network difficulty of that job.
    pub(crate) network_difficulty: u64,
    /// Set when the submitting session is banned: a share still queued then
    /// is skipped, not hashed.
    pub(crate) banned: Arc<AtomicBool>,
}

/// What recomputation says of a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Valid; `is_block` when it also meets the network difficulty.
    Accepted { digest: Digest, is_block: bool },
    /// The recomputed digest differs from the claimed one.
    BadDigest,
    /// The digest is right but does not meet the share difficulty.
    LowDifficulty,
    /// Not hashed: its session was banned while it waited.
    Skipped,
}

/// Recomputes a batch of shares and judges each one (skipping those of
/// banned sessions). Verdicts come back in the order of `claims`, with the
/// number of hashes computed. Blocking and CPU-bound: call it off any async
/// runtime.
pub(crate) fn verify_batch(engine: &mut FastEngine, claims: &[ShareClaim]) -> (Vec<Verdict>, usize) {
    // Read each flag once, so the digests line up with the claims hashed.
    let skipped: Vec<bool> = claims.iter().map(|c| c.banned.load(Ordering::Relaxed)).collect();
    let items: Vec<(&PowInput, u64)> =
        claims.iter().zip(&skipped).filter(|(_, skip)| !**skip).map(|(c, _)| (&*c.input, c.nonce)).collect();
    let mut digests = engine.hash_many(&items).into_iter();
    let verdicts = claims
        .iter()
        .zip(&skipped)
        .map(|(claim, &skip)| {
            if skip {
                return Verdict::Skipped;
            }
            let digest = digests.next().expect("one digest per live claim");
            if digest != claim.claimed_digest {
                Verdict::BadDigest
            } else if !digest.meets_difficulty(claim.share_difficulty.min(claim.network_difficulty)) {
                // (A block always counts, even on a job whose share
                // difficulty was above the network's: one stored before
                // jobs were capped.)
                Verdict::LowDifficulty
            } else {
                Verdict::Accepted { digest, is_block: digest.meets_difficulty(claim.network_difficulty) }
            }
        })
        .collect();
    (verdicts, items.len())
}

#[cfg(test)]
mod tests {
    use visionx::vectors;

    use super::*;

    #[test]
    fn vectors_are_judged_by_recomputation() {
        let mut engine = FastEngine::new();
        let mut claims = Vec::new();
        let mut expected = Vec::new();
        for v in vectors::hash_vectors() {
            let input = Arc::new(v.input().unwrap());
            let digest = v.expected();
            let top = digest.top();
            // Honest, at a difficulty it meets; network difficulty 1 makes it a block.
            claims.push(ShareClaim {
                input: input.clone(),
                nonce: v.nonce,
                claimed_digest: digest,
                share_difficulty: 1,
                network_difficulty: 1,
                banned: Arc::default(),
            });
            expected.push(Verdict::Accepted { digest, is_block: true });
            // A claimed digest one bit off.
            let mut forged = digest;
            forged.0[31] ^= 1;
            claims.push(ShareClaim {
                input: input.clone(),
                nonce: v.nonce,
                claimed_digest: forged,
                share_difficulty: 1,
                network_difficulty: 1,
                banned: Arc::default(),
            });
            expected.push(Verdict::BadDigest);
            // The right digest at a share difficulty it misses (unless its top is tiny).
            let too_hard = u64::MAX / top.max(1) + 1;
            if top > 0 && !digest.meets_difficulty(too_hard) {
                claims.push(ShareClaim {
                    input: input.clone(),
                    nonce: v.nonce,
                    claimed_digest: digest,
                    share_difficulty: too_hard,
                    network_difficulty: too_hard,
                    banned: Arc::default(),
                });
                expected.push(Verdict::LowDifficulty);
                // Missing a share difficulty above the network's, but a block:
                // a block is never refused for its share target.
                claims.push(ShareClaim {
                    input: input.clone(),
                    nonce: v.nonce,
                    claimed_digest: digest,
                    share_difficulty: too_hard,
                    network_difficulty: 1,
                    banned: Arc::default(),
                });
                expected.push(Verdict::Accepted { digest, is_block: true });
            }
        }
        let hashed = claims.len();
        assert_eq!(verify_batch(&mut engine, &claims), (expected, hashed));
    }

    #[test]
    fn claims_of_banned_sessions_are_skipped_unhashed() {
        let v = &vectors::hash_vectors()[0];
        let claim = |banned: bool| ShareClaim {
            input: Arc::new(v.input().unwrap()),
            nonce: v.nonce,
            claimed_digest: v.expected(),
            share_difficulty: 1,
            network_difficulty: u64::MAX,
            banned: Arc::new(AtomicBool::new(banned)),
        };
        let (verdicts, hashed) = verify_batch(&mut FastEngine::new(), &[claim(true), claim(false), claim(true)]);
        assert_eq!(hashed, 1);
        assert_eq!(verdicts[0], Verdict::Skipped);
        assert!(matches!(verdicts[1], Verdict::Accepted { is_block: false, .. }));
        assert_eq!(verdicts[2], Verdict::Skipped);
    }
}
