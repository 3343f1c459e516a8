"""Hostile or unlucky learner code: the checkers stop it, survive it, and leave the session as they found it.

Each case of issue 14 is here. Cases that could damage the test process (an interrupt,
a thread that cannot be stopped, code that never stops) run in a subprocess that
prints its verdict as JSON.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._inductor  # see below the imports

from normlab.checks import check_batch_norm, check_batch_norm_module
from normlab.checks._result import MAX_TEXT
from normlab.checks._session import MAX_PRINTED
from tests.test_train_vs_eval_module_checks import HandBN, KeepsGraph
from tests.test_which_axes_norm_checks import bn_nlc_by_hand

# torch._inductor is what use_deterministic_algorithms imports (seconds under load), and sympy with it. Imported at
# collection, sympy's warnings filter is in place before any `untouched` snapshot (a test that imported it erred).
ROOT = Path(__file__).parents[1]
LEARNER = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    import torch
    from normlab.checks import check_batch_norm

    def bn(x, gamma, beta, eps=1e-5):
        mean = x.mean(dim=(0, 1), keepdim=True)
        var = x.var(dim=(0, 1), keepdim=True, correction=0)
        return (x - mean) / torch.sqrt(var + eps) * gamma + beta

    def verdict(result, **extra):
        alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        print(json.dumps({"mistake": result.mistake, "observed": result.observed, "threads": alive, **extra}))
    """
)


def run_snippet(code: str, timeout: float = 60) -> dict:
    """Run LEARNER + ``code`` in a fresh interpreter; the JSON verdict it printed last."""
    done = subprocess.run(
        [sys.executable, "-c", LEARNER + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def session_state() -> tuple:
    """Everything a check must leave as it found it."""
    return (
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
        torch.are_deterministic_algorithms_enabled(),
        torch.get_num_threads(),
        sys.getrecursionlimit(),
        torch._tensor_str.get_printoptions(),
        np.get_printoptions(),
        list(warnings.filters),
        os.getcwd(),
        torch.mean,
        torch.Tensor.__dict__.get("sum"),
        sys.gettrace(),
        signal.getsignal(signal.SIGALRM),
        signal.getsignal(signal.SIGINT),
        signal.getitimer(signal.ITIMER_REAL),
        sorted(f"{t.name} ({t.ident})" for t in threading.enumerate()),  # who, should a count differ
    )


@pytest.fixture
def untouched():
    """Asserts that the test's checks changed nothing in the session."""
    before = session_state()
    yield
    assert session_state() == before


# ---------------------------------------------------------------- grad mode and dtype of the caller


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode, torch.enable_grad])
def test_the_callers_grad_mode_does_not_change_the_verdict(mode, untouched):
    with mode():
        kept = check_batch_norm_module(KeepsGraph)
        right = check_batch_norm_module(HandBN)
        state = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    assert kept.mistake == "stats-not-detached", kept.message
    assert "running_mean has requires_grad=True" in kept.observed
    assert right.passed, right.message
    with mode():
        assert (torch.is_grad_enabled(), torch.is_inference_mode_enabled()) == state


def test_a_float64_default_dtype_of_the_caller_does_not_change_the_verdict():
    torch.set_default_dtype(torch.float64)
    try:
        result = check_batch_norm_module(torch.nn.BatchNorm1d)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    assert result.passed, result.message
    assert result.session == ()


# ---------------------------------------------------------------- time limits and interrupts


def sleeps(x, gamma, beta, eps=1e-5):
    time.sleep(60)


def spins_catching_everything(x, gamma, beta, eps=1e-5):
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass


def spins_catching_twice(x, gamma, beta, eps=1e-5):
    while True:
        try:
            while True:
                try:
                    time.sleep(60)
                except BaseException:
                    pass
        except BaseException:
            pass


@pytest.mark.parametrize("fn", [sleeps, spins_catching_everything, spins_catching_twice])
def test_code_over_its_time_limit_is_really_stopped(fn, untouched):
    start = time.monotonic()
    result = check_batch_norm(fn, layout="NLC", time_limit=0.3)
    elapsed = time.monotonic() - start
    assert result.mistake == "too-slow"
    assert result.observed == (
        f"{fn.__name__} did not return within the time limit (0.3 s) when called on the input with ordinary "
        "values (eps = 1e-05); the checker stopped it."
    )
    assert elapsed < 3  # stopped at once, not after the sleep's 60 s
    later = time.monotonic()
    assert check_batch_norm(bn_nlc_by_hand, layout="NLC").passed
    assert time.monotonic() - later < 3  # nothing left spinning in the background


