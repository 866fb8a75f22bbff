"""``tapdb user ...``: tapdb accounts. Every value is a bound parameter, so any
username (``o'brien``) is stored verbatim.

USER arguments are read as an EUID when they have the form of one, else as a
username; usernames of that form are refused. An old account whose username is
EUID-shaped is reported when a command reaches another account (or none) instead.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.values import User

if TYPE_CHECKING:
    from sqlalchemy import Connection


def configure(sub: Subparsers) -> None:
    usr = group(sub, "user", "tapdb user accounts")

    p = leaf(usr, "list", "list users (active only unless -i)", cmd_list)
    add_env_argument(p)
    p.add_argument("-i", "--inactive", action="store_true", help="include inactive users")

    p = leaf(usr, "add", "add a user", cmd_add)
    add_env_argument(p)
    p.add_argument("-u", "--username", required=True, help="username (unique)")
    p.add_argument("-r", "--role", default="user", choices=("admin", "user"), help="role")
    p.add_argument("-e", "--email", help="email address (unique)")
    p.add_argument("-n", "--display-name", "--name", dest="display_name", help="display name")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument(
        "-p",
        "--password",
        dest="password_prompt",
        action="store_true",
        help="ask for a password (hidden, asked twice)",
    )
    pw.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    p.add_argument(
        "--require-password-change",
        action="store_true",
        help="the user must change the password at the next login",
    )

    p = leaf(usr, "set-role", "change a user's role", cmd_set_role)
    add_env_argument(p)
    p.add_argument("user", metavar="USER", help="username or EUID")
    p.add_argument("role", metavar="ROLE", choices=("admin", "user"), help="admin or user")

    for name, func, text in (
        ("deactivate", cmd_deactivate, "disable a user's login"),
        ("activate", cmd_activate, "re-enable a user's login"),
    ):
        p = leaf(usr, name, text, func)
        add_env_argument(p)
        p.add_argument("user", metavar="USER", help="username or EUID")

    p = leaf(
        usr, "set-password", "set a user's password (hidden prompt or stdin)", cmd_set_password
    )
    add_env_argument(p)
    p.add_argument("user", metavar="USER", help="username or EUID")
    p.add_argument("-p", "--prompt", action="store_true", help="ask for the password (the default)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    p.add_argument(
        "--require-change",
        action="store_true",
        help="the user must change the password at the next login",
    )

    p = leaf(usr, "delete", "delete a user permanently (the audit trail keeps it)", cmd_delete)
    add_env_argument(p)
    p.add_argument("user", metavar="USER", help="username or EUID")
    common.add_guard_options(p, prod_name=False)


def user_dict(user: User) -> dict[str, Any]:
    return {
        "euid": user.euid,
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "is_active": user.is_active,
        "require_password_change": user.require_password_change,
        "created_dt": user.created_dt,
        "modified_dt": user.modified_dt,
        "last_login_dt": user.last_login_dt,
    }


def warn_if_shadowed(conn: Connection, key: str) -> None:
    """Say so when ``key`` is read as an EUID while an old account has it as username."""
    from tapdb_core import users

    other = users.shadowed_username(conn, key)
    if other is not None:
        common.warn(
            f"{key!r} is read as an EUID, not as the username of user {other.euid} "
            f"(an account from before EUID-shaped usernames were refused): address that "
            "account by its EUID"
        )


def _show(args: argparse.Namespace, user: User, message: str) -> int:
    if args.json:
        common.print_json(user_dict(user))
    else:
        common.out(message)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tapdb_core import users

    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            found = users.list_users(conn, include_inactive=args.inactive)
    finally:
        engine.dispose()
    if args.json:
        common.print_json([user_dict(u) for u in found])
        return 0
    if not found:
        common.note("no users")
        return 0
    width = max(len(u.username) for u in found)
    for u in found:
        state = "active" if u.is_active else "inactive"
        extra = " ".join(
            x for x in (u.email or "", f"({u.display_name})" if u.display_name else "") if x
        )
        common.out(
            f"{u.euid:<10} {u.username.ljust(width)}  {u.role:<5}  {state:<8}  {extra}".rstrip()
        )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from tapdb_core import users

    target = common.resolve_target(args, args.env)
    password = None
    if args.password_prompt or args.password_stdin:
        password = common.read_new_password(args, args.username)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            user = users.create_user(
                conn,
                args.username,
                role=args.role,
                email=args.email,
                display_name=args.display_name,
                password=password,
                require_password_change=args.require_password_change,
            )
    finally:
        engine.dispose()
    common.oplog(target, "user add", user.euid)
    return _show(args, user, f"created user {user.username!r} ({user.euid}) with role {user.role}")


def _change(args: argparse.Namespace, operation: str, *, warn: bool = True, **kwargs: Any) -> User:
    from tapdb_core import users

    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            if warn:
                warn_if_shadowed(conn, args.user)
            if operation == "set-role":
                user = users.set_role(conn, args.user, kwargs["role"])
            elif operation == "activate":
                user = users.activate(conn, args.user)
            elif operation == "deactivate":
                user = users.deactivate(conn, args.user)
            elif operation == "set-password":
                user = users.set_password(
                    conn, args.user, kwargs["password"], require_change=kwargs["require_change"]
                )
            else:  # pragma: no cover
                raise AssertionError(operation)
    finally:
        engine.dispose()
    common.oplog(target, f"user {operation}", user.euid)
    return user


def cmd_set_role(args: argparse.Namespace) -> int:
    user = _change(args, "set-role", role=args.role)
    return _show(args, user, f"user {user.username!r} now has role {user.role}")


def cmd_deactivate(args: argparse.Namespace) -> int:
    user = _change(args, "deactivate")
    return _show(args, user, f"user {user.username!r} deactivated")


def cmd_activate(args: argparse.Namespace) -> int:
    user = _change(args, "activate")
    return _show(args, user, f"user {user.username!r} activated")


def cmd_set_password(args: argparse.Namespace) -> int:
    from tapdb_core import users

    # check the user exists before asking for a password
    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            warn_if_shadowed(conn, args.user)
            users.get_user(conn, args.user)
    finally:
        engine.dispose()
    password = common.read_new_password(args, args.user)
    user = _change(
        args, "set-password", warn=False, password=password, require_change=args.require_change
    )
    return _show(args, user, f"password of {user.username!r} changed")


def cmd_delete(args: argparse.Namespace) -> int:
    from tapdb_core import users

    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            warn_if_shadowed(conn, args.user)
            user = users.get_user(conn, args.user)
        common.gate(args, f"delete user {user.username!r} ({user.euid}) from {target.database!r}")
        with common.transaction(engine, target) as conn:
            user = users.delete_user(conn, args.user)
    finally:
        engine.dispose()
    common.oplog(target, "user delete", user.euid)
    return _show(args, user, f"deleted user {user.username!r} ({user.euid})")
