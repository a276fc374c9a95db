"""`%%recorded`: a cell that drives the kernel, run live and recorded, shown in replay."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from bpfnb.errors import ReplayError
from bpfnb.jupyter import args as margs
from bpfnb.jupyter import session as nbsession
from bpfnb.jupyter.state import NotebookState


@magics_class
class RecordedMagics(Magics):
    """%%recorded; shares the notebook session with %%bpf."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state

    @cell_magic
    @magic_arguments("%recorded")
    def recorded(self, line: str, cell: str) -> Any:
        """A cell that drives the kernel (starts workloads, writes maps, attaches by hand).

        Live, the cell runs as usual; with BPFNB_RECORD=1 its outputs and the variables it
        binds are saved in the notebook's recording (%bpf fallback DIR / %%bpf ...
        --fallback DIR). Replaying, the cell is not run: its recorded outputs are shown and
        its variables bound again.

        Example:
            %%recorded
            subprocess.run(["./workload", "1000"])
        """
        margs.parse(RecordedMagics.recorded, margs.split_words(line, "%%recorded"),
                    "%%recorded")
        session = self.state.session
        if session.mode is nbsession.Mode.REPLAY:
            got = nbsession.recorded_cell(session.cells, cell)
            if got is None:
                raise ReplayError(
                    "This %%recorded cell's code is not in the recording (it was edited, or "
                    "is new), and here it cannot run: the notebook replays (see the banner). "
                    "Undo the edit to see what it recorded (changing only comments is fine), "
                    "or work on the values the recorded cells bound in a plain Python cell.")
            nbsession.replay_cell(self.shell, got, cell, session)
            return None
        if session.mode is nbsession.Mode.RECORD:
            return nbsession.record_cell(self.shell, session.cells, nbsession.cell_key(cell),
                                         cell)
        return nbsession.run_cell_code(self.shell, cell)
