"""Training a language model with truncated BPTT, and honest evaluation.

A language-model run directory holds what a task run's does (``config.json``,
``metrics.jsonl``, ``checkpoints/``, ``summary.json``; see ``relational_rnn.train``)
plus ``vocab.json``, the vocabulary built from the training split.

Training: the training split is cut into ``batch_size`` contiguous columns; step k
reads the next ``bptt`` tokens of every column, starting from the state the previous
chunk ended in (detached, so gradients stop at the chunk boundary). At the end of a
pass over the columns the state starts again from the core's initial state. A
checkpoint holds the carried state and the position, so a resumed run continues
exactly where it stopped.

Evaluation (``evaluate_lm``): the whole split, every token after the first scored
exactly once, in ``eval_columns`` contiguous columns with the state carried across
the whole split. The loss is in nats per token; perplexity is exp(loss) and bits per
token loss / ln 2 (bits per character at the character level).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checkpoint import load_latest, save_checkpoint, write_atomic
from ..config import ConfigError
from ..guard import gradient_norm, is_finite
from ..train import (
    CONFIG,
    METRICS,
    SUMMARY,
    StopRequest,
    TrainingLoop,
    build_core,
    check_more_steps,
    check_new_run_directory,
    derive_seed,
    learning_rate,
    load_weights,
    optimizer_state,
    progress_fraction,
    read_metrics,
    read_run_config,
    restore_optimizer,
    strip,
    training_autocast,
)
from ..utils import count_parameters
from .config import FORMAT, LMConfig, lm_config_from_dict
from .corpus import PAD, Corpus, CorpusError, Vocabulary, batchify, load_corpus, train_columns
from .model import LanguageModel, detach_state

VOCAB = "vocab.json"
INTERVAL = ("loss", "scored", "tokens", "steps", "time")  # summed between train records


def build_lm(config: LMConfig, vocab_size: int) -> LanguageModel:
    """The language model that ``config`` describes, initialised from the ``init`` stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        core = build_core(config.model, config.embed_size)
        return LanguageModel(
            vocab_size, config.embed_size, core, config.dropout, config.tie_weights
        )


def lm_metrics(loss: float, level: str) -> dict[str, float]:
    """loss (nats per token), perplexity and bits per character (or per word)."""
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        f"bits_per_{level}": loss / math.log(2),
    }


@torch.no_grad()
def evaluate_lm(
    model: LanguageModel, ids: Tensor, columns: int, bptt: int, level: str
) -> dict[str, float]:
    """Metrics of ``model`` on a whole split ids (L,), the state carried across it.

    Every token after the first is a target exactly once; chunking by ``bptt`` does not
    change the result (up to rounding), since the state is carried without a cut.
    """
    was_training = model.training
    model.eval()
    inputs, targets = batchify(ids, columns)  # each (columns, ceil((L - 1) / columns))
    total, state = 0.0, None
    for start in range(0, inputs.shape[1], bptt):
        logits, state = model(inputs[:, start : start + bptt], state)  # (B, T, V)
        chunk = targets[:, start : start + bptt]
        total += float(
            F.cross_entropy(
                logits.flatten(0, 1), chunk.flatten(), ignore_index=PAD, reduction="sum"
            )
        )
    model.train(was_training)
    return lm_metrics(total / (ids.numel() - 1), level)


def unigram_baseline(corpus: Corpus, ids: Tensor) -> dict[str, float]:
    """Metrics of the input-blind predictor: the training split's token frequencies
    (each count plus 0.5, so unseen tokens have a finite loss), on ``ids`` (L,)."""
    counts = torch.bincount(corpus.train, minlength=len(corpus.vocab)).double() + 0.5
    log_prior = torch.log(counts / counts.sum())
    return lm_metrics(float(-log_prior[ids[1:]].mean()), corpus.vocab.level)


def read_lm_config(run_dir: Path) -> LMConfig:
    """The config of an existing language-model run; ``ConfigError`` if there is none."""
    return read_run_config(run_dir, FORMAT, lm_config_from_dict, "language-model run")


def read_vocab(run_dir: Path) -> Vocabulary:
    path = Path(run_dir) / VOCAB
    try:
        return Vocabulary.from_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path} cannot be read: {error.strerror}") from None
    except CorpusError as error:
        raise ConfigError(f"{path}: {error}") from None


def load_run_corpus(config: LMConfig, run_dir: Path) -> Corpus:
    """The corpus of an existing run, checked against the vocabulary saved with the run."""
    corpus = load_corpus(config.level, Path(config.data))
    if corpus.vocab != read_vocab(run_dir):
        raise ConfigError(
            f"{config.data} has changed since the run started: its vocabulary differs"
        )
    return corpus


def load_lm(run_dir: Path) -> tuple[LMConfig, Vocabulary, LanguageModel, int]:
    """A language-model run's config, vocabulary and model (in eval mode) with the
    newest checkpoint's weights, and that checkpoint's step."""
    config = read_lm_config(run_dir)
    vocab = read_vocab(run_dir)
    model = build_lm(config, len(vocab))
    tensors, meta = load_latest(run_dir)
    load_weights(model, tensors, meta, run_dir)
    return config, vocab, model.eval(), meta["step"]


