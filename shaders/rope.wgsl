// Rotary position embedding, rotate-half convention (HF Llama), in place on x:
//   pair (i, i + HS/2) of every head of row (b, t) is rotated by angle a = pos · inv_freq[i],
//   pos = start[b] + t:
//     x[i]        ← x[i] · cos a − x[i + HS/2] · sin a
//     x[i + HS/2] ← x[i + HS/2] · cos a + x[i] · sin a
// The backward is the same rotation by −a.
//
// Dispatch: one invocation per (row, head, i < HS/2), workgroups of 64, folded 2-D.

struct Params {
    rows: u32,        // B·T
    heads: u32,       // heads in a row of x (NH for q, NKV for k)
    half: u32,        // HS / 2
    seq: u32,         // T, tokens per sequence (row r belongs to sequence r / T)
    use_starts: u32,  // 0: positions start at 0 for every sequence
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;  // [HS/2]
@group(0) @binding(2) var<storage, read> starts: array<u32>;    // [B] first position of each sequence
@group(0) @binding(3) var<storage, read_write> x: array<f32>;   // [B·T, heads·HS]

// cos and sin of a after reducing a to [−π, π]: GPU sin/cos are only accurate there, and
// angles reach 10⁵ rad at long positions. 2π = C1 + C2 with C1 = 6.28125 exact in 8 bits,
// so k·C1 is exact for k < 2¹⁶ (Cody–Waite).
fn cos_sin(a: f32) -> vec2<f32> {
    let k = round(a * 0.15915494309189535);
    let r = (a - k * 6.28125) - k * 0.0019353071795864769;
    return vec2<f32>(cos(r), sin(r));
}

fn rotate(id: u32, sign: f32) {
    if (id >= p.rows * p.heads * p.half) {
        return;
    }
    let i = id % p.half;
    let rest = id / p.half;
    let head = rest % p.heads;
    let row = rest / p.heads;
    var pos = row % p.seq;
    if (p.use_starts != 0u) {
        pos += starts[row / p.seq];
    }
    // The angle is rounded to f32 as in HF (inv_freq · position in float32).
    let cs = cos_sin(f32(pos) * inv_freq[i]);
    let s = sign * cs.y;
    let base = row * p.heads * 2u * p.half + head * 2u * p.half;
    let x1 = x[base + i];
    let x2 = x[base + i + p.half];
    x[base + i] = x1 * cs.x - x2 * s;
    x[base + i + p.half] = x2 * cs.x + x1 * s;
}

@compute @workgroup_size(64)
fn rope_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rotate(gid.x + gid.y * nwg.x * 64u, 1.0);
}

@compute @workgroup_size(64)
fn rope_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rotate(gid.x + gid.y * nwg.x * 64u, -1.0);
}
