"""The ``swirl`` command line: one subcommand per pipeline stage, each in ``swirl/commands/``.

Every command module defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``,
and imports heavy libraries (torch, transformers) only inside ``run`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# subcommand -> module in swirl.commands (the order is the order of --help)
COMMANDS: dict[str, str] = {
    "validate": "validate",
    "decompose": "decompose",
    "data": "data",
    "index": "index",
    "generate": "generate",
    "judge": "judge",
    "filter": "filter",
    "eval": "evaluate",
    "train": "train",
    "iterate": "iterate",
    "run": "run",
    "study": "study",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swirl",
        description="Step-wise RL for multi-step reasoning and tool use (SWiRL).",
    )
    from swirl import __version__

    parser.add_argument("--version", action="version", version=f"swirl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"swirl.commands.{module_name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swirl`` script. Bad input exits 2 with a one-line message naming it
    (set ``SWIRL_TRACEBACK=1`` for the full traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: every finished record is on disk; rerun to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        if os.environ.get("SWIRL_TRACEBACK"):
            raise
        print(f"swirl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
