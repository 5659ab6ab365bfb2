// Skinny GEMM (GEMV) for a few rows of x, the decode step's projections and logits:
//   Y[z] = alpha · X[z] · W[z]ᵀ + beta · Y[z],  X: m×k (m small), W: n×k, Y: m×n, row-major.
//
// GEMV is bound by reading W once (n·k floats, each used m times), so these kernels
// spend as few loads as possible per float of W: one vec4 load per 4 floats of W, and one
// vec4 load of each x row per 4 rows of W (llvmpipe turns every storage load whose
// address differs across lanes into a per-lane loop, so loads, not FMAs, are the cost).
// Each invocation keeps R rows of W × MR rows of x in registers: for row r of W,
// acc_r[i] = Σ_k W[n0 + r, k] · X[m0 + i, k], i < MR (R = 8 in gemv_rows, 4 in
// gemv_split). Per 4 floats of a W row that is 1 + MR/R vec4 loads.
//
// Dispatch: gid.y (or the workgroup's y) takes rows m0 = 4·y of X (MR = min(m, 4) of
// them are read; more than 4 rows of X read W again per block of 4), z is the batch
// entry. Rows of W and X past the edge are clamped on load and skipped on store.
// Needs k, lda, ldb, a_off, b_off and the batch strides of X and W to be multiples of 4
// (vec4 loads); any n, ldc, c_off. The host keeps each invocation's k loop under
// llvmpipe's loop budget (k/4 trips in gemv_rows, k/32 in gemv_split) by cutting k.
//
// Entry points:
// - gemv_rows: one invocation per 8 consecutive rows of W (x over n), each walking its
//   rows along k. On llvmpipe (2 cores, SmolLM2 shapes) 8 rows read W 10-25% faster
//   than 4 (fewer x loads per W load) and 16 gained nothing more; workgroups of 8 (one
//   SIMD vector) keep a 576-row W spread over several threads. The x loads are the same
//   address in every lane, which llvmpipe 22.3 still loads lane by lane (its uniform
//   fast path needs a constant address outside any loop).
// - gemv_split: a workgroup of 8 × 8 handles 32 rows of W; the 8 lanes along x split k
//   (lane l reads vec4 l, l + 8, ...: one SIMD load covers 128 contiguous bytes of a row),
//   and the 8 partial sums are added through workgroup memory after one barrier.

struct Params {
    m: u32,         // rows of X and Y
    n: u32,         // rows of W, columns of Y
    k: u32,         // columns of X and W
    lda: u32,       // row length of X as stored
    ldb: u32,       // row length of W as stored
    ldc: u32,       // row length of Y as stored
    a_off: u32,     // element offset of X[0][0] in the bound view
    b_off: u32,
    c_off: u32,
    stride_a: u32,  // elements between batch entries
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,      // 0: Y is written without being read
    batch: u32,
    _pad: u32,
}

override WG: u32 = 8u;    // gemv_rows workgroup size
override MR: u32 = 4u;    // rows of X read per invocation, 1..4

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;   // X, [m, k], as vec4
@group(0) @binding(2) var<storage, read> wq4: array<WQ4>;        // W, [n, k], as vec4
@group(0) @binding(3) var<storage, read_write> c: array<f32>;    // Y, [m, n] (row length ldc)
@group(0) @binding(4) var<storage, read> wq: array<WQ>;          // W as elements (the weights snippet's wload; unused here)

// vec4 index of the start of 4 consecutive stored rows (clamped to `last`).
fn row_starts(base: u32, r0: u32, last: u32, ld: u32) -> vec4<u32> {
    let r = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    return vec4<u32>(base / 4u) + r * (ld / 4u);
}

fn x_rows(z: u32, m0: u32) -> vec4<u32> {
    return row_starts(p.a_off + z * p.stride_a, m0, p.m - 1u, p.lda);
}

fn w_rows(z: u32, n0: u32) -> vec4<u32> {
    return row_starts(p.b_off + z * p.stride_b, n0, p.n - 1u, p.ldb);
}

