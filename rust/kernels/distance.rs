//! Nearest-centroid assignment: a blocked GEMM-style kernel with a fused argmin.
//!
//! Algorithm. `||x − c||² = ||x||² + ||c||² − 2 x·c`; the `||x||²` term is the
//! same for every centroid, so the nearest centroid of a row minimises
//! `s_j = ||c_j||² − 2 x·c_j`. Rows are taken in fixed blocks of [`ROW_BLOCK`];
//! each block is packed (transposed into micro-panels of `MR` rows), the
//! centroids are packed once into panels of `NR` columns, and a register-tiled
//! `MR × NR` micro-kernel computes full-depth dot products (no k-blocking of the
//! depth: the accumulators never leave registers) and folds them straight into
//! a per-lane running minimum. The `n × k` matrix is never materialised: extra
//! memory is O(k·d) for the packed centroids plus O(ROW_BLOCK·(d + NR)) per
//! worker. Rows are read once, in order, so a `np.memmap` larger than RAM streams.
//!
//! Precision. The expansion loses accuracy when the data sit far from the
//! origin, so rows and centroids are shifted by `mu`, the per-feature mean of
//! the centroids rounded to an integer (rounding keeps integer-valued data
//! exact in f32, so exact ties stay exact ties and go to the lowest index).
//! The expansion only chooses the label; the returned squared distance is
//! recomputed directly, `Σ (x − c)²` (≥ 0 by construction), for the winner.
//! So distances are exact f32 sums, and a label can differ from the exact
//! argmin only where two centroids are within the expansion's rounding error
//! (≈ 1e-6 · (||x − mu||² + ||c − mu||²)) of each other.
//!
//! SIMD. Chosen at run time ([`simd_path`]): AVX-512F (12 × 32 tile), AVX2+FMA
//! (6 × 16 tile), or portable Rust (4 × 8 tile, auto-vectorised). Setting
//! `ECOS_FAST_SIMD=avx2|portable` before the first call caps the path (tests use
//! it to exercise every path on one machine).
//!
//! Complexity. O(n·k·d) flops (2 per multiply-add), O(n·d) for packing and the
//! exact re-check.
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

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::errors::KernelResult;
use crate::invalid;

/// Rows handled by one task. Fixed (a multiple of every path's `MR`), so the
/// blocks never depend on the thread count.
pub const ROW_BLOCK: usize = 192;

/// Rows per chunk in chunked reductions elsewhere (k-means++ sums).
pub const ROW_CHUNK: usize = 4096;

/// The instruction set the assignment micro-kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdPath {
    Avx512,
    Avx2Fma,
    Portable,
}

impl SimdPath {
    fn name(self) -> &'static str {
        match self {
            SimdPath::Avx512 => "avx512f",
            SimdPath::Avx2Fma => "avx2+fma",
            SimdPath::Portable => "portable",
        }
    }

    /// (rows, columns) of the register tile.
    fn tile(self) -> (usize, usize) {
        match self {
            SimdPath::Avx512 => (12, 32),
            SimdPath::Avx2Fma => (6, 16),
            SimdPath::Portable => (4, 8),
        }
    }
}

fn detect() -> SimdPath {
    let cap = std::env::var("ECOS_FAST_SIMD").unwrap_or_default();
    #[cfg(target_arch = "x86_64")]
    {
        if cap != "avx2" && cap != "portable" && is_x86_feature_detected!("avx512f") {
            return SimdPath::Avx512;
        }
        if cap != "portable" && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        {
            return SimdPath::Avx2Fma;
        }
    }
    let _ = cap;
    SimdPath::Portable
}

/// The SIMD path of this process (detected once).
pub fn path() -> SimdPath {
    static PATH: OnceLock<SimdPath> = OnceLock::new();
    *PATH.get_or_init(detect)
}

/// Which SIMD path this process uses, e.g. `"avx512f"`.
pub fn simd_path() -> &'static str {
    path().name()
}

