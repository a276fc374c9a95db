"""The package's shape: layers point down, no import cycles, few deferred imports.

Reads every module's imports (top level and inside functions; `if TYPE_CHECKING:` blocks are
types only and do not count) and checks them against the layer order in docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "bpfnb"

# Lowest first. A module may import its own layer and any layer below it.
LAYERS = ["errors", "_sys", "symbols", "data", "render", "backends", "map", "program",
          "machine", "profiler", "store", "testing", "doctor", "live", "bpftrace", "fleet",
          "jupyter", "__init__", "__main__"]
MAX_DEFERRED = 15  # in-function imports of the package's own modules (entry points, plugins)
# Optional front-end plugins: `.live()` of a map view defers to ipywidgets' live widget, which
# depends on the MapLike Protocol only (map/protocol.py), so these edges form no cycle.
PLUGINS = {("bpfnb.map.view", "bpfnb.live.widgets"), ("bpfnb.store.replay", "bpfnb.live.widgets")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        src = ".".join([*base, *([node.module] if node.module else [])])
    else:
        src = node.module or ""
    if not src.startswith("bpfnb"):
        return []
    out = []
    for alias in node.names:
        sub = f"{src}.{alias.name}"
        out.append(sub if _exists(sub) else src)
    return out


def _exists(dotted: str) -> bool:
    p = PKG.parent.joinpath(*dotted.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


class Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_pkg: bool) -> None:
        self.module, self.is_pkg = module, is_pkg
        self.edges: list[tuple[str, int, bool]] = []  # (target, line, deferred)
        self.private: list[tuple[str, int]] = []
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for n in node.orelse:
                self.visit(n)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for target in resolve(self.module, self.is_pkg, node):
            if target != self.module:
                self.edges.append((target, node.lineno, self.depth > 0))
        if (node.level or (node.module or "").startswith("bpfnb")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    self.private.append((alias.name, node.lineno))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("bpfnb."):
                self.edges.append((alias.name, node.lineno, self.depth > 0))


def graph() -> dict[str, Imports]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        v = Imports(mod, path.name == "__init__.py")
        v.visit(ast.parse(path.read_text(), str(path)))
        out[mod] = v
    return out


def test_imports_point_down() -> None:
    bad = []
    for mod, v in graph().items():
        here = LAYERS.index(layer_of(mod))
        for target, line, deferred in v.edges:
            if deferred and (mod, target) in PLUGINS:
                continue
            if LAYERS.index(layer_of(target)) > here:
                bad.append(f"{mod}:{line} imports {target} (layer {layer_of(target)} is above "
                           f"{layer_of(mod)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    g = graph()
    edges = {m: {t for t, _, _ in v.edges if t in g} for m, v in g.items()}
    # a package's __init__ importing its own submodules is not a cycle through the package
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t):], t] if t in stack else [m, t])
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    cycles = [c for c in cycles if not _init_only(c)]
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _init_only(cycle: list[str]) -> bool:
    """`pkg/__init__` re-exporting a submodule that imports a sibling through `pkg`."""
    return any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:]))


def test_few_deferred_imports() -> None:
    # one import statement counts once, however many names it imports
    deferred = sorted({f"{m}:{line} -> {t}" for m, v in graph().items() for t, line, d in v.edges
                       if d})
    assert len(deferred) <= MAX_DEFERRED, "\n".join(deferred)


def test_no_private_names_across_modules() -> None:
    bad = [f"{m}:{line} imports {name}" for m, v in graph().items() for name, line in v.private]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("framework", ["IPython", "ipywidgets"])
def test_front_end_only_in_front_end_layers(framework: str) -> None:
    allowed = {"live", "jupyter", "fleet", "__init__"}
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        if layer_of(mod) in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{mod}:{node.lineno}" for n in names if n.split(".")[0] == framework]
    assert not bad, f"{framework} imported outside jupyter/ and live/: " + ", ".join(bad)


def test_backends_implement_the_backend_protocol() -> None:
    """BccModule and LibbpfModule offer every Backend method with the same parameters."""
    import inspect

    from bpfnb.backends.base import Backend
    from bpfnb.backends.bcc import BccModule
    from bpfnb.backends.libbpf import LibbpfModule

    methods = [n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")]
    assert "table" in methods and "attach_uprobe" in methods
    bad = [f"{cls.__name__}.{n}" for cls in (BccModule, LibbpfModule) for n in methods
           if list(inspect.signature(getattr(cls, n)).parameters)
           != list(inspect.signature(getattr(Backend, n)).parameters)]
    assert not bad, bad


def test_map_views_are_map_like() -> None:
    """The three map views have MapLike's members (mypy checks their types where they are
    passed to live_view)."""
    from bpfnb.bpftrace.views import BpftraceMap
    from bpfnb.map.protocol import MapLike
    from bpfnb.map.view import MapView
    from bpfnb.store.replay import ReplayMapView

    members = [n for n in vars(MapLike) if not n.startswith("_")]
    assert {"read", "df", "live", "info", "fd"} <= set(members)
    instance_attrs = {"name", "info", "per_cpu"}  # set in __init__ by some views
    bad = [f"{cls.__name__}.{n}" for cls in (MapView, ReplayMapView, BpftraceMap)
           for n in members if not hasattr(cls, n) and n not in instance_attrs]
    assert not bad, bad
