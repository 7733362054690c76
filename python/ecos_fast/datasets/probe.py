"""Linear probes: how well frozen features read the digits of each domain.

``python -m ecos_fast.datasets.probe --preset hard --extractor ppocr-det`` prints the
table of docs/data_section.md: for each domain, a standardised linear classifier trained
on its train split and scored on its test split (in the hard preset the test fonts are
ones the train split never uses), and a domain-id probe over all test splits. Features
come from the cache (:func:`ecos_fast.features.cached_features`), so a warm cache makes
it quick. Needs scikit-learn (``deps/pip-data.txt``), which the package itself does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import InvalidInputError

from .digits import PRESETS, check_preset, preset_domains

__all__ = ["PROBES", "linear_probe", "probe_table"]

#: Probe kinds: ``ridge`` (``RidgeClassifier(alpha=100)``, as in the tests) and
#: ``logistic`` (``LogisticRegression(C=0.1, max_iter=2000)``), both after standardising.
PROBES = ("ridge", "logistic")


def _classifier(kind: str) -> Any:
    try:
        from sklearn.linear_model import (  # type: ignore[import-untyped,unused-ignore]
            LogisticRegression,
            RidgeClassifier,
        )
        from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped,unused-ignore]
        from sklearn.preprocessing import (  # type: ignore[import-untyped,unused-ignore]
            StandardScaler,
        )
    except ImportError as exc:  # pragma: no cover - the test environment has it
        raise ModuleNotFoundError(
            "linear probes need scikit-learn: pip install -r deps/pip-data.txt"
        ) from exc
    if kind == "ridge":
        return make_pipeline(StandardScaler(), RidgeClassifier(alpha=100.0))
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    raise InvalidInputError(f"probe={kind!r} is not one of {', '.join(PROBES)}")


def linear_probe(
    x_train: NDArray[np.float32],
    y_train: NDArray[np.int64],
    x_test: NDArray[np.float32],
    y_test: NDArray[np.int64],
    kind: str = "logistic",
) -> float:
    """Test accuracy of a standardised linear classifier trained on the train split.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> linear_probe(x, y, x, y) > 0.9
    True
    """
    if len(x_train) == 0 or len(x_test) == 0:
        raise InvalidInputError("a linear probe needs non-empty train and test splits")
    clf = _classifier(kind)
    return float(clf.fit(x_train, y_train).score(x_test, y_test))


def probe_table(
    preset: str = "hard",
    extractor: str | None = None,
    *,
    kind: str = "logistic",
    data_seed: int = 0,
    progress: bool | None = None,
) -> dict[str, float]:
    """Per-domain digit probes and a domain-id probe (``"domain"``) for one preset.

    Domains without a test split (``junk``) get no digit probe; the domain-id probe uses
    every domain's train split to fit (at most 1,000 rows each) and every non-empty test
    split to score.
    """
    from ecos_fast.features import cached_features

    preset = check_preset(preset)
    out: dict[str, float] = {}
    x_dom: dict[str, list[NDArray[Any]]] = {"train": [], "test": []}
    y_dom: dict[str, list[NDArray[Any]]] = {"train": [], "test": []}
    for domain_id, name in enumerate(preset_domains(preset)):
        x_tr, y_tr = cached_features(
            name, "train", seed=data_seed, preset=preset, extractor=extractor, progress=progress
        )
        x_te, y_te = cached_features(
            name, "test", seed=data_seed, preset=preset, extractor=extractor, progress=progress
        )
        if len(x_te):
            out[name] = linear_probe(x_tr, y_tr, x_te, y_te, kind)
        for split, x in (("train", x_tr[:1000]), ("test", x_te)):
            x_dom[split].append(x)
            y_dom[split].append(np.full(len(x), domain_id, dtype=np.int64))
    out["domain"] = linear_probe(
        np.concatenate(x_dom["train"]),
        np.concatenate(y_dom["train"]),
        np.concatenate(x_dom["test"]),
        np.concatenate(y_dom["test"]),
        kind,
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecos_fast.datasets.probe``: print one row of the probe table."""
    from ecos_fast.features import EXTRACTORS, default_extractor

    parser = argparse.ArgumentParser(
        prog="python -m ecos_fast.datasets.probe", description=probe_table.__doc__
    )
    parser.add_argument("--preset", default="hard", choices=sorted(PRESETS))
    parser.add_argument("--extractor", default=None, choices=EXTRACTORS)
    parser.add_argument("--probe", default="logistic", choices=PROBES)
    parser.add_argument("--data-seed", type=int, default=0)
    args = parser.parse_args(argv)
    extractor = args.extractor or default_extractor(args.preset)
    table = probe_table(args.preset, extractor, kind=args.probe, data_seed=args.data_seed)
    names = list(table)
    print("| preset / features / probe | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    cells = " | ".join(f"{table[n]:.3f}" for n in names)
    print(f"| {args.preset} / {extractor} / {args.probe} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
