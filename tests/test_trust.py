"""Recordings are untrusted: a crafted cells.zip or program recording replays as inert output
(no scripts, handlers, SVG, widget views or external references) and binds only the names the
cell's own source binds; every HTML display escapes what it shows."""

from __future__ import annotations

import base64
import builtins
import json
import zipfile

import pandas as pd
import pytest
from IPython.utils.capture import capture_output

import bpfnb
from bpfnb._sys import features
from bpfnb.jupyter.session import NotebookSession, cell_key
from bpfnb.map.view import MapInfo
from bpfnb.store.cellstore import CellStore
from bpfnb.store.inert import inert_bundle
from conftest import COUNT_BY_PID, run_workload

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(20)).decode()
GIF = base64.b64encode(b"GIF89a" + bytes(20)).decode()
EVIL = "<img src=x onerror=alert(1)>"
WIDGET = "application/vnd.jupyter.widget-view+json"
SOURCE = "x = 1\nprint('hello')"


def display(data: dict, metadata: dict | None = None) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


@pytest.fixture()
def own_session(shell, monkeypatch):
    """The shell with a notebook session of its own."""
    session = NotebookSession()
    monkeypatch.setattr(shell.magics_manager.registry["BpfMagics"], "session", session)
    yield shell
    session.close()


@pytest.fixture()
def ip(own_session, monkeypatch):
    """The shell in replay mode (BPF refused)."""
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    return own_session


