"""Untrusted recordings: hundreds of mutated recordings, cell stores and stacks files (fixed
seed) are read in full; the only error allowed is ReplayError, and zip bombs never expand."""

from __future__ import annotations

import collections
import io
import json
import random
import resource
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb.data import safezip
from bpfnb.errors import ReplayError
from bpfnb.profiler.stacks import Stacks
from bpfnb.store.cellstore import CellStore
from bpfnb.store.recording import record
from bpfnb.store.replay import replay
from conftest import run_workload

SOURCE = r"""
struct skey_t { u32 pid; char comm[16]; int user_stack_id; };
struct ev_t { u32 pid; u64 n; };
BPF_HASH(by_pid, u32, u64);
BPF_PERCPU_ARRAY(pc, u64, 4);
BPF_HISTOGRAM(dist);
BPF_STACK_TRACE(stack_traces, 64);
BPF_HASH(counts, struct skey_t, u64);
BPF_RINGBUF_OUTPUT(events, 8);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    char comm[16];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != 'b' || comm[1] != 'p' || comm[2] != 'f' || comm[6] != 'w') return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    by_pid.increment(pid);
    int i = pid % 4;
    pc.increment(i);
    dist.increment(bpf_log2l(pid));
    struct skey_t s = {};
    s.pid = pid;
    bpf_get_current_comm(&s.comm, sizeof(s.comm));
    s.user_stack_id = stack_traces.get_stackid(args, BPF_F_USER_STACK);
    counts.increment(s);
    struct ev_t e = {};
    e.pid = pid;
    e.n = 7;
    events.ringbuf_output(&e, sizeof(e), 0);
    return 0;
}
"""
SEED = 11
VALUES: list[Any] = [None, "abc", "", -1, 0, 2 ** 70, 1.5, float("nan"), True, [], {}, [1],
                     {"x": 1}, ["|O"], [["a", "|O"]], "<u8", [[1, 2]]]


@pytest.fixture(scope="module")
def files(tmp_path_factory, workload):
    """A real recording, a cell store and a stacks file to mutate."""
    from conftest import features, require

    require(features.can_load_bpf())
    require(features.can_trace())
    d = tmp_path_factory.mktemp("fuzz")
    with bpfnb.load(SOURCE, name="fuzz") as prog:
        def progress(p: Any) -> None:
            run_workload(workload, "getpid", 5)

        run_workload(workload, "getpid", 5)
        record(prog, d / "rec.bpfrec", every=0.01, count=3, progress=progress)
    stacks = replay(d / "rec.bpfrec").stacks()
    stacks.save(d / "stacks.zip")
    store = CellStore(d / "cells.zip")
    store.put("a", [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
              {"n": 3, "df": pd.DataFrame({"x": np.arange(5, dtype="u4"), "s": list("abcde")}),
               "arr": np.arange(6.0).reshape(2, 3), "err": ValueError("bad"), "st": stacks,
               "off": rich_stacks(stacks)})
    store.put("b", [], {"series": pd.Series([1.5, 2.5], name="v"), "t": (1, "x"),
                        "nt": Point(1, Point("a", (2, 3)))})
    store.save()
    return {k: (d / n).read_bytes() for k, n in
            (("rec", "rec.bpfrec"), ("cells", "cells.zip"), ("stacks", "stacks.zip"))}


Point = collections.namedtuple("Point", "x y")


def rich_stacks(stacks: Stacks) -> Stacks:
    """The stacks with every attribute a profiler sets (off-CPU: in microseconds)."""
    out = Stacks(stacks.rows(), name="rich", unit="us", hz=99)
    out.info.update(exit_status=0, cpu_time=0.5, command=["w", "1"], interrupted=False)
    out.mappings = {"libc.so.6": ("/usr/lib/libc.so.6", "ab12")}
    return out


# -- mutations ---------------------------------------------------------------------------------

def _entries(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i, zf.read(i)) for i in zf.infolist()]


