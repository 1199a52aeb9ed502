"""Reduced precision on CPUs that lack it: whether they do, the dtype that CPU products
run in, and the fused LSTM's precision under autocast."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

# oneDNN's queries for "this CPU has kernels for the dtype" (AVX-512 BF16 or AMX for
# bfloat16; AVX-512 FP16 or AMX for float16)
_ONEDNN_QUERIES = {
    torch.bfloat16: "_is_mkldnn_bf16_supported",
    torch.float16: "_is_mkldnn_fp16_supported",
}


def _ask_onednn(query: str) -> bool:
    """oneDNN's answer, or True where torch cannot tell (no oneDNN, an older torch)."""
    if not torch.backends.mkldnn.is_available():
        return True
    try:
        return bool(getattr(torch.ops.mkldnn, query)())
    except (AttributeError, RuntimeError):
        return True


# asked once, on import: the answer does not change, and torch.compile cannot trace it
_NATIVE_ON_CPU = {dtype: _ask_onednn(query) for dtype, query in _ONEDNN_QUERIES.items()}


def native_on_cpu(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` matrix products natively (always True for
    float32 and float64; for bfloat16 and float16 oneDNN's answer, True where torch
    cannot tell).

    Without, torch emulates them in float32 arithmetic: bfloat16 autocast is then many
    times slower than float32 (docs/performance.md, "On a CPU without AVX-512"), and
    oneDNN cannot build a fused LSTM in that dtype at all.
    """
    return _NATIVE_ON_CPU.get(dtype, True)


def cpu_compute_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype that CPU matrix products of ``tensor`` run in: autocast's under CPU
    autocast, else the tensor's own."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else tensor.dtype


def fused_lstm_precision(device_type: str) -> contextlib.AbstractContextManager:
    """The context for a fused LSTM call (``torch.lstm``, ``nn.LSTM``): autocast turned off
    on a CPU without native kernels for the autocast dtype, where oneDNN raises "could not
    create a primitive descriptor" instead of running it (the LSTM then runs in its
    weights' dtype, the rest of the model under autocast); otherwise nothing changes."""
    if (
        device_type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and not native_on_cpu(torch.get_autocast_dtype("cpu"))
    ):
        return torch.autocast("cpu", enabled=False)
    return contextlib.nullcontext()
