//! Greedy K-Center (farthest-first traversal; Gonzalez 1985, Sener & Savarese 2018),
//! exact, evaluated lazily: a new center is applied to a candidate only when that
//! candidate could be the next pick, and then only if the triangle inequality cannot
//! rule it out.
//!
//! Algorithm. Every unpicked candidate x keeps a center a(x), the squared distance
//! b(x) = ‖x − a(x)‖² and a stamp s(x): every center with index < s(x) has been applied
//! to x, so b(x) is the exact squared distance to its nearest center among those, hence
//! an *upper bound* of the true one; x is *fresh* when no center it has not seen could
//! matter. Candidates live in one group per center a (its members
//! x with a(x) = a), and each group keeps its largest bound and a `pending` list.
//! 1. Adding center c computes ‖c − a‖ for every non-empty group a and appends c to a's
//!    pending list unless ‖c − a‖ ≥ 2·√(max b) proves that no member can move (no member is
//!    touched: O(centers·d); a distance stops early once its partial sum proves that).
//! 2. The next pick is found by `State::settle`: while the largest bound over all
//!    groups (ties: lowest row) belongs to a stale member, *refresh* every stale member
//!    whose bound lies in a band just below it: walk the group's pending centers newer
//!    than its stamp, skip each with ‖c − a‖ − ‖x − a‖ ≥ √(current best) (triangle
//!    inequality, see `can_skip`), compute the rest, move x to the strictly closest
//!    one. Members are refreshed in batches of 8 that walk the pending centers
//!    together, so each center row is read once per batch and then hits L1 (the center
//!    rows outgrow L2 after a few hundred picks). Once the largest bound
//!    is fresh it is the true maximum, since every other candidate's true distance is
//!    at most its bound. The band adapts: wider after a pick needed several rounds.
//!
//! A candidate whose bound is below the covering radius is not touched, however many
//! centers arrive, until the radius falls to its bound: on clustered features only
//! ~0.1–0.3 % of the rows are read per pick (1M × 512, budget 3000: 0.1 %), against
//! every row for brute force and ~2–5 % for eager triangle-inequality pruning, whose
//! test rarely fires inside wide high-dimensional clusters (distances concentrate).
//!
//! Exactness. Bounds only decrease, and a bound is replaced only by a computed distance,
//! so the value that decides each pick is the minimum over the same float32 distances
//! that brute force takes the minimum of (min is order-independent). Skipping never
//! drops an update brute force would make: the skip test carries a margin larger than
//! the worst float32 rounding of the three distances involved (see `error_bounds`).
//! Every distance — point–center and center–center, pruned or not — comes from the one
//! [`SqDist`] routine with a fixed summation order and no FMA contraction. `prune =
//! false` runs the same code as brute force (every center pending for every group,
//! every member refreshed every pick, nothing skipped, no early abandoning) and gives
//! bit-identical picks and radii; the tests check that.
//!
//! Complexity. Worst case O(budget·n·d) time like brute force, plus O(budget²·d) for
//! the center–center distances; per pick the refresh rounds scan the bounds (4 bytes
//! per member) of the chunks whose summary reaches the band, and read only the
//! refreshed rows.
//!
//! Memory. O(n) for the groups (row, bound, stamp: 12 bytes per entry; members that
//! leave stay as holes until they are half a group's entries, so at most 24 bytes per
//! candidate), O(centers·d) for a contiguous copy of the center rows, and the pending
//! lists, capped at 2 entries per member + 64 per group (8 bytes each; a group over its
//! cap is refreshed whole on the next pick), so O(n + centers) in all; never
//! budget × n. 1M × 512, budget 3000: 60 MB peak extra, 3 % of the 2 GB pool
//! (`benches/kcenter_scale.py`).
//!
//! Determinism. Refresh work is split into fixed-size chunks of group members and
//! batches of their stale members (independent of the thread count); each member's
//! result depends only on its own row and pending list, chunk results are merged in
//! group then chunk order, movers are appended sorted by (center, row), and every
//! maximum breaks ties by the lowest row index, so the output does not depend on the
//! number of threads.
//!
//! SIMD. The distance loop has an AVX-512 path, an AVX2 path (explicit intrinsics) and
//! a portable one, picked at run time by `kernels::simd` (never `target-cpu=native`;
//! `ECOS_FAST_SIMD` caps it, as for every kernel);
//! all sum the same 64 lanes in the same order without fused multiply-adds, so they
//! give bit-identical results. The loop stops early once a partial sum proves the
//! point cannot move (exact: see `sq_dist_body`).

use std::time::Instant;

use rayon::prelude::*;

use super::simd::{self, SimdPath};
use crate::errors::KernelResult;
use crate::invalid;

/// Positions per chunk: the unit of the group summaries and of the scan and apply
/// passes. Fixed, so results never depend on thread count. At most 2^16 (positions
/// inside a chunk are stored as u16).
const CHUNK: usize = 512;
/// Centers whose center–center distances one task computes.
const CENTER_CHUNK: usize = 64;
/// Lanes of the distance accumulator: 4 AVX-512 or 8 AVX2 registers, so the adds of
/// one block form 4 (8) independent chains and the loop is not bound by the add
/// latency. Part of the summation order, so changing it changes results.
const LANES: usize = 64;

// ---------------------------------------------------------------------------------------
// Distance

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
    let mut v = *acc;
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            v[l] += v[l + w];
        }
    }
    v[0]
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