def evaluate_lm_run(run_dir: Path) -> dict[str, Any]:
    """Metrics of a run's newest checkpoint on the whole validation and test splits of
    its data, with the unigram baseline on the test split."""
    config, _, model, step = load_lm(run_dir)
    corpus = load_run_corpus(config, run_dir)
    columns, bptt, level = config.eval_columns, config.bptt, config.level
    return {
        "step": step,
        "valid": evaluate_lm(model, corpus.valid, columns, bptt, level),
        "test": evaluate_lm(model, corpus.test, columns, bptt, level),
        "baseline": unigram_baseline(corpus, corpus.test),
    }


def state_parts(state: Any) -> list[Tensor]:
    """The tensors of a core's state (None: no tensors), in order."""
    if state is None:
        return []
    return [state] if isinstance(state, Tensor) else list(state)


@dataclass
class LMCounters:
    """How far a language-model run got; saved in every checkpoint."""

    step: int = 0
    tokens: int = 0
    epoch: int = 0
    position: int = 0  # the column offset of the next training chunk
    elapsed_s: float = 0.0  # wall time of the whole run, evaluations included
    train_time_s: float = 0.0  # wall time of the training steps alone
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    nonfinite_in_a_row: int = 0  # of them, the latest without a good step between


class LMRun(TrainingLoop):
    """A language-model training run bound to its directory (``create`` or ``resume``).

    Building one seeds torch's global RNG (used by dropout) from the run's ``dropout``
    stream; checkpoints save and restore that RNG's state.
    """

    def __init__(self, config: LMConfig, run_dir: Path, corpus: Corpus) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.corpus = corpus
        self.model = build_lm(config, len(corpus.vocab))
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
        )
        self.inputs, self.targets = train_columns(corpus.train, config.batch_size)  # (B, N)
        self.state: Any = None  # the core's state carried between training chunks
        self.counters = LMCounters()
        self.interval = dict.fromkeys(INTERVAL, 0.0)  # statistics since the last train record
        self.stop = StopRequest()
        torch.manual_seed(derive_seed(config.seed, "dropout"))

    @classmethod
    def create(cls, config: LMConfig, run_dir: Path) -> LMRun:
        """A fresh run on ``config.data``; ``run_dir`` must not hold a run already."""
        run_dir = Path(run_dir)
        if not config.data:
            raise ConfigError(
                "a language-model run needs --data: a UTF-8 text file (lm-char) or a "
                "directory with train.txt, valid.txt and test.txt (lm-word)"
            )
        if (run_dir / CONFIG).exists():
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                "or choose another --out"
            )
        corpus = load_corpus(config.level, Path(config.data))
        run = cls(config, run_dir, corpus)
        check_new_run_directory(run_dir, config.keep_checkpoints, run.model, (VOCAB,))
        write_atomic(run_dir / VOCAB, corpus.vocab.to_json().encode())
        write_atomic(run_dir / CONFIG, json.dumps(config.to_dict(), indent=2).encode())
        run.log({"kind": "baseline", "step": 0, **unigram_baseline(corpus, corpus.valid)})
        run.log({"kind": "eval", "step": 0, "elapsed_s": 0.0, **run.evaluate()})
        run.checkpoint()
        return run

    @classmethod
    def resume(cls, run_dir: Path, changes: dict[str, Any] | None = None) -> LMRun:
        """Continue the run in ``run_dir``; ``changes`` may set steps or time_budget."""
        config = read_lm_config(run_dir)
        changes = changes or {}
        if set(changes) - {"steps", "time_budget"}:
            names = ", ".join(sorted(set(changes) - {"steps", "time_budget"}))
            raise ConfigError(f"a resumed run keeps its config; cannot change {names}")
        config = lm_config_from_dict(changes, config)
        run = cls(config, run_dir, load_run_corpus(config, run_dir))
        run.load()
        check_more_steps(changes, run.counters.step, run_dir)
        if changes:
            write_atomic(run.run_dir / CONFIG, json.dumps(config.to_dict(), indent=2).encode())
        return run

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    def evaluate(self, split: str = "valid") -> dict[str, float]:
        """Metrics on the whole validation (or test) split."""
        config = self.config
        ids = getattr(self.corpus, split)
        return evaluate_lm(self.model, ids, config.eval_columns, config.bptt, config.level)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl``."""
        with open(self.run_dir / METRICS, "a") as file:
            file.write(json.dumps(record) + "\n")

    def checkpoint(self) -> None:
        tensors, optimizer_meta = optimizer_state(self.optimizer)
        tensors.update({f"model.{k}": v for k, v in self.model.state_dict().items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors.update({f"state.{i}": part for i, part in enumerate(state_parts(self.state))})
        meta = {"counters": asdict(self.counters), "optimizer": optimizer_meta}
        save_checkpoint(
            self.run_dir, self.counters.step, tensors, meta, self.config.keep_checkpoints
        )

    def load(self) -> None:
        """Restore the newest good checkpoint and drop the metrics logged after it."""
        tensors, meta = load_latest(self.run_dir)
        load_weights(self.model, tensors, meta, self.run_dir)
        restore_optimizer(self.optimizer, tensors, meta["optimizer"])
        torch.set_rng_state(tensors["rng.torch"])
        self.counters = LMCounters(**meta["counters"])
        parts = [tensors[f"state.{i}"] for i in range(len(tensors)) if f"state.{i}" in tensors]
        if parts:  # the carried state, rebuilt in the core's own type
            template = self.model.core.initial_state(self.config.batch_size)
            self.state = parts[0] if isinstance(template, Tensor) else type(template)(*parts)
        kept = [r for r in read_metrics(self.run_dir) if r["step"] <= self.counters.step]
        write_atomic(self.run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def train_step(self) -> tuple[float, int, bool]:
        """One optimizer step on the next chunk: returns its mean loss, its tokens and
        whether the step was taken (one with a non-finite loss or gradient is skipped:
        the weights stay and the carried state starts afresh)."""
        config, counters = self.config, self.counters
        start = counters.position
        inputs = self.inputs[:, start : start + config.bptt]  # (B, T)
        targets = self.targets[:, start : start + config.bptt]  # (B, T)
        lr = learning_rate(config.optim, counters.step, progress_fraction(config, counters))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with training_autocast(config.optim, inputs.device):
            logits, state = self.model(inputs, self.state)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = gradient_norm(self.model.parameters(), config.optim.clip_norm)
        value = loss.item()
        taken = is_finite(value, norm)
        if taken:
            self.optimizer.step()
        counters.position = start + inputs.shape[1]
        if counters.position >= self.inputs.shape[1]:  # end of a pass: start afresh
            counters.position, counters.epoch, self.state = 0, counters.epoch + 1, None
        else:
            self.state = detach_state(state) if taken else None
        return value, targets.numel(), taken

    def count(self, loss: float, amount: int, taken: bool, time_s: float) -> None:
        """``amount``: the tokens of the step."""
        self.counters.tokens += amount
        interval = self.interval
        if taken:
            interval["loss"] += loss * amount
            interval["scored"] += amount
        interval["tokens"] += amount
        interval["steps"] += 1
        interval["time"] += time_s

    def log_train(self) -> dict[str, str]:
        """Log the ``train`` record of the steps since the last one; the metrics cover the
        steps taken (null if every step was skipped)."""
        interval, level = self.interval, self.config.level
        scored = interval["scored"]
        metrics = lm_metrics(interval["loss"] / scored, level) if scored else None
        record = {
            "kind": "train",
            "step": self.counters.step,
            "elapsed_s": self.counters.elapsed_s,
            "epoch": self.counters.epoch,
            **(metrics or dict.fromkeys(lm_metrics(0.0, level))),
            "tokens_per_s": interval["tokens"] / max(interval["time"], 1e-9),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        self.log(record)
        self.interval = dict.fromkeys(INTERVAL, 0.0)
        if metrics is None:
            return {}
        return {"loss": f"{record['loss']:.3f}", "tokens_s": f"{record['tokens_per_s']:.0f}"}

    def describe_eval(self, metrics: dict[str, float]) -> str:
        return "validation " + format_lm_metrics(metrics)

    def write_summary(self) -> dict[str, Any]:
        """Write and return ``summary.json``; a finished run is also evaluated on the
        test split (once, with its final weights)."""
        records = read_metrics(self.run_dir)
        evals = [r for r in records if r["kind"] == "eval"]
        baseline = next(r for r in records if r["kind"] == "baseline")
        counters = self.counters
        summary = {
            "status": self.status(),
            "task": self.config.task,
            "model": self.config.model.kind,
            "parameters": self.parameters,
            "vocab_size": len(self.corpus.vocab),
            "steps": counters.step,
            "epochs": counters.tokens / self.inputs.numel(),
            "tokens": counters.tokens,
            "wall_time_s": counters.elapsed_s,
            "tokens_per_s": counters.tokens / max(counters.train_time_s, 1e-9),
            "skipped_steps": counters.skipped_steps,
            "final": strip(evals[-1]),
            "best_valid_loss": min(r["loss"] for r in evals),
            "baseline": strip(baseline),
        }
        if summary["status"] == "finished":
            summary["test"] = self.evaluate("test")
        write_atomic(self.run_dir / SUMMARY, json.dumps(summary, indent=2).encode())
        return summary


def format_lm_metrics(metrics: dict[str, float]) -> str:
    """``loss 1.234 perplexity 3.43 bits_per_char 1.780``, for printing."""
    return " ".join(
        f"{name} {value:.2f}" if name == "perplexity" else f"{name} {value:.3f}"
        for name, value in metrics.items()
        if name in ("loss", "perplexity") or name.startswith("bits_per_")
    )
