"""The ECOS protocol roles: the cloud's centroid sketch and the client's response.

One round (see ``docs/method.md``):

1. the cloud runs k-means on its pool features and sends the :class:`Centroids`
   (public data only: no privacy cost);
2. the client counts, for every centroid, the private samples whose nearest
   centroid it is, adds Gaussian noise and sends back a :class:`Response`;
3. the cloud joins both into a :class:`Sketch` and calls :func:`ecos_fast.select`.

Objects here are frozen; their arrays are read-only copies.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import _core, _stream, _validation, clustering, kernels
from ._backend import check_backend, ray_backend
from ._threads import resolve_threads
from ._validation import (
    Checked,
    as_features,
    as_vector,
    check_choice,
    check_delta,
    check_epsilon,
    check_int,
    check_nonneg_float,
    check_seed,
)
from .errors import (
    ExtractorUncheckedWarning,
    InvalidInputError,
    InvalidTypeError,
    PrivacyParameterError,
    SketchMismatchError,
)
from .privacy import GaussianMechanism, sensitivity_for
from .rule import cluster_weights
from .smoothing import SMOOTH, nearest_centroids, smooth_counts
from .transform import NORMALIZE_CHOICES, Normalize, l2_normalize

__all__ = [
    "SCHEMA_VERSION",
    "Centroids",
    "Response",
    "Sketch",
    "centroid_fingerprint",
    "check_extractor",
    "check_neighbours",
    "coverage_counts",
    "extractor_fingerprint_of",
    "fit_centroids",
    "respond",
]

#: Version of the in-memory and on-disk layout of :class:`Centroids` and :class:`Response`.
SCHEMA_VERSION = 1

MECHANISMS = ("gaussian", "none")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    out = np.array(a, copy=True)
    out.flags.writeable = False
    return out


def _transformed(x: NDArray[np.float32], name: str, normalize: str | None) -> NDArray[np.float32]:
    """``x`` (from ``as_features(..., finite=False)``) checked and transformed.

    Without a transform every value must stay within
    :func:`~ecos_fast._validation.feature_limit` (float32 squared distances). With
    ``normalize="l2"`` only NaN/inf are refused: the row norms are taken in float64,
    so huge finite rows (e.g. 1e19) become unit vectors before any distance is taken.
    """
    if normalize == "l2":
        _validation.check_finite(x, name)
        return l2_normalize(x)
    _validation.check_finite(x, name, max_abs=_validation.feature_limit(x.shape[1]))
    return x


def _l2_checked(
    block: NDArray[np.float32], whole: NDArray[np.float32], name: str
) -> NDArray[np.float32]:
    """One block of the mapped pool ``whole``, checked for NaN/inf, then L2-normalized."""
    _stream.check_block(block, whole, name, None)
    return l2_normalize(block)


def _transformed_rows(x: NDArray[np.float32], name: str, normalize: str | None) -> _stream.Rows:
    """:func:`_transformed`, except that a memory-mapped pool under ``normalize="l2"``
    is checked and normalized as its blocks are read (:class:`ecos_fast._stream.
    Transformed`), not copied whole into memory first: each row gets the values
    :func:`l2_normalize` gives it in the copy."""
    if normalize == "l2" and _stream.is_mapped(x):
        return _stream.Transformed(x, functools.partial(_l2_checked, whole=x, name=name))
    return _transformed(x, name, normalize)


def _check_extractor_fp(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.match(value):
        raise InvalidInputError(f"{name}={value!r} is not 64 lowercase hex digits")
    return value


def extractor_fingerprint_of(features: Any, given: str | None = None) -> str | None:
    """The extractor fingerprint that ``features`` carry, or ``given``.

    Features from :func:`ecos_fast.features.extract` carry one
    (``features.extractor_fingerprint``); plain arrays carry none. When both are
    present they must agree.

    Raises
    ------
    SketchMismatchError
        ``given`` differs from the fingerprint ``features`` carry.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.protocol import extractor_fingerprint_of
    >>> extractor_fingerprint_of(np.zeros((2, 2))) is None
    True
    """
    given = _check_extractor_fp(given, "extractor_fingerprint")
    carried = _check_extractor_fp(
        getattr(features, "extractor_fingerprint", None), "features.extractor_fingerprint"
    )
    if given is not None and carried is not None and given != carried:
        raise SketchMismatchError(
            f"extractor_fingerprint={given[:16]}… but the features were extracted by "
            f"{carried[:16]}…"
        )
    return given if given is not None else carried


def check_extractor(centroids: Centroids, fingerprint: str | None) -> bool:
    """Check that the client's features come from the extractor the pool's did.

    Parameters
    ----------
    centroids : Centroids
        Their ``extractor_fingerprint`` (None if the cloud recorded none).
    fingerprint : str or None
        The client's extractor fingerprint (None for plain arrays).

    Returns
    -------
    bool
        True when both are known and equal; False when either is unknown (nothing
        was checked: a :class:`~ecos_fast.errors.ExtractorUncheckedWarning` is
        issued when exactly one side carries a fingerprint).

    Raises
    ------
    SketchMismatchError
        Both are known and differ: the client used another model or preprocessing,
        so its counts would say nothing about the pool.

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> from ecos_fast.protocol import check_extractor
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32), extractor_fingerprint="a" * 64)
    >>> check_extractor(c, "a" * 64)
    True
    >>> check_extractor(c, "b" * 64)
    Traceback (most recent call last):
    ...
    ecos_fast.errors.SketchMismatchError: the client's features come from extractor bbbbbbbbbbbbbbbb… but the centroids were fitted on features of extractor aaaaaaaaaaaaaaaa…: extract both with the same model, weights and preprocessing
    """
    fingerprint = _check_extractor_fp(fingerprint, "fingerprint")
    cloud = centroids.extractor_fingerprint
    if cloud is not None and fingerprint is not None:
        if cloud != fingerprint:
            raise SketchMismatchError(
                f"the client's features come from extractor {fingerprint[:16]}… but the "
                f"centroids were fitted on features of extractor {cloud[:16]}…: extract both "
                f"with the same model, weights and preprocessing"
            )
        return True
    if cloud is not None or fingerprint is not None:
        which = "the private features carry" if cloud is None else "the centroids carry"
        warnings.warn(
            f"extractor not checked: only {which} an extractor fingerprint",
            ExtractorUncheckedWarning,
            stacklevel=3,
        )
    return False


def centroid_fingerprint(centroids: NDArray[np.float32], normalize: str | None = None) -> str:
    """SHA-256 (hex) identifying a set of centroids and the feature transform.

    Hashes a tag, the dtype, the shape, the ``normalize`` option and the
    little-endian float32 bytes, so a response can be matched to the exact
    centroids (and transform) it was computed against.

    Parameters
    ----------
    centroids : ndarray of shape (n_clusters, n_features), float32
    normalize : {None, "l2"}

    Returns
    -------
    str
        64 lowercase hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.protocol import centroid_fingerprint
    >>> c = np.zeros((2, 3), dtype=np.float32)
    >>> len(centroid_fingerprint(c)), centroid_fingerprint(c) == centroid_fingerprint(c, "l2")
    (64, False)
    """
    c = np.ascontiguousarray(centroids, dtype="<f4")
    if c.ndim != 2:
        raise InvalidInputError(f"centroids must be 2-D; got shape={c.shape}")
    h = hashlib.sha256()
    h.update(f"ecos-fast/centroids|<f4|{c.shape[0]}x{c.shape[1]}|{normalize}\0".encode())
    h.update(c.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Centroids:
    """The cloud's sketch of its pool: k-means centroids plus what identifies them.

    Attributes
    ----------
    centroids : ndarray of shape (n_clusters, n_features), float32
        Read-only.
    fingerprint : str
        :func:`centroid_fingerprint` of ``centroids`` and ``normalize``; checked on
        construction.
    n_pool : int
        Pool size the centroids were fitted on (0 if unknown).
    seed : int or None
        k-means seed.
    normalize : {None, "l2"}
        Feature transform applied before k-means; the client and :func:`select`
        apply the same one (see :meth:`transform`).
    schema_version : int
    labels : ndarray of shape (n_pool,), int64, or None
        Nearest centroid of every pool row from the fit (cloud-side only: never
        saved or sent). Pass it to ``select(..., labels=...)`` to skip a pass.
    extractor_fingerprint : str or None
        :func:`ecos_fast.features.extract`'s fingerprint of the model and
        preprocessing that made the pool features (64 hex digits), saved in the
        centroid file; :func:`respond` checks the client's against it. Not part of
        :attr:`fingerprint`.
    """

    centroids: NDArray[np.float32]
    fingerprint: str = ""
    n_pool: int = 0
    seed: int | None = None
    normalize: str | None = None
    schema_version: int = SCHEMA_VERSION
    labels: NDArray[np.int64] | None = field(default=None, repr=False)
    extractor_fingerprint: str | None = None

    def __post_init__(self) -> None:
        c = as_features(self.centroids, "centroids")
        _check_extractor_fp(self.extractor_fingerprint, "extractor_fingerprint")
        check_choice(self.normalize, "normalize", NORMALIZE_CHOICES)
        if self.schema_version != SCHEMA_VERSION:
            raise InvalidInputError(
                f"schema_version={self.schema_version!r}; this ecos-fast reads "
                f"version {SCHEMA_VERSION}"
            )
        check_int(self.n_pool, "n_pool", low=0)
        if self.seed is not None:
            check_seed(self.seed)
        fp = centroid_fingerprint(c, self.normalize)
        if self.fingerprint and self.fingerprint != fp:
            raise SketchMismatchError(
                f"fingerprint={self.fingerprint!r} does not match the centroids (computed {fp!r})"
            )
        object.__setattr__(self, "centroids", _readonly(c))
        object.__setattr__(self, "fingerprint", fp)
        if self.labels is not None:
            lab = np.asarray(self.labels)
            if lab.ndim != 1 or lab.dtype.kind not in "iu":
                raise InvalidInputError(f"labels must be 1-D integers; got shape={lab.shape}")
            if self.n_pool and lab.shape[0] != self.n_pool:
                raise InvalidInputError(
                    f"labels has {lab.shape[0]} entries but n_pool={self.n_pool}"
                )
            if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= c.shape[0]):
                raise InvalidInputError(
                    f"labels hold values in [{int(lab.min())}, {int(lab.max())}], "
                    f"outside [0, {c.shape[0]})"
                )
            object.__setattr__(self, "labels", _readonly(lab.astype(np.int64)))

    @property
    def n_clusters(self) -> int:
        """Number of centroids, R."""
        return int(self.centroids.shape[0])

    @property
    def n_features(self) -> int:
        """Feature dimension, d."""
        return int(self.centroids.shape[1])

    def transform(self, features: Any, name: str = "features") -> NDArray[np.float32]:
        """Validate ``features`` against these centroids and apply ``normalize``.

        Parameters
        ----------
        features : array-like of shape (n_samples, n_features)
        name : str
            Used in error messages.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float32
            C-contiguous; the input itself when no conversion or transform is needed.

        Examples
        --------
        >>> import numpy as np, ecos_fast
        >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32), normalize="l2")
        >>> c.transform([[3.0, 4.0]]).tolist()
        [[0.6000000238418579, 0.800000011920929]]
        """
        return _transformed(
            as_features(features, name, n_features=self.n_features, finite=False),
            name,
            self.normalize,
        )

    def _transform_rows(self, features: Any, name: str = "features") -> _stream.Rows:
        """:meth:`transform`, except that a memory-mapped pool under ``normalize="l2"``
        comes back as a :class:`ecos_fast._stream.Transformed` view, normalized block by
        block as the passes read it (no copy of the pool); internal to the passes."""
        return _transformed_rows(
            as_features(features, name, n_features=self.n_features, finite=False),
            name,
            self.normalize,
        )


def fit_centroids(
    pool_features: Any,
    n_clusters: int = 100,
    *,
    seed: int = 0,
    max_iter: int = 25,
    normalize: Normalize = None,
    max_points_per_centroid: int | None = 256,
    init_sample: int | None = None,
    n_threads: int | None = None,
    backend: Literal["local", "ray"] = "local",
    extractor_fingerprint: str | None = None,
) -> Centroids:
    """Cloud, step 1: fit the centroid sketch of the pool with k-means.

    Parameters
    ----------
    pool_features : array-like of shape (n_samples, n_features)
        Public pool features (float32 preferred).
    n_clusters : int, default 100
        R, in [1, n_samples].
    seed : int, default 0
        Seeds k-means++ and the training subsample.
    max_iter : int, default 25
        Lloyd iterations at most.
    normalize : {None, "l2"}, default None
        ``"l2"`` scales every row to unit norm before clustering; recorded in the
        result so the client and :func:`select` apply the same transform.
    max_points_per_centroid : int or None, default 256
        See :func:`ecos_fast.kmeans`.
    init_sample : int, optional
        See :func:`ecos_fast.kmeans`.
    n_threads : int, optional
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``pool_features`` may also be a directory or list of ``.npy`` /
        Parquet shards or a ``ray.data.Dataset``, clustered on the Ray workers
        (:func:`ecos_fast.ray_backend.kmeans_sharded`); the centroids are the local ones, bit
        for bit. ``labels`` is then None (they stay on the workers).
    extractor_fingerprint : str, optional
        Recorded in the result (and the centroid file). Default: the one
        ``pool_features`` carry when they come from :func:`ecos_fast.features.extract`.

    Returns
    -------
    Centroids
        With ``labels`` holding every pool row's nearest centroid.

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> rng = np.random.default_rng(0)
    >>> pool = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    >>> cents = ecos_fast.fit_centroids(pool.astype(np.float32), n_clusters=2, seed=1)
    >>> cents.centroids.shape, cents.n_pool, len(cents.fingerprint)
    ((2, 2), 100, 64)
    """
    check_choice(normalize, "normalize", NORMALIZE_CHOICES)
    extractor_fp = extractor_fingerprint_of(pool_features, extractor_fingerprint)
    if check_backend(backend) == "ray":
        rb = ray_backend()
        source = pool_features
        if hasattr(pool_features, "extractor_fingerprint"):  # ecos_fast.features.Features
            path = getattr(pool_features, "path", None)
            source = np.asarray(pool_features) if path is None else path  # shards stay on disk
        pool = rb.ShardedPool.from_source(source)
        res = rb.kmeans_sharded(
            pool, n_clusters, seed=seed, max_iter=max_iter, normalize=normalize,
            max_points_per_centroid=max_points_per_centroid, init_sample=init_sample,
            n_threads=n_threads, return_labels=False,
        )  # fmt: skip
        return Centroids(
            res.centroids,
            n_pool=pool.n_samples,
            seed=seed,
            normalize=normalize,
            extractor_fingerprint=extractor_fp,
        )
    x = as_features(pool_features, "pool_features", finite=False)
    if normalize is None:
        # Checked while k-means reads it (clustering.kmeans_rows): a pool on disk is
        # read once for the final assignment, not once more for the check.
        params = _validation.check_kmeans_params(
            x.shape[0], x.shape[1], n_clusters, max_iter=max_iter, tol=1e-4, seed=seed,
            init=None, max_points_per_centroid=max_points_per_centroid, n_local_trials=1,
            init_sample=init_sample,
        )  # fmt: skip
        km = clustering.kmeans_rows(x, params, resolve_threads(n_threads), check_as="pool_features")
    elif _stream.is_mapped(x):  # normalized block by block as k-means reads it
        params = _validation.check_kmeans_params(
            x.shape[0], x.shape[1], n_clusters, max_iter=max_iter, tol=1e-4, seed=seed,
            init=None, max_points_per_centroid=max_points_per_centroid, n_local_trials=1,
            init_sample=init_sample,
        )  # fmt: skip
        rows = _transformed_rows(x, "pool_features", normalize)
        km = clustering.kmeans_rows(rows, params, resolve_threads(n_threads))
    else:
        x = _transformed(x, "pool_features", normalize)
        km = kernels.kmeans(
            Checked(x),  # checked above: no second pass over the pool
            n_clusters,
            seed=seed,
            max_iter=max_iter,
            max_points_per_centroid=max_points_per_centroid,
            init_sample=init_sample,
            n_threads=n_threads,
        )
    return Centroids(
        km.centroids,
        n_pool=x.shape[0],
        seed=seed,
        normalize=normalize,
        labels=km.labels,
        extractor_fingerprint=extractor_fp,
    )


@dataclass(frozen=True, eq=False)
class Response:
    """The client's answer: noisy Centroid Coverage counts and how they were made.

    Holds no true counts and no private features.

    Attributes
    ----------
    noisy_counts : ndarray of shape (n_clusters,), float64
        ``v + N(0, sigma^2 I)``; read-only.
    epsilon : float
        In (0, inf]; inf means no noise was added.
    delta : float
    sigma : float
        Noise standard deviation (0.0 when ``epsilon`` is inf).
    sensitivity : float
        L2 sensitivity of the counts under ``relation``.
    relation : {"add_remove", "replace_one"}
    mechanism : {"gaussian", "none"}
    centroids_fingerprint : str
        Fingerprint of the :class:`Centroids` the counts answer.
    schema_version : int
    neighbours : int
        How many nearest centroids each private sample was counted at (weight
        ``1 / sqrt(neighbours)`` at each; see :func:`respond`); 1 is the plain count.
    """

    noisy_counts: NDArray[np.float64]
    epsilon: float
    delta: float
    sigma: float
    sensitivity: float
    relation: str
    mechanism: str
    centroids_fingerprint: str
    schema_version: int = SCHEMA_VERSION
    neighbours: int = 1

    def __post_init__(self) -> None:
        v = as_vector(self.noisy_counts, "noisy_counts")
        if v.shape[0] == 0:
            raise InvalidInputError("noisy_counts is empty")
        eps = check_epsilon(self.epsilon)
        dlt = check_delta(self.delta)
        sig = check_nonneg_float(self.sigma, "sigma")
        sens = sensitivity_for(self.relation)
        if not math.isclose(float(self.sensitivity), sens, rel_tol=1e-12):
            raise PrivacyParameterError(
                f"sensitivity={self.sensitivity} but relation={self.relation!r} "
                f"has sensitivity {sens}"
            )
        want = "none" if math.isinf(eps) else "gaussian"
        if self.mechanism != want:
            raise PrivacyParameterError(
                f"mechanism={self.mechanism!r} but epsilon={eps} requires {want!r}"
            )
        if (sig == 0.0) != math.isinf(eps):
            raise PrivacyParameterError(
                f"sigma={sig} is inconsistent with epsilon={eps}: sigma is 0 exactly "
                f"when epsilon is inf"
            )
        if not isinstance(self.centroids_fingerprint, str) or not _HEX64.match(
            self.centroids_fingerprint
        ):
            raise InvalidInputError(
                f"centroids_fingerprint={self.centroids_fingerprint!r} is not 64 hex digits"
            )
        if self.schema_version != SCHEMA_VERSION:
            raise InvalidInputError(
                f"schema_version={self.schema_version!r}; this ecos-fast reads "
                f"version {SCHEMA_VERSION}"
            )
        k = check_neighbours(self.neighbours, v.shape[0], limit="the {n} counts of the response")
        object.__setattr__(self, "neighbours", k)
        object.__setattr__(self, "noisy_counts", _readonly(v))
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "delta", dlt)
        object.__setattr__(self, "sigma", sig)
        object.__setattr__(self, "sensitivity", sens)

    @property
    def n_clusters(self) -> int:
        """Number of counts, R."""
        return int(self.noisy_counts.shape[0])


def respond(
    private_features: Any,
    centroids: Centroids,
    epsilon: float,
    delta: float,
    *,
    relation: Literal["add_remove", "replace_one"] = "add_remove",
    mechanism: GaussianMechanism | None = None,
    seed: int | None = None,
    n_threads: int | None = None,
    extractor_fingerprint: str | None = None,
    neighbours: int = 1,
) -> Response:
    """Client, step 2: noisy Centroid Coverage counts of the private data.

    Counts, for every centroid, the private rows whose nearest centroid it is
    (ties to the lowest index), then adds independent ``N(0, sigma^2)`` noise to
    every count, with ``sigma`` from :func:`ecos_fast.calibrate_gaussian_sigma`
    (through :class:`~ecos_fast.privacy.GaussianMechanism`). With ``neighbours=k``
    each row counts ``1 / sqrt(k)`` at each of its ``k`` nearest centroids instead:
    the same noise, but √k times the total signal, spread over a neighbourhood
    (see Notes).

    Parameters
    ----------
    private_features : array-like of shape (n_samples, n_features)
        The client's features; ``centroids.normalize`` is applied first.
    centroids : Centroids
        What the cloud sent.
    epsilon : float
        In (0, inf]; ``math.inf`` adds no noise (upper-bound experiments only).
    delta : float
        In (0, 1).
    relation : {"add_remove", "replace_one"}, default "add_remove"
        Neighbouring relation; sensitivity 1 or sqrt(2).
    mechanism : GaussianMechanism, optional
        An already calibrated mechanism for (``epsilon``, ``delta``, ``relation``):
        its ``sigma`` is used as is, so a caller that records the release first
        (:func:`ecos_fast.ledger.respond_with_ledger`) calibrates once and
        releases exactly what it recorded. Its parameters must equal the three
        arguments (else :class:`PrivacyParameterError`). Default: calibrate here.
    seed : int, optional
        Seed of the noise generator. Default: fresh OS entropy. Fix it only for
        reproducible tests: a known seed lets anyone subtract the noise.
    n_threads : int, optional
    extractor_fingerprint : str, optional
        The client's extractor fingerprint; default: the one ``private_features``
        carry (from :func:`ecos_fast.features.extract`). If the centroids carry one
        too, they must be equal (:func:`check_extractor`), checked before any noise
        is drawn.
    neighbours : int, default 1
        The number ``k`` of nearest centroids each private row is counted at, with
        weight ``1 / sqrt(k)`` at each (the k nearest by float64 squared distance in
        the centroids' space, ties to the lowest index; ``k = 1`` is the plain count,
        from the float32 assignment kernel). In ``[1, n_clusters]``. It pays when the
        release carries little signal per cluster (a small client, a small ε, many
        clusters) and costs resolution when it carries a lot: docs/results.md,
        *Counting at several neighbours*, measured it.

    Returns
    -------
    Response
        Noisy counts of shape (n_clusters,), float64, and the privacy parameters.

    Notes
    -----
    Privacy: one private sample changes one count by one under add/remove (two
    counts by one under replace-one), so the L2 sensitivity is 1 (sqrt(2)); the
    Gaussian mechanism with the analytically calibrated ``sigma`` makes the
    returned :class:`Response` (epsilon, delta)-differentially private with
    respect to ``private_features`` for that relation. With ``neighbours=k`` one
    sample adds a vector of ``k`` entries ``1 / sqrt(k)``: L2 norm 1 again, and two
    such vectors (non-negative) differ by at most sqrt(2), so the sensitivities and
    ``sigma`` are the same, while a cluster inside a dense region of the client's
    data gathers about sqrt(k) times the signal it would with plain counts. The
    centroids are public.
    Everything else in the response (parameters, fingerprint) is data-independent.
    Repeated calls on the same data compose and must be accounted together.
    With ``epsilon=math.inf`` there is no privacy guarantee at all.

    Examples
    --------
    >>> import math, numpy as np, ecos_fast
    >>> cents = ecos_fast.Centroids(np.array([[0, 0], [10, 10]], dtype=np.float32))
    >>> private = np.array([[0, 1], [9, 9], [1, 0]], dtype=np.float32)
    >>> ecos_fast.respond(private, cents, math.inf, 1e-5).noisy_counts.tolist()
    [2.0, 1.0]
    >>> r = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=0)
    >>> round(r.sigma, 3), r.mechanism
    (6.137, 'gaussian')
    """
    if not isinstance(centroids, Centroids):
        raise InvalidTypeError(
            f"centroids must be an ecos_fast.Centroids, got {type(centroids).__name__}"
        )
    if mechanism is None:
        mechanism = GaussianMechanism(epsilon, delta, relation)
    elif not isinstance(mechanism, GaussianMechanism):
        raise InvalidTypeError(
            f"mechanism must be an ecos_fast.privacy.GaussianMechanism, "
            f"got {type(mechanism).__name__}"
        )
    elif (mechanism.epsilon, mechanism.delta, mechanism.relation) != (
        epsilon,
        delta,
        relation,
    ):
        raise PrivacyParameterError(
            f"mechanism is calibrated for epsilon={mechanism.epsilon}, delta={mechanism.delta}, "
            f"relation={mechanism.relation!r}, but respond was called with epsilon={epsilon}, "
            f"delta={delta}, relation={relation!r}"
        )
    k = check_neighbours(neighbours, centroids.n_clusters)
    check_extractor(centroids, extractor_fingerprint_of(private_features, extractor_fingerprint))
    sigma = mechanism.sigma
    rng = np.random.default_rng(None if seed is None else check_seed(seed))
    x = centroids.transform(private_features, "private_features")
    # Both are checked: x by transform, the centroids when Centroids was built.
    counts = coverage_counts(x, centroids.centroids, k, resolve_threads(n_threads))
    if sigma > 0:
        counts += rng.normal(0.0, sigma, size=counts.shape[0])
    return Response(
        noisy_counts=counts,
        epsilon=mechanism.epsilon,
        delta=mechanism.delta,
        sigma=sigma,
        sensitivity=mechanism.sensitivity,
        relation=relation,
        mechanism=mechanism.mechanism,
        centroids_fingerprint=centroids.fingerprint,
        neighbours=k,
    )


def check_neighbours(
    neighbours: object, n_clusters: int, *, what: str = "neighbours={k}",
    limit: str = "n_clusters={n}",
) -> int:  # fmt: skip
    """``neighbours`` as an int in ``[1, n_clusters]``, else :class:`InvalidInputError`
    (:class:`InvalidTypeError` for a non-int): the one check behind :func:`respond`,
    :func:`~ecos_fast.ledger.respond_with_ledger`, :class:`Response` and the CLI's
    ``respond --neighbours``. ``what`` and ``limit`` word the message for the caller
    (``{k}``: the value, ``{n}``: ``n_clusters``).

    >>> check_neighbours(3, 10)
    3
    >>> check_neighbours(11, 10)
    Traceback (most recent call last):
    ...
    ecos_fast.errors.InvalidInputError: neighbours=11 exceeds n_clusters=10
    """
    k = check_int(neighbours, "neighbours", low=1)
    if k > n_clusters:
        raise InvalidInputError(f"{what.format(k=k)} exceeds {limit.format(n=n_clusters)}")
    return k


def coverage_counts(
    x: NDArray[np.float32], centroids: NDArray[np.float32], neighbours: int, n_threads: int
) -> NDArray[np.float64]:
    """The true (noise-free) coverage vector of :func:`respond`: every row adds
    ``1 / sqrt(neighbours)`` to each of its ``neighbours`` nearest centroids.

    ``neighbours=1``: the float32 assignment kernel's labels, counted. More: exact
    float64 squared distances, block by block, the ``neighbours`` smallest of each
    row (ties to the lowest index; :func:`ecos_fast.smoothing.nearest_centroids`).

    >>> import numpy as np
    >>> c = np.array([[0, 0], [1, 0], [9, 0]], dtype=np.float32)
    >>> x = np.array([[0.2, 0], [0.9, 0]], dtype=np.float32)
    >>> coverage_counts(x, c, 1, 1).tolist()
    [1.0, 1.0, 0.0]
    >>> (coverage_counts(x, c, 2, 1) * np.sqrt(2)).round(12).tolist()
    [2.0, 2.0, 0.0]
    """
    r = centroids.shape[0]
    if neighbours == 1:
        labels, _ = _core.assign(x, centroids, n_threads)
        return np.bincount(labels, minlength=r).astype(np.float64)
    nearest = nearest_centroids(x, centroids, neighbours)
    hits = np.bincount(nearest.ravel(), minlength=r)
    return hits / math.sqrt(neighbours)


@dataclass(frozen=True, eq=False)
class Sketch:
    """The cloud's centroids joined with the client's response to them.

    Construction checks that the response answers these centroids (fingerprint
    and number of clusters) and raises :class:`SketchMismatchError` otherwise.

    Attributes
    ----------
    centroids : Centroids
    response : Response
    """

    centroids: Centroids
    response: Response

    def __post_init__(self) -> None:
        if not isinstance(self.centroids, Centroids):
            raise InvalidTypeError(
                f"centroids must be an ecos_fast.Centroids, got {type(self.centroids).__name__}"
            )
        if not isinstance(self.response, Response):
            raise InvalidTypeError(
                f"response must be an ecos_fast.Response, got {type(self.response).__name__}"
            )
        if self.response.n_clusters != self.centroids.n_clusters:
            raise SketchMismatchError(
                f"the response has {self.response.n_clusters} counts but the centroids "
                f"have n_clusters={self.centroids.n_clusters}"
            )
        if self.response.centroids_fingerprint != self.centroids.fingerprint:
            raise SketchMismatchError(
                f"the response answers centroids {self.response.centroids_fingerprint[:16]}… "
                f"but these centroids are {self.centroids.fingerprint[:16]}…"
            )

    @classmethod
    def join(cls, centroids: Centroids, response: Response) -> Sketch:
        """Join after checking that ``response`` answers ``centroids``.

        Examples
        --------
        >>> import math, numpy as np, ecos_fast
        >>> cents = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
        >>> resp = ecos_fast.respond(np.eye(2), cents, math.inf, 1e-5)
        >>> ecos_fast.Sketch.join(cents, resp).n_clusters
        2
        """
        return cls(centroids, response)

    @property
    def n_clusters(self) -> int:
        """Number of clusters, R."""
        return self.centroids.n_clusters

    def weights(
        self,
        threshold: float = 0.0,
        weights: Literal["noisy", "posterior", "empirical-bayes"] = "noisy",
        smooth: Literal["none", "sure"] = "none",
    ) -> NDArray[np.float64]:
        """Cluster weights ``max(estimate - threshold * sigma, 0)``.

        The rule's :func:`ecos_fast.rule.cluster_weights` on this release (with
        ``smooth="sure"``, on the counts smoothed as :func:`ecos_fast.select` smooths
        them by default, :func:`ecos_fast.smoothing.smooth_counts`, each with its own
        sigma).

        Parameters
        ----------
        threshold : float, default 0.0
            Multiples of ``sigma`` to subtract (>= 0).
        weights : {"noisy", "posterior", "empirical-bayes"}, default "noisy"
            The estimate: the noisy count, its posterior mean under a flat prior, or
            under a prior fitted to the release
            (:func:`ecos_fast.rule.empirical_bayes_counts`).

        Returns
        -------
        ndarray of shape (n_clusters,), float64

        Examples
        --------
        >>> import math, numpy as np, ecos_fast
        >>> cents = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
        >>> resp = ecos_fast.respond(np.eye(2)[[0, 0, 1]], cents, math.inf, 1e-5)
        >>> ecos_fast.Sketch.join(cents, resp).weights().tolist()
        [2.0, 1.0]
        """
        r = self.response
        if check_choice(smooth, "smooth", SMOOTH) == "sure":
            sm = smooth_counts(r.noisy_counts, r.sigma, self.centroids.centroids)
            return cluster_weights(sm.counts, r.sigma * sm.noise, threshold, weights)
        return cluster_weights(r.noisy_counts, r.sigma, threshold, weights)
