// Fused adapter gradients (BoHA, HiRA, the additive control, LoRA) without any
// d_out × d_in buffer.
//
// With G = dY (T × d_out), X (T × d_in) and Ĝ = Gᵀ X, per block (i, j) of the b × b grid:
//   H_ij = s·(W0_ij ⊙ Ĝ_ij)  (hadamard = 1)      H_ij = s·Ĝ_ij  (hadamard = 0)
//   dB_ij = H_ij A_ijᵀ   (p × r_b)                dA_ij = B_ijᵀ H_ij   (r_b × q)
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
    hadamard: u32,    // 1: H = s·W0 ⊙ Ĝ, 0: H = s·Ĝ
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
@group(0) @binding(1) var<storage, read> w0: array<f32>;            // [d_out, d_in]
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

// Writes s·Ĝ (⊙ W0) for 4 adjacent columns of one tile row into workgroup memory.
// Rows and columns past the block read a valid weight; their Ĝ is 0.
fn store_h(g: Region, r0: u32, c0: u32, i: u32, j: u32, acc: vec4<f32>) {
    var h = acc * p.scale;
    if (p.hadamard == 1u) {
        let rr = g.bi * p.bp + min(r0 + i, p.bp - 1u);
        let cl = min(vec4<u32>(c0 + j) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.bq - 1u));
        let w = rr * p.d_in + g.bj * p.bq;
        h *= vec4<f32>(w0[w + cl.x], w0[w + cl.y], w0[w + cl.z], w0[w + cl.w]);
    }
    let hb = i * TS + j;
    smem[hb] = h.x;
    smem[hb + 1u] = h.y;
    smem[hb + 2u] = h.z;
    smem[hb + 3u] = h.w;
}

