"""Exercise checkers that name the learner's mistake (normlab's top layer).

Each checker runs the learner's code on probe inputs built so that every known mistake
changes the output in its own way, compares with :mod:`normlab.functional`, and returns
a :class:`CheckResult`: ``.passed``, ``.mistake`` (None or a code from :data:`MISTAKES`),
and what was checked, what was observed (with numbers) and a hint. It shows as HTML in
Jupyter and as text elsewhere.

The checkers are in ``__all__``; each one's docstring gives the signature it expects of the learner's code.

The model. A checker is an exercise: a few probe inputs, the right answer for each, and the
answer each known mistake would give, keyed by a stable mistake code declared beside the checker
with its phrase and hint. One runner (:mod:`normlab.checks.runner`) calls the learner's code in a
protected session (:mod:`normlab.checks._session`: a time limit that really stops it, Kernel ->
Interrupt, settings and torch's own functions put back, prints captured) and turns every failure
into a verdict in one place: not solved yet (the stub's ``NotImplementedError``: ``passed=False``,
``mistake=None``), ``raised``, ``too-slow``, ``interrupted``, ``async-function``, ``mutates-input``,
or a value of the wrong type, shape or dtype. Then: equal to the right answers passes; equal to one
mistake's answers on every probe names that mistake with the numbers seen; anything else is
``unknown``. Everything a checker computes (probes, modules, references) is made inside that
session, out of the learner's reach, so the caller's grad mode, a replaced ``torch.mean`` or the
random stream never change a verdict, and the session is left as it was found. A checker raises
``TypeError``/``ValueError`` only when the checker itself is called wrongly. One file per notebook
topic holds only probes, candidates and words (``why_normalization.py`` for notebook 01, ...).
"""

from normlab.checks._result import MISTAKES, CheckResult
from normlab.checks.batch_norm_across_processes import check_combine_statistics
from normlab.checks.inside_batch_norm import check_batch_norm_backward, check_fold_batch_norm
from normlab.checks.train_vs_eval import check_fine_tune_step, check_keras_port, check_running_stats_update
from normlab.checks.train_vs_eval_module import check_batch_norm_module
from normlab.checks.transformers import check_float16_layer_norm, check_pre_ln_block
from normlab.checks.which_axes import (
    check_batch_norm,
    check_group_norm,
    check_layer_norm,
    check_masked_batch_norm,
    check_rms_norm,
)
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
