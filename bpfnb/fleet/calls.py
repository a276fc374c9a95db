"""Calling every engine at once with a deadline: a host that fails, dies or hangs becomes a
failed Outcome, never an exception or a hang in the notebook (ipyparallel AsyncResults
waited on with timeouts; a call left unanswered is aborted where it still waits)."""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ipyparallel as ipp
import pandas as pd

from bpfnb.errors import BpfnbError

DEFAULT_TIMEOUT = 30.0   # seconds a host may take to answer one call


class HostError(BpfnbError):
    """A call failed on one host (the others answered); `.host` names it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"host {host}: {message}")
        self.host = host
        self.reason = message


@dataclass
class Outcome:
    """One host's answer to one call."""

    host: str
    ok: bool
    value: Any = None
    error: str = ""
    seconds: float = 0.0


def resolve(client_or_view: Any) -> tuple[ipp.Client, list[int]]:
    """(client, engine ids) of an ipyparallel Client or DirectView."""
    if isinstance(client_or_view, ipp.Client):
        ids = list(client_or_view.ids)
        client = client_or_view
    elif isinstance(client_or_view, ipp.DirectView):
        client = client_or_view.client
        targets = client_or_view.targets
        if targets is None or targets == "all":
            ids = list(client.ids)
        elif isinstance(targets, int):
            ids = [targets]
        else:
            ids = [int(t) for t in targets]
    else:
        raise BpfnbError(f"bpfnb.fleet() takes an ipyparallel Client or DirectView, not "
                         f"{type(client_or_view).__name__}; e.g. "
                         "bpfnb.fleet(ipyparallel.Client())")
    if not ids:
        raise BpfnbError("the cluster has no engines yet; start some (ipcluster start -n 4, "
                         "or ipyparallel.Cluster(n=4).start_and_connect_sync())")
    return client, ids


def _why(e: BaseException) -> str:
    if isinstance(e, ipp.RemoteError):
        return f"{e.ename}: {e.evalue}"
    return f"{type(e).__name__}: {e}".rstrip(": ")


class Engines:
    """The engines of a fleet, by host label; `call` runs a function on all of them."""

    def __init__(self, client: ipp.Client, hosts: dict[str, int]) -> None:
        self.client = client
        self.hosts = dict(hosts)          # label -> engine id
        self._lock = _client_lock(client)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TIMEOUT,
             hosts: Iterable[str] | None = None) -> dict[str, Outcome]:
        """fn(*args) on each host in parallel; every host's Outcome within `timeout` s."""
        chosen = list(self.hosts) if hosts is None else list(hosts)
        start = time.monotonic()
        pending: dict[str, Any] = {}
        out: dict[str, Outcome] = {}
        with self._lock:   # live views submit from their own threads
            alive = set(self.client.ids)
            for host in chosen:
                eid = self.hosts[host]
                if eid not in alive:
                    out[host] = Outcome(host, False, error=f"engine {eid} is gone (unregistered"
                                        " from the controller: it died or was stopped)")
                    continue
                try:
                    pending[host] = self.client[eid].apply_async(fn, *args)
                except (ipp.error.KernelError, OSError, KeyError, IndexError) as e:
                    out[host] = Outcome(host, False, error=_why(e))
        deadline = start + timeout
        for host, ar in pending.items():
            try:
                ar.wait(max(0.0, deadline - time.monotonic()))
            except (ipp.error.KernelError, OSError) as e:
                out[host] = Outcome(host, False, error=_why(e))
                continue
            took = time.monotonic() - start
            if not ar.ready():
                self._abort(ar, self.hosts[host])
                out[host] = Outcome(host, False, error=f"no answer within {timeout:g} s "
                                    "(engine hung, dead or overloaded)", seconds=took)
                continue
            try:
                out[host] = Outcome(host, True, ar.get(0), seconds=_elapsed(ar, took))
            except (ipp.error.KernelError, OSError, TimeoutError, ValueError) as e:
                out[host] = Outcome(host, False, error=_why(e), seconds=took)
            # the client would keep every answer (a full map each refresh) in its cache
            with self._lock, contextlib.suppress(RuntimeError, ValueError, KeyError):
                self.client.purge_local_results(ar)
        return {h: out[h] for h in chosen}

    def _abort(self, ar: Any, eid: int) -> None:
        """Drop a call still queued on its engine; never waits for the answer (the
        controller may be gone: AsyncResult.abort() would block)."""
        with self._lock, contextlib.suppress(ipp.error.KernelError, OSError, ValueError,
                                             RuntimeError, TypeError):
            self.client.abort(list(ar.msg_ids), targets=[eid], block=False)


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()


def _client_lock(client: ipp.Client) -> threading.Lock:
    """One lock per Client, shared by every fleet made from it."""
    return _LOCKS.setdefault(client, threading.Lock())


def _elapsed(ar: Any, fallback: float) -> float:
    """The round trip the controller measured (submitted to received), if it did."""
    try:
        took = ar.wall_time
        return float(took) if took is not None else fallback
    except (AttributeError, TypeError, ValueError, ipp.error.KernelError):
        return fallback


def status_frame(outcomes: dict[str, Outcome], **columns: dict[str, Any]) -> pd.DataFrame:
    """host, ok, error, seconds (+ extra per-host columns) of one call."""
    rows = [{"host": o.host, "ok": o.ok, **{c: v.get(o.host) for c, v in columns.items()},
             "error": o.error, "seconds": round(o.seconds, 4)} for o in outcomes.values()]
    return pd.DataFrame(rows, columns=["host", "ok", *columns, "error", "seconds"])


def raise_failed(outcomes: dict[str, Outcome], what: str) -> None:
    """HostError naming the first failed host (strict mode)."""
    bad = [o for o in outcomes.values() if not o.ok]
    if bad:
        more = f" (and {len(bad) - 1} more hosts)" if len(bad) > 1 else ""
        raise HostError(bad[0].host, f"{what} failed{more}: {bad[0].error}; see .status, or "
                        "pass strict=False to go on with the hosts that answered")
