//! The GPU backend on a real adapter (in CI: Mesa lavapipe, a Vulkan
//! software adapter). Without an adapter these tests fail under `CI=true`
//! and are skipped, with a message, elsewhere.

use vision_miner::backend::gpu::{self, GpuDevice, ShaderVariant};
use visionx::vectors;

/// Opens the first adapter, or explains why there is none.
fn device(variant: ShaderVariant) -> Option<GpuDevice> {
    match gpu::open_device(None, Some(variant)) {
        Ok(device) => Some(device),
        Err(err) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true needs a GPU adapter (install mesa-vulkan-drivers): {err}")
        }
        Err(err) => {
            eprintln!("skipping: no usable GPU adapter ({err}); install mesa-vulkan-drivers");
            None
        }
    }
}

#[test]
fn every_hash_vector_on_both_shader_variants() {
    for variant in [ShaderVariant::Native, ShaderVariant::Emulated] {
        for v in vectors::hash_vectors() {
            let Some(gpu) = device(variant) else { return };
            let input = v.input().unwrap();
            let digests = gpu::hash_nonces(gpu, &input, &[v.nonce]).unwrap();
            assert_eq!(digests[0], v.expected(), "{variant}: {:?} nonce {}", v.params, v.nonce);
        }
    }
}
