"""Features from your own model, the bundled OCR-pretrained extractors, and a feature cache.

:func:`extract` runs any :class:`FeatureExtractor` over your data in batches: a torch
``nn.Module`` (:class:`TorchExtractor`, CPU or CUDA), an ``.onnx`` file
(:class:`OnnxExtractor`, onnxruntime) or one of the bundled OCR extractors below
(:class:`Extractor`). Data may be an ndarray, a tensor, a torch ``Dataset`` or a
``DataLoader``; the result is :class:`Features` (float32 rows in memory, or ``.npy``
shards under ``out_dir=`` with an ``extractor.json`` sidecar) carrying the extractor's
fingerprint: SHA-256 of its weights and of its preprocessing description.
:func:`ecos_fast.fit_centroids` records it and :func:`ecos_fast.respond` refuses a
client whose features carry another one (:class:`~ecos_fast.errors.SketchMismatchError`).

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

import abc
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecos_fast._validation import check_torch_device
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
    "FeatureExtractor",
    "FeatureSplit",
    "Features",
    "OnnxExtractor",
    "TorchExtractor",
    "cached_features",
    "check_extractor",
    "data_fingerprint",
    "default_extractor",
    "extract",
    "get_extractor",
    "load",
    "paper_split_features",
    "read_fingerprint",
    "sidecar_path",
    "warm_cache",
    "warm_cache_command",
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


def check_extractor(name: object) -> str:
    """``name`` if it is a bundled extractor (:data:`EXTRACTORS`), else InvalidInputError.

    >>> check_extractor("ppocr")
    'ppocr'
    """
    return _spec(name).name


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
            f"and pip install 'ecos-fast[data]' (onnx, onnxruntime)"
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


# ---------------------------------------------------------------- any model


#: Name of the sidecar JSON inside a folder of shards written by :func:`extract`.
SIDECAR_NAME = "extractor.json"
_SIDECAR_SCHEMA = "ecos-fast/features"
_SHARD_BYTES = 128 << 20  # default shard size: 128 MiB of float32 rows


def _describe_preprocessing(preprocessing: object) -> str:
    """The canonical text of a preprocessing description (hashed into the fingerprint)."""
    if preprocessing is None:
        return "none"
    if isinstance(preprocessing, str):
        return preprocessing
    if isinstance(preprocessing, (Mapping, list, tuple, int, float, bool)):
        try:
            return json.dumps(preprocessing, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidTypeError(
                f"preprocessing must be a str, JSON-serialisable data or an object with a "
                f"stable repr (e.g. a torchvision transform); {exc}"
            ) from None
    text = repr(preprocessing)
    if " at 0x" in text:  # a default object repr: its address changes from run to run
        raise InvalidInputError(
            f"preprocessing={text} has no stable repr (it shows a memory address); describe "
            f"the transform as a str or a dict instead"
        )
    return text


def _fingerprint(kind: str, parts: Iterable[bytes | memoryview], preprocessing: str) -> str:
    """SHA-256 over a tag, length-prefixed parts (streamed: no copy is kept) and the text."""
    h = hashlib.sha256(f"ecos-fast/extractor/v1|{kind}\0".encode())
    for part in parts:
        h.update(memoryview(part).nbytes.to_bytes(8, "little"))
        h.update(part)
    h.update(b"\0preprocessing\0" + preprocessing.encode("utf-8"))
    return h.hexdigest()


class FeatureExtractor(abc.ABC):
    """What :func:`extract` runs: batches of inputs in, float32 feature rows out.

    Implementations: :class:`TorchExtractor` (an ``nn.Module``), :class:`OnnxExtractor`
    (an ``.onnx`` file) and the bundled OCR :class:`Extractor`\\ s. Each has a
    :attr:`fingerprint`: SHA-256 of its weights and of its preprocessing description,
    so that two parties can check they computed features the same way.
    """

    #: Rows per model call when :func:`extract` is not told (``batch_size=None``).
    default_batch_size: int = 256
    #: Set when the model's batch axis is fixed (the ddddocr graph takes one image).
    fixed_batch_size: int | None = None

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short label for progress bars and the sidecar."""

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """64 hex digits identifying the weights and the preprocessing."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description (kind, name, preprocessing) for the sidecar."""

    @abc.abstractmethod
    def run_batch(self, batch: Any) -> NDArray[np.float32]:
        """Features of one batch, shape (batch_rows, n_features), float32."""

    def prepare_data(self, data: Any) -> Any:
        """Check or adapt ``data`` before batching (default: as it is)."""
        return data


