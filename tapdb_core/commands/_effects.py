"""What the running command has done that running it again would repeat.

A command that failed with a retryable error may be run again from the start
(the CLI does) only while it has done nothing a rerun would repeat."""

from __future__ import annotations

_effect: list[str] = []


def had_effect(what: str) -> None:
    """Record something the running command did that running it again would repeat."""
    if not _effect:
        _effect.append(what)


def forget_effects() -> None:
    _effect.clear()


def has_effects() -> bool:
    return bool(_effect)
