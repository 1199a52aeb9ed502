"""The relational-rnn command: help, the subcommands' files, and one-line errors."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_main

from relational_rnn.cli import make_parser

TINY = [
    "--task",
    "nth-farthest",
    "--task-option",
    "num_vectors=3",
    "--task-option",
    "dims=2",
    "--mem-slots",
    "2",
    "--slot-size",
    "8",
    "--num-heads",
    "2",
    "--hidden-size",
    "8",
    "--head-hidden",
    "8",
    "--batch-size",
    "8",
    "--eval-size",
    "40",
    "--eval-every",
    "2",
    "--log-every",
    "1",
]
SUBCOMMANDS = ["train", "eval", "compare", "plot", "attention", "sample"]


def trained(tmp_path, capsys, *extra, name="run"):
    out = tmp_path / name
    status, _, err = run_main(capsys, "train", *TINY, "--steps", "4", "--out", out, *extra)
    assert status == 0, err
    return out


@pytest.mark.parametrize("command", [[], *([c] for c in SUBCOMMANDS)])
def test_help_works_and_documents_every_flag(capsys, command):
    status, out, _ = run_main(capsys, *command, "--help")
    assert status == 0 and "usage: relational-rnn" in out
    flags = [word for word in out.split() if word.startswith("--")]
    assert "--help" in flags


def test_every_subcommand_argument_has_help():
    parser = make_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(SUBCOMMANDS) <= set(subparsers.choices)
    for name, subparser in [("relational-rnn", parser), *subparsers.choices.items()]:
        for action in subparser._actions:
            label = "/".join(action.option_strings) or action.dest
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"{name} {label} has no help"
            assert action.help != argparse.SUPPRESS, f"{name} {label} is hidden"


def test_console_script_and_module_run():
    for command in (["relational-rnn"], [sys.executable, "-m", "relational_rnn"]):
        script = Path(sys.executable).parent / command[0]
        if command[0] == "relational-rnn":
            command = [str(script)]
        result = subprocess.run([*command, "train", "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "--time-budget" in result.stdout


def test_train_eval_plot_attention_write_their_files(tmp_path, capsys):
    run = trained(tmp_path, capsys, "--config", write(tmp_path, {"optim": {"lr": 0.01}}))
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == 0.01
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json"}

    status, out, _ = run_main(capsys, "eval", run, "--size", "30", "--seed", "2")
    assert status == 0 and "test set (seed 2, 30 examples)" in out
    result = json.loads((run / "eval.json").read_text())
    assert result["size"] == 30 and 0 <= result["metrics"]["accuracy"] <= 1

    status, out, _ = run_main(capsys, "plot", run)
    assert status == 0 and (run / "curves.png").stat().st_size > 1000

    status, out, _ = run_main(capsys, "attention", run, "--steps", "0,2")
    assert status == 0
    for name in ("attention.png", "memory.png"):
        assert (run / "attention" / name).stat().st_size > 1000


@pytest.mark.parametrize("memory", ["rmc", "gated_slot"])
def test_attention_of_a_relational_rnn(tmp_path, capsys, memory):
    run = trained(tmp_path, capsys, "--model", "relational-rnn", "--memory", memory)
    status, _, err = run_main(capsys, "attention", run, "--out", tmp_path / "maps")
    assert status == 0, err
    assert (tmp_path / "maps" / "attention.png").exists()


def test_resume_continues_a_run(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    status, out, _ = run_main(capsys, "train", "--resume", run, "--steps", "6")
    assert status == 0 and "finished at step 6" in out


def test_precision_flag_is_kept_through_resume(tmp_path, capsys):
    run = trained(tmp_path, capsys, "--precision", "bf16")
    assert json.loads((run / "config.json").read_text())["optim"]["precision"] == "bf16"
    status, _, err = run_main(capsys, "train", "--resume", run, "--precision", "fp32")
    assert_one_line_error(status, err, "cannot change optim")
    status, out, _ = run_main(capsys, "train", "--resume", run, "--steps", "6")
    assert status == 0 and "finished at step 6" in out
    assert json.loads((run / "config.json").read_text())["optim"]["precision"] == "bf16"


def test_time_budget_alone_lifts_the_step_limit(tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = run_main(capsys, "train", *TINY, "--time-budget", "0.3", "--out", out)
    assert status == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] is None and config["time_budget"] == 0.3


def test_compare_writes_a_table_and_curves(tmp_path, capsys):
    argv = ["compare", *TINY, "--steps", "2", "--seeds", "2", "--jobs", "1"]
    argv += ["--models", "lstm,rmc,relational-rnn", "--out", tmp_path / "cmp"]
    status, out, err = run_main(capsys, *argv)
    assert status == 0, err
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert out.strip() == table.strip()
    for model in ("lstm", "rmc", "relational-rnn"):
        assert f"| {model} |" in table
        for seed in (0, 1):
            assert (tmp_path / "cmp" / f"{model}-seed{seed}" / "summary.json").exists()
    assert "rmc is the reference" in table and "majority-class baseline" in table
    assert "bfloat16" not in table
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    status, again, _ = run_main(capsys, *argv)  # finished runs are reused
    assert status == 0 and again.split("| model")[1] == out.split("| model")[1]


def test_compare_says_when_it_trained_in_bf16(tmp_path, capsys):
    argv = ["compare", *TINY, "--steps", "2", "--seeds", "1", "--models", "rmc"]
    status, _, err = run_main(capsys, *argv, "--precision", "bf16", "--out", tmp_path / "cmp")
    assert status == 0, err
    assert "bfloat16 autocast" in (tmp_path / "cmp" / "compare.md").read_text()
    config = json.loads((tmp_path / "cmp" / "rmc-seed0" / "config.json").read_text())
    assert config["optim"]["precision"] == "bf16"


def test_compare_runs_in_parallel_processes(tmp_path, capsys):
    argv = ["compare", *TINY, "--steps", "2", "--seeds", "1", "--jobs", "2"]
    status, out, err = run_main(capsys, *argv, "--out", tmp_path / "cmp")
    assert status == 0, err
    assert "| lstm |" in out and "| rmc |" in out
    assert "lstm seed 0: finished" in err and "rmc seed 0: finished" in err


def write(tmp_path, content, name="config.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def foreign_run(tmp_path):
    (tmp_path / "foreign").mkdir()
    write(tmp_path / "foreign", {"lr": 1})
    return tmp_path / "foreign"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--task", "chess"], "task must be one of"),
        (["train", "--model", "gru"], "model must be one of"),
        (["train", "--hidden-size", "0"], "hidden_size must be >= 1"),
        (["train", "--batch-size", "-3"], "batch_size must be >= 1"),
        (["train", "--steps", "0"], "steps must be >= 1"),
        (["train", "--lr", "0"], "lr must be > 0"),
        (["train", "--lr", "inf"], "lr must be > 0 and finite"),
        (["train", "--lr", "nan"], "lr must be > 0 and finite"),
        (["train", "--clip-norm", "nan"], "clip_norm must be >= 0"),
        (["train", "--weight-decay", "inf"], "weight_decay must be >= 0"),
        (["train", "--precision", "fp16"], "precision must be one of 'fp32', 'bf16'"),
        (["train", "--slot-size", "30", "--num-heads", "4"], "divisible by num_heads"),
        (["train", "--task-option", "dims=0"], "dims must be >= 1"),
        (["train", "--task-option", "depth=3"], "no option 'depth'"),
        (["train", "--task-option", "dims"], "KEY=VALUE"),
        (["train", "--hidden-size", "big"], "invalid int value"),
        (["train", "--config", "{tmp}/missing.json"], "does not exist"),
        (["train", "--config", "{tmp}/bad.json"], "is not valid JSON"),
        (["train", "--config", "{tmp}/unknown.json"], "unknown key 'learning_rate'"),
        (["train", "--resume", "{tmp}/nowhere"], "does not exist"),
        (["train", "--resume", "{tmp}/foreign"], "not a relational-rnn run config"),
        (["eval", "{tmp}/empty"], "not a run directory"),
        (["eval", "{tmp}/foreign"], "not a relational-rnn run config"),
        (["plot", "{tmp}/nowhere"], "does not exist"),
        (["attention", "{tmp}/empty"], "not a run directory"),
        (["compare", "--models", "lstm,transformer"], "unknown model 'transformer'"),
        (["compare", "--seeds", "0"], "--seeds must be >= 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    write(tmp_path, "{not json", "bad.json")
    write(tmp_path, {"optim": {"learning_rate": 1}}, "unknown.json")
    foreign_run(tmp_path)
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    status, out, err = (
        run_main(capsys, *argv, "--out", tmp_path / "out")
        if argv[0] == "train" and "--resume" not in argv
        else run_main(capsys, *argv)
    )
    assert_one_line_error(status, err, message)
    assert not (tmp_path / "out").exists()


def test_eval_of_a_run_without_checkpoints(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    status, _, err = run_main(capsys, "eval", run)
    assert status == 2 and "no loadable checkpoint" in err


def test_attention_of_an_lstm_is_an_error(tmp_path, capsys):
    run = trained(tmp_path, capsys, "--model", "lstm")
    status, _, err = run_main(capsys, "attention", run)
    assert status == 2 and "no memory to show" in err


def test_corrupt_run_config_is_an_error(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    (run / "config.json").write_text('{"format": "relational-rnn-run", "batch_size": "x"}')
    status, _, err = run_main(capsys, "eval", run)
    assert status == 2 and "batch_size must be of type int" in err


def test_errors_from_the_installed_command_have_no_traceback(tmp_path):
    script = Path(sys.executable).parent / "relational-rnn"
    result = subprocess.run(
        [str(script), "train", "--slot-size", "30", "--num-heads", "4", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("relational-rnn: error: model")
    assert "Traceback" not in result.stderr


def test_eval_out_into_a_missing_folder_is_one_line(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    status, _, err = run_main(capsys, "eval", run, "--size", "10", "--out", tmp_path / "no/e.json")
    assert status == 2 and err.startswith("relational-rnn: error: cannot write")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_attention_with_an_empty_step_list_is_one_line(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    status, _, err = run_main(capsys, "attention", run, "--steps", "")
    assert status == 2 and "--steps lists no time step" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_resume_to_no_more_steps_is_refused(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    for steps in ("4", "2"):
        status, _, err = run_main(capsys, "train", "--resume", run, "--steps", steps)
        assert status == 2 and "already at step 4" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
