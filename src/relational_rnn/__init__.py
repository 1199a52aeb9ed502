"""Relational RNNs in PyTorch: the Relational Memory Core and the LSTM + relational memory.

>>> import torch
>>> from relational_rnn import RelationalMemory
>>> rmc = RelationalMemory(input_size=8, mem_slots=4, head_size=16, num_heads=2)
>>> output, memory = rmc(torch.randn(3, 5, 8))
>>> tuple(output.shape), tuple(memory.shape)
((3, 5, 128), (3, 4, 32))
"""

from .attention import MultiHeadAttention
from .cell import RelationalRNN, RelationalRNNCell, RelationalRNNState
from .lstm import LSTMBaseline, LSTMState
from .memory import GatedSlotMemoryCell, RelationalMemory, RelationalMemoryCell, initial_memory
from .utils import count_parameters

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
]

__version__ = "0.1.0"
