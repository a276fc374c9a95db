"""`%bpf_doctor`: what loads and attaches here, why not and how to fix it."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from bpfnb.doctor import cleanup_stale_probes, doctor
from bpfnb.jupyter import args as margs


@magics_class
class DoctorMagics(Magics):
    """%bpf_doctor."""

    @line_magic
    @magic_arguments("bpf_doctor")
    @argument("--refresh", action="store_true",
              help="run the attach probes again (they are cached per boot)")
    @argument("--cleanup", action="store_true",
              help="first remove tracefs probes left behind by dead processes")
    def bpf_doctor(self, line: str) -> Any:
        """What loads and attaches here, why not and how to fix it (a table).

        Example: %bpf_doctor --refresh
        """
        ns = margs.parse(DoctorMagics.bpf_doctor, margs.split_words(line, "%bpf_doctor"),
                         "%bpf_doctor")
        if ns.cleanup:
            cleanup_stale_probes()
        return doctor(refresh=ns.refresh)