def replay(ip, tmp_path, outputs: list, variables: dict | None = None, source: str = SOURCE,
           skipped: dict | None = None):
    """Store a recording of `source` holding `outputs` and `variables` (as an attacker can),
    replay the cell in the shell; what the frontend received."""
    store = CellStore(tmp_path / "cells.zip")
    store.put(cell_key(source), outputs, variables or {})
    store.save()
    if skipped:  # placeholders for values "not recorded": named in the index
        with zipfile.ZipFile(tmp_path / "cells.zip") as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
        index = json.loads(files["cells.json"])
        index["cells"][cell_key(source)]["skipped"] = skipped
        files["cells.json"] = json.dumps(index).encode()
        with zipfile.ZipFile(tmp_path / "cells.zip", "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    ip.run_line_magic("bpf", f"fallback {tmp_path}")
    with capture_output() as io:
        result = ip.run_cell(f"%%recorded\n{source}")
    assert result.success, result.error_in_exec
    return io


def shown(io) -> list[dict]:
    """The display bundles the frontend got, the replay notice left out."""
    return [o.data for o in io.outputs if "recorded output" not in o.data.get("text/plain", "")]


def notice(io) -> str:
    return next(o.data["text/plain"] for o in io.outputs
                if "recorded output" in o.data.get("text/plain", ""))


# -- outputs ----------------------------------------------------------------------------------

def test_a_normal_recording_replays_its_table_text_and_image(ip, tmp_path):
    df = pd.DataFrame({"pid": [1, 2], "comm": ["a<b", "c"]})
    data, metadata = {"text/plain": repr(df), "text/html": df._repr_html_()}, {}
    io = replay(ip, tmp_path, [{"output_type": "stream", "name": "stdout", "text": "hello\n"},
                               display(data, metadata),
                               display({"text/plain": "plot", "image/png": PNG},
                                       {"image/png": {"width": 300}})])
    assert io.stdout == "hello\n"
    table, image = shown(io)
    assert "<table" in table["text/html"] and "<td>a&lt;b</td>" in table["text/html"]
    assert "<style" not in table["text/html"]  # pandas' <style scoped>: no styles replay
    assert table["text/plain"] == data["text/plain"]
    assert image == {"text/plain": "plot", "image/png": PNG}
    assert io.outputs[-1].metadata == {"image/png": {"width": 300}}


@pytest.mark.parametrize("html, kept, gone", [
    ("<b>ok</b><script>alert(1)</script>", "<b>ok</b>", ["<script", "alert"]),
    (f"<p>hi</p>{EVIL}", "<p>hi</p>", ["onerror", "src=x"]),
    ("<a href='javascript:alert(1)'>link</a>", "link", ["javascript", "href"]),
    ("<div onclick='alert(1)' onmouseover=x>d</div>", "<div>d</div>", ["onclick", "onmouse"]),
    ("<style>body{display:none}</style><span>s</span>", "<span>s</span>", ["<style", "display"]),
    ("<iframe src='https://evil.example'></iframe><i>i</i>", "<i>i</i>", ["iframe", "evil"]),
    ("<svg onload=alert(1)><circle r=1 /></svg><em>e</em>", "<em>e</em>", ["svg", "onload"]),
    ("<form action='https://evil.example'><input name=p></form><code>c</code>",
     "<code>c</code>", ["form", "input", "evil"]),
    ("<img src='https://evil.example/t.png'><img src='/files/x.png'><br>", "<br>",
     ["evil", "files", "src"]),
    ("<div style='position:fixed;top:0;color:red;background:url(https://evil.example)'>"
     "x</div>", "<div style=\"color:red\">x</div>", ["position", "evil", "url("]),
    ("<table><tr><th>k</th><td colspan=2>v</td></tr></table>",
     "<table><tbody><tr><th>k</th><td colspan=\"2\">v</td></tr></tbody></table>", []),
    (f"<img src='data:image/png;base64,{PNG}' alt=p>", f'<img src="data:image/png;base64,{PNG}"',
     []),
    (f"<img src='data:image/png;base64,{GIF}'><img src='data:image/svg+xml;base64,PHN2Zz4='>",
     "<img><img>", ["base64"]),
])
def test_replayed_html_is_sanitized(ip, tmp_path, html, kept, gone):
    (got,) = shown(replay(ip, tmp_path, [display({"text/plain": "t", "text/html": html})]))
    assert kept in got["text/html"]
    for word in gone:
        assert word not in got["text/html"].lower()


def test_active_types_never_replay(ip, tmp_path):
    io = replay(ip, tmp_path, [
        display({"text/plain": "js", "application/javascript": "alert(1)"}),
        display({"image/svg+xml": "<svg onload='alert(1)'/>", "text/plain": "svg"}),
        display({WIDGET: {"model_id": "abc", "version_major": 2}, "text/plain": "Fallback",
                 "text/html": f"<b>static</b>{EVIL}", "image/png": PNG}),
        display({"application/vnd.custom+json": {"x": 1}, "text/latex": "$x$"}),
        display({"text/html": "<script>alert(1)</script>"}),
    ])
    assert shown(io) == [{"text/plain": "js"}, {"text/plain": "svg"},
                         {"text/plain": "Fallback", "text/html": "<b>static</b><img>",
                          "image/png": PNG},
                         {"text/html": ""}]


@pytest.mark.parametrize("mime, value", [
    ("image/png", "not base64 at all!"),
    ("image/png", GIF),                       # decodes, but it is no PNG
    ("image/png", JPEG),
    ("image/jpeg", PNG),
    ("image/png", {"src": "https://evil.example/x.png"}),
])
def test_images_must_be_what_they_say(ip, tmp_path, mime, value):
    io = replay(ip, tmp_path, [display({"text/plain": "img", mime: value},
                                       {mime: {"width": "1;x", "onload": "x"}})])
    assert shown(io) == [{"text/plain": "img"}]
    assert io.outputs[-1].metadata == {}


def test_markdown_with_links_or_html_is_not_markdown(ip, tmp_path):
    io = replay(ip, tmp_path, [
        display({"text/markdown": "**bold** and `code`"}),
        display({"text/markdown": "[click](javascript:alert(1))"}),
        display({"text/markdown": "![t](https://evil.example/t.png)", "text/plain": "p"}),
        display({"text/markdown": f"*a*{EVIL}<script>alert(1)</script>"}),
    ])
    assert shown(io) == [{"text/markdown": "**bold** and `code`"},
                         {"text/plain": "[click](javascript:alert(1))"},
                         {"text/plain": "p"},
                         {"text/markdown": "*a*"}]


def test_terminal_escapes_do_not_replay(ip, tmp_path):
    """Colours stay; a title, a clipboard write (OSC 52) or a screen clear do not."""
    io = replay(ip, tmp_path, [
        {"output_type": "stream", "name": "stdout",
         "text": "\x1b]52;c;ZXZpbA==\x07\x1b[31mred\x1b[0m\x1b[2J\n"},
        {"output_type": "stream", "name": "stdin", "text": "not a stream"},
        display({"text/plain": "\x1b]0;pwned\x07t\x00"}),
    ])
    assert io.stdout == "\x1b[31mred\x1b[0m\n"
    assert shown(io) == [{"text/plain": "t"}]


def test_inert_bundle_keeps_only_the_allowlist():
    data, metadata = inert_bundle({"text/plain": "p", "text/html": EVIL, "image/jpeg": JPEG,
                                   "application/javascript": "x", "image/svg+xml": "<svg/>"},
                                  {"image/jpeg": {"height": 20, "x": 1}, "isolated": True})
    assert data == {"text/plain": "p", "text/html": "<img>", "image/jpeg": JPEG}
    assert metadata == {"image/jpeg": {"height": 20}}


# -- names ------------------------------------------------------------------------------------

def test_only_names_the_source_binds_are_bound(ip, tmp_path):
    before = {k: ip.user_ns.get(k) for k in ("get_ipython", "In", "Out", "exit", "open")}
    hostile = {"print": 1, "len": 2, "get_ipython": 3, "_x": 4, "In": 5, "Out": 6, "exit": 7,
               "open": 8, "pd": "not pandas", "secret": 9}
    io = replay(ip, tmp_path, [], {"x": 41, **hostile}, skipped={"os": "module",
                                                                  "range": "type"})
    assert ip.user_ns["x"] == 41
    for name in ("print", "len", "_x", "secret", "os", "range"):
        assert name not in ip.user_ns, name
    assert {k: ip.user_ns.get(k) for k in before} == before
    assert ip.user_ns.get("pd") != "not pandas"
    assert print is builtins.print and len is builtins.len
    assert notice(io).splitlines()[-1] == ("⚠ not bound (the cell's source does not bind "
                                           "them): print, len, get_ipython, _x, In, Out, "
                                           "exit, open and 4 more")
    ip.user_ns.pop("x")


def test_names_bound_by_ipython_syntax_and_nested_code(ip, tmp_path):
    source = ("rows = !echo hi\n[c := n for n in range(2)]\nfor i, (j, *k) in []: pass\n"
              "import os.path as osp, json\nwith open('/dev/null') as f: pass\n"
              "def fn():\n    inner = 1\nclass K:\n    attr = 2\n_hidden = 3\nlen = 4\n"
              "%time timed = 5")
    names = ["rows", "c", "i", "j", "k", "osp", "json", "f", "fn", "K"]
    io = replay(ip, tmp_path, [], {**{n: 1 for n in names}, "n": 1, "inner": 1, "attr": 1,
                                   "_hidden": 1, "len": 1, "timed": 1}, source=source)
    assert all(ip.user_ns.get(n) == 1 for n in names)
    line = notice(io).splitlines()[-1]
    assert line == "⚠ not bound (the cell's source does not bind them): n, inner, attr, " \
                   "_hidden, len, timed"
    for name in [*names, "n", "inner", "attr", "timed"]:
        ip.user_ns.pop(name, None)


def test_the_notice_stays_one_short_line(ip, tmp_path):
    many = {f"v{i}": i for i in range(20)}
    io = replay(ip, tmp_path, [], {"x": 1, "bad\nname <b>": 2, **many})
    assert notice(io).splitlines()[-1] == (
        "⚠ not bound (the cell's source does not bind them): 'bad\\nname <b>', v0, v1, v2, "
        "v3, v4, v5, v6 and 13 more")
    ip.user_ns.pop("x")


def test_placeholders_bind_only_the_sources_names_and_say_plain_text(ip, tmp_path):
    replay(ip, tmp_path, [], {}, source="sock = make()", skipped={
        "sock": "\x1b]0;pwned\x07socket", "other": "socket"})
    assert repr(ip.user_ns.pop("sock")) == ("<not recorded: `sock` (a socket) from the live "
                                            "run, not replayable>")
    assert "other" not in ip.user_ns


def test_nothing_dropped_says_nothing(ip, tmp_path):
    io = replay(ip, tmp_path, [], {"x": 1})
    assert "not bound" not in notice(io)
    ip.user_ns.pop("x")


@pytest.mark.usefixtures("kernel")
def test_recording_keeps_inert_outputs_and_the_sources_names(own_session, tmp_path,
                                                              monkeypatch):
    ip = own_session
    monkeypatch.setenv("BPFNB_RECORD", "1")
    ip.run_line_magic("bpf", f"fallback {tmp_path}")
    source = ("from IPython.display import publish_display_data as show_it\nshown = 1\n"
              "show_it({'text/plain': 'p', 'text/html': '<b>b</b><script>alert(1)</script>',"
              " 'application/javascript': 'alert(1)'})\n"
              "get_ipython().user_ns['sneaky'] = 2")
    with capture_output():
        assert ip.run_cell(f"%%recorded\n{source}").success
    got = CellStore(tmp_path / "cells.zip").get(cell_key(source))
    assert got is not None
    assert {**got.variables, **got.skipped} == {"shown": 1, "show_it": "function"}
    assert [o["data"] for o in got.outputs] == [
        {"text/plain": "p", "text/html": "<b>b</b>"}]
    for name in ("show_it", "shown", "sneaky"):
        ip.user_ns.pop(name, None)


# -- escaping ---------------------------------------------------------------------------------

def test_map_info_escapes_every_field():
    info = MapInfo(name=EVIL, type=EVIL, key_size=4, value_size=8, max_entries=1, id=1, flags=0)
    html = info._repr_html_()
    assert "<img" not in html and html.count("&lt;img") == 2


def renamed(value, names: dict):
    """`value` (parsed JSON) with every string equal to a key of `names` replaced."""
    if isinstance(value, dict):
        return {names.get(k, k): renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


@pytest.mark.usefixtures("kernel")
def test_a_map_named_like_html_is_shown_as_text(shell, workload, tmp_path):
    """A recording whose map is named `<img src=x onerror=alert(1)>`, replayed."""
    prog = bpfnb.load(COUNT_BY_PID, name="trust")
    run_workload(workload, "getpid", 5)
    bpfnb.record(prog, tmp_path / "good.zip", every=0.05, count=2)
    prog.close()
    with zipfile.ZipFile(tmp_path / "good.zip") as zf, \
            zipfile.ZipFile(tmp_path / "evil.zip", "w") as out:
        names = {"by_pid": EVIL, "trust": EVIL, json.loads(zf.read("meta.json"))["host"]: EVIL}
        for name in zf.namelist():  # every JSON part: the map, program and host renamed
            data = zf.read(name)
            if name.endswith(".json"):
                data = json.dumps(renamed(json.loads(data), names)).encode()
            out.writestr(name, data)

    shell.run_cell_magic("bpf", f"evil --replay {tmp_path / 'evil.zip'}", COUNT_BY_PID)
    replayed = shell.user_ns["evil"]
    try:
        view = replayed[EVIL]
        assert view.df().attrs["map"] == EVIL
        live = view.live(every=0.05)
        try:
            pages = [replayed._repr_html_(), view.info._repr_html_(),
                     live.snapshot()._repr_mimebundle_()["text/html"]]
        finally:
            live.close()
        with capture_output() as io:
            shell.run_cell("evil")
        pages += [o.data.get("text/html", "") for o in io.outputs]
        for page in pages:
            assert "<img" not in page.replace("<img class='bpfnb-live-plot'", "")
            assert "&lt;img src=x onerror=alert(1)&gt;" in page
    finally:
        shell.run_line_magic("bpf", "stop evil")
