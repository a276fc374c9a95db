"""`bpfnb` command line: `bpfnb features` prints what this kernel and process can do."""

from __future__ import annotations

import argparse
import os
import sys

from . import features


def feature_rows() -> list[tuple[str, str]]:
    """(name, state) for the cheap checks in bpfnb.features."""
    checks = [features.can_load_bpf(), features.can_trace(), features.btf(),
              features.kernel_headers(), features.kprobes(), features.uprobes()]
    rows = [("kernel", os.uname().release)]
    rows += [(f.name, "yes" + (f" ({f.reason})" if f.reason else "") if f.ok else f"no: {f.reason}")
             for f in checks]
    rows += [(name, features.sysctl(name) or "?") for name in
             ("kernel.unprivileged_bpf_disabled", "kernel.perf_event_paranoid")]
    rows.append(("lockdown", features.lockdown() or "unknown (securityfs not mounted)"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpfnb", description=__doc__)
    parser.add_argument("command", choices=["features"])
    parser.parse_args(argv)
    width = max(len(n) for n, _ in feature_rows())
    for name, state in feature_rows():
        sys.stdout.write(f"{name:<{width}}  {state}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
