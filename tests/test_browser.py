"""The notebooks in a real JupyterLab, driven through Debian's chromium.

Starts JupyterLab from this venv on 127.0.0.1 (random port, token) in a temporary copy of
the notebooks (notebooks/ beside a link to tests/, as in the repository). 05-live: runs
every cell above its stopping cells while a workload makes system calls, and checks in the
page that the first live view's table changes at least three times, that its plot changes
and that its Stop button stops it. Saves the view as a screenshot: docs/live.png (the
README's) when BPFNB_UPDATE_DOCS=1, else under pytest's temporary directory, so runs leave
the tree clean. Every notebook (notebook_checks.ALL, one server, a CPU hog beside it): Run
All shows no error output and no widget error, after its cleanup cell nothing of it is left
running (notebook_checks.CHECK_CELL, run in its kernel), and saved and reopened it shows its
static tables and pictures, no widget view and no "Error displaying widget: model not
found". Cells are all drawn (windowing mode none), so every output is seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import notebook_checks
import pytest
from notebook_checks import ALL, CHECK_CELL, DONE, WATCH_CELL
from test_maptypes_notebooks import NEEDS, leftovers  # noqa: F401  (the fixture)

from conftest import require

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "05-live.ipynb"
SCREENSHOT = (ROOT / "docs" / "live.png" if os.environ.get("BPFNB_UPDATE_DOCS") == "1"
              else Path(tempfile.gettempdir()) / "bpfnb-live.png")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
JUPYTER = Path(sys.executable).parent / "jupyter"
WORKLOAD = """
import ctypes, time
syscall = ctypes.CDLL(None).syscall
end = time.monotonic() + 300
while time.monotonic() < end:
    for _ in range(2000):
        syscall(39)
    time.sleep(0.05)
"""

pytestmark = pytest.mark.slow
cpu_hog = notebook_checks.cpu_hog    # the fixture


def _requirements() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not JUPYTER.exists():
        pytest.skip(f"JupyterLab is not installed in this venv ({JUPYTER} is missing)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Lab:
    """A JupyterLab server in `root` with its own config, settings and runtime dirs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        labconfig = root / ".jupyter" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(
            '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
        # every cell in the page, not only those in view: the checks see all outputs
        tracker = root / ".settings" / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True)
        (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
                   JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"),
                   JUPYTER_RUNTIME_DIR=str(root / ".runtime"), IPYTHONDIR=str(root / ".ipython"))
        self.log_path = root / "server.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url("api/status"), timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"jupyter lab did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server (what a failed test left running)."""
        def call(path: str, method: str = "GET") -> bytes:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/{path}", method=method,
                headers={"Authorization": f"token {self.token}"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                return bytes(reply.read())
        for kernel in json.loads(call("api/kernels")):
            call(f"api/kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL whatever is left."""
        children = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        time.sleep(0.5)
        _kill(children)
        self._log.close()


