"""SGD and Adam over parameter dicts, and global-norm gradient clipping (PyTorch's formulas)."""

from __future__ import annotations

import numpy as np

from .module import Params, zeros_like


def clip_grad_norm(grads: Params, max_norm: float) -> float:
    """Scale all gradients in place so that their global 2-norm is at most ``max_norm``.

    Same formula as ``torch.nn.utils.clip_grad_norm_``: the factor is
    ``min(1, max_norm / (norm + 1e-6))``. Returns the norm before clipping.
    """
    norm = float(np.sqrt(sum(float((g**2).sum()) for g in grads.values())))
    factor = min(1.0, max_norm / (norm + 1e-6))
    for g in grads.values():
        g *= factor
    return norm


class SGD:
    """p -= lr * v, with v = momentum * v + g (v = g on the first step), as torch.optim.SGD."""

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        self.lr = lr
        self.momentum = momentum
        self.velocity: Params = {}

    def step(self, params: Params, grads: Params) -> None:
        """Update ``params`` in place."""
        for name, g in grads.items():
            if self.momentum:
                v = self.velocity.get(name)
                g = self.velocity[name] = g.copy() if v is None else self.momentum * v + g
            params[name] -= self.lr * g


class Adam:
    """Adam (Kingma & Ba) with bias correction, as torch.optim.Adam computes it.

    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(
        self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.first: Params | None = None  # m
        self.second: Params | None = None  # v

    def step(self, params: Params, grads: Params) -> None:
        """Update ``params`` in place."""
        if self.first is None:
            self.first, self.second = zeros_like(grads), zeros_like(grads)
        self.steps += 1
        step_size = self.lr / (1.0 - self.beta1**self.steps)
        root_correction = np.sqrt(1.0 - self.beta2**self.steps)
        for name, g in grads.items():
            m, v = self.first[name], self.second[name]
            m += (1.0 - self.beta1) * (g - m)  # = b1 m + (1 - b1) g, as torch's lerp
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            params[name] -= step_size * (m / (np.sqrt(v) / root_correction + self.eps))
