//! The `#[pyfunction]`s: numpy in, numpy out, the GIL released, a sized thread pool.
//!
//! No maths here. Python (`ecos_fast._validation`) has already checked dtypes,
//! C order, finiteness and shapes; this layer re-checks the cheap invariants
//! through the kernels' own `KernelError`s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{KernelError, KernelResult};
use crate::invalid;
use crate::kernels::{distance, kcenter, kmeans as km};

/// Thread pools cached per size, and the process that built them.
///
/// A pool's worker threads do not survive `fork` (torch DataLoader workers,
/// multiprocessing): the cache is keyed by pid so a child builds its own.
struct PoolCache {
    pid: u32,
    pools: HashMap<usize, Arc<rayon::ThreadPool>>,
}

fn pool(n_threads: usize) -> KernelResult<Arc<rayon::ThreadPool>> {
    static CACHE: OnceLock<Mutex<PoolCache>> = OnceLock::new();
    if n_threads == 0 {
        return Err(invalid!("n_threads={n_threads} must be >= 1"));
    }
    let cache = CACHE.get_or_init(|| {
        Mutex::new(PoolCache {
            pid: std::process::id(),
            pools: HashMap::new(),
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
    if let Some(p) = guard.pools.get(&n_threads) {
        return Ok(Arc::clone(p));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .thread_name(|i| format!("ecos-fast-{i}"))
        .build()
        .map_err(|e| KernelError::ThreadPool(e.to_string()))?;
    let p = Arc::new(p);
    guard.pools.insert(n_threads, Arc::clone(&p));
    Ok(p)
}

/// Run `f` on a pool of `n_threads` workers with the GIL released.
///
/// The one helper every long call goes through (polars' `enter_polars` idea).
fn run_detached<T, F>(py: Python<'_>, n_threads: usize, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> KernelResult<T> + Send,
{
    let p = pool(n_threads)?;
    let out = py.detach(|| p.install(f))?;
    Ok(out)
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

/// (labels int64[n], squared distances float32[n]).
type LabelsDists<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);

/// Nearest-centroid assignment: labels int64[n] and squared distances float32[n].
#[pyfunction]
#[pyo3(signature = (features, centroids, n_threads))]
#[allow(clippy::type_complexity)]
fn assign<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    centroids: PyReadonlyArray2<'py, f32>,
    n_threads: usize,
) -> PyResult<LabelsDists<'py>> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let (k, dc) = (centroids.shape()[0], centroids.shape()[1]);
    let x = contiguous("features", &features)?;
    let c = contiguous("centroids", &centroids)?;
    let (labels, dists) = run_detached(py, n_threads, || {
        let mut labels = vec![0i64; n];
        let mut dists = vec![0f32; n];
        distance::assign(x, n, d, c, k, dc, &mut labels, &mut dists)?;
        Ok((labels, dists))
    })?;
    Ok((
        PyArray1::from_vec(py, labels),
        PyArray1::from_vec(py, dists),
    ))
}

/// k-means (k-means++ seeding or given initial centroids, then Lloyd).
///
/// Returns (centroids float32[k, d], labels int64[n], inertia per iteration float64[t], n_iter).
#[pyfunction]
#[pyo3(signature = (features, n_clusters, max_iter, tol, seed, n_threads, init=None, n_local_trials=1, sample=None))]
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
    let res = run_detached(py, n_threads, || {
        km::kmeans(x, n, d, &params, init_slice, sample_slice)
    })?;
    let centroids = numpy::ndarray::Array2::from_shape_vec((n_clusters, d), res.centroids)
        .map_err(|e| PyErr::from(invalid!("internal shape error: {e}")))?;
    Ok((
        PyArray2::from_owned_array(py, centroids),
        PyArray1::from_vec(py, res.labels),
        PyArray1::from_vec(py, res.inertia),
        res.n_iter,
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
#[pyo3(signature = (features, budget, n_threads, first=None, initial=None, rows=None, prune=true))]
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
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>)> {
    let (sel, radii, _) =
        kcenter_run(py, features, budget, n_threads, first, initial, rows, prune)?;
    Ok((sel, radii))
}

/// [`kcenter_greedy`] that also returns its distance counters:
/// {"distance_evals": point–center distances started, "brute_force_evals": what brute
/// force computes, "coords_read": coordinates those distances read, "moved": points
/// that changed center, "rows_read": candidate refreshes that read the row, "rounds":
/// refresh rounds}. For benchmarks.
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
    let (sel, radii, stats) =
        kcenter_run(py, features, budget, n_threads, first, initial, rows, prune)?;
    let mut out = HashMap::new();
    out.insert("distance_evals", stats.distance_evals);
    out.insert("brute_force_evals", stats.brute_force_evals);
    out.insert("coords_read", stats.coords_read);
    out.insert("moved", stats.moved);
    out.insert("rows_read", stats.rows_read);
    out.insert("rounds", stats.rounds);
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
    let (sel, radii, stats) = run_detached(py, n_threads, || {
        kcenter::greedy_with(x, n, d, budget, first, initial_slice, rows_slice, prune)
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
#[pyfunction]
#[pyo3(signature = (features, indptr, members, quotas, first, n_threads))]
fn kcenter_clusters<'py>(
    py: Python<'py>,
    features: PyReadonlyArray2<'py, f32>,
    indptr: PyReadonlyArray1<'py, i64>,
    members: PyReadonlyArray1<'py, i64>,
    quotas: PyReadonlyArray1<'py, i64>,
    first: PyReadonlyArray1<'py, i64>,
    n_threads: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let x = contiguous("features", &features)?;
    let indptr = contiguous1("indptr", &indptr)?;
    let members = contiguous1("members", &members)?;
    let quotas = contiguous1("quotas", &quotas)?;
    let first = contiguous1("first", &first)?;
    let sel = run_detached(py, n_threads, || {
        kcenter::per_cluster(x, n, d, indptr, members, quotas, first)
    })?;
    Ok(PyArray1::from_vec(py, sel))
}

/// Build facts for `ecos-fast info`: profile, SIMD paths the CPU offers, rayon default threads.
#[pyfunction]
fn build_info() -> HashMap<&'static str, String> {
    let mut info = HashMap::new();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    info.insert("profile", profile.to_string());
    info.insert("version", env!("CARGO_PKG_VERSION").to_string());
    info.insert("simd", distance::simd_path().to_string());
    info.insert("kcenter_simd", kcenter::simd_path().to_string());
    info.insert("target_arch", std::env::consts::ARCH.to_string());
    info.insert(
        "available_parallelism",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
    );
    info
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(assign, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter_greedy, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter_greedy_stats, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter_clusters, m)?)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    Ok(())
}
