"""Can bpftrace cells run here? One answer for the doctor and for test skips."""

from __future__ import annotations

from bpfnb import doctor
from bpfnb._sys import features
from bpfnb.bpftrace.process import find_bpftrace, version
from bpfnb.errors import BpfnbError

INSTALL_FIX = "apt-get install bpftrace (Debian/Ubuntu), or set BPFNB_BPFTRACE=PATH"
PRIVILEGE_FIX = ("run the notebook kernel as root or with CAP_BPF + CAP_PERFMON (the "
                 "capability kernel: `python -m bpfnb install-kernel`)")


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


def doctor_rows() -> list[doctor.Row]:
    """The doctor's bpftrace row: its path and version, or what is missing and the fix."""
    feat = available()
    if feat:
        return [doctor.Row("engines", "bpftrace", "ok", feat.reason)]
    fix = PRIVILEGE_FIX if "is installed but" in feat.reason else INSTALL_FIX
    return [doctor.Row("engines", "bpftrace", "no", feat.reason, fix)]


if doctor_rows not in doctor.ENGINE_ROWS:
    doctor.ENGINE_ROWS.append(doctor_rows)