/// Fold 8 lanes (one 256-bit register) like `fold`'s last three halvings.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fold8(u: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps::<1>(u));
    let w = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps::<1>(w, w)))
}

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
    for (r, acc) in s.iter_mut().enumerate() {
        let lanes = tail.saturating_sub(8 * r).min(8);
        if lanes == 0 {
            break;
        }
        // Lane l is enabled when its sign bit is set: l < lanes.
        let m = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(lanes as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: the mask enables only lanes o + 8r + l < n, inside both slices;
        // masked-off lanes are not read.
        let dv = unsafe {
            _mm256_sub_ps(
                _mm256_maskload_ps(pa.add(o + 8 * r), m),
                _mm256_maskload_ps(pb.add(o + 8 * r), m),
            )
        };
        *acc = _mm256_add_ps(*acc, _mm256_mul_ps(dv, dv));
    }
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
fn sq_dist_for(path: SimdPath) -> SqDist {
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

// ---------------------------------------------------------------------------------------
// Skip test

/// Relative (`γ`) and absolute error bounds of one float32 squared distance over `d`
/// coordinates, as computed by [`SqDist`]; `None` when `d` is so large that no bound
/// is useful (then nothing is ever skipped).
///
/// Each term `(x − y)²` is rounded twice and the sum over `d` terms (any order, no FMA)
/// adds at most `d` more roundings, so the computed value is within a relative
/// `γ_{d+3} = (d+3)u / (1 − (d+3)u)` (u = 2⁻²⁴) of the exact squared distance of the
/// float32 inputs, plus below `d·2⁻¹⁴⁹` from products that underflow. The bounds below
/// round both up generously.
fn error_bounds(d: usize) -> Option<(f64, f64)> {
    let u = f64::from(f32::EPSILON) * 0.5;
    let t = (d as f64 + 4.0) * u;
    if t >= 0.25 {
        return None;
    }
    let gamma = 1.01 * t / (1.0 - t);
    let abs = (d as f64 + 4.0) * f64::from(f32::MIN_POSITIVE);
    Some((gamma, abs))
}

/// Whether the triangle inequality proves that a point x cannot get strictly closer to
/// a center c than its current squared distance `rc2`, given the computed squared
/// distances `dcc2` = ‖c − a‖² and `ra2` = ‖x − a‖² to some other center a.
///
/// Exact: ‖x − c‖ ≥ ‖c − a‖ − ‖x − a‖. With the error bounds of [`error_bounds`], the
/// exact ‖c − a‖² ≥ (dcc2 − abs)/(1 + γ) and ‖x − a‖² ≤ (ra2 + abs)/(1 − γ), and the
/// computed ‖x − c‖² ≥ (1 − γ)·‖x − c‖²_exact − abs. When that last lower bound is
/// `>= rc2`, brute force (which moves a point only when strictly closer) would not
/// move x either. Evaluated in f64, whose own rounding (~1e-16) the 1e-9 slack covers.
/// Infinite inputs (no center yet, overflow) give no information: nothing is skipped.
///
/// The two square roots depend on one side each, so the refresh loop computes them
/// once: [`center_gap`] when a center is queued, [`member_reach`] once per member.
#[inline]
fn can_skip(dcc2: f32, ra2: f32, rc2: f32, err: Option<(f64, f64)>) -> bool {
    skip_by(center_gap(dcc2, err), member_reach(ra2, err), rc2, err)
}

/// A lower bound of the exact ‖c − a‖ from its computed square, rounded down to f32
/// (so storing it in a pending entry only makes the test more cautious); −∞ when the
/// computed value gives no information.
fn center_gap(dcc2: f32, err: Option<(f64, f64)>) -> f32 {
    let Some((gamma, abs)) = err else {
        return f32::NEG_INFINITY;
    };
    if !dcc2.is_finite() {
        return f32::NEG_INFINITY;
    }
    let lo = ((f64::from(dcc2) - abs) / (1.0 + gamma)).max(0.0).sqrt();
    let f = lo as f32;
    if f64::from(f) > lo {
        f.next_down()
    } else {
        f
    }
}

/// An upper bound of the exact ‖x − a‖ from its computed square; +∞ when none.
#[inline]
fn member_reach(ra2: f32, err: Option<(f64, f64)>) -> f64 {
    match err {
        Some((gamma, abs)) if ra2.is_finite() => ((f64::from(ra2) + abs) / (1.0 - gamma)).sqrt(),
        _ => f64::INFINITY,
    }
}

/// [`can_skip`] from the precomputed bounds: `gap` ≤ ‖c − a‖ and `reach` ≥ ‖x − a‖.
#[inline(always)]
fn skip_by(gap: f32, reach: f64, rc2: f32, err: Option<(f64, f64)>) -> bool {
    let Some((gamma, abs)) = err else {
        return false;
    };
    let s = f64::from(gap) - reach;
    // Also false for NaN (−∞ − +∞).
    if s.is_nan() || s <= 0.0 {
        return false;
    }
    (1.0 - gamma) * s * s * (1.0 - 1e-9) - abs >= f64::from(rc2)
}

/// A squared center–center distance at or above which [`can_skip`]`(·, far, far)`
/// holds: the group-level test then needs no more than a partial sum reaching it.
/// Only a shortcut: callers still run the test on the value they got, so a limit
/// that is slightly low costs a recomputation, never a wrong skip. +∞ when the test
/// can never pass.
fn group_skip_limit(far: f32, err: Option<(f64, f64)>) -> f32 {
    let Some((gamma, abs)) = err else {
        return f32::INFINITY;
    };
    let reach = member_reach(far, err);
    let s_min = ((f64::from(far) + abs) / ((1.0 - gamma) * (1.0 - 1e-9))).sqrt();
    let limit = ((reach + s_min).powi(2) * (1.0 + gamma) + abs) * (1.0 + 1e-5);
    if limit.is_finite() && limit < f64::from(f32::MAX) {
        limit as f32
    } else {
        f32::INFINITY
    }
}

// ---------------------------------------------------------------------------------------
// Groups

/// Group id of the candidates no center has reached yet.
const UNASSIGNED: usize = usize::MAX;

/// The unpicked candidates whose nearest center *among the centers applied to them* is
/// one center, with lazily applied newer centers.
///
/// Member i has squared distance `d2[i]` to the group's center, and every center with
/// index `< stamp[i]` has been applied to it (computed, or proven unable to move it).
/// `d2[i]` is therefore an upper bound of its true squared distance to the nearest
/// center, exact once `stamp[i]` equals the number of centers (*fresh*). `pending`
/// lists, in index order, the centers the group-level test could not rule out when
/// they were added, with a lower bound of their distance to this group's center
/// ([`center_gap`]).
///
/// Members that leave (moved to a nearer center, or picked) become *holes* (row
/// [`HOLE`], bound −∞, stamp `u32::MAX`: never stale, never the largest) until holes
/// are half the entries and the group is compacted. So positions stay put between
/// compactions, and each chunk of [`CHUNK`] positions keeps a summary (its largest
/// bound and smallest stamp): a refresh round reads only the chunks that can hold a
/// stale member in its band, not every member of every group it touches.
#[derive(Default)]
struct Group {
    rows: Vec<u32>,
    d2: Vec<f32>,
    stamp: Vec<u32>,
    /// Per chunk: (d2, row, position) of its member with the largest bound.
    chunk_best: Vec<Option<(f32, u32, usize)>>,
    /// Per chunk: the smallest stamp of its members (`u32::MAX` when none).
    chunk_min_stamp: Vec<u32>,
    /// Members that are not holes.
    live: usize,
    pending: Vec<(u32, f32)>,
    /// (d2, row, position) of the member with the largest `d2`; ties to the lowest row.
    best: Option<(f32, u32, usize)>,
    /// Set when `pending` grew past its memory cap: the next refresh updates the whole
    /// group, whatever its members' bounds, so the list can be emptied.
    overdue: bool,
}

/// Row id of a hole (see [`Group`]).
const HOLE: u32 = u32::MAX;

impl Group {
    /// A group holding `rows` with bounds `d2`, every one stamped `stamp`.
    fn with_members(rows: Vec<u32>, d2: Vec<f32>, stamp: u32) -> Self {
        let mut g = Group {
            stamp: vec![stamp; rows.len()],
            live: rows.len(),
            rows,
            d2,
            ..Group::default()
        };
        g.summarize_all();
        g
    }

    /// Recompute chunk `ch`'s summary from its entries.
    fn summarize(&mut self, ch: usize) {
        let a = ch * CHUNK;
        let b = (a + CHUNK).min(self.rows.len());
        let (best, min_stamp) = summary(&self.rows[a..b], &self.d2[a..b], &self.stamp[a..b]);
        self.chunk_best[ch] = best.map(|(v, r, p)| (v, r, a + p));
        self.chunk_min_stamp[ch] = min_stamp;
    }

    fn summarize_all(&mut self) {
        let n_chunks = self.rows.len().div_ceil(CHUNK);
        self.chunk_best = vec![None; n_chunks];
        self.chunk_min_stamp = vec![u32::MAX; n_chunks];
        for ch in 0..n_chunks {
            self.summarize(ch);
        }
        self.recompute_best();
    }

    /// The group's largest bound, from the chunk summaries.
    fn recompute_best(&mut self) {
        let mut best = None;
        for &(v, r, p) in self.chunk_best.iter().flatten() {
            if better(v, r, best) {
                best = Some((v, r, p));
            }
        }
        self.best = best;
    }

    fn min_stamp(&self) -> u32 {
        self.chunk_min_stamp
            .iter()
            .copied()
            .min()
            .unwrap_or(u32::MAX)
    }

    /// Append a member, keeping the summaries current.
    fn push(&mut self, row: u32, v: f32, stamp: u32) {
        let pos = self.rows.len();
        self.rows.push(row);
        self.d2.push(v);
        self.stamp.push(stamp);
        self.live += 1;
        let ch = pos / CHUNK;
        if ch == self.chunk_best.len() {
            self.chunk_best.push(None);
            self.chunk_min_stamp.push(u32::MAX);
        }
        if better(v, row, self.chunk_best[ch]) {
            self.chunk_best[ch] = Some((v, row, pos));
        }
        self.chunk_min_stamp[ch] = self.chunk_min_stamp[ch].min(stamp);
        if better(v, row, self.best) {
            self.best = Some((v, row, pos));
        }
    }

    /// Drop the holes once they are half the entries (amortized O(1) per hole), or
    /// everything once no member is left.
    fn compact_if_sparse(&mut self) {
        let holes = self.rows.len() - self.live;
        if self.live == 0 {
            *self = Group::default();
            return;
        }
        if holes == 0 || 2 * holes < self.rows.len() {
            return;
        }
        let mut w = 0;
        for i in 0..self.rows.len() {
            if self.rows[i] != HOLE {
                self.rows[w] = self.rows[i];
                self.d2[w] = self.d2[i];
                self.stamp[w] = self.stamp[i];
                w += 1;
            }
        }
        self.rows.truncate(w);
        self.d2.truncate(w);
        self.stamp.truncate(w);
        self.summarize_all();
    }
}

/// The member with the largest bound (holes excluded; position inside the slices) and
/// the smallest stamp of a run of entries.
///
/// Two branch-free passes the compiler vectorizes (the largest bound and the smallest
/// stamp; holes hold −∞ and `u32::MAX`, so they never win), then the lowest row among
/// the members that reach the largest bound.
fn summary(rows: &[u32], d2: &[f32], stamp: &[u32]) -> (Option<(f32, u32, usize)>, u32) {
    let min_stamp = stamp.iter().copied().fold(u32::MAX, u32::min);
    let top = d2.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut best = None;
    for (p, (&r, &v)) in rows.iter().zip(d2).enumerate() {
        if v == top && r != HOLE && best.is_none_or(|(_, br, _)| r < br) {
            best = Some((v, r, p));
        }
    }
    (best, min_stamp)
}

/// Whether (v, row) beats the current best: larger distance, or equal and a lower row.
#[inline]
fn better(v: f32, row: u32, best: Option<(f32, u32, usize)>) -> bool {
    match best {
        None => true,
        Some((bv, br, _)) => v > bv || (v == bv && row < br),
    }
}

/// What one chunk of a group reports after a refresh.
struct ChunkOut {
    group: usize,
    chunk: usize,
    /// Members now nearest to another center: (row, squared distance, center); they
    /// left holes behind.
    moved: Vec<(u32, f32, u32)>,
    /// The chunk's new summary: its largest bound (absolute position), smallest stamp.
    best: Option<(f32, u32, usize)>,
    min_stamp: u32,
    evals: u64,
    coords: u64,
    rows: u64,
}

/// Counters for the benchmark: how many point–center distances were computed, and how
/// many brute force would have computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Point–center distances started (not skipped by a bound, not deferred forever).
    pub distance_evals: u64,
    /// Point–center distances brute force computes (unpicked candidates per center).
    pub brute_force_evals: u64,
    /// Coordinates read by the started distances (early abandoning stops some).
    pub coords_read: u64,
    /// Points that moved to a new, strictly closer center (several centers applied at
    /// once count as one move).
    pub moved: u64,
    /// Candidate refreshes that read the candidate's row (at least one distance).
    pub rows_read: u64,
    /// Refresh rounds (parallel passes over the groups whose bound reaches a threshold).
    pub rounds: u64,
    /// Wall-clock nanoseconds per phase, for profiling (`benches/kcenter_profile.py`):
    /// choosing the chunks of a round and listing their stale members (parallel);
    pub ns_scan: u64,
    /// refreshing the stale members (the distances; parallel);
    pub ns_refresh: u64,
    /// stamping them and summarizing the chunks again (parallel);
    pub ns_apply: u64,
    /// merging the chunk results and moving the movers into their groups (serial);
    pub ns_merge: u64,
    /// adding a center: center–center distances (parallel) and queuing (serial);
    pub ns_add: u64,
    /// the whole call, so the rest (finding the top bound, removing the pick,
    /// set-up) is `ns_total` minus the phases above (serial).
    pub ns_total: u64,
}

/// Nanoseconds since `t`, and restart `t` (phase timing for [`Stats`]).
fn lap(t: &mut Instant) -> u64 {
    let now = Instant::now();
    let ns = now.duration_since(*t).as_nanos() as u64;
    *t = now;
    ns
}

/// Farthest-first state: the groups (index = center number), the center rows copied
/// contiguously, and the candidates no center has reached yet.
struct State<'a> {
    x: &'a [f32],
    d: usize,
    prune: bool,
    dist: SqDist,
    err: Option<(f64, f64)>,
    centers: Vec<f32>,
    groups: Vec<Group>,
    /// Candidates before the first center; every one of them moves to it.
    unassigned: Group,
    remaining: usize,
    /// Relative width of the refresh band below the largest bound (adapted per pick).
    band: f64,
    stats: Stats,
}

