"""What the command modules share: output, the environment of the command line,
and the retry of a command that lost a race (confirmations and passwords:
:mod:`tapdb_core.cli.prompts`).

The work itself is :mod:`tapdb_core.commands`. Data goes to stdout, progress to
stderr (only on a terminal), errors are one line on stderr (printed by
:mod:`tapdb_core.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
from sqlalchemy import Connection, Engine

from tapdb_core import config as tconfig
from tapdb_core.cli.prompts import add_guard_options as add_guard_options
from tapdb_core.cli.prompts import confirmer as confirmer
from tapdb_core.cli.prompts import gate as gate
from tapdb_core.cli.prompts import read_new_password as read_new_password
from tapdb_core.commands import _session
from tapdb_core.commands._connection_errors import (
    explain_connection_error as explain_connection_error,
)
from tapdb_core.commands._connection_errors import is_connection_error as is_connection_error
from tapdb_core.commands._effects import had_effect as had_effect
from tapdb_core.commands._engine import make_engine as make_engine
from tapdb_core.commands._environments import env_sections as env_sections
from tapdb_core.commands._messages import one_line as one_line
from tapdb_core.commands._target import PROTECTED_ENVS as PROTECTED_ENVS
from tapdb_core.commands._target import Target as Target
from tapdb_core.convert import to_json
from tapdb_core.errors import CommandError
from tapdb_core.errors import TapdbError as TapdbError
from tapdb_core.errors import UsageError as UsageError

CliError = CommandError  # the name cli/pg.py and cli/bootstrap.py raise


# --------------------------------------------------------------------------- output


def _json_default(value: object) -> object:
    return sorted(value, key=str) if isinstance(value, (set, frozenset)) else str(value)


def print_json(data: object, stream: TextIO | None = None) -> None:
    """``data`` (attrs values included, through tapdb_core's converter) as JSON."""
    had_effect("output")
    text = json.dumps(to_json(data), indent=2, default=_json_default, ensure_ascii=False)
    (stream or sys.stdout).write(text + "\n")


def out(line: str = "") -> None:
    """A line of data (stdout)."""
    had_effect("output")
    print(line, file=sys.stdout)


def warn(message: str) -> None:
    """A warning (stderr, always)."""
    print(f"tapdb: warning: {one_line(message)}", file=sys.stderr)


def note(message: str) -> None:
    """Extra information for a human (stderr, always)."""
    print(message, file=sys.stderr)


def progress(message: str) -> None:
    """A progress step: stderr, and only when stderr is a terminal."""
    if sys.stderr.isatty():
        print(f"... {message}", file=sys.stderr, flush=True)


def count_progress(label: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that redraws one line on a terminal."""

    def report(done: int, total: int) -> None:
        if sys.stderr.isatty():
            end = "\n" if done >= total else ""
            print(f"\r... {label} {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report


def as_dict(value: object) -> dict[str, Any]:
    """A JSON-ready dict of a result: its ``to_dict()``, else the converter's form."""
    to_dict = getattr(value, "to_dict", None)
    data = to_dict() if callable(to_dict) else to_json(value)
    return dict(data) if isinstance(data, Mapping) else {"result": str(value)}


# --------------------------------------------------------------------------- environments


def env_name(args: argparse.Namespace, positional: str | None = None) -> tuple[str, str]:
    """The environment to use and where the choice came from."""
    if positional:
        return positional, "argument"
    chosen = getattr(args, "active_env", None)
    if chosen:
        return chosen, "--env"
    if os.environ.get("TAPDB_ENV"):
        return os.environ["TAPDB_ENV"], "$TAPDB_ENV"
    return "dev", "default"


def resolve_config(
    args: argparse.Namespace, positional: str | None = None
) -> tconfig.DatabaseConfig:
    """Validate the environment name and resolve its settings."""
    name, source = env_name(args, positional)
    return _session.resolve_config(
        name,
        source=source,
        config=getattr(args, "config", None),
        database_name=getattr(args, "database_name", None),
    )


def target_of(cfg: tconfig.DatabaseConfig) -> Target:
    return _session.target_of(cfg, audit_as=_audit_as[0] if _audit_as else None)


def resolve_target(args: argparse.Namespace, positional: str | None = None) -> Target:
    target = target_of(resolve_config(args, positional))
    remember(target)
    return target


_last_target: list[Target] = []
_audit_as: list[str] = []


def remember(target: Target) -> None:
    """The target errors are explained against (``server at host:port ...``)."""
    _last_target[:] = [target]


def last_target() -> Target | None:
    return _last_target[0] if _last_target else None


def set_audit_as(user: str | None) -> None:
    """The ``--as USER`` of this command (None: not given)."""
    if user is not None and not user.strip():
        raise UsageError("--as needs a non-empty user name")
    _audit_as[:] = [user.strip()] if user is not None else []


def _acting(target: Target | None) -> Target | None:
    if target is not None and _audit_as and target.audit_as is None:
        return attrs.evolve(target, audit_as=_audit_as[0])
    return target


def actor_and_source(target: Target | None = None) -> tuple[str, str]:
    """Who the audit trail records and why (:func:`tapdb_core.commands.actor_and_source`)."""
    if target is None and _audit_as:
        return _audit_as[0], "--as"
    return _session.actor_and_source(_acting(target))


def actor(target: Target | None = None) -> str:
    return actor_and_source(target)[0]


# --------------------------------------------------------------------------- template packs

REPO_PACK_DIR = "config"
"""daylily-tapdb kept its template packs in ``./config/`` (beside its config files)."""


def repo_pack_files(directory: str | Path = REPO_PACK_DIR) -> list[Path]:
    """The pack files in ``./config/`` (``_*`` skipped as in every pack directory,
    and the CLI's own ``tapdb-config*`` files are not packs)."""
    from tapdb_core.packs.load import discover_pack_files

    root = Path(directory)
    if not root.is_dir():
        return []
    return [p for p in discover_pack_files([root]) if not p.name.startswith("tapdb-config")]


def pack_dirs(args: argparse.Namespace) -> tuple[list[Path], str]:
    """The packs a seed or validation reads and why: ``-c DIR`` when given, else the
    core packs plus the packs in ``./config/`` when it holds any."""
    from tapdb_core.packs import core_pack_dirs

    given = getattr(args, "config_dirs", None)
    if given:
        return [Path(d).expanduser() for d in given], "-c"
    extra = repo_pack_files()
    if extra:
        return [*core_pack_dirs(), *extra], f"core packs and ./{REPO_PACK_DIR}/"
    return core_pack_dirs(), "core packs"


# --------------------------------------------------------------------------- engines (cli/pg, bootstrap)


def open_engine(target: Target, *, need_schema: bool = True) -> Engine:
    """An engine on the target database, checked to answer (and to be migrated)."""
    engine = make_engine(target.url)
    try:
        with _session.connection_errors(target), engine.connect() as conn:
            if need_schema:
                _session.require_schema(conn, target)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def transaction(engine: Engine, target: Target) -> Iterator[Connection]:
    """A transaction on ``engine`` as :meth:`tapdb_core.commands.Session.begin` makes it."""
    acting = _acting(target)
    assert acting is not None
    with _session.Session(target=acting, engine=engine).begin() as conn:
        yield conn


# --------------------------------------------------------------------------- retries

CLI_RETRIES = 3


def run_command(run: Callable[[], int]) -> int:
    """``run()``, run again from the start when it fails with a retryable error
    (deadlock, serialization failure, lost connection ...), as long as it has
    not yet committed a write, read stdin or printed data. Afterwards the error
    is reported (it says to run the command again)."""
    from tapdb_core.db import retrying

    _session.forget_effects()

    def may_retry(exc: TapdbError) -> bool:
        if _session.has_effects():
            return False
        progress(f"{one_line(str(exc))}: running the command again")
        return True

    return retrying(run, retries=CLI_RETRIES, may_retry=may_retry)
