"""Every C type a map can hold, decoded the same way through the program (prog[m].df()),
through open_map(id=).df(), and as bpftool's BTF-formatted `-j map dump` shows it."""

from __future__ import annotations

import ctypes as ct
import json
import subprocess
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb._sys.btf import MapLayoutError
from conftest import run_workload

pytestmark = pytest.mark.usefixtures("kernel")

TYPES = r"""
enum color { RED = 1, GREEN = 2, BLUE = 40 };
struct inner { u8 x; u32 y; };
struct all_t {
    s8 a;
    u16 m[2][3];
    char c[6];
    unsigned int f1:3, f2:5;
    int f3:4;
    enum color col;
    struct inner p[2];
    union { u32 u; u16 h[2]; };
    struct { u8 n1; s16 n2; } nest;
    unsigned __int128 big;
    __int128 sbig;
    void *ptr;
    bool b;
    u64 wide;
    s32 neg;
};
BPF_HASH(everything, s8, struct all_t, 16);
BPF_HASH(small, s8, s8, 4);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    s8 k = -3;
    struct all_t v = {};
    v.a = -5;
    v.m[0][0] = 1; v.m[0][1] = 2; v.m[0][2] = 3; v.m[1][0] = 4; v.m[1][1] = 5; v.m[1][2] = 6;
    v.c[0] = 'h'; v.c[1] = 0xc8; v.c[3] = 'z';
    v.f1 = 5; v.f2 = 17; v.f3 = -3;
    v.col = BLUE;
    v.p[1].x = 7; v.p[1].y = 9;
    v.u = 0x00020001;
    v.nest.n1 = 200; v.nest.n2 = -300;
    v.big = ((unsigned __int128)1 << 100) + 5;
    v.sbig = -7;
    v.ptr = (void *)0xffff1234;
    v.b = 1;
    v.wide = 0xfedcba9876543210ULL;
    v.neg = -123456;
    everything.update(&k, &v);
    s8 k2 = 4;
    struct all_t w = {};
    w.a = 127;
    w.c[0] = 0xc3; w.c[1] = 0xa9; w.c[2] = 't'; w.c[3] = 0xc3; w.c[4] = 0xa9;
    w.f1 = 7; w.f3 = 7;
    w.col = 7;
    everything.update(&k2, &w);
    s8 sk = -128, sv = -1;
    small.update(&sk, &sv);
    return 0;
}
"""

COLUMNS = ["key", "a", "m[0][0]", "m[0][1]", "m[0][2]", "m[1][0]", "m[1][1]", "m[1][2]", "c",
           "f1", "f2", "f3", "col", "p[0].x", "p[0].y", "p[1].x", "p[1].y", "u", "h[0]",
           "h[1]", "nest.n1", "nest.n2", "big", "sbig", "ptr", "b", "wide", "neg"]
ROW = {"key": -3, "a": -5, "m[0][0]": 1, "m[0][1]": 2, "m[0][2]": 3, "m[1][0]": 4,
       "m[1][1]": 5, "m[1][2]": 6, "c": b"h\xc8", "f1": 5, "f2": 17, "f3": -3, "col": "BLUE",
       "p[0].x": 0, "p[0].y": 0, "p[1].x": 7, "p[1].y": 9, "u": 0x20001, "h[0]": 1, "h[1]": 2,
       "nest.n1": 200, "nest.n2": -300, "big": (1 << 100) + 5, "sbig": -7,
       "ptr": "0xffff1234", "b": True, "wide": 0xFEDCBA9876543210, "neg": -123456}
DTYPES = {"key": np.int8, "a": np.int8, "m[1][2]": np.uint16, "f1": np.uint32,
          "f3": np.int32, "p[1].x": np.uint8, "p[1].y": np.uint32, "nest.n2": np.int16,
          "b": np.bool_, "wide": np.uint64, "neg": np.int32}
SIGNED_BITS = {"f3": 4}
INT128 = {"big": False, "sbig": True}
CHARS = {"c"}


@pytest.fixture(scope="module")
def filled(workload):
    with bpfnb.load(TYPES, name="types") as prog:
        run_workload(workload, "getpid", 1)
        yield prog


def _rows(df: pd.DataFrame) -> dict[int, dict[str, Any]]:
    return {int(r["key"]): r for r in df.astype(object).to_dict("records")}


def test_program_df_decodes_every_type(filled):
    df = filled["everything"].df().sort_values("key", ignore_index=True)
    assert list(df.columns) == COLUMNS
    for col, dtype in DTYPES.items():
        assert df[col].dtype == dtype, col
    assert _rows(df)[-3] == ROW
    other = _rows(df)[4]
    assert (other["a"], other["c"], other["f1"], other["f3"]) == (127, "été", 7, 7)
    assert other["col"] == "7"  # no enumerator has 7: its number, as a category of its own
    assert isinstance(df["col"].dtype, pd.CategoricalDtype)
    assert df.attrs["enums"]["col"] == {"RED": 1, "GREEN": 2, "BLUE": 40, "7": 7}
    assert [df.attrs["enums"]["col"][n] for n in df["col"]] == [40, 7]


