"""Character-level language modelling on Tiny Shakespeare: LSTM, Relational RNN and RMC.

    python benchmarks/lm_shakespeare.py                      # 20 minutes per model, 1 thread
    python benchmarks/lm_shakespeare.py --budget 240         # 4 minutes per model
    python benchmarks/lm_shakespeare.py --budget 20 --quick  # a smoke run

Each model trains for the same wall-clock budget (``--budget`` seconds, periodic
validation included) on the first 90% of the file, one model after the other, with
``--threads`` torch threads. Parameter counts are matched within 3%: the RMC (4 slots of
128, 4 heads) is the reference, the LSTM's hidden size and the Relational RNN's (with a
4 x 64 RMC memory) are chosen to come close to it. All share the embedding (64), batch
(32 columns), truncated-BPTT length (64), Adam (lr 2e-3, cosine decay over the budget,
gradient norm clipped at 1) and no dropout.

The loss is in nats per character on the whole validation and test splits (5% each),
the state carried across the whole split (see ``relational_rnn.lm.train``). Writes
``lm_shakespeare.md`` (table, setting, machine, a text sample of the best model) and
``lm_shakespeare.png`` (validation loss against wall time) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from timing import describe_machine  # noqa: E402

from relational_rnn.config import ModelConfig, OptimConfig  # noqa: E402
from relational_rnn.lm.config import LMConfig  # noqa: E402
from relational_rnn.lm.sample import generate  # noqa: E402
from relational_rnn.lm.train import LMRun, load_lm  # noqa: E402
from relational_rnn.train import read_metrics  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
TARGET = 1.60  # nats per character on the validation split
MODELS = {
    "lstm": ModelConfig(kind="lstm", hidden_size=183, head_hidden=[]),
    "relational-rnn": ModelConfig(
        kind="relational-rnn",
        hidden_size=128,
        mem_slots=4,
        slot_size=64,
        num_heads=2,
        memory="rmc",
        head_hidden=[],
    ),
    "rmc": ModelConfig(kind="rmc", mem_slots=4, slot_size=128, num_heads=4, head_hidden=[]),
}
EVAL_EVERY = {"lstm": 400, "relational-rnn": 150, "rmc": 100}  # about every 20-30 s
PROMPT = "ROMEO:\n"


def run_config(model: str, data: Path, budget: float, seed: int) -> LMConfig:
    return LMConfig(
        level="char",
        data=str(data),
        model=MODELS[model],
        optim=OptimConfig(lr=2e-3, schedule="cosine", clip_norm=1.0),
        embed_size=64,
        batch_size=32,
        bptt=64,
        eval_columns=32,
        steps=None,
        time_budget=budget,
        seed=seed,
        eval_every=EVAL_EVERY[model],
        log_every=50,
        checkpoint_every=10**9,  # only at the start and the end
    )


def table(summaries: dict[str, dict], budget: float) -> list[str]:
    lines = [
        "| model | parameters | steps | epochs | tokens/s | valid loss | valid bits/char "
        "| test loss | test bits/char | best valid loss | valid <= 1.60 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for model, s in summaries.items():
        valid, test = s["final"], s["test"]
        lines.append(
            f"| {model} | {s['parameters']:,} | {s['steps']:,} | {s['epochs']:.2f} | "
            f"{s['tokens_per_s']:,.0f} | {valid['loss']:.3f} | {valid['bits_per_char']:.3f} | "
            f"{test['loss']:.3f} | {test['bits_per_char']:.3f} | {s['best_valid_loss']:.3f} | "
            f"{'yes' if valid['loss'] <= TARGET else 'no'} |"
        )
    baseline = next(iter(summaries.values()))["baseline"]
    lines.append(
        f"| unigram baseline | 0 | | | | {baseline['loss']:.3f} | "
        f"{baseline['bits_per_char']:.3f} | | | | |"
    )
    return lines


def plot(run_dirs: dict[str, Path], out: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for model, run_dir in run_dirs.items():
        evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
        axis.plot([r["elapsed_s"] / 60 for r in evals], [r["loss"] for r in evals], label=model)
    axis.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {TARGET}")
    axis.set_xlabel("wall time (minutes)")
    axis.set_ylabel("validation loss (nats/char)")
    axis.set_ylim(1.2, 3.5)
    axis.set_title("Tiny Shakespeare, character level")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--data", type=Path, default=DATA, help="the Tiny Shakespeare file")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every model's initialisation and batches"
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("runs/lm-shakespeare"),
        help="folder of the run folders (checkpoints, metrics), one per model",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where lm_shakespeare.md and lm_shakespeare.png are written",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: nothing under --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    machine_before = describe_machine()
    summaries, run_dirs = {}, {}
    for model in models:
        run_dir = args.runs / model
        shutil.rmtree(run_dir, ignore_errors=True)
        run = LMRun.create(run_config(model, args.data, args.budget, args.seed), run_dir)
        print(f"{model}: {run.parameters:,} parameters", file=sys.stderr)
        summaries[model] = run.train()  # prints each validation, a bar on a terminal
        run_dirs[model] = run_dir
        print(json.dumps(summaries[model]), file=sys.stderr)
    best = min(summaries, key=lambda m: summaries[m]["final"]["loss"])
    _, vocab, model, _ = load_lm(run_dirs[best])
    sample = generate(model, vocab, PROMPT, 600, temperature=0.8, seed=0)
    lines = [
        "# Tiny Shakespeare, character level",
        "",
        f"Budget: {args.budget:.0f} s of wall time per model (validation included), one model "
        f"after the other, {args.threads} torch thread(s). Command: `python "
        f"benchmarks/lm_shakespeare.py --budget {args.budget:.0f} --threads {args.threads}`.",
        "Data: the first 90% of tinyshakespeare.txt for training, the next 5% validation, "
        "the last 5% test. Loss in nats per character over the whole split, the state "
        "carried across it; the test split is scored once, with the final weights.",
        "Setting: embedding 64, batch 32 x 64 characters, Adam lr 2e-3 with cosine decay "
        "over the budget, gradient norm clipped at 1, no dropout. Sizes: "
        + "; ".join(f"{m}: {MODELS[m]}" for m in models),
        f"Machine: {machine_before}; shared with other jobs, so tokens/s is noisy. "
        f"Load after: {describe_machine().rsplit('load average ', 1)[1]}.",
        "",
        *table(summaries, args.budget),
        "",
        f"Target (validation loss <= {TARGET} nats/char): "
        + ("met" if summaries[best]["final"]["loss"] <= TARGET else "**missed**")
        + f" by the best model, {best} ({summaries[best]['final']['loss']:.3f}).",
        "",
        f"Sample of {best} (prompt {PROMPT!r}, 600 characters, temperature 0.8, seed 0):",
        "",
        "```",
        PROMPT + sample,
        "```",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lm_shakespeare.md").write_text(text)
        plot(run_dirs, args.out / "lm_shakespeare.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