def _zip(entries: list[tuple[str, bytes]], deflate: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) \
            as zf:
        for name, body in entries:
            zf.writestr(name, body)
    return buf.getvalue()


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            out += _paths(v, (*at, i))
    return out


def _mutate_json(obj: Any, rng: random.Random) -> Any:
    path = rng.choice(_paths(obj)[1:] or [()])
    if not path:
        return rng.choice(VALUES)
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    how = rng.random()
    if how < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif how < 0.25 and isinstance(parent, dict):
        parent["extra_" + str(rng.randrange(9))] = rng.choice(VALUES)
    elif how < 0.35 and isinstance(parent[path[-1]], dict):
        parent[path[-1]]["extra"] = rng.choice(VALUES)
    else:
        parent[path[-1]] = json.loads(json.dumps(rng.choice(VALUES)))
    return obj


def _set_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with entry `name`'s declared uncompressed size set to `size` (local header
    and central directory): a header that lies."""
    out = bytearray(data)
    for sig, field, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        pos = out.find(sig)
        while pos >= 0:
            nlen = struct.unpack_from("<H", out, pos + name_at - (4 if sig == b"PK\x03\x04"
                                                                  else 18))[0]
            if out[pos + name_at:pos + name_at + nlen].decode(errors="replace") == name:
                struct.pack_into("<I", out, pos + field, size)
            pos = out.find(sig, pos + 4)
    return bytes(out)


_BOMB: dict[str, bytes] = {}


def _bomb(size: int) -> bytes:
    """A deflated entry of `size` zero bytes (about size / 1000 bytes in the zip)."""
    if size not in _BOMB:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = bytes(1 << 20)
        raw = b"".join(c.compress(chunk) for _ in range(size >> 20)) + c.flush()
        _BOMB[size] = raw
    return _BOMB[size]


def _bomb_zip(entries: list[tuple[str, bytes]], target: str, size: int) -> bytes:
    """The zip with entry `target` replaced by a zip bomb (built by hand: no 600 MB buffer)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in entries:
            if name != target:
                zf.writestr(name, body)
        raw = _bomb(size)
        info = zipfile.ZipInfo(target)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size, info.compress_size = size, len(raw)
        info.CRC = zlib.crc32(bytes(size)) if size <= 1 << 27 else 0
        info.header_offset = buf.tell()
        buf.write(info.FileHeader())
        buf.write(raw)
        zf.filelist.append(info)
        zf.NameToInfo[target] = info
        zf.start_dir = buf.tell()
    return buf.getvalue()