// X[rows, 4·k4 .. 4·k4 + 3] as the columns of a matrix (columns ≥ MR are zero).
fn load_x(xr: vec4<u32>, k4: u32) -> mat4x4<f32> {
    let x0 = a4[xr.x + k4];
    var x1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0);
    var x3 = vec4<f32>(0.0);
    if (MR > 1u) { x1 = a4[xr.y + k4]; }
    if (MR > 2u) { x2 = a4[xr.z + k4]; }
    if (MR > 3u) { x3 = a4[xr.w + k4]; }
    return mat4x4<f32>(x0, x1, x2, x3);
}

// acc[i] += dot(w, X[i]) for i < MR.
fn step(acc: vec4<f32>, w: vec4<f32>, x: mat4x4<f32>) -> vec4<f32> {
    if (MR == 1u) {
        return acc + vec4<f32>(dot(w, x[0]), 0.0, 0.0, 0.0);
    }
    return acc + w * x;
}

// Y[m0 + i, n] = alpha · acc[i] + beta · Y[m0 + i, n] for i < MR, m0 + i < m, n < n.
fn store(z: u32, m0: u32, n: u32, acc: vec4<f32>) {
    if (n >= p.n) { return; }
    let base = p.c_off + z * p.stride_c;
    for (var i = 0u; i < MR; i++) {
        let m = m0 + i;
        if (m < p.m) {
            let o = base + m * p.ldc + n;
            var v = p.alpha * acc[i];
            if (p.beta != 0.0) {
                v += p.beta * c[o];
            }
            c[o] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn gemv_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * 8u;
    let m0 = gid.y * 4u;
    if (n0 >= p.n || m0 >= p.m) { return; }
    let xr = x_rows(gid.z, m0);
    let wr = w_rows(gid.z, n0);
    let ws = w_rows(gid.z, n0 + 4u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4_ = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    let k4n = p.k / 4u;
    for (var k4 = 0u; k4 < k4n; k4++) {
        let x = load_x(xr, k4);
        a0 = step(a0, wload4(wr.x + k4), x);
        a1 = step(a1, wload4(wr.y + k4), x);
        a2 = step(a2, wload4(wr.z + k4), x);
        a3 = step(a3, wload4(wr.w + k4), x);
        a4_ = step(a4_, wload4(ws.x + k4), x);
        a5 = step(a5, wload4(ws.y + k4), x);
        a6 = step(a6, wload4(ws.z + k4), x);
        a7 = step(a7, wload4(ws.w + k4), x);
    }
    store(gid.z, m0, n0, a0);
    store(gid.z, m0, n0 + 1u, a1);
    store(gid.z, m0, n0 + 2u, a2);
    store(gid.z, m0, n0 + 3u, a3);
    store(gid.z, m0, n0 + 4u, a4_);
    store(gid.z, m0, n0 + 5u, a5);
    store(gid.z, m0, n0 + 6u, a6);
    store(gid.z, m0, n0 + 7u, a7);
}

// Partial sums of gemv_split: entry (ly · 4 + r) · 8 + lx.
var<workgroup> part: array<vec4<f32>, 256>;

@compute @workgroup_size(8, 8)
fn gemv_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.y) * 4u;
    let m0 = wg.y * 4u;
    let xr = x_rows(wg.z, m0);
    let wr = w_rows(wg.z, n0);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let k4n = p.k / 4u;
    for (var k4 = lid.x; k4 < k4n; k4 += 8u) {
        let x = load_x(xr, k4);
        a0 = step(a0, wload4(wr.x + k4), x);
        a1 = step(a1, wload4(wr.y + k4), x);
        a2 = step(a2, wload4(wr.z + k4), x);
        a3 = step(a3, wload4(wr.w + k4), x);
    }
    let q = lid.y * 32u + lid.x;
    part[q] = a0;
    part[q + 8u] = a1;
    part[q + 16u] = a2;
    part[q + 24u] = a3;
    workgroupBarrier();
    // Lane r < 4 adds the 8 partials of row r.
    if (lid.x < 4u) {
        let s = lid.y * 32u + lid.x * 8u;
        let acc = part[s] + part[s + 1u] + part[s + 2u] + part[s + 3u]
            + part[s + 4u] + part[s + 5u] + part[s + 6u] + part[s + 7u];
        store(wg.z, m0, n0 + lid.x, acc);
    }
}
