"""What the magics show: plain text, live/replay banners, folded compiler/verifier logs."""

from __future__ import annotations

import html
from typing import Any

from bpfnb.errors import BpfnbError, VerifierError


class Text:
    """Plain text shown as is (a progress line)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class Banner:
    """Says whether a --replay/--fallback cell runs live or from its recording, and why."""

    def __init__(self, text: str, replaying: bool) -> None:
        self.text = text
        self.replaying = replaying

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        colour = "#fff3cd" if self.replaying else "#d1e7dd"
        return {"text/plain": self.text,
                "text/html": f"<div style='background:{colour};padding:4px 8px;"
                             f"border-radius:4px'>{html.escape(self.text)}</div>"}


class LogView:
    """A long log: collapsed in HTML, whole in text/plain."""

    def __init__(self, err: BpfnbError, full: bool = False) -> None:
        self.err = err
        self.full = full

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        title = "verifier log" if isinstance(self.err, VerifierError) else "compiler output"
        lines = len(self.err.details.splitlines())
        return {
            "text/plain": self.err.details if self.full else
            f"({title}: {lines} lines; `%bpf log` shows it)",
            "text/html": f"<details><summary>{title} ({lines} lines)</summary>"
                         f"<pre>{html.escape(self.err.details)}</pre></details>",
        }
