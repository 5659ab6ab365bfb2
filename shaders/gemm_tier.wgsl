// GEMM tier for discrete GPUs:
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z],  op(A): m×k, op(B): k×n, row-major.
//
// A workgroup of (BN/8) × (BM/8) invocations computes a BM × BN block of C (128×128,
// 64×128 or 128×64); each invocation keeps an 8×8 block in 16 vec4 accumulators: rows
// 4·ty.. and BM/2 + 4·ty.., columns 4·tx.. and BN/2 + 4·tx.. . Splitting each invocation's
// rows (and columns) into two halves of the tile makes the 8 invocations of a row read 8
// consecutive vec4s of workgroup memory rather than 8 vec4s 32 bytes apart.
//
// Along k the tile advances BK = 8 at a time. op(A)[BM, 8] and op(B)[8, BN] are staged
// K-major, sa[kk][i] and sb[kk][j] in vec4s of 4 rows (columns), so each k costs two vec4
// reads of A and two of B per invocation for 64 FMAs. An operand read along k (A stored
// [m, k], B stored [n, k]) arrives in runs of 4 k's of one row, which would have to be
// scattered over 4 k rows a float at a time (and invocations would write parts of one
// vec4); instead it is staged "k-packed" in the same array, the vec4 at [4·kq + r][q]
// holding row 4·q + r at k = 4·kq..4·kq + 3, and transposed back in registers. Each k row
// carries one vec4 of padding, which puts the 8 invocations of one 128-bit store phase
// (4 rows × 2 k-quads) in distinct banks.
//
// Register-staged double buffering: the workgroup memory holds two copies of each tile.
// While step s is multiplied out of copy s % 2, every invocation already has the global
// loads of step s + 1 in flight into registers (ra, rb) and writes them to the other copy
// afterwards; one barrier per step then both publishes copy (s + 1) % 2 and retires copy
// s % 2, which the step after next overwrites. Workgroup memory: 2 · 8 · (BM + 4 + BN + 4)
// floats (what `Gpu::tile_fits` checks).
//
// Loads: each invocation stages 128/BN vec4s of op(A) and 128/BM of op(B) per step, each
// a run of 4 elements along the operand's stored rows (so neighbouring invocations touch
// neighbouring addresses). gemm_tier reads them as one vec4 and needs the stored row
// lengths, offsets and batch strides of A and B to be multiples of 4 (every vec4 then lies
// inside one stored row); gemm_tier_scalar reads them one float at a time and takes any
// layout. They bind A and B differently (an array<vec4> binding can neither be smaller
// than 16 bytes nor reach a trailing partial vec4), hence two entry points over the
// bindings of gemm_register.wgsl. Elements past m, n or k are loaded as zero (the loads
// themselves are skipped) and stores past m or n are skipped, so any m, n, k works and
// every access lies inside the bound views: the module runs without runtime bounds checks.
//
// Dispatch: the tiles of C are numbered in "grouped" order, 8 tile rows at a time column
// by column, so workgroups that run together share rows of A and columns of B in L2. The
// number is folded into x and y (x · y ≥ tiles; surplus workgroups return at once), z is
// the batch index.

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

const BK: u32 = 8u;
// Tile rows per group of the grouped workgroup order.
const GROUP_M: u32 = 8u;

override BM: u32 = 128u;
override BN: u32 = 128u;
override WG_X: u32 = BN / 8u;
override WG_Y: u32 = BM / 8u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
// vec4s per staged k row (the tile's row plus one of padding) and per double buffer.
override SA_ROW: u32 = BM / 4u + 1u;
override SB_ROW: u32 = BN / 4u + 1u;
override SA_LEN: u32 = 2u * BK * SA_ROW;
override SB_LEN: u32 = 2u * BK * SB_ROW;
// Staged vec4s per invocation and step: 2·BM (2·BN) per tile over BM·BN/64 invocations.
override LOADS_A: u32 = 2u * BM / (WG_X * WG_Y);
override LOADS_B: u32 = 2u * BN / (WG_X * WG_Y);

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;   // A, [m, k] or [k, m], as vec4
@group(0) @binding(2) var<storage, read> wq4: array<WQ4>;        // B, [k, n] or [n, k], as vec4
@group(0) @binding(3) var<storage, read> a1: array<f32>;         // A, [m, k] or [k, m]
@group(0) @binding(4) var<storage, read> wq: array<WQ>;          // B, [k, n] or [n, k]
@group(0) @binding(5) var<storage, read_write> c: array<f32>;    // C, [m, n] (row length ldc)

