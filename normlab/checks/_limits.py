"""A time limit that really stops learner code, and that Kernel -> Interrupt reaches.

Any exception can be caught, so stopping code means making each of its next steps fail: a ``SIGALRM`` timer or
``SIGINT`` (in the main thread; elsewhere, ``PyThreadState_SetAsyncExc`` on a worker thread) raises :class:`Stop`,
then a trace function raises it again at each line of a learner frame (never in library frames, which clean up
normally). A thread blocked in C cannot be stopped; code hoarding its Stops gets ``on_stuck`` after
:data:`STUCK_AFTER` s. tests/test_checks_hostile.py holds the cases.
"""

from __future__ import annotations

import ctypes
import math
import signal
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import FrameType

import torch

GRACE = 1.0  # seconds a worker thread gets to stop before it is reported as still running
REPEAT = 0.1  # seconds between repeated signals once the time is up (for code blocked in C)
STUCK_AFTER = 3.0  # seconds after the first Stop before on_stuck is called
THREAD_NAME = "normlab-check"
TIME_LIMIT = "time limit"
INTERRUPT = "interrupt"
_STOPPERS: dict[int, _Stopper] = {}  # thread id -> the stopper of the limited call running in it
_LIBRARY_DIRS = tuple(  # the standard library, site-packages, torch and normlab
    str(Path(p).resolve())
    for p in {
        *map(sysconfig.get_path, ("stdlib", "purelib", "platlib")),
        torch.__path__[0],
        str(Path(__file__).parents[1]),
    }
)


@cache
def is_library(filename: str) -> bool:
    """True for the files of the standard library, site-packages, torch and normlab (not the learner's)."""
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return path.startswith(_LIBRARY_DIRS)


class Stop(BaseException):
    """Raised in learner code past its time limit or interrupted (``except Exception`` misses it); one caught and
    dropped re-arms the trace function as it is freed, so the next line raises another."""

    def __init__(self, stopper: _Stopper | None = None) -> None:
        self.stopper = stopper or _STOPPERS.get(threading.get_ident())  # no argument: sent to a worker thread
        super().__init__(self.stopper.reason if self.stopper else None)

    def __del__(self) -> None:
        if self.stopper is not None:
            self.stopper.rearm(sys._getframe().f_back)


@dataclass(frozen=True)
class Finished:
    """How one limited call ended: a value, an exception, or stopped (``stopped`` says why)."""

    value: object = None
    error: BaseException | None = None
    stopped: str | None = None  # TIME_LIMIT or INTERRUPT
    still_running: bool = False  # a worker thread that could not be stopped


class _Stopper:
    """The trace function of one limited call: once stopped, every line of the learner's frames raises Stop."""

    def __init__(self, boundary: FrameType | None, on_stuck: Callable[[], None] | None = None) -> None:
        self.boundary = boundary  # the frame that called the learner's code: tracing stops below it
        self.on_stuck = on_stuck
        self.thread = threading.get_ident()  # the thread that runs the learner's code
        self.reason: str | None = None
        self.active = True
        self.since = 0.0
        self.traced: list[FrameType] = []

    def stop(self, reason: str, frame: FrameType | None) -> Stop:
        """Ask the code to stop: arm the trace function on the stack from ``frame`` up; the Stop to raise."""
        if self.reason is None:
            self.reason, self.since = reason, time.monotonic()
        elif self.on_stuck is not None and time.monotonic() - self.since > STUCK_AFTER:
            self.on_stuck()
            self.on_stuck = None
        self.rearm(frame)
        return Stop(self)

    def rearm(self, frame: FrameType | None) -> None:
        """Trace each learner frame from ``frame`` up to the boundary, and every frame entered from now on."""
        if not self.active or self.reason is None:
            return
        while frame is not None and frame is not self.boundary:
            if not is_library(frame.f_code.co_filename):
                frame.f_trace = self.trace
                self.traced.append(frame)
            frame = frame.f_back
        if threading.get_ident() == self.thread:  # sys.settrace acts on the calling thread only
            sys.settrace(self.trace)

    def trace(self, frame: FrameType, event: str, arg: object) -> Callable | None:
        if not self.active or self.reason is None or is_library(frame.f_code.co_filename):
            return None  # library frames are not traced: they unwind normally
        raise Stop(self)

    def release(self) -> None:
        """End the call: no Stop is raised or re-armed any more, and no frame keeps the trace function."""
        self.active = False
        _STOPPERS.pop(self.thread, None)
        for frame in self.traced:
            frame.f_trace = None
        self.traced.clear()


