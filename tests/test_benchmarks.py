"""The benchmark scripts run and write their tables (one quick pass; speed is not asserted).

The benchmarks set torch's thread count; the ``set_threads`` fixture restores it."""

from helpers import load_benchmark


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
    assert "| small: training >= 10,000 samples/s | 1 |" in text