// With H of the tile in workgroup memory: its contractions with A and B, added into this
// region's slots by the `nthreads` invocations. Called in uniform control flow: it holds
// the barriers around the reads of H.
fn tile_contract(tid: u32, nthreads: u32, g: Region, r0: u32, c0: u32) {
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
    for (var e = tid; e < TS * p.rb; e += nthreads) {
        let o = e / p.rb;
        let k = e % p.rb;
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
    for (var e = tid; e < TS * p.rb; e += nthreads) {
        let c = e % TS;
        let k = e / TS;
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
            store_h(g, r0, c0, i, ja, s0a * na * ma.x); store_h(g, r0, c0, i, jb, s0b * nb * ma.x);
            store_h(g, r0, c0, i + 1u, ja, s1a * na * ma.y); store_h(g, r0, c0, i + 1u, jb, s1b * nb * ma.y);
            store_h(g, r0, c0, i + 2u, ja, s2a * na * ma.z); store_h(g, r0, c0, i + 2u, jb, s2b * nb * ma.z);
            store_h(g, r0, c0, i + 3u, ja, s3a * na * ma.w); store_h(g, r0, c0, i + 3u, jb, s3b * nb * ma.w);
            store_h(g, r0, c0, i + 4u, ja, s4a * na * mb.x); store_h(g, r0, c0, i + 4u, jb, s4b * nb * mb.x);
            store_h(g, r0, c0, i + 5u, ja, s5a * na * mb.y); store_h(g, r0, c0, i + 5u, jb, s5b * nb * mb.y);
            store_h(g, r0, c0, i + 6u, ja, s6a * na * mb.z); store_h(g, r0, c0, i + 6u, jb, s6b * nb * mb.z);
            store_h(g, r0, c0, i + 7u, ja, s7a * na * mb.w); store_h(g, r0, c0, i + 7u, jb, s7b * nb * mb.w);
            tile_contract(tid, 64u, g, r0, c0);
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
            for (var u = 0u; u < 4u; u++) {
                store_h(g, r0, c0, ty * 4u + u, tx * 4u, acc[u]);
            }
            tile_contract(tid, 256u, g, r0, c0);
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

@group(0) @binding(10) var<storage, read> w04: array<vec4<f32>>;            // W0 as vec4 [d_out, d_in / 4]
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

// H of block (r, s): s·G (⊙ W0[rows w.., 4 columns at vec4 column wc]) · keep.
fn h_block(gm: mat4x4<f32>, w: u32, wc: u32, keep: f32) -> mat4x4<f32> {
    var h = gm * (p.scale * keep);
    if (p.hadamard == 1u) {
        let s4 = p.d_in / 4u;
        let i = w * s4 + wc;
        h = mat4x4<f32>(h[0] * w04[i], h[1] * w04[i + s4], h[2] * w04[i + 2u * s4], h[3] * w04[i + 3u * s4]);
    }
    return h;
}

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
            // H, with out-of-range groups zeroed.
            let wr = vec4<u32>(row0) + rl;          // W0 rows of the groups
            let wc = xq;                            // W0 vec4 columns of the groups
            g00 = h_block(g00, wr.x, wc.x, mr.x * mc.x); g01 = h_block(g01, wr.x, wc.y, mr.x * mc.y);
            g02 = h_block(g02, wr.x, wc.z, mr.x * mc.z); g03 = h_block(g03, wr.x, wc.w, mr.x * mc.w);
            g10 = h_block(g10, wr.y, wc.x, mr.y * mc.x); g11 = h_block(g11, wr.y, wc.y, mr.y * mc.y);
            g12 = h_block(g12, wr.y, wc.z, mr.y * mc.z); g13 = h_block(g13, wr.y, wc.w, mr.y * mc.w);
            g20 = h_block(g20, wr.z, wc.x, mr.z * mc.x); g21 = h_block(g21, wr.z, wc.y, mr.z * mc.y);
            g22 = h_block(g22, wr.z, wc.z, mr.z * mc.z); g23 = h_block(g23, wr.z, wc.w, mr.z * mc.w);
            g30 = h_block(g30, wr.w, wc.x, mr.w * mc.x); g31 = h_block(g31, wr.w, wc.y, mr.w * mc.y);
            g32 = h_block(g32, wr.w, wc.z, mr.w * mc.z); g33 = h_block(g33, wr.w, wc.w, mr.w * mc.w);
            // Contractions, one k at a time: dB rows (Σ over the 16 columns) and dA
            // columns (Σ over the 16 rows).
            let aq = (vec4<u32>(a_base) + cl) / 4u;             // A row 0 of each column group
            let bq = vec4<u32>(b_base) + rl * p.rb;             // B of each row group's first row
            let pbq = vec4<u32>(pb_base) + rl * p.rb;
            let paq = (vec4<u32>(pa_base) + cl) / 4u;
            let qs = p.bq / 4u;
            for (var k = 0u; k < p.rb; k++) {
                let ka = k * qs;
                let av0 = fa4[aq.x + ka];
                let av1 = fa4[aq.y + ka];
                let av2 = fa4[aq.z + ka];
                let av3 = fa4[aq.w + ka];
                // H rows are the matrices' columns: v * m dots v with each row.
                let d0 = av0 * g00 + av1 * g01 + av2 * g02 + av3 * g03;
                let d1 = av0 * g10 + av1 * g11 + av2 * g12 + av3 * g13;
                let d2 = av0 * g20 + av1 * g21 + av2 * g22 + av3 * g23;
                let d3 = av0 * g30 + av1 * g31 + av2 * g32 + av3 * g33;
                let rbk = p.rb;
                let bv0 = vec4<f32>(fb[bq.x + k], fb[bq.x + rbk + k], fb[bq.x + 2u * rbk + k], fb[bq.x + 3u * rbk + k]);
                let bv1 = vec4<f32>(fb[bq.y + k], fb[bq.y + rbk + k], fb[bq.y + 2u * rbk + k], fb[bq.y + 3u * rbk + k]);
                let bv2 = vec4<f32>(fb[bq.z + k], fb[bq.z + rbk + k], fb[bq.z + 2u * rbk + k], fb[bq.z + 3u * rbk + k]);
                let bv3 = vec4<f32>(fb[bq.w + k], fb[bq.w + rbk + k], fb[bq.w + 2u * rbk + k], fb[bq.w + 3u * rbk + k]);
                // m * v sums the rows weighted by v.
                let e0 = g00 * bv0 + g10 * bv1 + g20 * bv2 + g30 * bv3;
                let e1 = g01 * bv0 + g11 * bv1 + g21 * bv2 + g31 * bv3;
                let e2 = g02 * bv0 + g12 * bv1 + g22 * bv2 + g32 * bv3;
                let e3 = g03 * bv0 + g13 * bv1 + g23 * bv2 + g33 * bv3;
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
