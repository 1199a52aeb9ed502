"""What both relational memories share: the initial memory and the loop over time.

A memory cell splits a step in two, like the PyTorch cells: ``project_input`` does the
part that depends only on the input, for all steps at once, and ``step`` updates the
memory (B, N, S) from one step of it. ``MemoryCell`` turns the two into the full
sequence pass and its backpropagation through time.
"""

from __future__ import annotations

import numpy as np

from .module import Params
from .recurrent import Cell


def initial_memory(
    batch_size: int, num_slots: int, slot_size: int, init: str = "identity", dtype=np.float64
) -> np.ndarray:
    """(B, N, S): the N x N identity zero-padded (or truncated) to S columns, or zeros."""
    if init == "zeros":
        return np.zeros((batch_size, num_slots, slot_size), dtype)
    if init != "identity":
        raise ValueError(f"init must be 'identity' or 'zeros', got {init!r}")
    eye = np.eye(num_slots, slot_size, dtype=dtype)  # (N, S)
    return np.broadcast_to(eye, (batch_size, num_slots, slot_size)).copy()


class MemoryCell(Cell):
    """A memory cell (B, N, S) over a sequence; its output per step is the flat memory (B, N*S).

    Subclasses set ``mem_slots``, ``mem_size`` and define ``project_input`` /
    ``project_input_backward`` (x (T, B, I) -> a tuple of (T, B, ...) arrays, cache) and
    ``step`` / ``step_backward`` (one step of those arrays and the memory).
    """

    mem_slots: int
    mem_size: int

    def initial_state(self, batch_size: int, dtype=np.float64) -> np.ndarray:
        return initial_memory(batch_size, self.mem_slots, self.mem_size, "identity", dtype)

    def project_input(self, params: Params, x: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple]:
        raise NotImplementedError

    def project_input_backward(
        self, params: Params, cache: tuple, d_projected: tuple[np.ndarray, ...], grads: Params
    ) -> np.ndarray:
        raise NotImplementedError

    def step(
        self, params: Params, projected: tuple[np.ndarray, ...], memory: np.ndarray
    ) -> tuple[np.ndarray, tuple]:
        raise NotImplementedError

    def step_backward(
        self, params: Params, cache: tuple, d_memory: np.ndarray, grads: Params
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        raise NotImplementedError

    def forward_sequence(
        self, params: Params, x: np.ndarray, memory: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple]:
        """x (T, B, I), memory (B, N, S) -> outputs (T, B, N*S), final memory, cache."""
        steps, batch_size, _ = x.shape
        projected, projection_cache = self.project_input(params, x)  # each (T, B, ...)
        memories = np.empty((steps, batch_size, self.mem_slots, self.mem_size), x.dtype)
        caches = []
        for t in range(steps):
            memory, cache = self.step(params, tuple(p[t] for p in projected), memory)
            memories[t] = memory
            caches.append(cache)
        return memories.reshape(steps, batch_size, -1), memory, (projection_cache, caches)

    def backward_sequence(
        self,
        params: Params,
        cache: tuple,
        d_outputs: np.ndarray,
        d_memory: np.ndarray | None,
        grads: Params,
    ) -> tuple[np.ndarray, np.ndarray]:
        """d_outputs (T, B, N*S), d_memory (B, N, S) of the final memory -> dx, d_memory_0."""
        projection_cache, caches = cache
        steps, batch_size, _ = d_outputs.shape
        d_memories = d_outputs.reshape(steps, batch_size, self.mem_slots, self.mem_size)
        d_memory = np.zeros_like(d_memories[0]) if d_memory is None else d_memory
        d_projected_steps = []
        for t in reversed(range(steps)):
            d_memory = d_memory + d_memories[t]  # the output at t is the memory M_t
            d_step, d_memory = self.step_backward(params, caches[t], d_memory, grads)
            d_projected_steps.append(d_step)
        d_projected = tuple(np.stack(d) for d in zip(*reversed(d_projected_steps), strict=True))
        dx = self.project_input_backward(params, projection_cache, d_projected, grads)
        return dx, d_memory
