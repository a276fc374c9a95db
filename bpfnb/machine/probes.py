"""What can be attached here, as a DataFrame (like `bpftrace -l -v`).

>>> bpfnb.probes("syscalls:sys_enter_open*")                 # tracepoints, with arguments
>>> bpfnb.probes("kprobe:vfs_*")                             # kernel functions (BTF signatures)
>>> bpfnb.probes("uprobe:/usr/bin/python3:PyEval_*")         # functions of a binary
>>> bpfnb.probes("usdt:/usr/bin/python3:*")                  # its USDT probes

A pattern is `kind:target:glob` or a bare glob matched against every kernel probe
(tracepoints, raw tracepoints, kernel functions). Kernel probes are read once per boot and
cached (the cache is keyed by the boot id and the list of tracepoints, so a module loaded
later is noticed). Columns: kind, target, name, probe (the attach string), args, available,
note (why not, where the kernel says no), id (tracepoints), address and semaphore (uprobes,
USDT), fields (tracepoints: (name, C type, offset, size) of each field).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bpfnb._sys import features, fentryprobe, tracefs
from bpfnb._sys.btf import Btf, BtfKind
from bpfnb._sys.safedirs import SafeDir
from bpfnb.errors import BpfnbError
from bpfnb.symbols import cachedir, stapsdt
from bpfnb.symbols.symbolizer import load_elf

VMLINUX = "/sys/kernel/btf/vmlinux"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
COLUMNS = ["kind", "target", "name", "probe", "args", "available", "note", "id", "address",
           "semaphore", "fields"]
KERNEL_KINDS = ("tracepoint", "rawtracepoint", "kprobe", "fentry")
KINDS = {"t": "tracepoint", "tracepoint": "tracepoint",
         "rt": "rawtracepoint", "rawtracepoint": "rawtracepoint",
         "raw_tracepoint": "rawtracepoint",
         "k": "kprobe", "kprobe": "kprobe", "kr": "kprobe", "kretprobe": "kprobe",
         "f": "fentry", "fentry": "fentry", "fr": "fentry", "fexit": "fentry",
         "kfunc": "fentry", "kretfunc": "fentry",
         "u": "uprobe", "uprobe": "uprobe", "ur": "uprobe", "uretprobe": "uprobe",
         "U": "usdt", "usdt": "usdt"}
_CACHE_VERSION = 5
_MEMO: dict[str, dict[str, Any]] = {}  # this process's copy of the cache file

# ---------------------------------------------------------------- kernel: read and cache

def _tracepoints(root: str) -> list[list[Any]]:
    """[category, event, id, args, [[name, C type, offset, size], ...]] of every tracepoint
    (the `common_*` fields every record starts with left out)."""
    out: list[list[Any]] = []
    try:  # what can be enabled (the ftrace category's internal events are not)
        names = sorted(Path(root, "available_events").read_text().split())
    except OSError:
        return out
    for name in names:
        cat, _, ev = name.partition(":")
        try:
            text = Path(root, "events", cat, ev, "format").read_text()
        except OSError:
            continue
        mine = [f for f in tracefs.fields(text) if not f.common]
        out.append([cat, ev, tracefs.event_id(text), ", ".join(_field_arg(f) for f in mine),
                    [[f.name, f.ctype, f.offset, f.size] for f in mine]])
    return out


def _field_arg(f: tracefs.Field) -> str:
    """'const char * filename', 'char comm[16]'."""
    ctype = f.ctype
    if "[" in ctype:
        base, _, dims = ctype.partition("[")
        return f"{base.strip()} {f.name}[{dims}"
    return f"{ctype} {f.name}"


def spell(btf: Btf, type_id: int) -> str:
    """A C spelling of a BTF type: 'const char *', 'struct file *', 'size_t'."""
    t = btf.type(type_id)
    if t.kind == BtfKind.CONST:
        return f"const {spell(btf, t.size_or_type)}"
    if t.kind == BtfKind.VOLATILE:
        return f"volatile {spell(btf, t.size_or_type)}"
    if t.kind in (BtfKind.RESTRICT, BtfKind.TYPE_TAG):
        return spell(btf, t.size_or_type)
    if t.kind == BtfKind.PTR:
        target = btf.type(t.size_or_type)
        if target.kind == BtfKind.FUNC_PROTO:
            return f"{spell(btf, target.size_or_type)} (*)()"
        return f"{spell(btf, t.size_or_type)} *"
    return btf.describe(type_id)


def _signature(btf: Btf, proto_id: int, skip: int = 0) -> str:
    params = btf.params(proto_id)[skip:]
    if len(params) == 1 and params[0][1] == 0 and not params[0][0]:
        return ""
    return ", ".join(f"{spell(btf, tid)} {name}".strip() if tid else "..."
                     for name, tid in params)


def _btf_probes() -> tuple[dict[str, str], list[list[Any]]]:
    """({tracepoint event: raw tracepoint args}, [[function, args, return, BTF id], ...])."""
    if not features.btf():
        return {}, []
    btf = Btf.from_file(VMLINUX)
    raw: dict[str, str] = {}
    funcs: dict[str, list[Any]] = {}
    for t in btf.types():
        if t.kind == BtfKind.FUNC and t.name not in funcs:
            proto = btf.type(t.size_or_type)
            funcs[t.name] = [t.name, _signature(btf, proto.id), spell(btf, proto.size_or_type),
                             t.id]
        elif t.kind == BtfKind.TYPEDEF and t.name.startswith("btf_trace_"):
            ptr = btf.type(t.size_or_type)
            if ptr.kind == BtfKind.PTR and btf.type(ptr.size_or_type).kind == BtfKind.FUNC_PROTO:
                raw[t.name.removeprefix("btf_trace_")] = _signature(btf, ptr.size_or_type, 1)
    return raw, sorted(funcs.values())


def _fingerprint(root: str) -> str:
    """The boot id and a digest of available_events (a module loaded since changes it)."""
    try:
        boot = Path(BOOT_ID).read_text().strip()
        events = Path(root, "available_events").read_bytes()
    except OSError:
        return ""
    return f"{boot}-{hashlib.sha256(events).hexdigest()[:16]}"


def _cached(part: str, build: Callable[[str | None], Any], refresh: bool = False) -> Any:
    """`build(tracefs root)`, or its result from this boot's cache file for `part`."""
    root = features.tracefs()
    key = f"{part}-{_fingerprint(root)}" if root else ""
    if key and key in _MEMO and not refresh:
        return _MEMO[key]
    if not key:
        return build(root)
    where = cachedir.open_cache("probes", users=True)
    if where is None:
        found = build(root)
    else:
        with where:
            found = None if refresh else _load(where, f"{key}.json")
            if found is None:
                found = build(root)
                _store(where, part, f"{key}.json", found)
    _MEMO[key] = found
    return found


