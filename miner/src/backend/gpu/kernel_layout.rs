//! The kernel's buffer layout as the host writes it: the uniform `Config`
//! block (mirrored in Rust as `KernelConfig`, pinned to the WGSL by a
//! test), the header words, and the sizes the kernel is built around.

use bytemuck::{Pod, Zeroable};
use visionx::PowInput;

/// Invocations per workgroup. 128 was fastest on an NVIDIA H200 in the
/// prototype (64 was 20% slower); lavapipe runs any size.
pub const WORKGROUP_SIZE: u32 = 128;
/// Upper bound on found entries a segment's found list holds (more are
/// counted by the kernel, not stored).
pub const MAX_FOUND_PER_BATCH: u32 = 16_384;
/// Bytes reserved for the header words (fits pow messages of ~4,000 bytes).
pub(crate) const HEADER_BUFFER_BYTES: u64 = 8192;
/// The kernel's uniform block; field order and sizes match `Config` in visionx.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct KernelConfig {
    pub(crate) dataset_seed: [u32; 2],
    pub(crate) nonce_base: [u32; 2],
    pub(crate) target_top: [u32; 2],
    pub(crate) iter_begin: u32,
    pub(crate) iter_end: u32,
    pub(crate) count: u32,
    pub(crate) first_hash: u32,
    pub(crate) header_words8: u32,
    pub(crate) header_words16: u32,
    pub(crate) found_capacity: u32,
    /// Padding to the block's 8-byte alignment (WGSL rounds the struct up).
    pub(crate) reserved: u32,
}

/// What a pipeline is specialised for: the kernel's override constants
/// (params and table shape), fixed for every dispatch through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KernelSpec {
    pub(crate) dmask: u32,
    pub(crate) smask: u32,
    pub(crate) slots: u32,
    pub(crate) slots_pmask: u32,
    pub(crate) slots_shift: u32,
    pub(crate) four_reads: bool,
    pub(crate) write_every: u32,
    pub(crate) mix_iters: u32,
    pub(crate) filter_mask: u32,
}

