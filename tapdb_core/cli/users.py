"""``tapdb user ...``: tapdb accounts (the work is :mod:`tapdb_core.commands.users`)."""

from __future__ import annotations

import argparse
from typing import Any

from tapdb_core import commands
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.values import User


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


def _show(args: argparse.Namespace, user: User, message: str) -> int:
    if args.json:
        common.print_json(user_dict(user))
    else:
        common.out(message)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    found = commands.list_users(target, include_inactive=args.inactive)
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
    target = common.resolve_target(args, args.env)
    password = None
    if args.password_prompt or args.password_stdin:
        password = common.read_new_password(args, args.username)
    user = commands.create_user(
        target,
        args.username,
        role=args.role,
        email=args.email,
        display_name=args.display_name,
        password=password,
        require_password_change=args.require_password_change,
    )
    return _show(args, user, f"created user {user.username!r} ({user.euid}) with role {user.role}")


def cmd_set_role(args: argparse.Namespace) -> int:
    user = commands.set_user_role(common.resolve_target(args, args.env), args.user, args.role)
    return _show(args, user, f"user {user.username!r} now has role {user.role}")


def cmd_deactivate(args: argparse.Namespace) -> int:
    user = commands.deactivate_user(common.resolve_target(args, args.env), args.user)
    return _show(args, user, f"user {user.username!r} deactivated")


def cmd_activate(args: argparse.Namespace) -> int:
    user = commands.activate_user(common.resolve_target(args, args.env), args.user)
    return _show(args, user, f"user {user.username!r} activated")


def cmd_set_password(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    commands.get_user(target, args.user)  # the user exists before a password is asked for
    password = common.read_new_password(args, args.user)
    user = commands.set_user_password(
        target, args.user, password, require_change=args.require_change
    )
    return _show(args, user, f"password of {user.username!r} changed")


def cmd_delete(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    user = commands.delete_user(
        target,
        args.user,
        confirm=common.confirmer(args, target, prod_name=False, describe=False),
    )
    return _show(args, user, f"deleted user {user.username!r} ({user.euid})")
