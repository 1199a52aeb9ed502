"""Language modelling: corpora, vocabulary, state carrying, honest evaluation, sampling."""

import math

import pytest
import torch
from helpers import linear_output_dtypes

from relational_rnn.config import ModelConfig
from relational_rnn.lm.config import LMConfig
from relational_rnn.lm.corpus import (
    CHAR_UNK,
    EOS,
    PAD,
    CorpusError,
    Vocabulary,
    batchify,
    load_char_corpus,
    load_word_corpus,
)
from relational_rnn.lm.model import detach_state
from relational_rnn.lm.sample import generate
from relational_rnn.lm.train import LMRun, build_lm, evaluate_lm, state_parts

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
)
CORES = {
    "lstm": ModelConfig(kind="lstm", hidden_size=16, head_hidden=[]),
    "relational-rnn": ModelConfig(
        kind="relational-rnn", hidden_size=16, mem_slots=2, slot_size=8, num_heads=2, memory="rmc"
    ),
    "rmc": ModelConfig(kind="rmc", mem_slots=2, slot_size=8, num_heads=2),
}


def tiny_config(path, kind="lstm", **changes) -> LMConfig:
    values = dict(data=str(path), model=CORES[kind], embed_size=8, batch_size=2, bptt=8)
    return LMConfig(**{**values, **changes})


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT * 4, encoding="utf-8")
    return path


@pytest.fixture
def wikitext_dir(tmp_path):
    directory = tmp_path / "wiki"
    directory.mkdir()
    (directory / "train.txt").write_text(" = Valkyria = \n\n the <unk> game is a game \n")
    (directory / "valid.txt").write_text(" the game is new \n")
    (directory / "test.txt").write_text(" a <unk> game \n")
    return directory


def test_char_corpus_splits_90_5_5_contiguously(text_file):
    corpus = load_char_corpus(text_file)
    text = text_file.read_text()
    assert corpus.train.numel() == int(len(text) * 0.9)
    assert corpus.valid.numel() == int(len(text) * 0.05)
    joined = torch.cat([corpus.train, corpus.valid, corpus.test])
    assert corpus.vocab.decode(joined) == text  # every character of TEXT is in train


def test_char_vocabulary_round_trips_and_maps_unseen_characters_to_unk(text_file):
    vocab = load_char_corpus(text_file).vocab
    assert Vocabulary.from_json(vocab.to_json()) == vocab
    assert vocab.decode(vocab.encode("hear me speak")) == "hear me speak"
    assert vocab.decode(vocab.encode("speak, Zqx")) == f"speak, {CHAR_UNK * 3}"
    with pytest.raises(CorpusError, match="3 character.* not in the model's vocabulary: 'Z', 'q'"):
        vocab.encode("Zqx", strict=True)


def test_word_corpus_handles_unk_and_end_of_line(wikitext_dir):
    corpus = load_word_corpus(wikitext_dir)
    vocab = corpus.vocab
    assert "<unk>" in vocab.tokens and EOS in vocab.tokens
    # valid: "the game is new <eos>"; "new" is not in the training split
    assert vocab.decode(corpus.valid) == f"the game is {vocab.unk}\n"
    assert corpus.valid.tolist()[3] == vocab.unk_id
    assert vocab.decode(corpus.train) == "= Valkyria =\n\nthe <unk> game is a game\n"
    assert Vocabulary.from_json(vocab.to_json()) == vocab


@pytest.mark.parametrize("length,columns", [(2, 1), (10, 3), (11, 5), (50, 16), (7, 100)])
def test_batchify_scores_every_token_after_the_first_exactly_once(length, columns):
    ids = torch.arange(length)
    inputs, targets = batchify(ids, columns)
    real = targets != PAD
    assert sorted(targets[real].tolist()) == list(range(1, length))
    assert torch.equal(inputs[real] + 1, targets[real])  # each input is its target's predecessor
    # padding only at the end of the last row
    assert real[:-1].all() and torch.equal(real[-1], real[-1].sort(descending=True).values)


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size(text_file):
    corpus = load_char_corpus(text_file)
    model = build_lm(tiny_config(text_file), len(corpus.vocab))
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    metrics = evaluate_lm(model, corpus.valid, columns=3, bptt=5, level="char")
    assert metrics["perplexity"] == pytest.approx(len(corpus.vocab), rel=1e-6)
    assert metrics["loss"] == pytest.approx(math.log(len(corpus.vocab)), rel=1e-6)
    assert metrics["bits_per_char"] == pytest.approx(math.log2(len(corpus.vocab)), rel=1e-6)


