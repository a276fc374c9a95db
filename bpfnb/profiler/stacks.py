"""Stack samples as data: symbolized, counted, exported and drawn.

A `Stacks` holds one row per distinct (pid, comm, stack) with a sample count.
Frames are root first: user frames, then kernel frames. Build one from what a
BPF profiler's maps hold (`from_arrays`: a counts table plus a stack-trace map),
from Brendan Gregg's folded text (`from_folded`), or from a DataFrame.

Negative stack ids stay visible as `[missing user stack: ERRNO]` /
`[missing kernel stack: ERRNO]` frames. -EFAULT is the kernel's answer when a
sample simply has no stack of that kind (a kernel thread has no user stack; a
sample taken in user mode has no kernel stack), so it adds no frame unless the
sample would otherwise have none. A stack id absent from the stack map shows as
ENOENT.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from bpfnb.data import safezip
from bpfnb.data.arrow import decode_table, encode_frame, pyarrow_module
from bpfnb.data.atomicfile import atomic_write
from bpfnb.errors import ReplayError
from bpfnb.profiler import folding, pprof
from bpfnb.profiler.flametree import FlameTree
from bpfnb.render import flame
from bpfnb.symbols.symbolizer import Symbolizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes

StackMap = Union[Mapping[int, Any], tuple[Any, Any]]
Key = tuple[int, str, tuple[str, ...], int]
_KERNEL_MARK = folding.KERNEL_MARK
_STACKS_FORMAT = "bpfnb-stacks"


def missing_frame(kind: str, stack_id: int) -> str:
    """`[missing user stack: EEXIST]` for a negative stack id (-EEXIST: hash collision)."""
    code = -int(stack_id)
    return f"[missing {kind} stack: {errno.errorcode.get(code, str(code))}]"


def _text(v: Any) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(v)


def _addresses(stacks: StackMap) -> Mapping[int, np.ndarray]:
    """stack id -> addresses (leaf first, trimmed at the first zero)."""
    if isinstance(stacks, tuple):
        ids, rows = stacks
        table = np.asarray(rows, dtype=np.uint64)
        return {int(i): table[j] for j, i in enumerate(np.asarray(ids).tolist())}
    return stacks


def _trim(a: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=np.uint64).ravel()
    zero = np.flatnonzero(arr == 0)
    return arr[: zero[0]] if len(zero) else arr


def _resolve_many(segments: list[np.ndarray], resolve: Any) -> list[tuple[str, ...]]:
    """Resolve all segments with one call; each comes back root first."""
    if not segments:
        return []
    names = resolve(np.concatenate(segments)) if sum(map(len, segments)) else []
    return _split_root_first(segments, names)


def _json_items(info: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `info` that JSON holds as they are (the others are left out)."""
    out = {}
    for k, v in info.items():
        try:
            if json.loads(json.dumps(v)) == v:
                out[k] = v
        except (TypeError, ValueError):
            pass
    return out


_MAX_HZ = 1 << 32  # a sampling rate read back from a file


def restore_attributes(s: Stacks, unit: Any, hz: Any, info: Any, mappings: Any) -> None:
    """Set the unit, rate, info and mappings of Stacks read back from a file (untrusted):
    each of exactly its type and in range, mappings module -> (path, build id); else a
    ReplayError saying what is wrong (Stacks.load and the cell store)."""
    for what, value, kind in (("unit", unit, str), ("hz", hz, int), ("info", info, dict),
                              ("mappings", mappings, dict)):
        if type(value) is not kind:
            raise ReplayError(f"Stacks {what} is a {type(value).__name__}, not a "
                              f"{kind.__name__}")
    if not (0 < len(unit) <= 64 and unit.isprintable()):
        raise ReplayError(f"Stacks unit {unit[:64]!r} is not a short line of text")
    if not 0 <= hz <= _MAX_HZ:
        raise ReplayError(f"Stacks sampling rate {hz} is out of range")
    if not all(isinstance(k, str) for k in info):
        raise ReplayError("Stacks info has a key that is not a str")
    if not all(isinstance(k, str) and type(v) is tuple and len(v) == 2
               and all(isinstance(x, str) for x in v) for k, v in mappings.items()):
        raise ReplayError("Stacks mappings are not module -> (path, build id)")
    s.unit, s.hz, s.info, s.mappings = unit, hz, info, mappings


