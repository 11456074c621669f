//! Assembles the WGSL source of the VisionX kernel for one 64-bit variant.
//!
//! The kernel (`shaders/visionx.wgsl`) is written once against a small
//! 64-bit word layer; `shaders/u64_native.wgsl` implements it with `u64`,
//! `shaders/u64_emulated.wgsl` with `vec2<u32>`. The constants are generated
//! here from one table so the two variants cannot disagree on a value. How
//! a hash's write table is probed is a layer after the kernel
//! ([`TableProbe`]): `shaders/table_slots.wgsl` or `shaders/table_groups.wgsl`.

use std::fmt;
use std::str::FromStr;

const KERNEL: &str = include_str!("../../../../shaders/visionx.wgsl");
const NATIVE_LAYER: &str = include_str!("../../../../shaders/u64_native.wgsl");
const EMULATED_LAYER: &str = include_str!("../../../../shaders/u64_emulated.wgsl");
const SLOTS_LAYER: &str = include_str!("../../../../shaders/table_slots.wgsl");
const GROUPS_LAYER: &str = include_str!("../../../../shaders/table_groups.wgsl");

/// The 64-bit constants of VisionX, by the names the kernel uses.
const CONSTANTS: [(&str, u64); 10] = [
    ("K_GAMMA", 0x9E37_79B9_7F4A_7C15),
    ("K_FMIX1", 0xBF58_476D_1CE4_E5B9),
    ("K_FMIX2", 0x94D0_49BB_1331_11EB),
    ("K_SCRATCH", 0xC2B2_AE3D_27D4_EB4F),
    ("K_DEADBEEF", 0xDEAD_BEEF_F00D_FACE),
    ("K_A0", 0x243F_6A88_85A3_08D3),
    ("K_B0", 0x1319_8A2E_0370_7344),
    ("K_CHUNK_A", 0x9E37_79B1_85EB_CA87),
    ("K_ACC", 0xD6E8_FEB8_6659_FD93),
    ("K_WRITE", 0xA24B_AED4_963E_E407),
];
/// `i * 0x9E3779B9` in the first read's address: a 32-bit constant used as a u64.
const K_ITER: u64 = 0x9E37_79B9;

/// How the kernel does 64-bit arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShaderVariant {
    /// Native `u64` (needs `Features::SHADER_INT64`).
    Native,
    /// `vec2<u32>` emulation: runs on every adapter.
    Emulated,
}

impl ShaderVariant {
    pub fn name(self) -> &'static str {
        match self {
            ShaderVariant::Native => "native",
            ShaderVariant::Emulated => "emulated",
        }
    }
}

impl fmt::Display for ShaderVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the kernel probes a hash's write table. Both give the same digests;
/// they differ in memory traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TableProbe {
    /// Slot by slot (linear probing): a dependent key load per slot. The
    /// default, measured on the H200 (docs/PERFORMANCE.md).
    #[default]
    Slots,
    /// A group of eight keys (one 32-byte sector) a load: a read of an
    /// absent word costs one load while its group has an empty slot.
    /// `VISION_GPU_PROBE=groups`; about 12% slower on lavapipe, not yet measured
    /// on a GPU.
    Groups,
}

impl TableProbe {
    pub fn name(self) -> &'static str {
        match self {
            TableProbe::Slots => "slots",
            TableProbe::Groups => "groups",
        }
    }

    /// The probe `VISION_GPU_PROBE` names (`groups`; anything else is the default).
    pub fn from_env() -> TableProbe {
        match std::env::var("VISION_GPU_PROBE") {
            Ok(v) if v == "groups" => TableProbe::Groups,
            _ => TableProbe::Slots,
        }
    }
}

/// A `--shader` value that names no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown shader variant {0:?} (expected native or emulated)")]
pub struct UnknownShader(pub String);

impl FromStr for ShaderVariant {
    type Err = UnknownShader;

    fn from_str(s: &str) -> Result<Self, UnknownShader> {
        match s {
            "native" => Ok(ShaderVariant::Native),
            "emulated" => Ok(ShaderVariant::Emulated),
            other => Err(UnknownShader(other.to_string())),
        }
    }
}

/// The complete WGSL source for `variant`, its tables probed by `probe`.
pub fn source(variant: ShaderVariant, probe: TableProbe) -> String {
    let layer = match variant {
        ShaderVariant::Native => NATIVE_LAYER,
        ShaderVariant::Emulated => EMULATED_LAYER,
    };
    let mut src = String::with_capacity(layer.len() + KERNEL.len() + 1024);
    src.push_str(layer);
    src.push('\n');
    for (name, value) in CONSTANTS.iter().copied().chain([("K_ITER", K_ITER)]) {
        let literal = match variant {
            ShaderVariant::Native => format!("{value:#018x}lu"),
            ShaderVariant::Emulated => format!("vec2<u32>({:#010x}u, {:#010x}u)", value as u32, value >> 32),
        };
        src.push_str(&format!("const {name}: W = {literal};\n"));
    }
    src.push('\n');
    src.push_str(KERNEL);
    src.push('\n');
    src.push_str(match probe {
        TableProbe::Slots => SLOTS_LAYER,
        TableProbe::Groups => GROUPS_LAYER,
    });
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both variants, with either table probe, must parse and validate as
    /// WGSL (naga is wgpu's own compiler front end), independent of any adapter.
    #[test]
    fn both_variants_are_valid_wgsl() {
        let cases = [ShaderVariant::Native, ShaderVariant::Emulated]
            .into_iter()
            .flat_map(|v| [TableProbe::Slots, TableProbe::Groups].map(|p| (v, p)));
        for (variant, probe) in cases {
            let src = source(variant, probe);
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{variant} {probe:?}: {}", e.emit_to_string(&src)));
            let caps = match variant {
                ShaderVariant::Native => naga::valid::Capabilities::SHADER_INT64,
                ShaderVariant::Emulated => naga::valid::Capabilities::empty(),
            };
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{variant} {probe:?}: {}", e.emit_to_string(&src)));
        }
    }
}
