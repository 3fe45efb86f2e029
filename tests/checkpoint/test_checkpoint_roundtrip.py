"""Round trips must be exact: model, optimizer and RNG states load back bit for bit and keep training identically."""

from __future__ import annotations

import copy
import random
import re
import warnings
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from ckpt_helpers import assert_same

from hpc_train.checkpoint import CheckpointError, HDF5CheckpointStore, hdf5_file

pytestmark = pytest.mark.checkpoint


def make_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Embedding(10, 8), torch.nn.Flatten(), torch.nn.Linear(24, 16),
        torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 3),
    )
    return model.to(dtype)


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, 10, (6, 3), generator=gen)
        loss = model(x).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_model_and_optimizer_resume_bitwise(tmp_path: Path, opt_name: str, dtype: torch.dtype) -> None:
    model = make_model(dtype)
    make_opt = {
        "sgd_momentum": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        "adam": lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.95)),
    }[opt_name]
    opt = make_opt(model.parameters())
    train(model, opt, 3, seed=1)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    expected = copy.deepcopy(state)

    store = HDF5CheckpointStore(tmp_path)
    store.save(state, step=3)
    ck = store.load()
    assert ck is not None and ck.step == 3
    assert_same(expected, ck.state)
    assert set(ck.state["optimizer"]["state"]) == set(range(len(list(model.parameters()))))  # int keys stay int
    assert isinstance(ck.state["optimizer"]["param_groups"][0].get("betas", ()), tuple)
    assert ck.state["model"]._metadata == expected["model"]._metadata  # module versions survive

    resumed = make_model(dtype)
    resumed_opt = make_opt(resumed.parameters())
    resumed.load_state_dict(ck.state["model"])
    resumed_opt.load_state_dict(ck.state["optimizer"])
    train(model, opt, 2, seed=7)
    train(resumed, resumed_opt, 2, seed=7)
    assert_same(model.state_dict(), resumed.state_dict())
    assert_same(opt.state_dict(), resumed_opt.state_dict())


def test_rng_states_round_trip_and_reproduce_draws(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    torch.rand(5), np.random.rand(5), random.random()
    np.random.randn()  # leaves a cached gaussian in numpy's state tuple
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])

    store = HDF5CheckpointStore(tmp_path)
    store.save(state, step=1)
    ck = store.load()
    assert ck is not None
    assert_same(state, ck.state)
    assert isinstance(ck.state["python"], tuple) and isinstance(ck.state["python"][1], tuple)
    assert isinstance(ck.state["numpy"][1], np.ndarray) and ck.state["numpy"][1].dtype == np.uint32

    torch.set_rng_state(ck.state["torch"])
    np.random.set_state(ck.state["numpy"])
    random.setstate(ck.state["python"])
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def every_kind_of_leaf() -> dict[object, object]:
    tensors: dict[str, torch.Tensor] = {}
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int16,
                  torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64,
                  torch.bool, torch.complex64, torch.complex128):
        tensors[str(dtype)] = (torch.arange(12) % 7 - 3).reshape(3, 4).to(dtype)
    if hasattr(torch, "float8_e4m3fn"):
        tensors["fp8"] = torch.linspace(-2, 2, 8).to(torch.float8_e4m3fn)
    return {
        "tensors": tensors,
        "special": torch.tensor([float("nan"), float("inf"), -0.0, 1e-40]),
        "scalar_tensor": torch.tensor(2.5, dtype=torch.bfloat16),
        "empty": torch.empty(0, 3),
        "transposed": torch.arange(6.0).reshape(2, 3).t(),  # not contiguous
        "conjugated": torch.tensor([1 + 2j, 3 - 4j]).conj(),  # a lazy conjugate view
        "big": torch.randn(300_000),  # over 1 MiB: read by the parallel path
        "arrays": [np.arange(5, dtype=">f8"), np.array([True, False]), np.array([1 + 2j], dtype=np.complex64),
                   np.zeros((2, 0), dtype=np.uint64), np.float32(1.5), np.int64(-7), np.bool_(True)],
        7: "int key", "nested": {1: {2: (None, True, False, (), [], {})}},
        "floats": [0.1, -0.0, float("inf"), float("nan"), 1e308], "big_int": 2**70,
        "text": "ünïcødé \u2603 / dots.and/slashes",
        None: "none key", 2.5: "float key",
    }


def test_every_kind_of_leaf_round_trips(tmp_path: Path) -> None:
    state = every_kind_of_leaf()
    store = HDF5CheckpointStore(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.save(state, step=0, meta={"spec_hash": "abc", "world_size": 2, "threads": 1})
        ck = store.load()
    assert ck is not None
    assert_same(state, ck.state)
    assert ck.state["transposed"].is_contiguous()
    assert ck.meta == {"spec_hash": "abc", "world_size": 2, "threads": 1}


def test_ordered_dict_and_metadata_survive(tmp_path: Path) -> None:
    od: OrderedDict = OrderedDict([("b", torch.ones(1)), ("a", torch.zeros(1))])
    od._metadata = {"": {"version": 2}}  # type: ignore[attr-defined]
    store = HDF5CheckpointStore(tmp_path)
    store.save({"m": od}, step=1)
    ck = store.load()
    assert ck is not None
    assert list(ck.state["m"]) == ["b", "a"]
    assert ck.state["m"]._metadata == {"": {"version": 2}}


@pytest.mark.parametrize("bad", [{1, 2}, object(), torch.device("cpu"), np.array(["str"]), {(1, 2): 3}])
def test_unstorable_values_are_refused_naming_the_key(tmp_path: Path, bad: object) -> None:
    store = HDF5CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoint state .*(x|<root>)"):
        store.save({"ok": 1, "x": bad}, step=1)
    assert store.list() == [] and not list(tmp_path.glob("*.tmp"))


def test_file_layout_contiguous_aligned_and_annotated(tmp_path: Path) -> None:
    alignment = 64 * 1024  # e.g. a Lustre stripe
    store = HDF5CheckpointStore(tmp_path, alignment=alignment)
    path = store.save({"w": torch.randn(100_000), "b": torch.randn(10).bfloat16()}, step=42, meta={"k": [1]})
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1 and f.attrs["step"] == 42 and bool(f.attrs["complete"])
        assert f.attrs["torch_version"] == str(torch.__version__)
        assert re.match(r"\d{4}-\d\d-\d\dT", f.attrs["created"])
        assert f.attrs["meta"] == '{"k": [1]}'
        w = next(ds for n, ds in f["tensors"].items() if n.endswith(" w"))
        b = next(ds for n, ds in f["tensors"].items() if n.endswith(" b"))
        assert w.chunks is None and w.compression is None
        assert w.id.get_offset() % alignment == 0
        assert b.dtype == np.uint16 and b.attrs["dtype"] == "bfloat16"
        assert w.attrs["checksum"]


def test_no_pickle_in_the_checkpoint_code() -> None:
    src = Path(hdf5_file.__file__).parent
    for py in src.glob("*.py"):
        text = py.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle)\b", text, re.MULTILINE), py
        assert "allow_pickle=True" not in text and "torch.load" not in text, py


def test_crc32_fallback_detects_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5_file, "DEFAULT_CHECKSUM", "crc32")
    store = HDF5CheckpointStore(tmp_path)
    path = store.save({"w": torch.arange(10.0)}, step=1)
    with h5py.File(path, "r") as f:
        assert f.attrs["checksum_algorithm"] == "crc32"
    ck = store.load(path)
    assert ck is not None and torch.equal(ck.state["w"], torch.arange(10.0))
