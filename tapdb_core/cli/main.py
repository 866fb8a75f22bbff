"""Entry point of ``tapdb``: builds the parser, runs one command, maps errors to exit codes.

Exit codes: 0 success, 1 failure, 2 usage or bad input. Errors are one line on
stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from tapdb_core._version import __version__
from tapdb_core.errors import TapdbError

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tapdb",
        description="tapdb_core: template-driven object store on PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"tapdb {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"tapdb {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except TapdbError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"tapdb: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tapdb: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
