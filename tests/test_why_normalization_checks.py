"""Notebook 01's checkers: one learner implementation per mistake code, several correct ones, hostile inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from normlab.checks import (
    MISTAKES,
    check_largest_stable_lr,
    check_saturated_fraction,
    check_steps_from_kappa,
)
from normlab.checks import why_normalization as checks

# ---- Exercise 1: steps from kappa -------------------------------------------------------------------------


def steps_by_log(kappa, shrink):
    return 1 if kappa == 1 else math.ceil(math.log(shrink) / math.log(1 - 1 / kappa))


def steps_by_loop(kappa, shrink):
    steps, remaining = 0, 1.0
    while remaining > shrink:
        remaining *= 1 - 1 / kappa
        steps += 1
    return steps


def steps_as_tensor(kappa, shrink, dtype=torch.float64):  # float32: log(0.25) / log(0.5) lands above 2
    q = torch.tensor(1 - 1 / kappa, dtype=torch.float64)
    return torch.tensor(1) if kappa == 1 else torch.ceil(torch.log(torch.tensor(shrink, dtype=dtype)) / torch.log(q))


def steps_floor_plus_one(kappa, shrink):
    return 1 if kappa == 1 else math.floor(math.log(shrink) / math.log(1 - 1 / kappa)) + 1


def steps_by_loop_while_not_below(kappa, shrink):
    steps, remaining = 0, 1.0
    while remaining >= shrink:
        remaining *= 1 - 1 / kappa
        steps += 1
    return steps


def steps_floor(kappa, shrink):
    return 1 if kappa == 1 else int(math.log(shrink) / math.log(1 - 1 / kappa))


def steps_approximate(kappa, shrink):
    return math.ceil(kappa * math.log(1 / shrink))


def steps_squared(kappa, shrink):
    return 1 if kappa == 1 else math.ceil(math.log(shrink) / math.log((1 - 1 / kappa) ** 2))


def steps_crash_at_one(kappa, shrink):
    return math.ceil(math.log(shrink) / math.log(1 - 1 / kappa))


def steps_stub(kappa, shrink):
    raise NotImplementedError("your code here")


def test_the_reference_matches_the_notebook_s_204_steps_and_counts_an_exact_power_exactly():
    # §1: after the first step the raw run needs 203 more to shrink the slow loss by this ratio
    assert checks.steps_from_kappa(2.0, 0.3) == 2 and checks.steps_from_kappa(1.0, 0.5) == 1
    assert [checks.steps_from_kappa(k, s) for k, s in checks.KAPPA_PROBES] == [
        steps_by_log(k, s) for k, s in checks.KAPPA_PROBES
    ]
    # 0.75**3 = 0.421875 exactly, but the float log ratio is 3.0000000000000004: the reference counts in fractions
    assert math.log(0.421875) / math.log(0.75) > 3 and checks.steps_from_kappa(4.0, 0.421875) == 3
    assert checks.steps_from_kappa(2.0, 0.25) == 2 and steps_floor_plus_one(2.0, 0.25) == 3


@pytest.mark.parametrize("fn", [steps_by_log, steps_by_loop, steps_as_tensor])
def test_steps_from_kappa_passes_correct_solutions(fn):
    result = check_steps_from_kappa(fn)
    assert result.passed, result.message
    assert result.headline == f"✓ check_steps_from_kappa({fn.__name__}): passed"


@pytest.mark.parametrize(
    "fn, code",
    [
        (steps_floor, "rounded-down"),
        (steps_floor_plus_one, "strict-inequality"),
        (steps_by_loop_while_not_below, "strict-inequality"),
        (lambda kappa, shrink: steps_as_tensor(kappa, shrink, torch.float32), "strict-inequality"),
        (steps_approximate, "approximate-steps"),
        (steps_squared, "squared-factor"),
        (steps_crash_at_one, "raised"),
        (lambda kappa, shrink: "many", "not-a-number"),
        (lambda kappa, shrink: 7, "unknown"),
    ],
)
def test_steps_from_kappa_names_each_mistake(fn, code):
    result = check_steps_from_kappa(fn)
    assert (result.passed, result.mistake) == (False, code), result.message
    assert MISTAKES[code] in result.headline


def test_steps_from_kappa_says_what_was_wrong():
    result = check_steps_from_kappa(steps_floor)
    right = [checks.steps_from_kappa(k, s) for k, s in checks.KAPPA_PROBES]
    assert f"expected {', '.join(map(str, right))}." in result.observed
    assert "`math.ceil`" in result.hint
    crash = check_steps_from_kappa(steps_crash_at_one)
    assert "ValueError: math domain error" in crash.observed and "kappa = 1" in crash.hint


def test_steps_from_kappa_stub_is_not_solved_yet():
    result = check_steps_from_kappa(steps_stub)
    assert (result.passed, result.mistake, result.status) == (False, None, "not-solved")


# ---- Exercise 2: the largest stable learning rate ------------------------------------------------------------


def lr_eigvalsh(x):
    return 2 / torch.linalg.eigvalsh(x.T @ x / x.shape[0]).max().item()


def lr_float32_svd(x):
    x = x.float()
    return (2 * x.shape[0] / torch.linalg.svdvals(x)[0] ** 2).item()  # a 0-d float32 tensor's value


def lr_numpy(x):
    a = x.numpy()
    return np.float64(2 / np.linalg.eigvalsh(a.T @ a / len(a))[-1])


def lr_natural(x):
    return 1 / torch.linalg.eigvalsh(x.T @ x / x.shape[0])[-1]


def lr_smallest(x):
    return 2 / torch.linalg.eigvalsh(x.T @ x / x.shape[0])[0].item()


def lr_without_n(x):
    return 2 / torch.linalg.eigvalsh(x.T @ x)[-1].item()


def lr_natural_without_n(x):
    return 1 / torch.linalg.eigvalsh(x.T @ x)[-1].item()


def lr_in_place(x):
    x -= x.mean(dim=0)
    return lr_eigvalsh(x)


@pytest.mark.parametrize("fn", [lr_eigvalsh, lr_float32_svd, lr_numpy])
def test_largest_stable_lr_passes_correct_solutions(fn):
    assert check_largest_stable_lr(fn).passed


@pytest.mark.parametrize(
    "fn, code, also",
    [
        (lr_natural, "natural-step", ()),
        (lr_smallest, "smallest-eigenvalue", ()),
        (lr_without_n, "hessian-without-n", ()),
        (lr_natural_without_n, "natural-step", ("hessian-without-n",)),
        (lr_in_place, "mutates-input", ()),
        (lambda x: torch.linalg.eig(x.T @ x)[0][0], "not-a-number", ()),
        (lambda x: 0.1, "unknown", ()),
        (lambda x: float("nan"), "unknown", ()),
    ],
)
def test_largest_stable_lr_names_each_mistake(fn, code, also):
    result = check_largest_stable_lr(fn)
    assert (result.passed, result.mistake, result.also) == (False, code, also), result.message


def test_a_stable_lr_really_is_the_edge_of_divergence():
    x = checks.stable_probes()[0]
    y = torch.ones(len(x), dtype=torch.float64)
    edge = checks.largest_stable_learning_rate(x)

    def final_loss(lr):
        w = torch.zeros(x.shape[1], dtype=torch.float64)
        for _ in range(3000):
            w -= lr * x.T @ (x @ w - y) / len(x)
        return ((x @ w - y) ** 2).mean().item() / 2

    assert final_loss(0.99 * edge) < 1.0 < final_loss(1.01 * edge)


# ---- Exercise 3: saturated fraction with hooks -----------------------------------------------------------


def fractions_with_hooks(model, x, threshold=0.97):
    fractions, handles = [], []
    for module in model.modules():
        if isinstance(module, nn.Tanh):
            handles.append(
                module.register_forward_hook(
                    lambda m, i, o: fractions.append((o.abs() > threshold).double().mean().item())
                )
            )
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return fractions


def fractions_by_hand(model, x, threshold=0.97):
    out, h = [], x
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Tanh):
            out.append(float((h.abs() > threshold).float().mean()))
    return torch.tensor(out)


def fractions_hooks_left(model, x, threshold=0.97):
    fractions = []
    for module in model.modules():
        if isinstance(module, nn.Tanh):
            module.register_forward_hook(lambda m, i, o: fractions.append((o.abs() > threshold).double().mean()))
    model(x)
    return fractions


def fractions_variant(pick, scale=1.0, fixed=None):
    def fn(model, x, threshold=0.97):
        t = threshold if fixed is None else fixed
        seen = []
        handles = [
            m.register_forward_hook(lambda m, i, o: seen.append(scale * (pick(i[0], o) > t).double().mean().item()))
            for m in model.modules()
            if isinstance(m, nn.Tanh)
        ]
        model(x)
        for handle in handles:
            handle.remove()
        return seen

    return fn


def fractions_in_eval_mode(restore, end=None):
    def fn(model, x, threshold=0.97):
        was = model.training
        model.eval()
        fractions = fractions_with_hooks(model, x, threshold)
        if restore:
            model.train(was)
        elif end is not None:
            model.train(end)
        return fractions

    return fn


def fractions_change_weights(model, x, threshold=0.97):
    with torch.no_grad():
        model[0].weight.mul_(2)
    return fractions_with_hooks(model, x, threshold)


def test_the_probe_saturates_some_units_but_not_all():
    model, x = checks.saturation_probe()
    right = checks.saturated_fractions(model, x, 0.97)
    assert min(right) > 0 and max(right) < 1


@pytest.mark.parametrize("fn", [fractions_with_hooks, fractions_by_hand, fractions_in_eval_mode(restore=True)])
def test_saturated_fraction_passes_correct_solutions(fn):
    result = check_saturated_fraction(fn)
    assert result.passed, result.message


@pytest.mark.parametrize(
    "fn, code, also",
    [
        (fractions_variant(lambda z, y: y), "no-abs", ()),
        (fractions_variant(lambda z, y: y.abs(), scale=100), "percent-not-fraction", ()),
        (fractions_variant(lambda z, y: z.abs()), "inputs-not-outputs", ()),
        (fractions_variant(lambda z, y: z), "inputs-not-outputs", ("no-abs",)),
        (fractions_variant(lambda z, y: y.abs(), fixed=0.97), "ignores-threshold", ()),
        (fractions_hooks_left, "hooks-left", ()),
        (fractions_change_weights, "mutates-input", ()),
        (fractions_in_eval_mode(restore=False), "changes-mode", ()),
        (fractions_in_eval_mode(restore=False, end=True), "changes-mode", ()),
        (lambda model, x, threshold=0.97: [0.5], "wrong-count", ()),
        (lambda model, x, threshold=0.97: {"layer 1": 0.5}, "not-a-number", ()),
        (lambda model, x, threshold=0.97: [0.1, 0.2], "unknown", ()),
    ],
)
def test_saturated_fraction_names_each_mistake(fn, code, also):
    result = check_saturated_fraction(fn)
    assert (result.passed, result.mistake, result.also) == (False, code, also), result.message


def test_saturated_fraction_says_which_hook_is_left_and_which_mode_changed():
    result = check_saturated_fraction(fractions_hooks_left)
    assert "still has forward hooks" in result.observed and "handle.remove()" in result.hint
    left_in_eval = check_saturated_fraction(fractions_in_eval_mode(restore=False))
    assert left_in_eval.observed == (
        "After fn was called on the tanh MLP with threshold=0.97, its inputs had changed: "
        "model's training (from True to False) changed."
    )
    assert "`model.train(was)`" in left_in_eval.hint
    forced_train = check_saturated_fraction(fractions_in_eval_mode(restore=False, end=True))
    assert forced_train.observed.endswith(
        "threshold=0.5, its inputs had changed: model's training (from False to True) changed."
    )


# ---- hostile code ----------------------------------------------------------------------------------------------


class Weird:
    def __float__(self):
        raise RuntimeError("no")

    def __eq__(self, other):
        raise RuntimeError("no ==")


def changes_the_session(kappa, shrink):
    torch.set_default_dtype(torch.float64)
    warnings.simplefilter("ignore")
    print("hello from the learner")
    return steps_by_log(kappa, shrink)


@pytest.mark.parametrize(
    "check, fn",
    [
        (check_steps_from_kappa, lambda k, s: Weird()),
        (check_largest_stable_lr, lambda x: Weird()),
        (check_saturated_fraction, lambda m, x, threshold=0.97: [Weird(), Weird()]),
        (check_saturated_fraction, lambda m, x, threshold=0.97: torch.ones(2, 2)),
        (check_steps_from_kappa, lambda k, s: torch.ones(3)),
        (check_largest_stable_lr, lambda x: True),
        (check_steps_from_kappa, lambda: 1),
    ],
)
def test_hostile_returns_are_named_not_raised(check, fn):
    result = check(fn)
    assert not result.passed and result.mistake in {"not-a-number", "raised", "unknown"}


def test_a_check_leaves_the_session_as_found_and_reports_what_changed():
    dtype = torch.get_default_dtype()
    result = check_steps_from_kappa(changes_the_session)
    assert result.passed and torch.get_default_dtype() == dtype
    assert "hello from the learner" in result.printed
    assert any("default dtype" in note for note in result.session)


def test_a_slow_answer_is_stopped():
    def slow(kappa, shrink):
        while True:
            pass

    result = check_steps_from_kappa(slow, time_limit=0.2)
    assert result.mistake == "too-slow"


@pytest.mark.parametrize("check", [check_steps_from_kappa, check_largest_stable_lr, check_saturated_fraction])
def test_a_checker_called_wrongly_raises_a_teaching_error(check):
    with pytest.raises(TypeError, match=r"expects your function, as in `check_\w+\(my_fn\)`; got a int"):
        check(42)
    with pytest.raises(ValueError, match=r"time_limit must be a positive number"):
        check(steps_by_log, time_limit=0)
