"""The notebook display of bpfnb.data.progress: an ipywidgets bar with one line of text.

`install()` (run when the extension loads) makes every long collection (profile, offcpu,
events, record) show this bar in the cell's output while it runs; once it ends, the output
becomes a static bar with the final count and the widgets are closed (a saved notebook,
reopened, shows the bar, not "Error displaying widget: model not found").
"""

from __future__ import annotations

import html
import math

from bpfnb.data import progress


class NotebookBar:
    """A FloatProgress and a label, updated at most 10 times a second."""

    def __init__(self, label: str, total: float, unit: str) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.label, self.total, self.unit = label, total, unit
        finite = math.isfinite(total)
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=total if finite else 1.0,
                                   bar_style="info",
                                   layout=w.Layout(width="40%" if finite else "0"))
        self.text = w.Label(progress.describe(label, 0.0, total, 0, unit))
        self.box = w.HBox([self.bar, self.text])
        self._shown = -1.0
        self._last = (0.0, 0)
        self.handle = display(self.box, display_id=True)

    def update(self, elapsed: float, count: int) -> None:
        self._last = (elapsed, count)
        if elapsed - self._shown < 0.1:
            return
        self._shown = elapsed
        if math.isfinite(self.total):
            self.bar.value = min(elapsed, self.total)
        self.text.value = progress.describe(self.label, elapsed, self.total, count, self.unit)

    def close(self, interrupted: bool) -> None:
        elapsed, count = self._last
        self.bar.bar_style = "warning" if interrupted else "success"
        self.bar.value = self.bar.max if not interrupted else self.bar.value
        self.text.value = progress.describe(self.label, elapsed, self.total, count, self.unit,
                                            done=True) + (" (interrupted)" if interrupted else "")
        if self.handle is not None:
            self.handle.update(self.static_bundle(), raw=True)
        for widget in (self.box, self.bar, self.text):
            widget.close()

    def static_bundle(self) -> dict[str, str]:
        """The bar as it stands, with no widget: HTML and text."""
        line = self.text.value
        bar = (f"<progress value='{self.bar.value}' max='{self.bar.max}' style='width: 40%'>"
               "</progress> " if math.isfinite(self.total) else "")
        return {"text/plain": line,
                "text/html": f"<div class='bpfnb-progress'>{bar}{html.escape(line)}</div>"}


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _factory(label: str, total: float, unit: str) -> progress.Reporter:
    if _in_notebook():
        return NotebookBar(label, total, unit)
    return progress.default_reporter(label, total, unit)


def install() -> None:
    """Show progress as a notebook bar (in a kernel with a frontend; else a terminal line)."""
    progress.set_factory(_factory)


def uninstall() -> None:
    old = progress.set_factory(None)
    if old is not _factory:
        progress.set_factory(old)
