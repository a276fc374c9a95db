"""Can bpftrace cells run here? One answer for the doctor and for test skips."""

from __future__ import annotations

from bpfnb._sys import features
from bpfnb.bpftrace.process import find_bpftrace, version
from bpfnb.errors import BpfnbError


def available(binary: str | None = None) -> features.Feature:
    """bpftrace is installed and this process may trace; the reason names the fix."""
    try:
        path = find_bpftrace(binary)
        ver = version(path)
    except BpfnbError as e:
        return features.Feature("bpftrace", False, str(e))
    trace = features.can_trace()
    if not trace:
        return features.Feature("bpftrace", False, f"bpftrace {path} is installed but "
                                f"{trace.reason}")
    return features.Feature("bpftrace", True, f"{path} v{'.'.join(map(str, ver))}")
