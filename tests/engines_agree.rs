//! Every engine the workspace has finds the vectors' digests: the `visionx`
//! engines directly, and the miner's CPU backend through the job/search
//! interface it mines with.

use std::sync::{Arc, Mutex};

use vision_miner::backend::{CpuBackend, CpuConfig};
use visionx::vectors;
use visionx::{EngineKind, Job, NonceRange, PowEngine, ReferenceEngine, SearchControl, Target};

#[test]
fn cpu_backend_finds_every_vector_nonce_with_its_digest() {
    // Every engine this CPU runs; in CI that includes AVX2 and AVX-512
    // (visionx's own tests insist on it).
    for engine in EngineKind::ALL.into_iter().filter(|e| e.is_available()) {
        let backend = CpuBackend::new(CpuConfig { threads: Some(2), engine }).unwrap();
        let mut reference = ReferenceEngine::new();
        for v in vectors::hash_vectors() {
            if engine == EngineKind::Reference && v.is_consensus() {
                continue; // covered by the visionx vector tests; slow here
            }
            // Ranges are half-open, so u64::MAX (one vector's nonce) is never
            // mined. 23 nonces: a SIMD engine hashes the first 16 (the
            // vector's nonce among them) as one group, the rest on the scalar path.
            let Some(end) = v.nonce.checked_add(15) else { continue };
            let input = Arc::new(v.input().unwrap());
            // A target the vector's digest meets exactly (the tie passes).
            let job = Job {
                input: input.clone(),
                target: Target(v.expected().top()),
                nonces: NonceRange::new(v.nonce.saturating_sub(8), end),
            };
            let found = Mutex::new(Vec::new());
            let end = backend.search(&job, &SearchControl::new(), &|f| found.lock().unwrap().push(f));
            assert_eq!(end.hashes, job.nonces.len());
            let found = found.into_inner().unwrap();
            assert!(
                found.iter().any(|f| f.nonce == v.nonce && f.digest == v.expected()),
                "{engine}: vector nonce {} not found in {found:?}",
                v.nonce
            );
            for f in found {
                assert_eq!(reference.hash(&input, f.nonce), f.digest, "{engine}: reported digest is wrong");
                assert!(job.target.is_met_by(&f.digest));
            }
        }
    }
}
