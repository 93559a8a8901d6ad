"""The ``techshop`` command.

Every command reads the ``TECHSHOP_*`` settings; a bad setting or argument prints one
readable line (``techshop: error: ...``) and exits with status 2, never a traceback.
This package is the only part of ``streams`` that imports the other packages
(``agents``, ``replay``), inside the commands that start them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from streams.errors import TechShopError

__all__ = ["main", "build_parser"]

EPILOG = """\
settings come from TECHSHOP_* environment variables (see the README); with no
TECHSHOP_KAFKA_BOOTSTRAP_SERVERS the embedded stack of `techshop up` is used.

examples:
  techshop up                                   # broker, registry, redis; prints a JSON line
  techshop worker --pipelines fraud             # a Faust worker for the fraud pipeline
  techshop produce transactions < txns.jsonl    # JSON lines in, Avro events out
  techshop consume fraud-decisions --max 10     # Avro events in, JSON lines out
  techshop demo                                 # everything, with traffic and a live summary
  techshop models promote fraud                 # the challenger becomes the champion
  techshop backtest fraud --from -2h --out rep  # last two hours through the same decide()
"""


def build_parser() -> argparse.ArgumentParser:
    from streams.cli import io_commands, replay_cmd, run_commands

    parser = argparse.ArgumentParser(
        prog="techshop", description="TechShop Streams: fraud, recommendation and "
        "image-moderation decisions on Kafka event streams.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_commands.add_commands(sub)
    io_commands.add_commands(sub)
    replay_cmd.add_commands(sub)
    return parser




#: options whose values may start with "-" (relative times: ``--from -2h``)
DASH_VALUE_OPTIONS = ("--from", "--to")


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--from -2h`` -> ``--from=-2h``: argparse would take ``-2h`` for an option.

    >>> join_dash_values(["backtest", "fraud", "--from", "-2h", "--to", "@5"])
    ['backtest', 'fraud', '--from=-2h', '--to', '@5']
    """
    out: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg in DASH_VALUE_OPTIONS:
            value = next(items, None)
            if value is not None and value.startswith("-") and value != "--":
                out.append(f"{arg}={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``techshop`` console script."""
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except TechShopError as exc:
        print(f"techshop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `techshop consume ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
