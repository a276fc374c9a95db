"""MapLike: what every map view offers readers and live widgets, whatever is behind it.

Implemented by MapView (a kernel map), store.replay.ReplayMapView (a recorded map) and
bpftrace.views.BpftraceMap (a bpftrace map); `live.widgets.live_view` takes any MapLike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from bpfnb._sys import bpfsys
    from bpfnb.data.mapread import Snapshot
    from bpfnb.map.view import MapInfo


@runtime_checkable
class MapLike(Protocol):
    """A readable map: its name and kernel info, snapshots, DataFrames and a live widget."""

    @property
    def name(self) -> str: ...

    @property
    def info(self) -> MapInfo: ...

    @property
    def per_cpu(self) -> bool: ...

    @property
    def fd(self) -> int:
        """The map's fd (ProgramClosedError once its program closed; -1 if it has none)."""

    def read(self) -> Snapshot:
        """Raw snapshot: numpy keys and values."""

    def attrs(self, snap: Snapshot, entries: int) -> dict[str, Any]:
        """The `df.attrs` of a read of `entries` entries."""

    def df(self) -> pd.DataFrame:
        """The map as a DataFrame."""

    def hist(self) -> pd.DataFrame:
        """Histogram buckets (`low`, `high`, `count`)."""

    def live(self, every: float = 1.0, top: int = 20, **options: Any) -> Any:
        """A live-refreshing widget of the map (needs ipywidgets)."""

    def release(self) -> None:
        """Free buffers and readers (the view's program closed)."""


@runtime_checkable
class TypedMapLike(MapLike, Protocol):
    """A MapLike whose keys and values have numpy dtypes (kernel and recorded maps): what
    element operations (map.ops.MapOps) and the per-type hooks (map.kinds) work on."""

    @property
    def type(self) -> bpfsys.MapType: ...

    @property
    def key_dtype(self) -> np.dtype: ...

    @property
    def value_dtype(self) -> np.dtype: ...
