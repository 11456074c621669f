// 64-bit words as native u64 (adapters with Features::SHADER_INT64).
// Same interface as u64_emulated.wgsl; visionx.wgsl uses only these names.

alias W = u64;

fn w(lo: u32, hi: u32) -> W { return (u64(hi) << 32u) | u64(lo); }
fn w_lo(x: W) -> u32 { return u32(x & 0xFFFFFFFFlu); }
fn w_hi(x: W) -> u32 { return u32(x >> 32u); }
fn w_u32(x: u32) -> W { return u64(x); }
fn w_add(a: W, b: W) -> W { return a + b; }
fn w_mul(a: W, b: W) -> W { return a * b; }
fn w_xor(a: W, b: W) -> W { return a ^ b; }
// k in 1..63
fn w_rotl(x: W, k: u32) -> W { return (x << k) | (x >> (64u - k)); }
fn w_rotr(x: W, k: u32) -> W { return (x >> k) | (x << (64u - k)); }
// k in 1..31
fn w_shr(x: W, k: u32) -> W { return x >> k; }
fn w_le(a: W, b: W) -> bool { return a <= b; }
