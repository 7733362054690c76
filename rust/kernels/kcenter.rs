//! Greedy K-Center (farthest-first traversal; Gonzalez 1985, Sener & Savarese 2018),
//! exact, with triangle-inequality pruning over points grouped by their nearest center.
//!
//! Algorithm. Every unpicked candidate x keeps its nearest center a(x) and the squared
//! distance r(x)² to it; candidates live in one list per center (its *group*), and each
//! group keeps its farthest member. Adding a center c:
//! 1. compute ||c − a|| for every center a with a non-empty group;
//! 2. skip every group with ||c − a|| ≥ 2·max r (no member can get closer to c, since
//!    ||x − c|| ≥ ||c − a|| − r(x) ≥ r(x));
//! 3. inside the other groups, skip each member with ||c − a|| ≥ 2·r(x) and compute
//!    ||x − c||² for the rest; the ones strictly closer to c move to c's group;
//! 4. the next pick is the farthest member over all group maxima (O(centers), not O(n)).
//!
//! Exactness. Skipping must never drop an update brute force would make, so the skip
//! test carries a margin larger than the worst float32 rounding of the three distances
//! involved (see [`skip_bound`]). Every distance — point–center and center–center, pruned
//! or not — comes from the one [`SqDist`] routine with a fixed summation order and no FMA
//! contraction, so `prune = false` (brute force: no group or point is ever skipped) gives
//! bit-identical picks, radii and assignments; the tests check that.
//!
//! Complexity. Worst case O(budget·n·d) time like brute force; on clustered data most
//! groups are skipped after the first ~100 picks. Memory O(n) for the groups, plus
//! O(centers·d) for a contiguous copy of the center rows; never budget × n.
//!
//! Determinism. Work is split into fixed-size chunks of group members (independent of
//! the thread count), chunk results are merged in group then chunk order, and every
//! maximum breaks ties by the lowest row index, so the output does not depend on the
//! number of threads.
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

/// Largest `r²` (as f64) a member may have and still be skipped for a new center at
/// squared distance `dcc2` from its own center; negative when nothing may be skipped.
///
/// In exact arithmetic a member with `dcc ≥ 2·r` cannot get strictly closer to the new
/// center. Each float32 squared distance over `d` coordinates is within a relative
/// `γ ≈ (d + 2)·2⁻²⁴` of the exact one (any summation order, no FMA), plus an absolute
/// error below `d·2⁻¹⁴⁹` from subnormal products. Requiring `dcc2 ≥ 4·r2·(1 + 8γ) + abs`
/// leaves the exact distances a margin of ≥ 2γ, which covers the rounding of both the
/// skipped point's computed distances: the computed ||x − c||² is then ≥ the stored r²,
/// so brute force would not have updated it either. An infinite `dcc2` (overflow) gives
/// no information, so it skips nothing.
fn skip_bound(dcc2: f32, d: usize) -> f64 {
    if !dcc2.is_finite() {
        return -1.0;
    }
    let gamma = (d as f64 + 4.0) * f64::from(f32::EPSILON) * 0.5 * 1.01;
    let abs = (d as f64 + 4.0) * f64::from(f32::MIN_POSITIVE);
    (f64::from(dcc2) - abs) / (4.0 * (1.0 + 8.0 * gamma))
}

// ---------------------------------------------------------------------------------------
// Groups

/// The unpicked candidates whose nearest center is one center, and their farthest one.
#[derive(Default)]
struct Group {
    rows: Vec<u32>,
    d2: Vec<f32>,
    /// (squared distance, row, position) of the farthest member; ties to the lowest row.
    best: Option<(f32, u32, usize)>,
}

/// Whether (v, row) beats the current best: larger distance, or equal and a lower row.
#[inline]
fn better(v: f32, row: u32, best: Option<(f32, u32, usize)>) -> bool {
    match best {
        None => true,
        Some((bv, br, _)) => v > bv || (v == bv && row < br),
    }
}

/// What one chunk of a group reports after a new center was added.
struct ChunkOut {
    /// Members kept; they are compacted to the front of the chunk.
    kept: usize,
    /// Members now nearest to the new center, with their new squared distance.
    moved: Vec<(u32, f32)>,
    best: Option<(f32, u32, usize)>,
    evals: u64,
    coords: u64,
}

/// Counters for the benchmark: how many point–center distances were computed, and how
/// many brute force would have computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Point–center distances started (not skipped by the triangle inequality).
    pub distance_evals: u64,
    /// Point–center distances brute force computes (unpicked candidates per center).
    pub brute_force_evals: u64,
    /// Coordinates read by the started distances (early abandoning stops some).
    pub coords_read: u64,
    /// Points that moved to a new, strictly closer center.
    pub moved: u64,
}

