// VisionX v1 search kernel: one invocation per nonce, every dataset and
// scratchpad word computed on demand, the words a hash writes kept in its own
// open-addressing table (keys apart from values; how it is probed is the
// table layer's).
//
// The host prepends one 64-bit word layer (u64_native.wgsl or
// u64_emulated.wgsl) and the constants K_* (generated from the Rust side, so
// both variants use identical values), then dispatches this entry point once
// per (segment, slice of the mix loop). State (h, a, b, acc) is saved between
// slices, which keeps each dispatch short: desktop watchdogs kill long ones,
// and lavapipe silently stops an invocation after too many loop passes.

struct Config {
    dataset_seed: vec2<u32>,
    nonce_base: vec2<u32>,
    // A hash is reported when the digest's top word is <= this.
    target_top: vec2<u32>,
    iter_begin: u32,
    iter_end: u32,
    // Hashes in this segment; invocations beyond it return at once (WGSL
    // clamps out-of-bounds indices, so a stray one would corrupt a neighbour).
    count: u32,
    // Index within the batch of this segment's first hash.
    first_hash: u32,
    header_words8: u32,
    header_words16: u32,
    found_capacity: u32,
    // Rounds the block to its 8-byte alignment (the host's mirror has it too).
    reserved: u32,
}

struct Found {
    count: atomic<u32>,
    // Lanes that finished their slice of the mix loop, over every step of
    // the batch: the host checks that each lane finished each step, since a
    // kernel a driver cut short leaves no other trace (Metal reports a
    // killed command buffer as completed), and a cut early slice would
    // leave stale state for the later ones.
    finished: atomic<u32>,
    // Per found hash: its index in the batch, then the digest's four words as (lo, hi) pairs.
    entries: array<u32>,
}

@group(0) @binding(0) var<uniform> cfg: Config;
// The header's 8-byte words, then its 16-byte chunks as word pairs, as (lo, hi).
@group(0) @binding(1) var<storage, read> header: array<vec2<u32>>;
// Per hash: h, a, b, acc.
@group(0) @binding(2) var<storage, read_write> state: array<W>;
// Binding 3, the table keys, and the table's probing (`table_read`,
// `table_update`) are in the table layer the host appends:
// `table_slots.wgsl` or `table_groups.wgsl`.
@group(0) @binding(4) var<storage, read_write> vals: array<W>;
@group(0) @binding(5) var<storage, read_write> found: Found;
// Per hash: a bit per (scratch index & filter_mask), set when such an index
// was written, so most reads skip the table. Pays on SIMD CPUs (lavapipe),
// where any lane's probe loop costs every lane; off on GPUs, where it did not.
@group(0) @binding(6) var<storage, read_write> write_filter: array<u32>;

override WORKGROUP_SIZE: u32 = 64u;
override USE_FILTER: bool = false;

// The params and table shape, fixed per pipeline (pipeline-overridable
// constants, not uniforms): the compiler folds the masks, the four-reads
// branch and `i % WRITE_EVERY` (a mask for powers of two, not a division).
// The defaults only make the module valid on its own; the host sets each.
override DMASK: u32 = 0u;
override SMASK: u32 = 0u;
// Table slots per hash, and the power of two at or above it, less one, and
// its log2: a scratch index's low bits scaled into [0, SLOTS) by a multiply
// and a shift (3/4 of a power of two: 288 KiB tables at consensus instead of
// 384 KiB, so more hashes fit in flight).
override SLOTS: u32 = 1u;
override SLOTS_PMASK: u32 = 0u;
override SLOTS_SHIFT: u32 = 0u;
override FOUR_READS: bool = false;
// 0: the params write nothing.
override WRITE_EVERY: u32 = 0u;
override MIX_ITERS: u32 = 0u;
// Bits in each hash's filter, minus one (filter variant only).
override FILTER_MASK: u32 = 0u;

fn fmix(z0: W) -> W {
    var z = w_mul(w_xor(z0, w_shr(z0, 30u)), K_FMIX1);
    z = w_mul(w_xor(z, w_shr(z, 27u)), K_FMIX2);
    return w_xor(z, w_shr(z, 31u));
}

// Output k of SplitMix64 seeded with `seed`.
fn splitmix(seed: W, k: u32) -> W {
    return fmix(w_add(seed, w_mul(w_u32(k + 1u), K_GAMMA)));
}

fn header_word(i: u32) -> W {
    let v = header[i];
    return w(v.x, v.y);
}

// Scratch word j before any write: three fmix, no memory.
fn initial_word(h: W, j: u32) -> W {
    let m = splitmix(h, j);
    let i1 = w_lo(w_rotl(m, 17u)) & DMASK;
    let i2 = w_lo(w_rotr(m, 23u)) & DMASK;
    let dseed = w(cfg.dataset_seed.x, cfg.dataset_seed.y);
    return w_xor(w_xor(splitmix(dseed, i1), splitmix(dseed, i2)), w_mul(m, K_SCRATCH));
}

fn filter_may_contain(fbase: u32, j: u32) -> bool {
    let bit = j & FILTER_MASK;
    return (write_filter[fbase + (bit >> 5u)] & (1u << (bit & 31u))) != 0u;
}

// The current value of scratch word j of the hash whose table starts at
// slot `base` (and filter at word `fbase`).
fn scratch_read(base: u32, fbase: u32, j: u32, h: W) -> W {
    if (USE_FILTER && !filter_may_contain(fbase, j)) {
        return initial_word(h, j);
    }
    return table_read(base, j, h);
}

