"""One libbpf bpf_object: open from ELF bytes, set read-only globals, load, attach, close.

Load failures become bpfnb errors: the verifier's log (which libbpf prints between
BEGIN/END PROG LOAD LOG markers) goes to diagnose.verifier_error.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import errno
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from bpfnb._sys import libbpf
from bpfnb._sys.btf import Btf, BtfError, BtfKind, raw_type
from bpfnb.backends import diagnose
from bpfnb.errors import BpfnbError, KeyTypeError

_FAILED = re.compile(r"prog '(\w+)': (?:BPF program load failed|failed to load): .*?(-?\d+)?$",
                     re.M)
_LOG = re.compile(r"-- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --", re.S)


class BpfObject:
    """An opened (then loaded) object; `programs` and `maps` by name."""

    def __init__(self, data: bytes, name: str, source: str = "",
                 autoload: Callable[[str, str], bool] | None = None,
                 reuse: Mapping[str, int] | None = None) -> None:
        self.lib = libbpf.lib()
        self.name = name
        self.source = source
        self.data = data
        with libbpf.capture() as log:
            try:
                self.ptr, self._buf = libbpf.open_mem(data, name)
            except OSError as e:
                raise _open_error(name, e, log.text) from None
        self.programs = {self.lib.bpf_program__name(p).decode(): p
                         for p in libbpf.iterate("program", self.ptr)}
        self.maps = {self.lib.bpf_map__name(m).decode(): m
                     for m in libbpf.iterate("map", self.ptr)}
        # BTF type ids as compiled (libbpf clears them where the kernel refuses map BTF)
        self._type_ids = {n: (self.lib.bpf_map__btf_key_type_id(m),
                              self.lib.bpf_map__btf_value_type_id(m))
                          for n, m in self.maps.items()}
        self.loaded = False
        for pname, prog in self.programs.items():
            section = self.section(pname)
            if autoload is not None and not autoload(pname, section):
                self.lib.bpf_program__set_autoload(prog, False)
        for mname, fd in (reuse or {}).items():
            if mname in self.maps:
                libbpf.check_rc(self.lib.bpf_map__reuse_fd(self.maps[mname], fd),
                                f"reuse map {mname}")

    def section(self, program: str) -> str:
        return str(self.lib.bpf_program__section_name(self.programs[program]).decode())

    @functools.cached_property
    def btf(self) -> Btf | None:
        """The object's own BTF (None if it was built without -g)."""
        btf_ptr = self.lib.bpf_object__btf(self.ptr)
        if not btf_ptr:
            return None
        size = ct.c_uint32()
        raw = self.lib.btf__raw_data(btf_ptr, ct.byref(size))
        return Btf(ct.string_at(raw, size.value), 0, self.name) if raw else None

    def map_types(self, name: str, key_size: int, value_size: int) -> tuple[Any, Any]:
        """ctypes key and value types of a map from the object's BTF; raw bytes where it
        has none or a type's size differs from the map's."""
        out = []
        key_id, value_id = self._type_ids[name]
        for type_id, size in ((key_id, key_size), (value_id, value_size)):
            ctype = raw_type(size)
            if type_id and self.btf is not None:
                with contextlib.suppress(BtfError):
                    typed = self.btf.ctype(type_id)
                    if ct.sizeof(typed) == size:
                        ctype = typed
            out.append(ctype)
        return out[0], out[1]

    def named_type(self, c_type: str) -> Any:
        """The ctypes type of a C type named in the source ("struct x", "u64"), or None."""
        if self.btf is None:
            return None
        words = c_type.split()
        kinds = {"struct": BtfKind.STRUCT, "union": BtfKind.UNION}
        kind = kinds.get(words[0]) if len(words) == 2 else None
        try:
            type_id = self.btf.find(words[-1], kind)
            return self.btf.ctype(type_id)
        except (KeyError, BtfError):
            return None

    # -- read-only globals ----------------------------------------------------------------
    def set_consts(self, consts: Mapping[str, Any]) -> None:
        """Set `const volatile` globals (.rodata) before load, by name."""
        rodata = next((m for n, m in self.maps.items() if n.endswith(".rodata")), None)
        btf = self.btf
        if rodata is None or btf is None:
            raise KeyTypeError(f"{self.name} has no .rodata globals with BTF; cannot set "
                               f"{', '.join(consts)}")
        sec = next(t for t in btf.types() if t.kind == BtfKind.DATASEC and t.name == ".rodata")
        entries = btf._u32s(sec, 3 * sec.vlen)
        where = {btf.type(entries[i]).name: (entries[i], entries[i + 1])
                 for i in range(0, len(entries), 3)}
        vsize = ct.c_size_t()
        base = self.lib.bpf_map__initial_value(rodata, ct.byref(vsize))
        for key, value in consts.items():
            if key not in where:
                raise KeyTypeError(f"{self.name} has no const volatile global {key!r}; it has: "
                                   f"{', '.join(sorted(where)) or 'none'}")
            var_id, offset = where[key]
            ctype = btf.ctype(btf.type(var_id).size_or_type)
            slot = ctype.from_address(base + offset)
            if isinstance(value, (bytes, str)):
                data = value.encode() if isinstance(value, str) else value
                if len(data) > ct.sizeof(ctype):
                    raise KeyTypeError(f"{key} holds {ct.sizeof(ctype)} bytes, got {len(data)}")
                ct.memset(base + offset, 0, ct.sizeof(ctype))
                ct.memmove(base + offset, data, len(data))
            elif hasattr(slot, "value"):
                slot.value = value
            else:
                raise KeyTypeError(f"{key} is a {btf.describe(btf.type(var_id).size_or_type)}; "
                                   "only numbers, strings and bytes can be set")

    # -- load ---------------------------------------------------------------------------
    def load(self) -> None:
        with libbpf.capture() as log:
            rc = self.lib.bpf_object__load(self.ptr)
        if rc == 0:
            self.loaded = True
            self.log = log.text
            return
        raise self._load_error(-rc, log.text)

    def _load_error(self, err: int, text: str) -> Exception:
        m = _FAILED.search(text)
        function = m.group(1) if m else self.name
        verifier = _LOG.search(text)
        if verifier and verifier.group(1).strip():
            return diagnose.verifier_error(function, self.source, verifier.group(1), err)
        if m:
            return diagnose.load_refused(function, err)
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or [errno.errorcode.get(err,
                                                                                          "")]
        return BpfnbError(f"libbpf could not load {self.name}: {last[0].strip()}. The full "
                          "libbpf output is on this exception (.details).", details=text)

    def map_fd(self, name: str) -> int:
        return int(self.lib.bpf_map__fd(self.maps[name]))

    def program_fd(self, name: str) -> int:
        return int(self.lib.bpf_program__fd(self.programs[name]))

    def close(self) -> None:
        if getattr(self, "ptr", None):
            self.lib.bpf_object__close(self.ptr)
            self.ptr = 0


def _open_error(name: str, err: OSError, text: str) -> BpfnbError:
    """libbpf refused the ELF: say why in its own last words, and what to do."""
    last = next((ln.removeprefix("libbpf: ").strip() for ln in reversed(text.splitlines())
                 if ln.strip()), err.strerror or "")
    if "maps/" in text and "bad map relo" in text:
        return BpfnbError(f"{name} declares a map through bcc's internal 'maps/' sections, "
                          "which libbpf does not read; run it with backend='bcc'.", details=text)
    return BpfnbError(f"libbpf cannot open {name}: {last}. A BPF object must be built with "
                      "clang -target bpf -g (maps in SEC(\".maps\")).", details=text)
