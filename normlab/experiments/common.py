"""Small helpers the experiments of several notebooks share."""

from __future__ import annotations

from torch import Tensor


def grad_of(t: Tensor) -> Tensor:
    """``t.grad`` after a backward pass; a RuntimeError, not a None, if no gradient reached ``t``."""
    if t.grad is None:
        raise RuntimeError(f"no gradient reached a tensor of shape {tuple(t.shape)}: call loss.backward() first.")
    return t.grad


def backward_from(output: Tensor, output_grad: Tensor) -> None:
    """``output.backward(output_grad)``, run as ``(output * output_grad).sum().backward()``.

    The gradients are the same to the bit (the product's backward multiplies ``output_grad``
    by 1), and a scalar backward skips the import of sympy (about 1 s, once per process) that
    torch 2.13 makes for a non-scalar one: every process of notebook 06 pays it otherwise.
    """
    (output * output_grad).sum().backward()
