"""Central finite differences, to check a backward pass against the forward pass alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(
    loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """d loss / d array by central differences: (loss(a + eps) - loss(a - eps)) / (2 eps).

    ``array`` is perturbed in place, one element at a time, and restored; ``loss``
    recomputes the loss from scratch (it must read ``array``).
    """
    grad = np.zeros_like(array)
    for index in range(array.size):
        original = array.flat[index]
        array.flat[index] = original + eps
        plus = loss()
        array.flat[index] = original - eps
        minus = loss()
        array.flat[index] = original
        grad.flat[index] = (plus - minus) / (2.0 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """||a - b|| / max(||a||, ||b||, floor); 0 when all three are 0.

    ``floor`` compares near-zero gradients in absolute terms: some are zero exactly (a
    key bias adds the same number to every score of a softmax row), and then finite
    differences return rounding noise only.
    """
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)), floor)
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0
