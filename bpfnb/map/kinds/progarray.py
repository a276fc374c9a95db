"""PROG_ARRAY: tail-call slots. Store `prog.function("name")` (or an fd) at a slot; the kernel
reads back each slot's program id, shown with the program's name and type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys, objinfo
from bpfnb.map.kinds import Closer, Kind, register
from bpfnb.map.kinds.fdvalues import fd_of, label_of


def _value_in(view: Any, value: Any) -> tuple[int, Closer | None]:
    return fd_of(view, value, "programs (prog.function('name'))")


def _remember(view: Any, key: Any, value: Any) -> None:
    view.shadow[int(key)] = label_of(value)


def _forget(view: Any, key: Any) -> None:
    view.shadow.pop(int(key), None)


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    snap = view.read()
    slots = snap.keys.astype(np.uint32)
    ids = snap.values.astype(np.uint32)
    infos = [objinfo.prog_by_id(int(i)) for i in ids]
    df = pd.DataFrame({
        "slot": slots, "prog_id": ids,
        "prog_name": [i.name if i else "" for i in infos],
        "prog_type": [i.type if i else "" for i in infos],
        "function": [view.shadow.get(int(s), "") for s in slots],
    })
    df.attrs.update(view.attrs(snap, len(df)), key_columns=["slot"],
                    value_columns=["prog_id", "prog_name", "prog_type", "function"])
    return df


def _length(view: Any) -> int:
    return len(view.read().keys)


register(Kind(frame=frame, value_in=_value_in, on_update=_remember, on_delete=_forget,
              length=_length), bpfsys.MapType.PROG_ARRAY)
