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
//! - Each Lloyd iteration is one assignment pass ([`assign`]'s blocked kernel,
//!   O(n·k·d)) and the update's sums in fixed point (i64, one rounding per value
//!   to a per-feature grid, see "Exact, order-independent reductions" below).
//!   While a `k × d` accumulator fits in L2 ([`FUSED_ACC_BYTES`]) each block's
//!   rows are added to its group's accumulator right after the block is
//!   assigned, so `x` is read once per iteration; otherwise the update is a
//!   second pass: rows grouped by label with a counting sort, each cluster's
//!   members summed in chunks of [`SUM_CHUNK`] members, which keeps the extra
//!   memory at O(n + k·d). Integer sums make the update independent of the thread count
//!   *and* of any split of the rows into shards: [`partial`] on each shard,
//!   [`Partial::add`] in any order and [`update`] give the local result bit for
//!   bit (the Ray backend, `ecos_fast.scaleout`, relies on it).
//! - Empty clusters take the rows farthest from their centroid (largest
//!   distance first, ties to the lowest row), each from a cluster that keeps at
//!   least one member, as scikit-learn's `_relocate_empty_clusters`. Only the
//!   top `n_empty + k` rows can be consulted, so shards send their own top
//!   rows ([`candidates`]) and the merge is exact.
//! - Stop after `max_iter` iterations or when the total squared centroid shift
//!   is at most `tol` × the mean per-feature variance (scikit-learn's rule).
//! - With a training subsample, Lloyd runs on the gathered sample rows and a
//!   final assignment labels every row.
//!
//! Inertia history: the sum of the squared distances at each assignment,
//! accumulated exactly per f32 exponent and read out in one fixed order. Lloyd never increases it in exact arithmetic; here it
//! can rise only by rounding (f32 centroids, and near-ties that the distance
//! expansion resolves within its rounding error).
//!
//! Determinism: fixed-size chunks, integer reductions for every Lloyd sum,
//! ties to the lowest index, all randomness from one `Pcg64` seeded by `seed`;
//! results are identical for any thread count and any sharding of the rows.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use rayon::prelude::*;

use super::assign::{self, sq_dist_wide, Packed, Scratch, ROW_BLOCK, ROW_CHUNK};
use super::control::{Control, NEVER};
use super::simd::{self, SimdPath};
use crate::errors::KernelResult;
use crate::invalid;

/// Members summed per task in the centroid update.
pub const SUM_CHUNK: usize = 8192;

/// The fused update (rows summed right after their block is assigned, while they
/// are still in cache) keeps one `k × d` i64 accumulator per group of blocks. It is
/// used while one accumulator fits a core's L2 (the rows' scatter into it stays
/// in cache: at 200k × 512, k = 100 it is 1.20× faster per Lloyd iteration on 2
/// threads, Zen 4; at k = 1000, a 4 MB accumulator, it measured 0.90–1.15× and
/// is not used) and all of them stay under [`FUSED_ALL_BYTES`]; else the grouped
/// pass (O(n + k·d) memory). Same integer sums either way.
pub const FUSED_ACC_BYTES: usize = 1 << 20;
/// The bound on all the fused pass's accumulators together.
pub const FUSED_ALL_BYTES: usize = 64 << 20;

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
    seed_centres(x, n, d, k, seed, n_local_trials, true, &NEVER)
}

