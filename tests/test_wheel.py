"""The wheel every Linux user can install (issue 14, item 5).

Default run (fast, well under a second): the packaging metadata a package index shows
(LICENSE, SPDX licence, project URLs, classifiers, markdown readme whose links are all
absolute), the `make wheel` recipe, and, when dist/ holds a wheel, that wheel's tags,
metadata, licence file and glibc floor (the highest GLIBC_x.y its compiled core asks for).
CI runs `make wheel` first, so there it always checks the wheel that was just built.

Slow (`make test-wheel`, CI): installs that wheel (`make wheel` first when dist/ has none or
it is older than the sources) into a fresh venv with no Rust on PATH, beside click==8.1.7 and
tqdm==4.66.0, and runs the README's Python examples and a `Subset` + `DataLoader` from it.
torch is not downloaded again (the CUDA wheels are ~4 GB): the fresh venv sees only torch and
its own requirements, through a `.pth` file naming a folder of links into the dev venv; every
other package, ecos-fast included, is the fresh venv's own.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
CARGO = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The manylinux2014 floor: glibc 2.17 (CentOS 7). abi3 from CPython 3.10 (pyo3's abi3-py310).
GLIBC_FLOOR = (2, 17)
WHEEL_TAGS = {"cp310-abi3-manylinux2014_x86_64", "cp310-abi3-manylinux_2_17_x86_64"}
WHEEL_NAME_TAGS = "cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64"
# What changes the wheel's content (the README too, but rebuilding for prose is not worth 7 min).
SOURCES = ("rust", "python", "Cargo.toml", "Cargo.lock", "pyproject.toml")
# The oldest click and tqdm the ranges allow, the ones users had trouble installing beside.
PINS = ("click==8.1.7", "tqdm==4.66.0")
LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s]+)\)")


def _glibc_versions(elf: bytes) -> set[tuple[int, int]]:
    """The GLIBC_x.y symbol versions a shared object names (its .dynstr holds them as text)."""
    return {(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", elf)}


def _the_wheel() -> Path | None:
    wheels = sorted(DIST.glob("ecos_fast-*.whl")) if DIST.is_dir() else []
    return wheels[-1] if wheels else None


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = path.rglob("*") if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in {".so", ".pyc"}:
                newest = max(newest, f.stat().st_mtime)
    return newest


# --- default run: metadata and recipe -------------------------------------------------


def test_license_file_is_the_apache_2_0_text_the_metadata_declares() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert CARGO["package"]["license"] == "Apache-2.0"
    # PEP 639: an SPDX `license` excludes licence classifiers.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


def test_project_metadata_for_a_package_index() -> None:
    assert PROJECT["readme"] == {"file": "README.md", "content-type": "text/markdown"}
    urls = PROJECT["urls"]
    assert {"Source", "Paper"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = set(PROJECT["classifiers"])
    assert {
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Rust",
        "Typing :: Typed",
    } <= classifiers
    assert PROJECT["requires-python"] == ">=3.10"  # what the abi3-py310 wheel serves


def test_readme_links_are_absolute_and_name_files_in_this_tree() -> None:
    """A package index renders the README away from the repository: relative links break."""
    base = PROJECT["urls"]["Source"].rstrip("/")
    links = LINK.findall(README)
    assert links, "the README has no links: the pattern is wrong"
    for image, target in links:
        assert re.match(r"https?://", target), f"relative link {target!r} in README.md"
        if target.startswith(base + "/"):
            kind, _, path = target[len(base) + 1 :].partition("/main/")
            # An image must be the file itself (raw); a link may be either view.
            assert kind in ({"raw"} if image else {"raw", "blob"}), target
            assert (ROOT / path.split("#")[0]).is_file(), f"{target} names no file here"


def test_the_wheel_the_readme_names_is_the_one_make_wheel_builds() -> None:
    named = set(re.findall(r"ecos_fast-[^\s`]+\.whl", README))
    version = CARGO["package"]["version"]
    assert named == {f"ecos_fast-{version}-{WHEEL_NAME_TAGS}.whl"}


def test_make_wheel_builds_an_abi3_manylinux2014_wheel_and_checks_it() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^wheel:.*?\n((?:\t.*\n|\s*\\\n)+)", makefile, re.M)
    assert recipe, "no `wheel:` target in the Makefile"
    body = recipe.group(1)
    for needed in (
        "--zig",
        "--compatibility manylinux2014",
        "x86_64-unknown-linux-gnu",
        "maturin sdist",
        "auditwheel show",
        'platform tag: "manylinux_2_17_x86_64"',
        "twine check --strict",
        "CARGO_TARGET_DIR",
    ):
        assert needed in body, f"`make wheel` lacks {needed!r}"
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    assert re.search(r'^pyo3 = .*"abi3-py310"', cargo, re.M)
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements" / "build.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {"maturin", "ziglang", "auditwheel", "twine"} <= set(pins)
    dev = (ROOT / "requirements" / "dev.txt").read_text()
    assert f"maturin=={pins['maturin']}" in dev, "the release and dev builds use one maturin"


def test_glibc_floor_reader_sees_a_newer_floor() -> None:
    """The check below cannot pass by reading nothing: a symbol version above 2.17 is seen."""
    elf = b"\x7fELF\0GLIBC_2.2.5\0GLIBC_2.17\0GLIBC_2.34\0"
    assert max(_glibc_versions(elf)) == (2, 34) > GLIBC_FLOOR


def test_the_built_wheel_tags_metadata_and_glibc_floor() -> None:
    wheel = _the_wheel()
    if wheel is None:
        pytest.skip("dist/ holds no wheel: run `make wheel` (CI does, before `make test`)")
    if wheel.stat().st_mtime < _newest_source_mtime():
        pytest.skip("dist/'s wheel is older than the sources: run `make wheel`")
    assert wheel.name == f"ecos_fast-{CARGO['package']['version']}-{WHEEL_NAME_TAGS}.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/WHEEL"))
        parse = email.parser.Parser().parsestr
        wheel_meta = parse(zf.read(f"{info}/WHEEL").decode())
        meta = parse(zf.read(f"{info}/METADATA").decode())
        core = zf.read("ecos_fast/_core.abi3.so")
        licence = zf.read(f"{info}/licenses/LICENSE")
    assert set(wheel_meta.get_all("Tag", [])) == WHEEL_TAGS
    assert wheel_meta["Root-Is-Purelib"] == "false"
    assert {"ecos_fast/_core.pyi", "ecos_fast/py.typed"} <= names
    assert not [n for n in names if n.endswith(".so") and n != "ecos_fast/_core.abi3.so"]
    assert core[:4] == b"\x7fELF" and core[18] == 62  # e_machine 62: x86-64
    floor = max(_glibc_versions(core))
    assert floor <= GLIBC_FLOOR, f"the core needs glibc {floor}, above manylinux2014's 2.17"
    assert licence == (ROOT / "LICENSE").read_bytes()
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta["Requires-Python"] == ">=3.10"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert urls == PROJECT["urls"]
    requires = meta.get_all("Requires-Dist", [])
    assert "click>=8.1.7" in requires and "tqdm>=4.66" in requires
    sdists = sorted(DIST.glob("ecos_fast-*.tar.gz"))
    assert len(sdists) == 1, "make wheel also writes the sdist"
    with tarfile.open(sdists[0]) as tf:
        top = sdists[0].name.removesuffix(".tar.gz")
        members = set(tf.getnames())
        assert {f"{top}/LICENSE", f"{top}/PKG-INFO", f"{top}/Cargo.lock"} <= members
        pkg_info = tf.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        assert parse(pkg_info.read().decode())["Version"] == meta["Version"]


# --- slow: the wheel in a clean venv --------------------------------------------------


def _fresh_wheel() -> Path:
    wheel = _the_wheel()
    if wheel is None or wheel.stat().st_mtime < _newest_source_mtime():
        subprocess.run(["make", "--no-print-directory", "wheel"], cwd=ROOT, check=True)
        wheel = _the_wheel()
    assert wheel is not None
    return wheel


def _distribution_closure(name: str) -> list[importlib.metadata.Distribution]:
    """`name` and everything it requires (no extras), as installed in this interpreter."""
    from packaging.requirements import Requirement

    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if key in seen:
            continue
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _link_torch(into: Path) -> None:
    """Links torch and its requirements' top-level entries (not numpy, not ecos-fast) into `into`."""
    into.mkdir()
    for dist in _distribution_closure("torch"):
        site = Path(str(dist.locate_file("")))
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in {"..", "__pycache__"}}
        for top in tops:
            if not (into / top).exists():
                (into / top).symlink_to(site / top)


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    """The venv first, then system folders only: no ~/.cargo/bin, no pyenv shims, no .venv."""
    system = [
        d
        for d in ("/usr/local/bin", "/usr/bin", "/bin")
        if not any(shutil.which(tool, path=d) for tool in ("cargo", "rustc", "maturin"))
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUSTUP", "PYTHON"))}
    for key in ("VIRTUAL_ENV", "PYENV_VERSION"):
        env.pop(key, None)
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), *system]),
        HOME=str(home),
        ECOS_FAST_CACHE=str(home / "cache"),
    )
    return env


