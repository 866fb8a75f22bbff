"""Entry point of ``tapdb``: builds the parser, runs one command, maps errors to exit codes.

Exit codes: 0 success, 1 failure (also a refused or declined destructive
command), 2 usage or bad input. Errors are one line on stderr; ``--debug``
shows the traceback. Never a traceback otherwise, also for unexpected errors.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import TextIO

import psycopg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tapdb_core._version import __version__
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
from tapdb_core.cli.common import (
    explain_connection_error,
    is_connection_error,
    last_target,
    one_line,
    run_command,
    set_audit_as,
)
from tapdb_core.cli.parsing import Command, add_global_options
from tapdb_core.dberrors import translate
from tapdb_core.errors import TapdbError, TapdbWarning

EPILOG = """\
environments: db, pg and user commands take ENV (dev, test, prod or one defined in the
config file); the other commands use --env, else $TAPDB_ENV, else dev.
DATABASE_URL, when set, overrides every connection setting.
The audit trail records --as USER, else $TAPDB_AUDIT_USER, else audit_user of the
environment's config, else $USER.

examples:
  tapdb bootstrap local --demo     local PostgreSQL + database + schema + templates
  tapdb --env dev info             resolved settings and where each came from
  tapdb db schema status dev       revision, row counts, guarantee triggers
"""


def build_parser() -> argparse.ArgumentParser:
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
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"tapdb: error: {one_line(message)}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, func: Command) -> int:
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
    if issubclass(category, TapdbWarning):
        print(f"tapdb: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        _show_other_warnings(message, category, filename, lineno, file, line)


def _install_warning_display() -> None:
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", TapdbWarning)


def main(argv: Sequence[str] | None = None) -> int:
    _install_warning_display()
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return run(args, func)


if __name__ == "__main__":
    sys.exit(main())
