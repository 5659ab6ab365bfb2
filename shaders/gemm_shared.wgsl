// GEMM with workgroup-shared tiles, for discrete and integrated GPUs:
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z],  op(A): m×k, op(B): k×n, row-major.
//
// A workgroup of 16×16 invocations computes a 64×64 block of C. Each k-step of 16 it
// stages op(A)[64 rows, 16] and op(B)[16, 64 columns] in workgroup memory (reading along
// each operand's stored rows so neighbouring invocations touch neighbouring addresses),
// then every invocation accumulates a 4×4 register tile from the staged values. Elements
// past the edges are staged as zero, so any m, n, k works.
//
// Dispatch: x covers n in steps of 64, y covers m in steps of 64, z is the batch index.

struct Params {
    m: u32,         // rows of op(A) and C
    n: u32,         // columns of op(B) and C
    k: u32,         // columns of op(A), rows of op(B)
    lda: u32,       // row length of A as stored ([m, k], or [k, m] when TRANS_A)
    ldb: u32,       // row length of B as stored ([k, n], or [n, k] when TRANS_B)
    ldc: u32,       // row length of C as stored
    a_off: u32,     // element offset of A[0][0] in the bound view
    b_off: u32,
    c_off: u32,
    stride_a: u32,  // elements between batch entries
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,      // 0: C is written without being read
    batch: u32,
    _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;          // A, [m, k] or [k, m]
@group(0) @binding(2) var<storage, read> wq: array<WQ>;          // B, [k, n] or [n, k]
@group(0) @binding(3) var<storage, read_write> c: array<f32>;    // C, [m, n] (row length ldc)
@group(0) @binding(4) var<storage, read> wq4: array<WQ4>;        // B as vec4 (the weights snippet's wload4; unused here)

var<workgroup> sa: array<f32, 1024>;  // op(A) block, [BK, BM]
var<workgroup> sb: array<f32, 1024>;  // op(B) block, [BK, BN]

fn load_a(base: u32, i: u32, k: u32) -> f32 {
    if (i >= p.m || k >= p.k) { return 0.0; }
    if (TRANS_A) { return a[base + k * p.lda + i]; }
    return a[base + i * p.lda + k];
}

fn load_b(base: u32, k: u32, j: u32) -> f32 {
    if (j >= p.n || k >= p.k) { return 0.0; }
    if (TRANS_B) { return wload(base + j * p.ldb + k); }
    return wload(base + k * p.ldb + j);
}

@compute @workgroup_size(16, 16)
fn gemm_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let t = lid.y * 16u + lid.x;
    let i0 = wg.y * BM;
    let j0 = wg.x * BN;
    let ab = p.a_off + wg.z * p.stride_a;
    let bb = p.b_off + wg.z * p.stride_b;
    var acc: array<vec4<f32>, 4>;   // acc[r][s]: row lid.y + 16r, column lid.x + 16s
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // 1024 elements per operand, 4 per invocation; e walks the stored row direction.
        for (var q = 0u; q < 4u; q++) {
            let e = q * 256u + t;
            if (TRANS_A) {
                sa[e] = load_a(ab, i0 + e % BM, k0 + e / BM);
            } else {
                sa[(e % BK) * BM + e / BK] = load_a(ab, i0 + e / BK, k0 + e % BK);
            }
            if (TRANS_B) {
                sb[(e % BK) * BN + e / BK] = load_b(bb, k0 + e % BK, j0 + e / BK);
            } else {
                sb[e] = load_b(bb, k0 + e / BN, j0 + e % BN);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = vec4<f32>(sa[kk * BM + lid.y], sa[kk * BM + lid.y + 16u],
                               sa[kk * BM + lid.y + 32u], sa[kk * BM + lid.y + 48u]);
            let bv = vec4<f32>(sb[kk * BN + lid.x], sb[kk * BN + lid.x + 16u],
                               sb[kk * BN + lid.x + 32u], sb[kk * BN + lid.x + 48u]);
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    let cb = p.c_off + wg.z * p.stride_c;
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + lid.y + 16u * r;
        if (i >= p.m) { continue; }
        for (var s = 0u; s < 4u; s++) {
            let j = j0 + lid.x + 16u * s;
            if (j < p.n) {
                let o = cb + i * p.ldc + j;
                var v = p.alpha * acc[r][s];
                if (p.beta != 0.0) {
                    v += p.beta * c[o];
                }
                c[o] = v;
            }
        }
    }
}
