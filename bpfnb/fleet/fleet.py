"""A fleet: the hosts behind an ipyparallel cluster, each running bpfnb (as root or in the
capability kernel). Everything fans out with per-host timeouts (bpfnb.fleet.calls).

>>> import ipyparallel as ipp, bpfnb
>>> fleet = bpfnb.fleet(ipp.Client())
>>> fleet.hosts; fp = fleet.load(source); fp["counts"].df()
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pandas as pd

from bpfnb.errors import BpfnbError
from bpfnb.fleet import engine, wire
from bpfnb.fleet.calls import DEFAULT_TIMEOUT, Engines, HostError, resolve, status_frame
from bpfnb.fleet.program import FleetProgram
from bpfnb.fleet.stacks import FleetStacks


class Fleet:
    """The engines of an ipyparallel Client (or DirectView), known by their hostnames."""

    def __init__(self, client_or_view: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        client, ids = resolve(client_or_view)
        self.client = client
        self.timeout = timeout
        probe = Engines(client, {f"engine {i}": i for i in ids})
        got = probe.call(engine.host_info, timeout=timeout)
        names = [o.value["hostname"] if o.ok else f"engine {i}"
                 for i, o in zip(ids, got.values())]
        labels = [n if names.count(n) == 1 else f"{n}#{i}" for n, i in zip(names, ids)]
        rows = []
        for label, eid, o in zip(labels, ids, got.values()):
            info = o.value if o.ok else {}
            rows.append({"host": label, "engine": eid, "hostname": info.get("hostname", ""),
                         "kernel": info.get("kernel", ""), "bpfnb": info.get("bpfnb", ""),
                         "backend": info.get("backend", ""), "pid": info.get("pid", -1),
                         "ok": o.ok, "error": o.error})
        self._hosts = pd.DataFrame(rows)
        self.engines = Engines(client, dict(zip(labels, ids)))
        self._programs: dict[str, FleetProgram] = {}

    @property
    def hosts(self) -> pd.DataFrame:
        """host (label), engine id, hostname, kernel, bpfnb version, backend auto picks,
        engine pid, ok, error (as found when the fleet was made)."""
        return self._hosts.copy()

    def __len__(self) -> int:
        return len(self.engines.hosts)

    def __repr__(self) -> str:
        return f"<Fleet of {len(self)} hosts: {', '.join(self.engines.hosts)}>"

    def _repr_html_(self) -> str:
        return f"<b>{html.escape(repr(self))}</b>{self._hosts.to_html(index=False)}"

    def run(self, func: Callable[..., Any], *args: Any, timeout: float | None = None
            ) -> dict[str, Any]:
        """func(*args) on every host (DirectView.apply, one engine at a time in parallel):
        {host: result}; a host that failed maps to a HostError saying why (not raised)."""
        got = self.engines.call(func, *args, timeout=timeout or self.timeout)
        return {h: o.value if o.ok else HostError(h, o.error) for h, o in got.items()}

    def doctor(self, timeout: float | None = None) -> pd.DataFrame:
        """Every host's doctor table, `host` first (attrs['failed']: hosts that did not
        answer, and why)."""
        got = self.engines.call(engine.doctor, timeout=timeout or max(self.timeout, 120.0))
        parts = wire.host_frames(got)
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"host": []})
        out.attrs["failed"] = {h: o.error for h, o in got.items() if not o.ok}
        return out

    def load(self, source: str, name: str | None = None, cflags: Any = (),
             backend: str = "auto", strict: bool = False,
             timeout: float | None = None) -> FleetProgram:
        """Compile, load and attach `source` on every host in parallel. A host that fails
        is left out (see `.status`) unless strict=True, which raises HostError; `timeout`:
        seconds each host has to load (default: 60, or the fleet's timeout if longer);
        reads then wait the fleet's timeout per host. Loading a name again closes the fleet
        program that had it (as re-running a %%bpf cell does)."""
        if isinstance(cflags, str):
            cflags = cflags.split()
        old = self._programs.pop(name or "bpf", None)
        if old is not None:          # loading a name again (re-running its cell) replaces it
            old.close()
        prog = FleetProgram(self.engines, source, name=name, cflags=tuple(cflags),
                            backend=backend, strict=strict,
                            timeout=self.timeout,
                            load_timeout=timeout or max(self.timeout, 60.0))
        self._programs[prog.name] = prog
        return prog

    def profile(self, duration: float = 5.0, hz: int = 99, pid: int | None = None,
                timeout: float | None = None) -> FleetStacks:
        """CPU profiles taken on every host at once, as one Stacks whose root frames are
        the hosts (`.host(name)`: one host's own; `.by_host()`: samples per host)."""
        got = self.engines.call(engine.profile, duration, hz, pid,
                                timeout=timeout or duration + max(self.timeout, 60.0))
        per_host = {h: wire.unpack(o.value, f"host {h}") for h, o in got.items() if o.ok}
        if not per_host:
            raise BpfnbError("no host returned a profile: " + "; ".join(
                f"{h}: {o.error}" for h, o in got.items()))
        label = f"pid {pid}" if pid else "all"
        out = FleetStacks(per_host, name=f"fleet profile {label}")
        out.status = status_frame(got)
        return out

    def latency(self, timeout: float | None = None) -> pd.DataFrame:
        """One empty round trip to every host: what the fleet adds to each refresh."""
        return status_frame(self.engines.call(engine.now_ns, timeout=timeout or self.timeout))


def fleet(client_or_view: Any, timeout: float = DEFAULT_TIMEOUT) -> Fleet:
    """The hosts behind an ipyparallel Client or DirectView as a Fleet."""
    return Fleet(client_or_view, timeout=timeout)
