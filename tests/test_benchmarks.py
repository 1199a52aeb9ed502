"""The benchmark scripts run and write their tables (one quick pass; speed is not asserted).

The benchmarks set torch's thread count; the ``set_threads`` fixture restores it."""

import re
from types import SimpleNamespace

import pytest
import torch
from helpers import load_benchmark
from torch.utils._python_dispatch import TorchDispatchMode


def test_attention_benchmark_writes_a_row_per_case(tmp_path, set_threads):
    attention = load_benchmark("attention")
    output = tmp_path / "attention.md"
    attention.main(["--repeats", "1", "--min-time", "0", "--output", str(output)])
    rows = [line for line in output.read_text().splitlines() if line.startswith("| ")]
    cases = len(attention.SHAPES) * len(attention.PAIRS) * 2  # float32 and bf16 autocast
    assert len(rows) == 1 + cases  # the header, then one row per case
    assert all(row.endswith(("| flash |", "| MatmulAttention |")) for row in rows[1:])


def test_throughput_benchmark_writes_its_table_and_targets(tmp_path, set_threads):
    throughput = load_benchmark("throughput")
    output = tmp_path / "throughput.md"
    throughput.main(["--quick", "--configs", "small", "--no-bf16", "--output", str(output)])
    text = output.read_text()
    assert "Allocator for the timings: `relational_rnn.keep_freed_memory()`" in text
    assert "| small | RMC | fp32 | 1 | 32 | 8 | 39,168 | 7.1 |" in text
    assert "| page faults/step |" in text
    assert "| train samples/s, matrix products alone |" in text
    target = next(line for line in text.splitlines() if line.startswith("| small: training"))
    assert target.startswith("| small: training >= 10,000 samples/s | 1 |")
    assert ": within reach (+" in target or ": out of reach (-" in target


def test_throughput_benchmark_skips_bf16_without_native_bf16_and_says_so(
    tmp_path, set_threads, monkeypatch
):
    throughput = load_benchmark("throughput")
    monkeypatch.setattr(throughput, "native_on_cpu", lambda dtype: False)
    peaks, matmul_peak = [], throughput.matmul_peak

    def logged_peak(dtype: torch.dtype, *args) -> float:
        peaks.append(dtype)
        return matmul_peak(dtype, *args)

    monkeypatch.setattr(throughput, "matmul_peak", logged_peak)
    output = tmp_path / "throughput.md"
    throughput.main(["--quick", "--configs", "small", "--output", str(output)])
    text = output.read_text()
    assert "bfloat16 autocast rows: skipped, since this CPU has no native bfloat16" in text
    assert "bf16 autocast |" not in text and "thread(s), bf16" not in text
    assert peaks and set(peaks) == {torch.float32}  # the slow emulated peak is not timed


def test_throughput_profile_sorts_compiled_kernels_into_categories():
    throughput = load_benchmark("throughput")

    def category(name: str) -> str:
        return throughput.profile_category(SimpleNamespace(name=name, cpu_parent=None))

    assert category("## Call CompiledFxGraph fpntwuihya5pcfd") == throughput.COMPILE_RUNTIME
    assert category("TorchDynamo Cache Lookup") == throughput.COMPILE_RUNTIME
    assert category("aoti_torch_cpu_addmm_out") == "matrix products"
    assert category("graph_1_cpp_fused_add_addcdiv_copy__div_fma_lerp_mul") == "Adam"
    fused = category("graph_0_cpp_fused_cat_native_layer_norm_view_3")
    assert fused.startswith("torch.compile's other fused kernels")
    assert category("aten::cat").startswith("copies")


def test_throughput_profile_of_a_compiled_row_needs_small():
    throughput = load_benchmark("throughput")
    with pytest.raises(SystemExit):
        throughput.parse_args(["--profile", "paper-256", "--compile"])
    assert throughput.parse_args(["--profile", "small", "--compile"]).compile


