"""A replayed map's read-only element helpers answer like the live MapView did; writes refuse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bpfnb
from bpfnb.errors import KeyNotFoundError, KeyTypeError, ReplayError, UnsupportedMapError
from bpfnb.store.recording import Recorder

pytestmark = pytest.mark.usefixtures("kernel")

SOURCE = r"""
struct key_t { u32 pid; char comm[8]; };
struct val_t { u64 count; u32 flags; };
struct counter { struct bpf_spin_lock lock; u64 packets; u64 bytes; };
BPF_HASH(pairs, struct key_t, struct val_t, 64);
BPF_ARRAY(arr, u64, 4);
BPF_PERCPU_ARRAY(pca, u32, 4);
BPF_HASH(totals, u32, struct counter, 4);
BPF_LPM_TRIE(trie, struct { u32 prefixlen; u8 addr[4]; }, u64, 16);
BPF_QUEUE(q, u64, 8);
BPF_STACK(st, struct val_t, 8);
int unused(void *ctx) { return 0; }  /* without a function bcc gives the maps no BTF */
"""
MISSING = [("pairs", (9, "z")), ("arr", 4), ("pca", 7), ("totals", 0), ("trie", "11.0.0.1")]
BAD = [("pairs", (1,)), ("pairs", {"pid": 1}), ("arr", "one"), ("totals", -1)]


@pytest.fixture(scope="module")
def live() -> Iterator[bpfnb.Program]:
    with bpfnb.load(SOURCE, name="helpers") as p:
        for pid in range(1, 6):
            p["pairs"][(pid, chr(96 + pid))] = (10 * pid, pid)
        p["arr"][2] = 7
        p["pca"][1] = 5
        p["totals"].update(3, {"packets": 1, "bytes": 2}, lock=True)
        p["trie"]["10.0.0.0/8"] = 1
        p["trie"]["10.1.0.0/16"] = 2
        yield p


@pytest.fixture(scope="module")
def path(live: bpfnb.Program, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("helpers") / "x.zip"
    bpfnb.record(live, out, count=1)
    return out


@pytest.fixture
def replayed(path: Path) -> Iterator[bpfnb.ReplayProgram]:
    with bpfnb.replay(path) as r:
        yield r


def keys_of(live: bpfnb.Program) -> list[tuple[str, Any]]:
    ckey = live["pairs"].key_type()
    ckey.pid, ckey.comm = 3, b"c"
    return [("pairs", (1, "a")), ("pairs", {"pid": 2, "comm": "b"}), ("pairs", ckey),
            ("arr", 2), ("arr", 0), ("pca", 1), ("totals", 3), ("trie", "10.1.2.3"),
            ("trie", "10.2.0.0/16"), ("trie", "10.1.0.0/16")]


def test_lookups_equal_live(live, replayed):
    for name, key in keys_of(live):
        want, got = live[name], replayed[name]
        assert got.lookup(key) == want.lookup(key) == got[key] == want[key], (name, key)
        assert key in got and key in want
    assert replayed["pca"].lookup(1, per_cpu=True) == live["pca"].lookup(1, per_cpu=True)
    assert replayed["totals"].lookup(3, lock=True) == live["totals"].lookup(3, lock=True) \
        == {"packets": 1, "bytes": 2}  # the bpf_spin_lock stays hidden
    for name in live.map_names:
        if name not in ("q", "st"):
            assert replayed[name].keys() == live[name].keys() == list(replayed[name]), name


def _error(fn: Any, *args: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        fn(*args)
    return info.value


def test_missing_and_bad_keys_raise_like_live(live, replayed):
    for name, key in MISSING + BAD:
        want = _error(live[name].lookup, key)
        got = _error(replayed[name].lookup, key)
        assert type(got) is type(want) and type(got) in (KeyNotFoundError, KeyTypeError)
        # live names the ctypes type (key_t); a recording knows only its layout
        assert str(got).split(" (or a ctypes")[0] == str(want).split(" (or a ctypes")[0]
        if type(got) is KeyNotFoundError:
            assert key not in replayed[name] and key not in live[name]
    assert str(_error(replayed["arr"].lookup, 1, True)) == str(_error(live["arr"].lookup, 1,
                                                                      True))


def test_writes_raise_replay_error(replayed, path):
    m = replayed["pairs"]
    writes = [lambda: m.update((1, "a"), (1, 2)), lambda: m.__setitem__((1, "a"), (1, 2)),
              lambda: m.delete((1, "a")), lambda: m.__delitem__((1, "a")), lambda: m.pop(),
              lambda: m.push(1), lambda: m.update_df(m.df()), lambda: m.delete_keys([]),
              lambda: m.drain(), lambda: m.ops.update((1, "a"), (1, 2))]
    for write in writes:
        with pytest.raises(ReplayError) as info:
            write()
        first = str(info.value).splitlines()[0]
        assert first.startswith("cannot ") and " map 'pairs': this is a recording of " \
            f"program 'helpers' (replaying {path}); writes need the live program" in first
    assert m[(1, "a")] == {"count": 10, "flags": 1}


def test_helpers_read_the_cursor_without_stepping(live, tmp_path):
    rec = Recorder(live, tmp_path / "two.zip")
    rec.snapshot()
    live["arr"][2] = 8
    try:
        rec.snapshot()
        rec.save()
    finally:
        live["arr"][2] = 7
    with bpfnb.replay(tmp_path / "two.zip") as r:
        assert r["arr"][2] == 8 and r.seek(0)["arr"][2] == 7
        player = r["arr"].player()
        assert player[2] == 7 and 2 in player and player.keys() == [0, 1, 2, 3]
        assert player.cursor == 0


def test_peek(live, replayed, tmp_path):
    with pytest.raises(UnsupportedMapError, match="peek works on QUEUE and STACK"):
        replayed["arr"].peek()
    live["q"].push(11)
    live["q"].push(12)
    live["st"].push((1, 2))
    live["st"].push((3, 4))
    try:
        bpfnb.record(live, tmp_path / "q.zip", count=1)
        with bpfnb.replay(tmp_path / "q.zip") as r:
            assert r["q"].peek() == live["q"].peek() == 11
            assert r["st"].peek() == live["st"].peek() == {"count": 3, "flags": 4}
    finally:
        live["q"].drain()
        live["st"].drain()
    bpfnb.record(live, tmp_path / "empty.zip", count=1)
    with bpfnb.replay(tmp_path / "empty.zip") as r:
        said = "map 'q' (QUEUE) is empty"
        assert str(_error(r["q"].peek)) == str(_error(live["q"].peek)) == said
