"""The benchmark scripts run and write their tables (one quick pass; speed is not asserted)."""

import torch
from helpers import load_benchmark


def test_attention_benchmark_writes_a_row_per_case(tmp_path):
    attention = load_benchmark("attention")
    output = tmp_path / "attention.md"
    threads = torch.get_num_threads()
    try:
        attention.main(["--repeats", "1", "--min-time", "0", "--output", str(output)])
    finally:
        torch.set_num_threads(threads)  # the benchmark sets its own
    rows = [line for line in output.read_text().splitlines() if line.startswith("| ")]
    cases = len(attention.SHAPES) * len(attention.PAIRS) * 2  # float32 and bf16 autocast
    assert len(rows) == 1 + cases  # the header, then one row per case
    assert all(row.endswith(("| flash |", "| MatmulAttention |")) for row in rows[1:])
