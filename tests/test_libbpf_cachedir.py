"""The libbpf compile cache lives in the kit's cache directory (bpfnb.symbols.cachedir):
root-only folders, refused when someone else could change them or when they are links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpfnb.backends.libbpf import compiler
from bpfnb.backends.select import libbpf_ready
from bpfnb.errors import FeatureUnavailableError
from conftest import require

NOBODY = 65534


@pytest.fixture(autouse=True)
def _toolchain() -> None:
    require(libbpf_ready())


def _refused(monkeypatch: pytest.MonkeyPatch, base: Path, why: str) -> None:
    monkeypatch.setenv("BPFNB_CACHE", str(base))
    with pytest.raises(FeatureUnavailableError, match=rf"^The compile cache .* is not "
                                                      rf"private \(.*{why}"):
        compiler.compile_c("int refused;")


def test_shared_with_the_symbol_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpfnb.symbols import cachedir

    monkeypatch.setenv("BPFNB_CACHE", str(tmp_path / "cache"))
    built = compiler.compile_c("int shared;")
    where = cachedir.open_cache(compiler.CACHE)
    assert where is not None
    with where:
        assert where.path == compiler.cache_root() == compiler.prelude().directory.parent
    assert built.obj[:4] == b"\x7fELF"


def test_a_link_in_the_path_is_refused(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    _refused(monkeypatch, tmp_path / "link" / "cache", "symbolic link")
    assert list(real.iterdir()) == []


def test_a_folder_above_owned_by_someone_else_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)  # they could rename our folder away and plant theirs
    _refused(monkeypatch, theirs / "cache", f"owned by uid {NOBODY}")
    assert list(theirs.iterdir()) == []


def test_a_linked_kernel_build_folder_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPFNB_CACHE", str(tmp_path / "cache"))
    entry = compiler.prelude().directory
    objects = entry / "objects"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if objects.exists():
        objects.rmdir()
    objects.symlink_to(elsewhere)
    _refused(monkeypatch, tmp_path / "cache", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_folder_open_to_others_is_refused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cache" / "libbpf").mkdir(parents=True)
    (tmp_path / "cache" / "libbpf").chmod(0o750)
    _refused(monkeypatch, tmp_path / "cache", "has mode 750")
