//! k-means: k-means++ seeding (Arthur & Vassilvitskii 2007; greedy variant with
//! `n_local_trials` candidates per step as in scikit-learn) and Lloyd iterations.
//!
//! Algorithm.
//! - Seeding is one fused streaming pass over the rows per centre: the
//!   distance of every row to each candidate, the running minimum and the
//!   per-chunk potential are computed together, so each step reads the `n × d`
//!   matrix at most once (O(n·d·trials) flops). Rows that the triangle
//!   inequality shows a candidate cannot improve (against each row's nearest
//!   centre, O(k·d) candidate-to-centre distances per step) are not read at
//!   all: on clustered data most steps touch a small fraction of the rows
//!   (the pruning idea of Elkan 2003 applied to seeding). Sampling
//!   proportional to the potential walks the chunk sums, then one chunk.
//! - Each Lloyd iteration is one assignment pass ([`distance`]'s blocked kernel,
//!   O(n·k·d)) and one update pass: rows are grouped by label with a counting
//!   sort, and each cluster's members are summed in f64, in row order, in fixed
//!   chunks of [`SUM_CHUNK`] members reduced in chunk order. Grouping first
//!   (instead of per-thread `k × d` accumulators) keeps the extra memory at
//!   O(n + k·d) and makes the sums independent of the thread count.
//! - Empty clusters take the rows farthest from their centroid (largest
//!   distance first, ties to the lowest row), each from a cluster that keeps at
//!   least one member, as scikit-learn's `_relocate_empty_clusters`.
//! - Stop after `max_iter` iterations or when the total squared centroid shift
//!   is at most `tol` × the mean per-feature variance (scikit-learn's rule).
//! - With a training subsample, Lloyd runs on the gathered sample rows and a
//!   final assignment labels every row.
//!
//! Inertia history: the exact (directly recomputed) sum of squared distances
//! at each assignment. Lloyd never increases it in exact arithmetic; here it
//! can rise only by rounding (f32 centroids, and near-ties that the distance
//! expansion resolves within its rounding error).
//!
//! Determinism: fixed-size chunks, reductions in chunk order, ties to the
//! lowest index, all randomness from one `Pcg64` seeded by `seed`; results are
//! identical for any thread count.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use rayon::prelude::*;

use super::distance::{self, sq_dist_wide, Packed, SimdPath, ROW_CHUNK};
use crate::errors::KernelResult;
use crate::invalid;

/// Members summed per task in the centroid update.
pub const SUM_CHUNK: usize = 8192;

pub struct KMeansParams {
    pub n_clusters: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub seed: u64,
    pub n_local_trials: usize,
}

pub struct KMeansResult {
    pub centroids: Vec<f32>,
    pub labels: Vec<i64>,
    /// Inertia (sum of squared distances on the training rows) at each assignment.
    pub inertia: Vec<f64>,
    pub n_iter: usize,
}

/// Pick the row where the running sum of `mind` first exceeds `target`.
///
/// `chunk_sums[c]` is the f64 sum of `mind` over chunk `c`. Rows with zero
/// weight (chosen centres, duplicates of them) are never returned when the
/// total is positive.
fn sample_row(mind: &[f32], chunk_sums: &[f64], target: f64) -> usize {
    let mut acc = 0.0f64;
    let mut chunk = chunk_sums.len() - 1;
    for (c, &s) in chunk_sums.iter().enumerate() {
        if acc + s > target {
            chunk = c;
            break;
        }
        acc += s;
    }
    let start = chunk * ROW_CHUNK;
    let end = (start + ROW_CHUNK).min(mind.len());
    let mut last_positive = None;
    for (i, &m) in mind[start..end].iter().enumerate() {
        if m > 0.0 {
            acc += m as f64;
            last_positive = Some(start + i);
            if acc > target {
                return start + i;
            }
        }
    }
    // Rounding left the target unreached: take the last positive row seen,
    // else the last positive row anywhere.
    last_positive
        .or_else(|| mind.iter().rposition(|&m| m > 0.0))
        .unwrap_or(0)
}

/// Squared distance below which a candidate may improve a row's minimum.
///
/// Triangle inequality: if `||c − a||² ≥ 4·m` where `a` is the row's nearest
/// centre and `m` its squared distance, then `||x − c|| ≥ ||c − a|| − ||x − a||
/// ≥ √m`, so the candidate cannot lower the minimum and the row is not read.
/// The factor leaves room for f32 rounding in both distances.
#[inline(always)]
fn may_improve(cc: f32, m: f32) -> bool {
    cc < 4.0 * m * 1.001
}

