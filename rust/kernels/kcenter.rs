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
//!    touched: O(centers·d)).
//! 2. The next pick is found by `State::settle`: while the largest bound over all
//!    groups (ties: lowest row) belongs to a stale member, *refresh* every stale member
//!    whose bound lies in a band just below it: walk the group's pending centers newer
//!    than its stamp, skip each with ‖c − a‖ − ‖x − a‖ ≥ √(current best) (triangle
//!    inequality, see `can_skip`), compute the rest (reading the row once: the centers
//!    then come from cache), move x to the strictly closest one. Once the largest bound
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
//! per member) of the groups that reach the band, and read only the refreshed rows.
//!
//! Memory. O(n) for the groups (row, bound, stamp: 12 bytes per candidate), O(centers·d)
//! for a contiguous copy of the center rows, and the pending lists, capped at
//! 2 entries per member + 64 per group (8 bytes each; a group over its cap is refreshed
//! whole on the next pick), so O(n + centers) in all; never budget × n. 1M × 512,
//! budget 3000: ≈ 58 MB peak extra (3 % of the 2 GB pool).
//!
//! Determinism. Refresh work is split into fixed-size chunks of group members
//! (independent of the thread count), chunk results are merged in group then chunk
//! order, movers are appended sorted by (center, row), and every maximum breaks ties by
//! the lowest row index, so the output does not depend on the number of threads.
//!
//! SIMD. The distance loop has an AVX2 path (explicit intrinsics) and a portable one,
//! picked at run time with `is_x86_feature_detected!` (never `target-cpu=native`); both
//! sum the same 32 lanes in the same order without fused multiply-adds, so they give
//! bit-identical results. The loop stops early once a partial sum proves the point
//! cannot move (exact: see `sq_dist_body`).

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::errors::KernelResult;
use crate::invalid;

/// Group members handled by one task. Fixed, so results never depend on thread count.
/// At most 2^16 (positions inside a chunk are stored as u16).
const CHUNK: usize = 2048;
/// Centers whose center–center distances one task computes.
const CENTER_CHUNK: usize = 64;
/// Lanes of the distance accumulator: 2 AVX-512 or 4 AVX2 registers, enough to hide
/// the add latency. Part of the summation order, so changing it changes results.
const LANES: usize = 32;

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

// The explicit-SIMD path below keeps the portable order exactly: lane l of the 32
// accumulator lanes lives in register l / 8, slot l % 8; each lane sees
// `acc + (x − y)·(x − y)` with separate roundings (no FMA: LLVM does not contract
// intrinsics), and the in-register fold adds lane l + w into lane l for w = 16, 8, 4,
// 2, 1 like `fold`. Float addition is commutative, so the results are bit-identical.
//
// No AVX-512 variant: its intrinsics are stable only since Rust 1.89 (MSRV is 1.85),
// and four 256-bit accumulators already outrun memory on this streaming loop.

/// # Safety
/// The CPU must support AVX2 (AVX is enough for the instructions used).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_avx2_inner(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    use std::arch::x86_64::*;
    #[inline(always)]
    fn fold256(s: &[__m256; 4]) -> f32 {
        // SAFETY: only inlined into `sq_dist_avx2_inner`, which requires AVX2.
        unsafe {
            let t0 = _mm256_add_ps(s[0], s[2]);
            let t1 = _mm256_add_ps(s[1], s[3]);
            let u = _mm256_add_ps(t0, t1);
            let v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps::<1>(u));
            let w = _mm_add_ps(v, _mm_movehl_ps(v, v));
            _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps::<1>(w, w)))
        }
    }
    let n = a.len().min(b.len());
    let blocks = n / LANES;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s = [_mm256_setzero_ps(); 4];
    for blk in 0..blocks {
        let o = blk * LANES;
        for (r, acc) in s.iter_mut().enumerate() {
            // SAFETY: o + 8r + 8 <= blocks * 32 <= n, the length of both slices.
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
    let mut acc = [0f32; LANES];
    for (r, v) in s.iter().enumerate() {
        // SAFETY: `acc` holds 32 f32; each 8-lane store at 8r fits.
        unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * r), *v) };
    }
    finish(acc, a, b, blocks * LANES)
}

