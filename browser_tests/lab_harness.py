"""Start JupyterLab or Notebook 7 the way `make lab` does, find a Chromium, and stop both without leftovers.

Used by the browser tests (`make test-browser`). Nothing here downloads anything: the
browser must already be on the machine (Debian's `chromium`, or one that
`python -m playwright install chromium` put under ~/.cache/ms-playwright).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # a dependency of ipykernel, which pyproject.toml pins

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
SCREENSHOT_DIR = REPO / ".browser-screenshots"

SERVER_START_TIMEOUT_S = 120  # `make lab` may first have to (re)install the venv stamp
SERVER_STOP_TIMEOUT_S = 20

# As root, Chromium needs --no-sandbox; the rest keep it from calling out to Google's
# services, which this offline machine refuses (many connections at a time otherwise).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
]
SYSTEM_CHROMIUM_PATHS = [Path("/usr/bin/chromium"), Path("/usr/bin/chromium-browser")]
INSTALL_HINT = (
    "No Chromium found for the browser tests. Looked for {looked}. "
    "Install one (nothing is downloaded at test time): on Debian/Ubuntu run "
    "`sudo apt-get install chromium` (as root: `apt-get update && apt-get install -y chromium`), "
    "or, where Playwright's download works, `.venv/bin/python -m playwright install chromium`."
)


class BrowserNotFound(RuntimeError):
    """No Chromium on this machine; the message says how to install one."""


def playwright_chromium_paths(browsers_dir: Path) -> list[Path]:
    """Chromium executables that `playwright install` left in ``browsers_dir`` (newest first)."""
    patterns = ["chromium-*/chrome-linux*/chrome", "chromium_headless_shell-*/chrome-*/*headless_shell"]
    found = [p for pattern in patterns for p in browsers_dir.glob(pattern) if p.is_file()]
    return sorted(found, key=lambda p: p.parent.parent.name, reverse=True)


def find_chromium(system_paths: list[Path] | None = None, browsers_dir: Path | None = None) -> Path:
    """The Chromium to drive: Debian's /usr/bin/chromium first, else one Playwright installed.

    Raises BrowserNotFound (with the command that installs one) when there is none.
    """
    system_paths = SYSTEM_CHROMIUM_PATHS if system_paths is None else system_paths
    if browsers_dir is None:
        browsers_dir = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    for path in system_paths:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    installed = playwright_chromium_paths(browsers_dir)
    if installed:
        return installed[0]
    looked = ", ".join(str(p) for p in system_paths) + f" and {browsers_dir}"
    raise BrowserNotFound(INSTALL_HINT.format(looked=looked))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``processes`` that still exist (zombies count as gone)."""
    running = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.NoSuchProcess:
            pass
    return running


def describe(processes: list[psutil.Process]) -> str:
    """One line per process: pid and command line (for failure messages)."""
    lines = []
    for proc in processes:
        try:
            lines.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            lines.append(f"pid {proc.pid}: (gone)")
    return "\n".join(lines)


@dataclass(frozen=True)
class FrontEnd:
    """A Jupyter front end the notebooks are opened in: `jupyter <command>`."""

    name: str  # as learners call it, for messages and test ids
    command: str  # the jupyter subcommand that serves it
    app: str  # the application class whose options set its settings and workspaces folders

    @property
    def test_id(self) -> str:
        """The name without spaces, for pytest ids ("JupyterLab", "Notebook7")."""
        return self.name.replace(" ", "")


LAB = FrontEnd("JupyterLab", "lab", "LabApp")
NOTEBOOK7 = FrontEnd("Notebook 7", "notebook", "JupyterNotebookApp")
FRONT_ENDS = (LAB, NOTEBOOK7)


# Settings a fresh user directory starts with: no "fetch Jupyter news?" toast over the page,
# and no autosave, which would write the browser's outputs into the repository's notebooks.
LAB_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


