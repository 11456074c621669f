//! Share verification: recompute, never trust.
//!
//! A batch of submitted shares goes through the `visionx` fast engine's
//! lockstep path ([`visionx::FastEngine::hash_many`]), which verifies several
//! shares at close to the mining rate instead of one latency-bound hash at a
//! time. Each share is judged at the difficulty of the job it answers.

use std::sync::Arc;

use visionx::{Digest, FastEngine, PowInput};

/// A submitted share, as far as verification is concerned.
#[derive(Debug, Clone)]
pub struct ShareClaim {
    pub input: Arc<PowInput>,
    pub nonce: u64,
    /// The digest the worker says it found.
    pub claimed_digest: Digest,
    /// The share difficulty of the job the share answers.
    pub share_difficulty: u64,
    /// The network difficulty of that job.
    pub network_difficulty: u64,
}

/// What recomputation says of a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid; `is_block` when it also meets the network difficulty.
    Accepted { digest: Digest, is_block: bool },
    /// The recomputed digest differs from the claimed one.
    BadDigest,
    /// The digest is right but does not meet the share difficulty.
    LowDifficulty,
}

/// Recomputes a batch of shares and judges each one. Verdicts come back in
/// the order of `claims`. Blocking and CPU-bound: call it off any async runtime.
pub fn verify_batch(engine: &mut FastEngine, claims: &[ShareClaim]) -> Vec<Verdict> {
    let items: Vec<(&PowInput, u64)> = claims.iter().map(|c| (&*c.input, c.nonce)).collect();
    let digests = engine.hash_many(&items);
    claims
        .iter()
        .zip(digests)
        .map(|(claim, digest)| {
            if digest != claim.claimed_digest {
                Verdict::BadDigest
            } else if !digest.meets_difficulty(claim.share_difficulty) {
                Verdict::LowDifficulty
            } else {
                Verdict::Accepted { digest, is_block: digest.meets_difficulty(claim.network_difficulty) }
            }
        })
        .collect()
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
            });
            expected.push(Verdict::BadDigest);
            // The right digest at a share difficulty it misses (unless its top is tiny).
            let too_hard = u64::MAX / top.max(1) + 1;
            if top > 0 && !digest.meets_difficulty(too_hard) {
                claims.push(ShareClaim {
                    input,
                    nonce: v.nonce,
                    claimed_digest: digest,
                    share_difficulty: too_hard,
                    network_difficulty: too_hard,
                });
                expected.push(Verdict::LowDifficulty);
            }
        }
        assert_eq!(verify_batch(&mut engine, &claims), expected);
    }
}
