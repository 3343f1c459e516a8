"""The one runner: every checker, interrupted, stopped or handed odd learner code, gives the same verdicts,
and leaves the session as it found it."""

from __future__ import annotations

import gc
import math
import warnings

import pytest
import torch

import normlab.checks as checks
from normlab.checks._result import HINTS, MISTAKES
from normlab.checks.runner import Answer, Exercise, Probe, Verdict, mistake_mixes, num, run_check, run_exercise
from tests.test_checks_hostile import run_snippet

# How each public checker is called with a learner's function (the module checker takes a class).
CALLS = {
    "check_batch_norm": "check_batch_norm({fn}, layout='NLC')",
    "check_layer_norm": "check_layer_norm({fn}, layout='NLC')",
    "check_group_norm": "check_group_norm({fn}, num_groups=2)",
    "check_batch_norm_module": "check_batch_norm_module({cls})",
    "check_fine_tuning_setup": "check_fine_tuning_setup({fn}, batch_size=32)",
}
PUBLIC = sorted(name for name in checks.__all__ if name.startswith("check_"))


def call_text(name: str, fn: str = "fn", cls: str = "Cls") -> str:
    return CALLS.get(name, f"{name}({{fn}})").format(fn=fn, cls=cls)


def test_interrupting_any_checker_while_the_learners_code_runs_says_interrupted():
    calls = ", ".join(f"({name!r}, lambda: checks.{call_text(name, 'sleeps', 'Sleeps')})" for name in PUBLIC)
    verdict = run_snippet(
        f"""
        import normlab.checks as checks

        def sleeps(*args, **kwargs):  # Kernel -> Interrupt once the learner's code runs
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            time.sleep(60)

        class Sleeps(torch.nn.Module):
            def __init__(self, *args, **kwargs):
                super().__init__()
                sleeps()

        seen = {{}}
        for name, run in [{calls}]:
            result = run()
            seen[name] = [result.mistake, result.observed]
        print(json.dumps(seen))
        """,
        timeout=120,
    )
    assert sorted(verdict) == PUBLIC
    for name, (mistake, observed) in verdict.items():
        assert mistake == "interrupted", (name, observed)
        assert observed.startswith("The check was interrupted (Kernel -> Interrupt or Ctrl-C) while "), (name, observed)
        assert observed.endswith("; the checker stopped it."), (name, observed)


