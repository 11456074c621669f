// Table layer "groups": a hash's write table probed a group of eight keys
// (one 32-byte memory sector, two vec4 loads) at a time
// (`VISION_GPU_PROBE=groups`). The host puts one table layer after the
// kernel (`shaders/visionx.wgsl`, whose overrides and helpers it uses).

// Per hash: a table of SLOTS slots (a multiple of 8) in groups of eight, a
// group's keys as two vec4 (one 32-byte sector); key = scratch index + 1,
// 0 = empty. Slot s of a hash is component s % 4 of keys[(base + s) / 4].
@group(0) @binding(3) var<storage, read_write> keys: array<vec4<u32>>;

// The group where scratch index j's probe sequence starts: that of the
// slot its low bits scale to.
fn first_group(j: u32) -> u32 {
    let low = j & SLOTS_PMASK;
    // (A power-of-two table is the low bits themselves; the product could wrap.)
    return select((low * SLOTS) >> SLOTS_SHIFT, low, SLOTS == SLOTS_PMASK + 1u) >> 3u;
}

fn next_group(g: u32) -> u32 {
    return select(g + 1u, 0u, g + 1u == SLOTS / 8u);
}

// The first of a group's eight slots whose key `hit` marks (the two halves
// of the group); 8 when none is.
fn first_marked(lo: vec4<bool>, hi: vec4<bool>) -> u32 {
    let in_lo = select(select(select(select(4u, 3u, lo.w), 2u, lo.z), 1u, lo.y), 0u, lo.x);
    let in_hi = select(select(select(select(8u, 7u, hi.w), 6u, hi.z), 5u, hi.y), 4u, hi.x);
    return select(in_hi, in_lo, in_lo < 4u);
}

// The current value of scratch word j of the hash whose table starts at
// slot `base`. A key is stored in the first group from its first with an
// empty slot (nothing is ever removed), so a group with an empty slot and
// no such key ends the search: at the tables' load (2/3 at most) most
// reads cost one sector and one pass, where probing slot by slot cost a
// dependent load per slot and a SIMD group waited for its longest probe.
fn table_read(base: u32, j: u32, h: W) -> W {
    var g = first_group(j);
    let key = vec4<u32>(j + 1u);
    // The key loads are issued before the on-demand computation so the latencies overlap.
    var lo = keys[(base >> 2u) + 2u * g];
    var hi = keys[(base >> 2u) + 2u * g + 1u];
    let initial = initial_word(h, j);
    var value = initial;
    loop {
        let hit = first_marked(lo == key, hi == key);
        if (hit < 8u) {
            value = vals[base + 8u * g + hit];
            break;
        }
        if (any(lo == vec4<u32>(0u)) || any(hi == vec4<u32>(0u))) {
            break;
        }
        g = next_group(g);
        lo = keys[(base >> 2u) + 2u * g];
        hi = keys[(base >> 2u) + 2u * g + 1u];
    }
    return value;
}

// Scratch word j becomes rotl(old + addend, 41), in one probe sequence: the
// slot that holds j, or the first empty one where it goes (old = its
// initial word).
fn table_update(base: u32, j: u32, h: W, addend: W) {
    var g = first_group(j);
    let key = vec4<u32>(j + 1u);
    loop {
        let at = (base >> 2u) + 2u * g;
        let lo = keys[at];
        let hi = keys[at + 1u];
        let hit = first_marked(lo == key, hi == key);
        if (hit < 8u) {
            let slot = base + 8u * g + hit;
            vals[slot] = w_rotl(w_add(vals[slot], addend), 41u);
            return;
        }
        let empty = first_marked(lo == vec4<u32>(0u), hi == vec4<u32>(0u));
        if (empty < 8u) {
            // The whole half back, the key in its slot (each invocation owns its table).
            let here = vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(empty & 3u);
            if (empty < 4u) {
                keys[at] = select(lo, key, here);
            } else {
                keys[at + 1u] = select(hi, key, here);
            }
            vals[base + 8u * g + empty] = w_rotl(w_add(initial_word(h, j), addend), 41u);
            return;
        }
        g = next_group(g);
    }
}
