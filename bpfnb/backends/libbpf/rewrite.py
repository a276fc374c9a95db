"""The light source rewrite that lets BCC C compile as libbpf C.

- `map.method(args)` -> `bpfnb_method(&map, args)` (macros in compat.h)
- `BPF_TABLE("hash", ...)` -> `BPF_TABLE(hash, ...)` (a token compat.h can paste)
- each top-level function gets an ELF section: from its name where bcc attaches by name
  (`kprobe__X`, `kretprobe__X`, `tracepoint__C__E`, `raw_tracepoint__X`), else
  `bpfnb/NAME`: a program whose type is given when it is loaded (`program_fd`)
- TRACEPOINT_PROBE structs are generated from tracefs and put before the cell
- every cell line is preceded by `#line N "cell"`, so clang reports cell line numbers
- a kernel-struct pointer dereferenced directly (bcc rewrites those into probe reads)
  is a CompileError telling the user to use BPF_CORE_READ
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bpfnb.backends.diagnose import CELL, source_line
from bpfnb.backends.libbpf.tpformat import struct_for
from bpfnb.errors import CompileError

METHODS = ("lookup_or_try_init", "lookup_or_init", "lookup", "update", "insert", "delete",
           "atomic_increment", "increment", "perf_submit_skb", "perf_submit", "ringbuf_output",
           "ringbuf_reserve", "ringbuf_submit", "ringbuf_discard", "push", "pop", "peek",
           "get_stackid", "call", "redirect_map", "check_current_task", "get_local_storage",
           "sock_map_update", "sock_hash_update", "msg_redirect_map", "msg_redirect_hash",
           "sk_redirect_map", "sk_redirect_hash", "sk_storage_get", "task_storage_get",
           "inode_storage_get")
_METHOD = re.compile(r"\b([A-Za-z_]\w*)\s*\.\s*(" + "|".join(METHODS) + r")\s*\(\s*(\)?)")
_TABLE = re.compile(r"\b(BPF_(?:F_)?TABLE(?:_PUBLIC|_SHARED)?)\s*\(\s*\"(\w+)\"")
_TP_PROBE = re.compile(r"\bTRACEPOINT_PROBE\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)")
_FUNC = re.compile(r"^[ \t]*(?P<ret>(?:[A-Za-z_]\w*[ \t\*]+)+?)(?P<name>[A-Za-z_]\w*)[ \t]*\(",
                   re.M)
_NOT_RET = {"static", "typedef", "struct", "union", "enum", "return", "else", "extern"}
_NAMED = (("kretprobe__", "kretprobe/{}"), ("kprobe__", "kprobe/{}"),
          ("raw_tracepoint__", "raw_tracepoint/{}"), ("tracepoint__", "tracepoint/{}"))
LAZY = "bpfnb/"
# pointers to kernel memory bcc reads implicitly: from bpf_get_current_task(), probe
# arguments (PT_REGS_*, raw tracepoint args); packet and BTF pointers are fine
_KERNEL_PTR = re.compile(r"\bstruct\s+(\w+)\s*\*\s*(\w+)\s*=\s*(?:\([^;]*\))?\s*"
                         r"(?:bpf_get_current_task\s*\(\)|PT_REGS_\w+\s*\(|ctx\s*->\s*args\s*\[)")
# calls whose arguments only name a field or type, never read it (CO-RE relocations,
# sizeof): `bpf_core_field_offset(task->tgid)` is no dereference
_UNEVALUATED = re.compile(r"(?:sizeof|_Alignof|__alignof__|__typeof__|__typeof|typeof|"
                          r"(?:__builtin_)?offsetof|bpf_core_(?:field|type|enum)_\w+|"
                          r"__builtin_preserve_(?:field|type)_info|__builtin_preserve_enum_value|"
                          r"__builtin_btf_type_id)$")
_WORD_END = re.compile(r"\w+$")
_CHAINED = re.compile(r"\s*->")
_BTF_TYPED = re.compile(r"\b(?:KFUNC_PROBE|KRETFUNC_PROBE|LSM_PROBE)\b")


@dataclass
class Rewritten:
    text: str
    #: function name -> ELF section (LAZY + name for functions typed at load)
    sections: dict[str, str] = field(default_factory=dict)
    tracepoints: list[tuple[str, str]] = field(default_factory=list)
    #: output map name -> C type of its events ("struct data_t", "u64"), where it can be told
    events: dict[str, str] = field(default_factory=dict)


def _mask(text: str) -> str:
    """The text with comments, strings and char literals blanked (same length, newlines kept)."""
    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', blank,
                  text, flags=re.S)


def _depths(masked: str) -> list[int]:
    """Brace depth at each character."""
    out, d = [], 0
    for ch in masked:
        if ch == "}":
            d -= 1
        out.append(d)
        if ch == "{":
            d += 1
    return out


def _close_paren(masked: str, start: int) -> int:
    depth = 0
    for i in range(start, len(masked)):
        if masked[i] == "(":
            depth += 1
        elif masked[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _section(name: str) -> str:
    for prefix, kind in (("kprobe__sys_", "ksyscall"), ("kretprobe__sys_", "kretsyscall")):
        if name.startswith(prefix):  # bcc maps sys_X to the arch's syscall wrapper; libbpf too
            return f"{kind}/{name[len(prefix):]}"
    for prefix, fmt in _NAMED:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if prefix == "tracepoint__":
                rest = rest.replace("__", "/", 1)
            return fmt.format(rest)
    return LAZY + name


def functions(source: str) -> list[tuple[int, int, str, str]]:
    """Top-level function definitions: (line, column, name, parameter text)."""
    masked = _mask(source)
    depth = _depths(masked)
    found = []
    for m in _FUNC.finditer(masked):
        if depth[m.start()] != 0 or set(m.group("ret").replace("*", " ").split()) & _NOT_RET:
            continue
        if m.group("ret").split()[0].startswith(("BPF_", "TRACEPOINT_PROBE", "RAW_TRACEPOINT")):
            continue
        open_at = m.end() - 1
        close = _close_paren(masked, open_at)
        if close < 0 or not masked[close + 1:].lstrip().startswith("{"):
            continue
        line = source.count("\n", 0, m.start()) + 1
        found.append((line, m.start() - (source.rfind("\n", 0, m.start()) + 1),
                      m.group("name"), source[open_at + 1:close]))
    return found


def _unevaluated(masked: str, at: int) -> bool:
    """Whether position `at` is inside the parentheses of a call in _UNEVALUATED (within
    its statement)."""
    depth = 0
    for i in range(at - 1, -1, -1):
        ch = masked[i]
        if ch == ")":
            depth += 1
        elif ch == "(" and depth:
            depth -= 1
        elif ch == "(":
            name = masked[:i].rstrip()
            word = _WORD_END.search(name, max(0, len(name) - 64))
            if word and _UNEVALUATED.match(word.group(0)):
                return True
        elif ch in ";{}" and not depth:
            return False
    return False


def _address_only(masked: str, start: int, end: int) -> bool:
    """`&p->field` (address arithmetic, as bpf_probe_read and bpf_core_read take), unless
    the field is dereferenced further (`&p->parent->pid` loads p->parent)."""
    before = masked[:start].rstrip()
    return (before.endswith("&") and not before.endswith("&&")
            and not _CHAINED.match(masked, end))


def check_kernel_derefs(source: str) -> None:
    """CompileError for `p->field` on a kernel struct pointer outside BPF_CORE_READ.

    bcc silently turns such reads into bpf_probe_read calls; with libbpf they would read
    memory the verifier refuses (or, through old headers, the wrong offsets). Taking the
    address (`&p->field`) and naming the field in sizeof/typeof or a CO-RE builtin
    (`bpf_core_field_offset(p->field)`) read nothing and are fine."""
    masked = _mask(source)
    pointers = {m.group(2): m.group(1) for m in _KERNEL_PTR.finditer(masked)}
    for m in re.finditer(r"\bint\s+kprobe__\w+\s*\(([^)]*)\)", masked):  # kprobe arguments
        pointers.update((p.group(2), p.group(1)) for p in re.finditer(
            r"\bstruct\s+(\w+)\s*\*\s*(\w+)\s*$", m.group(1).replace(",", "\n"), re.M)
            if p.group(1) != "pt_regs")
    if not pointers:
        return
    typed = _BTF_TYPED.search(masked)  # BTF-typed programs may dereference directly: stop
    use = re.compile(r"\b(" + "|".join(map(re.escape, pointers)) + r")\s*->\s*(\w+)")
    for m in use.finditer(masked, 0, typed.start() if typed else len(masked)):
        if _address_only(masked, m.start(), m.end()) or _unevaluated(masked, m.start()):
            continue
        var, member = m.group(1), m.group(2)
        no = masked.count("\n", 0, m.start()) + 1
        col = m.start() - masked.rfind("\n", 0, m.start())
        msg = (f"Use BPF_CORE_READ({var}, {member}) to read struct {pointers[var]} "
               f"(line {no}): the libbpf backend does not rewrite kernel pointer "
               "dereferences as bcc does; or run the cell with backend='bcc'.")
        raise CompileError(f"{msg}\n      {source_line(source, no)}",
                           details=msg, diagnostics=[(no, col, msg)])


_SUBMIT = re.compile(r"\b(\w+)\s*\.\s*(?:perf_submit\s*\(\s*\w+\s*,|ringbuf_output\s*\()"
                     r"\s*(&?)\s*(\w+)")
_RESERVE = re.compile(r"\b(struct\s+\w+|\w+)\s*\*\s*\w+\s*=\s*(?:\([^)]*\)\s*)?(\w+)\s*\.\s*"
                      r"ringbuf_reserve\s*\(")


def event_types(source: str) -> dict[str, str]:
    """The C type each perf/ring buffer map is sent, as bcc infers it from the calls."""
    masked = _mask(source)
    found: dict[str, str] = {}
    for m in _RESERVE.finditer(masked):
        found.setdefault(m.group(2), re.sub(r"\s+", " ", m.group(1)))
    for m in _SUBMIT.finditer(masked):
        amp, var = m.group(2), m.group(3)
        ptr = "" if amp else r"\*\s*"
        decl = re.search(rf"\b(struct\s+\w+|\w+)\s*{ptr}\b{var}\s*(?:=|;|\[)", masked)
        if decl and decl.group(1) not in ("return", "else"):
            found.setdefault(m.group(1), re.sub(r"\s+", " ", decl.group(1)))
    return found


USDT_PRELUDE = """#include <bpf/usdt.bpf.h>
#define bpf_usdt_readarg(n, ctx, addr) \\
    ({ long __a = 0; int __r = bpf_usdt_arg(ctx, (n) - 1, &__a); *(addr) = __a; __r; })