/// Pending entries a group may hold per member before it is refreshed whole
/// (plus [`PENDING_SLACK`]): caps the extra memory at O(n + centers).
const PENDING_PER_MEMBER: usize = 2;
const PENDING_SLACK: usize = 64;
/// Bounds of the adaptive refresh band (relative, on squared distances).
const BAND_MIN: f64 = 1e-6;
const BAND_MAX: f64 = 0.5;
const BAND_START: f64 = 1e-3;

impl<'a> State<'a> {
    fn row(&self, i: u32) -> &'a [f32] {
        let i = i as usize;
        &self.x[i * self.d..(i + 1) * self.d]
    }

    fn group_mut(&mut self, g: usize) -> &mut Group {
        if g == UNASSIGNED {
            &mut self.unassigned
        } else {
            &mut self.groups[g]
        }
    }

    /// Add row `c` as a center: queue it on every group it might improve (nothing is
    /// computed for the members yet; [`State::settle`] applies it when needed).
    fn add_center(&mut self, c: u32) {
        let mut clock = Instant::now();
        let d = self.d;
        let crow = self.row(c);
        let k = self.groups.len();
        let dist = self.dist;
        let err = self.err;
        self.stats.brute_force_evals += self.remaining as u64;

        // Center–center distances to every group with members (same routine). A
        // distance only matters while it is below the group-level skip limit, so it
        // may stop early once its partial sum proves the whole group can skip c.
        let centers = &self.centers;
        let groups = &self.groups;
        let prune = self.prune;
        let mut dcc: Vec<Option<f32>> = vec![None; k];
        dcc.par_chunks_mut(CENTER_CHUNK)
            .enumerate()
            .for_each(|(ci, out)| {
                for (j, v) in out.iter_mut().enumerate() {
                    let a = ci * CENTER_CHUNK + j;
                    let Some((far, _, _)) = groups[a].best else {
                        continue;
                    };
                    let ca = &centers[a * d..(a + 1) * d];
                    let limit = if prune {
                        group_skip_limit(far, err)
                    } else {
                        f32::INFINITY
                    };
                    let (v0, _) = dist(crow, ca, limit);
                    let dcc2 = if v0 < limit {
                        // Complete (see `SqDist`).
                        v0
                    } else if can_skip(v0, far, far, err) {
                        // A partial sum is a lower bound of the distance and the test
                        // only gets easier as the distance grows: c is ruled out.
                        continue;
                    } else {
                        dist(crow, ca, f32::INFINITY).0
                    };
                    // Group-level test against the largest bound: no member can move.
                    if !(prune && can_skip(dcc2, far, far, err)) {
                        *v = Some(center_gap(dcc2, err));
                    }
                }
            });
        for (grp, v) in self.groups.iter_mut().zip(dcc) {
            if let Some(gap) = v {
                grp.pending.push((k as u32, gap));
                if grp.pending.len() > PENDING_SLACK + PENDING_PER_MEMBER * grp.live {
                    grp.overdue = true;
                }
            }
        }
        if self.unassigned.live > 0 {
            self.unassigned.pending.push((k as u32, f32::NEG_INFINITY));
        }
        self.centers.extend_from_slice(crow);
        self.groups.push(Group::default());
        self.stats.ns_add += lap(&mut clock);
    }

    /// The largest bound over all groups: (squared distance, row, group, position).
    fn top(&self) -> Option<(f32, u32, usize, usize)> {
        let mut best: Option<(f32, u32, usize)> = None;
        let mut at = 0usize;
        for (g, grp) in self
            .groups
            .iter()
            .enumerate()
            .chain(std::iter::once((UNASSIGNED, &self.unassigned)))
        {
            if let Some((v, r, p)) = grp.best {
                if better(v, r, best) {
                    best = Some((v, r, p));
                    at = g;
                }
            }
        }
        best.map(|(v, r, p)| (v, r, at, p))
    }

    /// The farthest unpicked candidate, exact: (squared distance, row, group, position).
    ///
    /// Refreshes (applies the pending centers to) every stale member whose bound lies
    /// in a band below the largest bound, until the largest bound belongs to a fresh
    /// member. Then it is the true maximum: every other candidate's true distance is
    /// at most its bound, which is below (or equal with a higher row).
    fn settle(&mut self) -> Option<(f32, u32, usize, usize)> {
        let k = self.groups.len() as u32;
        let mut rounds = 0u32;
        loop {
            let overdue = self.groups.iter().any(|g| g.overdue);
            let top = self.top();
            let fresh = match top {
                None => true,
                Some((_, _, g, p)) => {
                    let grp = if g == UNASSIGNED {
                        &self.unassigned
                    } else {
                        &self.groups[g]
                    };
                    // Fresh: stamped up to date, or nothing pending since its stamp.
                    grp.stamp[p] == k || grp.pending.last().is_none_or(|e| e.0 < grp.stamp[p])
                }
            };
            if fresh && !overdue {
                if self.prune {
                    // Needed several rounds: widen the band; one was enough: narrow it.
                    self.band = if rounds > 1 {
                        (self.band * 4.0).min(BAND_MAX)
                    } else {
                        (self.band * 0.7).max(BAND_MIN)
                    };
                }
                return top;
            }
            let threshold = match top {
                _ if !self.prune => f32::NEG_INFINITY,
                Some((v, ..)) if !fresh => {
                    let t = f64::from(v) * (1.0 - self.band * f64::from(1u32 << rounds.min(20)));
                    t as f32
                }
                // Only overdue groups to update.
                _ => f32::INFINITY,
            };
            self.refresh(threshold);
            rounds += 1;
        }
    }

    /// Apply the pending centers to every stale member whose bound is `>= threshold`
    /// (and to every member of an overdue group); move the ones now nearer another
    /// center.
    ///
    /// The work items are the chunks whose summary shows a stale member in the band.
    /// Three parallel passes: list the members to refresh in each chunk; refresh them
    /// in batches of [`BATCH`] members of one chunk (the unit of parallel work, so that
    /// a round with a few hundred stale members still splits evenly over the threads);
    /// then stamp them, punch holes for the movers and summarize each chunk again.
    fn refresh(&mut self, threshold: f32) {
        let mut clock = Instant::now();
        self.stats.rounds += 1;
        let k = self.groups.len() as u32;
        let ctx = Refresh {
            x: self.x,
            d: self.d,
            centers: &self.centers,
            dist: self.dist,
            err: self.err,
            prune: self.prune,
        };
        let unassigned = &mut self.unassigned;
        // Work items in (group, chunk) order.
        let mut items: Vec<Item<'_>> = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        for (g, grp) in self
            .groups
            .iter_mut()
            .enumerate()
            .chain(std::iter::once((UNASSIGNED, unassigned)))
        {
            let Some((far, _, _)) = grp.best else {
                continue;
            };
            let t = if grp.overdue {
                f32::NEG_INFINITY
            } else {
                threshold
            };
            if far < t || grp.pending.is_empty() {
                continue;
            }
            touched.push(g);
            let Group {
                rows,
                d2,
                stamp,
                chunk_best,
                chunk_min_stamp,
                pending,
                ..
            } = grp;
            let pending = &pending[..];
            for (chunk, ((rows, d2), stamp)) in rows
                .chunks_mut(CHUNK)
                .zip(d2.chunks_mut(CHUNK))
                .zip(stamp.chunks_mut(CHUNK))
                .enumerate()
            {
                let in_band = chunk_best[chunk].is_some_and(|b| b.0 >= t);
                if in_band && chunk_min_stamp[chunk] < k {
                    items.push(Item {
                        group: g,
                        chunk,
                        threshold: t,
                        pending,
                        rows,
                        d2,
                        stamp,
                    });
                }
            }
        }
        // Pass 1: the stale members each chunk refreshes (positions inside the chunk).
        let todo: Vec<Vec<u16>> = items.par_iter().map(|it| it.todo(k)).collect();
        let ns_scan = lap(&mut clock);
        // Pass 2: refresh them, batch by batch; each batch writes its own result slots.
        let total: usize = todo.iter().map(Vec::len).sum();
        let mut results = vec![Member::default(); total];
        {
            let mut batches: Vec<(&Item<'_>, &[u16], &mut [Member])> = Vec::new();
            let mut rest = &mut results[..];
            for (it, t) in items.iter().zip(&todo) {
                for part in t.chunks(BATCH) {
                    let (head, tail) = std::mem::take(&mut rest).split_at_mut(part.len());
                    batches.push((it, part, head));
                    rest = tail;
                }
            }
            batches
                .into_par_iter()
                .for_each(|(it, part, out)| ctx.batch(it, part, out));
        }
        let ns_refresh = lap(&mut clock);
        // Pass 3: stamp, punch holes for the movers, summarize each chunk again.
        let mut parts: Vec<&[Member]> = Vec::with_capacity(todo.len());
        let mut rest = &results[..];
        for t in &todo {
            let (head, tail) = rest.split_at(t.len());
            parts.push(head);
            rest = tail;
        }
        let outs: Vec<ChunkOut> = items
            .into_par_iter()
            .zip(todo.par_iter())
            .zip(parts)
            .map(|((it, t), res)| it.apply(t, res, k))
            .collect();

        let ns_apply = lap(&mut clock);
        // Merge in (group, chunk) order: the chunk summaries, then each touched group's.
        let mut movers: Vec<(u32, f32, u32)> = Vec::new();
        for o in outs {
            let stats = &mut self.stats;
            stats.distance_evals += o.evals;
            stats.coords_read += o.coords;
            stats.rows_read += o.rows;
            stats.moved += o.moved.len() as u64;
            let grp = if o.group == UNASSIGNED {
                &mut self.unassigned
            } else {
                &mut self.groups[o.group]
            };
            grp.chunk_best[o.chunk] = o.best;
            grp.chunk_min_stamp[o.chunk] = o.min_stamp;
            grp.live -= o.moved.len();
            movers.extend(o.moved);
        }
        for &g in &touched {
            let grp = self.group_mut(g);
            grp.overdue = false;
            grp.recompute_best();
            // Entries every member has already applied are no longer needed.
            let min_stamp = grp.min_stamp();
            let keep_from = grp.pending.partition_point(|e| e.0 < min_stamp);
            grp.pending.drain(..keep_from);
            grp.compact_if_sparse();
        }
        // Movers join their new group fully updated (stamp = number of centers).
        movers.sort_unstable_by_key(|&(r, _, c)| (c, r));
        for (r, v, c) in movers {
            self.group_mut(c as usize).push(r, v, k);
        }
        let stats = &mut self.stats;
        stats.ns_scan += ns_scan;
        stats.ns_refresh += ns_refresh;
        stats.ns_apply += ns_apply;
        stats.ns_merge += lap(&mut clock);
    }

    /// Take the member at `pos` out of group `g` (it is about to become a center).
    fn remove(&mut self, g: usize, pos: usize) {
        let grp = self.group_mut(g);
        grp.rows[pos] = HOLE;
        grp.d2[pos] = f32::NEG_INFINITY;
        grp.stamp[pos] = u32::MAX;
        grp.live -= 1;
        grp.summarize(pos / CHUNK);
        grp.recompute_best();
        grp.compact_if_sparse();
        self.remaining -= 1;
    }
}

