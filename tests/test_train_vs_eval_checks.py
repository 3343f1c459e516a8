"""Notebook 03's checkers (running statistics, Keras port, frozen fine-tuning step): correct solutions in several
forms, the mistakes the generated tests do not cover, the message texts, and hostile code and callers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.checks import check_fine_tune_step, check_keras_port, check_running_stats_update

# ---- Exercise 1: the running-statistics update (its mistakes: tests/test_checks_exercises.py) ---------------


def up_ok(rm, rv, x, momentum):
    x = x.detach()
    return (1 - momentum) * rm + momentum * x.mean(0), (1 - momentum) * rv + momentum * x.var(0)


def up_lerp_no_grad(rm, rv, x, momentum):
    with torch.no_grad():
        n = x.shape[0]
        return torch.lerp(rm, x.mean(0), momentum), torch.lerp(rv, x.var(0, correction=0) * n / (n - 1), momentum)


def up_biased(rm, rv, x, momentum):
    x = x.detach()
    return (1 - momentum) * rm + momentum * x.mean(0), (1 - momentum) * rv + momentum * x.var(0, correction=0)


def up_reversed_with_graph(rm, rv, x, momentum):
    return momentum * rm + (1 - momentum) * x.mean(0), momentum * rv + (1 - momentum) * x.var(0)


def up_inplace(rm, rv, x, momentum):
    x = x.detach()
    rm.mul_(1 - momentum).add_(momentum * x.mean(0))
    rv.mul_(1 - momentum).add_(momentum * x.var(0))
    return rm, rv


def up_none(rm, rv, x, momentum):
    return None


@pytest.mark.parametrize("fn", [up_ok, up_lerp_no_grad])
def test_running_stats_update_passes_correct_solutions(fn):
    result = check_running_stats_update(fn)
    assert result.passed and result.observed == "Your update follows PyTorch's rule at both momenta.", result.message


def test_running_stats_update_says_what_was_wrong():
    biased = check_running_stats_update(up_biased)
    assert biased.mistake == "running-var-biased"
    assert biased.observed == (
        "momentum 0.1: new_mean [0.5628, -0.7179, 1.8894] (expected [0.5628, -0.7179, 1.8894]), new_var [1.4051, "
        "0.4959, 1.8271] (expected [1.4189, 0.5074, 1.8339]); momentum 0.3: new_mean [0.6884, -0.1536, 1.6683] "
        "(expected [0.6884, -0.1536, 1.6683]), new_var [1.2154, 0.4877, 1.4814] (expected [1.2568, 0.5222, 1.5017])."
    )
    both = check_running_stats_update(up_reversed_with_graph)
    assert (both.mistake, both.also) == ("momentum-reversed", ("stats-not-detached",)), both.message
    assert both.observed.endswith("; the returned tensors keep an autograd graph.")
    assert both.hint.startswith("PyTorch's momentum weighs the NEW batch: `(1 - momentum) * running_mean + ")


def test_running_stats_update_names_changed_buffers_and_a_wrong_return():
    inplace = check_running_stats_update(up_inplace)
    assert inplace.mistake == "mutates-input"
    assert inplace.observed == (
        "After up_inplace was called on the (5, 3) batch with momentum 0.1, its inputs had changed: "
        "running_mean: 3 of 3 values changed (largest change 0.2821); running_var: 3 of 3 values changed "
        "(largest change 0.1661)."
    )
    assert inplace.hint.startswith("Return new tensors")
    none = check_running_stats_update(up_none)
    assert (none.mistake, none.observed) == (
        "not-a-tensor",
        "up_none returned None; expected a tuple of 2: (new_mean, new_var).",
    )


# ---- Exercise 2: porting a Keras BatchNormalization layer -----------------------------------------------------


def port_ok(gamma, beta, mm, mv, momentum, epsilon):
    bn = nn.BatchNorm1d(len(gamma), momentum=1 - momentum, eps=epsilon)
    with torch.no_grad():
        bn.weight.copy_(torch.as_tensor(gamma))
        bn.bias.copy_(torch.as_tensor(beta))
        bn.running_mean.copy_(torch.as_tensor(mm))
        bn.running_var.copy_(torch.as_tensor(mv))
    return bn


def port_by_state_dict(gamma, beta, mm, mv, momentum, epsilon):
    bn = nn.BatchNorm1d(4, eps=epsilon, momentum=round(1 - momentum, 6))
    names = ("weight", "bias", "running_mean", "running_var")
    bn.load_state_dict({**bn.state_dict(), **{k: torch.from_numpy(v) for k, v in zip(names, (gamma, beta, mm, mv))}})
    return bn


def port_rev(gamma, beta, mm, mv, momentum, epsilon):
    bn = port_ok(gamma, beta, mm, mv, momentum, epsilon)
    bn.momentum = momentum
    return bn


def port_eps(gamma, beta, mm, mv, momentum, epsilon):
    bn = port_ok(gamma, beta, mm, mv, momentum, epsilon)
    bn.eps = 1e-5
    return bn


def port_fixed(gamma, beta, mm, mv, momentum, epsilon):
    return port_ok(gamma, beta, mm, mv, 0.99, epsilon)


def port_swap(gamma, beta, mm, mv, momentum, epsilon):
    return port_ok(beta, gamma, mm, mv, momentum, epsilon)


def port_std(gamma, beta, mm, mv, momentum, epsilon):
    return port_ok(gamma, beta, mm, np.sqrt(mv), momentum, epsilon)


def port_nostats(gamma, beta, mm, mv, momentum, epsilon):
    bn = nn.BatchNorm1d(4, momentum=1 - momentum, eps=epsilon)
    with torch.no_grad():
        bn.weight.copy_(torch.as_tensor(gamma))
        bn.bias.copy_(torch.as_tensor(beta))
    return bn


def port_everything_wrong(gamma, beta, mm, mv, momentum, epsilon):
    return nn.BatchNorm1d(4, momentum=momentum)


def port_sqrt_in_place(gamma, beta, mm, mv, momentum, epsilon):
    np.sqrt(mv, out=mv)  # the std in place of the caller's array, then squared back
    return port_ok(gamma, beta, mm, mv**2, momentum, epsilon)


def port_tuple(*a):
    return (1,)


PORT_CASES = [
    (port_ok, None, ()),
    (port_by_state_dict, None, ()),
    (port_rev, "momentum-reversed", ()),
    (port_eps, "eps-not-ported", ()),
    (port_fixed, "ignores-momentum", ()),
    (port_swap, "swapped-affine", ()),
    (port_std, "stats-not-ported", ()),
    (port_nostats, "stats-not-ported", ()),
    (port_everything_wrong, "momentum-reversed", ("eps-not-ported", "missing-affine", "stats-not-ported")),
    (port_sqrt_in_place, "mutates-input", ()),
    (port_tuple, "not-a-module", ()),
]


@pytest.mark.parametrize(("fn", "code", "also"), PORT_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_keras_port_names_each_mistake(fn, code, also):
    result = check_keras_port(fn)
    assert (result.passed, result.mistake, result.also) == (code is None, code, also), result.message


def test_keras_port_says_what_was_wrong():
    assert check_keras_port(port_fixed).observed == (
        "With Keras's momentum 0.9 and epsilon 1e-05: momentum 0.01 (expected 0.1)."
    )
    assert check_keras_port(port_std).observed.startswith(
        "With Keras's momentum 0.99 and epsilon 0.001: running_var [0.5000, 2.0000, 1.2247, 0.8660] "
        "(expected [0.2500, 4.0000, 1.5000, 0.7500]). With Keras's momentum 0.9 and epsilon 1e-05: "
    )
    inplace = check_keras_port(port_sqrt_in_place)
    assert inplace.observed == (
        "After port_sqrt_in_place was called with Keras's (momentum, epsilon) = (0.99, 0.001), its inputs had "
        "changed: moving_variance: 4 of 4 values changed (largest change 2.0000)."
    )
    wrong = check_keras_port(port_tuple)
    assert (wrong.observed, wrong.hint) == (
        "port_tuple returned tuple; expected a torch.nn.BatchNorm1d.",
        "Return the torch.nn.BatchNorm1d you built.",
    )


def test_the_probe_arrays_are_float32_numpy_like_keras_weights():
    seen = []

    def spy(gamma, beta, mm, mv, momentum, epsilon):
        seen.append((type(gamma), gamma.dtype, np.array_equal(gamma, np.float32([1.5, 0.8, 1.2, 0.6]))))
        return port_ok(gamma, beta, mm, mv, momentum, epsilon)

    assert check_keras_port(spy).passed and seen[0] == (np.ndarray, np.dtype("float32"), True)


# ---- Exercise 3: a fine-tuning step with BatchNorm frozen ----------------------------------------------------


def freeze(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)


def sgd_step(model, x, target, optimizer):
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_ok(model, x, target, optimizer):
    model.train()
    freeze(model)
    optimizer.zero_grad()
    loss = F.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_grad_only(model, x, target, optimizer):
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.requires_grad_(False)
    sgd_step(model, x, target, optimizer)


def step_eval_only(model, x, target, optimizer):
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()
    sgd_step(model, x, target, optimizer)


def step_undone(model, x, target, optimizer):
    freeze(model)
    model.train()
    sgd_step(model, x, target, optimizer)


def step_whole_eval(model, x, target, optimizer):
    model.eval()
    for p in model[1].parameters():
        p.requires_grad_(False)
    sgd_step(model, x, target, optimizer)


def step_no_train(model, x, target, optimizer):
    freeze(model)
    sgd_step(model, x, target, optimizer)


def step_nostep(model, x, target, optimizer):
    model.train()
    freeze(model)
    F.mse_loss(model(x), target).backward()


def step_helper(model, x, target, optimizer):
    from normlab.finetune import freeze_batch_norm

    if not hasattr(model, "_h"):
        model._h = freeze_batch_norm(model)
    model.train()
    sgd_step(model, x, target, optimizer)


def step_standardizes_x_in_place(model, x, target, optimizer):
    x -= x.mean(0)
    return step_ok(model, x, target, optimizer)


def step_raise(model, x, target, optimizer):
    model(torch.zeros(3))


STEP_CASES = [
    (step_ok, None),
    (step_helper, None),
    (step_grad_only, "bn-stats-updated"),
    (step_undone, "bn-stats-updated"),
    (step_eval_only, "bn-params-trained"),
    (step_whole_eval, "model-not-in-train-mode"),
    (step_no_train, "model-not-in-train-mode"),
    (step_nostep, "not-trained"),
    (step_standardizes_x_in_place, "mutates-input"),
    (step_raise, "raised"),
]


@pytest.mark.parametrize(("fn", "code"), STEP_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_fine_tune_step_names_each_mistake(fn, code):
    result = check_fine_tune_step(fn)
    assert result.passed is (code is None) and result.mistake == code, result.message


PASSED_STEP = (
    "In both steps BatchNorm stayed in eval mode with its weight, bias and statistics unchanged, dropout was on, "
    "and the Linear layers learned (max |change| 0.1223)."
)


def test_fine_tune_step_says_what_was_wrong_with_the_same_numbers_in_any_session():
    torch.manual_seed(123)
    assert check_fine_tune_step(step_ok).observed == PASSED_STEP
    torch.manual_seed(456)
    assert check_fine_tune_step(step_ok).observed == PASSED_STEP
    assert "num_batches_tracked 2" in check_fine_tune_step(step_grad_only).observed
    assert check_fine_tune_step(step_standardizes_x_in_place).observed.startswith(
        "After step_standardizes_x_in_place was called for step 1 of 2, its inputs had changed: x: 64 of 64 values "
        "changed (largest change "
    )
    raised = check_fine_tune_step(step_raise).observed
    assert raised.startswith("step_raise raised RuntimeError: ")
    assert raised.endswith(" in step_raise, at `model(torch.zeros(3))`, when called for step 1 of 2.")


# ---- All three: hostile code and callers ----------------------------------------------------------------------

SOLVED = {check_running_stats_update: up_ok, check_keras_port: port_ok, check_fine_tune_step: step_ok}


SOLVED_OBSERVED = {
    check_running_stats_update: "Your update follows PyTorch's rule at both momenta.",
    check_keras_port: "Your layer has PyTorch's momentum (0.01, then 0.1), Keras's epsilon, and the Keras weights.",
    check_fine_tune_step: PASSED_STEP,
}


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=lambda m: m.__name__)
@pytest.mark.parametrize("checker", SOLVED, ids=lambda c: c.__name__)
def test_correct_code_passes_under_no_grad_and_inference_mode(checker, mode):
    with mode():
        result = checker(SOLVED[checker])
    assert result.passed and result.observed == SOLVED_OBSERVED[checker], result.message


@pytest.mark.parametrize("checker", SOLVED, ids=lambda c: c.__name__)
def test_correct_code_passes_with_the_same_numbers_when_the_caller_s_default_dtype_is_float64(checker):
    torch.set_default_dtype(torch.float64)
    try:
        result = checker(SOLVED[checker])
    finally:
        torch.set_default_dtype(torch.float32)
    assert result.passed and result.observed == SOLVED_OBSERVED[checker], result.message


@pytest.mark.parametrize("checker", SOLVED, ids=lambda c: c.__name__)
def test_a_torch_function_replaced_before_the_check_never_feeds_the_probes_and_is_put_back(checker):
    randn = torch.randn
    torch.randn = lambda *args, **kwargs: randn(*args, **kwargs).zero_()  # an earlier cell's replacement
    try:
        result = checker(SOLVED[checker])
        assert torch.randn is not randn
    finally:
        torch.randn = randn
    assert result.passed and result.observed == SOLVED_OBSERVED[checker], result.message
    assert (
        "torch.randn had been replaced before this check (by an earlier cell?): the check used the original, and "
        "put yours back afterwards"
    ) in result.session


def step_momentum_zero(model, x, target, optimizer):
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = 0.0  # the running statistics stay, but training mode normalizes with the batch's
            m.requires_grad_(False)
    sgd_step(model, x, target, optimizer)


def test_momentum_zero_is_named_for_normalizing_with_batch_statistics_not_for_updating_them():
    result = check_fine_tune_step(step_momentum_zero)
    assert (result.mistake, result.also) == ("bn-uses-batch-stats", ()), result.message
    assert result.headline == (
        "✗ check_fine_tune_step(step_momentum_zero): bn-uses-batch-stats: BatchNorm ran in training mode, so it "
        "normalized with each batch's statistics, not its running ones"
    )
    assert result.observed == (
        "BatchNorm ran 2 of 2 forward passes in training mode; max |change| of running_mean 0, running_var 0, "
        "num_batches_tracked 2: the statistics stayed, but were not used."
    )
    assert result.hint.startswith("Frozen means eval mode: momentum 0 keeps the running statistics still")
