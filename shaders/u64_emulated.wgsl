// 64-bit words emulated as vec2<u32>(lo, hi), for adapters without
// SHADER_INT64 (and WebGPU, which has no 64-bit integers).
// Same interface as u64_native.wgsl; visionx.wgsl uses only these names.

alias W = vec2<u32>;

fn w(lo: u32, hi: u32) -> W { return vec2<u32>(lo, hi); }
fn w_lo(x: W) -> u32 { return x.x; }
fn w_hi(x: W) -> u32 { return x.y; }
fn w_u32(x: u32) -> W { return vec2<u32>(x, 0u); }

fn w_add(a: W, b: W) -> W {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// The full 64-bit product of two u32, from 16-bit halves.
fn mul32_wide(a: u32, b: u32) -> W {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    return vec2<u32>((p00 & 0xFFFFu) | (mid << 16u), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// The low 64 bits of a 64x64 product (the high cross terms fall off).
fn w_mul(a: W, b: W) -> W {
    let low = mul32_wide(a.x, b.x);
    return vec2<u32>(low.x, low.y + a.x * b.y + a.y * b.x);
}

fn w_xor(a: W, b: W) -> W { return a ^ b; }

// k in 1..63
fn w_rotl(x: W, k: u32) -> W {
    var v = x;
    var s = k;
    if (s >= 32u) {
        v = vec2<u32>(x.y, x.x);
        s = s - 32u;
    }
    if (s == 0u) {
        return v;
    }
    return vec2<u32>((v.x << s) | (v.y >> (32u - s)), (v.y << s) | (v.x >> (32u - s)));
}

fn w_rotr(x: W, k: u32) -> W { return w_rotl(x, 64u - k); }

// k in 1..31
fn w_shr(x: W, k: u32) -> W { return vec2<u32>((x.x >> k) | (x.y << (32u - k)), x.y >> k); }

fn w_le(a: W, b: W) -> bool { return a.y < b.y || (a.y == b.y && a.x <= b.x); }
