"""Pure logic: ctypes -> dtype -> columns, per-CPU sums, histogram buckets, source mapping."""

from __future__ import annotations

import ctypes as ct

import numpy as np

from bpfnb.backends import diagnose
from bpfnb.data import frames, layout
from bpfnb.data.mapread import _unique_keys


class Inner(ct.Structure):
    _fields_ = [("a", ct.c_uint16), ("b", ct.c_int8)]


class Key(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("comm", ct.c_char * 8), ("__pad_0", ct.c_uint32),
                ("inner", Inner), ("ts", ct.c_int64), ("pair", ct.c_uint32 * 2)]


def test_dtype_matches_ctypes_offsets():
    dt = layout.dtype_of(Key)
    assert dt.itemsize == ct.sizeof(Key)
    fields = dict(dt.fields or {})
    for name, *_ in Key._fields_:
        assert fields[name][1] == getattr(Key, name).offset
    assert fields["comm"][0] == np.dtype("S8")


def test_flatten_names_types_and_strings():
    k = Key(pid=7, comm=b"bash", inner=Inner(a=65535, b=-3), ts=-5, pair=(1, 2))
    arr = np.frombuffer(bytes(k), layout.dtype_of(Key))
    cols = layout.flatten(arr, "")
    assert list(cols) == ["pid", "comm", "inner.a", "inner.b", "ts", "pair[0]", "pair[1]"]
    assert cols["pid"].dtype == np.uint32 and cols["inner.b"].dtype == np.int8
    assert (cols["comm"][0], int(cols["inner.a"][0]), int(cols["ts"][0])) == ("bash", 65535, -5)


def test_strings_cut_at_first_nul_and_keep_bad_utf8_as_bytes():
    raw = np.array([b"ab\0garbage", b"\xff\xfeok", b"ab\0other", b"\xc3\xa9t\xc3\xa9"],
                   dtype="S10")
    assert layout.decode_strings(raw).tolist() == ["ab", b"\xff\xfeok", "ab", "été"]


def test_sum_cpus_keeps_width():
    values = np.array([[1, 2], [3, 4]], dtype=np.uint64)
    out = layout.sum_cpus(values)
    assert out.dtype == np.uint64 and out.tolist() == [3, 7]
    rec = np.zeros((1, 2), dtype=[("n", np.uint32), ("c", "S4")])
    rec["n"] = [[5, 6]]
    rec["c"] = [[b"x", b"y"]]
    s = layout.sum_cpus(rec)
    assert int(s["n"][0]) == 11 and s["n"].dtype == np.uint32


def test_padded_per_cpu_value():
    dt = np.dtype(np.uint32)
    assert layout.padded(dt).itemsize == 8
    arr = np.zeros(2, layout.padded(dt))
    assert layout.unpad(arr, dt).dtype == np.uint32


def test_log2_bounds_like_bcc():
    low, high = frames.log2_bounds(np.arange(1, 6))
    assert list(zip(low.tolist(), high.tolist())) == [(0, 1), (2, 3), (4, 7), (8, 15), (16, 31)]


def test_unique_keys_keeps_first_occurrence_order():
    keys = np.array([5, 3, 5, 9, 3], np.uint32)
    vals = np.arange(5)
    k, v = _unique_keys(keys, vals)
    assert k.tolist() == [5, 3, 9] and v.tolist() == [0, 1, 3]


def test_prepare_source_keeps_cell_lines():
    src = "int f(void *ctx) { return 0; }\n#define X \\\n  1\nint y;"
    out = diagnose.prepare_source(src).split("\n")
    assert out[0] == '#line 1 "cell"' and out[2] == '#line 1 "cell"'
    assert out[3].index("{") == src.index("{")  # body keeps its column
    assert "  1" in out and out[out.index("  1") - 1] == "#define X \\"


def test_compile_error_parsing():
    output = "cell:3:5: error: use of undeclared identifier 'x'\n1 error generated.\n"
    err = diagnose.compile_error("a\nb\n    x;\n", output)
    assert str(err).splitlines()[0].startswith("C compile error at line 3, column 5")
    assert str(err).splitlines()[1].strip() == "x;"


def test_sum_cpus_sums_array_fields():
    rec = np.zeros((1, 2), dtype=[("slots", np.uint64, (3,))])
    rec["slots"][0, 0] = [1, 2, 3]
    rec["slots"][0, 1] = [10, 20, 30]
    assert layout.sum_cpus(rec)["slots"][0].tolist() == [11, 22, 33]