def _split_root_first(segments: list[np.ndarray], names: list[str]) -> list[tuple[str, ...]]:
    """Cut the names of concatenated segments back into one tuple per segment, root first."""
    out, pos = [], 0
    for seg in segments:
        out.append(tuple(reversed(names[pos : pos + len(seg)])))
        pos += len(seg)
    return out


def _frame_kind(frame: str, kernel: bool) -> int:
    if frame.startswith("[missing "):
        return flame.MISSING
    return flame.KERNEL if kernel else flame.USER


def _looks_kernel(frame: str) -> bool:
    if frame.startswith("[missing kernel stack"):
        return True
    if frame.startswith("[unknown] 0x"):
        return frame[12:].startswith("ffff") and not frame.endswith("]")
    return not frame.endswith("]")


def infer_kernel_depth(frames: Sequence[str], marked: bool) -> int:
    """How many leaf-end frames are kernel frames, from the frame strings alone.

    With `marked` (the text uses the `_[k]` suffix) only marked frames count;
    else a trailing run of frames without a ` [module]` suffix.
    """
    n = 0
    for f in reversed(frames):
        if (f.endswith(_KERNEL_MARK) or f.startswith("[missing kernel")) if marked else \
                _looks_kernel(f):
            n += 1
        else:
            break
    return n


def _kernel_split(frames: Sequence[str], marked: bool,
                  suffixed: bool) -> tuple[tuple[str, ...], int]:
    """Folded frames -> (frames without `_[k]` marks or `-` delimiter, kernel frame count)."""
    if "-" in frames:  # bcc profile -d: user frames, "-", kernel frames
        cut = frames.index("-")
        frames = (*frames[:cut], *frames[cut + 1 :])
        nk = len(frames) - cut
    elif marked:
        nk = infer_kernel_depth(frames, True)
    elif suffixed:
        return tuple(frames), infer_kernel_depth(frames, False)
    else:
        nk = 1 if frames and frames[-1].startswith("[missing kernel") else 0
    cut = len(frames) - nk
    out = tuple(f[: -len(_KERNEL_MARK)] if j >= cut and f.endswith(_KERNEL_MARK) else f
                for j, f in enumerate(frames))
    return out, nk


