"""check_batch_norm_module: torch's semantics pass; each training/eval mistake is named with its numbers."""

from __future__ import annotations

from html import escape as html_escape

import pytest
import torch
from torch import nn

import normlab.nn
from normlab.checks import MISTAKES, check_batch_norm_module


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
    ("mode-from-grad", EvalByGradMode),
    ("eps-outside-sqrt", EvalEpsOutside),
    ("unbiased-variance", NormalizesWithUnbiased),
    ("mutates-input", SubtractsInPlace),
    ("unknown", StartsWithZeroVariance),
    ("not-a-module", NotAModule),
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
    # from -1.9375 towards the batch mean -0.4375: 0.9 of the way is -0.5875, 0.7 of the way -0.8875
    assert "yours is then -0.5875 with momentum=0.1, 0.90 of the way to it, and -0.8875 with momentum=0.3" in observed
    assert "PyTorch moves it 0.10 and 0.30 of the way to the batch's mean -0.4375, to -1.7875 and -1.4875" in observed
    assert "Keras" in observed


def test_the_values_said_to_be_pytorchs_are_torchs():
    from normlab.checks.train_vs_eval_module import TRAIN_BUFFERS, _known
    from normlab.checks.which_axes_variants import batch_norm_spec, make_probes

    probe = make_probes(batch_norm_spec("NC"))[0]
    after = []  # torch's running_mean[0] and running_var[0] after one step from the checker's buffers
    for momentum in (0.1, 0.3):
        bn = torch.nn.BatchNorm1d(4, momentum=momentum).double()
        with torch.no_grad():
            bn.running_mean[:], bn.running_var[:] = _known(probe, "unbiased variance", TRAIN_BUFFERS)
        bn(probe.x.double())
        after.append((f"{bn.running_mean[0]:.4f}", f"{bn.running_var[0]:.4f}"))
    (mean1, var1), (mean3, var3) = after
    assert (
        f"of the way to the batch's mean -0.4375, to {mean1} and {mean3}:"
        in check_batch_norm_module(KerasMomentum).observed
    )
    said = check_batch_norm_module(StoresBiasedVariance).observed
    assert f"of the way to the batch's unbiased variance 2.6701, to {var1} and {var3}:" in said


def test_biased_running_variance_shows_both_candidates():
    observed = check_batch_norm_module(StoresBiasedVariance).observed
    assert "divide by n - 1 = 5" in observed and "divide by n = 6" in observed


def test_not_detached_names_the_grad_fn():
    observed = check_batch_norm_module(KeepsGraph).observed
    assert "running_mean has requires_grad=True and grad_fn=AddBackward0" in observed


def test_grad_mode_as_training_flag_is_named_for_what_it_is():
    result = check_batch_norm_module(EvalByGradMode)
    assert result.also == ()  # its symptoms in eval mode (batch statistics, updates) are not named apart
    assert (
        "In training mode (after .train()) but under torch.no_grad(), your module normalized with its running "
        "statistics and left running_mean and running_var unchanged, as if in eval mode" in result.observed
    )


def test_eval_eps_mistake_shows_the_formula_and_the_largest_difference():
    observed = check_batch_norm_module(EvalEpsOutside).observed
    assert observed == (
        "In eval mode your output equals (x - running_mean) / (sqrt(running_var) + eps) * weight + bias, where "
        "torch's is (x - running_mean) / sqrt(running_var + eps) * weight + bias. With eps = 0.5, running_mean 3.2481 "
        "and running_var 1.1657 in channel 2, sample 0 gives yours -3.4341, torch's -4.0967."
    )


def test_structure_problems_are_said():
    assert "NoRunningVar.running_var is missing" in check_batch_norm_module(NoRunningVar).observed
    assert (
        "After it was built as OneTooMany(4, eps=1e-05, momentum=0.1), OneTooMany.weight has shape (5,); "
        "expected (4,)" in check_batch_norm_module(OneTooMany).observed
    )
    assert "which cannot be called on a tensor: not a torch.nn.Module" in check_batch_norm_module(NotAModule).observed
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


# ---------------------------------------------------------------- the code that circulates


