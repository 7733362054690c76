//! The refresh scan: one work item per chunk of a group, its stale members listed,
//! refreshed in batches that walk the pending centers together, then applied.

use super::bounds::{member_reach, skip_by};
use super::distance::SqDist;
use super::state::{summary, ChunkOut, HOLE, UNASSIGNED};
use super::CHUNK;

/// Stale members refreshed together by one task. Each pending center is read once per
/// batch and then served from L1 to every member (a batch of 512-d rows is 16 KB), so
/// the center rows, which outgrow L2 after a few hundred picks, stream from L3 once
/// per batch instead of once per member. Any value gives the same results.
pub(super) const BATCH: usize = 8;
/// Cache lines of 64 bytes prefetched per row; the hardware streamer takes the rest.
pub(super) const PREFETCH_LINES: usize = 8;

/// Hint the CPU to start loading `row`; a no-op where no prefetch instruction exists.
#[inline(always)]
pub(super) fn prefetch(row: &[f32]) {
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
pub(super) struct Item<'s> {
    pub(super) group: usize,
    pub(super) chunk: usize,
    pub(super) threshold: f32,
    pub(super) pending: &'s [(u32, f32)],
    pub(super) rows: &'s mut [u32],
    pub(super) d2: &'s mut [f32],
    pub(super) stamp: &'s mut [u32],
}

/// Where a refresh leaves one member: its new bound and the center it moves to.
#[derive(Clone, Copy)]
pub(super) struct Member {
    pub(super) d2: f32,
    /// `NO_MOVE` when no pending center is strictly closer.
    pub(super) to: u32,
    pub(super) evals: u64,
    pub(super) coords: u64,
}

pub(super) const NO_MOVE: u32 = u32::MAX;

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
    pub(super) fn todo(&self, k: u32) -> Vec<u16> {
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
    pub(super) fn apply(&mut self, todo: &[u16], res: &[Member], k: u32) -> ChunkOut {
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
pub(super) struct Refresh<'a> {
    pub(super) x: &'a [f32],
    pub(super) d: usize,
    pub(super) centers: &'a [f32],
    pub(super) dist: SqDist,
    pub(super) err: Option<(f64, f64)>,
    pub(super) prune: bool,
}

impl Refresh<'_> {
    /// Apply the pending centers to the members of `it` at positions `part` (at most
    /// [`BATCH`]), writing each one's result to `out`.
    ///
    /// Centers outer, members inner, so each center row is read once for the batch;
    /// every member still sees its own pending centers in index order, skips the ones
    /// the triangle inequality rules out and stops a distance early once it cannot
    /// move, exactly as it would alone.
    pub(super) fn batch(&self, it: &Item<'_>, part: &[u16], out: &mut [Member]) {
        let d = self.d;
        let b = part.len().min(out.len()).min(BATCH);
        let mut xrow: [&[f32]; BATCH] = [&[]; BATCH];
        let mut from = [0usize; BATCH];
        let mut reach = [0f64; BATCH];
        let mut start = usize::MAX;
        // Results accumulate here and are written to `out` once at the end: `out` is a
        // slice of one buffer shared by the round's batches, and the cache line at the
        // boundary of two batches run by two threads would otherwise bounce between
        // their cores on every distance (rounds of a few batches run them alternately).
        let mut acc = [Member::default(); BATCH];
        for m in 0..b {
            let j = part[m] as usize;
            let r = it.rows[j] as usize;
            xrow[m] = &self.x[r * d..(r + 1) * d];
            prefetch(xrow[m]);
            let s = it.stamp[j];
            from[m] = it.pending.partition_point(|e| e.0 < s);
            start = start.min(from[m]);
            reach[m] = member_reach(it.d2[j], self.err);
            acc[m].d2 = it.d2[j];
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
                let o = &mut acc[m];
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
        out[..b].copy_from_slice(&acc[..b]);
    }
}
