"""Tests generated from the checkers' own declarations: every exercise passes its reference, names each
declared mistake from the implementation that makes it, and its probes tell the mistakes apart."""

from __future__ import annotations

import pytest

from normlab.checks import (
    MISTAKES,
    batch_norm_across_processes,
    inside_batch_norm,
    train_vs_eval,
    which_axes,
    why_normalization,
)
from normlab.checks._result import HINTS
from normlab.checks.runner import Exercise, fresh_copy, run_exercise

EXERCISES: list[Exercise] = [
    *why_normalization.EXERCISES,
    *batch_norm_across_processes.EXERCISES,
    *train_vs_eval.EXERCISES,
    *which_axes.EXERCISES,
    *inside_batch_norm.EXERCISES,
]
BY_NAME = {e.name: e for e in EXERCISES}
MISTAKE_CASES = [
    pytest.param(e.name, key, i, id=f"{e.name}-{'+'.join((key,) if isinstance(key, str) else key)}-{i}")
    for e in EXERCISES
    for key, implementations in e.mistakes.items()
    for i in range(len(implementations))
]


@pytest.mark.parametrize("name", BY_NAME)
def test_the_reference_passes(name):
    exercise = BY_NAME[name]
    result = run_exercise(exercise, exercise.right, 10.0)
    assert result.passed and result.headline == f"✓ {name}({exercise.right.__name__}): passed", result.message


@pytest.mark.parametrize(("name", "key", "i"), MISTAKE_CASES)
def test_each_declared_mistake_is_named_from_an_implementation_that_makes_it(name, key, i):
    exercise = BY_NAME[name]
    first, *also = (key,) if isinstance(key, str) else key
    result = run_exercise(exercise, exercise.mistakes[key][i], 10.0)
    assert (result.mistake, result.also) == (first, tuple(also)), result.message
    assert result.hint == (exercise.hints.get(first) or HINTS.get(first, ""))


@pytest.mark.parametrize("name", BY_NAME)
def test_the_probes_tell_every_mistake_from_the_right_answer_and_from_the_others(name):
    exercise = BY_NAME[name]
    probes = exercise.probes()

    def answers(fn):
        return [exercise.read(fn(*map(fresh_copy, p.args), **p.kwargs)) for p in probes]

    def same(a, b):
        return all(exercise.same(u, v) for u, v in zip(a, b))

    right = answers(exercise.right)
    seen = []
    for key, implementations in exercise.mistakes.items():
        for fn in implementations:
            got = answers(fn)
            assert not same(got, right), f"{key}: the probes cannot tell it from the right answer"
            clash = [k for k, other in seen if k != key and same(got, other)]
            assert not clash, f"{key} gives the same answers as {clash}"
            seen.append((key, got))


@pytest.mark.parametrize("name", BY_NAME)
def test_every_code_an_exercise_names_is_declared_with_a_phrase_and_a_hint(name):
    exercise = BY_NAME[name]
    for code in exercise.codes():
        assert code in MISTAKES
        assert exercise.hints.get(code) or HINTS.get(code), f"{code} has no hint"
