"""Application (a): selective labeling (label outsourcing).

The cloud selects ``budget`` pool samples, an oracle labels them (in experiments the
true labels are revealed), and a classifier trained on them is sent to the client,
which evaluates it on its own domain. Optionally, self-training with confident
pseudo-labels on the rest of the pool (the paper adds semi-supervised learning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .training import TrainConfig, train_classifier, train_semi_supervised

__all__ = ["AppResult", "run_labeling"]


@dataclass(frozen=True)
class AppResult:
    """Outcome of one application run.

    Attributes
    ----------
    accuracy : float
        Accuracy on the client domain's test split, in [0, 1].
    n_train : int
        Samples the final model was trained on.
    epsilon : float
        Privacy loss of the client's releases for this run (0: nothing released).
    extra : dict
        Application-specific numbers (model bytes, label accuracy, ...).
    """

    accuracy: float
    n_train: int
    epsilon: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def run_labeling(
    train_x: NDArray[Any],
    train_y: NDArray[Any],
    test_x: NDArray[Any],
    test_y: NDArray[Any],
    *,
    model: str = "head",
    n_classes: int = 10,
    config: TrainConfig | None = None,
    seed: int = 0,
    unlabeled_x: NDArray[Any] | None = None,
    pseudo_threshold: float = 0.95,
    rounds: int = 1,
) -> AppResult:
    """Train on the oracle-labeled selection and evaluate on the client's test split.

    Parameters
    ----------
    train_x, train_y : ndarray
        The selected samples (features, or images for ``model="cnn"``) and their oracle
        labels; for the Local baseline, the client's private set.
    test_x, test_y : ndarray
        The client domain's test split.
    model : {"head", "linear", "cnn"}, default "head"
    n_classes : int, default 10
    config : TrainConfig, optional
    seed : int, default 0
    unlabeled_x : ndarray, optional
        When given, self-training on these unlabeled samples: confident
        pseudo-labels are added and the model is refitted.
    pseudo_threshold : float, default 0.95
        Softmax confidence a pseudo-label needs.
    rounds : int, default 1
        Pseudo-labelling rounds (with ``unlabeled_x``).

    Returns
    -------
    AppResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(300) % 3
    >>> x = rng.normal(size=(300, 6)).astype(np.float32) + 3 * np.eye(6)[y]
    >>> r = run_labeling(x[:200], y[:200], x[200:], y[200:], n_classes=3)
    >>> r.accuracy > 0.8, r.n_train
    (True, 200)
    """
    if unlabeled_x is None:
        clf = train_classifier(
            train_x, train_y, model=model, n_classes=n_classes, config=config, seed=seed
        )
    else:
        clf = train_semi_supervised(
            train_x,
            train_y,
            unlabeled_x,
            model=model,
            n_classes=n_classes,
            threshold=pseudo_threshold,
            rounds=rounds,
            config=config,
            seed=seed,
        )
    return AppResult(
        accuracy=clf.accuracy(test_x, test_y),
        n_train=int(np.asarray(train_y).shape[0]),
        extra={"model_bytes": float(clf.size_bytes)},
    )
