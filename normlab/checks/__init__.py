"""Exercise checkers that name the learner's mistake (normlab's top layer).

Each checker runs the learner's code on probe inputs built so that every known mistake
changes the output in its own way, compares with :mod:`normlab.functional`, and returns
a :class:`CheckResult`: ``.passed``, ``.mistake`` (None or a code from :data:`MISTAKES`),
and what was checked, what was observed (with numbers) and a hint. It shows as HTML in
Jupyter and as text elsewhere.

- ``check_batch_norm(fn, layout)``: ``fn(x, gamma, beta, eps=1e-5)``, layout "NC", "NCL", "NLC", "NCHW".
- ``check_layer_norm(fn, layout)``: ``fn(x, gamma, beta, eps=1e-5)``, layout "NC", "NLC", "NCHW".
- ``check_group_norm(fn, num_groups)``: ``fn(x, num_groups, gamma, beta, eps=1e-5)`` on NCHW.
- ``check_rms_norm(fn, layout="NLC")``: ``fn(x, gamma, eps=1e-6)``.
- ``check_batch_norm_module(cls)``: ``cls(num_features, eps=1e-5, momentum=0.1)``, an nn.Module.
- ``check_pre_ln_block(fn)``: ``fn(x, attention, mlp, eps=1e-5)``, a pre-LN transformer block.
- ``check_float16_layer_norm(fn)``: ``fn(x, gamma, beta, eps=1e-5)``, right in float16 too.

Design decisions:

- A stub that raises ``NotImplementedError`` is *not solved yet*: ``passed=False``,
  ``mistake=None``, ``status == "not-solved"``. ``"raised"`` is for every other exception.
- Learner code runs with a time limit (``time_limit``, 10 s per call by default) in a
  worker thread that is stopped when it runs over; that gives the extra code
  ``"too-slow"``. A checker never raises because of learner code and never hangs; it
  raises ``TypeError``/``ValueError`` only when the checker itself is called wrongly.
- Learner code gets copies of the probe tensors; changes to them are reported as
  ``"mutates-input"``. The global random states are restored after each check, and
  the probes come from local generators, so a check is deterministic and leaves a
  notebook's random numbers alone. Anything the learner's code prints is shown.
"""

from normlab.checks._module import check_batch_norm_module
from normlab.checks._norms import check_batch_norm, check_group_norm, check_layer_norm, check_rms_norm
from normlab.checks._result import MISTAKES, CheckResult
from normlab.checks._transformer import check_float16_layer_norm, check_pre_ln_block

__all__ = [
    "MISTAKES",
    "CheckResult",
    "check_batch_norm",
    "check_batch_norm_module",
    "check_float16_layer_norm",
    "check_group_norm",
    "check_layer_norm",
    "check_pre_ln_block",
    "check_rms_norm",
]
