"""Which ``pip install 'ecos-fast[extra]'`` brings an optional module.

The extras are those of ``pyproject.toml``'s ``[project.optional-dependencies]``;
the command line turns a ``ModuleNotFoundError`` for one of these modules into a
:class:`~ecos_fast.errors.MissingDependencyError` (exit 2) naming the line.

>>> from ecos_fast._extras import missing_dependency
>>> err = missing_dependency(ModuleNotFoundError("No module named 'torch'", name="torch"))
>>> str(err)
"this needs torch, which is not installed: pip install 'ecos-fast[apps]'"
>>> missing_dependency(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
True
>>> str(missing_dependency(ModuleNotFoundError("needs x: pip install x==1")))
'needs x: pip install x==1'
"""

from __future__ import annotations

from .errors import MissingDependencyError

__all__ = ["EXTRAS", "install_line", "missing_dependency"]

#: Top-level module -> (the extra that installs it, what it is for).
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("apps", "the applications (demo, reproduce) and torch models"),
    "onnxruntime": ("data", "the bundled OCR extractors and ONNX models"),
    "onnx": ("data", "the bundled OCR extractors"),
    "PIL": ("data", "rendering the offline Digit-Five proxy"),
    "sklearn": ("data", "the linear probes"),
    "matplotlib": ("report", "figures (--report, the reproduce plots)"),
    "jinja2": ("report", "the --report page"),
    "ray": ("ray", "the Ray backend"),
    "pyarrow": ("parquet", "Parquet feature files"),
    "flwr": ("flower", "the Flower apps (ecos_fast.flower.apps, ecos_fast.flower.deploy)"),
}


def install_line(extra: str) -> str:
    """``pip install 'ecos-fast[extra]'``."""
    return f"pip install 'ecos-fast[{extra}]'"


def missing_dependency(exc: ModuleNotFoundError) -> MissingDependencyError | None:
    """The error to raise for ``exc``, or None when the module is not an optional one."""
    name = (exc.name or "").split(".")[0]
    if name not in EXTRAS:
        # The package's own ModuleNotFoundErrors (a bundled extractor's model wheel,
        # ...) already say what to install.
        return MissingDependencyError(str(exc)) if "pip install" in str(exc) else None
    extra, _ = EXTRAS[name]
    return MissingDependencyError(
        f"this needs {name}, which is not installed: {install_line(extra)}"
    )
