"""boto3 sessions and clients: region, profile and endpoint resolution, retried calls.

Region: the explicit value (``--region``), then the environment's config, then
``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, then the profile's region. There is no
built-in fallback region: without one the command stops and says where to set it.
Endpoint: an explicit ``endpoint_url``, else botocore's own ``$AWS_ENDPOINT_URL``
(and ``$AWS_ENDPOINT_URL_<SERVICE>``) handling, so the same commands run against a
local emulator such as moto's server.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs

from tapdb_core.errors import ConfigurationError, TapdbError

T = TypeVar("T")

#: error codes of AWS APIs that mean "slow down", retried with backoff
THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
DEFAULT_CALL_RETRIES: Final = 5


class AwsError(TapdbError):
    """An AWS call failed (exit code 1); the message names the operation and the code."""


class RegionMissingError(ConfigurationError):
    """No region anywhere (exit code 2)."""


def _require_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigurationError(
            'the Aurora commands need boto3: pip install "tapdb-core[aurora]"'
        ) from None
    return boto3


@attrs.frozen(kw_only=True)
class AwsTarget:
    """Where AWS calls go: a region (and where it came from), a profile, an endpoint."""

    region: str
    region_source: str
    profile: str | None = None
    endpoint_url: str | None = None


def resolve_region(
    explicit: str | None = None,
    configured: str | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    profile_region: Callable[[str | None], str | None] | None = None,
) -> tuple[str, str]:
    """(region, source): flag, config, ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, profile."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit, "--region"
    if configured:
        return configured, "config"
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(var):
            return env[var], f"${var}"
    lookup = profile_region or _profile_region
    found = lookup(profile or env.get("AWS_PROFILE") or None)
    if found:
        return found, f"profile {profile or env.get('AWS_PROFILE') or 'default'}"
    raise RegionMissingError(
        "no AWS region: pass --region, set region in the environment's config, "
        "set $AWS_REGION, or configure one for the profile (aws configure)"
    )


def _profile_region(profile: str | None) -> str | None:
    boto3 = _require_boto3()
    try:
        # AWS_DEFAULT_REGION was checked before; this reads the profile's own setting
        region: str | None = boto3.session.Session(profile_name=profile).region_name
    except Exception as exc:  # botocore ProfileNotFound and friends
        raise ConfigurationError(f"AWS profile {profile!r}: {exc}") from None
    return region


def aws_target(
    region: str | None = None,
    configured_region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> AwsTarget:
    chosen, source = resolve_region(region, configured_region, profile=profile)
    return AwsTarget(
        region=chosen,
        region_source=source,
        profile=profile or os.environ.get("AWS_PROFILE") or None,
        endpoint_url=endpoint_url or None,
    )


def client(target: AwsTarget, service: str) -> Any:
    """A boto3 client of ``service`` for ``target`` (standard retry mode)."""
    boto3 = _require_boto3()
    from botocore.config import Config

    try:
        session = boto3.session.Session(profile_name=target.profile, region_name=target.region)
    except Exception as exc:
        raise ConfigurationError(f"AWS profile {target.profile!r}: {exc}") from None
    kwargs: dict[str, Any] = {"config": Config(retries={"mode": "standard", "max_attempts": 5})}
    if target.endpoint_url:
        kwargs["endpoint_url"] = target.endpoint_url
    return session.client(service, **kwargs)


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        message = response.get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(exc)


def is_client_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return False
    return isinstance(exc, (ClientError, BotoCoreError))


def backoff(attempt: int) -> float:
    """Full jitter under a cap doubling from 1 s to 20 s."""
    return random.uniform(0.0, min(20.0, 2.0**attempt))  # noqa: S311 - not a secret


def call(
    what: str,
    fn: Callable[..., T],
    /,
    *,
    retries: int = DEFAULT_CALL_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
    pause: Callable[[int], float] = backoff,
    **kwargs: Any,
) -> T:
    """``fn(**kwargs)``, retried while AWS throttles; other failures become
    :class:`AwsError` naming ``what`` (botocore's own retries come first)."""
    attempt = 0
    while True:
        try:
            return fn(**kwargs)
        except Exception as exc:
            if not is_client_error(exc):
                raise
            code = error_code(exc)
            if code in THROTTLING_CODES and attempt < retries:
                sleep(pause(attempt))
                attempt += 1
                continue
            raise AwsError(
                f"{what} failed: {code or type(exc).__name__}: {error_message(exc)}"
            ) from exc
