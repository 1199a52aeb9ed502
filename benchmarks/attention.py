"""The two CPU attention paths side by side: where batched matrix products pay.

    python benchmarks/attention.py                  # 1 thread
    python benchmarks/attention.py --threads 1 2    # each thread count in turn

Times one forward and backward of the memories' attention, softmax(scale * q k^T) v, at
the shapes of the issue's configurations and at growing numbers of (batch, head) pairs:
``scaled_dot_product_attention`` (its flash kernel, the default on CPU) against
``MatmulAttention`` (batched matrix products with their own backward), in float32 and
under bfloat16 autocast. Medians of ``--repeats`` interleaved runs; prints a Markdown
table and writes it to ``--output``. ``relational_rnn.attention.use_matmul_attention``
chooses from this table: ``MatmulAttention`` for training from
``MATMUL_ATTENTION_MIN_PAIRS`` pairs up, or in float32 on more than one thread, except
in a reduced precision that the CPU lacks (``relational_rnn.native_on_cpu``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import describe_machine, interleaved_medians

from relational_rnn.attention import MATMUL_ATTENTION_MIN_PAIRS, MatmulAttention, split_qkv

# (rows attended to, queries, heads, head size, where these shapes come from)
SHAPES = [
    (5, 4, 2, 32, "small: 4 slots + input row, 2 heads"),
    (4, 4, 2, 32, "relational-rnn and lm: 4 slots, 2 heads"),
    (9, 8, 8, 32, "paper: 8 slots + input row, 8 heads"),
]
PAIRS = (64, 128, 256, 512, 2048)


def forward_backward(attention, batch: int, shape: tuple, bf16: bool):
    """A function of no arguments: one forward and backward of ``attention`` on q, k and v
    split from one projection, as the memories compute them."""
    rows, queries, heads, size, _ = shape
    generator = torch.Generator().manual_seed(0)
    qkv = torch.randn(batch, rows, heads * 3 * size, generator=generator, requires_grad=True)
    grad = torch.randn(batch, heads, queries, size, generator=generator)

    def run() -> None:
        q, k, v = split_qkv(qkv, heads, [size] * 3)  # (B, h, R, d) each
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            output = attention(q[:, :, :queries], k, v, size**-0.5)
        output.backward(grad.to(output.dtype))

    return run


def sdpa(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def matmul(q, k, v, scale):
    return MatmulAttention.apply(q, k, v, scale)


def measure(threads: int, repeats: int, min_time: float) -> list[str]:
    """The table's rows at ``threads`` threads."""
    torch.set_num_threads(threads)
    rows = []
    for shape in SHAPES:
        for pairs in PAIRS:
            batch = pairs // shape[2]
            for bf16 in (False, True):
                fns = [forward_backward(fn, batch, shape, bf16) for fn in (sdpa, matmul)]
                flash, ours = interleaved_medians(fns, repeats, min_time)
                faster = "MatmulAttention" if ours < flash else "flash"
                rows.append(
                    f"| {shape[4]} | {threads} | {batch} | {pairs} | "
                    f"{'bf16 autocast' if bf16 else 'fp32'} | {flash * 1e6:,.0f} | "
                    f"{ours * 1e6:,.0f} | {flash / ours:.2f}x | {faster} |"
                )
                print(rows[-1], flush=True)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1], help="torch thread counts to measure"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per case; the median is reported"
    )
    parser.add_argument(
        "--min-time", type=float, default=0.3, help="seconds of calls in each timed run"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).parent / "results" / "attention.md",
        help="where the Markdown table is written",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    machine = describe_machine()
    header = [
        "| shape | threads | batch | (batch, head) pairs | precision | flash (us) "
        "| MatmulAttention (us) | speed-up | faster |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    print("\n".join(header))
    rows = []
    for threads in args.threads:
        rows += measure(threads, args.repeats, args.min_time)
    text = "\n".join(
        [
            "# Attention on CPU: flash kernel against batched matrix products",
            "",
            f"Command: `{' '.join(['python', 'benchmarks/attention.py', *argv])}`",
            "",
            f"Machine, at the start: {machine}.",
            f"Medians of {args.repeats} interleaved runs of at least {args.min_time} s; one "
            "forward and backward per call, times in microseconds. `attend` takes "
            f"MatmulAttention for training from {MATMUL_ATTENTION_MIN_PAIRS} pairs up, "
            "or in float32 on more than one thread, except in a reduced precision that the "
            "CPU lacks (emulated bfloat16: then the flash kernel).",
            "",
            *header,
            *rows,
            "",
        ]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
