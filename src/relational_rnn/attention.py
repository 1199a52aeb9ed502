"""Multi-head dot-product attention, shared by both memories."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_divisible, check_positive_int


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, R, h * d) -> (B, h, R, d)."""
    batch_size, rows, width = x.shape
    return x.view(batch_size, rows, num_heads, width // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, R, d) -> (B, R, h * d)."""
    batch_size, num_heads, rows, head_size = x.shape
    return x.transpose(1, 2).reshape(batch_size, rows, num_heads * head_size)


def attend(queries: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
    """softmax(scale * q k^T) v for every head, heads merged.

    queries (B, h, Q, k), keys (B, h, R, k), values (B, h, R, v) -> (B, Q, h * v).
    """
    attended = F.scaled_dot_product_attention(queries, keys, values, scale=scale)  # (B, h, Q, v)
    return merge_heads(attended)


def attention_weights(queries: Tensor, keys: Tensor, scale: float) -> Tensor:
    """The attention probabilities softmax(scale * q k^T): (B, h, Q, R), for inspection."""
    return torch.softmax(scale * queries @ keys.transpose(-1, -2), dim=-1)


class MultiHeadAttention(nn.Module):
    """Self-attention among the rows of a memory, as the gated slot memory uses it.

        A = concat_h(softmax(q_h k_h^T / sqrt(d)) v_h) W_o + b_o,
        q = M W_q + b_q,  k = M W_k + b_k,  v = M W_v + b_v,  d = size / num_heads

    with every W of shape (size, size). Input and output (B, N, size).
    """

    def __init__(self, size: int, num_heads: int) -> None:
        super().__init__()
        check_positive_int("size", size)
        check_positive_int("num_heads", num_heads)
        check_divisible("size", size, "num_heads", num_heads)
        self.size = size
        self.num_heads = num_heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.output = nn.Linear(size, size)

    def forward(self, memory: Tensor) -> Tensor:
        queries = split_heads(self.query(memory), self.num_heads)  # (B, h, N, d)
        keys = split_heads(self.key(memory), self.num_heads)  # (B, h, N, d)
        values = split_heads(self.value(memory), self.num_heads)  # (B, h, N, d)
        scale = (self.size // self.num_heads) ** -0.5
        return self.output(attend(queries, keys, values, scale))  # (B, N, size)

    def extra_repr(self) -> str:
        return f"size={self.size}, num_heads={self.num_heads}"
