"""``relational-rnn compare``: parameter matching, and the main job's claim (slow)."""

import re

import pytest

from relational_rnn import compare
from relational_rnn.cli import main
from relational_rnn.compare import DEFAULT_COMPARISON, count_for, matched_configs, parse_models
from relational_rnn.config import ConfigError


@pytest.mark.parametrize("models", [["lstm", "rmc"], ["rmc", "relational-rnn", "lstm"]])
def test_parameter_counts_are_matched_within_ten_percent(models):
    configs, how = matched_configs(DEFAULT_COMPARISON, models)
    counts = {m: count_for(c) for m, c in configs.items()}
    reference = counts["rmc"]
    assert all(abs(count / reference - 1) <= 0.10 for count in counts.values()), counts
    assert "rmc is the reference" in how and f"{reference:,}" in how


def test_relational_rnn_is_the_reference_without_an_rmc():
    _, how = matched_configs(DEFAULT_COMPARISON, ["lstm", "relational-rnn"])
    assert how.startswith("relational-rnn is the reference")


def test_unmatchable_sizes_are_an_error(monkeypatch):
    monkeypatch.setattr(compare, "MAX_HIDDEN", 8)
    with pytest.raises(ConfigError, match="lstm cannot match rmc's"):
        matched_configs(DEFAULT_COMPARISON, ["lstm", "rmc"])


def test_parse_models():
    assert parse_models(" lstm , rmc ") == ["lstm", "rmc"]
    with pytest.raises(ConfigError, match="twice"):
        parse_models("rmc,rmc")


@pytest.mark.slow
def test_default_comparison_rmc_beats_lstm_by_20_points(tmp_path, capsys):
    """The main job: `relational-rnn compare` with no arguments (about five minutes)."""
    assert main(["compare", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "compare.md").read_text()
    difference = float(re.search(r"rmc − lstm: ([+-][\d.]+) points", table).group(1))
    assert difference >= 20, table


def test_a_diverged_run_is_an_error_not_an_interruption(tmp_path, capsys, monkeypatch):
    def diverged(configs, runs, jobs, threads):
        return {key: {"status": "diverged"} for key in runs}

    monkeypatch.setattr(compare, "train_all", diverged)
    try:
        status = main(["compare", "--models", "lstm", "--seeds", "1", "--out", str(tmp_path)])
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err.splitlines()
    assert status == 2
    errors = [line for line in err if line.startswith("relational-rnn: error: ")]
    assert len(errors) == 1 and "lstm-seed0" in errors[0] and "--lr" in errors[0], err
    assert not any("Traceback" in line or "interrupted" in line for line in err)
