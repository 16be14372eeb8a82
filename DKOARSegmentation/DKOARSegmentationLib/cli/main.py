"""The ``dkoar`` command line: one parser, the subcommands of each ``*_commands`` module.

Errors a user can cause print one line on stderr and exit with code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import DKOARError
from . import (
    check_commands,
    export_commands,
    model_commands,
    monitoring_commands,
    node_commands,
    practice_commands,
    research_commands,
    segment_commands,
    station_commands,
)
from .options import OneLineErrors


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="dkoar", description="Contour the Danish head-and-neck organs at risk on a planning CT.")
    parser.add_argument("--version", action="version", version=f"dkoar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrors)
    for commands in (segment_commands, export_commands, monitoring_commands, model_commands, practice_commands,
                     research_commands, node_commands,
                     station_commands, check_commands):
        commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="dkoar: %(message)s")
    try:
        return args.func(args)
    except DKOARError as exc:
        print(f"dkoar: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dkoar: interrupted", file=sys.stderr)
        return 130
