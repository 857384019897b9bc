"""Functional forms that follow PyTorch's own signatures, computed by kdfuse's fused kernels.

``kl_div`` is ``torch.nn.functional.kl_div`` for knowledge distillation: the same arguments and reductions, plus a
``temperature`` and token masking (``labels`` / ``ignore_index``), in one fused call over the rows of the last
dimension (the distributions)::

    # was: F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    loss = kdfuse.functional.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    loss = kdfuse.functional.kl_div(s, t, reduction="batchmean", log_target=True, temperature=T)  # same loss, fused

What differs from ``F.kl_div``:

- ``input`` is read as logits of the student distribution: kdfuse normalises each row (log_softmax) inside the
  kernel. For log-probabilities (the usual ``F.log_softmax`` output) the loss equals ``F.kl_div``'s and the
  gradient that reaches the logits before the log_softmax is the same; ``F.kl_div`` itself does not normalise, so
  for an ``input`` that is not a log-distribution the two differ.
- ``reduction="none"`` gives one value per distribution (shape ``input.shape[:-1]``), not per element: the fused
  kernel never materialises the element terms.
- ``temperature`` T: T^2 KL(softmax(t / T) || softmax(s / T)) per row, t the target's logits (``log_target=True``:
  ``target`` itself; else ``log(target)``, zero probabilities allowed).
- ``labels`` (same shape as ``input.shape[:-1]``, integer) with ``ignore_index``: rows whose label equals
  ``ignore_index`` (padding tokens) contribute nothing, and "batchmean" / "mean" divide by the rows that remain
  (times the classes for "mean") instead of ``input.size(0)`` / ``input.numel()``: the token-level mean of LLM
  distillation. The count stays on the device (no host synchronisation).
"""
import torch
from torch import Tensor

from . import ops

__all__ = ["kl_div", "REDUCTIONS"]

REDUCTIONS = ("none", "batchmean", "mean", "sum")


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False,
           temperature: float = 1.0, labels: Tensor = None, ignore_index: int = -100) -> Tensor:
    """KL(target || input) over the last dimension, reduced as ``torch.nn.functional.kl_div`` (see the module
    docstring for what differs). Float32, float16 or bfloat16 (computed in float32; the loss is float32)."""
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"kdfuse.functional.kl_div: input and target must be tensors, got {type(input).__name__} "
                        f"and {type(target).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"kdfuse.functional.kl_div: reduction must be one of {REDUCTIONS}, not {reduction!r}")
    if input.shape != target.shape:
        raise ValueError(f"kdfuse.functional.kl_div: input and target must have the same shape (no broadcasting), "
                         f"got {tuple(input.shape)} and {tuple(target.shape)}")
    if input.dim() == 0 or input.numel() == 0:
        raise ValueError(f"kdfuse.functional.kl_div: input must hold at least one distribution along its last "
                         f"dimension, got shape {tuple(input.shape)}")
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"kdfuse.functional.kl_div: temperature must be positive and finite, got {temperature}")
    rows_shape = input.shape[:-1]
    classes = input.shape[-1]
    student = input.reshape(-1, classes)
    teacher = (target if log_target else target.log()).reshape(-1, classes)
    rows = student.shape[0]

    weight = None
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex:
            raise TypeError("kdfuse.functional.kl_div: labels must be an integer tensor")
        if labels.shape != rows_shape:
            raise ValueError(f"kdfuse.functional.kl_div: labels must have the shape of input without its last "
                             f"dimension, {tuple(rows_shape)}, got {tuple(labels.shape)}")
        keep = (labels.reshape(-1) != ignore_index).to(torch.float32)
        if reduction in ("batchmean", "mean"):  # the kernel's batch mean divides by all rows: rescale to the kept
            keep = keep * (rows / keep.sum().clamp_min(1.0))
        weight = keep

    if reduction == "none":
        return ops.kd(student, teacher, float(temperature), weight=weight, reduction="none").reshape(rows_shape)
    loss = ops.kd(student, teacher, float(temperature), weight=weight)  # T^2 / rows * sum_i w_i KL_i
    if reduction == "sum":
        return loss * rows
    if labels is not None:
        return loss if reduction == "batchmean" else loss / classes
    denominator = input.shape[0] if reduction == "batchmean" else input.numel()
    return loss if denominator == rows else loss * (rows / denominator)
