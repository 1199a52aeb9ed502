"""Relational RNNs in PyTorch: the Relational Memory Core and the LSTM + relational memory.

    >>> import torch
    >>> from relational_rnn import RelationalMemory
    >>> rmc = RelationalMemory(input_size=8, mem_slots=4, head_size=16, num_heads=2)
    >>> output, memory = rmc(torch.randn(3, 5, 8))
    >>> tuple(output.shape), tuple(memory.shape)
    ((3, 5, 128), (3, 4, 32))

The PyTorch modules are imported on first use, so that ``relational_rnn.reference``
(the NumPy-only reference) can be imported without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "GatedSlotMemoryCell": "memory",
    "LSTMBaseline": "lstm",
    "LSTMState": "lstm",
    "MultiHeadAttention": "attention",
    "RelationalMemory": "memory",
    "RelationalMemoryCell": "memory",
    "RelationalRNN": "cell",
    "RelationalRNNCell": "cell",
    "RelationalRNNState": "cell",
    "count_parameters": "utils",
    "initial_memory": "memory",
    "keep_freed_memory": "allocator",
    "native_on_cpu": "precision",
}
__all__ = [
    "GatedSlotMemoryCell",
    "LSTMBaseline",
    "LSTMState",
    "MultiHeadAttention",
    "RelationalMemory",
    "RelationalMemoryCell",
    "RelationalRNN",
    "RelationalRNNCell",
    "RelationalRNNState",
    "count_parameters",
    "initial_memory",
    "keep_freed_memory",
    "native_on_cpu",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .allocator import keep_freed_memory
    from .attention import MultiHeadAttention
    from .cell import RelationalRNN, RelationalRNNCell, RelationalRNNState
    from .lstm import LSTMBaseline, LSTMState
    from .memory import (
        GatedSlotMemoryCell,
        RelationalMemory,
        RelationalMemoryCell,
        initial_memory,
    )
    from .precision import native_on_cpu
    from .utils import count_parameters
