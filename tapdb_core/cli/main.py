"""Entry point of ``tapdb``: builds the parser, runs one command, maps errors to exit codes.

Exit codes: 0 success, 1 failure (also a refused or declined destructive
command), 2 usage or bad input. Errors are one line on stderr; ``--debug``
shows the traceback. Never a traceback otherwise, also for unexpected errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Final, TextIO

from tapdb_core._version import __version__
from tapdb_core.cli.parsing import (
    Command,
    add_global_options,
    command_path,
    fill_env,
    renamed_hint,
)

# The command modules (and with them SQLAlchemy and psycopg) are imported in
# build_parser and run, not here: ``tapdb --version`` answers without them.

EPILOG = """\
environments: db, pg and user commands take ENV (dev, test, prod or one defined in the
config file); without it they use the active environment, --env, else $TAPDB_ENV
(commands that delete need ENV written out). The other commands use --env, else
$TAPDB_ENV, else dev.
DATABASE_URL, when set, overrides every connection setting.
The audit trail records --as USER, else $TAPDB_AUDIT_USER, else audit_user of the
environment's config, else $USER.

examples:
  tapdb bootstrap local --demo     local PostgreSQL + database + schema + templates
  tapdb --env dev info             resolved settings and where each came from
  tapdb db schema status dev       revision, row counts, guarantee triggers
"""


def build_parser() -> argparse.ArgumentParser:
    from tapdb_core.cli import (
        aurora,
        bootstrap,
        db,
        info,
        objects,
        packs,
        pg,
        schema,
        templates,
        ui,
        users,
    )
    from tapdb_core.cli import data as data_cmds

    parser = argparse.ArgumentParser(
        prog="tapdb",
        description="tapdb_core: template-driven object store on PostgreSQL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tapdb {__version__}")
    add_global_options(parser, suppress=False)
    parser.add_argument(
        "--as",
        dest="audit_as",
        metavar="USER",
        default=None,
        help="who the audit trail records for this command "
        "(default: $TAPDB_AUDIT_USER, else audit_user of the environment's config, else $USER)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info.configure(sub)
    bootstrap.configure(sub)
    pg.configure(sub)
    db_sub = db.configure(sub)
    schema.configure(db_sub)
    data_cmds.configure(db_sub)
    packs.configure(db_sub)
    users.configure(sub)
    templates.configure(sub)
    objects.configure(sub)
    aurora.configure(sub)
    ui.configure(sub)  # tapdb ui and tapdb cognito
    return parser


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    from tapdb_core.cli.common import one_line

    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"tapdb: error: {one_line(message)}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, func: Command) -> int:
    import psycopg
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from tapdb_core.cli.common import (
        explain_connection_error,
        is_connection_error,
        last_target,
        run_command,
        set_audit_as,
    )
    from tapdb_core.dberrors import translate
    from tapdb_core.errors import TapdbError

    try:
        set_audit_as(getattr(args, "audit_as", None))
        return run_command(lambda: func(args))
    except TapdbError as exc:
        if is_connection_error(exc) and exc.__cause__ is not None:
            # a library-level "unreachable" that may really be "no such database"
            exc = explain_connection_error(exc, last_target())
        return _fail(args, str(exc), exc.exit_code)
    except (DBAPIError, psycopg.Error) as exc:
        if is_connection_error(exc):
            ours = explain_connection_error(exc, last_target())
            return _fail(args, str(ours), ours.exit_code)
        translated = translate(exc) if isinstance(exc, DBAPIError) else None
        if translated is not None:
            return _fail(args, str(translated), translated.exit_code)
        orig = getattr(exc, "orig", None) or exc
        return _fail(args, f"database error: {str(orig).strip()}", 1)
    except SQLAlchemyError as exc:
        return _fail(args, f"database error: {exc}", 1)
    except KeyboardInterrupt:
        print("tapdb: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(args, f"{exc.strerror or exc}{where}", 1)
    except Exception as exc:
        return _fail(
            args,
            f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback "
            "and please report it)",
            1,
        )


_show_other_warnings = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A command's :class:`TapdbWarning` as ``tapdb: warning: ...`` (every time)."""
    from tapdb_core.cli.common import one_line
    from tapdb_core.errors import TapdbWarning

    if issubclass(category, TapdbWarning):
        print(f"tapdb: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        _show_other_warnings(message, category, filename, lineno, file, line)


def _install_warning_display() -> None:
    from tapdb_core.errors import TapdbWarning

    warnings.showwarning = _show_warning
    warnings.simplefilter("always", TapdbWarning)


_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(environ: dict[str, str] | None = None) -> str | None:
    """``$TAPDB_LOG_LEVEL`` (DEBUG ... CRITICAL) for tapdb's loggers, on stderr;
    ``$ECHO_SQL`` (true/1/yes) adds SQLAlchemy's statement log. Returns a problem
    with the setting (shown as a warning), else None."""
    env = os.environ if environ is None else environ
    raw = env.get("TAPDB_LOG_LEVEL", "").strip().upper()
    echo = env.get("ECHO_SQL", "").strip().lower() in ("1", "true", "yes", "on")
    if not raw and not echo:
        return None
    problem = None
    if raw and raw not in _LOG_LEVELS:
        problem = f"TAPDB_LOG_LEVEL={raw!r} is not one of {', '.join(_LOG_LEVELS)}: ignored"
        raw = ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tapdb: %(levelname)s %(name)s: %(message)s"))
    if raw:
        tapdb_logger = logging.getLogger("tapdb_core")
        tapdb_logger.setLevel(raw)
        tapdb_logger.addHandler(handler)
    if echo:
        sql_logger = logging.getLogger("sqlalchemy.engine")
        sql_logger.setLevel(logging.INFO)
        sql_logger.addHandler(handler)
    return problem


def _asks_version(argv: Sequence[str]) -> bool:
    """``tapdb --version`` (before any command): answered without building the parser."""
    for token in argv:
        if token == "--version":  # noqa: S105 - an option, not a password
            return True
        if not token.startswith("-"):
            return False
    return False


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if _asks_version(arguments):
        print(f"tapdb {__version__}")
        return 0
    hint = renamed_hint(arguments)
    if hint:
        print(f"tapdb: error: {hint}", file=sys.stderr)
        return 2
    _install_warning_display()
    problem = configure_logging()
    if problem:
        print(f"tapdb: warning: {problem}", file=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(arguments)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    missing = fill_env(args)
    if missing:
        print(f"tapdb {' '.join(command_path(args))}: error: {missing}", file=sys.stderr)
        return 2
    return run(args, func)


if __name__ == "__main__":
    sys.exit(main())
