from __future__ import annotations

import subprocess
import sys

from tapdb_core import __version__


def test_module_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapdb_core", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"tapdb {__version__}"


def test_no_command_is_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapdb_core"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "usage: tapdb" in done.stdout
