"""A fleet's CPU profiles as one Stacks: the host is the root frame of every stack."""

from __future__ import annotations

import pandas as pd

from bpfnb.profiler.stacks import Stacks


class FleetStacks(Stacks):
    """Stacks of many hosts: the merged flame graph has one tower per host (the host is
    the root, then the command, then the frames); `host(name)` is one host's own Stacks."""

    def __init__(self, per_host: dict[str, pd.DataFrame] | None = None, *,
                 name: str = "") -> None:
        per_host = per_host or {}
        self.status = pd.DataFrame()       # each host's answer (Fleet.profile sets it)
        self.per_host = {h: Stacks(df, name=f"{name} on {h}".strip()) for h, df in
                         per_host.items()}
        rows = []
        for h, df in per_host.items():
            if not len(df):
                continue
            part = df.copy()
            part["frames"] = [[str(c), *list(f)] for c, f in zip(part["comm"], part["frames"])]
            part["comm"] = h
            rows.append(part)
        merged = pd.concat(rows, ignore_index=True) if rows else None
        super().__init__(merged, name=name)

    @property
    def hosts(self) -> list[str]:
        return list(self.per_host)

    def host(self, name: str) -> Stacks:
        """One host's profile as it was taken there (commands at the root)."""
        if name not in self.per_host:
            raise KeyError(f"no host {name!r}; hosts: {', '.join(self.per_host)}")
        return self.per_host[name]

    def by_host(self) -> pd.DataFrame:
        """Samples per host, most first, with their share of all samples."""
        total = max(1, self.total)
        rows = [{"host": h, "samples": s.total, "share": s.total / total}
                for h, s in self.per_host.items()]
        return pd.DataFrame(rows, columns=["host", "samples", "share"]).sort_values(
            "samples", ascending=False, kind="stable").reset_index(drop=True)