/// Farthest-first state: the groups (index = center number), the center rows copied
/// contiguously, and the candidates no center has reached yet.
struct State<'a> {
    x: &'a [f32],
    d: usize,
    prune: bool,
    dist: SqDist,
    centers: Vec<f32>,
    groups: Vec<Group>,
    /// Candidates before the first center; every one of them moves to it.
    unassigned: Group,
    remaining: usize,
    stats: Stats,
}

impl<'a> State<'a> {
    fn row(&self, i: u32) -> &'a [f32] {
        let i = i as usize;
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// Add row `c` as a center and move every candidate now nearest to it.
    fn add_center(&mut self, c: u32) {
        let d = self.d;
        let crow = self.row(c);
        let k = self.groups.len();
        let dist = self.dist;
        self.stats.brute_force_evals += self.remaining as u64;

        // Skip bounds per existing group (center–center distances, same routine).
        let centers = &self.centers;
        let groups = &self.groups;
        let prune = self.prune;
        let mut bounds = vec![-1.0f64; k];
        bounds
            .par_chunks_mut(CENTER_CHUNK)
            .enumerate()
            .for_each(|(ci, out)| {
                for (j, b) in out.iter_mut().enumerate() {
                    let a = ci * CENTER_CHUNK + j;
                    *b = if !prune || groups[a].rows.is_empty() {
                        -1.0
                    } else {
                        // A member at distance 0 can never get strictly closer.
                        skip_bound(dist(crow, &centers[a * d..(a + 1) * d], f32::INFINITY).0, d)
                            .max(0.0)
                    };
                }
            });

        // Work items: fixed-size chunks of every group that cannot be skipped whole.
        // Index k stands for the unassigned candidates (bound: nothing skipped, all move).
        let unassigned = &mut self.unassigned;
        let mut items: Vec<(usize, &mut [u32], &mut [f32])> = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        for (g, grp) in self
            .groups
            .iter_mut()
            .enumerate()
            .chain(std::iter::once((k, unassigned)))
        {
            if grp.rows.is_empty() {
                continue;
            }
            if g < k {
                // A stale maximum (the group just lost its farthest member to the pick)
                // reads as infinite, so that group is always scanned and refreshed.
                let far = grp.best.map_or(f32::INFINITY, |b| b.0);
                if f64::from(far) <= bounds[g] {
                    continue;
                }
            }
            touched.push(g);
            for (r, v) in grp.rows.chunks_mut(CHUNK).zip(grp.d2.chunks_mut(CHUNK)) {
                items.push((g, r, v));
            }
        }
        let x = self.x;
        let bounds = &bounds;
        let outs: Vec<ChunkOut> = items
            .into_par_iter()
            .map(|(g, rows, d2)| {
                let (bound, force) = if g < k {
                    (bounds[g], false)
                } else {
                    (-1.0, true)
                };
                scan_chunk(x, d, crow, dist, bound, force, prune, rows, d2)
            })
            .collect();

        // Merge in group then chunk order: compact each touched group, gather the movers.
        let mut movers: Vec<(u32, f32)> = Vec::new();
        let mut outs = outs.into_iter();
        for &g in &touched {
            let grp = if g < k {
                &mut self.groups[g]
            } else {
                &mut self.unassigned
            };
            let n_chunks = grp.rows.len().div_ceil(CHUNK);
            let mut w = 0usize;
            let mut best: Option<(f32, u32, usize)> = None;
            for ch in 0..n_chunks {
                // The collect above produced exactly one output per chunk, in this order.
                let Some(o) = outs.next() else { break };
                self.stats.distance_evals += o.evals;
                self.stats.coords_read += o.coords;
                self.stats.moved += o.moved.len() as u64;
                let start = ch * CHUNK;
                if w != start {
                    grp.rows.copy_within(start..start + o.kept, w);
                    grp.d2.copy_within(start..start + o.kept, w);
                }
                if let Some((v, r, p)) = o.best {
                    if better(v, r, best) {
                        best = Some((v, r, w + p));
                    }
                }
                w += o.kept;
                movers.extend(o.moved);
            }
            grp.rows.truncate(w);
            grp.d2.truncate(w);
            grp.best = best;
        }
        // Every group stays sorted by row (compaction and `remove` keep the order), so
        // a scan walks the feature matrix in address order: friendlier to the TLB and
        // the prefetchers than a scattered order.
        movers.sort_unstable_by_key(|&(r, _)| r);
        let mut new_group = Group {
            rows: Vec::with_capacity(movers.len()),
            d2: Vec::with_capacity(movers.len()),
            best: None,
        };
        for (r, v) in movers {
            if better(v, r, new_group.best) {
                new_group.best = Some((v, r, new_group.rows.len()));
            }
            new_group.rows.push(r);
            new_group.d2.push(v);
        }
        self.centers.extend_from_slice(crow);
        self.groups.push(new_group);
    }

