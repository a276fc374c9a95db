"""Records cut out of a mmapped ring (BPF ring buffer, perf buffer): 8-byte padding, one odd
record zero-padded or cut to the event's size, the runs stacked into one (n, size) array."""

from __future__ import annotations

import numpy as np


def round8(n: int) -> int:
    """`n` rounded up to a multiple of 8 (records are 8-byte aligned)."""
    return (n + 7) & ~7


def one_row(payload: np.ndarray, size: int) -> np.ndarray:
    """A (1, size) row of `payload`: zero padded if shorter, cut if longer."""
    row = np.zeros((1, size), np.uint8)
    take = min(len(payload), size)
    row[0, :take] = payload[:take]
    return row


def stacked(parts: list[np.ndarray], size: int) -> np.ndarray:
    """The (n, size) rows of `parts` as one array (an empty one for none)."""
    if not parts:
        return np.zeros((0, size), np.uint8)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