@pytest.mark.parametrize("name", PUBLIC)
def test_a_check_leaves_the_global_random_stream_where_it_was(name):
    def fn(*args, **kwargs):
        torch.rand(3)  # the learner's own draws are put back too
        raise NotImplementedError

    class Cls(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            raise NotImplementedError

    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    result = eval(f"checks.{call_text(name)}", {"checks": checks, "fn": fn, "Cls": Cls})
    assert result.status == "not-solved", result.message
    assert torch.equal(torch.rand(4), expected)


def test_an_async_learner_function_gets_a_verdict_and_no_never_awaited_warning():
    async def steps(kappa, shrink):
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = checks.check_steps_from_kappa(steps)
        gc.collect()
    assert result.mistake == "async-function", result.message
    assert result.observed == (
        "steps returned a coroutine when called on (kappa, shrink) = (142.1, 0.01): it is defined with `async def`."
    )
    assert result.hint.startswith("Define it with a plain `def`")
    assert [str(w.message) for w in caught] == []


def test_learner_code_run_while_reading_the_answer_is_under_the_time_limit():
    class Endless(list):
        def __iter__(self):
            while True:
                pass

    def fractions(model, x, threshold=0.97):
        return Endless([0.5, 0.5])

    result = checks.check_saturated_fraction(fractions, time_limit=0.3)
    assert result.mistake == "too-slow", result.message
    assert result.observed == (
        "fractions did not return within the time limit (0.3 s) when called on the tanh MLP with threshold=0.97; "
        "the checker stopped it."
    )


def test_a_changed_boolean_mask_is_named_mutates_input():
    mask = torch.tensor([[True, True, False], [True, False, False]])

    def flips(mask):
        mask[0, 0] = False
        return mask.sum()

    def diagnose(check):
        check.call(flips, (mask,), ("mask",), action="called on the mask")
        return check.passed("not reached")

    result = run_check("check_mask", flips, diagnose, time_limit=1.0)
    assert result.mistake == "mutates-input", result.message
    assert result.observed == "After flips was called on the mask, its inputs had changed: mask: 1 of 6 values flipped."
    assert mask[0, 0]  # the checker's own tensor is untouched


def test_a_replaced_torch_autograd_grad_never_feeds_the_check_and_is_put_back():
    original = torch.autograd.grad

    def bogus(*args, **kwargs):
        return (torch.zeros(1),)

    def diagnose(check):
        w = torch.ones(2, requires_grad=True)
        (grad,) = torch.autograd.grad((w * 3).sum(), w)
        raise Verdict("unknown", f"grad {grad.tolist()}")

    torch.autograd.grad = bogus
    try:
        result = run_check("check_grad", lambda: None, diagnose, time_limit=1.0)
        assert torch.autograd.grad is bogus
    finally:
        torch.autograd.grad = original
    assert result.observed == "grad [3.0, 3.0]"
    assert result.session == (
        "torch.autograd.grad had been replaced before this check (by an earlier cell?): the check used the "
        "original, and put yours back afterwards",
    )


def test_a_reader_that_cannot_read_a_returned_object_says_unknown_and_names_the_error():
    class Odd(float):
        def __float__(self):
            raise RuntimeError("no")

    def steps(kappa, shrink):
        return Odd(3.0)

    result = checks.check_steps_from_kappa(steps)
    assert result.mistake == "unknown"
    assert result.observed == "steps returned an object the checker could not read (RuntimeError: no)."


def test_run_check_refuses_what_cannot_be_called_and_a_bad_time_limit():
    with pytest.raises(TypeError, match=r"^check_x expects your function, as in `check_x\(my_fn\)`; got a int\."):
        run_check("check_x", 3, lambda check: check.passed(""), time_limit=1.0)
    for bad in (0, -1.0, True, "1", math.nan):
        with pytest.raises(ValueError, match="time_limit must be a positive number of seconds"):
            run_check("check_x", len, lambda check: check.passed(""), time_limit=bad)


def test_a_module_switched_to_training_mode_or_changed_in_place_is_named_mutates_input():
    bn = torch.nn.BatchNorm1d(3).eval()

    def switches(bn):
        bn.train()
        with torch.no_grad():
            bn.weight.mul_(2)

    def diagnose(check):
        check.call(switches, (bn,), ("bn",), action="called on bn")
        return check.passed("not reached")

    result = run_check("check_bn", switches, diagnose, time_limit=1.0)
    assert result.observed == (
        "After switches was called on bn, its inputs had changed: bn's weight, training (from False to True) changed."
    )
    assert not bn.training and torch.equal(bn.weight, torch.ones(3))  # the checker's own module is untouched


def test_python_s_own_bookkeeping_is_no_replaced_function():
    import builtins

    builtins._ = 42  # what the interpreter does after an expression
    torch.Tensor.__slotnames__ = []  # what copy.deepcopy(tensor) caches
    try:
        result = run_check("check_x", len, lambda check: check.passed("ok"), time_limit=1.0)
    finally:
        del builtins._, torch.Tensor.__slotnames__
    assert result.session == ()


def test_a_numpy_array_changed_in_place_is_named_mutates_input():
    import numpy as np

    weights = np.array([1.0, 2.0, 4.0], dtype=np.float32)

    def halves(w):
        w /= 2
        return w

    def diagnose(check):
        check.call(halves, (weights,), ("gamma",), action="called on the weights")
        return check.passed("not reached")

    result = run_check("check_w", halves, diagnose, time_limit=1.0)
    assert result.observed == (
        "After halves was called on the weights, its inputs had changed: gamma: 3 of 3 values changed "
        "(largest change 2.0000)."
    )
    assert weights.tolist() == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("name", PUBLIC)
def test_code_that_changes_the_session_or_returns_a_hostile_object_never_crashes_any_checker(name):
    """Every public checker, handed code that raises after changing the session and printing a flood, or that
    returns an object whose every attribute raises: a verdict, the session put back, the flood bounded."""

    def changes_the_session(*args, **kwargs):
        torch.set_default_dtype(torch.float64)
        print("hello " * 1000)
        torch.mean = torch.sum
        raise ValueError("nope")

    class Weird:
        def __getattr__(self, name):
            raise RuntimeError("no attributes")

        def __len__(self):
            raise RuntimeError("no length")

    class Cls(torch.nn.Module):  # the module checker takes a class: the same code in its constructor
        def __init__(self, *args, **kwargs):
            super().__init__()
            changes_the_session()

    def check(fn):
        return eval(f"checks.{call_text(name)}", {"checks": checks, "fn": fn, "Cls": Cls})

    mean = torch.mean
    result = check(changes_the_session)
    assert result.mistake == "raised" and "ValueError: nope" in result.observed, result.message
    assert torch.get_default_dtype() == torch.float32 and torch.mean is mean
    assert any("default dtype" in note for note in result.session) and "more characters not shown" in result.printed
    if name != "check_batch_norm_module":
        weird = check(lambda *args, **kwargs: Weird())
        assert not weird.passed and weird.mistake in checks.MISTAKES, weird.message
    with pytest.raises(TypeError, match=f"^{name} expects your "):
        eval(f"checks.{call_text(name, '42', '42')}", {"checks": checks})


# ---- an exercise declared by what its function returns (Exercise.returns, Answer, mistake_mixes) ----------------


def _mean_and_count(x, mistakes=()):
    """A tiny exercise's reference: (count, mean per column); "no-divide" sums, "one-less" counts n - 1."""
    n = len(x) - ("one-less" in mistakes)
    return n, x.sum(0) / (1 if "no-divide" in mistakes else n)


@pytest.fixture
def tiny_codes(monkeypatch):
    """The tiny exercise's codes, declared for one test only: the package's table of codes stays as it ships (other
    tests compare it with the codes they test)."""
    for code, phrase, hint in (
        ("no-divide", "you summed and did not divide", "Divide."),
        ("one-less", "you counted n - 1", "Count n."),
    ):
        monkeypatch.setitem(MISTAKES, code, phrase)
        monkeypatch.setitem(HINTS, code, hint)


def _exercise(**fields):
    probe = Probe((torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64),), ("x",), "the 2 x 2 input")
    column = Answer("tensor", shape=(2,), atol=1e-9)
    return Exercise(
        name="check_mean",
        checked="`fn(x)`",
        probes=lambda: [probe],
        right=_mean_and_count,
        mistakes=mistake_mixes(_mean_and_count, ("no-divide", "one-less")),
        **{"returns": (("count", Answer(spec="g")), ("mean", column)), **fields},
    )


