//! Nearest-centroid assignment: a blocked GEMM-style kernel with a fused argmin.
//!
//! Algorithm. `||x − c||² = ||x||² + ||c||² − 2 x·c`; the `||x||²` term is the
//! same for every centroid, so the nearest centroid of a row minimises
//! `s_j = ||c_j||² − 2 x·c_j`. The centroids are packed once into panels of
//! `NR` columns (feature-major, plus one narrower panel for a short remainder,
//! which saves padding work when k is small). Rows are taken in fixed blocks
//! of [`ROW_BLOCK`], copied (shifted, see below) into a per-worker buffer, and
//! a register-tiled `MR × NR` micro-kernel computes full-depth dot products —
//! no blocking of the depth, so the accumulators never leave registers — and
//! folds them straight into per-lane running minima in its epilogue. Each
//! block stays in L2 while every centroid panel passes over it. The `n × k`
//! matrix is never materialised: extra memory is O(k·d) for the packed
//! centroids plus O(ROW_BLOCK·(d + NR)) per worker. Rows are read once, in
//! order, so a `np.memmap` larger than RAM streams through.
//!
//! Precision. The expansion loses accuracy when the data sit far from the
//! origin, so rows and centroids are shifted by `mu`, the per-feature mean of
//! the centroids rounded to an integer (rounding keeps integer-valued data
//! exact in f32, so exact ties stay exact ties and go to the lowest index).
//! The expansion only chooses the label; the returned squared distance is
//! recomputed directly, `Σ (x − c)²` (≥ 0 by construction), for the winner.
//! So distances are exact f32 sums, and a label can differ from the exact
//! argmin only where two centroids are within the expansion's rounding error
//! of each other (a few f32 ulps of `||x − mu||² + ||c − mu||²`; the tests
//! allow 1e-5 of it), and then the chosen one is within that error of the best.
//!
//! SIMD. Chosen at run time by [`super::simd`] (which also owns the
//! `ECOS_FAST_SIMD` cap): AVX-512F (12 × 32 tile, 12 × 16 for a short last
//! panel), AVX2+FMA (6 × 16, 6 × 8), or portable Rust (4 × 8, auto-vectorised);
//! never `-C target-cpu=native`.
//!
//! Complexity. O(n·k·d) flops (2 per multiply-add), O(n·d) for the row copy and
//! the exact re-check, O(k·d) for packing the centroids.
//!
//! Determinism. Each row's result depends only on that row and the centroids:
//! every dot product is accumulated over the features in order, the lanes'
//! minima are merged with ties to the lowest index, and blocks are fixed-size
//! (they never depend on the thread count). So results are bit-identical for
//! any `n_threads` (for a given SIMD path).
//!
//! Reference: the GotoBLAS/BLIS packing and micro-kernel scheme (Goto & van de
//! Geijn 2008; Van Zee & van de Geijn 2015), with the argmin fused into the
//! micro-kernel's epilogue as in faiss's `exhaustive_L2sqr_blas` but without
//! its `block × k` distance buffer.

use rayon::prelude::*;

use super::control::{Control, NEVER};
use super::simd::{self, path, SimdPath};
use crate::errors::KernelResult;
use crate::invalid;

/// Rows handled by one task. Fixed (a multiple of every path's `MR`), so the
/// blocks never depend on the thread count.
pub const ROW_BLOCK: usize = 192;

/// Rows per chunk in chunked reductions elsewhere (k-means++ sums).
pub const ROW_CHUNK: usize = 4096;

/// Columns of the narrow kernel used for a short last panel.
fn tail_width(path: SimdPath) -> usize {
    match path {
        SimdPath::Avx512 => 16,
        SimdPath::Avx2Fma => 8,
        SimdPath::Portable => 8,
    }
}

/// (rows, columns) of the register tile.
fn tile(path: SimdPath) -> (usize, usize) {
    match path {
        SimdPath::Avx512 => (12, 32),
        SimdPath::Avx2Fma => (6, 16),
        SimdPath::Portable => (4, 8),
    }
}

