"""scripts/run-notebooks saves outputs that two runs write alike: the pids of everything the
kernel made (seen by a real BPF program on sched_process_fork), the ids of the BPF objects it
held and the workload comm become numbered placeholders; data numbers stay."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import threading
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

import bpfnb
from bpfnb._sys import cgroupfs

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run-notebooks"


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("run_notebooks", str(SCRIPT))
    spec = importlib.util.spec_from_loader("run_notebooks", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


rn = load_script()
needs_tracepoints = pytest.mark.skipif(bpfnb.skip_reason("tracepoint") is not None,
                                       reason=str(bpfnb.skip_reason("tracepoint")))


def test_placeholders_number_by_first_appearance_and_keep_data_numbers():
    scrub = rn.Placeholders({7000: "PID", 9000: "PID", 8000: "PID", 3100: "MAP", 999: "BTF",
                             400: "PID"}, {5000: "PID"})
    assert scrub("kernel 5000 made 9000, then 7000 and 9000 again; map 3100") == \
        "kernel PID made PID1, then PID2 and PID1 again; map MAP1"
    assert scrub("<td>7000</td><td>8000</td>") == "<td>PID2</td><td>PID3</td>"
    assert scrub("{9000: 10, 7000: 20}") == "{PID1: 10, PID2: 20}"
    assert scrub("thread 8000.") == "thread PID3."          # a sentence's end, not a fraction
    assert scrub("pid 400") == "pid PID4"                    # pids are 300 or more
    # not whole numbers, not run-made, or a small id (data, more likely): left alone
    assert scrub("7000.5 1.7000 a7000 7000b 70000 700 _7000 7001 31000 999") == \
        "7000.5 1.7000 a7000 7000b 70000 700 _7000 7001 31000 999"


def test_placeholders_leave_data_uris_and_replace_words_and_times():
    scrub = rn.Placeholders({4242: "PID"}, {}, {"bpfnb-nb-abc": "bpfnb-nb-PID"})
    uri = "data:image/png;base64,AAAA+4242/4242=="
    assert scrub(f'<img src="{uri}"> pid 4242 <img src="{uri}">') == \
        f'<img src="{uri}"> pid PID1 <img src="{uri}">'
    assert scrub("comm bpfnb-nb-abc, not bpfnb-nb-abcd or xbpfnb-nb-abc") == \
        "comm bpfnb-nb-PID, not bpfnb-nb-abcd or xbpfnb-nb-abc"
    assert scrub("at 2026-11-30 11:35:25.727525 pid 4242") == \
        "at YYYY-MM-DD hh:mm:ss pid PID1"


def test_placeholders_number_monotonic_times_inside_the_window():
    scrub = rn.Placeholders({4242: "PID"}, window=(11_000_000_000_000, 12_000_000_000_000))
    assert scrub("ts 11500000000123 11500000000456 11500000000123 pid 4242") == \
        "ts TIME1 TIME2 TIME1 pid PID1"
    assert scrub("at 11500.000001 s, 11500.000001, then 11999.500000") == \
        "at TIME3 s, TIME3, then TIME4"
    # outside the window, not 6 decimals (trace_pipe's), not a number: left alone
    assert scrub("12000000000001 10999999999999 1.5 12000.1 11500.000001.2 11500.5") == \
        "12000000000001 10999999999999 1.5 12000.1 11500.000001.2 11500.5"


def test_placeholders_name_random_names_and_keep_element_ids_unique_per_notebook():
    one = rn.Placeholders({}, salt="00-tour")
    text = ("/tmp/bpfnb-nb-04-_u5xshm4/x /tmp/tmpab12cd_z /tmp/bpfnb-nb-04-_u5xshm4 "
            "/tmp/keep-this-name r1 = 0xffff8881bb497800 0xffff8881bb497800 0xffff8881")
    assert one(text) == ("/tmp/bpfnb-nb-04-TMP1/x /tmp/tmpTMP2 /tmp/bpfnb-nb-04-TMP1 "
                         "/tmp/keep-this-name r1 = KADDR1 KADDR1 0xffff8881")
    html = '<div id="bpfnb-flame-a5a91d84332f"></div><div id="bpfnb-flame-86402a60c332">' \
        '</div><script>get("bpfnb-flame-a5a91d84332f")</script>'
    first, second = re.findall(r"bpfnb-flame-(\w+)", one(html))[:2]
    assert one(html) == html.replace("a5a91d84332f", first).replace("86402a60c332", second)
    assert len({first, second}) == 2 and re.fullmatch(r"[0-9a-f]{12}", first)
    assert rn.Placeholders({}, salt="00-tour")(html) == one(html)    # the same every run
    assert first not in rn.Placeholders({}, salt="30-bpftrace")(html)


def test_subtree_follows_makers_and_nothing_else():
    dead = rn.DEAD
    made_by = {10: 1, 11: 10, 12: 11 | dead, 13: 12, 20: 2, 21: 20, 14: 10}
    assert rn.subtree(made_by, 10) == {10, 11, 12, 13, 14}
    assert rn.subtree(made_by, 20) == {20, 21}
    assert rn.subtree({5: 6, 6: 5}, 5) == {5, 6}          # a loop from pid reuse ends
    assert rn.subtree({}, 7) == {7}


def test_fdinfo_ids():
    text = "pos:\t0\nflags:\t02000002\nmap_type:\t1\nmap_id:\t4711\nmemlock:\t4096\n"
    assert rn.fdinfo_ids(text) == {4711: "MAP"}
    assert rn.fdinfo_ids("prog_type:\t5\nprog_id:\t99\n") == {99: "PROG"}
    assert rn.fdinfo_ids("btf_id:\t3\n") == {3: "BTF"}
    assert rn.fdinfo_ids("link_type:\tperf\nlink_id:\t8\nprog_tag:\tab\nprog_id:\t99\n") == \
        {8: "LINK", 99: "PROG"}
    assert rn.fdinfo_ids("pos:\t0\nflags:\t0100000\n") == {}


def test_new_numbers_says_when_a_cell_may_show_an_id():
    def cell(*texts: str, html: str = "") -> nbformat.NotebookNode:
        outs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in texts]
        outs.append(nbformat.v4.new_output("execute_result", {"text/html": html}))
        return nbformat.v4.new_code_cell(outputs=outs)
    assert rn.new_numbers(cell("id 4711"), set())
    assert rn.new_numbers(cell("", html="<td>4711</td>"), {4242})
    assert not rn.new_numbers(cell("pid 4242, 999 calls, 1.5 s, 1234.5, a1234"), {4242})
    assert not rn.new_numbers(nbformat.v4.new_code_cell(), set())


SOURCE = """BPF_HASH(h, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }"""


@needs_tracepoints
def test_held_ids_are_this_process_maps_and_programs():
    with bpfnb.load(SOURCE, name="held") as prog:
        map_id = prog["h"].info.id
        ids = rn.held_ids({os.getpid()})
        assert ids[map_id] == "MAP"
        assert list(ids.values()).count("PROG") >= 1
    assert map_id not in rn.held_ids({os.getpid()})
    assert rn.held_ids({2 ** 22 + 1}) == {}   # above pid_max: no such process


@needs_tracepoints
def test_tracker_sees_children_grandchildren_threads_and_cgroups_only():
    cgroup = Path(cgroupfs.require_root()) / f"bpfnb-test-run-notebooks-{os.getpid()}"
    with rn.track() as prog:
        tracker = rn.Tracker(prog)
        shell = subprocess.run(["sh", "-c", f"sleep 0 & mkdir {cgroup}; echo $! $$; wait"],
                               check=True, capture_output=True, text=True)
        grandchild, child = map(int, shell.stdout.split())
        try:
            cgroup_id = cgroup.stat().st_ino
        finally:
            cgroup.rmdir()
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        made_by = tracker.made_by()
        cgroups = prog["nb_cgroups"].df()
        kinds = tracker.placeholders(child, "bpfnb-nb-zz", (0, 0), "salt").kinds
    assert cgroup_id in cgroups["key"].tolist()
    mkdir = cgroups.loc[cgroups.key == cgroup_id, "value"].item()
    assert made_by[mkdir] & ~rn.DEAD == child
    assert made_by[child] & ~rn.DEAD == os.getpid() and made_by[child] & rn.DEAD
    assert made_by[grandchild] & ~rn.DEAD == child
    assert made_by[thread.native_id] & ~rn.DEAD == os.getpid()
    assert rn.subtree(made_by, child) == {child, grandchild, mkdir}
    assert rn.subtree(made_by, os.getpid()) == {os.getpid(), *made_by}   # no stranger
    # the placeholders of a notebook run in `child`: its tree, the script, its cgroup
    assert {n for n, k in kinds.items() if k == "PID"} == {child, grandchild, mkdir, os.getpid()}
    assert kinds[cgroup_id] == "CGROUP"


CELLS = [
    """import os, subprocess, threading, time
child = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
t = threading.Thread(target=lambda: None)
t.start(); t.join()
print("kernel", os.getpid(), "child", child, "thread", t.native_id, "child", child, "7")
print(time.monotonic_ns(), f"{time.monotonic():.6f}", 1.5)""",
    f"""import bpfnb
from bpfnb.testing.workload import WORKLOAD_COMM
prog = bpfnb.load('''{SOURCE}''')
print(prog["h"].info.id, WORKLOAD_COMM)
{{"child": int(child)}}""",
    "prog.close()",
]


@needs_tracepoints
def test_run_saves_a_notebook_with_placeholders(tmp_path):
    path = tmp_path / "99-scrub.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nbformat.write(nb, path)
    assert rn.run(path, record=False)
    saved = nbformat.read(path, as_version=4)
    outs = [c.outputs for c in saved.cells]
    assert outs[0][0]["text"] == "kernel PID child PID1 thread PID2 child PID1 7\n" \
        "TIME1 TIME2 1.5\n"
    assert re.fullmatch(r"(MAP1|\d{1,3}) bpfnb-nb-PID\n", outs[1][0]["text"])  # ids < 1000 stay
    assert outs[1][1]["data"]["text/plain"] == "{'child': PID1}"
    assert [c.execution_count for c in saved.cells] == [1, 2, 3]
