"""Parallel hash reads straight into the reader's buffers: exact when regions overflow."""

from __future__ import annotations

import numpy as np
import pytest

import bpfnb
from bpfnb._sys import bpfsys
from bpfnb.data import parallelread

pytestmark = pytest.mark.usefixtures("kernel")

N = 1 << 17
FULL = f"BPF_HASH(full, u32, u64, {N});\nint unused(void *ctx) {{ return 0; }}\n"


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_full_hash_read_in_regions_is_exact(workers):
    with bpfnb.load(FULL, name="full", attach=False) as prog:
        view = prog["full"]
        rng = np.random.default_rng(workers)
        keys = rng.permutation(np.unique(rng.integers(0, 1 << 32, 2 * N, np.uint32))[:N])
        values = keys.astype(np.uint64)[:, None] * 5
        bpfsys.batch(bpfsys.Cmd.MAP_UPDATE_BATCH, view.fd, None, None, keys, values, N)
        out = (np.empty(N, view.key_dtype), np.empty((N, 1), view.value_dtype))
        got_k, got_v = parallelread.read_hash(view.fd, N, view.key_dtype, (1,),
                                              view.value_dtype, workers, out=out)
        # a full map cannot split evenly: some region overflows into the worker's own chunks
        assert len(got_k) == N and np.shares_memory(got_k, out[0])
        order = np.argsort(got_k)
        assert (got_k[order] == np.sort(keys)).all()
        assert (got_v[order, 0] == got_k[order].astype(np.uint64) * 5).all()
