// Fused adapter gradients (every kind the fused kernels run) without any d_out × d_in
// buffer. A template: the adapter kind's snippet (shaders/kinds/) is prepended and
// defines GROUPS, SLOPE_READS_W0 and slope4 = ∂W'/∂m.
//
// With G = dY (T × d_out), X (T × d_in) and Ĝ = Gᵀ X, per block (i, j) of the b × b grid
// and rank group g (ranks g·h .. (g + 1)·h, h = r_b / GROUPS):
//   H_ij = Ĝ_ij ⊙ ∂W'/∂m  (s·W0 for BoHA and HiRA, s for the additive kinds)
//   H_g  = H_ij ⊙ Π_{g' ≠ g} B_g'A_g'                 (the other group's product; pairs)
//   dB_g = H_g A_gᵀ   (p × h)                          dA_g = B_gᵀ H_g   (h × q)
//
// Each block is cut into strips_r × strips_c rectangular regions, each owned by one
// workgroup, which walks it in 64 × 64 tiles: it forms a tile of Ĝ over all tokens, turns
// it into H and contracts it with A and B at once. A region's dB rows are summed over the
// region's columns only, its dA columns over the region's rows only: those are the
// partials, one slot per column strip (dB) and per row strip (dA) — `sub` = 4 slots per
// strip for grad_reg4_backward, one per column (row) of its 16 × 16 sub-tiles — each
// element written by exactly one invocation (no float atomics needed).
// `grad_reduce_backward` then adds the slots into grad_a / grad_b. Scratch is
// sub·(strips_r·|A| + strips_c·|B|), a small multiple of the adapter's parameters.
//
// The kernels only ever add into the slots; the reduce pass reads them and leaves them
// zero for the next run (they start zeroed), so token chunks simply add up.
//
// Loop budget: llvmpipe (lavapipe) ends every loop once an invocation has run 65535 loop
// iterations in all, silently. The host keeps each invocation's count (tiles per region
// × iterations per tile) well below that by sizing regions and token chunks.

