"""The fast paths give the results of the plain computation.

- the gated slot memory's fused step (W_q|W_k|W_v in one matmul, W_o folded into the
  update and gate, the input's terms for all steps at once) equals the equations of
  DESIGN section 3 computed plainly, step by step (the benchmark's per-step reference);
- ``recompute=True`` (activation checkpointing) gives the same outputs and gradients;
- bfloat16 autocast stays within a stated tolerance of float32 and keeps the state in
  float32, so that chunks can be chained under autocast;
- attention as batched matrix products with its own backward (``MatmulAttention``, the
  CPU training path for many (batch, head) pairs, or float32 on several threads) equals
  scaled_dot_product_attention;
- ``torch.compile`` of the RMC gives the eager outputs and gradients (slow: it compiles).
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import load_benchmark, randomize

from relational_rnn import (
    GatedSlotMemoryCell,
    MultiHeadAttention,
    RelationalMemory,
    RelationalRNN,
)
from relational_rnn.attention import (
    MATMUL_ATTENTION_MIN_PAIRS,
    MatmulAttention,
    attend,
    split_heads,
)

# bfloat16 keeps 8 bits of mantissa (relative rounding 2**-9 ~ 0.002). In these small
# models (weights in [-0.5, 0.5], outputs |y| < 1.5, 6 steps) the largest difference from
# float32 seen over 20 seeds was 0.006; the documented tolerance is 0.02 absolute.
BF16_ATOL = 0.02


@pytest.mark.parametrize("hidden_size", [6, 8])  # with and without the input projection
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relational_rnn_equals_the_per_step_reference(hidden_size, dtype):
    throughput = load_benchmark("throughput")
    rnn = randomize(RelationalRNN(5, hidden_size, num_slots=3, slot_size=8, num_heads=2))
    reference = throughput.StepwiseRelationalRNN(5, hidden_size, 3, 8, 2)
    throughput.copy_weights(rnn, reference)
    rnn, reference = rnn.to(dtype), reference.to(dtype)
    x = torch.randn(4, 7, 5, dtype=dtype)
    output, _ = rnn(x)
    expected = reference(x)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(output, expected, atol=tolerance, rtol=0)
    output.square().sum().backward()
    expected.square().sum().backward()
    pairs = [(rnn.cell.memory.update.weight, reference.update.weight)]
    pairs.append((rnn.cell.memory.attention.output.bias, reference.output.bias))
    pairs.append((rnn.cell.lstm.weight_hh, reference.lstm.weight_hh))
    for actual, wanted in pairs:
        torch.testing.assert_close(actual.grad, wanted.grad, atol=100 * tolerance, rtol=0)


def test_multi_head_attention_equals_separate_projections():
    attention = randomize(MultiHeadAttention(size=8, num_heads=2)).double()
    memory = torch.randn(3, 4, 8, dtype=torch.float64)
    queries, keys, values = (
        split_heads(layer(memory), 2) for layer in (attention.query, attention.key, attention.value)
    )
    expected = attention.output(attend(queries, keys, values, 4**-0.5))
    torch.testing.assert_close(attention(memory), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("num_slots", [1, 3])
def test_gated_slot_step_with_and_without_precomputed_weights(num_slots):
    cell = randomize(GatedSlotMemoryCell(5, num_slots, 4, 2)).double()
    u = torch.randn(2, 5, dtype=torch.float64)
    memory = cell.initial_state(2)
    projected = cell.project_input(u)
    fused = cell.step(projected, memory, cell.step_weights())
    torch.testing.assert_close(cell.step(projected, memory), fused, atol=0, rtol=0)
    assert cell(u, memory)[1].shape == (2, num_slots, 4)


def models():
    return [
        ("rmc", lambda **kw: RelationalMemory(5, mem_slots=3, head_size=4, num_heads=2, **kw)),
        ("gated_slot", lambda **kw: RelationalRNN(5, 6, num_slots=3, slot_size=4, **kw)),
        ("rnn_rmc", lambda **kw: RelationalRNN(5, 6, 3, 4, memory="rmc", **kw)),
    ]


def gradients(model, x):
    output, _ = model(x)
    output.square().mean().backward()
    return output.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(("name", "build"), models())
def test_recompute_gives_the_same_outputs_and_gradients(name, build):
    plain = randomize(build())
    recomputed = build(recompute=True)
    recomputed.load_state_dict(plain.state_dict())
    assert "recompute=True" in repr(recomputed)
    x = torch.randn(3, 6, 5, requires_grad=True)
    output, grads = gradients(plain, x)
    x_grad = x.grad.clone()
    x.grad = None
    output_recomputed, grads_recomputed = gradients(recomputed, x)
    torch.testing.assert_close(output_recomputed, output)
    torch.testing.assert_close(x.grad, x_grad)
    for actual, wanted in zip(grads_recomputed, grads, strict=True):
        torch.testing.assert_close(actual, wanted)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_recompute_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="recompute must be True or False"):
        RelationalMemory(5, mem_slots=3, head_size=4, recompute=bad)
    with pytest.raises(TypeError, match="recompute must be True or False"):
        RelationalRNN(5, 6, recompute=bad)


@pytest.mark.parametrize(("name", "build"), models())
def test_bf16_autocast_is_close_and_keeps_the_state_float32(name, build):
    model = randomize(build())
    x = torch.randn(3, 6, 5)
    expected, expected_state = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, state = model(x[:, :3])
        second, state = model(x[:, 3:], state)  # the state chains under autocast
        output = torch.cat([output, second], dim=1)
        output.float().square().mean().backward()
    states = state if isinstance(state, tuple) else (state,)
    assert all(tensor.dtype == torch.float32 for tensor in states)
    torch.testing.assert_close(output.float(), expected, atol=BF16_ATOL, rtol=0)
    expected_states = expected_state if isinstance(expected_state, tuple) else (expected_state,)
    for actual, wanted in zip(states, expected_states, strict=True):
        torch.testing.assert_close(actual, wanted, atol=BF16_ATOL, rtol=0)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def attention_inputs(batch_size: int, num_queries: int = 4, dtype=torch.float64) -> tuple:
    """queries (B, 2, Q, 8), keys and values (B, 2, 5, 8) that require grad."""
    queries = torch.randn(batch_size, 2, num_queries, 8, dtype=dtype, requires_grad=True)
    keys, values = torch.randn(2, batch_size, 2, 5, 8, dtype=dtype, requires_grad=True).unbind(0)
    return queries, keys, values


@pytest.mark.parametrize("num_queries", [4, 5])  # the input row's query dropped, or kept
def test_matmul_attention_passes_gradcheck(num_queries):
    inputs = attention_inputs(3, num_queries)
    assert torch.autograd.gradcheck(lambda *x: MatmulAttention.apply(*x, 0.7), inputs)


def test_matmul_attention_equals_scaled_dot_product_attention():
    inputs = attention_inputs(3, dtype=torch.float32)
    output = MatmulAttention.apply(*inputs, 0.7)
    expected = F.scaled_dot_product_attention(*inputs, scale=0.7)
    torch.testing.assert_close(output, expected)
    grad = torch.randn_like(output)
    grads = torch.autograd.grad(output, inputs, grad)
    expected_grads = torch.autograd.grad(expected, inputs, grad)
    for actual, wanted in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(actual, wanted)


def test_matmul_attention_under_autocast_is_bf16_and_close():
    """Products in bfloat16, gradients in the inputs' float32, within the bf16 tolerance."""
    inputs = attention_inputs(3, dtype=torch.float32)
    with torch.autocast("cpu", torch.bfloat16):
        output = MatmulAttention.apply(*inputs, 0.7)
    assert output.dtype == torch.bfloat16
    expected = F.scaled_dot_product_attention(*inputs, scale=0.7)
    torch.testing.assert_close(output.float(), expected, atol=BF16_ATOL, rtol=0)
    grads = torch.autograd.grad(output.float().sum(), inputs)
    expected_grads = torch.autograd.grad(expected.sum(), inputs)
    for actual, wanted in zip(grads, expected_grads, strict=True):
        assert actual.dtype == torch.float32
        torch.testing.assert_close(actual, wanted, atol=BF16_ATOL, rtol=0)


