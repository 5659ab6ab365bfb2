// Causal grouped-query attention with a fused scaled softmax, flash style: an online
// softmax over the keys, so memory grows with T (the per-row logsumexp is the only thing
// saved), never T².
//
//   z_ij = scale · q_i·k_j, soft-capped (Gemma-2) to cap·tanh(z_ij / cap) when cap > 0
//   P_ij = exp(z_ij − lse_i) over the keys j the query may see:
//          j ≤ pos_i, and pos_i − W < j when a window W > 0 is set
//   o_i  = Σ_j P_ij v_j
// Query head h reads key/value head h / (NH / NKV) (HF `repeat_kv` grouping).
//
// Backward (FlashAttention-2 recomputation from lse, no float atomics needed):
//   D_i  = dO_i·o_i                            (attention_delta_backward)
//   dP_ij = dO_i·v_j,  dz_ij = P_ij (dP_ij − D_i) · (1 − tanh²)   [the last factor only when capped]
//   dq_i = scale Σ_j dz_ij k_j                 (attention_dq_backward: one invocation per query row)
//   dk_j = scale Σ_i dz_ij q_i,  dv_j = Σ_i P_ij dO_i
//                                              (attention_dkv_backward: one invocation per key row,
//                                               looping over the queries of all heads in its group)
//
// Layouts (rows as a linear layer writes them; HS a multiple of 4, at most 256):
//   q, o, dq, dO [B·T, NH·HS];  k, v, dk, dv [B·KT, NKV·HS];  lse, D [B·T, NH].
// Training: KT = T and query i sits at position i. KV-cache inference: k and v are the cache
// [B, Tmax, NKV·HS] (KT = Tmax), query i of sequence b sits at position starts[b] + i and
// sees cached keys 0..starts[b] + i.
//
// Dispatch: one invocation per (b, head, row), the row index fastest so that the lanes of
// a SIMD group read the same key row at once; workgroups of 64, folded 2-D. No workgroup
// memory and no barriers, which suits llvmpipe; on GPUs the shared key reads of a warp
// are broadcast loads.

struct Params {
    batch: u32,
    seq: u32,         // T, query rows per sequence
    heads: u32,       // NH
    kv_heads: u32,    // NKV
    kv_rows: u32,     // KT, key rows per sequence
    window: u32,      // W, 0 for none
    use_starts: u32,  // 0: query i is at position i
    scale: f32,
    softcap: f32,     // 0 for none
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;         // [B·T, NH·HS]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;         // [B·KT, NKV·HS]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;         // [B·KT, NKV·HS]
@group(0) @binding(4) var<storage, read> starts: array<u32>;          // [B]
@group(0) @binding(5) var<storage, read_write> o: array<vec4<f32>>;   // [B·T, NH·HS]
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;       // [B·T, NH]
@group(0) @binding(7) var<storage, read> o_in: array<vec4<f32>>;      // [B·T, NH·HS] forward output
@group(0) @binding(8) var<storage, read> d_o: array<vec4<f32>>;       // [B·T, NH·HS] dO
@group(0) @binding(9) var<storage, read> lse_in: array<f32>;          // [B·T, NH]
@group(0) @binding(10) var<storage, read_write> delta: array<f32>;    // [B·T, NH] D
@group(0) @binding(11) var<storage, read> delta_in: array<f32>;       // [B·T, NH] D
@group(0) @binding(12) var<storage, read_write> dq: array<vec4<f32>>; // [B·T, NH·HS]
@group(0) @binding(13) var<storage, read_write> dk: array<vec4<f32>>; // [B·KT, NKV·HS]
@group(0) @binding(14) var<storage, read_write> dv: array<vec4<f32>>; // [B·KT, NKV·HS]

const MAX_HS4: u32 = 64u;  // HS ≤ 256

// HS / 4. A pipeline constant rather than a parameter: with constant trip counts the
// compilers unroll the head-dimension loops and keep the per-row arrays in registers.
override HS4: u32 = 16u;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// Softcapped logit of a scaled score s; .y is d(capped)/ds.
fn cap_logit(s: f32) -> vec2<f32> {
    if (p.softcap > 0.0) {
        let t = tanh_safe(s / p.softcap);
        return vec2<f32>(p.softcap * t, 1.0 - t * t);
    }
    return vec2<f32>(s, 1.0);
}

// Keys [lo, hi) visible from position pos.
fn key_range(pos: u32) -> vec2<u32> {
    let hi = min(pos + 1u, p.kv_rows);
    var lo = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    return vec2<u32>(lo, max(lo, hi));
}

// Element offset (in vec4s) of head `head` of row `row` in a tensor `heads` heads wide.
fn at(row: u32, heads: u32, head: u32) -> u32 {
    return (row * heads + head) * HS4;
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.batch * p.heads * p.seq) {
        return;
    }
    let i = id % p.seq;
    let h = (id / p.seq) % p.heads;
    let b = id / (p.seq * p.heads);
    let kvh = h / (p.heads / p.kv_heads);
    var pos = i;
    if (p.use_starts != 0u) {
        pos += starts[b];
    }
    let row = b * p.seq + i;
    let qo = at(row, p.heads, h);
    var qv: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    for (var d = 0u; d < HS4; d++) {
        qv[d] = q[qo + d] * p.scale;
        acc[d] = vec4<f32>(0.0);
    }
    let r = key_range(pos);
    var m = -3.402823e38;
    var l = 0.0;
    for (var j = r.x; j < r.y; j++) {
        let ko = at(b * p.kv_rows + j, p.kv_heads, kvh);
        var s4 = vec4<f32>(0.0);
        for (var d = 0u; d < HS4; d++) {
            s4 += qv[d] * k[ko + d];
        }
        let z = cap_logit(s4.x + s4.y + s4.z + s4.w).x;
        if (z > m) {
            // A new maximum rescales what has been summed so far.
            let c = exp(m - z);
            l *= c;
            for (var d = 0u; d < HS4; d++) {
                acc[d] *= c;
            }
            m = z;
        }
        let e = exp(z - m);
        l += e;
        for (var d = 0u; d < HS4; d++) {
            acc[d] += e * v[ko + d];
        }
    }
    // A query that sees no key (a cache position past Tmax) gets a zero output.
    var inv = 0.0;
    if (l > 0.0) {
        inv = 1.0 / l;
    }
    for (var d = 0u; d < HS4; d++) {
        o[qo + d] = acc[d] * inv;
    }
    lse[row * p.heads + h] = select(0.0, m + log(l), l > 0.0);
}

