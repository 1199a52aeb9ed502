"""Corpora for language modelling: characters of any text file, or words of WikiText.

Character level (``load_char_corpus(FILE)``): the file is read as UTF-8 and split
contiguously by characters, the first 90% for training, the next 5% for validation and
the last 5% for testing (``SPLIT``).

Word level (``load_word_corpus(DIR)``): ``DIR/train.txt``, ``valid.txt`` and
``test.txt`` in the WikiText layout: tokens are separated by whitespace, every line
(empty ones included) ends with the end-of-line token ``<eos>``, and the corpus's own
``<unk>`` is an ordinary token that doubles as the unknown token.

The vocabulary is built from the training split only (sorted, so it is the same on
every machine); a token of the validation or test split that it lacks is read as the
unknown token, so every token is scored. Splits are 1-D int64 tensors of token ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive_int

LEVELS = ("char", "word")
SPLIT = (0.90, 0.05, 0.05)  # train, valid, test fractions of a character corpus
CHAR_UNK = "\ufffd"  # the Unicode replacement character
WORD_UNK = "<unk>"
EOS = "<eos>"
PAD = -100  # the target of a padded position (cross_entropy's ignore_index)


class CorpusError(ValueError):
    """A corpus or a text that cannot be used; the message names the file and the cause."""


def tokenize(level: str, text: str) -> list[str]:
    """Text as tokens: its characters, or its words with ``<eos>`` ending every line."""
    if level == "char":
        return list(text)
    return [word for line in text.splitlines() for word in (*line.split(), EOS)]


@dataclass(frozen=True)
class Vocabulary:
    """Tokens (characters or words) and their ids; ``unk`` is one of the tokens."""

    level: str
    tokens: tuple[str, ...]
    unk: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise CorpusError(f"vocabulary level must be one of {LEVELS}, got {self.level!r}")
        if self.unk not in self.tokens or len(set(self.tokens)) != len(self.tokens):
            raise CorpusError("a vocabulary needs distinct tokens that include its unknown token")
        object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, level: str, tokens: Iterable[str]) -> Vocabulary:
        """The sorted distinct ``tokens`` plus the unknown token of ``level``."""
        unk = CHAR_UNK if level == "char" else WORD_UNK
        return cls(level, tuple(sorted({*tokens, unk})), unk)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return self._ids[self.unk]

    def encode(self, text: str, strict: bool = False) -> Tensor:
        """Token ids (L,) int64 of ``text``; unknown tokens become ``unk`` unless
        ``strict``, which raises ``CorpusError`` naming them."""
        tokens = tokenize(self.level, text)
        if strict:
            unknown = sorted({t for t in tokens if t not in self._ids})
            if unknown:
                shown = ", ".join(repr(t) for t in unknown[:5])
                raise CorpusError(
                    f"{len(unknown)} {'character' if self.level == 'char' else 'word'}(s) "
                    f"not in the model's vocabulary: {shown}"
                )
        ids = [self._ids.get(token, self.unk_id) for token in tokens]
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Text of token ids: characters joined, or words joined by spaces with a new
        line for every ``<eos>``."""
        tokens = [self.tokens[int(i)] for i in ids]
        if self.level == "char":
            return "".join(tokens)
        lines, line = [], []
        for token in tokens:
            if token == EOS:
                lines.append(" ".join(line))
                line = []
            else:
                line.append(token)
        return "\n".join([*lines, " ".join(line)])

    def to_json(self) -> str:
        return json.dumps({"level": self.level, "unk": self.unk, "tokens": list(self.tokens)})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        try:
            data = json.loads(text)
            return cls(data["level"], tuple(data["tokens"]), data["unk"])
        except (ValueError, KeyError, TypeError) as error:
            raise CorpusError(f"not a vocabulary: {error}") from None