struct Params {
    tokens: u32,      // T: rows of x and dy bound in this dispatch
    d_out: u32,
    d_in: u32,
    nb: u32,          // b, the grid size
    bp: u32,          // p = d_out / b
    bq: u32,          // q = d_in / b
    rb: u32,          // r_b
    _pad3: u32,
    scale: f32,       // s
    strips_r: u32,    // row strips per block
    strips_c: u32,    // column strips per block
    strip_rows: u32,  // rows per row strip
    strip_cols: u32,  // columns per column strip
    sub: u32,         // partial slots per strip: 1, or 4 for grad_reg4_backward (reduce pass)
    regions: u32,     // b²·strips_r·strips_c
    n_a: u32,         // |A| = b²·r_b·q (reduce pass)
    n_b: u32,         // |B| = b²·p·r_b (reduce pass)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wq: array<WQ>;             // [d_out, d_in]
@group(0) @binding(2) var<storage, read> x: array<f32>;             // [T, d_in]
@group(0) @binding(3) var<storage, read> dy: array<f32>;            // [T, d_out]
@group(0) @binding(4) var<storage, read> fa: array<f32>;            // A: [b, b, r_b, q]
@group(0) @binding(5) var<storage, read> fb: array<f32>;            // B: [b, b, p, r_b]
@group(0) @binding(6) var<storage, read_write> part_a: array<f32>;  // [strips_r, b, b, r_b, q]
@group(0) @binding(7) var<storage, read_write> part_b: array<f32>;  // [strips_c, b, b, p, r_b]
@group(0) @binding(8) var<storage, read_write> grad_a: array<f32>;  // [b, b, r_b, q]
@group(0) @binding(9) var<storage, read_write> grad_b: array<f32>;  // [b, b, p, r_b]



struct Region {
    blk: u32,     // block index i·b + j
    bi: u32,
    bj: u32,
    sr: u32,      // row strip
    sc: u32,      // column strip
    r_lo: u32,    // block-local rows [r_lo, r_hi)
    r_hi: u32,
    c_lo: u32,    // block-local columns [c_lo, c_hi)
    c_hi: u32,
}

fn region(rid: u32) -> Region {
    var g: Region;
    g.sc = rid % p.strips_c;
    g.sr = (rid / p.strips_c) % p.strips_r;
    g.blk = rid / (p.strips_c * p.strips_r);
    g.bi = g.blk / p.nb;
    g.bj = g.blk % p.nb;
    g.r_lo = g.sr * p.strip_rows;
    g.r_hi = min(p.bp, g.r_lo + p.strip_rows);
    g.c_lo = g.sc * p.strip_cols;
    g.c_hi = min(p.bq, g.c_lo + p.strip_cols);
    return g;
}


// ---------------------------------------------------------------------------------------
// Both families: one workgroup per region, walking it in 64 × 64 tiles of Ĝ, each
// invocation owning a register tile of it. They differ only in how the tile is reduced
// over the tokens. After that, H goes to workgroup memory (store_h), where the
// contractions read it (tile_contract).
const TS: u32 = 64u;   // tile side
const KT: u32 = 16u;   // tokens per step (shared family)
var<workgroup> smem: array<f32, 4096>;  // staging [2][KT][TS] (shared family), H [TS][TS]

// Ranks per group.
fn group_rank() -> u32 {
    return p.rb / GROUPS;
}

// The ranks [k0, k1) of the group other than `grp` (pairs only).
fn other_group(grp: u32) -> vec2<u32> {
    let h = group_rank();
    return vec2<u32>((1u - grp) * h, (2u - grp) * h);
}

// Σ_{k0 <= k < k1} B[row rl, k]·A[k, columns cl] of block `blk` (block-local row and
// columns).
fn group_sum4(blk: u32, rl: u32, cl: vec4<u32>, k: vec2<u32>) -> vec4<f32> {
    let brow = (blk * p.bp + rl) * p.rb;
    let acol = blk * p.rb * p.bq;
    var m = vec4<f32>(0.0);
    for (var kk = k.x; kk < k.y; kk++) {
        let a = acol + kk * p.bq;
        m = fma(vec4<f32>(fb[brow + kk]), vec4<f32>(fa[a + cl.x], fa[a + cl.y], fa[a + cl.z], fa[a + cl.w]), m);
    }
    return m;
}

// Writes H (rank group `grp`) for 4 adjacent columns of one tile row into workgroup
// memory. Rows and columns past the block read a valid weight; their Ĝ is 0.
fn store_h(g: Region, r0: u32, c0: u32, i: u32, j: u32, acc: vec4<f32>, grp: u32) {
    let rl = min(r0 + i, p.bp - 1u);
    let cl = min(vec4<u32>(c0 + j) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.bq - 1u));
    var w = vec4<f32>(0.0);
    if (SLOPE_READS_W0) {
        let wr = (g.bi * p.bp + rl) * p.d_in + g.bj * p.bq;
        w = vec4<f32>(wload(wr + cl.x), wload(wr + cl.y), wload(wr + cl.z), wload(wr + cl.w));
    }
    var h = acc * slope4(w, p.scale);
    if (GROUPS == 2u) { h *= group_sum4(g.blk, rl, cl, other_group(grp)); }
    let hb = i * TS + j;
    smem[hb] = h.x;
    smem[hb + 1u] = h.y;
    smem[hb + 2u] = h.z;
    smem[hb + 3u] = h.w;
}

