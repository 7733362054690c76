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

//!
//! Threads. A top-level traversal on two or more threads runs its parallel passes on
//! a team of persistent workers that spin between passes (`team`): a pick is a few
//! passes of tens of µs each, too short for a rayon fork/join whose helper has gone
//! to sleep in the serial gap before it. Passes with too few units to split run on
//! the calling thread. Runs nested in [`per_cluster`] use rayon.
//!
//! Layout: `distance` (the SIMD distance loop), `bounds` (the skip tests' error
//! bounds), `state` (groups, state, refresh rounds), `scan` (the refresh work items
//! and batches), `team` (where the passes run); the entry points are here.

mod bounds;
mod distance;
mod scan;
mod state;
mod team;

use rayon::prelude::*;

use crate::errors::KernelResult;
use crate::invalid;
use crate::kernels::control::{Control, NEVER};
use crate::kernels::simd;

use bounds::error_bounds;
use distance::sq_dist_for;
pub use distance::{sq_dist, SqDist};
pub use state::Stats;
use state::{Clock, Group, State, BAND_START};
use team::{with_team, Exec, Par};

/// Positions per chunk: the unit of the group summaries and of the scan and apply
/// passes. Fixed, so results never depend on thread count. At most 2^16 (positions
/// inside a chunk are stored as u16).
const CHUNK: usize = 512;
/// Centers whose center–center distances one task computes.
const CENTER_CHUNK: usize = 64;

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
    greedy_with(x, n, d, budget, first, initial, rows, true, &NEVER).map(|(s, r, _)| (s, r))
}

/// [`greedy`] with pruning switchable (`prune = false` is brute force through the same
/// code) and the distance counters returned.
///
/// A top-level call: on a pool of two or more threads its parallel passes run on a
/// team of persistent workers (see `team`); `ECOS_FAST_KCENTER_EXEC` (read once per
/// process; for tests and benchmarks) picks `eager` (the team splits every pass of
/// two or more units, however small) or `rayon` (every pass a rayon fork/join, as
/// before the team). The picks are the same in every mode.
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
    ctl: &Control,
) -> KernelResult<(Vec<i64>, Vec<f32>, Stats)> {
    greedy_how(x, n, d, budget, first, initial, rows, prune, ctl, How::Top)
}

/// How a traversal runs its parallel passes.
#[derive(Clone, Copy)]
enum How<'t> {
    /// A top-level call: the team (or the mode `ECOS_FAST_KCENTER_EXEC` asks for).
    Top,
    /// Inside [`per_cluster`]'s parallel loop: rayon, whose idle workers take other
    /// clusters' work (a team's spinning helpers would hold threads other clusters need).
    Nested,
    /// Exactly this (unit tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Forced(Par<'t>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExecMode {
    Team,
    Eager,
    Rayon,
}

/// `ECOS_FAST_KCENTER_EXEC`: unset or `team`, `eager`, `rayon`; read once. Anything
/// else is the default (it only changes the speed, never the picks).
fn exec_mode() -> ExecMode {
    static MODE: std::sync::OnceLock<ExecMode> = std::sync::OnceLock::new();
    *MODE.get_or_init(
        || match std::env::var("ECOS_FAST_KCENTER_EXEC").as_deref() {
            Ok("eager") => ExecMode::Eager,
            Ok("rayon") => ExecMode::Rayon,
            _ => ExecMode::Team,
        },
    )
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn greedy_how(
    x: &[f32],
    n: usize,
    d: usize,
    budget: usize,
    first: Option<i64>,
    initial: &[i64],
    rows: Option<&[i64]>,
    prune: bool,
    ctl: &Control,
    exec: How<'_>,
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
    let dist = sq_dist_for(simd::checked()?);
    if budget == 0 {
        return Ok((Vec::new(), Vec::new(), Stats::default()));
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
    let run = |par: Par<'_>| traverse(x, d, budget, dist, prune, cand, start, &init, par, ctl);
    match exec {
        How::Top => {
            let mode = exec_mode();
            match mode {
                ExecMode::Rayon => run(Par {
                    exec: Exec::Rayon,
                    eager: true,
                }),
                _ => with_team(mode == ExecMode::Eager, run),
            }
        }
        How::Nested => run(Par {
            exec: Exec::Rayon,
            eager: false,
        }),
        How::Forced(par) => run(par),
    }
}

/// The traversal proper, inputs validated: `cand` are the candidate rows (ascending,
/// without `start` and the `init` centers), `start` the first pick when no `init`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn traverse(
    x: &[f32],
    d: usize,
    budget: usize,
    dist: SqDist,
    prune: bool,
    cand: Vec<u32>,
    start: Option<u32>,
    init: &[u32],
    par: Par<'_>,
    ctl: &Control,
) -> KernelResult<(Vec<i64>, Vec<f32>, Stats)> {
    let mut started = Clock::start();
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
        par,
        tops: Vec::with_capacity(init.len() + budget),
        n_overdue: 0,
    };
    let mut sel = Vec::with_capacity(budget);
    let mut radii = Vec::with_capacity(budget);
    let bounds = vec![f32::INFINITY; cand.len()];
    st.unassigned = Group::with_members(cand, bounds, 0);
    for &c in init {
        st.add_center(c);
    }
    if let Some(f) = start {
        // `cand` (so `remaining`) already excludes it.
        st.add_center(f);
        sel.push(i64::from(f));
        ctl.step();
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
        ctl.step();
        ctl.check()?;
    }
    st.stats.ns_total = started.lap();
    Ok((sel, radii, st.stats))
}

