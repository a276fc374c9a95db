"""Turn what clang, the verifier and the kernel said into bpfnb errors a person can act on."""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Iterable

from . import features
from .errors import (
    AttachError,
    CompileError,
    FeatureUnavailableError,
    PrivilegeError,
    UnknownTargetError,
    VerifierError,
)

CELL = "cell"
_DIAG = re.compile(rf"^{CELL}:(\d+):(\d+): (error|warning|fatal error): (.*)$")
_VLINE = re.compile(rf"@ {CELL}:(\d+)\s*$")
_DEFINITION = re.compile(r"^(\s*[A-Za-z_][\w\s\*]*\([^;{}\"'/]*\)\s*)\{")
_TRACEPOINT_PROBE = re.compile(r"^\s*TRACEPOINT_PROBE\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.M)
_HINTS = {
    "map_value_or_null": "check the pointer a map lookup returns for NULL before using it",
    "invalid mem access 'scalar'": "the pointer is not one the verifier can prove valid; "
    "read kernel memory with bpf_probe_read_kernel()",
    "unbounded memory access": "bound the index with a check the verifier can see "
    "(e.g. `if (i >= MAX) return 0;`)",
    "back-edge": "loops need a constant bound; use `#pragma unroll` or a bounded loop",
    "infinite loop": "loops need a constant bound the verifier can see",
    "too large": "the program is too complex; split it with tail calls",
    "invalid indirect read from stack": "initialise the whole key struct (`= {}`) before use",
    "only read from bpf_array is supported": "this map's values are read-only here",
    "bpf_spin_lock": "spin locks are allowed only in some program types (not tracing)",
}


def prepare_source(text: str) -> str:
    """Prefix each line with `#line N "cell"` so clang and the verifier report cell lines.

    bcc inserts lines of its own (tracepoint structs, section attributes) before function
    definitions, which shifts plain line numbers. A definition's body is moved to a line of
    its own, indented to its old column, so code on the signature's line keeps its place.
    Lines continuing a macro (previous line ends in a backslash) are left alone.
    """
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines, 1):
        directive = f'#line {i} "{CELL}"'
        if i > 1 and lines[i - 2].rstrip().endswith("\\"):
            out.append(line)
            continue
        out.append(directive)
        m = _DEFINITION.match(line)
        if m:
            head = m.group(1)
            out += [head, directive, " " * len(head) + line[len(head):]]
        else:
            out.append(line)
    return "\n".join(out)


def source_line(source: str, line: int) -> str:
    lines = source.split("\n")
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def compile_error(source: str, output: str) -> CompileError:
    """A CompileError listing each error with its cell line and the offending source."""
    diags = []
    for raw in output.splitlines():
        m = _DIAG.match(raw)
        if m and m.group(3) != "warning":
            diags.append((int(m.group(1)), int(m.group(2)), m.group(4)))
    if not diags:
        first = next((ln for ln in output.splitlines() if "error" in ln), output.strip()[:200])
        return CompileError(f"C compile error: {first or 'the compiler gave no message'}. "
                            "Fix the C source and run it again.", details=output)
    line, col, msg = diags[0]
    head = f"C compile error at line {line}, column {col}: {msg}. Fix the cell and run it again."
    body = [f"  line {ln}: {m}\n      {source_line(source, ln)}" for ln, _, m in diags[:5]]
    more = [f"  ... and {len(diags) - 5} more"] if len(diags) > 5 else []
    body[0] = f"      {source_line(source, line)}"
    return CompileError("\n".join([head, *body, *more]), details=output, diagnostics=diags)


def verifier_error(function: str, source: str, output: str, err: int) -> Exception:
    """The verifier's one-line reason, with the cell line it points at; full log kept."""
    log = output.split("\n", 1)[1] if output.startswith("bpf:") else output
    lines = [ln for ln in log.splitlines() if ln.strip()]
    if not lines:
        return load_refused(function, err)
    stop = next((i for i, ln in enumerate(lines) if ln.startswith("processed ")), len(lines))
    reason = next((ln for ln in reversed(lines[:stop]) if not _is_insn(ln)), lines[0]).strip()
    line = next((int(m.group(1)) for ln in reversed(lines[:stop])
                 if (m := _VLINE.search(ln)) and m.group(1) != "0"), None)
    where = f" at line {line}: `{source_line(source, line)}`" if line else ""
    hint = next((h for key, h in _HINTS.items() if key in log), "")
    msg = (f"The verifier rejected {function}: {reason}{where}. "
           f"{hint[:1].upper() + hint[1:] + '. ' if hint else ''}"
           "The full log is on this exception (.log) and shown by `%bpf log`.")
    return VerifierError(msg, function=function, reason=reason, log=log, line=line)


