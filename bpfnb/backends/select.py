"""Which engine runs a BCC C program: `backend="auto" | "libbpf" | "bcc"`, and why.

auto picks libbpf (CO-RE: struct layouts from the running kernel's BTF) wherever the
kernel has BTF and clang, bpftool and libbpf.so.1 are present, and bcc otherwise or for a
program using something only bcc does.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bpfnb._sys import features, libbpf
from bpfnb.backends.bcc import BccModule
from bpfnb.backends.libbpf import LibbpfModule, compiler
from bpfnb.backends.libbpf import release as release_libbpf
from bpfnb.errors import BpfnbError, FeatureUnavailableError, KeyTypeError

BACKENDS = ("auto", "libbpf", "bcc")
# constructs only bcc runs: (pattern, what the program does)
BCC_ONLY = (
    (re.compile(r"section\s*\(\s*\"maps/"), "declares maps through bcc's internal sections"),
    (re.compile(r"\bBPF_TABLE(?:_PINNED)?\s*\(\s*\"extern\"|\bBPF_TABLE_PINNED\b"),
     "shares or pins maps the bcc way"),
)


@dataclass(frozen=True)
class Choice:
    backend: str  # "libbpf" or "bcc"
    reason: str  # one line, for the Program card, `%bpf ls` and recordings


def libbpf_ready() -> features.Feature:
    """Kernel BTF, clang, bpftool and libbpf.so.1: what the libbpf backend needs."""
    btf = features.btf()
    if not btf:
        return features.Feature("libbpf", False, btf.reason)
    try:
        compiler.clang()
    except FeatureUnavailableError:
        return features.Feature("libbpf", False, "clang is not installed")
    if shutil.which("bpftool", path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
        return features.Feature("libbpf", False, "bpftool is not installed")
    try:
        version = libbpf.version()
    except OSError as e:
        return features.Feature("libbpf", False, f"libbpf.so.1 cannot be loaded ({e})")
    return features.Feature("libbpf", True, f"kernel BTF, clang and libbpf {version}")


def bcc_only(source: str) -> str | None:
    """Why this program needs bcc, or None."""
    return next((why for pattern, why in BCC_ONLY if pattern.search(source)), None)


def choose(source: str, backend: str = "auto") -> Choice:
    """The engine for this program and the reason; FeatureUnavailableError when the one
    asked for cannot run here."""
    if backend not in BACKENDS:
        raise BpfnbError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "bcc":
        return Choice("bcc", "backend='bcc' was asked for")
    ready = libbpf_ready()
    needs = bcc_only(source)
    if backend == "libbpf":
        if not ready:
            raise FeatureUnavailableError(f"The libbpf backend cannot run here: {ready.reason}. "
                                          "Install clang, bpftool and libbpf1 "
                                          "(`scripts/setup-system`) or use backend='bcc'.")
        if needs:
            raise FeatureUnavailableError(f"This program {needs}, which only the bcc backend "
                                          "does; use backend='bcc'.")
        return Choice("libbpf", "backend='libbpf' was asked for")
    if not ready:
        return Choice("bcc", f"auto: libbpf unavailable ({ready.reason})")
    if needs:
        return Choice("bcc", f"auto: the program {needs} (bcc only)")
    return Choice("libbpf", f"auto: {ready.reason}")


def make_module(source: str, cflags: Sequence[str] = (), usdt: Sequence[Any] = (),
                backend: str = "auto", name: str = "bpfnb",
                consts: Mapping[str, int] | None = None) -> tuple[Any, Choice]:
    """Compile and load with the chosen engine: (BccModule or LibbpfModule, Choice).

    `consts` set `const volatile` globals (libbpf: per load, on one cached object). bcc has
    no globals: there each becomes a macro, `-Dname=value`, so a program declares them as
    `#ifndef name` / `const volatile u32 name = 0;` / `#endif`."""
    choice = choose(source, backend)
    if choice.backend == "libbpf":
        return LibbpfModule(source, cflags, tuple(usdt), name=name, consts=consts), choice
    return BccModule(source, [*cflags, *_macros(consts or {})], tuple(usdt)), choice


def _macros(consts: Mapping[str, int]) -> list[str]:
    bad = [k for k, v in consts.items() if not isinstance(v, int)]
    if bad:
        raise KeyTypeError(f"bcc takes only integer consts (as -D macros); {', '.join(bad)} "
                           "are not: use backend='libbpf'")
    return [f"-D{k}={int(v)}" for k, v in consts.items()]


def status() -> dict[str, str]:
    """Each engine's state on this machine, for the doctor: what auto picks and why."""
    ready = libbpf_ready()
    out = {"kernel BTF": str(features.btf()),
           "kernel headers (bcc)": str(features.kernel_headers())}
    try:
        out["clang"] = compiler.clang()
    except FeatureUnavailableError as e:
        out["clang"] = e.summary
    try:
        out["libbpf"] = libbpf.version()
    except OSError as e:
        out["libbpf"] = str(e)
    root = compiler.cache_root()
    out["compile cache"] = str(root)
    if ready:
        entry = root / compiler.cache_key()
        built = (entry / "prelude.h.pch").exists()
        out["prelude for this kernel"] = "built" if built else \
            "not built yet (the first libbpf cell builds it, ~2 s)"
    auto = choose("")
    out["auto picks"] = f"{auto.backend} ({auto.reason})"
    return out


def release() -> None:
    """Give back what the backends keep warm between cells (libbpf's spare compiler and
    worker thread); the next load starts them again."""
    release_libbpf()
