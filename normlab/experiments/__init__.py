"""Small deterministic experiments that return plain results (dataclasses, tensors, floats)."""