// With H of the tile in workgroup memory: its contractions with the ranks k0 .. k0 + kn
// of A and B, added into this region's slots by the `nthreads` invocations. Called in
// uniform control flow: it holds the barriers around the reads of H.
fn tile_contract(tid: u32, nthreads: u32, g: Region, r0: u32, c0: u32, k0: u32, kn: u32) {
    workgroupBarrier();
    let nbb = p.nb * p.nb;
    let a_base = g.blk * p.rb * p.bq;
    let b_base = g.blk * p.bp * p.rb;
    let pa_base = (g.sr * nbb + g.blk) * p.rb * p.bq;
    let pb_base = (g.sc * nbb + g.blk) * p.bp * p.rb;
    // dB partial: rows of this tile, summed over its columns. Reads are rotated by the row
    // so that a warp's rows fall in different memory banks.
    let rows = min(TS, g.r_hi - r0);
    let cols = min(TS, g.c_hi - c0);
    for (var e = tid; e < TS * kn; e += nthreads) {
        let o = e / kn;
        let k = k0 + e % kn;
        if (o < rows) {
            var s = 0.0;
            for (var c = 0u; c < TS; c++) {
                let cr = (c + o) % TS;
                let cl = min(c0 + cr, p.bq - 1u);
                s += smem[o * TS + cr] * fa[a_base + k * p.bq + cl];
            }
            part_b[pb_base + (r0 + o) * p.rb + k] += s;
        }
    }
    // dA partial: columns of this tile, summed over its rows.
    for (var e = tid; e < TS * kn; e += nthreads) {
        let c = e % TS;
        let k = k0 + e / TS;
        if (c < cols) {
            var s = 0.0;
            for (var o = 0u; o < rows; o++) {
                s += smem[o * TS + c] * fb[b_base + (r0 + o) * p.rb + k];
            }
            part_a[pa_base + k * p.bq + c0 + c] += s;
        }
    }
    workgroupBarrier();
}

// Register family (CPU-type adapters, where loads of per-invocation addresses and
// barriers are what costs): 64 invocations, each reducing an 8 × 8 tile over all tokens
// straight from global memory (16 loads feed 64 FMAs), no barrier until the tile is
// done. The 8 lanes of a CPU SIMD batch share rows (the same dy loads) and read 64
// adjacent x values.
@compute @workgroup_size(64)
fn grad_register_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let rid = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    if (rid >= p.regions) { return; }
    let g = region(rid);
    let ty = tid / 8u;
    let tx = tid % 8u;
    let row0 = g.bi * p.bp;
    let col0 = g.bj * p.bq;
    let i4 = vec4<u32>(0u, 1u, 2u, 3u);
    for (var r0 = g.r_lo; r0 < g.r_hi; r0 += TS) {
        // Rows and columns past the region load 0 from dy / x, keeping them out of Ĝ.
        let ra = vec4<u32>(r0 + ty * 8u) + i4;
        let rb = ra + vec4<u32>(4u);
        let ma = select(vec4<f32>(0.0), vec4<f32>(1.0), ra < vec4<u32>(g.r_hi));
        let mb = select(vec4<f32>(0.0), vec4<f32>(1.0), rb < vec4<u32>(g.r_hi));
        let oa = vec4<u32>(row0) + min(ra, vec4<u32>(g.r_hi - 1u));
        let ob = vec4<u32>(row0) + min(rb, vec4<u32>(g.r_hi - 1u));
        for (var c0 = g.c_lo; c0 < g.c_hi; c0 += TS) {
            let ca = vec4<u32>(c0 + tx * 8u) + i4;
            let cb = ca + vec4<u32>(4u);
            let na = select(vec4<f32>(0.0), vec4<f32>(1.0), ca < vec4<u32>(g.c_hi));
            let nb = select(vec4<f32>(0.0), vec4<f32>(1.0), cb < vec4<u32>(g.c_hi));
            let ia = vec4<u32>(col0) + min(ca, vec4<u32>(g.c_hi - 1u));
            let ib = vec4<u32>(col0) + min(cb, vec4<u32>(g.c_hi - 1u));
            // Rows (u) × column halves (a: the first 4 columns, b: the next 4).
            var s0a = vec4<f32>(0.0); var s0b = vec4<f32>(0.0);
            var s1a = vec4<f32>(0.0); var s1b = vec4<f32>(0.0);
            var s2a = vec4<f32>(0.0); var s2b = vec4<f32>(0.0);
            var s3a = vec4<f32>(0.0); var s3b = vec4<f32>(0.0);
            var s4a = vec4<f32>(0.0); var s4b = vec4<f32>(0.0);
            var s5a = vec4<f32>(0.0); var s5b = vec4<f32>(0.0);
            var s6a = vec4<f32>(0.0); var s6b = vec4<f32>(0.0);
            var s7a = vec4<f32>(0.0); var s7b = vec4<f32>(0.0);
            for (var t = 0u; t < p.tokens; t++) {
                let xb = t * p.d_in;
                let gb = t * p.d_out;
                let xa = vec4<f32>(x[xb + ia.x], x[xb + ia.y], x[xb + ia.z], x[xb + ia.w]);
                let xc = vec4<f32>(x[xb + ib.x], x[xb + ib.y], x[xb + ib.z], x[xb + ib.w]);
                let ga = vec4<f32>(dy[gb + oa.x], dy[gb + oa.y], dy[gb + oa.z], dy[gb + oa.w]);
                let gc = vec4<f32>(dy[gb + ob.x], dy[gb + ob.y], dy[gb + ob.z], dy[gb + ob.w]);
                s0a += ga.x * xa; s0b += ga.x * xc;
                s1a += ga.y * xa; s1b += ga.y * xc;
                s2a += ga.z * xa; s2b += ga.z * xc;
                s3a += ga.w * xa; s3b += ga.w * xc;
                s4a += gc.x * xa; s4b += gc.x * xc;
                s5a += gc.y * xa; s5b += gc.y * xc;
                s6a += gc.z * xa; s6b += gc.z * xc;
                s7a += gc.w * xa; s7b += gc.w * xc;
            }
            let i = ty * 8u;
            let ja = tx * 8u;
            let jb = ja + 4u;
            let gr = group_rank();
            for (var grp = 0u; grp < GROUPS; grp++) {
                store_h(g, r0, c0, i, ja, s0a * na * ma.x, grp); store_h(g, r0, c0, i, jb, s0b * nb * ma.x, grp);
                store_h(g, r0, c0, i + 1u, ja, s1a * na * ma.y, grp); store_h(g, r0, c0, i + 1u, jb, s1b * nb * ma.y, grp);
                store_h(g, r0, c0, i + 2u, ja, s2a * na * ma.z, grp); store_h(g, r0, c0, i + 2u, jb, s2b * nb * ma.z, grp);
                store_h(g, r0, c0, i + 3u, ja, s3a * na * ma.w, grp); store_h(g, r0, c0, i + 3u, jb, s3b * nb * ma.w, grp);
                store_h(g, r0, c0, i + 4u, ja, s4a * na * mb.x, grp); store_h(g, r0, c0, i + 4u, jb, s4b * nb * mb.x, grp);
                store_h(g, r0, c0, i + 5u, ja, s5a * na * mb.y, grp); store_h(g, r0, c0, i + 5u, jb, s5b * nb * mb.y, grp);
                store_h(g, r0, c0, i + 6u, ja, s6a * na * mb.z, grp); store_h(g, r0, c0, i + 6u, jb, s6b * nb * mb.z, grp);
                store_h(g, r0, c0, i + 7u, ja, s7a * na * mb.w, grp); store_h(g, r0, c0, i + 7u, jb, s7b * nb * mb.w, grp);
                tile_contract(tid, 64u, g, r0, c0, grp * gr, gr);
            }
        }
    }
}

