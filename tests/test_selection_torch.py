"""`Selection` is a read-only integer sequence that numpy and torch take as indices.

Issue 14, item 1: before, `Subset(dataset, selection)` built but every index failed with
"'Selection' object is not subscriptable", and so did `selection[0]`, `SubsetRandomSampler`,
`torch.as_tensor(selection)` and `tensor[selection]`. Every test here uses real torch objects.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Sequence

import numpy as np
import pytest
from ecos_fast import Selection, select_random
from ecos_fast.errors import EcosError, InvalidTypeError
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch.utils.data import (  # noqa: E402
    DataLoader,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
)

IDX = [7, 2, 9, 0, 4]


def _sel() -> Selection:
    return Selection(np.array(IDX, dtype=np.int64), budget=6, method="kcenter")


def test_a_selection_is_a_sequence_of_python_ints() -> None:
    sel = _sel()
    assert isinstance(sel, Sequence)
    assert len(sel) == 5 and list(sel) == IDX
    assert sel[0] == 7 and sel[-1] == 4 and type(sel[1]) is int
    assert sel[np.int64(2)] == 9 and sel[torch.tensor(3)] == 0  # anything with __index__
    assert 9 in sel and 5 not in sel and "a" not in sel
    assert sel.index(9) == 2 and sel.count(2) == 1
    assert list(reversed(sel)) == IDX[::-1]
    # Every existing attribute still works.
    assert sel.n_selected == 5 and sel.shortfall == 1 and sel.method == "kcenter"
    assert sel.indices.tolist() == IDX and sel.quotas is None


def test_slices_and_integer_arrays_give_arrays() -> None:
    sel = _sel()
    part = sel[1:4]
    assert isinstance(part, np.ndarray) and part.tolist() == [2, 9, 0]
    assert not part.flags.writeable  # a view of the read-only indices
    assert sel[::-1].tolist() == IDX[::-1]
    assert sel[[0, 0, 4]].tolist() == [7, 7, 4]
    assert sel[np.array([1, 3])].tolist() == [2, 0]
    assert sel[torch.tensor([4, 1])].tolist() == [4, 2]
    assert sel[torch.tensor([2])].tolist() == [9]  # a 1-element array is an array, not an int
    assert sel[np.array([True, False, True, False, False])].tolist() == [7, 9]
    assert sel[[]].tolist() == [] and sel[[]].dtype == np.int64


@pytest.mark.parametrize("key", [5, -6, [0, 5], np.array([-7])])
def test_out_of_range_is_an_index_error(key: object) -> None:
    with pytest.raises(IndexError, match="out of range") as info:
        _sel()[key]  # type: ignore[index]
    assert isinstance(info.value, EcosError)


@pytest.mark.parametrize("key", [1.0, "0", True, np.array([0.5]), None])
def test_other_keys_are_type_errors(key: object) -> None:
    with pytest.raises(InvalidTypeError, match="Selection indices"):
        _sel()[key]  # type: ignore[index]


def test_the_numpy_view_is_read_only_and_copies_are_not() -> None:
    sel = _sel()
    view = np.asarray(sel)
    assert view.dtype == np.int64 and not view.flags.writeable
    assert np.shares_memory(view, sel.indices)
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1
    own = np.array(sel)  # numpy >= 2 passes copy=True
    assert own.flags.writeable and not np.shares_memory(own, sel.indices)
    own[0] = 100
    assert sel[0] == 7
    assert np.asarray(sel, dtype=np.int32).dtype == np.int32
    assert sel.__array__(copy=False) is sel.indices
    with pytest.raises(ValueError, match="copy=False"):
        sel.__array__(np.int32, copy=False)


def test_numpy_indexing_with_a_selection() -> None:
    pool = np.arange(30).reshape(10, 3)
    np.testing.assert_array_equal(pool[_sel()], pool[IDX])
    np.testing.assert_array_equal(np.take(pool, _sel(), axis=0), pool[IDX])


def test_torch_as_tensor_and_tensor_indexing() -> None:
    sel = _sel()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable NumPy array" warning either
        t = torch.as_tensor(sel)
        assert t.dtype == torch.int64 and t.tolist() == IDX
        data = torch.arange(30).reshape(10, 3)
        assert torch.equal(data[sel], data[IDX])
        assert torch.equal(data[:, :1][sel].flatten(), torch.tensor(IDX) * 3)
        assert torch.equal(torch.index_select(data, 0, sel.to_torch()), data[IDX])
    # as_tensor takes the DLPack path: a copy, so writing to it leaves the selection alone.
    t[0] = -1
    assert sel[0] == 7 and torch.from_dlpack(sel).tolist() == IDX


def test_to_torch_owns_writable_memory() -> None:
    sel = _sel()
    t = sel.to_torch()
    assert t.dtype == torch.int64 and t.tolist() == IDX
    t[0] = 123  # must not write through to the selection
    assert sel[0] == 7 and sel.indices[0] == 7
    assert not np.shares_memory(t.numpy(), sel.indices)
    assert sel.to_torch(device="cpu").device.type == "cpu"


def test_subset_and_dataloader() -> None:
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1) * 10
    y = torch.arange(10)
    dataset = TensorDataset(x, y)
    subset = Subset(dataset, _sel())
    assert len(subset) == 5
    assert int(subset[0][1]) == 7 and float(subset[2][0]) == 90.0
    seen = [int(v) for _, yb in DataLoader(subset, batch_size=2) for v in yb]
    assert seen == IDX
    got = sorted(int(v) for _, yb in DataLoader(subset, batch_size=3, shuffle=True) for v in yb)
    assert got == sorted(IDX)


def test_dataloader_workers_get_the_selection_by_pickle() -> None:
    # Worker processes receive the Subset pickled; the indices stay read-only there too.
    back = pickle.loads(pickle.dumps(_sel()))
    assert back.indices.tolist() == IDX and not back.indices.flags.writeable
    assert not copy.deepcopy(_sel()).indices.flags.writeable
    subset = Subset(TensorDataset(torch.arange(10)), _sel())
    loader = DataLoader(subset, batch_size=5, num_workers=1)
    assert [int(v) for (b,) in loader for v in b] == IDX


def test_subset_random_sampler() -> None:
    sampler = SubsetRandomSampler(_sel(), generator=torch.Generator().manual_seed(0))
    drawn = list(sampler)
    assert sorted(drawn) == sorted(IDX) and all(type(v) is int for v in drawn)
    data = TensorDataset(torch.arange(10))
    loader = DataLoader(data, batch_size=10, sampler=sampler)
    assert sorted(int(v) for (b,) in loader for v in b) == sorted(IDX)


def test_a_real_selection_drives_a_training_subset() -> None:
    sel = select_random(50, 8, seed=0)
    data = TensorDataset(torch.arange(50))
    rows = [int(v) for (b,) in DataLoader(Subset(data, sel), batch_size=4) for v in b]
    assert rows == sel.indices.tolist()


@given(
    idx=st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True),
    keys=st.lists(st.integers(-60, 60), max_size=10),
)
@settings(max_examples=60, deadline=None)
def test_indexing_agrees_with_numpy(idx: list[int], keys: list[int]) -> None:
    sel = Selection(np.array(idx, dtype=np.int64), budget=len(idx))
    ref = np.array(idx, dtype=np.int64)
    n = len(idx)
    for k in keys:
        if -n <= k < n:
            assert sel[k] == ref[k]
        else:
            with pytest.raises(IndexError):
                sel[k]
    inside = [k for k in keys if -n <= k < n]
    assert sel[inside].tolist() == ref[inside].tolist()
    assert sel[torch.tensor(inside, dtype=torch.int64)].tolist() == ref[inside].tolist()
    assert sel[1:-1:2].tolist() == ref[1:-1:2].tolist()
