"""Models and seeded trainers shared by the three applications (torch).

=================  ==========================================================
model              what it is
=================  ==========================================================
``"head"``         MLP head on frozen OCR-pretrained features (the default):
                   standardise -> Linear(d, 256) -> ReLU -> Dropout -> Linear(256, C)
``"linear"``       standardise -> Linear(d, C)
``"teacher"``      the larger head used as the compression teacher:
                   standardise -> 2 x [Linear(., 1024) -> ReLU -> Dropout] -> Linear
``"cnn"``          a small CNN on the 32x32 RGB images themselves
                   (2 conv blocks, 16/32 channels, then Linear(2048, 128) -> Linear(128, C))
=================  ==========================================================

The standardisation (per-feature mean and standard deviation) is fitted on the
training inputs of each model and stored in the model's buffers, so a model can
be shipped to the client and applied to raw features.

Reproducibility: every trainer runs under :func:`seeded`, which seeds torch,
switches on ``torch.use_deterministic_algorithms`` and fixes the number of CPU
threads; mini-batches are drawn from a ``torch.Generator`` seeded from ``seed``.
On CPU the same arguments give bit-identical models.

Hyper-parameters (:class:`TrainConfig`) were fixed before any run on a test split
(Adam, lr 1e-3, weight decay 1e-4, batch 128, at least 400 optimiser steps);
see ``docs/results.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from ecos_fast._validation import check_torch_device

__all__ = [
    "MODELS",
    "Classifier",
    "ModelKind",
    "TrainConfig",
    "distill",
    "progress_enabled",
    "pseudo_label",
    "resolve_device",
    "seeded",
    "train_classifier",
    "train_semi_supervised",
]

ModelKind = Literal["head", "linear", "teacher", "cnn"]
MODELS: tuple[str, ...] = ("head", "linear", "teacher", "cnn")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (one set for every method, fixed in advance).

    Attributes
    ----------
    epochs : int
        Passes over the training set; at least ``min_steps`` optimiser steps are
        taken whatever the set's size, so that small budgets are not under-trained.
    min_steps : int
    batch_size : int
    lr, weight_decay : float
        Adam's learning rate and L2 weight decay.
    hidden : int
        Width of the ``"head"`` model's hidden layer.
    dropout : float
    device : str or None
        ``None``: CUDA when available, else CPU.
    n_threads : int or None
        torch CPU threads; ``None``: ``ECOS_FAST_NUM_THREADS`` or torch's default.
    progress : bool or None
        tqdm bars; ``None``: only when stderr is a terminal.
    """

    epochs: int = 30
    min_steps: int = 400
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 256
    dropout: float = 0.1
    device: str | None = None
    n_threads: int | None = None
    progress: bool | None = None

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


def progress_enabled(progress: bool | None) -> bool:
    """Whether to draw tqdm bars: ``progress`` if given, else stderr is a terminal."""
    if progress is not None:
        return progress
    return sys.stderr.isatty()


