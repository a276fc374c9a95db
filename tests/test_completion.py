"""`prog["<TAB>` completes map names; `prog.mapname` says to use `prog["mapname"]`."""

from __future__ import annotations

import pytest

import bpfnb
from bpfnb.bpftrace.health import available
from bpfnb.bpftrace.program import bpftrace
from conftest import COUNT_BY_PID

pytestmark = pytest.mark.usefixtures("kernel")

TWO_MAPS = COUNT_BY_PID + "BPF_ARRAY(totals, u64, 4);\n"


def _complete(shell, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    """What IPython offers at the end of `text` (as Tab in a notebook does)."""
    _, matches = shell.complete("", text, len(text))
    return sorted(matches)


def test_program_completes_map_names_and_hints_attribute_access(shell) -> None:  # type: ignore[no-untyped-def]
    with bpfnb.load(TWO_MAPS, backend="bcc") as prog:
        assert sorted(prog._ipython_key_completions_()) == ["by_pid", "totals"]
        shell.user_ns["tabprog"] = prog
        assert _complete(shell, 'tabprog["to') == ["totals"]
        assert _complete(shell, "tabprog[") == ["'by_pid'", "'totals'"]
        with pytest.raises(AttributeError, match=r"""'by_pid' is a map: use prog\['by_pid'\]"""):
            prog.by_pid  # noqa: B018
        with pytest.raises(AttributeError) as ei:
            prog.nosuch  # noqa: B018
        assert "is a map" not in str(ei.value)
        assert not hasattr(prog, "totals") and hasattr(prog, "close")
        del shell.user_ns["tabprog"]


def test_replayed_program_completes_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with bpfnb.load(TWO_MAPS, backend="bcc") as live:
        bpfnb.record(live, tmp_path / "r.zip", count=1)
    with bpfnb.replay(tmp_path / "r.zip") as prog:
        assert sorted(prog._ipython_key_completions_()) == ["by_pid", "totals"]
        with pytest.raises(AttributeError, match=r"use prog\['totals'\]"):
            prog.totals  # noqa: B018


def test_bpftrace_program_completes_its_maps() -> None:
    ok = available()
    if not ok:
        pytest.skip(str(ok))
    with bpftrace('BEGIN { @starts = count(); @names["x"] = 1; }', duration=0.2) as prog:
        prog.wait(10)
        assert sorted(prog._ipython_key_completions_()) == ["@names", "@starts"]
        with pytest.raises(AttributeError, match=r"use prog\['@starts'\]"):
            prog.starts  # noqa: B018