@pytest.mark.parametrize("kind", list(CORES))
def test_carrying_the_state_over_chunks_equals_one_pass(text_file, kind):
    corpus = load_char_corpus(text_file)
    model = build_lm(tiny_config(text_file, kind, dropout=0.2), len(corpus.vocab)).eval()
    tokens = corpus.train[:60].view(2, 30)
    whole, whole_state = model(tokens)
    pieces, state = [], None
    for chunk in tokens.split(7, dim=1):
        logits, state = model(chunk, state)
        pieces.append(logits)
        state = detach_state(state)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-5, atol=1e-5)
    for carried, direct in zip(state_parts(state), state_parts(whole_state), strict=True):
        torch.testing.assert_close(carried, direct, rtol=1e-5, atol=1e-5)
    one = evaluate_lm(model, corpus.valid, columns=2, bptt=1000, level="char")
    chunked = evaluate_lm(model, corpus.valid, columns=2, bptt=3, level="char")
    assert chunked["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_sampling_is_deterministic_under_a_seed(text_file):
    corpus = load_char_corpus(text_file)
    model = build_lm(tiny_config(text_file, "rmc"), len(corpus.vocab))
    first = generate(model, corpus.vocab, "Speak", 40, temperature=1.0, seed=3)
    assert first == generate(model, corpus.vocab, "Speak", 40, temperature=1.0, seed=3)
    assert len(first) == 40 and set(first) <= set(corpus.vocab.tokens)
    assert first != generate(model, corpus.vocab, "Speak", 40, temperature=1.0, seed=4)
    with pytest.raises(CorpusError, match="not in the model's vocabulary"):
        generate(model, corpus.vocab, "Zeus", 5)


def test_a_tiny_model_overfits_a_tiny_corpus(tmp_path, text_file):
    config = tiny_config(
        text_file,
        model=ModelConfig(kind="lstm", hidden_size=64, head_hidden=[]),
        embed_size=16,
        batch_size=4,
        bptt=32,
        steps=300,
        eval_every=300,
        log_every=50,
        checkpoint_every=300,
    )
    config.optim.lr = 1e-2
    run = LMRun.create(config, tmp_path / "run")
    summary = run.train(progress=False)
    train_loss = evaluate_lm(run.model, run.corpus.train, columns=1, bptt=64, level="char")
    assert train_loss["loss"] < 0.05, train_loss
    assert summary["status"] == "finished" and "test" in summary


@pytest.mark.parametrize(
    "name,message",
    [
        ("missing.txt", "does not exist"),
        ("empty.txt", "is empty"),
        ("blank.txt", "is empty"),
        ("latin1.txt", "is not UTF-8 text"),
        ("short.txt", "too short"),
        (".", "is a directory"),
    ],
)
def test_bad_character_corpora_give_clear_errors(tmp_path, name, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text(" \n\n")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "short.txt").write_text("to be or not")
    with pytest.raises(CorpusError, match=message):
        load_char_corpus(tmp_path / name)


def test_a_word_corpus_directory_needs_its_three_files(tmp_path, wikitext_dir):
    (wikitext_dir / "train.txt").unlink()
    with pytest.raises(CorpusError, match="has no train.txt"):
        load_word_corpus(wikitext_dir)
    with pytest.raises(CorpusError, match="is not a directory"):
        load_word_corpus(tmp_path / "nowhere")


@pytest.mark.parametrize("kind", list(CORES))
def test_an_interrupted_and_resumed_run_ends_bitwise_equal(tmp_path, text_file, kind):
    config = tiny_config(text_file, kind, dropout=0.1, steps=7, checkpoint_every=3)
    straight = LMRun.create(config, tmp_path / "straight")
    straight.train(progress=False)
    config.steps = 3  # stops at step 3 (mid-pass: the carried state is in the checkpoint)
    first = LMRun.create(config, tmp_path / "resumed")
    first.train(progress=False)
    resumed = LMRun.resume(tmp_path / "resumed", {"steps": 7})
    resumed.train(progress=False)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize("kind", list(CORES))
def test_bf16_precision_autocasts_the_training_forward_and_keeps_the_state_float32(
    text_file, tmp_path, kind
):
    config = tiny_config(text_file, kind)
    config.optim.precision = "bf16"
    run = LMRun.create(config, tmp_path / "run")
    dtypes = linear_output_dtypes(run.model)
    loss, _, taken = run.train_step()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert taken and math.isfinite(loss)
    assert all(part.dtype == torch.float32 for part in state_parts(run.state))
    dtypes.clear()
    run.evaluate()
    assert dtypes and set(dtypes) == {torch.float32}
