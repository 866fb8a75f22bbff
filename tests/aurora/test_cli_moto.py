"""``tapdb aurora`` and ``tapdb bootstrap aurora`` against moto in server mode: the
stack lifecycle with a stand-in template from the same renderer (moto cannot
provision the cluster or the secret), text and --json output, the config file,
and the cluster's deletion protection through moto's RDS API."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from sqlalchemy import create_engine, text

from tapdb_core.aurora import aws, stacks
from tapdb_core.aurora import template as tpl
from tapdb_core.cli.main import main
from tapdb_core.errors import RefusedError
from tapdb_core.pgruntime import LocalCluster
from tests.aurora.conftest import REGION, SUPERUSER


def standin_file(tmp_path: Path, endpoints: dict[str, str] | None = None) -> str:
    path = tmp_path / "standin.json"
    params = tpl.StackParameters(cluster_identifier="placeholder")
    path.write_text(json.dumps(tpl.standin(params, endpoints)))
    return str(path)


def place_ca_bundle(home: Path) -> None:
    certifi = pytest.importorskip("certifi")
    (home / "certs").mkdir(mode=0o700)
    (home / "certs" / "rds-global-bundle.pem").write_bytes(Path(certifi.where()).read_bytes())


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def config_section(home: Path) -> dict[str, Any]:
    path = home / "tapdb-config.json"
    assert path.stat().st_mode & 0o777 == 0o600
    section: dict[str, Any] = json.loads(path.read_text())["environments"]["dev"]
    return section


def test_lifecycle_json(
    aws_env: str, tapdb_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    place_ca_bundle(tapdb_home)
    body = standin_file(tmp_path)
    created = run_json(
        capsys,
        "aurora",
        "create",
        "dev",
        "--cluster",
        "lims",
        "--database",
        "lims",
        "--cidr",
        "192.168.0.0/16",
        "--no-iam-auth",
        "--readers",
        "2",
        "--cost-center",
        "lab-7",
        "--template-file",
        body,
        "--json",
    )
    stack = created["stack"]
    assert stack["status"] == "CREATE_COMPLETE"
    # every flag reached the stack (weak spot 1)
    assert stack["parameters"]["IngressCIDR"] == "192.168.0.0/16"
    assert stack["parameters"]["IamAuth"] == "false"
    assert stack["parameters"]["ReaderCount"] == "2"
    assert stack["tags"]["tapdb-cost-center"] == "lab-7" and stack["tags"]["tapdb-env"] == "dev"
    # the database the stack made is the one recorded (weak spot 8)
    assert stack["outputs"]["DatabaseName"] == "lims"
    section = config_section(tapdb_home)
    assert section["database"] == "lims" and section["engine_type"] == "aurora"
    assert section["host"] == stack["outputs"]["WriterEndpoint"]
    assert section["reader_host"] == stack["outputs"]["ReaderEndpoint"]
    assert section["region"] == REGION and section["cluster_id"] == "lims"
    assert section["auth"] == "secret" and section["user"] == "tapdb_admin"
    assert section["secret_arn"] == stack["outputs"]["SecretArn"]
    assert section["sslmode"] == "verify-full" and "password" not in section
    # moto saw the same (a real CloudFormation API)
    cfn = aws.client(aws.aws_target(), "cloudformation")
    raw = cfn.describe_stacks(StackName="tapdb-lims")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in raw["Parameters"]}[
        "DatabaseName"
    ] == "lims"

    status = run_json(capsys, "aurora", "status", "dev", "--json")
    assert status["status"] == "CREATE_COMPLETE" and status["failing_events"] == []
    listed = run_json(capsys, "aurora", "list", "--json")
    assert [s["stack"] for s in listed["stacks"]] == ["tapdb-lims"] and listed["region"] == REGION
    info = run_json(capsys, "aurora", "connect", "dev", "--json")
    assert info["database"] == "lims" and info["sslrootcert"].endswith("rds-global-bundle.pem")
    reader = run_json(capsys, "aurora", "connect", "dev", "--reader", "--json")
    assert reader["host"] == section["reader_host"]

    # delete: not on a terminal and without --force it is refused, nothing changes
    assert main(["aurora", "delete", "dev"]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert stacks.describe_stack(cfn, "tapdb-lims") is not None
    deleted = run_json(capsys, "aurora", "delete", "dev", "--force", "--json")
    assert deleted["stack"] == "tapdb-lims" and deleted["retained"] == []
    assert stacks.describe_stack(cfn, "tapdb-lims") is None
    assert run_json(capsys, "aurora", "list", "--json")["stacks"] == []


def test_lifecycle_text(
    aws_env: str, tapdb_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    place_ca_bundle(tapdb_home)
    body = standin_file(tmp_path)
    assert main(["aurora", "create", "dev", "--cluster", "lims", "--template-file", body]) == 0
    out = capsys.readouterr()
    assert "stack tapdb-lims is CREATE_COMPLETE" in out.out
    assert "auth: iam" in out.out and "next: tapdb bootstrap aurora dev" in out.out
    assert "tapdb-lims" in out.err  # stack events as progress lines
    assert main(["aurora", "create", "dev", "--cluster", "lims", "--template-file", body]) == 1
    assert "already exists (CREATE_COMPLETE)" in capsys.readouterr().err
    assert main(["aurora", "status", "dev"]) == 0
    assert "stack tapdb-lims: CREATE_COMPLETE" in capsys.readouterr().out
    assert main(["aurora", "list"]) == 0
    assert "tapdb-lims  CREATE_COMPLETE" in capsys.readouterr().out
    assert main(["aurora", "connect", "dev", "--export"]) == 0
    exports = capsys.readouterr().out
    assert "export PGDATABASE=tapdb" in exports and "export PGSSLMODE=verify-full" in exports
    assert "PGSSLROOTCERT=" in exports
    assert 'export PGPASSWORD="$(aws rds generate-db-auth-token' in exports
    assert "X-Amz-Signature" not in exports  # a command, never a token
    assert main(["aurora", "delete", "dev", "--force"]) == 0
    assert "stack tapdb-lims deleted" in capsys.readouterr().out


def test_no_region_is_a_usage_error(
    aws_env: str,
    tapdb_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_REGION")
    assert main(["aurora", "list"]) == 2
    assert "no AWS region" in capsys.readouterr().err
    assert main(["aurora", "list", "--region", "ap-southeast-2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "ap-southeast-2"


def make_cluster(rds: Any, name: str) -> None:
    rds.create_db_cluster(
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        MasterUsername="tapdb_admin",
        MasterUserPassword="not-a-real-one-123",
        DeletionProtection=True,
    )


def protected(rds: Any, name: str) -> bool:
    return bool(
        rds.describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]["DeletionProtection"]
    )


def test_deletion_protection_off_only_after_confirmation_and_only_for_its_cluster(
    aws_env: str,
) -> None:
    target = aws.aws_target()
    rds = aws.client(target, "rds")  # moto: models deletion protection
    make_cluster(rds, "alpha")
    make_cluster(rds, "beta")
    cfn = aws.client(target, "cloudformation")
    stack_id = "arn:aws:cloudformation:eu-west-1:123456789012:stack/tapdb-alpha/1"
    owned = {
        "StackResourceSummaries": [
            {
                "LogicalResourceId": "AuroraCluster",
                "PhysicalResourceId": "alpha",
                "ResourceType": "AWS::RDS::DBCluster",
                "ResourceStatus": "CREATE_COMPLETE",
                "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
            }
        ]
    }
    info = stacks.StackInfo(name="tapdb-alpha", stack_id=stack_id, status="CREATE_COMPLETE")

    def decline(stack: stacks.StackInfo, cluster: str | None) -> None:
        raise RefusedError("aborted")

    with Stubber(cfn) as stub:  # moto's CloudFormation cannot own an Aurora cluster
        stub.add_response("list_stack_resources", owned, {"StackName": stack_id})
        with pytest.raises(RefusedError):
            stacks.delete_stack(cfn, rds, info, confirm=decline)
        assert protected(rds, "alpha") and protected(rds, "beta")
        stub.add_response("list_stack_resources", owned, {"StackName": stack_id})
        stub.add_response("delete_stack", {}, {"StackName": stack_id})
        stub.add_client_error(
            "describe_stacks", "ValidationError", "Stack with id x does not exist", 400
        )
        result = stacks.delete_stack(
            cfn, rds, info, confirm=lambda s, c: None, waiting=stacks.Waiting(interval=0)
        )
    assert result.cluster == "alpha" and result.protection_disabled
    assert not protected(rds, "alpha") and protected(rds, "beta")
    with pytest.raises(Exception, match=r"(?i)deletion protection"):
        rds.delete_db_cluster(DBClusterIdentifier="beta", SkipFinalSnapshot=True)


def test_bootstrap_aurora_creates_then_reuses(
    aws_env: str,
    tapdb_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    password_cluster: tuple[LocalCluster, str],
) -> None:
    cluster, password = password_cluster
    admin = create_engine(
        cluster.url(user=SUPERUSER, password=password), isolation_level="AUTOCOMMIT"
    )
    database = f"lims_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'")).first() is None:
            conn.execute(text("CREATE ROLE rds_iam NOLOGIN"))  # as on Aurora
    sm = aws.client(aws.aws_target(), "secretsmanager")
    arn = sm.create_secret(
        Name="lims-master-password",
        SecretString=json.dumps({"username": SUPERUSER, "password": password}),
    )["ARN"]
    body = standin_file(
        tmp_path,
        {
            "WriterEndpoint": "127.0.0.1",
            "ReaderEndpoint": "127.0.0.1",
            "Port": str(cluster.port),
            "SecretArn": arn,
        },
    )
    argv = [
        "bootstrap",
        "aurora",
        "dev",
        "--cluster",
        "lims",
        "--region",
        REGION,
        "--database",
        database,
        "--template-file",
        body,
        "--sslmode",
        "disable",
        "--json",
    ]
    try:
        first = run_json(capsys, *argv)
        assert first["stack_created"] and first["database_created"] and first["rds_iam"]
        assert first["connection"]["database"] == database
        section = config_section(tapdb_home)
        assert (
            section["secret_arn"] == arn
            and section["auth"] == "iam"
            and section["user"] == "tapdb_app"
        )
        with admin.connect() as conn:
            member = conn.execute(
                text("SELECT pg_has_role('tapdb_app', 'rds_iam', 'member')")
            ).scalar()
            assert member is True
        db = create_engine(cluster.url(dbname=database, user=SUPERUSER, password=password))
        with db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM generic_template")).scalar() > 0
        db.dispose()
        again = run_json(capsys, *argv)
        assert not again["stack_created"] and not again["database_created"]
        assert again["revision"] == first["revision"]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
