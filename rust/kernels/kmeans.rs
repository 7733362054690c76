//! k-means: k-means++ seeding (Arthur & Vassilvitskii 2007) and Lloyd iterations.
//!
//! FIRST VERSION. Sums are accumulated in f64 over fixed-size row chunks and
//! reduced in chunk order, so results do not depend on the thread count.
//! Empty clusters are relocated to the points farthest from their centroid.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use rayon::prelude::*;

use super::distance::{self, sq_dist, ROW_CHUNK};
use crate::errors::KernelResult;
use crate::invalid;

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

/// k-means++ seeding over the rows of `x` (n × d). Returns k × d centroids.
pub fn kmeans_plusplus(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
    n_local_trials: usize,
) -> KernelResult<Vec<f32>> {
    if k == 0 || k > n {
        return Err(invalid!("n_clusters={k} must be in [1, n_samples={n}]"));
    }
    let trials = n_local_trials.max(1);
    let mut rng = Pcg64::seed_from_u64(seed);
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut centers = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centers.extend_from_slice(row(first));
    let mut mind: Vec<f32> = (0..n).into_par_iter().map(|i| sq_dist(row(i), row(first))).collect();
    for _ in 1..k {
        let total: f64 = chunked_sum(&mind);
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        for _ in 0..trials {
            let cand = if total > 0.0 {
                let target = rng.random::<f64>() * total;
                let mut acc = 0.0f64;
                let mut pick = n - 1;
                for (i, &m) in mind.iter().enumerate() {
                    acc += m as f64;
                    if acc > target {
                        pick = i;
                        break;
                    }
                }
                pick
            } else {
                rng.random_range(0..n)
            };
            let newd: Vec<f32> = (0..n)
                .into_par_iter()
                .map(|i| sq_dist(row(i), row(cand)).min(mind[i]))
                .collect();
            let pot = chunked_sum(&newd);
            if best.as_ref().is_none_or(|(p, _, _)| pot < *p) {
                best = Some((pot, cand, newd));
            }
        }
        let (_, cand, newd) = best.expect("at least one trial");
        centers.extend_from_slice(row(cand));
        mind = newd;
    }
    Ok(centers)
}

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
    if x.len() != n * d {
        return Err(invalid!("features buffer does not match n={n}, d={d}"));
    }
    // Training rows, gathered when subsampling.
    let gathered: Vec<f32>;
    let (tx, tn): (&[f32], usize) = match sample {
        Some(s) => {
            let mut buf = Vec::with_capacity(s.len() * d);
            for &i in s {
                if i < 0 || i as usize >= n {
                    return Err(invalid!("sample holds index {i} outside [0, {n})"));
                }
                buf.extend_from_slice(&x[i as usize * d..(i as usize + 1) * d]);
            }
            gathered = buf;
            (&gathered, s.len())
        }
        None => (x, n),
    };
    if k == 0 || k > tn {
        return Err(invalid!("n_clusters={k} must be in [1, n_training_samples={tn}]"));
    }
    let mut centroids = match init {
        Some(c) => c.to_vec(),
        None => kmeans_plusplus(tx, tn, d, k, params.seed, params.n_local_trials)?,
    };
    // tol is relative to the mean per-feature variance, as in scikit-learn.
    let tol_abs = params.tol * mean_variance(tx, tn, d);
    let mut labels = vec![0i64; tn];
    let mut dists = vec![0f32; tn];
    let mut inertia = Vec::new();
    let mut n_iter = 0;
    for _ in 0..params.max_iter {
        distance::assign(tx, tn, d, &centroids, k, d, &mut labels, &mut dists)?;
        inertia.push(chunked_sum(&dists));
        n_iter += 1;
        let new = update_centroids(tx, tn, d, k, &labels, &dists, &centroids);
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
    distance::assign(x, n, d, &centroids, k, d, &mut all_labels, &mut all_dists)?;
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

fn mean_variance(x: &[f32], n: usize, d: usize) -> f64 {
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for i in 0..n {
        for j in 0..d {
            let v = x[i * d + j] as f64;
            mean[j] += v;
            sq[j] += v * v;
        }
    }
    let nn = n as f64;
    (0..d).map(|j| sq[j] / nn - (mean[j] / nn).powi(2)).sum::<f64>() / d as f64
}

/// New centroids as means of their members; empty clusters take the farthest points.
fn update_centroids(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    labels: &[i64],
    dists: &[f32],
    old: &[f32],
) -> Vec<f32> {
    let partial: Vec<(Vec<f64>, Vec<u64>)> = (0..n.div_ceil(ROW_CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0u64; k];
            for i in c * ROW_CHUNK..((c + 1) * ROW_CHUNK).min(n) {
                let l = labels[i] as usize;
                counts[l] += 1;
                for j in 0..d {
                    sums[l * d + j] += x[i * d + j] as f64;
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    for (s, c) in partial {
        for (a, b) in sums.iter_mut().zip(s) {
            *a += b;
        }
        for (a, b) in counts.iter_mut().zip(c) {
            *a += b;
        }
    }
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    if !empty.is_empty() {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
        let mut next = order.into_iter();
        for &e in &empty {
            for i in next.by_ref() {
                let l = labels[i] as usize;
                if counts[l] > 1 {
                    counts[l] -= 1;
                    for j in 0..d {
                        sums[l * d + j] -= x[i * d + j] as f64;
                    }
                    counts[e] = 1;
                    for j in 0..d {
                        sums[e * d + j] = x[i * d + j] as f64;
                    }
                    break;
                }
            }
        }
    }
    let mut out = vec![0f32; k * d];
    for c in 0..k {
        for j in 0..d {
            out[c * d + j] = if counts[c] > 0 {
                (sums[c * d + j] / counts[c] as f64) as f32
            } else {
                old[c * d + j]
            };
        }
    }
    out
}