/// Squared Euclidean distance, summed in a fixed order.
#[inline]
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared Euclidean distance by direct differences, 16 interleaved partial
/// sums combined in a fixed order (vectorisable, and the same bits on every
/// SIMD path since Rust never contracts `a*b + c` into an FMA).
#[inline(always)]
pub fn sq_dist_exact(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let mut ca = a.chunks_exact(L);
    let mut cb = b.chunks_exact(L);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for j in 0..L {
            let t = xa[j] - xb[j];
            acc[j] += t * t;
        }
    }
    for (j, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let t = x - y;
        acc[j] += t * t;
    }
    // Pairwise, fixed tree.
    simd::fold_halves(acc)
}

/// [`sq_dist_exact`] compiled for this process's SIMD path (same bits; for
/// callers outside a `#[target_feature]` context, e.g. k-means++ passes).
#[inline]
pub fn sq_dist_wide(a: &[f32], b: &[f32]) -> f32 {
    match path() {
        // SAFETY: the feature was detected at run time by `path()`.
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => unsafe { x86::sq_dist_avx512(a, b) },
        // SAFETY: as above (AVX2+FMA detected).
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2Fma => unsafe { x86::sq_dist_avx2(a, b) },
        _ => sq_dist_exact(a, b),
    }
}

/// The shift `mu` of the expansion: the per-feature mean of the `k × d` centroids,
/// rounded to an integer (shared with the bf16 first pass, `assign_bf16.rs`).
pub(crate) fn centroid_shift(c: &[f32], k: usize, d: usize) -> Vec<f32> {
    let mut mu = vec![0f64; d];
    for row in c.chunks_exact(d) {
        for (m, &v) in mu.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mu.iter().map(|m| (m / k as f64).round() as f32).collect()
}

/// `||c − mu||²` of one centroid as the expansion uses it: the f32 differences
/// squared and summed in f64, in feature order, rounded once to f32.
pub(crate) fn shifted_sq_norm(row: &[f32], mu: &[f32]) -> f32 {
    let mut norm = 0f64;
    for (&v, &m) in row.iter().zip(mu) {
        let s = v - m;
        norm += (s as f64) * (s as f64);
    }
    norm as f32
}

/// A micro-kernel: `MR × W` dot products over `d` features, folded into the
/// running minima. Arguments: the first of `MR` shifted rows and the row
/// stride, the packed centroid panel (`d × W`, feature-major), `d`, the panel's
/// `||c − mu||²` (`W`), the panel's first centroid index, and the running minima
/// and their indices (`MR` rows of the path's full width `NR`; a narrower
/// panel updates the first `W` lanes).
type TileFn = unsafe fn(*const f32, usize, *const f32, usize, *const f32, i32, *mut f32, *mut i32);

/// A run of `width` consecutive centroids packed feature-major.
struct Panel {
    j0: usize,
    width: usize,
}

/// Centroids packed for one SIMD path, plus what the blocks share.
pub struct Packed<'a> {
    path: SimdPath,
    mr: usize,
    nr: usize,
    d: usize,
    k: usize,
    centroids: &'a [f32],
    panels: Vec<Panel>,
    /// Panel after panel, each `d × width` (feature-major); padding is 0.
    /// Panel `p` starts at `j0 · d`.
    b: Vec<f32>,
    /// `||c_j − mu||²` per packed column; +inf in padding so it never wins.
    cn: Vec<f32>,
    mu: Vec<f32>,
}

/// Per-worker buffers, reused across blocks.
#[derive(Default)]
pub struct Scratch {
    a: Vec<f32>,
    best: Vec<f32>,
    best_idx: Vec<i32>,
}

