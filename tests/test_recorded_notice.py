"""Replay notices: plain-text marks (no glyph the default fonts lack), the reason said once."""

from __future__ import annotations

from bpfnb.jupyter import session as nbsession


def test_reason_once_per_notebook(tmp_path):
    s = nbsession.NotebookSession()
    (tmp_path / "nb").mkdir()
    s.use(tmp_path / "nb", replay=True)
    first, second = nbsession.RecordedNotice(s).text, nbsession.RecordedNotice(s).text
    assert first.startswith("[replay] recorded output: ") and s.reason is not None
    assert s.reason in first and len(first.splitlines()) == 1
    assert second == "[replay] recorded output"
    assert "⏵" not in s.banner() and s.banner().startswith("[replay] ")
    (tmp_path / "other").mkdir()
    s.use(tmp_path / "other", replay=True)
    assert s.reason in nbsession.RecordedNotice(s).text   # another notebook: said again
