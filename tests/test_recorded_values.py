"""A %%recorded cell that profiles with real BPF programs (off-CPU and on-CPU) and binds
named tuples: replayed in another process, as the user nobody with no capabilities (BPF
cannot load there), every value comes back exactly: Stacks with unit, rate, info, mappings
and rows; named tuples with their type name and fields."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from bpfnb.jupyter import kernelspec
from bpfnb.jupyter.session import NotebookSession, cell_key
from bpfnb.store.cellstore import CellStore, same

pytestmark = pytest.mark.usefixtures("kernel")

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
PRELUDE = """\
import collections, os, sys
from typing import NamedTuple
import bpfnb
Where = collections.namedtuple("Where", "pid comm")
class Totals(NamedTuple):
    off_us: int
    samples: int
    where: Where
"""
CELL = """\
off = bpfnb.offcpu(command=["sleep", "0.3"], duration=10)
on = bpfnb.profile(command=[sys.executable, "-c", "sum(range(30_000_000))"], duration=10,
                   hz=199)
where = Where(pid=os.getpid(), comm="python")
totals = Totals(off.total, on.total, where)
every = [where, {"totals": totals}]
"""
NAMES = ("off", "on", "where", "totals", "every")
# What a value is, as JSON, the same in both processes (exact: floats keep their repr).
SUMMARY = """\
def summary(v):
    from bpfnb.profiler.stacks import Stacks
    if isinstance(v, Stacks):
        rows = v.rows()
        return {"type": type(v).__name__, "name": v.name, "unit": v.unit, "hz": v.hz,
                "info": summary(v.info), "mappings": summary(v.mappings),
                "attributes": sorted(vars(v)), "repr": repr(v), "folded": v.folded(),
                "rows": {c: [summary(x) for x in rows[c].tolist()] for c in rows.columns},
                "dtypes": [str(t) for t in rows.dtypes]}
    if isinstance(v, tuple) and hasattr(type(v), "_fields"):
        return {"namedtuple": type(v).__name__, "fields": list(v._fields),
                "items": [summary(x) for x in v], "repr": repr(v)}
    if isinstance(v, (list, tuple)):
        return {type(v).__name__: [summary(x) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[summary(k), summary(x)] for k, x in v.items()]}
    return {type(v).__name__: repr(v)}
"""
REPLAY = """\
import json, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "bpfnb")
ip.run_cell(PRELUDE)
ip.run_line_magic("bpf", "fallback " + DIR)
result = ip.run_cell("%%recorded\\n" + CELL)
result.raise_error()
print(json.dumps({n: summary(ip.user_ns[n]) for n in NAMES}))
"""


def summaries(ns: dict[str, Any]) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(SUMMARY, scope)
    return json.loads(json.dumps({n: scope["summary"](ns[n]) for n in NAMES}))


@pytest.fixture(scope="module")
def recorded(shell):
    """The cell run live with BPFNB_RECORD=1: (the recording's directory, the live values)."""
    session = NotebookSession()
    d = Path(tempfile.mkdtemp(prefix="bpfnb-recorded-values-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(shell.magics_manager.registry["BpfMagics"], "session", session)
        monkeypatch.setenv("BPFNB_RECORD", "1")
        yield from _record(shell, session, d)


def _record(shell: Any, session: NotebookSession, d: Path) -> Any:
    bound = {"collections", "os", "sys", "NamedTuple", "bpfnb", "Where", "Totals", *NAMES}
    before = {n: shell.user_ns[n] for n in bound if n in shell.user_ns}
    try:
        assert shell.run_cell(PRELUDE).success
        shell.run_line_magic("bpf", f"fallback {d}")
        with capture_output():
            result = shell.run_cell(f"%%recorded\n{CELL}")
        assert result.success, result.error_in_exec
        yield d, {n: shell.user_ns[n] for n in NAMES}
    finally:
        session.close()
        for n in bound:  # the shared shell as it was
            shell.user_ns.pop(n, None)
        shell.user_ns.update(before)
        shutil.rmtree(d, ignore_errors=True)


def test_live_values_are_what_the_kernel_measured(recorded):
    _, live = recorded
    off, on = live["off"], live["on"]
    assert off.unit == "us" and off.info["exit_status"] == 0
    assert 250_000 <= off.total <= 3_000_000   # `sleep 0.3`: about 300 ms off CPU, in µs
    assert on.unit == "samples" and on.hz == 199 and on.info["exit_status"] == 0
    assert on.total > 0 and off.mappings and on.mappings
    assert live["totals"] == (off.total, on.total, live["where"])


def test_the_store_gives_back_every_value_exactly(recorded):
    d, live = recorded
    got = CellStore(d / "cells.zip").get(cell_key(CELL))
    assert got is not None and got.skipped == {}
    for name in NAMES:
        assert same(live[name], got.variables[name]), name
    assert summaries(got.variables) == summaries(live)


def test_another_process_without_bpf_replays_every_value_exactly(recorded):
    """As on Binder: the user nobody, no capabilities, a fresh interpreter."""
    d, live = recorded
    try:
        python = kernelspec.choose_python(NOBODY, NOBODY)
    except kernelspec.InstallError as e:
        pytest.skip(f"no interpreter the user nobody can run: {e}")
    home = Path(tempfile.mkdtemp(prefix="bpfnb-replay-home-", dir="/tmp"))
    try:
        for p in (d, home):
            p.chmod(0o777)
        (d / "cells.zip").chmod(0o644)
        script = (f"PRELUDE = {PRELUDE!r}\nCELL = {CELL!r}\nNAMES = {NAMES!r}\n"
                  f"DIR = {str(d)!r}\n{SUMMARY}\n{REPLAY}")
        env = {"HOME": str(home), "MPLCONFIGDIR": str(home), "IPYTHONDIR": str(home / "ipy"),
               "PATH": os.environ["PATH"],
               "PYTHONPATH": ":".join([str(ROOT), *site.getsitepackages()])}
        out = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", python, "-c", script],
            env=env, capture_output=True, text=True, timeout=120, cwd=home)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "[replay] recorded output" in out.stdout   # it replayed: BPF cannot load there
        replayed = json.loads(out.stdout.strip().splitlines()[-1])
        assert replayed == summaries(live)
        assert replayed["off"]["unit"] == "us" and replayed["on"]["hz"] == 199
        assert replayed["totals"]["namedtuple"] == "Totals"
        assert replayed["totals"]["fields"] == ["off_us", "samples", "where"]
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