/// k-means++ seeding over the rows of `x` (n × d). Returns k × d centroids.
///
/// One streaming pass per centre over the rows, skipping every row that the
/// triangle inequality (against its nearest centre so far) shows the
/// candidate cannot improve: then the row itself is not read, only its
/// running minimum and owner, so on clustered data most passes touch a small
/// fraction of the matrix.
pub fn kmeans_plusplus(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
    n_local_trials: usize,
) -> KernelResult<Vec<f32>> {
    seed_centres(x, n, d, k, seed, n_local_trials, true)
}

/// [`kmeans_plusplus`], with the pruning switchable (tests compare both).
fn seed_centres(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
    n_local_trials: usize,
    prune: bool,
) -> KernelResult<Vec<f32>> {
    if k == 0 || k > n {
        return Err(invalid!("n_clusters={k} must be in [1, n_samples={n}]"));
    }
    if d == 0 || x.len() != n * d {
        return Err(invalid!("features buffer does not match n={n}, d={d}"));
    }
    if k > u32::MAX as usize {
        return Err(invalid!("n_clusters={k} exceeds {}", u32::MAX));
    }
    let trials = n_local_trials.max(1);
    let mut rng = Pcg64::seed_from_u64(seed);
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut centers = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centers.extend_from_slice(row(first));
    let mut mind = vec![0f32; n];
    // Index (into `centers`) of each row's nearest centre so far.
    let mut owner = vec![0u32; n];
    let mut sums: Vec<f64> = mind
        .par_chunks_mut(ROW_CHUNK)
        .zip(x.par_chunks(ROW_CHUNK * d))
        .map(|(m, xb)| {
            let mut s = 0.0f64;
            for (mi, xi) in m.iter_mut().zip(xb.chunks_exact(d)) {
                *mi = sq_dist_wide(xi, row(first));
                s += *mi as f64;
            }
            s
        })
        .collect();
    // The candidates' new minima, row-major (`trials` per row; unused for one).
    let mut newd = vec![0f32; if trials > 1 { trials * n } else { 0 }];
    let mut cands = vec![0usize; trials];
    for step in 1..k {
        let total: f64 = sums.iter().sum();
        for cand in cands.iter_mut() {
            *cand = if total > 0.0 {
                sample_row(&mind, &sums, rng.random::<f64>() * total)
            } else {
                // Every row coincides with a chosen centre.
                rng.random_range(0..n)
            };
        }
        let cand_rows: Vec<&[f32]> = cands.iter().map(|&c| row(c)).collect();
        // Candidate-to-centre squared distances, for the pruning test.
        let cc: Vec<Vec<f32>> = cand_rows
            .iter()
            .map(|c| centers.par_chunks(d).map(|z| sq_dist_wide(c, z)).collect())
            .collect();
        let new_owner = step as u32;
        if trials == 1 {
            // One candidate: update the minima in place, no candidate buffer.
            let (c, cc) = (cand_rows[0], &cc[0]);
            sums = mind
                .par_chunks_mut(ROW_CHUNK)
                .zip(owner.par_chunks_mut(ROW_CHUNK))
                .zip(x.par_chunks(ROW_CHUNK * d))
                .map(|((m, own), xb)| {
                    let mut s = 0.0f64;
                    for (i, (mi, o)) in m.iter_mut().zip(own.iter_mut()).enumerate() {
                        if !prune || may_improve(cc[*o as usize], *mi) {
                            let v = sq_dist_wide(&xb[i * d..(i + 1) * d], c);
                            if v < *mi {
                                *mi = v;
                                *o = new_owner;
                            }
                        }
                        s += *mi as f64;
                    }
                    s
                })
                .collect();
            centers.extend_from_slice(c);
            continue;
        }
        // One pass for all candidates; each chunk returns its `trials` sums.
        let chunk_sums: Vec<Vec<f64>> = newd
            .par_chunks_mut(ROW_CHUNK * trials)
            .zip(x.par_chunks(ROW_CHUNK * d))
            .zip(mind.par_chunks(ROW_CHUNK).zip(owner.par_chunks(ROW_CHUNK)))
            .map(|((out, xb), (m, own))| {
                let mut s = vec![0.0f64; trials];
                for (i, (&mi, &o)) in m.iter().zip(own).enumerate() {
                    for t in 0..trials {
                        let v = if !prune || may_improve(cc[t][o as usize], mi) {
                            mi.min(sq_dist_wide(&xb[i * d..(i + 1) * d], cand_rows[t]))
                        } else {
                            mi
                        };
                        out[i * trials + t] = v;
                        s[t] += v as f64;
                    }
                }
                s
            })
            .collect();
        let mut best = 0;
        let mut best_pot = f64::INFINITY;
        for t in 0..trials {
            let pot: f64 = chunk_sums.iter().map(|s| s[t]).sum();
            if pot < best_pot {
                best_pot = pot;
                best = t;
            }
        }
        mind.par_chunks_mut(ROW_CHUNK)
            .zip(owner.par_chunks_mut(ROW_CHUNK))
            .zip(newd.par_chunks(ROW_CHUNK * trials))
            .for_each(|((m, own), nd)| {
                for (i, (mi, o)) in m.iter_mut().zip(own.iter_mut()).enumerate() {
                    let v = nd[i * trials + best];
                    if v < *mi {
                        *mi = v;
                        *o = new_owner;
                    }
                }
            });
        sums = chunk_sums.iter().map(|s| s[best]).collect();
        centers.extend_from_slice(cand_rows[best]);
    }
    Ok(centers)
}

