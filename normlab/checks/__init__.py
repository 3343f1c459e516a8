"""Exercise checkers that name the learner's mistake (normlab's top layer).

Each checker runs the learner's code on probe inputs built so that every known mistake
changes the output in its own way, compares with :mod:`normlab.functional`, and returns
a :class:`CheckResult`: ``.passed``, ``.mistake`` (None or a code from :data:`MISTAKES`),
and what was checked, what was observed (with numbers) and a hint. It shows as HTML in
Jupyter and as text elsewhere.

- ``check_batch_norm(fn, layout)``: ``fn(x, gamma, beta, eps=1e-5)``, layout "NC", "NCL", "NLC", "NCHW".
- ``check_layer_norm(fn, layout)``: ``fn(x, gamma, beta, eps=1e-5)``, layout "NC", "NLC", "NCHW", "NHWC".
- ``check_group_norm(fn, num_groups)``: ``fn(x, num_groups, gamma, beta, eps=1e-5)`` on NCHW.
- ``check_rms_norm(fn, layout="NLC")``: ``fn(x, gamma, eps=1e-6)``.
- ``check_batch_norm_module(cls)``: ``cls(num_features, eps=1e-5, momentum=0.1)``, an nn.Module
  (a plain class with ``__call__`` and ``.training`` is checked too, and said not to be one).
- ``check_pre_ln_block(fn)``: ``fn(x, attention, mlp, eps=1e-5)``, a pre-LN transformer block.
- ``check_masked_batch_norm(fn)``: ``fn(x, mask, gamma, beta, eps=1e-5)``, BatchNorm over a padded batch's real tokens.
- ``check_running_stats_update(fn)``, ``check_keras_port(fn)``, ``check_fine_tune_step(fn)``: notebook 03's
  running-statistics update, Keras port and fine-tuning step with frozen BatchNorm.
- ``check_float16_layer_norm(fn)``: ``fn(x, gamma, beta, eps=1e-5)``, right in float16 too.
- ``check_batch_norm_backward(fn)``, ``check_fold_batch_norm(fn)``: notebook 05's BatchNorm backward by hand
  and BatchNorm folded into the Linear layer before it.
- ``check_steps_from_kappa(fn)``, ``check_largest_stable_lr(fn)``, ``check_saturated_fraction(fn)``: notebook 01's
  ``fn(kappa, shrink)``, ``fn(x)`` and ``fn(model, x, threshold=0.97)``.

Design decisions:

- A stub that raises ``NotImplementedError`` is *not solved yet*: ``passed=False``,
  ``mistake=None``, ``status == "not-solved"``. ``"raised"`` is for every other exception.
- Learner code runs with a time limit (``time_limit``, 10 s per call by default; ``inf``
  for none) and is really stopped when it runs over (``"too-slow"``) or when the kernel is
  interrupted (``"interrupted"``): see :mod:`normlab.checks._limits`, which also says when
  code may still be running (outside the main thread, or code that hoards the exceptions
  that stop it). A checker never raises
  because of learner code; it raises ``TypeError``/``ValueError`` only when the checker
  itself is called wrongly.
- Learner code gets copies of the probe tensors; changes to them are reported as
  ``"mutates-input"``. The verdict does not depend on the caller's grad mode, default
  dtype or other settings, and whatever learner code changes in the session is put back
  after every call: settings and torch's functions with a note in the result's
  ``session`` (:mod:`normlab.checks._session`), random states without one. What it prints or warns is
  captured, bounded, in ``printed``.
"""

from normlab.checks._inside_batch_norm import check_batch_norm_backward, check_fold_batch_norm
from normlab.checks._module import check_batch_norm_module
from normlab.checks._norms import check_batch_norm, check_group_norm, check_layer_norm, check_rms_norm
from normlab.checks._result import MISTAKES, CheckResult
from normlab.checks._train_vs_eval_exercises import check_fine_tune_step, check_keras_port, check_running_stats_update
from normlab.checks._transformer import check_float16_layer_norm, check_pre_ln_block
from normlab.checks.batch_norm_across_processes import check_combine_statistics
from normlab.checks.which_axes import check_masked_batch_norm
from normlab.checks.why_normalization import check_largest_stable_lr, check_saturated_fraction, check_steps_from_kappa

__all__ = [
    "MISTAKES",
    "CheckResult",
    "check_batch_norm",
    "check_batch_norm_backward",
    "check_batch_norm_module",
    "check_combine_statistics",
    "check_fine_tune_step",
    "check_float16_layer_norm",
    "check_fold_batch_norm",
    "check_group_norm",
    "check_keras_port",
    "check_largest_stable_lr",
    "check_layer_norm",
    "check_masked_batch_norm",
    "check_pre_ln_block",
    "check_rms_norm",
    "check_running_stats_update",
    "check_saturated_fraction",
    "check_steps_from_kappa",
]
