// Table layer "slots": a hash's write table probed slot by slot (linear
// probing), keys as plain words. The host puts one table layer after the
// kernel (`shaders/visionx.wgsl`, whose overrides and helpers it uses):
// this one, the default, or `table_groups.wgsl`.

// Per hash: a table of SLOTS slots; key = scratch index + 1, 0 = empty.
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;

// Where scratch index j's probe sequence starts in a table.
fn first_slot(j: u32) -> u32 {
    let low = j & SLOTS_PMASK;
    // (A power-of-two table is the low bits themselves; the product could wrap.)
    return select((low * SLOTS) >> SLOTS_SHIFT, low, SLOTS == SLOTS_PMASK + 1u);
}

fn next_slot(slot: u32) -> u32 {
    return select(slot + 1u, 0u, slot + 1u == SLOTS);
}

// The current value of scratch word j of the hash whose table starts at `base`.
fn table_read(base: u32, j: u32, h: W) -> W {
    var slot = first_slot(j);
    let key = j + 1u;
    // The key load is issued before the on-demand computation so the two latencies overlap.
    var k = keys[base + slot];
    let initial = initial_word(h, j);
    var value = initial;
    loop {
        if (k == key) {
            value = vals[base + slot];
            break;
        }
        if (k == 0u) {
            break;
        }
        slot = next_slot(slot);
        k = keys[base + slot];
    }
    return value;
}

// Scratch word j becomes rotl(old + addend, 41), in one probe sequence: the
// slot that holds j, or the empty one where it goes (old = its initial word).
fn table_update(base: u32, j: u32, h: W, addend: W) {
    var slot = first_slot(j);
    let key = j + 1u;
    loop {
        let k = keys[base + slot];
        if (k == key) {
            vals[base + slot] = w_rotl(w_add(vals[base + slot], addend), 41u);
            return;
        }
        if (k == 0u) {
            keys[base + slot] = key;
            vals[base + slot] = w_rotl(w_add(initial_word(h, j), addend), 41u);
            return;
        }
        slot = next_slot(slot);
    }
}