def mutate(data: bytes, rng: random.Random, json_name: str) -> bytes:
    entries = [(i.filename, body) for i, body in _entries(data)]
    names = [n for n, _ in entries]
    kind = rng.choice(["truncate", "flip", "drop", "rename", "swap", "dup", "json", "json",
                       "json", "json", "json", "json", "size", "bomb", "ratio", "notjson",
                       "meta_list"])
    if kind == "truncate":
        return data[:rng.randrange(len(data))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "drop":
        i = rng.randrange(len(entries))
        return _zip(entries[:i] + entries[i + 1:])
    if kind == "rename":
        i = rng.randrange(len(entries))
        entries[i] = (entries[i][0] + rng.choice(["x", "/", ".parquet"]), entries[i][1])
        return _zip(entries)
    if kind == "swap" and len(entries) > 1:
        i, j = rng.sample(range(len(entries)), 2)
        entries[i], entries[j] = (entries[i][0], entries[j][1]), (entries[j][0], entries[i][1])
        return _zip(entries)
    if kind == "dup":
        i = rng.randrange(len(entries))
        other = entries[rng.randrange(len(entries))][1]
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _zip([*entries, (entries[i][0], other)])
    if kind == "size":
        return _set_size(data, rng.choice(names), rng.choice([0, 1, 1 << 31, 0xFFFFFFF0]))
    if kind == "bomb":
        return _bomb_zip(entries, rng.choice(names), 600 << 20)
    if kind == "ratio":  # under the size limit, but a 1000:1 expansion
        return _bomb_zip(entries, rng.choice(names), 64 << 20)
    body = dict(entries)
    json_name = rng.choice([n for n in names if n.endswith(".json")] or [json_name])
    if kind == "notjson":
        body[json_name] = rng.choice([b"", b"{", b"\xff\xfe", b"[" * 100000, b"null"])
    elif kind == "meta_list":
        body[json_name] = json.dumps([json.loads(body[json_name])]).encode()
    else:
        for _ in range(rng.randint(1, 3)):
            body[json_name] = json.dumps(_mutate_json(json.loads(body[json_name]), rng),
                                         allow_nan=True).encode()
    return _zip(list(body.items()), deflate=rng.random() < 0.5)


# -- reading everything --------------------------------------------------------------------------

def read_recording(path: Path) -> None:
    prog = replay(path)
    try:
        prog.snapshots, prog.banner(), repr(prog), prog.attach_points
        for name in prog.map_names:
            v = prog[name]
            repr(v)
            for at in (0, -1):
                v.df(at=at)
            store = prog._store
            if v.per_cpu:
                v.df(per_cpu=True)
            if store.has(name, "raw"):
                v.read(at=0)
                v.keys()
            if store.has(name, "hist"):
                v.hist()
            if store.has(name, "events"):
                v.events(all=True)
        for s in prog.stack_names:
            prog.stacks(s).df()
    finally:
        prog.close()


def read_cells(path: Path) -> None:
    store = CellStore(path)
    for key in store.keys():  # noqa: SIM118 - a CellStore is not iterable
        store.get(key)
    store.put("new", [], {"x": 1})
    store.save()  # copies the other cells' files from the mutated file


def read_stacks(path: Path) -> None:
    Stacks.load(path).df()


CASES: list[tuple[str, str, Callable[[Path], None], int]] = [
    ("rec", "meta.json", read_recording, 300),
    ("cells", "cells.json", read_cells, 150),
    ("stacks", "meta.json", read_stacks, 100),
]


@pytest.mark.parametrize("kind, json_name, read, n", CASES, ids=[c[0] for c in CASES])
def test_mutated_files_raise_only_replay_error(files, tmp_path, kind, json_name, read, n):
    read(_write(tmp_path / "valid", files[kind]))  # the original reads
    rng = random.Random(SEED)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"ok": 0, "ReplayError": 0}
    for i in range(n):
        data = mutate(files[kind], rng, json_name)
        path = _write(tmp_path / str(i), data)
        try:
            read(path)
            outcomes["ok"] += 1
        except ReplayError as e:
            assert str(path) in str(e) or "recording" in str(e), (i, e)
            outcomes["ReplayError"] += 1
        except Exception as e:  # pragma: no cover - the failure this test is for
            raise AssertionError(f"case {i}: {type(e).__name__}: {e}") from e
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    assert grown < 300 * 1024, f"peak RSS grew {grown} KiB: a bomb was expanded"
    assert outcomes["ReplayError"] > n // 2 and sum(outcomes.values()) == n


def _write(d: Path, data: bytes) -> Path:
    d.mkdir()
    path = d / "file.zip"
    path.write_bytes(data)
    return path


# -- limits, one at a time -------------------------------------------------------------------------

def test_bomb_refused_before_decompressing(files, tmp_path):
    entries = [(i.filename, b) for i, b in _entries(files["rec"])]
    path = _write(tmp_path / "b", _bomb_zip(entries, "meta.json", 600 << 20))
    with pytest.raises(safezip.ZipLimitError, match=r"'meta\.json' declares 629,145,600 "
                       r"bytes.*BPFNB_ZIP_MAX_MB"):
        replay(path)
    path = _write(tmp_path / "r", _bomb_zip(entries, "meta.json", 64 << 20))
    with pytest.raises(safezip.ZipLimitError, match=r"more than 200 times \(a zip bomb"):
        replay(path)


