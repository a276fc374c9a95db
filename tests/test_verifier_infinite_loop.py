"""A loop whose counter never changes: the kernel says "infinite loop detected" and then
dumps the two equal states; the error's first line gives the kernel's reason and the loop
hint, not a register dump (notebooks/19-verifier shows this case)."""

from __future__ import annotations

import pytest

import bpfnb
from bpfnb.backends.select import libbpf_ready
from bpfnb.errors import VerifierError
from conftest import require

pytestmark = pytest.mark.usefixtures("kernel")

SOURCE = """\
BPF_HASH(h, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
  u32 k = 0;
  u64 *n = h.lookup(&k);
  if (!n) return 0;
  u64 sum = 0, i = 0;
  while (i < *n) sum += i;
  h.update(&k, &sum);
  return 0;
}
"""


@pytest.mark.parametrize("backend", ["bcc", "libbpf"])
def test_infinite_loop_reason_is_the_kernels_not_a_state_dump(backend):
    if backend == "libbpf":
        require(libbpf_ready())
    with pytest.raises(VerifierError) as err:
        bpfnb.load(SOURCE, name="loop", backend=backend)
    first = err.value.summary
    assert err.value.reason.startswith("infinite loop detected at insn "), first
    assert "state:" not in first
    if backend == "libbpf":  # bcc's log here carries no source lines
        assert "at line 7: `while (i < *n) sum += i;`" in first
    assert "The verifier cannot follow this loop to its end" in first
    assert bpfnb.open_programs() == []