/// Squared Euclidean distance, summed in a fixed order.
#[inline]
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared Euclidean distance by direct differences, 16 interleaved partial
/// sums combined in a fixed order (vectorisable, and the same bits on every
/// SIMD path since Rust never contracts `a*b + c` into an FMA).
#[inline]
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
    let mut w = L;
    while w > 1 {
        w /= 2;
        for j in 0..w {
            acc[j] += acc[j + w];
        }
    }
    acc[0]
}

/// A micro-kernel: `MR × NR` dot products over `d` features, folded into the
/// running minima. Arguments: packed rows (`d × MR`), packed centroid panel
/// (`d × NR`), `d`, the panel's `||c − mu||²` (`NR`), the panel's first centroid
/// index, running minima (`MR × NR`) and their indices (`MR × NR`).
type TileFn = unsafe fn(*const f32, *const f32, usize, *const f32, i32, *mut f32, *mut i32);

/// Centroids packed for one SIMD path, plus what the blocks share.
pub struct Packed<'a> {
    path: SimdPath,
    mr: usize,
    nr: usize,
    d: usize,
    k: usize,
    centroids: &'a [f32],
    /// Panels of `NR` centroids, each stored feature-major (`d × NR`); padding is 0.
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
        if k > i32::MAX as usize {
            return Err(invalid!("n_clusters={k} exceeds {}", i32::MAX));
        }
        if c.len() != k * d {
            return Err(invalid!("centroids buffer does not match k={k}, d={d}"));
        }
        let path = path();
        let (mr, nr) = path.tile();
        let mut mu = vec![0f64; d];
        for row in c.chunks_exact(d) {
            for (m, &v) in mu.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        let mu: Vec<f32> = mu.iter().map(|m| (m / k as f64).round() as f32).collect();
        let panels = k.div_ceil(nr);
        let mut b = vec![0f32; panels * d * nr];
        let mut cn = vec![f32::INFINITY; panels * nr];
        for (j, row) in c.chunks_exact(d).enumerate() {
            let (p, lane) = (j / nr, j % nr);
            let panel = &mut b[p * d * nr..(p + 1) * d * nr];
            let mut norm = 0f64;
            for (f, (&v, &m)) in row.iter().zip(&mu).enumerate() {
                let s = v - m;
                panel[f * nr + lane] = s;
                norm += (s as f64) * (s as f64);
            }
            cn[j] = norm as f32;
        }
        Ok(Packed {
            path,
            mr,
            nr,
            d,
            k,
            centroids: c,
            b,
            cn,
            mu,
        })
    }

    fn tile_fn(&self) -> TileFn {
        match self.path {
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => x86::tile_avx512,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2Fma => x86::tile_avx2,
            _ => tile_portable,
        }
    }

    /// Assign the `m` rows of `x` (`m × d`, `m ≤ ROW_BLOCK`).
    pub fn block(&self, x: &[f32], s: &mut Scratch, labels: &mut [i64], dists: &mut [f32]) {
        let (d, mr, nr) = (self.d, self.mr, self.nr);
        let m = labels.len();
        debug_assert!(m <= ROW_BLOCK && x.len() == m * d && dists.len() == m);
        let mpad = m.div_ceil(mr) * mr;
        // Pack: micro-panel t holds rows t*mr.. as d × mr (feature-major), shifted by mu.
        s.a.clear();
        s.a.resize(mpad * d, 0.0);
        for (i, row) in x.chunks_exact(d).enumerate() {
            let (t, r) = (i / mr, i % mr);
            let panel = &mut s.a[t * d * mr..(t + 1) * d * mr];
            for (f, (&v, &mu)) in row.iter().zip(&self.mu).enumerate() {
                panel[f * mr + r] = v - mu;
            }
        }
        s.best.clear();
        s.best.resize(mpad * nr, f32::INFINITY);
        s.best_idx.clear();
        s.best_idx.resize(mpad * nr, 0);
        let tile = self.tile_fn();
        for p in 0..self.cn.len() / nr {
            let bp = &self.b[p * d * nr..(p + 1) * d * nr];
            let cn = &self.cn[p * nr..(p + 1) * nr];
            for t in 0..mpad / mr {
                let a = &s.a[t * d * mr..(t + 1) * d * mr];
                let best = &mut s.best[t * mr * nr..(t + 1) * mr * nr];
                let idx = &mut s.best_idx[t * mr * nr..(t + 1) * mr * nr];
                // SAFETY: the slices have exactly the lengths the kernel reads and
                // writes (a: d·mr, bp: d·nr, cn: nr, best/idx: mr·nr), and the
                // path's CPU features were detected at run time by `path()`.
                unsafe {
                    tile(
                        a.as_ptr(),
                        bp.as_ptr(),
                        d,
                        cn.as_ptr(),
                        (p * nr) as i32,
                        best.as_mut_ptr(),
                        idx.as_mut_ptr(),
                    )
                };
            }
        }
        for i in 0..m {
            let vals = &s.best[i * nr..(i + 1) * nr];
            let idxs = &s.best_idx[i * nr..(i + 1) * nr];
            let (mut bv, mut bj) = (vals[0], idxs[0]);
            for (&v, &j) in vals.iter().zip(idxs).skip(1) {
                if v < bv || (v == bv && j < bj) {
                    bv = v;
                    bj = j;
                }
            }
            // Padding lanes hold +inf and can never win a strict comparison, so
            // bj < k; the min() only guards against overflowed (inf/NaN) inputs.
            let j = (bj.max(0) as usize).min(self.k - 1);
            labels[i] = j as i64;
            dists[i] = sq_dist_exact(&x[i * d..(i + 1) * d], &self.centroids[j * d..(j + 1) * d]);
        }
    }
}

