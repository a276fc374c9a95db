"""`bpfnb` command line: `bpfnb features` (cheap checks), `bpfnb doctor` (what works here),
`bpfnb install-kernel` (a Jupyter kernel with just the BPF capabilities; run once, as root)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from bpfnb._sys import features


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
    from bpfnb.doctor import cleanup_stale_probes, doctor, probe_owners

    if args.cleanup:
        removed = cleanup_stale_probes()
        sys.stdout.write(f"removed {removed} stale tracefs probe(s)\n")
        why = {"alive": "a process in some PID namespace has that pid: its owner may live",
               "unknown": "not in the initial PID namespace: cannot tell if its owner lives",
               "gone": "its owner is gone but tracefs refused the removal (busy?)"}
        for event, pid, state in probe_owners():
            sys.stdout.write(f"kept {event} (pid {pid}): {why[state]}\n")
    sys.stdout.write(f"{doctor(refresh=args.refresh)}\n")
    return 0


def run_install_kernel(args: argparse.Namespace) -> int:
    from bpfnb._sys.safedirs import UnsafePathError
    from bpfnb.jupyter import kernelspec

    try:
        if args.uninstall:
            gone = kernelspec.uninstall(args.name, args.prefix)
            spec, runtime = kernelspec.paths(args.name, args.prefix)
            sys.stdout.write(f"removed {spec} and {runtime}\n" if gone
                             else f"no kernel {args.name!r} under {spec.parents[3]}\n")
            return 0
        done = kernelspec.install(args.name, kernelspec.parse_caps(args.caps),
                                  prefix=args.prefix, user=args.user, group=args.group,
                                  any_user=args.any_user, python=args.python,
                                  display_name=args.display_name)
    except (kernelspec.InstallError, UnsafePathError) as e:
        sys.stderr.write(f"bpfnb install-kernel: {e}\n")
        return 1
    group = f"group {done.group}, " if done.group else ""
    sys.stdout.write(f"kernelspec {done.name}: {done.kernelspec}\n"
                     f"kernel binary: {done.python} (capabilities: {','.join(done.caps)})\n"
                     f"who can run the kernel ({group}and so holds these capabilities): "
                     f"{', '.join(done.who)}\n" + "".join(f"note: {n}\n" for n in done.notes))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "features": run_features,
    "doctor": run_doctor,
    "install-kernel": run_install_kernel,
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
    ik = sub.add_parser("install-kernel",
                        help="(root, once) install a Jupyter kernel with just the BPF capabilities")
    ik.add_argument("--name", default="bpfnb-caps", help="kernelspec name (default bpfnb-caps)")
    ik.add_argument("--prefix", default=None,
                    help="install under PREFIX/share/jupyter/kernels (default: this environment)")
    ik.add_argument("--caps", default="bpf,perfmon,syslog",
                    help="comma-separated capabilities (default bpf,perfmon,syslog; add "
                         "sys_admin for uprobes, net_admin for XDP/tc; dac_read_search reads "
                         "every file and is needed only where tracefs is not group-readable)")
    who = ik.add_mutually_exclusive_group()
    who.add_argument("--user", help="the user who runs Jupyter: only that user may execute the "
                                    "kernel binary (through a group bpfnb-USER holding only them)")
    who.add_argument("--group", help="share it: every member of GROUP may execute the kernel "
                                     "binary")
    who.add_argument("--any-user", action="store_true",
                     help="every local user may execute it (and so holds the capabilities)")
    ik.add_argument("--python", default=None,
                    help="interpreter to copy (default: the first of this environment's base "
                         "interpreter and the system's of the same version that the user can run)")
    ik.add_argument("--display-name", default=None)
    ik.add_argument("--uninstall", action="store_true", help="remove the kernelspec and binary")
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