#[cfg(target_arch = "x86_64")]
fn sq_dist_avx2(a: &[f32], b: &[f32], limit: f32) -> (f32, usize) {
    // SAFETY: `select_sq_dist` hands out this function only after
    // `is_x86_feature_detected!("avx2")` returned true.
    unsafe { sq_dist_avx2_inner(a, b, limit) }
}

fn select_sq_dist() -> (SqDist, &'static str) {
    static CHOICE: OnceLock<(SqDist, &'static str)> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                return (sq_dist_avx2 as SqDist, "avx2");
            }
        }
        (sq_dist_portable as SqDist, "portable")
    })
}

/// Which SIMD path the K-Center distance loop uses in this process.
pub fn simd_path() -> &'static str {
    select_sq_dist().1
}

/// Squared distance through the process-wide SIMD path (same order on every path).
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    (select_sq_dist().0)(a, b, f32::INFINITY).0
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
#[inline]
fn can_skip(dcc2: f32, ra2: f32, rc2: f32, err: Option<(f64, f64)>) -> bool {
    let Some((gamma, abs)) = err else {
        return false;
    };
    if !dcc2.is_finite() || !ra2.is_finite() {
        return false;
    }
    let lo_cc = ((f64::from(dcc2) - abs) / (1.0 + gamma)).max(0.0);
    let hi_xa = (f64::from(ra2) + abs) / (1.0 - gamma);
    let s = lo_cc.sqrt() - hi_xa.sqrt();
    if s <= 0.0 {
        return false;
    }
    (1.0 - gamma) * s * s * (1.0 - 1e-9) - abs >= f64::from(rc2)
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
/// they were added, with their squared distance to this group's center.
#[derive(Default)]
struct Group {
    rows: Vec<u32>,
    d2: Vec<f32>,
    stamp: Vec<u32>,
    pending: Vec<(u32, f32)>,
    /// (d2, row, position) of the member with the largest `d2`; ties to the lowest row.
    best: Option<(f32, u32, usize)>,
    /// Set when `pending` grew past its memory cap: the next refresh updates the whole
    /// group, whatever its members' bounds, so the list can be emptied.
    overdue: bool,
}

impl Group {
    fn recompute_best(&mut self) {
        let mut best = None;
        for (p, (&v, &r)) in self.d2.iter().zip(&self.rows).enumerate() {
            if better(v, r, best) {
                best = Some((v, r, p));
            }
        }
        self.best = best;
    }
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
    /// Members kept; they are compacted to the front of the chunk.
    kept: usize,
    /// Members now nearest to another center: (row, squared distance, center).
    moved: Vec<(u32, f32, u32)>,
    best: Option<(f32, u32, usize)>,
    /// Smallest stamp among the kept members (u32::MAX when none).
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
        let d = self.d;
        let crow = self.row(c);
        let k = self.groups.len();
        let dist = self.dist;
        let err = self.err;
        self.stats.brute_force_evals += self.remaining as u64;

        // Center–center distances to every group with members (same routine).
        let centers = &self.centers;
        let groups = &self.groups;
        let prune = self.prune;
        let mut dcc = vec![f32::INFINITY; k];
        dcc.par_chunks_mut(CENTER_CHUNK)
            .enumerate()
            .for_each(|(ci, out)| {
                for (j, v) in out.iter_mut().enumerate() {
                    let a = ci * CENTER_CHUNK + j;
                    if !groups[a].rows.is_empty() {
                        *v = dist(crow, &centers[a * d..(a + 1) * d], f32::INFINITY).0;
                    }
                }
            });
        for (grp, &dcc2) in self.groups.iter_mut().zip(&dcc) {
            let Some((far, _, _)) = grp.best else {
                continue;
            };
            // Group-level test against the largest bound: no member can move to c.
            if prune && can_skip(dcc2, far, far, err) {
                continue;
            }
            grp.pending.push((k as u32, dcc2));
            if grp.pending.len() > PENDING_SLACK + PENDING_PER_MEMBER * grp.rows.len() {
                grp.overdue = true;
            }
        }
        if !self.unassigned.rows.is_empty() {
            self.unassigned.pending.push((k as u32, f32::INFINITY));
        }
        self.centers.extend_from_slice(crow);
        self.groups.push(Group::default());
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
    fn refresh(&mut self, threshold: f32) {
        self.stats.rounds += 1;
        let k = self.groups.len() as u32;
        let (x, d, dist, err, prune) = (self.x, self.d, self.dist, self.err, self.prune);
        let centers = &self.centers;
        let unassigned = &mut self.unassigned;
        // Work items: fixed-size chunks of every group whose largest bound reaches the
        // threshold. Chunk results are merged in this (group, chunk) order.
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
            let pending = &grp.pending[..];
            for ((r, v), s) in grp
                .rows
                .chunks_mut(CHUNK)
                .zip(grp.d2.chunks_mut(CHUNK))
                .zip(grp.stamp.chunks_mut(CHUNK))
            {
                items.push((g, t, pending, r, v, s));
            }
        }
        let outs: Vec<ChunkOut> = items
            .into_par_iter()
            .map(|(g, t, pending, rows, d2, stamp)| {
                let ctx = Refresh {
                    x,
                    d,
                    centers,
                    dist,
                    err,
                    prune,
                    k,
                    threshold: t,
                    force: g == UNASSIGNED,
                    pending,
                };
                ctx.chunk(rows, d2, stamp)
            })
            .collect();

        // Merge in group then chunk order: compact each touched group, gather the movers.
        let mut movers: Vec<(u32, f32, u32)> = Vec::new();
        let mut outs = outs.into_iter();
        for &g in &touched {
            let stats = &mut self.stats;
            let grp = if g == UNASSIGNED {
                &mut self.unassigned
            } else {
                &mut self.groups[g]
            };
            let n_chunks = grp.rows.len().div_ceil(CHUNK);
            let mut w = 0usize;
            let mut best: Option<(f32, u32, usize)> = None;
            let mut min_stamp = u32::MAX;
            for ch in 0..n_chunks {
                // The collect above produced exactly one output per chunk, in this order.
                let Some(o) = outs.next() else { break };
                stats.distance_evals += o.evals;
                stats.coords_read += o.coords;
                stats.rows_read += o.rows;
                stats.moved += o.moved.len() as u64;
                let start = ch * CHUNK;
                if w != start {
                    grp.rows.copy_within(start..start + o.kept, w);
                    grp.d2.copy_within(start..start + o.kept, w);
                    grp.stamp.copy_within(start..start + o.kept, w);
                }
                if let Some((v, r, p)) = o.best {
                    if better(v, r, best) {
                        best = Some((v, r, w + p));
                    }
                }
                min_stamp = min_stamp.min(o.min_stamp);
                w += o.kept;
                movers.extend(o.moved);
            }
            grp.rows.truncate(w);
            grp.d2.truncate(w);
            grp.stamp.truncate(w);
            grp.best = best;
            grp.overdue = false;
            // Entries every member has already applied are no longer needed.
            let keep_from = grp.pending.partition_point(|e| e.0 < min_stamp);
            grp.pending.drain(..keep_from);
            if grp.rows.is_empty() {
                grp.pending = Vec::new();
            }
        }
        // Movers join their new group fully updated (stamp = number of centers).
        movers.sort_unstable_by_key(|&(r, _, c)| (c, r));
        for (r, v, c) in movers {
            let grp = self.group_mut(c as usize);
            if better(v, r, grp.best) {
                grp.best = Some((v, r, grp.rows.len()));
            }
            grp.rows.push(r);
            grp.d2.push(v);
            grp.stamp.push(k);
        }
    }

    /// Take the member at `pos` out of group `g` (it is about to become a center).
    fn remove(&mut self, g: usize, pos: usize) {
        let grp = self.group_mut(g);
        grp.rows.remove(pos);
        grp.d2.remove(pos);
        grp.stamp.remove(pos);
        grp.recompute_best();
        self.remaining -= 1;
    }
}

