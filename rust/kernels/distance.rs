//! Nearest-centroid assignment and squared Euclidean distances.
//!
//! FIRST VERSION (to be replaced by the blocked GEMM kernel): direct
//! differences, O(n·k·d), rows in fixed-size chunks so results do not depend
//! on the thread count.

use rayon::prelude::*;

use crate::errors::KernelResult;
use crate::invalid;

/// Rows handled by one task. Fixed, so results never depend on thread count.
pub const ROW_CHUNK: usize = 256;

/// Which SIMD path this process uses.
pub fn simd_path() -> &'static str {
    "scalar"
}

/// Squared Euclidean distance, summed in a fixed order.
#[inline]
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Label and squared distance of the nearest centroid for every row.
///
/// Ties go to the lowest centroid index.
#[allow(clippy::too_many_arguments)]
pub fn assign(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
) -> KernelResult<()> {
    if d != dc {
        return Err(invalid!("features have n_features={d} but centroids have n_features={dc}"));
    }
    if k == 0 {
        return Err(invalid!("n_clusters={k} must be >= 1"));
    }
    if x.len() != n * d || c.len() != k * d || labels.len() != n || dists.len() != n {
        return Err(invalid!("buffer sizes do not match n={n}, d={d}, k={k}"));
    }
    labels
        .par_chunks_mut(ROW_CHUNK)
        .zip(dists.par_chunks_mut(ROW_CHUNK))
        .enumerate()
        .for_each(|(chunk, (lab, dis))| {
            let start = chunk * ROW_CHUNK;
            for (r, (l, dd)) in lab.iter_mut().zip(dis.iter_mut()).enumerate() {
                let row = &x[(start + r) * d..(start + r + 1) * d];
                let mut best = f32::INFINITY;
                let mut arg = 0usize;
                for j in 0..k {
                    let dist = sq_dist(row, &c[j * d..(j + 1) * d]);
                    if dist < best {
                        best = dist;
                        arg = j;
                    }
                }
                *l = arg as i64;
                *dd = best;
            }
        });
    Ok(())
}
