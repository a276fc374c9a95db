"""Generate notebooks/00-tour.ipynb (kept as code so the tour stays reviewable)."""

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s))  # noqa: E731

md("""# bpfnb tour

Write BCC C in a `%%bpf NAME` cell: bpfnb compiles it, loads it into the kernel, attaches its
probes and binds `NAME` to a `Program`. Every map is then one call away from a typed pandas
DataFrame.""")
code("%load_ext bpfnb\nimport ctypes, os\nimport bpfnb")
md("""## A program with a few maps

`TRACEPOINT_PROBE(syscalls, sys_enter_getpid)` runs on every `getpid()` system call. It counts
calls per thread in a hash keyed by a struct (pid, thread id and command name), per CPU in a per-CPU hash,
and records the sizes `read()` returns as a log2 histogram.""")
code("""%%bpf tour
struct key_t { u32 pid; u32 tid; char comm[16]; };
BPF_HASH(calls, struct key_t, u64);
BPF_PERCPU_ARRAY(per_cpu, u64, 1);
BPF_HISTOGRAM(read_bytes);

TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    struct key_t key = {};
    u64 id = bpf_get_current_pid_tgid();
    key.pid = id >> 32;     // the process (tgid)
    key.tid = (u32)id;      // the thread
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    calls.increment(key);
    int zero = 0;
    per_cpu.increment(zero);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_read) {
    if (args->ret >= 0 && (bpf_get_current_pid_tgid() >> 32) == TARGET_PID)
        read_bytes.increment(bpf_log2l(args->ret));
    return 0;
}""".replace("%%bpf tour", "%%bpf tour -D TARGET_PID={os.getpid()}"))
md("""A workload with a known answer: exactly 1000 `getpid` system calls from a thread of our own
(the Jupyter kernel's own threads make some too), and reads of known sizes.""")
code("""import threading
libc = ctypes.CDLL(None, use_errno=True)
SYS_getpid = 39

def work():
    for _ in range(1000):
        libc.syscall(SYS_getpid)

worker = threading.Thread(target=work, name="getpid-worker")
worker.start()
worker.join()

fd = os.open("/dev/zero", os.O_RDONLY)
for size in [1, 2, 3, 100, 1000, 4096, 4096]:
    os.read(fd, size)
os.close(fd)""")
md("## Maps are DataFrames\n\nA struct key becomes one column per field; `char[]` becomes `str`; "
   "integer widths are kept.")
code("""calls = tour["calls"].df()
calls.sort_values("value", ascending=False).head()""")
code("""mine = calls[calls.tid == worker.native_id]
assert mine["value"].sum() == 1000, mine
calls.dtypes""")
code("tour['calls'].info")
md("`df.attrs` says where the frame came from and how full the map is:")
code("{k: v for k, v in calls.attrs.items() if k in ('map', 'type', 'entries', 'fill')}")
md("## Per-CPU maps\n\nSummed by default, or one row per (key, CPU) with `per_cpu=True`.")
code("""tour["per_cpu"].df(per_cpu=True)""")
code("""total = int(tour["per_cpu"].df()["value"].iloc[0])
assert total >= 1000
total""")
md("## Histograms\n\n`hist()` gives the buckets bcc's `print_log2_hist` prints, as a DataFrame:")
code("""h = tour["read_bytes"].hist()
h""")
code("""assert h["count"].sum() >= 7
assert int(h.loc[(h.low <= 4096) & (h.high >= 4096), "count"].iloc[0]) >= 2
from bpfnb import plot
plot.hist(h, title="read() sizes (bytes)");""")
md("""## Errors say what to do

Compile errors point at the cell's line; the verifier's rejection comes as one line with the
full log kept on the exception (`%bpf log` shows it).""")
code('''bad = """
BPF_HASH(m, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 k = 0;
    u64 *v = m.lookup(&k);
    return *v;   /* no NULL check */
}"""
try:
    bpfnb.load(bad)
except bpfnb.VerifierError as e:
    print(e)
    print(len(e.log.splitlines()), "lines of verifier log")''')
md("## Housekeeping\n\n`%bpf ls` lists what this notebook holds; `%bpf stop` frees it.")
code("%bpf ls")
code("%bpf stop --all\nassert tour.closed")

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, "notebooks/00-tour.ipynb")
