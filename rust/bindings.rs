//! The `#[pyfunction]`s: numpy in, numpy out, the GIL released, a sized thread pool.
//!
//! No maths here. Python (`ecos_fast._validation`) has already checked dtypes,
//! C order, finiteness and shapes; this layer re-checks the cheap invariants
//! through the kernels' own `KernelError`s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::{KernelError, KernelResult};
use crate::invalid;
// `nearest`: the assignment kernel (`kernels::assign`), renamed here because the
// `assign` binding below takes that name.
use crate::kernels::control::{Control, NEVER};
use crate::kernels::{assign as nearest, finite, kcenter, kmeans as km, neighbourhood, simd};
// The bf16 first pass and the precision choice of `assign` (`kernels::assign_bf16`).
use crate::kernels::assign_bf16 as nearest_bf16;

/// Largest pool built, as a multiple of the CPUs this process may use
/// (`std::thread::available_parallelism`). Python caps `n_threads` at the same
/// multiple with a warning (`ecos_fast._threads`); this is the backstop for direct
/// `_core` calls. Results do not depend on the thread count, so capping only
/// changes the speed: `n_threads=99999` once spawned ~12,900 OS threads.
pub const MAX_THREADS_PER_CPU: usize = 4;

/// Pools kept alive at once; the least recently used one is dropped (its workers
/// exit once their current jobs are done). A program that alternates between a few
/// thread counts keeps them all; one that tries hundreds does not keep hundreds.
const MAX_POOLS: usize = 4;

/// The most threads one pool gets: [`MAX_THREADS_PER_CPU`] per available CPU.
pub fn max_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .saturating_mul(MAX_THREADS_PER_CPU)
}

/// Thread pools cached per size (least recently used first), and the process that
/// built them.
///
/// A pool's worker threads do not survive `fork` (torch DataLoader workers,
/// multiprocessing): the cache is keyed by pid so a child builds its own.
struct PoolCache {
    pid: u32,
    pools: Vec<(usize, Arc<rayon::ThreadPool>)>,
}

fn pool(n_threads: usize) -> KernelResult<Arc<rayon::ThreadPool>> {
    static CACHE: OnceLock<Mutex<PoolCache>> = OnceLock::new();
    if n_threads == 0 {
        return Err(invalid!("n_threads={n_threads} must be >= 1"));
    }
    let n_threads = n_threads.min(max_threads());
    let cache = CACHE.get_or_init(|| {
        Mutex::new(PoolCache {
            pid: std::process::id(),
            pools: Vec::new(),
        })
    });
    let mut guard = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if guard.pid != pid {
        // After fork: the parent's workers do not exist here. Forget (leak) the
        // parent's pools rather than joining threads that will never answer.
        let stale = std::mem::take(&mut guard.pools);
        std::mem::forget(stale);
        guard.pid = pid;
    }
    if let Some(at) = guard.pools.iter().position(|(n, _)| *n == n_threads) {
        // Most recently used goes last.
        let hit = guard.pools.remove(at);
        let p = Arc::clone(&hit.1);
        guard.pools.push(hit);
        return Ok(p);
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .thread_name(|i| format!("ecos-fast-{i}"))
        .build()
        .map_err(|e| KernelError::ThreadPool(e.to_string()))?;
    let p = Arc::new(p);
    if guard.pools.len() >= MAX_POOLS {
        // A caller still running on the evicted pool holds its own `Arc`; the pool
        // shuts down when the last one is dropped.
        guard.pools.remove(0);
    }
    guard.pools.push((n_threads, Arc::clone(&p)));
    Ok(p)
}

/// Below this many multiply-adds a call runs on the calling thread: a hand-off to the
/// pool and back costs tens of microseconds (two futex wake-ups on a VM), more than
/// such a call computes. Results do not depend on the thread count, so this only
/// changes where the work runs.
const SMALL_WORK: u64 = 1 << 23;

thread_local! {
    /// A one-worker pool whose worker is this thread itself (`use_current_thread`):
    /// `install` runs the closure inline, and the kernels' parallel iterators stay on
    /// this thread. `None` if the thread already belongs to another rayon pool.
    static INLINE: Option<rayon::ThreadPool> = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build()
        .ok();
}

/// Run `f` with the GIL released: on a pool of `n_threads` workers, or on the calling
/// thread when one thread is asked for or the call is small (`work` multiply-adds
/// below [`SMALL_WORK`]).
///
/// The one helper every long call goes through (polars' `enter_polars` idea).
fn run_detached<T, F>(py: Python<'_>, n_threads: usize, work: u64, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> KernelResult<T> + Send,
{
    if n_threads == 0 {
        return Err(invalid!("n_threads={n_threads} must be >= 1").into());
    }
    // An unknown `ECOS_FAST_SIMD` is an error before any kernel runs.
    simd::checked()?;
    if n_threads == 1 || work < SMALL_WORK {
        let inline = py.detach(|| {
            INLINE.with(|p| match p {
                Some(p) => Ok(p.install(f)),
                None => Err(f),
            })
        });
        return match inline {
            Ok(out) => Ok(out?),
            Err(f) => {
                let p = pool(1)?;
                Ok(py.detach(|| p.install(f))?)
            }
        };
    }
    let p = pool(n_threads)?;
    let out = py.detach(|| p.install(f))?;
    Ok(out)
}

/// How often the waiting thread wakes up to run Python's signal handlers (Ctrl-C)
/// and the progress callback while a controlled kernel runs.
const POLL: std::time::Duration = std::time::Duration::from_millis(40);

/// Below this many multiply-adds (tens of milliseconds) a kernel without a progress
/// callback runs on the plain path: Ctrl-C then waits for it to return, which is
/// sooner than the poll would matter, and the helper thread's start (tens of
/// microseconds) stays far below 1 % of any call that takes it.
const CONTROLLED_WORK: u64 = SMALL_WORK << 6;

/// Marks the kernel finished and wakes the waiting thread, also on a panic.
struct Finish<'a>(&'a Control, std::thread::Thread);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.set_finished();
        self.1.unpark();
    }
}

