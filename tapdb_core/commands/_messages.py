"""Messages of the command layer: one line each, warnings as TapdbWarning."""

from __future__ import annotations

import warnings

from tapdb_core.errors import TapdbWarning


def one_line(message: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    parts = [p.strip() for p in str(message).splitlines() if p.strip()]
    return " | ".join(parts)


def warn(message: str) -> None:
    warnings.warn(one_line(message), TapdbWarning, stacklevel=3)
