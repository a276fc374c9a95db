"""The recording file format's names, shared by the writer (recording) and reader (replay).

A recording is a zip: `meta.json` (static), `index/NNNNNNNN.json` (one per save, see
recmeta) and Parquet tables per map and kind, each row tagged with its `__snapshot`.
"""

from __future__ import annotations

FORMAT = "bpfnb-recording"
VERSION = 2   # 2: meta.json is static; each save adds index/NNNNNNNN.json (see recmeta)
META = "meta.json"
INDEX = "index/"
SNAPSHOT = "__snapshot"
KINDS = ("df", "percpu", "hist", "raw", "events")
EVENT_MAPS = ("RINGBUF", "PERF_EVENT_ARRAY")
KEYLESS = ("QUEUE", "STACK")
STACK_FIELDS = ("user_stack_id", "user_stack", "ustack_id", "ustack", "user_stackid",
                "kernel_stack_id", "kernel_stack", "kstack_id", "kstack", "kernel_stackid")
