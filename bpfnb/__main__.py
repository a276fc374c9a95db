"""`bpfnb` command line: `bpfnb features` (cheap checks), `bpfnb doctor` (what works here)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

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


def run_features(args: argparse.Namespace) -> int:
    rows = feature_rows()
    width = max(len(n) for n, _ in rows)
    for name, state in rows:
        sys.stdout.write(f"{name:<{width}}  {state}\n")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    from .doctor import cleanup_stale_probes, doctor  # the module, even if bpfnb exports doctor()

    if args.cleanup:
        removed = cleanup_stale_probes()
        sys.stdout.write(f"removed {removed} stale tracefs probe(s)\n")
    sys.stdout.write(f"{doctor(refresh=args.refresh)}\n")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "features": run_features,
    "doctor": run_doctor,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpfnb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("features", help="cheap checks of this kernel and process")
    doc = sub.add_parser("doctor", help="what loads and attaches here, why not, how to fix")
    doc.add_argument("--refresh", action="store_true",
                     help="run the attach probes again instead of using this boot's cache")
    doc.add_argument("--cleanup", action="store_true",
                     help="first remove tracefs probes left behind by dead processes")
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
