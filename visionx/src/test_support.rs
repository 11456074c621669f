//! Shared helpers for the engines' property tests.

use proptest::prelude::*;

use crate::{Params, PowInput};

/// Small params (so a hash costs little) with every knob varied: dataset and
/// scratchpad up to the given sizes, 1 to `max_iters` iterations, three or
/// four reads, no writes or a write every 1-5 iterations.
pub(crate) fn small_params(max_dataset_mb: u32, max_scratch_mb: u32, max_iters: u32) -> impl Strategy<Value = Params> {
    (0..=max_dataset_mb, 0..=max_scratch_mb, 1..=max_iters, 0u32..=8, 0u32..=5, 1u64..=64).prop_map(
        |(dataset_mb, scratch_mb, mix_iters, reads_per_iter, write_every, epoch_blocks)| Params {
            dataset_mb,
            scratch_mb,
            mix_iters,
            reads_per_iter,
            write_every,
            epoch_blocks,
        },
    )
}

pub(crate) fn input(params: Params, seed: [u8; 32], epoch: u64, header: Vec<u8>) -> PowInput {
    PowInput::new(seed, epoch, header, params).unwrap()
}
