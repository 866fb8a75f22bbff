"""Confirmation gates of destructive commands and password input."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from tapdb_core.commands._effects import had_effect
from tapdb_core.commands._target import Target
from tapdb_core.errors import RefusedError, UsageError


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    had_effect("read stdin")
    line = sys.stdin.readline()
    if not line:
        raise RefusedError("aborted: no answer (end of input)")
    return line.rstrip("\n")


def add_guard_options(parser: argparse.ArgumentParser, *, prod_name: bool = True) -> None:
    parser.add_argument(
        "-f",
        "--force",
        "--yes",
        "-y",
        dest="force",
        action="store_true",
        help="do not ask for confirmation (needed when not on a terminal)",
    )
    if prod_name:
        parser.add_argument(
            "--confirm-name",
            metavar="NAME",
            help="the database name, typed out (required for prod when not on a terminal)",
        )


def confirmer(
    args: argparse.Namespace,
    target: Target,
    *,
    prod_name: bool = True,
    confirm_flag: str = "--force",
    describe: bool = True,
) -> Callable[[str], None]:
    """The ``confirm(action)`` a destructive command calls: on a terminal the user
    answers y/N (skipped with ``--force``); elsewhere ``--force`` is required. For
    a protected environment (prod) the database name must also be typed or given
    with ``--confirm-name``: ``--force`` never skips that."""

    def confirm(action: str) -> None:
        what = action
        if describe:
            what += f" (environment {target.env}, database {target.database!r} on {target.where})"
        name = target.database if prod_name and target.protected else None
        gate(args, what, type_name=name, confirm_flag=confirm_flag)

    return confirm


def gate(
    args: argparse.Namespace,
    what: str,
    *,
    type_name: str | None = None,
    confirm_flag: str = "--force",
) -> None:
    """Confirmation for ``what``; with ``type_name`` the user must type that name."""
    interactive = stdin_is_tty()
    if type_name is not None:
        given = getattr(args, "confirm_name", None)
        if given is not None:
            if given != type_name:
                raise RefusedError(
                    f"refused to {what}: --confirm-name {given!r} is not the database name"
                )
            return
        if not interactive:
            raise RefusedError(
                f"refused to {what}: this environment needs the database name typed out; "
                f"not on a terminal, so pass --confirm-name {type_name}"
            )
        typed = _ask(f"{what}\nThis cannot be undone. Type the database name to confirm: ")
        if typed.strip() != type_name:
            raise RefusedError(
                f"aborted: {typed.strip()!r} is not {type_name!r}; nothing was changed"
            )
        return
    if getattr(args, "force", False):
        return
    if not interactive:
        raise RefusedError(f"refused to {what} without confirmation: pass {confirm_flag}")
    answer = _ask(f"{what}\nThis cannot be undone. Continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise RefusedError("aborted: not confirmed; nothing was changed")


def read_new_password(args: argparse.Namespace, who: str) -> str:
    """A password from stdin (``--password-stdin``) or a hidden prompt with confirmation."""
    had_effect("read a password")
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: stdin held no password (empty line)")
        return password
    if not stdin_is_tty():
        raise UsageError(
            "not on a terminal, so no password prompt: pipe the password with --password-stdin"
        )
    first = getpass.getpass(f"New password for {who}: ")
    if not first:
        raise UsageError("empty password refused")
    if first != getpass.getpass("Repeat the password: "):
        raise UsageError("the two passwords differ; nothing was changed")
    return first
