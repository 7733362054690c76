"""Every failure arrives as its ``EcosError`` subclass, and on the command line as its
documented exit code (issue 13, finding 8): the one mapping from Rust's ``KernelError``
(``rust/errors.rs``), the types refused up front, privacy parameters out of the range the
calibration supports, and NaN options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core
from ecos_fast.cli import EXIT_OK, EXIT_USAGE, run
from ecos_fast.errors import (
    EcosError,
    InvalidInputError,
    InvalidTypeError,
    PrivacyParameterError,
    ThreadPoolError,
)
from ecos_fast.privacy import EPSILON_MAX, GaussianMechanism, calibrate_gaussian_sigma

# -- Rust's errors, through the one mapping -------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls", "builtin"),
    [
        ("invalid_argument", InvalidInputError, ValueError),
        ("config", InvalidInputError, ValueError),
        ("thread_pool", ThreadPoolError, RuntimeError),
    ],
)
def test_every_kernel_error_variant_is_an_ecos_error(
    kind: str, cls: type[EcosError], builtin: type[Exception]
) -> None:
    """Before: KernelError::ThreadPool arrived as a plain RuntimeError."""
    with pytest.raises(cls, match="the message") as info:
        _core._raise_kernel_error(kind, "the message")
    assert isinstance(info.value, EcosError) and isinstance(info.value, builtin)
    with pytest.raises(InvalidInputError, match="unknown KernelError kind"):
        _core._raise_kernel_error("nonsense", "x")


def test_rust_side_checks_raise_ecos_errors() -> None:
    # The core's own re-checks, called directly (no Python validation in front).
    x = np.ones((4, 3), np.float32)
    with pytest.raises(InvalidInputError, match="n_features"):
        _core.assign(x, np.ones((2, 5), np.float32), 1)
    with pytest.raises(InvalidInputError, match="n_threads=0"):
        _core.assign(x, x[:2], 0)
    with pytest.raises(InvalidInputError, match="budget=9"):
        _core.kcenter_greedy(x, 9, 1)
    with pytest.raises(InvalidInputError, match="init has shape"):
        _core.kmeans(x, 2, 5, 1e-4, 0, 1, init=np.ones((3, 3), np.float32))
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        _core.first_non_finite(np.ones((4, 4), np.float32)[:, ::2], 1)


def test_bad_simd_setting_is_an_invalid_input_error() -> None:
    # Read once per process: a child with ECOS_FAST_SIMD set to nonsense.
    code = (
        "import numpy as np, ecos_fast\n"
        "try:\n"
        "    ecos_fast.assign(np.ones((3, 2), np.float32), np.ones((1, 2), np.float32))\n"
        "except ecos_fast.InvalidInputError as exc:\n"
        "    print('InvalidInputError', exc)\n"
    )
    env = {**os.environ, "ECOS_FAST_SIMD": "sse9"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("InvalidInputError ECOS_FAST_SIMD=")


# -- types refused up front ------------------------------------------------------------


def test_unsupported_types_are_invalid_type_errors() -> None:
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    with pytest.raises(InvalidTypeError, match="tol must be a number"):
        ecos_fast.kmeans(x, 2, tol="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="cannot be read as an array"):
        ecos_fast.kcenter_greedy(x, 2, rows=[[0, 1], [2]])  # ragged: NumPy's ValueError
    with pytest.raises(InvalidTypeError, match="dtype"):
        ecos_fast.assign(x.astype(np.complex64), x[:2])
    with pytest.raises(InvalidTypeError):
        ecos_fast.assign(object(), x[:2])


def test_torch_bfloat16_is_an_invalid_type_error() -> None:
    """Before: torch's bare ``TypeError: Got unsupported ScalarType BFloat16``."""
    torch = pytest.importorskip("torch")
    c = np.zeros((2, 3), np.float32)
    with pytest.raises(InvalidTypeError, match=r"bfloat16.*tensor\.float\(\)"):
        ecos_fast.assign(torch.ones(4, 3, dtype=torch.bfloat16), c)
    # A float32 tensor is fine.
    labels, _ = ecos_fast.assign(torch.ones(4, 3, dtype=torch.float32), c)
    assert labels.tolist() == [0, 0, 0, 0]


