"""The CloudFormation template: cfn-lint clean on its defaults and on non-default
parameters substituted as literals (weak spots 3 and 9), the IAM policy names the
right attribute and is attachable (weak spot 2), every CLI flag reaches a parameter
(weak spot 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from tapdb_core.aurora import template as tpl
from tapdb_core.cli import aurora as aurora_cli
from tapdb_core.cli.main import main

cfnlint_api = pytest.importorskip("cfnlint.api")

VPC = "vpc-0123456789abcdef0"
SUBNETS = ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")
#: a few regions, so region-specific rules (instance classes, versions) are checked too
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]

DEFAULTS = tpl.StackParameters(cluster_identifier="lims", vpc_id=VPC, subnet_ids=SUBNETS)
NON_DEFAULT = tpl.StackParameters(
    cluster_identifier="lims-prod-2",
    vpc_id=VPC,
    subnet_ids=SUBNETS,
    engine_version="16.9",
    instance_class="db.r7g.xlarge",
    reader_count=3,
    master_username="lims_admin",
    app_username="lims_app",
    database_name="lims",
    ingress_cidr="192.168.0.0/16",
    source_security_group_id="sg-0123456789abcdef0",
    publicly_accessible=True,
    deletion_protection=False,
    iam_auth=True,
    iam_role_names=("lims-app-role", "lims-batch-role"),
    cost_center="lab-7",
    project="lims",
)
NO_IAM = attrs.evolve(
    NON_DEFAULT, iam_auth=False, reader_count=1, ingress_cidr="", iam_role_names=()
)


def lint(template: dict[str, Any]) -> list[str]:
    config = cfnlint_api.ManualArgs(regions=REGIONS)
    matches = cfnlint_api.lint(json.dumps(template, indent=1), config=config)
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def test_shipped_template_is_lint_clean() -> None:
    assert lint(tpl.load_template()) == []


@pytest.mark.parametrize(
    "params", [DEFAULTS, NON_DEFAULT, NO_IAM], ids=["defaults", "non-default", "no-iam"]
)
def test_literal_template_is_lint_clean(params: tpl.StackParameters) -> None:
    # literals let cfn-lint check the engine version and instance class actually used
    assert lint(tpl.literal(params)) == []
    assert lint(tpl.render(params)) == []


def test_lint_catches_the_original_policy_attribute() -> None:
    """The check above can fail: the original's DbClusterResourceId is E1019."""
    broken = tpl.literal(DEFAULTS)
    policy = broken["Resources"]["DatabaseIAMPolicy"]["Properties"]["PolicyDocument"]
    resource = policy["Statement"][0]["Resource"]
    resource["Fn::Sub"] = resource["Fn::Sub"].replace("DBClusterResourceId", "DbClusterResourceId")
    assert any(line.startswith("E1019") for line in lint(broken))


def test_lint_catches_an_unknown_engine_version_only_as_literal() -> None:
    old = attrs.evolve(DEFAULTS, engine_version="99.1")
    assert lint(tpl.render(old)) == []  # a Ref hides the value from the rules
    assert lint(tpl.literal(old)) != []


def test_policy_names_cluster_resource_id_and_app_user_and_attaches_to_roles() -> None:
    body = tpl.literal(NON_DEFAULT)
    policy = body["Resources"]["DatabaseIAMPolicy"]["Properties"]
    statement = policy["PolicyDocument"]["Statement"][0]
    assert statement["Action"] == "rds-db:connect"
    assert "${AuroraCluster.DBClusterResourceId}/lims_app" in statement["Resource"]["Fn::Sub"]
    assert policy["Roles"] == ["lims-app-role", "lims-batch-role"]
    cluster = body["Resources"]["AuroraCluster"]["Properties"]
    assert cluster["EnableIAMDatabaseAuthentication"] == "true"
    assert cluster["StorageEncrypted"] is True
    assert cluster["DeletionProtection"] == "false"
    assert body["Outputs"]["SecretArn"] == {"Value": {"Ref": "MasterSecret"}}
    assert "PolicyArn" not in tpl.literal(NO_IAM)["Outputs"]
    assert "DatabaseIAMPolicy" not in tpl.literal(NO_IAM)["Resources"]
    assert (
        tpl.literal(NO_IAM)["Resources"]["AuroraCluster"]["Properties"][
            "EnableIAMDatabaseAuthentication"
        ]
        == "false"
    )


def test_readers_follow_the_count_and_ingress_the_cidr_or_group() -> None:
    body = tpl.literal(NON_DEFAULT)
    readers = [n for n in body["Resources"] if n.startswith("ReaderInstance")]
    assert readers == ["ReaderInstance1", "ReaderInstance2", "ReaderInstance3"]
    assert body["Resources"]["CidrIngress"]["Properties"]["CidrIp"] == "192.168.0.0/16"
    assert body["Resources"]["SourceGroupIngress"]["Properties"]["SourceSecurityGroupId"] == (
        "sg-0123456789abcdef0"
    )
    none = tpl.literal(NO_IAM)
    assert [n for n in none["Resources"] if n.startswith("ReaderInstance")] == ["ReaderInstance1"]
    assert "CidrIngress" not in none["Resources"]
    assert not [n for n in tpl.literal(DEFAULTS)["Resources"] if n.startswith("Reader")]