/// [`kmeans_plusplus`], with the pruning switchable (tests compare both) and a
/// [`Control`] checked before each pick.
#[allow(clippy::too_many_arguments)]
fn seed_centres(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
    n_local_trials: usize,
    prune: bool,
    ctl: &Control,
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
    if trials > n {
        return Err(invalid!(
            "n_local_trials={trials} exceeds the n_samples={n} rows candidates are drawn from"
        ));
    }
    // The candidates' new minima, row-major (`trials` per row; unused for one): refuse a
    // buffer that cannot be allocated instead of aborting the process.
    let buf_len = if trials > 1 { trials * n } else { 0 };
    let mut newd: Vec<f32> = Vec::new();
    newd.try_reserve_exact(buf_len).map_err(|_| {
        invalid!(
            "n_local_trials={trials} needs {trials} x {n} float32 candidate distances \
             ({} bytes), more than can be allocated",
            buf_len as u128 * 4
        )
    })?;
    newd.resize(buf_len, 0.0);
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
    let mut cands = vec![0usize; trials];
    for step in 1..k {
        ctl.check()?;
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

/// Lloyd's algorithm on the `sample` rows (all rows when `None`), then one
/// full assignment of every row.
///
/// Each iteration is exactly what a sharded driver does with one shard:
/// [`partial`] (assignment and fixed-point sums), [`candidates`] when a
/// cluster is empty, then [`update`]. Because the partial results are
/// integers, any split of the rows into shards, summed in any order, gives
/// the same centroids bit for bit.
pub fn kmeans(
    x: &[f32],
    n: usize,
    d: usize,
    params: &KMeansParams,
    init: Option<&[f32]>,
    sample: Option<&[i64]>,
    ctl: &Control,
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
        None => seed_centres(tx, tn, d, k, params.seed, params.n_local_trials, true, ctl)?,
    };
    let scales = quant_scales(&max_abs(tx, d), tn as u64);
    // tol is relative to the mean per-feature variance, as in scikit-learn.
    // (Not computed for tol = 0, which stops on a zero shift only, as scikit-learn.)
    let tol_abs = if params.tol > 0.0 {
        let (sq, sq2) = moments(tx, d, &scales);
        params.tol * mean_variance(&sq, &sq2, tn as u64, &scales)
    } else {
        0.0
    };
    let mut labels = vec![0i64; tn];
    let mut dists = vec![0f32; tn];
    let mut inertia = Vec::new();
    let mut n_iter = 0;
    for _ in 0..params.max_iter {
        let packed = Packed::new(&centroids, k, d)?;
        let p = partial_ctl(tx, d, &packed, &scales, &mut labels, &mut dists, ctl);
        ctl.check()?;
        let cands = match n_empty(&p.counts) {
            0 => None,
            e => Some(candidates(tx, d, &dists, &labels, 0, e + k)),
        };
        let u = update(p, cands.as_ref(), &centroids, &scales)?;
        inertia.push(u.inertia);
        n_iter += 1;
        ctl.step();
        centroids = u.centroids;
        if u.shift <= tol_abs {
            break;
        }
    }
    let mut all_labels = vec![0i64; n];
    let mut all_dists = vec![0f32; n];
    let packed = Packed::new(&centroids, k, d)?;
    assign::assign_packed_ctl(x, &packed, &mut all_labels, &mut all_dists, ctl);
    ctl.check()?;
    if sample.is_none() {
        inertia.push(bins_total(&dist_bins(&all_dists)));
    }
    Ok(KMeansResult {
        centroids,
        labels: all_labels,
        inertia,
        n_iter,
    })
}

// --- Exact, order-independent reductions --------------------------------------
//
// Floating-point sums depend on their order, so per-shard f64 sums added on a
// driver would differ from one process's sums in the last bits, and the
// difference would grow over iterations. Every reduction of the Lloyd loop is
// therefore an integer sum (integer addition is associative):
// - feature sums: each value is rounded once to a per-feature fixed-point grid,
//   `q = round_half_even(x · 2^S_j)`, with `S_j` chosen from the feature's
//   largest |value| and the number of rows so that no sum can overflow i64
//   (|q| ≤ 2^B, B = min(50, 62 − ⌈log2 n⌉)); the grid step is ≤ 2^−B times the
//   feature's largest |value|, far below float32's own resolution for n up to 2^40;
// - counts: i64;
// - inertia: each f32 distance is split into its 24-bit significand and
//   exponent and the significands are added into one i64 bin per exponent
//   (exact for up to 2^39 rows); the total is read out from the bins in a fixed
//   order;
// - the variance that scales `tol`: i64 and i128 sums of the same fixed-point
//   values.
// The max-abs that sets the scales is a max, also order-independent.

/// Largest bit width of one fixed-point value (the rounding trick needs < 51).
const MAX_BITS: i32 = 50;

/// Exponent bins of an f32 (biased exponents 1..=254; denormals share bin 1).
pub const N_BINS: usize = 256;

/// The scale `2^e` as an f64 (`e` within the normal range).
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Largest |value| of each feature (a max: exact and order-independent).
pub fn max_abs(x: &[f32], d: usize) -> Vec<f32> {
    x.par_chunks(ROW_CHUNK * d)
        .map(|xb| {
            let mut m = vec![0f32; d];
            for row in xb.chunks_exact(d) {
                for (a, &v) in m.iter_mut().zip(row) {
                    *a = a.max(v.abs());
                }
            }
            m
        })
        .reduce(
            || vec![0f32; d],
            |mut a, b| {
                for (u, v) in a.iter_mut().zip(b) {
                    *u = u.max(v);
                }
                a
            },
        )
}

/// Per-feature fixed-point scales `2^S_j` for `n_total` rows whose largest
/// |values| are `max_abs`: `|x · 2^S_j| ≤ 2^B` with `n_total · 2^B < 2^63`.
pub fn quant_scales(max_abs: &[f32], n_total: u64) -> Vec<f64> {
    let log_n = 64 - n_total.max(1).saturating_sub(1).leading_zeros() as i32; // ⌈log2 n⌉
    let bits = MAX_BITS.min(62 - log_n);
    max_abs
        .iter()
        .map(|&m| {
            if m == 0.0 || !m.is_finite() {
                return 1.0;
            }
            // e = ⌈log2 m⌉, read from the f64 bits (m is normal as an f64).
            let b = (m as f64).to_bits();
            let exp = ((b >> 52) & 0x7ff) as i32 - 1023;
            let e = if b & ((1u64 << 52) - 1) == 0 {
                exp
            } else {
                exp + 1
            };
            pow2(bits - e)
        })
        .collect()
}

/// `acc[j] += round_half_even(row[j] · scales[j])`.
///
/// `|row[j] · scales[j]| ≤ 2^50`, so adding 1.5·2^52 lands in [2^52, 2^53),
/// where the f64 grid is the integers: the addition itself rounds (half to
/// even), and the low bits are the integer. No float-to-int conversion, so it
/// vectorises on every path and gives the same bits on all of them.
#[inline(always)]
fn add_quantized(acc: &mut [i64], row: &[f32], scales: &[f64]) {
    const MAGIC: f64 = 6755399441055744.0; // 1.5 · 2^52
    let magic_bits = MAGIC.to_bits() as i64;
    for ((a, &v), &s) in acc.iter_mut().zip(row).zip(scales) {
        let y = v as f64 * s + MAGIC;
        *a += y.to_bits() as i64 - magic_bits;
    }
}

/// Which rows of `x` go into which `d`-long slot of the accumulator.
#[derive(Clone, Copy)]
enum Dest<'a> {
    /// These rows of `x`, all into the one slot `acc` (`acc.len() == d`).
    One(&'a [usize]),
    /// Every row `r` of the block `x` into slot `labels[r]` (`acc` is `k × d`).
    Labelled(&'a [i64]),
}

/// Quantized rows of `x` added to `acc` as `dest` says, on the widest SIMD path
/// (integer results: the same on every path).
fn add_quantized_rows(acc: &mut [i64], x: &[f32], dest: Dest<'_>, scales: &[f64]) {
    #[inline(always)]
    fn body(acc: &mut [i64], x: &[f32], dest: Dest<'_>, scales: &[f64]) {
        let d = scales.len();
        match dest {
            Dest::One(rows) => {
                for &i in rows {
                    add_quantized(acc, &x[i * d..(i + 1) * d], scales);
                }
            }
            Dest::Labelled(labels) => {
                for (row, &l) in x.chunks_exact(d).zip(labels) {
                    let l = l as usize;
                    add_quantized(&mut acc[l * d..(l + 1) * d], row, scales);
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU supports AVX-512F.
        #[target_feature(enable = "avx512f")]
        unsafe fn wide512(acc: &mut [i64], x: &[f32], dest: Dest<'_>, scales: &[f64]) {
            body(acc, x, dest, scales)
        }
        /// # Safety
        /// The CPU supports AVX2.
        #[target_feature(enable = "avx2")]
        unsafe fn wide256(acc: &mut [i64], x: &[f32], dest: Dest<'_>, scales: &[f64]) {
            body(acc, x, dest, scales)
        }
        match simd::path() {
            // SAFETY: the feature was detected at run time by `path()`.
            SimdPath::Avx512 => return unsafe { wide512(acc, x, dest, scales) },
            // SAFETY: as above (AVX2+FMA detected).
            SimdPath::Avx2Fma => return unsafe { wide256(acc, x, dest, scales) },
            SimdPath::Portable => {}
        }
    }
    body(acc, x, dest, scales)
}

/// Fixed-point feature sums (i64) and sums of squares (i128) of the rows.
pub fn moments(x: &[f32], d: usize, scales: &[f64]) -> (Vec<i64>, Vec<i128>) {
    x.par_chunks(ROW_CHUNK * d)
        .map(|xb| {
            let mut s = vec![0i64; d];
            let mut s2 = vec![0i128; d];
            let mut q = vec![0i64; d];
            for row in xb.chunks_exact(d) {
                q.iter_mut().for_each(|v| *v = 0);
                add_quantized(&mut q, row, scales);
                for ((a, b), &v) in s.iter_mut().zip(s2.iter_mut()).zip(&q) {
                    *a += v;
                    *b += (v as i128) * (v as i128);
                }
            }
            (s, s2)
        })
        .reduce(
            || (vec![0i64; d], vec![0i128; d]),
            |(mut a, mut a2), (b, b2)| {
                a.iter_mut().zip(b).for_each(|(u, v)| *u += v);
                a2.iter_mut().zip(b2).for_each(|(u, v)| *u += v);
                (a, a2)
            },
        )
}

/// Mean over features of the per-feature variance, from [`moments`] of `n` rows.
///
/// `n² · var_j · 2^(2 S_j) = n Σq² − (Σq)²`, exact in i128, then one division.
pub fn mean_variance(sum_q: &[i64], sum_q2: &[i128], n: u64, scales: &[f64]) -> f64 {
    if n == 0 || scales.is_empty() {
        return 0.0;
    }
    let nn = n as i128;
    let total: f64 = sum_q
        .iter()
        .zip(sum_q2)
        .zip(scales)
        .map(|((&s, &s2), &sc)| {
            let num = (nn * s2 - (s as i128) * (s as i128)).max(0);
            num as f64 / (n as f64 * n as f64) / (sc * sc)
        })
        .sum();
    total / scales.len() as f64
}

/// Significand bins of non-negative f32 values, per exponent (see the
/// section comment); bin `b` holds multiples of `2^(b − 150)`.
pub fn dist_bins(v: &[f32]) -> Vec<i64> {
    v.par_chunks(ROW_CHUNK)
        .map(|c| {
            let mut bins = vec![0i64; N_BINS];
            for &x in c {
                let b = x.abs().to_bits();
                let e = (b >> 23) as usize;
                let m = (b & 0x7f_ffff) as i64;
                if e == 0 {
                    bins[1] += m;
                } else {
                    bins[e] += m | (1 << 23);
                }
            }
            bins
        })
        .reduce(
            || vec![0i64; N_BINS],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(u, v)| *u += v);
                a
            },
        )
}

/// The value of [`dist_bins`]' bins (smallest exponent first, in f64).
pub fn bins_total(bins: &[i64]) -> f64 {
    bins.iter()
        .enumerate()
        .filter(|(_, &m)| m != 0)
        .map(|(e, &m)| m as f64 * 2f64.powi(e as i32 - 150))
        .sum()
}

/// One shard's contribution to a Lloyd iteration.
pub struct Partial {
    /// Fixed-point feature sums per cluster, `k × d`.
    pub sums: Vec<i64>,
    /// Members per cluster.
    pub counts: Vec<i64>,
    /// [`dist_bins`] of the squared distances (the inertia).
    pub bins: Vec<i64>,
}

impl Partial {
    pub fn zeros(k: usize, d: usize) -> Self {
        Partial {
            sums: vec![0; k * d],
            counts: vec![0; k],
            bins: vec![0; N_BINS],
        }
    }

    /// `self += other` (exact).
    pub fn add(&mut self, other: &Partial) {
        for (a, b) in [
            (&mut self.sums, &other.sums),
            (&mut self.counts, &other.counts),
            (&mut self.bins, &other.bins),
        ] {
            a.iter_mut().zip(b).for_each(|(u, v)| *u += v);
        }
    }
}

/// Clusters with no member.
pub fn n_empty(counts: &[i64]) -> usize {
    counts.iter().filter(|&&c| c == 0).count()
}

/// Assign the rows of `x` (filling `labels`, `dists`) and sum them per cluster.
pub fn partial(
    x: &[f32],
    d: usize,
    packed: &Packed<'_>,
    scales: &[f64],
    labels: &mut [i64],
    dists: &mut [f32],
) -> Partial {
    partial_ctl(x, d, packed, scales, labels, dists, &NEVER)
}

/// [`partial`] that stops assigning once `ctl` is cancelled (the result is then
/// meaningless: the caller checks `ctl` and returns `Interrupted`).
fn partial_ctl(
    x: &[f32],
    d: usize,
    packed: &Packed<'_>,
    scales: &[f64],
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
) -> Partial {
    let k = packed.n_clusters();
    let n = labels.len();
    let n_blocks = n.div_ceil(ROW_BLOCK);
    // A few groups per thread balance the load; each holds one accumulator.
    let groups = n_blocks.min(4 * rayon::current_num_threads().max(1));
    let acc = k.saturating_mul(d).saturating_mul(8);
    if groups > 0 && acc <= FUSED_ACC_BYTES && groups.saturating_mul(acc) <= FUSED_ALL_BYTES {
        return partial_fused(x, d, packed, scales, labels, dists, ctl, groups);
    }
    partial_grouped(x, d, packed, scales, labels, dists, ctl)
}

/// [`partial_ctl`] in two passes: the assignment, then the rows grouped by label
/// (counting sort) and each cluster's members summed in [`SUM_CHUNK`] pieces.
fn partial_grouped(
    x: &[f32],
    d: usize,
    packed: &Packed<'_>,
    scales: &[f64],
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
) -> Partial {
    let k = packed.n_clusters();
    assign::assign_packed_ctl(x, packed, labels, dists, ctl);
    if ctl.is_cancelled() {
        return Partial::zeros(k, d);
    }
    let mut counts = vec![0usize; k];
    for &l in labels.iter() {
        counts[l as usize] += 1;
    }
    // Counting sort of rows by label, then each cluster's member list cut
    // into SUM_CHUNK pieces: O(n + k·d) memory, any number of threads.
    let mut start = vec![0usize; k + 1];
    for c in 0..k {
        start[c + 1] = start[c] + counts[c];
    }
    let mut pos = start.clone();
    let mut members = vec![0usize; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        members[pos[l]] = i;
        pos[l] += 1;
    }
    let mut tasks = Vec::new();
    for c in 0..k {
        let mut s = start[c];
        while s < start[c + 1] {
            let e = (s + SUM_CHUNK).min(start[c + 1]);
            tasks.push((c, s, e));
            s = e;
        }
    }
    let parts: Vec<Vec<i64>> = tasks
        .par_iter()
        .map(|&(_, s, e)| {
            let mut acc = vec![0i64; d];
            add_quantized_rows(&mut acc, x, Dest::One(&members[s..e]), scales);
            acc
        })
        .collect();
    let mut sums = vec![0i64; k * d];
    for (&(c, _, _), p) in tasks.iter().zip(&parts) {
        sums[c * d..(c + 1) * d]
            .iter_mut()
            .zip(p)
            .for_each(|(a, b)| *a += b);
    }
    Partial {
        sums,
        counts: counts.iter().map(|&c| c as i64).collect(),
        bins: dist_bins(dists),
    }
}

/// [`partial_ctl`] with the sums taken block by block right after each block is
/// assigned (its rows still in cache: one read of `x` per iteration instead of
/// two). `groups` contiguous runs of blocks, each with its own `k × d`
/// accumulator, added in group order; integer sums, so the result is the grouped
/// pass's bit for bit.
#[allow(clippy::too_many_arguments)]
fn partial_fused(
    x: &[f32],
    d: usize,
    packed: &Packed<'_>,
    scales: &[f64],
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
    groups: usize,
) -> Partial {
    let k = packed.n_clusters();
    let n = labels.len();
    let n_blocks = n.div_ceil(ROW_BLOCK);
    let rows_per_group = n_blocks.div_ceil(groups) * ROW_BLOCK;
    let parts: Vec<(Vec<i64>, Vec<i64>)> = labels
        .par_chunks_mut(rows_per_group)
        .zip(dists.par_chunks_mut(rows_per_group))
        .zip(x.par_chunks(rows_per_group * d))
        .map(|((lab, dis), xg)| {
            let mut sums = vec![0i64; k * d];
            let mut counts = vec![0i64; k];
            let mut s = Scratch::default();
            for ((lb, db), xb) in lab
                .chunks_mut(ROW_BLOCK)
                .zip(dis.chunks_mut(ROW_BLOCK))
                .zip(xg.chunks(ROW_BLOCK * d))
            {
                if ctl.is_cancelled() {
                    break;
                }
                packed.block(xb, &mut s, lb, db);
                add_quantized_rows(&mut sums, xb, Dest::Labelled(lb), scales);
                for &l in lb.iter() {
                    counts[l as usize] += 1;
                }
            }
            (sums, counts)
        })
        .collect();
    if ctl.is_cancelled() {
        return Partial::zeros(k, d);
    }
    let mut sums = vec![0i64; k * d];
    let mut counts = vec![0i64; k];
    for (ps, pc) in &parts {
        sums.iter_mut().zip(ps).for_each(|(a, b)| *a += b);
        counts.iter_mut().zip(pc).for_each(|(a, b)| *a += b);
    }
    Partial {
        sums,
        counts,
        bins: dist_bins(dists),
    }
}

/// Rows that may move to empty clusters: the `m` rows with the largest
/// distance (ties to the lowest global index), with their labels and features.
pub struct Candidates {
    pub dist: Vec<f32>,
    /// Global row index (`row_offset` + local row).
    pub index: Vec<i64>,
    pub label: Vec<i64>,
    /// `m × d`.
    pub rows: Vec<f32>,
}

/// The order of relocation: distance descending, then global index.
fn cand_order(da: f32, ia: i64, db: f32, ib: i64) -> std::cmp::Ordering {
    db.total_cmp(&da).then(ia.cmp(&ib))
}

/// The `min(m, n)` rows with the largest `dists` in relocation order (distance
/// descending, then row), as row numbers: what [`candidates`] takes, for a
/// driver that kept the distances of its assignment pass and gathers the rows
/// itself (the streamed Lloyd of `ecos_fast.clustering`, which so reads the pool
/// no second time in an iteration that empties a cluster).
pub fn relocation_order(dists: &[f32], m: usize) -> Vec<usize> {
    let n = dists.len();
    let m = m.min(n);
    let mut order: Vec<usize> = (0..n).collect();
    let cmp = |&a: &usize, &b: &usize| cand_order(dists[a], a as i64, dists[b], b as i64);
    if m < n && m > 0 {
        order.select_nth_unstable_by(m - 1, cmp);
    }
    order.truncate(m);
    order.sort_unstable_by(cmp);
    order
}

/// The top `m` rows of one shard in relocation order (see [`Candidates`]).
///
/// At most `n_empty + k` rows are ever consulted by [`update`] (each empty
/// cluster takes one row, and each cluster left with one member turns one
/// row away), so the global top `n_empty + k` is the merge of every shard's.
pub fn candidates(
    x: &[f32],
    d: usize,
    dists: &[f32],
    labels: &[i64],
    row_offset: i64,
    m: usize,
) -> Candidates {
    let order = relocation_order(dists, m);
    let mut rows = Vec::with_capacity(m * d);
    for &i in &order {
        rows.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    Candidates {
        dist: order.iter().map(|&i| dists[i]).collect(),
        index: order.iter().map(|&i| row_offset + i as i64).collect(),
        label: order.iter().map(|&i| labels[i]).collect(),
        rows,
    }
}

/// A Lloyd update from the summed partials.
pub struct Update {
    pub centroids: Vec<f32>,
    /// Total squared centroid shift.
    pub shift: f64,
    /// Inertia of the assignment the partials came from.
    pub inertia: f64,
    /// Members per cluster after relocation.
    pub counts: Vec<i64>,
    /// (global row, from, to) of every relocated row.
    pub moves: Vec<(i64, usize, usize)>,
}

/// New centroids as means of their members. Empty clusters first take the
/// farthest rows (largest distance first, ties to the lowest row), each from a
/// cluster that keeps at least one member, as scikit-learn's
/// `_relocate_empty_clusters`; `cands` (any order, any number of shards
/// concatenated) must then hold at least the global top `n_empty + k`.
pub fn update(
    mut p: Partial,
    cands: Option<&Candidates>,
    old: &[f32],
    scales: &[f64],
) -> KernelResult<Update> {
    let k = p.counts.len();
    let d = scales.len();
    if k == 0 || d == 0 || p.sums.len() != k * d || old.len() != k * d || p.bins.len() != N_BINS {
        return Err(invalid!(
            "partial sums do not match n_clusters={k}, n_features={d}"
        ));
    }
    if let Some(&bad) = p.counts.iter().find(|&&c| c < 0) {
        return Err(invalid!("counts hold a negative value {bad}"));
    }
    let mut moves = Vec::new();
    let empty = n_empty(&p.counts);
    if empty > 0 && p.counts.iter().sum::<i64>() >= k as i64 {
        let c = cands.ok_or_else(|| invalid!("{empty} empty clusters but no candidates"))?;
        let m = c.dist.len();
        if c.index.len() != m || c.label.len() != m || c.rows.len() != m * d {
            return Err(invalid!("candidate buffers do not match m={m}, d={d}"));
        }
        if let Some(&bad) = c.label.iter().find(|&&l| l < 0 || l as usize >= k) {
            return Err(invalid!("candidate label {bad} outside [0, {k})"));
        }
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_unstable_by(|&a, &b| cand_order(c.dist[a], c.index[a], c.dist[b], c.index[b]));
        order.dedup_by_key(|&mut i| c.index[i]);
        let mut next = order.into_iter();
        let mut q = vec![0i64; d];
        for e in 0..k {
            if p.counts[e] != 0 {
                continue;
            }
            for i in next.by_ref() {
                let l = c.label[i] as usize;
                if p.counts[l] > 1 {
                    p.counts[l] -= 1;
                    p.counts[e] = 1;
                    q.iter_mut().for_each(|v| *v = 0);
                    add_quantized(&mut q, &c.rows[i * d..(i + 1) * d], scales);
                    for (j, &v) in q.iter().enumerate() {
                        p.sums[l * d + j] -= v;
                        p.sums[e * d + j] += v;
                    }
                    moves.push((c.index[i], l, e));
                    break;
                }
            }
        }
        if n_empty(&p.counts) > 0 {
            return Err(invalid!(
                "{} candidates were too few to relocate {empty} empty clusters",
                m
            ));
        }
    }
    let mut out = old.to_vec();
    for c in 0..k {
        if p.counts[c] > 0 {
            let cnt = p.counts[c] as f64;
            for ((o, &s), &sc) in out[c * d..(c + 1) * d]
                .iter_mut()
                .zip(&p.sums[c * d..(c + 1) * d])
                .zip(scales)
            {
                *o = (s as f64 / cnt / sc) as f32;
            }
        }
    }
    let shift: f64 = out
        .iter()
        .zip(old)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    Ok(Update {
        centroids: out,
        shift,
        inertia: bins_total(&p.bins),
        counts: p.counts,
        moves,
    })
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
            let a = seed_centres(&x, n, d, 60, 7, trials, true, &NEVER).unwrap();
            let b = seed_centres(&x, n, d, 60, 7, trials, false, &NEVER).unwrap();
            assert_eq!(a, b, "trials={trials}");
        }
    }

    #[test]
    fn sharded_partials_equal_one_partial_bit_for_bit() {
        let (n, d, k) = (5000, 9, 13);
        let x = crate::kernels::testdata::lcg_values(3, n * d);
        let c = x[..k * d].to_vec();
        let scales = quant_scales(&max_abs(&x, d), n as u64);
        let packed = Packed::new(&c, k, d).unwrap();
        let (mut lab, mut dis) = (vec![0i64; n], vec![0f32; n]);
        let whole = partial(&x, d, &packed, &scales, &mut lab, &mut dis);
        let mut summed = Partial::zeros(k, d);
        // Uneven shards, added in reverse order.
        let cuts = [0, 7, 1500, 1501, 4000, n];
        for w in cuts.windows(2).rev() {
            let (a, b) = (w[0], w[1]);
            let (mut l, mut ds) = (vec![0i64; b - a], vec![0f32; b - a]);
            summed.add(&partial(
                &x[a * d..b * d],
                d,
                &packed,
                &scales,
                &mut l,
                &mut ds,
            ));
            assert_eq!(&l[..], &lab[a..b]);
        }
        assert_eq!(summed.sums, whole.sums);
        assert_eq!(summed.counts, whole.counts);
        assert_eq!(summed.bins, whole.bins);
        let u1 = update(whole, None, &c, &scales).unwrap();
        let u2 = update(summed, None, &c, &scales).unwrap();
        assert_eq!(u1.centroids, u2.centroids);
        assert_eq!(u1.inertia.to_bits(), u2.inertia.to_bits());
    }

    #[test]
    fn fused_update_equals_the_grouped_pass_bit_for_bit() {
        // Rows not a multiple of ROW_BLOCK; group counts from 1 to more than blocks.
        let (n, d, k) = (ROW_BLOCK * 7 + 31, 11, 17);
        let x = crate::kernels::testdata::lcg_values(5, n * d);
        let c = x[3 * d..(3 + k) * d].to_vec();
        let scales = quant_scales(&max_abs(&x, d), n as u64);
        let packed = Packed::new(&c, k, d).unwrap();
        let (mut lab, mut dis) = (vec![0i64; n], vec![0f32; n]);
        let want = partial_grouped(&x, d, &packed, &scales, &mut lab, &mut dis, &NEVER);
        for groups in [1, 2, 3, 8, 100] {
            let (mut l, mut ds) = (vec![-1i64; n], vec![-1f32; n]);
            let got = partial_fused(&x, d, &packed, &scales, &mut l, &mut ds, &NEVER, groups);
            assert_eq!(l, lab, "groups={groups}");
            assert_eq!(ds, dis, "groups={groups}");
            assert_eq!(got.sums, want.sums, "groups={groups}");
            assert_eq!(got.counts, want.counts, "groups={groups}");
            assert_eq!(got.bins, want.bins, "groups={groups}");
        }
        // The dispatching entry point takes the fused pass here (small k·d).
        let (mut l, mut ds) = (vec![0i64; n], vec![0f32; n]);
        assert_eq!(
            partial(&x, d, &packed, &scales, &mut l, &mut ds).sums,
            want.sums
        );
    }

    #[test]
    fn fixed_point_is_exact_on_small_integers_and_never_overflows() {
        // Integer data: the grid holds every value, so sums and means are exact.
        let x: Vec<f32> = (0..40).map(|i| (i % 7) as f32 - 3.0).collect();
        let scales = quant_scales(&max_abs(&x, 2), 20);
        let (s, s2) = moments(&x, 2, &scales);
        let sum0: f64 = x.iter().step_by(2).map(|&v| v as f64).sum();
        assert_eq!(s[0] as f64 / scales[0], sum0);
        let var = mean_variance(&s, &s2, 20, &scales);
        assert!(var > 0.0 && var.is_finite());
        // The largest |value| at the largest row count still fits.
        let big = quant_scales(&[f32::MAX, 1e-30, 0.0], 1 << 40);
        let q = (f32::MAX as f64 * big[0]).abs();
        assert!(q <= 2f64.powi(22) && q * 2f64.powi(40) < 2f64.powi(63));
        assert_eq!(big[2], 1.0);
    }

    #[test]
    fn exponent_bins_sum_exactly() {
        let v = [1.5f32, 0.25, 3.0e-40, 1e30, 7.0];
        let b = dist_bins(&v);
        let want: f64 = v.iter().map(|&x| x as f64).sum();
        assert_eq!(bins_total(&b), want);
        let rev: Vec<f32> = v.iter().rev().copied().collect();
        assert_eq!(dist_bins(&rev), b);
    }
}