/// [`run_detached`] for a kernel that can be interrupted and reports progress.
///
/// The kernel runs on the pool (from a scoped helper thread) while this thread, the
/// GIL released, wakes every [`POLL`] to run Python's signal handlers
/// (`PyErr_CheckSignals`: Ctrl-C raises `KeyboardInterrupt` here) and to call
/// `progress(done)` when the kernel's step count (`Control::step`) has moved. Either
/// raising cancels the kernel, which stops at its next check (one row block); the
/// Python error is then raised. Calls below [`CONTROLLED_WORK`] without a callback
/// take the plain path. The kernel and its result are the same on both paths.
fn run_controlled<T, F>(
    py: Python<'_>,
    n_threads: usize,
    work: u64,
    progress: Option<&Bound<'_, PyAny>>,
    f: F,
) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&Control) -> KernelResult<T> + Send,
{
    if progress.is_none() && work < CONTROLLED_WORK {
        return run_detached(py, n_threads, work, || f(&NEVER));
    }
    if n_threads == 0 {
        return Err(invalid!("n_threads={n_threads} must be >= 1").into());
    }
    simd::checked()?;
    // One thread: the helper thread itself runs the kernel (as `run_detached` runs it
    // on the calling thread), so no pool worker is started.
    let p = if n_threads == 1 {
        None
    } else {
        Some(pool(n_threads)?)
    };
    let ctl = Control::new();
    let waiter = std::thread::current();
    let mut pending: Option<PyErr> = None;
    let mut reported = 0usize;
    let mut report = |pending: &mut Option<PyErr>| {
        if pending.is_some() {
            return;
        }
        if let Err(e) = py.check_signals() {
            *pending = Some(e);
        } else if let Some(cb) = progress {
            let done = ctl.done();
            if done != reported {
                reported = done;
                if let Err(e) = cb.call1((done,)) {
                    *pending = Some(e);
                }
            }
        }
        if pending.is_some() {
            ctl.cancel();
        }
    };
    let out = std::thread::scope(|s| {
        let ctl = &ctl;
        let handle = s.spawn(move || {
            let _finish = Finish(ctl, waiter);
            match p {
                Some(p) => p.install(|| f(ctl)),
                None => INLINE.with(|inline| match inline {
                    Some(inline) => inline.install(|| f(ctl)),
                    None => pool(1).and_then(|p| p.install(|| f(ctl))),
                }),
            }
        });
        while !ctl.is_finished() {
            py.detach(|| {
                let start = std::time::Instant::now();
                while !ctl.is_finished() {
                    let left = POLL.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::park_timeout(left);
                }
            });
            report(&mut pending);
        }
        match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    report(&mut pending);
    match pending {
        Some(e) => Err(e),
        None => Ok(out?),
    }
}

/// `a · b · c` multiply-adds, saturating (a work estimate for [`run_detached`]).
fn work(a: usize, b: usize, c: usize) -> u64 {
    (a as u64).saturating_mul(b as u64).saturating_mul(c as u64)
}

fn contiguous<'a, T: numpy::Element>(
    name: &str,
    a: &'a PyReadonlyArray2<'_, T>,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| invalid!("{name} must be C-contiguous").into())
}

fn contiguous1<'a, T: numpy::Element>(
    name: &str,
    a: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| invalid!("{name} must be C-contiguous").into())
}

