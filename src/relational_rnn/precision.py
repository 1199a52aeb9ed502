"""Reduced precision where the hardware lacks it: what to tell the user, and the fused LSTM."""

from __future__ import annotations

import contextlib
import functools

import torch

# oneDNN's own answer to "does this CPU have kernels for the dtype" (AVX-512 BF16 or AMX
# for bfloat16; AVX-512 FP16 or AMX for float16)
_CPU_SUPPORT = {
    torch.bfloat16: "_is_mkldnn_bf16_supported",
    torch.float16: "_is_mkldnn_fp16_supported",
}


@functools.cache
def native_on_cpu(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` (bfloat16 or float16) matrix products natively.

    Without, torch emulates them in float32 arithmetic: bfloat16 autocast is then many
    times slower than float32 (44x for a 1024 x 1024 product on an AVX2 EPYC), and
    oneDNN cannot build a fused LSTM in that dtype at all. True when torch cannot tell.
    """
    if dtype not in _CPU_SUPPORT:
        return True
    try:
        return bool(getattr(torch.ops.mkldnn, _CPU_SUPPORT[dtype])())
    except (AttributeError, RuntimeError):  # an older torch without the query
        return True


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