def run_limited(fn: Callable[[], object], time_limit: float, on_stuck: Callable[[], None] | None = None) -> Finished:
    """Run ``fn()`` and return how it ended; never raises, whatever ``fn`` does. ``time_limit`` may be inf."""
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _run_in_main_thread(fn, time_limit, on_stuck)
    return _run_in_worker_thread(fn, time_limit)


def _run_in_main_thread(fn: Callable[[], object], time_limit: float, on_stuck: Callable[[], None] | None) -> Finished:
    stopper = _Stopper(sys._getframe(), on_stuck)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise stopper.stop(TIME_LIMIT if signum == signal.SIGALRM else INTERRUPT, frame)

    old_trace, start = sys.gettrace(), time.monotonic()
    old_alarm, old_interrupt = signal.signal(signal.SIGALRM, on_signal), signal.signal(signal.SIGINT, on_signal)
    limit = time_limit if math.isfinite(time_limit) else 0.0  # 0 disarms: no limit
    old_timer, finished = (0.0, 0.0), Finished()
    try:
        try:
            old_timer = signal.setitimer(signal.ITIMER_REAL, limit, REPEAT if limit else 0.0)
            finished = Finished(value=fn())
        except BaseException as exc:  # learner code may raise anything
            finished = Finished(error=exc)
        finally:
            while True:  # a last Stop can still arrive here: repeat until everything is off
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0.0)
                    stopper.release()
                    sys.settrace(old_trace)
                    signal.signal(signal.SIGALRM, signal.SIG_DFL if old_alarm is None else old_alarm)
                    signal.signal(signal.SIGINT, signal.default_int_handler if old_interrupt is None else old_interrupt)
                    break
                except Stop:
                    continue
    except Stop:  # arrived in this function's own code, just after the learner's code had ended
        pass
    if old_timer[0] > 0:  # someone else's timer (pytest-timeout, say): give it back its remaining time
        signal.setitimer(signal.ITIMER_REAL, max(old_timer[0] - (time.monotonic() - start), 1e-3), old_timer[1])
    return Finished(stopped=stopper.reason) if stopper.reason else finished


def _run_in_worker_thread(fn: Callable[[], object], time_limit: float) -> Finished:
    stopper = _Stopper(None)
    box: dict[str, object] = {}
    grad_enabled = torch.is_grad_enabled()  # grad mode is per thread: carry it over

    def run() -> None:
        stopper.thread = threading.get_ident()
        _STOPPERS[stopper.thread] = stopper
        sys.settrace(stopper.trace)  # does nothing until stopped
        try:
            with torch.set_grad_enabled(grad_enabled):
                box["value"] = fn()
        except BaseException as exc:  # learner code may raise anything
            box["error"] = exc
        finally:
            sys.settrace(None)

    worker = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
    worker.start()
    reason = None
    try:
        worker.join(time_limit if math.isfinite(time_limit) else None)
        if worker.is_alive():
            reason = TIME_LIMIT
    except KeyboardInterrupt:  # the caller is the main thread (Windows): Ctrl-C or Kernel -> Interrupt
        reason = INTERRUPT
    if reason is None:
        error = box.get("error")
        return Finished(value=box.get("value"), error=error if isinstance(error, BaseException) else None)
    ident = worker.ident
    assert ident is not None  # set once start() has returned
    stopper.stop(reason, sys._current_frames().get(ident))
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(Stop))
    worker.join(GRACE)
    stopper.release()
    return Finished(stopped=reason, still_running=worker.is_alive())
