"""Arguments for ``pg_ctl``, which pastes them into a ``/bin/sh`` command line.

pg_ctl puts the data directory, the log path and its ``-o`` server options inside
double quotes on a ``/bin/sh`` command line. The options are shell-quoted here, and
paths holding characters that are special inside double quotes are refused.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Final

from tapdb_core.errors import PostgresRuntimeError

__all__ = ["refuse_shell_special", "server_options"]

_SHELL_SPECIAL: Final = re.compile(r'["$`\\\n]')  # special inside sh double quotes


def refuse_shell_special(path: Path) -> None:
    """Refuse a path pg_ctl's shell would interpret."""
    if _SHELL_SPECIAL.search(str(path)):
        raise PostgresRuntimeError(
            f'{path} contains one of " $ ` \\ or a newline, which pg_ctl would '
            "hand to the shell; use another directory"
        )


def _quote_conf_list_item(value: str) -> str:
    # unix_socket_directories is a list PostgreSQL parses itself: double quotes keep a
    # path with commas or spaces in one piece
    return '"' + value.replace('"', '""') + '"' if re.search(r'[\s,"]', value) else value


def server_options(port: int, host: str, socket_dir: Path, *, fast_unsafe: bool) -> str:
    """The server settings as one ``pg_ctl -o`` value, every ``-c`` shell-quoted."""
    settings = {"port": str(port), "listen_addresses": host}
    settings["unix_socket_directories"] = _quote_conf_list_item(str(socket_dir))
    if fast_unsafe:
        settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
    return " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items())
