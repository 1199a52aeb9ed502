"""Reduced precision on CPUs without it: the query, the fused LSTM under autocast, the warning."""

import warnings

import pytest
import torch

from relational_rnn import LSTMBaseline, RelationalRNN, native_on_cpu, precision, train
from relational_rnn.config import OptimConfig


def test_native_on_cpu_is_onednns_answer_and_true_for_full_precision():
    assert native_on_cpu(torch.bfloat16) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert native_on_cpu(torch.float16) == torch.ops.mkldnn._is_mkldnn_fp16_supported()
    assert native_on_cpu(torch.float32) and native_on_cpu(torch.float64)


def test_native_on_cpu_is_true_where_torch_cannot_tell(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert precision._ask_onednn("_is_mkldnn_bf16_supported")
    monkeypatch.undo()
    assert precision._ask_onednn("_no_such_query")


def test_cpu_compute_dtype_is_autocasts_under_autocast_else_the_tensors():
    x = torch.randn(2, dtype=torch.float64)
    assert precision.cpu_compute_dtype(x) == torch.float64
    with torch.autocast("cpu", torch.bfloat16):
        assert precision.cpu_compute_dtype(x) == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_fused_lstm_leaves_autocast_only_where_the_cpu_lacks_its_dtype(monkeypatch, native):
    monkeypatch.setattr(precision, "native_on_cpu", lambda dtype: native)
    with torch.autocast("cpu", torch.bfloat16):
        with precision.fused_lstm_precision("cpu"):
            assert torch.is_autocast_enabled("cpu") == native
        assert torch.is_autocast_enabled("cpu")  # and back on after the call
        with precision.fused_lstm_precision("cuda"):  # only the CPU's kernels are asked
            assert torch.is_autocast_enabled("cpu")
    with precision.fused_lstm_precision("cpu"):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    "model", [lambda: LSTMBaseline(5, 6), lambda: RelationalRNN(5, 6, slot_size=8)]
)
def test_sequence_models_run_under_bf16_autocast_either_way(monkeypatch, native, model):
    """Where oneDNN has no bfloat16 LSTM it raises inside autocast; the models then run
    their LSTM in float32 (the rest stays under autocast) and match float32 closely."""
    monkeypatch.setattr(precision, "native_on_cpu", lambda dtype: native)
    torch.manual_seed(0)
    model = model()
    x = torch.randn(3, 4, 5)
    expected, _ = model(x)
    if native and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        avoided = pytest.raises(RuntimeError, match="primitive descriptor")
        with avoided, torch.autocast("cpu", torch.bfloat16):
            model(x)
        return
    with torch.autocast("cpu", torch.bfloat16):
        output, state = model(x)
    assert state.h.dtype == state.c.dtype == torch.float32
    torch.testing.assert_close(output.float(), expected, atol=0.03, rtol=0)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_training_warns_once_where_it_is_emulated(monkeypatch, native):
    monkeypatch.setattr(train, "native_on_cpu", lambda dtype: native)
    train.warn_emulated_bf16.cache_clear()  # as in a fresh process
    bf16, fp32 = OptimConfig(precision="bf16"), OptimConfig()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # once per process even so: not once per step
        for _ in range(3):
            with train.training_autocast(bf16, torch.device("cpu")):
                assert torch.is_autocast_enabled("cpu")
        with train.training_autocast(fp32, torch.device("cpu")):
            assert not torch.is_autocast_enabled("cpu")
    messages = [str(warning.message) for warning in caught]
    assert messages == ([] if native else [train.EMULATED_BF16])