/// Refuse a result whose distances overflowed float32 (finite features of huge
/// magnitude, e.g. 1e19: Python refuses them first, `_validation.feature_limit`).
/// O(len), next to the O(n·k·d) kernel that produced them.
fn finite_distances(what: &str, v: &[f32]) -> KernelResult<()> {
    match finite::first_non_finite(v) {
        None => Ok(()),
        Some(i) => Err(invalid!(
            "{what} {i} is {} in float32: the features' magnitudes are too large for \
             float32 distances; rescale them (e.g. standardize)",
            v[i]
        )),
    }
}

/// Nearest-centroid assignment: labels int64[n] and squared distances float32[n],
/// and with `bins=True` also the exact fixed-point bins of the squared distances
/// (int64[256], `kmeans::dist_bins`: the same code the Lloyd inertia uses, so a
/// sharded caller adds bins and gets the single-machine inertia bit for bit).
/// `precision`: `"auto"` (the bf16 first pass where it pays), `"float32"` or `"bf16"`;
/// the results are the same.
#[pyfunction]
#[pyo3(signature = (features, centroids, n_threads, bins=false, precision="auto"))]
fn assign<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    centroids: PyReadonlyArray2<'py, f32>,
    n_threads: usize,
    bins: bool,
    precision: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let (k, dc) = (centroids.shape()[0], centroids.shape()[1]);
    let x = contiguous("features", &features)?;
    let c = contiguous("centroids", &centroids)?;
    let precision = nearest_bf16::Precision::parse(precision)?;
    let (labels, dists, hist) = run_controlled(py, n_threads, work(n, k, d), None, |ctl| {
        let mut labels = vec![0i64; n];
        let mut dists = vec![0f32; n];
        nearest_bf16::assign_auto_ctl(x, n, d, c, k, dc, &mut labels, &mut dists, precision, ctl)?;
        finite_distances("squared distance", &dists)?;
        let hist = bins.then(|| km::dist_bins(&dists));
        Ok((labels, dists, hist))
    })?;
    let (labels, dists) = (
        PyArray1::from_vec(py, labels),
        PyArray1::from_vec(py, dists),
    );
    match hist {
        Some(h) => (labels, dists, PyArray1::from_vec(py, h)).into_pyobject(py),
        None => (labels, dists).into_pyobject(py),
    }
}

/// k-means (k-means++ seeding or given initial centroids, then Lloyd).
///
/// Returns (centroids float32[k, d], labels int64[n], inertia per iteration float64[t], n_iter).
#[pyfunction]
#[pyo3(signature = (features, n_clusters, max_iter, tol, seed, n_threads, init=None, n_local_trials=1, sample=None, progress=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn kmeans<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    n_clusters: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    n_threads: usize,
    init: Option<PyReadonlyArray2<'py, f32>>,
    n_local_trials: usize,
    sample: Option<PyReadonlyArray1<'py, i64>>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<(
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    usize,
)> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let x = contiguous("features", &features)?;
    let init_slice = match &init {
        Some(a) => {
            if a.shape() != [n_clusters, d] {
                return Err(invalid!(
                    "init has shape {:?}, expected ({n_clusters}, {d})",
                    a.shape()
                )
                .into());
            }
            Some(contiguous("init", a)?)
        }
        None => None,
    };
    let sample_slice = match &sample {
        Some(s) => Some(contiguous1("sample", s)?),
        None => None,
    };
    let params = km::KMeansParams {
        n_clusters,
        max_iter,
        tol,
        seed,
        n_local_trials,
    };
    let iters = max_iter.max(1);
    let res = run_controlled(
        py,
        n_threads,
        work(n, n_clusters, d).saturating_mul(iters as u64),
        progress.as_ref(),
        |ctl| km::kmeans(x, n, d, &params, init_slice, sample_slice, ctl),
    )?;
    let centroids = numpy::ndarray::Array2::from_shape_vec((n_clusters, d), res.centroids)
        .map_err(|e| PyErr::from(invalid!("internal shape error: {e}")))?;
    Ok((
        PyArray2::from_owned_array(py, centroids),
        PyArray1::from_vec(py, res.labels),
        PyArray1::from_vec(py, res.inertia),
        res.n_iter,
    ))
}

fn to_array2<T: numpy::Element>(
    v: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<numpy::ndarray::Array2<T>> {
    numpy::ndarray::Array2::from_shape_vec((rows, cols), v)
        .map_err(|e| PyErr::from(invalid!("internal shape error: {e}")))
}

/// k-means++ seeding alone: centroids float32[k, d] (the first step of [`kmeans`]).
#[pyfunction]
#[pyo3(signature = (features, n_clusters, seed, n_threads, n_local_trials=1))]
fn kmeans_plusplus<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    n_clusters: usize,
    seed: u64,
    n_threads: usize,
    n_local_trials: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let x = contiguous("features", &features)?;
    let c = run_detached(py, n_threads, work(n, n_clusters, d), || {
        km::kmeans_plusplus(x, n, d, n_clusters, seed, n_local_trials)
    })?;
    Ok(PyArray2::from_owned_array(py, to_array2(c, n_clusters, d)?))
}

