"""Timing helpers shared by the benchmarks: medians of repeats, the matmul peak, the machine."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def seconds_per_call(fn: Callable[[], object], min_time: float) -> float:
    """Mean seconds per call of ``fn``, called until ``min_time`` seconds have passed (once
    at least)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def interleaved_medians(
    fns: list[Callable[[], object]], repeats: int, min_time: float
) -> list[float]:
    """Median seconds per call of each of ``fns``, timed in interleaved rounds.

    Each function is called once untimed (warm-up), then every round times each function
    in turn (``seconds_per_call``), so that the load of a shared machine, which changes
    over seconds, weighs on all of them alike.
    """
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples, strict=True):
            times.append(seconds_per_call(fn, min_time))
    return [statistics.median(times) for times in samples]


class PageFaults:
    """``fn`` wrapped to count the minor page faults of the process during its calls, all
    but the first (the warm-up of ``interleaved_medians``)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn, self.calls, self.faults = fn, 0, 0

    def __call__(self) -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        self.fn()
        if self.calls > 0:
            self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        self.calls += 1

    @property
    def per_call(self) -> float:
        """Faults per counted call."""
        return self.faults / max(self.calls - 1, 1)


# aten operators that the replay of a step's matrix products runs, in every overload
# (out=, in place): the products themselves, the fused LSTM kernels that torch.nn.LSTM
# runs on CPU, and the attention kernels of scaled_dot_product_attention on CPU (two
# products per head with a softmax between)
MATRIX_PRODUCTS = ("mm", "addmm", "addmm_", "bmm", "baddbmm", "baddbmm_", "_addmm_activation")
MATRIX_PRODUCTS += ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward")
MATRIX_PRODUCTS += (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
)


class MatrixProducts(TorchDispatchMode):
    """The matrix products that one call of ``fn`` runs (backward included), replayed alone.

    Recording runs ``fn`` once and keeps each matrix product (``MATRIX_PRODUCTS``) with
    operands of the same shapes, strides and dtypes; calling the object runs those
    operators in the same order and nothing else. Operands at the same argument position
    with the same layout share one buffer (a copy of the first one seen), which keeps
    memory bounded and the operands warm in cache; results written in place accumulate
    in their buffer, which changes the values, not the work. ``bound_seconds`` takes off
    what calling each operator from Python costs, so that the time is what ``fn`` would
    take if everything but its matrix products were free.
    """

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__()
        self.calls: list[tuple[Callable, tuple, dict]] = []
        self.buffers: dict[tuple, torch.Tensor] = {}
        with self:
            fn()

    def operand(self, position: object, value: object) -> object:
        """The replay's buffer for a tensor argument (other arguments as they are)."""
        if not isinstance(value, torch.Tensor):
            return value
        key = (position, value.shape, value.stride(), value.dtype)
        if key not in self.buffers:
            # a copy of the memory the tensor spans, viewed alike: its strides are kept
            # even where elements overlap (expanded tensors), which copy_ could not write
            layout = zip(value.shape, value.stride(), strict=True)
            span = 1 + sum((size - 1) * stride for size, stride in layout) if value.numel() else 0
            memory = value.detach().as_strided((span,), (1,)).clone()
            self.buffers[key] = memory.as_strided(value.shape, value.stride())
        return self.buffers[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket.__name__ in MATRIX_PRODUCTS:
            replay_args = tuple(self.operand(i, value) for i, value in enumerate(args))
            replay_kwargs = {name: self.operand(name, value) for name, value in kwargs.items()}
            self.calls.append((func, replay_args, replay_kwargs))
        return func(*args, **kwargs)

    def __call__(self) -> None:
        for func, args, kwargs in self.calls:
            func(*args, **kwargs)

    def bound_seconds(self, seconds: float, call_seconds: float) -> float:
        """The replay's time (``seconds``) less its calls' cost, ``call_seconds`` each."""
        return seconds - len(self.calls) * call_seconds

    @property
    def names(self) -> list[str]:
        """The recorded operators' names, in order (``aten.mm.default``, ...)."""
        return [str(func) for func, _, _ in self.calls]


def call_seconds(min_time: float) -> float:
    """Seconds per call of an aten product from Python on 1 x 1 operands, as the replay of
    ``MatrixProducts`` calls them: the calling cost, with next to no work."""
    left, right = torch.ones(1, 1), torch.ones(1, 1)
    product = torch.ops.aten.mm.default
    calls = 1000

    def call_many() -> None:
        for _ in range(calls):
            product(left, right)

    call_many()  # warm-up
    return seconds_per_call(call_many, min_time) / calls


def matmul_peak(dtype: torch.dtype, min_time: float, size: int = 2048) -> float:
    """GFLOP/s of one timed run of a (size x size) @ (size x size) product in ``dtype``."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    a @ b  # warm-up
    return 2 * size**3 / seconds_per_call(lambda: a @ b, min_time) / 1e9


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe_machine() -> str:
    """One line: CPU, cores, memory, vector extensions, torch build and load average."""
    flags = cpu_flags()
    vectors = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, {memory_gib:.0f} GiB; "
        f"{' '.join(vectors) or 'no AVX'}; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}); python {platform.python_version()}; "
        f"load average {load}"
    )


def peak_rss_gib() -> float:
    """This process's peak resident set size so far, in GiB.

    Reads VmHWM from /proc/self/status where there is one: ``ru_maxrss`` is carried over
    from the parent through fork and exec, so a child of a large process would report
    the parent's peak.
    """
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_child(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run ``python args...`` in a fresh process, with ``env`` added to the environment,
    and return its last line of output."""
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]
