//! Greedy K-Center (farthest-first traversal; Gonzalez 1985, Sener & Savarese 2018).
//!
//! FIRST VERSION (to be replaced by the pruned kernel): one running
//! min-distance vector, O(n) memory, one full distance pass per pick.
//! Ties go to the lowest row index, so the result is thread-count independent.

use rayon::prelude::*;

use super::distance::sq_dist;
use crate::errors::KernelResult;
use crate::invalid;

/// Farthest-first traversal over `rows` (all rows when `None`).
///
/// Returns the picked rows and the covering radius (Euclidean, not squared)
/// after each pick.
pub fn greedy(
    x: &[f32],
    n: usize,
    d: usize,
    budget: usize,
    first: Option<i64>,
    initial: &[i64],
    rows: Option<&[i64]>,
) -> KernelResult<(Vec<i64>, Vec<f32>)> {
    if x.len() != n * d {
        return Err(invalid!("features buffer does not match n={n}, d={d}"));
    }
    let cand: Vec<usize> = match rows {
        Some(r) => r
            .iter()
            .map(|&i| {
                if i < 0 || i as usize >= n {
                    Err(invalid!("rows holds index {i} outside [0, {n})"))
                } else {
                    Ok(i as usize)
                }
            })
            .collect::<KernelResult<_>>()?,
        None => (0..n).collect(),
    };
    for &i in initial {
        if i < 0 || i as usize >= n {
            return Err(invalid!("initial holds index {i} outside [0, {n})"));
        }
    }
    if budget > cand.len() {
        return Err(invalid!("budget={budget} exceeds the {} candidate rows", cand.len()));
    }
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut mind = vec![f32::INFINITY; cand.len()];
    let update = |mind: &mut [f32], center: usize| {
        let c = row(center);
        mind.par_iter_mut().zip(cand.par_iter()).for_each(|(m, &i)| {
            let dist = sq_dist(row(i), c);
            if dist < *m {
                *m = dist;
            }
        });
    };
    for &i in initial {
        update(&mut mind, i as usize);
    }
    let mut picked = vec![false; cand.len()];
    let mut sel = Vec::with_capacity(budget);
    let mut radii = Vec::with_capacity(budget);
    for step in 0..budget {
        let pos = if step == 0 && initial.is_empty() {
            match first {
                Some(f) => cand.iter().position(|&i| i as i64 == f).ok_or_else(|| {
                    invalid!("first={f} is not one of the candidate rows")
                })?,
                None => 0,
            }
        } else {
            argmax(&mind, &cand, &picked)
        };
        picked[pos] = true;
        sel.push(cand[pos] as i64);
        update(&mut mind, cand[pos]);
        let r = mind
            .iter()
            .zip(&picked)
            .filter(|(_, &p)| !p)
            .map(|(&m, _)| m)
            .fold(0f32, f32::max);
        radii.push(r.sqrt());
    }
    Ok((sel, radii))
}

/// Position of the unpicked candidate farthest from its center; ties to the lowest row.
fn argmax(mind: &[f32], cand: &[usize], picked: &[bool]) -> usize {
    let mut best = usize::MAX;
    for p in 0..mind.len() {
        if picked[p] {
            continue;
        }
        if best == usize::MAX
            || mind[p] > mind[best]
            || (mind[p] == mind[best] && cand[p] < cand[best])
        {
            best = p;
        }
    }
    best
}

/// Independent K-Center runs inside clusters, the clusters in parallel.
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
                return Err(invalid!("indptr[{c}..{}] = ({a}, {b}) is not a valid range", c + 1));
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