impl<'a> Packed<'a> {
    /// Pack `k × d` centroids. Checks sizes; never panics on input.
    pub fn new(c: &'a [f32], k: usize, d: usize) -> KernelResult<Self> {
        if k == 0 {
            return Err(invalid!("n_clusters={k} must be >= 1"));
        }
        if d == 0 {
            return Err(invalid!("n_features={d} must be >= 1"));
        }
        if k > i32::MAX as usize / 2 {
            return Err(invalid!("n_clusters={k} exceeds {}", i32::MAX / 2));
        }
        if c.len() != k * d {
            return Err(invalid!("centroids buffer does not match k={k}, d={d}"));
        }
        let path = simd::checked()?;
        let (mr, nr) = tile(path);
        let tail_nr = tail_width(path);
        let mu = centroid_shift(c, k, d);
        // Full panels, then one narrow panel when the rest fits it (less padding).
        let mut panels = Vec::new();
        let mut j0 = 0;
        while j0 < k {
            let rest = k - j0;
            let width = if rest >= nr || rest > tail_nr {
                nr
            } else {
                tail_nr
            };
            panels.push(Panel { j0, width });
            j0 += width;
        }
        let padded = j0;
        let mut b = vec![0f32; padded * d];
        let mut cn = vec![f32::INFINITY; padded];
        for panel in &panels {
            let w = panel.width;
            let block = &mut b[panel.j0 * d..(panel.j0 + w) * d];
            for lane in 0..w.min(k - panel.j0) {
                let j = panel.j0 + lane;
                for (f, (&v, &m)) in c[j * d..(j + 1) * d].iter().zip(&mu).enumerate() {
                    block[f * w + lane] = v - m;
                }
                cn[j] = shifted_sq_norm(&c[j * d..(j + 1) * d], &mu);
            }
        }
        Ok(Packed {
            path,
            mr,
            nr,
            d,
            k,
            centroids: c,
            panels,
            b,
            cn,
            mu,
        })
    }

    /// Number of centroids packed.
    pub fn n_clusters(&self) -> usize {
        self.k
    }

    fn tile_fn(&self, width: usize) -> TileFn {
        let full = width == self.nr;
        match self.path {
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 if full => x86::tile_avx512::<2>,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => x86::tile_avx512::<1>,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2Fma if full => x86::tile_avx2::<2>,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2Fma => x86::tile_avx2::<1>,
            _ => tile_portable,
        }
    }

    /// Assign the `m` rows of `x` (`m × d`, `m ≤ ROW_BLOCK`).
    pub fn block(&self, x: &[f32], s: &mut Scratch, labels: &mut [i64], dists: &mut [f32]) {
        match self.path {
            // SAFETY: the path's CPU features were detected at run time.
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => unsafe { x86::block_avx512(self, x, s, labels, dists) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2Fma => unsafe { x86::block_avx2(self, x, s, labels, dists) },
            _ => self.block_impl(x, s, labels, dists),
        }
    }

    /// The block driver, inlined into per-path `#[target_feature]` wrappers so
    /// the shifted copy and the exact re-check vectorise to the path's width
    /// (same bits on every path: no FMA contraction, fixed summation order).
    #[inline(always)]
    fn block_impl(&self, x: &[f32], s: &mut Scratch, labels: &mut [i64], dists: &mut [f32]) {
        let (d, mr, nr) = (self.d, self.mr, self.nr);
        let m = labels.len();
        debug_assert!(m <= ROW_BLOCK && x.len() == m * d && dists.len() == m);
        let mpad = m.div_ceil(mr) * mr;
        // Rows shifted by mu, row-major (a contiguous, vectorised pass; the
        // micro-kernel broadcasts from MR row streams). Padding rows are 0.
        if s.a.len() < mpad * d {
            s.a.resize(mpad * d, 0.0);
        }
        for (dst, src) in s.a.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((o, &v), &mu) in dst.iter_mut().zip(src).zip(&self.mu) {
                *o = v - mu;
            }
        }
        s.a[m * d..mpad * d].fill(0.0);
        s.best.clear();
        s.best.resize(mpad * nr, f32::INFINITY);
        s.best_idx.clear();
        s.best_idx.resize(mpad * nr, 0);
        for panel in &self.panels {
            let w = panel.width;
            let tile = self.tile_fn(w);
            let bp = &self.b[panel.j0 * d..(panel.j0 + w) * d];
            let cn = &self.cn[panel.j0..panel.j0 + w];
            for t in 0..mpad / mr {
                let a = &s.a[t * mr * d..(t + 1) * mr * d];
                let best = &mut s.best[t * mr * nr..(t + 1) * mr * nr];
                let idx = &mut s.best_idx[t * mr * nr..(t + 1) * mr * nr];
                // SAFETY: the slices have exactly the lengths the kernel reads and
                // writes (a: mr rows of d, bp: d·w, cn: w, best/idx: mr·nr with
                // w ≤ nr), and the path's CPU features were detected at run time.
                unsafe {
                    tile(
                        a.as_ptr(),
                        d,
                        bp.as_ptr(),
                        d,
                        cn.as_ptr(),
                        panel.j0 as i32,
                        best.as_mut_ptr(),
                        idx.as_mut_ptr(),
                    )
                };
            }
        }
        for i in 0..m {
            let vals = &s.best[i * nr..(i + 1) * nr];
            let idxs = &s.best_idx[i * nr..(i + 1) * nr];
            let (_, bj) = lane_argmin(vals, idxs);
            // Padding lanes hold +inf and can never win a strict comparison, so
            // bj < k; the guards only matter for overflowed (inf/NaN) inputs.
            let j = if bj == i32::MAX {
                0
            } else {
                bj.max(0) as usize
            }
            .min(self.k - 1);
            labels[i] = j as i64;
            dists[i] = self.exact(&x[i * d..(i + 1) * d], &self.centroids[j * d..(j + 1) * d]);
        }
    }