/// Largest |value| of each feature: float32[d] (reduce shards with a max).
#[pyfunction]
#[pyo3(signature = (features, n_threads))]
fn kmeans_max_abs<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    n_threads: usize,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let d = features.shape()[1];
    let x = contiguous("features", &features)?;
    let m = run_detached(py, n_threads, work(x.len(), 1, 1), || Ok(km::max_abs(x, d)))?;
    Ok(PyArray1::from_vec(py, m))
}

/// Per-feature fixed-point scales float64[d] for `n_total` rows with these max |values|.
#[pyfunction]
#[pyo3(signature = (max_abs, n_total))]
fn kmeans_scales<'py>(
    py: Python<'py>,
    max_abs: PyReadonlyArray1<'py, f32>,
    n_total: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let m = contiguous1("max_abs", &max_abs)?;
    Ok(PyArray1::from_vec(py, km::quant_scales(m, n_total)))
}

/// Fixed-point moments: (Σq int64[d], Σq² high words int64[d], Σq² low words uint64[d]).
#[pyfunction]
#[pyo3(signature = (features, scales, n_threads))]
#[allow(clippy::type_complexity)]
fn kmeans_moments<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    scales: PyReadonlyArray1<'py, f64>,
    n_threads: usize,
) -> PyResult<(
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u64>>,
)> {
    let d = features.shape()[1];
    let x = contiguous("features", &features)?;
    let sc = contiguous1("scales", &scales)?;
    if sc.len() != d {
        return Err(invalid!("scales has {} entries but n_features={d}", sc.len()).into());
    }
    let (s, s2) = run_detached(py, n_threads, work(x.len(), 1, 1), || {
        Ok(km::moments(x, d, sc))
    })?;
    let hi: Vec<i64> = s2.iter().map(|&v| (v >> 64) as i64).collect();
    let lo: Vec<u64> = s2.iter().map(|&v| v as u64).collect();
    Ok((
        PyArray1::from_vec(py, s),
        PyArray1::from_vec(py, hi),
        PyArray1::from_vec(py, lo),
    ))
}

/// Mean per-feature variance from summed [`kmeans_moments`] of `n_total` rows.
#[pyfunction]
#[pyo3(signature = (sum_q, sum_q2_hi, sum_q2_lo, n_total, scales))]
fn kmeans_mean_variance(
    sum_q: PyReadonlyArray1<'_, i64>,
    sum_q2_hi: PyReadonlyArray1<'_, i64>,
    sum_q2_lo: PyReadonlyArray1<'_, u64>,
    n_total: u64,
    scales: PyReadonlyArray1<'_, f64>,
) -> PyResult<f64> {
    let s = contiguous1("sum_q", &sum_q)?;
    let hi = contiguous1("sum_q2_hi", &sum_q2_hi)?;
    let lo = contiguous1("sum_q2_lo", &sum_q2_lo)?;
    let sc = contiguous1("scales", &scales)?;
    if s.len() != sc.len() || hi.len() != sc.len() || lo.len() != sc.len() {
        return Err(invalid!("moments and scales differ in length").into());
    }
    let s2: Vec<i128> = hi
        .iter()
        .zip(lo)
        .map(|(&h, &l)| ((h as i128) << 64) | l as i128)
        .collect();
    Ok(km::mean_variance(s, &s2, n_total, sc))
}

/// (fixed-point sums int64[k, d], counts int64[k], inertia exponent bins int64[256]).
type PartialArrays<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

/// [`km::partial`] of `features` against `centroids`, with the labels and
/// squared distances of its assignment.
fn partial_of(
    py: Python<'_>,
    features: &PyReadonlyArray2<'_, f32>,
    centroids: &PyReadonlyArray2<'_, f32>,
    scales: &PyReadonlyArray1<'_, f64>,
    n_threads: usize,
) -> PyResult<(km::Partial, Vec<i64>, Vec<f32>)> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let (k, dc) = (centroids.shape()[0], centroids.shape()[1]);
    let x = contiguous("features", features)?;
    let c = contiguous("centroids", centroids)?;
    let sc = contiguous1("scales", scales)?;
    if dc != d || sc.len() != d {
        return Err(invalid!(
            "features have n_features={d}, centroids {dc}, scales {}",
            sc.len()
        )
        .into());
    }
    run_detached(py, n_threads, work(n, k, d), || {
        let packed = nearest::Packed::new(c, k, d)?;
        let (mut lab, mut dis) = (vec![0i64; n], vec![0f32; n]);
        let p = km::partial(x, d, &packed, sc, &mut lab, &mut dis);
        Ok((p, lab, dis))
    })
}

fn partial_arrays<'py>(py: Python<'py>, p: km::Partial, d: usize) -> PyResult<PartialArrays<'py>> {
    let k = p.counts.len();
    Ok((
        PyArray2::from_owned_array(py, to_array2(p.sums, k, d)?),
        PyArray1::from_vec(py, p.counts),
        PyArray1::from_vec(py, p.bins),
    ))
}

