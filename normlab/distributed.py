"""Run a function in a few torch.distributed processes on this machine and collect their results.

Notebook 06, §1. :func:`run_processes` does on one machine what ``torchrun`` does on many:
it starts ``world_size`` Python processes, each given the environment that torchrun would
give it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1`` and
``MASTER_PORT``, a port that was free a moment before), and each runs::

    python -m normlab.distributed package.module:function --task ... --result ...

That entry point (:func:`main`) joins the gloo process group, calls ``function(**kwargs)``,
and leaves the group with ``destroy_process_group`` whether the function returned or
raised. Under torchrun the same command runs the same worker code across machines.

Why new processes and not ``torch.multiprocessing.spawn``: spawn pickles the worker
function *by name*, and a new Python process cannot find a function that was defined in a
notebook (spawn's child re-imports a script's ``__main__``, but a notebook has no file to
re-import). normlab's processes run ``python -m normlab.distributed`` and import only the
worker's module, so the worker must live in an importable module, here
``normlab.experiments.batch_norm_across_processes``. Like spawn's children, they import it
through the parent's ``sys.path``, so a folder the notebook added to it is found too.

Nothing waits forever and nothing is left behind:

- every process group is created with a timeout, so a collective whose partner is gone
  raises instead of blocking;
- the parent waits with a deadline; as soon as one process fails, or the deadline passes,
  it stops all of them and raises :class:`WorkerError` with the failing rank's error;
- each process starts its own process group, and on every path out of
  :func:`run_processes`, including Kernel > Interrupt, the whole group is stopped and the
  process reaped: a subprocess that a worker started ends with it; each worker also exits
  if its parent disappears;
- :func:`leftovers` reports any launched process still running or port still listening.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import inspect
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BACKEND = "gloo"
MAX_PROCESSES = 8  # a teaching machine has 2-8 cores; more processes only wait for each other
DEFAULT_TIMEOUT = 120.0  # seconds from start to the last result; importing torch takes most of it
POLL_SECONDS = 0.02
MESSAGE_LIMIT = 2000  # characters of a worker's error quoted in WorkerError's message
STOP_GRACE = 3.0  # seconds a process gets to exit after SIGTERM before SIGKILL
# What gloo says in a rank whose partner exited: such a rank is reported only if no other rank failed.
LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket closed", "GLHF!")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class WorkerError(RuntimeError):
    """A worker process failed or ran past the deadline; the message names the rank and its error.

    ``rank`` is the failing rank (None after a timeout), ``log`` that process's output.
    """

    def __init__(self, message: str, rank: int | None, log: str) -> None:
        super().__init__(message)
        self.rank, self.log = rank, log


@dataclass(frozen=True)
class Launch:
    """One call of :func:`run_processes`: the rendezvous port and the process ids it used."""

    target: str
    port: int
    pids: tuple[int, ...]


LAUNCHES: list[Launch] = []  # every launch of this Python process, for leftovers()


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on now: the one the OS picks for a socket bound to port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def target_name(worker: Callable[..., Any]) -> str:
    """``"module:function"`` for a function that a new Python process can import; else a TypeError."""
    if not inspect.isfunction(worker):
        raise TypeError(
            "run_processes needs a plain function defined with def at the top level of a module; got "
            f"{type(worker).__module__}.{type(worker).__qualname__} {worker!r:.80}. Fix: pass the function itself "
            "and its arguments as keyword arguments, run_processes(fn, world_size, name=value), not a "
            "functools.partial, a lambda or a callable object."
        )
    module, name = getattr(worker, "__module__", None), getattr(worker, "__qualname__", "")
    if module in (None, "__main__") or "<" in name:
        raise TypeError(
            f"run_processes needs a function that a new Python process can import by name; "
            f"{getattr(worker, '__name__', worker)!r} was defined in {module or 'no module'} "
            "(a notebook, a script's __main__ or another function), which the processes it starts "
            "(python -m normlab.distributed) do not import. "
            "Fix: define the worker at the top level of a .py module and import it from there."
        )
    found: object = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    if found is not worker:
        raise TypeError(f"{module}.{name} does not name this function; define the worker at the top level of {module}.")
    return f"{module}:{name}"


def run_processes(
    worker: Callable[..., Any], world_size: int, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
) -> list[Any]:
    """Run ``worker(**kwargs)`` in ``world_size`` gloo processes; return their results, by rank.

    Each process has joined the default process group when ``worker`` starts (so
    ``torch.distributed.get_rank()`` works inside it) and leaves it afterwards. ``kwargs``
    and the results travel by pickle. Raises :class:`WorkerError` if a process fails (the
    others are stopped at once) or if they have not all finished ``timeout`` seconds after
    the start. Notebook 06, §1.
    """
    target = target_name(worker)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or not 1 <= world_size <= MAX_PROCESSES:
        raise ValueError(
            f"world_size must be a whole number of processes from 1 to {MAX_PROCESSES}; got {world_size!r}. "
            "Fix: world_size=2 or 4 on a laptop."
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a positive, finite number of seconds, e.g. 60; got {timeout!r}.")
    with tempfile.TemporaryDirectory(prefix="normlab-processes-") as folder:
        work = Path(folder)
        (work / "task.pkl").write_bytes(_pickled_arguments(kwargs))
        port = free_port()
        processes: list[subprocess.Popen] = []
        logs = []
        try:
            for rank in range(world_size):
                logs.append(open(work / f"rank-{rank}.log", "wb"))  # noqa: SIM115 (closed in finally)
                processes.append(
                    subprocess.Popen(
                        _command(target, work, rank, timeout),
                        env=_environment(rank, world_size, port),
                        stdin=subprocess.DEVNULL,
                        stdout=logs[-1],
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: _stop ends what it started too
                    )
                )
            LAUNCHES.append(Launch(target, port, tuple(p.pid for p in processes)))
            _wait(processes, work, target, time.monotonic() + timeout, timeout)
            for rank in range(world_size):
                if not (work / f"result-{rank}.pkl").exists():
                    raise WorkerError(
                        f"rank {rank} of {world_size} exited with code 0 but returned no result from {target}: "
                        "the worker ended its process (sys.exit() or os._exit()) before returning. "
                        "Fix: return the value instead of exiting.",
                        rank,
                        _read_log(work, rank),
                    )
            return [pickle.loads((work / f"result-{rank}.pkl").read_bytes()) for rank in range(world_size)]
        finally:
            _stop(processes)
            for log in logs:
                log.close()


def _pickled_arguments(kwargs: dict[str, Any]) -> bytes:
    """The keyword arguments as pickle bytes, or a TypeError naming the one that cannot travel."""
    for name, value in kwargs.items():
        try:
            pickle.dumps(value)
        except Exception as error:
            raise TypeError(
                f"run_processes sends the keyword arguments to every process by pickle; {name}="
                f"{type(value).__name__} cannot be pickled ({type(error).__name__}: {error}). Fix: pass plain "
                "data (numbers, tuples, tensors) and build the rest inside the worker."
            ) from None
    return pickle.dumps(kwargs)


def _command(target: str, work: Path, rank: int, timeout: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "normlab.distributed",
        target,
        "--task",
        str(work / "task.pkl"),
        "--result",
        str(work / f"result-{rank}.pkl"),
        "--timeout",
        str(timeout),
        "--parent",
        str(os.getpid()),
        "--sys-path",
        json.dumps(_import_path()),
    ]


def _import_path() -> list[str]:
    """This process's ``sys.path`` for the workers, ``''`` (the current folder) made absolute: what
    ``torch.multiprocessing.spawn`` gives its children (multiprocessing's spawn start method)."""
    return [entry or os.getcwd() for entry in sys.path]


def _environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What torchrun sets for a process, plus one thread each and normlab on the import path."""
    env = dict(os.environ)
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR=HOST,
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p),
    )
    return env


def _wait(processes: list[subprocess.Popen], work: Path, target: str, deadline: float, timeout: float) -> None:
    """Return when every process exited with 0; raise WorkerError at the first failure or at the deadline."""
    world_size = len(processes)
    while True:
        codes = [_exit_code(p) for p in processes]
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            codes = _settle(processes)  # the rank that raised may exit after the partner it left behind
            failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
            rank = min(failed, key=lambda r: (_lost_peer(_read_log(work, r)), r))
            log = _read_log(work, rank)
            reason = _shortened(_last_error(log, codes[rank]))
            raise WorkerError(
                f"rank {rank} of {world_size} failed in {target}: {reason}{'' if reason.endswith(('.', '?')) else '.'} "
                "The other processes were stopped; its full output is in WorkerError.log.",
                rank,
                log,
            )
        if all(code == 0 for code in codes):
            return
        if time.monotonic() > deadline:
            waiting = [rank for rank, code in enumerate(codes) if code is None]
            raise WorkerError(
                f"{target} did not finish within {timeout:g} s (ranks still running: {waiting}); "
                "all processes were stopped. A worker that waits in a collective for a rank that never "
                "calls it blocks until the process group's timeout: check that every rank makes the same "
                "collective calls in the same order, or raise the timeout on a slow machine.",
                None,
                "\n".join(f"--- rank {r} ---\n{_read_log(work, r)}" for r in range(world_size)),
            )
        time.sleep(POLL_SECONDS)


def _settle(processes: list[subprocess.Popen], seconds: float = 2.0) -> list[int | None]:
    """Exit codes after giving the other processes a moment to finish failing too."""
    deadline = time.monotonic() + seconds
    while any(_exit_code(p) is None for p in processes) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return [_exit_code(p) for p in processes]


def _exit_code(process: subprocess.Popen) -> int | None:
    """The exit code (minus the signal's number if a signal ended it), or None while it runs.

    Unlike ``Popen.poll`` this leaves an exited process unreaped, so its id, which is also its
    process group's, cannot go to another process before :func:`_stop` has signalled the group.
    """
    if process.returncode is not None:
        return process.returncode
    info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _lost_peer(log: str) -> bool:
    """True when a rank only failed because a partner went away (a gloo connection error)."""
    return any(marker in log for marker in LOST_PEER)


def _read_log(work: Path, rank: int) -> str:
    path = work / f"rank-{rank}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _last_error(log: str, code: int | None) -> str:
    """The last line of the log's last traceback ("ValueError: ..."), or how the process ended."""
    log = re.sub(r"^\[rank\d+\]:", "", log, flags=re.MULTILINE)  # torch prefixes a worker's stderr lines
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    aborted = [line.removeprefix("what():").strip() for line in lines if line.startswith("what():")]
    if aborted:  # a C++ exception nobody caught (gloo): the process aborted with this message
        return f"the process aborted (SIGABRT) with: {aborted[-1]}"
    if "Traceback (most recent call last):" in log:
        tail = log.rsplit("Traceback (most recent call last):", 1)[1]
        errors = [line for line in tail.splitlines() if line and not line.startswith((" ", "\t"))]
        if errors:
            return errors[-1].strip()
    if code is not None and code < 0:
        return f"the process was killed by signal {signal.Signals(-code).name}"
    return lines[-1] if lines else f"the process exited with code {code}"


def _shortened(reason: str, limit: int = MESSAGE_LIMIT) -> str:
    """The reason, cut to ``limit`` characters (the whole text stays in WorkerError.log)."""
    if len(reason) <= limit:
        return reason
    return f"{reason[:limit]}... ({len(reason) - limit} more characters in WorkerError.log)"


def _stop(processes: list[subprocess.Popen]) -> None:
    """Terminate each process's group (the worker and any process it started), kill what ignores it, reap.

    A group outlives its first process while something the worker started still runs, so it is
    signalled even after the worker itself has exited; the worker is reaped last.
    """
    for p in processes:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while any(_exit_code(p) is None for p in processes) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    for p in processes:
        _signal_group(p, signal.SIGKILL)
        p.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group that ``process`` leads (start_new_session), if any of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def leftovers() -> list[str]:
    """What the launches of this Python process left behind: processes still alive, ports still listening."""
    found = []
    for launch in LAUNCHES:
        found += [f"process {pid} ({launch.target})" for pid in launch.pids if _alive(pid)]
        if _listening(launch.port):
            found.append(f"port {launch.port} ({launch.target})")
    return found


def _alive(pid: int) -> bool:
    """True if a process with this id exists and is not a zombie (a reaped child is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _listening(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


# ---- the worker side: what each started process runs ------------------------------------------


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def _exit_with_parent(parent: int) -> None:
    """Exit this process if its parent (the notebook's kernel) disappears."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="normlab-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Entry point of one process: join the group (env:// rendezvous), run the worker, leave the group.

    The environment gives the rank and the rendezvous address, as torchrun does. Without
    ``--result`` the result is printed, which is what a torchrun run shows.
    """
    parser = argparse.ArgumentParser(prog="python -m normlab.distributed", description=main.__doc__)
    parser.add_argument("target", help="the worker function, as package.module:function")
    parser.add_argument("--task", type=Path, help="a pickled dict of keyword arguments for the worker")
    parser.add_argument("--result", type=Path, help="where to write the pickled result")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="process group timeout, seconds")
    parser.add_argument("--parent", type=int, help="exit when this process id is no longer the parent")
    parser.add_argument("--sys-path", type=json.loads, help="the import path to use, as a JSON list of folders")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _exit_with_parent(args.parent)
    if args.sys_path is not None:
        sys.path[:] = args.sys_path  # before the worker's module and its pickled arguments are imported

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    worker = _resolve(args.target)
    kwargs = pickle.loads(args.task.read_bytes()) if args.task else {}
    dist.init_process_group(BACKEND, timeout=datetime.timedelta(seconds=args.timeout))
    try:
        result = worker(**kwargs)
    finally:
        if dist.is_initialized():  # a worker may have left the group itself
            dist.destroy_process_group()
    if args.result is None:
        print(f"rank {int(os.environ['RANK'])}: {result}")
        return
    partial = args.result.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(result))
    partial.replace(args.result)  # the parent never reads half a result
    # Nothing is left to clean up (the group is destroyed, the result written): skip the interpreter's
    # teardown of torch, which took 1-4 s of a launch here. stdio first, so the log keeps every line.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
