"""The committed notebooks show their results where nothing runs them (GitHub, nbviewer,
nbconvert, a reopened JupyterLab): each renders to HTML with outputs in most code cells,
tables and pictures among them, no error output, and no widget view (which needs a live
kernel: "Error displaying widget: model not found"). `make notebooks` saves them so."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MIN_WITH_OUTPUT = 1 / 3   # %%bpf, definitions and assert cells print nothing
MIN_RICH = 2            # cells showing a table or a picture
PLACEHOLDER = re.compile(r"(?<![A-Z0-9_])(PID|MAP|PROG|LINK|BTF|TIME|CGROUP|TMP|KADDR)(\d+)(?!\w)")


def rich(out: dict) -> bool:
    data = out.get("data", {})
    return "image/png" in data or "<table" in data.get("text/html", "") \
        or "<img" in data.get("text/html", "")


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")))
def test_committed_notebook_renders_with_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name}: error outputs: {[o.get('ename') for o in errors]}"
    assert not [o for o in outputs if WIDGET_VIEW in o.get("data", {})], \
        f"{name}: widget views saved (reopened, they say 'model not found')"
    assert "widgets" not in nb.metadata, f"{name}: widget state saved"
    shown = sum(bool(c.outputs) for c in code)
    assert shown >= MIN_WITH_OUTPUT * len(code), \
        f"{name}: only {shown} of {len(code)} code cells have outputs (run `make notebooks`)"
    assert sum(any(rich(o) for o in c.outputs) for c in code) >= MIN_RICH, \
        f"{name}: no tables or pictures"
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count("<table") + html.count("<img") >= MIN_RICH
    assert "Traceback (most recent call last)" not in html


def output_texts(nb: nbformat.NotebookNode) -> list[str]:
    """Every text output, in the order scripts/run-notebooks numbers placeholders."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts += [data[m] for m in ("text/plain", "text/html", "text/markdown")
                      if isinstance(data.get(m), str)]
    return texts


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")))
def test_committed_placeholders_are_numbered_in_order(name):
    """PID1, PID2... (and MAP1, TIME1, TMP1...: see scripts/run-notebooks) first appear in
    order with no gaps: the outputs come from one scrubbed run, not two mixed or hand-edited."""
    firsts: dict[str, list[int]] = {}
    for text in output_texts(nbformat.read(NOTEBOOKS / name, as_version=4)):
        for prefix, n in PLACEHOLDER.findall(text):
            if int(n) not in firsts.setdefault(prefix, []):
                firsts[prefix].append(int(n))
    assert {p: ns for p, ns in firsts.items() if ns != list(range(1, len(ns) + 1))} == {}, \
        f"{name}: placeholders out of order (run `make notebooks`)"
