"""Losses, each returning the loss and its gradient with respect to the predictions."""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits (..., C) against class indices (...); and d loss / d logits.

    loss = mean_n(logsumexp(z_n) - z_n[y_n]);  d z = (softmax(z) - one_hot(y)) / n,
    the mean taken over every answer n (every example, and every step when logits are
    (B, L, C)), as ``F.cross_entropy`` on the flattened logits.
    """
    num_classes = logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (..., C)
    log_probs, targets = log_probs.reshape(-1, num_classes), targets.reshape(-1)  # (n, C), (n,)
    rows = np.arange(len(targets))
    loss = -log_probs[rows, targets].mean()
    d_logits = np.exp(log_probs)
    d_logits[rows, targets] -= 1.0
    return float(loss), (d_logits / len(targets)).reshape(logits.shape)


def mean_squared_error(predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """mean((p - y)^2) over all elements; and d loss / d p = 2 (p - y) / size."""
    diff = predictions - targets
    return float((diff**2).mean()), 2.0 * diff / diff.size