/// One shard's Lloyd contribution: (fixed-point sums int64[k, d], counts int64[k],
/// inertia exponent bins int64[256]).
#[pyfunction]
#[pyo3(signature = (features, centroids, scales, n_threads))]
fn kmeans_partial<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    centroids: PyReadonlyArray2<'py, f32>,
    scales: PyReadonlyArray1<'py, f64>,
    n_threads: usize,
) -> PyResult<PartialArrays<'py>> {
    let (p, _, _) = partial_of(py, &features, &centroids, &scales, n_threads)?;
    partial_arrays(py, p, features.shape()[1])
}

/// [`kmeans_partial`] and the assignment it made: (sums, counts, bins, labels
/// int64[n], squared distances float32[n]), for a driver that keeps the
/// distances to relocate empty clusters ([`kmeans_relocation_order`]).
#[pyfunction]
#[pyo3(signature = (features, centroids, scales, n_threads))]
#[allow(clippy::type_complexity)]
fn kmeans_partial_labelled<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    centroids: PyReadonlyArray2<'py, f32>,
    scales: PyReadonlyArray1<'py, f64>,
    n_threads: usize,
) -> PyResult<(
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
)> {
    let (p, lab, dis) = partial_of(py, &features, &centroids, &scales, n_threads)?;
    let (s, c, b) = partial_arrays(py, p, features.shape()[1])?;
    Ok((
        s,
        c,
        b,
        PyArray1::from_vec(py, lab),
        PyArray1::from_vec(py, dis),
    ))
}

/// The `min(m, n)` rows with the largest squared distances `dists` (float32[n])
/// in relocation order (distance descending, then row): int64[m], the rows whose
/// (dist, row, label, features) [`kmeans_update`] takes as candidates.
#[pyfunction]
#[pyo3(signature = (dists, m))]
fn kmeans_relocation_order<'py>(
    py: Python<'py>,
    dists: PyReadonlyArray1<'py, f32>,
    m: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let v = contiguous1("dists", &dists)?;
    let order = py.detach(|| km::relocation_order(v, m));
    Ok(PyArray1::from_vec(
        py,
        order.into_iter().map(|i| i as i64).collect(),
    ))
}

/// (labels int64[n], squared distances float32[n], re-check counts).
type Bf16StatsArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    HashMap<&'static str, u64>,
);

/// The bf16 first pass of `assign` (forced), with what it re-checked in float32:
/// labels int64[n], squared distances float32[n], and the counts `rows`,
/// `rows_rechecked` (two or more candidates), `centroids_rechecked` (summed over
/// those rows), `rows_full` (overflowed bounds: every centroid re-checked) and
/// `panels_rechecked` (the 32- or 16-centroid panels holding their candidates) and
/// `halves_rechecked` (the 16-centroid halves of those computed in float32).
/// `first_pass`: the engine of the bf16 dot products, `"amx"` (AMX tiles) or
/// `"avx512bf16"` (`vdpbf16ps`); `None` takes the one `precision="bf16"` uses
/// (`build_info()["bf16_pass"]`). An error where that engine cannot run here.
#[pyfunction]
#[pyo3(signature = (features, centroids, n_threads, first_pass=None))]
fn assign_bf16_stats<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    centroids: PyReadonlyArray2<'py, f32>,
    n_threads: usize,
    first_pass: Option<&str>,
) -> PyResult<Bf16StatsArrays<'py>> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let (k, dc) = (centroids.shape()[0], centroids.shape()[1]);
    let x = contiguous("features", &features)?;
    let c = contiguous("centroids", &centroids)?;
    let pass = match first_pass {
        None => None,
        Some(name) => Some(simd::FirstPass::parse(name).ok_or_else(|| {
            invalid!("first_pass={name:?} is not one of \"amx\", \"avx512bf16\"")
        })?),
    };
    let (labels, dists, st) = run_controlled(py, n_threads, work(n, k, d), None, |ctl| {
        let mut labels = vec![0i64; n];
        let mut dists = vec![0f32; n];
        let st =
            nearest_bf16::assign_ctl_for(x, n, d, c, k, dc, &mut labels, &mut dists, pass, ctl)?;
        finite_distances("squared distance", &dists)?;
        Ok((labels, dists, st))
    })?;
    let stats = HashMap::from([
        ("rows", st.rows),
        ("rows_rechecked", st.rows_rechecked),
        ("centroids_rechecked", st.centroids_rechecked),
        ("rows_full", st.rows_full),
        ("panels_rechecked", st.panels_rechecked),
        ("halves_rechecked", st.halves_rechecked),
    ]);
    Ok((
        PyArray1::from_vec(py, labels),
        PyArray1::from_vec(py, dists),
        stats,
    ))
}

