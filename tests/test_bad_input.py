"""Bad input gets a named bpfnb error, nothing is written and nothing is left attached
(issue 11, "bad input"): update_df rows, pin paths, open_map arguments, odd cell bytes."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb.errors import KeyTypeError

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
    ncpu = len(bpfnb.bpfsys.possible_cpus())
    df = pd.DataFrame({"key": np.uint32([1, 1]), "cpu": [0, ncpu + 5],
                       "value": np.uint64([1, 2])})
    with pytest.raises(KeyTypeError, match=f"row 1, column 'cpu': {ncpu + 5} is not a "):
        m.update_df(df)
    assert len(m) == 0


def test_update_df_large_frame_is_checked_fast(prog):
    n = 1_000_000
    df = pd.DataFrame({"key": np.arange(n, dtype=np.float64),
                       "value": np.arange(n, dtype=np.float64)})
    df.loc[n - 1, "key"] = 0.5
    codec = prog["by_key"].ops
    start = time.perf_counter()
    with pytest.raises(KeyTypeError, match=f"row {n - 1}, column 'key': 0.5"):
        codec.frame_arrays(df)
    assert time.perf_counter() - start < 1.0