impl KernelSpec {
    /// The values of the WGSL `override` declarations of the same names.
    pub(crate) fn constants(&self) -> [(&'static str, f64); 9] {
        [
            ("DMASK", f64::from(self.dmask)),
            ("SMASK", f64::from(self.smask)),
            ("SLOTS", f64::from(self.slots)),
            ("SLOTS_PMASK", f64::from(self.slots_pmask)),
            ("SLOTS_SHIFT", f64::from(self.slots_shift)),
            ("FOUR_READS", if self.four_reads { 1.0 } else { 0.0 }),
            ("WRITE_EVERY", f64::from(self.write_every)),
            ("MIX_ITERS", f64::from(self.mix_iters)),
            ("FILTER_MASK", f64::from(self.filter_mask)),
        ]
    }
}

pub(crate) fn split_u64(v: u64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

/// The header as the kernel reads it: `visionx`'s 8-byte words, then its
/// 16-byte chunks as word pairs, each word as (lo, hi) u32s.
pub(crate) fn header_words(input: &PowInput) -> Vec<[u32; 2]> {
    let words8 = input.header_words8().iter().map(|&w| split_u64(w));
    let words16 = input.header_words16().iter().flat_map(|&(a, b)| [split_u64(a), split_u64(b)]);
    words8.chain(words16).collect()
}

#[cfg(test)]
mod tests {
    use visionx::Params;

    use super::*;

    /// The Rust mirror of the WGSL `Config` struct: its fields, in order,
    /// with their sizes. A field added, removed, renamed, reordered or
    /// resized on either side fails here instead of on a GPU.
    #[test]
    fn kernel_config_mirrors_the_wgsl_struct() {
        let wgsl = include_str!("../../../../shaders/visionx.wgsl");
        let body = wgsl.split("struct Config {").nth(1).and_then(|b| b.split('}').next()).expect("struct Config");
        let fields: Vec<(String, usize)> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| {
                let (name, ty) = l.trim_end_matches(',').split_once(':').expect("name: type");
                let size = match ty.trim() {
                    "u32" => 4,
                    "vec2<u32>" => 8,
                    other => panic!("unexpected WGSL type {other}"),
                };
                (name.trim().to_string(), size)
            })
            .collect();
        let mirror = [
            ("dataset_seed", 8),
            ("nonce_base", 8),
            ("target_top", 8),
            ("iter_begin", 4),
            ("iter_end", 4),
            ("count", 4),
            ("first_hash", 4),
            ("header_words8", 4),
            ("header_words16", 4),
            ("found_capacity", 4),
            ("reserved", 4),
        ];
        let mirror: Vec<(String, usize)> = mirror.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(fields, mirror, "the WGSL Config and this list disagree");
        assert_eq!(std::mem::size_of::<KernelConfig>(), mirror.iter().map(|(_, s)| s).sum::<usize>());
        // The Rust struct's own field order: write distinct values and read
        // the bytes back in the WGSL order.
        let config = KernelConfig {
            dataset_seed: [1, 2],
            nonce_base: [3, 4],
            target_top: [5, 6],
            iter_begin: 7,
            iter_end: 8,
            count: 9,
            first_hash: 10,
            header_words8: 11,
            header_words16: 12,
            found_capacity: 13,
            reserved: 14,
        };
        let words: &[u32] = bytemuck::cast_slice(std::slice::from_ref(&config));
        assert_eq!(words, (1..=14).collect::<Vec<u32>>().as_slice());
        // WGSL rounds a struct up to its alignment (8, for the vec2 fields):
        // a Rust mirror of another size fails the binding's minimum size.
        assert_eq!(std::mem::size_of::<KernelConfig>() % 8, 0);
    }

    /// Every override the kernel declares is set by the host, by name.
    #[test]
    fn kernel_spec_sets_every_override_of_the_wgsl() {
        let wgsl = include_str!("../../../../shaders/visionx.wgsl");
        let mut declared: Vec<&str> = wgsl
            .lines()
            .filter_map(|l| l.trim().strip_prefix("override "))
            .map(|l| l.split(':').next().unwrap().trim())
            .filter(|name| !["WORKGROUP_SIZE", "USE_FILTER"].contains(name))
            .collect();
        declared.sort_unstable();
        let spec = KernelSpec {
            dmask: 1,
            smask: 2,
            slots: 3,
            slots_pmask: 4,
            slots_shift: 5,
            four_reads: true,
            write_every: 6,
            mix_iters: 7,
            filter_mask: u32::MAX,
        };
        let mut set: Vec<&str> = spec.constants().iter().map(|(name, _)| *name).collect();
        set.sort_unstable();
        assert_eq!(declared, set);
        // Every u32 survives the f64 the pipeline takes.
        assert!(spec.constants().iter().any(|(_, v)| *v == f64::from(u32::MAX)));
    }

    /// Any job the client takes fits the kernel's header buffer.
    #[test]
    fn the_longest_message_a_job_may_carry_fits_the_header_buffer() {
        let longest = crate::client::work_dispatch::MAX_POW_MESSAGE_BYTES;
        let input = PowInput::new([0; 32], 0, vec![7; longest], Params::CONSENSUS).unwrap();
        assert!(header_words(&input).len() as u64 * 8 <= HEADER_BUFFER_BYTES);
    }

    #[test]
    fn header_words_follow_visionx() {
        let input = PowInput::new([0; 32], 0, (1..=20).collect(), Params::CONSENSUS).unwrap();
        let words = header_words(&input);
        // 3 eight-byte words, then 2 sixteen-byte chunks of 2 words.
        assert_eq!(words.len(), 3 + 4);
        assert_eq!(words[0], split_u64(0x0102030405060708));
        assert_eq!(words[2], split_u64(0x1112131400000000));
        assert_eq!(words[3], words[0]);
        assert_eq!(words[6], split_u64(0));
    }
}