def _load(where: SafeDir, name: str) -> Any:
    """The data of cache file `name` (None if absent, damaged or of another version)."""
    raw = cachedir.read(where, name)
    with contextlib.suppress(ValueError):
        data = json.loads(raw) if raw is not None else None
        if isinstance(data, dict) and data.get("version") == _CACHE_VERSION:
            return data["data"]
    return None


def _store(where: SafeDir, part: str, name: str, data: Any) -> None:
    """Write cache file `name`, removing `part`'s files of other boots; errors are ignored."""
    with contextlib.suppress(OSError):
        for old in os.listdir(where.fd):
            if old.startswith(f"{part}-") and old.endswith(".json"):
                os.unlink(old, dir_fd=where.fd)
    cachedir.write(where, name, json.dumps({"version": _CACHE_VERSION, "data": data}).encode())


def kernel_probes(kinds: Iterable[str] = KERNEL_KINDS, refresh: bool = False) -> dict[str, Any]:
    """Tracepoints (tracefs) and, when `kinds` need them, raw tracepoint and kernel function
    signatures (BTF) of this boot, cached per boot."""
    data: dict[str, Any] = {"tracepoints": _cached(
        "tracepoints", lambda root: _tracepoints(root) if root else [], refresh)}
    if set(kinds) - {"tracepoint"}:
        raw, funcs = _cached("btf", lambda _root: _btf_probes(), refresh)
        data.update(raw=raw, functions=funcs)
    return data


# ---------------------------------------------------------------- rows

def _row(kind: str, target: str, name: str, probe: str, args: str, available: bool | None = True,
         note: str = "", **detail: Any) -> dict[str, Any]:
    return {"kind": kind, "target": target, "name": name, "probe": probe, "args": args,
            "available": available, "note": note, **detail}


