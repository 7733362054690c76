"""Linear probes: how well frozen features read the digits of each domain.

``python -m ecos_fast.datasets.probe --preset hard --extractor ppocr-det`` prints the
table of docs/data_section.md: for each domain, a standardised linear classifier trained
on its train split and scored on its test split (in the hard preset the test fonts are
ones the train split never uses), and a domain-id probe over all test splits. Features
come from the cache (:func:`ecos_fast.features.cached_features`), so a warm cache makes
it quick. Needs scikit-learn (``pip install 'ecos-fast[data]'``), which the package itself does not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import InvalidInputError

from . import _cache
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
        from ecos_fast.errors import MissingDependencyError

        raise MissingDependencyError(
            "linear probes need scikit-learn: pip install 'ecos-fast[data]'"
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
    _cache.ensure_cache_dir()
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


def command() -> Any:
    """``ecos-fast features probe`` (also ``python -m ecos_fast.datasets.probe``)."""
    import click

    from ecos_fast._cli_output import THREADS, State, output_options
    from ecos_fast.features import EXTRACTORS, default_extractor

    @click.command(
        "probe",
        help=(probe_table.__doc__ or "").split("\n\n")[0],
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.option("--preset", default="hard", show_default=True, type=click.Choice(sorted(PRESETS)))
    @click.option(
        "--extractor",
        default=None,
        type=click.Choice(list(EXTRACTORS)),
        help="default: the preset's",
    )
    @click.option("--probe", default="logistic", show_default=True, type=click.Choice(list(PROBES)))
    @click.option("--data-seed", type=click.IntRange(min=0), default=0, show_default=True)
    @THREADS
    @output_options
    @click.pass_context
    def probe(
        ctx: click.Context,
        preset: str,
        extractor: str | None,
        probe: str,
        data_seed: int,
        threads: int | None,
    ) -> None:
        state = ctx.ensure_object(State)
        if threads is not None:  # the ONNX extractors' threads (their n_threads default)
            os.environ["ECOS_FAST_NUM_THREADS"] = str(threads)
        extractor = extractor or default_extractor(preset)
        table = probe_table(preset, extractor, kind=probe, data_seed=data_seed)
        names = list(table)
        cells = " | ".join(f"{table[n]:.3f}" for n in names)
        state.result(
            {"command": "features probe", "preset": preset, "extractor": extractor,
             "probe": probe, "accuracy": table},
            [
                "| preset / features / probe | " + " | ".join(names) + " |",
                "|---|" + "---:|" * len(names),
                f"| {preset} / {extractor} / {probe} | {cells} |",
            ],
        )  # fmt: skip

    return probe


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecos_fast.datasets.probe``: ``ecos-fast features probe`` with ``argv``
    (default ``sys.argv[1:]``), through :func:`ecos_fast._cli_output.run_command` and its error handling."""
    import sys

    from ecos_fast._cli_output import run_command

    return run_command(
        command(),
        [*(sys.argv[1:] if argv is None else argv)],
        prog_name="python -m ecos_fast.datasets.probe",
    )


if __name__ == "__main__":
    raise SystemExit(main())
