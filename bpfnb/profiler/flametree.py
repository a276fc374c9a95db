"""The flame tree: stacks (root first) merged into a prefix tree laid out left to right in
alphabetical order, as flame graphs are. bpfnb.render.flame draws it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bpfnb.render.flame import ROOT, USER


@dataclass
class FlameTree:
    """Nodes in pre-order. `value[:, 0]` is the drawn width; more columns ride along."""

    names: list[str]
    name_id: np.ndarray
    depth: np.ndarray
    start: np.ndarray
    value: np.ndarray  # (nodes, k) inclusive weights
    self_value: np.ndarray  # (nodes, k) weights of stacks ending at the node
    kind: np.ndarray

    @property
    def total(self) -> float:
        return float(self.value[0, 0]) if len(self.depth) else 0.0

    def __len__(self) -> int:
        return len(self.depth)

    def label(self, i: int) -> str:
        return self.names[int(self.name_id[i])]

    @classmethod
    def build(cls, paths: Sequence[Sequence[str]], weights: np.ndarray,
              kinds: Sequence[Sequence[int]] | None = None, root: str = "all") -> FlameTree:
        """Merge paths (root first) with weights of shape (n,) or (n, k)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            w = w[:, None]
        k = w.shape[1]
        names: dict[str, int] = {root: 0}
        name_id, depth, start, kind = [0], [0], [0.0], [ROOT]
        parents_of: list[list[int]] = []
        open_nodes = [0]
        prev: Sequence[str] = ()
        x = 0.0
        order = sorted(range(len(paths)), key=lambda i: tuple(paths[i]))
        for i in order:
            p = paths[i]
            n = min(len(p), len(prev))
            common = 0
            while common < n and p[common] == prev[common]:
                common += 1
            del open_nodes[common + 1 :]
            for d in range(common, len(p)):
                open_nodes.append(len(depth))
                name_id.append(names.setdefault(p[d], len(names)))
                depth.append(d + 1)
                start.append(x)
                kind.append(kinds[i][d] if kinds is not None else USER)
            parents_of.append(list(open_nodes))
            x += float(w[i, 0])
            prev = p
        value = np.zeros((len(depth), k))
        self_value = np.zeros((len(depth), k))
        for row, nodes in zip(order, parents_of):
            value[nodes] += w[row]
            self_value[nodes[-1]] += w[row]
        return cls(list(names), np.array(name_id, np.int64), np.array(depth, np.int64),
                   np.array(start), value, self_value, np.array(kind, np.int64))

    def matches(self, needle: str) -> np.ndarray:
        """Boolean mask of nodes whose name contains needle (case-insensitive)."""
        low = needle.lower()
        hit = np.array([low in n.lower() for n in self.names], dtype=bool)
        return hit[self.name_id] if len(hit) else np.zeros(0, bool)