def resolve_device(device: str | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return check_torch_device(device)  # type: ignore[no-any-return]


def _threads(n_threads: int | None) -> int | None:
    if n_threads is not None:
        return int(n_threads)
    env = os.environ.get("ECOS_FAST_NUM_THREADS")
    return int(env) if env else None


@contextlib.contextmanager
def seeded(seed: int, n_threads: int | None = None) -> Iterator[torch.Generator]:
    """Seed torch, force deterministic kernels and fix the CPU thread count.

    Yields a CPU ``torch.Generator`` seeded with ``seed`` for shuffling. The global
    determinism flag and thread count are restored on exit.

    Examples
    --------
    >>> import torch
    >>> with seeded(1) as g:
    ...     a = torch.rand(2)
    >>> with seeded(1) as g:
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    # cuBLAS needs this set before its first use to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_det = torch.are_deterministic_algorithms_enabled()
    old_threads = torch.get_num_threads()
    n = _threads(n_threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    if n is not None:
        torch.set_num_threads(n)
    gen = torch.Generator().manual_seed(seed)
    try:
        yield gen
    finally:
        torch.use_deterministic_algorithms(old_det)
        if n is not None:
            torch.set_num_threads(old_threads)


# ------------------------------------------------------------------ models


class _Standardise(nn.Module):
    """Per-feature ``(x - mean) / std``, fitted on the training inputs."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(mean)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale", 1.0 / torch.clamp(std, min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


def _mlp(x: torch.Tensor, n_classes: int, widths: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [_Standardise(x)]
    width = x.shape[1]
    for w in widths:
        layers += [nn.Linear(width, w), nn.ReLU(), nn.Dropout(dropout)]
        width = w
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """A LeNet-sized CNN for 32x32 RGB uint8 images (NHWC in, logits out)."""

    def __init__(self, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # uint8 NHWC -> float NCHW in [-1, 1]
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        out: torch.Tensor = self.head(self.features(x))
        return out


def _build(kind: str, x: torch.Tensor, n_classes: int, config: TrainConfig) -> nn.Module:
    if kind == "head":
        return _mlp(x, n_classes, [config.hidden], config.dropout)
    if kind == "linear":
        return _mlp(x, n_classes, [], 0.0)
    if kind == "teacher":
        return _mlp(x, n_classes, [1024, 1024], config.dropout)
    if kind == "cnn":
        return SmallCNN(n_classes, config.dropout)
    raise ValueError(f"model={kind!r} is not one of {', '.join(MODELS)}")


def _as_input(x: NDArray[Any], kind: str) -> torch.Tensor:
    """Features as float32, images as uint8 (NHWC, 32x32x3)."""
    if kind == "cnn":
        a = np.ascontiguousarray(x, dtype=np.uint8)
        if a.ndim != 4 or a.shape[1:] != (32, 32, 3):
            raise ValueError(f"model='cnn' needs images of shape (n, 32, 32, 3), got {a.shape}")
        return torch.from_numpy(a)
    f = np.ascontiguousarray(x, dtype=np.float32)
    if f.ndim != 2:
        raise ValueError(f"features must be 2-D (n_samples, n_features), got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features hold NaN or inf")
    return torch.from_numpy(f)


@dataclass
class Classifier:
    """A trained model with numpy-in, numpy-out prediction.

    Attributes
    ----------
    module : torch.nn.Module
    kind : str
        One of :data:`MODELS`.
    n_classes : int
    device : torch.device
    """

    module: nn.Module
    kind: str
    n_classes: int
    device: torch.device

    @property
    def n_parameters(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.module.parameters())

    @property
    def size_bytes(self) -> int:
        """Bytes of the float32 parameters and buffers (what the client downloads)."""
        n = self.n_parameters + sum(b.numel() for b in self.module.buffers())
        return 4 * n

    @torch.no_grad()
    def logits(self, x: NDArray[Any], batch_size: int = 4096) -> NDArray[np.float32]:
        """Raw scores, ndarray of shape (n_samples, n_classes)."""
        self.module.eval()
        t = _as_input(x, self.kind)
        out = [
            self.module(t[i : i + batch_size].to(self.device)).float().cpu()
            for i in range(0, t.shape[0], batch_size)
        ]
        if not out:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    def predict_proba(self, x: NDArray[Any], temperature: float = 1.0) -> NDArray[np.float32]:
        """Softmax of ``logits / temperature``."""
        z = torch.from_numpy(self.logits(x)) / temperature
        return torch.softmax(z, dim=1).numpy()

    def predict(self, x: NDArray[Any]) -> NDArray[np.int64]:
        """Most likely class of each row."""
        out: NDArray[np.int64] = self.logits(x).argmax(axis=1).astype(np.int64)
        return out

    def accuracy(self, x: NDArray[Any], y: NDArray[Any]) -> float:
        """Fraction of rows whose prediction equals ``y``."""
        y = np.asarray(y)
        if y.shape[0] == 0:
            return float("nan")
        return float((self.predict(x) == y).mean())


def _fit(
    kind: str,
    x: NDArray[Any],
    targets: NDArray[Any],
    *,
    n_classes: int,
    config: TrainConfig,
    seed: int,
    temperature: float = 1.0,
    desc: str = "train",
) -> Classifier:
    """Train ``kind`` on hard labels (int) or soft targets (float, rows sum to 1)."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

    if x.shape[0] != targets.shape[0]:
        raise ValueError(f"{x.shape[0]} inputs but {targets.shape[0]} targets")
    if x.shape[0] == 0:
        raise ValueError("cannot train on an empty set")
    soft = np.issubdtype(targets.dtype, np.floating)
    device = resolve_device(config.device)
    with seeded(seed, config.n_threads) as gen:
        xt = _as_input(x, kind)
        module = _build(kind, xt.float() if kind != "cnn" else xt, n_classes, config).to(device)
        if soft:
            yt = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
        else:
            yt = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64))
        xt, yt = xt.to(device), yt.to(device)
        opt = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        n = xt.shape[0]
        per_epoch = max(1, math.ceil(n / config.batch_size))
        steps = max(config.epochs * per_epoch, config.min_steps)
        epochs = math.ceil(steps / per_epoch)
        module.train()
        bar = tqdm(
            total=steps, desc=desc, leave=False, disable=not progress_enabled(config.progress)
        )
        done = 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(device)
            for i in range(0, n, config.batch_size):
                if done == steps:
                    break
                idx = order[i : i + config.batch_size]
                if kind == "cnn" and idx.numel() < 2:
                    continue  # BatchNorm needs two samples
                out = module(xt[idx])
                if soft:
                    logp = F.log_softmax(out / temperature, dim=1)
                    # Hinton et al. 2015: KL to the softened teacher, scaled by T^2.
                    loss = F.kl_div(logp, yt[idx], reduction="batchmean") * temperature**2
                else:
                    loss = F.cross_entropy(out, yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
                opt.step()
                done += 1
                bar.update(1)
        bar.close()
        module.eval()
    return Classifier(module=module, kind=kind, n_classes=n_classes, device=device)


def _check_labels(y: NDArray[Any], n_classes: int) -> NDArray[np.int64]:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def train_classifier(
    x: NDArray[Any],
    y: NDArray[Any],
    *,
    model: str = "head",
    n_classes: int = 10,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> Classifier:
    """Train a classifier on labeled inputs with cross-entropy.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features) or (n_samples, 32, 32, 3)
        Features (float) for the heads, uint8 images for ``model="cnn"``.
    y : ndarray of shape (n_samples,), int
    model : {"head", "linear", "teacher", "cnn"}, default "head"
    n_classes : int, default 10
    config : TrainConfig, optional
    seed : int, default 0

    Returns
    -------
    Classifier

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> x = rng.normal(size=(200, 5)).astype(np.float32) + 3 * y[:, None]
    >>> clf = train_classifier(x, y, n_classes=2, config=TrainConfig(min_steps=50))
    >>> clf.accuracy(x, y) > 0.9
    True
    """
    cfg = config or TrainConfig()
    yy = _check_labels(y, n_classes)
    return _fit(model, np.asarray(x), yy, n_classes=n_classes, config=cfg, seed=seed)


def distill(
    teacher: Classifier,
    x: NDArray[Any],
    *,
    model: str = "linear",
    temperature: float = 4.0,
    config: TrainConfig | None = None,
    seed: int = 0,
    teacher_inputs: NDArray[Any] | None = None,
) -> Classifier:
    """Distil ``teacher`` into a smaller student on unlabeled inputs ``x``.

    The student minimises ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``
    (Hinton, Vinyals & Dean 2015); no label is used.

    Parameters
    ----------
    teacher : Classifier
    x : ndarray
        The student's inputs (the selected, unlabeled samples).
    model : str, default "linear"
        The student's architecture.
    temperature : float, default 4.0
    config : TrainConfig, optional
    seed : int, default 0
    teacher_inputs : ndarray, optional
        What the teacher sees for the same samples when it takes another input kind
        (e.g. features for a head teacher, images for a CNN student); default ``x``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    cfg = config or TrainConfig()
    tin = x if teacher_inputs is None else teacher_inputs
    soft = teacher.predict_proba(tin, temperature=temperature).astype(np.float64)
    return _fit(
        model,
        np.asarray(x),
        soft,
        n_classes=teacher.n_classes,
        config=cfg,
        seed=seed,
        temperature=temperature,
        desc="distil",
    )


def pseudo_label(
    clf: Classifier, x: NDArray[Any], threshold: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows of ``x`` whose top softmax probability is at least ``threshold``.

    Returns
    -------
    index : ndarray of int64
        Positions of the confident rows.
    labels : ndarray of int64
        Their predicted classes.
    """
    proba = clf.predict_proba(x)
    conf = proba.max(axis=1)
    index = np.flatnonzero(conf >= threshold).astype(np.int64)
    labels: NDArray[np.int64] = proba[index].argmax(axis=1).astype(np.int64)
    return index, labels


def train_semi_supervised(
    x: NDArray[Any],
    y: NDArray[Any],
    x_unlabeled: NDArray[Any],
    *,
    model: str = "head",
    n_classes: int = 10,
    threshold: float = 0.95,
    rounds: int = 1,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> Classifier:
    """Self-training: fit on ``(x, y)``, add confident pseudo-labels, refit.

    Each round pseudo-labels every row of ``x_unlabeled`` whose top probability
    reaches ``threshold`` (Lee 2013) and retrains from scratch on labeled plus
    pseudo-labeled rows.
    """
    cfg = config or TrainConfig()
    yy = _check_labels(y, n_classes)
    clf = _fit(model, np.asarray(x), yy, n_classes=n_classes, config=cfg, seed=seed)
    for r in range(rounds):
        idx, pl = pseudo_label(clf, x_unlabeled, threshold)
        if idx.size == 0:
            break
        xs = np.concatenate([np.asarray(x), np.asarray(x_unlabeled)[idx]])
        ys = np.concatenate([yy, pl])
        clf = _fit(model, xs, ys, n_classes=n_classes, config=cfg, seed=seed + r + 1)
    return clf
