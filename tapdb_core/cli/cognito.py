"""``tapdb cognito ...``: a Cognito user pool for the admin UI's login, over
boto3 ``cognito-idp`` directly (no external CLI).

What the UI needs (pool id, app client id, region, endpoint) is kept per
environment in ``$TAPDB_COGNITO_DIR/<env>.json`` (default
``~/.config/tapdb/cognito``), mode 0600. The app client has no secret, so no
secret is ever written; passwords are read from stdin only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tapdb_core import users
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.errors import (
    ConfigurationError,
    NotFoundError,
    RefusedError,
    TapdbError,
    UsageError,
)

AUTH_FLOWS = (
    "ALLOW_ADMIN_USER_PASSWORD_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
)


class CognitoError(TapdbError):
    """A Cognito call failed or a pool/client was not found."""


def binding_path(env: str) -> Path:
    base = os.environ.get("TAPDB_COGNITO_DIR")
    root = Path(base).expanduser() if base else Path("~/.config/tapdb/cognito").expanduser()
    return root / f"{env}.json"


def read_binding(env: str) -> dict[str, str]:
    path = binding_path(env)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return {k: str(v) for k, v in data.items() if v is not None}


def write_binding(env: str, values: dict[str, str]) -> Path:
    path = binding_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
    path.chmod(0o600)
    return path


def ui_environment(env: str) -> dict[str, str]:
    """The ``TAPDB_COGNITO_*`` variables ``tapdb ui start`` passes to the server."""
    b = read_binding(env)
    if not b.get("user_pool_id") or not b.get("app_client_id"):
        return {}
    out = {
        "TAPDB_COGNITO_USER_POOL_ID": b["user_pool_id"],
        "TAPDB_COGNITO_APP_CLIENT_ID": b["app_client_id"],
        "TAPDB_COGNITO_REGION": b.get("region", ""),
    }
    if b.get("endpoint_url"):
        out["TAPDB_COGNITO_ENDPOINT_URL"] = b["endpoint_url"]
    return out


def _region(args: argparse.Namespace, binding: dict[str, str]) -> str:
    return str(
        getattr(args, "region", None)
        or binding.get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )


def _endpoint(args: argparse.Namespace, binding: dict[str, str]) -> str | None:
    return getattr(args, "endpoint_url", None) or binding.get("endpoint_url") or None


def client(args: argparse.Namespace, binding: dict[str, str] | None = None) -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError(
            "tapdb cognito needs boto3: pip install 'tapdb-core[aurora]'"
        ) from exc
    b = binding or {}
    session = boto3.session.Session(profile_name=getattr(args, "profile", None) or None)
    return session.client(
        "cognito-idp", region_name=_region(args, b), endpoint_url=_endpoint(args, b)
    )


def _call(fn: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CognitoError(
            f"{error.get('Code', 'Cognito error')}: {error.get('Message', exc)}"
        ) from exc


def _pages(cognito: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in cognito.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


def _bound(args: argparse.Namespace) -> tuple[str, dict[str, str], Any]:
    env = args.env
    binding = read_binding(env)
    if not binding.get("user_pool_id"):
        raise ConfigurationError(
            f"no Cognito pool bound to {env}: run tapdb cognito setup/bind {env}"
        )
    return env, binding, client(args, binding)


# -- commands --------------------------------------------------------------------------


def find_pool(cognito: Any, name: str) -> str | None:
    for pool in _pages(cognito, "list_user_pools", "UserPools", MaxResults=60):
        if pool.get("Name") == name:
            return str(pool["Id"])
    return None


def cmd_setup(args: argparse.Namespace) -> int:
    env = args.env
    binding = read_binding(env)
    cognito = client(args, binding)
    pool_name = args.pool_name or f"tapdb-{env}-users"
    pool_id = find_pool(cognito, pool_name)
    if pool_id is None:
        pool_id = _call(
            cognito.create_user_pool,
            PoolName=pool_name,
            UsernameAttributes=["email"],
            AutoVerifiedAttributes=["email"],
            Policies={
                "PasswordPolicy": {
                    "MinimumLength": 12,
                    "RequireUppercase": True,
                    "RequireLowercase": True,
                    "RequireNumbers": True,
                    "RequireSymbols": False,
                }
            },
        )["UserPool"]["Id"]
        common.note(f"created user pool {pool_name} ({pool_id})")
    client_name = args.client_name or "tapdb"
    clients = _pages(
        cognito, "list_user_pool_clients", "UserPoolClients", UserPoolId=pool_id, MaxResults=60
    )
    found = [c["ClientId"] for c in clients if c.get("ClientName") == client_name]
    if found:
        client_id = found[0]
        _fix_flows(cognito, pool_id, client_id)
    else:
        client_id = _call(
            cognito.create_user_pool_client,
            UserPoolId=pool_id,
            ClientName=client_name,
            GenerateSecret=False,
            ExplicitAuthFlows=list(AUTH_FLOWS),
        )["UserPoolClient"]["ClientId"]
        common.note(f"created app client {client_name} ({client_id})")
    if args.domain_prefix:
        described = _call(cognito.describe_user_pool, UserPoolId=pool_id)["UserPool"]
        if not described.get("Domain"):
            _call(cognito.create_user_pool_domain, Domain=args.domain_prefix, UserPoolId=pool_id)
    values = {"user_pool_id": pool_id, "app_client_id": client_id, "region": _region(args, binding)}
    if _endpoint(args, binding):
        values["endpoint_url"] = str(_endpoint(args, binding))
    path = write_binding(env, values)
    common.out(f"{env}: pool {pool_id}, app client {client_id} (saved in {path})")
    return 0


def cmd_bind(args: argparse.Namespace) -> int:
    binding = read_binding(args.env)
    cognito = client(args, binding)
    _call(cognito.describe_user_pool_client, UserPoolId=args.pool_id, ClientId=args.client_id)
    values = {
        "user_pool_id": args.pool_id,
        "app_client_id": args.client_id,
        "region": _region(args, binding),
    }
    if _endpoint(args, binding):
        values["endpoint_url"] = str(_endpoint(args, binding))
    path = write_binding(args.env, values)
    common.out(f"{args.env}: bound to pool {args.pool_id} (saved in {path})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    env, binding, cognito = _bound(args)
    pool = _call(cognito.describe_user_pool, UserPoolId=binding["user_pool_id"])["UserPool"]
    app = _call(
        cognito.describe_user_pool_client,
        UserPoolId=binding["user_pool_id"],
        ClientId=binding["app_client_id"],
    )["UserPoolClient"]
    missing = sorted(set(AUTH_FLOWS[:1]) - set(app.get("ExplicitAuthFlows", [])))
    info = {
        "env": env,
        "user_pool_id": pool["Id"],
        "pool_name": pool.get("Name"),
        "app_client_id": app["ClientId"],
        "app_client_name": app.get("ClientName"),
        "auth_flows": app.get("ExplicitAuthFlows", []),
        "domain": pool.get("Domain"),
        "region": binding.get("region"),
        "ok": not missing,
    }
    if args.json:
        common.print_json(info)
    else:
        for k, v in info.items():
            common.out(f"{k}: {v}")
        if missing:
            common.warn(
                f"the app client lacks {', '.join(missing)}: run tapdb cognito fix-auth-flows {env}"
            )
    return 0 if not missing else 1


def cmd_list_pools(args: argparse.Namespace) -> int:
    pools = _pages(
        client(args, read_binding(args.env)), "list_user_pools", "UserPools", MaxResults=60
    )
    rows = [{"id": p["Id"], "name": p.get("Name")} for p in pools]
    if args.json:
        common.print_json(rows)
    for r in [] if args.json else rows:
        common.out(f"{r['id']}  {r['name']}")
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("--password-stdin: no password on stdin")
    return password


def cmd_add_user(args: argparse.Namespace) -> int:
    env, binding, cognito = _bound(args)
    password = _read_password(args)
    pool = binding["user_pool_id"]
    kwargs: dict[str, Any] = {
        "UserPoolId": pool,
        "Username": args.email,
        "UserAttributes": [
            {"Name": "email", "Value": args.email},
            {"Name": "email_verified", "Value": "true"},
        ],
        "MessageAction": "SUPPRESS",
    }
    _call(cognito.admin_create_user, **kwargs)
    if password is not None:
        _call(
            cognito.admin_set_user_password,
            UserPoolId=pool,
            Username=args.email,
            Password=password,
            Permanent=not args.temporary,
        )
    target = common.resolve_target(args, env)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            try:
                user = users.get_user(conn, args.email)
                if user.role != args.role:
                    users.set_role(conn, args.email, args.role)
            except NotFoundError:
                users.create_user(conn, args.email, role=args.role, email=args.email)
    finally:
        engine.dispose()
    common.out(f"added {args.email} (role {args.role}) to pool {pool} and tapdb_user")
    return 0


def cmd_list_users(args: argparse.Namespace) -> int:
    _, binding, cognito = _bound(args)
    found = _pages(cognito, "list_users", "Users", UserPoolId=binding["user_pool_id"])
    rows = []
    for u in found:
        attrs = {a["Name"]: a["Value"] for a in u.get("Attributes", [])}
        rows.append(
            {
                "username": u["Username"],
                "email": attrs.get("email"),
                "status": u.get("UserStatus"),
                "enabled": u.get("Enabled"),
            }
        )
    if args.json:
        common.print_json(rows)
    else:
        for r in rows:
            common.out(
                f"{r['email'] or r['username']}  {r['status']}  {'enabled' if r['enabled'] else 'disabled'}"
            )
    return 0


def cmd_remove_user(args: argparse.Namespace) -> int:
    _, binding, cognito = _bound(args)
    _call(cognito.admin_delete_user, UserPoolId=binding["user_pool_id"], Username=args.email)
    common.out(
        f"removed {args.email} from the pool (its tapdb_user row stays; deactivate it with tapdb user)"
    )
    return 0


def cmd_add_app(args: argparse.Namespace) -> int:
    _, binding, cognito = _bound(args)
    made = _call(
        cognito.create_user_pool_client,
        UserPoolId=binding["user_pool_id"],
        ClientName=args.app_name,
        GenerateSecret=False,
        ExplicitAuthFlows=list(AUTH_FLOWS),
    )["UserPoolClient"]
    common.out(f"app client {args.app_name}: {made['ClientId']}")
    return 0


def cmd_list_apps(args: argparse.Namespace) -> int:
    _, binding, cognito = _bound(args)
    apps = _pages(
        cognito,
        "list_user_pool_clients",
        "UserPoolClients",
        UserPoolId=binding["user_pool_id"],
        MaxResults=60,
    )
    rows = [
        {
            "id": a["ClientId"],
            "name": a.get("ClientName"),
            "bound": a["ClientId"] == binding.get("app_client_id"),
        }
        for a in apps
    ]
    if args.json:
        common.print_json(rows)
    else:
        for r in rows:
            common.out(f"{r['id']}  {r['name']}{'  (bound)' if r['bound'] else ''}")
    return 0


def cmd_remove_app(args: argparse.Namespace) -> int:
    _, binding, cognito = _bound(args)
    if args.client_id == binding.get("app_client_id") and not args.force:
        raise RefusedError("refused: that app client is the one the UI uses (pass --force)")
    _call(
        cognito.delete_user_pool_client, UserPoolId=binding["user_pool_id"], ClientId=args.client_id
    )
    common.out(f"removed app client {args.client_id}")
    return 0


def _fix_flows(cognito: Any, pool_id: str, client_id: str) -> list[str]:
    app = _call(cognito.describe_user_pool_client, UserPoolId=pool_id, ClientId=client_id)[
        "UserPoolClient"
    ]
    flows = sorted(set(app.get("ExplicitAuthFlows", [])) | set(AUTH_FLOWS))
    if flows != sorted(app.get("ExplicitAuthFlows", [])):
        _call(
            cognito.update_user_pool_client,
            UserPoolId=pool_id,
            ClientId=client_id,
            ExplicitAuthFlows=flows,
        )
    return flows


def cmd_fix_auth_flows(args: argparse.Namespace) -> int:
    _, binding, cognito = _bound(args)
    flows = _fix_flows(cognito, binding["user_pool_id"], binding["app_client_id"])
    common.out("auth flows: " + ", ".join(flows))
    return 0


def _aws(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: the bound one, $AWS_REGION, us-east-1)")
    p.add_argument("--profile", help="AWS profile")
    p.add_argument("--endpoint-url", metavar="URL", help="Cognito endpoint (an emulator)")


def configure(sub: Subparsers) -> None:
    cg = group(sub, "cognito", "Cognito user pool for the admin UI's login (boto3)")
    p = leaf(
        cg,
        "setup",
        "create (or reuse) the pool and its app client, and bind them",
        cmd_setup,
        json_flag=False,
    )
    add_env_argument(p)
    _aws(p)
    p.add_argument("--pool-name", help="default tapdb-ENV-users")
    p.add_argument("--client-name", help="default tapdb")
    p.add_argument("--domain-prefix", help="also create a hosted domain with this prefix")
    p = leaf(cg, "bind", "use an existing pool and app client for ENV", cmd_bind, json_flag=False)
    add_env_argument(p)
    _aws(p)
    p.add_argument("--pool-id", required=True)
    p.add_argument("--client-id", required=True)
    p = leaf(
        cg, "status", "the bound pool and app client, and whether its auth flows fit", cmd_status
    )
    add_env_argument(p)
    _aws(p)
    p = leaf(cg, "list-pools", "user pools of the region (all pages)", cmd_list_pools)
    add_env_argument(p)
    _aws(p)
    p = leaf(cg, "add-user", "add a user to the pool and tapdb_user", cmd_add_user, json_flag=False)
    add_env_argument(p)
    p.add_argument("email")
    p.add_argument("--role", choices=("admin", "user"), default="user")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument(
        "--temporary", action="store_true", help="the password must be changed at first login"
    )
    _aws(p)
    for name, func, text in (
        ("list-users", cmd_list_users, "users of the pool (all pages)"),
        ("list-apps", cmd_list_apps, "app clients of the pool"),
        (
            "fix-auth-flows",
            cmd_fix_auth_flows,
            "enable the auth flows the UI needs on the bound app client",
        ),
    ):
        p = leaf(cg, name, text, func, json_flag=name.startswith("list"))
        add_env_argument(p)
        _aws(p)
    p = leaf(cg, "remove-user", "delete a user from the pool", cmd_remove_user, json_flag=False)
    add_env_argument(p)
    p.add_argument("email")
    _aws(p)
    p = leaf(
        cg,
        "add-app",
        "add an app client (no secret, the UI's auth flows)",
        cmd_add_app,
        json_flag=False,
    )
    add_env_argument(p)
    p.add_argument("app_name")
    _aws(p)
    p = leaf(cg, "remove-app", "delete an app client", cmd_remove_app, json_flag=False)
    add_env_argument(p)
    p.add_argument("client_id")
    p.add_argument("--force", action="store_true", help="even the one the UI uses")
    _aws(p)
