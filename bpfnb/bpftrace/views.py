"""`prog["@name"]`: one bpftrace map as DataFrames, read from the kernel while bpftrace
runs (where exact) and from the dump bpftrace prints at exit afterwards."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bpfnb.bpftrace import kernel, output
from bpfnb.bpftrace.script import MapDecl
from bpfnb.bpftrace.stacks import to_stacks
from bpfnb.data.mapread import Snapshot
from bpfnb.errors import UnsupportedMapError
from bpfnb.map.view import MapInfo

if TYPE_CHECKING:
    from bpfnb.bpftrace.program import BpftraceProgram
    from bpfnb.profiler.stacks import Stacks

#: df.attrs["source"]: where the rows came from
KERNEL, FINAL, PRINTED, NONE = "kernel", "final dump", "printed", "none"


class BpftraceMap:
    """A view of one bpftrace map. `df()` is current: from the kernel while the program
    runs (count/sum/avg/stats/hist/lhist maps keyed by builtins), else the latest map
    bpftrace printed; after the program ends, the final dump. `df().attrs["source"]`
    says which ("kernel", "printed", "final dump" or "none")."""

    def __init__(self, program: BpftraceProgram, decl: MapDecl) -> None:
        self.program = program
        self.decl = decl
        self.name = decl.name
        self._kview: kernel.ExternalMap | None = None
        self._unreadable = False  # the kernel map's layout is not the one assumed

    def __repr__(self) -> str:
        fn = f"{self.decl.function}()" if self.decl.function else "value"
        return f"<BpftraceMap {self.name}: {fn} key {list(self.decl.key)}>"

    @property
    def histogram(self) -> bool:
        return self.decl.function in ("hist", "lhist")

    @property
    def kernel_readable(self) -> bool:
        """True when reads while running come from the kernel (exact and current)."""
        return kernel.readable(self.decl) and not self._unreadable

    def df(self) -> pd.DataFrame:
        """The map as a DataFrame: key column(s) then `value` (stats(): `count`, `average`,
        `total`; hist()/lhist(): `low`, `high`, `count`, `bucket`)."""
        prog = self.program
        if prog.running and self.kernel_readable:
            view = self._kernel_view()
            if view is not None:
                t0 = time.time_ns()
                df = kernel.frame(self.decl, view)
                return self._finish(df, KERNEL, t0)
        msg = prog.latest(self.name)
        if msg is None:
            df = pd.DataFrame({c: pd.Series(dtype=object) for c in self.decl.columns()})
            df.attrs.update(key_columns=self.decl.columns(), value_columns=[])
            # bpftrace prints no empty map at exit: after it, empty is the final answer
            return self._finish(df, NONE if prog.running else FINAL, time.time_ns())
        source = PRINTED if prog.running else FINAL
        payload = msg.data[self.name]
        if msg.type == "hist":
            df = output.hist_frame(payload, self.decl.arity or 1,
                                   log2=self.decl.function != "lhist")
        else:
            df = output.map_frame(msg.type, payload, self.decl.arity)
        if self.decl.arity > 1:
            df = df.rename(columns=dict(zip(output.key_names(self.decl.arity),
                                            self.decl.columns())))
            df.attrs["key_columns"] = self.decl.columns()
        return self._finish(df, source, msg.time_ns)

    def _finish(self, df: pd.DataFrame, source: str, read_ns: int) -> pd.DataFrame:
        df.attrs.update(map=self.name, type=f"bpftrace {self.decl.function or 'value'}",
                        source=source, read_ns=read_ns, entries=len(df),
                        program=self.program.name)
        return df

    def _kernel_view(self) -> kernel.ExternalMap | None:
        if self._kview is None:
            ids = self.program.kernel_map_ids()
            map_id = ids.get(kernel.kernel_name(self.name))
            if map_id is None:
                return None
            self._kview = kernel.open_kernel_map(self.decl, map_id)
            self._unreadable = self._kview is None
        return self._kview

    def hist(self) -> pd.DataFrame:
        """A hist()/lhist() map's buckets (the kit's histogram frame plus key columns and a
        `bucket` label: "negative" below the range, "overflow" above it)."""
        if not self.histogram:
            raise UnsupportedMapError(f"{self.name} holds {self.decl.function or 'values'}, "
                                      "not hist()/lhist(); use .df()")
        return self.df()

    def stacks(self) -> Stacks:
        """A kstack/ustack-keyed map as a Stacks (flame graphs, folded, speedscope, diff)."""
        return to_stacks(self)

    def release(self) -> None:
        if self._kview is not None:
            self._kview.close()
            self._kview = None

    # -- what the kit's live widget reads from a map view --------------------------------
    per_cpu = False

    @property
    def info(self) -> MapInfo:
        kid = self.program.kernel_map_ids().get(kernel.kernel_name(self.name), 0)
        fn = (self.decl.function or "value").upper()
        return MapInfo(self.name, f"BPFTRACE_{fn}", 0, 0, 0, kid, 0)

    @property
    def fd(self) -> int:
        """The kernel map's fd while the program runs and its map is readable, else -1."""
        view = self._kernel_view() if self.program.running and self.kernel_readable else None
        return view.fd if view is not None else -1

    def read(self) -> Snapshot:
        """df() as a MapView snapshot: key columns (hist buckets: plus low, high) as keys,
        value columns as values."""
        df = self.df()
        keys = list(df.attrs.get("key_columns", []))
        values = list(df.attrs.get("value_columns", []))
        if self.histogram:
            keys += ["low", "high"]
        t = int(df.attrs["read_ns"])
        return Snapshot(_record(df, keys or None), _record(df, values, self.histogram), t, 0,
                        str(df.attrs["source"]))

    def attrs(self, snap: Snapshot, entries: int) -> dict[str, Any]:
        return {"map": self.name, "type": self.info.type, "read_ns": snap.time_ns,
                "kind": "linear" if self.decl.function == "lhist" else "log2",
                "read_duration_ns": 0, "entries": entries, "max_entries": 0, "fill": 0.0,
                "read_method": snap.method}

    def live(self, every: float = 1.0, top: int = 20, **options: Any) -> Any:
        """A live-refreshing table and plot of df() (needs ipywidgets): the kit's histogram
        plot for hist()/lhist() maps (percentile lines, a section per key), bars otherwise."""
        from bpfnb.live.widgets import live_view

        options.setdefault("plot", "hist" if self.histogram else "bars")
        return live_view(self, every=every, top=top, **options)


def _record(df: pd.DataFrame, cols: list[str] | None, named: bool = False) -> np.ndarray:
    """Columns as one numpy array (a structured one for several, or with `named`; str as
    bytes)."""
    if cols is None:  # a map without keys
        return np.zeros(len(df), dtype=np.dtype([("key", "S1")]))["key"]
    arrays = [_column(df[c]) for c in cols]
    if len(arrays) == 1 and not named:
        return arrays[0]
    out = np.empty(len(df), dtype=[(c, a.dtype) for c, a in zip(cols, arrays)])
    for c, a in zip(cols, arrays):
        out[c] = a
    return out


def _column(s: pd.Series) -> np.ndarray:
    if s.dtype == object:
        raw = [str(v).encode() for v in s]
        return np.asarray(raw, dtype=f"S{max((len(r) for r in raw), default=1) or 1}")
    return s.to_numpy()
