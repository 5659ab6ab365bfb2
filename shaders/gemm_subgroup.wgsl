// GEMM for CPU adapters with 8-lane subgroups (llvmpipe on AVX2):
//   C[z] = alpha · A[z] · op(B[z]) + beta · C[z],  A: m×k row-major, op(B) = B (NN, B [k, n])
//   or Bᵀ (NT, B [n, k]), C row-major with row length ldc.
//
// Why subgroups: llvmpipe compiles a storage-buffer load whose address differs across
// lanes into a loop over the lanes (about 20 instructions each), and the register GEMM is
// bound by those loads, not by its FMAs. Here the 8 lanes of a subgroup share 16 rows of
// A: each lane loads 2 of the rows (one vec4 along k each) and `subgroupBroadcast` hands
// every row to every lane, which llvmpipe compiles to a register shuffle. Each lane keeps
// its own 4 columns of op(B). Per step of 4 along k a lane issues 2 + 4 per-lane loads for
// 16 · 4 · 4 = 256 FMAs, where the register kernel issues 12 per 256. Measured on
// lavapipe (Mesa 22.3) that wins on skinny products (LoRA's rank-32 ones: 1.6–2.8× the
// register tile), ties at 256³ and loses on large square ones (1024³: 0.85×; with 8
// columns per lane: 0.7×), so it is a candidate
// `boha tune` times per shape, not a default.
//
// Tiles: a subgroup computes 16 rows × 32 columns (lane l: columns 4l..4l+3), a workgroup
// stacks WG_Y subgroups along m. Rows and columns past the edges are loaded clamped (valid
// memory, never stored), so every lane runs every broadcast (they need uniform control
// flow). The dispatcher guarantees vec4 access: k, lda, the offsets and batch strides are
// multiples of 4, and for NN also n and ldb.
//
// Dispatch: x covers n in steps of 32, y covers m in steps of 16 · WG_Y, z is the batch.
// Requires the adapter's subgroup size to be exactly 8 (`subgroup_min_size` =
// `subgroup_max_size` = 8), so that a subgroup is one row of 8 invocations.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    batch: u32,
    _pad: u32,
}

override TRANS_B: bool = true;
override WG_Y: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // A [m, k]
@group(0) @binding(2) var<storage, read> wq4: array<WQ4>;          // B [n, k] (NT) or [k, n] (NN)
@group(0) @binding(3) var<storage, read_write> c: array<f32>;       // C [m, n]
@group(0) @binding(4) var<storage, read> wq: array<WQ>;            // B as elements (the weights snippet's wload; unused here)

const TM: u32 = 16u;  // rows per subgroup
const TN: u32 = 4u;   // columns per lane

@compute @workgroup_size(8, WG_Y)
fn gemm_subgroup(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let lane = lid.x;
    let i0 = (wg.y * WG_Y + lid.y) * TM;
    let j0 = wg.x * 32u + lane * TN;
    let ab = (p.a_off + wg.z * p.stride_a) / 4u;
    let bb = (p.b_off + wg.z * p.stride_b) / 4u;
    let lda4 = p.lda / 4u;
    let ldb4 = p.ldb / 4u;
    let last_row = p.m - 1u;
    // This lane's two rows of A (clamped: their values are broadcast but never stored).
    let ra0 = ab + min(i0 + lane, last_row) * lda4;
    let ra1 = ab + min(i0 + lane + 8u, last_row) * lda4;
    var acc: array<vec4<f32>, 16>;   // acc[r]: row i0 + r, columns j0 .. j0 + 3
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {
        let mine0 = a[ra0 + k4];
        let mine1 = a[ra1 + k4];
        // op(B) for this step: bt[s] holds column j0 + s along k (NT), or row k + s across
        // columns j0 .. j0 + 3 (NN).
        var bt: array<vec4<f32>, 4>;
        if (TRANS_B) {
            for (var s = 0u; s < TN; s++) {
                bt[s] = wload4(bb + min(j0 + s, p.n - 1u) * ldb4 + k4);
            }
        } else {
            let col4 = min(j0, p.n - 4u) / 4u;
            for (var s = 0u; s < 4u; s++) {
                bt[s] = wload4(bb + (k4 * 4u + s) * ldb4 + col4);
            }
        }
        // Broadcast indices must be constants: one line per row.
        row_step(&acc, 0u, subgroupBroadcast(mine0, 0u), &bt);
        row_step(&acc, 1u, subgroupBroadcast(mine0, 1u), &bt);
        row_step(&acc, 2u, subgroupBroadcast(mine0, 2u), &bt);
        row_step(&acc, 3u, subgroupBroadcast(mine0, 3u), &bt);
        row_step(&acc, 4u, subgroupBroadcast(mine0, 4u), &bt);
        row_step(&acc, 5u, subgroupBroadcast(mine0, 5u), &bt);
        row_step(&acc, 6u, subgroupBroadcast(mine0, 6u), &bt);
        row_step(&acc, 7u, subgroupBroadcast(mine0, 7u), &bt);
        row_step(&acc, 8u, subgroupBroadcast(mine1, 0u), &bt);
        row_step(&acc, 9u, subgroupBroadcast(mine1, 1u), &bt);
        row_step(&acc, 10u, subgroupBroadcast(mine1, 2u), &bt);
        row_step(&acc, 11u, subgroupBroadcast(mine1, 3u), &bt);
        row_step(&acc, 12u, subgroupBroadcast(mine1, 4u), &bt);
        row_step(&acc, 13u, subgroupBroadcast(mine1, 5u), &bt);
        row_step(&acc, 14u, subgroupBroadcast(mine1, 6u), &bt);
        row_step(&acc, 15u, subgroupBroadcast(mine1, 7u), &bt);
    }
    let cb = p.c_off + wg.z * p.stride_c;
    for (var r = 0u; r < TM; r++) {
        let i = i0 + r;
        if (i >= p.m) { break; }
        for (var s = 0u; s < TN; s++) {
            let j = j0 + s;
            if (j >= p.n) { break; }
            let o = cb + i * p.ldc + j;
            var v = p.alpha * acc[r][s];
            if (p.beta != 0.0) { v += p.beta * c[o]; }
            c[o] = v;
        }
    }
}

// Row r of this k step: acc[r, s] += A[r, k..k+4] · op(B)[k..k+4, s] for the lane's 4 columns.
fn row_step(acc: ptr<function, array<vec4<f32>, 16>>, r: u32, av: vec4<f32>, bt: ptr<function, array<vec4<f32>, 4>>) {
    if (TRANS_B) {
        (*acc)[r] += vec4<f32>(dot(av, (*bt)[0]), dot(av, (*bt)[1]), dot(av, (*bt)[2]), dot(av, (*bt)[3]));
    } else {
        (*acc)[r] += av.x * (*bt)[0] + av.y * (*bt)[1] + av.z * (*bt)[2] + av.w * (*bt)[3];
    }
}
