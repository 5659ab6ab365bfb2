// GEMM with register tiles, for CPU-type adapters (llvmpipe / lavapipe):
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z],  op(A): m×k, op(B): k×n, row-major.
//
// Each invocation computes a 16×16 tile of C held in sixteen 4×4 matrices, reading A and B
// straight from global memory: no workgroup memory and no barriers, which cost llvmpipe a
// coroutine switch per SIMD vector. llvmpipe runs 8 invocations as one SIMD vector and
// loads every per-invocation address one lane at a time (~20 instructions per lane and
// load), so loads, not FMAs, bound this kernel; the 16×16 tile maximises FMAs per load
// (each k-step of 4, 32 vec4 loads feed 1024 FMAs) and vec4 loads halve the per-element
// load cost. (llvmpipe also splits FMAs into a multiply and an add; the FMA peak in
// bench.wgsl is measured the same way.)
//
// Dispatch: workgroups of WG_X × WG_Y invocations; x covers n in steps of T·WG_X, y covers
// m in steps of T·WG_Y (T = 16 for gemm_vec4, 8 for gemm_scalar), z is the batch index.
// Rows and columns past the edge are clamped on load and skipped on store, so any m, n
// works.
//
// Entry points: gemm_vec4 loads vec4s along each operand's stored rows and needs k, the
// row lengths, offsets, strides and the extents read along rows to be multiples of 4;
// gemm_scalar takes any shape, one k at a time, with an 8×8 tile (blocks c00, c01,
// c10, c11) because llvmpipe takes many seconds to compile a 16×16 tile of scalar loads.

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

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;   // A, [m, k] or [k, m], as vec4
@group(0) @binding(2) var<storage, read> wq4: array<WQ4>;        // B, [k, n] or [n, k], as vec4
@group(0) @binding(3) var<storage, read> a1: array<f32>;         // A, [m, k] or [k, m]
@group(0) @binding(4) var<storage, read> wq: array<WQ>;          // B, [k, n] or [n, k]
@group(0) @binding(5) var<storage, read_write> c: array<f32>;    // C, [m, n] (row length ldc)

// The 16×16 tile: block (r, s) holds rows 4r.., columns 4s..; column j of a block is the
// vector over its 4 rows.
var<private> c00: mat4x4<f32>;
var<private> c01: mat4x4<f32>;
var<private> c02: mat4x4<f32>;
var<private> c03: mat4x4<f32>;
var<private> c10: mat4x4<f32>;
var<private> c11: mat4x4<f32>;
var<private> c12: mat4x4<f32>;
var<private> c13: mat4x4<f32>;
var<private> c20: mat4x4<f32>;
var<private> c21: mat4x4<f32>;
var<private> c22: mat4x4<f32>;
var<private> c23: mat4x4<f32>;
var<private> c30: mat4x4<f32>;
var<private> c31: mat4x4<f32>;
var<private> c32: mat4x4<f32>;
var<private> c33: mat4x4<f32>;

// Adds one k-step of 4 for tile row r: a holds op(A)[4r.., k0..k0+3] as columns over k,
// b0..b3 hold op(B)[k0..k0+3, 4s..] as columns over the tile's columns. Loading A one block
// at a time keeps fewer values live than loading the whole step first.
fn update_row(r: u32, a: mat4x4<f32>, b0: mat4x4<f32>, b1: mat4x4<f32>, b2: mat4x4<f32>, b3: mat4x4<f32>) {
    switch r {
        case 0u: { c00 += a * b0; c01 += a * b1; c02 += a * b2; c03 += a * b3; }
        case 1u: { c10 += a * b0; c11 += a * b1; c12 += a * b2; c13 += a * b3; }
        case 2u: { c20 += a * b0; c21 += a * b1; c22 += a * b2; c23 += a * b3; }
        default: { c30 += a * b0; c31 += a * b1; c32 += a * b2; c33 += a * b3; }
    }
}