def test_an_infinite_time_limit_means_no_limit(untouched):
    result = check_batch_norm(bn_nlc_by_hand, layout="NLC", time_limit=math.inf)
    assert result.passed, result.message


def test_kernel_interrupt_stops_the_learners_code():
    verdict = run_snippet(
        """
        def sleeps(x, gamma, beta, eps=1e-5):
            time.sleep(60)
        # Python's own handler, as in a terminal (a process started in the background inherits SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        result = check_batch_norm(sleeps, layout="NLC")
        elapsed = time.monotonic() - start
        time.sleep(0.1)
        verdict(result, elapsed=elapsed, handler=signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        """
    )
    assert verdict["mistake"] == "interrupted"
    assert verdict["observed"] == (
        "The check was interrupted (Kernel -> Interrupt or Ctrl-C) while sleeps ran, when called on the input "
        "with ordinary values (eps = 1e-05); the checker stopped it."
    )
    assert verdict["elapsed"] < 5 and verdict["threads"] == [] and verdict["handler"]


def test_outside_the_main_thread_a_blocked_call_is_said_to_be_maybe_still_running():
    verdict = run_snippet(
        """
        def sleeps(x, gamma, beta, eps=1e-5):
            time.sleep(60)
        def spins(x, gamma, beta, eps=1e-5):
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass
        box = {}
        def run():
            box["spins"] = check_batch_norm(spins, layout="NLC", time_limit=0.3)
            box["spins_threads"] = [t.name for t in threading.enumerate() if t.name == "normlab-check"]
            box["sleeps"] = check_batch_norm(sleeps, layout="NLC", time_limit=0.3)
        caller = threading.Thread(target=run)
        caller.start()
        caller.join()
        verdict(box["sleeps"], spins=box["spins"].observed, spins_threads=box["spins_threads"])
        """
    )
    assert verdict["mistake"] == "too-slow"
    assert verdict["observed"] == (
        "sleeps did not return within the time limit (0.3 s) when called on the input with ordinary values "
        "(eps = 1e-05); the checker could not stop it: the check ran outside the main thread, where a call "
        "blocked in C (such as time.sleep) cannot be interrupted, so it may still be running. Restart the "
        "kernel (Kernel -> Restart) to stop it."
    )
    assert verdict["threads"] == ["normlab-check"]  # the one that is said to be running
    assert verdict["spins"].endswith("the checker stopped it.") and verdict["spins_threads"] == []