/// (centroids float32[k, d], shift, inertia, counts int64[k], moved rows int64[r, 3]).
type UpdateArrays<'py> = (
    Bound<'py, PyArray2<f32>>,
    f64,
    f64,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray2<i64>>,
);

/// The driver's Lloyd update from summed partials (and, when a cluster is
/// empty, every shard's candidates concatenated). Moved rows: (row, from, to).
#[pyfunction]
#[pyo3(signature = (sums, counts, bins, old, scales, cand=None))]
#[allow(clippy::type_complexity)]
fn kmeans_update<'py>(
    py: Python<'py>,
    sums: PyReadonlyArray2<'py, i64>,
    counts: PyReadonlyArray1<'py, i64>,
    bins: PyReadonlyArray1<'py, i64>,
    old: PyReadonlyArray2<'py, f32>,
    scales: PyReadonlyArray1<'py, f64>,
    cand: Option<(
        PyReadonlyArray1<'py, f32>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray2<'py, f32>,
    )>,
) -> PyResult<UpdateArrays<'py>> {
    let (k, d) = (old.shape()[0], old.shape()[1]);
    let p = km::Partial {
        sums: contiguous("sums", &sums)?.to_vec(),
        counts: contiguous1("counts", &counts)?.to_vec(),
        bins: contiguous1("bins", &bins)?.to_vec(),
    };
    let cands = match &cand {
        Some((dist, index, label, rows)) => Some(km::Candidates {
            dist: contiguous1("cand dist", dist)?.to_vec(),
            index: contiguous1("cand index", index)?.to_vec(),
            label: contiguous1("cand label", label)?.to_vec(),
            rows: contiguous("cand rows", rows)?.to_vec(),
        }),
        None => None,
    };
    let o = contiguous("old", &old)?;
    let sc = contiguous1("scales", &scales)?;
    let u = km::update(p, cands.as_ref(), o, sc)?;
    let moved: Vec<i64> = u
        .moves
        .iter()
        .flat_map(|&(i, a, b)| [i, a as i64, b as i64])
        .collect();
    let r = u.moves.len();
    Ok((
        PyArray2::from_owned_array(py, to_array2(u.centroids, k, d)?),
        u.shift,
        u.inertia,
        PyArray1::from_vec(py, u.counts),
        PyArray2::from_owned_array(py, to_array2(moved, r, 3)?),
    ))
}

/// Greedy K-Center (farthest-first traversal), exact, ties to the lowest index.
///
/// `rows` (optional) restricts the run to those pool rows; `initial` are rows
/// already selected (they count as centers and are never returned). When both
/// `initial` is empty and `first` is None, the first pick is the lowest candidate
/// row. `prune=False` runs the same code without triangle-inequality skips (brute
/// force, bit-identical results; for tests and benchmarks). Returns (selected rows
/// int64[budget], radius after each pick float32[budget]).
#[pyfunction]
#[pyo3(signature = (features, budget, n_threads, first=None, initial=None, rows=None, prune=true, progress=None))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn kcenter_greedy<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    budget: usize,
    n_threads: usize,
    first: Option<i64>,
    initial: Option<PyReadonlyArray1<'py, i64>>,
    rows: Option<PyReadonlyArray1<'py, i64>>,
    prune: bool,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>)> {
    let (sel, radii, _) = kcenter_run(
        py,
        features,
        budget,
        n_threads,
        first,
        initial,
        rows,
        prune,
        progress.as_ref(),
    )?;
    Ok((sel, radii))
}

/// [`kcenter_greedy`] that also returns its distance counters:
/// {"distance_evals": point–center distances started, "brute_force_evals": what brute
/// force computes, "coords_read": coordinates those distances read, "moved": points
/// that changed center, "rows_read": candidate refreshes that read the row, "rounds":
/// refresh rounds}, plus the per-phase wall times `ns_*` in a build with the `profile`
/// cargo feature. For benchmarks.
#[pyfunction]
#[pyo3(signature = (features, budget, n_threads, first=None, initial=None, rows=None, prune=true))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn kcenter_greedy_stats<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    budget: usize,
    n_threads: usize,
    first: Option<i64>,
    initial: Option<PyReadonlyArray1<'py, i64>>,
    rows: Option<PyReadonlyArray1<'py, i64>>,
    prune: bool,
) -> PyResult<(
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    HashMap<&'static str, u64>,
)> {
    let (sel, radii, stats) = kcenter_run(
        py, features, budget, n_threads, first, initial, rows, prune, None,
    )?;
    let mut out: HashMap<&'static str, u64> = [
        ("distance_evals", stats.distance_evals),
        ("brute_force_evals", stats.brute_force_evals),
        ("coords_read", stats.coords_read),
        ("moved", stats.moved),
        ("rows_read", stats.rows_read),
        ("rounds", stats.rounds),
    ]
    .into_iter()
    .collect();
    // The phase timers exist only in a `profile` build (see Cargo.toml).
    if cfg!(feature = "profile") {
        out.extend([
            ("ns_scan", stats.ns_scan),
            ("ns_refresh", stats.ns_refresh),
            ("ns_apply", stats.ns_apply),
            ("ns_merge", stats.ns_merge),
            ("ns_add", stats.ns_add),
            ("ns_total", stats.ns_total),
        ]);
    }
    Ok((sel, radii, out))
}

