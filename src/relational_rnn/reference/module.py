"""Parameters as plain dictionaries, and the base class of every reference component.

A model's parameters are one flat ``dict`` from ``state_dict`` names (for example
``"cell.memory.blocks.0.qkv.weight"``) to NumPy arrays, so they can be exchanged with
the PyTorch modules as they are. Components do not own arrays: each knows the names of
its parameters (its ``prefix`` plus the PyTorch attribute path) and reads them from the
``params`` dict it is given. Backward passes *add* into a ``grads`` dict with the same
keys, as PyTorch accumulates into ``.grad``; start it with ``zeros_like(params)``.
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def zeros_like(params: Params) -> Params:
    """A gradient dict for ``params``: the same names and shapes, all zeros."""
    return {name: np.zeros_like(value) for name, value in params.items()}


def uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float, dtype) -> np.ndarray:
    """U(-bound, bound) samples, PyTorch's default initialisation for Linear and LSTM."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Module:
    """A component whose parameters are named ``prefix + <PyTorch attribute path>``.

    Leaves override ``init_params``; composites list their parts in ``children``.
    """

    def children(self) -> tuple[Module, ...]:
        return ()

    def init_params(self, rng: np.random.Generator, dtype=np.float64) -> Params:
        """Freshly initialised parameters, with PyTorch's default distributions."""
        params: Params = {}
        for child in self.children():
            params.update(child.init_params(rng, dtype))
        return params