// Shared family (discrete / integrated GPUs): the token reduction is a workgroup-shared
// tiled product, KT tokens per step.
@compute @workgroup_size(256)
fn grad_shared_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let rid = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    if (rid >= p.regions) { return; }
    let g = region(rid);
    let ty = tid / 16u;
    let tx = tid % 16u;
    let row0 = g.bi * p.bp;
    let col0 = g.bj * p.bq;
    for (var r0 = g.r_lo; r0 < g.r_hi; r0 += TS) {
        for (var c0 = g.c_lo; c0 < g.c_hi; c0 += TS) {
            var acc: array<vec4<f32>, 4>;
            for (var u = 0u; u < 4u; u++) { acc[u] = vec4<f32>(0.0); }
            for (var t0 = 0u; t0 < p.tokens; t0 += KT) {
                // Stage KT tokens of dy (tile rows) and x (tile columns); out-of-range
                // tokens, rows and columns load 0, which keeps them out of Ĝ.
                for (var n = 0u; n < 4u; n++) {
                    let e = tid + n * 256u;
                    let tt = e / TS;
                    let j = e % TS;
                    let t = t0 + tt;
                    var gv = 0.0;
                    var xv = 0.0;
                    if (t < p.tokens) {
                        if (r0 + j < g.r_hi) { gv = dy[t * p.d_out + row0 + r0 + j]; }
                        if (c0 + j < g.c_hi) { xv = x[t * p.d_in + col0 + c0 + j]; }
                    }
                    smem[e] = gv;
                    smem[KT * TS + e] = xv;
                }
                workgroupBarrier();
                for (var tt = 0u; tt < KT; tt++) {
                    let gb = tt * TS + ty * 4u;
                    let xb = KT * TS + tt * TS + tx * 4u;
                    let gv = vec4<f32>(smem[gb], smem[gb + 1u], smem[gb + 2u], smem[gb + 3u]);
                    let xv = vec4<f32>(smem[xb], smem[xb + 1u], smem[xb + 2u], smem[xb + 3u]);
                    acc[0] += gv.x * xv;
                    acc[1] += gv.y * xv;
                    acc[2] += gv.z * xv;
                    acc[3] += gv.w * xv;
                }
                workgroupBarrier();
            }
            let gr = group_rank();
            for (var grp = 0u; grp < GROUPS; grp++) {
                for (var u = 0u; u < 4u; u++) {
                    store_h(g, r0, c0, ty * 4u + u, tx * 4u, acc[u], grp);
                }
                tile_contract(tid, 256u, g, r0, c0, grp * gr, gr);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Register family, vec4 (p and q multiples of 4, so every 4-row or 4-column group lies in
// one block and x, dy, W0, A rows start on vec4 boundaries): 16 invocations per region,
// each owning the 16 × 16 sub-tile (ty, tx) of every 64 × 64 tile of the region, like the
// register GEMM. Per token, 4 vec4 loads of dy and 4 of x feed 256 FMAs (32 per load,
// against 4 for grad_register_backward's scalar loads), held in sixteen 4×4 matrices.
// Then H = s·Ĝ (⊙ W0, 4 vec4 W0 loads per 4 × 4 block) and the contractions, all in
// registers: per k, 4 vec4 loads of A and 16 scalar loads of B. No barriers and no
// workgroup memory: each invocation adds its sub-tile's dB rows (summed over its 16
// columns) into slot sc·4 + tx of part_b and its dA columns (summed over its 16 rows)
// into slot sr·4 + ty of part_a, so each slot element has exactly one writer
// (sub = 4 slots per strip). Groups of 4 rows or columns past the region load the last
// group in range, get H = 0 and are not written.

@group(0) @binding(10) var<storage, read> wq4: array<WQ4>;                  // W0 as vec4 [d_out, d_in / 4]
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;             // x as vec4 [T, d_in / 4]
@group(0) @binding(12) var<storage, read> dy4: array<vec4<f32>>;            // dy as vec4 [T, d_out / 4]
@group(0) @binding(13) var<storage, read> fa4: array<vec4<f32>>;            // A as vec4 [b, b, r_b, q / 4]
@group(0) @binding(14) var<storage, read_write> part_a4: array<vec4<f32>>;  // part_a as vec4 [4·strips_r, b, b, r_b, q / 4]

// The 16 × 16 sub-tile: block (r, s) holds rows 4r.., columns 4s..; row i of a block is
// the vector over its 4 columns.
var<private> g00: mat4x4<f32>;
var<private> g01: mat4x4<f32>;
var<private> g02: mat4x4<f32>;
var<private> g03: mat4x4<f32>;
var<private> g10: mat4x4<f32>;
var<private> g11: mat4x4<f32>;
var<private> g12: mat4x4<f32>;
var<private> g13: mat4x4<f32>;
var<private> g20: mat4x4<f32>;
var<private> g21: mat4x4<f32>;
var<private> g22: mat4x4<f32>;
var<private> g23: mat4x4<f32>;
var<private> g30: mat4x4<f32>;
var<private> g31: mat4x4<f32>;
var<private> g32: mat4x4<f32>;
var<private> g33: mat4x4<f32>;

// a·bᵀ for a over 4 rows and b over 4 columns: row i is a[i]·b.
fn outer4(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(b * a.x, b * a.y, b * a.z, b * a.w);
}

// The elementwise product of two 4×4 matrices.
fn hprod(a: mat4x4<f32>, b: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3]);
}

// Σ_{k.x <= k < k.y} B[row i, k]·A[k, 4 columns] as row i, for the B row at bq and the
// vec4 aq holding A[0, the columns].
fn group_block(bq: u32, aq: u32, k: vec2<u32>) -> mat4x4<f32> {
    let qs = p.bq / 4u;
    var m = mat4x4<f32>();
    for (var kk = k.x; kk < k.y; kk++) {
        let av = fa4[aq + kk * qs];
        m[0] = fma(vec4<f32>(fb[bq + kk]), av, m[0]);
        m[1] = fma(vec4<f32>(fb[bq + p.rb + kk]), av, m[1]);
        m[2] = fma(vec4<f32>(fb[bq + 2u * p.rb + kk]), av, m[2]);
        m[3] = fma(vec4<f32>(fb[bq + 3u * p.rb + kk]), av, m[3]);
    }
    return m;
}

// H of block (r, s) for rank group grp: G ⊙ ∂W'/∂m (W0 at rows w.., vec4 column wc)
// · keep, times the other group's product for the pairs (B rows at bq, A at aq).
fn h_block(gm: mat4x4<f32>, w: u32, wc: u32, keep: f32, bq: u32, aq: u32, grp: u32) -> mat4x4<f32> {
    var wv = mat4x4<f32>();
    if (SLOPE_READS_W0) {
        let s4 = p.d_in / 4u;
        let i = w * s4 + wc;
        wv = mat4x4<f32>(wload4(i), wload4(i + s4), wload4(i + 2u * s4), wload4(i + 3u * s4));
    }
    var h = mat4x4<f32>(gm[0] * slope4(wv[0], p.scale), gm[1] * slope4(wv[1], p.scale),
                        gm[2] * slope4(wv[2], p.scale), gm[3] * slope4(wv[3], p.scale)) * keep;
    if (GROUPS == 2u) { h = hprod(h, group_block(bq, aq, other_group(grp))); }
    return h;
}

// The sub-tile's H for one rank group.
var<private> h00: mat4x4<f32>;
var<private> h01: mat4x4<f32>;
var<private> h02: mat4x4<f32>;
var<private> h03: mat4x4<f32>;
var<private> h10: mat4x4<f32>;
var<private> h11: mat4x4<f32>;
var<private> h12: mat4x4<f32>;
var<private> h13: mat4x4<f32>;
var<private> h20: mat4x4<f32>;
var<private> h21: mat4x4<f32>;
var<private> h22: mat4x4<f32>;
var<private> h23: mat4x4<f32>;
var<private> h30: mat4x4<f32>;
var<private> h31: mat4x4<f32>;
var<private> h32: mat4x4<f32>;
var<private> h33: mat4x4<f32>;

@compute @workgroup_size(16)
fn grad_reg4_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let rid = wid.x + wid.y * nwg.x;
    if (rid >= p.regions) { return; }
    let g = region(rid);
    let ty = tid / 4u;
    let tx = tid % 4u;
    let row0 = g.bi * p.bp;
    let col0 = g.bj * p.bq;
    let so = p.d_out / 4u;
    let si = p.d_in / 4u;
    let nbb = p.nb * p.nb;
    let a_base = g.blk * p.rb * p.bq;
    let b_base = g.blk * p.bp * p.rb;
    let pa_base = ((g.sr * 4u + ty) * nbb + g.blk) * p.rb * p.bq;
    let pb_base = ((g.sc * 4u + tx) * nbb + g.blk) * p.bp * p.rb;
    let i4 = vec4<u32>(0u, 4u, 8u, 12u);
    for (var r0 = g.r_lo + ty * 16u; r0 < g.r_hi; r0 += TS) {
        // Block-local first rows of the 4 row groups (clamped) and which are in range.
        let ro = vec4<u32>(r0) + i4;
        let rv = ro < vec4<u32>(g.r_hi);
        let rl = min(ro, vec4<u32>(g.r_hi - 4u));
        let mr = select(vec4<f32>(0.0), vec4<f32>(1.0), rv);
        let gq = (vec4<u32>(row0) + rl) / 4u;   // vec4 index of each group in a dy row
        for (var c0 = g.c_lo + tx * 16u; c0 < g.c_hi; c0 += TS) {
            let co = vec4<u32>(c0) + i4;
            let cv = co < vec4<u32>(g.c_hi);
            let cl = min(co, vec4<u32>(g.c_hi - 4u));
            let mc = select(vec4<f32>(0.0), vec4<f32>(1.0), cv);
            let xq = (vec4<u32>(col0) + cl) / 4u;
            g00 = mat4x4<f32>(); g01 = mat4x4<f32>(); g02 = mat4x4<f32>(); g03 = mat4x4<f32>();
            g10 = mat4x4<f32>(); g11 = mat4x4<f32>(); g12 = mat4x4<f32>(); g13 = mat4x4<f32>();
            g20 = mat4x4<f32>(); g21 = mat4x4<f32>(); g22 = mat4x4<f32>(); g23 = mat4x4<f32>();
            g30 = mat4x4<f32>(); g31 = mat4x4<f32>(); g32 = mat4x4<f32>(); g33 = mat4x4<f32>();
            for (var t = 0u; t < p.tokens; t++) {
                let gb = t * so;
                let xb = t * si;
                let b0 = x4[xb + xq.x];
                let b1 = x4[xb + xq.y];
                let b2 = x4[xb + xq.z];
                let b3 = x4[xb + xq.w];
                let a0 = dy4[gb + gq.x];
                g00 += outer4(a0, b0); g01 += outer4(a0, b1); g02 += outer4(a0, b2); g03 += outer4(a0, b3);
                let a1 = dy4[gb + gq.y];
                g10 += outer4(a1, b0); g11 += outer4(a1, b1); g12 += outer4(a1, b2); g13 += outer4(a1, b3);
                let a2 = dy4[gb + gq.z];
                g20 += outer4(a2, b0); g21 += outer4(a2, b1); g22 += outer4(a2, b2); g23 += outer4(a2, b3);
                let a3 = dy4[gb + gq.w];
                g30 += outer4(a3, b0); g31 += outer4(a3, b1); g32 += outer4(a3, b2); g33 += outer4(a3, b3);
            }
            // Per rank group: H, with out-of-range groups zeroed, then its contractions
            // with the group's ranks, one k at a time: dB rows (Σ over the 16 columns)
            // and dA columns (Σ over the 16 rows).
            let wr = vec4<u32>(row0) + rl;          // W0 rows of the groups
            let wc = xq;                            // W0 vec4 columns of the groups
            let aq = (vec4<u32>(a_base) + cl) / 4u;             // A row 0 of each column group
            let bq = vec4<u32>(b_base) + rl * p.rb;             // B of each row group's first row
            let pbq = vec4<u32>(pb_base) + rl * p.rb;
            let paq = (vec4<u32>(pa_base) + cl) / 4u;
            let qs = p.bq / 4u;
            let gr = group_rank();
            for (var grp = 0u; grp < GROUPS; grp++) {
                h00 = h_block(g00, wr.x, wc.x, mr.x * mc.x, bq.x, aq.x, grp); h01 = h_block(g01, wr.x, wc.y, mr.x * mc.y, bq.x, aq.y, grp);
                h02 = h_block(g02, wr.x, wc.z, mr.x * mc.z, bq.x, aq.z, grp); h03 = h_block(g03, wr.x, wc.w, mr.x * mc.w, bq.x, aq.w, grp);
                h10 = h_block(g10, wr.y, wc.x, mr.y * mc.x, bq.y, aq.x, grp); h11 = h_block(g11, wr.y, wc.y, mr.y * mc.y, bq.y, aq.y, grp);
                h12 = h_block(g12, wr.y, wc.z, mr.y * mc.z, bq.y, aq.z, grp); h13 = h_block(g13, wr.y, wc.w, mr.y * mc.w, bq.y, aq.w, grp);
                h20 = h_block(g20, wr.z, wc.x, mr.z * mc.x, bq.z, aq.x, grp); h21 = h_block(g21, wr.z, wc.y, mr.z * mc.y, bq.z, aq.y, grp);
                h22 = h_block(g22, wr.z, wc.z, mr.z * mc.z, bq.z, aq.z, grp); h23 = h_block(g23, wr.z, wc.w, mr.z * mc.w, bq.z, aq.w, grp);
                h30 = h_block(g30, wr.w, wc.x, mr.w * mc.x, bq.w, aq.x, grp); h31 = h_block(g31, wr.w, wc.y, mr.w * mc.y, bq.w, aq.y, grp);
                h32 = h_block(g32, wr.w, wc.z, mr.w * mc.z, bq.w, aq.z, grp); h33 = h_block(g33, wr.w, wc.w, mr.w * mc.w, bq.w, aq.w, grp);
                for (var k = grp * gr; k < (grp + 1u) * gr; k++) {
                    let ka = k * qs;
                    let av0 = fa4[aq.x + ka];
                    let av1 = fa4[aq.y + ka];
                    let av2 = fa4[aq.z + ka];
                    let av3 = fa4[aq.w + ka];
                    // H rows are the matrices' columns: v * m dots v with each row.
                    let d0 = av0 * h00 + av1 * h01 + av2 * h02 + av3 * h03;
                    let d1 = av0 * h10 + av1 * h11 + av2 * h12 + av3 * h13;
                    let d2 = av0 * h20 + av1 * h21 + av2 * h22 + av3 * h23;
                    let d3 = av0 * h30 + av1 * h31 + av2 * h32 + av3 * h33;
                    let rbk = p.rb;
                    let bv0 = vec4<f32>(fb[bq.x + k], fb[bq.x + rbk + k], fb[bq.x + 2u * rbk + k], fb[bq.x + 3u * rbk + k]);
                    let bv1 = vec4<f32>(fb[bq.y + k], fb[bq.y + rbk + k], fb[bq.y + 2u * rbk + k], fb[bq.y + 3u * rbk + k]);
                    let bv2 = vec4<f32>(fb[bq.z + k], fb[bq.z + rbk + k], fb[bq.z + 2u * rbk + k], fb[bq.z + 3u * rbk + k]);
                    let bv3 = vec4<f32>(fb[bq.w + k], fb[bq.w + rbk + k], fb[bq.w + 2u * rbk + k], fb[bq.w + 3u * rbk + k]);
                    // m * v sums the rows weighted by v.
                    let e0 = h00 * bv0 + h10 * bv1 + h20 * bv2 + h30 * bv3;
                    let e1 = h01 * bv0 + h11 * bv1 + h21 * bv2 + h31 * bv3;
                    let e2 = h02 * bv0 + h12 * bv1 + h22 * bv2 + h32 * bv3;
                    let e3 = h03 * bv0 + h13 * bv1 + h23 * bv2 + h33 * bv3;
                    if (rv.x) { add_b4(pbq.x + k, d0); }
                    if (rv.y) { add_b4(pbq.y + k, d1); }
                    if (rv.z) { add_b4(pbq.z + k, d2); }
                    if (rv.w) { add_b4(pbq.w + k, d3); }
                    if (cv.x) { part_a4[paq.x + ka] += e0; }
                    if (cv.y) { part_a4[paq.y + ka] += e1; }
                    if (cv.z) { part_a4[paq.z + ka] += e2; }
                    if (cv.w) { part_a4[paq.w + ka] += e3; }
                }
            }
        }
    }
}

// part_b[i + n·r_b] += v[n] for the 4 rows of a group.
fn add_b4(i: u32, v: vec4<f32>) {
    part_b[i] += v.x;
    part_b[i + p.rb] += v.y;
    part_b[i + 2u * p.rb] += v.z;
    part_b[i + 3u * p.rb] += v.w;
}

// ---------------------------------------------------------------------------------------
// grad_a += Σ part_a[slot], grad_b += Σ part_b[slot] over the sub·strips_r (dA) and
// sub·strips_c (dB) slots: one invocation per parameter.
@compute @workgroup_size(64)
fn grad_reduce_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e < p.n_a) {
        var s = 0.0;
        for (var i = 0u; i < p.strips_r * p.sub; i++) {
            s += part_a[i * p.n_a + e];
            part_a[i * p.n_a + e] = 0.0;
        }
        grad_a[e] = grad_a[e] + s;
    } else if (e < p.n_a + p.n_b) {
        let f = e - p.n_a;
        var s = 0.0;
        for (var i = 0u; i < p.strips_c * p.sub; i++) {
            s += part_b[i * p.n_b + f];
            part_b[i * p.n_b + f] = 0.0;
        }
        grad_b[f] = grad_b[f] + s;
    }
}
