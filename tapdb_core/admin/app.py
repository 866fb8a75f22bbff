"""The admin web UI: ``create_app(settings)`` builds a Starlette application.

Every route but ``/healthz``, ``/readyz``, ``/login`` and the static files needs a
logged-in user; every route that changes something needs role ``admin`` and the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
Pages and their JSON twins (``/api/...``) share one function per view.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import attrs
import jinja2
from sqlalchemy import Connection, create_engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tapdb_core import audit, instances, lineage, migrate, templates, users
from tapdb_core import euid as euids
from tapdb_core.actions import ActionDispatcher
from tapdb_core.admin import forms, queries
from tapdb_core.admin.auth import ROLES, AdminUser, UserProvider, session_user, start_session
from tapdb_core.admin.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    LoginThrottle,
    RevokedSessions,
    SecurityHeaders,
    csrf_ok,
    csrf_token,
    safe_next,
)
from tapdb_core.admin.settings import AdminSettings
from tapdb_core.config import normalise_url
from tapdb_core.db import Database
from tapdb_core.errors import (
    ConflictError,
    CycleError,
    NotFoundError,
    TapdbError,
    ValidationError,
)
from tapdb_core.values import Instance, Template

HERE = Path(__file__).parent
RELATIONSHIP_TYPES = (
    "contains",
    "derived_from",
    "references",
    "depends_on",
    "produces",
    "consumes",
    "generic",
)
T = TypeVar("T")
Handler = Callable[[Request, AdminUser], Awaitable[Response]]


class Forbidden(Exception):
    """Raised inside a view: answer 403."""


@attrs.define
class AdminState:
    settings: AdminSettings
    db: Database
    env: jinja2.Environment
    throttle: LoginThrottle
    revoked: RevokedSessions
    user_provider: UserProvider | None
    dispatcher: ActionDispatcher
    cognito: Any = None

    async def run(self, fn: Callable[[Connection], T], user: str | None = None) -> T:
        """``fn(conn)`` in one transaction on the pooled engine, off the event loop."""

        def work() -> T:
            with self.db.begin(user) as conn:
                return fn(conn)

        return await run_in_threadpool(work)


def _state(request: Request) -> AdminState:
    state: AdminState = request.app.state.admin
    return state


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _url(request: Request, path: str, **params: Any) -> str:
    query = {k: v for k, v in params.items() if v not in (None, "")}
    return _prefix(request) + path + (("?" + urlencode(query)) if query else "")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(_prefix(request) + "/api/")


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    state = _state(request)
    user = context.get("user")
    html = state.env.get_template(name).render(
        request=request,
        url=functools.partial(_url, request),
        static=lambda p: _prefix(request) + "/static/" + p,
        csrf=csrf_token(request.session) if user is not None else "",
        settings=state.settings,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def _error(request: Request, user: AdminUser | None, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return render(
        request, "error.html", status=status, user=user, status_code=status, message=message
    )


def _status_for(exc: TapdbError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (ConflictError, CycleError)):
        return 409
    if isinstance(exc, ValidationError) or exc.exit_code == 2:
        return 400
    return 500


# -- guards --------------------------------------------------------------------------


async def current_user(request: Request) -> AdminUser | None:
    state = _state(request)
    if state.user_provider is not None:
        return state.user_provider(request)
    if "uid" not in request.session:
        return None
    session = dict(request.session)
    return await state.run(
        lambda conn: session_user(
            conn, session, state.settings.session_max_age, state.revoked.is_revoked
        )
    )


def guarded(
    *, admin: bool = False, mutating: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Login (redirect or 401), then role (403), then CSRF (403) for changes."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            user = await current_user(request)
            if user is None:
                if _wants_json(request):
                    return JSONResponse({"error": "login required"}, status_code=401)
                here = request.url.path[len(_prefix(request)) :] or "/"
                if request.url.query:
                    here += "?" + request.url.query
                return RedirectResponse(_url(request, "/login", next=here), status_code=303)
            if (
                user.must_change_password
                and request.url.path != _prefix(request) + "/change-password"
                and not _wants_json(request)
            ):
                return RedirectResponse(_url(request, "/change-password"), status_code=303)
            if (admin or mutating) and not user.is_admin:
                return _error(request, user, 403, "this needs the admin role")
            if mutating and _state(request).user_provider is None:
                presented = request.headers.get(CSRF_HEADER)
                if presented is None and request.headers.get("content-type", "").startswith(
                    ("application/x-www-form-urlencoded", "multipart/form-data")
                ):
                    form = await request.form()
                    value = form.get(CSRF_FIELD)
                    presented = value if isinstance(value, str) else None
                if not csrf_ok(request.session, presented):
                    return _error(request, user, 403, "missing or wrong CSRF token")
            try:
                return await handler(request, user)
            except Forbidden as exc:
                return _error(request, user, 403, str(exc) or "forbidden")
            except TapdbError as exc:
                return _error(request, user, _status_for(exc), str(exc))

        return endpoint

    return wrap


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer") from None
    return max(lo, min(hi, value))


# -- serialisation ---------------------------------------------------------------------


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def instance_json(i: Instance) -> dict[str, Any]:
    return {
        "euid": i.euid,
        "name": i.name,
        "template": i.template_code,
        "category": i.category,
        "type": i.type,
        "subtype": i.subtype,
        "version": i.version,
        "bstatus": i.bstatus,
        "is_deleted": i.is_deleted,
        "properties": i.properties,
        "created_dt": _iso(i.created_dt),
        "modified_dt": _iso(i.modified_dt),
    }


def template_json(t: Template, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "euid": t.euid,
        "name": t.name,
        "code": t.template_code,
        "category": t.category,
        "type": t.type,
        "subtype": t.subtype,
        "version": t.version,
        "instance_prefix": t.instance_prefix,
    }
    if full:
        out["json_addl"] = t.json_addl
        out["json_addl_schema"] = t.json_addl_schema
    return out


def audit_json(entries: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "euid": a.euid,
            "when": _iso(a.changed_at),
            "who": a.changed_by,
            "operation": a.operation_type,
            "column": a.column_name,
            "old": a.old_value,
            "new": a.new_value,
        }
        for a in entries
    ]


# -- health --------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)

    def check() -> bool:
        with state.db.engine.connect() as conn:
            current = migrate.current_revision(conn)
        return current == migrate.head_revision()

    try:
        ready = await run_in_threadpool(check)
    except Exception:  # any failure means "not ready"; say nothing more
        ready = False
    return JSONResponse(
        {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
    )


# -- login / logout --------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def login_page(request: Request) -> Response:
    if await current_user(request) is not None:
        return RedirectResponse(
            _url(request, safe_next(request.query_params.get("next"))), status_code=303
        )
    return render(
        request,
        "login.html",
        user=None,
        next=safe_next(request.query_params.get("next")),
        error=None,
        login_csrf=_login_csrf(request),
    )


def _login_csrf(request: Request) -> str:
    # the anonymous session gets a token too: a login form posted from another
    # site (login CSRF) is refused
    return csrf_token(request.session)


async def login_submit(request: Request) -> Response:
    state = _state(request)
    form = await _form(request)
    nxt = safe_next(form.get("next"))
    if not csrf_ok(request.session, form.get(CSRF_FIELD)):
        return _error(request, None, 403, "missing or wrong CSRF token")
    username = form.get("username", "").strip()
    password = form.get("password", "")
    keys = (f"user:{username.lower()}", f"addr:{_client(request)}")

    def again(message: str, status: int) -> Response:
        return render(
            request,
            "login.html",
            status=status,
            user=None,
            next=nxt,
            error=message,
            login_csrf=_login_csrf(request),
            username=username,
        )

    wait = state.throttle.wait_for(*keys)
    if wait > 0:
        return again(f"Too many failed logins: try again in {int(wait) + 1} s.", 429)
    if not username or not password:
        return again("Enter a user name and a password.", 400)
    if state.settings.auth_mode == "cognito":
        from tapdb_core.admin import cognito_login

        return await cognito_login.login(request, state, username, password, nxt, keys, again)

    def check(conn: Connection) -> str | None:
        try:
            ok = users.verify_password(conn, username, password)
        except ValidationError:
            return None
        return users.get_user(conn, username).euid if ok else None

    user_euid = await state.run(check)
    if user_euid is None:
        state.throttle.failed(*keys)
        return again("Wrong user name or password.", 401)
    state.throttle.succeeded(keys[0])
    await state.run(lambda conn: _touch_login(conn, user_euid))
    start_session(request, user_euid, "local")
    return RedirectResponse(_url(request, nxt), status_code=303)


def _touch_login(conn: Connection, user_euid: str) -> None:
    conn.execute(
        text("UPDATE tapdb_user SET last_login_dt = now() WHERE euid = :e"), {"e": user_euid}
    )


async def logout(request: Request) -> Response:
    # POST only; a cross-site form cannot log someone out without the token
    form = await _form(request)
    if not csrf_ok(request.session, form.get(CSRF_FIELD)):
        return _error(request, None, 403, "missing or wrong CSRF token")
    sid = request.session.get("sid")
    if isinstance(sid, str):
        _state(request).revoked.revoke(sid)
    request.session.clear()
    return RedirectResponse(_url(request, "/login"), status_code=303)


@guarded()
async def change_password_page(request: Request, user: AdminUser) -> Response:
    return render(request, "change_password.html", user=user, error=None)


@guarded()
async def change_password_submit(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    form = await _form(request)
    if not csrf_ok(request.session, form.get(CSRF_FIELD)):
        return _error(request, user, 403, "missing or wrong CSRF token")
    new, again = form.get("new_password", ""), form.get("confirm_password", "")
    if len(new) < 8 or new != again:
        return render(
            request,
            "change_password.html",
            status=400,
            user=user,
            error="The new password needs 8 characters or more, typed the same twice.",
        )
    if state.settings.auth_mode == "cognito":
        from tapdb_core.admin import cognito_login

        return await cognito_login.change_password(request, state, user, form)

    def change(conn: Connection) -> bool:
        if not users.verify_password(conn, user.euid, form.get("old_password", "")):
            return False
        users.set_password(conn, user.euid, new)
        return True

    if not await state.run(change, user.username):
        return render(
            request,
            "change_password.html",
            status=400,
            user=user,
            error="The old password is wrong.",
        )
    start_session(request, user.euid, "local")
    return RedirectResponse(_url(request, "/"), status_code=303)


async def _new_password(request: Request) -> Response:
    from tapdb_core.admin import cognito_login

    return await cognito_login.new_password(request)


# -- dashboard and search --------------------------------------------------------------


@guarded()
async def dashboard(request: Request, user: AdminUser) -> Response:
    state = _state(request)

    def load(conn: Connection) -> dict[str, Any]:
        return {
            "counts": queries.estimated_counts(conn),
            "recent": queries.recent_changes(conn),
        }

    data = await state.run(load)
    if _wants_json(request):
        return JSONResponse(
            {
                "counts_are_estimates": True,
                "counts": data["counts"],
                "recent": [
                    {**row, "object": a.rel_table_euid_fk}
                    for row, a in zip(audit_json(data["recent"]), data["recent"], strict=True)
                ],
            }
        )
    return render(request, "dashboard.html", user=user, **data)


@guarded()
async def search(request: Request, user: AdminUser) -> Response:
    q = request.query_params.get("q", "")
    result = await _state(request).run(lambda conn: queries.search(conn, q))
    if _wants_json(request):
        return JSONResponse(
            {
                "exact": result.exact,
                "instances": [instance_json(i) for i in result.instances],
                "templates": [template_json(t) for t in result.templates],
            }
        )
    if result.exact:
        return RedirectResponse(_url(request, "/object/" + quote(result.exact)), status_code=303)
    return render(request, "search.html", user=user, q=q, result=result)


# -- templates -------------------------------------------------------------------------


@guarded()
async def template_list(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    category = request.query_params.get("category") or None
    type_ = request.query_params.get("type") or None
    after = _int_param(request, "after", None, 0, 2**63 - 1)

    def load(conn: Connection) -> tuple[queries.Page, list[str]]:
        page = queries.template_page(
            conn, category=category, type=type_, after=after, limit=state.settings.page_size
        )
        return page, queries.template_categories(conn)

    page, categories = await state.run(load)
    if _wants_json(request):
        return JSONResponse(
            {"items": [template_json(t) for t in page.items], "next_after": page.next_after}
        )
    return render(
        request,
        "templates.html",
        user=user,
        page=page,
        categories=categories,
        category=category,
        type=type_,
    )


def _template(conn: Connection, euid: str) -> Template:
    return templates.get_template_by_euid(conn, euid)


@guarded()
async def template_detail(request: Request, user: AdminUser) -> Response:
    euid = request.path_params["euid"]
    template = await _state(request).run(lambda conn: _template(conn, euid))
    if _wants_json(request):
        return JSONResponse(template_json(template, full=True))
    return _template_page(request, user, template)


def _template_page(
    request: Request,
    user: AdminUser,
    template: Template,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    message: str | None = None,
) -> Response:
    return render(
        request,
        "template.html",
        status=status,
        user=user,
        t=template,
        fields=forms.fields_for(template),
        layouts=template.json_addl.get("instantiation_layouts") or [],
        json_addl=json.dumps(template.json_addl, indent=2, sort_keys=True),
        schema=json.dumps(template.json_addl_schema, indent=2, sort_keys=True)
        if template.json_addl_schema
        else None,
        errors=errors or {},
        values=values or {},
        message=message,
        relationship_types=RELATIONSHIP_TYPES,
    )


def _euid_list(raw: Any) -> list[str]:
    if isinstance(raw, list):
        items = [str(x) for x in raw]
    else:
        items = str(raw or "").replace(",", " ").split()
    return [x.strip().upper() for x in items if x.strip()]


def _create(
    conn: Connection,
    template: Template,
    name: str,
    props: Mapping[str, Any],
    create_children: bool,
    parents: list[str],
    children: list[str],
    relationship_type: str,
) -> Instance:
    """Create and link in one transaction: any failure leaves nothing behind."""
    for ref in parents + children:
        euids.validate(ref)
    created = instances.create(
        conn, template.template_code, name, props, create_children=create_children
    )
    for parent in parents:
        lineage.link(conn, parent, created.euid, relationship_type)
    for child in children:
        lineage.link(conn, created.euid, child, relationship_type)
    return created


def _field_errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in exc.violations:
        parts = [p for p in v.path.split("/") if p]
        key = (
            parts[1]
            if len(parts) >= 2 and parts[0] == "properties"
            else (parts[-1] if parts else "")
        )
        out[key or "_"] = v.message
    return out


@guarded(mutating=True)
async def template_create_form(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    euid = request.path_params["euid"]
    template = await state.run(lambda conn: _template(conn, euid))
    form = await _form(request)
    props, errors = forms.parse_form(template, form)
    name = form.get("name", "").strip()
    if not name:
        errors["name"] = "required"
    rel = form.get("relationship_type", "generic")
    if rel not in RELATIONSHIP_TYPES:
        errors["relationship_type"] = "unknown relationship type"
    if errors:
        return _template_page(
            request, user, template, 400, errors, form, "Fix the fields marked below."
        )
    try:
        created = await state.run(
            lambda conn: _create(
                conn,
                template,
                name,
                props,
                form.get("create_children") == "on",
                _euid_list(form.get("parents")),
                _euid_list(form.get("children")),
                rel,
            ),
            user.username,
        )
    except ValidationError as exc:
        return _template_page(
            request, user, template, 400, _field_errors(exc), form, f"Nothing was created: {exc}"
        )
    except TapdbError as exc:
        return _template_page(
            request, user, template, _status_for(exc), {}, form, f"Nothing was created: {exc}"
        )
    return RedirectResponse(_url(request, "/object/" + quote(created.euid)), status_code=303)


@guarded(mutating=True)
async def api_create_instance(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    euid = request.path_params["euid"]
    body = await _json_body(request)
    template = await state.run(lambda conn: _template(conn, euid))
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("name is required")
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise ValidationError("properties must be an object")
    rel = str(body.get("relationship_type") or "generic")
    created = await state.run(
        lambda conn: _create(
            conn,
            template,
            name.strip(),
            props,
            bool(body.get("create_children", True)),
            _euid_list(body.get("parents")),
            _euid_list(body.get("children")),
            rel,
        ),
        user.username,
    )
    return JSONResponse(instance_json(created), status_code=201)


# -- instances -------------------------------------------------------------------------


def _instance_filter(request: Request) -> queries.InstanceFilter:
    qp = request.query_params
    props: dict[str, Any] | None = None
    raw = qp.get("property", "").strip()
    if raw:
        if raw.startswith("{"):
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                raise ValidationError("property must be key=value or a JSON object") from None
            if not isinstance(parsed, dict):
                raise ValidationError("property must be key=value or a JSON object")
            props = parsed
        elif "=" in raw:
            key, _, value = raw.partition("=")
            props = {key.strip(): value.strip()}
        else:
            raise ValidationError("property must be key=value or a JSON object")
    return queries.InstanceFilter(
        template_code=qp.get("template") or None,
        bstatus=qp.get("status") or None,
        name=qp.get("name") or None,
        properties=props,
    )


@guarded()
async def instance_list(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    flt = _instance_filter(request)
    after = _int_param(request, "after", None, 0, 2**63 - 1)
    page = await state.run(
        lambda conn: queries.instance_page(conn, flt, after=after, limit=state.settings.page_size)
    )
    if _wants_json(request):
        return JSONResponse(
            {"items": [instance_json(i) for i in page.items], "next_after": page.next_after}
        )
    return render(
        request, "instances.html", user=user, page=page, flt=flt, qp=dict(request.query_params)
    )


# -- object page -----------------------------------------------------------------------


def _load_object(conn: Connection, euid: str) -> dict[str, Any]:
    kind = queries.find_object_kind(conn, euid)
    if kind is None:
        raise NotFoundError(f"no object {euid}")
    if kind == "template":
        return {"kind": kind, "template": templates.get_template_by_euid(conn, euid)}
    if kind == "lineage":
        edge = conn.execute(
            text("SELECT * FROM generic_instance_lineage WHERE euid = :e"), {"e": euid}
        ).one()
        ends = {
            r.uuid: r
            for r in conn.execute(
                text("SELECT uuid, euid, name FROM generic_instance WHERE uuid IN (:p, :c)"),
                {"p": edge.parent_instance_uuid, "c": edge.child_instance_uuid},
            )
        }
        return {
            "kind": kind,
            "edge": edge,
            "parent": ends.get(edge.parent_instance_uuid),
            "child": ends.get(edge.child_instance_uuid),
            "history": audit.history(conn, euid, limit=500),
        }
    inst = instances.get(conn, euid, include_deleted=True)
    parents, more_parents = queries.neighbours(conn, inst, "parents")
    children, more_children = queries.neighbours(conn, inst, "children")
    return {
        "kind": kind,
        "instance": inst,
        "parents": parents,
        "children": children,
        "more_parents": more_parents,
        "more_children": more_children,
        "history": audit.history(conn, euid, limit=500),
        "actions": _actions_of(inst),
    }


def _actions_of(inst: Instance) -> list[dict[str, Any]]:
    groups = inst.json_addl.get("action_groups")
    out: list[dict[str, Any]] = []
    if not isinstance(groups, dict):
        return out
    for group, actions in groups.items():
        if not isinstance(actions, dict):
            continue
        for key, spec in actions.items():
            spec = spec if isinstance(spec, dict) else {}
            fields = spec.get("required_fields") or []
            out.append(
                {
                    "group": str(group),
                    "key": str(key),
                    "title": str(spec.get("action_name") or key),
                    "fields": [str(f) for f in fields] if isinstance(fields, list) else [],
                }
            )
    return out


@guarded()
async def object_page(request: Request, user: AdminUser) -> Response:
    euid = request.path_params["euid"].strip().upper()
    data = await _state(request).run(lambda conn: _load_object(conn, euid))
    if data["kind"] == "template" and not _wants_json(request):
        return RedirectResponse(_url(request, "/templates/" + quote(euid)), status_code=303)
    if _wants_json(request):
        return JSONResponse(_object_json(data))
    return render(
        request,
        "object.html",
        user=user,
        relationship_types=RELATIONSHIP_TYPES,
        pretty=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str),
        short=lambda v: json.dumps(v, sort_keys=True, default=str)[:300],
        **data,
    )


def _object_json(data: Mapping[str, Any]) -> dict[str, Any]:
    kind = data["kind"]
    if kind == "template":
        return {"kind": kind, **template_json(data["template"], full=True)}
    if kind == "lineage":
        e = data["edge"]
        return {
            "kind": kind,
            "euid": e.euid,
            "relationship_type": e.relationship_type,
            "parent": data["parent"].euid if data["parent"] else None,
            "child": data["child"].euid if data["child"] else None,
            "is_deleted": e.is_deleted,
            "history": audit_json(data["history"]),
        }
    return {
        "kind": kind,
        **instance_json(data["instance"]),
        "json_addl": data["instance"].json_addl,
        "parents": [
            {
                "euid": n.instance.euid,
                "name": n.instance.name,
                "relationship": n.edge.relationship_type,
                "edge": n.edge.euid,
            }
            for n in data["parents"]
        ],
        "children": [
            {
                "euid": n.instance.euid,
                "name": n.instance.name,
                "relationship": n.edge.relationship_type,
                "edge": n.edge.euid,
            }
            for n in data["children"]
        ],
        "more_parents": data["more_parents"],
        "more_children": data["more_children"],
        "history": audit_json(data["history"]),
        "actions": data["actions"],
    }


def _back(request: Request, euid: str) -> Response:
    return RedirectResponse(_url(request, "/object/" + quote(euid)), status_code=303)


def _soft_delete(conn: Connection, euid: str) -> list[str]:
    if euid.startswith("GN-") or "-GN-" in euid:
        return lineage.unlink(conn, euid=euid)
    return instances.delete(conn, euid)


def _link(conn: Connection, parent: str, child: str, rel: str) -> str:
    if rel not in RELATIONSHIP_TYPES:
        raise ValidationError(f"unknown relationship type {rel!r}")
    return lineage.link(conn, parent.strip().upper(), child.strip().upper(), rel).euid


def _run_action(
    dispatcher: ActionDispatcher,
    conn: Connection,
    euid: str,
    group: str,
    key: str,
    captured: dict[str, Any],
    user: str,
) -> dict[str, Any]:
    return dispatcher.execute_action(conn, euid, group, key, captured_data=captured, user=user)


@guarded(mutating=True)
async def object_post(request: Request, user: AdminUser) -> Response:
    """Form actions on an object page: status, delete, link, action."""
    state = _state(request)
    euid = request.path_params["euid"].strip().upper()
    op = request.path_params["op"]
    form = await _form(request)
    if op == "status":
        status = form.get("status", "")
        await state.run(lambda conn: instances.set_status(conn, euid, status), user.username)
    elif op == "delete":
        await state.run(lambda conn: _soft_delete(conn, euid), user.username)
    elif op == "link":
        other = form.get("other", "")
        rel = form.get("relationship_type", "generic")
        parent, child = (euid, other) if form.get("direction") == "child" else (other, euid)
        await state.run(lambda conn: _link(conn, parent, child, rel), user.username)
    elif op == "action":
        captured = {k[6:]: v for k, v in form.items() if k.startswith("field_")}
        result = await state.run(
            lambda conn: _run_action(
                state.dispatcher,
                conn,
                euid,
                form.get("group", ""),
                form.get("key", ""),
                captured,
                user.username,
            ),
            user.username,
        )
        if result.get("status") == "error":
            raise ValidationError(f"action failed: {result.get('message')}")
    else:
        return _error(request, user, 404, "no such operation")
    return _back(request, euid)


@guarded(mutating=True)
async def api_object_post(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    euid = request.path_params["euid"].strip().upper()
    op = request.path_params["op"]
    body = await _json_body(request) if op != "delete" else {}
    if op == "status":
        inst = await state.run(
            lambda conn: instances.set_status(conn, euid, str(body.get("status", ""))),
            user.username,
        )
        return JSONResponse(instance_json(inst))
    if op == "delete":
        deleted = await state.run(lambda conn: _soft_delete(conn, euid), user.username)
        return JSONResponse({"deleted": deleted})
    if op == "action":
        captured = body.get("captured_data") or {}
        if not isinstance(captured, dict):
            raise ValidationError("captured_data must be an object")
        result = await state.run(
            lambda conn: _run_action(
                state.dispatcher,
                conn,
                euid,
                str(body.get("group", "")),
                str(body.get("key", "")),
                captured,
                user.username,
            ),
            user.username,
        )
        return JSONResponse(
            json.loads(json.dumps(result, default=str)),
            status_code=400 if result.get("status") == "error" else 200,
        )
    return _error(request, user, 404, "no such operation")


@guarded(mutating=True)
async def api_delete_object(request: Request, user: AdminUser) -> Response:
    euid = request.path_params["euid"].strip().upper()
    deleted = await _state(request).run(lambda conn: _soft_delete(conn, euid), user.username)
    return JSONResponse({"deleted": deleted})


@guarded(mutating=True)
async def api_link(request: Request, user: AdminUser) -> Response:
    body = await _json_body(request)
    edge = await _state(request).run(
        lambda conn: _link(
            conn,
            str(body.get("parent_euid", "")),
            str(body.get("child_euid", "")),
            str(body.get("relationship_type", "generic")),
        ),
        user.username,
    )
    return JSONResponse({"euid": edge}, status_code=201)


# -- graph -----------------------------------------------------------------------------


@guarded()
async def graph_page(request: Request, user: AdminUser) -> Response:
    start = request.query_params.get("start", "").strip().upper()
    depth = _int_param(request, "depth", 2, 1, 10)
    return render(
        request,
        "graph.html",
        user=user,
        start=start,
        depth=depth,
        relationship_types=RELATIONSHIP_TYPES,
    )


@guarded()
async def api_graph(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    start = request.query_params.get("start", "").strip().upper()
    depth = _int_param(request, "depth", 2, 1, 10) or 2
    if not start:
        raise ValidationError("start (an instance EUID) is required")

    def load(conn: Connection) -> dict[str, Any]:
        root = instances.get(conn, start)
        return queries.capped_graph(conn, root, depth, state.settings.graph_node_cap)

    return JSONResponse(await state.run(load))


# -- users -----------------------------------------------------------------------------


def _user_json(u: Any) -> dict[str, Any]:
    return {
        "euid": u.euid,
        "username": u.username,
        "email": u.email,
        "display_name": u.display_name,
        "role": u.role,
        "is_active": u.is_active,
        "last_login_dt": _iso(u.last_login_dt),
    }


@guarded(admin=True)
async def user_list(request: Request, user: AdminUser) -> Response:
    rows = await _state(request).run(lambda conn: users.list_users(conn))
    if _wants_json(request):
        return JSONResponse({"items": [_user_json(u) for u in rows]})
    return render(request, "users.html", user=user, rows=rows, roles=ROLES, message=None)


@guarded(mutating=True)
async def user_post(request: Request, user: AdminUser) -> Response:
    state = _state(request)
    form = await _form(request)
    op = request.path_params.get("op", "add")
    key = request.path_params.get("key", "")
    if op == "add":
        password = form.get("password", "")
        if len(password) < 8:
            raise ValidationError("a password needs 8 characters or more")
        await state.run(
            lambda conn: users.create_user(
                conn,
                form.get("username", "").strip(),
                role=form.get("role", "user"),
                email=form.get("email") or None,
                display_name=form.get("display_name") or None,
                password=password,
                require_password_change=True,
            ),
            user.username,
        )
    elif op == "role":
        if key == user.euid:
            raise Forbidden("you cannot change your own role")
        await state.run(lambda conn: users.set_role(conn, key, form.get("role", "")), user.username)
    elif op == "active":
        if key == user.euid:
            raise Forbidden("you cannot deactivate yourself")
        fn = users.activate if form.get("active") == "true" else users.deactivate
        await state.run(lambda conn: fn(conn, key), user.username)
    elif op == "password":
        password = form.get("password", "")
        if len(password) < 8:
            raise ValidationError("a password needs 8 characters or more")
        await state.run(
            lambda conn: users.set_password(conn, key, password, require_change=True), user.username
        )
    else:
        return _error(request, user, 404, "no such operation")
    return RedirectResponse(_url(request, "/users"), status_code=303)


# -- the app ---------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
    )
    env.filters["iso"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else ""
    env.filters["j"] = lambda v: json.dumps(v, sort_keys=True, default=str)
    return env


def routes() -> list[Route | Mount]:
    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/login/new-password", _new_password, methods=["POST"]),
        Route("/change-password", change_password_page, methods=["GET"]),
        Route("/change-password", change_password_submit, methods=["POST"]),
        Route("/", dashboard),
        Route("/api/dashboard", dashboard),
        Route("/search", search),
        Route("/api/search", search),
        Route("/templates", template_list),
        Route("/api/templates", template_list),
        Route("/templates/{euid}", template_detail),
        Route("/api/templates/{euid}", template_detail),
        Route("/templates/{euid}/create", template_create_form, methods=["POST"]),
        Route("/api/templates/{euid}/instances", api_create_instance, methods=["POST"]),
        Route("/instances", instance_list),
        Route("/api/instances", instance_list),
        Route("/object/{euid}", object_page),
        Route("/api/object/{euid}", object_page, methods=["GET"]),
        Route("/api/object/{euid}", api_delete_object, methods=["DELETE"]),
        Route("/object/{euid}/{op}", object_post, methods=["POST"]),
        Route("/api/object/{euid}/{op}", api_object_post, methods=["POST"]),
        Route("/api/lineage", api_link, methods=["POST"]),
        Route("/graph", graph_page),
        Route("/api/graph", api_graph),
        Route("/users", user_list, methods=["GET"]),
        Route("/api/users", user_list, methods=["GET"]),
        Route("/users", user_post, methods=["POST"]),
        Route("/users/{key}/{op}", user_post, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]


def create_app(
    settings: AdminSettings,
    *,
    user_provider: UserProvider | None = None,
    dispatcher: ActionDispatcher | None = None,
    engine: Any = None,
) -> Starlette:
    """Build the admin app over one pooled engine.

    ``user_provider`` hands the login to a host application: it returns the
    host's user for a request (or None), and the app then trusts it. CSRF is
    then the host's job too (its own session and forms). ``engine`` lets a host
    share its SQLAlchemy engine.
    """
    settings.check()
    own_engine = engine is None
    if engine is None:
        engine = create_engine(
            normalise_url(settings.database_url),
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            pool_pre_ping=True,
        )
    state = AdminState(
        settings=settings,
        db=Database(engine),
        env=_environment(),
        throttle=LoginThrottle(
            free=settings.login_failures_before_delay, max_delay=settings.login_max_delay
        ),
        revoked=RevokedSessions(max_age=settings.session_max_age),
        user_provider=user_provider,
        dispatcher=dispatcher or ActionDispatcher(),
    )
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
        Middleware(SecurityHeaders, hsts=settings.https_only),
        Middleware(
            SessionMiddleware,
            secret_key=settings.effective_secret(),
            session_cookie="tapdb_admin",
            max_age=settings.session_max_age,
            same_site="lax",
            https_only=settings.https_only,
        ),
    ]
    owned = engine

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if own_engine:
            owned.dispose()

    app = Starlette(routes=routes(), middleware=middleware, lifespan=lifespan)
    app.state.admin = state
    return app