def test_every_taggable_resource_is_tagged() -> None:
    body = tpl.literal(NON_DEFAULT)
    untaggable = {"AWS::SecretsManager::SecretTargetAttachment", "AWS::IAM::ManagedPolicy",
                  "AWS::EC2::SecurityGroupIngress"}  # fmt: skip
    for name, resource in body["Resources"].items():
        if resource["Type"] in untaggable:
            continue
        tags = {t["Key"]: t["Value"] for t in resource["Properties"]["Tags"]}
        assert tags["tapdb-cost-center"] == "lab-7", name
        assert tags["tapdb-project"] == "lims", name


def test_bad_parameter_values_are_refused() -> None:
    with pytest.raises(tpl.TemplateError, match="IngressCIDR"):
        attrs.evolve(DEFAULTS, ingress_cidr="everyone").validate()
    with pytest.raises(tpl.TemplateError, match="ReaderCount"):
        tpl.parse_overrides(["ReaderCount=9"])
    with pytest.raises(tpl.TemplateError, match="KEY=VALUE"):
        tpl.parse_overrides(["NoSuchKey=1"])


#: every stack flag of the CLI and what it must set (weak spot 1)
FLAG_CASES = {
    "cluster": (["--cluster", "other"], "ClusterIdentifier", "other"),
    "vpc_id": (["--vpc-id", "vpc-0aaaaaaaaaaaaaaaa"], "VpcId", "vpc-0aaaaaaaaaaaaaaaa"),
    "subnet_ids": (["--subnet-ids", "subnet-1,subnet-2"], "SubnetIds", "subnet-1,subnet-2"),
    "engine_version": (["--engine-version", "16.9"], "EngineVersion", "16.9"),
    "instance_class": (["--instance-class", "db.r7g.large"], "InstanceClass", "db.r7g.large"),
    "readers": (["--readers", "2"], "ReaderCount", "2"),
    "master_user": (["--master-user", "boss"], "MasterUsername", "boss"),
    "app_user": (["--app-user", "worker"], "AppUsername", "worker"),
    "database": (["--database", "lims"], "DatabaseName", "lims"),
    "cidr": (["--cidr", "172.16.0.0/12"], "IngressCIDR", "172.16.0.0/12"),
    "source_security_group": (
        ["--source-security-group", "sg-0123456789abcdef0"],
        "SourceSecurityGroupId",
        "sg-0123456789abcdef0",
    ),
    "public": (["--public"], "PubliclyAccessible", "true"),
    "deletion_protection": (["--no-deletion-protection"], "DeletionProtection", "false"),
    "iam_auth": (["--no-iam-auth"], "IamAuth", "false"),
    "iam_roles": (["--iam-role", "r1", "--iam-role", "r2"], "IamRoleNames", "r1,r2"),
    "cost_center": (["--cost-center", "lab"], "CostCenter", "lab"),
    "project": (["--project", "p"], "Project", "p"),
}


def test_every_flag_is_covered() -> None:
    assert set(FLAG_CASES) == set(aurora_cli.FLAG_PARAMETERS)


@pytest.mark.parametrize("dest", sorted(FLAG_CASES))
def test_flag_reaches_the_template(
    dest: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(tmp_path / "none.json"))
    flags, parameter, expected = FLAG_CASES[dest]
    base = [] if dest == "cluster" else ["--cluster", "lims"]
    assert main(["aurora", "template", "dev", *base, *flags]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["Parameters"][parameter]["Default"] == expected


def test_template_param_override_and_literal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(tmp_path / "none.json"))
    argv = ["aurora", "template", "dev", "--cluster", "lims", "--readers", "1",
            "--param", "ReaderCount=2", "--vpc-id", VPC, "--subnet-ids", ",".join(SUBNETS),
            "--literal"]  # fmt: skip
    assert main(argv) == 0
    body = json.loads(capsys.readouterr().out)
    assert "Parameters" not in body
    assert {"ReaderInstance1", "ReaderInstance2"} <= set(body["Resources"])
    assert lint(body) == []
    assert main(["aurora", "template", "dev", "--param", "Nope=1", "--cluster", "x"]) == 2


def test_standin_keeps_parameters_and_outputs() -> None:
    stand = tpl.standin(DEFAULTS, {"WriterEndpoint": "127.0.0.1", "Port": "6543"})
    assert set(stand["Parameters"]) == set(tpl.load_template()["Parameters"])
    assert set(stand["Outputs"]) == set(tpl.load_template()["Outputs"])
    assert {r["Type"] for r in stand["Resources"].values()} <= tpl.STANDIN_TYPES
    assert stand["Outputs"]["WriterEndpoint"]["Value"] == "127.0.0.1"
    assert "AuroraCluster" not in json.dumps(stand)
