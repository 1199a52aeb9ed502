"""Throughput of the relational models on this CPU, measured against its matrix-product peak.

    python benchmarks/throughput.py                    # every configuration, 1 thread
    python benchmarks/throughput.py --threads 1 2      # the same at 1 and at 2 threads
    python benchmarks/throughput.py --quick            # a smoke run, well under a minute

For each configuration of issue 6 it reports training samples/s (forward, cross-entropy or
mean-square loss, backward and an Adam step) and inference samples/s (forward under
``torch.inference_mode``), each the median of ``--repeats`` timed runs; the analytic
FLOPs per sample; the achieved GFLOP/s; and the ratio to the peak of a 2048 x 2048 matrix
product timed in the same run at the same thread count (float32, or bfloat16 for the
autocast rows); and the training samples/s that the step's matrix products (with the
LSTM and attention kernels) alone allow, replayed with nothing else in between and the
cost of calling them taken off (``timing.MatrixProducts``), against which each target
is judged a second time. It prints Markdown tables, with the machine and its load
average, and writes them to ``--output`` (benchmarks/results/throughput.md unless
``--quick``).

FLOPs count the matrix products (2 per multiply-add) of the computation as DESIGN.md
defines it: for the RMC (section 4) every block's queries, attention and MLP on all N + 1
rows, the input row included; for the gated slot memory (section 3) separate W_q, W_k,
W_v, W_o, W_u and W_g on [A_i ; u] for every slot. Work the implementation skips or
fuses therefore shows as a gain. Elementwise work (LayerNorm, softmax, gates) is not
counted. Training counts 3x the forward FLOPs (backward: gradients of inputs and weights).

The timings run after ``relational_rnn.keep_freed_memory()``, as ``relational-rnn train``
does (``--default-malloc``: without it): glibc then keeps freed tensors' memory for the
next step instead of returning it to the system and faulting it in afresh.

The peak memory (resident set) of one training step of the paper configuration at batch
1600 is measured in fresh processes, with and without ``recompute=True`` and bf16
autocast, under glibc's default malloc settings, with large freed blocks returned to
the system, and after ``keep_freed_memory()``. ``--profile CONFIG`` prints where the
time of a training step goes instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from timing import (
    MatrixProducts,
    PageFaults,
    call_seconds,
    describe_machine,
    interleaved_medians,
    matmul_peak,
    peak_rss_gib,
    run_child,
)
from torch import Tensor, nn

from relational_rnn import (
    GatedSlotMemoryCell,
    LSTMBaseline,
    RelationalMemory,
    RelationalMemoryCell,
    RelationalRNN,
    attention,
    count_parameters,
    initial_memory,
    keep_freed_memory,
    native_on_cpu,
)
from relational_rnn.attention import attend, split_heads
from relational_rnn.heads import SequenceClassifier

CONFIGS = ("small", "paper-64", "paper-256", "paper-1600", "relational-rnn", "lm")
QUICK_CONFIGS = ("small", "paper-64", "relational-rnn", "lm")
RESULTS = Path(__file__).parent / "results" / "throughput.md"
NTH_FARTHEST_CLASSES = 8  # the paper's Nth-farthest task: K = 8 vectors of 16 dims
LM_INPUT, LM_LSTM_HIDDEN = 64, 183  # as in benchmarks/lm_shakespeare.py
LM_RMC_MEMORY = "Relational RNN, RMC memory"
NO_NATIVE_BF16 = "this CPU has no native bfloat16 matrix products"


# ---------------------------------------------------------------- analytic FLOPs


def rmc_step_flops(cell: RelationalMemoryCell) -> int:
    """Forward FLOPs of one RMC step per sample, DESIGN section 4, input row included."""
    size, slots, rows = cell.mem_size, cell.mem_slots, cell.mem_slots + 1
    heads, key, value = cell.num_heads, cell.key_size, cell.head_size
    flops = 2 * cell.input_size * size  # x~ = W_x x
    qkv = 2 * rows * size * heads * (2 * key + value)
    attention = 2 * heads * rows * rows * (key + value)  # q k^T and the weighted sum of v
    mlp = cell.attention_mlp_layers * 2 * rows * size * size
    flops += cell.num_blocks * (qkv + attention + mlp)
    if cell.gate_style is not None:
        width = size if cell.gate_style == "unit" else 1
        flops += 2 * size * 2 * width + 2 * slots * size * 2 * width  # W_i x~, W_f tanh(M)
    return flops


def gated_slot_step_flops(cell: GatedSlotMemoryCell) -> int:
    """Forward FLOPs of one gated slot memory step per sample, DESIGN section 3."""
    inputs, slots, size = cell.input_size, cell.mem_slots, cell.mem_size
    flops = 4 * 2 * slots * size * size + 2 * 2 * slots * slots * size  # W_q,k,v,o; attention
    flops += 2 * inputs * size if inputs != size else 0  # p = W_in u
    return flops + 2 * slots * size * size + 2 * slots * (size + inputs) * size  # W_u, W_g


def relational_rnn_step_flops(rnn: RelationalRNN) -> int:
    """Forward FLOPs of one Relational RNN step per sample, DESIGN section 3."""
    cell = rnn.cell
    flops = lstm_step_flops(cell.input_size, cell.hidden_size)
    if isinstance(cell.memory, GatedSlotMemoryCell):
        flops += gated_slot_step_flops(cell.memory)
    else:
        flops += rmc_step_flops(cell.memory)
    return flops + 2 * cell.slot_size * cell.hidden_size + 2 * 2 * cell.hidden_size**2  # W_r, W_c


def lstm_step_flops(input_size: int, hidden_size: int) -> int:
    """Forward FLOPs of one LSTM step per sample."""
    return 2 * 4 * hidden_size * (input_size + hidden_size)


def linear_flops(module: nn.Module) -> int:
    """Forward FLOPs per sample of every Linear in ``module``, each applied once."""
    return sum(
        2 * layer.in_features * layer.out_features
        for layer in module.modules()
        if isinstance(layer, nn.Linear)
    )


# ---------------------------------------------------------------- the per-step reference


class StepwiseRelationalRNN(nn.Module):
    """The gated-slot Relational RNN written straightforwardly, every step in Python.

    The reference for the "3x" target: ``nn.LSTMCell`` stepped in Python, then the gated
    slot memory of DESIGN section 3 with separate W_q, W_k, W_v, W_o, W_u and W_g on
    [A_i ; u] (``scaled_dot_product_attention`` for the attention), then the readout, all
    per step. Same parameters and the same function as ``RelationalRNN`` (checked by
    ``copy_weights`` and tests/test_fast_paths.py).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_slots: int, slot_size: int, num_heads: int
    ) -> None:
        super().__init__()
        self.num_slots, self.slot_size, self.num_heads = num_slots, slot_size, num_heads
        self.lstm = nn.LSTMCell(input_size, hidden_size)
        self.query, self.key, self.value, self.output = (
            nn.Linear(slot_size, slot_size) for _ in range(4)
        )
        self.projection = (
            nn.Linear(hidden_size, slot_size) if hidden_size != slot_size else nn.Identity()
        )
        self.update = nn.Linear(slot_size, slot_size)
        self.gate = nn.Linear(slot_size + hidden_size, slot_size)
        self.read = nn.Linear(slot_size, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, I) -> outputs (B, T, H), from the initial state."""
        batch_size, steps, _ = x.shape
        h = x.new_zeros(batch_size, self.lstm.hidden_size)
        c = torch.zeros_like(h)
        memory = initial_memory(batch_size, self.num_slots, self.slot_size, dtype=x.dtype)
        scale = (self.slot_size // self.num_heads) ** -0.5
        outputs = []
        for t in range(steps):
            h, c = self.lstm(x[:, t], (h, c))  # (B, H)
            q, k, v = (
                split_heads(f(memory), self.num_heads) for f in (self.query, self.key, self.value)
            )
            attended = self.output(attend(q, k, v, scale))  # (B, N, S)
            first = attended[:, :1] + self.projection(h).unsqueeze(1)  # (B, 1, S)
            attended = torch.cat([first, attended[:, 1:]], dim=1)  # (B, N, S)
            update = torch.tanh(self.update(attended))
            u = h.unsqueeze(1).expand(-1, self.num_slots, -1)  # (B, N, H)
            gate = torch.sigmoid(self.gate(torch.cat([attended, u], dim=-1)))
            memory = gate * update + (1 - gate) * memory  # (B, N, S)
            read = self.read(memory.mean(dim=1))  # (B, H)
            outputs.append(torch.tanh(self.combine(torch.cat([h, read], dim=-1))))
        return torch.stack(outputs, dim=1)  # (B, T, H)


def copy_weights(rnn: RelationalRNN, reference: StepwiseRelationalRNN) -> None:
    """Give ``reference`` the weights of ``rnn`` (the same function afterwards)."""
    cell, memory = rnn.cell, rnn.cell.memory
    pairs = [
        (reference.lstm, cell.lstm),
        (reference.query, memory.attention.query),
        (reference.key, memory.attention.key),
        (reference.value, memory.attention.value),
        (reference.output, memory.attention.output),
        (reference.update, memory.update),
        (reference.read, cell.read),
        (reference.combine, cell.combine),
    ]
    if memory.input_projection is not None:
        pairs.append((reference.projection, memory.input_projection))
    with torch.no_grad():
        for target, source in pairs:
            for name, parameter in source.named_parameters():
                getattr(target, name).copy_(parameter)
        gate = torch.cat([memory.gate_memory.weight, memory.gate_input.weight], dim=1)
        reference.gate.weight.copy_(gate)
        reference.gate.bias.copy_(memory.gate_memory.bias)


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    """One row of the table: a model, its input and how to score it."""

    config: str
    label: str
    model: nn.Module
    batch: int
    steps: int
    input_size: int
    flops: int  # forward FLOPs per sample
    classes: int | None = None  # cross-entropy on the logits; None: mean-square outputs
    bf16: bool = False
    compiled: bool = False

    @property
    def title(self) -> str:
        """The label as the table and the profile show it."""
        return self.label + (" (torch.compile)" if self.compiled else "")


@dataclass
class Row:
    case: Case
    threads: int
    train: float  # samples/s
    infer: float  # samples/s
    peak: float  # GFLOP/s of the matching precision
    faults: float  # minor page faults per training step
    products_alone: float  # training samples/s if only its matrix products took time

    @property
    def label(self) -> str:
        return self.case.title

    @property
    def precision(self) -> str:
        return "bf16 autocast" if self.case.bf16 else "fp32"

    def gflops(self, training: bool) -> float:
        per_sample = self.case.flops * (3 if training else 1)
        return per_sample * (self.train if training else self.infer) / 1e9

    def training_share(self, samples: float) -> float:
        """The share of the peak that training at ``samples`` per second achieves."""
        return 3 * self.case.flops * samples / 1e9 / self.peak


def output_of(model: nn.Module, x: Tensor) -> Tensor:
    """The model's output tensor (recurrent cores return (output, state))."""
    output = model(x)
    return output[0] if isinstance(output, tuple) else output