def _torch() -> Any:
    """torch, or a ModuleNotFoundError with the pip line."""
    try:
        import torch
    except ImportError:
        raise ModuleNotFoundError(
            "features from a torch model need torch: pip install 'ecos-fast[apps]'"
        ) from None
    return torch


def _is_torch(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "torch" or any(
        c.__module__.split(".")[0] == "torch" for c in type(obj).__mro__[1:]
    )


class TorchExtractor(FeatureExtractor):
    """A torch ``nn.Module`` as a feature extractor: features are ``model(x)`` flattened.

    Parameters
    ----------
    model : torch.nn.Module
        Give the part of the network whose output you want as features (for example
        the backbone without its classifier). It runs in ``eval()`` mode under
        ``torch.inference_mode()`` (its training flag is restored afterwards) and is
        moved to ``device``.
    device : str or torch.device, optional
        ``"cuda"`` (or ``"cuda:1"``...) runs the batches on that GPU, ``"cpu"`` on the
        CPU; default: where the model's parameters already are (CPU if it has none).
    preprocessing : str, JSON-able data, or an object with a stable repr, optional
        What was done to the inputs before the model (resizing, normalisation, the
        ``transform`` of your Dataset): ecos-fast cannot see inside a Dataset, so
        describe it here, identically on both sides. Hashed into :attr:`fingerprint`.
    name : str, optional
        Label (default: the model's class name).

    Notes
    -----
    :attr:`fingerprint` hashes every ``state_dict`` entry (parameters and buffers)
    in sorted key order, with its name, dtype, shape and bytes, then the
    preprocessing text: the same weights and description give the same
    fingerprint on any machine; any changed weight, a different truncation point
    (other key names) or another description gives another one. Float64 numpy
    inputs are cast to float32; other dtypes are passed as they are.
    """

    def __init__(
        self,
        model: Any,
        *,
        device: Any = None,
        preprocessing: object = None,
        name: str | None = None,
    ) -> None:
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        if device is None:
            first = next(iter(model.parameters()), None)
            device = "cpu" if first is None else first.device
        self.device = check_torch_device(device)
        self.preprocessing = _describe_preprocessing(preprocessing)
        self._name = type(model).__name__ if name is None else str(name)
        self._fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            state = self.model.state_dict()
            uint8 = _torch().uint8

            def parts() -> Iterator[bytes | memoryview]:
                for key in sorted(state):  # one tensor on the CPU at a time
                    t = state[key].detach().to("cpu").contiguous().reshape(-1)
                    yield f"{key}|{t.dtype}|{tuple(state[key].shape)}".encode()
                    yield memoryview(t.view(uint8).numpy())

            self._fingerprint = _fingerprint("torch", parts(), self.preprocessing)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"kind": "torch", "name": self.name, "preprocessing": self.preprocessing}

    def run_batch(self, batch: Any) -> NDArray[np.float32]:
        torch = _torch()
        if isinstance(batch, np.ndarray):
            if batch.dtype == np.float64:
                batch = batch.astype(np.float32)
            batch = torch.from_numpy(np.ascontiguousarray(batch))
        if not isinstance(batch, torch.Tensor):
            raise InvalidTypeError(
                f"a batch must be a tensor or an ndarray, got {type(batch).__name__} (a Dataset "
                f"item should be a tensor, or a tuple whose first element is one)"
            )
        with torch.inference_mode():
            out = self.model(batch.to(self.device, non_blocking=True))
        if not isinstance(out, torch.Tensor):
            raise InvalidTypeError(
                f"the model returned {type(out).__name__}; it must return one tensor of features"
            )
        return np.ascontiguousarray(
            out.reshape(out.shape[0], -1).to("cpu", torch.float32).numpy(), dtype=np.float32
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Eval mode on ``device`` for the duration; the training flag is restored."""
        was_training = self.model.training
        self.model.to(self.device)
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)


class OnnxExtractor(FeatureExtractor):
    """An ``.onnx`` file as a feature extractor (onnxruntime).

    Parameters
    ----------
    path : str or PathLike
    output : str, optional
        The graph output (or any intermediate tensor) to use as features; default the
        first graph output. Flattened per row.
    input_name : str, optional
        Default: the graph's first input.
    device : {"cpu", "cuda"}, default "cpu"
        ``"cuda"`` needs onnxruntime's CUDA execution provider (``onnxruntime-gpu``).
    preprocessing : str, JSON-able data, or an object with a stable repr, optional
        As for :class:`TorchExtractor`.
    n_threads : int, optional
        onnxruntime's intra-op threads (default ``ECOS_FAST_NUM_THREADS``, else the CPUs).

    Notes
    -----
    :attr:`fingerprint` hashes the file's bytes, the output name and the
    preprocessing text. Float64 inputs are cast to float32.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        output: str | None = None,
        input_name: str | None = None,
        device: str = "cpu",
        preprocessing: object = None,
        n_threads: int | None = None,
    ) -> None:
        from ecos_fast._threads import resolve_threads

        self.path = Path(path)
        try:
            self._bytes = self.path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{self.path}: cannot read the ONNX model ({exc})") from None
        if device not in ("cpu", "cuda"):
            raise InvalidInputError(f"device={device!r} must be 'cpu' or 'cuda'")
        self.device = device
        self.preprocessing = _describe_preprocessing(preprocessing)
        self.n_threads = resolve_threads(n_threads)
        self._output = output
        self._input_name = input_name
        self._session: Any = None
        self._fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def session(self) -> Any:
        """The onnxruntime ``InferenceSession`` (created once)."""
        if self._session is None:
            import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

            providers = ["CPUExecutionProvider"]
            if self.device == "cuda":
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise InvalidInputError(
                        "device='cuda' but this onnxruntime has no CUDAExecutionProvider "
                        "(pip install onnxruntime-gpu)"
                    )
                providers.insert(0, "CUDAExecutionProvider")
            model_bytes = self._bytes
            if self._output is not None:
                import onnx

                model = onnx.load_from_string(model_bytes)
                produced = {o for node in model.graph.node for o in node.output}
                present = {o.name for o in model.graph.output}
                if self._output not in produced | present:
                    raise InvalidInputError(f"{self.path} has no tensor {self._output!r}")
                if self._output not in present:
                    model.graph.output.append(
                        onnx.helper.make_tensor_value_info(
                            self._output, onnx.TensorProto.FLOAT, None
                        )
                    )
                model_bytes = model.SerializeToString()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.n_threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                self._session = ort.InferenceSession(model_bytes, options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise InvalidInputError(
                    f"{self.path}: onnxruntime cannot load it ({exc})"
                ) from None
            if self._output is None:
                self._output = self._session.get_outputs()[0].name
            if self._input_name is None:
                self._input_name = self._session.get_inputs()[0].name
        return self._session

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self.session()  # resolves the default output's name, so both spellings agree
            out = "" if self._output is None else self._output
            self._fingerprint = _fingerprint(
                "onnx", [self._bytes, out.encode("utf-8")], self.preprocessing
            )
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "onnx",
            "name": self.name,
            "output": self._output,
            "preprocessing": self.preprocessing,
        }

    def run_batch(self, batch: Any) -> NDArray[np.float32]:
        session = self.session()
        x = np.asarray(batch.detach().cpu().numpy() if _is_torch(batch) else batch)
        if x.dtype == np.float64:
            x = x.astype(np.float32)
        (out,) = session.run([self._output], {self._input_name: np.ascontiguousarray(x)})
        out = np.asarray(out)
        return np.ascontiguousarray(out.reshape(out.shape[0], -1), dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Features:
    """Extracted features and the fingerprint of the extractor that made them.

    Returned by :func:`extract` and :func:`load`. Works wherever ecos-fast takes an
    array (``np.asarray(features)`` gives the matrix); :func:`ecos_fast.fit_centroids`
    records :attr:`extractor_fingerprint` in the centroids and
    :func:`ecos_fast.respond` checks the client's against it.

    Attributes
    ----------
    extractor_fingerprint : str
        64 hex digits (:attr:`FeatureExtractor.fingerprint`).
    extractor : dict
        Its description (kind, name, preprocessing).
    n_samples, n_features : int
    path : Path or None
        The folder of ``.npy`` shards (with ``extractor.json``), or the ``.npy`` file,
        holding the rows; None when they are only in memory.
    """

    extractor_fingerprint: str
    extractor: Mapping[str, Any]
    n_samples: int
    n_features: int
    path: Path | None = None
    _array: NDArray[np.float32] | None = field(default=None, repr=False)

    @property
    def array(self) -> NDArray[np.float32]:
        """The matrix, shape (n_samples, n_features), float32.

        In memory, or read from :attr:`path`: one file or one shard is memory-mapped
        (no copy); several shards are concatenated (one copy: pass :attr:`path` to
        the command line or to the Ray backend instead for pools larger than RAM).
        """
        if self._array is not None:
            return self._array
        if self.path is None:  # pragma: no cover - the constructor paths set one of them
            raise InvalidInputError("these Features hold neither an array nor a path")
        from ecos_fast.feature_files import load_features

        arr: NDArray[np.float32] = load_features(self.path)
        object.__setattr__(self, "_array", arr)  # read (or concatenated) once
        return arr

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.n_features)

    @property
    def dtype(self) -> np.dtype[np.float32]:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, key: Any) -> Any:
        return self.array[key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        arr = self.array
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return np.array(arr, copy=True) if copy else arr

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the rows to one ``.npy`` file and the fingerprint to its sidecar.

        The sidecar is ``<stem>.extractor.json`` beside the file (``pool.npy`` →
        ``pool.extractor.json``); ``ecos-fast sketch`` and ``respond`` read it.

        Returns
        -------
        Path
            The ``.npy`` file.
        """
        p = Path(path)
        if p.suffix != ".npy":
            raise InvalidInputError(f"{p}: features are saved as .npy; use a .npy name")
        _write_npy(p, self.array)
        _write_sidecar(sidecar_path(p), self, [p.name])
        return p


def _write(path: Path, data: bytes) -> None:
    from ecos_fast.atomic import write_atomically

    write_atomically(path, data)


def _write_npy(path: Path, rows: NDArray[np.float32]) -> None:
    """``np.save`` through the package's one atomic writer, streamed (no bytes copy)."""
    from ecos_fast.atomic import atomic_writer

    with atomic_writer(path) as f:
        np.save(f, np.ascontiguousarray(rows, dtype=np.float32), allow_pickle=False)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the extractor sidecar of a features path lives.

    ``DIR/extractor.json`` for a folder of shards, ``STEM.extractor.json`` beside a
    ``STEM.npy`` file.

    Examples
    --------
    >>> sidecar_path("pool.npy").name
    'pool.extractor.json'
    """
    p = Path(path)
    if p.is_dir() or p.suffix != ".npy":
        return p / SIDECAR_NAME
    return p.with_name(p.stem + ".extractor.json")


def _write_sidecar(path: Path, features: Features, shards: Sequence[str]) -> None:
    doc = {
        "schema": _SIDECAR_SCHEMA,
        "schema_version": 1,
        "extractor_fingerprint": features.extractor_fingerprint,
        "extractor": dict(features.extractor),
        "n_samples": features.n_samples,
        "n_features": features.n_features,
        "dtype": "float32",
        "shards": list(shards),
    }
    _write(path, (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode("utf-8"))


def read_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """The extractor fingerprint recorded beside features on disk, or None.

    Parameters
    ----------
    path : str or PathLike
        A ``.npy`` file or a folder of shards, as given to ``ecos-fast sketch`` or
        ``respond``.

    Returns
    -------
    str or None
        None when there is no sidecar (plain features: nothing can be checked).

    Raises
    ------
    InvalidInputError
        The sidecar is unreadable, malformed, or describes other rows (its
        ``n_samples``/``n_features`` or shard names differ from what ``path`` holds:
        a stale sidecar is refused, not trusted).
    """
    from ecos_fast.feature_files import list_shards, open_npy

    p = Path(path)
    side = sidecar_path(p)
    if not side.exists():
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{side}: cannot read the extractor sidecar ({exc})") from None
    fp = doc.get("extractor_fingerprint") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("schema") != _SIDECAR_SCHEMA
        or not isinstance(fp, str)
        or len(fp) != 64
        or any(c not in "0123456789abcdef" for c in fp)
    ):
        raise InvalidInputError(f"{side}: not an ecos-fast extractor sidecar")
    shards = list_shards(p) if p.is_dir() else [p]
    arrays = [open_npy(q) for q in shards]
    held = (sum(a.shape[0] for a in arrays), arrays[0].shape[1])
    said = (doc.get("n_samples"), doc.get("n_features"))
    names = [q.name for q in shards]
    if held != said or names != doc.get("shards"):
        raise InvalidInputError(
            f"{side} describes {said[0]} x {said[1]} features in {doc.get('shards')}, but "
            f"{p} holds {held[0]} x {held[1]} in {names}: the sidecar is stale"
        )
    return fp


def load(path: str | os.PathLike[str]) -> Features:
    """Features written by :func:`extract` (``out_dir=``) or :meth:`Features.save`.

    Parameters
    ----------
    path : str or PathLike
        The folder of shards or the ``.npy`` file; its sidecar must exist.

    Returns
    -------
    Features

    Raises
    ------
    InvalidInputError
        No sidecar, or one that does not describe these files.
    """
    p = Path(path)
    fp = read_fingerprint(p)
    if fp is None:
        raise InvalidInputError(f"{p}: no extractor sidecar {sidecar_path(p)}")
    doc = json.loads(sidecar_path(p).read_text(encoding="utf-8"))
    return Features(
        extractor_fingerprint=fp,
        extractor=doc.get("extractor", {}),
        n_samples=int(doc["n_samples"]),
        n_features=int(doc["n_features"]),
        path=p,
    )


def _as_extractor(
    model: Any, *, device: Any, preprocessing: object, n_threads: int | None
) -> FeatureExtractor:
    if isinstance(model, FeatureExtractor):
        if preprocessing is not None:
            raise InvalidInputError(
                "preprocessing= is given to the extractor's constructor, not to extract(), "
                "when model is already a FeatureExtractor"
            )
        return model
    if isinstance(model, str) and model in _SPECS:
        if preprocessing is not None:
            raise InvalidInputError(
                f"preprocessing= does not apply to the bundled {model!r} extractor, which "
                f"does its own (Extractor.PREPROCESSING)"
            )
        return get_extractor(model, n_threads=n_threads)
    if isinstance(model, (str, os.PathLike)):
        if Path(model).suffix != ".onnx":
            raise InvalidInputError(
                f"model={str(model)!r} is neither a bundled extractor ({', '.join(EXTRACTORS)}) "
                f"nor an .onnx file"
            )
        return OnnxExtractor(
            model,
            device="cpu" if device is None else str(device),
            preprocessing=preprocessing,
            n_threads=n_threads,
        )
    if _is_torch(model):
        return TorchExtractor(model, device=device, preprocessing=preprocessing)
    raise InvalidTypeError(
        f"model must be a torch.nn.Module, a path to an .onnx file, a bundled extractor name "
        f"or a FeatureExtractor; got {type(model).__name__}"
    )


def _batches(
    data: Any, batch_size: int, *, num_workers: int, pin_memory: bool
) -> tuple[Iterator[Any], int | None]:
    """Batches of ``data`` in row order, and the number of rows when known."""
    if isinstance(data, (list, tuple)):
        data = np.asarray(data)
    if isinstance(data, np.ndarray) or (_is_torch(data) and hasattr(data, "shape")):
        if len(data.shape) == 0:
            raise InvalidInputError("data is a scalar; give rows (n_samples, ...)")
        rows = int(data.shape[0])
        return (data[i : i + batch_size] for i in range(0, rows, batch_size)), rows
    if not _is_torch(data):
        raise InvalidTypeError(
            f"data must be an ndarray, a torch tensor, Dataset or DataLoader; got "
            f"{type(data).__name__}"
        )
    _torch()  # the pip line if torch is missing
    from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

    if isinstance(data, DataLoader):
        sampler = getattr(data.batch_sampler, "sampler", None)
        if isinstance(sampler, RandomSampler) or isinstance(data.sampler, RandomSampler):
            raise InvalidInputError(
                "the DataLoader shuffles (shuffle=True): feature rows must keep the dataset's "
                "order, since selected indices refer to it; use shuffle=False"
            )
        loader = data
    elif isinstance(data, (Dataset, IterableDataset)):
        loader = DataLoader(
            data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
            pin_memory=pin_memory,
        )  # fmt: skip
    else:
        raise InvalidTypeError(f"data of type {type(data).__name__} is not supported")
    n: int | None = None
    dataset = loader.dataset
    if not isinstance(dataset, IterableDataset) and hasattr(dataset, "__len__"):
        n = len(dataset)

    def first(batch: Any) -> Any:
        if isinstance(batch, (list, tuple)):
            if not batch:
                raise InvalidInputError("the DataLoader yielded an empty batch")
            batch = batch[0]
        if isinstance(batch, Mapping):
            raise InvalidTypeError(
                "the DataLoader yields dicts; give a Dataset whose items are tensors or "
                "(tensor, label) tuples"
            )
        return batch

    return (first(b) for b in loader), n


class _ShardWriter:
    """Rows appended in order, written as ``features-00000.npy``, ... of ``shard_rows`` rows."""

    def __init__(self, folder: Path, shard_rows: int | None) -> None:
        self.folder = folder
        self.shard_rows = shard_rows
        self.buffer: list[NDArray[np.float32]] = []
        self.buffered = 0
        self.names: list[str] = []

    def add(self, rows: NDArray[np.float32]) -> None:
        if self.shard_rows is None:
            self.shard_rows = max(1, _SHARD_BYTES // (4 * max(1, rows.shape[1])))
        while rows.shape[0]:
            take = min(rows.shape[0], self.shard_rows - self.buffered)
            self.buffer.append(rows[:take])
            self.buffered += take
            rows = rows[take:]
            if self.buffered == self.shard_rows:
                self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        name = f"features-{len(self.names):05d}.npy"
        _write_npy(self.folder / name, np.concatenate(self.buffer))
        self.names.append(name)
        self.buffer, self.buffered = [], 0


def extract(
    model: Any,
    data: Any = None,
    *,
    batch_size: int | None = None,
    device: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    shard_rows: int | None = None,
    preprocessing: object = None,
    num_workers: int = 0,
    progress: bool | None = None,
    n_threads: int | None = None,
) -> Any:
    """Features of ``data`` from your own model (torch or ONNX) or a bundled extractor.

    Parameters
    ----------
    model : torch.nn.Module, str or PathLike, or FeatureExtractor
        A torch module (its output, flattened per row, is the feature vector), a
        path to an ``.onnx`` file, a bundled extractor's name (``"ppocr"``, ...),
        or any :class:`FeatureExtractor`.
    data : ndarray, torch.Tensor, torch Dataset or DataLoader
        Rows in order (row ``i`` of the features is item ``i``). A Dataset item or a
        DataLoader batch may be a ``(input, label, ...)`` tuple: the first element is
        used. A shuffling DataLoader is refused. The bundled extractors take RGB
        ``uint8`` images of shape (n_samples, height, width, 3).
    batch_size : int, optional
        Rows per model call (default 256; the bundled extractors' own; a given
        DataLoader's batches are used as they come).
    device : str or torch.device, optional
        ``"cpu"`` or ``"cuda"``: where the torch model (or the ONNX CUDA provider)
        runs; a torch model is moved there. Default: a torch model stays where its
        parameters are; ONNX runs on the CPU.
    out_dir : str or PathLike, optional
        Write the rows straight to ``.npy`` shards in this folder
        (``features-00000.npy``, ...) plus ``extractor.json`` (the fingerprint), for
        pools larger than RAM; the folder must not hold ``.npy`` files already.
        ``ecos-fast sketch DIR`` and ``respond`` read the fingerprint from it.
    shard_rows : int, optional
        Rows per shard (default: 128 MiB of float32 rows).
    preprocessing : str, JSON-able data, or an object with a stable repr, optional
        Description of the preprocessing applied to ``data`` (for example your
        Dataset's transform), hashed into the fingerprint: give the same on both
        sides. Not used with a bundled extractor or a FeatureExtractor, which
        describe their own.
    num_workers : int, default 0
        DataLoader workers when ``data`` is a Dataset.
    progress : bool, optional
        tqdm bar; default on when stderr is a terminal.
    n_threads : int, optional
        onnxruntime threads (ONNX and bundled extractors).

    Returns
    -------
    Features
        float32 rows (in memory, or on disk under ``out_dir``) and
        ``extractor_fingerprint``.

    Raises
    ------
    InvalidInputError, InvalidTypeError
        Bad arguments, a shuffling DataLoader, a model that returns NaN/inf or rows of
        changing width, a non-empty ``out_dir``.
    ModuleNotFoundError
        torch is needed and missing (the message gives the pip line).

    Notes
    -----
    The fingerprint says which extractor made the features, not that the features
    are right: it hashes the weights (every ``state_dict`` tensor in sorted key
    order, or the ONNX file's bytes) and the preprocessing description, not the
    data, and not preprocessing that is not described. Two parties with the same
    weights and description get the same fingerprint on any device.

    The older form ``extract(images, "ppocr")`` (images first, a bundled name
    second) still works and returns a plain ndarray, as before.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    >>> feats = extract(net, torch.zeros(10, 3, 2, 2), batch_size=4)
    >>> feats.shape, feats.dtype.name, len(feats.extractor_fingerprint)
    ((10, 4), 'float32', 64)
    >>> extract(net, torch.ones(3, 3, 2, 2)).extractor_fingerprint == feats.extractor_fingerprint
    True
    """
    model_like = isinstance(model, (FeatureExtractor, str, os.PathLike)) or _is_torch(model)
    if isinstance(data, str) or (data is None and not model_like):
        # The original form: extract(images, extractor="ppocr") -> ndarray.
        return get_extractor(
            DEFAULT_EXTRACTOR if data is None else data, n_threads=n_threads
        ).extract(model, batch_size=batch_size, progress=progress)
    if data is None:
        raise InvalidInputError("extract(model, data): data is missing")
    extractor = _as_extractor(
        model, device=device, preprocessing=preprocessing, n_threads=n_threads
    )
    return _run(
        extractor,
        data,
        batch_size=batch_size,
        out_dir=out_dir,
        shard_rows=shard_rows,
        num_workers=num_workers,
        progress=progress,
        pin_memory=str(device).startswith("cuda"),
    )


def _check_count(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name}={value!r} must be an int >= {low}")
    return value


def _run(
    extractor: FeatureExtractor,
    data: Any,
    *,
    batch_size: int | None,
    out_dir: str | os.PathLike[str] | None,
    shard_rows: int | None,
    num_workers: int,
    progress: bool | None,
    pin_memory: bool = False,
    desc: str | None = None,
) -> Features:
    """The one batching loop behind :func:`extract` and :meth:`Extractor.extract`."""
    size = extractor.default_batch_size if batch_size is None else batch_size
    size = _check_count(size, "batch_size", 1)
    if extractor.fixed_batch_size is not None:
        size = extractor.fixed_batch_size
    _check_count(num_workers, "num_workers", 0)
    if shard_rows is not None:
        _check_count(shard_rows, "shard_rows", 1)
    data = extractor.prepare_data(data)
    batches, n = _batches(data, size, num_workers=num_workers, pin_memory=pin_memory)
    writer: _ShardWriter | None = None
    folder: Path | None = None
    if out_dir is not None:
        folder = Path(out_dir)
        if folder.exists() and not folder.is_dir():
            raise InvalidInputError(f"out_dir={str(folder)!r} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.glob("*.npy")) or (folder / SIDECAR_NAME).exists():
            raise InvalidInputError(
                f"out_dir={str(folder)!r} already holds .npy shards or {SIDECAR_NAME}; "
                f"give an empty folder (shards are read in name order)"
            )
        writer = _ShardWriter(folder, shard_rows)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = _progress(n, desc or f"{extractor.name} features", show)
    out: NDArray[np.float32] | None = None
    pieces: list[NDArray[np.float32]] = []
    rows = 0
    width: int | None = None
    context = (
        extractor.running() if isinstance(extractor, TorchExtractor) else contextlib.nullcontext()
    )
    try:
        with context:
            for batch in batches:
                feats = extractor.run_batch(batch)
                if feats.ndim != 2 or (width is not None and feats.shape[1] != width):
                    raise InvalidInputError(
                        f"the model gave a batch of shape {feats.shape} after batches of "
                        f"{width} features; every batch must give the same n_features"
                    )
                width = feats.shape[1]
                if not np.isfinite(feats).all():
                    raise InvalidInputError(
                        f"the {extractor.name} model produced NaN/inf features in rows "
                        f"{rows}-{rows + feats.shape[0] - 1}"
                    )
                if writer is not None:
                    writer.add(feats)
                elif n is not None:
                    if out is None:
                        out = np.empty((n, width), dtype=np.float32)
                    if rows + feats.shape[0] > n:
                        raise InvalidInputError(f"data yielded more than its len()={n} rows")
                    out[rows : rows + feats.shape[0]] = feats
                else:
                    pieces.append(feats)
                rows += feats.shape[0]
                bar.update(feats.shape[0])
    finally:
        bar.close()
    if n is not None and rows != n:
        raise InvalidInputError(f"data yielded {rows} rows but has len()={n}")
    if width is None:
        raise InvalidInputError("data holds no rows: nothing to extract")
    result = Features(
        extractor_fingerprint=extractor.fingerprint,
        extractor=extractor.describe(),
        n_samples=rows,
        n_features=width,
        path=folder,
        _array=None if writer is not None else (out if out is not None else np.concatenate(pieces)),
    )
    if writer is not None and folder is not None:
        writer.flush()
        _write_sidecar(folder / SIDECAR_NAME, result, writer.names)  # last: marks completion
    return result


class Extractor(FeatureExtractor):
    """A frozen pretrained CNN mapping RGB images to feature vectors.

    Build one with :func:`get_extractor`. The onnxruntime session is created on the
    first call, with the intermediate tensors of :attr:`spec` added as graph outputs.
    A :class:`FeatureExtractor` like any other: ``extract(get_extractor("ppocr"),
    images)`` returns :class:`Features` with a fingerprint; :meth:`extract` returns
    the plain array (the feature cache's path).

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
        self._fingerprint: str | None = None
        self.default_batch_size = spec.batch_size
        self.fixed_batch_size = 1 if spec.batch_size == 1 else None  # ddddocr's graph

    #: What :meth:`_prepare` and :meth:`_pool` do, hashed into the fingerprint.
    PREPROCESSING = (
        "RGB uint8 (n, h, w, 3); bilinear resize to {h}x{w} (half-pixel centres, edges "
        "clamped); {colour}; (x/255 - 0.5)/0.5; exposed tensors {outputs} averaged over "
        "their spatial/time axes and concatenated; feature version {version}"
    )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the ONNX file's bytes and of :attr:`PREPROCESSING` filled in."""
        if self._fingerprint is None:
            height, width = self.spec.input_size
            text = self.PREPROCESSING.format(
                h=height,
                w=width,
                colour="grey (0.299, 0.587, 0.114)" if self.name == "ddddocr" else "BGR",
                outputs=",".join(self.spec.outputs),
                version=FEATURE_VERSION,
            )
            data = model_path(self.name).read_bytes()
            self._fingerprint = _fingerprint(f"bundled/{self.name}", [data], text)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "bundled",
            "name": self.name,
            "package": f"{self.spec.package}=={self.spec.version}",
            "preprocessing": f"ecos_fast.features {self.name}, feature version {FEATURE_VERSION}",
        }

    def prepare_data(self, data: Any) -> Any:
        return _check_images(data) if isinstance(data, np.ndarray) else data

    def run_batch(self, batch: Any) -> NDArray[np.float32]:
        images = _check_images(
            np.asarray(batch.detach().cpu().numpy() if _is_torch(batch) else batch)
        )
        outputs = self.session().run(
            list(self.spec.outputs), {self.spec.input_name: self._prepare(images)}
        )
        return self._pool(outputs, images.shape[0])

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
        if batch_size is not None:
            _check_count(batch_size, "batch_size", 1)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        show = (n >= 2000 and sys.stderr.isatty()) if progress is None else bool(progress)
        # The same batching loop as extract(model, data): one interface for every model.
        return _run(
            self,
            images,
            batch_size=batch_size,
            out_dir=None,
            shard_rows=None,
            num_workers=0,
            progress=show,
        ).array


def _progress(total: int | None, desc: str, show: bool) -> Any:
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
    _cache.ensure_cache_dir()
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


def warm_cache_command() -> Any:
    """``ecos-fast features warm-cache`` (also ``python -m ecos_fast.features``)."""
    import click

    from ecos_fast._cli_output import THREADS, State, output_options

    @click.command(
        "warm-cache",
        help=(warm_cache.__doc__ or "").split("\n\n")[0],
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.option(
        "--preset", default="default", show_default=True, type=click.Choice(sorted(PRESETS))
    )
    @click.option(
        "--extractor",
        default=None,
        type=click.Choice(list(EXTRACTORS)),
        help="default: the preset's",
    )
    @click.option("--data-seed", type=click.IntRange(min=0), default=0, show_default=True)
    @THREADS
    @output_options
    @click.pass_context
    def warm(
        ctx: click.Context, preset: str, extractor: str | None, data_seed: int, threads: int | None
    ) -> None:
        state = ctx.ensure_object(State)
        if threads is not None:  # the ONNX extractors' threads (their n_threads default)
            os.environ["ECOS_FAST_NUM_THREADS"] = str(threads)
        timings = warm_cache(
            preset, extractor, data_seed=data_seed, progress=False if not state.progress else None
        )
        state.result(
            {
                "command": "features warm-cache",
                "seconds": timings,
                "cache": str(_cache.cache_dir()),
            },
            [f"{key:>18}: {seconds:7.1f} s" for key, seconds in timings.items()]
            + [f"cache: {_cache.cache_dir()}"],
        )

    return warm


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecos_fast.features``: ``ecos-fast features warm-cache`` with ``argv``
    (default ``sys.argv[1:]``), through :func:`ecos_fast._cli_output.run_command` and its error handling
    (a cache folder that cannot be used: exit 2 with the message, not a traceback)."""
    from ecos_fast._cli_output import run_command

    return run_command(
        warm_cache_command(),
        [*(sys.argv[1:] if argv is None else argv)],
        prog_name="python -m ecos_fast.features",
    )


if __name__ == "__main__":
    raise SystemExit(main())
