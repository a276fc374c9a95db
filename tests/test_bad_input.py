"""Bad input gets a named bpfnb error, nothing is written and nothing is left attached
(issue 11, "bad input"): update_df rows, pin paths, open_map arguments, odd cell bytes."""

from __future__ import annotations

import ctypes as ct
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb.errors import BpfnbError, KeyTypeError, MapError
from bpfnb.machine.external import BPFFS_ROOT, open_map, pin, unpin

pytestmark = pytest.mark.usefixtures("kernel")

MAPS = r"""
struct key_t { u32 pid; char comm[16]; };
BPF_HASH(by_key, u32, u64, 64);
BPF_HASH(small, u32, u8, 64);
BPF_HASH(by_comm, struct key_t, u64, 64);
BPF_PERCPU_HASH(pc, u32, u64, 16);
"""


@pytest.fixture(scope="module")
def prog():
    with bpfnb.load(MAPS, name="bad_input", attach=False) as p:
        yield p


@pytest.fixture(autouse=True)
def empty_maps(prog):
    for name in ("by_key", "small", "by_comm", "pc"):
        prog[name].delete_keys(prog[name].keys())


@pytest.mark.parametrize("keys, why", [
    (pd.Series([3.0, 1.7]), "1.7 is not a whole number"),
    (pd.Series([3.0, np.nan]), "nan is not an int"),
    (pd.Series([3, pd.NA], dtype="Int64"), "missing value (NA)"),
    (pd.Series([3, -1]), "-1 is outside uint32"),
    (pd.Series([3, 2**32]), "4294967296 is outside uint32"),
    (pd.Series([3.0, 2.0**64]), "is outside uint32"),
    (pd.Series(["3", "x"], dtype=object), "'3' is not an int"),
])
def test_update_df_refuses_bad_keys_and_writes_nothing(prog, keys, why):
    m = prog["by_key"]
    df = pd.DataFrame({"key": keys, "value": np.array([7, 8], np.uint64)}).set_axis([10, 11])
    with pytest.raises(KeyTypeError) as e:
        m.update_df(df)
    msg = str(e.value)
    assert "nothing was written" in e.value.summary
    bad_row = 11 if "'3'" not in why else 10
    assert f"row {bad_row}, column 'key': " in msg and why in msg
    assert len(m) == 0


@pytest.mark.parametrize("value, why", [
    (300, "300 is outside uint8 [0, 255]"),
    (-1, "-1 is outside uint8 [0, 255]"),
    (2.9, "2.9 is not a whole number"),
    (np.nan, "nan is not an int"),
])
def test_update_df_refuses_bad_u8_values(prog, value, why):
    m = prog["small"]
    df = pd.DataFrame({"key": np.arange(3, dtype=np.uint32), "value": [1, value, 2]})
    with pytest.raises(KeyTypeError, match="1 of 3 rows") as e:
        m.update_df(df)
    assert f"row 1, column 'value': {why}" in str(e.value)
    assert len(m) == 0


def test_update_df_refuses_long_comm_and_lists_the_first_rows(prog):
    m = prog["by_comm"]
    comms = ["ok"] + ["x" * 39] * 9
    df = pd.DataFrame({"pid": np.arange(10, dtype=np.uint32), "comm": comms,
                       "value": np.ones(10, np.uint64)})
    with pytest.raises(KeyTypeError, match="9 of 10 rows do not fit map 'by_comm'") as e:
        m.update_df(df)
    lines = str(e.value).splitlines()[1:]
    assert lines == [f"  row {i}, column 'comm': {'x' * 39!r} is longer than char[16]"
                     for i in range(1, 6)]
    assert len(m) == 0
    exact = df.iloc[:1].assign(comm="y" * 16)
    assert m.update_df(exact) == 1
    assert m.df()["comm"].tolist() == ["y" * 16]


def test_update_df_checks_keys_and_values_together(prog):
    m = prog["small"]
    df = pd.DataFrame({"key": [1.5, 2.0, 3.0], "value": [1, 2, 256]})
    with pytest.raises(KeyTypeError, match="2 of 3 rows") as e:
        m.update_df(df)
    assert "row 0, column 'key': 1.5" in str(e.value)
    assert "row 2, column 'value': 256" in str(e.value)
    assert len(m) == 0


def test_update_df_accepts_good_frames_of_every_dtype(prog):
    m = prog["by_key"]
    df = pd.DataFrame({"key": pd.Series([1, 2], dtype="Int64"),
                       "value": pd.Series([2.0**63, 5.0])})
    assert m.update_df(df) == 2
    assert m[1] == 2**63 and m[2] == 5