def test_open_map_equals_program_df(filled):
    ours = filled["everything"].df().sort_values("key", ignore_index=True)
    with bpfnb.open_map(id=filled["everything"].info.id) as m:
        theirs = m.df().sort_values("key", ignore_index=True)
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours.attrs["enums"] == theirs.attrs["enums"]
    with bpfnb.open_map(id=filled["everything"].info.id, decode_enums=False) as m:
        numbers = m.df().sort_values("key", ignore_index=True)
    assert numbers["col"].tolist() == [40, 7]


def test_s8_scalars(filled):
    df = filled["small"].df()
    assert (df["key"].dtype, df["value"].dtype) == (np.int8, np.int8)
    assert df.to_dict("records") == [{"key": -128, "value": -1}]


def _bpftool_flat(obj: Any, name: str = "") -> dict[str, Any]:
    """bpftool's formatted JSON flattened to C names (anonymous members inline)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_bpftool_flat(v, f"{name}.{k}" if name and k else (k or name)))
        return out
    if isinstance(obj, list) and name not in CHARS:
        out = {}
        for i, v in enumerate(obj):
            out.update(_bpftool_flat(v, f"{name}[{i}]"))
        return out
    return {name: obj}


def _bpftool_value(col: str, v: Any, enums: dict[str, int]) -> Any:
    if col in CHARS:  # char[] with a non-printable byte: a list of signed chars
        raw = bytes(x & 0xFF for x in v) if isinstance(v, list) else v.encode()
        raw = raw.split(b"\0", 1)[0]
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw
    if col in INT128:
        n = int(v, 16)
        return n - (1 << 128) if INT128[col] and n >> 127 else n
    if col in ("f1", "f2", "f3"):  # bit fields: bpftool prints their bits in hex
        n = int(v, 16)
        bits = SIGNED_BITS.get(col)
        return n - (1 << bits) if bits and n >> (bits - 1) else n
    if col == "ptr":
        return hex(v)
    if col == "col":
        return {v: k for k, v in enums.items()}.get(v, v) if isinstance(v, int) else v
    return v


def test_matches_bpftool(filled):
    view = filled["everything"]
    df = view.df()
    dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(view.info.id)],
                                     capture_output=True, text=True, check=True).stdout)
    ours = _rows(df)
    assert len(dump) == len(ours) == 2
    enums = df.attrs["enums"]["col"]
    for entry in dump:
        flat = {"key": entry["formatted"]["key"], **_bpftool_flat(entry["formatted"]["value"])}
        assert list(flat) == COLUMNS
        row = ours[flat["key"]]
        assert {c: _bpftool_value(c, v, enums) for c, v in flat.items()} == {
            c: (str(x) if c == "col" and isinstance(x, int) else x) for c, x in row.items()}


FLOATS = r"""
struct fp { float fl; double db; };
BPF_HASH(fh, u32, struct fp, 4);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 z = 0;
    struct fp w = {};
    *(u32 *)&w.fl = 0x3fc00000;  /* 1.5 (float constants would need .rodata) */
    *(u64 *)&w.db = 0xc002000000000000ULL;  /* -2.25 */
    fh.update(&z, &w);
    return 0;
}
"""


def test_floats(workload):
    """bcc 0.26 drops the whole program's BTF when it has a float: its ctypes describe it."""
    with bpfnb.load(FLOATS, name="floats") as prog:
        run_workload(workload, "getpid", 1)
        df = prog["fh"].df()
    assert (df["fl"].dtype, df["db"].dtype) == (np.float32, np.float64)
    assert df[["fl", "db"]].to_dict("records") == [{"fl": 1.5, "db": -2.25}]


def test_size_mismatch_is_an_error():
    from bpfnb.map import create as mapcreate
    from bpfnb.map.view import MapView

    view = mapcreate.create("hash", ct.c_uint32, ct.c_uint64, 4)  # no BTF
    try:
        wrong = MapView("wrong", view.fd, ct.c_uint32, ct.c_uint32)
        with pytest.raises(MapLayoutError, match="value type c_uint is 4 bytes but the map's "
                                                 "values are 8"):
            wrong.df()
    finally:
        view.release()


ENUMS = r"""
enum color { RED = 1, GREEN = 2, BLUE = 40 };
struct ev_t { enum color col; u32 n; };
BPF_HASH(by_color, enum color, struct ev_t, 8);
int unused(void *ctx) { return 0; }  /* bcc loads no BTF for a program without functions */
"""


