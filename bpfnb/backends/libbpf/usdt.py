"""USDT probe names in an ELF file's .note.stapsdt (libbpf needs the provider; bcc takes
just the probe name)."""

from __future__ import annotations

from bpfnb.errors import BpfnbError, UnknownTargetError
from bpfnb.symbols import stapsdt


def probes(path: str) -> list[tuple[str, str]]:
    """(provider, name) of every USDT probe in an ELF file ([] for a file that is not ELF)."""
    try:
        return [(p.provider, p.name) for p in stapsdt.probes(path)]
    except BpfnbError:
        return []


def provider(path: str, probe: str) -> tuple[str, str]:
    """(provider, name) for 'name' or 'provider:name' in `path`."""
    if ":" in probe:
        prov, _, name = probe.partition(":")
        return prov, name
    found = sorted({p for p, n in probes(path) if n == probe})
    if len(found) == 1:
        return found[0], probe
    known = ", ".join(sorted({f"{p}:{n}" for p, n in probes(path)})) or "none"
    what = "is in several providers" if found else "is not"
    raise UnknownTargetError(f"USDT probe {probe} {what} in {path}; name it as "
                             f"provider:name. Its probes: {known}")