var<workgroup> sa: array<vec4<f32>, SA_LEN>;   // 2 × op(A) block, [BK][BM + 4]
var<workgroup> sb: array<vec4<f32>, SB_LEN>;   // 2 × op(B) block, [BK][BN + 4]

var<private> acc: array<vec4<f32>, 16>;   // acc[2r + h]: row r of the 8, column half h
var<private> ra: array<vec4<f32>, 2>;     // the next step's op(A) run(s), LOADS_A ≤ 2
var<private> rb: array<vec4<f32>, 2>;

// The (first row, first column) of the tile workgroup `wg` computes, in grouped order;
// x = m when the fold left this workgroup without a tile.
fn tile_origin(wg: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let tiles_m = (p.m + BM - 1u) / BM;
    let tiles_n = (p.n + BN - 1u) / BN;
    let id = wg.y * nwg.x + wg.x;
    if (id >= tiles_m * tiles_n) {
        return vec2<u32>(p.m, 0u);
    }
    let per_group = GROUP_M * tiles_n;
    let first = id / per_group * GROUP_M;
    let rows = min(tiles_m - first, GROUP_M);
    let r = id % per_group;
    return vec2<u32>((first + r % rows) * BM, r / rows * BN);
}

// Where run v of a step's op(A) tile starts: (row i, k) relative to the tile. A run goes
// along A's stored rows: along m when A is stored [k, m], else along k.
fn run_a(v: u32) -> vec2<u32> {
    if (TRANS_A) {
        return vec2<u32>(v % (BM / 4u) * 4u, v / (BM / 4u));
    }
    return vec2<u32>(v / 2u, v % 2u * 4u);
}

// (k, column j) of run v of op(B)'s tile: along n when B is stored [k, n], else along k.
fn run_b(v: u32) -> vec2<u32> {
    if (TRANS_B) {
        return vec2<u32>(v % 2u * 4u, v / 2u);
    }
    return vec2<u32>(v / (BN / 4u), v % (BN / 4u) * 4u);
}

// Lanes of a run starting at `first` that lie before `end`.
fn lanes(first: u32, end: u32) -> vec4<bool> {
    return vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(end);
}

// op(A)[i, k..k+3] (k..k+3 along the stored row when TRANS_A: op(A)[i..i+3, k]) as one
// vec4 load. The run lies in one stored row (row lengths and offsets are multiples of 4),
// so only its start needs checking; lanes past the edge are zeroed.
fn get_a4(base: u32, i: u32, k: u32) -> vec4<f32> {
    if (i >= p.m || k >= p.k) { return vec4<f32>(0.0); }
    if (TRANS_A) {
        return select(vec4<f32>(0.0), a4[(base + k * p.lda + i) / 4u], lanes(i, p.m));
    }
    return select(vec4<f32>(0.0), a4[(base + i * p.lda + k) / 4u], lanes(k, p.k));
}

fn get_b4(base: u32, k: u32, j: u32) -> vec4<f32> {
    if (j >= p.n || k >= p.k) { return vec4<f32>(0.0); }
    if (TRANS_B) {
        return select(vec4<f32>(0.0), wload4((base + j * p.ldb + k) / 4u), lanes(k, p.k));
    }
    return select(vec4<f32>(0.0), wload4((base + k * p.ldb + j) / 4u), lanes(j, p.n));
}

// The same runs one float at a time, each load only where its element exists.
fn get_a1(base: u32, i: u32, k: u32) -> vec4<f32> {
    var x = vec4<f32>(0.0);
    if (TRANS_A) {
        if (k < p.k) {
            let o = base + k * p.lda + i;
            for (var e = 0u; e < 4u; e++) {
                if (i + e < p.m) { x[e] = a1[o + e]; }
            }
        }
    } else if (i < p.m) {
        let o = base + i * p.lda + k;
        for (var e = 0u; e < 4u; e++) {
            if (k + e < p.k) { x[e] = a1[o + e]; }
        }
    }
    return x;
}

fn get_b1(base: u32, k: u32, j: u32) -> vec4<f32> {
    var x = vec4<f32>(0.0);
    if (TRANS_B) {
        if (j < p.n) {
            let o = base + j * p.ldb + k;
            for (var e = 0u; e < 4u; e++) {
                if (k + e < p.k) { x[e] = wload(o + e); }
            }
        }
    } else if (k < p.k) {
        let o = base + k * p.ldb + j;
        for (var e = 0u; e < 4u; e++) {
            if (j + e < p.n) { x[e] = wload(o + e); }
        }
    }
    return x;
}