@dataclass
class JupyterServer:
    """A running JupyterLab or Notebook 7 server: its front end, address, token, process group and log."""

    front_end: FrontEnd
    port: int
    token: str
    process: subprocess.Popen
    log_path: Path
    # Every process it started (make, the jupyter server, kernels): all must be gone after stop.
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, method: str, path: str, timeout: float = 10.0) -> object:
        """Call the Jupyter server REST API; return the decoded JSON (None for an empty reply)."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def notebook_url(self, notebook: str, workspace: str) -> str:
        """Where the front end shows ``notebook``.

        JupyterLab: in its own, reset ``workspace`` (no tabs or layout from earlier runs).
        Notebook 7 has no workspaces: one page per notebook.
        """
        if self.front_end == LAB:
            return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"
        return f"{self.url}/notebooks/{notebook}?token={self.token}"

    def record_processes(self) -> list[psutil.Process]:
        """Remember the started process and every one below it (kernels start in sessions of their own)."""
        try:
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                self.seen.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the REST API, as the Lab UI's "Shut Down All" does."""
        self.record_processes()
        for kernel in self.api("GET", "/api/kernels"):
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30.0)
            except urllib.error.HTTPError as error:
                if error.code != 404:  # already gone is fine
                    raise

    def kernel_processes(self) -> list[psutil.Process]:
        """The processes of the kernels this server started (``python -m ipykernel_launcher ...``)."""
        kernels = []
        for proc in alive(self.record_processes()):
            try:
                if "ipykernel_launcher" in proc.cmdline():
                    kernels.append(proc)
            except psutil.NoSuchProcess:
                pass
        return kernels

    @contextmanager
    def kernels_paused(self) -> Iterator[int]:
        """Every kernel stopped (SIGSTOP) inside the block, then resumed (SIGCONT); yields how many.

        Whatever the page does meanwhile needs no kernel round trip: a widget that waits for a
        kernel's reply shows nothing new until the block ends. Raises when there is no kernel to
        pause, so that the claim is never made of nothing.
        """
        kernels = self.kernel_processes()
        if not kernels:
            raise RuntimeError(f"{self.front_end.name}: no kernel process to pause")
        try:
            for kernel in kernels:
                kernel.suspend()
            yield len(kernels)
        finally:
            for kernel in alive(kernels):
                kernel.resume()

    def wait_until_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The {self.front_end.name} server exited with code {self.process.returncode} before answering.\n"
                    f"Its output:\n{self.log_tail()}"
                )
            try:
                self.api("GET", "/api/status", timeout=2.0)
                return
            except urllib.error.HTTPError:  # it answers, but refuses: a wrong token is no reason to wait
                raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        raise RuntimeError(
            f"{self.front_end.name} did not answer on {self.url} within {timeout:.0f} s.\nIts output:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Kernels via the API, then the server's whole process group, then any straggler, by pid."""
        self.record_processes()
        try:
            if self.process.poll() is None:
                self.shutdown_kernels()
        except Exception:  # the server may be broken or gone: the signals below still stop everything
            pass
        self.record_processes()
        for proc in alive(list(self.seen.values())):  # a paused kernel would hold SIGTERM until resumed
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                pass
        for sig, grace in [(signal.SIGTERM, SERVER_STOP_TIMEOUT_S), (signal.SIGKILL, 5)]:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            for proc in alive(list(self.seen.values())):
                try:
                    proc.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive(list(self.seen.values())), timeout=grace)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            if not alive(list(self.seen.values())):
                break


def server_command(front_end: FrontEnd, port: int, token: str, state_dir: Path, project_dir: Path) -> list[str]:
    """The command that serves ``project_dir``/notebooks privately: token, 127.0.0.1, a given port, no browser.

    JupyterLab is started by `make lab` itself, with these options in LAB_ARGS. Notebook 7 has
    no make target: it is started with the options `make lab` gives JupyterLab (notebooks/ as
    root, 127.0.0.1, --allow-root as root) from the same .venv. ``project_dir`` is the
    repository; the harness self-test passes a stand-in tree (its own notebooks/, the
    repository's .venv) and the repository's Makefile.
    """
    args = [
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--{front_end.app}.workspaces_dir={state_dir / 'workspaces'}",
        f"--{front_end.app}.user_settings_dir={state_dir / 'user-settings'}",
        # Opening a notebook makes a checkpoint copy; keep it out of the repository's notebooks/.
        f"--FileCheckpoints.checkpoint_dir={state_dir / 'checkpoints'}",
    ]
    if front_end == LAB:
        command = ["make", "--no-print-directory", "lab", "LAB_ARGS=" + " ".join(shlex.quote(a) for a in args)]
        if project_dir != REPO:
            command[1:1] = ["-f", str(REPO / "Makefile")]
        return command
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    jupyter = str(project_dir / ".venv" / "bin" / "jupyter")
    return [jupyter, front_end.command, "--notebook-dir=notebooks", "--ServerApp.ip=127.0.0.1", *root_flag, *args]


