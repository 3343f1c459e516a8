"""check_batch_norm_module: torch's semantics pass; each training/eval mistake is named with its numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import normlab.nn
from normlab.checks import check_batch_norm_module


class HandBN(nn.Module):
    """A correct hand-written BatchNorm for (N, C) input; the mistaken ones below change one method."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def normalize(self, x, mean, var):
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    def update(self, mean, var, n):
        """running <- (1 - momentum) * running + momentum * batch statistic (the unbiased variance)."""
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))

    def forward(self, x):
        if not self.training:
            return self.normalize(x, self.running_mean, self.running_var)
        mean, var = x.mean(dim=0), x.var(dim=0, correction=0)
        self.update(mean, var, x.shape[0])
        return self.normalize(x, mean, var)


class ReplacesBuffersEachStep(HandBN):
    """Also correct: new tensors each step, from detached statistics, stored with shape (1, C)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.running_mean = torch.zeros(1, num_features)
        self.running_var = torch.ones(1, num_features)

    def forward(self, x):
        if not self.training:
            return self.normalize(x, self.running_mean, self.running_var)
        mean, var = x.mean(dim=0, keepdim=True), x.var(dim=0, keepdim=True, unbiased=False)
        unbiased = x.var(dim=0, keepdim=True).detach()
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean.detach()
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * unbiased
        return self.normalize(x, mean, var)


@pytest.mark.parametrize(
    "cls",
    [torch.nn.BatchNorm1d, normlab.nn.BatchNorm1d, HandBN, ReplacesBuffersEachStep],
    ids=lambda c: f"{c.__module__}.{c.__name__}",
)
def test_correct_modules_pass(cls):
    result = check_batch_norm_module(cls)
    assert (result.passed, result.mistake) == (True, None), result.message


class KerasMomentum(HandBN):
    def update(self, mean, var, n):
        with torch.no_grad():  # momentum 0.1 used as the weight of the OLD value
            self.running_mean.copy_(self.momentum * self.running_mean + (1 - self.momentum) * mean)
            self.running_var.copy_(self.momentum * self.running_var + (1 - self.momentum) * var * n / (n - 1))


class StoresBiasedVariance(HandBN):
    def update(self, mean, var, n):
        super().update(mean, var * (n - 1) / n, n)  # stores var, the biased variance


class NeverUpdates(HandBN):
    def update(self, mean, var, n):
        pass


class KeepsGraph(HandBN):
    def update(self, mean, var, n):  # no torch.no_grad(), no detach(): the buffers join the graph
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * n / (n - 1)


class UpdatesAlways(HandBN):
    def forward(self, x):
        mean, var = x.mean(dim=0), x.var(dim=0, correction=0)
        running = self.running_mean.clone(), self.running_var.clone()
        self.update(mean, var, x.shape[0])  # in eval mode too
        return self.normalize(x, *(running if not self.training else (mean, var)))


class BatchStatsInEval(HandBN):
    def forward(self, x):
        y = super().forward(x)
        return y if self.training else self.normalize(x, x.mean(dim=0), x.var(dim=0, correction=0))


class EvalByGradMode(HandBN):
    """The d2l-style test `torch.is_grad_enabled()` for training: model.eval() alone does not switch it."""

    def forward(self, x):
        self.training = torch.is_grad_enabled()
        return super().forward(x)


class EvalEpsOutside(HandBN):
    def forward(self, x):
        if self.training:
            return super().forward(x)
        return (x - self.running_mean) / (self.running_var.sqrt() + self.eps) * self.weight + self.bias


class NormalizesWithUnbiased(HandBN):
    def forward(self, x):
        y = super().forward(x)
        return y if not self.training else self.normalize(x, x.mean(dim=0), x.var(dim=0))


class SubtractsInPlace(HandBN):
    def forward(self, x):
        y = super().forward(x.clone())
        x.sub_(x.mean(dim=0))
        return y


class StartsWithZeroVariance(HandBN):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.running_var.zero_()


class NoRunningVar(HandBN):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        del self.running_var


class OneTooMany(HandBN):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features + 1, eps, momentum)


class Typo(HandBN):
    def forward(self, x):
        return x / self.runing_var


class NotAModule:
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.num_features = num_features


class ForwardStub(HandBN):
    def forward(self, x):
        raise NotImplementedError("your code here")


class InitStub(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        raise NotImplementedError("your code here")


class Endless(HandBN):
    def forward(self, x):
        while True:
            pass


MISTAKEN = [
    ("momentum-reversed", KerasMomentum),
    ("running-var-biased", StoresBiasedVariance),
    ("stats-not-updated", NeverUpdates),
    ("stats-not-detached", KeepsGraph),
    ("updates-in-eval", UpdatesAlways),
    ("eval-uses-batch-stats", BatchStatsInEval),
    ("eval-uses-batch-stats", EvalByGradMode),
    ("eps-outside-sqrt", EvalEpsOutside),
    ("unbiased-variance", NormalizesWithUnbiased),
    ("mutates-input", SubtractsInPlace),
    ("unknown", StartsWithZeroVariance),
    ("unknown", NotAModule),
    ("not-a-tensor", NoRunningVar),
    ("wrong-shape", OneTooMany),
    ("raised", Typo),
]


@pytest.mark.parametrize("code, cls", MISTAKEN, ids=lambda v: getattr(v, "__name__", v))
def test_each_module_mistake_is_named(code, cls):
    result = check_batch_norm_module(cls)
    assert (result.passed, result.mistake) == (False, code), result.message
    assert result.observed and result.hint


def test_reversed_momentum_is_measured_as_the_fraction_moved():
    observed = check_batch_norm_module(KerasMomentum).observed
    assert "it moved 0.90 of the way to the batch's value" in observed
    assert "PyTorch moves it 0.10 of the way" in observed and "Keras" in observed


def test_biased_running_variance_shows_both_candidates():
    observed = check_batch_norm_module(StoresBiasedVariance).observed
    assert "divide by n - 1 = 5" in observed and "divide by n = 6" in observed


def test_not_detached_names_the_grad_fn():
    observed = check_batch_norm_module(KeepsGraph).observed
    assert "running_mean has requires_grad=True and grad_fn=AddBackward0" in observed


def test_grad_mode_as_training_flag_is_caught_in_eval_and_also_updates():
    result = check_batch_norm_module(EvalByGradMode)
    assert result.also == ("updates-in-eval",)
    assert "your output was normalized with this batch's own statistics" in result.observed


def test_eval_eps_mistake_quotes_the_divisor():
    observed = check_batch_norm_module(EvalEpsOutside).observed
    assert "on channel 1 (running_var 0.0100)" in observed
    assert "sqrt(running_var + eps) = 0.7141" in observed and "sqrt(running_var) + eps: 0.6000" in observed


def test_structure_problems_are_said():
    assert "NoRunningVar.running_var is missing" in check_batch_norm_module(NoRunningVar).observed
    assert (
        "After it was built as OneTooMany(4, eps=1e-05, momentum=0.1), OneTooMany.weight has shape (5,); "
        "expected (4,)" in check_batch_norm_module(OneTooMany).observed
    )
    assert "not a torch.nn.Module" in check_batch_norm_module(NotAModule).observed
    assert (
        "running_var = [0.0000, 0.0000, 0.0000, 0.0000] (torch: all 1)"
        in check_batch_norm_module(StartsWithZeroVariance).observed
    )


@pytest.mark.parametrize("cls", [ForwardStub, InitStub])
def test_stubs_are_not_solved_yet(cls):
    result = check_batch_norm_module(cls)
    assert (result.passed, result.mistake, result.status) == (False, None, "not-solved")
    assert "NotImplementedError: your code here" in result.observed


def test_an_endless_forward_is_stopped():
    result = check_batch_norm_module(Endless, time_limit=0.2)
    assert result.mistake == "too-slow" and "called in training mode" in result.observed


def test_the_class_is_left_unchanged_and_results_repeat():
    before = dict(vars(KerasMomentum))
    first = check_batch_norm_module(KerasMomentum)
    assert dict(vars(KerasMomentum)) == before
    assert check_batch_norm_module(KerasMomentum) == first


def test_passing_an_instance_is_a_teaching_error():
    with pytest.raises(TypeError, match="pass the class itself"):
        check_batch_norm_module(HandBN(4))