    /// [`sq_dist_exact`] on this path (the same bits on every path).
    #[inline(always)]
    fn exact(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.path {
            // SAFETY: AVX2 was detected at run time for this path.
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2Fma => unsafe { x86::sq_dist_avx2(a, b) },
            _ => sq_dist_exact(a, b),
        }
    }
}

/// The smallest value over the lanes of one row, and the lowest index holding it.
///
/// Two passes over 8 independent lane accumulators, each a compare-and-select that
/// LLVM turns into `minps`/`pminsd` (a plain `fold` with `f32::min` is one serial
/// chain of scalar, NaN-aware minimums: ~60 ns a row with 32 lanes, a quarter of the
/// whole call at k = 100, d = 128). NaN never wins a `<`, as with `f32::min`.
#[inline(always)]
fn lane_argmin(vals: &[f32], idxs: &[i32]) -> (f32, i32) {
    const L: usize = 8;
    let mut mv = [f32::INFINITY; L];
    let (vc, vr) = (vals.chunks_exact(L), vals.chunks_exact(L).remainder());
    for ch in vc {
        for l in 0..L {
            mv[l] = if ch[l] < mv[l] { ch[l] } else { mv[l] };
        }
    }
    let mut bv = f32::INFINITY;
    for &v in mv.iter().chain(vr) {
        bv = if v < bv { v } else { bv };
    }
    let mut mj = [i32::MAX; L];
    for (cv, cj) in vals.chunks_exact(L).zip(idxs.chunks_exact(L)) {
        for l in 0..L {
            let j = if cv[l] == bv { cj[l] } else { i32::MAX };
            mj[l] = mj[l].min(j);
        }
    }
    let tail = vals.len() - vr.len();
    let mut bj = mj.iter().copied().min().unwrap_or(i32::MAX);
    for (&v, &j) in vr.iter().zip(&idxs[tail.min(idxs.len())..]) {
        if v == bv {
            bj = bj.min(j);
        }
    }
    (bv, bj)
}