/// f64 sum in fixed chunks, combined in chunk order.
fn chunked_sum(v: &[f32]) -> f64 {
    let parts: Vec<f64> = v
        .par_chunks(ROW_CHUNK)
        .map(|c| c.iter().map(|&a| a as f64).sum())
        .collect();
    parts.iter().sum()
}

/// Lloyd's algorithm on the `sample` rows (all rows when `None`), then one
/// full assignment of every row.
pub fn kmeans(
    x: &[f32],
    n: usize,
    d: usize,
    params: &KMeansParams,
    init: Option<&[f32]>,
    sample: Option<&[i64]>,
) -> KernelResult<KMeansResult> {
    let k = params.n_clusters;
    if d == 0 || x.len() != n * d {
        return Err(invalid!("features buffer does not match n={n}, d={d}"));
    }
    // Training rows, gathered when subsampling.
    let gathered: Vec<f32>;
    let (tx, tn): (&[f32], usize) = match sample {
        Some(s) => {
            if let Some(&bad) = s.iter().find(|&&i| i < 0 || i as usize >= n) {
                return Err(invalid!("sample holds index {bad} outside [0, {n})"));
            }
            let mut buf = vec![0f32; s.len() * d];
            buf.par_chunks_mut(d)
                .zip(s.par_iter())
                .for_each(|(dst, &i)| {
                    let i = i as usize;
                    dst.copy_from_slice(&x[i * d..(i + 1) * d]);
                });
            gathered = buf;
            (&gathered, s.len())
        }
        None => (x, n),
    };
    if k == 0 || k > tn {
        return Err(invalid!(
            "n_clusters={k} must be in [1, n_training_samples={tn}]"
        ));
    }
    let mut centroids = match init {
        Some(c) => {
            if c.len() != k * d {
                return Err(invalid!("init buffer does not match k={k}, d={d}"));
            }
            c.to_vec()
        }
        None => kmeans_plusplus(tx, tn, d, k, params.seed, params.n_local_trials)?,
    };
    // tol is relative to the mean per-feature variance, as in scikit-learn.
    let tol_abs = params.tol * mean_variance(tx, tn, d);
    let mut labels = vec![0i64; tn];
    let mut dists = vec![0f32; tn];
    let mut inertia = Vec::new();
    let mut n_iter = 0;
    for _ in 0..params.max_iter {
        let packed = Packed::new(&centroids, k, d)?;
        distance::assign_packed(tx, &packed, &mut labels, &mut dists);
        inertia.push(chunked_sum(&dists));
        n_iter += 1;
        let new = update_centroids(tx, d, k, &mut labels, &dists, &centroids);
        let shift: f64 = new
            .iter()
            .zip(&centroids)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        centroids = new;
        if shift <= tol_abs {
            break;
        }
    }
    let mut all_labels = vec![0i64; n];
    let mut all_dists = vec![0f32; n];
    let packed = Packed::new(&centroids, k, d)?;
    distance::assign_packed(x, &packed, &mut all_labels, &mut all_dists);
    if sample.is_none() {
        inertia.push(chunked_sum(&all_dists));
    }
    Ok(KMeansResult {
        centroids,
        labels: all_labels,
        inertia,
        n_iter,
    })
}

/// Mean over features of the per-feature variance (f64, chunked, chunk order).
fn mean_variance(x: &[f32], n: usize, d: usize) -> f64 {
    let parts: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(ROW_CHUNK * d)
        .map(|xb| {
            let mut s = vec![0f64; d];
            let mut sq = vec![0f64; d];
            for row in xb.chunks_exact(d) {
                for ((a, b), &v) in s.iter_mut().zip(sq.iter_mut()).zip(row) {
                    let v = v as f64;
                    *a += v;
                    *b += v * v;
                }
            }
            (s, sq)
        })
        .collect();
    let mut s = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for (ps, psq) in parts {
        for j in 0..d {
            s[j] += ps[j];
            sq[j] += psq[j];
        }
    }
    let nn = n as f64;
    (0..d)
        .map(|j| (sq[j] / nn - (s[j] / nn).powi(2)).max(0.0))
        .sum::<f64>()
        / d as f64
}

