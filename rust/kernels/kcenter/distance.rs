//! The K-Center distance loop: one summation order (64 lanes, folded in halves, no
//! FMA) on every SIMD path, with exact early abandoning. The path comes from
//! `kernels::simd`, which owns detection and the `ECOS_FAST_SIMD` cap.

#[cfg(target_arch = "x86_64")]
use crate::kernels::simd::fold8;
use crate::kernels::simd::{self, SimdPath};

/// Lanes of the distance accumulator: 4 AVX-512 or 8 AVX2 registers, so the adds of
/// one block form 4 (8) independent chains and the loop is not bound by the add
/// latency. Part of the summation order, so changing it changes results.
const LANES: usize = 64;

/// A squared-Euclidean-distance routine, chosen once per process.
///
/// `f(a, b, limit)` returns the squared distance, except that it may stop early and
/// return a partial sum once that partial sum is `>= limit`; a result `< limit` is
/// always the complete distance. The second value counts the coordinates read.
pub type SqDist = fn(&[f32], &[f32], f32) -> (f32, usize);

/// Blocks of `LANES` coordinates between two early-abandon checks.
const CHECK_EVERY: usize = 2;

/// Fold the lanes in halves: the one reduction order every path and every check uses.
#[inline(always)]
fn fold(acc: &[f32; LANES]) -> f32 {
    simd::fold_halves(*acc)
}

/// The summation order every path shares: lane l accumulates coordinates l, l+32, …,
/// the tail goes to the first lanes, then the lanes are folded in halves.
///
/// Early abandoning is exact, not a heuristic: the terms are non-negative and float
/// addition rounds monotonically, so every lane only grows and the fold of the final
/// lanes is `>=` the fold of any earlier state. A partial fold `>= limit` therefore
/// proves that the complete distance (computed in this same order) is `>= limit`, so
/// the caller's decision `distance < limit` is the same as with the full sum.
#[inline(always)]
fn sq_dist_body(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let blocks = n / LANES;
    for blk in 0..blocks {
        let (x, y) = (&a[blk * LANES..][..LANES], &b[blk * LANES..][..LANES]);
        for l in 0..LANES {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
        if blk % CHECK_EVERY == CHECK_EVERY - 1 && blk + 1 < blocks {
            let partial = fold(&acc);
            if partial >= limit {
                return (partial, (blk + 1) * LANES);
            }
        }
    }
    finish(acc, a, b, blocks * LANES)
}

fn sq_dist_portable(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    sq_dist_body(a, b, limit)
}

/// The tail (`n % LANES` coordinates) and the final fold, shared by the SIMD paths so
/// their order is the portable one by construction.
#[inline(always)]
fn finish(mut acc: [f32; LANES], a: &[f32], b: &[f32], done: usize) -> (f32, usize) {
    let n = a.len().min(b.len());
    for (l, (x, y)) in a[done..n].iter().zip(&b[done..n]).enumerate() {
        let t = x - y;
        acc[l] += t * t;
    }
    (fold(&acc), n)
}

// The explicit-SIMD paths below keep the portable order exactly: lane l of the 64
// accumulator lanes lives in register l / W, slot l % W (W = 16 for AVX-512, 8 for
// AVX2); each lane sees `acc + (x − y)·(x − y)` with separate roundings (no FMA: LLVM
// does not contract intrinsics), and the in-register fold adds lane l + w into lane l
// for w = 32, 16, 8, 4, 2, 1 like `fold`. Float addition is commutative, so the
// results are bit-identical.

/// # Safety
/// The CPU must support AVX2 (AVX is enough for the instructions used).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_avx2_inner(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    use std::arch::x86_64::*;
    #[inline(always)]
    fn fold256(s: &[__m256; 8]) -> f32 {
        // SAFETY: only inlined into `sq_dist_avx2_inner`, which requires AVX2.
        unsafe {
            let t = [
                _mm256_add_ps(s[0], s[4]),
                _mm256_add_ps(s[1], s[5]),
                _mm256_add_ps(s[2], s[6]),
                _mm256_add_ps(s[3], s[7]),
            ];
            let u0 = _mm256_add_ps(t[0], t[2]);
            let u1 = _mm256_add_ps(t[1], t[3]);
            fold8(_mm256_add_ps(u0, u1))
        }
    }
    let n = a.len().min(b.len());
    let blocks = n / LANES;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s = [_mm256_setzero_ps(); 8];
    for blk in 0..blocks {
        let o = blk * LANES;
        for (r, acc) in s.iter_mut().enumerate() {
            // SAFETY: o + 8r + 8 <= blocks * 64 <= n, the length of both slices.
            let dv = unsafe {
                _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(o + 8 * r)),
                    _mm256_loadu_ps(pb.add(o + 8 * r)),
                )
            };
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(dv, dv));
        }
        if blk % CHECK_EVERY == CHECK_EVERY - 1 && blk + 1 < blocks {
            let partial = fold256(&s);
            if partial >= limit {
                return (partial, o + LANES);
            }
        }
    }
    // The tail as one more block whose missing coordinates load as 0 (see the AVX-512
    // path: adding +0 changes no bit), folded in registers.
    let o = blocks * LANES;
    let tail = n - o;
    // SAFETY: o + tail = n, the length of both slices; AVX2 is enabled here.
    unsafe { simd::add_sq_tail_avx2(&mut s, pa.add(o), pb.add(o), tail) };
    (fold256(&s), n)
}

