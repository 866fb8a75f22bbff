"""Aurora PostgreSQL on AWS: the CloudFormation stack we own, stack operations over
boto3, and connections that log in with a fresh IAM token (or a Secrets Manager
password) per new DBAPI connection. Needs the ``aurora`` extra (boto3)."""

from tapdb_core.aurora.connection import (
    AuroraSettings,
    IamTokenProvider,
    SecretPasswordProvider,
    load_settings,
    make_engine,
    open_database,
)
from tapdb_core.aurora.template import StackParameters, literal, render, standin

__all__ = [
    "AuroraSettings",
    "IamTokenProvider",
    "SecretPasswordProvider",
    "StackParameters",
    "literal",
    "load_settings",
    "make_engine",
    "open_database",
    "render",
    "standin",
]