/// Rows ahead whose first cache lines are prefetched while one distance is computed.
const PREFETCH_AHEAD: usize = 2;
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

/// One refresh work item: group id, threshold, the group's pending centers, and one
/// chunk of its rows, bounds and stamps.
type Item<'s> = (
    usize,
    f32,
    &'s [(u32, f32)],
    &'s mut [u32],
    &'s mut [f32],
    &'s mut [u32],
);

/// What a refresh of one group needs, shared by its chunks.
struct Refresh<'a> {
    x: &'a [f32],
    d: usize,
    centers: &'a [f32],
    dist: SqDist,
    err: Option<(f64, f64)>,
    prune: bool,
    /// Number of centers: a refreshed member gets this stamp.
    k: u32,
    threshold: f32,
    /// The unassigned group: the first applied center always takes the member.
    force: bool,
    pending: &'a [(u32, f32)],
}

impl Refresh<'_> {
    /// Refresh one chunk of a group: apply the pending centers to the stale members
    /// whose bound is `>= threshold`, keep the members that stay (compacted to the
    /// front) and return the ones that move.
    ///
    /// Three passes over the chunk's entries, which stay in L1: pick the members to
    /// refresh, refresh them (prefetching the rows a few members ahead: they are
    /// scattered over the feature matrix), then compact.
    fn chunk(&self, rows: &mut [u32], d2: &mut [f32], stamp: &mut [u32]) -> ChunkOut {
        let d = self.d;
        let mut out = ChunkOut {
            kept: 0,
            moved: Vec::new(),
            best: None,
            min_stamp: u32::MAX,
            evals: 0,
            coords: 0,
            rows: 0,
        };
        let len = rows.len().min(d2.len()).min(stamp.len()).min(CHUNK);
        let row = |r: u32| &self.x[r as usize * d..(r as usize + 1) * d];
        let mut todo = [0u16; CHUNK];
        let mut m = 0usize;
        for j in 0..len {
            if stamp[j] < self.k && d2[j] >= self.threshold {
                // CHUNK <= 2^16, so a position fits in u16.
                todo[m] = j as u16;
                m += 1;
            }
        }
        let mut gone = [0u64; CHUNK / 64];
        for t in 0..m {
            if let Some(&ahead) = todo[..m].get(t + PREFETCH_AHEAD) {
                prefetch(row(rows[ahead as usize]));
            }
            let j = todo[t] as usize;
            let (r, ra2) = (rows[j], d2[j]);
            let xr = row(r);
            let from = self.pending.partition_point(|e| e.0 < stamp[j]);
            let mut cur = ra2;
            let mut to: Option<u32> = None;
            let mut read = false;
            for &(c, dcc2) in &self.pending[from..] {
                if self.prune && can_skip(dcc2, ra2, cur, self.err) {
                    continue;
                }
                let take_any = self.force && to.is_none();
                // Brute force reads every coordinate (limit +inf); pruning may stop once
                // the partial sum shows the point cannot move (see `sq_dist_body`).
                let limit = if !self.prune || take_any {
                    f32::INFINITY
                } else {
                    cur
                };
                let cu = c as usize;
                let (nd, n_read) = (self.dist)(xr, &self.centers[cu * d..(cu + 1) * d], limit);
                out.evals += 1;
                out.coords += n_read as u64;
                read = true;
                // Strictly closer only: ties keep the older center, as brute force does.
                if take_any || nd < cur {
                    cur = nd;
                    to = Some(c);
                }
            }
            out.rows += u64::from(read);
            stamp[j] = self.k;
            if let Some(c) = to {
                out.moved.push((r, cur, c));
                gone[j / 64] |= 1 << (j % 64);
            }
        }
        for j in 0..len {
            if gone[j / 64] >> (j % 64) & 1 == 1 {
                continue;
            }
            let (r, v, s) = (rows[j], d2[j], stamp[j]);
            let w = out.kept;
            rows[w] = r;
            d2[w] = v;
            stamp[w] = s;
            if better(v, r, out.best) {
                out.best = Some((v, r, w));
            }
            out.min_stamp = out.min_stamp.min(s);
            out.kept += 1;
        }
        out
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
    let (dist, _) = select_sq_dist();
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
    let best = cand.first().map(|&r| (f32::INFINITY, r, 0));
    st.unassigned = Group {
        d2: vec![f32::INFINITY; cand.len()],
        stamp: vec![0; cand.len()],
        rows: cand,
        pending: Vec::new(),
        best,
        overdue: false,
    };
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

    /// A small deterministic generator, so the test needs no extra crate.
    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 7.0
            })
            .collect()
    }

    #[test]
    fn simd_paths_are_bit_identical_and_early_abandon_is_exact() {
        let paths: Vec<SqDist> = {
            let mut p: Vec<SqDist> = vec![sq_dist_portable];
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                p.push(sq_dist_avx2);
            }
            p.push(select_sq_dist().0);
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
