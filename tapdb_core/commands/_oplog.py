"""The operations log: one line per destructive or database operation."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from tapdb_core.commands._actor import actor
from tapdb_core.commands._messages import one_line
from tapdb_core.commands._target import Target


def oplog(target: Target, operation: str, details: str = "") -> None:
    """One line per destructive or database operation in ~/.config/tapdb/operations.log."""
    path = Path(os.environ.get("TAPDB_OPLOG") or "~/.config/tapdb/operations.log").expanduser()
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    line = (
        f"{stamp} | {actor(target)} | {target.env} | {operation} | {target.masked_url()} {details}"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(one_line(line) + "\n")
    except OSError as exc:
        print(
            f"tapdb: warning: could not write the operations log {path}: {exc.strerror}",
            file=sys.stderr,
        )
