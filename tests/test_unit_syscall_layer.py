"""One bpf(2) layer: command numbers only in `bpfsys.Cmd`, bpf(2) structs only in
`_sys/bpfattrs.py`, one libc handle (`_sys/libc.py`). Read from the source, no kernel."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from bpfnb._sys import bpfattrs, bpfsys

PACKAGE = Path(bpfsys.__file__).resolve().parent.parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _is_bpf_call(node: ast.Call) -> bool:
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "bpf"
            and isinstance(f.value, ast.Name) and f.value.id == "bpfsys") or (
        isinstance(f, ast.Name) and f.id == "bpf")


def _names_a_command(arg: ast.expr) -> bool:
    """`bpfsys.Cmd.X`, `Cmd.X`, or a plain name (a parameter such as `cmd`)."""
    if isinstance(arg, ast.Name):
        return arg.id.islower()
    return (isinstance(arg, ast.Attribute) and isinstance(arg.value, (ast.Attribute, ast.Name))
            and ast.unparse(arg.value) in ("bpfsys.Cmd", "Cmd"))


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_bpf_calls_name_their_command_in_cmd(path: Path) -> None:
    bad = [f"{_rel(path)}:{n.lineno}: {ast.unparse(n.args[0])}"
           for n in ast.walk(_tree(path)) if isinstance(n, ast.Call) and _is_bpf_call(n)
           and n.args and not _names_a_command(n.args[0])]
    assert not bad, "bpf(2) command numbers belong in bpfsys.Cmd:\n" + "\n".join(bad)


def _bpf_structs() -> set[frozenset[str]]:
    """The field sets of the structs in bpfattrs (to recognise a copy elsewhere)."""
    out = set()
    for name in dir(bpfattrs):
        obj = getattr(bpfattrs, name)
        if isinstance(obj, type) and hasattr(obj, "_fields_") and obj.__module__ == \
                bpfattrs.__name__:
            out.add(frozenset(f[0] for f in obj._fields_))
    return out


BPF_STRUCTS = _bpf_structs()
BPF_FIELDS = {"map_fd", "prog_fd", "bpf_fd", "attach_bpf_fd", "target_fd", "btf_fd",
              "prog_btf_fd", "inner_map_fd", "in_batch", "next_id", "btf_key_type_id"}


def _struct_fields(node: ast.ClassDef) -> set[str]:
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_fields_" for t in stmt.targets) and \
                isinstance(stmt.value, ast.List):
            return {e.elts[0].value for e in stmt.value.elts  # type: ignore[attr-defined]
                    if isinstance(e, ast.Tuple) and isinstance(e.elts[0], ast.Constant)}
    return set()


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "bpfattrs.py"], ids=_rel)
def test_bpf_structs_only_in_bpfattrs(path: Path) -> None:
    bad = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ClassDef):
            fields = _struct_fields(node)
            if fields & BPF_FIELDS or frozenset(fields) in BPF_STRUCTS:
                bad.append(f"{_rel(path)}:{node.lineno}: class {node.name}")
    assert not bad, "bpf(2) structs belong in _sys/bpfattrs.py:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "libc.py"], ids=_rel)
def test_one_libc_handle(path: Path) -> None:
    bad = [f"{_rel(path)}:{n.lineno}" for n in ast.walk(_tree(path))
           if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("CDLL")
           and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value is None]
    assert not bad, "use bpfnb._sys.libc.libc, not another CDLL(None):\n" + "\n".join(bad)


def test_command_numbers_are_the_kernels() -> None:
    """enum bpf_cmd values (include/uapi/linux/bpf.h) of every command the package issues."""
    assert {c.name: c.value for c in bpfsys.Cmd} == {
        "MAP_CREATE": 0, "MAP_LOOKUP_ELEM": 1, "MAP_UPDATE_ELEM": 2, "MAP_DELETE_ELEM": 3,
        "MAP_GET_NEXT_KEY": 4, "PROG_LOAD": 5, "OBJ_PIN": 6, "OBJ_GET": 7, "PROG_ATTACH": 8,
        "PROG_DETACH": 9, "PROG_GET_NEXT_ID": 11, "MAP_GET_NEXT_ID": 12,
        "PROG_GET_FD_BY_ID": 13, "MAP_GET_FD_BY_ID": 14, "OBJ_GET_INFO_BY_FD": 15,
        "BTF_GET_FD_BY_ID": 19, "TASK_FD_QUERY": 20, "MAP_LOOKUP_AND_DELETE_ELEM": 21,
        "MAP_FREEZE": 22, "BTF_GET_NEXT_ID": 23, "MAP_LOOKUP_BATCH": 24,
        "MAP_LOOKUP_AND_DELETE_BATCH": 25, "MAP_UPDATE_BATCH": 26, "MAP_DELETE_BATCH": 27,
        "LINK_CREATE": 28, "LINK_GET_FD_BY_ID": 30, "LINK_GET_NEXT_ID": 31, "ENABLE_STATS": 32}
