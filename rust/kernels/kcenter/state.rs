//! The farthest-first state: groups of candidates per center with their chunk
//! summaries, the lazily applied pending centers, and the refresh rounds that settle
//! each pick.

use std::sync::Mutex;

use super::bounds::{can_skip, center_gap, group_skip_limit};
use super::distance::SqDist;
use super::scan::{Item, Member, Refresh, BATCH};
use super::team::Par;
use super::{CENTER_CHUNK, CHUNK};

/// Passes with fewer units than these run on the calling thread (splitting them costs
/// more than it saves): chunks listed or applied (~0.3–1 µs each), center–center
/// tasks ([`CENTER_CHUNK`] groups each), batches of stale members (one is enough work
/// to hand over).
pub(super) const PAR_MIN_CHUNKS: usize = 8;
pub(super) const PAR_MIN_CENTER_TASKS: usize = 2;
pub(super) const PAR_MIN_BATCHES: usize = 2;
/// Entries (movers to push, chunks of touched groups to summarize) below which a
/// round's merge runs on the calling thread.
pub(super) const PAR_MIN_MERGE_WORK: usize = 1024;
/// Movers from which a round buckets them by center (O(movers + centers)) instead of
/// sorting them.
pub(super) const BUCKET_MIN_MOVERS: usize = 4096;

/// Group id of the candidates no center has reached yet.
pub(super) const UNASSIGNED: usize = usize::MAX;

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
pub(super) struct Group {
    pub(super) rows: Vec<u32>,
    pub(super) d2: Vec<f32>,
    pub(super) stamp: Vec<u32>,
    /// Per chunk: (d2, row, position) of its member with the largest bound.
    pub(super) chunk_best: Vec<Option<(f32, u32, usize)>>,
    /// Per chunk: the smallest stamp of its members (`u32::MAX` when none).
    pub(super) chunk_min_stamp: Vec<u32>,
    /// Members that are not holes.
    pub(super) live: usize,
    pub(super) pending: Vec<(u32, f32)>,
    /// (d2, row, position) of the member with the largest `d2`; ties to the lowest row.
    pub(super) best: Option<(f32, u32, usize)>,
    /// Set when `pending` grew past its memory cap: the next refresh updates the whole
    /// group, whatever its members' bounds, so the list can be emptied.
    pub(super) overdue: bool,
}

/// Row id of a hole (see [`Group`]).
pub(super) const HOLE: u32 = u32::MAX;