def test_lying_header_is_bounded(files, tmp_path):
    """A declared size smaller than the data: decompression stops at the declared size."""
    entries = [(i.filename, b) for i, b in _entries(files["rec"])]
    data = _set_size(_zip(entries, deflate=True), "meta.json", 10)
    with pytest.raises(ReplayError, match=r"meta\.json"):
        replay(_write(tmp_path / "l", data))


def test_limit_can_be_raised(files, tmp_path, monkeypatch):
    path = _write(tmp_path / "x", files["stacks"])
    monkeypatch.setattr(safezip.LIMITS, "max_entry", 100)
    with pytest.raises(safezip.ZipLimitError, match="over the limit of 100"):
        Stacks.load(path)
    monkeypatch.setattr(safezip.LIMITS, "max_entry", 1 << 30)
    assert Stacks.load(path).total > 0


INDEX0 = "index/00000000.json"
LAST = "the last index entry"  # the maps of the last save are the ones replay uses
ALL = "every index entry"


@pytest.mark.parametrize("entry, change, word", [
    ("meta.json", lambda m: m.update(version="abc"), "version"),
    (INDEX0, lambda m: m.update(snapshots="abc"), "snapshots"),
    (INDEX0, lambda m: m.update(snapshots=None), "snapshots"),
    (INDEX0, lambda m: m.update(first=1), "an index entry is missing"),
    (ALL, lambda m: m.pop("maps"), "maps"),
    (LAST, lambda m: m["maps"]["by_pid"].update(key_dtype="|O"), "key_dtype"),
    (LAST, lambda m: m["maps"]["by_pid"]["info"].update(type="NOPE"), "info.type"),
    (LAST, lambda m: m["maps"]["by_pid"]["info"].update(extra=1), "info"),
    ("meta.json", lambda m: m["map_names"].append("ghost"), "ghost"),
    (INDEX0, lambda m: m["tables"]["by_pid"]["df"].update(parts="x"), "parts"),
])
def test_malformed_meta_names_the_field(files, tmp_path, entry, change, word):
    entries = dict((i.filename, b) for i, b in _entries(files["rec"]))
    index = sorted(n for n in entries if n.startswith("index/"))
    for name in {LAST: index[-1:], ALL: index}.get(entry, [entry]):
        meta = json.loads(entries[name])
        change(meta)
        entries[name] = json.dumps(meta).encode()
    path = _write(tmp_path / "m", _zip(list(entries.items())))
    with pytest.raises(ReplayError, match=word) as e:
        replay(path)
    assert str(path) in str(e.value)


def test_meta_as_a_list_and_swapped_tables(files, tmp_path):
    entries = dict((i.filename, b) for i, b in _entries(files["rec"]))
    listed = {**entries, "meta.json": b"[]"}
    with pytest.raises(ReplayError, match="not a bpfnb recording"):
        replay(_write(tmp_path / "l", _zip(list(listed.items()))))
    meta = json.loads(entries[INDEX0])
    t = meta["tables"]
    t["by_pid"]["df"], t["dist"]["df"] = t["dist"]["df"], t["by_pid"]["df"]
    t["by_pid"]["raw"], t["counts"]["df"] = t["counts"]["df"], t["by_pid"]["raw"]
    swapped = {**entries, INDEX0: json.dumps(meta).encode()}
    prog = replay(_write(tmp_path / "s", _zip(list(swapped.items()))))
    with pytest.raises(ReplayError, match="by_pid"):
        prog["by_pid"].read(at=0)



def test_cell_store_reads_only_the_cells_asked_for(files, tmp_path):
    """A bomb in one cell's frame: the store opens and the other cell reads; that cell is
    refused before anything is decompressed."""
    entries = [(i.filename, b) for i, b in _entries(files["cells"])]
    index = json.loads(dict(entries)["cells.json"])
    frame = index["cells"]["b"]["variables"]["series"]["file"]
    path = _write(tmp_path / "c", _bomb_zip(entries, frame, 600 << 20))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = CellStore(path)
    assert store.get("a").variables["n"] == 3
    with pytest.raises(safezip.ZipLimitError, match=rf"entry '{frame}' declares 629,145,600"):
        store.get("b")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100 * 1024