/// Stale members refreshed together by one task. Each pending center is read once per
/// batch and then served from L1 to every member (a batch of 512-d rows is 16 KB), so
/// the center rows, which outgrow L2 after a few hundred picks, stream from L3 once
/// per batch instead of once per member. Any value gives the same results.
const BATCH: usize = 8;
/// Cache lines of 64 bytes prefetched per row; the hardware streamer takes the rest.
const PREFETCH_LINES: usize = 8;

/// Hint the CPU to start loading `row`; a no-op where no prefetch instruction exists.
#[inline(always)]
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for line in (0..row.len()).step_by(16).take(PREFETCH_LINES) {
            // SAFETY: a prefetch never faults and never reads memory architecturally;
            // the pointer is in bounds of `row` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(line).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// One refresh work item: one chunk of a group's rows, bounds and stamps, with the
/// group's pending centers and the round's threshold for it.
struct Item<'s> {
    group: usize,
    chunk: usize,
    threshold: f32,
    pending: &'s [(u32, f32)],
    rows: &'s mut [u32],
    d2: &'s mut [f32],
    stamp: &'s mut [u32],
}

/// Where a refresh leaves one member: its new bound and the center it moves to.
#[derive(Clone, Copy)]
struct Member {
    d2: f32,
    /// `NO_MOVE` when no pending center is strictly closer.
    to: u32,
    evals: u64,
    coords: u64,
}