def test_code_that_keeps_catching_its_stops_is_reported_as_still_running():
    code = LEARNER + textwrap.dedent(
        """
        kept = []
        def hoards(x, gamma, beta, eps=1e-5):
            while True:
                try:
                    while True:
                        try:
                            while True:
                                pass
                        except BaseException as e:
                            kept.append(e)
                except BaseException as e:
                    kept.append(e)
        check_batch_norm(hoards, layout="NLC", time_limit=0.3)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(90, child.kill)  # in case the message never comes
    killer.start()
    try:
        stderr = child.stderr.readline()  # blocks until the checker says it cannot stop the code
        assert child.poll() is None  # and indeed the code is still running
    finally:
        child.kill()
        child.communicate()
        killer.cancel()
        killer.join()  # a cancelled Timer's thread ends a moment later: the next test counts threads
    assert (
        "normlab.checks: hoards is still running 3 s after the checker asked it to stop (it catches the "
        "exceptions that stop it). Restart the kernel (Kernel -> Restart) to stop it." in stderr
    )


# ---------------------------------------------------------------- global state


def changes_everything(x, gamma, beta, eps=1e-5):
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    sys.setrecursionlimit(200)
    torch.set_grad_enabled(False)
    torch.set_printoptions(precision=1)
    np.set_printoptions(precision=1)
    warnings.simplefilter("error")
    os.chdir("/")
    return bn_nlc_by_hand(x.float(), gamma.float(), beta.float(), eps).to(x.dtype)


def test_global_settings_changed_by_learner_code_are_put_back_and_reported(untouched):
    torch_precision, numpy_precision = torch._tensor_str.PRINT_OPTS.precision, np.get_printoptions()["precision"]
    limit = sys.getrecursionlimit()
    result = check_batch_norm(changes_everything, layout="NLC")
    assert result.passed, result.message
    said = "\n".join(result.session)
    for part in (
        "changes_everything changed the default dtype from torch.float32 to torch.float64; the checker put it back",
        "changed grad mode (torch.is_grad_enabled()) from True to False; the checker put it back",
        "changed deterministic algorithms from (False, False) to (True, False); the checker put it back",
        f"changed the recursion limit from {limit} to 200; the checker put it back",
        f"changed torch's print options precision from {torch_precision} to 1; the checker put it back",
        f"changed NumPy's print options precision from {numpy_precision} to 1; the checker put it back",
        "changed the warning filters; the checker put them back",
        "changed the working directory from",
    ):
        assert part in said
    assert "Session:" in result.message and "Session</th>" in result._repr_html_()


def test_what_a_lazy_import_during_learner_code_adds_stays_and_is_not_blamed_on_the_learner():
    """numpy loads numpy.fft lazily; deleting the attribute the import added (while sys.modules keeps the
    module) sent numpy's __getattr__ into endless recursion at the next use of numpy.fft. torch's first backward
    with a given gradient imports sympy, which adds a warnings filter: torch's doing, not the learner's."""
    verdict = run_snippet(
        """
        import numpy as np
        def imports_lazily(x, gamma, beta, eps=1e-5):
            import numpy.fft
            leaf = x.detach().requires_grad_()
            torch.autograd.grad(bn(leaf, gamma, beta, eps).sum(), leaf, torch.ones(()))
            return bn(x, gamma, beta, eps)
        loaded_before = [m for m in ("numpy.fft", "sympy") if m in sys.modules]
        result = check_batch_norm(imports_lazily, layout="NLC")
        verdict(result, loaded_before=loaded_before, usable=np.fft.fft(np.ones(2)).real.tolist(), session=result.session)
        """
    )
    assert verdict["loaded_before"] == []  # else this test shows nothing
    assert verdict["mistake"] is None and verdict["usable"] == [2.0, 0.0] and verdict["session"] == []


def patches_torch(x, gamma, beta, eps=1e-5):
    original = torch.mean
    torch.mean = lambda *a, **k: original(*a, **k) * 2
    torch.Tensor.sum = lambda self, *a, **k: torch.zeros(())
    return bn_nlc_by_hand(x, gamma, beta, eps)


def test_monkeypatched_torch_functions_are_put_back(untouched):
    result = check_batch_norm(patches_torch, layout="NLC")
    assert "patches_torch replaced torch.mean: the checker put the original back" in result.session
    assert "patches_torch replaced torch.Tensor.sum: the checker put the original back" in result.session
    assert check_batch_norm(bn_nlc_by_hand, layout="NLC").passed  # the next correct answer passes


def test_a_patch_made_before_the_check_does_not_change_the_checkers_reference():
    original = torch.Tensor.sum
    torch.Tensor.sum = lambda self, *a, **k: torch.zeros(())  # an earlier cell's mischief
    try:
        result = check_batch_norm(bn_nlc_by_hand, layout="NLC")
        assert "sum" in torch.Tensor.__dict__  # the caller's patch is back
    finally:
        del torch.Tensor.sum
    assert torch.Tensor.sum is original
    assert result.passed, result.message
    assert result.session == (
        "torch.Tensor.sum had been replaced before this check (by an earlier cell?): the check used the "
        "original, and put yours back afterwards",
    )


def wraps_torch_mean(x, gamma, beta, eps=1e-5):
    original = torch.mean
    torch.mean = functools.wraps(original)(lambda *a, **k: original(*a, **k) * 2)  # a wrapper, but the learner's
    return bn_nlc_by_hand(x, gamma, beta, eps)


def test_a_libraries_wrapper_is_not_a_patch_but_a_learners_is():
    original = torch.manual_seed
    importlib.import_module("torch._dynamo")  # wraps torch.manual_seed (functools.wraps) when first imported
    assert torch.manual_seed is original or torch.manual_seed.__wrapped__ is original
    assert check_batch_norm(bn_nlc_by_hand, layout="NLC").session == ()
    result = check_batch_norm(wraps_torch_mean, layout="NLC")
    assert result.session == ("wraps_torch_mean replaced torch.mean: the checker put the original back",)
    assert torch.mean.__module__ == "torch" and not hasattr(torch.mean, "__wrapped__")


def draws_and_starts_a_thread(x, gamma, beta, eps=1e-5):
    threading.Thread(target=time.sleep, args=(0.5,), name="learner-thread", daemon=True).start()
    return bn_nlc_by_hand(x, gamma, beta, eps)


def test_a_thread_started_by_learner_code_is_reported():
    result = check_batch_norm(draws_and_starts_a_thread, layout="NLC")
    assert result.passed
    assert result.session == (
        "draws_and_starts_a_thread started 1 thread(s) still running ('learner-thread'); a thread cannot be "
        "stopped from outside: restart the kernel if it runs forever",
    )
    for thread in threading.enumerate():  # they sleep 0.5 s: let them end before the next test counts threads
        if thread.name == "learner-thread":
            thread.join()


# ---------------------------------------------------------------- bounded output and odd exceptions


def prints_ten_megabytes(x, gamma, beta, eps=1e-5):
    print("x" * 10_000_000)
    return bn_nlc_by_hand(x, gamma, beta, eps)


def warns(x, gamma, beta, eps=1e-5):
    warnings.warn("a learner's warning", stacklevel=2)
    return bn_nlc_by_hand(x, gamma, beta, eps)


def test_printed_output_is_captured_and_bounded(capsys, untouched):
    result = check_batch_norm(prints_ten_megabytes, layout="NLC")
    assert result.passed
    assert capsys.readouterr() == ("", "")  # nothing reached the notebook's own streams
    assert result.printed.startswith("x" * MAX_PRINTED)
    assert result.printed.endswith("more characters not shown)")
    assert "29,998," in result.printed  # three calls of 10,000,001 characters, 2,000 kept
    assert len(result.message) < 2 * MAX_PRINTED + 2000
    assert "<pre" in result._repr_html_()


def test_warnings_are_captured_whatever_the_callers_filters(capsys, untouched):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # would turn the learner's warning into an exception
        result = check_batch_norm(warns, layout="NLC")
    assert result.passed, result.message
    assert result.printed == "UserWarning: a learner's warning\n" * 3
    assert capsys.readouterr() == ("", "")


class BrokenMessage(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


def raises_broken_exception(x, gamma, beta, eps=1e-5):
    raise BrokenMessage()


def test_an_exception_whose_str_raises_is_still_described():
    result = check_batch_norm(raises_broken_exception, layout="NLC")
    assert result.mistake == "raised"
    assert "raised BrokenMessage: <str() of this exception raised RuntimeError>" in result.observed


def raises_huge_message(x, gamma, beta, eps=1e-5):
    raise ValueError("y" * 1_000_000)


def test_long_messages_are_truncated():
    result = check_batch_norm(raises_huge_message, layout="NLC")
    assert (
        result.mistake == "raised"
        and "y ... (999,612 more characters not shown) in raises_huge_message" in result.observed
    )
    assert len(result.message) < 5000
    sparse = check_batch_norm(lambda x, g, b, eps=1e-5: bn_nlc_by_hand(x, g, b, eps).to_sparse(), layout="NLC")
    assert sparse.mistake == "not-a-tensor" and len(sparse.message) < 2000
    long = check_batch_norm(bn_nlc_by_hand, layout="NLC")
    assert len(type(long)(long.check, False, "unknown", "c", "z" * 10 * MAX_TEXT).observed) < MAX_TEXT + 100


def test_a_librarys_own_rebinding_is_swapped_back_without_a_note(untouched):
    # importing torch._dynamo wraps torch.manual_seed (functools.wraps keeps __module__ == "torch.random"), and
    # ipykernel swaps builtins.input for every cell: neither is the learner's doing, so neither is reported
    import builtins
    import functools

    original_seed, original_input = torch.manual_seed, builtins.input

    @functools.wraps(original_seed)
    def wrapped_seed(*args, **kwargs):
        return original_seed(*args, **kwargs)

    def kernel_input(prompt=""):
        return ""

    kernel_input.__module__ = "ipykernel.kernelbase"
    torch.manual_seed, builtins.input = wrapped_seed, kernel_input
    try:
        result = check_batch_norm(bn_nlc_by_hand, layout="NLC")
        assert torch.manual_seed is wrapped_seed and builtins.input is kernel_input  # left as they were
    finally:
        torch.manual_seed, builtins.input = original_seed, original_input
    assert result.passed, result.message
    assert result.session == ()


def test_a_checker_whose_analysis_fails_says_unknown_and_keeps_the_session_record(untouched):
    """Every checker runs through run_check: an exception in the checker's own analysis of a strange
    answer becomes an honest "unknown" naming the error, with what the learner's code printed."""
    from normlab.checks.runner import run_check

    def chatty(x):
        print("hello from the learner")
        return x

    def diagnose(check):
        check.call(chatty, (torch.ones(2),), ("x",))
        raise KeyError("a case the analysis never foresaw")

    result = run_check("check_demo", chatty, diagnose, time_limit=5.0)
    assert (result.check, result.mistake, result.observed) == (
        "check_demo(chatty)",
        "unknown",
        "The checker could not analyse what chatty returned (KeyError: 'a case the analysis never foresaw'), so it "
        "cannot say whether it is right. This is a gap in the checker, not necessarily in your code.",
    )
    assert "hello from the learner" in result.printed