impl Group {
    /// A group holding `rows` with bounds `d2`, every one stamped `stamp`.
    pub(super) fn with_members(rows: Vec<u32>, d2: Vec<f32>, stamp: u32) -> Self {
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
    pub(super) fn summarize(&mut self, ch: usize) {
        let a = ch * CHUNK;
        let b = (a + CHUNK).min(self.rows.len());
        let (best, min_stamp) = summary(&self.rows[a..b], &self.d2[a..b], &self.stamp[a..b]);
        self.chunk_best[ch] = best.map(|(v, r, p)| (v, r, a + p));
        self.chunk_min_stamp[ch] = min_stamp;
    }

    pub(super) fn summarize_all(&mut self) {
        let n_chunks = self.rows.len().div_ceil(CHUNK);
        self.chunk_best = vec![None; n_chunks];
        self.chunk_min_stamp = vec![u32::MAX; n_chunks];
        for ch in 0..n_chunks {
            self.summarize(ch);
        }
        self.recompute_best();
    }

    /// The group's largest bound, from the chunk summaries.
    pub(super) fn recompute_best(&mut self) {
        let mut best = None;
        for &(v, r, p) in self.chunk_best.iter().flatten() {
            if better(v, r, best) {
                best = Some((v, r, p));
            }
        }
        self.best = best;
    }

    pub(super) fn min_stamp(&self) -> u32 {
        self.chunk_min_stamp
            .iter()
            .copied()
            .min()
            .unwrap_or(u32::MAX)
    }

    /// Append a member, keeping the summaries current.
    pub(super) fn push(&mut self, row: u32, v: f32, stamp: u32) {
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
    pub(super) fn compact_if_sparse(&mut self) {
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
pub(super) fn summary(rows: &[u32], d2: &[f32], stamp: &[u32]) -> (Option<(f32, u32, usize)>, u32) {
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
pub(super) fn better(v: f32, row: u32, best: Option<(f32, u32, usize)>) -> bool {
    match best {
        None => true,
        Some((bv, br, _)) => v > bv || (v == bv && row < br),
    }
}

/// What one chunk of a group reports after a refresh.
pub(super) struct ChunkOut {
    pub(super) group: usize,
    pub(super) chunk: usize,
    /// Members now nearest to another center: (row, squared distance, center); they
    /// left holes behind.
    pub(super) moved: Vec<(u32, f32, u32)>,
    /// The chunk's new summary: its largest bound (absolute position), smallest stamp.
    pub(super) best: Option<(f32, u32, usize)>,
    pub(super) min_stamp: u32,
    pub(super) evals: u64,
    pub(super) coords: u64,
    pub(super) rows: u64,
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
    /// Wall-clock nanoseconds per phase, for profiling (`benches/kcenter_profile.py`);
    /// measured only with the `profile` cargo feature (else 0):
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

/// The phase timer behind [`Stats`]' `ns_*` fields. Without the `profile` cargo
/// feature (the default, so every shipped build) it reads no clock and every lap is
/// 0: the production loop pays nothing for the profiling.
pub(super) struct Clock {
    #[cfg(feature = "profile")]
    last: std::time::Instant,
}

#[cfg(feature = "profile")]
impl Clock {
    #[inline(always)]
    pub(super) fn start() -> Self {
        Clock {
            last: std::time::Instant::now(),
        }
    }

    /// Nanoseconds since the start or the previous lap.
    #[inline(always)]
    pub(super) fn lap(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let ns = now.duration_since(self.last).as_nanos() as u64;
        self.last = now;
        ns
    }
}

#[cfg(not(feature = "profile"))]
impl Clock {
    #[inline(always)]
    pub(super) fn start() -> Self {
        Clock {}
    }

    /// Always 0: the timers are compiled out.
    #[inline(always)]
    pub(super) fn lap(&mut self) -> u64 {
        0
    }
}

/// Farthest-first state: the groups (index = center number), the center rows copied
/// contiguously, and the candidates no center has reached yet.
pub(super) struct State<'a> {
    pub(super) x: &'a [f32],
    pub(super) d: usize,
    pub(super) prune: bool,
    pub(super) dist: SqDist,
    pub(super) err: Option<(f64, f64)>,
    pub(super) centers: Vec<f32>,
    pub(super) groups: Vec<Group>,
    /// Candidates before the first center; every one of them moves to it.
    pub(super) unassigned: Group,
    pub(super) remaining: usize,
    /// Relative width of the refresh band below the largest bound (adapted per pick).
    pub(super) band: f64,
    pub(super) stats: Stats,
    /// Where the parallel passes run (see `team`).
    pub(super) par: Par<'a>,
    /// Per group, (bound, row) of its `best` ((−∞, [`HOLE`]) when empty): the same
    /// maxima in a dense array, so finding the top bound or the groups a round
    /// touches reads 8 bytes per group, not a cache line.
    pub(super) tops: Vec<(f32, u32)>,
    /// Groups with `overdue` set.
    pub(super) n_overdue: usize,
}

/// The dense form of a group's `best` (see `State::tops`).
#[inline]
fn top_key(best: Option<(f32, u32, usize)>) -> (f32, u32) {
    best.map_or((f32::NEG_INFINITY, HOLE), |(v, r, _)| (v, r))
}

/// `movers` (row, squared distance, center < `k`) ordered by center, stably: a
/// counting sort, O(movers + k).
fn bucket_by_center(movers: Vec<(u32, f32, u32)>, k: usize) -> Vec<(u32, f32, u32)> {
    let mut at = vec![0usize; k + 1];
    for &(_, _, c) in &movers {
        at[c as usize + 1] += 1;
    }
    for c in 0..k {
        at[c + 1] += at[c];
    }
    let mut out = vec![(0u32, 0f32, 0u32); movers.len()];
    for m in movers {
        let slot = &mut at[m.2 as usize];
        out[*slot] = m;
        *slot += 1;
    }
    out
}

/// The end of a round for one group: if the round refreshed it, its new maximum, the
/// pending entries every member has applied dropped, holes compacted; then the
/// movers that join it (sorted by row), fully updated (stamp `k`).
fn finish_group(grp: &mut Group, touched: bool, movers: &mut [(u32, f32, u32)], k: u32) {
    if touched {
        grp.overdue = false;
        grp.recompute_best();
        let min_stamp = grp.min_stamp();
        let keep_from = grp.pending.partition_point(|e| e.0 < min_stamp);
        grp.pending.drain(..keep_from);
        grp.compact_if_sparse();
    }
    movers.sort_unstable_by_key(|&(r, _, _)| r);
    for &(r, v, _) in movers.iter() {
        grp.push(r, v, k);
    }
}

/// Pending entries a group may hold per member before it is refreshed whole
/// (plus [`PENDING_SLACK`]): caps the extra memory at O(n + centers).
pub(super) const PENDING_PER_MEMBER: usize = 2;
pub(super) const PENDING_SLACK: usize = 64;
/// Bounds of the adaptive refresh band (relative, on squared distances).
pub(super) const BAND_MIN: f64 = 1e-6;
pub(super) const BAND_MAX: f64 = 0.5;
pub(super) const BAND_START: f64 = 1e-3;

impl<'a> State<'a> {
    pub(super) fn row(&self, i: u32) -> &'a [f32] {
        let i = i as usize;
        &self.x[i * self.d..(i + 1) * self.d]
    }

    pub(super) fn group_mut(&mut self, g: usize) -> &mut Group {
        if g == UNASSIGNED {
            &mut self.unassigned
        } else {
            &mut self.groups[g]
        }
    }

    /// Add row `c` as a center: queue it on every group it might improve (nothing is
    /// computed for the members yet; [`State::settle`] applies it when needed).
    pub(super) fn add_center(&mut self, c: u32) {
        let mut clock = Clock::start();
        let d = self.d;
        let crow = self.row(c);
        let k = self.groups.len();
        let dist = self.dist;
        let err = self.err;
        self.stats.brute_force_evals += self.remaining as u64;

        // Center–center distances to every group with members (same routine). A
        // distance only matters while it is below the group-level skip limit, so it
        // may stop early once its partial sum proves the whole group can skip c.
        // Each task queues c on its own groups, so the queueing is parallel too.
        let centers = &self.centers;
        let prune = self.prune;
        let n_tasks = k.div_ceil(CENTER_CHUNK);
        let tasks: Vec<Mutex<&mut [Group]>> = self
            .groups
            .chunks_mut(CENTER_CHUNK)
            .map(Mutex::new)
            .collect();
        let newly_overdue: usize = self
            .par
            .map(n_tasks, PAR_MIN_CENTER_TASKS, |ci| {
                let mut grps = tasks[ci].lock().unwrap_or_else(|p| p.into_inner());
                let mut newly_overdue = 0usize;
                for (j, grp) in grps.iter_mut().enumerate() {
                    let a = ci * CENTER_CHUNK + j;
                    let Some((far, _, _)) = grp.best else {
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
                    if prune && can_skip(dcc2, far, far, err) {
                        continue;
                    }
                    grp.pending.push((k as u32, center_gap(dcc2, err)));
                    let cap = PENDING_SLACK + PENDING_PER_MEMBER * grp.live;
                    if !grp.overdue && grp.pending.len() > cap {
                        grp.overdue = true;
                        newly_overdue += 1;
                    }
                }
                newly_overdue
            })
            .into_iter()
            .sum();
        drop(tasks);
        self.n_overdue += newly_overdue;
        if self.unassigned.live > 0 {
            self.unassigned.pending.push((k as u32, f32::NEG_INFINITY));
        }
        self.centers.extend_from_slice(crow);
        self.groups.push(Group::default());
        self.tops.push(top_key(None));
        self.stats.ns_add += clock.lap();
    }

    /// The largest bound over all groups: (squared distance, row, group, position).
    pub(super) fn top(&self) -> Option<(f32, u32, usize, usize)> {
        let (mut bv, mut br, mut at) = (f32::NEG_INFINITY, HOLE, UNASSIGNED);
        for (g, &(v, r)) in self.tops.iter().enumerate() {
            // Rows are unique, so the scan order does not matter; holes never win.
            if r != HOLE && (v > bv || (v == bv && r < br)) {
                (bv, br, at) = (v, r, g);
            }
        }
        let found = (br != HOLE).then(|| (bv, br, at, self.groups[at].best.map_or(0, |b| b.2)));
        match self.unassigned.best {
            Some((v, r, p)) if better(v, r, found.map(|(v, r, _, p)| (v, r, p))) => {
                Some((v, r, UNASSIGNED, p))
            }
            _ => found,
        }
    }

    /// The farthest unpicked candidate, exact: (squared distance, row, group, position).
    ///
    /// Refreshes (applies the pending centers to) every stale member whose bound lies
    /// in a band below the largest bound, until the largest bound belongs to a fresh
    /// member. Then it is the true maximum: every other candidate's true distance is
    /// at most its bound, which is below (or equal with a higher row).
    pub(super) fn settle(&mut self) -> Option<(f32, u32, usize, usize)> {
        let k = self.groups.len() as u32;
        let mut rounds = 0u32;
        loop {
            let overdue = self.n_overdue > 0;
            debug_assert_eq!(
                self.n_overdue,
                self.groups.iter().filter(|g| g.overdue).count()
            );
            debug_assert!(self.groups.iter().zip(&self.tops).all(|(g, t)| {
                let (v, r) = top_key(g.best);
                (v.to_bits(), r) == (t.0.to_bits(), t.1)
            }));
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
    pub(super) fn refresh(&mut self, threshold: f32) {
        let mut clock = Clock::start();
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
        let (tops, scan_all) = (&self.tops, self.n_overdue > 0);
        // Work items in (group, chunk) order.
        let mut items: Vec<Item<'_>> = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        for (g, grp) in self
            .groups
            .iter_mut()
            .enumerate()
            .chain(std::iter::once((UNASSIGNED, unassigned)))
        {
            // No overdue group: a group is touched only if its maximum reaches the
            // threshold, which the dense copy tells without reading the group.
            if !scan_all && g != UNASSIGNED && (tops[g].1 == HOLE || tops[g].0 < threshold) {
                continue;
            }
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
        let par = self.par;
        let todo: Vec<Vec<u16>> = par.map(items.len(), PAR_MIN_CHUNKS, |i| items[i].todo(k));
        let ns_scan = clock.lap();
        // Pass 2: refresh them, batch by batch; each batch writes its own result slots.
        let total: usize = todo.iter().map(Vec::len).sum();
        let mut results = vec![Member::default(); total];
        {
            // Each batch writes only its own result slots (the lock is never contended:
            // it only hands the unit its `&mut`).
            type Batch<'i, 's> = Mutex<(&'i Item<'s>, &'i [u16], &'i mut [Member])>;
            let mut batches: Vec<Batch<'_, '_>> = Vec::new();
            let mut rest = &mut results[..];
            for (it, t) in items.iter().zip(&todo) {
                for part in t.chunks(BATCH) {
                    let (head, tail) = std::mem::take(&mut rest).split_at_mut(part.len());
                    batches.push(Mutex::new((it, part, head)));
                    rest = tail;
                }
            }
            par.for_each(batches.len(), PAR_MIN_BATCHES, &|b| {
                let mut batch = batches[b].lock().unwrap_or_else(|p| p.into_inner());
                let (it, part, out) = &mut *batch;
                ctx.batch(it, part, out);
            });
        }
        let ns_refresh = clock.lap();
        // Pass 3: stamp, punch holes for the movers, summarize each chunk again.
        let mut parts: Vec<&[Member]> = Vec::with_capacity(todo.len());
        let mut rest = &results[..];
        for t in &todo {
            let (head, tail) = rest.split_at(t.len());
            parts.push(head);
            rest = tail;
        }
        let items: Vec<Mutex<Item<'_>>> = items.into_iter().map(Mutex::new).collect();
        let outs: Vec<ChunkOut> = par.map(items.len(), PAR_MIN_CHUNKS, |i| {
            let mut it = items[i].lock().unwrap_or_else(|p| p.into_inner());
            it.apply(&todo[i], parts[i], k)
        });

        let ns_apply = clock.lap();
        // Merge in (group, chunk) order: the counters and chunk summaries.
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
        self.finish(&touched, movers, k);
        let stats = &mut self.stats;
        stats.ns_scan += ns_scan;
        stats.ns_refresh += ns_refresh;
        stats.ns_apply += ns_apply;
        stats.ns_merge += clock.lap();
    }

    /// The rest of a round's merge: every touched group's maximum and pending list, and
    /// the movers pushed into their new groups (by center, each center's by row), as
    /// independent per-group units (parallel when there is enough of them); then the
    /// dense maxima of those groups.
    fn finish(&mut self, touched: &[usize], mut movers: Vec<(u32, f32, u32)>, k: u32) {
        // By center; rows are sorted inside each center's run by `finish_group`. The
        // first round's movers (every candidate, to the first center, in row order)
        // already are.
        let sorted = movers.is_sorted_by_key(|&(r, _, c)| (c, r));
        if !sorted && movers.len() >= BUCKET_MIN_MOVERS {
            movers = bucket_by_center(movers, k as usize);
        } else if !sorted {
            movers.sort_unstable_by_key(|&(r, _, c)| (c, r));
        }
        // One unit per group touched or joined, in group order.
        let mut units: Vec<(usize, bool, std::ops::Range<usize>)> = Vec::new();
        let mut work = 0usize;
        let (mut ti, mut mi) = (0usize, 0usize);
        let touched_groups = touched.iter().copied().filter(|&g| g != UNASSIGNED);
        let touched_groups: Vec<usize> = touched_groups.collect();
        while ti < touched_groups.len() || mi < movers.len() {
            let tg = touched_groups.get(ti).copied().unwrap_or(usize::MAX);
            let mg = movers.get(mi).map_or(usize::MAX, |m| m.2 as usize);
            let g = tg.min(mg);
            let is_touched = tg == g;
            let from = mi;
            while mi < movers.len() && movers[mi].2 as usize == g {
                mi += 1;
            }
            if is_touched {
                ti += 1;
                let grp = &self.groups[g];
                work += grp.chunk_best.len();
                self.n_overdue -= usize::from(grp.overdue);
            }
            work += mi - from;
            units.push((g, is_touched, from..mi));
        }
        if touched.contains(&UNASSIGNED) {
            // Never joined (no center is UNASSIGNED) and only in the first rounds.
            self.n_overdue -= usize::from(self.unassigned.overdue);
            finish_group(&mut self.unassigned, true, &mut [], k);
        }
        // Disjoint `&mut` to each unit's group and movers (units ascend by group).
        type Job<'g> = Mutex<(&'g mut Group, bool, &'g mut [(u32, f32, u32)])>;
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(units.len());
        let (mut groups, mut base) = (&mut self.groups[..], 0usize);
        let mut rest = &mut movers[..];
        for (g, is_touched, run) in &units {
            let (_, tail) = std::mem::take(&mut groups).split_at_mut(g - base);
            let (grp, tail) = tail.split_first_mut().expect("unit group exists");
            groups = tail;
            base = g + 1;
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(run.len());
            rest = tail;
            jobs.push(Mutex::new((grp, *is_touched, mine)));
        }
        let min = if work >= PAR_MIN_MERGE_WORK {
            2
        } else {
            usize::MAX
        };
        self.par.for_each(jobs.len(), min, &|i| {
            let mut job = jobs[i].lock().unwrap_or_else(|p| p.into_inner());
            let (grp, is_touched, mine) = &mut *job;
            finish_group(grp, *is_touched, mine, k);
        });
        drop(jobs);
        for (g, _, _) in units {
            self.tops[g] = top_key(self.groups[g].best);
        }
    }

    /// Take the member at `pos` out of group `g` (it is about to become a center).
    pub(super) fn remove(&mut self, g: usize, pos: usize) {
        let grp = self.group_mut(g);
        grp.rows[pos] = HOLE;
        grp.d2[pos] = f32::NEG_INFINITY;
        grp.stamp[pos] = u32::MAX;
        grp.live -= 1;
        grp.summarize(pos / CHUNK);
        grp.recompute_best();
        let was_overdue = grp.overdue;
        grp.compact_if_sparse();
        let cleared = was_overdue && !grp.overdue;
        self.n_overdue -= usize::from(cleared);
        self.remaining -= 1;
        if g != UNASSIGNED {
            self.tops[g] = top_key(self.groups[g].best);
        }
    }
}