const NO_MOVE: u32 = u32::MAX;

impl Default for Member {
    fn default() -> Self {
        Member {
            d2: 0.0,
            to: NO_MOVE,
            evals: 0,
            coords: 0,
        }
    }
}

impl Item<'_> {
    /// Positions of the stale members whose bound is `>= threshold` (branch-free:
    /// every position is written, and the count advances only for the ones kept).
    fn todo(&self, k: u32) -> Vec<u16> {
        let len = self
            .rows
            .len()
            .min(self.d2.len())
            .min(self.stamp.len())
            .min(CHUNK);
        let mut out = vec![0u16; len];
        let mut m = 0usize;
        for j in 0..len {
            // CHUNK <= 2^16, so a position fits in u16.
            out[m] = j as u16;
            m += usize::from(self.stamp[j] < k && self.d2[j] >= self.threshold);
        }
        out.truncate(m);
        out
    }

    /// Stamp the refreshed members, punch holes where they move away, and summarize
    /// the chunk again.
    fn apply(self, todo: &[u16], res: &[Member], k: u32) -> ChunkOut {
        let mut moved = Vec::new();
        let (mut evals, mut coords, mut rows) = (0u64, 0u64, 0u64);
        for (&j, m) in todo.iter().zip(res) {
            let j = j as usize;
            evals += m.evals;
            coords += m.coords;
            rows += u64::from(m.evals > 0);
            self.stamp[j] = k;
            if m.to != NO_MOVE {
                moved.push((self.rows[j], m.d2, m.to));
                self.rows[j] = HOLE;
                self.d2[j] = f32::NEG_INFINITY;
                self.stamp[j] = u32::MAX;
            }
        }
        let (best, min_stamp) = summary(self.rows, self.d2, self.stamp);
        let base = self.chunk * CHUNK;
        ChunkOut {
            group: self.group,
            chunk: self.chunk,
            moved,
            best: best.map(|(v, r, p)| (v, r, base + p)),
            min_stamp,
            evals,
            coords,
            rows,
        }
    }
}