def server_environment(state_dir: Path) -> dict[str, str]:
    """The caller's environment without make's job-server variables, and private Jupyter dirs.

    Private config/data/runtime dirs keep a user's own Jupyter config (a password, say)
    out of the test, and the test's trust database and connection files out of $HOME.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}}
    env.update(
        JUPYTER_CONFIG_DIR=str(state_dir / "config"),
        JUPYTER_RUNTIME_DIR=str(state_dir / "runtime"),
        JUPYTER_DATA_DIR=str(state_dir / "data"),
        IPYTHONDIR=str(state_dir / "ipython"),
        # Notebook 7 reads its user settings (autosave off) from here; --JupyterNotebookApp.user_settings_dir
        # alone leaves them unread, and Notebook 7 then autosaves over the repository's notebooks.
        JUPYTERLAB_SETTINGS_DIR=str(state_dir / "user-settings"),
    )
    return env


@contextmanager
def running_jupyter(front_end: FrontEnd, project_dir: Path = REPO) -> Iterator[JupyterServer]:
    """``front_end``'s server on a free port with a random token; always stopped (kernels included) on exit."""
    state_dir = Path(tempfile.mkdtemp(prefix=f"normlab-{front_end.command}-"))
    for relative, settings in LAB_USER_SETTINGS.items():
        path = state_dir / "user-settings" / relative
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(settings))
    port, token = free_port(), secrets.token_hex(24)
    log_path = state_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(front_end, port, token, state_dir, project_dir),
            cwd=project_dir,
            env=server_environment(state_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = JupyterServer(front_end=front_end, port=port, token=token, process=process, log_path=log_path)
    try:
        server.wait_until_ready()
        server.record_processes()
        yield server
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def running_lab(project_dir: Path = REPO) -> AbstractContextManager[JupyterServer]:
    """JupyterLab as `make lab` starts it (what benchmarks/browser_widgets.py measures)."""
    return running_jupyter(LAB, project_dir)


def browser_marker() -> str:
    """A switch Chromium ignores, put on its command line to find its processes afterwards."""
    return f"--normlab-browser-test={uuid.uuid4().hex}"


def processes_with_argument(argument: str) -> list[psutil.Process]:
    """Processes whose command line contains ``argument``, with all their descendants."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if argument in (proc.info["cmdline"] or []):
            found[proc.pid] = proc
            try:
                found.update((child.pid, child) for child in proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


def leftovers_of(server: JupyterServer) -> list[str]:
    """What is still running of a stopped server: an open port, or processes it started."""
    found = [f"port {server.port} still accepts connections"] if port_is_open(server.port) else []
    remaining = alive(list(server.seen.values()))
    if remaining:
        found.append("processes still running:\n" + describe(remaining))
    return found


@contextmanager
def running_chromium(playwright, executable: Path) -> Iterator[tuple[object, str]]:
    """A headless Chromium (and the marker on its command line); always closed, and killed if need be."""
    marker = browser_marker()
    browser = playwright.chromium.launch(executable_path=str(executable), headless=True, args=[*CHROMIUM_FLAGS, marker])
    try:
        yield browser, marker
    finally:
        processes = processes_with_argument(marker)
        try:
            browser.close()
        finally:
            for proc in psutil.wait_procs(alive(processes), timeout=10)[1]:
                proc.kill()
