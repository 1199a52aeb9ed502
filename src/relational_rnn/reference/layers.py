"""The building blocks: activations, Linear, LayerNorm and the ReLU MLP, each with its backward.

Every ``forward`` returns its output and what its ``backward`` needs (the cache);
every ``backward`` adds the parameter gradients into ``grads`` and returns the
gradient with respect to its input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .module import Module, Params, uniform

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed as (1 + tanh(x / 2)) / 2 so that it never overflows."""
    y = np.tanh(0.5 * x)
    y += 1.0
    y *= 0.5
    return y


class Linear(Module):
    """y = x W^T + b over the last axis; W (out, in) is ``weight``, b (out,) is ``bias``."""

    def __init__(self, in_size: int, out_size: int, bias: bool = True, prefix: str = "") -> None:
        self.in_size = in_size
        self.out_size = out_size
        self.weight = prefix + "weight"
        self.bias = prefix + "bias" if bias else None

    def init_params(self, rng: np.random.Generator, dtype=np.float64) -> Params:
        bound = self.in_size**-0.5
        params = {self.weight: uniform(rng, (self.out_size, self.in_size), bound, dtype)}
        if self.bias is not None:
            params[self.bias] = uniform(rng, (self.out_size,), bound, dtype)
        return params

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        """x (..., in) -> y (..., out). The cache of a Linear is its input x."""
        y = x.reshape(-1, self.in_size) @ params[self.weight].T  # (rows, out)
        if self.bias is not None:
            y += params[self.bias]
        return y.reshape(*x.shape[:-1], self.out_size)

    def backward(self, params: Params, x: np.ndarray, dy: np.ndarray, grads: Params) -> np.ndarray:
        """dy (..., out) -> dx (..., in); adds dW = dy^T x and db = sum(dy)."""
        dy_rows = dy.reshape(-1, self.out_size)  # (rows, out)
        grads[self.weight] += dy_rows.T @ x.reshape(-1, self.in_size)  # (out, in)
        if self.bias is not None:
            grads[self.bias] += dy_rows.sum(axis=0)
        return (dy_rows @ params[self.weight]).reshape(*dy.shape[:-1], self.in_size)


class LayerNorm(Module):
    """y = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta, over the last axis only."""

    def __init__(self, size: int, prefix: str = "") -> None:
        self.size = size
        self.weight = prefix + "weight"  # gamma (size,)
        self.bias = prefix + "bias"  # beta (size,)

    def init_params(self, rng: np.random.Generator, dtype=np.float64) -> Params:
        return {self.weight: np.ones(self.size, dtype), self.bias: np.zeros(self.size, dtype)}

    def forward(self, params: Params, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """x (..., size) -> y (..., size), cache (x_hat, 1 / std)."""
        centred = x - x.mean(axis=-1, keepdims=True)
        inv_std = 1.0 / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
        x_hat = centred * inv_std  # (..., size)
        return x_hat * params[self.weight] + params[self.bias], (x_hat, inv_std)

    def backward(self, params: Params, cache: tuple, dy: np.ndarray, grads: Params) -> np.ndarray:
        """dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / std."""
        x_hat, inv_std = cache
        grads[self.weight] += (dy * x_hat).reshape(-1, self.size).sum(axis=0)
        grads[self.bias] += dy.reshape(-1, self.size).sum(axis=0)
        dx_hat = dy * params[self.weight]  # (..., size)
        return inv_std * (
            dx_hat
            - dx_hat.mean(axis=-1, keepdims=True)
            - x_hat * (dx_hat * x_hat).mean(axis=-1, keepdims=True)
        )


class MLP(Module):
    """Linear layers ``prefix.layers.k`` of the given sizes, ReLU between them, none after the last.

    Used for the RMC's attention MLP (all sizes S) and for the prediction heads.
    """

    def __init__(self, sizes: Sequence[int], prefix: str = "") -> None:
        self.layers = [
            Linear(a, b, prefix=f"{prefix}layers.{k}.")
            for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        ]

    def children(self) -> tuple[Module, ...]:
        return tuple(self.layers)

    def forward(self, params: Params, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """x (..., sizes[0]) -> (..., sizes[-1]); the cache is each layer's input."""
        inputs = []
        for k, layer in enumerate(self.layers):
            x = x if k == 0 else np.maximum(x, 0.0)
            inputs.append(x)
            x = layer.forward(params, x)
        return x, inputs

    def backward(
        self, params: Params, inputs: list[np.ndarray], dy: np.ndarray, grads: Params
    ) -> np.ndarray:
        """dy (..., sizes[-1]) -> dx (..., sizes[0]), last layer first."""
        for k in reversed(range(len(self.layers))):
            dy = self.layers[k].backward(params, inputs[k], dy, grads)
            if k > 0:
                dy = dy * (inputs[k] > 0)  # ReLU: the layer's input is relu(previous output)
        return dy
