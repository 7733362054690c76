"""Frozen OCR-pretrained feature extractors (onnxruntime, CPU) and a feature cache.

Real pretrained CNNs ship inside pip wheels; nothing is downloaded at run time:

=========  ==========================================  ====  ==============================
name       model (inside the pinned wheel)             dim   exposed tensors
=========  ==========================================  ====  ==============================
ppocr      PP-OCRv4 text recognition,                  600   ``hardswish_57.tmp_0`` (480,
           ``rapidocr_onnxruntime==1.4.4``                   mean over h, w) and
           ``models/ch_PP-OCRv4_rec_infer.onnx``             ``transpose_51.tmp_0`` (120,
                                                             mean over time), concatenated
ddddocr    captcha OCR, ``ddddocr==1.6.1``             1024  ``380`` (mean over time)
           ``common_old.onnx``
ppocr-det  PP-OCRv4 text *detection* backbone           384  the last backbone stage
           (PPLCNetV3), same wheel,                          ``p2o.Add.215`` (stride 32),
           ``models/ch_PP-OCRv4_det_infer.onnx``             mean over h, w
ppocr-det- the same backbone, all four stages          720  ``p2o.Add.43`` (48),
stages                                                       ``p2o.Add.71`` (96),
                                                             ``p2o.Add.147`` (192),
                                                             ``p2o.Add.215`` (384), each
                                                             averaged over h, w
=========  ==========================================  ====  ==============================

They are OCR-pretrained, not ImageNet-pretrained: say "OCR-pretrained features" when
reporting results. ``ppocr`` is the default of the ``default`` and ``small`` presets
(faster, batched); ``ppocr-det`` (trained to find text, not to read it: less specific
to the digit task) is the default of the ``hard`` preset (:func:`default_extractor`).

Features of each domain split are cached on disk (see
:func:`ecos_fast.datasets.cache_dir`), keyed by domain, split, size, data seed and
extractor, so every client domain and seed of an experiment reuses them.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecos_fast.datasets import _cache
from ecos_fast.datasets.digits import (
    DATA_VERSION,
    HARD_DOMAINS,
    PRESETS,
    FontSplit,
    Split,
    check_domain,
    check_preset,
    check_seed,
    check_split,
    preset_domains,
    preset_fonts,
)
from ecos_fast.datasets.split import (
    check_domains,
    check_private_fraction,
    check_private_size,
    data_tag,
    hard_tag,
    load_domain,
    private_rows,
    resolve_sizes,
    split_key,
)
from ecos_fast.errors import InvalidInputError, InvalidTypeError

__all__ = [
    "DEFAULT_EXTRACTOR",
    "EXTRACTORS",
    "Extractor",
    "ExtractorSpec",
    "FeatureSplit",
    "cached_features",
    "data_fingerprint",
    "default_extractor",
    "extract",
    "get_extractor",
    "paper_split_features",
    "warm_cache",
]

#: Bumped whenever preprocessing or pooling changes, so older cached features are rebuilt.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class ExtractorSpec:
    """Where a pretrained model lives and how to read features out of it.

    Attributes
    ----------
    name : str
    package : str
        Importable package holding the model (found without importing it).
    version : str
        Pinned package version; the tensor names belong to that exact file.
    model_file : str
        Path of the ``.onnx`` file inside the package.
    input_name : str
    outputs : tuple of str
        Intermediate tensors exposed as graph outputs and pooled into the features.
    dim : int
        Feature dimension ``n_features``.
    input_size : tuple of int
        ``(height, width)`` the images are resized to.
    batch_size : int
        Images per ``run`` (the ddddocr graph is fixed at batch 1).
    licence : str
    only_exposed : bool
        Make the exposed tensors the graph's only outputs, so that onnxruntime drops the
        layers after them (the detector's neck and head).
    """

    name: str
    package: str
    version: str
    model_file: str
    input_name: str
    outputs: tuple[str, ...]
    dim: int
    input_size: tuple[int, int]
    batch_size: int
    licence: str
    only_exposed: bool = False


_SPECS: dict[str, ExtractorSpec] = {
    "ppocr": ExtractorSpec(
        name="ppocr",
        package="rapidocr_onnxruntime",
        version="1.4.4",
        model_file="models/ch_PP-OCRv4_rec_infer.onnx",
        input_name="x",
        outputs=("hardswish_57.tmp_0", "transpose_51.tmp_0"),
        dim=600,
        input_size=(48, 48),
        batch_size=32,
        licence="Apache-2.0",
    ),
    "ddddocr": ExtractorSpec(
        name="ddddocr",
        package="ddddocr",
        version="1.6.1",
        model_file="common_old.onnx",
        input_name="input1",
        outputs=("380",),
        dim=1024,
        input_size=(64, 64),
        batch_size=1,
        licence="MIT",
    ),
    "ppocr-det": ExtractorSpec(
        name="ppocr-det",
        package="rapidocr_onnxruntime",
        version="1.4.4",
        model_file="models/ch_PP-OCRv4_det_infer.onnx",
        input_name="x",
        # The last stage of the PPLCNetV3 backbone (stride 32), one of the four tensors
        # the detector's FPN neck reads; averaged over h, w.
        outputs=("p2o.Add.215",),
        dim=384,
        input_size=(64, 64),
        batch_size=32,
        licence="Apache-2.0",
        only_exposed=True,
    ),
    "ppocr-det-stages": ExtractorSpec(
        name="ppocr-det-stages",
        package="rapidocr_onnxruntime",
        version="1.4.4",
        model_file="models/ch_PP-OCRv4_det_infer.onnx",
        input_name="x",
        # All four backbone stages (strides 4, 8, 16, 32), each averaged over h, w.
        outputs=("p2o.Add.43", "p2o.Add.71", "p2o.Add.147", "p2o.Add.215"),
        dim=720,
        input_size=(64, 64),
        batch_size=32,
        licence="Apache-2.0",
        only_exposed=True,
    ),
}

#: Names accepted by :func:`get_extractor`.
EXTRACTORS: tuple[str, ...] = tuple(_SPECS)
#: The extractor used when none is named (``default`` and ``small`` presets).
DEFAULT_EXTRACTOR = "ppocr"
#: The hard preset's extractor, chosen by the linear probes of docs/data_section.md.
HARD_EXTRACTOR = "ppocr-det"


def default_extractor(preset: str = "default") -> str:
    """The extractor a preset uses when none is named.

    ``ppocr`` for ``default`` and ``small``; ``ppocr-det`` for ``hard``, whose less
    task-specific features keep linear probes well below 100 %.

    Examples
    --------
    >>> default_extractor("default"), default_extractor("hard")
    ('ppocr', 'ppocr-det')
    """
    return HARD_EXTRACTOR if check_preset(preset) == "hard" else DEFAULT_EXTRACTOR


def _spec(name: object) -> ExtractorSpec:
    if not isinstance(name, str):
        raise InvalidTypeError(f"extractor must be a str, got {type(name).__name__}")
    if name not in _SPECS:
        raise InvalidInputError(f"extractor={name!r} is not one of {', '.join(EXTRACTORS)}")
    return _SPECS[name]


def model_path(name: str) -> Path:
    """The ``.onnx`` file of an extractor, inside its installed package.

    Raises
    ------
    ModuleNotFoundError
        The package is not installed (the message gives the pip line).
    """
    spec = _spec(name)
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(
            f"the {spec.name} extractor needs the package {spec.package}=={spec.version}: "
            f"pip install --no-deps {spec.package.replace('_', '-')}=={spec.version} "
            f"onnx onnxruntime  (see deps/pip-data.txt)"
        )
    path = Path(found.origin).parent / spec.model_file
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: install {spec.package.replace('_', '-')}=={spec.version}"
        )
    return path


def _resize_matrix(n_out: int, n_in: int) -> NDArray[np.float32]:
    """Bilinear interpolation as a matrix (half-pixel centres, edges clamped)."""
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    centres = np.clip(centres, 0.0, n_in - 1.0)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = centres - low
    matrix[np.arange(n_out), low] += 1.0 - frac
    matrix[np.arange(n_out), high] += frac
    return matrix.astype(np.float32)


def _check_images(images: object) -> NDArray[np.uint8]:
    if not isinstance(images, np.ndarray):
        raise InvalidTypeError(
            f"images must be a numpy array of shape (n_samples, height, width, 3), "
            f"got {type(images).__name__}"
        )
    if images.dtype != np.uint8:
        raise InvalidTypeError(f"images must have dtype uint8 (RGB 0-255), got {images.dtype}")
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] < 2 or images.shape[2] < 2:
        raise InvalidInputError(
            f"images must have shape (n_samples, height, width, 3), got {images.shape}"
        )
    return images


class Extractor:
    """A frozen pretrained CNN mapping RGB images to feature vectors.

    Build one with :func:`get_extractor`. The onnxruntime session is created on the
    first call, with the intermediate tensors of :attr:`spec` added as graph outputs.

    Attributes
    ----------
    spec : ExtractorSpec
    n_threads : int
        Threads given to onnxruntime.
    """

    def __init__(self, spec: ExtractorSpec, n_threads: int) -> None:
        self.spec = spec
        self.n_threads = n_threads
        self._session: Any = None

    @property
    def name(self) -> str:
        """Extractor name."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Feature dimension ``n_features``."""
        return self.spec.dim

    def __repr__(self) -> str:
        return f"Extractor(name={self.name!r}, dim={self.dim}, n_threads={self.n_threads})"

    def session(self) -> Any:
        """The onnxruntime ``InferenceSession`` (created once)."""
        if self._session is None:
            import onnx
            import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

            model = onnx.load(str(model_path(self.name)))
            produced = {out for node in model.graph.node for out in node.output}
            missing = [t for t in self.spec.outputs if t not in produced]
            if missing:
                raise InvalidInputError(
                    f"{model_path(self.name)} has no tensor(s) {missing}: the extractor needs "
                    f"{self.spec.package}=={self.spec.version} exactly"
                )
            if self.spec.only_exposed:
                del model.graph.output[:]
            present = {o.name for o in model.graph.output}
            for tensor in self.spec.outputs:
                if tensor not in present:
                    model.graph.output.append(
                        onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None)
                    )
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.n_threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # the exposed outputs trigger shape warnings
            self._session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        return self._session

    def _prepare(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Resize, recolour and normalise a batch to the model's input layout."""
        height, width = self.spec.input_size
        rows = _resize_matrix(height, batch.shape[1])
        cols = _resize_matrix(width, batch.shape[2])
        x = batch.astype(np.float32)
        if self.name == "ddddocr":  # grey, 1 channel
            x = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            x = np.einsum("ij,njk,lk->nil", rows, x, cols, optimize=True)[:, None]
        else:  # PP-OCR expects BGR
            x = np.einsum("ij,njkc,lk->ncil", rows, x[..., ::-1], cols, optimize=True)
        x = (np.clip(x, 0.0, 255.0) / 255.0 - 0.5) / 0.5
        return np.ascontiguousarray(x, dtype=np.float32)

    def _pool(self, outputs: Sequence[NDArray[np.float32]], n: int) -> NDArray[np.float32]:
        """Average the exposed tensors over their spatial/time axes and concatenate."""
        if self.name == "ddddocr":
            (seq,) = outputs  # (T, 1024) or (T, 1, 1024) for one image
            pooled = seq.reshape(-1, seq.shape[-1]).mean(axis=0, keepdims=True)
        elif self.name.startswith("ppocr-det"):  # (n, c, h, w) backbone stage outputs
            pooled = np.concatenate([stage.mean(axis=(2, 3)) for stage in outputs], axis=1)
        else:
            conv, seq = outputs  # (n, 480, h, w), (n, T, 120)
            pooled = np.concatenate([conv.mean(axis=(2, 3)), seq.mean(axis=1)], axis=1)
        return np.asarray(pooled, dtype=np.float32).reshape(n, self.dim)

    def extract(
        self,
        images: NDArray[np.uint8],
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> NDArray[np.float32]:
        """Features of a batch of RGB images.

        Parameters
        ----------
        images : ndarray of shape (n_samples, height, width, 3), dtype uint8
            RGB images of any size (resized to the model's input).
        batch_size : int, optional
            Images per inference call (default: the spec's).
        progress : bool, optional
            Show a tqdm bar; default: on for 2,000+ images when stderr is a terminal.

        Returns
        -------
        ndarray of shape (n_samples, n_features), dtype float32

        Examples
        --------
        >>> ex = get_extractor("ppocr")
        >>> ex.extract(np.zeros((2, 32, 32, 3), dtype=np.uint8)).shape
        (2, 600)
        """
        images = _check_images(images)
        n = images.shape[0]
        size = self.spec.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidInputError(f"batch_size={size!r} must be an int >= 1")
        if self.spec.batch_size == 1:
            size = 1  # the graph's batch axis is fixed at 1
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        session = self.session()
        show = (n >= 2000 and sys.stderr.isatty()) if progress is None else bool(progress)
        bar = _progress(n, f"{self.name} features", show)
        try:
            for start in range(0, n, size):
                batch = images[start : start + size]
                outputs = session.run(
                    list(self.spec.outputs), {self.spec.input_name: self._prepare(batch)}
                )
                out[start : start + len(batch)] = self._pool(outputs, len(batch))
                bar.update(len(batch))
        finally:
            bar.close()
        if not np.isfinite(out).all():
            raise InvalidInputError(f"the {self.name} model produced NaN/inf features")
        return out


def _progress(total: int, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

    return tqdm(total=total, desc=desc, unit="img", disable=not show, leave=False)


@functools.lru_cache(maxsize=8)
def _extractor(name: str, n_threads: int) -> Extractor:
    return Extractor(_SPECS[name], n_threads)


def get_extractor(name: str = DEFAULT_EXTRACTOR, *, n_threads: int | None = None) -> Extractor:
    """The (shared, lazily loaded) extractor called ``name``.

    Parameters
    ----------
    name : {"ppocr", "ddddocr", "ppocr-det", "ppocr-det-stages"}
    n_threads : int, optional
        onnxruntime threads; default ``ECOS_FAST_NUM_THREADS``, else the CPUs allowed.

    Examples
    --------
    >>> get_extractor("ddddocr").dim, get_extractor("ppocr-det").dim
    (1024, 384)
    """
    from ecos_fast._threads import resolve_threads

    spec = _spec(name)
    return _extractor(spec.name, resolve_threads(n_threads))


def extract(
    images: NDArray[np.uint8],
    extractor: str = DEFAULT_EXTRACTOR,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
    n_threads: int | None = None,
) -> NDArray[np.float32]:
    """Features of RGB images from a frozen OCR-pretrained CNN.

    Parameters
    ----------
    images : ndarray of shape (n_samples, height, width, 3), dtype uint8
    extractor : {"ppocr", "ddddocr", "ppocr-det", "ppocr-det-stages"}, default "ppocr"
    batch_size : int, optional
    progress : bool, optional
        tqdm bar; default on for long runs when stderr is a terminal.
    n_threads : int, optional

    Returns
    -------
    ndarray of shape (n_samples, n_features), dtype float32
        ``n_features`` is 600 (ppocr), 1024 (ddddocr), 384 (ppocr-det) or 720
        (ppocr-det-stages).

    Examples
    --------
    >>> extract(np.full((3, 32, 32, 3), 255, dtype=np.uint8)).shape
    (3, 600)
    """
    return get_extractor(extractor, n_threads=n_threads).extract(
        images, batch_size=batch_size, progress=progress
    )


def _extractor_tag(extractor: str) -> str:
    spec = _spec(extractor)
    return f"{spec.name}{spec.version}-f{FEATURE_VERSION}"


def feature_key(
    name: str, split: Split, n: int, seed: int, extractor: str, fonts: FontSplit = "all"
) -> str:
    """Cache key of a domain split's features (image key + extractor and its version)."""
    return f"{split_key(name, split, n, seed, fonts)}.{_extractor_tag(extractor)}"


def cached_features(
    domain: str,
    split: Split = "train",
    *,
    n: int | None = None,
    seed: int = 0,
    preset: str = "default",
    extractor: str | None = None,
    progress: bool | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Features and labels of one domain split, from the disk cache or built once.

    The key is (domain, split, ``n``, ``seed``, extractor and its version, and the data
    tag of :func:`ecos_fast.datasets.split.data_tag`). A corrupt entry (checksum
    mismatch, unreadable) triggers a :class:`~ecos_fast.datasets.CacheWarning` and a rebuild.

    Parameters
    ----------
    domain : str
        One of :data:`ecos_fast.datasets.ALL_DOMAINS`.
    split : {"train", "test"}
    n : int, optional
        Number of images; ``None``: the preset's size.
    seed : int, default 0
        Data seed (as in :func:`ecos_fast.datasets.load_domain`).
    preset : {"default", "small", "hard"}
        Sizes when ``n`` is ``None``; ``hard`` also renders held-out test fonts.
    extractor : {"ppocr", "ddddocr", "ppocr-det", "ppocr-det-stages"}, optional
        Default: :func:`default_extractor` of the preset.
    progress : bool, optional

    Returns
    -------
    features : ndarray of shape (n, n_features), dtype float32
    labels : ndarray of shape (n,), dtype int64

    Examples
    --------
    >>> feats, labels = cached_features("hershey", "test", n=10)
    >>> feats.shape, labels.shape
    ((10, 600), (10,))
    """
    domain = check_domain(domain)
    split = check_split(split)
    seed = check_seed(seed)
    preset = check_preset(preset)
    spec = _spec(default_extractor(preset) if extractor is None else extractor)
    if n is None:
        if domain not in PRESETS[preset]:
            raise InvalidInputError(
                f"domain={domain!r} is not in preset {preset!r}; pass n= or preset='hard'"
            )
        n = PRESETS[preset][domain][0 if split == "train" else 1]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n={n!r} must be an int >= 0")
    key = feature_key(domain, split, n, seed, spec.name, preset_fonts(preset))
    features = _cache.load_array("features", key, dtype=np.float32, shape=(n, spec.dim))
    labels = _cache.load_array("features", key + ".labels", dtype=np.int64, shape=(n,))
    if features is not None and labels is not None:
        return features, labels
    images, labels = load_domain(domain, split, n, seed, preset=preset)
    features = extract(images, spec.name, progress=progress)
    _cache.save_array("features", key, features)
    _cache.save_array("features", key + ".labels", labels)
    return features, labels


def data_fingerprint(
    preset: str = "default",
    extractor: str | None = None,
    *,
    data_seed: int = 0,
    domains: Sequence[str] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> str:
    """A string that changes whenever the features of a preset's domain splits would.

    It covers the recipe version (``DATA_VERSION``), the data tag (font fingerprint and the
    NumPy/Pillow/FreeType versions), the hard recipes' tag (hard preset only), the
    extractor with its package and feature versions, the preset, its domains and split
    sizes, and ``data_seed``. :meth:`FeatureSplit.fingerprint` adds the client, the seed
    and the private-set parameters. Use it in cache keys of anything computed from
    features (centroids, selections).

    Examples
    --------
    >>> a = data_fingerprint("hard")
    >>> a == data_fingerprint("hard", "ppocr-det"), a == data_fingerprint("hard", data_seed=1)
    (True, False)
    """
    preset = check_preset(preset)
    spec = _spec(default_extractor(preset) if extractor is None else extractor)
    data_seed = check_seed(data_seed, "data_seed")
    domains = tuple(preset_domains(preset) if domains is None else domains)
    table = resolve_sizes(preset, sizes, domains)
    parts = [
        f"data-v{DATA_VERSION}",
        data_tag(),
        hard_tag()
        if preset_fonts(preset) == "heldout" or set(domains) & set(HARD_DOMAINS)
        else "-",
        _extractor_tag(spec.name),
        f"preset={preset}",
        ",".join(f"{d}:{table[d][0]}/{table[d][1]}" for d in domains),
        f"data_seed={data_seed}",
    ]
    return "data-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureSplit:
    """:class:`ecos_fast.datasets.PaperSplit` in feature space (same rows, same order).

    Attributes
    ----------
    client_domain, seed, data_seed, extractor : str, int, int, str
    domains : tuple of str
    private_features : ndarray of shape (n_private, n_features), float32
    private_labels : ndarray of shape (n_private,), int64
    pool_features : ndarray of shape (n_pool, n_features), float32
    pool_labels : ndarray of shape (n_pool,), int64
        Labels 0-9, and 10 for ``junk`` ("not a digit") in the hard preset.
    pool_domains : ndarray of shape (n_pool,), int64
        Index into ``domains`` (for analysis only).
    test_features : ndarray of shape (n_test, n_features), float32
    test_labels : ndarray of shape (n_test,), int64
    preset : str
    private_fraction : float
        Share asked to go private (ignored when ``private_size`` is set).
    private_size : int or None
        Number of private samples asked for, overriding ``private_fraction``.
    sizes : tuple of (str, int, int)
        ``(domain, n_train, n_test)`` of every domain, as used.
    """

    client_domain: str
    seed: int
    data_seed: int
    extractor: str
    domains: tuple[str, ...]
    private_features: NDArray[np.float32]
    private_labels: NDArray[np.int64]
    pool_features: NDArray[np.float32]
    pool_labels: NDArray[np.int64]
    pool_domains: NDArray[np.int64]
    test_features: NDArray[np.float32]
    test_labels: NDArray[np.int64]
    preset: str = "default"
    private_fraction: float = 0.5
    private_size: int | None = None
    sizes: tuple[tuple[str, int, int], ...] = ()

    @property
    def n_classes(self) -> int:
        """Number of labels the pool can hold: 11 with ``junk`` (label 10), else 10."""
        return 11 if "junk" in self.domains else 10

    def fingerprint(self) -> str:
        """A string that changes whenever any input of this split does.

        :func:`data_fingerprint` (recipe and feature versions, fonts, extractor, preset,
        domains, sizes, ``data_seed``) plus the client domain, ``seed``,
        ``private_fraction`` and ``private_size``.

        Examples
        --------
        >>> from ecos_fast.datasets import DOMAINS
        >>> tiny = {d: (20, 10) for d in DOMAINS}
        >>> a = paper_split_features("optdigits", sizes=tiny).fingerprint()
        >>> b = paper_split_features("optdigits", sizes=tiny, private_size=4).fingerprint()
        >>> a.startswith("split-"), a == b
        (True, False)
        """
        sizes = {d: (n_train, n_test) for d, n_train, n_test in self.sizes}
        parts = (
            data_fingerprint(
                self.preset,
                self.extractor,
                data_seed=self.data_seed,
                domains=self.domains,
                sizes=sizes,
            ),
            f"client={self.client_domain}",
            f"seed={self.seed}",
            f"private_fraction={self.private_fraction!r}",
            f"private_size={self.private_size!r}",
        )
        return "split-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def paper_split_features(
    client_domain: str,
    preset: str = "default",
    seed: int = 0,
    *,
    data_seed: int = 0,
    extractor: str | None = None,
    domains: Sequence[str] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    private_fraction: float = 0.5,
    private_size: int | None = None,
    progress: bool | None = None,
) -> FeatureSplit:
    """The paper's split (:func:`ecos_fast.datasets.paper_split`) as cached features.

    Row for row the same samples as ``paper_split`` with the same arguments, but built
    from per-domain cached features, so no image is rendered once the cache is warm.

    Parameters
    ----------
    client_domain : str
        A client domain of the preset (:func:`ecos_fast.datasets.client_domains`).
    preset : {"default", "small", "hard"}
    seed : int, default 0
        Seed of the private/pool split.
    data_seed : int, default 0
    extractor : {"ppocr", "ddddocr", "ppocr-det", "ppocr-det-stages"}, optional
        Default: :func:`default_extractor` of the preset.
    domains : sequence of str, optional
        Default: the preset's domains.
    sizes : mapping of str to (int, int), optional
    private_fraction : float, default 0.5
    private_size : int, optional
        Number of private samples, overriding ``private_fraction``; in
        ``[1, n_train - 1]``. They leave the pool, as with a fraction.
    progress : bool, optional

    Returns
    -------
    FeatureSplit

    Raises
    ------
    InvalidInputError
        As :func:`ecos_fast.datasets.paper_split`.
    InvalidTypeError
        A ``private_size`` that is not an int.

    Examples
    --------
    >>> from ecos_fast.datasets import DOMAINS
    >>> s = paper_split_features("optdigits", sizes={d: (20, 10) for d in DOMAINS})
    >>> s.private_features.shape, s.pool_features.shape
    ((10, 600), (130, 600))
    >>> s = paper_split_features("optdigits", sizes={d: (20, 10) for d in DOMAINS},
    ...                          private_size=3)
    >>> s.private_features.shape, s.pool_features.shape, s.private_size
    ((3, 600), (137, 600), 3)
    """
    preset = check_preset(preset)
    domains, client_domain = check_domains(domains, preset, client_domain)
    seed = check_seed(seed)
    data_seed = check_seed(data_seed, "data_seed")
    private_fraction = check_private_fraction(private_fraction)
    spec = _spec(default_extractor(preset) if extractor is None else extractor)
    table = resolve_sizes(preset, sizes, domains)

    n_client = table[client_domain][0]
    private_size = check_private_size(private_size, n_client, client_domain)
    private_index = private_rows(n_client, seed, private_fraction, private_size)
    private_features = np.zeros((0, spec.dim), dtype=np.float32)
    private_labels = np.zeros(0, dtype=np.int64)
    pool_features, pool_labels, pool_domains = [], [], []
    for domain_id, name in enumerate(domains):
        n_train = table[name][0]
        feats, labels = cached_features(
            name,
            "train",
            n=n_train,
            seed=data_seed,
            preset=preset,
            extractor=spec.name,
            progress=progress,
        )
        rows = np.arange(n_train, dtype=np.int64)
        if name == client_domain:
            private_features, private_labels = feats[private_index], labels[private_index]
            rows = np.setdiff1d(rows, private_index)
        pool_features.append(feats[rows])
        pool_labels.append(labels[rows])
        pool_domains.append(np.full(len(rows), domain_id, dtype=np.int64))
    test_features, test_labels = cached_features(
        client_domain,
        "test",
        n=table[client_domain][1],
        seed=data_seed,
        preset=preset,
        extractor=spec.name,
        progress=progress,
    )
    return FeatureSplit(
        client_domain=client_domain,
        seed=seed,
        data_seed=data_seed,
        extractor=spec.name,
        domains=domains,
        private_features=private_features,
        private_labels=private_labels,
        pool_features=np.concatenate(pool_features),
        pool_labels=np.concatenate(pool_labels),
        pool_domains=np.concatenate(pool_domains),
        test_features=test_features,
        test_labels=test_labels,
        preset=preset,
        private_fraction=private_fraction,
        private_size=private_size,
        sizes=tuple((d, table[d][0], table[d][1]) for d in domains),
    )


def warm_cache(
    preset: str = "default",
    extractor: str | None = None,
    *,
    data_seed: int = 0,
    domains: Sequence[str] | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Build (or load) the cached images and features of every domain split.

    Returns
    -------
    dict of str to float
        Seconds spent per ``"domain/split"``, plus ``"total"``.
    """
    preset = check_preset(preset)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for name in preset_domains(preset) if domains is None else domains:
        for split in ("train", "test"):
            t0 = time.perf_counter()
            cached_features(
                name, split, seed=data_seed, preset=preset, extractor=extractor, progress=progress
            )
            timings[f"{name}/{split}"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecos_fast.features``: warm the feature cache and print timings."""
    parser = argparse.ArgumentParser(
        prog="python -m ecos_fast.features", description=warm_cache.__doc__
    )
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument(
        "--extractor", default=None, choices=EXTRACTORS, help="default: the preset's"
    )
    parser.add_argument("--data-seed", type=int, default=0)
    args = parser.parse_args(argv)
    timings = warm_cache(args.preset, args.extractor, data_seed=args.data_seed, progress=None)
    for key, seconds in timings.items():
        print(f"{key:>18}: {seconds:7.1f} s")
    print(f"cache: {_cache.cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
