"""`techshop replay|export|backtest` arguments, in process and without a broker: help
works, bad input is one readable line with status 2 before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli_args import assert_one_error_line, clean_env, run

__all__ = ["clean_env"]  # the autouse fixture: no TECHSHOP_* of the caller, a closed broker


@pytest.mark.parametrize("argv, options", [
    (["replay"], ["--to-prefix", "--from", "--to", "--speed", "@OFFSET"]),
    (["export"], ["--out", "--from", "--to", ".avro"]),
    (["backtest"], ["fraud", "recommend", "moderation"]),
    (["backtest", "fraud"], ["--file", "--model", "--thresholds", "--labels", "--published",
                             "--no-compare", "--label-window", "routing", "--cost-review"]),
    (["backtest", "recommend"], ["--file", "--catalog", "--model", "heuristic", "--k"]),
    (["backtest", "moderation"], ["--file", "--reviews", "--model", "--audit-rate"]),
])
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], options: list[str]) -> None:
    code, out, err = run(capsys, *argv, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: techshop {' '.join(argv)}")
    for option in options:
        assert option in out, option


@pytest.mark.parametrize("argv, mentions", [
    (["backtest", "fraud", "--from", "yesterday"], ["bad time", "yesterday"]),
    (["backtest", "fraud", "--to", "@-3"], ["bad offset"]),
    (["backtest", "fraud", "--thresholds", "0.9,0.1"], ["thresholds", "0.9,0.1"]),
    (["backtest", "fraud", "--model", "fraud_gbdt@1:0.5"], ["thresholds"]),
    (["backtest", "fraud", "--model", "@3"], ["bad model"]),
    (["backtest", "fraud", "--batch-size", "0"], ["--batch-size"]),
    (["backtest", "recommend", "--k", "0"], ["--k"]),
    (["backtest", "moderation", "--audit-rate", "2"], ["--audit-rate"]),
    (["replay", "transactions", "--to-prefix", "p.", "--speed", "0"], ["--speed"]),
    (["replay", "transactions", "--to-prefix", "bad prefix!"], ["prefix"]),
    (["export", "transactions", "--out", "x.jsonl", "--from", "2026-13-45"], ["bad time"]),
])
def test_bad_arguments_are_one_line_before_connecting(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        argv: list[str], mentions: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv, "--quiet") if argv[0] != "export" else run(
        capsys, *argv)
    assert code == 2, (out, err)
    assert_one_error_line(err, *mentions)


def test_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHSHOP_DATA_DIR", str(tmp_path))
    code, _, err = run(capsys, "backtest", "fraud", "--model", "rules", "--quiet", "--file",
                       str(tmp_path / "nope.jsonl"), "--labels", str(tmp_path / "l.jsonl"))
    assert code == 2
    assert_one_error_line(err, "no such file", "nope.jsonl")
