"""Who runs the command, for the audit trail."""

from __future__ import annotations

import getpass
import os

from tapdb_core.commands._target import Target
from tapdb_core.errors import UsageError


def actor_and_source(target: Target | None = None) -> tuple[str, str]:
    """Who the audit trail records and why: ``audit_as`` (``--as``), then
    ``$TAPDB_AUDIT_USER``, then ``audit_user`` of the environment's config, then
    the OS user. The one place that answers "who am I"."""
    if target is not None and target.audit_as is not None:
        if not target.audit_as.strip():
            raise UsageError("--as needs a non-empty user name")
        return target.audit_as.strip(), "--as"
    from_env = os.environ.get("TAPDB_AUDIT_USER", "").strip()
    if from_env:
        return from_env, "$TAPDB_AUDIT_USER"
    if target is not None and target.audit_user.strip():
        return target.audit_user.strip(), f"audit_user of environment {target.env}"
    try:
        return os.environ.get("USER") or getpass.getuser(), "$USER"
    except (KeyError, OSError):
        return "tapdb-cli", "default"


def actor(target: Target | None = None) -> str:
    """Who runs the command, for the audit trail."""
    return actor_and_source(target)[0]
