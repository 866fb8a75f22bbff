"""The admin web UI (optional extra ``admin``): ``create_app(settings)``."""

from __future__ import annotations

from tapdb_core.admin.app import create_app
from tapdb_core.admin.auth import AdminUser
from tapdb_core.admin.settings import AdminSettings, CognitoSettings, settings_from_env

__all__ = ["AdminSettings", "AdminUser", "CognitoSettings", "create_app", "settings_from_env"]
