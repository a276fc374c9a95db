"""bpfnb.fleet on a real local ipyparallel cluster: 3 engines (root, this venv), each in its
own UTS namespace with its own hostname, so the host labels differ. Engines on one machine
share one kernel: every host's program sees every host's workload, so host h's row for
engine i's workload pid holds N_i on every h, and summing across hosts gives 3 * N_i."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import bpfnb
from bpfnb.fleet import HostError, engine
from bpfnb.testing import hosts
from bpfnb.testing.workload import COMM_FILTER, comm_cflags

ipp = pytest.importorskip("ipyparallel", reason="pip install 'bpfnb[test]' (ipyparallel)")
pytestmark = pytest.mark.slow

COMM = "bpfnb-fleet"
N = {0: 1_100, 1: 2_300, 2: 3_700}     # engine id -> getpid calls its workload makes
SOURCE = """
enum kind { KIND_NONE = 0, KIND_GETPID = 7 };
struct proc_t { u32 pid; enum kind kind; char comm[16]; };
BPF_HASH(counts, u32, u64);
BPF_HISTOGRAM(dist, int, 64);
BPF_HASH(by_proc, struct proc_t, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    counts.increment(pid);
    dist.increment(bpf_log2l(pid));
    struct proc_t p = {.pid = pid, .kind = KIND_GETPID};
    bpf_get_current_comm(&p.comm, sizeof(p.comm));
    by_proc.increment(p);
    return 0;
}
""".replace("COMM_FILTER", COMM_FILTER)


@pytest.fixture(scope="module")
def cluster():
    reason = bpfnb.skip_reason("tracepoint")
    if reason:
        pytest.skip(reason)
    cluster = hosts.LocalCluster(3, prefix="fleet-host-")
    with cluster as rc:
        yield rc
    assert len(cluster.pids) >= 3 and not cluster.alive, "engines outlived the cluster"


@pytest.fixture(scope="module")
def fleet(cluster):
    return bpfnb.fleet(cluster, timeout=30)


@pytest.fixture(scope="module")
def loaded(fleet):
    fp = fleet.load(SOURCE, name="fleetcount", cflags=comm_cflags(COMM))
    pids = fleet.run(hosts.getpid_workload, {f"fleet-host-{i}": n for i, n in N.items()}, COMM)
    yield fp, {f"fleet-host-{i}": pids[f"fleet-host-{i}"] for i in N}
    fp.close()


def test_hosts_are_labelled_by_hostname(fleet) -> None:
    hosts = fleet.hosts
    assert list(hosts["host"]) == ["fleet-host-0", "fleet-host-1", "fleet-host-2"]
    assert list(hosts["engine"]) == [0, 1, 2]
    assert set(hosts["kernel"]) == {os.uname().release}
    assert set(hosts["bpfnb"]) == {bpfnb.__version__}
    assert hosts["ok"].all()


def test_a_direct_view_is_a_fleet_of_its_engines(cluster) -> None:
    some = bpfnb.fleet(cluster[[0, 2]])
    assert list(some.hosts["host"]) == ["fleet-host-0", "fleet-host-2"]
    assert list(some.run(os.getpid)) == ["fleet-host-0", "fleet-host-2"]


def test_load_status_and_merged_df(loaded) -> None:
    fp, pids = loaded
    status = fp.status
    assert list(status["host"]) == list(pids) and status["ok"].all()
    assert (status["error"] == "").all()
    df = fp["counts"].df()
    assert list(df.columns) == ["host", "key", "value"]
    assert df["value"].dtype == np.uint64
    for host in pids:               # every host sees every workload: one kernel
        for i, other in enumerate(pids):
            got = df[(df["host"] == host) & (df["key"] == pids[other])]["value"]
            assert got.tolist() == [N[i]], (host, other)
    summed = fp["counts"].df(by_host=False)
    assert list(summed.columns) == ["key", "value"]
    for i, host in enumerate(pids):
        assert summed[summed["key"] == pids[host]]["value"].tolist() == [3 * N[i]]


def test_struct_keys_keep_their_fields_enums_and_strings(loaded) -> None:
    fp, pids = loaded
    df = fp["by_proc"].df()
    assert list(df.columns) == ["host", "pid", "kind", "comm", "value"]
    assert set(df["kind"].astype(str)) == {"KIND_GETPID"} and set(df["comm"]) == {COMM}
    for i, other in enumerate(pids):
        rows = df[df["pid"] == pids[other]]
        assert sorted(rows["host"]) == sorted(pids) and set(rows["value"]) == {N[i]}


def test_top_n_is_ranked_on_each_host(loaded) -> None:
    fp, pids = loaded
    top = fp["counts"].df(top=1)
    assert sorted(top["host"]) == sorted(pids)
    assert set(top["key"]) == {pids["fleet-host-2"]} and set(top["value"]) == {N[2]}
    assert top.attrs["entries"] == 9      # keys on all hosts; 3 travelled
    assert fp["counts"].status["entries"].tolist() == [3, 3, 3]


def test_hist_merge_is_the_sum_of_host_histograms(loaded) -> None:
    fp, pids = loaded
    per_host = fp["dist"].hist(by_host=True)
    merged = fp["dist"].hist()
    assert set(per_host["host"]) == set(pids)
    expect = per_host.groupby(["low", "high"], as_index=False)["count"].sum()
    assert merged[["low", "high"]].values.tolist() == expect[["low", "high"]].values.tolist()
    assert merged["count"].astype(int).tolist() == expect["count"].astype(int).tolist()
    assert int(merged["count"].sum()) == 3 * sum(N.values())
    one = per_host[per_host["host"] == "fleet-host-0"]
    assert int(one["count"].sum()) == sum(N.values())
    p = merged.bpf.percentiles([50])
    assert np.isfinite(p[50.0])


def test_recording_keeps_the_host_column(loaded, tmp_path) -> None:
    fp, _ = loaded
    bpfnb.record(fp, tmp_path / "fleet.zip", count=1)
    replayed = bpfnb.replay(tmp_path / "fleet.zip")
    df = replayed["counts"].df()
    live = fp["counts"].df()
    key = ["host", "key"]
    assert df.sort_values(key)[[*key, "value"]].values.tolist() == \
        live.sort_values(key)[[*key, "value"]].values.tolist()


def test_live_view_ranks_on_hosts_and_shows_each_host(loaded) -> None:
    fp, pids = loaded
    view = fp["counts"].live(every=0.2, top=2, start=False)
    try:
        frame = view.frame()
        assert sorted(frame["host"].unique()) == sorted(pids)
        assert len(frame) == 6          # each host sent its top 2 of 3 keys
        assert set(frame["key"]) == {pids["fleet-host-1"], pids["fleet-host-2"]}
        assert all(f"✓ {h}" in view._status.value for h in pids)
        view.every = 0.1
        view.start()                  # refreshes from its thread while this one reads too
        for _ in range(10):
            assert len(fp["counts"].df()) == 9
        time.sleep(0.5)
        assert view.status.refreshes >= 3 and view.status.errors == 0
    finally:
        view.close()


EVENTS = """
struct event { u32 pid; u32 seq; };
BPF_RINGBUF_OUTPUT(events, 64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    struct event e = {.pid = bpf_get_current_pid_tgid() >> 32, .seq = 0};
    events.ringbuf_output(&e, sizeof(e), 0);
    return 0;
}
""".replace("COMM_FILTER", COMM_FILTER)


def test_events_merge_with_a_host_column(fleet) -> None:
    fp = fleet.load(EVENTS, name="fleetevents", cflags=comm_cflags("bpfnb-fleet-ev"))
    try:
        n = {f"fleet-host-{i}": v // 10 for i, v in N.items()}
        pids = fleet.run(hosts.getpid_workload, n, "bpfnb-fleet-ev")
        df = fp.events(duration=0.5)
        assert df.columns[0] == "host"
        got = df.groupby(["host", "pid"]).size().to_dict()
        assert got == {(h, pids[o]): n[o] for h in n for o in n}
    finally:
        fp.close()


def test_profile_has_the_host_as_root(fleet) -> None:
    stacks = fleet.profile(duration=1, hz=49)
    assert stacks.hosts == ["fleet-host-0", "fleet-host-1", "fleet-host-2"]
    assert set(stacks.df()["comm"]) <= set(stacks.hosts)
    assert stacks.total == sum(stacks.host(h).total for h in stacks.hosts)
    assert stacks.status["ok"].all()


def test_run_keys_results_by_host(fleet) -> None:
    got = fleet.run(os.getpid)
    assert list(got) == list(fleet.hosts["host"])
    assert [got[h] for h in got] == list(fleet.hosts["pid"])


def test_close_leaves_nothing_attached(fleet) -> None:
    before = fleet.run(hosts.holding)
    fp = fleet.load(SOURCE, name="fleetclose", cflags=comm_cflags(COMM))
    during = fleet.run(hosts.holding)
    assert all(during[h] == before[h] + 1 for h in before), (before, during)
    assert all("fleetclose" in names for names in fleet.run(engine.held).values())
    closed = fp.close()
    assert closed["ok"].all()
    assert fleet.run(hosts.holding) == before
    assert all("fleetclose" not in names for names in fleet.run(engine.held).values())
    with pytest.raises(bpfnb.ProgramClosedError):
        fp["counts"].df()


def test_doctor_has_a_host_column(fleet) -> None:
    df = fleet.doctor()
    assert df.columns[0] == "host" and set(df["host"]) == set(fleet.hosts["host"])
    assert df.attrs["failed"] == {}
    per_host = df.groupby("host").size()
    assert per_host.nunique() == 1 and per_host.iloc[0] > 5


def test_reloading_a_name_replaces_it(fleet) -> None:
    first = fleet.load(SOURCE, name="fleetagain", cflags=comm_cflags(COMM))
    second = fleet.load(SOURCE, name="fleetagain", cflags=comm_cflags(COMM))
    try:
        assert first.closed and not second.closed
        held = fleet.run(engine.held)
        assert all(names.count("fleetagain") == 1 for names in held.values()), held
    finally:
        second.close()


def test_hung_engine_times_out_and_recovers(fleet, loaded, cluster) -> None:
    fp, pids = loaded
    busy = cluster[2].apply_async(time.sleep, 6)        # engine 2 answers nothing for 6 s
    saved, fp.timeout = fp.timeout, 1.5
    try:
        start = time.monotonic()
        df = fp["counts"].df()
        assert time.monotonic() - start < 5
        status = fp.status.set_index("host")
        assert not status.loc["fleet-host-2", "ok"]
        assert "no answer within 1.5 s" in status.loc["fleet-host-2", "error"]
        assert sorted(set(df["host"])) == ["fleet-host-0", "fleet-host-1"]
        busy.get(30)
        fp.timeout = saved
        df = fp["counts"].df()
        assert fp.status["ok"].all() and sorted(set(df["host"])) == sorted(pids)
    finally:
        fp.timeout = saved


def test_killed_engine_fails_alone(fleet, loaded) -> None:   # last: it kills an engine
    fp, pids = loaded
    victim = fleet.hosts.iloc[1]
    os.kill(int(victim["pid"]), signal.SIGKILL)
    start = time.monotonic()
    df = fp["counts"].df()
    assert time.monotonic() - start < 35
    status = fp.status.set_index("host")
    assert not status.loc["fleet-host-1", "ok"] and status.loc["fleet-host-1", "error"]
    assert status.loc["fleet-host-0", "ok"] and status.loc["fleet-host-2", "ok"]
    assert sorted(set(df["host"])) == ["fleet-host-0", "fleet-host-2"]
    got = df[(df["host"] == "fleet-host-0") & (df["key"] == pids["fleet-host-2"])]["value"]
    assert got.tolist() == [N[2]]
    closed = fp.close(timeout=10)
    assert closed.set_index("host")["ok"].to_dict() == {
        "fleet-host-0": True, "fleet-host-1": False, "fleet-host-2": True}
    alive = {h: v for h, v in fleet.run(hosts.holding, timeout=10).items()
             if not isinstance(v, bpfnb.BpfnbError)}
    assert alive == {"fleet-host-0": 0, "fleet-host-2": 0}
    partial = fleet.load(SOURCE, name="fleetpartial", cflags=comm_cflags(COMM), timeout=10)
    assert partial.status.set_index("host")["ok"].to_dict() == {
        "fleet-host-0": True, "fleet-host-1": False, "fleet-host-2": True}
    partial.close()
    with pytest.raises(HostError, match="fleet-host-1"):
        fleet.load(SOURCE, name="fleetstrict", cflags=comm_cflags(COMM), strict=True,
                   timeout=10)
    assert all(names == [] for names in fleet.run(engine.held, timeout=10).values()
               if isinstance(names, list))


def test_a_stopped_cluster_never_hangs_the_notebook() -> None:
    cluster = hosts.LocalCluster(1, prefix="gone-")
    with cluster as rc:
        fleet = bpfnb.fleet(rc, timeout=3)        # what reads and closes wait per host
        fp = fleet.load(SOURCE, name="fleetgone", cflags=comm_cflags(COMM))
    assert not cluster.alive
    start = time.monotonic()
    df = fp["counts"].df()
    closed = fp.close(timeout=2)
    assert time.monotonic() - start < 10          # 3 s for the read, 2 s for the close
    assert len(df) == 0 and not fp.status["ok"].any()
    assert closed["ok"].tolist() == [False]