#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn kcenter_run<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    budget: usize,
    n_threads: usize,
    first: Option<i64>,
    initial: Option<PyReadonlyArray1<'py, i64>>,
    rows: Option<PyReadonlyArray1<'py, i64>>,
    prune: bool,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<(
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    kcenter::Stats,
)> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let x = contiguous("features", &features)?;
    let initial_slice = match &initial {
        Some(a) => contiguous1("initial", a)?,
        None => &[],
    };
    let rows_slice = match &rows {
        Some(a) => Some(contiguous1("rows", a)?),
        None => None,
    };
    let (sel, radii, stats) = run_controlled(py, n_threads, work(n, d, budget), progress, |ctl| {
        let out = kcenter::greedy_with(
            x,
            n,
            d,
            budget,
            first,
            initial_slice,
            rows_slice,
            prune,
            ctl,
        )?;
        finite_distances("covering radius", &out.1)?;
        Ok(out)
    })?;
    Ok((
        PyArray1::from_vec(py, sel),
        PyArray1::from_vec(py, radii),
        stats,
    ))
}

/// K-Center inside many clusters at once, the clusters in parallel.
///
/// Cluster `c` holds rows `members[indptr[c]..indptr[c+1]]` and gets
/// `quotas[c]` picks starting from row `first[c]` (-1: its lowest member row).
/// Returns the picks of all clusters concatenated in cluster order, each
/// cluster's in pick order.
///
/// Interruptible (Ctrl-C, or `progress` raising) through [`run_controlled`]: checked
/// before each cluster and after each pick; `progress(picks)` gets the picks of all
/// clusters so far. The picks are the same with or without it.
#[pyfunction]
#[pyo3(signature = (features, indptr, members, quotas, first, n_threads, progress=None))]
#[allow(clippy::too_many_arguments)]
fn kcenter_clusters<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    indptr: PyReadonlyArray1<'py, i64>,
    members: PyReadonlyArray1<'py, i64>,
    quotas: PyReadonlyArray1<'py, i64>,
    first: PyReadonlyArray1<'py, i64>,
    n_threads: usize,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let x = contiguous("features", &features)?;
    let indptr = contiguous1("indptr", &indptr)?;
    let members = contiguous1("members", &members)?;
    let quotas = contiguous1("quotas", &quotas)?;
    let first = contiguous1("first", &first)?;
    let most = quotas.iter().copied().max().unwrap_or(0).max(0) as usize;
    let work = work(members.len(), d, most);
    let sel = run_controlled(py, n_threads, work, progress.as_ref(), |ctl| {
        kcenter::per_cluster(x, n, d, indptr, members, quotas, first, ctl)
    })?;
    Ok(PyArray1::from_vec(py, sel))
}

/// (indptr int64[R+1], members int64[...]): rows grouped by cluster.
type Csr<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// Per cluster, the `min(counts[k], size_k)` members with the smallest
/// `(sq_dist[row], row)`, in that order (the neighbourhood rule's candidate sets).
///
/// Cluster `k` holds rows `members[indptr[k]..indptr[k+1]]` (strictly increasing).
/// Returns (out_indptr int64[R+1], out_members int64[...]) in the same layout; the
/// clusters run in parallel and the result does not depend on `n_threads`.
/// Interruptible like [`kcenter_clusters`] (checked before each cluster;
/// `progress(clusters done)`), with the same result either way.
#[pyfunction]
#[pyo3(signature = (sq_dist, indptr, members, counts, n_threads, progress=None))]
fn nearest_in_clusters<'py>(
    py: Python<'py>,
    sq_dist: PyReadonlyArray1<'py, f32>,
    indptr: PyReadonlyArray1<'py, i64>,
    members: PyReadonlyArray1<'py, i64>,
    counts: PyReadonlyArray1<'py, i64>,
    n_threads: usize,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Csr<'py>> {
    let sq_dist = contiguous1("sq_dist", &sq_dist)?;
    let indptr = contiguous1("indptr", &indptr)?;
    let members = contiguous1("members", &members)?;
    let counts = contiguous1("counts", &counts)?;
    // A sort costs far more than a multiply-add per element: weight it so that only
    // calls of some 30k members and more wake the pool.
    let work = work(members.len(), 256, 1);
    let (out_indptr, out) = run_controlled(py, n_threads, work, progress.as_ref(), |ctl| {
        neighbourhood::nearest_in_clusters(sq_dist, indptr, members, counts, ctl)
    })?;
    Ok((
        PyArray1::from_vec(py, out_indptr),
        PyArray1::from_vec(py, out),
    ))
}