def cases(config: str, bf16: bool, compile_models: bool) -> list[Case]:
    """The rows of one configuration (models built from seed 0)."""
    torch.manual_seed(0)
    rows: list[Case] = []
    if config == "small":
        rmc = RelationalMemory(16, mem_slots=4, head_size=32, num_heads=2)
        rows.append(Case(config, "RMC", rmc, 32, 8, 16, 8 * rmc_step_flops(rmc.cell)))
    elif config.startswith("paper-"):
        batch = int(config.split("-")[1])
        rmc = RelationalMemory(40, mem_slots=8, head_size=32, num_heads=8)
        model = SequenceClassifier(rmc, NTH_FARTHEST_CLASSES, [256] * 4)
        flops = 8 * rmc_step_flops(rmc.cell) + linear_flops(model.head)
        rows.append(
            Case(config, "RMC + MLP head", model, batch, 8, 40, flops, NTH_FARTHEST_CLASSES)
        )
    elif config == "relational-rnn":
        rnn = RelationalRNN(32, 64, num_slots=4, slot_size=64, num_heads=2)
        reference = StepwiseRelationalRNN(32, 64, 4, 64, 2)
        copy_weights(rnn, reference)
        flops = 50 * relational_rnn_step_flops(rnn)
        rows.append(Case(config, "Relational RNN", rnn, 64, 50, 32, flops))
        rows.append(Case(config, "per-step reference", reference, 64, 50, 32, flops))
    elif config == "lm":
        # The cores of benchmarks/lm_shakespeare.py, on 64-wide embeddings: parameters
        # matched (with embedding and decoder) within 3%; torch.nn.LSTM as the LSTM core.
        # The Relational RNN is measured with its default gated slot memory (181,952
        # parameters, as many as its RMC-memory variant's sizes give) and with the RMC
        # memory that lm_shakespeare.py uses.
        rnn = RelationalRNN(LM_INPUT, 128, num_slots=4, slot_size=64, num_heads=2)
        rnn_rmc = RelationalRNN(LM_INPUT, 128, num_slots=4, slot_size=64, num_heads=2, memory="rmc")
        rmc = RelationalMemory(LM_INPUT, mem_slots=4, head_size=32, num_heads=4)
        lstm_flops = 100 * lstm_step_flops(LM_INPUT, LM_LSTM_HIDDEN)
        models = [
            ("Relational RNN", rnn, 100 * relational_rnn_step_flops(rnn)),
            (LM_RMC_MEMORY, rnn_rmc, 100 * relational_rnn_step_flops(rnn_rmc)),
            ("RMC", rmc, 100 * rmc_step_flops(rmc.cell)),
            ("LSTMBaseline", LSTMBaseline(LM_INPUT, LM_LSTM_HIDDEN), lstm_flops),
            ("torch.nn.LSTM", nn.LSTM(LM_INPUT, LM_LSTM_HIDDEN, batch_first=True), lstm_flops),
        ]
        rows += [Case(config, *model[:2], 64, 100, LM_INPUT, model[2]) for model in models]
    else:
        raise ValueError(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")
    extra = []
    if bf16:
        extra += [Case(**{**vars(case), "bf16": True}) for case in rows[:1]]
    if compile_models and config == "small":
        extra.append(Case(**{**vars(rows[0]), "compiled": True}))
    return rows + extra


COMPILE_OPTIONS = {"cpp_wrapper": True}  # inductor's settings for the torch.compile row


def workloads(case: Case) -> tuple[Callable[[], None], Callable[[], None]]:
    """The training step (forward, loss, backward, Adam) and the inference forward of
    ``case``, each a function of no arguments."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, case.steps, case.input_size, generator=generator)
    y = torch.randint(case.classes or 1, (case.batch,), generator=generator)
    optimizer = torch.optim.Adam(case.model.parameters(), lr=1e-4)
    model, adam_step = case.model, optimizer.step
    if case.compiled:
        # Adam's step compiled is one fused kernel instead of a few dozen small operators;
        # the C++ wrapper calls the kernels without the Python between them
        model = torch.compile(model, dynamic=False, options=COMPILE_OPTIONS)
        adam_step = torch.compile(adam_step, options=COMPILE_OPTIONS)

    def loss_of(output: Tensor) -> Tensor:
        if case.classes is None:
            return output.float().square().mean()
        return F.cross_entropy(output.float(), y)

    def train() -> None:
        case.model.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=case.bf16):
            loss = loss_of(output_of(model, x))
        loss.backward()
        adam_step()

    @torch.inference_mode()
    def infer() -> None:
        case.model.eval()
        with torch.autocast("cpu", torch.bfloat16, enabled=case.bf16):
            output_of(model, x)

    return train, infer


# ---------------------------------------------------------------- peak memory


def rss_child(variant: str) -> None:
    """Print the peak RSS (GiB) of one training step of paper-1600 (run in a fresh process)."""
    torch.manual_seed(0)
    rmc = RelationalMemory(
        40, mem_slots=8, head_size=32, num_heads=8, recompute="recompute" in variant
    )
    model = SequenceClassifier(rmc, NTH_FARTHEST_CLASSES, [256] * 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(1600, 8, 40)
    y = torch.randint(NTH_FARTHEST_CLASSES, (1600,))
    before = peak_rss_gib()
    with torch.autocast("cpu", torch.bfloat16, enabled="bf16" in variant):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    print(f"{before:.3f} {peak_rss_gib():.3f}")


MEMORY_VARIANTS = ("fp32", "fp32 recompute", "bf16", "bf16 recompute")
MEMORY_TARGET_GIB = 2.0


# glibc keeps freed blocks below its (adaptive) mmap threshold in its heap, where they
# fragment: the peak RSS then varies from run to run. With a fixed 64 KiB threshold,
# large blocks are returned to the system when freed and RSS follows the tensors.
RETURN_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "65536"}
MEMORY_RUNS = 3  # runs with glibc's default settings; the verdict uses the largest peak


@dataclass
class MemoryResult:
    before: float  # GiB resident before the training step (model, data, torch)
    peaks: list[float]  # GiB, glibc default settings, one per run
    returned: float  # GiB, with RETURN_MEMORY
    kept: float  # GiB, after relational_rnn.keep_freed_memory()


def measure_memory(threads: int, bf16: bool) -> dict[str, MemoryResult]:
    """Peak RSS of a paper-1600 training step per variant (the bf16 ones only if ``bf16``),
    each run in a fresh process."""
    script = str(Path(__file__).resolve())
    args = [script, "--threads", str(threads), "--rss-child"]
    results = {}
    for variant in (v for v in MEMORY_VARIANTS if bf16 or "bf16" not in v):
        runs = [run_child([*args, variant]).split() for _ in range(MEMORY_RUNS)]
        returned = float(run_child([*args, variant], env=RETURN_MEMORY).split()[1])
        kept = float(run_child([*args, variant, "--rss-keep-freed"]).split()[1])
        before = float(runs[0][0])
        results[variant] = MemoryResult(before, [float(run[1]) for run in runs], returned, kept)
    return results


# ---------------------------------------------------------------- profile

ELEMENTWISE = ("tanh", "sigmoid", "relu", "clamp", "threshold", "lerp", "aten::sum")
ELEMENTWISE += ("aten::add", "aten::sub", "aten::mul", "aten::div")  # after aten::addmm
ATTENTION = "attention (scaled_dot_product_attention or MatmulAttention)"
ATTENTION_OPS = ("scaled_dot_product", "MatmulAttention")
MATRIX_PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "mkldnn_rnn", "aten::_mkldnn")
# as torch.compile's C++ wrapper calls them
MATRIX_PRODUCT_OPS += ("aoti_torch_cpu_mm", "aoti_torch_cpu_addmm", "aoti_torch_cpu_bmm")
# the guards, autograd glue and generated wrapper code around a compiled model's kernels
COMPILE_RUNTIME = "torch.compile's runtime (guards, autograd glue, the code between kernels)"
COMPILE_RUNTIME_OPS = ("CompiledFxGraph", "Torch-Compiled Region", "TorchDynamo")
COMPILE_RUNTIME_OPS += ("CompiledFunction", "AOTDispatcher")
# Operator name fragments -> the category the profile summary reports them under (the
# first that matches). Everything run inside an attention operator counts as attention.
CATEGORIES = (
    (ATTENTION, ATTENTION_OPS),
    ("matrix products", MATRIX_PRODUCT_OPS),
    (COMPILE_RUNTIME, COMPILE_RUNTIME_OPS),
    ("Adam", ("Optimizer", "adam", "addcdiv", "lerp_", "sqrt")),  # compiled: one fused kernel
    ("torch.compile's other fused kernels (elementwise, LayerNorm, softmax)", ("cpp_fused",)),
    ("copies (cat, stack, copy, fill, zeros)", ("cat", "stack", "copy_", "fill_", "zero_")),
    ("LayerNorm", ("layer_norm",)),
    ("elementwise (tanh, sigmoid, add, mul, ...)", ELEMENTWISE),
    # the Python of relational_rnn.gated_scan's forward and backward, not their operators
    ("the gated slot memory's Function, itself", ("GatedSlotScan",)),
)


def profile_category(event) -> str:
    """The category of a profiled operator: attention if it ran inside an attention
    operator (the softmax of MatmulAttention, say), else the first that its name matches."""
    parent = event
    while parent is not None:
        if any(part in parent.name for part in ATTENTION_OPS):
            return ATTENTION
        parent = parent.cpu_parent
    return next(
        (name for name, parts in CATEGORIES if any(part in event.name for part in parts)),
        "other (autograd, views, ...)",
    )


def profile(config: str, min_time: float, compiled: bool) -> None:
    """Print the self time of a few training steps by operator and by category, of the
    configuration's first model or (``compiled``) of its torch.compile row."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    if compiled:
        import torch._inductor.config

        torch._inductor.config.cpp.enable_kernel_profile = True  # fused kernels as events
    case = next(case for case in cases(config, False, compiled) if case.compiled == compiled)
    train, _ = workloads(case)
    train()
    start, calls = time.perf_counter(), 0
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        while calls < 2 or time.perf_counter() - start < min_time:
            train()
            calls += 1
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    events = prof.events()
    total = sum(event.self_cpu_time_total for event in events)
    shares = dict.fromkeys([name for name, _ in CATEGORIES] + ["other (autograd, views, ...)"], 0.0)
    for event in events:
        shares[profile_category(event)] += event.self_cpu_time_total / total
    print(f"{config}, {case.title}: {calls} training steps, load {os.getloadavg()[0]:.2f}")
    for name, share in shares.items():
        print(f"  {share:6.1%}  {name}")
    # the profiler inflates small operators; these two are timed without it
    replay = matrix_products(case)
    step, products = interleaved_medians([train, replay], 3, min_time)
    products = replay.bound_seconds(products, call_seconds(max(min_time, 0.2)))
    print(
        f"unprofiled: a step takes {step * 1e3:.2f} ms, its matrix products alone "
        f"{products * 1e3:.2f} ms ({products / step:.0%})"
    )


# ---------------------------------------------------------------- report


def matrix_products(case: Case) -> MatrixProducts:
    """The matrix products of one training step of ``case``, to be replayed alone. For the
    torch.compile row, those of its eager model with the attention as batched products
    (``MatmulAttention``), which are the products that compiled code calls for it."""
    train, _ = workloads(replace(case, compiled=False))
    train()  # first-call work (lazy initialisation) is not part of a step
    if not case.compiled:
        return MatrixProducts(train)
    with mock.patch.object(attention, "use_matmul_attention", return_value=True):
        return MatrixProducts(train)


def margin(value: float, target: float, higher_is_better: bool = True) -> float:
    """How far ``value`` is past (> 0) or short of (< 0) ``target``, as a fraction of it."""
    return value / target - 1 if higher_is_better else 1 - value / target


def percent_text(fraction: float) -> str:
    """``abs(fraction)`` as a percentage, to 0.1% where it is under 1%."""
    return f"{abs(fraction):.1%}" if abs(fraction) < 0.01 else f"{abs(fraction):.0%}"


def ratio_text(value: float, target: float, higher_is_better: bool = True) -> str:
    """'met (+x%)' or 'missed by x%'."""
    past = margin(value, target, higher_is_better)
    return f"met (+{percent_text(past)})" if past >= 0 else f"**missed by {percent_text(past)}**"


def find(
    rows: list[Row], config: str, label: str, bf16: bool = False, compiled: bool = False
) -> Row | None:
    for row in rows:
        case = row.case
        if (case.config, case.label, case.bf16, case.compiled) == (config, label, bf16, compiled):
            return row
    return None


def comparison(row: Row, rows: list[Row]) -> str:
    """The row's training throughput against its comparison point, where it has one."""
    case = row.case
    rows = [other for other in rows if other.threads == row.threads]
    base = None
    if case.bf16:
        base, name = find(rows, case.config, case.label), "fp32"
    elif case.compiled:
        base, name = find(rows, case.config, case.label), "eager"
    elif case.config == "relational-rnn" and case.label == "Relational RNN":
        base, name = find(rows, case.config, "per-step reference"), "reference"
    elif case.config == "lm" and case.label != "torch.nn.LSTM":
        base, name = find(rows, case.config, "torch.nn.LSTM"), "torch.nn.LSTM"
    if base is None:
        return ""
    return f"{row.train / base.train:.2f}x {name}"


def targets(
    rows: list[Row], memory: dict[str, MemoryResult] | None, bf16_emulated: bool = False
) -> list[str]:
    """The issue's targets, one Markdown table row each, for every thread count measured
    (with ``bf16_emulated``, the bf16 target says why it was not measured)."""
    lines = []

    def shown(value: float, unit: str) -> str:
        return {"x": f"{value:.2f}x", "%": f"{value:.1%}", "/s": f"{value:,.0f}/s"}.get(
            unit, f"{value:.2f} {unit}"
        )

    def add(
        target: str, threads: int, value: float, goal: float, unit: str, bound: float | None
    ) -> None:
        verdict = ratio_text(value, goal, higher_is_better=unit != "GiB")
        reach = "—"
        if bound is not None:
            past = margin(bound, goal)
            sign, where = ("+", "within") if past >= 0 else ("-", "out of")
            reach = f"{shown(bound, unit)}: {where} reach ({sign}{percent_text(past)})"
        lines.append(f"| {target} | {threads} | {shown(value, unit)} | {verdict} | {reach} |")

    for threads in sorted({row.threads for row in rows}):
        here = [row for row in rows if row.threads == threads]
        for compiled in (False, True):
            small = find(here, "small", "RMC", compiled=compiled)
            if small:
                target = "small" + (", torch.compile" if compiled else "")
                goal = f"{target}: training >= 10,000 samples/s"
                add(goal, threads, small.train, 10_000, "/s", small.products_alone)
        paper = find(here, "paper-256", "RMC + MLP head")
        if paper:
            share, bound = (
                paper.training_share(samples) for samples in (paper.train, paper.products_alone)
            )
            goal = "paper-256: fp32 training >= 85% of the matmul peak"
            add(goal, threads, share, 0.85, "%", bound)
            bf16 = find(here, "paper-256", "RMC + MLP head", bf16=True)
            goal = "paper-256: bf16 autocast training >= 1.6x fp32"
            if bf16:
                speedup, bound = bf16.train / paper.train, bf16.products_alone / paper.train
                add(goal, threads, speedup, 1.6, "x", bound)
            elif bf16_emulated:
                lines.append(f"| {goal} | {threads} | — | not measured: {NO_NATIVE_BF16} | — |")
        rnn = find(here, "relational-rnn", "Relational RNN")
        reference = find(here, "relational-rnn", "per-step reference")
        if rnn and reference:
            speedup, bound = rnn.train / reference.train, rnn.products_alone / reference.train
            goal = "relational-rnn: training >= 3x the per-step reference"
            add(goal, threads, speedup, 3.0, "x", bound)
        lstm = find(here, "lm", "torch.nn.LSTM")
        for label, target in (
            ("Relational RNN", "lm: Relational RNN (gated slot memory) training"),
            (LM_RMC_MEMORY, "lm: Relational RNN with the RMC memory, training"),
        ):
            lm = find(here, "lm", label)
            if lm and lstm:
                ratio, bound = lm.train / lstm.train, lm.products_alone / lstm.train
                add(f"{target} >= 0.5x torch.nn.LSTM", threads, ratio, 0.5, "x", bound)
    if memory:
        threads = min(row.threads for row in rows) if rows else 1
        peak = max(memory["fp32 recompute"].peaks)
        goal = "paper-1600: training peak RSS <= 2.0 GiB (recompute=True)"
        add(goal, threads, peak, 2.0, "GiB", None)
        peak = max(memory["fp32"].peaks)
        add("(paper-1600 without recompute, for comparison)", threads, peak, 2.0, "GiB", None)
    return lines


def bf16_note(args: argparse.Namespace, bf16: bool) -> str:
    """What the report says of the bfloat16 autocast rows."""
    if bf16:
        return "bfloat16 autocast rows: measured."
    if args.no_bf16:
        return "bfloat16 autocast rows: skipped (--no-bf16)."
    return (
        f"bfloat16 autocast rows: skipped, since {NO_NATIVE_BF16} (no AVX-512 BF16 or AMX; "
        "torch emulates them, many times slower than float32)."
    )


def report(
    args: argparse.Namespace,
    rows: list[Row],
    peaks: dict,
    memory,
    machine: str,
    allocator: str,
    bf16: bool,
) -> str:
    out = [
        "# Throughput",
        "",
        f"Command: `python benchmarks/throughput.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
        "",
        f"Machine, at the start: {machine}.",
        f"Load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}.",
        f"Medians of {args.repeats} repeats of at least {args.min_time} s each.",
        f"Allocator for the timings: {allocator}.",
        bf16_note(args, bf16),
        "",
        "Matrix-product peak (2048 x 2048 @ 2048 x 2048, GFLOP/s), sampled once per round of "
        "every configuration; each row's % of peak uses its configuration's median (bf16 "
        "rows: the bf16 peak):",
        "",
    ]
    for (threads, dtype), samples in sorted(peaks.items()):
        out.append(
            f"- {threads} thread(s), {dtype}: median {statistics.median(samples):.1f}, "
            f"min {min(samples):.1f}, max {max(samples):.1f} ({len(samples)} samples)"
        )
    out += [
        "",
        "Matrix products alone: the matrix products, fused LSTM kernels and attention "
        "kernels that one training step calls, recorded with their shapes, strides and "
        "dtypes and replayed with nothing else in between, operands warm in cache "
        "(`timing.MatrixProducts`), timed after the configuration's rows, less the cost of "
        "calling each from Python (timed on 1 x 1 operands): the most any implementation "
        "calling these products could reach.",
        "",
        "| config | model | precision | threads | batch | T | params | train MFLOP/sample "
        "| train samples/s | train GFLOP/s | % of peak | train samples/s, matrix products alone "
        "| page faults/step | infer samples/s | infer GFLOP/s | % of peak | compared |",
        "|---|---|---|" + "---:|" * 13 + "---|",
    ]
    for row in rows:
        case = row.case
        out.append(
            f"| {case.config} | {row.label} | {row.precision} | {row.threads} | {case.batch} | "
            f"{case.steps} | {count_parameters(case.model):,} | {3 * case.flops / 1e6:.1f} | "
            f"{row.train:,.0f} | {row.gflops(True):.1f} | {row.training_share(row.train):.0%} | "
            f"{row.products_alone:,.0f} | {row.faults:,.0f} | "
            f"{row.infer:,.0f} | {row.gflops(False):.1f} | {row.gflops(False) / row.peak:.0%} | "
            f"{comparison(row, rows)} |"
        )
    if memory:
        out += [
            "",
            "Peak resident set of one training step (forward, backward, Adam) of paper-1600, "
            f"each in a fresh process: {MEMORY_RUNS} runs with glibc's default malloc "
            "settings (the verdict uses the largest), and one with "
            "`MALLOC_MMAP_THRESHOLD_=65536` (freed blocks of 64 KiB and more go back to the "
            "system, so RSS follows the live tensors) and one after "
            "`relational_rnn.keep_freed_memory()` (as `relational-rnn train` runs: freed "
            "memory is kept for reuse):",
            "",
            "| variant | RSS before the step (GiB) | peak RSS, default malloc (GiB) "
            "| peak RSS, MALLOC_MMAP_THRESHOLD_=65536 (GiB) "
            "| peak RSS, keep_freed_memory() (GiB) | target <= 2.0 GiB |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for variant, result in memory.items():
            peaks = ", ".join(f"{peak:.2f}" for peak in result.peaks)
            verdict = ratio_text(max(result.peaks), MEMORY_TARGET_GIB, higher_is_better=False)
            out.append(
                f"| {variant} | {result.before:.2f} | {peaks} | {result.returned:.2f} | "
                f"{result.kept:.2f} | {verdict} |"
            )
    out += [
        "",
        "## Targets (issue 6)",
        "",
        "The last column puts the row's training throughput with its matrix products alone "
        "in place of the measured one (what the target's figure would be if everything else "
        "in a step were free; the row it is compared with stays as measured): a target out "
        "of reach there is out of reach for these matrix products on this machine.",
        "",
        "| target | threads | measured | verdict | with the matrix products alone |",
        "|---|---:|---:|---|---|",
    ]
    out += targets(rows, memory, bf16_emulated=not (bf16 or args.no_bf16))
    return "\n".join(out) + "\n"


def measure_config(
    config_cases: list[Case], threads: int, args: argparse.Namespace, peaks: dict
) -> list[Row]:
    """Time the cases of one configuration in interleaved rounds, with the matmul peak
    sampled once per round (float32, and bfloat16 where a case is bf16);
    ``peaks[(threads, dtype)]`` collects the peak samples and each row is scored against
    its configuration's median."""
    start = time.perf_counter()
    trains, infers = zip(*(workloads(case) for case in config_cases), strict=True)
    trains = [PageFaults(train) for train in trains]
    functions = [fn for pair in zip(trains, infers, strict=True) for fn in pair]
    peak_time = max(args.min_time, 0.2)
    # the bf16 peak only where a row needs it: without native bf16 it takes many seconds
    dtypes = {"fp32": torch.float32}
    if any(case.bf16 for case in config_cases):
        dtypes["bf16"] = torch.bfloat16
    samples: dict[str, list[float]] = {name: [] for name in dtypes}

    def sample_peaks() -> None:
        for name, dtype in dtypes.items():
            samples[name].append(matmul_peak(dtype, peak_time))

    seconds = interleaved_medians([*functions, sample_peaks], args.repeats, args.min_time)
    # timed apart, so that the replays leave the rows' own timings as they were
    replays = [matrix_products(case) for case in config_cases]
    replay_seconds = interleaved_medians(replays, args.repeats, args.min_time)
    per_call = call_seconds(peak_time)
    for name, values in samples.items():
        peaks.setdefault((threads, name), []).extend(values)
    rows = []
    for index, case in enumerate(config_cases):
        train, infer = (case.batch / t for t in seconds[2 * index : 2 * index + 2])
        alone = case.batch / replays[index].bound_seconds(replay_seconds[index], per_call)
        peak = statistics.median(samples["bf16" if case.bf16 else "fp32"])
        rows.append(Row(case, threads, train, infer, peak, trains[index].per_call, alone))
        print(
            f"{case.config:>14} {rows[-1].label:<36} {rows[-1].precision:<13} "
            f"{threads} thread(s): train {train:10,.1f}/s  infer {infer:10,.1f}/s  "
            f"matrix products alone {alone:10,.1f}/s",
            flush=True,
        )
    print(f"{'':>14} ({time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.2f})")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training and inference throughput of the relational models against "
        "the machine's matrix-product peak (issue 6).",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIGS,
        help=f"configurations to run (default: all; with --quick: {' '.join(QUICK_CONFIGS)})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed repeats per measurement, the median is reported (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--min-time",
        type=float,
        help="seconds each repeat runs at least (default 1.0; 0 with --quick: one call per repeat)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch intra-op thread counts to "
        "measure, each in turn (default 1: on a shared machine 2 threads of tiny ops spin-wait)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: fewer configurations, one repeat, "
        "no memory measurement, no file written unless --output is given",
    )
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 autocast rows")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="time with glibc's default malloc settings; by default the timings run after "
        "relational_rnn.keep_freed_memory(), as `relational-rnn train` does, so that freed "
        "tensors are reused instead of faulted in afresh every step",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a row for the small configuration's RMC with the model and Adam's step "
        "compiled by torch.compile (a minute to compile); a Relational RNN cannot be "
        "compiled whole (inductor fails on its fused torch.lstm) and its memory trains as "
        "a hand-written autograd Function",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the "
        "peak RSS of a paper-1600 training step in fresh processes (default: on, off with --quick)",
    )
    parser.add_argument("--output", type=Path, help=f"Markdown file to write (default {RESULTS})")
    parser.add_argument(
        "--profile",
        choices=CONFIGS,
        help="instead of the table: profile training steps of this configuration's first "
        "model (with --compile: small's compiled row) with torch.profiler and print where "
        "the time goes, then the time of a step and of its matrix products alone, both "
        "without the profiler",
    )
    parser.add_argument("--rss-child", choices=MEMORY_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--rss-keep-freed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile and args.compile and args.profile != "small":
        parser.error("--profile with --compile: only small has a torch.compile row")
    args.configs = args.configs or list(QUICK_CONFIGS if args.quick else CONFIGS)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else 1.0)
    args.memory = (not args.quick) if args.memory is None else args.memory
    if args.output is None and not args.quick:
        args.output = RESULTS
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rss_child:  # glibc's default settings, unless asked
        torch.set_num_threads(args.threads[0])
        if args.rss_keep_freed:
            keep_freed_memory()
        rss_child(args.rss_child)
        return
    allocator = "glibc's default malloc settings"
    if not args.default_malloc and keep_freed_memory():
        allocator = "`relational_rnn.keep_freed_memory()` (glibc keeps freed memory for reuse)"
    if args.profile:
        torch.set_num_threads(args.threads[0])
        profile(args.profile, args.min_time, args.compile)
        return
    machine = describe_machine()  # its load average is the one before the run
    bf16 = not args.no_bf16 and native_on_cpu(torch.bfloat16)
    rows: list[Row] = []
    peaks: dict[tuple[int, str], list[float]] = {}

    for threads in args.threads:
        torch.set_num_threads(threads)
        for config in args.configs:
            config_rows = measure_config(
                cases(config, bf16=bf16, compile_models=args.compile),
                threads,
                args,
                peaks,
            )
            rows += config_rows
    memory = measure_memory(args.threads[0], bf16) if args.memory else None
    text = report(args, rows, peaks, memory, machine, allocator, bf16)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
