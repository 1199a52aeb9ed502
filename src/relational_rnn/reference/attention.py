"""Multi-head dot-product attention and its backward, vectorised over batch and heads."""

from __future__ import annotations

import numpy as np

from .layers import Linear
from .module import Module, Params


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(B, R, h * d) -> (B, h, R, d)."""
    batch_size, rows, width = x.shape
    return x.reshape(batch_size, rows, num_heads, width // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, h, R, d) -> (B, R, h * d)."""
    batch_size, num_heads, rows, size = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch_size, rows, num_heads * size)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (a short one: the N or N + 1 rows attended to)."""
    # Computed on a copy with the short axis first: NumPy reduces a short last axis one
    # row at a time, but a leading axis over all rows at once.
    e = np.moveaxis(x, -1, 0).copy()  # (R, ...)
    e -= e.max(axis=0)
    np.exp(e, out=e)
    e /= e.sum(axis=0)
    return np.moveaxis(e, 0, -1)


def attend(
    queries: np.ndarray, keys: np.ndarray, values: np.ndarray, scale: float
) -> tuple[np.ndarray, tuple]:
    """softmax(scale * q k^T) v for every head, heads merged.

    queries (B, h, Q, k), keys (B, h, R, k), values (B, h, R, v) -> (B, Q, h * v).
    """
    weights = softmax(scale * queries @ keys.swapaxes(-1, -2))  # (B, h, Q, R)
    attended = weights @ values  # (B, h, Q, v)
    return merge_heads(attended), (queries, keys, values, weights, scale)


def attend_backward(cache: tuple, d_attended: np.ndarray) -> tuple[np.ndarray, ...]:
    """d_attended (B, Q, h * v) -> dq (B, h, Q, k), dk (B, h, R, k), dv (B, h, R, v)."""
    queries, keys, values, weights, scale = cache
    d_attended = split_heads(d_attended, weights.shape[1])  # (B, h, Q, v)
    d_values = weights.swapaxes(-1, -2) @ d_attended  # (B, h, R, v)
    d_weights = d_attended @ values.swapaxes(-1, -2)  # (B, h, Q, R)
    # softmax backward, row by row: ds = p * (dp - <dp, p>)
    d_scores = weights * (d_weights - (d_weights * weights).sum(axis=-1, keepdims=True))
    d_queries = scale * d_scores @ keys  # (B, h, Q, k)
    d_keys = scale * d_scores.swapaxes(-1, -2) @ queries  # (B, h, R, k)
    return d_queries, d_keys, d_values


class MultiHeadAttention(Module):
    """Self-attention among the rows of a memory (the gated slot memory's MHA).

        A = concat_h(softmax(q_h k_h^T / sqrt(d)) v_h) W_o + b_o,
        q = M W_q + b_q,  k = M W_k + b_k,  v = M W_v + b_v,  d = size / num_heads

    Parameters ``query``, ``key``, ``value``, ``output``, each Linear(size, size).
    """

    def __init__(self, size: int, num_heads: int, prefix: str = "") -> None:
        self.num_heads = num_heads
        self.scale = (size // num_heads) ** -0.5
        self.query = Linear(size, size, prefix=prefix + "query.")
        self.key = Linear(size, size, prefix=prefix + "key.")
        self.value = Linear(size, size, prefix=prefix + "value.")
        self.output = Linear(size, size, prefix=prefix + "output.")

    def children(self) -> tuple[Module, ...]:
        return (self.query, self.key, self.value, self.output)

    def forward(self, params: Params, memory: np.ndarray) -> tuple[np.ndarray, tuple]:
        """memory (B, N, S) -> A (B, N, S)."""
        queries = split_heads(self.query.forward(params, memory), self.num_heads)  # (B, h, N, d)
        keys = split_heads(self.key.forward(params, memory), self.num_heads)  # (B, h, N, d)
        values = split_heads(self.value.forward(params, memory), self.num_heads)  # (B, h, N, d)
        attended, attend_cache = attend(queries, keys, values, self.scale)  # (B, N, S)
        return self.output.forward(params, attended), (memory, attended, attend_cache)

    def backward(
        self, params: Params, cache: tuple, d_out: np.ndarray, grads: Params
    ) -> np.ndarray:
        """d_out (B, N, S) -> d_memory (B, N, S)."""
        memory, attended, attend_cache = cache
        d_attended = self.output.backward(params, attended, d_out, grads)  # (B, N, S)
        d_queries, d_keys, d_values = attend_backward(attend_cache, d_attended)
        return (
            self.query.backward(params, memory, merge_heads(d_queries), grads)
            + self.key.backward(params, memory, merge_heads(d_keys), grads)
            + self.value.backward(params, memory, merge_heads(d_values), grads)
        )