def test_update_df_refuses_unknown_cpu(prog):
    m = prog["pc"]
    ncpu = len(bpfnb._sys.bpfsys.possible_cpus())
    df = pd.DataFrame({"key": np.uint32([1, 1]), "cpu": [0, ncpu + 5],
                       "value": np.uint64([1, 2])})
    with pytest.raises(KeyTypeError, match=f"row 1, column 'cpu': {ncpu + 5} is not a "):
        m.update_df(df)
    assert len(m) == 0


def test_update_df_large_frame_names_the_last_bad_row(prog):
    n = 1_000_000
    df = pd.DataFrame({"key": np.arange(n, dtype=np.float64),
                       "value": np.arange(n, dtype=np.float64)})
    df.loc[n - 1, "key"] = 0.5
    codec = prog["by_key"].ops
    with pytest.raises(KeyTypeError, match=f"row {n - 1}, column 'key': 0.5"):
        codec.frame_arrays(df)


# -- open_map and pin arguments ----------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"id": "abc"}, "wants a map id (a positive int"),
    ({"id": 1.5}, "not 1.5"),
    ({"id": True}, "not True"),
    ({"id": -3}, "not -3"),
    ({"pinned": "/sys/fs/bpf/x\0y"}, "without NUL bytes"),
    ({"pinned": "/etc/passwd"}, "/etc/passwd is not a BPF object"),
    ({"pinned": "/sys/fs/bpf/../../etc/passwd"}, "may not contain '..'"),
    ({"pinned": "/sys/fs/bpf/no_such_pin_xyz"}, "nothing is pinned at"),
])
def test_open_map_bad_arguments_are_map_errors(kwargs, message):
    with pytest.raises(MapError, match=re.escape(message)):
        open_map(**kwargs)


def test_open_map_wants_ctypes_for_key_and_value(prog):
    with pytest.raises(MapError, match=r"open_map\(key=...\) wants a ctypes type"):
        open_map(id=prog["by_key"].info.id, key=int)
    with pytest.raises(MapError, match=r"open_map\(value=...\) wants a ctypes type"):
        open_map(id=prog["by_key"].info.id, value="u64")
    fds = len(os.listdir("/proc/self/fd"))
    with open_map(id=prog["by_key"].info.id, key=ct.c_uint32) as m:
        assert m.info.id == prog["by_key"].info.id
    assert len(os.listdir("/proc/self/fd")) == fds


@pytest.fixture
def pin_root():
    root = Path(BPFFS_ROOT) / f"bpfnb_test_bad_input_{os.getpid()}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_pin_refuses_dotdot_nul_and_creates_nothing(prog, pin_root):
    m = prog["by_key"]
    for path, message in [(f"{pin_root}/a/../b", "may not contain '..'"),
                          (f"{pin_root}/a\0b", "without NUL bytes"),
                          ("/tmp/bpfnb_not_bpffs/x", "not on a bpf file system")]:
        with pytest.raises(BpfnbError, match=re.escape(message)):
            pin(m, path)
    with pytest.raises(MapError, match="pin wants a map"):
        pin("by_key", f"{pin_root}/m")
    assert not pin_root.exists() and not os.path.exists("/tmp/bpfnb_not_bpffs")
    with pytest.raises(MapError, match="without NUL"):
        unpin(f"{pin_root}/a\0b")


def test_pin_normalises_and_removes_dirs_it_made_when_the_pin_fails(prog, pin_root):
    m = prog["by_key"]
    assert pin(m, f"{pin_root}//x/./m") == f"{pin_root}/x/m"
    with open_map(pinned=f"{pin_root}/x/m") as got:
        assert got.info.id == m.info.id
    with pytest.raises(BpfnbError, match="already exists"):
        pin(m, f"{pin_root}/x/m")
    with pytest.raises(BpfnbError):  # fd 0 is no BPF object: the pin fails
        pin(0, f"{pin_root}/new/deeper/m")
    assert sorted(p.name for p in pin_root.rglob("*")) == ["m", "x"]
    unpin(f"{pin_root}/x/m")


def test_update_df_comm_utf8_counts_bytes(prog):
    m = prog["by_comm"]
    df = pd.DataFrame({"pid": np.uint32([1, 2]), "comm": ["é" * 8, "é" * 9],
                       "value": np.uint64([1, 1])})
    with pytest.raises(KeyTypeError, match=r"1 of 2 rows.*\n  row 1, column 'comm'"):
        m.update_df(df)
    assert m.update_df(df.iloc[:1]) == 1
    assert m.df()["comm"].tolist() == ["é" * 8]


def test_update_df_checks_large_string_columns(prog):
    n = 200_000
    df = pd.DataFrame({"pid": np.arange(n, dtype=np.uint32),
                       "comm": [f"c{i}" for i in range(n)], "value": np.ones(n, np.uint64)})
    df.loc[n - 1, "comm"] = "z" * 17
    with pytest.raises(KeyTypeError, match=f"row {n - 1}, column 'comm': 'zzzz"):
        prog["by_comm"].ops.frame_arrays(df)
