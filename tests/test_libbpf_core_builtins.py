"""The libbpf backend's check for unguarded kernel-struct reads, on real cells: CO-RE
builtins that only name a field (bpf_core_field_offset(task->tgid), sizeof, typeof...)
compile, load and give the kernel BTF's answers; real dereferences are still refused."""

from __future__ import annotations

import os

import pytest

from bpfnb._sys import bpfsys
from bpfnb._sys.btf import Btf, BtfKind
from bpfnb.backends.libbpf import LibbpfModule
from bpfnb.backends.select import libbpf_ready
from bpfnb.errors import CompileError
from bpfnb.testing.workload import COMM_FILTER, comm_cflags, getpid
from conftest import require

pytestmark = pytest.mark.usefixtures("kernel")
COMM = f"bpfnb-cb{os.getpid() % 10000}"

# one slot per answer; the comment says which
BUILTINS = """
BPF_ARRAY(out, u64, 10);
static __always_inline void put(int i, u64 v) { out.update(&i, &v); }
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    put(0, bpf_core_field_offset(task->tgid));
    put(1, bpf_core_field_exists(task->tgid));
    put(2, bpf_core_field_size(task->comm));
    put(3, __builtin_preserve_field_info(task->pid, BPF_FIELD_BYTE_OFFSET));
    put(4, bpf_core_field_offset(
               task->real_parent));                  // split over lines
    put(5, sizeof(task->comm) + bpf_core_type_exists(struct task_struct));
    typeof(task->tgid) tgid = BPF_CORE_READ(task, tgid);
    put(6, tgid);
    put(7, bpf_core_field_offset(struct task_struct, tgid));
    put(8, bpf_core_read(&tgid, sizeof(tgid), &task->tgid) == 0 ? tgid : 0);
    put(9, bpf_core_field_size(task->real_parent->tgid));
    return 0;
}
""".replace("COMM_FILTER", COMM_FILTER)


@pytest.fixture(scope="module", autouse=True)
def _toolchain() -> None:
    require(libbpf_ready())


def _task_struct() -> dict[str, tuple[int, int]]:
    """task_struct's members in the kernel's BTF: name -> (byte offset, size)."""
    btf = Btf.from_file("/sys/kernel/btf/vmlinux")
    sid = btf.find("task_struct", BtfKind.STRUCT)
    return {m.name: (m.bit_offset // 8, btf.size(m.type)) for m in btf.members(sid)}


def test_field_builtins_compile_load_and_match_kernel_btf() -> None:
    m = LibbpfModule(BUILTINS, comm_cflags(COMM))
    try:
        m.autoattach()
        pid = getpid(3, comm=COMM)
        t = m.table("out")
        got = []
        for i in range(10):
            value = t.Leaf()
            bpfsys.lookup(t.map_fd, t.Key(i), value)
            got.append(value.value)
    finally:
        m.close()
    members = _task_struct()
    assert got == [members["tgid"][0], 1, 16, members["pid"][0],
                   members["real_parent"][0], 16 + 1, pid,
                   members["tgid"][0], pid, members["tgid"][1]]


TASK = ("TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {\n"
        "    struct task_struct *task = (struct task_struct *)bpf_get_current_task();\n"
        "    u64 x = 0;\n"
        "    LINE\n"
        "    return x;\n}\n")


@pytest.mark.parametrize(("line", "member"), [
    ("x = bpf_core_field_offset(task->tgid) + task->pid;", "pid"),
    ("x = BPF_CORE_READ(task, tgid) + task->pid;", "pid"),
    ("x = BPF_CORE_READ(task->real_parent, tgid);", "real_parent"),
    ("bpf_probe_read_kernel(&x, 4, &task->real_parent->tgid);", "real_parent"),
    ("x = sizeof(x) ? task->tgid : 0;", "tgid"),
    ("x = bpf_core_field_size(x) + task->tgid;", "tgid"),
])
def test_real_dereferences_are_still_refused(line: str, member: str) -> None:
    with pytest.raises(CompileError) as e:
        LibbpfModule(TASK.replace("LINE", line))
    assert e.value.summary.startswith(f"Use BPF_CORE_READ(task, {member})")
    assert e.value.diagnostics[0][0] == 4