// Scratch word j becomes rotl(old + addend, 41).
fn scratch_update(base: u32, fbase: u32, j: u32, h: W, addend: W) {
    if (USE_FILTER) {
        let bit = j & FILTER_MASK;
        write_filter[fbase + (bit >> 5u)] |= 1u << (bit & 31u);
    }
    table_update(base, j, h, addend);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn search(@builtin(global_invocation_id) invocation: vec3<u32>) {
    let lane = invocation.x;
    if (lane >= cfg.count) {
        return;
    }
    let hash_index = cfg.first_hash + lane;
    let base = lane * SLOTS;
    let fbase = select(0u, lane * ((FILTER_MASK + 1u) / 32u), USE_FILTER);
    let st = lane * 4u;

    var h: W;
    var a: W;
    var b: W;
    var acc: W;
    if (cfg.iter_begin == 0u) {
        let nonce = w_add(w(cfg.nonce_base.x, cfg.nonce_base.y), w_u32(hash_index));
        h = w_xor(nonce, K_DEADBEEF);
        for (var c = 0u; c < cfg.header_words8; c++) {
            h = w_xor(h, w_rotl(header_word(c), 13u));
            h = w_rotl(w_mul(h, K_GAMMA), 7u);
        }
        a = w_xor(K_A0, w_rotl(nonce, 17u));
        b = w_xor(K_B0, w_rotr(nonce, 11u));
        for (var c = 0u; c < cfg.header_words16; c++) {
            let x = header_word(cfg.header_words8 + 2u * c);
            let y = header_word(cfg.header_words8 + 2u * c + 1u);
            a = w_xor(a, w_mul(x, K_CHUNK_A));
            b = w_xor(b, w_mul(y, K_SCRATCH));
            a = w_xor(w_rotl(a, 13u), w_rotr(b, 7u));
            b = w_xor(w_rotl(b, 29u), w_rotr(a, 19u));
        }
        acc = w_xor(w_xor(a, b), K_DEADBEEF);
    } else {
        h = state[st];
        a = state[st + 1u];
        b = state[st + 2u];
        acc = state[st + 3u];
    }

    for (var i = cfg.iter_begin; i < cfg.iter_end; i++) {
        let wi = w_u32(i);
        let j1 = w_lo(w_rotl(w_xor(w_xor(w_xor(a, b), acc), w_mul(wi, K_ITER)), 17u)) & SMASK;
        let v1 = scratch_read(base, fbase, j1, h);
        let j2 = w_lo(w_rotl(w_xor(w_xor(v1, a), acc), 23u)) & SMASK;
        let v2 = scratch_read(base, fbase, j2, h);
        let j3 = w_lo(w_rotl(w_xor(w_xor(v2, b), acc), 19u)) & SMASK;
        let v3 = scratch_read(base, fbase, j3, h);
        var v4 = v3;
        if (FOUR_READS) {
            let j4 = w_lo(w_rotl(w_xor(w_xor(v3, v1), acc), 29u)) & SMASK;
            v4 = scratch_read(base, fbase, j4, h);
        }
        let mix = w_xor(w_xor(w_xor(v1, w_rotl(v2, 13u)), w_mul(v3, K_FMIX2)), w_rotr(v4, 7u));
        a = w_xor(w_rotl(a, 13u), w_mul(mix, K_SCRATCH));
        b = w_xor(w_rotl(b, 17u), w_mul(w_xor(mix, acc), K_FMIX1));
        acc = w_xor(w_rotl(acc, 7u), w_mul(w_xor(a, b), K_ACC));
        if (WRITE_EVERY != 0u && i % max(WRITE_EVERY, 1u) == 0u) {
            let jw = w_lo(w_rotl(w_xor(w_xor(w_xor(mix, a), w_rotl(b, 11u)), w_mul(wi, K_WRITE)), 31u)) & SMASK;
            scratch_update(base, fbase, jw, h, w_xor(mix, K_GAMMA));
        }
    }

    if (cfg.iter_end < MIX_ITERS) {
        state[st] = h;
        state[st + 1u] = a;
        state[st + 2u] = b;
        state[st + 3u] = acc;
        atomicAdd(&found.finished, 1u);
        return;
    }

    atomicAdd(&found.finished, 1u);
    var a2 = w_xor(a, acc);
    var b2 = w_xor(b, w_rotl(acc, 3u));
    for (var r = 0u; r < 4u; r++) {
        a2 = w_xor(w_rotl(a2, 13u), w_mul(b2, K_CHUNK_A));
        b2 = w_xor(w_rotl(b2, 17u), w_mul(a2, K_SCRATCH));
    }
    // The digest's top 8 bytes (big-endian) are exactly a2.
    if (w_le(a2, w(cfg.target_top.x, cfg.target_top.y))) {
        let seed = w_xor(w_xor(a2, b2), K_ACC);
        let c = splitmix(seed, 0u);
        let d = splitmix(seed, 1u);
        let slot = atomicAdd(&found.count, 1u);
        if (slot < cfg.found_capacity) {
            let e = slot * 9u;
            found.entries[e] = hash_index;
            found.entries[e + 1u] = w_lo(a2);
            found.entries[e + 2u] = w_hi(a2);
            found.entries[e + 3u] = w_lo(b2);
            found.entries[e + 4u] = w_hi(b2);
            found.entries[e + 5u] = w_lo(c);
            found.entries[e + 6u] = w_hi(c);
            found.entries[e + 7u] = w_lo(d);
            found.entries[e + 8u] = w_hi(d);
        }
    }
}