/// Flat index of the first NaN or ±inf of a float32 array of any shape, or `None`
/// (the lowest such index, whatever the thread count); with `max_abs`, also of the
/// first finite value with `|v| > max_abs` (one pass for both checks).
#[pyfunction]
#[pyo3(signature = (values, n_threads, max_abs=None))]
fn first_non_finite(
    py: Python<'_>,
    values: numpy::PyReadonlyArrayDyn<'_, f32>,
    n_threads: usize,
    max_abs: Option<f32>,
) -> PyResult<Option<usize>> {
    let v = values
        .as_slice()
        .map_err(|_| PyErr::from(invalid!("values must be C-contiguous")))?;
    if let Some(m) = max_abs {
        if m.is_nan() || m < 0.0 {
            return Err(invalid!("max_abs={m} must be a number >= 0").into());
        }
    }
    run_detached(py, n_threads, work(v.len(), 1, 1), || {
        Ok(match max_abs {
            Some(m) => finite::first_beyond(v, m),
            None => finite::first_non_finite(v),
        })
    })
}

/// Raise the Python exception that `KernelError` variant `kind` ("invalid_argument",
/// "config", "thread_pool") maps to, with `message`: how tests check the one
/// mapping (`errors.rs`) for every variant, including those hard to provoke.
#[pyfunction]
fn _raise_kernel_error(kind: &str, message: &str) -> PyResult<()> {
    let err = match kind {
        "invalid_argument" => KernelError::InvalidArgument(message.to_string()),
        "config" => KernelError::Config(message.to_string()),
        "thread_pool" => KernelError::ThreadPool(message.to_string()),
        "interrupted" => KernelError::Interrupted,
        other => return Err(invalid!("unknown KernelError kind {other:?}").into()),
    };
    Err(err.into())
}

/// Build facts for `ecos-fast info`: profile, SIMD paths the CPU offers, rayon default threads.
#[pyfunction]
fn build_info() -> PyResult<HashMap<&'static str, String>> {
    let path = simd::checked()?;
    let mut info = HashMap::new();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    info.insert("profile", profile.to_string());
    info.insert("version", env!("CARGO_PKG_VERSION").to_string());
    // One detector for every kernel: both keys name the same path (kept for readers
    // of older reports).
    info.insert("simd", path.name().to_string());
    info.insert("kcenter_simd", path.name().to_string());
    // `assign` on large problems: the bf16 first pass's engine ("amx" or
    // "avx512bf16") where the automatic choice takes it (calibrated, or forced by
    // ECOS_FAST_SIMD), else the float32 path.
    info.insert("assign_path", simd::assign_path_name().to_string());
    // The engine `precision="bf16"` runs ("none" where neither may).
    let pass = simd::bf16_pass().map_or("none", |p| p.name());
    info.insert("bf16_pass", pass.to_string());
    let amx = match simd::amx_status() {
        Ok(()) => "usable".to_string(),
        Err(why) => format!("not usable: {why}"),
    };
    info.insert("amx", amx);
    let cal = match simd::bf16_calibration() {
        Some(c) => {
            let amx = c
                .amx_gmadds
                .map_or(String::new(), |r| format!("tdpbf16ps (AMX) {r:.1}, "));
            format!(
                "{amx}vdpbf16ps {:.1} vs vfmadd231ps {:.1} G multiply-adds/s (1 thread): {}",
                c.bf16_gmadds,
                c.f32_gmadds,
                if c.pays() { "pays" } else { "does not pay" }
            )
        }
        None => "no AVX512_BF16".to_string(),
    };
    info.insert("bf16_calibration", cal);
    info.insert("target_arch", std::env::consts::ARCH.to_string());
    let timers = if cfg!(feature = "profile") {
        "on"
    } else {
        "off"
    };
    info.insert("kcenter_timers", timers.to_string());
    info.insert("max_threads", max_threads().to_string());
    info.insert(
        "available_parallelism",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
    );
    Ok(info)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The one version: Cargo.toml's (maturin gives it to the wheel, pyproject.toml
    // declares it dynamic, `ecos_fast.__version__` re-exports this).
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(assign, m)?)?;
    m.add_function(wrap_pyfunction!(assign_bf16_stats, m)?)?;
    m.add_function(wrap_pyfunction!(first_non_finite, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_plusplus, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_max_abs, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_scales, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_moments, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_mean_variance, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_partial, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_partial_labelled, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_relocation_order, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_update, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter_greedy, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter_greedy_stats, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter_clusters, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_in_clusters, m)?)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(_raise_kernel_error, m)?)?;
    Ok(())
}
