"""The ``techshop`` command's arguments, in process: bad input gives one readable line and
exit status 2, never a traceback; ``--help`` of every subcommand works."""

from __future__ import annotations

import os
import time

import pytest

from streams.cli import build_parser, main

#: A port nothing listens on: anything that tried to connect would fail, not hang.
CLOSED = "127.0.0.1:1"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TECHSHOP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TECHSHOP_KAFKA_BOOTSTRAP_SERVERS", CLOSED)
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_URL", f"http://{CLOSED}")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)``'s exit status, stdout and stderr (argparse's exits included)."""
    started = time.monotonic()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    assert time.monotonic() - started < 5, f"techshop {' '.join(argv)} took too long"
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *mentions: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("techshop: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for text in mentions:
        assert text in errors[0], errors[0]


@pytest.mark.parametrize(
    "argv,mentions",
    [
        (["worker", "--pipelines", "nope"], ["--pipelines", "nope", "fraud,recommend,moderation"]),
        (["worker", "--pipelines", ","], ["--pipelines", "(none given)"]),
        (["worker", "--pipelines", "fraud,bogus"], ["bogus"]),
        (["consume", "no-such-topic"], ["unknown topic 'no-such-topic'", "transactions"]),
        (["consume", "no-such-topic", "--from-beginning", "--max", "1"], ["no-such-topic"]),
        (["produce", "no-such-topic"], ["unknown topic 'no-such-topic'"]),
        (["up", "--broker-port", "0"], ["TECHSHOP_BROKER_PORT"]),
        (["up", "--registry-port", "70000"], ["TECHSHOP_REGISTRY_PORT"]),
        (["generate", "--rate", "0"], ["--rate must be > 0"]),
    ],
)
def test_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], mentions: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, *mentions)


@pytest.mark.parametrize(
    "variable,value",
    [
        ("TECHSHOP_WEB_PORT", "abc"),
        ("TECHSHOP_TOPIC_PREFIX", "bad prefix!"),
    ],
)
@pytest.mark.parametrize(
    "argv", [["topics"], ["consume", "transactions"], ["worker", "--pipelines", "fraud"]]
)
def test_bad_setting(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    argv: list[str],
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_error_line(err, variable, repr(value))


@pytest.mark.parametrize(
    "argv,mentions",
    [
        ([], ["COMMAND"]),
        (["nope"], ["invalid choice", "'nope'"]),
        (["consume"], ["topic"]),
        (["consume", "transactions", "--max", "ten"], ["--max", "'ten'"]),
        (["worker", "--loglevel", "loud"], ["--loglevel", "'loud'"]),
        (["up", "--broker-port", "x"], ["--broker-port"]),
        (["generate", "--rate", "fast"], ["--rate"]),
    ],
)
def test_argparse_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], mentions: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("techshop") and ": error: " in last, err
    for text in mentions:
        assert text in last, last


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices is not None
    assert set(sub.choices) == {"up", "worker", "demo", "generate", "produce", "consume", "topics",
                                  "models", "train", "replay", "export", "backtest"}


@pytest.mark.parametrize(
    "argv,options",
    [
        ([], ["up", "worker", "demo", "produce", "consume", "--verbose", "TECHSHOP_"]),
        (["up"], ["--broker-port", "--registry-port", "--redis-port"]),
        (["worker"], ["--pipelines", "--loglevel", "fraud,recommend,moderation"]),
        (["demo"], ["--rate", "--seed", "--duration", "--max-events", "--no-worker"]),
        (["generate"], ["--rate", "--seed", "--duration", "--max-events"]),
        (["produce"], ["topic", "--file", "transactions"]),
        (["consume"], ["topic", "--from-beginning", "--max", "--timeout", "--meta"]),
        (["topics"], ["--create"]),
    ],
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], options: list[str]) -> None:
    code, out, err = run(capsys, *argv, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: techshop {' '.join(argv)}".rstrip())
    for option in options:
        assert option in out, option


def test_relative_times_start_with_a_dash() -> None:
    """`--from -2h` as the README writes it (argparse alone takes `-2h` for an option)."""
    from streams.cli import join_dash_values

    args = build_parser().parse_args(join_dash_values(
        ["backtest", "fraud", "--from", "-2h", "--to", "-15m"]))
    assert (args.start, args.end) == ("-2h", "-15m")
    args = build_parser().parse_args(join_dash_values(
        ["export", "transactions", "--from", "@0", "--out", "x.jsonl"]))
    assert args.start == "@0"