@contextlib.contextmanager
def _lab_in(root: Path) -> Iterator[Lab]:
    """A server on a copy of the notebooks (with their recordings) in the repository's
    layout: notebooks/ beside tests/ (12-stacks builds ../tests/workload/callchain.c)."""
    _requirements()
    shutil.copytree(NOTEBOOK.parent, root / "notebooks")
    (root / "tests").symlink_to(ROOT / "tests")
    server = Lab(root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with _lab_in(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One server for every notebook of notebook_checks.ALL."""
    with _lab_in(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def shared_browser() -> Iterator[Any]:
    """One chromium for every notebook (a page each); it and its driver killed after."""
    sync_playwright = _requirements()
    before = set(_descendants(os.getpid()))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        driver = set(_descendants(os.getpid())) - before
        try:
            yield browser
        finally:
            spawned = driver | {c for pid in driver for c in _descendants(pid)}
            browser.close()
    _kill(sorted(spawned))


@pytest.fixture
def workload() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


KERNEL_IDLE = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session
        && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle';
}"""
ALL_RUN = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    return w.content.widgets.filter(c => c.model.type === 'code')
        .every(c => c.model.executionCount !== null)
        && w.sessionContext.session.kernel.status === 'idle';
}"""
ABOVE_RUN = """(i) => {
    const w = window.jupyterapp.shell.currentWidget;
    return w.content.widgets.slice(0, i).filter(c => c.model.type === 'code')
        .every(c => c.model.executionCount !== null)
        && w.sessionContext.session.kernel.status === 'idle';
}"""
RUN_AT = """async ([prefix, command]) => {
    const panel = window.jupyterapp.shell.currentWidget;
    const i = panel.content.widgets.findIndex(c => c.model.sharedModel.getSource()
                                                   .startsWith(prefix));
    panel.content.activeCellIndex = i;
    await window.jupyterapp.commands.execute(command);
    return i;
}"""  # the cell whose source starts with prefix made active, then command (its index)
ROUND_TRIP = """async () => {
    const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const t = performance.now();
    await k.requestExecute({code: '1 + 1', silent: true}).done;
    return performance.now() - t;
}"""
RUNNING = """async () => {
    const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const expr = "sorted(p.name for p in __import__('bpfnb.live.poller').live.poller.running())";
    const reply = await k.requestExecute({code: '', silent: true,
                                          user_expressions: {names: expr}}).done;
    return reply.content.user_expressions.names.data['text/plain'];
}"""
FIRST = "document.querySelector('.bpfnb-live')"
STATIC = "document.querySelector('.bpfnb-live-static')"


def _sample(page: Any, expression: str, seconds: float, every: float = 0.3) -> list[str]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(page.evaluate(expression))
        time.sleep(every)
    return out


def _changes(values: list[str]) -> int:
    return sum(a != b for a, b in zip(values, values[1:]))


def test_live_notebook_in_jupyterlab(lab: Lab, workload: subprocess.Popen[bytes],
                                     tmp_path: Path) -> None:
    sync_playwright = _requirements()
    before = set(_descendants(os.getpid()))
    spawned: set[int] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            page.goto(lab.url(f"lab/tree/notebooks/{NOTEBOOK.name}"))
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            page.evaluate("window.jupyterapp.shell.collapseLeft()")   # room for the view
            # the views keep running: run what is above their stopping cell
            stopping = page.evaluate(RUN_AT, ["procs.stop()", "notebook:run-all-above"])
            assert stopping > 0
            page.wait_for_function(ABOVE_RUN, arg=stopping, timeout=90_000, polling=250)
            assert page.locator(".jp-OutputArea-output[data-mime-type*=error]").count() == 0
            page.wait_for_function("document.querySelectorAll('.bpfnb-live').length === 3",
                                   timeout=30_000)
            assert page.evaluate(WIDGET_VIEWS) == 3        # what reopening checks
            view = page.locator(".bpfnb-live").first
            view.scroll_into_view_if_needed()

            # the kernel answers while three views refresh
            assert page.evaluate(ROUND_TRIP) < 2000

            tables = _sample(page, f"{FIRST}.querySelector('.bpfnb-live-table').textContent",
                             seconds=6)
            plots = _sample(page, f"{FIRST}.querySelector('img.bpfnb-live-plot').src",
                            seconds=3)
            assert _changes(tables) >= 3, tables[-1]
            assert _changes(plots) >= 1 and len(set(plots)) >= 2
            status = page.evaluate(f"{FIRST}.querySelector('.bpfnb-live-status').textContent")
            assert "running" in status and "entries" in status
            SCREENSHOT.parent.mkdir(exist_ok=True)
            view.screenshot(path=str(SCREENSHOT))

            # stopped, the view's output becomes the static table and plot of its last
            # refresh (what a saved notebook keeps); the other two views run on
            view.get_by_role("button", name="Stop").click()
            page.wait_for_function(
                "document.querySelectorAll('.bpfnb-live').length === 2 && "
                "document.querySelectorAll('.bpfnb-live-static').length === 1", timeout=10_000)
            after = _sample(page, f"{STATIC}.querySelector('.bpfnb-live-table').textContent",
                            seconds=3)
            assert _changes(after) == 0
            assert page.evaluate(f"{STATIC}.querySelector('img').src").startswith("data:image")
            others = page.evaluate(
                "Array.from(document.querySelectorAll('.bpfnb-live-status'))"
                ".map(e => e.textContent)")
            assert len(others) == 2 and all("running" in s for s in others), others

            # re-running a view's cell stops the view it made before
            assert page.evaluate(RUNNING).count("bpfnb-live-by_syscall") == 1
            assert page.evaluate(RUN_AT, ["per_cpu = ", "notebook:run-cell"]) >= 0
            page.wait_for_function(ABOVE_RUN, arg=stopping, timeout=30_000, polling=250)
            names = page.evaluate(RUNNING)
            assert names.count("bpfnb-live-by_syscall") == 1, names
            assert "bpfnb-live-by_proc" not in names, names     # stopped by its button
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}\nserver log:\n{lab.log()}")
            raise
        finally:   # the driver and chromium: ours, minus the server and its kernels
            server = {lab.proc.pid, *_descendants(lab.proc.pid)}
            spawned = set(_descendants(os.getpid())) - before - server - {workload.pid}
            browser.close()
    _kill(sorted(spawned))


ERROR_OUTPUTS = ".jp-OutputArea-output[data-mime-type*=error]"
# how many outputs of the notebook's model are widget views
WIDGET_VIEWS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(c => c.model.type === 'code').flatMap(c => c.model.outputs.toJSON())
    .filter(o => o.data && 'application/vnd.jupyter.widget-view+json' in o.data).length"""
# "cell N: Error displaying widget: model not found", for each widget output drawn so
WIDGET_ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .flatMap((c, i) => Array.from(c.node.querySelectorAll('.jp-OutputArea-output'))
        .map(e => e.textContent).filter(t => t.includes('Error displaying widget')
                                             || t.includes('model not found'))
        .map(t => `cell ${i}: ${t}`))"""
NONE_RUN = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(c => c.model.type === 'code').every(c => c.model.executionCount === null)"""
# the error and stderr outputs of the notebook's model (all of them, drawn or not)
ERROR_TEXTS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(c => c.model.type === 'code').flatMap(c => c.model.outputs.toJSON())
    .filter(o => o.output_type === 'error' || o.name === 'stderr')
    .map(o => o.output_type === 'error' ? o.ename + ': ' + o.evalue : o.text)"""
# Run All over: every code cell ran (but the empty ones, exercises: JupyterLab does not run
# them), or an error stopped it (the cells below stay unrun); either way the kernel is idle
RUN_ALL_OVER = f"""(name) => {{
    const w = window.jupyterapp.shell.currentWidget;
    const k = w && w.context && w.context.path === name && w.sessionContext.session
        && w.sessionContext.session.kernel;
    if (!k || k.status !== 'idle') return false;
    return w.content.widgets.filter(c => c.model.type === 'code'
                                         && c.model.sharedModel.getSource().trim() !== '')
        .every(c => c.model.executionCount !== null) || ({ERROR_TEXTS})().length > 0;
}}"""
NOT_RUN = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .map((c, i) => [i, c.model.type, c.model.executionCount,
                    c.model.sharedModel.getSource().slice(0, 60)])
    .filter(([i, type, count, source]) => type === 'code' && count === null)"""
OPENED = """(name) => {
    const w = window.jupyterapp.shell.currentWidget;
    const k = w && w.context && w.context.path === name && w.sessionContext.session
        && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle';
}"""
# code run in the notebook's kernel outside its cells (not saved, no execution count):
# what it printed, and its error if any
IN_KERNEL = """async (code) => {
    const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const out = [];
    const future = k.requestExecute({code: code, silent: false, store_history: false});
    future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'stream') out.push(msg.content.text);
        if (msg.header.msg_type === 'error')
            out.push(msg.content.ename + ': ' + msg.content.evalue);
    };
    const reply = await future.done;
    return {ok: reply.content.status === 'ok', out: out.join('')};
}"""
# Run All of one notebook, the hog beside it: 6-30 s measured (12-stacks, which profiles,
# the longest) with a load average of 7 on 2 cores
RUN_ALL_S = 120


def _command(page: Any, command: str) -> None:
    """Start a JupyterLab command (not waiting for it: some wait for a dialog)."""
    page.evaluate(f"() => {{ window.jupyterapp.commands.execute('{command}'); }}")


def _open(page: Any, lab: Lab, name: str) -> None:
    """Open notebooks/NAME alone, in a workspace of its own (nothing restored beside it)."""
    page.goto(lab.url(f"lab/workspaces/{Path(name).stem}/tree/notebooks/{name}"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_function(OPENED, arg=f"notebooks/{name}", timeout=90_000)


def _in_kernel(page: Any, code: str) -> str:
    """Run `code` in the open notebook's kernel; what it printed (fails on its error)."""
    result = page.evaluate(IN_KERNEL, code)
    assert result["ok"], result["out"]
    return str(result["out"])


def _close_and_shutdown(page: Any) -> None:
    _command(page, "notebook:close-and-shutdown")
    page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)   # "Shut down?"
    page.wait_for_timeout(1500)


@pytest.mark.usefixtures("kernel", "leftovers")
@pytest.mark.parametrize("name", ALL)
def test_notebook_run_all_then_reopened(shared_lab: Lab, shared_browser: Any, name: str,
                                        tmp_path: Path,
                                        cpu_hog: subprocess.Popen[bytes]) -> None:
    """Run All, a CPU hog beside it: no error output, no widget error, and after the cleanup
    cell nothing of the notebook is left running (notebook_checks); saved and reopened:
    still none, and the live views that the cleanup cell stopped show their static table
    and plot."""
    for feature in NEEDS.get(name[:2], []):
        require(feature())
    lab = shared_lab
    page = shared_browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        _open(page, lab, name)
        _command(page, "notebook:clear-all-cell-outputs")   # no execution counts left
        page.wait_for_function(NONE_RUN, timeout=10_000)
        _in_kernel(page, WATCH_CELL)
        start = time.monotonic()
        _command(page, "notebook:run-all-cells")
        page.wait_for_function(RUN_ALL_OVER, arg=f"notebooks/{name}",
                               timeout=RUN_ALL_S * 1000, polling=500)
        print(f"{name}: Run All took {time.monotonic() - start:.1f} s")
        assert page.evaluate(ERROR_TEXTS) == []
        assert page.locator(ERROR_OUTPUTS).count() == 0
        assert page.evaluate(WIDGET_ERRORS) == []
        assert page.locator(".jp-OutputArea-output").count() > 0
        assert DONE in _in_kernel(page, CHECK_CELL)
        _command(page, "docmanager:save")
        page.wait_for_timeout(1500)
        _close_and_shutdown(page)
        _open(page, lab, name)                   # reopened: a new kernel, saved outputs
        page.wait_for_timeout(2000)
        assert page.evaluate(WIDGET_ERRORS) == []
        assert page.evaluate(ERROR_TEXTS) == []
        assert page.locator(ERROR_OUTPUTS).count() == 0
        assert page.evaluate(WIDGET_VIEWS) == 0        # no widget views left
        if name == NOTEBOOK.name:
            assert page.locator(".bpfnb-live-static").count() == 3
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'failure.png'}\nserver log:\n{lab.log()}")
        print("cells not run:", page.evaluate(NOT_RUN))
        raise
    finally:
        page.close()
        lab.shutdown_kernels()
    assert cpu_hog.poll() is None, "the hog ran beside the whole notebook"
