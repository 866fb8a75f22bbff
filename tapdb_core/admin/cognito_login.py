"""Cognito login mode: boto3 ``cognito-idp`` directly (ADMIN_USER_PASSWORD_AUTH),
the NEW_PASSWORD_REQUIRED challenge, password change, and provisioning of a
``tapdb_user`` (role ``user``) at the first successful login."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tapdb_core import users
from tapdb_core.admin.auth import AdminUser, start_session
from tapdb_core.admin.security import CSRF_FIELD, csrf_ok, csrf_token, safe_next
from tapdb_core.errors import ConfigurationError, NotFoundError

if TYPE_CHECKING:
    from tapdb_core.admin.app import AdminState

FAILED_LOGIN = frozenset({"NotAuthorizedException", "UserNotFoundException"})


def client(state: AdminState) -> Any:
    if state.cognito is None:
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - depends on the extras
            raise ConfigurationError(
                "Cognito login needs boto3 (pip install 'tapdb-core[admin,aurora]')"
            ) from exc
        cfg = state.settings.cognito
        assert cfg is not None  # settings.check() guarantees it in cognito mode
        state.cognito = boto3.client(
            "cognito-idp", region_name=cfg.region, endpoint_url=cfg.endpoint_url
        )
    return state.cognito


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def provision(conn: Connection, email: str) -> str:
    """The tapdb_user for a Cognito login (created with role ``user`` the first time)."""
    try:
        user = users.get_user(conn, email)
    except NotFoundError:
        user = users.create_user(conn, email, role="user", email=email)
    return user.euid


def authenticate(state: AdminState, username: str, password: str) -> dict[str, Any]:
    cfg = state.settings.cognito
    assert cfg is not None
    result: dict[str, Any] = client(state).admin_initiate_auth(
        UserPoolId=cfg.user_pool_id,
        ClientId=cfg.app_client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return result


async def _finish(
    request: Request, state: AdminState, username: str, tokens: dict[str, Any], nxt: str
) -> Response:
    euid = await state.run(lambda conn: provision(conn, username), username)
    start_session(request, euid, "cognito")
    request.session["cat"] = tokens.get("AccessToken", "")
    return RedirectResponse(_prefix(request) + nxt, status_code=303)


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


async def login(
    request: Request,
    state: AdminState,
    username: str,
    password: str,
    nxt: str,
    keys: tuple[str, str],
    again: Callable[[str, int], Response],
) -> Response:
    from botocore.exceptions import ClientError
    from starlette.concurrency import run_in_threadpool

    try:
        result = await run_in_threadpool(authenticate, state, username, password)
    except ClientError as exc:
        code = _error_code(exc)
        if code in FAILED_LOGIN:
            state.throttle.failed(*keys)
            return again("Wrong email or password.", 401)
        if code == "TooManyRequestsException":
            return again("The login service is busy: try again shortly.", 503)
        return again(f"Login failed ({code or 'Cognito error'}).", 502)
    state.throttle.succeeded(keys[0])
    if result.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
        request.session["challenge"] = {"u": username, "s": result.get("Session", ""), "n": nxt}
        from tapdb_core.admin.app import render

        return render(
            request,
            "new_password.html",
            user=None,
            error=None,
            login_csrf=csrf_token(request.session),
        )
    if "AuthenticationResult" not in result:
        return again(f"Unsupported login challenge {result.get('ChallengeName')}.", 502)
    return await _finish(request, state, username, result["AuthenticationResult"], nxt)


async def new_password(request: Request) -> Response:
    """Answer NEW_PASSWORD_REQUIRED with the new password, then log in."""
    from botocore.exceptions import ClientError
    from starlette.concurrency import run_in_threadpool

    from tapdb_core.admin.app import _error, _form, _state, render

    state = _state(request)
    form = await _form(request)
    if not csrf_ok(request.session, form.get(CSRF_FIELD)):
        return _error(request, None, 403, "missing or wrong CSRF token")
    challenge = request.session.get("challenge")
    if not isinstance(challenge, dict) or state.settings.cognito is None:
        return RedirectResponse(_prefix(request) + "/login", status_code=303)
    new, confirm = form.get("new_password", ""), form.get("confirm_password", "")

    def again(message: str) -> Response:
        return render(
            request,
            "new_password.html",
            status=400,
            user=None,
            error=message,
            login_csrf=csrf_token(request.session),
        )

    if len(new) < 8 or new != confirm:
        return again("The new password needs 8 characters or more, typed the same twice.")
    cfg = state.settings.cognito
    try:
        result = await run_in_threadpool(
            lambda: client(state).admin_respond_to_auth_challenge(
                UserPoolId=cfg.user_pool_id,
                ClientId=cfg.app_client_id,
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=challenge["s"],
                ChallengeResponses={"USERNAME": challenge["u"], "NEW_PASSWORD": new},
            )
        )
    except ClientError as exc:
        return again(f"Cognito refused the new password ({_error_code(exc)}).")
    if "AuthenticationResult" not in result:
        return again("Cognito asked for another challenge, which this UI does not support.")
    return await _finish(
        request,
        state,
        str(challenge["u"]),
        result["AuthenticationResult"],
        safe_next(str(challenge["n"])),
    )


async def change_password(
    request: Request, state: AdminState, user: AdminUser, form: dict[str, str]
) -> Response:
    from botocore.exceptions import ClientError
    from starlette.concurrency import run_in_threadpool

    from tapdb_core.admin.app import render

    token = request.session.get("cat", "")
    try:
        await run_in_threadpool(
            lambda: client(state).change_password(
                PreviousPassword=form.get("old_password", ""),
                ProposedPassword=form.get("new_password", ""),
                AccessToken=token,
            )
        )
    except ClientError as exc:
        return render(
            request,
            "change_password.html",
            status=400,
            user=user,
            error=f"Cognito refused the change ({_error_code(exc)}).",
        )
    return RedirectResponse(_prefix(request) + "/", status_code=303)