class Stacks:
    """Counted stacks: one row per distinct (pid, comm, frames), frames root first."""

    def __init__(self, df: pd.DataFrame | None = None, *, name: str = "",
                 unit: str = "samples", hz: int = 0) -> None:
        """From a DataFrame with columns pid, comm, frames (list of str), count.

        An optional `kernel_frames` column says how many frames at the leaf end are
        kernel frames; without it they are inferred from the frame strings. `unit` says
        what a count is ("samples", or "us" for off-CPU time); `hz` is the sampling rate
        where known. `info` holds what the collector knew (command, exit status, CPU time).
        """
        self.name = name
        self.unit = unit
        self.hz = int(hz)
        self.info: dict[str, Any] = {}
        self.mappings: dict[str, tuple[str, str]] = {}  # module -> (path, build id hex)
        counts: dict[Key, int] = {}
        if df is not None and len(df):
            missing = {"pid", "comm", "frames", "count"} - set(df.columns)
            if missing:
                raise ValueError(f"Stacks needs columns pid, comm, frames, count; "
                                 f"missing {sorted(missing)}")
            frames = [tuple(f) for f in df["frames"]]
            if "kernel_frames" in df.columns:
                nk = [int(v) for v in df["kernel_frames"]]
            else:
                marked = any(x.endswith(_KERNEL_MARK) for f in frames for x in f)
                nk = [infer_kernel_depth(f, marked) for f in frames]
            keys = zip(df["pid"].astype("int64").tolist(), map(str, df["comm"]), frames, nk)
            for key, c in zip(keys, df["count"].tolist()):
                counts[key] = counts.get(key, 0) + int(c)
        self._set(counts)

    def _set(self, counts: Mapping[Key, int]) -> None:
        keys = list(counts)
        self._pid = np.array([k[0] for k in keys], dtype=np.int64)
        self._comm = [k[1] for k in keys]
        self._frames = [k[2] for k in keys]
        self._nk = np.array([k[3] for k in keys], dtype=np.int64)
        self._count = np.array(list(counts.values()), dtype=np.int64)

    @classmethod
    def _from_counts(cls, counts: Mapping[Key, int], name: str = "") -> Stacks:
        s = cls(name=name)
        s._set(counts)
        return s

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_arrays(cls, pid: Any, comm: Any, user_stack_id: Any | None,
                    kernel_stack_id: Any | None, count: Any, stacks: StackMap,
                    symbolizer: Symbolizer | None = None, *, name: str = "") -> Stacks:
        """From a profiler's counts table and stack map.

        pid, comm, user_stack_id, kernel_stack_id, count: equal-length arrays (one
        row per counts-map entry; comm as str or bytes). A stack-id array may be
        None when that kind of stack was not collected. stacks: {stack_id:
        addresses leaf first, zero-terminated} or a pair (ids, 2-D address array).
        """
        sym = symbolizer if symbolizer is not None else Symbolizer()
        pids = np.asarray(pid, dtype=np.int64).ravel()
        n = len(pids)
        comms = [_text(c) for c in (comm if not isinstance(comm, np.ndarray) else comm.tolist())]
        counts_in = np.asarray(count, dtype=np.int64).ravel()
        uids = (np.asarray(user_stack_id, dtype=np.int64).ravel() if user_stack_id is not None
                else None)
        kids = (np.asarray(kernel_stack_id, dtype=np.int64).ravel()
                if kernel_stack_id is not None else None)
        if len(comms) != n or len(counts_in) != n or any(
                a is not None and len(a) != n for a in (uids, kids)):
            raise ValueError("pid, comm, stack ids and count must have the same length")
        table = _addresses(stacks)
        kernel = cls._kernel_frames(kids, table, sym)
        user = cls._user_frames(pids, uids, table, sym)
        out: dict[Key, int] = {}
        none: tuple[str, ...] = ()
        for i in range(n):
            p = int(pids[i])
            u = user.get((p, int(uids[i]))) if uids is not None else none
            k = kernel.get(int(kids[i])) if kids is not None else none
            assert u is not None and k is not None
            if not u and not k and uids is not None and kids is not None:
                u = (missing_frame("user", int(uids[i])),) if uids[i] < 0 else u
                k = (missing_frame("kernel", int(kids[i])),) if kids[i] < 0 else k
            key = (p, comms[i], u + k, len(k))
            out[key] = out.get(key, 0) + int(counts_in[i])
        result = cls._from_counts(out, name)
        files = getattr(sym, "module_files", None)
        result.mappings = files() if callable(files) else {}
        return result

    @staticmethod
    def _missing_or_empty(kind: str, sid: int) -> tuple[str, ...]:
        return () if sid == -errno.EFAULT else (missing_frame(kind, sid),)

    @classmethod
    def _kernel_frames(cls, kids: np.ndarray | None, table: Mapping[int, Any],
                       sym: Symbolizer) -> dict[int, tuple[str, ...]]:
        if kids is None:
            return {}
        out: dict[int, tuple[str, ...]] = {}
        wanted = []
        for sid in np.unique(kids).tolist():
            if sid < 0:
                out[sid] = cls._missing_or_empty("kernel", sid)
            elif sid in table:
                wanted.append(sid)
            else:
                out[sid] = (missing_frame("kernel", -errno.ENOENT),)
        resolved = _resolve_many([_trim(table[s]) for s in wanted], sym.resolve_kernel)
        out.update(zip(wanted, resolved))
        return out

    @classmethod
    def _user_frames(cls, pids: np.ndarray, uids: np.ndarray | None, table: Mapping[int, Any],
                     sym: Symbolizer) -> dict[tuple[int, int], tuple[str, ...]]:
        if uids is None:
            return {}
        out: dict[tuple[int, int], tuple[str, ...]] = {}
        by_pid: dict[int, list[int]] = {}
        pairs: list[list[int]] = (np.unique(np.stack([pids, uids], axis=1), axis=0).tolist()
                                  if len(pids) else [])
        for p, sid in pairs:
            if sid < 0:
                out[(p, sid)] = cls._missing_or_empty("user", sid)
            elif sid in table:
                by_pid.setdefault(p, []).append(sid)
            else:
                out[(p, sid)] = (missing_frame("user", -errno.ENOENT),)
        segments = {p: [_trim(table[s]) for s in sids] for p, sids in by_pid.items()}
        names = sym.resolve_users({p: np.concatenate(segs) for p, segs in segments.items()
                                   if sum(map(len, segs))})   # one batch for all processes
        for p, sids in by_pid.items():
            resolved = _split_root_first(segments[p], names.get(p, []))
            out.update(((p, s), r) for s, r in zip(sids, resolved))
        return out

    @classmethod
    def from_folded(cls, text: str, *, name: str = "", unit: str = "samples") -> Stacks:
        """From folded text: `comm;frame;...;frame count` per line (pid unknown: -1), as
        flamegraph.pl, bcc's `profile -f` and stackcollapse-perf write it.

        Kernel frames are those marked `_[k]` (the mark is dropped) or those after bcc's
        `-` delimiter; else the trailing frames without a ` [module]` suffix, where any
        frame of the text has one; in plain text without either, none.
        """
        rows: list[tuple[tuple[str, ...], int]] = []
        for no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            stack, _, num = line.rpartition(" ")
            try:
                c = int(num)
            except ValueError:
                raise ValueError(f"folded line {no} does not end in a count: {line!r}") from None
            if not stack:
                raise ValueError(f"folded line {no} has no stack: {line!r}")
            rows.append((tuple(stack.split(";")), c))
        marked = any(f.endswith(_KERNEL_MARK) for parts, _ in rows for f in parts[1:])
        suffixed = any(f.endswith("]") and " [" in f for parts, _ in rows for f in parts[1:])
        out: dict[Key, int] = {}
        for parts, c in rows:
            frames, nk = _kernel_split(parts[1:], marked, suffixed)
            key = (-1, parts[0], frames, nk)
            out[key] = out.get(key, 0) + c
        s = cls._from_counts(out, name)
        s.unit = unit
        return s

    # ------------------------------------------------------------ data views

    @property
    def total(self) -> int:
        """All samples."""
        return int(self._count.sum())

    def __len__(self) -> int:
        return len(self._frames)

    def df(self) -> pd.DataFrame:
        """One row per distinct (pid, comm, stack): pid, comm, frames, kernel_frames, count."""
        df = pd.DataFrame({
            "pid": self._pid, "comm": pd.Series(self._comm, dtype="str"),
            "frames": pd.Series([list(f) for f in self._frames], dtype=object),
            "kernel_frames": self._nk, "count": self._count,
        })
        df = df.sort_values(["count", "comm"], ascending=[False, True], kind="stable")
        df = df.reset_index(drop=True)
        df.attrs.update(name=self.name, total=self.total)
        return df

    def _folded_counts(self, modules: bool = False,
                       annotations: bool = False) -> dict[str, int]:
        out: dict[str, int] = {}
        fold = folding.Folder(modules=modules, annotations=annotations).fold
        for comm, frames, nk, c in zip(self._comm, self._frames, self._nk.tolist(),
                                       self._count.tolist()):
            key = fold(comm, frames, nk)
            out[key] = out.get(key, 0) + c
        return out

    def folded(self, modules: bool = False, annotations: bool = False) -> str:
        """Folded text as flamegraph.pl, bcc's `profile -f` and stackcollapse-perf write it:
        `comm;frame;...;frame count` lines, sorted, plain symbol names (the module only for
        frames without a symbol: `[libfoo.so]`). `modules=True` keeps `symbol [module]`;
        `annotations=True` marks kernel frames `_[k]` (bcc's `profile -a`)."""
        counts = self._folded_counts(modules, annotations)
        return "".join(f"{k} {counts[k]}\n" for k in sorted(counts))

    def by_process(self) -> pd.DataFrame:
        """Samples per (pid, comm), most first, with their share of all samples."""
        df = pd.DataFrame({"pid": self._pid, "comm": self._comm, "samples": self._count,
                           "kernel": np.where(self._nk > 0, self._count, 0)})
        g = df.groupby(["pid", "comm"], sort=False).agg(
            samples=("samples", "sum"), stacks=("samples", "size"), kernel=("kernel", "sum"))
        g = g.reset_index().sort_values(["samples", "pid"], ascending=[False, True])
        total = max(self.total, 1)
        g["percent"] = 100.0 * g["samples"] / total
        g["kernel_percent"] = 100.0 * g["kernel"] / g["samples"].clip(lower=1)
        return g[["pid", "comm", "samples", "percent", "stacks", "kernel_percent"]].reset_index(
            drop=True)

    def kernel_user_split(self, per_process: bool = False) -> pd.DataFrame:
        """Samples taken in user mode vs in the kernel (the leaf frame is a kernel frame)."""
        kernel = np.where(self._nk > 0, self._count, 0)
        user = self._count - kernel
        if per_process:
            df = pd.DataFrame({"pid": self._pid, "comm": self._comm, "user": user,
                               "kernel": kernel})
            g = df.groupby(["pid", "comm"], sort=False)[["user", "kernel"]].sum().reset_index()
            g["total"] = g["user"] + g["kernel"]
            g["kernel_percent"] = 100.0 * g["kernel"] / g["total"].clip(lower=1)
            return g.sort_values(["total", "pid"], ascending=[False, True]).reset_index(
                drop=True)
        samples = np.array([user.sum(), kernel.sum()], dtype=np.int64)
        return pd.DataFrame({"samples": samples,
                             "percent": 100.0 * samples / max(int(samples.sum()), 1)},
                            index=pd.Index(["user", "kernel"], name="mode"))

    def functions(self) -> pd.DataFrame:
        """Per frame: `self` samples (it was the leaf) and `total` (it was on the stack)."""
        own: dict[str, int] = {}
        incl: dict[str, int] = {}
        for frames, c in zip(self._frames, self._count.tolist()):
            if frames:
                own[frames[-1]] = own.get(frames[-1], 0) + c
            for f in set(frames):
                incl[f] = incl.get(f, 0) + c
        total = max(self.total, 1)
        df = pd.DataFrame({"frame": list(incl), "total": list(incl.values())})
        df["self"] = df["frame"].map(own).fillna(0).astype("int64")
        df["self_percent"] = 100.0 * df["self"] / total
        df["total_percent"] = 100.0 * df["total"] / total
        df = df[["frame", "self", "total", "self_percent", "total_percent"]]
        return df.sort_values(["self", "total", "frame"], ascending=[False, False, True],
                              kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------ exports

    def speedscope(self, name: str | None = None, per_process: bool = False) -> dict[str, Any]:
        """A speedscope file (dict; `json.dump` it): one "sampled" profile, or one per process.

        In the single profile the process name is the root frame, as in folded text.
        """
        frames: dict[str, int] = {}
        profiles: dict[tuple[int, str], tuple[list[list[int]], list[int]]] = {}
        for pid, comm, st, c in zip(self._pid.tolist(), self._comm, self._frames,
                                    self._count.tolist()):
            if c <= 0:
                continue
            path = st if per_process else (comm, *st)
            sample = [frames.setdefault(f, len(frames)) for f in path]
            key = (pid, comm) if per_process else (0, "")
            samples, weights = profiles.setdefault(key, ([], []))
            samples.append(sample)
            weights.append(c)
        title = name or self.name or "bpfnb profile"
        if not profiles:
            profiles[(0, "")] = ([], [])
        out = []
        for (pid, comm), (samples, weights) in profiles.items():
            out.append({"type": "sampled", "name": f"{comm} ({pid})" if per_process else title,
                        "unit": "none", "startValue": 0, "endValue": int(sum(weights)),
                        "samples": samples, "weights": weights})
        return {"$schema": "https://www.speedscope.app/file-format-schema.json",
                "shared": {"frames": [{"name": f} for f in frames]}, "profiles": out,
                "name": title, "activeProfileIndex": 0, "exporter": "bpfnb"}

    # ------------------------------------------------------------ pictures

    def _paths(self, plain: bool = False) -> tuple[list[tuple[str, ...]], list[list[int]]]:
        paths, kinds = [], []
        for comm, st, nk in zip(self._comm, self._frames, self._nk.tolist()):
            cut = len(st) - nk
            names = (tuple(folding.plain_frame(f, j >= cut) for j, f in enumerate(st))
                     if plain else st)
            paths.append((comm, *names))
            kinds.append([flame.COMM] + [_frame_kind(f, j >= cut) for j, f in enumerate(st)])
        return paths, kinds

    def flame_tree(self) -> FlameTree:
        """The stacks merged into a prefix tree (root `all`, then comm, then frames)."""
        paths, kinds = self._paths()
        return FlameTree.build(paths, self._count, kinds)

    def _title(self) -> str:
        label = f"{self.name}: " if self.name else ""
        if self.unit == "us":
            return f"{label}{self.total / 1e6:,.3f} s off CPU"
        return f"{label}{self.total:,} {self.unit}"

    def plot_flame(self, icicle: bool = False, ax: Axes | None = None,
                   title: str | None = None) -> Axes:
        """Flame graph (root at the bottom) or icicle graph (root on top) on matplotlib axes."""
        tree = self.flame_tree()
        return flame.plot(tree, flame.hot_colors(tree), icicle=icicle, ax=ax,
                          title=self._title() if title is None else title, unit=self.unit)

    def to_html(self, icicle: bool = False, static: bool = True) -> str:
        """The interactive flame graph as one self-contained HTML fragment."""
        tree = self.flame_tree()
        colors = flame.hot_colors(tree)
        img = (flame.png(tree, colors, icicle=icicle, title=self._title(), unit=self.unit)
               if static else None)
        return flame.to_html(tree, colors, title=self._title(), icicle=icicle, static_png=img,
                             unit=self.unit)

    def diff(self, other: Stacks) -> StackDiff:
        """What changed from this profile (before) to `other` (after), compared by the
        plain folded names (so a bcc or perf profile diffs with a bpfnb one)."""
        return StackDiff(self, other)

    def pprof(self, path: str | os.PathLike[str]) -> Path:
        """Write a gzip-compressed pprof profile.proto (go tool pprof, Parca, Pyroscope):
        samples/count and cpu/nanoseconds at the sampling rate (off-CPU time as
        off_cpu/nanoseconds), with functions, locations and mappings (build ids where
        known). The write is atomic."""
        out = Path(path)
        with atomic_write(out) as f:
            f.write(pprof.encode(self))
        return out

    # ------------------------------------------------------------ files

    def rows(self) -> pd.DataFrame:
        """What these stacks are, one row per stack in their own order: pid, comm, frames
        (root first), kernel_frames (how many of them are kernel frames) and count;
        `Stacks(stacks.rows(), name=...)` rebuilds them (save() stores this table)."""
        return pd.DataFrame({
            "pid": self._pid, "comm": pd.Series(self._comm, dtype=object),
            "frames": pd.Series([list(f) for f in self._frames], dtype=object),
            "kernel_frames": self._nk, "count": self._count})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write these stacks to one small file (a zip: `meta.json` plus a Parquet table)
        that `Stacks.load(path)` reads back exactly (df(), folded(), name, unit, hz,
        mappings, and the entries of `info` that JSON holds). The write is
        atomic: a temporary file in the same directory renamed over `path`."""
        import io
        import zipfile

        pa = pyarrow_module()
        table, specs = encode_frame(self.rows())
        buf = io.BytesIO()
        pa.parquet.write_table(table, buf, compression="zstd")
        meta = {"format": _STACKS_FORMAT, "version": 1, "name": self.name,
                "unit": self.unit, "hz": self.hz, "info": _json_items(self.info),
                "mappings": self.mappings, "columns": specs, "total": self.total}
        out = Path(path)
        with atomic_write(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("stacks.parquet", buf.getvalue())
            zf.writestr("meta.json", json.dumps(meta))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Stacks:
        """Stacks saved by `Stacks.save(path)`; ReplayError if missing, not such a file or
        over the size limits of bpfnb.data.safezip."""
        try:
            zf = safezip.open_zip(Path(path))
        except FileNotFoundError:
            raise ReplayError(f"no stacks file at {str(path)!r}") from None
        except ReplayError as e:
            raise ReplayError(f"{str(path)!r} is not a file of Stacks.save() or is corrupt "
                              f"({e})") from None
        with zf:
            meta = safezip.read_json(zf, "meta.json", path)
            if not isinstance(meta, dict) or meta.get("format") != _STACKS_FORMAT:
                raise ReplayError(f"{str(path)!r} is not a file of Stacks.save()")
            table = safezip.read_parquet(zf, "stacks.parquet", path)
        try:
            df = decode_table(table, meta["columns"])
            s = cls._from_counts(_load_counts(df), str(meta.get("name", "")))
            mappings = meta.get("mappings", {})
            if isinstance(mappings, dict):   # JSON holds the (path, build id) pairs as lists
                mappings = {k: tuple(v) if isinstance(v, list) else v
                            for k, v in mappings.items()}
            restore_attributes(s, meta.get("unit", "samples"), meta.get("hz", 0),
                               meta.get("info", {}), mappings)
            return s
        except ReplayError as e:
            raise ReplayError(f"{str(path)!r} is not a file of Stacks.save() or is corrupt "
                              f"({e})") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                OverflowError) as e:
            raise ReplayError(f"{str(path)!r} is not a file of Stacks.save() or is corrupt "
                              f"({type(e).__name__}: {e})") from None

    # ------------------------------------------------------------ notebook display

    def __repr__(self) -> str:
        procs = len(set(zip(self._pid.tolist(), self._comm)))
        kernel = int(self._count[self._nk > 0].sum())
        amount = (f"{self.total / 1e6:,.3f} s off CPU" if self.unit == "us" else
                  f"{self.total:,} {self.unit}")
        head = (f"<Stacks{' ' + repr(self.name) if self.name else ''}: {amount}, "
                f"{len(self):,} distinct stacks, {procs} process(es), "
                f"{100.0 * kernel / max(self.total, 1):.1f}% in kernel>")
        top = self.functions().head(5)
        lines = [f"  {r.self_percent:5.1f}%  {r.frame}" for r in top.itertuples() if r.self]
        return head + ("\nhottest frames (self):\n" + "\n".join(lines) if lines else "")

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, include: Iterable[str] | None = None,
                          exclude: Iterable[str] | None = None) -> dict[str, Any]:
        return _bundle(self.flame_tree, flame.hot_colors, None, self._title(), repr(self),
                       self.unit)


def _bundle(make_tree: Any, colorize: Any, before: Any, title: str, text: str,
            unit: str = "samples") -> dict[str, Any]:
    import base64

    tree = make_tree()
    colors = colorize(tree)
    img = flame.png(tree, colors, title=title, unit=unit)
    html = flame.to_html(tree, colors, title=title, static_png=img,
                         before=before(tree) if before else None, unit=unit)
    return {"text/plain": text, "text/html": html,
            "image/png": base64.b64encode(img).decode()}


class StackDiff:
    """Differences between two profiles, compared as shares of each one's samples.

    `df()` lists stacks (or functions) with counts before and after and the change
    in percentage points; `plot_flame()` draws the after profile coloured red
    where a frame's share grew and blue where it shrank.
    """

    def __init__(self, before: Stacks, after: Stacks) -> None:
        self.before, self.after = before, after

    def df(self, level: str = "stack") -> pd.DataFrame:
        """level="stack": one row per folded stack; level="function": per frame (total)."""
        if level == "stack":
            b, a = self.before._folded_counts(), self.after._folded_counts()  # plain names
        elif level == "function":
            fb, fa = self.before.functions(), self.after.functions()
            b = dict(zip(fb["frame"].tolist(), fb["total"].tolist()))
            a = dict(zip(fa["frame"].tolist(), fa["total"].tolist()))
        else:
            raise ValueError('level must be "stack" or "function"')
        keys = sorted(set(b) | set(a))
        df = pd.DataFrame({level: keys, "before": [b.get(k, 0) for k in keys],
                           "after": [a.get(k, 0) for k in keys]})
        df["delta"] = df["after"] - df["before"]
        df["before_percent"] = 100.0 * df["before"] / max(self.before.total, 1)
        df["after_percent"] = 100.0 * df["after"] / max(self.after.total, 1)
        df["delta_percent"] = df["after_percent"] - df["before_percent"]
        order = df["delta_percent"].abs().sort_values(ascending=False, kind="stable").index
        return df.loc[order].reset_index(drop=True)

    def flame_tree(self) -> FlameTree:
        """Tree of both profiles; value[:, 0] after, value[:, 1] before scaled to after's total."""
        pa, ka = self.after._paths(plain=True)
        pb, kb = self.before._paths(plain=True)
        scale = self.after.total / self.before.total if self.before.total else 0.0
        w = np.zeros((len(pa) + len(pb), 2))
        w[: len(pa), 0] = self.after._count
        w[len(pa) :, 1] = self.before._count * scale
        return FlameTree.build(pa + pb, w, ka + kb)

    @staticmethod
    def _colors(tree: FlameTree) -> np.ndarray:
        return flame.diff_colors(tree.value[:, 0], tree.value[:, 1])

    def _title(self) -> str:
        return (f"diff: {self.before.total:,} -> {self.after.total:,} samples "
                "(red grew, blue shrank)")

    def plot_flame(self, icicle: bool = False, ax: Axes | None = None,
                   title: str | None = None) -> Axes:
        tree = self.flame_tree()
        return flame.plot(tree, self._colors(tree), icicle=icicle, ax=ax,
                          title=self._title() if title is None else title)

    def to_html(self, icicle: bool = False) -> str:
        tree = self.flame_tree()
        colors = self._colors(tree)
        return flame.to_html(tree, colors, title=self._title(), icicle=icicle,
                             before=tree.value[:, 1],
                             static_png=flame.png(tree, colors, title=self._title()))

    def __repr__(self) -> str:
        top = self.df("function").head(5)
        lines = [f"  {r.delta_percent:+6.2f} pts  {r.function}" for r in top.itertuples()]
        return (f"<StackDiff: {self.before.total:,} -> {self.after.total:,} samples>"
                + ("\nlargest changes (share of samples on stack):\n" + "\n".join(lines)
                   if lines else ""))

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, include: Iterable[str] | None = None,
                          exclude: Iterable[str] | None = None) -> dict[str, Any]:
        return _bundle(self.flame_tree, self._colors, lambda t: t.value[:, 1], self._title(),
                       repr(self))


def _load_counts(df: pd.DataFrame) -> dict[Key, int]:
    """Stacks.load: the rows of a saved table as {(pid, comm, frames, kernel frames): n}."""
    counts: dict[Key, int] = {}
    for p, c, f, k, n in zip(df["pid"].tolist(), df["comm"].tolist(), df["frames"].tolist(),
                             df["kernel_frames"].tolist(), df["count"].tolist()):
        frames = tuple(f or ())
        if not all(isinstance(x, str) for x in frames):
            raise TypeError("a frame that is not a str")
        counts[(int(p), str(c), frames, int(k))] = int(n)
    return counts
