"""A bpftrace run as data: what a recording stores, and what replay serves in place of a
live process (no bpftrace, no privileges). Everything read back is untrusted: shapes are
checked and nothing in it runs."""

from __future__ import annotations

from typing import Any

from bpfnb.bpftrace.output import MAP_TYPES, Message
from bpfnb.errors import ReplayError

FORMAT = 1


class Transcript:
    """A finished run: its messages, stderr and exit status. It offers the part of
    BpftraceProcess that programs and views read, so a replayed program is a normal one."""

    running = False
    pid = None
    killed = False

    def __init__(self, messages: list[Message], stderr: str = "", returncode: int | None = 0,
                 attach_ns: int | None = None) -> None:
        self.messages = messages
        self.stderr = stderr
        self.returncode = returncode
        self.attach_ns = attach_ns
        self.latest: dict[str, Message] = {}
        for m in messages:
            if m.type in MAP_TYPES and isinstance(m.data, dict):
                for name in m.data:
                    self.latest[name] = m

    def snapshot(self) -> list[Message]:
        return list(self.messages)

    def latest_map(self, name: str) -> Message | None:
        return self.latest.get(name)

    def map_names(self) -> list[str]:
        return list(self.latest)

    def stop(self, timeout: float = 0.0) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


def to_dict(script: str, name: str, args: list[str], process: Any) -> dict[str, Any]:
    """A JSON-able record of a run (its process must have ended for a complete one)."""
    return {"format": FORMAT, "engine": "bpftrace", "script": script, "name": name,
            "args": list(args), "returncode": process.returncode, "stderr": process.stderr,
            "attach_ns": process.attach_ns,
            "messages": [{**m.raw, "time_ns": m.time_ns} for m in process.snapshot()]}


def from_dict(record: Any) -> tuple[str, str, list[str], Transcript]:
    """(script, name, args, transcript) of a record made by to_dict; ReplayError if the
    record does not have that shape."""
    if not isinstance(record, dict) or record.get("engine") != "bpftrace" \
            or record.get("format") != FORMAT:
        raise ReplayError("not a bpftrace recording (format 1); record the cell again")
    script, name, args = record.get("script"), record.get("name"), record.get("args", [])
    rc, stderr, attach = record.get("returncode"), record.get("stderr", ""), \
        record.get("attach_ns")
    raw = record.get("messages")
    if not (isinstance(script, str) and isinstance(name, str) and isinstance(stderr, str)
            and isinstance(args, list) and all(isinstance(a, str) for a in args)
            and (rc is None or type(rc) is int) and (attach is None or type(attach) is int)
            and isinstance(raw, list)):
        raise ReplayError("the bpftrace recording is damaged (bad fields); record it again")
    messages = []
    for i, obj in enumerate(raw):
        if not (isinstance(obj, dict) and isinstance(obj.get("type"), str)
                and type(obj.get("time_ns", 0)) is int):
            raise ReplayError(f"the bpftrace recording is damaged (message {i}); "
                              "record it again")
        body = {k: v for k, v in obj.items() if k != "time_ns"}
        messages.append(Message(obj["type"], obj.get("data"), obj.get("time_ns", 0), body))
    return script, name, list(args), Transcript(messages, stderr, rc, attach)