def test_enum_names_round_trip_through_update_df():
    with bpfnb.load(ENUMS, name="enums", attach=False) as prog:
        view = prog["by_color"]
        frame = pd.DataFrame({"key": ["BLUE", "RED"], "col": ["GREEN", "7"], "n": [1, 2]})
        assert view.update_df(frame) == 2
        df = view.df().sort_values("n", ignore_index=True)
        assert df.astype(object).to_dict("records") == [
            {"key": "BLUE", "col": "GREEN", "n": 1}, {"key": "RED", "col": "7", "n": 2}]
        assert df.attrs["enums"]["key"] == {"RED": 1, "GREEN": 2, "BLUE": 40}
        assert view.update_df(df) == 2  # df() itself writes back unchanged
        assert view.df().sort_values("n", ignore_index=True).equals(df)
        view.update("GREEN", {"col": "RED", "n": 3})
        assert view.lookup("GREEN") == {"col": "RED", "n": 3}


ARRAYS = r"""
struct inner { u8 x; u32 y; };
struct arr_t { u16 m[2][3]; struct inner p[2]; char names[2][4]; };
BPF_HASH(arrays, u32, struct arr_t, 8);
int unused(void *ctx) { return 0; }
"""


def test_array_columns_round_trip_through_update_df():
    with bpfnb.load(ARRAYS, name="arrays", attach=False) as prog:
        view = prog["arrays"]
        row = {"key": 1, "m[0][0]": 1, "m[0][1]": 2, "m[0][2]": 3, "m[1][0]": 4,
               "m[1][1]": 5, "m[1][2]": 6, "p[0].x": 7, "p[0].y": 8, "p[1].x": 9,
               "p[1].y": 10, "names[0]": "ab", "names[1]": "cde"}
        assert view.update_df(pd.DataFrame([row])) == 1
        df = view.df()
        assert list(df.columns) == list(row)
        assert df.astype(object).to_dict("records") == [row]
        raw = bytes(np.asarray(view.read().values).tobytes())
        assert raw[:12] == np.arange(1, 7, dtype="<u2").tobytes()  # C order: m[0][*] first
        assert view.lookup(1)["p[1].y"] == 10


BITS = r"""
enum mode { OFF = 0, ON = 1, AUTO = 2 };
struct flags_t { u8 lead; unsigned int lo:3, mid:9; int neg:5; enum mode md:2; u16 tail; };
BPF_HASH(flags, u32, struct flags_t, 8);
int unused(void *ctx) { return 0; }
"""


def test_bit_fields_round_trip_through_update_and_update_df():
    from bpfnb.errors import KeyTypeError

    with bpfnb.load(BITS, name="bits", attach=False) as prog:
        view = prog["flags"]
        row = {"key": 1, "lead": 255, "lo": 5, "mid": 300, "neg": -16, "md": "AUTO",
               "tail": 65535}
        assert view.update_df(pd.DataFrame([row])) == 1
        df = view.df()
        assert list(df.columns) == list(row)
        assert df.astype(object).to_dict("records") == [row]
        assert (df["lo"].dtype, df["neg"].dtype) == (np.uint32, np.int32)
        view.update(2, {**view.lookup(1), "lo": 7, "neg": 15, "md": "ON"})
        assert view.lookup(2) == {"lead": 255, "lo": 7, "mid": 300, "neg": 15, "md": "ON",
                                  "tail": 65535}
        assert view.update_df(view.df()) == 2
        with pytest.raises(KeyTypeError, match="outside its 3-bit field"):
            view.update(3, {k: v for k, v in row.items() if k != "key"} | {"lo": 8})
        with pytest.raises(KeyTypeError, match="outside its 5-bit field"):
            view.update_df(pd.DataFrame([{**row, "key": 4, "neg": 16}]))


PERCPU = r"""
enum color { RED = 1, GREEN = 2, BLUE = 40 };
struct pc_t { u32 hits:10, other:6; enum color col; u64 total; struct { u32 a; } nest; };
BPF_PERCPU_HASH(pc, u32, struct pc_t, 4);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    char comm[16];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != 'b' || comm[1] != 'p' || comm[2] != 'f' || comm[6] != 'w') return 0;
    u32 k = 0;
    struct pc_t zero = {};
    struct pc_t *v = pc.lookup_or_try_init(&k, &zero);
    if (v) { v->hits += 1; v->col = BLUE; v->total += 1; v->nest.a += 2; }
    return 0;
}
"""


def test_per_cpu_struct_sums_counters_and_keeps_names(workload):
    from bpfnb._sys import bpfsys

    cpus = sorted(__import__("os").sched_getaffinity(0))[:2]
    with bpfnb.load(PERCPU, name="percpu_types") as prog:
        for cpu, calls in zip(cpus, (5, 7)):
            run_workload(workload, "getpid", calls, cpu=cpu)
        total = 5 + (7 if len(cpus) > 1 else 0)
        df = prog["pc"].df()
        assert df.astype(object).to_dict("records") == [
            {"key": 0, "hits": total, "other": 0, "col": "BLUE", "total": total,
             "nest.a": 2 * total}]
        long = prog["pc"].df(per_cpu=True)
        per_cpu = long[long["hits"] > 0].sort_values("cpu")
        assert per_cpu["hits"].tolist() == [5, 7][:len(cpus)]
        assert len(long) == len(bpfsys.possible_cpus())