    /// The farthest unpicked candidate: (squared distance, row, group, position).
    fn farthest(&self) -> Option<(f32, u32, usize, usize)> {
        let mut best: Option<(f32, u32, usize)> = None;
        let mut at = 0usize;
        for (g, grp) in self.groups.iter().enumerate() {
            if let Some((v, r, p)) = grp.best {
                if better(v, r, best) {
                    best = Some((v, r, p));
                    at = g;
                }
            }
        }
        best.map(|(v, r, p)| (v, r, at, p))
    }

    /// Take the member at `pos` out of group `g` (it is about to become a center).
    fn remove(&mut self, g: usize, pos: usize) {
        let grp = &mut self.groups[g];
        grp.rows.remove(pos);
        grp.d2.remove(pos);
        // Marked stale; the next `add_center` always scans this group and refreshes it.
        grp.best = None;
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

/// Update one chunk of a group for a new center `c`; keep the members that stay,
/// compacted to the front, and return the ones that move.
///
/// Three passes over the chunk's (row, r²) entries, which stay in L1: pick the members
/// the skip test cannot rule out, compute their distances (prefetching the rows a few
/// members ahead: they are scattered over the feature matrix), then compact.
#[allow(clippy::too_many_arguments)]
fn scan_chunk(
    x: &[f32],
    d: usize,
    c: &[f32],
    dist: SqDist,
    bound: f64,
    force: bool,
    early: bool,
    rows: &mut [u32],
    d2: &mut [f32],
) -> ChunkOut {
    let mut out = ChunkOut {
        kept: 0,
        moved: Vec::new(),
        best: None,
        evals: 0,
        coords: 0,
    };
    let len = rows.len().min(d2.len()).min(CHUNK);
    let row = |r: u32| &x[r as usize * d..(r as usize + 1) * d];
    let mut todo = [0u16; CHUNK];
    let mut m = 0usize;
    for (j, &v) in d2[..len].iter().enumerate() {
        if force || f64::from(v) > bound {
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
        let (r, v) = (rows[j], d2[j]);
        // Brute force reads every coordinate (limit +inf); pruning may stop once the
        // partial sum shows the point cannot move (see `sq_dist_body`).
        let limit = if force || !early { f32::INFINITY } else { v };
        let (nd, read) = dist(row(r), c, limit);
        out.evals += 1;
        out.coords += read as u64;
        // Strictly closer only: ties keep the older center, as brute force does.
        if force || nd < v {
            out.moved.push((r, nd));
            gone[j / 64] |= 1 << (j % 64);
        }
    }
    for j in 0..len {
        if gone[j / 64] >> (j % 64) & 1 == 1 {
            continue;
        }
        let (r, v) = (rows[j], d2[j]);
        let w = out.kept;
        rows[w] = r;
        d2[w] = v;
        if better(v, r, out.best) {
            out.best = Some((v, r, w));
        }
        out.kept += 1;
    }
    out
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
        centers: Vec::with_capacity((init.len() + budget) * d),
        groups: Vec::with_capacity(init.len() + budget),
        unassigned: Group::default(),
        remaining: cand.len(),
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
    st.unassigned = Group {
        d2: vec![f32::INFINITY; cand.len()],
        rows: cand,
        best: None,
    };
    for &c in &init {
        st.add_center(c);
    }
    if let Some(f) = start {
        st.remaining -= 1;
        st.add_center(f);
        sel.push(i64::from(f));
        radii.push(st.farthest().map_or(0.0, |b| b.0.sqrt()));
    }
    while sel.len() < budget {
        let Some((_, row, g, pos)) = st.farthest() else {
            return Err(invalid!("ran out of candidates after {} picks", sel.len()));
        };
        st.remove(g, pos);
        st.add_center(row);
        sel.push(i64::from(row));
        radii.push(st.farthest().map_or(0.0, |b| b.0.sqrt()));
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
    fn skip_bound_never_skips_a_point_that_could_move() {
        // 1-D: center a = 0, new center c at 2r exactly; the point at r ties and stays.
        assert!(skip_bound(4.0, 1) < 1.0);
        assert!(skip_bound(4.1, 1) >= 1.0);
        assert!(skip_bound(f32::INFINITY, 8) < 0.0);
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