/// Portable micro-kernel (4 × 8), written so LLVM vectorises the inner loops.
///
/// # Safety
/// `a` points to 4 rows of `d` floats `lda` apart, `b` to `d·8`, `cn` to 8,
/// `best`/`idx` to 32.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_portable(
    a: *const f32,
    lda: usize,
    b: *const f32,
    d: usize,
    cn: *const f32,
    j0: i32,
    best: *mut f32,
    idx: *mut i32,
) {
    const MR: usize = 4;
    const NR: usize = 8;
    // SAFETY: lengths per this function's contract.
    let (rows, b, cn, best, idx) = unsafe {
        let row = |r: usize| std::slice::from_raw_parts(a.add(r * lda), d);
        (
            [row(0), row(1), row(2), row(3)],
            std::slice::from_raw_parts(b, d * NR),
            std::slice::from_raw_parts(cn, NR),
            std::slice::from_raw_parts_mut(best, MR * NR),
            std::slice::from_raw_parts_mut(idx, MR * NR),
        )
    };
    let mut acc = [[0f32; NR]; MR];
    for (f, bv) in b.chunks_exact(NR).enumerate() {
        for r in 0..MR {
            let av = rows[r][f];
            for j in 0..NR {
                acc[r][j] += av * bv[j];
            }
        }
    }
    for r in 0..MR {
        for j in 0..NR {
            let v = cn[j] - 2.0 * acc[r][j];
            if v < best[r * NR + j] {
                best[r * NR + j] = v;
                idx[r * NR + j] = j0 + j as i32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Packed, Scratch};

    /// [`super::sq_dist_exact`] compiled for AVX-512F.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sq_dist_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::sq_dist_exact(a, b)
    }

    /// [`super::sq_dist_exact`] in explicit AVX2, with the same bits: lane l of
    /// the 16 partial sums lives in register l / 8, slot l % 8; each lane adds
    /// `(x − y)·(x − y)` with separate roundings (intrinsics are never contracted
    /// into an FMA); the tail is one more block whose missing coordinates load as
    /// 0 (adding +0 to a non-negative partial sum changes no bit); and the fold
    /// adds lane l + 8, + 4, + 2, + 1 like `fold_halves`. LLVM's own vectorisation
    /// of `sq_dist_exact` here was a mix of 128-bit and scalar code with lane
    /// inserts: at 200k × 512 against 100 centroids the re-check of each row's
    /// winner took a tenth of the assignment.
    ///
    /// # Safety
    /// The CPU supports AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn sq_dist_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let blocks = n / 16;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for blk in 0..blocks {
            let o = blk * 16;
            // SAFETY: o + 16 <= blocks * 16 <= n, the length of both slices.
            let (u, v) = unsafe {
                (
                    _mm256_sub_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o))),
                    _mm256_sub_ps(
                        _mm256_loadu_ps(pa.add(o + 8)),
                        _mm256_loadu_ps(pb.add(o + 8)),
                    ),
                )
            };
            lo = _mm256_add_ps(lo, _mm256_mul_ps(u, u));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(v, v));
        }
        let o = blocks * 16;
        let tail = n - o;
        let mut s = [lo, hi];
        // SAFETY: o + tail = n, the length of both slices; AVX2 is enabled here.
        unsafe { crate::kernels::simd::add_sq_tail_avx2(&mut s, pa.add(o), pb.add(o), tail) };
        // SAFETY: AVX is implied by AVX2.
        unsafe { crate::kernels::simd::fold8(_mm256_add_ps(s[0], s[1])) }
    }

    /// [`Packed::block_impl`] compiled for AVX-512F.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn block_avx512(
        p: &Packed<'_>,
        x: &[f32],
        s: &mut Scratch,
        labels: &mut [i64],
        dists: &mut [f32],
    ) {
        p.block_impl(x, s, labels, dists)
    }

    /// [`Packed::block_impl`] compiled for AVX2+FMA.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block_avx2(
        p: &Packed<'_>,
        x: &[f32],
        s: &mut Scratch,
        labels: &mut [i64],
        dists: &mut [f32],
    ) {
        p.block_impl(x, s, labels, dists)
    }

    /// AVX-512 micro-kernel: 12 rows × 16·NH centroids (NH = 2: 24 zmm
    /// accumulators; NH = 1 for a narrow last panel).
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `a` points to 12 rows of `d` floats `lda`
    /// apart, `b` to `d·16·NH`, `cn` to `16·NH`, `best`/`idx` to 12 rows of 32.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile_avx512<const NH: usize>(
        a: *const f32,
        lda: usize,
        b: *const f32,
        d: usize,
        cn: *const f32,
        j0: i32,
        best: *mut f32,
        idx: *mut i32,
    ) {
        const MR: usize = 12;
        const NR: usize = 32;
        let w = 16 * NH;
        let mut acc = [[_mm512_setzero_ps(); NH]; MR];
        // SAFETY (whole body): pointer offsets stay within the lengths in the
        // contract above; unaligned loads/stores are used throughout.
        unsafe {
            for f in 0..d {
                let mut bv = [_mm512_setzero_ps(); NH];
                for (h, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(b.add(f * w + h * 16));
                }
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(r * lda + f));
                    for h in 0..NH {
                        accr[h] = _mm512_fmadd_ps(av, bv[h], accr[h]);
                    }
                }
            }
            let two = _mm512_set1_ps(2.0);
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            for (r, accr) in acc.iter().enumerate() {
                for (h, &dot) in accr.iter().enumerate() {
                    let off = (h * 16) as i32;
                    let ids = _mm512_add_epi32(_mm512_set1_epi32(j0 + off), lanes);
                    // cn − 2·dot in one rounding.
                    let v = _mm512_fnmadd_ps(dot, two, _mm512_loadu_ps(cn.add(h * 16)));
                    let pb = best.add(r * NR + h * 16);
                    let pi = idx.add(r * NR + h * 16);
                    let old = _mm512_loadu_ps(pb);
                    // Strictly less: a later (higher) index never displaces a tie.
                    let m = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, old);
                    _mm512_storeu_ps(pb, _mm512_mask_blend_ps(m, old, v));
                    let oldi = _mm512_loadu_epi32(pi);
                    _mm512_storeu_epi32(pi, _mm512_mask_blend_epi32(m, oldi, ids));
                }
            }
        }
    }

    /// AVX2+FMA micro-kernel: 6 rows × 8·NH centroids (NH = 2: 12 ymm
    /// accumulators; NH = 1 for a narrow last panel).
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `a` points to 6 rows of `d` floats `lda`
    /// apart, `b` to `d·8·NH`, `cn` to `8·NH`, `best`/`idx` to 6 rows of 16.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile_avx2<const NH: usize>(
        a: *const f32,
        lda: usize,
        b: *const f32,
        d: usize,
        cn: *const f32,
        j0: i32,
        best: *mut f32,
        idx: *mut i32,
    ) {
        const MR: usize = 6;
        const NR: usize = 16;
        let w = 8 * NH;
        let mut acc = [[_mm256_setzero_ps(); NH]; MR];
        // SAFETY (whole body): pointer offsets stay within the lengths in the
        // contract above; unaligned loads/stores are used throughout.
        unsafe {
            for f in 0..d {
                let mut bv = [_mm256_setzero_ps(); NH];
                for (h, v) in bv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(b.add(f * w + h * 8));
                }
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r * lda + f));
                    for h in 0..NH {
                        accr[h] = _mm256_fmadd_ps(av, bv[h], accr[h]);
                    }
                }
            }
            let two = _mm256_set1_ps(2.0);
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            for (r, accr) in acc.iter().enumerate() {
                for (h, &dot) in accr.iter().enumerate() {
                    let off = (h * 8) as i32;
                    let ids = _mm256_add_epi32(_mm256_set1_epi32(j0 + off), lanes);
                    let v = _mm256_fnmadd_ps(dot, two, _mm256_loadu_ps(cn.add(h * 8)));
                    let pb = best.add(r * NR + h * 8);
                    let pi = idx.add(r * NR + h * 8) as *mut __m256i;
                    let old = _mm256_loadu_ps(pb);
                    // Strictly less: a later (higher) index never displaces a tie.
                    let m = _mm256_cmp_ps::<_CMP_LT_OQ>(v, old);
                    // `minps(v, old)` is `v < old ? v : old` lane by lane (old on a tie
                    // or a NaN): the blend by `m`, written so that LLVM keeps a plain
                    // store. A blend of a value loaded from the address it is stored
                    // back to becomes `vmaskmovps`, a masked store that AMD Zen 3
                    // runs microcoded: a quarter of this tile's time at d = 128.
                    _mm256_storeu_ps(pb, _mm256_min_ps(v, old));
                    let mut oldi = _mm256_castsi256_ps(_mm256_loadu_si256(pi));
                    // The same for the indices: the empty asm hides from LLVM that
                    // `oldi` is what `pi` holds, so the blend stays a blend.
                    std::arch::asm!("/* {0} */", inout(ymm_reg) oldi, options(pure, nomem, nostack, preserves_flags));
                    let newi = _mm256_blendv_ps(oldi, _mm256_castsi256_ps(ids), m);
                    _mm256_storeu_si256(pi, _mm256_castps_si256(newi));
                }
            }
        }
    }
}