def _is_insn(line: str) -> bool:
    s = line.lstrip()
    return bool(re.match(r"^(\d+: |; |from \d+ to \d+|HINT:|mark_precise|last_idx|frame\d)", s))


def load_refused(function: str, err: int) -> Exception:
    """A load that failed with no verifier log: privilege or a kernel refusal."""
    perm = features.can_load_bpf()
    if not perm:
        return PrivilegeError(f"Cannot load {function}: {perm.reason}")
    if err == errno.EPERM:
        lock = features.lockdown()
        extra = f" Kernel lockdown is '{lock}'." if lock and lock != "none" else ""
        return FeatureUnavailableError(
            f"The kernel refused to load {function} (EPERM) although this process may load BPF."
            f"{extra} This kernel does not allow this program type (fentry/LSM need BTF "
            "trampolines, LSM needs 'bpf' in the lsm= boot list); use a tracepoint instead.")
    return AttachError(f"The kernel refused to load {function}: {errno.errorcode.get(err, err)}. "
                       "Check the program type and helpers it calls.")


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Names like `name`; prefiltered so that tens of thousands of candidates stay fast."""
    pool = [c for c in candidates if abs(len(c) - len(name)) <= 6 and (
        c[:3] == name[:3] or name[-4:] in c or c[-4:] in name)]
    return difflib.get_close_matches(name, pool, n=n, cutoff=0.6)


def check_tracepoints(source: str) -> None:
    """Raise UnknownTargetError for a TRACEPOINT_PROBE naming a tracepoint that doesn't exist."""
    if features.tracefs() is None:
        return
    for m in _TRACEPOINT_PROBE.finditer(source):
        category, event = m.group(1), m.group(2)
        if not features.tracepoint_exists(category, event):
            line = source.count("\n", 0, m.start()) + 1
            raise unknown_tracepoint(f"{category}:{event}", line)


def unknown_tracepoint(name: str, line: int | None = None) -> UnknownTargetError:
    matches = close_matches(name, features.tracepoints())
    where = f" (line {line})" if line else ""
    did = f" Did you mean: {', '.join(matches)}?" if matches else ""
    return UnknownTargetError(
        f"Unknown tracepoint {name}{where}.{did} Available tracepoints are listed in "
        f"{features.tracefs()}/available_events.", matches=matches)


def kernel_symbols() -> list[str]:
    try:
        with open("/proc/kallsyms") as f:
            rows = (ln.split() for ln in f)
            return [r[2] for r in rows if r[1] in "tTwW"]
    except OSError:
        return []


def kprobe_failure(function: str, target: str) -> Exception:
    feat = features.kprobes()
    if not feat:
        return FeatureUnavailableError(
            f"Cannot attach {function} to kernel function {target}: kprobes are not available "
            f"({feat.reason}). Use TRACEPOINT_PROBE or RAW_TRACEPOINT_PROBE instead.")
    matches = close_matches(target, kernel_symbols())
    did = f" Did you mean: {', '.join(matches)}?" if matches else ""
    return UnknownTargetError(
        f"Cannot attach {function} to kernel function {target}: it does not exist or is not "
        f"traceable (inlined or notrace).{did}", matches=matches)


def uprobe_failure(function: str, binary: str, symbol: str, message: str) -> Exception:
    if "could not determine address" in message or "not found" in message.lower():
        matches = close_matches(symbol, elf_symbols(binary))
        did = f" Did you mean: {', '.join(matches)}?" if matches else ""
        return UnknownTargetError(f"Unknown symbol {symbol} in {binary}.{did}", matches=matches)
    feat = features.uprobes()
    if not feat:
        return FeatureUnavailableError(f"Cannot attach {function}: uprobes are not available "
                                       f"({feat.reason}).")
    return AttachError(f"Cannot attach {function} to {binary}:{symbol}: {message}")


def elf_symbols(path: str) -> list[str]:
    """Function names in an ELF file's symtab and dynsym (for 'did you mean')."""
    from .symbols import load_elf

    table = load_elf(path).table
    return sorted({table.name(i) for i in range(len(table))})


def probe_missing_feature(kind: str, function: str, target: str) -> Exception | None:
    """For attach kinds that need a kernel feature, the error to raise if it is missing."""
    if kind in ("kprobe", "kretprobe"):
        return None if features.kprobes() else kprobe_failure(function, target)
    if kind in ("uprobe", "uretprobe", "usdt"):
        feat = features.uprobes()
        return None if feat else FeatureUnavailableError(
            f"Cannot attach {function} to {target}: uprobes are not available ({feat.reason}).")
    return None