SUBSET_CHECK = """
import importlib.metadata as md
import pathlib, sys
import numpy as np, torch
from torch.utils.data import DataLoader, Subset, SubsetRandomSampler, TensorDataset
import ecos_fast, ecos_fast._core

prefix = pathlib.Path(sys.prefix)
assert pathlib.Path(ecos_fast.__file__).is_relative_to(prefix), ecos_fast.__file__
assert ecos_fast._core.__file__.endswith("_core.abi3.so") and pathlib.Path(ecos_fast._core.__file__).is_relative_to(prefix)
assert (md.version("click"), md.version("tqdm")) == ("8.1.7", "4.66.0")

rng = np.random.default_rng(0)
pool = np.concatenate([rng.normal(m, 1.0, (400, 8)) for m in (0, 6)]).astype(np.float32)
centroids = ecos_fast.fit_centroids(pool, n_clusters=8, seed=0)
response = ecos_fast.respond(pool[400:], centroids, epsilon=float("inf"), delta=1e-5)
selection = ecos_fast.select(pool, ecos_fast.Sketch.join(centroids, response), budget=100)
dataset = TensorDataset(torch.from_numpy(pool), torch.arange(len(pool)))
seen = torch.cat([idx for _, idx in DataLoader(Subset(dataset, selection), batch_size=32)])
assert seen.tolist() == list(selection) and len(seen) == 100
drawn = sorted(SubsetRandomSampler(selection))
assert drawn == sorted(selection)
print("subset ok", len(seen), torch.__version__)
"""