/// Portable micro-kernel (4 × 8), written so LLVM vectorises the inner loops.
///
/// # Safety
/// `a` points to `d·4` floats, `b` to `d·8`, `cn` to 8, `best`/`idx` to 32.
unsafe fn tile_portable(
    a: *const f32,
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
    let (a, b, cn, best, idx) = unsafe {
        (
            std::slice::from_raw_parts(a, d * MR),
            std::slice::from_raw_parts(b, d * NR),
            std::slice::from_raw_parts(cn, NR),
            std::slice::from_raw_parts_mut(best, MR * NR),
            std::slice::from_raw_parts_mut(idx, MR * NR),
        )
    };
    let mut acc = [[0f32; NR]; MR];
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += av[r] * bv[j];
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

    /// AVX-512 micro-kernel: 12 rows × 32 centroids = 24 zmm accumulators.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `a` points to `d·12` floats, `b` to `d·32`,
    /// `cn` to 32, `best`/`idx` to 384.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(
        a: *const f32,
        b: *const f32,
        d: usize,
        cn: *const f32,
        j0: i32,
        best: *mut f32,
        idx: *mut i32,
    ) {
        const MR: usize = 12;
        const NR: usize = 32;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        // SAFETY (whole body): pointer offsets stay within the lengths in the
        // contract above; unaligned loads/stores are used throughout.
        unsafe {
            for f in 0..d {
                let b0 = _mm512_loadu_ps(b.add(f * NR));
                let b1 = _mm512_loadu_ps(b.add(f * NR + 16));
                let ap = a.add(f * MR);
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(r));
                    accr[0] = _mm512_fmadd_ps(av, b0, accr[0]);
                    accr[1] = _mm512_fmadd_ps(av, b1, accr[1]);
                }
            }
            let two = _mm512_set1_ps(2.0);
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let base = _mm512_add_epi32(_mm512_set1_epi32(j0), lanes);
            let ids = [base, _mm512_add_epi32(base, _mm512_set1_epi32(16))];
            let cns = [_mm512_loadu_ps(cn), _mm512_loadu_ps(cn.add(16))];
            for (r, accr) in acc.iter().enumerate() {
                for h in 0..2 {
                    // cn − 2·dot in one rounding.
                    let v = _mm512_fnmadd_ps(accr[h], two, cns[h]);
                    let pb = best.add(r * NR + h * 16);
                    let pi = idx.add(r * NR + h * 16);
                    let old = _mm512_loadu_ps(pb);
                    // Strictly less: a later (higher) index never displaces a tie.
                    let m = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, old);
                    _mm512_storeu_ps(pb, _mm512_mask_blend_ps(m, old, v));
                    let oldi = _mm512_loadu_epi32(pi);
                    _mm512_storeu_epi32(pi, _mm512_mask_blend_epi32(m, oldi, ids[h]));
                }
            }
        }
    }

    /// AVX2+FMA micro-kernel: 6 rows × 16 centroids = 12 ymm accumulators.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `a` points to `d·6` floats, `b` to `d·16`,
    /// `cn` to 16, `best`/`idx` to 96.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(
        a: *const f32,
        b: *const f32,
        d: usize,
        cn: *const f32,
        j0: i32,
        best: *mut f32,
        idx: *mut i32,
    ) {
        const MR: usize = 6;
        const NR: usize = 16;
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        // SAFETY (whole body): pointer offsets stay within the lengths in the
        // contract above; unaligned loads/stores are used throughout.
        unsafe {
            for f in 0..d {
                let b0 = _mm256_loadu_ps(b.add(f * NR));
                let b1 = _mm256_loadu_ps(b.add(f * NR + 8));
                let ap = a.add(f * MR);
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add(r));
                    accr[0] = _mm256_fmadd_ps(av, b0, accr[0]);
                    accr[1] = _mm256_fmadd_ps(av, b1, accr[1]);
                }
            }
            let two = _mm256_set1_ps(2.0);
            let base = _mm256_add_epi32(
                _mm256_set1_epi32(j0),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let ids = [base, _mm256_add_epi32(base, _mm256_set1_epi32(8))];
            let cns = [_mm256_loadu_ps(cn), _mm256_loadu_ps(cn.add(8))];
            for (r, accr) in acc.iter().enumerate() {
                for h in 0..2 {
                    let v = _mm256_fnmadd_ps(accr[h], two, cns[h]);
                    let pb = best.add(r * NR + h * 8);
                    let pi = idx.add(r * NR + h * 8) as *mut __m256i;
                    let old = _mm256_loadu_ps(pb);
                    let m = _mm256_cmp_ps::<_CMP_LT_OQ>(v, old);
                    _mm256_storeu_ps(pb, _mm256_blendv_ps(old, v, m));
                    let oldi = _mm256_castsi256_ps(_mm256_loadu_si256(pi));
                    let newi = _mm256_blendv_ps(oldi, _mm256_castsi256_ps(ids[h]), m);
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
    if d != dc {
        return Err(invalid!(
            "features have n_features={d} but centroids have n_features={dc}"
        ));
    }
    if x.len() != n * d || labels.len() != n || dists.len() != n {
        return Err(invalid!("buffer sizes do not match n={n}, d={d}, k={k}"));
    }
    let packed = Packed::new(c, k, d)?;
    assign_packed(x, &packed, labels, dists);
    Ok(())
}

/// [`assign`] with centroids already packed (sizes already checked).
pub fn assign_packed(x: &[f32], packed: &Packed<'_>, labels: &mut [i64], dists: &mut [f32]) {
    let d = packed.d;
    labels
        .par_chunks_mut(ROW_BLOCK)
        .zip(dists.par_chunks_mut(ROW_BLOCK))
        .zip(x.par_chunks(ROW_BLOCK * d))
        .for_each_init(Scratch::default, |s, ((lab, dis), xb)| {
            packed.block(xb, s, lab, dis)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

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