MANY = MATMUL_ATTENTION_MIN_PAIRS // 2  # batch size: with 2 heads, just enough pairs


@pytest.mark.parametrize(
    ("threads", "batch_size", "dtype", "autocast", "grad", "native", "kernel"),
    [
        (1, 2, torch.float32, False, True, True, "flash"),
        (1, 2, torch.bfloat16, False, True, True, "flash"),
        (1, MANY, torch.float32, False, True, True, "matmul"),
        (1, MANY, torch.bfloat16, False, True, True, "matmul"),
        (1, MANY, torch.float32, True, True, True, "matmul"),
        (1, MANY, torch.float32, False, False, True, "flash"),  # inference
        (1, MANY - 1, torch.float32, False, True, True, "flash"),
        (2, 2, torch.float32, False, True, True, "matmul"),
        (2, 2, torch.bfloat16, False, True, True, "flash"),
        (2, 2, torch.float32, True, True, True, "flash"),
        (2, 2, torch.float32, False, False, True, "flash"),
        # a CPU without native bfloat16: its products are emulated, the flash kernel wins
        (1, MANY, torch.bfloat16, False, True, False, "flash"),
        (1, MANY, torch.float32, True, True, False, "flash"),
        (1, MANY, torch.float32, False, True, False, "matmul"),
        (2, 2, torch.float32, False, True, False, "matmul"),
    ],
)
def test_attention_kernel_on_cpu(
    set_threads, monkeypatch, threads, batch_size, dtype, autocast, grad, native, kernel
):
    """Training with enough (batch, head) pairs, or in float32 on more than one thread,
    takes MatmulAttention, unless in a reduced precision that the CPU lacks; everything
    else the flash kernel of scaled_dot_product_attention (the faster of the two in each
    case)."""
    from torch.profiler import profile

    def native_on_cpu(dtype: torch.dtype) -> bool:
        return native or dtype == torch.float32

    monkeypatch.setattr("relational_rnn.attention.native_on_cpu", native_on_cpu)
    set_threads(threads)
    queries, keys, values = attention_inputs(batch_size, dtype=dtype)
    with (
        profile() as prof,
        torch.autocast("cpu", torch.bfloat16, enabled=autocast),
        torch.set_grad_enabled(grad),
    ):
        attend(queries, keys, values, 0.5)
    names = {event.key for event in prof.key_averages()}
    used = {
        "flash": any("flash_attention" in name for name in names),
        "matmul": "MatmulAttention" in names,
    }
    assert used == {name: name == kernel for name in used}, names


@pytest.mark.slow
def test_torch_compile_of_the_rmc_equals_eager():
    rmc = randomize(RelationalMemory(5, mem_slots=3, head_size=4, num_heads=2))
    x = torch.randn(3, 4, 5)
    results = []
    for model in (rmc, torch.compile(rmc, fullgraph=True)):
        rmc.zero_grad(set_to_none=True)
        output, memory = model(x)
        (output.square().sum() + memory.sum()).backward()
        results.append([output, memory, *(p.grad for p in rmc.parameters())])
    for compiled, eager in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager)