// Where the vec4 loads of a 4-row (or 4-column) block start, computed once per invocation
// (llvmpipe does not hoist them out of the k loop): for an operand stored with the block's
// rows along its stored rows, the vec4 index of each of the 4 stored rows (clamped to the
// last row); otherwise the vec4 index of the block's first element (x only).
fn rows_a(base: u32, i0: u32) -> vec4<u32> {
    if (TRANS_A) {
        return vec4<u32>((base + min(i0, p.m - 4u)) / 4u);
    }
    let s = p.lda / 4u;
    let r = min(vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    return vec4<u32>(base / 4u) + r * s;
}

fn rows_b(base: u32, j0: u32) -> vec4<u32> {
    if (TRANS_B) {
        let s = p.ldb / 4u;
        let r = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
        return vec4<u32>(base / 4u) + r * s;
    }
    return vec4<u32>((base + min(j0, p.n - 4u)) / 4u);
}

// op(A)[block rows, k0..k0+3] as columns over k, from vec4s along A's stored rows.
fn load_a4(rows: vec4<u32>, k0: u32) -> mat4x4<f32> {
    if (TRANS_A) {
        // Stored [k, m]: each stored row segment is one column of the block.
        let s = p.lda / 4u;
        let q = rows.x + k0 * s;
        return mat4x4<f32>(a4[q], a4[q + s], a4[q + 2u * s], a4[q + 3u * s]);
    }
    let q = k0 / 4u;
    return transpose(mat4x4<f32>(a4[rows.x + q], a4[rows.y + q], a4[rows.z + q], a4[rows.w + q]));
}

// op(B)[k0..k0+3, block columns] as columns over j, from vec4s along B's stored rows.
fn load_b4(rows: vec4<u32>, k0: u32) -> mat4x4<f32> {
    if (TRANS_B) {
        // Stored [n, k]: each stored row segment is one column of the block.
        let q = k0 / 4u;
        return mat4x4<f32>(wload4(rows.x + q), wload4(rows.y + q), wload4(rows.z + q), wload4(rows.w + q));
    }
    let s = p.ldb / 4u;
    let q = rows.x + k0 * s;
    return transpose(mat4x4<f32>(wload4(q), wload4(q + s), wload4(q + 2u * s), wload4(q + 3u * s)));
}

// Scalar path, one k at a time: where each of a block's 4 rows (columns) is read. For an
// operand stored with the block's index along its stored rows, the start of each of the
// 4 (clamped) stored rows; otherwise the 4 clamped indices along a stored row.
fn lanes_a(base: u32, i0: u32) -> vec4<u32> {
    let i = min(vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    if (TRANS_A) {
        return vec4<u32>(base) + i;
    }
    return vec4<u32>(base) + i * p.lda;
}

fn lanes_b(base: u32, j0: u32) -> vec4<u32> {
    let j = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    if (TRANS_B) {
        return vec4<u32>(base) + j * p.ldb;
    }
    return vec4<u32>(base) + j;
}

// op(A)[block rows, k] or op(B)[k, block columns] as a vector over the block.
fn col_a(l: vec4<u32>, k: u32) -> vec4<f32> {
    let o = select(vec4<u32>(k), vec4<u32>(k * p.lda), TRANS_A) + l;
    return vec4<f32>(a1[o.x], a1[o.y], a1[o.z], a1[o.w]);
}

fn row_b(l: vec4<u32>, k: u32) -> vec4<f32> {
    let o = select(vec4<u32>(k * p.ldb), vec4<u32>(k), TRANS_B) + l;
    return vec4<f32>(wload(o.x), wload(o.y), wload(o.z), wload(o.w));
}

// The rank-1 update a·bᵀ of a 4×4 block (columns over the block's columns).
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// Writes block t (rows i0.., columns j0..) of the tile: alpha · t + beta · C.
fn store_block(base: u32, i0: u32, j0: u32, t: mat4x4<f32>) {
    for (var s = 0u; s < 4u; s++) {
        let j = j0 + s;
        if (j >= p.n) { return; }
        for (var r = 0u; r < 4u; r++) {
            let i = i0 + r;
            if (i < p.m) {
                let o = base + i * p.ldc + j;
                var v = p.alpha * t[s][r];
                if (p.beta != 0.0) {
                    v += p.beta * c[o];
                }
                c[o] = v;
            }
        }
    }
}

fn store_tile(z: u32, i0: u32, j0: u32) {
    let base = p.c_off + z * p.stride_c;
    store_block(base, i0, j0, c00);
    store_block(base, i0, j0 + 4u, c01);
    store_block(base, i0, j0 + 8u, c02);
    store_block(base, i0, j0 + 12u, c03);
    store_block(base, i0 + 4u, j0, c10);
    store_block(base, i0 + 4u, j0 + 4u, c11);
    store_block(base, i0 + 4u, j0 + 8u, c12);
    store_block(base, i0 + 4u, j0 + 12u, c13);
    store_block(base, i0 + 8u, j0, c20);
    store_block(base, i0 + 8u, j0 + 4u, c21);
    store_block(base, i0 + 8u, j0 + 8u, c22);
    store_block(base, i0 + 8u, j0 + 12u, c23);
    store_block(base, i0 + 12u, j0, c30);
    store_block(base, i0 + 12u, j0 + 4u, c31);
    store_block(base, i0 + 12u, j0 + 8u, c32);
    store_block(base, i0 + 12u, j0 + 12u, c33);
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 16u;
    let j0 = gid.x * 16u;
    if (i0 >= p.m || j0 >= p.n) { return; }
    let ab = p.a_off + gid.z * p.stride_a;
    let bb = p.b_off + gid.z * p.stride_b;
    let ra0 = rows_a(ab, i0);
    let ra1 = rows_a(ab, i0 + 4u);
    let ra2 = rows_a(ab, i0 + 8u);
    let ra3 = rows_a(ab, i0 + 12u);
    let rb0 = rows_b(bb, j0);
    let rb1 = rows_b(bb, j0 + 4u);
    let rb2 = rows_b(bb, j0 + 8u);
    let rb3 = rows_b(bb, j0 + 12u);
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b0 = load_b4(rb0, k0);
        let b1 = load_b4(rb1, k0);
        let b2 = load_b4(rb2, k0);
        let b3 = load_b4(rb3, k0);
        update_row(0u, load_a4(ra0, k0), b0, b1, b2, b3);
        update_row(1u, load_a4(ra1, k0), b0, b1, b2, b3);
        update_row(2u, load_a4(ra2, k0), b0, b1, b2, b3);
        update_row(3u, load_a4(ra3, k0), b0, b1, b2, b3);
    }
    store_tile(gid.z, i0, j0);
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm_scalar(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 8u;
    let j0 = gid.x * 8u;
    if (i0 >= p.m || j0 >= p.n) { return; }
    let ab = p.a_off + gid.z * p.stride_a;
    let bb = p.b_off + gid.z * p.stride_b;
    let la0 = lanes_a(ab, i0);
    let la1 = lanes_a(ab, i0 + 4u);
    let lb0 = lanes_b(bb, j0);
    let lb1 = lanes_b(bb, j0 + 4u);
    for (var k = 0u; k < p.k; k++) {
        let b0 = row_b(lb0, k);
        let b1 = row_b(lb1, k);
        let a0 = col_a(la0, k);
        let a1 = col_a(la1, k);
        c00 += outer(a0, b0); c01 += outer(a0, b1);
        c10 += outer(a1, b0); c11 += outer(a1, b1);
    }
    let base = p.c_off + gid.z * p.stride_c;
    store_block(base, i0, j0, c00);
    store_block(base, i0, j0 + 4u, c01);
    store_block(base, i0 + 4u, j0, c10);
    store_block(base, i0 + 4u, j0 + 4u, c11);
}
