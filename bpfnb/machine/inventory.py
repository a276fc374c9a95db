"""Every BPF program, map and link on the machine as DataFrames, and program run-time rates.

All of it comes from the bpf(2) syscall (get-next-id, get-fd-by-id, get-info-by-fd), plus
/proc for the processes that hold objects; every fd opened here is closed before returning.

>>> programs()                     # id, name, type, tag, loaded_at, map_ids, pids, attached...
>>> maps()                         # id, name, type, sizes, memlock, btf_id, prog_ids, pids...
>>> with ProgramStats() as stats:  # turns kernel run-time stats on while open
...     stats.sample(); time.sleep(1); stats.sample()   # events/s, avg ns, % of a CPU
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes as ct
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfobjs, bpfsys, errnos
from bpfnb._sys.bpfattrs import FuncInfo
from bpfnb._sys.btf import Btf
from bpfnb.errors import BpfnbError, PrivilegeError
from bpfnb.machine.attachments import LinkRecord, all_links
from bpfnb.machine.holders import Holders, scan

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
_NAME_MAX = bpfsys.OBJ_NAME_LEN - 1  # the kernel keeps 15 characters of a name


def prog_type_name(value: int) -> str:
    try:
        return bpfsys.ProgType(value).name
    except ValueError:
        return f"UNKNOWN({value})"


def map_type_name(value: int) -> str:
    try:
        return bpfsys.MapType(value).name
    except ValueError:
        return f"UNKNOWN({value})"


def boot_epoch_ns() -> int:
    """Wall-clock time of boot in ns (program load times count from boot)."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def stats_sysctl() -> bool | None:
    """kernel.bpf_stats_enabled (None if unreadable). BPF_ENABLE_STATS fds held by any
    process also turn stats on without showing here."""
    try:
        with open(STATS_SYSCTL) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


@contextmanager
def _listing(what: str) -> Iterator[None]:
    """Turn an OSError of a whole listing into a bpfnb error that says what to do."""
    try:
        yield
    except OSError as e:
        if isinstance(e, BpfnbError):
            raise
        raise errnos.translate(e, f"list the machine's BPF {what}") from e


# -- program names -------------------------------------------------------------------------

_full_names: dict[int, str] = {}
_full_names_lock = threading.Lock()


def program_name(fd: int, info: bpfsys.ProgInfo) -> str:
    """The program's name; a 15-character (cut) name is completed from its BTF function
    name when the program has BTF (as bpftool does)."""
    name = info.name.decode(errors="replace")
    if len(name) < _NAME_MAX or not info.btf_id or not info.nr_func_info:
        return name
    with _full_names_lock:
        if info.id in _full_names:
            return _full_names[info.id]
    full = name
    try:
        func = FuncInfo()
        query = bpfsys.ProgInfo(nr_func_info=1, func_info_rec_size=ct.sizeof(FuncInfo),
                                func_info=ct.addressof(func))
        bpfsys.obj_info(fd, query)
        full = Btf.from_id(info.btf_id).type(func.type_id).name or name
    except (OSError, BpfnbError):
        pass
    with _full_names_lock:
        _full_names[info.id] = full
    return full


def _forget_names(live: Iterable[int]) -> None:
    with _full_names_lock:
        for gone in set(_full_names) - set(live):
            del _full_names[gone]


# -- programs ------------------------------------------------------------------------------

_PROG_DTYPES = {
    "id": "uint32", "name": object, "type": object, "tag": object, "gpl": bool,
    "loaded_at": "datetime64[ns, UTC]", "uid": "uint32", "btf_id": "uint32", "map_ids": object,
    "bytes_xlated": "uint32", "bytes_jited": "uint32", "bytes_memlock": "uint64",
    "verified_insns": "uint32", "run_cnt": "uint64", "run_time_ns": "uint64",
    "avg_run_ns": "float64", "recursion_misses": "uint64", "pids": object, "comms": object,
    "links": object, "attached": object,
}
_MAP_DTYPES = {
    "id": "uint32", "name": object, "type": object, "key_size": "uint32",
    "value_size": "uint32", "max_entries": "uint32", "flags": "uint32",
    "bytes_memlock": "uint64", "frozen": bool, "btf_id": "uint32", "btf_key_type_id": "uint32",
    "btf_value_type_id": "uint32", "map_extra": "uint64", "prog_ids": object, "pids": object,
    "comms": object,
}
_LINK_DTYPES = {"id": "uint32", "type": object, "prog_id": "uint32", "target": object,
                "pids": object, "comms": object}


