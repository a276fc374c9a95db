"""Stacks without BPF: from arrays and folded text, exports, diff, pictures."""

from __future__ import annotations

import base64
import errno
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bpfnb.errors import ReplayError
from bpfnb.profiler.flametree import FlameTree
from bpfnb.profiler.stacks import StackDiff, Stacks, missing_frame
from bpfnb.render import flame

FOLDED = """\
bash;main [bash];read [libc.so.6];entry_SYSCALL_64;do_syscall_64;ksys_read 5
callchain;main [callchain];a [callchain];b [callchain];c [callchain] 30
callchain;main [callchain];s [callchain];entry_SYSCALL_64;do_syscall_64;ksys_read 7
callchain;main [callchain];x [callchain];y [callchain] 10
swapper/0;secondary_startup_64;cpu_startup_entry;do_idle;default_idle 20
"""


class FakeSymbolizer:
    """Names every address by itself and counts the calls (one batch per kind and pid)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None, int]] = []

    def resolve_kernel(self, addrs: np.ndarray) -> list[str]:
        self.calls.append(("kernel", None, len(addrs)))
        return [f"k{int(a):x}" for a in addrs]

    def resolve_user(self, pid: int, addrs: np.ndarray) -> list[str]:
        self.calls.append(("user", pid, len(addrs)))
        return [f"u{int(a):x} [m{pid}]" for a in addrs]

    def resolve_users(self, addrs_by_pid: dict[int, np.ndarray]) -> dict[int, list[str]]:
        return {pid: self.resolve_user(pid, a) for pid, a in addrs_by_pid.items()}


def _arrays(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(
        pid=np.array([10, 10, 20, 10, 30]),
        comm=[b"app\0\0", b"app", "other", b"app", b"kworker/0:1"],
        user_stack_id=np.array([1, 1, 1, 2, -errno.EFAULT]),
        kernel_stack_id=np.array([-errno.EFAULT, 5, -errno.EFAULT, -errno.EEXIST, 5]),
        count=np.array([3, 2, 4, 1, 6]),
        stacks={1: np.array([0x13, 0x12, 0x11, 0, 0], np.uint64),  # leaf first, zero padded
                2: np.array([0x22, 0x21], np.uint64),
                5: np.array([0xF2, 0xF1, 0], np.uint64)},
    )
    data.update(over)
    return data


def _row(df: pd.DataFrame, key: str, *columns: str) -> list[Any]:
    return [df.at[key, c] for c in columns]


def _build(**over: Any) -> tuple[Stacks, FakeSymbolizer]:
    sym = FakeSymbolizer()
    d = _arrays(**over)
    return Stacks.from_arrays(d["pid"], d["comm"], d["user_stack_id"], d["kernel_stack_id"],
                              d["count"], d["stacks"], sym), sym  # type: ignore[arg-type]


def test_from_arrays_frames_root_first_user_then_kernel() -> None:
    s, _ = _build()
    df = s.df()
    rows = {(p, tuple(f)): (c, k) for p, f, c, k in
            zip(df["pid"], df["frames"], df["count"], df["kernel_frames"])}
    assert rows == {
        (10, ("u11 [m10]", "u12 [m10]", "u13 [m10]")): (3, 0),
        (10, ("u11 [m10]", "u12 [m10]", "u13 [m10]", "kf1", "kf2")): (2, 2),
        (20, ("u11 [m20]", "u12 [m20]", "u13 [m20]")): (4, 0),
        (10, ("u21 [m10]", "u22 [m10]", "[missing kernel stack: EEXIST]")): (1, 1),
        (30, ("kf1", "kf2")): (6, 2),
    }
    assert s.total == 16
    assert set(s.df()["comm"]) == {"app", "other", "kworker/0:1"}


def test_from_arrays_resolves_in_batches() -> None:
    _, sym = _build()
    kinds = sorted((k, p) for k, p, _ in sym.calls)
    assert kinds == [("kernel", None), ("user", 10), ("user", 20)]
    # the same stack id in two processes is resolved in each process's address space
    assert ("user", 20, 3) in sym.calls


def test_stack_map_as_arrays_matches_dict() -> None:
    d = _arrays()
    ids = np.array(sorted(d["stacks"]))
    table = np.zeros((len(ids), 6), np.uint64)
    for row, i in enumerate(ids):
        table[row, : len(d["stacks"][i])] = d["stacks"][i]
    a, _ = _build()
    b, _ = _build(stacks=(ids, table))
    assert a.folded() == b.folded()


def test_missing_stacks_are_counted() -> None:
    s, _ = _build(user_stack_id=np.array([-errno.EEXIST, 1, 7, -errno.ENOMEM, -errno.EFAULT]),
                  kernel_stack_id=np.array([-errno.EFAULT, 99, -errno.EFAULT, 5, -errno.EFAULT]))
    df = s.df()
    frames = {tuple(f): c for f, c in zip(df["frames"], df["count"])}
    assert frames[("[missing user stack: EEXIST]",)] == 3
    # stack id 99 is not in the stack map; 7 neither
    assert frames[("u11 [m10]", "u12 [m10]", "u13 [m10]", "[missing kernel stack: ENOENT]")] == 2
    assert frames[("[missing user stack: ENOENT]",)] == 4
    assert frames[("[missing user stack: ENOMEM]", "kf1", "kf2")] == 1
    # no stack of either kind: both reasons shown rather than an empty stack
    assert frames[("[missing user stack: EFAULT]", "[missing kernel stack: EFAULT]")] == 6
    assert s.total == 16
    assert missing_frame("user", -errno.EEXIST) == "[missing user stack: EEXIST]"


def test_only_one_kind_collected() -> None:
    s, sym = _build(kernel_stack_id=None)
    assert all(k == "user" for k, _, _ in sym.calls)
    assert s.total == 16
    assert ("[missing user stack: EFAULT]",) not in {tuple(f) for f in s.df()["frames"]}


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="same length"):
        _build(count=np.array([1, 2]))


def test_folded_round_trip_exact() -> None:
    assert Stacks.from_folded(FOLDED).folded(modules=True) == FOLDED
    marked = "perl;main;read_[k];vfs_read_[k] 3\nperl;main;work 2\n"
    s = Stacks.from_folded(marked)
    assert s.folded(annotations=True) == marked
    assert s.folded() == "perl;main;read;vfs_read 3\nperl;main;work 2\n"
    assert s.kernel_user_split()["samples"].tolist() == [2, 3]


def test_folded_convention_plain_names() -> None:
    s = Stacks.from_folded(FOLDED)
    assert s.folded().splitlines()[1] == "callchain;main;a;b;c 30"
    assert s.folded(annotations=True).splitlines()[0] == (
        "bash;main;read;entry_SYSCALL_64_[k];do_syscall_64_[k];ksys_read_[k] 5")
    df = pd.DataFrame({"pid": [7, 7], "comm": ["app", "app"], "kernel_frames": [1, 0],
                       "frames": [["main [app]", "[unknown] 0x1f [libfoo.so]",
                                   "[unknown] 0xffffffff81000000"],
                                  ["main [app]", "operator[] [libc++.so]", "[unknown] 0x9"]],
                       "count": [2, 3]})
    assert Stacks(df).folded() == ("app;main;[libfoo.so];[unknown] 2\n"
                                   "app;main;operator[];[unknown] 3\n")
    bcc_d = Stacks.from_folded("a;main;read;-;ksys_read;vfs_read 4\n")  # bcc profile -d
    assert bcc_d.df()["kernel_frames"].tolist() == [2]
    assert bcc_d.folded(annotations=True) == "a;main;read;ksys_read_[k];vfs_read_[k] 4\n"
    plain = Stacks.from_folded("a;main;work 1\n")  # no modules, no marks: user frames
    assert plain.kernel_user_split()["samples"].tolist() == [1, 0]


def test_folded_merges_and_sorts() -> None:
    s = Stacks.from_folded("b;x 1\na;y 2\nb;x 3\n\n")
    assert s.folded() == "a;y 2\nb;x 4\n"
    assert Stacks.from_folded(s.folded()).folded() == s.folded()
    with pytest.raises(ValueError, match="line 2"):
        Stacks.from_folded("a;b 1\na;b x\n")


def test_folded_sums_processes_with_the_same_comm() -> None:
    df = pd.DataFrame({"pid": [1, 2, 1], "comm": ["w", "w", "w"],
                       "frames": [["f [m]"], ["f [m]"], ["f [m]"]], "count": [1, 2, 3]})
    s = Stacks(df)
    assert len(s) == 2 and s.folded(modules=True) == "w;f [m] 6\n" and s.folded() == "w;f 6\n"
    assert s.by_process()[["pid", "samples"]].values.tolist() == [[1, 4], [2, 2]]
    with pytest.raises(ValueError, match="missing"):
        Stacks(df.drop(columns="count"))


def test_df_shape() -> None:
    s = Stacks.from_folded(FOLDED, name="run")
    df = s.df()
    assert list(df.columns) == ["pid", "comm", "frames", "kernel_frames", "count"]
    assert df["count"].tolist() == sorted(df["count"], reverse=True)
    assert isinstance(df["frames"][0], list)
    assert df.attrs["total"] == 72 and df.attrs["name"] == "run"
    assert df.loc[df["comm"] == "swapper/0", "kernel_frames"].item() == 4
    assert df.loc[df["comm"] == "bash", "kernel_frames"].item() == 3


def test_by_process_and_kernel_user_split() -> None:
    s = Stacks.from_folded(FOLDED)
    bp = s.by_process()
    assert bp["comm"].tolist() == ["callchain", "swapper/0", "bash"]
    assert bp["samples"].tolist() == [47, 20, 5]
    assert bp["stacks"].tolist() == [3, 1, 1]
    assert bp["percent"].sum() == pytest.approx(100)
    assert bp["kernel_percent"].tolist() == pytest.approx([100 * 7 / 47, 100, 100])
    split = s.kernel_user_split()
    assert split.loc["user", "samples"] == 40 and split.loc["kernel", "samples"] == 32
    per = s.kernel_user_split(per_process=True)
    assert _row(per.set_index("comm"), "callchain", "user", "kernel") == [40, 7]


def test_functions() -> None:
    f = Stacks.from_folded(FOLDED).functions().set_index("frame")
    assert f.loc["c [callchain]", "self"] == 30
    assert f.loc["main [callchain]", "total"] == 47 and f.loc["main [callchain]", "self"] == 0
    assert f.loc["ksys_read", "total"] == 12


def test_speedscope_schema() -> None:
    s = Stacks.from_folded(FOLDED, name="test run")
    doc = s.speedscope()
    json.dumps(doc)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert len(names) == len(set(names))
    (prof,) = doc["profiles"]
    assert prof["type"] == "sampled" and prof["unit"] == "none" and prof["name"] == "test run"
    assert len(prof["samples"]) == len(prof["weights"]) == 5
    assert all(w > 0 and isinstance(w, int) for w in prof["weights"])
    assert prof["startValue"] == 0 and prof["endValue"] == sum(prof["weights"]) == 72
    assert all(0 <= i < len(names) for st in prof["samples"] for i in st)
    stacks = {";".join(names[i] for i in st): w for st, w in zip(prof["samples"],
                                                                  prof["weights"])}
    assert stacks["callchain;main [callchain];x [callchain];y [callchain]"] == 10  # root first
    per = s.speedscope(per_process=True)
    assert sorted(p["name"] for p in per["profiles"]) == ["bash (-1)", "callchain (-1)",
                                                          "swapper/0 (-1)"]


def test_diff_arithmetic() -> None:
    before = Stacks.from_folded("p;main;a 30\np;main;b 10\n")
    after = Stacks.from_folded("p;main;a 10\np;main;b 20\np;main;c 10\n")
    d = before.diff(after)
    assert isinstance(d, StackDiff)
    df = d.df().set_index("stack")
    assert _row(df, "p;main;a", "before", "after", "delta") == [30, 10, -20]
    assert _row(df, "p;main;c", "before", "after", "delta") == [0, 10, 10]
    assert df.loc["p;main;a", "delta_percent"] == pytest.approx(25 - 75)
    assert df.loc["p;main;b", "delta_percent"] == pytest.approx(50 - 25)
    assert df["delta_percent"].sum() == pytest.approx(0)
    assert d.df().index.size == 3 and d.df()["stack"][0] == "p;main;a"  # biggest change first
    fn = d.df("function").set_index("function")
    assert _row(fn, "main", "before", "after", "delta_percent") == [40, 40, 0]
    tree = d.flame_tree()
    assert tree.value[0].tolist() == [40, 40]  # before scaled to after's total
    a = next(i for i in range(len(tree)) if tree.label(i) == "a")
    assert tree.value[a].tolist() == [10, 30]
    colors = flame.diff_colors(tree.value[:, 0], tree.value[:, 1])
    assert colors[a][2] > colors[a][0]  # a shrank: blue
    b = next(i for i in range(len(tree)) if tree.label(i) == "b")
    assert colors[b][0] > colors[b][2]  # b grew: red
    with pytest.raises(ValueError):
        d.df("bogus")


def test_flame_tree_layout() -> None:
    t = FlameTree.build([("p", "m", "a"), ("p", "m"), ("p", "m", "b"), ("q",)],
                              np.array([3, 1, 2, 4]))
    rows = [(t.label(i), int(t.depth[i]), t.start[i], t.value[i, 0], t.self_value[i, 0])
            for i in range(len(t))]
    assert rows == [("all", 0, 0, 10, 0), ("p", 1, 0, 6, 0), ("m", 2, 0, 6, 1),
                    ("a", 3, 1, 3, 3), ("b", 3, 4, 2, 2), ("q", 1, 6, 4, 4)]
    assert t.matches("A").tolist() == [True, False, False, True, False, False]


def test_plot_flame_and_icicle() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = Stacks.from_folded(FOLDED)
    ax = s.plot_flame()
    assert ax.get_ylim()[0] < ax.get_ylim()[1]
    assert len(ax.collections[0].get_paths()) == len(s.flame_tree())
    assert any(t.get_text() == "c [callchain]" for t in ax.texts)
    _, ax2 = plt.subplots()
    assert s.plot_flame(icicle=True, ax=ax2) is ax2
    assert ax2.get_ylim()[0] > ax2.get_ylim()[1]
    assert s.diff(s).plot_flame().collections
    plt.close("all")


def test_notebook_display() -> None:
    s = Stacks.from_folded(FOLDED.replace("default_idle", "idle</script><b>&amp;"))
    bundle = s._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", "image/png"}
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    html = bundle["text/html"]
    assert "</script><b>" not in html  # frame names cannot break out of the script
    assert "://" not in html and "<script src" not in html  # nothing fetched from the network
    assert 'src="data:image/png;base64,' in html  # static fallback where scripts do not run
    assert "72 samples" in bundle["text/plain"] and "c [callchain]" in bundle["text/plain"]
    d = s.diff(Stacks.from_folded(FOLDED))._repr_mimebundle_()
    assert '"diff":true' in d["text/html"] and "StackDiff" in d["text/plain"]
    assert s._repr_html_().count("<canvas") == 1


@pytest.mark.slow
def test_interactive_view_in_a_browser(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("no /usr/bin/chromium to render the HTML view")
    page_file = tmp_path / "flame.html"
    page_file.write_text("<html><body>" + Stacks.from_folded(FOLDED).to_html(static=False)
                         + "</body></html>")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium),
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 400})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            box = page.locator("canvas").bounding_box()
            assert box is not None and box["height"] == 17 * 7  # depth 6 + root row
            # third row from the bottom: main [callchain], 47 of 72 samples, from x=5
            x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] - 17 * 2.5
            page.mouse.move(x, y)
            tip = page.locator(".bpfnb-tip").inner_text()
            assert "main [callchain]" in tip and "47 samples (65.28% of all)" in tip
            page.mouse.click(x, y)
            assert page.locator(".bpfnb-info").inner_text() == "zoomed: main [callchain]"
            page.fill("input[type=search]", "ksys")
            assert page.locator(".bpfnb-info").inner_text() == (
                "matched 2 frames, 12 samples (16.67%)")
            assert not errors
        finally:
            browser.close()


def test_flame_html_from_package_data_files() -> None:
    from importlib import resources

    static = resources.files("bpfnb.render").joinpath("static")
    js, css = (static.joinpath(n).read_text() for n in ("flame.js", "flame.css"))
    page = Stacks.from_folded("p;main;__IMG__;__JS__ 3\n").to_html(static=False)
    uid = re.search(r'id="(bpfnb-flame-[0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    assert js.replace("__UID__", uid) in page and css in page
    assert '"__IMG__"' in page and '"__JS__"' in page  # frame names are data, not placeholders
    assert page.count("<script>") == 1


def test_unit_and_rate_survive_save_load(tmp_path: Path) -> None:
    s = Stacks.from_folded("p;main;read 1500\n", unit="us")
    s.hz = 0
    back = Stacks.load(s.save(tmp_path / "off.bpfstacks"))
    assert (back.unit, back.hz, back.folded()) == ("us", 0, s.folded())
    assert "0.002 s off CPU" in back._title()
    on = Stacks.from_folded("p;main 3\n")
    on.hz = 99
    assert Stacks.load(on.save(tmp_path / "on.bpfstacks")).hz == 99


def test_info_and_mappings_survive_save_load(tmp_path: Path) -> None:
    """What profile()/offcpu() note (exit status, command, ...) and the modules' files come
    back; entries JSON cannot hold as they are are left out, not changed."""
    s = Stacks.from_folded("p;main;read 1500\n", unit="ms")
    s.info = {"exit_status": 0, "cpu_time": 0.25, "command": ["sleep", "1"],
              "interrupted": False, "pair": (1, 2), "obj": object()}
    s.mappings = {"libc.so.6": ("/usr/lib/x86_64-linux-gnu/libc.so.6", "ab12")}
    back = Stacks.load(s.save(tmp_path / "s.bpfstacks"))
    assert back.unit == "ms" and back.mappings == s.mappings
    assert back.info == {"exit_status": 0, "cpu_time": 0.25, "command": ["sleep", "1"],
                         "interrupted": False}


@pytest.mark.parametrize("meta", [{"unit": ""}, {"unit": "x\n"}, {"hz": -1}, {"hz": "9"},
                                  {"info": []}, {"info": "text"},
                                  {"mappings": {"m": ["p"]}}, {"mappings": {"m": [1, "b"]}}])
def test_bad_saved_attributes_are_replay_errors(tmp_path: Path, meta: dict[str, Any]) -> None:
    path = Stacks.from_folded("p;main 3\n").save(tmp_path / "s.bpfstacks")
    with zipfile.ZipFile(path) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    saved = json.loads(files["meta.json"])
    files["meta.json"] = json.dumps({**saved, **meta}).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    with pytest.raises(ReplayError):
        Stacks.load(path)


def test_pprof_sample_types_functions_and_mappings(tmp_path: Path) -> None:
    from bpfnb.profiler import pprof

    on = Stacks.from_folded(FOLDED)
    on.hz = 100
    prof = pprof.decode(on.pprof(tmp_path / "cpu.pb.gz").read_bytes())
    st = list(prof.string_table)
    assert [(st[t.type], st[t.unit]) for t in prof.sample_type] == [
        ("samples", "count"), ("cpu", "nanoseconds")]
    assert prof.period == 10_000_000 and st[prof.period_type.type] == "cpu"
    fn = {f.id: st[f.name] for f in prof.function}
    loc = {x.id: (fn[x.line[0].function_id], x.mapping_id) for x in prof.location}
    maps = {m.id: st[m.filename] for m in prof.mapping}
    chains = {}
    for smp in prof.sample:
        names = tuple(loc[i][0] for i in reversed(smp.location_id))
        labels = {st[lb.key]: st[lb.str] for lb in smp.label}
        chains[(labels["comm"], names)] = list(smp.value)
    assert chains[("callchain", ("main", "a", "b", "c"))] == [30, 300_000_000]
    assert chains[("bash", ("main", "read", "entry_SYSCALL_64", "do_syscall_64",
                            "ksys_read"))] == [5, 50_000_000]
    mapping_of = {name: maps.get(m, "") for name, m in loc.values()}
    assert mapping_of["read"] == "libc.so.6" and mapping_of["ksys_read"] == "[kernel.kallsyms]"
    off = Stacks.from_folded("p;main;sleep 2500\n", unit="us")
    prof = pprof.decode(off.pprof(tmp_path / "off.pb.gz").read_bytes())
    st = list(prof.string_table)
    assert [(st[t.type], st[t.unit]) for t in prof.sample_type] == [("off_cpu", "nanoseconds")]
    assert [list(s.value) for s in prof.sample] == [[2_500_000]]
