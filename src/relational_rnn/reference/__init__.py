"""A pure NumPy reference of the package's models, with a real backward pass (BPTT).

Only NumPy is imported here. The models mirror the PyTorch modules: same arguments,
same equations, parameters in a flat dict under the PyTorch ``state_dict`` names, so
weights move between the two as plain arrays (``relational_rnn.convert`` does it).

>>> import numpy as np
>>> from relational_rnn.reference import RelationalRNN, zeros_like
>>> model = RelationalRNN(input_size=3, hidden_size=8, num_slots=2, slot_size=8)
>>> params = model.init_params(np.random.default_rng(0))
>>> x = np.ones((5, 4, 3))                              # (B, T, I)
>>> output, state, cache = model.forward(params, x)     # output (B, T, H)
>>> grads = zeros_like(params)
>>> dx, d_state0 = model.backward(params, cache, np.ones_like(output), None, grads)
>>> output.shape, state.memory.shape, dx.shape, grads["cell.read.weight"].shape
((5, 4, 8), (5, 2, 8), (5, 4, 3), (8, 8))
"""

from .attention import MultiHeadAttention
from .gated_slot import GatedSlotMemoryCell
from .gradcheck import numerical_gradient, relative_error
from .heads import MLPHead, SequenceClassifier
from .layers import MLP, LayerNorm, Linear
from .losses import mean_squared_error, softmax_cross_entropy
from .lstm import LSTMBaseline, LSTMCell, LSTMState
from .memory import initial_memory
from .module import Params, zeros_like
from .optim import SGD, Adam, clip_grad_norm
from .recall import RecallTask
from .relational_rnn import RelationalRNN, RelationalRNNCell, RelationalRNNState
from .rmc import RelationalMemory, RelationalMemoryCell

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "GatedSlotMemoryCell",
    "LSTMBaseline",
    "LSTMCell",
    "LSTMState",
    "LayerNorm",
    "Linear",
    "MLPHead",
    "MultiHeadAttention",
    "Params",
    "RecallTask",
    "RelationalMemory",
    "RelationalMemoryCell",
    "RelationalRNN",
    "RelationalRNNCell",
    "RelationalRNNState",
    "SequenceClassifier",
    "clip_grad_norm",
    "initial_memory",
    "mean_squared_error",
    "numerical_gradient",
    "relative_error",
    "softmax_cross_entropy",
    "zeros_like",
]
