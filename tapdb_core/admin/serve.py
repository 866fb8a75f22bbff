"""``python -m tapdb_core.admin.serve``: the process ``tapdb ui start`` runs.

The database URL arrives in ``TAPDB_ADMIN_DATABASE_URL`` (never on the command
line, where ``ps`` would show its password); the other settings in the
``TAPDB_*`` variables :func:`~tapdb_core.admin.settings.settings_from_env` reads.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tapdb_core.admin.app import create_app
from tapdb_core.admin.settings import settings_from_env
from tapdb_core.errors import TapdbError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tapdb-admin-serve")
    parser.add_argument("--env", default="dev")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args(argv)
    url = os.environ.get("TAPDB_ADMIN_DATABASE_URL")
    if not url:
        print("tapdb ui: TAPDB_ADMIN_DATABASE_URL is not set", file=sys.stderr)
        return 2
    import uvicorn

    try:
        app = create_app(settings_from_env(url, args.env))
    except TapdbError as exc:
        print(f"tapdb ui: error: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        log_level="info",
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
