"""Turn what clang, the verifier and the kernel said into bpfnb errors a person can act on."""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Iterable

from bpfnb._sys import features
from bpfnb.errors import (
    AttachError,
    CompileError,
    FeatureUnavailableError,
    PrivilegeError,
    UnknownTargetError,
    VerifierError,
)
from bpfnb.symbols.symbolizer import load_elf

CELL = "cell"
_DIAG = re.compile(rf"^{CELL}:(\d+):(\d+): (error|warning|fatal error): (.*)$")
_VLINE = re.compile(rf"@ {CELL}:(\d+)\s*$")
_DEFINITION = re.compile(r"^(\s*[A-Za-z_][\w\s\*]*\([^;{}\"'/]*\)\s*)\{")
_TRACEPOINT_PROBE = re.compile(r"^[ \t]*TRACEPOINT_PROBE\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.M)
# (pattern in the verifier's reason, hint): the first match wins; the kernel's own HINT
# lines in the log are not used (they follow register dumps that mention other things)
_HINTS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), h) for p, h in [
    (r"invalid mem access '(map_value_or_null|\w*_or_null)'",
     "check the pointer a map lookup returns for NULL before using it "
     "(`if (!v) return 0;`)"),
    (r"invalid mem access 'scalar'|invalid mem access 'inv'",
     "the pointer is not one the verifier can prove valid; read kernel or user memory "
     "with bpf_probe_read_kernel() / bpf_probe_read_user()"),
    (r"unbounded memory access|min value is negative|invalid access to map value|"
     r"invalid (variable-offset )?(read|write|access) (from|to) stack|"
     r"value is outside of the allowed memory range",
     "the index may be out of bounds: bound it with a check the verifier can see "
     "(e.g. `if (i >= MAX) return 0;`)"),
    (r"sequence of \d+ jumps is too complex|back-edge|infinite loop|"
     r"BPF program is too large|too many states",
     "the verifier cannot follow this loop to its end: give it a small constant bound "
     "(`for (int i = 0; i < 64; i++)`) or use bpf_loop()"),
    (r"!read_ok|invalid indirect read from stack|uninit",
     "a variable is read before it is set: initialise it (and whole structs with `= {}`) "
     "before use"),
    (r"only read from bpf_array is supported", "this map's values are read-only here"),
    (r"bpf_spin_lock", "spin locks are allowed only in some program types (not tracing)"),
]]


def hint_for(reason: str) -> str:
    """What to do about a verifier reason ('' when bpfnb knows no hint for it)."""
    return next((h for pattern, h in _HINTS if pattern.search(reason)), "")


def check_source(source: str) -> None:
    """CompileError for characters no compiler sees as written: a NUL byte (the C string
    handed to clang would end there) or a lone surrogate (not encodable as UTF-8)."""
    m = re.search(r"[\x00\ud800-\udfff]", source)
    if m is None:
        return
    line = source.count("\n", 0, m.start()) + 1
    col = m.start() - (source.rfind("\n", 0, m.start()) + 1) + 1
    char = m.group()
    what = ("a NUL byte (the source would end there)" if char == "\0" else
            f"U+{ord(char):04X}, a lone surrogate that is not valid Unicode")
    msg = f"line {line}, column {col} holds {what}"
    raise CompileError(f"C source error at {msg}. Delete that character and run the cell "
                       f"again.\n      {source_line(source, line)!r}",
                       diagnostics=[(line, col, msg)])


def prepare_source(text: str) -> str:
    """Prefix each line with `#line N "cell"` so clang and the verifier report cell lines.
    check_source() first: CompileError for a NUL byte or a lone surrogate.

    bcc inserts lines of its own (tracepoint structs, section attributes) before function
    definitions, which shifts plain line numbers. A definition's body is moved to a line of
    its own, indented to its old column, so code on the signature's line keeps its place.
    Lines continuing a macro (previous line ends in a backslash) are left alone.
    """
    check_source(text)
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines, 1):
        directive = f'#line {i} "{CELL}"'
        if i > 1 and lines[i - 2].rstrip().endswith("\\"):
            out.append(line)
            continue
        out.append(directive)
        m = _DEFINITION.match(line)
        if m:  # bcc inserts code after the `{`: the body restarts the line count after it
            head = m.group(1)
            out += [head, directive, " " * len(head) + "{", directive,
                    " " * (len(head) + 1) + line[len(head) + 1:]]
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
    hint = hint_for(reason)
    msg = (f"The verifier rejected {function}: {reason.rstrip('.')}{where}. "
           f"{hint[:1].upper() + hint[1:] + '. ' if hint else ''}"
           "The full log is on this exception (.log) and shown by `%bpf log`.")
    return VerifierError(msg, function=function, reason=reason, log=log, line=line)


def _is_insn(line: str) -> bool:
    s = line.lstrip()
    return bool(re.match(r"^(\d+: |; |from \d+ to \d+|HINT:|mark_precise|last_idx|frame\d|"
                         r"(cur|old) state:)", s))  # state dumps follow "infinite loop detected"


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
    if err == errno.E2BIG:
        return VerifierError(
            f"The verifier gave up on {function}: it is too complex (E2BIG, more than a "
            f"million instructions explored). {hint_for('BPF program is too large')[:1].upper()}"
            f"{hint_for('BPF program is too large')[1:]}.",
            function=function, reason="too complex", log="", line=None)
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
    if any(s in message.lower() for s in ("could not determine address", "not found",
                                          "failed to find symbol")):
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
