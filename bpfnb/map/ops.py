"""Element operations on one map from Python, with the kernel's semantics and named errors.

lookup / update / delete / keys / pop / push / peek, and batch update/delete with a
per-element fallback where the kernel has no batch op for the map type.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb._sys.bpfsys import QUEUES
from bpfnb._sys.errnos import OpContext, translate
from bpfnb.data import frames
from bpfnb.data.codec import Codec
from bpfnb.data.colcheck import BadRows, column_values, shown
from bpfnb.data.layout import padded, sum_cpus
from bpfnb.errors import KeyNotFoundError, KeyTypeError, UnsupportedMapError
from bpfnb.map import kinds as maptypes

if TYPE_CHECKING:
    from bpfnb.map.protocol import TypedMapLike
    from bpfnb.map.view import MapView

FLAGS = {"any": bpfsys.BPF_ANY, "noexist": bpfsys.BPF_NOEXIST, "exist": bpfsys.BPF_EXIST}
_NO_BATCH = {errno.EOPNOTSUPP, bpfsys.ENOTSUPP, errno.ENOTSUP}


class MapOps:
    """The element operations of one MapView: encodes Python objects, calls the kernel."""

    def __init__(self, view: MapView) -> None:
        self.view: TypedMapLike = view
        self.kind = maptypes.kind_of(view.type)
        self.has_key = view.key_type is not None and view.info.key_size > 0
        self.key = Codec(view.key_dtype, "key", view.name, view.key_type)
        self.value = Codec(view.value_dtype, "value", view.name, view.value_type)
        self.ncpus = len(bpfsys.possible_cpus()) if view.per_cpu else 0
        self.cell = padded(view.value_dtype) if self.ncpus else view.value_dtype

    # -- helpers ----------------------------------------------------------------------
    def ctx(self, op: str, key: Any = None, flags: str = "") -> OpContext:
        i = self.view.info
        return OpContext(op, self.view.name, self.view.type, i.max_entries, key, flags)

    def call(self, ctx: OpContext, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(self.view.fd, *args)
        except OSError as e:
            raise translate(e, ctx) from None

    def encode_key(self, key: Any) -> np.ndarray:
        if not self.has_key:
            raise UnsupportedMapError(f"map {self.view.name!r} ({self.view.type.name}) has no "
                                      "keys; use push/pop/peek")
        if self.kind.key_in is not None:
            key = self.kind.key_in(self.view, key)
        return self.key.encode(key)

    def decode_key(self, raw: np.ndarray) -> Any:
        key = self.key.decode(raw)
        return self.kind.key_out(self.view, key) if self.kind.key_out is not None else key

    def value_buffer(self) -> np.ndarray:
        if self.ncpus:
            return np.zeros((1, self.ncpus), self.cell)
        return np.zeros(1, self.view.value_dtype)

    def encode_value(self, value: Any) -> tuple[np.ndarray, Callable[[], None] | None]:
        closer = None
        if self.kind.value_in is not None:
            value, closer = self.kind.value_in(self.view, value)
        if not self.ncpus:
            return self.value.encode(value), closer
        per_cpu = (list(value) if isinstance(value, (list, tuple)) and len(value) == self.ncpus
                   and self.view.value_dtype.names is None else [value])
        buf = np.zeros((1, self.ncpus), self.cell)
        raw = buf.view(np.uint8).reshape(self.ncpus, self.cell.itemsize)
        size = self.view.value_dtype.itemsize
        for cpu, v in enumerate(per_cpu):  # one value: CPU 0, so the summed df() shows it
            raw[cpu, :size] = self.value.encode(v).view(np.uint8)
        return buf, closer

    def decode_value(self, buf: np.ndarray, per_cpu: bool = False) -> Any:
        if not self.ncpus:
            out = self.value.decode(buf)
        else:
            size = self.view.value_dtype.itemsize
            raw = buf.view(np.uint8).reshape(self.ncpus, self.cell.itemsize)[:, :size]
            cells = np.ascontiguousarray(raw).view(self.view.value_dtype).reshape(self.ncpus)
            if per_cpu:
                return [self.value.decode(cells[i:i + 1]) for i in range(self.ncpus)]
            out = self.value.decode(sum_cpus(cells.reshape(1, self.ncpus)))
        return self.kind.value_out(self.view, out) if self.kind.value_out is not None else out

    # -- single elements --------------------------------------------------------------
    def lookup(self, key: Any, lock: bool = False, per_cpu: bool = False) -> Any:
        k = self.encode_key(key)
        buf = self.value_buffer()
        flags = bpfsys.BPF_F_LOCK if lock else 0
        self.call(self.ctx("lookup", key, "lock" if lock else ""), bpfsys.lookup, k, buf, flags)
        return self.decode_value(buf, per_cpu)

    def update(self, key: Any, value: Any, flags: str = "any", lock: bool = False) -> None:
        if flags not in FLAGS:
            raise KeyTypeError(f"flags must be one of {', '.join(map(repr, FLAGS))}, "
                               f"not {flags!r}")
        k = self.encode_key(key)
        buf, closer = self.encode_value(value)
        bits = FLAGS[flags] | (bpfsys.BPF_F_LOCK if lock else 0)
        try:
            self.call(self.ctx("update", key, flags + (",lock" if lock else "")),
                      bpfsys.update, k, buf, bits)
        finally:
            if closer is not None:
                closer()
        if self.kind.on_update is not None:
            self.kind.on_update(self.view, key, value)

    def delete(self, key: Any) -> None:
        k = self.encode_key(key)
        self.call(self.ctx("delete", key), bpfsys.delete, k)
        if self.kind.on_delete is not None:
            self.kind.on_delete(self.view, key)

    def contains(self, key: Any) -> bool:
        try:
            self.lookup(key)
        except KeyNotFoundError:
            return False
        return True

    def raw_keys(self) -> np.ndarray:
        """Every key, by get_next_key (each at most once)."""
        if not self.has_key:
            raise UnsupportedMapError(f"map {self.view.name!r} ({self.view.type.name}) has no "
                                      "keys to list")
        ctx = self.ctx("keys")
        cur, nxt = np.zeros(1, self.view.key_dtype), np.zeros(1, self.view.key_dtype)
        out: list[np.ndarray] = []
        prev = None
        limit = 2 * self.view.info.max_entries + 1 if self.view.info.max_entries else 1 << 24
        for _ in range(limit):  # cgroup storage reports max_entries 0
            if not self.call(ctx, bpfsys.next_key, prev, nxt):
                break
            cur[:] = nxt
            prev = cur
            out.append(cur.copy())
        if not out:
            return np.zeros(0, self.view.key_dtype)
        keys = np.concatenate(out)
        raw = keys.view(np.dtype((np.void, keys.dtype.itemsize)))
        _, first = np.unique(raw, return_index=True)
        return keys[np.sort(first)]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) by key walk and lookups: for maps MapReader cannot size (cgroup
        storage reports max_entries 0). Values are (n,) or (n, cpus) like a Snapshot's."""
        keys = self.raw_keys()
        rows, kept = [], []
        for i in range(len(keys)):
            buf = self.value_buffer()
            try:
                self.call(self.ctx("lookup"), bpfsys.lookup, keys[i:i + 1], buf)
            except KeyNotFoundError:  # deleted meanwhile
                continue
            rows.append(buf)
            kept.append(i)
        if not rows:
            shape = (0, self.ncpus) if self.ncpus else (0,)
            return keys[:0], np.zeros(shape, self.view.value_dtype)
        values = np.concatenate(rows)
        if self.ncpus:
            size = self.view.value_dtype.itemsize
            raw = values.view(np.uint8).reshape(len(rows), self.ncpus, self.cell.itemsize)
            values = np.ascontiguousarray(raw[:, :, :size]).view(self.view.value_dtype)
            values = values.reshape(len(rows), self.ncpus)
        return keys[kept], values

    def keys(self) -> list[Any]:
        raw = self.raw_keys()
        return [self.decode_key(raw[i:i + 1]) for i in range(len(raw))]

    # -- queues, stacks, lookup-and-delete ----------------------------------------------
    def pop(self, key: Any = None) -> Any:
        buf = self.value_buffer()
        if self.view.type in QUEUES:
            if key is not None:
                raise KeyTypeError(f"{self.view.type.name} maps pop without a key")
            self.call(self.ctx("pop"), bpfsys.lookup_and_delete, None, buf)
        else:
            k = self.encode_key(key)
            self.call(self.ctx("pop", key), bpfsys.lookup_and_delete, k, buf)
        return self.decode_value(buf)

    def push(self, value: Any, overwrite: bool = False) -> None:
        self._queue_only("push")
        buf, _ = self.encode_value(value)
        flags = bpfsys.BPF_EXIST if overwrite else bpfsys.BPF_ANY
        self.call(self.ctx("push"), bpfsys.update, None, buf, flags)

    def peek(self) -> Any:
        self._queue_only("peek")
        buf = self.value_buffer()
        self.call(self.ctx("peek"), bpfsys.lookup, None, buf)
        return self.decode_value(buf)

    def _queue_only(self, op: str) -> None:
        if self.view.type not in QUEUES:
            raise UnsupportedMapError(f"{op} works on QUEUE and STACK maps; map "
                                      f"{self.view.name!r} is {self.view.type.name}")

    # -- batches ----------------------------------------------------------------------
    def update_many(self, keys: np.ndarray, values: np.ndarray, flags: str = "any",
                    lock: bool = False) -> int:
        """Write len(keys) elements with BPF_MAP_UPDATE_BATCH (per element if unsupported)."""
        bits = FLAGS[flags] | (bpfsys.BPF_F_LOCK if lock else 0)
        n = len(keys)
        done = 0
        if flags == "any":  # the kernel's batch update takes no NOEXIST/EXIST, only F_LOCK
            done = self._batch(bpfsys.Cmd.MAP_UPDATE_BATCH, keys, values, bits,
                               "update_batch", flags)
        for i in range(done, n):
            self.call(self.ctx("update", self._shown(keys[i:i + 1]), flags), bpfsys.update,
                      keys[i:i + 1], values[i:i + 1], bits)
        return n

    def delete_many(self, keys: np.ndarray, missing_ok: bool = False) -> int:
        """Delete keys with BPF_MAP_DELETE_BATCH; returns how many were deleted."""
        deleted, start = 0, 0
        while start < len(keys):
            part = keys[start:]
            done = self._batch(bpfsys.Cmd.MAP_DELETE_BATCH, part, None, 0, "delete_batch")
            deleted += done
            start += done
            if start >= len(keys):
                break
            try:  # the batch stopped at keys[start]: missing, or no batch support
                self.call(self.ctx("delete", self._shown(keys[start:start + 1])),
                          bpfsys.delete, keys[start:start + 1])
                deleted += 1
            except KeyNotFoundError:
                if not missing_ok:
                    raise KeyNotFoundError(
                        f"key {self._shown(keys[start:start + 1])!r} is not in map "
                        f"{self.view.name!r}; {deleted} keys deleted before it "
                        "(delete_keys(..., missing_ok=True) skips missing keys)") from None
            start += 1
        return deleted

    def _batch(self, cmd: int, keys: np.ndarray, values: np.ndarray | None, elem_flags: int,
               op: str, flags: str = "") -> int:
        """One batch call over all keys; returns how many succeeded before a stop.

        Unsupported batch ops and ENOENT stop early (the caller continues per element);
        other errors raise the named error for the element that failed.
        """
        if len(keys) == 0:
            return 0
        try:
            done, _end = bpfsys.batch(cmd, self.view.fd, None, None, keys, values, len(keys),
                                      elem_flags)
        except bpfsys.BatchError as e:
            if e.errno in _NO_BATCH:
                return e.done
            key = self._shown(keys[e.done:e.done + 1]) if e.done < len(keys) else None
            raise translate(e, self.ctx(op, key, flags)) from None
        return done  # all of them, or fewer where ENOENT stopped the batch

    def _shown(self, raw: np.ndarray) -> Any:
        try:
            return self.decode_key(raw)
        except Exception:  # a key that cannot be decoded is shown as bytes
            return raw.tobytes()

    # -- DataFrames and key lists -----------------------------------------------------
    def keys_array(self, keys: Any) -> np.ndarray:
        """Keys given as a DataFrame (key columns), a numpy array or an iterable of keys."""
        if isinstance(keys, pd.DataFrame):
            return self.df_keys(keys, self.key_columns(keys))
        if isinstance(keys, np.ndarray) and keys.dtype == self.view.key_dtype:
            return keys
        items = keys.tolist() if isinstance(keys, (pd.Series, pd.Index)) else list(keys)
        if not items:
            return np.zeros(0, self.view.key_dtype)
        return np.concatenate([self.encode_key(k) for k in items])

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        raw = self._names()[0]
        names = raw if all(n in df.columns for n in raw) else df.attrs.get("key_columns", raw)
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise KeyTypeError(f"the DataFrame lacks key columns {missing} of map "
                               f"{self.view.name!r} (expected {names})")
        return list(names)

    def value_columns(self, df: pd.DataFrame) -> list[str]:
        raw = self._names()[1]
        given = raw if all(n in df.columns for n in raw if n.split(".")[0]
                           not in self.value.hidden) else df.attrs.get("value_columns", raw)
        names = [n for n in given if n.split(".")[0] not in self.value.hidden]
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise KeyTypeError(f"the DataFrame lacks value columns {missing} of map "
                               f"{self.view.name!r} (expected {names})")
        return names

    def _names(self) -> tuple[list[str], list[str]]:
        _, kcols, vcols = frames.columns(np.zeros(0, self.view.key_dtype),
                                         np.zeros(0, self.view.value_dtype))
        return kcols, vcols

    def frame_arrays(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) arrays for update_batch from a df() shaped DataFrame."""
        kn, vn = self.key_columns(df), self.value_columns(df)
        if self.ncpus and "cpu" in df.columns:
            return self._percpu_arrays(df, kn, vn)
        keys, vals = self._checked(df, kn, vn)
        return keys, self._cells(vals.reshape(len(df), 1))

    def _checked(self, df: pd.DataFrame, kn: list[str], vn: list[str]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Key and value arrays of every row, all rows checked before any is used."""
        if kn == self._names()[0] or self.kind.key_in is None:
            keys, bad = self.key.columns_array({n: df[n] for n in kn}, kn, len(df))
        else:  # keys shown their own way (an LPM trie's network): checked one by one
            keys, bad = self.df_keys(df, kn), BadRows(len(df))
        vals, vbad = self.value.columns_array({n: df[n] for n in vn}, vn, len(df))
        if bad.merge(vbad):
            raise bad.error(self.view.name, df.index)
        return keys, vals

    def df_keys(self, df: pd.DataFrame, names: list[str]) -> np.ndarray:
        """Key array from key columns: the raw fields (vectorized) or, for map types that
        show keys their own way (an LPM trie's `network`), one key per row."""
        if names == self._names()[0] or self.kind.key_in is None:
            return self.key.from_columns({n: df[n] for n in names}, names, len(df), df.index)
        cols = [df[n].tolist() for n in names]
        rows = cols[0] if len(cols) == 1 else list(zip(*cols))
        if not rows:
            return np.zeros(0, self.view.key_dtype)
        return np.concatenate([self.encode_key(r) for r in rows])

    def _percpu_arrays(self, df: pd.DataFrame, kn: list[str], vn: list[str]
                       ) -> tuple[np.ndarray, np.ndarray]:
        cpus = bpfsys.possible_cpus()
        keys, vals = self._checked(df, kn, vn)
        raw = keys.view(np.dtype((np.void, keys.dtype.itemsize)))
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        grid = np.zeros((len(first), len(cpus)), self.view.value_dtype)
        col = self._cpu_columns(df, cpus)
        grid[inverse.ravel(), col] = vals
        return keys[first], self._cells(grid)

    def _cpu_columns(self, df: pd.DataFrame, cpus: list[int]) -> np.ndarray:
        """Where each row's `cpu` goes in a per-CPU value; KeyTypeError for unknown CPUs."""
        bad = BadRows(len(df))
        values, na = column_values(df["cpu"])
        known = np.isin(values, cpus) if values.dtype.kind in "iuf" else np.zeros(len(df), bool)
        if na is not None:
            known &= ~na
        bad.add("cpu", ~known, lambda i: f"{shown(values, i)} is not a possible CPU "
                                         f"({cpus[0]}-{cpus[-1]})")
        if bad:
            raise bad.error(self.view.name, df.index)
        return np.searchsorted(np.asarray(cpus), values.astype(np.int64))

    def _cells(self, values: np.ndarray) -> np.ndarray:
        """(n, 1) or (n, cpus) values -> the buffer layout the kernel wants."""
        n = values.shape[0]
        if not self.ncpus:
            return np.ascontiguousarray(values.reshape(n))
        out = np.zeros((n, self.ncpus), self.cell)
        size = self.view.value_dtype.itemsize
        raw = out.view(np.uint8).reshape(n, self.ncpus, self.cell.itemsize)
        src = np.ascontiguousarray(values).view(np.uint8).reshape(n, values.shape[1], size)
        raw[:, :values.shape[1], :size] = src
        return out