// Writes the staged runs into copy `buf` of the tiles, always as whole vec4s (no two
// invocations write parts of one vec4). A run along m or n is one vec4 of its k row. A run
// along k (4 k's of one row i of op(A)) goes to k row 4·(k/4) + i % 4, vec4 i / 4: the
// "k-packed" form of the same array, which multiply() transposes back in registers.
fn stage(tid: u32, buf: u32) {
    let oa = buf * BK * SA_ROW;
    for (var q = 0u; q < LOADS_A; q++) {
        let r = run_a(q * WG_X * WG_Y + tid);
        if (TRANS_A) {
            sa[oa + r.y * SA_ROW + r.x / 4u] = ra[q];
        } else {
            sa[oa + (r.y + r.x % 4u) * SA_ROW + r.x / 4u] = ra[q];
        }
    }
    let ob = buf * BK * SB_ROW;
    for (var q = 0u; q < LOADS_B; q++) {
        let r = run_b(q * WG_X * WG_Y + tid);
        if (TRANS_B) {
            sb[ob + (r.x + r.y % 4u) * SB_ROW + r.y / 4u] = rb[q];
        } else {
            sb[ob + r.x * SB_ROW + r.y / 4u] = rb[q];
        }
    }
}

// op(A) at k = 4·kq + e (e < 4) for the invocation's rows, from copy offset o: element
// 2e + h is the vec4 over rows 4·ty.. (h = 0) or BM/2 + 4·ty.. (h = 1).
fn quad_a(o: u32, ty: u32, kq: u32) -> array<vec4<f32>, 8> {
    let row = o + 4u * kq * SA_ROW;
    var x: array<vec4<f32>, 8>;
    for (var h = 0u; h < 2u; h++) {
        let q = row + ty + h * (BM / 8u);
        let v0 = sa[q];
        let v1 = sa[q + SA_ROW];
        let v2 = sa[q + 2u * SA_ROW];
        let v3 = sa[q + 3u * SA_ROW];
        if (TRANS_A) {
            // K-major: v_e is op(A)[rows, 4·kq + e].
            x[h] = v0; x[2u + h] = v1; x[4u + h] = v2; x[6u + h] = v3;
        } else {
            // K-packed: v_e is op(A)[row 4·q + e, 4·kq..4·kq + 3].
            x[h] = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
            x[2u + h] = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
            x[4u + h] = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
            x[6u + h] = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
        }
    }
    return x;
}

// op(B) at k = 4·kq + e for the invocation's columns, as [quad_a]: 2e + h is the vec4
// over columns 4·tx.. (h = 0) or BN/2 + 4·tx.. (h = 1).
fn quad_b(o: u32, tx: u32, kq: u32) -> array<vec4<f32>, 8> {
    let row = o + 4u * kq * SB_ROW;
    var y: array<vec4<f32>, 8>;
    for (var h = 0u; h < 2u; h++) {
        let q = row + tx + h * (BN / 8u);
        let v0 = sb[q];
        let v1 = sb[q + SB_ROW];
        let v2 = sb[q + 2u * SB_ROW];
        let v3 = sb[q + 3u * SB_ROW];
        if (TRANS_B) {
            y[h] = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
            y[2u + h] = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
            y[4u + h] = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
            y[6u + h] = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
        } else {
            y[h] = v0; y[2u + h] = v1; y[4u + h] = v2; y[6u + h] = v3;
        }
    }
    return y;
}

// acc += the 8×8 block's share of copy `buf`: 8 vec4 reads of each operand feed 256 FMAs
// per 4 k's.
fn multiply(tx: u32, ty: u32, buf: u32) {
    for (var kq = 0u; kq < BK / 4u; kq++) {
        let x = quad_a(buf * BK * SA_ROW, ty, kq);
        let y = quad_b(buf * BK * SB_ROW, tx, kq);
        for (var e = 0u; e < 4u; e++) {
            let x0 = x[2u * e];
            let x1 = x[2u * e + 1u];
            let y0 = y[2u * e];
            let y1 = y[2u * e + 1u];
            acc[0] += x0.x * y0;   acc[1] += x0.x * y1;
            acc[2] += x0.y * y0;   acc[3] += x0.y * y1;
            acc[4] += x0.z * y0;   acc[5] += x0.z * y1;
            acc[6] += x0.w * y0;   acc[7] += x0.w * y1;
            acc[8] += x1.x * y0;   acc[9] += x1.x * y1;
            acc[10] += x1.y * y0;  acc[11] += x1.y * y1;
            acc[12] += x1.z * y0;  acc[13] += x1.z * y1;
            acc[14] += x1.w * y0;  acc[15] += x1.w * y1;
        }
    }
}