def _frame(rows: list[dict[str, Any]], dtypes: dict[str, Any]) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    for name, dtype in dtypes.items():
        values = [r[name] for r in rows]
        if dtype == "datetime64[ns, UTC]":
            cols[name] = pd.to_datetime(pd.Series(values, dtype="int64"), unit="ns", utc=True)
        elif dtype is object:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            cols[name] = arr
        else:
            cols[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(cols)


def _prog_map_ids(fd: int, info: bpfsys.ProgInfo) -> list[int]:
    if not info.nr_map_ids:
        return []
    ids = np.zeros(info.nr_map_ids, np.uint32)
    again = bpfsys.prog_info(fd, ids)
    return [int(i) for i in ids[: min(again.nr_map_ids, len(ids))]]


def _prog_row(fd: int, boot_ns: int, holders: Holders | None,
              links_of: dict[int, list[LinkRecord]]) -> dict[str, Any]:
    info = bpfsys.prog_info(fd)
    pid = info.id
    pids = holders.pids("prog", pid) if holders else []
    links = links_of.get(pid, [])
    attached = sorted({link.target for link in links if link.target}
                      | (holders.perf.get(pid, set()) if holders else set()))
    return {
        "id": pid, "name": program_name(fd, info), "type": prog_type_name(info.type),
        "tag": bytes(info.tag).hex(), "gpl": bool(info.gpl_compatible),
        "loaded_at": boot_ns + info.load_time, "uid": info.created_by_uid,
        "btf_id": info.btf_id, "map_ids": _prog_map_ids(fd, info),
        "bytes_xlated": info.xlated_prog_len, "bytes_jited": info.jited_prog_len,
        "bytes_memlock": int(bpfobjs.fdinfo(fd).get("memlock", 0)),
        "verified_insns": info.verified_insns, "run_cnt": info.run_cnt,
        "run_time_ns": info.run_time_ns,
        "avg_run_ns": info.run_time_ns / info.run_cnt if info.run_cnt else float("nan"),
        "recursion_misses": info.recursion_misses, "pids": pids,
        "comms": holders.comm_list(pids) if holders else [],
        "links": [link.id for link in links], "attached": attached,
    }


def programs(processes: bool = True) -> pd.DataFrame:
    """Every loaded BPF program, one row each, sorted by id.

    `run_cnt` / `run_time_ns` count only while kernel run-time stats are on (`top()` or
    `ProgramStats` turn them on; `attrs["stats_sysctl"]` shows the sysctl). `pids`/`comms`
    are the processes holding the program (an fd to it, a link or a perf event running it);
    `attached` says where it runs, for links and perf-event attachments (tracepoints,
    kprobes, uprobes). `processes=False` skips the /proc scan (no pids, fewer attachments).
    """
    with _listing("programs"):
        holders = scan() if processes else None
        links_of: dict[int, list[LinkRecord]] = {}
        for link in _links_or_empty():
            links_of.setdefault(link.prog_id, []).append(link)
        boot_ns = boot_epoch_ns()
        rows = [_prog_row(fd, boot_ns, holders, links_of)
                for _id, fd in bpfobjs.each(bpfobjs.Kind.PROG)]
    _forget_names(r["id"] for r in rows)
    df = _frame(rows, _PROG_DTYPES)
    df.attrs.update(kind="programs", read_ns=time.time_ns(), stats_sysctl=stats_sysctl())
    return df


def _links_or_empty() -> list[LinkRecord]:
    try:
        return all_links()
    except OSError:  # kernels before 5.8 have no link ids
        return []


# -- maps ----------------------------------------------------------------------------------

def _map_row(fd: int, holders: Holders | None, users: dict[int, list[int]]) -> dict[str, Any]:
    info = bpfsys.map_info(fd)
    extra = bpfobjs.fdinfo(fd)
    pids = holders.pids("map", info.id) if holders else []
    return {
        "id": info.id, "name": info.name.decode(errors="replace"),
        "type": map_type_name(info.type), "key_size": info.key_size,
        "value_size": info.value_size, "max_entries": info.max_entries,
        "flags": info.map_flags, "bytes_memlock": int(extra.get("memlock", 0)),
        "frozen": extra.get("frozen", "0") != "0", "btf_id": info.btf_id,
        "btf_key_type_id": info.btf_key_type_id, "btf_value_type_id": info.btf_value_type_id,
        "map_extra": info.map_extra, "prog_ids": users.get(info.id, []), "pids": pids,
        "comms": holders.comm_list(pids) if holders else [],
    }


def _map_users() -> dict[int, list[int]]:
    """map id -> ids of the programs using it."""
    users: dict[int, list[int]] = {}
    for prog_id, fd in bpfobjs.each(bpfobjs.Kind.PROG):
        for map_id in _prog_map_ids(fd, bpfsys.prog_info(fd)):
            users.setdefault(map_id, []).append(prog_id)
    return users


def maps(processes: bool = True) -> pd.DataFrame:
    """Every BPF map, one row each, sorted by id: sizes, flags, memory (`bytes_memlock`,
    from fdinfo), BTF ids, the programs using it and the processes holding it."""
    with _listing("maps"):
        holders = scan(perf=False) if processes else None
        users = _map_users()
        rows = [_map_row(fd, holders, users) for _id, fd in bpfobjs.each(bpfobjs.Kind.MAP)]
    df = _frame(rows, _MAP_DTYPES)
    df.attrs.update(kind="maps", read_ns=time.time_ns())
    return df


def links(processes: bool = True) -> pd.DataFrame:
    """Every bpf link: id, type, program id, target and the processes holding it."""
    with _listing("links"):
        holders = scan(perf=False) if processes else None
        records = all_links()
    rows = []
    for link in records:
        pids = holders.pids("link", link.id) if holders else []
        rows.append({"id": link.id, "type": link.type, "prog_id": link.prog_id,
                     "target": link.target, "pids": pids,
                     "comms": holders.comm_list(pids) if holders else []})
    df = _frame(rows, _LINK_DTYPES)
    df.attrs.update(kind="links", read_ns=time.time_ns())
    return df


# -- run-time statistics ---------------------------------------------------------------------

_switches: weakref.WeakSet[StatsSwitch] = weakref.WeakSet()


class StatsSwitch:
    """Keeps the kernel's BPF run-time stats (run_cnt, run_time_ns) on while open.

    Uses BPF_ENABLE_STATS: stats stay on while its fd is open, for as long as any process
    holds one, and go off by themselves if this process dies. Kernels without it (< 5.8)
    get kernel.bpf_stats_enabled=1, set back to its previous value on close() and at exit.
    """

    def __init__(self) -> None:
        self.method = ""
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.open()

    @property
    def on(self) -> bool:
        return bool(self.method)

    def open(self) -> None:
        with self._lock:
            if self.method:
                return
            try:
                self._fd = bpfsys.enable_stats()
                self.method = "BPF_ENABLE_STATS"
            except OSError:
                _sysctl_hold()
                self.method = "sysctl"
        _switches.add(self)

    def close(self) -> None:
        """Release this hold on the stats (the sysctl goes back to what it was)."""
        with self._lock:
            fd, self._fd = self._fd, None
            method, self.method = self.method, ""
        if fd is not None:
            os.close(fd)
        if method == "sysctl":
            _sysctl_release()
        _switches.discard(self)

    def __enter__(self) -> StatsSwitch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __repr__(self) -> str:
        return f"<StatsSwitch {'on via ' + self.method if self.method else 'off'}>"


_sysctl_lock = threading.Lock()
_sysctl_state: dict[str, Any] = {"holders": 0, "previous": None}


def _sysctl_hold() -> None:
    """Turn the sysctl on for one more holder in this process (the first saves its value)."""
    with _sysctl_lock:
        if _sysctl_state["holders"] == 0:
            _sysctl_state["previous"] = _write_sysctl("1")
        _sysctl_state["holders"] += 1


def _sysctl_release() -> None:
    """One holder fewer; the last puts the sysctl back to the value it had."""
    with _sysctl_lock:
        _sysctl_state["holders"] -= 1
        if _sysctl_state["holders"] == 0 and _sysctl_state["previous"] not in (None, "1"):
            _write_sysctl(_sysctl_state["previous"])


def _write_sysctl(value: str) -> str:
    """Write kernel.bpf_stats_enabled; return the value it had."""
    try:
        with open(STATS_SYSCTL) as f:
            previous = f.read().strip()
        with open(STATS_SYSCTL, "w") as f:
            f.write(value)
    except OSError as e:
        raise PrivilegeError(f"could not turn BPF run-time stats on ({e.strerror}): "
                             "BPF_ENABLE_STATS and kernel.bpf_stats_enabled both need root; "
                             "run the notebook kernel as root") from e
    return previous


def _close_switches() -> None:
    for switch in list(_switches):
        switch.close()


atexit.register(_close_switches)


@dataclass(frozen=True)
class _Counters:
    name: str
    type: str
    run_cnt: int
    run_time_ns: int


_RATE_DTYPES = {"id": "uint32", "name": object, "type": object, "events_per_s": "float64",
                "avg_run_ns": "float64", "cpu_pct": "float64", "run_cnt": "uint64",
                "run_time_ns": "uint64"}


class ProgramStats:
    """Samples every program's run counters; `sample()` gives rates since the previous
    sample: events per second, average run time (ns) and share of one CPU (%), sorted by
    CPU share. `history[id]` keeps the last `history` (time_ns, events/s, cpu %) per program.
    Stats are switched on while it is open (`enable=False`: leave them as they are)."""

    def __init__(self, enable: bool = True, history: int = 120) -> None:
        self.switch = StatsSwitch() if enable else None
        self.history_len = history
        self.history: dict[int, deque[tuple[int, float, float]]] = {}
        self._prev: tuple[int, dict[int, _Counters]] | None = None
        self._lock = threading.Lock()

    def counters(self) -> tuple[int, dict[int, _Counters]]:
        """(time_ns, {id: counters}) now."""
        table: dict[int, _Counters] = {}
        with _listing("programs"):
            for prog_id, fd in bpfobjs.each(bpfobjs.Kind.PROG):
                info = bpfsys.prog_info(fd)
                table[prog_id] = _Counters(program_name(fd, info), prog_type_name(info.type),
                                           info.run_cnt, info.run_time_ns)
        _forget_names(table)
        return time.monotonic_ns(), table

    def snapshot(self) -> pd.DataFrame:
        """Cumulative counters of every program now (no rates)."""
        t, table = self.counters()
        df = pd.DataFrame(
            {"id": pd.Series(list(table), dtype="uint32"),
             "name": [c.name for c in table.values()], "type": [c.type for c in table.values()],
             "run_cnt": pd.Series([c.run_cnt for c in table.values()], dtype="uint64"),
             "run_time_ns": pd.Series([c.run_time_ns for c in table.values()], dtype="uint64")})
        df.attrs.update(time_ns=t)
        return df

    def sample(self) -> pd.DataFrame:
        """Rates since the previous sample (NaN on the first, and for new programs)."""
        with self._lock:
            now, table = self.counters()
            prev = self._prev
            self._prev = (now, table)
            seconds = (now - prev[0]) / 1e9 if prev else 0.0
            rows = [self._rates(pid, c, prev[1].get(pid) if prev else None, seconds, now)
                    for pid, c in table.items()]
            for gone in set(self.history) - set(table):
                del self.history[gone]
        df = _frame(rows, _RATE_DTYPES)
        df = df.sort_values(["cpu_pct", "events_per_s", "id"], ascending=[False, False, True],
                            na_position="last", ignore_index=True)
        df.attrs.update(kind="program_rates", interval_s=seconds, time_ns=time.time_ns(),
                        stats=self.switch.method if self.switch else "as set")
        return df

    def _rates(self, pid: int, cur: _Counters, old: _Counters | None, seconds: float,
               now: int) -> dict[str, Any]:
        nan = float("nan")
        events = cpu = avg = nan
        if old is not None and seconds > 0:
            d_cnt = max(cur.run_cnt - old.run_cnt, 0)
            d_ns = max(cur.run_time_ns - old.run_time_ns, 0)
            events = d_cnt / seconds
            cpu = 100.0 * d_ns / (seconds * 1e9)
            avg = d_ns / d_cnt if d_cnt else nan
            hist = self.history.setdefault(pid, deque(maxlen=self.history_len))
            hist.append((now, events, cpu))
        return {"id": pid, "name": cur.name, "type": cur.type, "events_per_s": events,
                "avg_run_ns": avg, "cpu_pct": cpu, "run_cnt": cur.run_cnt,
                "run_time_ns": cur.run_time_ns}

    def close(self) -> None:
        """Stop holding stats on (other holders may keep them on)."""
        if self.switch is not None:
            self.switch.close()

    def __enter__(self) -> ProgramStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ProgramStats", "StatsSwitch", "boot_epoch_ns", "links", "map_type_name", "maps",
           "prog_type_name", "program_name", "programs", "stats_sysctl"]