@compute @workgroup_size(64)
fn attention_delta_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.batch * p.seq * p.heads) {
        return;
    }
    // id = row · NH + h, the layout of D.
    let off = id * HS4;
    var s4 = vec4<f32>(0.0);
    for (var d = 0u; d < HS4; d++) {
        s4 += d_o[off + d] * o_in[off + d];
    }
    delta[id] = s4.x + s4.y + s4.z + s4.w;
}

@compute @workgroup_size(64)
fn attention_dq_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.batch * p.heads * p.seq) {
        return;
    }
    let i = id % p.seq;
    let h = (id / p.seq) % p.heads;
    let b = id / (p.seq * p.heads);
    let kvh = h / (p.heads / p.kv_heads);
    let row = b * p.seq + i;
    let qo = at(row, p.heads, h);
    var qv: array<vec4<f32>, MAX_HS4>;
    var gv: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    for (var d = 0u; d < HS4; d++) {
        qv[d] = q[qo + d] * p.scale;
        gv[d] = d_o[qo + d];
        acc[d] = vec4<f32>(0.0);
    }
    let li = lse_in[row * p.heads + h];
    let di = delta_in[row * p.heads + h];
    let r = key_range(i);
    for (var j = r.x; j < r.y; j++) {
        let ko = at(b * p.kv_rows + j, p.kv_heads, kvh);
        var s4 = vec4<f32>(0.0);
        var dp4 = vec4<f32>(0.0);
        for (var d = 0u; d < HS4; d++) {
            s4 += qv[d] * k[ko + d];
            dp4 += gv[d] * v[ko + d];
        }
        let z = cap_logit(s4.x + s4.y + s4.z + s4.w);
        let pij = exp(z.x - li);
        let dz = pij * (dp4.x + dp4.y + dp4.z + dp4.w - di) * z.y;
        for (var d = 0u; d < HS4; d++) {
            acc[d] += dz * k[ko + d];
        }
    }
    for (var d = 0u; d < HS4; d++) {
        dq[qo + d] = acc[d] * p.scale;
    }
}

@compute @workgroup_size(64)
fn attention_dkv_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.batch * p.kv_heads * p.seq) {
        return;
    }
    let j = id % p.seq;
    let kvh = (id / p.seq) % p.kv_heads;
    let b = id / (p.seq * p.kv_heads);
    let group = p.heads / p.kv_heads;
    let ko = at(b * p.seq + j, p.kv_heads, kvh);
    var kv: array<vec4<f32>, MAX_HS4>;
    var vv: array<vec4<f32>, MAX_HS4>;
    var dka: array<vec4<f32>, MAX_HS4>;
    var dva: array<vec4<f32>, MAX_HS4>;
    for (var d = 0u; d < HS4; d++) {
        kv[d] = k[ko + d] * p.scale;
        vv[d] = v[ko + d];
        dka[d] = vec4<f32>(0.0);
        dva[d] = vec4<f32>(0.0);
    }
    // Queries that see key j: j ≤ i, and i < j + W with a window.
    var ihi = p.seq;
    if (p.window > 0u) {
        ihi = min(ihi, j + p.window);
    }
    for (var g = 0u; g < group; g++) {
        let h = kvh * group + g;
        for (var i = j; i < ihi; i++) {
            let row = b * p.seq + i;
            let qo = at(row, p.heads, h);
            var s4 = vec4<f32>(0.0);
            var dp4 = vec4<f32>(0.0);
            for (var d = 0u; d < HS4; d++) {
                s4 += q[qo + d] * kv[d];
                dp4 += d_o[qo + d] * vv[d];
            }
            let z = cap_logit(s4.x + s4.y + s4.z + s4.w);
            let pij = exp(z.x - lse_in[row * p.heads + h]);
            let dz = pij * (dp4.x + dp4.y + dp4.z + dp4.w - delta_in[row * p.heads + h]) * z.y;
            for (var d = 0u; d < HS4; d++) {
                dva[d] += pij * d_o[qo + d];
                dka[d] += dz * q[qo + d];
            }
        }
    }
    for (var d = 0u; d < HS4; d++) {
        dk[ko + d] = dka[d] * p.scale;
        dv[ko + d] = dva[d];
    }
}

// KV-cache append: row t of sequence b of `new` ([B·T, NKV·HS], bound at q) goes to
// cache row b·Tmax + starts[b] + t (the cache bound at o, Tmax = kv_rows); rows past
// Tmax are dropped.
@compute @workgroup_size(64)
fn kv_cache_write_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    let width = p.kv_heads * HS4;
    if (id >= p.batch * p.seq * width) {
        return;
    }
    let e = id % width;
    let row = id / width;
    let b = row / p.seq;
    let slot = starts[b] + row % p.seq;
    if (slot < p.kv_rows) {
        o[(b * p.kv_rows + slot) * width + e] = q[id];
    }
}