/// Independent K-Center runs inside clusters, the clusters in parallel.
///
/// Cluster `c` holds rows `members[indptr[c]..indptr[c+1]]` and gets `quotas[c]` picks
/// starting from `first[c]` (-1: its lowest row). Each run is itself parallel (nested
/// rayon), so one large cluster does not serialize the call; the output is the picks
/// of every cluster concatenated in cluster order, each in pick order.
///
/// `ctl` is checked before each cluster and after each pick (see [`greedy_with`]) and
/// counts the picks of all clusters; once cancelled the call returns
/// `Err(Interrupted)`. It never changes the picks.
#[allow(clippy::too_many_arguments)]
pub fn per_cluster(
    x: &[f32],
    n: usize,
    d: usize,
    indptr: &[i64],
    members: &[i64],
    quotas: &[i64],
    first: &[i64],
    ctl: &Control,
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
            ctl.check()?;
            let rows = &members[a as usize..b as usize];
            let f = if first[c] < 0 { None } else { Some(first[c]) };
            greedy_how(
                x,
                n,
                d,
                q as usize,
                f,
                &[],
                Some(rows),
                true,
                ctl,
                How::Nested,
            )
            .map(|(s, _, _)| s)
        })
        .collect();
    // Once cancelled, report the interruption rather than an earlier cluster's error.
    ctl.check()?;
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_inputs_are_errors_not_panics() {
        let x = [0f32; 6];
        assert!(greedy(&x, 3, 2, 4, None, &[], None).is_err());
        assert!(greedy(&x, 3, 3, 1, None, &[], None).is_err());
        assert!(greedy(&x, 3, 2, 1, Some(5), &[], None).is_err());
        assert!(greedy(&x, 3, 2, 1, None, &[-1], None).is_err());
        assert!(greedy(&x, 3, 2, 1, None, &[], Some(&[0, 0])).is_err());
        assert!(greedy(&x, 3, 2, 3, None, &[1], None).is_err());
        assert!(per_cluster(&x, 3, 2, &[0, 5], &[0, 1], &[1], &[-1], &NEVER).is_err());
        assert_eq!(greedy(&x, 3, 2, 0, None, &[], None).unwrap().0.len(), 0);
    }

    #[test]
    fn per_cluster_counts_picks_and_stops_once_cancelled() {
        let x: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32).collect();
        let (indptr, members) = ([0i64, 10, 20], (0..20).collect::<Vec<i64>>());
        let ctl = Control::new();
        let sel = per_cluster(&x, 20, 2, &indptr, &members, &[3, 4], &[-1, 12], &ctl).unwrap();
        assert_eq!(ctl.done(), 7);
        let plain = per_cluster(&x, 20, 2, &indptr, &members, &[3, 4], &[-1, 12], &NEVER);
        assert_eq!(sel, plain.unwrap());
        ctl.cancel();
        let out = per_cluster(&x, 20, 2, &indptr, &members, &[3, 4], &[-1, 12], &ctl);
        assert_eq!(out, Err(crate::errors::KernelError::Interrupted));
    }

    /// Clustered data (a few wide clusters plus noise), so rounds come in every size:
    /// the first one over every row, then many with a few stale members.
    fn clustered(n: usize, d: usize) -> Vec<f32> {
        let noise = crate::kernels::testdata::lcg_values(17, n * d);
        let means = crate::kernels::testdata::lcg_values(5, 6 * d);
        (0..n * d)
            .map(|i| {
                let (r, j) = (i / d, i % d);
                means[(r * 7 % 6) * d + j] * 4.0 + noise[i] * (0.3 + (r % 5) as f32 * 0.2)
            })
            .collect()
    }

    /// Picks, radii (bits) and the work counters (not the profile build's timers).
    fn run(
        x: &[f32],
        d: usize,
        budget: usize,
        prune: bool,
        par: Par<'_>,
    ) -> (Vec<i64>, Vec<u32>, [u64; 6]) {
        let n = x.len() / d;
        let rows: Vec<i64> = (0..n as i64).filter(|r| r % 11 != 3).collect();
        let (sel, radii, stats) = greedy_how(
            x,
            n,
            d,
            budget,
            None,
            &[5, 900],
            Some(&rows),
            prune,
            &NEVER,
            How::Forced(par),
        )
        .unwrap();
        let counters = [
            stats.distance_evals,
            stats.brute_force_evals,
            stats.coords_read,
            stats.moved,
            stats.rows_read,
            stats.rounds,
        ];
        (sel, radii.iter().map(|r| r.to_bits()).collect(), counters)
    }

    #[test]
    fn every_way_of_running_the_passes_gives_brute_force_picks_and_the_same_work() {
        // Inline, rayon fork/join and the team (every pass split, or only the large
        // ones), on 2 and 3 threads: the same picks and radii as brute force, bit for
        // bit, and the same distance counters as the inline run (each unit's work does
        // not depend on where it ran).
        let (n, d, budget) = (6000, 40, 300);
        let x = clustered(n, d);
        let (sel_bf, radii_bf, _) = run(&x, d, budget, false, Par::INLINE);
        let (sel, radii, want) = run(&x, d, budget, true, Par::INLINE);
        assert_eq!((&sel, &radii), (&sel_bf, &radii_bf));
        assert!(want[0] < want[1] / 2, "pruning skipped little: {want:?}");
        let mut seen = 0;
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for eager in [false, true] {
                    let rayon = Par {
                        exec: Exec::Rayon,
                        eager,
                    };
                    let got = run(&x, d, budget, true, rayon);
                    assert_eq!(
                        got,
                        (sel.clone(), radii.clone(), want),
                        "rayon {threads} {eager}"
                    );
                    let got = team::with_team(eager, |par| {
                        // Capped at the CPUs: on one CPU the team is inline.
                        seen += usize::from(matches!(par.exec, Exec::Team(_)));
                        run(&x, d, budget, true, par)
                    });
                    assert_eq!(
                        got,
                        (sel.clone(), radii.clone(), want),
                        "team {threads} {eager}"
                    );
                    let got = team::with_team(eager, |par| run(&x, d, budget, false, par));
                    assert_eq!((got.0, got.1), (sel_bf.clone(), radii_bf.clone()));
                }
            });
        }
        let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert!(cpus == 1 || seen == 4, "the team ran {seen} times");
    }

    #[test]
    fn budgets_near_n_with_overdue_groups_equal_brute_force_in_every_mode() {
        // Groups of a few members whose pending lists outgrow their cap (refreshed
        // whole), duplicates tying at 0: the overdue count and the dense maxima that
        // replace scans over every group must stay exact (checked in debug builds).
        let (n, d) = (1200, 6);
        let mut x = clustered(n, d);
        let dup = x[40 * d..41 * d].to_vec();
        for r in 0..150 {
            x[r * d..(r + 1) * d].copy_from_slice(&dup);
        }
        for budget in [1000, 1089] {
            let want = run(&x, d, budget, false, Par::INLINE);
            let got = run(&x, d, budget, true, Par::INLINE);
            assert_eq!((&got.0, &got.1), (&want.0, &want.1));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let team = pool.install(|| team::with_team(true, |par| run(&x, d, budget, true, par)));
            assert_eq!(team, got);
        }
    }
}