// Writes columns j.. (v0) and j + BN/2.. (v1) of row i: alpha · acc + beta · C.
fn store_row(base: u32, i: u32, j: u32, v0: vec4<f32>, v1: vec4<f32>) {
    if (i >= p.m) { return; }
    let row = base + i * p.ldc;
    for (var e = 0u; e < 8u; e++) {
        let col = j + select(e, BN / 2u + e - 4u, e >= 4u);
        if (col < p.n) {
            var v = p.alpha * select(v0[e % 4u], v1[e % 4u], e >= 4u);
            if (p.beta != 0.0) {
                v += p.beta * c[row + col];
            }
            c[row + col] = v;
        }
    }
}

fn store_tile(z: u32, tx: u32, ty: u32, origin: vec2<u32>) {
    let base = p.c_off + z * p.stride_c;
    let i = origin.x + 4u * ty;
    let h = origin.x + BM / 2u + 4u * ty;
    let j = origin.y + 4u * tx;
    store_row(base, i, j, acc[0], acc[1]);
    store_row(base, i + 1u, j, acc[2], acc[3]);
    store_row(base, i + 2u, j, acc[4], acc[5]);
    store_row(base, i + 3u, j, acc[6], acc[7]);
    store_row(base, h, j, acc[8], acc[9]);
    store_row(base, h + 1u, j, acc[10], acc[11]);
    store_row(base, h + 2u, j, acc[12], acc[13]);
    store_row(base, h + 3u, j, acc[14], acc[15]);
}

// Loads the runs of the step starting at k0 into ra and rb as vec4s.
fn fetch4(ab: u32, bb: u32, origin: vec2<u32>, tid: u32, k0: u32) {
    for (var q = 0u; q < LOADS_A; q++) {
        let r = run_a(q * WG_X * WG_Y + tid);
        ra[q] = get_a4(ab, origin.x + r.x, k0 + r.y);
    }
    for (var q = 0u; q < LOADS_B; q++) {
        let r = run_b(q * WG_X * WG_Y + tid);
        rb[q] = get_b4(bb, k0 + r.x, origin.y + r.y);
    }
}

// [fetch4] one float at a time.
fn fetch1(ab: u32, bb: u32, origin: vec2<u32>, tid: u32, k0: u32) {
    for (var q = 0u; q < LOADS_A; q++) {
        let r = run_a(q * WG_X * WG_Y + tid);
        ra[q] = get_a1(ab, origin.x + r.x, k0 + r.y);
    }
    for (var q = 0u; q < LOADS_B; q++) {
        let r = run_b(q * WG_X * WG_Y + tid);
        rb[q] = get_b1(bb, k0 + r.x, origin.y + r.y);
    }
}

// The two entry points differ only in their fetch (each may reference only its own
// bindings). The k loop runs at least the first fetch, so k = 0 writes beta · C.
@compute @workgroup_size(WG_X, WG_Y)
fn gemm_tier(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let origin = tile_origin(wg, nwg);
    if (origin.x >= p.m) { return; }
    let ab = p.a_off + wg.z * p.stride_a;
    let bb = p.b_off + wg.z * p.stride_b;
    let tid = lid.y * WG_X + lid.x;
    let steps = (p.k + BK - 1u) / BK;
    fetch4(ab, bb, origin, tid, 0u);
    stage(tid, 0u);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let more = s + 1u < steps;
        if (more) { fetch4(ab, bb, origin, tid, (s + 1u) * BK); }
        multiply(lid.x, lid.y, s % 2u);
        if (more) { stage(tid, (s + 1u) % 2u); }
        workgroupBarrier();
    }
    store_tile(wg.z, lid.x, lid.y, origin);
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm_tier_scalar(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let origin = tile_origin(wg, nwg);
    if (origin.x >= p.m) { return; }
    let ab = p.a_off + wg.z * p.stride_a;
    let bb = p.b_off + wg.z * p.stride_b;
    let tid = lid.y * WG_X + lid.x;
    let steps = (p.k + BK - 1u) / BK;
    fetch1(ab, bb, origin, tid, 0u);
    stage(tid, 0u);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let more = s + 1u < steps;
        if (more) { fetch1(ab, bb, origin, tid, (s + 1u) * BK); }
        multiply(lid.x, lid.y, s % 2u);
        if (more) { stage(tid, (s + 1u) % 2u); }
        workgroupBarrier();
    }
    store_tile(wg.z, lid.x, lid.y, origin);
}
