"""The compiled-object cache (backends/libbpf/objcache.py): written off the compile's path,
readable at once, pruned to MAX_OBJECTS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpfnb.backends.libbpf import objcache


def test_put_readable_at_once_then_on_disk(tmp_path: Path) -> None:
    file = objcache.path(tmp_path, "int x;", ("-DA",))
    assert file != objcache.path(tmp_path, "int x;", ())
    assert objcache.get(file) is None
    objcache.put(file, b"\x7fELF one")
    assert objcache.get(file) == b"\x7fELF one"
    objcache.wait()
    assert file.read_bytes() == b"\x7fELF one"
    assert [p.name for p in tmp_path.iterdir()] == [file.name]  # no temporary left


def test_pruned_to_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objcache, "MAX_OBJECTS", 3)
    files = [objcache.path(tmp_path, f"int v{i};", ()) for i in range(5)]
    for i, file in enumerate(files[:4]):
        file.write_bytes(b"old")
        os.utime(file, (1000 + i, 1000 + i))
    objcache.put(files[4], b"new")
    objcache.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files[2:])
