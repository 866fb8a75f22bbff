"""Parser helpers shared by the command modules."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any, Final

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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # each leaf its own actions (not shared parents): add_env_argument edits one
    add_global_options(parser, suppress=True)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(func=func)
    return parser


ENV_HELP: Final = (
    "environment: dev, test, prod or one defined in the config file "
    "(default: the active environment, --env ENV before or after the command, "
    "else $TAPDB_ENV)"
)
EXPLICIT_ENV: Final = frozenset(
    {
        ("db", "delete"),
        ("db", "schema", "reset"),
        ("db", "data", "restore"),
        ("user", "delete"),
        ("aurora", "delete"),
    }
)
"""Commands that delete: the environment must be written out, an active one is
not enough (a forgotten ``TAPDB_ENV=prod`` must not choose what is dropped)."""


def add_env_argument(parser: argparse.ArgumentParser) -> None:
    """The positional ENV; when left out :func:`fill_env` puts the active
    environment there. The leaf's own ``--env`` is then hidden from its help, so
    the help names one way to choose the environment."""
    parser.add_argument("env", metavar="ENV", nargs="?", default=None, help=ENV_HELP)
    parser.set_defaults(env_from_active=True)
    for action in parser._actions:  # argparse has no public way
        if "--env" in action.option_strings:
            action.help = argparse.SUPPRESS


def command_path(args: argparse.Namespace) -> list[str]:
    """The words of the command that was parsed (``["db", "schema", "status"]``)."""
    path: list[str] = []
    word = getattr(args, "command", None)
    while isinstance(word, str):
        path.append(word)
        word = getattr(args, f"{word}_command", None)
    return path


def active_env() -> tuple[str, str] | None:
    """The active environment and where it came from, if one is set."""
    value = os.environ.get("TAPDB_ENV", "").strip()
    return (value, "$TAPDB_ENV") if value else None


def fill_env(args: argparse.Namespace) -> str | None:
    """Put the active environment (``--env``, else ``$TAPDB_ENV``) in the place of a
    left-out positional ENV. Returns the usage error when there is none (or the
    command deletes and needs ENV written out), else None."""
    if not getattr(args, "env_from_active", False) or getattr(args, "env", None):
        return None
    path = tuple(command_path(args))
    if path in EXPLICIT_ENV:
        return (
            f"ENV is required: `tapdb {' '.join(path)}` deletes, so name the environment "
            "(the active one from --env or $TAPDB_ENV is not used for it)"
        )
    chosen = getattr(args, "active_env", None)
    if chosen:
        args.env = chosen
        return None
    found = active_env()
    if found:
        args.env = found[0]
        return None
    return (
        "the following arguments are required: ENV "
        "(or set the active environment: --env ENV or $TAPDB_ENV)"
    )


RENAMED: Final = {
    ("pg", "create"): "tapdb db create ENV",
    ("pg", "delete"): "tapdb db delete ENV",
    ("db", "status"): "tapdb db schema status ENV",
    ("db", "nuke"): "tapdb db schema reset ENV",
    ("db", "migrate"): "tapdb db schema migrate ENV",
    ("db", "seed"): "tapdb db data seed ENV",
    ("db", "backup"): "tapdb db data backup ENV",
    ("db", "restore"): "tapdb db data restore ENV -i FILE",
    ("db", "validate-config"): "tapdb db config validate",
}
"""Commands of earlier daylily-tapdb versions (its README lists them as removed)
and what replaced them: hidden commands that only name the new one."""


_VALUED_GLOBALS: Final = frozenset({"--env", "--config", "--database-name", "--as"})


def renamed_hint(argv: Sequence[str]) -> str | None:
    """The one-line hint for a command that was renamed (``tapdb db seed dev ...``),
    else None. Looked up before parsing, so the old command's options never turn
    the hint into "unrecognized arguments"."""
    words: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _VALUED_GLOBALS:
            skip = True
        elif not token.startswith("-"):
            words.append(token)
            if len(words) == 2:
                break
        elif token in ("-h", "--help") and len(words) < 2:
            return None
    new = RENAMED.get((words[0], words[1])) if len(words) == 2 else None
    if new is None:
        return None
    return f"`tapdb {words[0]} {words[1]}` is now `{new}` (see tapdb {words[0]} --help)"
