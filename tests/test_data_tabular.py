"""normlab.data.tabular: the made-up students of notebook 02."""

from __future__ import annotations

import torch

from normlab.data.tabular import STUDENT_FEATURES, student_measurements


def test_student_measurements_are_three_features_on_three_scales():
    x = student_measurements(8)
    assert len(STUDENT_FEATURES) == x.shape[1]
    assert x.shape == (8, 3) and x.dtype == torch.float32
    assert torch.equal(x, student_measurements(8))  # deterministic
    assert 150 < x[:, 0].mean() < 190 and 45 < x[:, 1].mean() < 85 and 18 <= x[:, 2].min() <= x[:, 2].max() <= 26
    assert torch.equal(x, (x * 10).round() / 10)  # one decimal
    assert torch.corrcoef(x[:, :2].T)[0, 1] > 0.5  # taller students weigh more