/// What a refresh needs besides the work item, shared by every task of a round.
struct Refresh<'a> {
    x: &'a [f32],
    d: usize,
    centers: &'a [f32],
    dist: SqDist,
    err: Option<(f64, f64)>,
    prune: bool,
}

impl Refresh<'_> {
    /// Apply the pending centers to the members of `it` at positions `part` (at most
    /// [`BATCH`]), writing each one's result to `out`.
    ///
    /// Centers outer, members inner, so each center row is read once for the batch;
    /// every member still sees its own pending centers in index order, skips the ones
    /// the triangle inequality rules out and stops a distance early once it cannot
    /// move, exactly as it would alone.
    fn batch(&self, it: &Item<'_>, part: &[u16], out: &mut [Member]) {
        let d = self.d;
        let b = part.len().min(out.len()).min(BATCH);
        let mut xrow: [&[f32]; BATCH] = [&[]; BATCH];
        let mut from = [0usize; BATCH];
        let mut reach = [0f64; BATCH];
        let mut start = usize::MAX;
        for m in 0..b {
            let j = part[m] as usize;
            let r = it.rows[j] as usize;
            xrow[m] = &self.x[r * d..(r + 1) * d];
            prefetch(xrow[m]);
            let s = it.stamp[j];
            from[m] = it.pending.partition_point(|e| e.0 < s);
            start = start.min(from[m]);
            reach[m] = member_reach(it.d2[j], self.err);
            out[m] = Member {
                d2: it.d2[j],
                ..Member::default()
            };
        }
        if b == 0 {
            return;
        }
        for (idx, &(c, gap)) in it.pending.iter().enumerate().skip(start) {
            let cu = c as usize;
            let crow = &self.centers[cu * d..(cu + 1) * d];
            for m in 0..b {
                if idx < from[m] {
                    continue;
                }
                let o = &mut out[m];
                if self.prune && skip_by(gap, reach[m], o.d2, self.err) {
                    continue;
                }
                let take_any = it.group == UNASSIGNED && o.to == NO_MOVE;
                // Brute force reads every coordinate (limit +inf); pruning may stop once
                // the partial sum shows the point cannot move (see `sq_dist_body`).
                let limit = if !self.prune || take_any {
                    f32::INFINITY
                } else {
                    o.d2
                };
                let (nd, n_read) = (self.dist)(xrow[m], crow, limit);
                o.evals += 1;
                o.coords += n_read as u64;
                // Strictly closer only: ties keep the older center, as brute force does.
                if take_any || nd < o.d2 {
                    o.d2 = nd;
                    o.to = c;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entry points

/// Farthest-first traversal over `rows` (all rows when `None`).
///
/// `initial` rows are centers already chosen: they are never picked, and count as
/// centers from the start. Without them, the first pick is `first` or else the lowest
/// candidate row. Returns the picked rows and the covering radius (Euclidean) of the
/// unpicked candidates after each pick (0 when none remain).
pub fn greedy(
    x: &[f32],
    n: usize,
    d: usize,
    budget: usize,
    first: Option<i64>,
    initial: &[i64],
    rows: Option<&[i64]>,
) -> KernelResult<(Vec<i64>, Vec<f32>)> {
    greedy_with(x, n, d, budget, first, initial, rows, true).map(|(s, r, _)| (s, r))
}

/// [`greedy`] with pruning switchable (`prune = false` is brute force through the same
/// code) and the distance counters returned.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn greedy_with(
    x: &[f32],
    n: usize,
    d: usize,
    budget: usize,
    first: Option<i64>,
    initial: &[i64],
    rows: Option<&[i64]>,
    prune: bool,
) -> KernelResult<(Vec<i64>, Vec<f32>, Stats)> {
    if d == 0 || x.len() != n * d {
        return Err(invalid!(
            "features buffer of {} values does not match n={n}, d={d}",
            x.len()
        ));
    }
    if n > u32::MAX as usize {
        return Err(invalid!("n_samples={n} exceeds the supported {}", u32::MAX));
    }
    let check = |name: &str, i: i64| -> KernelResult<u32> {
        if i < 0 || i as usize >= n {
            Err(invalid!("{name} holds index {i} outside [0, {n})"))
        } else {
            Ok(i as u32)
        }
    };
    // Candidates in ascending row order, so "lowest candidate" is the first one.
    let mut cand: Vec<u32> = match rows {
        Some(r) => r
            .iter()
            .map(|&i| check("rows", i))
            .collect::<KernelResult<_>>()?,
        None => (0..n as u32).collect(),
    };
    cand.sort_unstable();
    if let Some(w) = cand.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid!("rows holds the index {} twice", w[0]));
    }
    let init: Vec<u32> = initial
        .iter()
        .map(|&i| check("initial", i))
        .collect::<KernelResult<_>>()?;
    // Already-selected rows are centers, never picks.
    let mut is_init = init.clone();
    is_init.sort_unstable();
    cand.retain(|r| is_init.binary_search(r).is_err());
    if budget > cand.len() {
        return Err(invalid!(
            "budget={budget} exceeds the {} candidate rows that are not already selected",
            cand.len()
        ));
    }
    let started = Instant::now();
    let dist = sq_dist_for(simd::checked()?);
    let mut st = State {
        x,
        d,
        prune,
        dist,
        err: error_bounds(d),
        centers: Vec::with_capacity((init.len() + budget) * d),
        groups: Vec::with_capacity(init.len() + budget),
        unassigned: Group::default(),
        remaining: cand.len(),
        band: BAND_START,
        stats: Stats::default(),
    };
    let mut sel = Vec::with_capacity(budget);
    let mut radii = Vec::with_capacity(budget);
    if budget == 0 {
        return Ok((sel, radii, st.stats));
    }
    let start = if init.is_empty() {
        let pos = match first {
            Some(f) => cand
                .binary_search(&check("first", f)?)
                .map_err(|_| invalid!("first={f} is not one of the candidate rows"))?,
            None => 0,
        };
        Some(cand.remove(pos))
    } else {
        None
    };
    let bounds = vec![f32::INFINITY; cand.len()];
    st.unassigned = Group::with_members(cand, bounds, 0);
    for &c in &init {
        st.add_center(c);
    }
    if let Some(f) = start {
        st.remaining -= 1;
        st.add_center(f);
        sel.push(i64::from(f));
    }
    loop {
        // The farthest candidate now: the next pick, and the radius after the last one.
        let top = st.settle();
        if !sel.is_empty() {
            radii.push(top.map_or(0.0, |b| b.0.sqrt()));
        }
        if sel.len() == budget {
            break;
        }
        let Some((_, row, g, pos)) = top else {
            return Err(invalid!("ran out of candidates after {} picks", sel.len()));
        };
        st.remove(g, pos);
        st.add_center(row);
        sel.push(i64::from(row));
    }
    st.stats.ns_total = started.elapsed().as_nanos() as u64;
    Ok((sel, radii, st.stats))
}

/// Independent K-Center runs inside clusters, the clusters in parallel.
///
/// Cluster `c` holds rows `members[indptr[c]..indptr[c+1]]` and gets `quotas[c]` picks
/// starting from `first[c]` (-1: its lowest row). Each run is itself parallel (nested
/// rayon), so one large cluster does not serialize the call; the output is the picks
/// of every cluster concatenated in cluster order, each in pick order.
pub fn per_cluster(
    x: &[f32],
    n: usize,
    d: usize,
    indptr: &[i64],
    members: &[i64],
    quotas: &[i64],
    first: &[i64],
) -> KernelResult<Vec<i64>> {
    let r = quotas.len();
    if indptr.len() != r + 1 || first.len() != r {
        return Err(invalid!(
            "indptr has {} entries and first {} for {r} quotas",
            indptr.len(),
            first.len()
        ));
    }
    let parts: Vec<KernelResult<Vec<i64>>> = (0..r)
        .into_par_iter()
        .map(|c| {
            let (a, b) = (indptr[c], indptr[c + 1]);
            if a < 0 || b < a || b as usize > members.len() {
                return Err(invalid!(
                    "indptr[{c}..{}] = ({a}, {b}) is not a valid range",
                    c + 1
                ));
            }
            let q = quotas[c];
            if q < 0 {
                return Err(invalid!("quotas[{c}]={q} is negative"));
            }
            if q == 0 {
                return Ok(Vec::new());
            }
            let rows = &members[a as usize..b as usize];
            let f = if first[c] < 0 { None } else { Some(first[c]) };
            greedy(x, n, d, q as usize, f, &[], Some(rows)).map(|(s, _)| s)
        })
        .collect();
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
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

    #[test]
    fn skip_test_never_skips_a_point_that_could_move() {
        let err = error_bounds(1);
        // 1-D: center a = 0, new center c at 2r exactly; the point at r ties and stays,
        // but rounding could make it closer, so it must not be skipped.
        assert!(!can_skip(4.0, 1.0, 1.0, err));
        assert!(can_skip(4.1, 1.0, 1.0, err));
        // A point already closer to its best center than to a: an easier skip.
        assert!(can_skip(4.0, 0.25, 0.25, err));
        assert!(!can_skip(f32::INFINITY, 1.0, 1.0, err));
        assert!(!can_skip(4.0, f32::INFINITY, 1.0, err));
        assert!(!can_skip(1e30, 1.0, 1.0, None));
        assert!(error_bounds(1 << 30).is_none());
        // Subnormal scale: the absolute error term keeps it from skipping.
        let tiny = f32::from_bits(4);
        assert!(!can_skip(tiny * 4.5, tiny, tiny, err));
    }

    #[test]
    fn invalid_inputs_are_errors_not_panics() {
        let x = [0f32; 6];
        assert!(greedy(&x, 3, 2, 4, None, &[], None).is_err());
        assert!(greedy(&x, 3, 3, 1, None, &[], None).is_err());
        assert!(greedy(&x, 3, 2, 1, Some(5), &[], None).is_err());
        assert!(greedy(&x, 3, 2, 1, None, &[-1], None).is_err());
        assert!(greedy(&x, 3, 2, 1, None, &[], Some(&[0, 0])).is_err());
        assert!(greedy(&x, 3, 2, 3, None, &[1], None).is_err());
        assert!(per_cluster(&x, 3, 2, &[0, 5], &[0, 1], &[1], &[-1]).is_err());
        assert_eq!(greedy(&x, 3, 2, 0, None, &[], None).unwrap().0.len(), 0);
    }
}