/// `acc += Σ x[i]` over `rows`, in f64, in the order given.
fn add_rows(acc: &mut [f64], x: &[f32], rows: &[usize]) {
    #[inline(always)]
    fn body(acc: &mut [f64], x: &[f32], rows: &[usize]) {
        let d = acc.len();
        for &i in rows {
            for (a, &v) in acc.iter_mut().zip(&x[i * d..(i + 1) * d]) {
                *a += v as f64;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU supports AVX-512F.
        #[target_feature(enable = "avx512f")]
        unsafe fn wide512(acc: &mut [f64], x: &[f32], rows: &[usize]) {
            body(acc, x, rows)
        }
        /// # Safety
        /// The CPU supports AVX2.
        #[target_feature(enable = "avx2")]
        unsafe fn wide256(acc: &mut [f64], x: &[f32], rows: &[usize]) {
            body(acc, x, rows)
        }
        // Same bits on every path: lane-wise f64 adds in row order.
        match distance::path() {
            // SAFETY: the feature was detected at run time by `path()`.
            SimdPath::Avx512 => return unsafe { wide512(acc, x, rows) },
            // SAFETY: as above (AVX2+FMA detected).
            SimdPath::Avx2Fma => return unsafe { wide256(acc, x, rows) },
            SimdPath::Portable => {}
        }
    }
    body(acc, x, rows)
}

/// New centroids as means of their members; empty clusters first take the
/// farthest rows (which changes their `labels`).
fn update_centroids(
    x: &[f32],
    d: usize,
    k: usize,
    labels: &mut [i64],
    dists: &[f32],
    old: &[f32],
) -> Vec<f32> {
    let n = labels.len();
    let mut counts = vec![0usize; k];
    for &l in labels.iter() {
        counts[l as usize] += 1;
    }
    if counts.contains(&0) {
        let mut order: Vec<usize> = (0..n).collect();
        order.par_sort_unstable_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
        let mut next = order.into_iter();
        for e in 0..k {
            if counts[e] != 0 {
                continue;
            }
            for i in next.by_ref() {
                let l = labels[i] as usize;
                if counts[l] > 1 {
                    counts[l] -= 1;
                    counts[e] = 1;
                    labels[i] = e as i64;
                    break;
                }
            }
        }
    }
    // Counting sort of rows by label (stable: members in row order).
    let mut start = vec![0usize; k + 1];
    for c in 0..k {
        start[c + 1] = start[c] + counts[c];
    }
    let mut pos = start.clone();
    let mut members = vec![0usize; n];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        members[pos[l]] = i;
        pos[l] += 1;
    }
    // Fixed tasks: each cluster's member list cut into SUM_CHUNK pieces.
    let mut tasks = Vec::new();
    for c in 0..k {
        let mut s = start[c];
        while s < start[c + 1] {
            let e = (s + SUM_CHUNK).min(start[c + 1]);
            tasks.push((c, s, e));
            s = e;
        }
    }
    let partial: Vec<Vec<f64>> = tasks
        .par_iter()
        .map(|&(_, s, e)| {
            let mut acc = vec![0f64; d];
            add_rows(&mut acc, x, &members[s..e]);
            acc
        })
        .collect();
    let mut sums = vec![0f64; k * d];
    for (&(c, _, _), p) in tasks.iter().zip(&partial) {
        for (a, b) in sums[c * d..(c + 1) * d].iter_mut().zip(p) {
            *a += b;
        }
    }
    let mut out = old.to_vec();
    for c in 0..k {
        if counts[c] > 0 {
            let inv = counts[c] as f64;
            for (o, s) in out[c * d..(c + 1) * d]
                .iter_mut()
                .zip(&sums[c * d..(c + 1) * d])
            {
                *o = (s / inv) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruned_seeding_equals_brute_force_on_integer_data() {
        // Integer-valued rows: every distance is exact, so the pruning test
        // can only skip rows the brute force would leave unchanged.
        let (n, d) = (3000, 6);
        let mut state = 12345u64;
        let x: Vec<f32> = (0..n * d)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let cluster = ((i / d) % 7) as f32 * 40.0;
                cluster + ((state >> 33) % 9) as f32
            })
            .collect();
        for trials in [1, 3] {
            let a = seed_centres(&x, n, d, 60, 7, trials, true).unwrap();
            let b = seed_centres(&x, n, d, 60, 7, trials, false).unwrap();
            assert_eq!(a, b, "trials={trials}");
        }
    }
}
