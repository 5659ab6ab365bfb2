// Fused adapter gradients (BoHA, HiRA, the additive control, LoRA) without any
// d_out × d_in buffer.
//
// With G = dY (T × d_out), X (T × d_in) and Ĝ = Gᵀ X, per block (i, j) of the b × b grid:
//   H_ij = s·(W0_ij ⊙ Ĝ_ij)  (hadamard = 1)      H_ij = s·Ĝ_ij  (hadamard = 0)
//   dB_ij = H_ij A_ijᵀ   (p × r_b)                dA_ij = B_ijᵀ H_ij   (r_b × q)
//
// Each block is cut into strips_r × strips_c rectangular regions. One region is owned by
// one invocation (register family) or one workgroup (shared family), which forms the Ĝ
// tiles of its region over all tokens, turns them into H and contracts them with A and B
// at once. A region's dB rows are summed over the region's columns only, its dA columns
// over the region's rows only: those are the partials, one slot per column strip (dB)
// and per row strip (dA), each element written by exactly one owner (no float atomics
// needed). `grad_reduce_backward` then adds the slots into grad_a / grad_b. Scratch is
// about strips_r·|A| + strips_c·|B|, a small multiple of the adapter's parameters (dA
// slot rows are padded to q4, q rounded up to 4).
//
// The kernels only ever add into the slots; the reduce pass reads them and leaves them
// zero for the next run (they start zeroed). So token chunks (x / dy bound in ranges)
// simply add up, and padding entries of the dA slots (q4 > q) stay harmless.

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
    _unused: u32,
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
@group(0) @binding(6) var<storage, read_write> part_a: array<f32>;  // [strips_r, b, b, r_b, q4]
@group(0) @binding(7) var<storage, read_write> part_b: array<f32>;  // [strips_c, b, b, p, r_b]
@group(0) @binding(8) var<storage, read_write> grad_a: array<f32>;  // [b, b, r_b, q]
@group(0) @binding(9) var<storage, read_write> grad_b: array<f32>;  // [b, b, p, r_b]

// Rows of the dA slots are padded to a multiple of 4 columns.
fn q4() -> u32 { return (p.bq + 3u) / 4u * 4u; }

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
// Register family (CPU-type adapters): one invocation per region, no barriers. The
// invocation walks its region in 4 × 4 tiles of Ĝ held in registers, each reduced over
// all tokens straight from global memory, then contracted with A and B. Neighbouring
// invocations (the SIMD lanes of a CPU adapter) share rows, so that their dy loads are
// the same and their x loads are adjacent. dB of a 4-row tile stays in registers over
// the column sweep for the first RB ranks (RB is a pipeline constant, so that loop has a
// fixed trip count and its array indices become static).

// One rank k of a 4 × 4 tile of H (rows hv[0..4], columns c0..c0+4): adds B[rows, k]ᵀ H
// into the dA slot and returns H A[k, cols]ᵀ, the tile's dB contribution for its 4 rows.
fn reg_contract(k: u32, h0: vec4<f32>, h1: vec4<f32>, h2: vec4<f32>, h3: vec4<f32>,
                cc: vec4<u32>, rc: vec4<u32>, a_base: u32, b_base: u32, pa: u32) -> vec4<f32> {
    let ab = a_base + k * p.bq;
    let av = vec4<f32>(fa[ab + cc.x], fa[ab + cc.y], fa[ab + cc.z], fa[ab + cc.w]);
    let bv = vec4<f32>(fb[b_base + rc.x * p.rb + k], fb[b_base + rc.y * p.rb + k],
                       fb[b_base + rc.z * p.rb + k], fb[b_base + rc.w * p.rb + k]);
    let da = h0 * bv.x + h1 * bv.y + h2 * bv.z + h3 * bv.w;
    // Slot rows are padded to q4, so a tail chunk is written whole (its H is 0 there).
    let i = pa + k * q4();
    part_a[i] += da.x;
    part_a[i + 1u] += da.y;
    part_a[i + 2u] += da.z;
    part_a[i + 3u] += da.w;
    return vec4<f32>(dot(h0, av), dot(h1, av), dot(h2, av), dot(h3, av));
}