#define bpf_usdt_readarg_p(n, ctx, buf, len) \\
    ({ long __a = 0; int __r = bpf_usdt_arg(ctx, (n) - 1, &__a); \\
       if (!__r) __r = bpf_probe_read_user(buf, len, (void *)__a); __r; })"""


def needs_usdt(source: str) -> bool:
    return bool(re.search(r"\bbpf_usdt_readarg", source))


def _maybe_usdt(params: str) -> bool:
    """A function attached by hand that a USDT probe could run (`void *ctx` or pt_regs):
    libbpf attaches USDT probes only to objects holding usdt.bpf.h's maps."""
    return bool(re.search(r"\bpt_regs\b|^\s*void\s*\*", params))


def rewrite(source: str, usdt_functions: frozenset[str] = frozenset()) -> Rewritten:
    """The compilable libbpf C text of a BCC C cell (see the module docstring); functions
    in `usdt_functions` are USDT handlers (libbpf's usdt.bpf.h is included then)."""
    check_kernel_derefs(source)
    out = Rewritten("")
    defs = {line: (col, name, params) for line, col, name, params in functions(source)}
    lines = source.split("\n")
    outers = set(re.findall(r"\bBPF_(?:ARRAY|HASH)_OF_MAPS\s*\(\s*(\w+)", source))
    body = []
    for i, line in enumerate(lines, 1):
        if i > 1 and lines[i - 2].rstrip().endswith("\\"):
            body.append(_line(line, outers))
            continue
        directive = f'#line {i} "{CELL}"'
        if i in defs:
            _col, name, params = defs[i]
            sec = "usdt" if name in usdt_functions else _section(name)
            out.sections[name] = sec
            if sec.startswith("tracepoint/"):
                out.tracepoints.append(tuple(sec.split("/")[1:3]))  # type: ignore[arg-type]
            macro = {"kprobe": "BPF_KPROBE", "ksyscall": "BPF_KSYSCALL"}.get(sec.split("/")[0])
            if macro and "," in params and "\n" not in params:
                extra = params.split(",", 1)[1].strip()
                line = re.sub(rf"\bint\s+{name}\s*\([^)]*\)", f"int {macro}({name}, {extra})",
                              line, count=1)
            body += [directive, f'SEC("{sec}")']
        body += [directive, _line(line, outers)]
    for m in _TP_PROBE.finditer(_mask(source)):
        out.tracepoints.append((m.group(1), m.group(2)))
        out.sections[f"tracepoint__{m.group(1)}__{m.group(2)}"] = \
            f"tracepoint/{m.group(1)}/{m.group(2)}"
    for m in re.finditer(r"\bRAW_TRACEPOINT_PROBE\s*\(\s*(\w+)\s*\)", source):
        out.sections[f"raw_tracepoint__{m.group(1)}"] = f"raw_tracepoint/{m.group(1)}"
    structs = [struct_for(c, e) for c, e in dict.fromkeys(out.tracepoints)]
    out.events = event_types(source)
    # clang puts a local variable's type in no BTF; a global pointer keeps each event type
    keep = [f"{c_type} *__bpfnb_event_{name} __attribute__((unused));"
            for name, c_type in out.events.items()]
    probes = any(_maybe_usdt(params) for _c, name, params in defs.values()
                 if out.sections.get(name, "").startswith(LAZY))
    head = [USDT_PRELUDE] if usdt_functions or probes or needs_usdt(source) else []
    out.text = "\n".join([*head, *structs, *body, *keep, ""])
    return out


# kernel headers bcc cells include: vmlinux.h (and compat.h) already declare all of it
_OF_MAPS = re.compile(r"\bBPF_(?:ARRAY|HASH)_OF_MAPS\s*\(")
_KERNEL_INCLUDE = re.compile(r"^\s*#\s*include\s*[<\"](?:linux|uapi|net|asm|asm-generic|bcc)/")


def _line(line: str, outers: set[str]) -> str:
    """One line with BPF_TABLE type strings and map methods rewritten; `outers` are maps
    of maps (their lookup returns the inner map, untyped)."""
    if _KERNEL_INCLUDE.match(line):
        return f"/* {line.strip()}: from vmlinux.h */"
    line = _TABLE.sub(lambda m: f"{m.group(1)}({m.group(2)}", line)
    if _OF_MAPS.search(line):  # bcc 0.26 names the inner map as a string
        line = re.sub(r'"(\w+)"', r"\1", line)

    def method(m: re.Match[str]) -> str:
        name = "bpfnb_lookup_map" if m.group(1) in outers and m.group(2) == "lookup" \
            else f"bpfnb_{m.group(2)}"
        return f"{name}(&{m.group(1)}" + (")" if m.group(3) else ", ")
    return _METHOD.sub(method, line)
