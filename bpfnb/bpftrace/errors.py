"""bpftrace's error output -> bpfnb exceptions that say where and what to do."""

from __future__ import annotations

import re

from bpfnb._sys import features
from bpfnb.backends import diagnose
from bpfnb.bpftrace.script import Marked
from bpfnb.errors import (
    AttachError,
    BpfnbError,
    CompileError,
    FeatureUnavailableError,
    PrivilegeError,
    UnknownTargetError,
)

# stdin:3:5-10: ERROR: msg   |   stdin:1-2: ERROR: msg   |   ERROR: msg
_LOCATED = re.compile(r"^(?:stdin|[^:\s]+\.bt):(?P<line>\d+)(?::(?P<col>\d+))?(?:-\d+)?: "
                      r"(?P<level>ERROR|WARNING): (?P<msg>.*)$")
_PLAIN = re.compile(r"^ERROR: (?P<msg>.*)$")
_NOISE = ("RLIMIT_MEMLOCK",)
_TRACEPOINT = re.compile(r"tracepoint not found: (?P<name>\S+)")
_ATTACH = re.compile(r"Error attaching probe: '(?P<probe>[^']+)'")


def missing_binary(path: str) -> FeatureUnavailableError:
    return FeatureUnavailableError(
        f"bpftrace is not installed ({path} not found); install it (Debian/Ubuntu: "
        "`apt-get install bpftrace`) or pass bpftrace=PATH. `bpfnb doctor` checks this.")


def meaningful(stderr: str) -> list[str]:
    """stderr lines without bpftrace's harmless notices."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not any(n in ln for n in _NOISE)]


def warnings(stderr: str) -> list[str]:
    """WARNING lines bpftrace printed (the program still ran)."""
    return [ln for ln in meaningful(stderr) if ": WARNING: " in ln or ln.startswith("WARNING")]


def translate(stderr: str, returncode: int | None, marked: Marked) -> BpfnbError:
    """The exception for a bpftrace that exited before its probes were attached."""
    lines = meaningful(stderr)
    details = "\n".join(lines)
    for i, ln in enumerate(lines):
        m = _LOCATED.match(ln)
        if m and m.group("level") == "ERROR":
            return _located(m, lines[i + 1:i + 3], details, marked)
    for ln in lines:
        m = _PLAIN.match(ln)
        if not m:
            continue
        msg = m.group("msg")
        if "root" in msg or "permission" in msg.lower() or "not permitted" in msg:
            return PrivilegeError(f"bpftrace needs root (or CAP_BPF + CAP_PERFMON): {msg} "
                                  "Run the notebook kernel as root or with the capability "
                                  "kernel.", details=details)
        a = _ATTACH.search(msg)
        if a:
            return _attach_error(a.group("probe"), details)
    first = lines[0] if lines else f"exit status {returncode}"
    return BpfnbError(f"bpftrace stopped before attaching its probes: {first}. "
                      "See .details for its full output.", details=details)


def _located(m: re.Match[str], excerpt: list[str], details: str, marked: Marked
             ) -> BpfnbError:
    line = int(m.group("line"))
    col = marked.cell_column(line, int(m.group("col") or 0))
    msg = m.group("msg")
    tp = _TRACEPOINT.search(msg)
    if tp:  # 0.17 gives the probe's lines as a range; the name's own line is exact
        name = tp.group("name")
        line = _line_of(marked.script, name.split(":")[-1]) or line
        err = diagnose.unknown_tracepoint(name, line)
        err.details = details
        return err
    if "does not exist" in msg or "No probes to attach" in msg or "not found" in msg:
        quoted = re.search(r"'([^']+)'", msg)
        if quoted:  # 0.17 locates probe errors at the probe list's first line
            line = _line_of(marked.script, quoted.group(1)) or line
        return UnknownTargetError(f"bpftrace: line {line}: {msg}. Check the probe name "
                                  "(bpfnb.probes() lists tracepoints).", details=details)
    caret = _excerpt(marked, line, col, excerpt)
    where = f"line {line}, column {col}" if col else f"line {line}"
    body = f"\n{caret}" if caret else ""
    return CompileError(f"bpftrace rejected the script at {where}: {msg}. Fix that line and "
                        f"run again.{body}", details=details,
                        diagnostics=[(line, col, msg)])


def _line_of(script: str, word: str) -> int | None:
    for no, text in enumerate(script.splitlines(), 1):
        if re.search(rf"(?<![\w/]){re.escape(word)}(?![\w/])", text):
            return no
    return None


def _excerpt(marked: Marked, line: int, col: int, printed: list[str]) -> str:
    """The cell's line with a caret under the column (bpftrace's own excerpt shows the
    script with the marker inside)."""
    shown = [x for x in printed if x.strip() and not _LOCATED.match(x)]
    if not shown:
        return ""
    lines = marked.script.splitlines()
    if marked.inserted and line == marked.inserted[0]:
        at, n = marked.inserted[1], marked.inserted[2]
        text = lines[line - 1][:at] + lines[line - 1][at + n:]
        width = max(len(shown[-1].strip()), 1) if len(shown) > 1 else 1
        return f"{text}\n{' ' * max(col - 1, 0)}{'~' * width}"
    return "\n".join(shown)


def _attach_error(probe: str, details: str) -> BpfnbError:
    if probe.startswith(("kprobe:", "kretprobe:")) and not features.kprobes():
        return FeatureUnavailableError(f"bpftrace could not attach {probe}: "
                                       f"{features.kprobes().reason}", details=details)
    return AttachError(f"bpftrace could not attach {probe}; check that the target exists "
                       "and this kernel supports the probe type.", details=details)
