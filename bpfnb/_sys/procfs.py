"""What /proc says about a process."""

from __future__ import annotations


def comm(pid: int, gone: str = "") -> str:
    """The command name of process `pid` (`gone` once it has exited)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return gone
