"""``relational-rnn train --task lm-char/lm-word``, ``eval`` of such a run and ``sample``."""

import json

import pytest
from helpers import assert_one_line_error, run_main

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 6
TINY = [
    "--model",
    "rmc",
    "--mem-slots",
    "2",
    "--slot-size",
    "8",
    "--num-heads",
    "2",
    "--embed-size",
    "8",
    "--batch-size",
    "2",
    "--bptt",
    "8",
    "--eval-every",
    "2",
    "--log-every",
    "1",
]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def run_dir(tmp_path, capsys, text_file):
    out = tmp_path / "run"
    argv = ["train", "--task", "lm-char", "--data", text_file, *TINY, "--steps", "4"]
    status, stdout, err = run_main(capsys, *argv, "--out", out)
    assert status == 0, err
    assert "bits_per_char" in stdout and "test loss" in stdout
    return out


def test_train_writes_a_run_with_its_vocabulary(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["format"] == "relational-rnn-lm-run" and config["level"] == "char"
    vocab = json.loads((run_dir / "vocab.json").read_text())
    assert "F" in vocab["tokens"] and vocab["level"] == "char"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 4
    assert set(summary["test"]) == {"loss", "perplexity", "bits_per_char"}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"baseline", "train", "eval"}


def test_resume_extends_a_language_model_run(run_dir, capsys):
    status, _, err = run_main(capsys, "train", "--resume", run_dir, "--steps", "6")
    assert status == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6


def test_sample_is_deterministic_under_a_seed(run_dir, capsys):
    argv = ["sample", run_dir, "--prompt", "Speak", "--length", "30", "--seed", "1"]
    status, first, err = run_main(capsys, *argv)
    assert status == 0, err
    assert first.startswith("Speak") and len(first) == len("Speak") + 30 + 1
    assert run_main(capsys, *argv)[1] == first


def test_eval_of_a_language_model_run_scores_its_whole_splits(run_dir, capsys):
    status, stdout, err = run_main(capsys, "eval", run_dir)
    assert status == 0, err
    result = json.loads((run_dir / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["step"] == summary["steps"]
    # The newest checkpoint holds the final weights, which the run scored at its end.
    assert result["valid"]["loss"] == pytest.approx(summary["final"]["loss"], rel=1e-6)
    assert result["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    assert result["baseline"]["loss"] > 0 and "bits_per_char" in result["test"]
    assert f"at step {summary['steps']}: validation loss" in stdout


def test_eval_refuses_data_that_changed_since_the_run(run_dir, capsys, text_file):
    text_file.write_text("Zounds!\n" + TEXT, encoding="utf-8")  # a new training character
    status, _, err = run_main(capsys, "eval", run_dir)
    assert_one_line_error(status, err, "has changed since the run started")


def test_word_level_training(tmp_path, capsys):
    data = tmp_path / "wiki"
    data.mkdir()
    for name in ("train", "valid", "test"):
        (data / f"{name}.txt").write_text(" = Title = \n\n the <unk> game is a game \n" * 3)
    out = tmp_path / "words"
    argv = ["train", "--task", "lm-word", "--data", data, *TINY, "--steps", "2", "--out", out]
    status, stdout, err = run_main(capsys, *argv)
    assert status == 0, err
    assert "bits_per_word" in stdout


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--task", "lm-char", "--data", "{tmp}/missing.txt"], "does not exist"),
        (["train", "--task", "lm-char", "--data", "{tmp}/empty.txt"], "is empty"),
        (["train", "--task", "lm-word", "--data", "{tmp}"], "has no train.txt"),
        (["train", "--task", "lm-char"], "needs --data"),
        (["train", "--task", "nth-farthest", "--data", "{tmp}/empty.txt"], "--data is for"),
        (["train", "--task", "lm-char", "--data", "{text}", "--eval-size", "5"], "--eval-size"),
        (["eval", "{run}", "--seed", "1"], "--seed does not apply to a language-model run"),
        (["eval", "{run}", "--size", "10"], "--size does not apply to a language-model run"),
        (["sample", "{run}", "--prompt", "Zeus"], "not in the model's vocabulary"),
        (["sample", "{run}", "--temperature", "0"], "temperature must be > 0"),
        (["sample", "{tmp}/nowhere"], "does not exist"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys, run_dir, text_file, argv, message):
    (tmp_path / "empty.txt").write_text("")
    names = {"tmp": tmp_path, "run": run_dir, "text": text_file}
    status, _, err = run_main(capsys, *(a.format(**names) for a in argv))
    assert_one_line_error(status, err, message)


def test_new_run_refuses_a_folder_with_leftover_checkpoints(tmp_path, capsys, text_file):
    out = tmp_path / "used"
    (out / "checkpoints").mkdir(parents=True)
    argv = ["train", "--task", "lm-char", "--data", text_file, *TINY, "--steps", "2"]
    status, _, err = run_main(capsys, *argv, "--out", out)
    assert_one_line_error(status, err, "checkpoints")
    assert not (out / "config.json").exists()


def test_new_run_keeps_an_old_metrics_file(tmp_path, capsys, text_file):
    out = tmp_path / "used"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"kind": "eval", "step": 0}\n')
    argv = ["train", "--task", "lm-char", "--data", text_file, *TINY, "--steps", "2"]
    status, _, err = run_main(capsys, *argv, "--out", out)
    assert_one_line_error(status, err, "metrics.jsonl")
    assert (out / "metrics.jsonl").read_text() == '{"kind": "eval", "step": 0}\n'


def test_checkpoint_that_does_not_fit_gives_one_line(run_dir, capsys):
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config["embed_size"] = 16
    path.write_text(json.dumps(config))
    status, _, err = run_main(capsys, "sample", run_dir, "--length", "5")
    assert_one_line_error(status, err, "does not fit")
    status, _, err = run_main(capsys, "train", "--resume", run_dir, "--steps", "6")
    assert_one_line_error(status, err, "does not fit")


def test_language_models_refuse_torchrun(tmp_path, capsys, text_file, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    argv = ["train", "--task", "lm-char", "--data", text_file, *TINY, "--steps", "2"]
    status, _, err = run_main(capsys, *argv, "--out", tmp_path / "run")
    assert_one_line_error(status, err, "run without torchrun")


def test_a_diverging_language_model_stops_with_one_line(tmp_path, capsys, text_file):
    out = tmp_path / "run"
    argv = ["train", "--task", "lm-char", "--data", text_file, *TINY, "--steps", "20"]
    extra = ["--lr", "1e30", "--clip-norm", "0", "--max-nonfinite-steps", "2", "--out", out]
    with pytest.warns(RuntimeWarning, match="non-finite"):
        status, _, err = run_main(capsys, *argv, *extra)
    lines = [line for line in err.splitlines() if line.startswith("relational-rnn: ")]
    assert status == 1, err
    assert len(lines) == 1 and "non-finite steps in a row" in lines[0], err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["skipped_steps"] >= 2
    assert summary["steps"] < 20