#[cfg(target_arch = "x86_64")]
fn sq_dist_avx2(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    // SAFETY: `sq_dist_for` hands out this function only for `SimdPath::Avx2Fma`,
    // which `simd` reports only after `is_x86_feature_detected!("avx2")` returned true.
    unsafe { sq_dist_avx2_inner(a, b, limit) }
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sq_dist_avx512_inner(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    use std::arch::x86_64::*;
    #[inline(always)]
    fn fold512(s: &[__m512; 4]) -> f32 {
        // SAFETY: only inlined into `sq_dist_avx512_inner`, which requires AVX-512F.
        unsafe {
            let t0 = _mm512_add_ps(s[0], s[2]);
            let t1 = _mm512_add_ps(s[1], s[3]);
            let u = _mm512_add_ps(t0, t1);
            let lo = _mm512_castps512_ps256(u);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(u)));
            fold8(_mm256_add_ps(lo, hi))
        }
    }
    let n = a.len().min(b.len());
    let blocks = n / LANES;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s = [_mm512_setzero_ps(); 4];
    for blk in 0..blocks {
        let o = blk * LANES;
        for (r, acc) in s.iter_mut().enumerate() {
            // SAFETY: o + 16r + 16 <= blocks * 64 <= n, the length of both slices.
            let dv = unsafe {
                _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(o + 16 * r)),
                    _mm512_loadu_ps(pb.add(o + 16 * r)),
                )
            };
            *acc = _mm512_add_ps(*acc, _mm512_mul_ps(dv, dv));
        }
        if blk % CHECK_EVERY == CHECK_EVERY - 1 && blk + 1 < blocks {
            let partial = fold512(&s);
            if partial >= limit {
                return (partial, o + LANES);
            }
        }
    }
    // The tail (n % 64 coordinates) as one more block whose missing coordinates load
    // as 0: those lanes add (0 − 0)² = +0 to a non-negative sum, which changes no bit,
    // so this is the portable `finish` order, folded in registers.
    let o = blocks * LANES;
    let tail = n - o;
    for (r, acc) in s.iter_mut().enumerate() {
        let lanes = tail.saturating_sub(16 * r).min(16);
        if lanes == 0 {
            break;
        }
        let m: __mmask16 = ((1u32 << lanes) - 1) as u16;
        // SAFETY: the mask enables only lanes o + 16r + l < n, inside both slices;
        // masked-off lanes are not read.
        let dv = unsafe {
            _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, pa.add(o + 16 * r)),
                _mm512_maskz_loadu_ps(m, pb.add(o + 16 * r)),
            )
        };
        *acc = _mm512_add_ps(*acc, _mm512_mul_ps(dv, dv));
    }
    (fold512(&s), n)
}

#[cfg(target_arch = "x86_64")]
fn sq_dist_avx512(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    // SAFETY: `sq_dist_for` hands out this function only for `SimdPath::Avx512`,
    // which `simd` reports only after `is_x86_feature_detected!("avx512f")` returned true.
    unsafe { sq_dist_avx512_inner(a, b, limit) }
}

/// The distance routine for a SIMD path (see [`super::simd`], which owns detection
/// and the `ECOS_FAST_SIMD` cap). Every path gives bit-identical results.
pub(super) fn sq_dist_for(path: SimdPath) -> SqDist {
    match path {
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => sq_dist_avx512,
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2Fma => sq_dist_avx2,
        _ => sq_dist_portable,
    }
}

/// The distance routine for this process.
fn select_sq_dist() -> SqDist {
    sq_dist_for(simd::path())
}

/// Squared distance through the process-wide SIMD path (same order on every path).
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    select_sq_dist()(a, b, f32::INFINITY).0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::testdata::lcg_values as values;

    #[test]
    fn simd_paths_are_bit_identical_and_early_abandon_is_exact() {
        let paths: Vec<SqDist> = {
            let mut p: Vec<SqDist> = vec![sq_dist_portable];
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                p.push(sq_dist_avx2);
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") {
                p.push(sq_dist_avx512);
            }
            p.push(select_sq_dist());
            p
        };
        for len in (0..300).chain([511, 512, 513, 1000]) {
            let a = values(len as u64, len);
            let b = values(len as u64 + 1000, len);
            let (full, read) = sq_dist_portable(&a, &b, f32::INFINITY);
            assert_eq!(read, len);
            for f in &paths {
                assert_eq!(f(&a, &b, f32::INFINITY).0.to_bits(), full.to_bits());
                for limit in [0.0, full * 0.25, full * 0.9, full, full * 1.0001, 1e30] {
                    let (v, _) = f(&a, &b, limit);
                    // The decision `distance < limit` never changes, and a result below
                    // the limit is the complete distance.
                    assert_eq!(v < limit, full < limit, "len={len} limit={limit}");
                    if v < limit {
                        assert_eq!(v.to_bits(), full.to_bits());
                    }
                }
            }
        }
    }
}
