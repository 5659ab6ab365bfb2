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

// cos and sin of a to about 1e-7 (absolute, for |a| < 1.1·10⁵ rad), from + and × alone.
// WGSL promises its sin/cos only within 2⁻¹¹ on [−π, π], and some implementations are that
// coarse (SwiftShader's put RoPE 2·10⁻⁴ off), so the built-ins would make the same model
// give different numbers on different devices.
// Reduction: j = round(a · 2/π), r = a − j·π/2 ∈ [−π/4, π/4], with π/2 = P1 + P2 + P3 + P4
// (Cody–Waite): P1..P3 carry 8 significant bits each, so j·Pk is exact for j < 2¹⁶ (angles
// up to 10⁵ rad at long positions) and a − j·P1 is exact. Then Cephes' single-precision
// minimax polynomials for sin and cos on [−π/4, π/4], and the quadrant j mod 4 picks
// (cos a, sin a) from (cos r, sin r).
fn cos_sin(a: f32) -> vec2<f32> {
    let j = round(a * 0.6366197723675814);
    let r = (((a - j * 1.5703125) - j * 0.000484466552734375) - j * -6.407499313354492e-7)
        - j * 9.920935184482005e-10;
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z
        + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    switch (i32(j) & 3) {
        case 0: { return vec2<f32>(c, s); }
        case 1: { return vec2<f32>(-s, c); }
        case 2: { return vec2<f32>(-c, -s); }
        default: { return vec2<f32>(s, -c); }
    }
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