def test_mistake_mixes_gives_every_combination_fewest_first_each_made_by_the_reference():
    mixes = mistake_mixes(_mean_and_count, ("no-divide", "one-less"))
    assert list(mixes) == [("no-divide",), ("one-less",), ("no-divide", "one-less")]
    x = torch.ones(3, 2)
    assert [fn(x)[0] for (fn,) in mixes.values()] == [3, 2, 2]
    assert torch.equal(mixes[("no-divide", "one-less")][0](x)[1], torch.full((2,), 3.0))


@pytest.mark.parametrize(
    ("fn", "mistake", "observed"),
    [
        (_mean_and_count, None, "Your count and mean equal the reference."),
        (
            lambda x: (len(x), x.sum(0)),
            "no-divide",
            "count 2 (expected 2); mean [4.0000, 8.0000] (expected [2.0000, 4.0000]).",
        ),
        (lambda x: x.mean(0), "not-a-tensor", "<lambda> returned a Tensor; expected a tuple of 2: (count, mean)."),
        (
            lambda x: (2,),
            "not-a-tensor",
            "<lambda> returned a tuple of 1 value(s); expected a tuple of 2: (count, mean).",
        ),
        (
            lambda x: ("2", x.mean(0)),
            "not-a-number",
            "<lambda> returned a str as count; expected a number.",
        ),
        (
            lambda x: (2, x.mean(0).tolist()),
            "not-a-tensor",
            "<lambda> returned a list as mean; expected a floating-point tensor of shape (2,).",
        ),
        (
            lambda x: (2, x.mean(0, keepdim=True)),
            "wrong-shape",
            "<lambda> returned a tensor of shape (1, 2) as mean; expected a floating-point tensor of shape (2,).",
        ),
        (lambda x: (2, x.mean(0) / 0), "non-finite", "<lambda> returned 2 NaN or infinite values out of 2 as mean."),
        (
            lambda x: (2, x.sum(0).long()),
            "wrong-dtype",
            "<lambda> returned a torch.int64 tensor as mean; expected a floating-point tensor of shape (2,).",
        ),
        (
            lambda x: (2.5, x.mean(0)),
            "unknown",
            "count 2.5 (expected 2); mean [2.0000, 4.0000] (expected [2.0000, 4.0000]).",
        ),
    ],
)
@pytest.mark.usefixtures("tiny_codes")
def test_an_exercise_that_declares_what_it_returns_reads_compares_and_shows_it(fn, mistake, observed):
    result = run_exercise(_exercise(), fn, 5.0)
    assert (result.passed, result.mistake, result.observed) == (mistake is None, mistake, observed), result.message


def test_numbers_are_read_from_a_list_a_tuple_or_a_1d_tensor_and_one_number_is_shown_per_probe():
    fractions = Answer("numbers", atol=1e-6, spec=".4g")
    for given in ([0.5, 0.25], (0.5, 0.25), torch.tensor([0.5, 0.25])):
        assert fractions.read(given).tolist() == [0.5, 0.25] and fractions.show(fractions.read(given)) == "[0.5, 0.25]"
    assert fractions.read(torch.ones(2, 2)) is None and fractions.read([0.5, "x"]) is None
    assert fractions.same(torch.tensor([0.5]), torch.tensor([0.5 + 1e-7])) and not fractions.same(
        torch.tensor([0.5]), torch.tensor([0.5, 0.5])
    )
    rate = Answer(rtol=1e-5, spec=".6g")
    assert rate.same(torch.tensor(2.0), torch.tensor(2.00001)) and not rate.same(
        torch.tensor(float("nan")), torch.tensor(2.0)
    )
    assert num(-0.00001) == "0.0000" and num(-0.00001, ".1g") == "-1e-05" and rate.show(torch.tensor(0.5)) == "0.5"


@pytest.mark.usefixtures("tiny_codes")
def test_an_exercise_needs_returns_or_its_own_reader():
    with pytest.raises(ValueError, match=r"^Exercise 'check_mean' needs returns= or read, same, show, passed\.$"):
        _exercise(returns=())
    custom = _exercise(show=lambda answers, right: "custom words")
    assert run_exercise(custom, lambda x: (len(x), x.sum(0)), 5.0).observed == "custom words"
