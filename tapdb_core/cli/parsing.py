"""Parser helpers shared by the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Command = Callable[[argparse.Namespace], int]
Subparsers = Any  # argparse._SubParsersAction is private


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options accepted before the command and (``suppress``) after it too.

    After the command they default to SUPPRESS so that they never overwrite a value
    given before the command.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--env",
        dest="active_env",
        metavar="ENV",
        default=default(None),
        help="active environment (default: $TAPDB_ENV, else dev)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default(None),
        help="config file to use instead of the search path ($TAPDB_CONFIG_PATH ...)",
    )
    parser.add_argument(
        "--database-name",
        metavar="NAME",
        default=default(None),
        help="use the scoped config file tapdb-config-NAME.yaml ($TAPDB_DATABASE_NAME)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show the traceback of an error",
    )


_GLOBALS = argparse.ArgumentParser(add_help=False)
add_global_options(_GLOBALS, suppress=True)


def group(sub: Subparsers, name: str, help_text: str) -> Subparsers:
    """A command group (``db``, ``pg`` ...) and its own subcommands."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    inner = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return inner


def leaf(
    sub: Subparsers,
    name: str,
    help_text: str,
    func: Command,
    *,
    json_flag: bool = True,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        parents=[_GLOBALS],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(func=func)
    return parser


def add_env_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "env",
        metavar="ENV",
        help="environment: dev, test, prod or one defined in the config file",
    )