# -- privacy parameters the calibration cannot serve --------------------------------------


@pytest.mark.parametrize("epsilon", [1e300, 1e200, EPSILON_MAX * 2])
def test_extreme_epsilon_is_a_privacy_parameter_error(epsilon: float) -> None:
    """Before: 1e300 reached SciPy's root finder (``ValueError: The function value at
    x=0.1 is NaN``)."""
    with pytest.raises(PrivacyParameterError, match="largest finite epsilon"):
        calibrate_gaussian_sigma(epsilon, 1e-5)
    with pytest.raises(PrivacyParameterError):
        GaussianMechanism(epsilon, 1e-5)


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(EPSILON_MAX, 1e-5), (1e-300, 1e-5), (1.0, 1e-300), (1.0, 0.999999)]
)
def test_extreme_but_supported_parameters_calibrate(epsilon: float, delta: float) -> None:
    sigma = calibrate_gaussian_sigma(epsilon, delta)
    assert np.isfinite(sigma) and sigma > 0


# -- the command line's exit codes ---------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(200, 4)).astype(np.float32)
    ecos_fast.save_centroids(ecos_fast.fit_centroids(pool, 4, seed=0), tmp_path / "c.safetensors")
    np.save(tmp_path / "p.npy", pool[:50])
    np.save(tmp_path / "pool.npy", pool)
    return {"c": tmp_path / "c.safetensors", "p": tmp_path / "p.npy", "pool": tmp_path / "pool.npy"}


def _respond(client: dict[str, Path], *extra: str) -> list[str]:
    out = client["c"].parent / "r.safetensors"
    return ["respond", str(client["c"]), str(client["p"]), "-o", str(out), *extra]


@pytest.mark.parametrize("epsilon", ["1e300", "2e6"])
def test_cli_extreme_epsilon_exits_2(
    client: dict[str, Path], epsilon: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a SciPy ValueError, exit 1 with a traceback."""
    assert run(["--json", *_respond(client, "--epsilon", epsilon)]) == EXIT_USAGE
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["type"] == "PrivacyParameterError" and err["exit_code"] == EXIT_USAGE
    assert not (client["c"].parent / "r.safetensors").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--epsilon", "nan"],
        ["--epsilon", "1", "--delta", "nan"],
        ["--epsilon", "1", "--ledger", "L.sqlite", "--budget-epsilon", "nan"],
        ["--epsilon", "1", "--ledger", "L.sqlite", "--budget-delta", "nan"],
    ],
)
def test_cli_nan_privacy_options_exit_2(client: dict[str, Path], extra: list[str]) -> None:
    """Before: --epsilon nan and --delta nan exited 3 (the docs say 2)."""
    assert run(["-q", *_respond(client, *extra)]) == EXIT_USAGE


@pytest.mark.parametrize(
    "extra", [["--threshold", "nan"], ["--threshold", "inf"], ["--candidates", "nan"]]
)
def test_cli_nan_select_options_exit_2(client: dict[str, Path], extra: list[str]) -> None:
    out = client["c"].parent / "s.npy"
    args = ["-q", "select", str(client["pool"]), "--method", "random", "-b", "5", "-o", str(out)]
    assert run([*args, *extra]) == EXIT_USAGE


def test_cli_huge_thread_count_is_one_remark(
    client: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["sketch", str(client["pool"]), "-o", str(client["c"]), "-k", "3",
                "--threads", "99999"]) == EXIT_OK  # fmt: skip
    remarks = [line for line in capsys.readouterr().err.splitlines() if "99999" in line]
    assert len(remarks) == 1
    assert remarks[0].startswith("warning: --threads=99999 is above 4 x")