class D2LBatchNorm(nn.Module):
    """d2l's BatchNorm (chapter "Batch Normalization"), with the exercise's constructor."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones((1, num_features)))
        self.beta = nn.Parameter(torch.zeros((1, num_features)))
        self.moving_mean = torch.zeros((1, num_features))
        self.moving_var = torch.ones((1, num_features))

    def forward(self, X):
        if not torch.is_grad_enabled():
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + 1e-5)
        else:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
            X_hat = (X - mean) / torch.sqrt(var + 1e-5)
            self.moving_mean = (1.0 - 0.1) * self.moving_mean + 0.1 * mean.data
            self.moving_var = (1.0 - 0.1) * self.moving_var + 0.1 * var.data
        return self.gamma * X_hat + self.beta


class ArticleBatchNorm(nn.Module):
    """The reference article's hand-written BatchNorm: decay-convention momentum, unbiased variance, no detach."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = nn.Parameter(torch.ones((1, num_features)))
        self.beta = nn.Parameter(torch.zeros((1, num_features)))
        self.moving_mean = torch.zeros((1, num_features))
        self.moving_var = torch.ones((1, num_features))

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=0, keepdim=True)
            var = x.var(dim=0, keepdim=True)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
            self.moving_mean = self.momentum * self.moving_mean + (1.0 - self.momentum) * mean
            self.moving_var = self.momentum * self.moving_var + (1.0 - self.momentum) * var
        else:
            x_hat = (x - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        return self.gamma * x_hat + self.beta


class KarpathyBatchNorm1d:
    """makemore part 3's plain class: __call__, .training, plain tensors, unbiased variance to normalize."""

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x):
        if self.training:
            xmean, xvar = x.mean(0, keepdim=True), x.var(0, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        self.out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class PlainAttributes(HandBN):
    """Right numbers, but the statistics are plain tensors, not buffers."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        del self.running_mean, self.running_var
        self.running_mean, self.running_var = torch.zeros(num_features), torch.ones(num_features)


class IgnoresMomentum(HandBN):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum=0.1)


class FixedReversedMomentum(HandBN):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum=0.9)  # Keras's 0.9, kept whatever is asked


class PlainParameters(HandBN):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        del self.weight, self.bias
        self.weight, self.bias = torch.ones(num_features), torch.zeros(num_features)


class OwnNames(nn.Module):
    """Right in every way but the names."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.scale = nn.Parameter(torch.ones(num_features))
        self.shift = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("moving_mean", torch.zeros(num_features))
        self.register_buffer("moving_var", torch.ones(num_features))

    def forward(self, x):
        if self.training:
            n = x.shape[0]
            mean, var = x.mean(dim=0), x.var(dim=0, correction=0)
            with torch.no_grad():
                self.moving_mean.lerp_(mean, self.momentum)
                self.moving_var.lerp_(var * n / (n - 1), self.momentum)
        else:
            mean, var = self.moving_mean, self.moving_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.scale + self.shift


CIRCULATING = [  # (class, mistake, also): every mistake each one makes
    (
        D2LBatchNorm,
        "missing-eps",
        (
            "mode-from-grad",
            "ignores-momentum",
            "running-var-biased",
            "stats-not-buffers",
            "nonstandard-names",
        ),
    ),
    (
        ArticleBatchNorm,
        "unbiased-variance",
        ("momentum-reversed", "stats-not-detached", "stats-not-buffers", "nonstandard-names"),
    ),
    (KarpathyBatchNorm1d, "unbiased-variance", ("not-a-module", "nonstandard-names")),
    (PlainAttributes, "stats-not-buffers", ()),
    (IgnoresMomentum, "ignores-momentum", ()),
    (FixedReversedMomentum, "momentum-reversed", ("ignores-momentum",)),
    (PlainParameters, "params-not-parameters", ()),
    (OwnNames, "nonstandard-names", ()),
]


@pytest.mark.parametrize("cls, mistake, also", CIRCULATING, ids=lambda v: getattr(v, "__name__", None))
def test_every_mistake_of_the_code_that_circulates_is_named(cls, mistake, also):
    result = check_batch_norm_module(cls)
    assert (result.mistake, result.also) == (mistake, also), result.message
    assert len(result.also_observed) == len(also) and all(result.also_observed)
    text, html = " ".join(result.message.split()), result._repr_html_()
    for code in also:
        assert f"{code} ({MISTAKES[code]})" in text and f"{code} ({html_escape(MISTAKES[code])})" in html


@pytest.mark.parametrize("mode", [torch.no_grad, torch.enable_grad])
def test_the_articles_three_mistakes_are_each_measured(mode):
    with mode():
        result = check_batch_norm_module(ArticleBatchNorm)
    said = dict(zip(result.also, result.also_observed))
    assert "sqrt(5/6) = 0.9129" in result.observed
    assert "In channel 0, moving_mean was -1.9375 before one training step" in said["momentum-reversed"]
    assert "yours is then -0.5875 with momentum=0.1, 0.90 of the way to it" in said["momentum-reversed"]
    assert "moving_mean has requires_grad=True and grad_fn=AddBackward0" in said["stats-not-detached"]
    assert said["nonstandard-names"].startswith(
        "The checker found them by their values and names: gamma (torch: weight), beta (torch: bias), "
        "moving_mean (torch: running_mean), moving_var (torch: running_var)."
    )


def test_plain_attributes_are_shown_missing_from_the_state_dict_and_left_behind_by_double():
    said = check_batch_norm_module(PlainAttributes).observed
    assert said == (
        "running_mean and running_var are plain tensor attributes, not registered buffers: "
        "PlainAttributes(4).state_dict() has only the keys ['weight', 'bias'], so saving and loading the model "
        "loses them, and after .double() running_mean and running_var are still float32 (a buffer follows its "
        "module to a dtype or a device)."
    )


def test_an_ignored_momentum_is_measured_with_a_second_value():
    said = check_batch_norm_module(IgnoresMomentum).observed
    assert said == (
        "In channel 0, running_mean was -1.9375 before one training step on a batch whose mean is -0.4375: yours is "
        "then -1.7875 with momentum=0.1, 0.10 of the way to it, and -1.7875 with momentum=0.3, 0.10 of the way. "
        "PyTorch moves it 0.10 and 0.30 of the way to the batch's mean -0.4375, to -1.7875 and -1.4875: "
        "`running = (1 - momentum) * running + momentum * batch_stat`. Your module ignores the momentum it is given."
    )


def test_a_plain_class_is_checked_with_its_training_attribute():
    result = check_batch_norm_module(KarpathyBatchNorm1d)
    said = dict(zip(result.also, result.also_observed))
    assert said["not-a-module"] == (
        "KarpathyBatchNorm1d is a plain Python class, not a torch.nn.Module (the checker set .training itself): it "
        "has no .train(), .eval(), .state_dict(), .to(), which model.train(), an optimizer, saving and moving to a "
        "device rely on."
    )
    assert "gamma (torch: weight), beta (torch: bias)" in said["nonstandard-names"]


class VarMovesHalfway(HandBN):
    def update(self, mean, var, n):  # running_mean right; running_var moves 0.5 of the way whatever the momentum
        super().update(mean, var, n)
        with torch.no_grad():
            self.running_var.sub_(self.momentum * var * n / (n - 1)).div_(1 - self.momentum).lerp_(
                var * n / (n - 1), 0.5
            )


class VarMomentumFixed(HandBN):
    def update(self, mean, var, n):  # running_mean right; running_var always with 0.1
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(0.9).add_(0.1 * var * n / (n - 1))


@pytest.mark.parametrize(("cls", "moved"), [(VarMovesHalfway, "0.50"), (VarMomentumFixed, "0.10")])
def test_running_var_is_judged_apart_from_running_mean(cls, moved):
    result = check_batch_norm_module(cls)
    assert (result.mistake, result.also) == ("ignores-momentum", ()), result.message
    assert result.observed.startswith("In channel 0, running_var was 5.3403 before one training step")
    assert f"with momentum=0.1, {moved} of the way to it, and " in result.observed
    assert f"with momentum=0.3, {moved} of the way." in result.observed


class UpdatesOnlyTheMean(HandBN):
    def update(self, mean, var, n):
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)