/// Label and squared distance of the nearest centroid for every row.
///
/// Ties go to the lowest centroid index. `x` is `n × d`, `c` is `k × dc`.
#[allow(clippy::too_many_arguments)]
pub fn assign(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
) -> KernelResult<()> {
    assign_ctl(x, n, d, c, k, dc, labels, dists, &NEVER)
}

/// [`assign`] that stops at the next row block once `ctl` is cancelled, and then
/// returns `Interrupted`.
#[allow(clippy::too_many_arguments)]
pub fn assign_ctl(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
) -> KernelResult<()> {
    if d != dc {
        return Err(invalid!(
            "features have n_features={d} but centroids have n_features={dc}"
        ));
    }
    if x.len() != n * d || labels.len() != n || dists.len() != n {
        return Err(invalid!("buffer sizes do not match n={n}, d={d}, k={k}"));
    }
    let packed = Packed::new(c, k, d)?;
    assign_packed_ctl(x, &packed, labels, dists, ctl);
    ctl.check()
}

/// [`assign`] with centroids already packed (sizes already checked).
pub fn assign_packed(x: &[f32], packed: &Packed<'_>, labels: &mut [i64], dists: &mut [f32]) {
    assign_packed_ctl(x, packed, labels, dists, &NEVER)
}

/// [`assign_packed`] that skips the remaining row blocks once `ctl` is cancelled
/// (their labels are then left as they were: the caller checks `ctl`).
pub fn assign_packed_ctl(
    x: &[f32],
    packed: &Packed<'_>,
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
) {
    let d = packed.d;
    labels
        .par_chunks_mut(ROW_BLOCK)
        .zip(dists.par_chunks_mut(ROW_BLOCK))
        .zip(x.par_chunks(ROW_BLOCK * d))
        .for_each_init(Scratch::default, |s, ((lab, dis), xb)| {
            if !ctl.is_cancelled() {
                packed.block(xb, s, lab, dis)
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_exact_distance_has_the_portable_bits() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        // Values of mixed magnitudes, so a different summation order would change
        // the last bits; every length from 0 through 5 blocks of 16 and a tail.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let m = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            m * [1e-3f32, 1.0, 1e3, 7.25][(state & 3) as usize]
        };
        for n in 0..=90 {
            let a: Vec<f32> = (0..n).map(|_| next()).collect();
            let b: Vec<f32> = (0..n).map(|_| next()).collect();
            let want = sq_dist_exact(&a, &b);
            // SAFETY: AVX2 was detected above.
            let got = unsafe { x86::sq_dist_avx2(&a, &b) };
            assert_eq!(got.to_bits(), want.to_bits(), "n = {n}: {got} vs {want}");
        }
    }

    #[test]
    fn matches_brute_force_on_integers() {
        let (n, d, k) = (300, 7, 45);
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 11) as f32 - 5.0).collect();
        let c: Vec<f32> = (0..k * d)
            .map(|i| ((i * 104729) % 9) as f32 - 4.0)
            .collect();
        let mut lab = vec![0i64; n];
        let mut dis = vec![0f32; n];
        assign(&x, n, d, &c, k, d, &mut lab, &mut dis).unwrap();
        for i in 0..n {
            let row = &x[i * d..(i + 1) * d];
            let (mut bj, mut bd) = (0, f32::INFINITY);
            for j in 0..k {
                let dd = sq_dist(row, &c[j * d..(j + 1) * d]);
                if dd < bd {
                    bd = dd;
                    bj = j;
                }
            }
            assert_eq!(lab[i], bj as i64, "row {i}");
            assert_eq!(dis[i], bd);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut lab = vec![0i64; 2];
        let mut dis = vec![0f32; 2];
        assert!(assign(&[0.0; 4], 2, 2, &[0.0; 3], 1, 3, &mut lab, &mut dis).is_err());
        assert!(assign(&[0.0; 4], 2, 2, &[], 0, 2, &mut lab, &mut dis).is_err());
    }
}
