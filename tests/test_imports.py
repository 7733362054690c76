"""The package's import graph: no cycle (lazy imports included), layers point down.

Every module of ``python/ecos_fast`` is parsed with :mod:`ast`; each ``import`` and
``from ... import`` anywhere in it (module level, inside functions, inside ``if
TYPE_CHECKING:``) that names a module of the package adds an edge. ``from . import x``
adds an edge to the submodule ``x`` when it is one, else to the package itself.
Importing a submodule also runs its parent packages' ``__init__``; that edge is left
out (every module would then depend on ``ecos_fast/__init__.py``), so the test speaks
of the modules' own imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "python" / "ecos_fast"
PACKAGE = "ecos_fast"
# The public modules above the Ray backend: it must import none of them.
UPPER = (
    "ecos_fast",
    "ecos_fast.selection",
    "ecos_fast.protocol",
    "ecos_fast.kernels",
    "ecos_fast.baselines",
    "ecos_fast.cli",
    "ecos_fast.exchange",
    "ecos_fast.ledger",
    "ecos_fast.report",
)
RAY_BACKEND = "ecos_fast.ray_backend"


def module_name(path: Path, root: Path = ROOT, package: str = PACKAGE) -> str:
    """``ecos_fast.a.b`` for ``root/a/b.py``; the package itself for ``__init__.py``."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    files = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    # Compiled modules (``_core``) are leaves, known by their stub.
    leaves = {module_name(p, root, package) for p in root.rglob("*.pyi")} - set(files)
    known = set(files) | leaves

    def resolve(name: str) -> str | None:
        """The longest known module that ``name`` starts with."""
        parts = name.split(".")
        while parts:
            cand = ".".join(parts)
            if cand in known:
                return cand
            parts.pop()
        return None

    for mod, path in files.items():
        here = mod if is_package(path) else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == package]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = here.split(".")
                    if node.level > 1:
                        base_parts = base_parts[: -(node.level - 1)]
                    base = ".".join(base_parts)
                    base = f"{base}.{node.module}" if node.module else base
                elif node.module and node.module.split(".")[0] == package:
                    base = node.module
                else:
                    continue
                # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for t in targets:
                dep = resolve(t)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    for leaf in leaves:
        graph[leaf] = set()
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component."""
    return [cycle_in(graph, set(c)) for c in strongly_connected(graph)]


def cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A concrete cycle through the component's first module (breadth-first)."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)  # pragma: no cover - a component always holds a cycle


def test_the_walker_sees_relative_absolute_and_lazy_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (pkg / "b.py").write_text("import pkg.sub.c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import f\nfrom pkg import b\n")
    g = import_graph(pkg, "pkg")
    assert g["pkg"] == {"pkg.a"}
    assert g["pkg.a"] == {"pkg.b"}
    assert g["pkg.b"] == {"pkg.sub.c"}
    assert g["pkg.sub.c"] == {"pkg.a", "pkg.b"}
    assert find_cycles(g) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_the_package_has_no_import_cycle() -> None:
    g = import_graph()
    cycles = find_cycles(g)
    for comp, c in zip(strongly_connected(g), cycles, strict=False):
        print(f"import cycle: {' -> '.join(c)} (component: {', '.join(comp)})")
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_ray_backend_imports_only_lower_layers() -> None:
    g = import_graph()
    mods = [m for m in g if m == RAY_BACKEND or m.startswith(RAY_BACKEND + ".")]
    if not mods:
        pytest.fail(f"no {RAY_BACKEND} package under {ROOT}")
    bad = {m: sorted(g[m] & set(UPPER)) for m in mods if g[m] & set(UPPER)}
    assert not bad, f"the Ray backend reaches up: {bad}"
    # Nothing lower than the backend reaches into it except the one dispatch point.
    users = {m for m, deps in g.items() if m not in mods and any(d in mods for d in deps)}
    assert users <= {"ecos_fast._backend"}, f"modules importing the Ray backend: {sorted(users)}"


def test_every_error_and_warning_is_exported_at_the_top_level() -> None:
    # Before: SignatureError, KeyFileError, LedgerError, ... existed only in
    # ecos_fast.errors, so `except ecos_fast.LedgerError` failed with AttributeError.
    import ecos_fast
    from ecos_fast import errors

    missing = [n for n in errors.__all__ if getattr(ecos_fast, n, None) is not getattr(errors, n)]
    assert missing == []
    assert set(errors.__all__) <= set(ecos_fast.__all__)
