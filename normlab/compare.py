"""Compare a result with a reference in one line whose text is the same on every CPU.

Two float32 computations of the same formula differ by rounding, and the exact size of
that difference depends on the order of the additions, which depends on the CPU's vector
width and on the BLAS library. Printing it (``3.0e-07`` here, ``2.4e-07`` on another
laptop) prints noise. :func:`compare` says instead whether the two agree within a stated
rounding bound, and prints the size of the difference only when they really disagree::

    >>> compare(torch.tensor([0.5, 0.75]), torch.tensor([0.5, 0.75 + 1e-7]))
    ours vs torch: agree, max |difference| < 1e-05 (float32 rounding)
    >>> compare(torch.tensor([0.5, 1.0]), torch.tensor([0.5, 1.5]), "scratch vs torch")
    scratch vs torch: DIFFER, max |difference| = 0.5 (rounding bound 1e-04)

Taught in 00 (the first comparison with torch) and used wherever a notebook or a checker
message compares two results.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Relative rounding bound per dtype: a few hundred units in the last place of float32, which
# covers the reductions over a few thousand elements in the notebooks, far below any mistake.
RELATIVE_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-1,
}


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`: ``agree`` is True when max |difference| <= ``tolerance``."""

    label: str
    max_difference: float
    tolerance: float
    dtype_name: str

    @property
    def agree(self) -> bool:
        return self.max_difference <= self.tolerance  # False for NaN

    def __bool__(self) -> bool:
        return self.agree

    def __str__(self) -> str:
        if self.agree:
            return f"{self.label}: agree, max |difference| < {self.tolerance:.0e} ({self.dtype_name} rounding)"
        return (
            f"{self.label}: DIFFER, max |difference| = {self.max_difference:.3g} (rounding bound {self.tolerance:.0e})"
        )

    __repr__ = __str__


def rounding_tolerance(reference: torch.Tensor, dtype: torch.dtype) -> float:
    """The bound RELATIVE_TOLERANCE[dtype] * max(1, max |reference|), rounded up to a power of ten.

    Rounding up keeps the printed bound the same on every machine: it moves only when the
    reference's largest magnitude crosses a power of ten.
    """
    if dtype not in RELATIVE_TOLERANCE:
        raise TypeError(f"compare() works on floating-point tensors; got dtype {dtype}. Convert with .float() first.")
    finite = reference[torch.isfinite(reference)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    bound = RELATIVE_TOLERANCE[dtype] * scale
    return 10.0 ** math.ceil(round(math.log10(bound), 9))


def compare(
    ours: torch.Tensor, reference: torch.Tensor, label: str = "ours vs torch", tolerance: float | None = None
) -> Comparison:
    """Compare ``ours`` with ``reference`` (same shape): agreement within a rounding bound, or the real gap.

    The bound defaults to :func:`rounding_tolerance` for the less precise of the two dtypes.
    NaN in the same places in both counts as agreement; NaN or inf in only one is a
    difference of inf.
    """
    ours, reference = torch.as_tensor(ours).detach(), torch.as_tensor(reference).detach()
    if ours.shape != reference.shape:
        raise ValueError(
            f"compare() needs two tensors of the same shape; got {tuple(ours.shape)} and "
            f"{tuple(reference.shape)}. Compare like with like (reshape or index one of them first)."
        )
    dtype = (
        ours.dtype
        if ours.dtype.is_floating_point and ours.dtype.itemsize <= reference.dtype.itemsize
        else reference.dtype
    )
    if not (ours.dtype.is_floating_point and reference.dtype.is_floating_point):
        dtype = ours.dtype if not ours.dtype.is_floating_point else reference.dtype
    bound = rounding_tolerance(reference.double(), dtype) if tolerance is None else float(tolerance)
    a, b = ours.double(), reference.double()
    both_nan = a.isnan() & b.isnan()
    same_inf = a.isinf() & (a == b)
    difference = (a - b).abs().masked_fill(both_nan | same_inf, 0.0).nan_to_num(nan=math.inf)
    largest = difference.max().item() if difference.numel() else 0.0
    return Comparison(label, largest, bound, str(dtype).removeprefix("torch."))


def fmt(value: float | torch.Tensor, spec: str = ".4f") -> str:
    """``format(value, spec)``, except that a value that rounds to zero prints without a sign.

    A mean that is zero up to rounding is ``-3e-09`` on one CPU and ``+2e-09`` on another;
    printed at 4 decimals, the first shows ``-0.0000``. ``fmt`` prints ``0.0000`` for both::

        >>> fmt(-3e-09), fmt(2e-09), fmt(-0.25, ".2f")
        ('0.0000', '0.0000', '-0.25')
    """
    text = format(float(value), spec)
    if text.startswith("-") and not any(ch in "123456789" for ch in text.split("e")[0]):
        return ("+" if "+" in spec else "") + text[1:]
    return text


def fmt_spread(values: Sequence[float], spec: str = ".2f") -> str:
    """The median of ``values`` and their range, as "median [min–max]", each with :func:`fmt`.

    How a result that depends on a seed is printed (notebook 01 §4-§5): one run could be luck,
    the range over seeds shows how much. A single value prints alone::

        >>> fmt_spread([0.82, 0.79, 0.85]), fmt_spread([40, 50, 40, 40, 60], "g"), fmt_spread([3.0], ".1f")
        ('0.82 [0.79–0.85]', '40 [40–60]', '3.0')
    """
    if not values:
        raise ValueError("fmt_spread needs at least one value; got none.")
    middle = fmt(statistics.median(values), spec)
    if len(values) == 1:
        return middle
    return f"{middle} [{fmt(min(values), spec)}–{fmt(max(values), spec)}]"


def plotted(values: Sequence[float], digits: int = 6) -> list[float]:
    """``values`` rounded to ``digits`` significant digits: what a figure should draw of a computed result.

    A figure is compared byte for byte under other CPU kernel paths (``make test-portability``).
    Float64 results that passed through a long computation differ there in their last bits
    (1e-9 relative after 20 Adam steps in notebook 05), and a line moved by that can change one
    anti-aliased pixel. Rounded to 6 digits, far below what the eye can read, they draw the same::

        >>> plotted([0.123456789, 1234.56789, 0.0])
        [0.123457, 1234.57, 0.0]
    """
    return [float(f"{float(v):.{digits}g}") for v in values]
