"""The exercise checkers of notebook 03 (running statistics, Keras port, frozen fine-tuning step; notebook 02's
masked BatchNorm is in tests/test_which_axes_checks.py, and sits in the hostile-code test below): one learner implementation per mistake code, several
correct ones, and hostile code that must not crash a checker or leave the session changed."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.checks import (
    MISTAKES,
    check_fine_tune_step,
    check_keras_port,
    check_masked_batch_norm,
    check_running_stats_update,
)


def up_ok(rm, rv, x, momentum):
    x = x.detach()
    return (1 - momentum) * rm + momentum * x.mean(0), (1 - momentum) * rv + momentum * x.var(0)


def up_rev(rm, rv, x, momentum):
    x = x.detach()
    return momentum * rm + (1 - momentum) * x.mean(0), momentum * rv + (1 - momentum) * x.var(0)


def up_biased(rm, rv, x, momentum):
    x = x.detach()
    return (1 - momentum) * rm + momentum * x.mean(0), (1 - momentum) * rv + momentum * x.var(0, correction=0)


def up_fixed(rm, rv, x, momentum):
    return up_ok(rm, rv, x, 0.1)


def up_graph(rm, rv, x, momentum):
    return (1 - momentum) * rm + momentum * x.mean(0), (1 - momentum) * rv + momentum * x.var(0)


def up_inplace(rm, rv, x, momentum):
    x = x.detach()
    rm.mul_(1 - momentum).add_(momentum * x.mean(0))
    rv.mul_(1 - momentum).add_(momentum * x.var(0))
    return rm, rv


def up_none(rm, rv, x, momentum):
    return None


def port_ok(gamma, beta, mm, mv, momentum, epsilon):
    bn = nn.BatchNorm1d(len(gamma), momentum=1 - momentum, eps=epsilon)
    with torch.no_grad():
        bn.weight.copy_(torch.as_tensor(gamma))
        bn.bias.copy_(torch.as_tensor(beta))
        bn.running_mean.copy_(torch.as_tensor(mm))
        bn.running_var.copy_(torch.as_tensor(mv))
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


def port_tuple(*a):
    return (1,)


def freeze(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)


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
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_eval_only(model, x, target, optimizer):
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_undone(model, x, target, optimizer):
    freeze(model)
    model.train()
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_whole_eval(model, x, target, optimizer):
    model.eval()
    for p in model[1].parameters():
        p.requires_grad_(False)
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_no_train(model, x, target, optimizer):
    freeze(model)
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_nostep(model, x, target, optimizer):
    model.train()
    freeze(model)
    F.mse_loss(model(x), target).backward()


def step_helper(model, x, target, optimizer):
    from normlab.finetune import freeze_batch_norm

    if not hasattr(model, "_h"):
        model._h = freeze_batch_norm(model)
    model.train()
    optimizer.zero_grad()
    F.mse_loss(model(x), target).backward()
    optimizer.step()


def step_raise(model, x, target, optimizer):
    model(torch.zeros(3))


UPDATE_CASES = [
    (up_ok, None),
    (up_rev, "momentum-reversed"),
    (up_biased, "running-var-biased"),
    (up_fixed, "ignores-momentum"),
    (up_graph, "stats-not-detached"),
    (up_inplace, "mutates-input"),
    (up_none, "not-a-tensor"),
]


@pytest.mark.parametrize("fn, code", UPDATE_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_running_stats_update_names_each_mistake(fn, code):
    result = check_running_stats_update(fn)
    assert result.passed is (code is None) and result.mistake == code, result.message


def test_running_stats_update_other_correct_forms():
    def with_no_grad(rm, rv, x, momentum):
        with torch.no_grad():
            n = x.shape[0]
            return torch.lerp(rm, x.mean(0), momentum), torch.lerp(rv, x.var(0, correction=0) * n / (n - 1), momentum)

    assert check_running_stats_update(with_no_grad).passed
    assert "new_var (1.4051, 0.4959, 1.8271) (expected (1.4189, 0.5074, 1.8339))" in (
        check_running_stats_update(up_biased).observed
    )


PORT_CASES = [
    (port_ok, None),
    (port_rev, "momentum-reversed"),
    (port_eps, "eps-not-ported"),
    (port_fixed, "ignores-momentum"),
    (port_swap, "swapped-affine"),
    (port_std, "stats-not-ported"),
    (port_nostats, "stats-not-ported"),
    (port_tuple, "not-a-module"),
]


@pytest.mark.parametrize("fn, code", PORT_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_keras_port_names_each_mistake(fn, code):
    result = check_keras_port(fn)
    assert result.passed is (code is None) and result.mistake == code, result.message


def test_keras_port_reports_every_mistake_and_accepts_load_state_dict():
    def everything_wrong(gamma, beta, mm, mv, momentum, epsilon):
        return nn.BatchNorm1d(4, momentum=momentum)

    result = check_keras_port(everything_wrong)
    assert (result.mistake, *result.also) == (
        "momentum-reversed",
        "eps-not-ported",
        "missing-affine",
        "stats-not-ported",
    )

    def by_state_dict(gamma, beta, mm, mv, momentum, epsilon):
        bn = nn.BatchNorm1d(4, eps=epsilon, momentum=round(1 - momentum, 6))
        names = ("weight", "bias", "running_mean", "running_var")
        bn.load_state_dict(
            {**bn.state_dict(), **{k: torch.from_numpy(v) for k, v in zip(names, (gamma, beta, mm, mv))}}
        )
        return bn

    assert check_keras_port(by_state_dict).passed


STEP_CASES = [
    (step_ok, None),
    (step_helper, None),
    (step_grad_only, "bn-stats-updated"),
    (step_undone, "bn-stats-updated"),
    (step_eval_only, "bn-params-trained"),
    (step_whole_eval, "model-not-in-train-mode"),
    (step_no_train, "model-not-in-train-mode"),
    (step_nostep, "not-trained"),
    (step_raise, "raised"),
]


@pytest.mark.parametrize("fn, code", STEP_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_fine_tune_step_names_each_mistake(fn, code):
    result = check_fine_tune_step(fn)
    assert result.passed is (code is None) and result.mistake == code, result.message


def test_fine_tune_step_messages_are_the_same_in_any_session():
    torch.manual_seed(123)
    first = check_fine_tune_step(step_ok).observed
    torch.manual_seed(456)
    assert check_fine_tune_step(step_ok).observed == first and "(max |change| 0.1223)" in first
    assert "num_batches_tracked 2" in check_fine_tune_step(step_grad_only).observed


CHECKERS = {
    check_masked_batch_norm: 5,
    check_running_stats_update: 4,
    check_keras_port: 6,
    check_fine_tune_step: 4,
}


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_hostile_code_never_crashes_and_the_session_is_put_back(checker):
    def forever(*args, **kwargs):
        while True:
            pass

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

    mean = torch.mean
    start = time.monotonic()
    assert checker(forever, time_limit=0.5).mistake == "too-slow"
    assert time.monotonic() - start < 10
    result = checker(changes_the_session)
    assert result.mistake == "raised" and "ValueError: nope" in result.observed
    assert torch.get_default_dtype() == torch.float32 and torch.mean is mean
    assert any("default dtype" in note for note in result.session) and "more characters not shown" in result.printed
    weird = checker(lambda *args, **kwargs: Weird())
    assert not weird.passed and weird.mistake in MISTAKES
    with pytest.raises(TypeError, match="expects your function"):
        checker(42)


def test_the_probe_arrays_are_float32_numpy_like_keras_weights():
    seen = []

    def spy(gamma, beta, mm, mv, momentum, epsilon):
        seen.append((type(gamma), gamma.dtype))
        return port_ok(gamma, beta, mm, mv, momentum, epsilon)

    assert check_keras_port(spy).passed and seen[0] == (np.ndarray, np.dtype("float32"))