@pytest.mark.slow
def test_the_wheel_installs_in_a_clean_venv_and_runs_the_readme(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # linked into the fresh venv from this one
    wheel = _fresh_wheel()
    venv, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _clean_env(venv, home)
    for tool in ("cargo", "rustc", "maturin"):
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is on the clean PATH"
    python = str(venv / "bin" / "python")
    started = time.perf_counter()
    # Binary only: nothing may be compiled, so no Rust (and no C) toolchain is used.
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--only-binary=:all:", str(wheel), *PINS],
        env=env,
        cwd=home,
        check=True,
    )
    install_s = time.perf_counter() - started
    # torch after pip: pip must resolve ecos-fast's own requirements without seeing it.
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    _link_torch(tmp_path / "torch-only")
    (site / "torch-only.pth").write_text(f"{tmp_path / 'torch-only'}\n")

    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert len(blocks) >= 2, "the README's numpy example and its torch recipe"
    for i, code in enumerate([*blocks, SUBSET_CHECK]):
        script = home / f"example_{i}.py"
        script.write_text(code)
        run = subprocess.run(
            [python, str(script)], env=env, cwd=home, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, f"{script.name} failed:\n{run.stdout}\n{run.stderr}"
    assert "subset ok 100" in run.stdout
    print(f"pip install into the clean venv: {install_s:.0f} s")