def _tracepoint_rows(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for cat, ev, tp_id, args, fields in data["tracepoints"]:
        yield _row("tracepoint", cat, ev, f"tracepoint:{cat}:{ev}", args, id=tp_id,
                   fields=[tuple(f) for f in fields])


def _raw_rows(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    category = {ev: cat for cat, ev, *_ in data["tracepoints"]}
    for ev, args in sorted(data["raw"].items()):
        yield _row("rawtracepoint", category.get(ev, ""), ev, f"rawtracepoint:{ev}", args)


def _function_rows(data: dict[str, Any], kind: str) -> Iterable[dict[str, Any]]:
    if kind == "kprobe":
        feat = features.kprobes()
        available, note = bool(feat), "" if feat else feat.reason
    else:
        feat = _fentry(data["functions"])
        available, note = bool(feat), "" if feat else feat.reason
    for name, args, ret, _id in data["functions"]:
        yield _row(kind, "vmlinux", name, f"{kind}:{name}", f"{ret} {name}({args})",
                   available, note)


def _fentry(functions: list[list[Any]]) -> features.Feature:
    """Whether fentry programs load here: one is loaded on vfs_read (or the first function)."""
    if not functions:
        return features.Feature("fentry", False, "the kernel has no BTF functions to attach to")
    name, *_, btf_id = next((f for f in functions if f[0] == "vfs_read"), functions[0])
    return fentryprobe.fentry(btf_id, name)


def _uprobe_rows(path: str) -> Iterable[dict[str, Any]]:
    elf = load_elf(path)
    if elf.error:
        raise BpfnbError(f"cannot read the symbols of {path}: {elf.error}. Give the path of an "
                         "ELF binary or shared library.")
    feat = features.uprobes()
    table, seen = elf.table, set()
    for i in range(len(table)):
        name = table.name(i)
        if name and name not in seen:
            seen.add(name)
            yield _row("uprobe", path, name, f"uprobe:{path}:{name}", "", bool(feat),
                       "" if feat else feat.reason, address=int(table.starts[i]))


def _usdt_rows(path: str) -> Iterable[dict[str, Any]]:
    feat = features.uprobes()
    for p in stapsdt.probes(path):
        yield _row("usdt", path, f"{p.provider}:{p.name}", f"usdt:{path}:{p.provider}:{p.name}",
                   p.signature(), bool(feat), "" if feat else feat.reason,
                   address=p.address, semaphore=p.semaphore)


# ---------------------------------------------------------------- the query

def library_path(target: str) -> str:
    """A path as given, or a library named as bcc and bpftrace allow ('c', 'libc',
    'libssl.so.3') found in the dynamic linker's cache."""
    if "/" in target or os.path.exists(target):
        if not os.path.exists(target):
            raise BpfnbError(f"no file {target}: give the path of a binary or library, e.g. "
                             "`uprobe:/usr/bin/python3:*`")
        return target
    stem = target if target.startswith("lib") else f"lib{target}"
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                               check=False).stdout
    except OSError:
        cache = ""
    for line in cache.splitlines()[1:]:
        name, _, path = line.strip().partition(" => ")
        soname = name.split(" ", 1)[0]
        if soname == stem or soname.startswith(f"{stem}.so"):
            return path
    raise BpfnbError(f"no library {target} in the linker cache (ldconfig -p) and no such file; "
                     "give its path, e.g. `uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:*`")


def _parse(pattern: str) -> tuple[str | None, str | None, str]:
    """(kind, target path, glob) of 'kind:target:glob', 'kind:glob' or a bare glob."""
    head, sep, rest = pattern.partition(":")
    kind = KINDS.get(head) if sep else None
    if kind is None:
        return None, None, pattern
    if kind in ("uprobe", "usdt"):
        target, sep, glob = rest.partition(":")
        if not target:
            raise BpfnbError(f"{head}: needs a binary: `{head}:/path/to/binary:GLOB`")
        return kind, target, glob if sep else "*"
    return kind, None, rest or "*"


def _matcher(glob: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a row's name, target:name or probe string matches `glob`."""
    match = re.compile(fnmatch.translate(glob)).match

    def matches(row: dict[str, Any]) -> bool:
        return bool(match(row["name"]) or match(f"{row['target']}:{row['name']}")
                    or match(row["probe"]))
    return matches


def probes(pattern: str = "*", kind: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Probes matching `pattern` (see the module docstring), optionally only of `kind`
    ('tracepoint', 'rawtracepoint', 'kprobe', 'fentry'; 'uprobe'/'usdt' need a target in
    the pattern)."""
    p_kind, target, glob = _parse(pattern)
    wanted = {KINDS.get(k, k) for k in ([kind] if isinstance(kind, str) else kind or ())}
    unknown = wanted - set(KINDS.values())
    if unknown:
        raise BpfnbError(f"unknown probe kind {', '.join(sorted(unknown))}; use one of "
                         f"{', '.join(dict.fromkeys(KINDS.values()))}")
    if target is None and wanted & {"uprobe", "usdt"}:
        raise BpfnbError("uprobes and USDT probes belong to a binary: name it in the pattern, "
                         "`uprobe:/path/to/binary:GLOB` or `usdt:/path/to/binary:GLOB`")
    rows: list[dict[str, Any]] = []
    matches = _matcher(glob)
    if p_kind is not None and wanted and p_kind not in wanted:
        pass  # the pattern's kind is not one asked for: no rows
    elif target is not None:
        path = library_path(target)
        source = _uprobe_rows(path) if p_kind == "uprobe" else _usdt_rows(path)
        rows = [r for r in source if matches(r)]
    else:
        wanted = {p_kind} if p_kind is not None else wanted
        data = kernel_probes(wanted or KERNEL_KINDS)
        makers = {"tracepoint": _tracepoint_rows, "rawtracepoint": _raw_rows,
                  "kprobe": lambda d: _function_rows(d, "kprobe"),
                  "fentry": lambda d: _function_rows(d, "fentry")}
        for k in wanted or KERNEL_KINDS:
            if k in makers:
                rows += [r for r in makers[k](data) if matches(r)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("id", "address", "semaphore"):
        df[col] = df[col].astype("Int64")
    return df.reset_index(drop=True)