def test_replay_reads_only_the_tables_asked_for(files, tmp_path):
    entries = [(i.filename, b) for i, b in _entries(files["rec"])]
    bomb = next(n for n, _ in entries if n.startswith("maps/dist/df."))
    prog = replay(_write(tmp_path / "r", _bomb_zip(entries, bomb, 600 << 20)))
    assert prog["by_pid"].df()["value"].sum() > 0
    with pytest.raises(safezip.ZipLimitError, match=rf"'{bomb}' declares"):
        prog["dist"].df(at=0)


# -- the attributes of Stacks and the names of named tuples, one field at a time ----------------

CRAFTED: list[Any] = [
    *VALUES, "x" * 10_000, "a\x1b[31mb", "line\nbreak", "<b>x</b>", "class", "_0", "__class__",
    "os.system", "x=__import__('os').system('id')", -5, 1 << 40, ["x", "x"], ["a", 1],
    ["y", "x=1"], ["_1", "y"], [f"f{i}" for i in range(2000)],
    {"t": "int", "v": 1}, {"t": "dict", "items": []}, {"t": "list", "items": []},
    {"t": "dict", "items": [[{"t": "int", "v": 1}, {"t": "int", "v": 2}]]},
    {"t": "dict", "items": [[{"t": "plain", "v": "m"}, {"t": "tuple", "items": []}]]},
    {"t": "namedtuple", "name": "os", "fields": ["system"], "items": [{"t": "int", "v": 1}]},
]
FIELDS = [("a", "off", k) for k in ("unit", "hz", "info", "mappings", "name")] + \
    [("b", "nt", k) for k in ("name", "fields", "items")]


def _check_value(name: str, v: Any) -> None:
    """A value the store gave back is what its kind promises (else the test fails)."""
    if name == "off":
        assert type(v) is Stacks and isinstance(v.name, str)
        assert isinstance(v.unit, str) and 0 < len(v.unit) <= 64 and v.unit.isprintable()
        assert type(v.hz) is int and 0 <= v.hz <= 1 << 32
        assert type(v.info) is dict and all(isinstance(k, str) for k in v.info)
        assert all(isinstance(k, str) and type(m) is tuple and len(m) == 2
                   and all(isinstance(x, str) for x in m) for k, m in v.mappings.items())
        repr(v)
    else:
        assert isinstance(v, tuple) and all(f.isidentifier() for f in type(v)._fields)
        assert type(v).__module__ == "bpfnb.store.namedtuples"
        repr(v)


@pytest.mark.parametrize("cell, name, key", FIELDS, ids=[f"{n}.{k}" for _, n, k in FIELDS])
def test_new_fields_mutated_one_at_a_time(files, tmp_path, cell, name, key):
    """Each field of a Stacks' attributes and of a named tuple's spec set to each crafted
    value (or dropped): ReplayError, or a value of the promised kind; nothing imported."""
    import sys

    entries = {i.filename: b for i, b in _entries(files["cells"])}
    original = json.loads(entries["cells.json"])
    modules = set(sys.modules)
    outcomes = {"ok": 0, "ReplayError": 0}
    for i, value in enumerate([*CRAFTED, "<drop>"]):
        index = json.loads(json.dumps(original))
        spec = index["cells"][cell]["variables"][name]
        if value == "<drop>":
            spec.pop(key)
        else:
            spec[key] = value
        mutated = {**entries, "cells.json": json.dumps(index).encode()}
        path = _write(tmp_path / str(i), _zip(list(mutated.items())))
        try:
            got = CellStore(path).get(cell)
        except ReplayError as e:
            assert str(path) in str(e), e
            outcomes["ReplayError"] += 1
            continue
        assert got is not None
        _check_value(name, got.variables[name])
        outcomes["ok"] += 1
    assert set(sys.modules) == modules
    assert outcomes["ReplayError"] >= 10, outcomes