def test_throughput_verdicts_and_margins_show_a_margin_under_one_percent_to_a_tenth():
    throughput = load_benchmark("throughput")
    assert throughput.ratio_text(0.8455, 0.85) == "**missed by 0.5%**"
    assert throughput.ratio_text(0.87, 0.85) == "met (+2%)"
    assert throughput.ratio_text(1.72, 2.0, higher_is_better=False) == "met (+14%)"
    assert throughput.ratio_text(2.81, 2.0, higher_is_better=False) == "**missed by 40%**"
    assert throughput.percent_text(throughput.margin(0.4995, 0.5)) == "0.1%"
    assert throughput.margin(0.4995, 0.5) < 0
    assert throughput.percent_text(throughput.margin(0.71, 0.5)) == "42%"


class OperatorLog(TorchDispatchMode):
    """The names of the aten operators run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_matrix_products_replay_the_products_of_forward_and_backward_and_nothing_else():
    timing = load_benchmark("timing")
    weight = torch.randn(3, 5, requires_grad=True)
    inputs = torch.randn(4, 3)

    def step() -> None:
        torch.relu(inputs @ weight).sum().backward()

    products = timing.MatrixProducts(step)
    # forward inputs @ weight; backward inputs^T @ grad (inputs needs no gradient)
    assert products.names == ["aten.mm.default", "aten.mm.default"]
    with OperatorLog() as log:
        products()
    assert log.names == products.names


def test_matrix_products_copy_operands_and_share_a_buffer_per_position_and_layout():
    timing = load_benchmark("timing")
    left, right, other = torch.randn(4, 3), torch.randn(3, 5), torch.randn(4, 3)
    bias = torch.randn(5).expand(4, 5)  # overlapping elements: its stride 0 is kept

    def step() -> None:
        left @ right
        other @ right  # same positions and layouts as the product before
        torch.addmm(bias, left, right)

    products = timing.MatrixProducts(step)
    assert products.names == ["aten.mm.default"] * 2 + ["aten.addmm.default"]
    assert len(products.buffers) == 5  # mm: 2 positions; addmm: 3
    left.zero_()
    assert products.calls[0][1][0].abs().sum() > 0  # the replay keeps its own copy
    replayed_bias = products.calls[2][1][0]
    assert replayed_bias.stride() == (0, 1) and torch.equal(replayed_bias, bias)
    with OperatorLog() as log:
        products()
    assert log.names == products.names
    assert products.bound_seconds(1.0, 0.1) == pytest.approx(0.7)  # 3 calls of 0.1 s off


def test_matrix_products_include_the_attention_kernel():
    timing = load_benchmark("timing")
    query = torch.randn(2, 2, 5, 8, requires_grad=True)

    def step() -> None:
        torch.nn.functional.scaled_dot_product_attention(query, query, query).sum().backward()

    names = timing.MatrixProducts(step).names
    assert names == [
        "aten._scaled_dot_product_flash_attention_for_cpu.default",
        "aten._scaled_dot_product_flash_attention_for_cpu_backward.default",
    ]
    assert 0 < timing.call_seconds(0.0) < 1e-3


def test_matrix_products_include_the_fused_lstm_kernels():
    timing = load_benchmark("timing")
    lstm = torch.nn.LSTM(8, 16, batch_first=True)
    inputs = torch.randn(4, 5, 8)
    products = timing.MatrixProducts(lambda: lstm(inputs)[0].sum().backward())
    assert "aten.mkldnn_rnn_layer.default" in products.names
    assert "aten.mkldnn_rnn_layer_backward.default" in products.names


def test_throughput_targets_judge_each_target_measured_and_with_the_matrix_products_alone():
    throughput = load_benchmark("throughput")

    def row(config, label, train, products_alone, bf16=False, flops=0, peak=1.0):
        case = throughput.Case(config, label, None, 64, 8, 16, flops, bf16=bf16)
        return throughput.Row(case, 1, train, 0.0, peak, 0.0, products_alone)

    paper_flops = 10**9 / 3  # 1 GFLOP per training sample
    rows = [
        row("small", "RMC", 3_000, 12_000),
        row("paper-256", "RMC + MLP head", 80, 100, flops=paper_flops, peak=100.0),
        row("paper-256", "RMC + MLP head", 120, 200, bf16=True),
        row("relational-rnn", "Relational RNN", 200, 280),
        row("relational-rnn", "per-step reference", 100, 150),
        row("lm", "Relational RNN", 60, 80),
        row("lm", throughput.LM_RMC_MEMORY, 30, 45),
        row("lm", "torch.nn.LSTM", 100, 100),
    ]
    memory = {
        variant: throughput.MemoryResult(0.3, [peak], 0.7, peak)
        for variant, peak in (("fp32 recompute", 1.8), ("fp32", 2.8))
    }
    lines = throughput.targets(rows, memory)
    assert lines == [
        "| small: training >= 10,000 samples/s | 1 | 3,000/s | **missed by 70%** "
        "| 12,000/s: within reach (+20%) |",
        "| paper-256: fp32 training >= 85% of the matmul peak | 1 | 80.0% | **missed by 6%** "
        "| 100.0%: within reach (+18%) |",
        "| paper-256: bf16 autocast training >= 1.6x fp32 | 1 | 1.50x | **missed by 6%** "
        "| 2.50x: within reach (+56%) |",
        "| relational-rnn: training >= 3x the per-step reference | 1 | 2.00x "
        "| **missed by 33%** | 2.80x: out of reach (-7%) |",
        "| lm: Relational RNN (gated slot memory) training >= 0.5x torch.nn.LSTM | 1 | 0.60x "
        "| met (+20%) | 0.80x: within reach (+60%) |",
        "| lm: Relational RNN with the RMC memory, training >= 0.5x torch.nn.LSTM | 1 | 0.30x "
        "| **missed by 40%** | 0.45x: out of reach (-10%) |",
        "| paper-1600: training peak RSS <= 2.0 GiB (recompute=True) | 1 | 1.80 GiB "
        "| met (+10%) | — |",
        "| (paper-1600 without recompute, for comparison) | 1 | 2.80 GiB | **missed by 40%** | — |",
    ]
    without_bf16 = [row for row in rows if not row.case.bf16]
    assert throughput.targets(without_bf16, None, bf16_emulated=True)[2] == (
        "| paper-256: bf16 autocast training >= 1.6x fp32 | 1 | — "
        "| not measured: this CPU has no native bfloat16 matrix products | — |"
    )
    assert len(throughput.targets(without_bf16, None)) == len(lines) - 3  # no bf16, no RSS


def test_throughput_profile_prints_categories_and_the_unprofiled_share_of_the_products(
    capsys, set_threads
):
    throughput = load_benchmark("throughput")
    throughput.main(["--profile", "small", "--min-time", "0"])
    output = capsys.readouterr().out
    assert "matrix products\n" in output
    assert re.search(
        r"unprofiled: a step takes [\d.]+ ms, its matrix products alone [\d.]+ ms \(\d+%\)", output
    )


def test_throughput_compiled_row_replays_the_attention_as_batched_products(set_threads):
    throughput = load_benchmark("throughput")
    torch.set_num_threads(1)  # the eager RMC then takes the flash kernel at small's size
    eager, compiled = throughput.cases("small", bf16=False, compile_models=True)
    eager_names = throughput.matrix_products(eager).names
    compiled_names = throughput.matrix_products(compiled).names
    flash = "aten._scaled_dot_product_flash_attention_for_cpu.default"
    assert flash in eager_names and "aten.bmm.default" not in eager_names
    assert flash not in compiled_names and "aten.bmm.default" in compiled_names
