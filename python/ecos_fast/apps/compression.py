"""Application (b): adaptive model compression by distillation on the selection.

The cloud owns a larger *teacher* trained on its labeled public data (the whole pool
with labels). It distils a smaller *student* on the selected, unlabeled samples using
the teacher's temperature-softened outputs (Hinton et al. 2015), and the client
receives the student. Both are heads on the frozen OCR-pretrained features by default:

=========  ===============================================  ===========
model      layers                                           parameters
=========  ===============================================  ===========
teacher    600 -> 1024 -> 1024 -> 10 (``"teacher"``)         ~1.67 M
student    600 -> 10 (``"linear"``)                          ~6 k
=========  ===============================================  ===========
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .labeling import AppResult
from .training import Classifier, TrainConfig, distill, train_classifier

__all__ = ["TEACHER_CONFIG", "run_compression", "train_teacher"]

#: The teacher sees ~35k pool samples: fewer passes, larger batches (fixed in advance).
TEACHER_CONFIG = TrainConfig(epochs=4, min_steps=200, batch_size=256)


def train_teacher(
    pool_x: NDArray[Any],
    pool_y: NDArray[Any],
    *,
    model: str = "teacher",
    n_classes: int = 10,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> Classifier:
    """The cloud's large model, trained on the whole labeled pool."""
    return train_classifier(
        pool_x,
        pool_y,
        model=model,
        n_classes=n_classes,
        config=config or TEACHER_CONFIG,
        seed=seed,
    )


def run_compression(
    teacher: Classifier,
    selected_x: NDArray[Any],
    test_x: NDArray[Any],
    test_y: NDArray[Any],
    *,
    student: str = "linear",
    temperature: float = 4.0,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> AppResult:
    """Distil ``teacher`` into ``student`` on ``selected_x`` and evaluate it.

    Returns
    -------
    AppResult
        ``extra`` holds ``student_bytes``, ``student_parameters``, ``teacher_bytes``
        and ``teacher_accuracy`` (the teacher on the same test split).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(600) % 3
    >>> x = rng.normal(size=(600, 6)).astype(np.float32) + 3 * np.eye(6)[y]
    >>> t = train_teacher(x[:400], y[:400], n_classes=3)
    >>> r = run_compression(t, x[:100], x[400:], y[400:])
    >>> r.accuracy > 0.8, r.extra["student_bytes"] < r.extra["teacher_bytes"]
    (True, True)
    """
    stu = distill(
        teacher, selected_x, model=student, temperature=temperature, config=config, seed=seed
    )
    return AppResult(
        accuracy=stu.accuracy(test_x, test_y),
        n_train=int(np.asarray(selected_x).shape[0]),
        extra={
            "student_bytes": float(stu.size_bytes),
            "student_parameters": float(stu.n_parameters),
            "teacher_bytes": float(teacher.size_bytes),
            "teacher_accuracy": teacher.accuracy(test_x, test_y),
        },
    )
