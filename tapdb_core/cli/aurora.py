"""``tapdb aurora template|create|status|list|connect|delete`` and ``tapdb bootstrap aurora``.

A thin layer over :mod:`tapdb_core.aurora`: every stack flag maps to one template
parameter (:data:`FLAG_PARAMETERS`), so none is silently ignored. Progress (stack
events as they arrive) goes to stderr, data to stdout (``--json`` for machines).
Connection details land in the environment's config file (mode 0600); no password
or token is ever printed or written there.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any, Final

import attrs

from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf

#: command-line flag (argparse dest) -> template parameter it sets
FLAG_PARAMETERS: Final = {
    "cluster": "ClusterIdentifier",
    "vpc_id": "VpcId",
    "subnet_ids": "SubnetIds",
    "engine_version": "EngineVersion",
    "instance_class": "InstanceClass",
    "readers": "ReaderCount",
    "master_user": "MasterUsername",
    "app_user": "AppUsername",
    "database": "DatabaseName",
    "cidr": "IngressCIDR",
    "source_security_group": "SourceSecurityGroupId",
    "public": "PubliclyAccessible",
    "deletion_protection": "DeletionProtection",
    "iam_auth": "IamAuth",
    "iam_roles": "IamRoleNames",
    "cost_center": "CostCenter",
    "project": "Project",
}


def _aws_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: config, $AWS_REGION, the profile)")
    p.add_argument("--profile", help="AWS profile (default: $AWS_PROFILE)")
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="AWS endpoint, e.g. a local emulator (default: $AWS_ENDPOINT_URL)",
    )


def _stack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", metavar="NAME", help="DB cluster identifier (stack tapdb-NAME)")
    p.add_argument("--vpc-id", metavar="VPC", help="VPC (default: the region's default VPC)")
    p.add_argument(
        "--subnet-ids", metavar="S1,S2", help="subnets (default: every subnet of the VPC)"
    )
    p.add_argument("--engine-version", metavar="V", help="Aurora PostgreSQL version")
    p.add_argument("--instance-class", metavar="CLASS", help="instance class (db.r6g.large)")
    p.add_argument("--readers", type=int, metavar="N", help="reader instances, 0-3 (default 0)")
    p.add_argument("--master-user", metavar="NAME", help="master user (tapdb_admin)")
    p.add_argument("--app-user", metavar="NAME", help="application role for IAM login (tapdb_app)")
    p.add_argument("--database", metavar="NAME", help="database name (tapdb)")
    p.add_argument(
        "--cidr", metavar="CIDR", help="clients allowed on 5432 ('' for none; 10.0.0.0/8)"
    )
    p.add_argument(
        "--source-security-group", metavar="SG", help="security group allowed on port 5432"
    )
    p.add_argument(
        "--public", action="store_const", const=True, default=None, help="publicly accessible"
    )
    p.add_argument(
        "--no-deletion-protection",
        dest="deletion_protection",
        action="store_const",
        const=False,
        default=None,
        help="create the cluster without deletion protection",
    )
    p.add_argument(
        "--no-iam-auth",
        dest="iam_auth",
        action="store_const",
        const=False,
        default=None,
        help="no IAM database authentication (applications use the master secret)",
    )
    p.add_argument(
        "--iam-role",
        dest="iam_roles",
        action="append",
        metavar="ROLE",
        help="IAM role to attach the rds-db:connect policy to (repeatable)",
    )
    p.add_argument("--cost-center", metavar="TAG", help="cost center tag (global)")
    p.add_argument("--project", metavar="TAG", help="project tag (default tapdb-REGION)")
    p.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any template parameter (repeatable; wins over the flags)",
    )


def _wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=45.0,
        metavar="MINUTES",
        help="how long to wait for the stack (default 45 minutes)",
    )
    p.add_argument("--template-file", metavar="FILE", help="deploy this template instead of ours")
    p.add_argument(
        "--sslmode",
        default="verify-full",
        choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
        help="TLS mode recorded for connections (default verify-full)",
    )


def configure(sub: Subparsers) -> None:
    aurora = group(sub, "aurora", "Aurora PostgreSQL on AWS: CloudFormation stack and connections")

    p = leaf(
        aurora,
        "template",
        "print the rendered CloudFormation template (JSON)",
        cmd_template,
        json_flag=False,
    )
    add_env_argument(p)
    _stack_options(p)
    p.add_argument(
        "--literal",
        action="store_true",
        help="substitute the parameters as literals (for linters; needs --vpc-id, --subnet-ids)",
    )

    p = leaf(aurora, "create", "create the stack, wait, record the connection details", cmd_create)
    add_env_argument(p)
    _stack_options(p)
    _aws_options(p)
    _wait_options(p)
    p.add_argument("--no-wait", action="store_true", help="start the creation and return")

    p = leaf(aurora, "status", "stack status, reason and outputs", cmd_status)
    add_env_argument(p)
    p.add_argument("--cluster", metavar="NAME", help="cluster (default: from the config)")
    _aws_options(p)

    p = leaf(aurora, "list", "tapdb stacks of a region, in any state", cmd_list)
    _aws_options(p)

    p = leaf(aurora, "connect", "connection details, or shell exports", cmd_connect)
    add_env_argument(p)
    p.add_argument("--export", action="store_true", help="print PG* shell exports")
    p.add_argument("--reader", action="store_true", help="the reader endpoint")

    p = leaf(aurora, "delete", "delete the stack and its cluster (destructive)", cmd_delete)
    add_env_argument(p)
    p.add_argument("--cluster", metavar="NAME", help="cluster (default: from the config)")
    _aws_options(p)
    common.add_guard_options(p)
    p.add_argument("--no-wait", action="store_true", help="start the deletion and return")
    p.add_argument(
        "--timeout", type=float, default=45.0, metavar="MINUTES", help="wait (default 45 minutes)"
    )


def configure_bootstrap(boot: Subparsers) -> None:
    """``tapdb bootstrap aurora ENV --cluster C --region R``."""
    p = leaf(
        boot,
        "aurora",
        "Aurora stack + config + database + schema + templates + application role",
        cmd_bootstrap,
        description=(
            "Create (or reuse a healthy) Aurora stack, record its connection details, create "
            "the database, migrate it, seed the template packs and create the application "
            "role with rds_iam. Safe to run again."
        ),
    )
    add_env_argument(p)
    _stack_options(p)
    _aws_options(p)
    _wait_options(p)


# ------------------------------------------------------------------ shared pieces


def _section(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    cfg = common.resolve_config(args, args.env)
    section = common.env_sections(cfg.config_file).get(cfg.env, {})
    return cfg, section


def _target(args: argparse.Namespace, section: dict[str, Any]) -> Any:
    from tapdb_core.aurora import aws

    try:
        return aws.aws_target(
            getattr(args, "region", None),
            section.get("region") or None,
            getattr(args, "profile", None),
            getattr(args, "endpoint_url", None),
        )
    except aws.RegionMissingError as exc:
        raise common.UsageError(str(exc)) from None


def stack_parameters(args: argparse.Namespace, section: dict[str, Any]) -> Any:
    """StackParameters from the flags (each one mapped), then ``--param`` overrides."""
    from tapdb_core.aurora.template import StackParameters, TemplateError, parse_overrides

    values: dict[str, Any] = {}
    if section.get("cluster_id"):
        values["cluster_identifier"] = section["cluster_id"]
    for dest, parameter in FLAG_PARAMETERS.items():
        given = getattr(args, dest, None)
        if given is None:
            continue
        if parameter == "ClusterIdentifier":
            values["cluster_identifier"] = given
        elif parameter == "ReaderCount":
            values["reader_count"] = given
        elif parameter in ("SubnetIds", "IamRoleNames"):
            raw = given if isinstance(given, str) else ",".join(given)
            values[_field(parameter)] = raw
        else:
            values[_field(parameter)] = given
    try:
        values.update(parse_overrides(args.params))
        if not values.get("cluster_identifier"):
            raise common.UsageError("which cluster? pass --cluster NAME")
        params = StackParameters(**values)
        params.validate()
    except TemplateError as exc:
        raise common.UsageError(str(exc)) from None
    return params


def _field(parameter: str) -> str:
    from tapdb_core.aurora.template import FIELD_OF

    return FIELD_OF[parameter]


def _default_network(ec2: Any, params: Any) -> Any:
    from tapdb_core.aurora import aws

    vpc = params.vpc_id
    if not vpc:
        found = aws.call(
            "DescribeVpcs",
            ec2.describe_vpcs,
            Filters=[{"Name": "isDefault", "Values": ["true"]}],
        )["Vpcs"]
        if not found:
            raise common.UsageError("the region has no default VPC: pass --vpc-id and --subnet-ids")
        vpc = found[0]["VpcId"]
    subnets = params.subnet_ids
    if not subnets:
        subnets = tuple(
            s["SubnetId"]
            for s in aws.call(
                "DescribeSubnets",
                ec2.describe_subnets,
                Filters=[{"Name": "vpc-id", "Values": [vpc]}],
            )["Subnets"]
        )
        if len(subnets) < 2:
            raise common.UsageError(f"VPC {vpc} has fewer than two subnets: pass --subnet-ids")
    return attrs.evolve(params, vpc_id=vpc, subnet_ids=subnets)


def _print_event(event: Any) -> None:
    common.note(f"... {event.line()}")


def _waiting(args: argparse.Namespace) -> Any:
    from tapdb_core.aurora.stacks import Waiting

    if args.timeout <= 0:
        raise common.UsageError("--timeout must be a positive number of minutes")
    return Waiting(timeout=args.timeout * 60.0, interval=_poll_seconds())


def _poll_seconds() -> float:
    from tapdb_core.aurora.stacks import DEFAULT_INTERVAL

    raw = os.environ.get("TAPDB_AURORA_POLL_SECONDS", "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INTERVAL
    except ValueError:
        raise common.UsageError(f"TAPDB_AURORA_POLL_SECONDS must be seconds, not {raw!r}") from None


def settings_from_stack(env: str, info: Any, region: str, sslmode: str = "verify-full") -> Any:
    """Connection settings from the stack's outputs: the database name is the one
    the stack created (its output), never a separate default."""
    from tapdb_core.aurora.connection import AuroraSettings

    out = info.outputs
    iam = out.get("IamAuth", info.parameters.get("IamAuth", "true")) == "true"
    return AuroraSettings(
        env=env,
        host=out["WriterEndpoint"],
        reader_host=out.get("ReaderEndpoint", ""),
        port=int(out.get("Port") or 5432),
        database=out.get("DatabaseName") or info.parameters["DatabaseName"],
        user=(out.get("AppUsername") if iam else out.get("MasterUsername")) or "tapdb_app",
        admin_user=out.get("MasterUsername", ""),
        region=region,
        cluster_id=out.get("ClusterIdentifier") or info.cluster_identifier,
        auth="iam" if iam else "secret",
        sslmode=sslmode,
        secret_arn=out.get("SecretArn", ""),
        stack=info.name,
        policy_arn=out.get("PolicyArn", ""),
    )


def _record(args: argparse.Namespace, cfg: Any, values: dict[str, Any]) -> Path | None:
    from tapdb_core.cli.localconfig import record_local_settings

    return record_local_settings(args, cfg, values)


def _template_body(args: argparse.Namespace) -> dict[str, Any] | None:
    path = getattr(args, "template_file", None)
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise common.UsageError(f"--template-file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise common.UsageError(f"--template-file {path}: not a JSON object")
    return data


def _failed(exc: Any) -> common.CliError:
    for event in getattr(exc, "events", ()):
        common.note(f"failed: {event.line()}")
    return common.CliError(str(exc))


def _create_and_wait(
    args: argparse.Namespace, cfn: Any, params: Any, env: str, *, wait: bool
) -> Any:
    from tapdb_core.aurora import stacks

    waiting = _waiting(args)
    common.progress(f"creating stack tapdb-{params.cluster_identifier}")
    stack_id = stacks.create_stack(
        cfn, params, template=_template_body(args), tags={stacks.TAG_ENV: env}
    )
    common.had_effect("created a stack")
    if not wait:
        return stack_id
    try:
        return stacks.wait_for_stack(
            cfn,
            stack_id,
            success=frozenset({"CREATE_COMPLETE"}),
            waiting=waiting,
            on_event=_print_event,
        )
    except stacks.StackFailedError as exc:
        raise _failed(exc) from exc


# ------------------------------------------------------------------ commands


def cmd_template(args: argparse.Namespace) -> int:
    from tapdb_core.aurora.template import TemplateError, literal, render

    _, section = _section(args)
    params = stack_parameters(args, section)
    try:
        body = literal(params) if args.literal else render(params)
    except TemplateError as exc:
        raise common.UsageError(str(exc)) from None
    common.print_json(body)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from tapdb_core.aurora import aws, stacks

    cfg, section = _section(args)
    params = stack_parameters(args, section)
    target = _target(args, section)
    cfn = aws.client(target, "cloudformation")
    existing = stacks.describe_stack(cfn, f"tapdb-{params.cluster_identifier}")
    if existing is not None:
        raise common.CliError(
            f"stack {existing.name} already exists ({existing.status}): see "
            f"`tapdb aurora status {cfg.env}`, reuse it with `tapdb bootstrap aurora {cfg.env}` "
            f"or remove it with `tapdb aurora delete {cfg.env}`"
        )
    params = _default_network(aws.client(target, "ec2"), params)
    # recorded first so that status/delete find the stack even with --no-wait
    _record(
        args,
        cfg,
        {
            "engine_type": "aurora",
            "cluster_id": params.cluster_identifier,
            "region": target.region,
            "stack": f"tapdb-{params.cluster_identifier}",
        },
    )
    result = _create_and_wait(args, cfn, params, cfg.env, wait=not args.no_wait)
    if args.no_wait:
        payload = {"stack": f"tapdb-{params.cluster_identifier}", "stack_id": result,
                   "status": "CREATE_IN_PROGRESS", "region": target.region}  # fmt: skip
        if args.json:
            common.print_json(payload)
        else:
            common.out(f"stack {payload['stack']} is being created in {target.region}")
            common.out(f"  follow it with: tapdb aurora status {cfg.env}")
        return 0
    settings = settings_from_stack(cfg.env, result, target.region, args.sslmode)
    path = _record(args, cfg, settings.to_section())
    payload = {"stack": result.to_dict(), "connection": settings.to_dict(),
               "config_file": str(path) if path else None}  # fmt: skip
    if args.json:
        common.print_json(payload)
        return 0
    common.out(f"stack {result.name} is {result.status}")
    _print_connection(settings)
    if path:
        common.out(f"  recorded in {path} (mode 0600)")
    common.out(f"next: tapdb bootstrap aurora {cfg.env} --cluster {settings.cluster_id}")
    return 0


def _print_connection(settings: Any) -> None:
    common.out(f"  writer:   {settings.host}:{settings.port}")
    if settings.reader_host:
        common.out(f"  reader:   {settings.reader_host}:{settings.port}")
    common.out(f"  database: {settings.database}  user: {settings.user}  auth: {settings.auth}")
    common.out(f"  region:   {settings.region}  cluster: {settings.cluster_id}")
    common.out(f"  sslmode:  {settings.sslmode}")


def _cluster_of(args: argparse.Namespace, section: dict[str, Any], env: str) -> str:
    cluster = getattr(args, "cluster", None) or section.get("cluster_id")
    if not cluster:
        raise common.UsageError(f"environment {env} names no Aurora cluster: pass --cluster NAME")
    return str(cluster)


def cmd_status(args: argparse.Namespace) -> int:
    from tapdb_core.aurora import aws, stacks

    cfg, section = _section(args)
    cluster = _cluster_of(args, section, cfg.env)
    cfn = aws.client(_target(args, section), "cloudformation")
    info = stacks.describe_stack(cfn, f"tapdb-{cluster}")
    if info is None:
        raise common.CliError(
            f"no stack tapdb-{cluster}: create it with `tapdb aurora create {cfg.env}`"
        )
    failing = stacks.failing_events(stacks.stack_events(cfn, info.stack_id)) if info.failed else []
    if args.json:
        common.print_json({**info.to_dict(), "failing_events": [e.line() for e in failing]})
        return 0
    reason = f" ({info.reason})" if info.reason else ""
    common.out(f"stack {info.name}: {info.status}{reason}")
    for key, value in info.outputs.items():
        common.out(f"  {key}: {value}")
    for event in failing:
        common.out(f"  failed: {event.line()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tapdb_core.aurora import aws, stacks

    target = _target(args, {})
    found = stacks.list_stacks(aws.client(target, "cloudformation"))
    if args.json:
        common.print_json({"region": target.region, "stacks": [s.to_dict() for s in found]})
        return 0
    if not found:
        common.out(f"no tapdb stacks in {target.region}")
        return 0
    for s in found:
        reason = f" ({s.reason})" if s.reason else ""
        endpoint = s.outputs.get("WriterEndpoint", "-")
        cost = s.tags.get("tapdb-cost-center", "-")
        common.out(f"{s.name}  {s.status}{reason}  {endpoint}  cost-center={cost}")
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    from tapdb_core.aurora.ca import ensure_ca_bundle
    from tapdb_core.aurora.connection import load_settings

    common.resolve_config(args, args.env)  # validates the name, warns on a readable file
    settings = load_settings(
        args.env, config_file=getattr(args, "config", None),
        database_name=getattr(args, "database_name", None),
    )  # fmt: skip
    host = (settings.reader_host or settings.host) if args.reader else settings.host
    rootcert = ""
    if settings.sslmode in ("verify-ca", "verify-full"):
        given = Path(settings.sslrootcert).expanduser() if settings.sslrootcert else None
        rootcert = str(ensure_ca_bundle(given))
    info = {**settings.to_dict(), "host": host, "sslrootcert": rootcert}
    token_cmd = (
        f"aws rds generate-db-auth-token --hostname {shlex.quote(host)} --port {settings.port} "
        f"--username {shlex.quote(settings.user)} --region {shlex.quote(settings.region)}"
    )
    if args.export:
        exports = {"PGHOST": host, "PGPORT": str(settings.port), "PGDATABASE": settings.database,
                   "PGUSER": settings.user, "PGSSLMODE": settings.sslmode}  # fmt: skip
        if rootcert:
            exports["PGSSLROOTCERT"] = rootcert
        for key, value in exports.items():
            common.out(f"export {key}={shlex.quote(value)}")
        if settings.auth == "iam":
            # the command, not a token: it is generated when the shell runs it
            common.out(f'export PGPASSWORD="$({token_cmd})"')
        return 0
    if args.json:
        common.print_json(info)
        return 0
    _print_connection(attrs.evolve(settings, host=host))
    if rootcert:
        common.out(f"  CA bundle: {rootcert}")
    if settings.auth == "iam":
        common.out(f"  password: a fresh IAM token per connection ({token_cmd})")
    else:
        common.out(f"  password: from Secrets Manager secret {settings.secret_arn}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from tapdb_core.aurora import aws, stacks

    cfg, section = _section(args)
    cluster = _cluster_of(args, section, cfg.env)
    target = _target(args, section)
    cfn = aws.client(target, "cloudformation")
    rds = aws.client(target, "rds")
    info = stacks.describe_stack(cfn, f"tapdb-{cluster}")
    if info is None:
        raise common.CliError(f"no stack tapdb-{cluster} in {target.region}")

    def confirm(stack: Any, owned: str | None) -> None:
        what = f"delete stack {stack.name} ({stack.status}) in {target.region}"
        if owned:
            what += f" and Aurora cluster {owned} (a final snapshot is kept)"
        protected = cfg.env in common.PROTECTED_ENVS
        common.gate(args, what, type_name=(owned or cluster) if protected else None)

    try:
        result = stacks.delete_stack(
            cfn, rds, info, confirm=confirm, wait=not args.no_wait,
            waiting=_waiting(args), on_event=_print_event,
        )  # fmt: skip
    except stacks.StackFailedError as exc:
        raise _failed(exc) from exc
    payload = attrs.asdict(result)
    if args.json:
        common.print_json(payload)
        return 0
    state = "deleted" if result.waited else "is being deleted"
    common.out(f"stack {result.stack} {state}")
    if result.protection_disabled:
        common.out(f"  deletion protection of cluster {result.cluster} was turned off first")
    if result.retained:
        common.out(f"  retained (delete them by hand): {', '.join(result.retained)}")
    return 0


# ------------------------------------------------------------------ bootstrap


def _ensure_stack(
    args: argparse.Namespace, cfg: Any, section: dict[str, Any]
) -> tuple[Any, Any, bool]:
    from tapdb_core.aurora import aws, stacks

    params = stack_parameters(args, section)
    target = _target(args, section)
    cfn = aws.client(target, "cloudformation")
    info = stacks.describe_stack(cfn, f"tapdb-{params.cluster_identifier}")
    created = False
    if info is None:
        params = _default_network(aws.client(target, "ec2"), params)
        _record(args, cfg, {"engine_type": "aurora", "cluster_id": params.cluster_identifier,
                            "region": target.region, "stack": f"tapdb-{params.cluster_identifier}"})  # fmt: skip
        info = _create_and_wait(args, cfn, params, cfg.env, wait=True)
        created = True
    else:
        try:
            stacks.reusable(info, cfg.env)
        except stacks.StackStateError as exc:
            raise common.CliError(str(exc)) from None
        if info.in_progress:
            try:
                settled = stacks.wait_for_stack(
                    cfn, info.stack_id, success=stacks.HEALTHY, waiting=_waiting(args),
                    on_event=_print_event,
                )  # fmt: skip
            except stacks.StackFailedError as exc:
                raise _failed(exc) from exc
            assert settled is not None  # gone_is_success is off
            info = settled
        common.progress(f"reusing stack {info.name} ({info.status})")
    return info, target, created


def _setup_database(settings: Any, target: Any) -> dict[str, Any]:
    """As the master user (password from the secret): database, schema, seed, app role."""
    import psycopg.sql as pgsql
    from sqlalchemy import text

    from tapdb_core import migrate, roles
    from tapdb_core.aurora import aws
    from tapdb_core.aurora.connection import SecretPasswordProvider, make_engine
    from tapdb_core.packs.seed import seed_packs

    if not settings.secret_arn:
        raise common.CliError("the stack has no SecretArn output: cannot log in as the master user")
    provider = SecretPasswordProvider(
        secrets=aws.client(target, "secretsmanager"), secret_id=settings.secret_arn
    )
    admin = settings.admin_user or settings.user
    maintenance = make_engine(settings, provider=provider, user=admin, database="postgres",
                              isolation_level="AUTOCOMMIT", poolclass=_null_pool())  # fmt: skip
    try:
        with maintenance.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": settings.database}
            ).first()
            if exists is None:
                common.progress(f"creating database {settings.database}")
                driver = conn.connection.driver_connection
                assert driver is not None
                driver.execute(
                    pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(settings.database))
                )
                common.had_effect("created a database")
    finally:
        maintenance.dispose()
    engine = make_engine(settings, provider=provider, user=admin, poolclass=_null_pool())
    try:
        with engine.begin() as conn:
            before = migrate.current_revision(conn)
            common.progress("migrating the schema")
            migrate.upgrade(conn)
            common.progress("seeding template packs")
            report = seed_packs(conn)
            after = migrate.current_revision(conn)
            roles.grant_roles(
                conn, app_role=settings.user if settings.auth == "iam" else "tapdb_app"
            )
            rds_iam = False
            if settings.auth == "iam":
                has_role = conn.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'")
                ).first()
                if has_role is not None:
                    conn.execute(text(f'GRANT rds_iam TO "{settings.user}"'))
                    rds_iam = True
                else:
                    common.warn(
                        "this server has no rds_iam role (not Aurora?): IAM login is not set up"
                    )
        common.had_effect("migrated and seeded")
    finally:
        engine.dispose()
    return {"database_created": exists is None, "revision_before": before, "revision": after,
            "templates": common.as_dict(report).get("counts", {}), "app_role": settings.user,
            "rds_iam": rds_iam}  # fmt: skip


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from tapdb_core.aurora.connection import settings_from_section
    from tapdb_core.roles import check_role_name

    cfg, section = _section(args)
    import tapdb_core.packs.seed  # noqa: F401  (fail before changing anything if missing)

    info, target, created = _ensure_stack(args, cfg, section)
    settings = settings_from_stack(cfg.env, info, target.region, args.sslmode)
    check_role_name(settings.user, "app role")
    path = _record(args, cfg, settings.to_section())
    # re-read: a TAPDB_<ENV>_HOST (say, a tunnel) still wins over the recorded endpoint
    settings = settings_from_section(cfg.env, {**settings.to_section(), **_overrides(args)})
    db = _setup_database(settings, target)
    result = {"env": cfg.env, "stack": info.name, "stack_status": info.status,
              "stack_created": created, "connection": settings.to_dict(),
              "config_file": str(path) if path else None, **db}  # fmt: skip
    if args.json:
        common.print_json(result)
        return 0
    common.out(f"tapdb environment {cfg.env} is ready on Aurora")
    common.out(f"  stack {info.name} ({'created' if created else 'reused'}, {info.status})")
    _print_connection(settings)
    common.out(
        f"  database {settings.database!r} ({'created' if db['database_created'] else 'existing'}), "
        f"schema {db['revision']}"
    )
    if db["rds_iam"]:
        common.out(f"  application role {settings.user!r} logs in with IAM tokens (rds_iam)")
    if path:
        common.out(f"  recorded in {path} (mode 0600)")
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    cfg = common.resolve_config(args, args.env)
    out: dict[str, Any] = {}
    for key in ("host", "port"):
        setting = cfg.settings[key]
        if setting.source.startswith("$"):
            out[key] = setting.value
    return out