fn put_b4(base: u32, rok: vec4<bool>, db: vec4<f32>) {
    if (rok.x) { part_b[base] += db.x; }
    if (rok.y) { part_b[base + p.rb] += db.y; }
    if (rok.z) { part_b[base + 2u * p.rb] += db.z; }
    if (rok.w) { part_b[base + 3u * p.rb] += db.w; }
}

override WG_REG: u32 = 16u;
override RB: u32 = 1u;  // min(r_b, 32)

@compute @workgroup_size(WG_REG)
fn grad_register_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rid = gid.x + gid.y * nwg.x * WG_REG;
    if (rid >= p.regions) { return; }
    let g = region(rid);
    // Column strips interleave 4-column chunks (strip sc owns chunks sc, sc + strips_c,
    // ...), so that neighbouring invocations, which share rows, read neighbouring x.
    let c_first = g.sc * 4u;
    let c_step = p.strips_c * 4u;
    if (g.r_lo >= g.r_hi || c_first >= p.bq) { return; }
    let nbb = p.nb * p.nb;
    let a_base = g.blk * p.rb * p.bq;
    let b_base = g.blk * p.bp * p.rb;
    let pa_base = (g.sr * nbb + g.blk) * p.rb * q4();
    let pb_base = (g.sc * nbb + g.blk) * p.bp * p.rb;
    let zero = vec4<f32>(0.0);
    let one = vec4<f32>(1.0);
    for (var r0 = g.r_lo; r0 < g.r_hi; r0 += 4u) {
        let rv = vec4<u32>(r0, r0 + 1u, r0 + 2u, r0 + 3u);
        let rok = rv < vec4<u32>(g.r_hi);
        // Rows past the region read a valid row and are masked out of H.
        let rc = min(rv, vec4<u32>(g.r_hi - 1u));
        let orow = vec4<u32>(g.bi * p.bp) + rc;
        let rmask = select(zero, one, rok) * p.scale;
        var dbacc: array<vec4<f32>, 32>;
        for (var k = 0u; k < RB; k++) { dbacc[k] = zero; }
        for (var c0 = c_first; c0 < p.bq; c0 += c_step) {
            let cv = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
            let cok = cv < vec4<u32>(p.bq);
            let cc = min(cv, vec4<u32>(p.bq - 1u));
            let icol = vec4<u32>(g.bj * p.bq) + cc;
            var acc0 = zero;
            var acc1 = zero;
            var acc2 = zero;
            var acc3 = zero;
            for (var t = 0u; t < p.tokens; t++) {
                let xb = t * p.d_in;
                let gb = t * p.d_out;
                let xv = vec4<f32>(x[xb + icol.x], x[xb + icol.y], x[xb + icol.z], x[xb + icol.w]);
                acc0 += dy[gb + orow.x] * xv;
                acc1 += dy[gb + orow.y] * xv;
                acc2 += dy[gb + orow.z] * xv;
                acc3 += dy[gb + orow.w] * xv;
            }
            let cmask = select(zero, one, cok);
            var h0 = acc0 * cmask * rmask.x;
            var h1 = acc1 * cmask * rmask.y;
            var h2 = acc2 * cmask * rmask.z;
            var h3 = acc3 * cmask * rmask.w;
            if (p.hadamard == 1u) {
                let w = orow * p.d_in;
                h0 *= vec4<f32>(w0[w.x + icol.x], w0[w.x + icol.y], w0[w.x + icol.z], w0[w.x + icol.w]);
                h1 *= vec4<f32>(w0[w.y + icol.x], w0[w.y + icol.y], w0[w.y + icol.z], w0[w.y + icol.w]);
                h2 *= vec4<f32>(w0[w.z + icol.x], w0[w.z + icol.y], w0[w.z + icol.z], w0[w.z + icol.w]);
                h3 *= vec4<f32>(w0[w.w + icol.x], w0[w.w + icol.y], w0[w.w + icol.z], w0[w.w + icol.w]);
            }
            let pa = pa_base + c0;
            for (var k = 0u; k < RB; k++) {
                dbacc[k] += reg_contract(k, h0, h1, h2, h3, cc, rc, a_base, b_base, pa);
            }
            for (var k = RB; k < p.rb; k++) {
                put_b4(pb_base + r0 * p.rb + k, rok,
                       reg_contract(k, h0, h1, h2, h3, cc, rc, a_base, b_base, pa));
            }
        }
        for (var k = 0u; k < RB; k++) {
            put_b4(pb_base + r0 * p.rb + k, rok, dbacc[k]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared family (discrete / integrated GPUs): one workgroup of 256 per region, walking it
// in 64 × 64 tiles of Ĝ. The token reduction is a workgroup-shared tiled product (16
// tokens per step, a 4 × 4 register tile per invocation); H then goes to workgroup
// memory (overlaying the product's staging), where the contractions read it.
const TS: u32 = 64u;   // tile side
const KT: u32 = 16u;   // tokens per step
var<workgroup> smem: array<f32, 4096>;  // staging [2][KT][TS] during the product, H [TS][TS] after

@compute @workgroup_size(256)
fn grad_shared_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let rid = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    if (rid >= p.regions) { return; }
    let g = region(rid);
    let nbb = p.nb * p.nb;
    let a_base = g.blk * p.rb * p.bq;
    let b_base = g.blk * p.bp * p.rb;
    let pa_base = (g.sr * nbb + g.blk) * p.rb * q4();
    let pb_base = (g.sc * nbb + g.blk) * p.bp * p.rb;
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
            // H = s·(W0 ⊙ Ĝ) for this invocation's 4 × 4, into workgroup memory.
            for (var u = 0u; u < 4u; u++) {
                let r = r0 + ty * 4u + u;
                var h = acc[u] * p.scale;
                if (p.hadamard == 1u) {
                    let rr = row0 + min(r, p.bp - 1u);
                    for (var v = 0u; v < 4u; v++) {
                        let cl = min(c0 + tx * 4u + v, p.bq - 1u);
                        h[v] *= w0[rr * p.d_in + col0 + cl];
                    }
                }
                for (var v = 0u; v < 4u; v++) {
                    smem[(ty * 4u + u) * TS + tx * 4u + v] = h[v];
                }
            }
            workgroupBarrier();
            // dB partial: rows of this tile, summed over its columns. Reads are rotated by
            // the row so that a warp's rows fall in different memory banks.
            let rows = min(TS, g.r_hi - r0);
            let cols = min(TS, g.c_hi - c0);
            for (var e = tid; e < TS * p.rb; e += 256u) {
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
            for (var e = tid; e < TS * p.rb; e += 256u) {
                let c = e % TS;
                let k = e / TS;
                if (c < cols) {
                    var s = 0.0;
                    for (var o = 0u; o < rows; o++) {
                        s += smem[o * TS + c] * fb[b_base + (r0 + o) * p.rb + k];
                    }
                    part_a[pa_base + k * q4() + c0 + c] += s;
                }
            }
            workgroupBarrier();
        }
    }
}

// ---------------------------------------------------------------------------------------
// grad_a += Σ_sr part_a[sr], grad_b += Σ_sc part_b[sc]: one invocation per parameter.
@compute @workgroup_size(64)
fn grad_reduce_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e < p.n_a) {
        let q4 = q4();
        let rows = p.n_a / p.bq;
        let at = (e / p.bq) * q4 + e % p.bq;
        var s = 0.0;
        for (var i = 0u; i < p.strips_r; i++) {
            s += part_a[i * rows * q4 + at];
            part_a[i * rows * q4 + at] = 0.0;
        }
        grad_a[e] = grad_a[e] + s;
    } else if (e < p.n_a + p.n_b) {
        let f = e - p.n_a;
        var s = 0.0;
        for (var i = 0u; i < p.strips_c; i++) {
            s += part_b[i * p.n_b + f];
            part_b[i * p.n_b + f] = 0.0;
        }
        grad_b[f] = grad_b[f] + s;
    }
}
