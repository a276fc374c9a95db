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


class Shows:
    """A value that displays itself (as top() and live views do, to keep a display handle)."""

    def _ipython_display_(self):
        from IPython.display import display

        display({"text/plain": "shown by _ipython_display_", "text/html": "<b>shown</b>"},
                raw=True)


def test_recorded_value_that_displays_itself_replays(shell, tmp_path, monkeypatch, capsys):
    from bpfnb._sys import features

    rec = tmp_path / "nb"
    shell.user_ns["Shows"] = Shows
    monkeypatch.setenv("BPFNB_RECORD", "1")
    for cell in (f"%bpf fallback {rec}", "%%recorded\nShows()"):
        assert shell.run_cell(cell).success
    monkeypatch.delenv("BPFNB_RECORD")
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    capsys.readouterr()
    for cell in (f"%bpf fallback {rec}", "%%recorded\nShows()"):
        assert shell.run_cell(cell).success
    assert "shown by _ipython_display_" in capsys.readouterr().out
