//! The members nearest their centroid, per cluster: the candidate sets of the
//! neighbourhood rule (issue 12: "weighted neighbour sampling", then K-Center inside
//! the set to remove redundant samples).
//!
//! Algorithm. For cluster k (rows `members[indptr[k]..indptr[k+1]]`) keep the
//! `m = min(counts[k], size_k)` members with the smallest `(sq_dist[row], row)` pairs:
//! `select_nth_unstable_by` partitions them off in O(size_k), then only the kept part
//! is sorted, O(m log m). The output lists them in ascending `(sq_dist, row)` order,
//! so the first is the member nearest the centroid (ties to the lowest row).
//!
//! Complexity. O(Σ size_k + Σ m_k log m_k) time, O(Σ m_k) output plus the largest
//! cluster's `(distance, row)` pairs per worker.
//!
//! Determinism. The pairs are distinct (rows are), so the order is total and each
//! cluster's result is unique: any thread count gives the same output, bit for bit.
//! Clusters run in parallel (rayon) and are concatenated in cluster order.

use rayon::prelude::*;

use crate::errors::KernelResult;
use crate::invalid;
use crate::kernels::control::Control;

/// One cluster's kept members, validated against `n` rows of `sq_dist`.
fn nearest_one(sq_dist: &[f32], rows: &[i64], count: usize, k: usize) -> KernelResult<Vec<i64>> {
    let n = sq_dist.len();
    let mut pairs: Vec<(f32, i64)> = Vec::with_capacity(rows.len());
    let mut prev = -1i64;
    for &r in rows {
        if r < 0 || r as usize >= n {
            return Err(invalid!(
                "cluster {k} holds row {r} outside [0, n_samples={n})"
            ));
        }
        if r <= prev {
            return Err(invalid!(
                "cluster {k}'s members are not strictly increasing ({prev} then {r})"
            ));
        }
        prev = r;
        let v = sq_dist[r as usize];
        if v.is_nan() {
            return Err(invalid!("sq_dist[{r}] is NaN"));
        }
        // -0 and +0 are the same distance (`total_cmp` alone would order them).
        pairs.push((if v == 0.0 { 0.0 } else { v }, r));
    }
    let m = count.min(pairs.len());
    if m == 0 {
        return Ok(Vec::new());
    }
    // Without NaN (rejected above) `total_cmp` is the numeric order; rows break ties.
    let order = |a: &(f32, i64), b: &(f32, i64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if m < pairs.len() {
        pairs.select_nth_unstable_by(m - 1, order);
        pairs.truncate(m);
    }
    pairs.sort_unstable_by(order);
    Ok(pairs.into_iter().map(|(_, r)| r).collect())
}

/// For each cluster k, the `min(counts[k], size_k)` members nearest the centroid, in
/// ascending `(sq_dist[row], row)` order.
///
/// `indptr` (R + 1 entries, starting at 0, non-decreasing, ending at
/// `members.len()`) delimits each cluster's members (rows into `sq_dist`, strictly
/// increasing); `counts` (R entries) are `>= 0`. Returns `(out_indptr, out_members)`
/// in the same layout.
///
/// `ctl` is checked before each cluster and counts the clusters done; once cancelled
/// the call returns `Err(Interrupted)`. It never changes the result.
pub fn nearest_in_clusters(
    sq_dist: &[f32],
    indptr: &[i64],
    members: &[i64],
    counts: &[i64],
    ctl: &Control,
) -> KernelResult<(Vec<i64>, Vec<i64>)> {
    let r = counts.len();
    if indptr.len() != r + 1 {
        return Err(invalid!(
            "indptr has {} entries; {r} clusters (counts) need {}",
            indptr.len(),
            r + 1
        ));
    }
    if indptr[0] != 0 || indptr[r] != members.len() as i64 {
        return Err(invalid!(
            "indptr must start at 0 and end at len(members)={}, got {} and {}",
            members.len(),
            indptr[0],
            indptr[r]
        ));
    }
    if let Some(k) = (0..r).find(|&k| indptr[k + 1] < indptr[k]) {
        return Err(invalid!(
            "indptr decreases at cluster {k}: indptr[{k}]={} > indptr[{}]={}",
            indptr[k],
            k + 1,
            indptr[k + 1]
        ));
    }
    if let Some(k) = counts.iter().position(|&c| c < 0) {
        return Err(invalid!("counts[{k}]={} is negative", counts[k]));
    }
    let parts: Vec<KernelResult<Vec<i64>>> = (0..r)
        .into_par_iter()
        .map(|k| {
            // In range: indptr is non-decreasing from 0 to members.len().
            ctl.check()?;
            let rows = &members[indptr[k] as usize..indptr[k + 1] as usize];
            let out = nearest_one(sq_dist, rows, counts[k] as usize, k);
            ctl.step();
            out
        })
        .collect();
    // Once cancelled, report the interruption rather than an earlier cluster's error.
    ctl.check()?;
    let mut out_indptr = Vec::with_capacity(r + 1);
    out_indptr.push(0i64);
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
        out_indptr.push(out.len() as i64);
    }
    Ok((out_indptr, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::control::NEVER;

    /// The kernel with nobody watching (the cancellation has its own test).
    fn nearest_in_clusters(
        sq_dist: &[f32],
        indptr: &[i64],
        members: &[i64],
        counts: &[i64],
    ) -> KernelResult<(Vec<i64>, Vec<i64>)> {
        super::nearest_in_clusters(sq_dist, indptr, members, counts, &NEVER)
    }

    #[test]
    fn counts_clusters_and_stops_once_cancelled() {
        let d = [3.0, 1.0, 1.0, 0.0, 5.0, -0.0, 2.0];
        let (indptr, members) = ([0, 4, 4, 7], [0, 1, 2, 3, 4, 5, 6]);
        let ctl = Control::new();
        let out = super::nearest_in_clusters(&d, &indptr, &members, &[3, 2, 9], &ctl).unwrap();
        assert_eq!(
            out,
            nearest_in_clusters(&d, &indptr, &members, &[3, 2, 9]).unwrap()
        );
        assert_eq!(ctl.done(), 3);
        ctl.cancel();
        let out = super::nearest_in_clusters(&d, &indptr, &members, &[3, 2, 9], &ctl);
        assert_eq!(out, Err(crate::errors::KernelError::Interrupted));
    }

    #[test]
    fn keeps_the_nearest_in_order_with_ties_to_the_lowest_row() {
        let d = [3.0, 1.0, 1.0, 0.0, 5.0, -0.0, 2.0];
        let indptr = [0, 4, 4, 7];
        let members = [0, 1, 2, 3, 4, 5, 6];
        let (ip, out) = nearest_in_clusters(&d, &indptr, &members, &[3, 2, 9]).unwrap();
        assert_eq!(ip, vec![0, 3, 3, 6]);
        assert_eq!(out, vec![3, 1, 2, 5, 6, 4]);
        let (ip, out) = nearest_in_clusters(&d, &indptr, &members, &[0, 0, 1]).unwrap();
        assert_eq!((ip, out), (vec![0, 0, 0, 1], vec![5]));
    }

    #[test]
    fn invalid_inputs_are_errors_not_panics() {
        let d = [0.0f32; 4];
        let m = [0, 1, 2, 3];
        assert!(nearest_in_clusters(&d, &[0, 4], &m, &[1, 1]).is_err());
        assert!(nearest_in_clusters(&d, &[1, 4], &m, &[1]).is_err());
        assert!(nearest_in_clusters(&d, &[0, 3], &m, &[1]).is_err());
        assert!(nearest_in_clusters(&d, &[0, 3, 2, 4], &m, &[1, 1, 1]).is_err());
        assert!(nearest_in_clusters(&d, &[0, 4], &m, &[-1]).is_err());
        assert!(nearest_in_clusters(&d, &[0, 4], &[0, 1, 2, 9], &[1]).is_err());
        assert!(nearest_in_clusters(&d, &[0, 4], &[0, 2, 1, 3], &[1]).is_err());
        assert!(nearest_in_clusters(&[f32::NAN; 4], &[0, 4], &m, &[1]).is_err());
        assert!(nearest_in_clusters(&d, &[], &[], &[]).is_err());
        assert_eq!(
            nearest_in_clusters(&d, &[0], &[], &[]).unwrap(),
            (vec![0], vec![])
        );
    }
}
