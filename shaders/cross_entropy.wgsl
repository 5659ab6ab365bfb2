// Cross-entropy over the vocabulary in chunks: the [N, V] logits never exist in full. For
// each chunk of columns v0..v0+c the host computes Z = h·W[v0..v0+c]ᵀ [N, c] with a GEMM;
// these kernels fold Z into running per-row statistics, finish the mean loss, and turn a
// recomputed Z into its gradient in place.
//
//   z = cap·tanh(Z / cap) with a final-logit soft-cap (cap > 0), else z = Z
//   loss_r = lse_r − z[r, target_r],  lse_r = log Σ_v exp z[r, v]
//   loss   = Σ_{r kept} loss_r / count,  a row is kept when target_r < V
//   dZ[r, v] = scale · (exp(z[r, v] − lse_r) − [v = target_r]) / count · dz/dZ   (kept rows)
//
// Dispatch: ce_chunk_forward: TPR invocations per row, 64 / TPR rows per workgroup
// (TPR = 1 on llvmpipe, 64 on GPUs); ce_chunk_backward: one invocation per element;
// ce_finish_forward and ce_count_backward: a single workgroup of 64.

struct Params {
    rows: u32,    // N
    cols: u32,    // c, columns in this chunk
    v0: u32,      // first vocabulary column of the chunk
    vocab: u32,   // V
    first: u32,   // 1 on the first chunk (starts the running statistics)
    softcap: f32, // 0 for none
    scale: f32,   // backward: gradient of the loss (1 for a plain mean)
    _p0: u32,
}

override TPR: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;      // [N, c] logits chunk (gradient in place)
@group(0) @binding(2) var<storage, read> targets: array<u32>;      // [N]
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;  // [N, 3] running max, sum, target logit
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;    // [N] logsumexp per row (saved)
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;   // [1] mean loss
@group(0) @binding(6) var<storage, read> lse_in: array<f32>;       // [N]
@group(0) @binding(7) var<storage, read_write> count: array<f32>;  // [1] kept rows
@group(0) @binding(8) var<storage, read> count_in: array<f32>;     // [1]

var<workgroup> red: array<vec2<f32>, 64>;

const NEG: f32 = -3.402823e38;

// Capped logit; .y is its derivative.
fn cap_logit(v: f32) -> vec2<f32> {
    if (p.softcap > 0.0) {
        let t = tanh(clamp(v / p.softcap, -15.0, 15.0));
        return vec2<f32>(p.softcap * t, 1.0 - t * t);
    }
    return vec2<f32>(v, 1.0);
}

// Merges two (max, Σ exp(· − max)) pairs.
fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

@compute @workgroup_size(64)
fn ce_chunk_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) local: u32) {
    let row = (wg.x + wg.y * nwg.x) * (64u / TPR) + local / TPR;
    let lane = local % TPR;
    let valid = row < p.rows;
    var ms = vec2<f32>(NEG, 0.0);
    if (valid) {
        for (var j = lane; j < p.cols; j += TPR) {
            let v = cap_logit(z[row * p.cols + j]).x;
            if (v > ms.x) {
                ms = vec2<f32>(v, ms.y * exp(ms.x - v));
            }
            ms.y += exp(v - ms.x);
        }
    }
    if (TPR > 1u) {
        red[local] = ms;
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
            if (lane < s) {
                red[local] = merge(red[local], red[local + s]);
            }
            workgroupBarrier();
        }
        ms = red[local];
    }
    if (!valid || lane != 0u) {
        return;
    }
    var zt = 0.0;
    if (p.first == 0u) {
        ms = merge(vec2<f32>(stats[row * 3u], stats[row * 3u + 1u]), ms);
        zt = stats[row * 3u + 2u];
    }
    let t = targets[row];
    if (t >= p.v0 && t - p.v0 < p.cols) {
        zt = cap_logit(z[row * p.cols + t - p.v0]).x;
    }
    stats[row * 3u] = ms.x;
    stats[row * 3u + 1u] = ms.y;
    stats[row * 3u + 2u] = zt;
}

@compute @workgroup_size(64)
fn ce_finish_forward(@builtin(local_invocation_index) local: u32) {
    var acc = vec2<f32>(0.0, 0.0);  // Σ loss, kept rows
    for (var r = local; r < p.rows; r += 64u) {
        let l = stats[r * 3u] + log(stats[r * 3u + 1u]);
        lse[r] = l;
        if (targets[r] < p.vocab) {
            acc += vec2<f32>(l - stats[r * 3u + 2u], 1.0);
        }
    }
    red[local] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (local < s) {
            red[local] += red[local + s];
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        let t = red[0];
        loss[0] = select(0.0, t.x / t.y, t.y > 0.0);
    }
}

@compute @workgroup_size(64)
fn ce_count_backward(@builtin(local_invocation_index) local: u32) {
    var n = 0.0;
    for (var r = local; r < p.rows; r += 64u) {
        if (targets[r] < p.vocab) {
            n += 1.0;
        }
    }
    red[local] = vec2<f32>(n, 0.0);
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (local < s) {
            red[local] += red[local + s];
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        count[0] = red[0].x;
    }
}

@compute @workgroup_size(64)
fn ce_chunk_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.cols) {
        return;
    }
    let r = i / p.cols;
    let t = targets[r];
    if (t >= p.vocab) {
        z[i] = 0.0;
        return;
    }
    let c = cap_logit(z[i]);
    var g = exp(c.x - lse_in[r]);
    if (t == p.v0 + i % p.cols) {
        g -= 1.0;
    }
    z[i] = g * c.y * p.scale / max(count_in[0], 1.0);
}
