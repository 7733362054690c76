"""Where inputs are coerced and checked.

Everything that crosses into Rust goes through here first, so kernels can
assume C-contiguous float32 / int64 arrays of consistent shapes with finite
values ("prior validation of data is assumed"). The kernels' wrappers, the
k-means and K-Center parameters, the quotas, the selection rule's options and
both backends use these checks instead of writing their own. Elsewhere, only
what belongs to one object is checked in place: the protocol dataclasses check
their cross-field invariants (fingerprint, mechanism against epsilon), the
exchange files their schema and checksum (``exchange.py``), and the command line
its options (click).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._threads import resolve_threads
from .errors import (
    BudgetError,
    InvalidInputError,
    InvalidTypeError,
    PrivacyParameterError,
)
from .feature_files import is_feature_source, load_features

# Rows checked for finiteness per step: bounded extra memory on a memmap.
_FINITE_CHUNK_BYTES = 64 << 20

_F32_MAX = float(np.finfo(np.float32).max)

# Counts handed to the core as usize/int64: larger ones are refused up front rather than
# failing pyo3's conversion with a bare OverflowError.
_INDEX_MAX = 2**63 - 1


def feature_limit(n_features: int) -> float:
    """Largest magnitude a feature (or centroid) value may have: ``sqrt(F / (16 d))``,
    ``F`` the largest float32, ``d = n_features``.

    The kernels compute squared distances in float32. With every value (and so the
    assignment kernel's shift, a centroid mean) within ``M`` of zero, each term of
    ``||x - c||^2 = ||x - mu||^2 + ||c - mu||^2 - 2 (x - mu).(c - mu)`` is at most
    ``4 d M^2``; ``16 d M^2 <= F`` keeps them all finite with room to spare. So about
    4.6e18 for one feature, 8.1e17 for 32, 1.0e17 for 2048: features near 1e19
    (finite) would otherwise give ``inf`` distances and wrong labels.

    Examples
    --------
    >>> from ecos_fast._validation import feature_limit
    >>> f"{feature_limit(1):.2e}", f"{feature_limit(32):.2e}"
    ('4.61e+18', '8.15e+17')
    """
    return math.sqrt(_F32_MAX / (16.0 * max(1, int(n_features))))


def _from_torch(x: Any, name: str) -> Any:
    """Convert a CPU ``torch.Tensor`` without importing torch ourselves."""
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        if getattr(x, "device", None) is not None and str(x.device) != "cpu":
            raise InvalidTypeError(
                f"{name} is a torch tensor on device {x.device}; move it to the CPU first "
                f"(tensor.cpu())"
            )
        try:
            return x.detach().numpy()
        except (TypeError, RuntimeError) as exc:  # bfloat16 and other dtypes NumPy lacks
            raise InvalidTypeError(
                f"{name} is a torch tensor of dtype {getattr(x, 'dtype', '?')}, which NumPy "
                f"cannot hold ({exc}); convert it first (tensor.float())"
            ) from None
    return x


def _asarray(x: Any, name: str) -> NDArray[Any]:
    """``np.asarray`` of ``x`` (torch tensors included), refusing what cannot be one
    (ragged nested lists, objects whose ``__array__`` fails) with InvalidTypeError."""
    x = _from_torch(x, name)
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray drops the mask: the hidden values would be used as if they were data.
        masked = int(np.count_nonzero(np.ma.getmaskarray(x)))
        if masked:
            raise InvalidInputError(
                f"{name} is a masked array with {masked} masked value(s); fill them "
                "(x.filled(value)) or drop those rows first"
            )
        return np.ma.getdata(x)
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidTypeError(f"{name} cannot be read as an array: {exc}") from None


def _bad_value(value: Any, row: int, name: str, width: int, max_abs: float | None) -> None:
    if np.isfinite(value):
        raise InvalidInputError(
            f"{name} holds {value!r} at row {row}, of magnitude above {max_abs:.3g}, the "
            f"largest that keeps float32 squared distances finite for n_features="
            f"{width}; rescale the features (e.g. standardize them)"
        )
    raise InvalidInputError(
        f"{name} holds a non-finite value ({value!r}) at row {row}; remove or impute NaN/inf first"
    )


def check_finite(a: NDArray[Any], name: str, *, max_abs: float | None = None) -> None:
    """Raise if ``a`` holds NaN or inf (or, with ``max_abs``, a value of larger magnitude).

    float32 C-contiguous input (the common case, memmaps included) is scanned by the
    compiled core on every worker thread without a temporary, both checks in one pass;
    anything else in bounded NumPy chunks (memmap-safe).
    """
    if a.size == 0:
        return
    if a.dtype == np.float32 and a.flags.c_contiguous:
        at = _core.first_non_finite(a, resolve_threads(None), max_abs)
        if at is not None:
            pos = np.unravel_index(at, a.shape)
            _bad_value(a[pos], int(pos[0]), name, a.shape[-1], max_abs)
        return
    rows_per_chunk = max(
        1, _FINITE_CHUNK_BYTES // max(1, a[0].nbytes if a.ndim > 1 else a.itemsize)
    )
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    for start in range(0, flat.shape[0], rows_per_chunk):
        block = flat[start : start + rows_per_chunk]
        ok = np.isfinite(block) if max_abs is None else np.abs(block) <= max_abs
        if not ok.all():
            bad = np.argwhere(~ok)[0]
            _bad_value(block[tuple(bad)], start + int(bad[0]), name, a.shape[-1], max_abs)


@dataclass(frozen=True)
class Checked:
    """Features that :func:`as_features` returned: handing them on to a public function
    (``kernels.kmeans`` inside ``fit_centroids``, say) skips a second finiteness pass
    over what may be a pool of gigabytes. Shape and dtype are still checked."""

    array: NDArray[np.float32]


def as_features(
    x: Any, name: str = "features", *, n_features: int | None = None, finite: bool = True
) -> NDArray[np.float32]:
    """Coerce ``x`` to a C-contiguous float32 matrix of shape (n_samples, n_features).

    float32 C-contiguous input (including ``np.memmap``) is used without a copy;
    float64/float16 and integer input is converted (a copy); CPU torch tensors
    are viewed through ``.numpy()``. Complex, object, bool and string dtypes
    are refused. A path (str or PathLike) to a ``.npy`` or Parquet file, a folder
    of shards or a list of shard paths is read by
    :func:`ecos_fast.feature_files.load_features` (a ``.npy`` file memory-mapped).
    """
    if isinstance(x, Checked):
        x, finite = x.array, False
    elif is_feature_source(x):
        x = load_features(x)
    x = _asarray(x, name)
    if x.dtype.kind not in "fiu":
        raise InvalidTypeError(
            f"{name} has dtype {x.dtype}; expected a real numeric dtype (float32 preferred)"
        )
    if x.ndim != 2:
        raise InvalidInputError(
            f"{name} must be 2-D (n_samples, n_features); got ndim={x.ndim}, shape={x.shape}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"{name} is empty: shape={x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has n_features={x.shape[1]} but n_features={n_features} was expected"
        )
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    if finite:
        # Finite but huge values would overflow the float32 squared distances.
        check_finite(x, name, max_abs=feature_limit(x.shape[1]))
    return x  # type: ignore[no-any-return]


def as_indices(
    idx: Any, name: str, *, upper: int, allow_empty: bool = True, unique: bool = True
) -> NDArray[np.int64]:
    """Coerce to a 1-D int64 array with every value in [0, upper)."""
    a = _asarray(idx, name)
    if a.size == 0:
        if not allow_empty:
            raise InvalidInputError(f"{name} is empty")
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise InvalidTypeError(f"{name} has dtype {a.dtype}; expected integers")
    if a.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D; got shape={a.shape}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= upper:
        raise InvalidInputError(f"{name} holds indices in [{lo}, {hi}], outside [0, {upper})")
    out = np.ascontiguousarray(a, dtype=np.int64)
    if unique and np.unique(out).size != out.size:
        raise InvalidInputError(f"{name} holds duplicate indices")
    return out


def check_int(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    """An integer in [low, high] (high inclusive, None for unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidInputError(f"{name}={v} must be {bound}")
    return v


def check_budget(budget: Any, n_samples: int, *, of: str | None = None) -> int:
    """A budget in [1, n_samples]; ``of`` says what the rows are when not the pool."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise InvalidTypeError(f"budget must be an int, got {type(budget).__name__} {budget!r}")
    b = int(budget)
    if b < 1:
        raise BudgetError(f"budget={b} must be >= 1")
    if b > n_samples:
        what = f"the pool size n_samples={n_samples}" if of is None else f"the {n_samples} {of}"
        raise BudgetError(f"budget={b} exceeds {what}")
    return b


def check_epsilon(epsilon: Any) -> float:
    """epsilon in (0, inf]; inf means no noise (an upper bound for experiments)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise PrivacyParameterError(f"epsilon must be a number, got {type(epsilon).__name__}")
    e = float(epsilon)
    if np.isnan(e) or e <= 0:
        raise PrivacyParameterError(f"epsilon={e} must be > 0 (use math.inf for no noise)")
    return e


def check_delta(delta: Any) -> float:
    """delta in the open interval (0, 1)."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise PrivacyParameterError(f"delta must be a number, got {type(delta).__name__}")
    d = float(delta)
    if not 0.0 < d < 1.0:
        raise PrivacyParameterError(f"delta={d} must lie in the open interval (0, 1)")
    return d


def check_torch_device(device: Any) -> Any:
    """``device`` as a ``torch.device`` that this machine has (torch imported here)."""
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"device={device!r} is not a torch device ({exc})") from None
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InvalidInputError(f"device={device!r} but torch sees no CUDA device")
        if d.index is not None and d.index >= n:
            raise InvalidInputError(f"device={device!r} but torch sees {n} CUDA device(s)")
    return d


def check_seed(seed: Any, name: str = "seed") -> int:
    """A non-negative integer seed that fits in 64 bits."""
    return check_int(seed, name, low=0, high=2**64 - 1)


def check_sensitivity(sensitivity: Any) -> float:
    """An L2 sensitivity: a finite number > 0."""
    if isinstance(sensitivity, bool) or not isinstance(sensitivity, numbers.Real):
        raise PrivacyParameterError(
            f"sensitivity must be a number, got {type(sensitivity).__name__}"
        )
    s = float(sensitivity)
    if not np.isfinite(s) or s <= 0:
        raise PrivacyParameterError(f"sensitivity={s} must be a finite number > 0")
    return s


def check_nonneg_float(value: Any, name: str) -> float:
    """A finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise InvalidInputError(f"{name}={v} must be a finite number >= 0")
    return v


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    """One of ``choices`` (compared with ``==``, so None is a valid choice)."""
    if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
        raise InvalidInputError(f"{name}={value!r} must be one of {list(choices)}")
    return value


def as_labels(labels: Any, name: str, *, n_samples: int, n_clusters: int) -> NDArray[np.int64]:
    """Cluster labels: 1-D int64 of length ``n_samples``, every value in [0, n_clusters)."""
    a = as_indices(labels, name, upper=n_clusters, unique=False)
    if a.shape[0] != n_samples:
        raise InvalidInputError(
            f"{name} has {a.shape[0]} entries but the pool has n_samples={n_samples}"
        )
    return a


def as_vector(x: Any, name: str, *, length: int | None = None) -> NDArray[np.float64]:
    """A finite 1-D float64 vector (optionally of a given length)."""
    a = _asarray(x, name)
    if a.dtype.kind not in "fiu":
        raise InvalidTypeError(f"{name} has dtype {a.dtype}; expected real numbers")
    if a.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D; got shape={a.shape}")
    if length is not None and a.shape[0] != length:
        raise InvalidInputError(f"{name} has {a.shape[0]} entries but {length} were expected")
    out = np.ascontiguousarray(a, dtype=np.float64)
    check_finite(out, name)
    return out


def check_real(value: Any, name: str, *, low: float) -> float:
    """A finite real number >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < low:
        raise InvalidInputError(f"{name}={v} must be a finite number >= {low:g}")
    return v


def as_weights(weights: Any, name: str = "weights") -> NDArray[np.float64]:
    """Cluster weights: a finite 1-D float64 vector, every entry >= 0."""
    w = as_vector(weights, name)
    if w.size and float(w.min()) < 0:
        raise InvalidInputError(f"{name} must be >= 0; found {float(w.min())}")
    return w


def as_capacity(capacity: Any, n_clusters: int, name: str = "capacity") -> NDArray[np.int64]:
    """Rows per cluster: 1-D integers >= 0, one per cluster."""
    a = _asarray(capacity, name)
    if a.dtype.kind not in "iu":
        raise InvalidTypeError(f"{name} has dtype {a.dtype}; expected integers")
    if a.shape != (n_clusters,):
        raise InvalidInputError(f"{name} has shape {a.shape} but weights has shape ({n_clusters},)")
    out = a.astype(np.int64)
    if out.size and int(out.min()) < 0:
        raise InvalidInputError(f"{name} must be >= 0; found {int(out.min())}")
    return out


@dataclass(frozen=True)
class KMeansParams:
    """The checked parameters of one k-means run (both backends take these).

    ``max_train`` is ``n_clusters * max_points_per_centroid`` (None: train on every row).
    """

    n_clusters: int
    max_iter: int
    tol: float
    seed: int
    init: NDArray[np.float32] | None
    max_train: int | None
    n_local_trials: int
    init_sample: int | None


def check_kmeans_params(
    n_samples: int,
    n_features: int,
    n_clusters: Any,
    *,
    max_iter: Any,
    tol: Any,
    seed: Any,
    init: Any,
    max_points_per_centroid: Any,
    n_local_trials: Any,
    init_sample: Any,
) -> KMeansParams:
    """Every k-means parameter checked against a pool of ``n_samples`` x ``n_features``."""
    k = check_int(n_clusters, "n_clusters", low=1, high=n_samples)
    init_c = None if init is None else as_features(init, "init", n_features=n_features)
    if init_c is not None and init_c.shape[0] != k:
        raise InvalidInputError(f"init has {init_c.shape[0]} rows but n_clusters={k}")
    cap = None
    if max_points_per_centroid is not None:
        cap = check_int(max_points_per_centroid, "max_points_per_centroid", low=1) * k
    return KMeansParams(
        n_clusters=k,
        max_iter=check_int(max_iter, "max_iter", low=1, high=_INDEX_MAX),
        tol=check_nonneg_float(tol, "tol"),
        seed=check_seed(seed),
        init=init_c,
        max_train=cap,
        # Candidates are rows: more than there are rows buys nothing (and the core's
        # candidate buffer is n_local_trials x n_samples).
        n_local_trials=check_int(n_local_trials, "n_local_trials", low=1, high=n_samples),
        init_sample=None if init_sample is None else check_int(init_sample, "init_sample", low=k),
    )


@dataclass(frozen=True)
class KCenterArgs:
    """The checked arguments of one greedy K-Center run."""

    budget: int
    first: int | None
    initial: NDArray[np.int64] | None
    rows: NDArray[np.int64] | None


def check_kcenter_args(
    n_samples: int, budget: Any, *, first: Any, initial: Any, rows: Any
) -> KCenterArgs:
    """K-Center's budget, first pick, already-selected rows and candidate rows, checked."""
    n = n_samples
    rows_a = None if rows is None else as_indices(rows, "rows", upper=n, allow_empty=False)
    n_cand = n if rows_a is None else rows_a.shape[0]
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise InvalidTypeError(f"budget must be an int, got {type(budget).__name__}")
    init_a = None if initial is None else as_indices(initial, "initial", upper=n)
    of = None if rows_a is None else "candidate rows (rows)"
    if init_a is not None and init_a.size:
        # Already-selected rows are centers, never picks: they leave the candidates.
        n_cand -= int(np.isin(init_a, rows_a).sum()) if rows_a is not None else init_a.size
        of = f"candidate rows ({'rows' if rows_a is not None else 'the pool'}, less initial)"
    b = check_budget(budget, n_cand, of=of)
    f = None
    if first is not None and (init_a is None or init_a.size == 0):
        f = check_int(first, "first", low=0, high=n - 1)
        if rows_a is not None and f not in set(rows_a.tolist()):
            raise InvalidInputError(f"first={f} is not one of the candidate rows")
    return KCenterArgs(b, f, init_a, rows_a)