@dataclass(frozen=True)
class Corpus:
    """A vocabulary and the three splits as token ids, each (L,) int64."""

    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; ``CorpusError`` if it is missing, unreadable or empty."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"data file {path} does not exist")
    if path.is_dir():
        raise CorpusError(f"data file {path} is a directory, expected a text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(f"data file {path} is not UTF-8 text: {error.reason}") from None
    except OSError as error:
        raise CorpusError(f"data file {path} cannot be read: {error.strerror}") from None
    if not text.strip():
        raise CorpusError(f"data file {path} is empty")
    return text


def load_char_corpus(path: Path) -> Corpus:
    """The characters of one UTF-8 file, split 90/5/5 contiguously (``SPLIT``)."""
    text = read_text(path)
    train_end = int(len(text) * SPLIT[0])
    valid_end = train_end + int(len(text) * SPLIT[1])
    if valid_end - train_end < 2 or len(text) - valid_end < 2:
        raise CorpusError(
            f"data file {path} is too short ({len(text)} characters): its 5% validation "
            "and test splits need at least 2 characters each (use 40 or more)"
        )
    vocab = Vocabulary.build("char", text[:train_end])
    return Corpus(
        vocab,
        vocab.encode(text[:train_end]),
        vocab.encode(text[train_end:valid_end]),
        vocab.encode(text[valid_end:]),
    )


def load_word_corpus(directory: Path) -> Corpus:
    """The words of ``DIR/{train,valid,test}.txt`` (WikiText layout)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusError(
            f"data directory {directory} does not exist or is not a directory "
            "(word level needs a directory with train.txt, valid.txt and test.txt)"
        )
    missing = [n for n in ("train.txt", "valid.txt", "test.txt") if not (directory / n).is_file()]
    if missing:
        raise CorpusError(f"data directory {directory} has no {', '.join(missing)}")
    texts = {name: read_text(directory / f"{name}.txt") for name in ("train", "valid", "test")}
    vocab = Vocabulary.build("word", tokenize("word", texts["train"]))
    return Corpus(vocab, *(vocab.encode(texts[name]) for name in ("train", "valid", "test")))


def load_corpus(level: str, path: Path) -> Corpus:
    """``load_char_corpus`` or ``load_word_corpus`` by ``level``."""
    if level == "char":
        return load_char_corpus(path)
    if level == "word":
        return load_word_corpus(path)
    raise CorpusError(f"level must be one of {LEVELS}, got {level!r}")


def batchify(ids: Tensor, columns: int) -> tuple[Tensor, Tensor]:
    """Inputs and targets as ``columns`` contiguous rows for truncated BPTT.

    ids (L,) -> inputs, targets each (R, ceil((L - 1) / columns)), R <= columns: the pairs
    (ids[t], ids[t + 1]) in order, cut into contiguous pieces, one per row.
    The last row is padded at its end (input 0, target ``PAD``), so every token after
    the first is a target exactly once and no padding precedes a real token.
    """
    check_positive_int("columns", columns)
    if ids.numel() < 2:
        raise CorpusError(f"a split needs at least 2 tokens, got {ids.numel()}")
    pairs = ids.numel() - 1
    length = -(-pairs // min(columns, pairs))  # ceil
    columns = -(-pairs // length)  # so that only the last row is padded
    padding = columns * length - pairs
    inputs = F.pad(ids[:-1], (0, padding), value=0).view(columns, length)
    targets = F.pad(ids[1:], (0, padding), value=PAD).view(columns, length)
    return inputs, targets


def train_columns(ids: Tensor, columns: int) -> tuple[Tensor, Tensor]:
    """Like ``batchify`` but the remainder is dropped instead of padded (for training).

    ids (L,) -> inputs, targets each (columns, (L - 1) // columns).
    """
    check_positive_int("columns", columns)
    length = (ids.numel() - 1) // columns
    if length < 1:
        raise CorpusError(
            f"the training split ({ids.numel()} tokens) is too short for {columns} columns"
        )
    used = columns * length
    return ids[:used].view(columns, length), ids[1 : used + 1].view(columns, length)
