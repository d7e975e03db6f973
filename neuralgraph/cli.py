"""The ``neuralgraph`` command line.

Subcommands live in their own modules; each exposes ``add_parser(subparsers)``
which registers a parser whose ``func`` default runs the command and returns an
exit code.  Add a module name to :data:`COMMAND_MODULES` to plug one in.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules providing ``add_parser(subparsers)``, in ``--help`` order.
COMMAND_MODULES = (
    "neuralgraph.cli_demo",
    "neuralgraph.cli_info",
    "neuralgraph.cli_wann",
    "neuralgraph.cli_meta",
    "neuralgraph.cli_zoo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuralgraph",
        description="Neural networks as graphs: convert, grow with local rules, learn from weights.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from neuralgraph import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