def test_a_buffer_left_as_it_was_is_quoted_with_its_own_values():
    result = check_batch_norm_module(UpdatesOnlyTheMean)
    assert result.mistake == "stats-not-updated", result.message
    assert result.observed.startswith(
        "In channel 0, running_var was 5.3403 before one training step on a batch whose unbiased variance is "
        "2.6701: yours is then 5.3403 with momentum=0.1, 0.00 of the way to it"
    )
    assert result.observed.endswith("Your module does not update it in training mode.")


class NaNInTraining(HandBN):
    def forward(self, x):
        y = super().forward(x)
        return y * float("nan") if self.training else y


def test_a_training_output_with_nan_is_non_finite():
    result = check_batch_norm_module(NaNInTraining)
    assert result.mistake == "non-finite", result.message
    assert "your output has 24 NaN and 0 infinite values out of 24" in result.observed


class EvalWithoutAffine(HandBN):
    def forward(self, x):
        return (
            super().forward(x) if self.training else (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        )


class EvalSwapsAffine(HandBN):
    def forward(self, x):
        y = super().forward(x)
        return y if self.training else (y - self.bias) / self.weight * self.bias + self.weight


class EvalWithItsOwnEps(HandBN):
    def forward(self, x):
        y = super().forward(x)
        return (
            y
            if self.training
            else (x - self.running_mean) / torch.sqrt(self.running_var + 1e-5) * self.weight + self.bias
        )


@pytest.mark.parametrize(
    ("cls", "codes", "formula"),
    [
        (EvalWithoutAffine, ("missing-affine",), "(x - running_mean) / sqrt(running_var + eps),"),
        (EvalSwapsAffine, ("swapped-affine",), "(x - running_mean) / sqrt(running_var + eps) * bias + weight,"),
        (EvalWithItsOwnEps, ("missing-eps",), "(x - running_mean) / sqrt(running_var + 1e-05) * weight + bias,"),
        (BatchStatsInEval, ("eval-uses-batch-stats",), "(x - x.mean(0)) / sqrt(x.var(0, correction=0) + eps)"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_eval_mode_candidates_are_named_with_their_formula(cls, codes, formula):
    result = check_batch_norm_module(cls)
    assert (result.mistake, *result.also) == codes, result.message
    assert result.observed.startswith(f"In eval mode your output equals {formula}")


def test_every_module_mistake_code_is_tested_here():
    from normlab.checks.train_vs_eval_module import MODULE_HINTS, MODULE_ORDER

    named = {code for code, _ in MISTAKEN} | {c for _, mistake, also in CIRCULATING for c in (mistake, *also)}
    module_only = set(MODULE_HINTS) - {"unknown-init"}
    assert module_only <= named
    assert module_only <= set(MODULE_ORDER) and set(MODULE_ORDER) <= set(MISTAKES)
