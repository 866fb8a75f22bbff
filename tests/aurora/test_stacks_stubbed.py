"""Failure paths moto does not model, with botocore's Stubber on real boto3 clients:
CREATE_FAILED with events, ROLLBACK_COMPLETE, throttling, wait timeouts, delete
failures. Clocks and sleeps are injected, so these take milliseconds."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tapdb_core.aurora import aws, stacks
from tapdb_core.cli.main import main
from tapdb_core.errors import RefusedError

REGION = "eu-west-1"
STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/tapdb-lims/0b1c"
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


_SESSION = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
)


def make_client(service: str) -> Any:
    # one session: its loaders cache the service models, so clients come quickly
    return _SESSION.client(service, endpoint_url="http://127.0.0.1:9")  # never reached


class FakeTime:
    """An injected clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def cfn() -> Iterator[tuple[Any, Stubber]]:
    client = make_client("cloudformation")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def stack(status: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "StackName": "tapdb-lims",
        "StackId": STACK_ID,
        "CreationTime": T0,
        "StackStatus": status,
        "Parameters": [{"ParameterKey": "ClusterIdentifier", "ParameterValue": "lims"}],
        "Tags": [{"Key": "tapdb-cluster", "Value": "lims"}],
    }
    if reason:
        raw["StackStatusReason"] = reason
    raw.update(extra)
    return raw


def event(
    n: int, logical: str, status: str, reason: str = "", kind: str = "AWS::RDS::DBCluster"
) -> dict[str, Any]:
    raw = {
        "StackId": STACK_ID,
        "EventId": f"e{n}",
        "StackName": "tapdb-lims",
        "LogicalResourceId": logical,
        "ResourceType": kind,
        "Timestamp": T0 + dt.timedelta(seconds=n),
        "ResourceStatus": status,
    }
    if reason:
        raw["ResourceStatusReason"] = reason
    return raw


def poll(stubber: Stubber, status: str, events: list[dict[str, Any]], reason: str = "") -> None:
    stubber.add_response(
        "describe_stacks", {"Stacks": [stack(status, reason)]}, {"StackName": STACK_ID}
    )
    # the API lists newest first
    stubber.add_response(
        "describe_stack_events", {"StackEvents": list(reversed(events))}, {"StackName": STACK_ID}
    )


def test_create_failed_raises_with_the_failing_events(
    cfn: tuple[Any, Stubber], fake_time: FakeTime
) -> None:
    client, stubber = cfn
    e1 = event(
        1, "tapdb-lims", "CREATE_IN_PROGRESS", "User Initiated", "AWS::CloudFormation::Stack"
    )
    e2 = event(2, "AuroraCluster", "CREATE_IN_PROGRESS")
    e3 = event(
        3, "AuroraCluster", "CREATE_FAILED", "Cannot find version 99.1 for aurora-postgresql"
    )
    e4 = event(
        4, "WriterInstance", "CREATE_FAILED", "Resource creation cancelled", "AWS::RDS::DBInstance"
    )
    e5 = event(5, "tapdb-lims", "ROLLBACK_COMPLETE", "", "AWS::CloudFormation::Stack")
    poll(stubber, "CREATE_IN_PROGRESS", [e1, e2])
    poll(stubber, "ROLLBACK_IN_PROGRESS", [e1, e2, e3, e4])
    poll(stubber, "ROLLBACK_COMPLETE", [e1, e2, e3, e4, e5])
    seen: list[stacks.StackEvent] = []
    waiting = stacks.Waiting(interval=10, clock=fake_time.clock, sleep=fake_time.sleep)
    with pytest.raises(stacks.StackFailedError) as caught:
        stacks.wait_for_stack(
            client,
            STACK_ID,
            success=frozenset({"CREATE_COMPLETE"}),
            waiting=waiting,
            on_event=seen.append,
        )
    assert [e.logical_id for e in caught.value.events] == ["AuroraCluster"]
    assert "Cannot find version 99.1" in str(caught.value)
    assert "ROLLBACK_COMPLETE" in str(caught.value)
    assert [e.event_id for e in seen] == ["e1", "e2", "e3", "e4", "e5"]  # each once, in order
    assert fake_time.sleeps == [10, 10]


def test_default_wait_is_45_minutes_and_a_timeout_is_an_error(
    cfn: tuple[Any, Stubber], fake_time: FakeTime
) -> None:
    assert stacks.Waiting().timeout == 45 * 60
    client, stubber = cfn
    for _ in range(4):
        poll(stubber, "CREATE_IN_PROGRESS", [event(1, "AuroraCluster", "CREATE_IN_PROGRESS")])
    waiting = stacks.Waiting(timeout=30, interval=10, clock=fake_time.clock, sleep=fake_time.sleep)
    with pytest.raises(stacks.WaitTimeoutError, match="still CREATE_IN_PROGRESS after 30 s"):
        stacks.wait_for_stack(
            client, STACK_ID, success=frozenset({"CREATE_COMPLETE"}), waiting=waiting
        )
    assert fake_time.now == 30


def test_throttling_is_retried_then_reported(cfn: tuple[Any, Stubber], fake_time: FakeTime) -> None:
    client, stubber = cfn
    stubber.add_client_error("describe_stacks", "Throttling", "Rate exceeded", 400)
    stubber.add_client_error("describe_stacks", "Throttling", "Rate exceeded", 400)
    stubber.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE")]})
    info = stacks.describe_stack(client, "tapdb-lims", sleep=fake_time.sleep)
    assert info is not None and info.status == "CREATE_COMPLETE"
    assert len(fake_time.sleeps) == 2
    for _ in range(aws.DEFAULT_CALL_RETRIES + 1):
        stubber.add_client_error("describe_stacks", "Throttling", "Rate exceeded", 400)
    with pytest.raises(aws.AwsError, match="DescribeStacks failed: Throttling: Rate exceeded"):
        stacks.describe_stack(client, "tapdb-lims", sleep=fake_time.sleep)


def test_missing_stack_is_none_but_other_errors_are_errors(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    stubber.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id x does not exist", 400
    )
    assert stacks.describe_stack(client, "x") is None
    stubber.add_client_error("describe_stacks", "AccessDenied", "not allowed", 403)
    with pytest.raises(aws.AwsError, match="AccessDenied"):
        stacks.describe_stack(client, "x")


def resources(*rows: tuple[str, str, str, str]) -> dict[str, Any]:
    return {
        "StackResourceSummaries": [
            {
                "LogicalResourceId": lid,
                "PhysicalResourceId": pid,
                "ResourceType": kind,
                "ResourceStatus": status,
                "LastUpdatedTimestamp": T0,
            }
            for lid, pid, kind, status in rows
        ]
    }


HEALTHY_RESOURCES = resources(
    ("AuroraCluster", "lims", "AWS::RDS::DBCluster", "CREATE_COMPLETE"),
    ("ClusterSecurityGroup", "sg-1", "AWS::EC2::SecurityGroup", "CREATE_COMPLETE"),
)


def test_delete_of_a_healthy_stack_sends_no_retain_resources_and_a_failure_is_an_error(
    cfn: tuple[Any, Stubber], fake_time: FakeTime
) -> None:
    client, stubber = cfn
    rds = make_client("rds")
    with Stubber(rds) as rds_stub:
        stubber.add_response("list_stack_resources", HEALTHY_RESOURCES, {"StackName": STACK_ID})
        rds_stub.add_response(
            "describe_db_clusters",
            {"DBClusters": [{"DBClusterIdentifier": "lims", "DeletionProtection": True}]},
            {"DBClusterIdentifier": "lims"},
        )
        rds_stub.add_response(
            "modify_db_cluster",
            {"DBCluster": {"DBClusterIdentifier": "lims"}},
            {"DBClusterIdentifier": "lims", "DeletionProtection": False, "ApplyImmediately": True},
        )
        # exactly these parameters: RetainResources would be rejected for this stack
        stubber.add_response("delete_stack", {}, {"StackName": STACK_ID})
        poll(stubber, "DELETE_IN_PROGRESS", [event(1, "AuroraCluster", "DELETE_IN_PROGRESS")])
        poll(
            stubber,
            "DELETE_FAILED",
            [
                event(1, "AuroraCluster", "DELETE_IN_PROGRESS"),
                event(
                    2,
                    "ClusterSecurityGroup",
                    "DELETE_FAILED",
                    "has a dependent object",
                    "AWS::EC2::SecurityGroup",
                ),
            ],
            reason="The following resource(s) failed to delete: [ClusterSecurityGroup]",
        )
        info = stacks.StackInfo(name="tapdb-lims", stack_id=STACK_ID, status="CREATE_COMPLETE")
        waiting = stacks.Waiting(interval=5, clock=fake_time.clock, sleep=fake_time.sleep)
        with pytest.raises(stacks.StackFailedError, match="has a dependent object"):
            stacks.delete_stack(client, rds, info, confirm=lambda i, c: None, waiting=waiting)
        rds_stub.assert_no_pending_responses()


def test_delete_of_a_delete_failed_stack_retains_only_the_failed_resources(
    cfn: tuple[Any, Stubber], fake_time: FakeTime
) -> None:
    client, stubber = cfn
    failed = resources(
        ("AuroraCluster", "lims", "AWS::RDS::DBCluster", "DELETE_COMPLETE"),
        ("ClusterSecurityGroup", "sg-1", "AWS::EC2::SecurityGroup", "DELETE_FAILED"),
        ("DBSubnetGroup", "sn", "AWS::RDS::DBSubnetGroup", "DELETE_COMPLETE"),
    )
    stubber.add_response("list_stack_resources", failed, {"StackName": STACK_ID})
    stubber.add_response("list_stack_resources", failed, {"StackName": STACK_ID})
    stubber.add_response(
        "delete_stack", {}, {"StackName": STACK_ID, "RetainResources": ["ClusterSecurityGroup"]}
    )
    stubber.add_client_error(
        "describe_stacks", "ValidationError", f"Stack with id {STACK_ID} does not exist", 400
    )
    info = stacks.StackInfo(name="tapdb-lims", stack_id=STACK_ID, status="DELETE_FAILED")
    waiting = stacks.Waiting(interval=5, clock=fake_time.clock, sleep=fake_time.sleep)
    result = stacks.delete_stack(
        client, make_client("rds"), info, confirm=lambda i, c: None, waiting=waiting
    )
    assert result.retained == ("ClusterSecurityGroup",)
    assert result.cluster is None and not result.protection_disabled


def test_api_error_during_delete_wait_is_not_success(
    cfn: tuple[Any, Stubber], fake_time: FakeTime
) -> None:
    client, stubber = cfn
    stubber.add_response("list_stack_resources", resources(), {"StackName": STACK_ID})
    stubber.add_response("delete_stack", {}, {"StackName": STACK_ID})
    stubber.add_client_error(
        "describe_stacks",
        "ExpiredToken",
        "The security token included in the request is expired",
        403,
    )
    info = stacks.StackInfo(name="tapdb-lims", stack_id=STACK_ID, status="CREATE_COMPLETE")
    waiting = stacks.Waiting(interval=5, clock=fake_time.clock, sleep=fake_time.sleep)
    with pytest.raises(aws.AwsError, match="ExpiredToken"):
        stacks.delete_stack(
            client, make_client("rds"), info, confirm=lambda i, c: None, waiting=waiting
        )


def test_declined_delete_changes_nothing(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    rds = make_client("rds")
    stubber.add_response("list_stack_resources", HEALTHY_RESOURCES, {"StackName": STACK_ID})
    asked: list[str | None] = []

    def decline(info: stacks.StackInfo, cluster: str | None) -> None:
        asked.append(cluster)
        raise RefusedError("aborted: not confirmed; nothing was changed")

    info = stacks.StackInfo(name="tapdb-lims", stack_id=STACK_ID, status="CREATE_COMPLETE")
    with Stubber(rds) as rds_stub, pytest.raises(RefusedError):
        # no rds response queued: a ModifyDBCluster call would fail the test
        stacks.delete_stack(client, rds, info, confirm=decline)
    rds_stub.assert_no_pending_responses()
    assert asked == ["lims"]


def test_reusable_refuses_dead_ends_naming_the_fix() -> None:
    for status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"):
        info = stacks.StackInfo(name="tapdb-lims", stack_id=STACK_ID, status=status, reason="boom")
        with pytest.raises(stacks.StackStateError, match=r"tapdb aurora delete dev"):
            stacks.reusable(info, "dev")
    for status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "CREATE_IN_PROGRESS"):
        stacks.reusable(stacks.StackInfo(name="n", stack_id="i", status=status), "dev")


@pytest.fixture
def stubbed_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[dict[str, Stubber]]:
    """The CLI with its boto3 clients stubbed (real clients, canned responses)."""
    clients = {
        name: make_client(name) for name in ("cloudformation", "rds", "ec2", "secretsmanager")
    }
    stubs = {name: Stubber(c) for name, c in clients.items()}
    monkeypatch.setattr(aws, "client", lambda target, service: clients[service])
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(tmp_path / "tapdb-config.json"))
    monkeypatch.setenv("TAPDB_AURORA_POLL_SECONDS", "0")
    monkeypatch.setenv("AWS_REGION", REGION)
    for s in stubs.values():
        s.activate()
    yield stubs
    for s in stubs.values():
        s.assert_no_pending_responses()
        s.deactivate()


def test_cli_bootstrap_refuses_rollback_complete(
    stubbed_cli: dict[str, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    stubbed_cli["cloudformation"].add_response(
        "describe_stacks",
        {
            "Stacks": [
                stack(
                    "ROLLBACK_COMPLETE",
                    "The following resource(s) failed to create: [AuroraCluster]",
                )
            ]
        },
    )
    assert main(["bootstrap", "aurora", "dev", "--cluster", "lims"]) == 1
    err = capsys.readouterr().err
    assert "ROLLBACK_COMPLETE" in err and "failed to create: [AuroraCluster]" in err
    assert "tapdb aurora delete dev" in err


def test_cli_create_failure_prints_failing_events_and_exits_1(
    stubbed_cli: dict[str, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    cfn = stubbed_cli["cloudformation"]
    cfn.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id tapdb-lims does not exist", 400
    )
    cfn.add_response(
        "create_stack",
        {"StackId": STACK_ID},
        {
            "StackName": "tapdb-lims",
            "TemplateBody": ANY,
            "Parameters": ANY,
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Tags": ANY,
        },
    )
    e3 = event(
        3, "AuroraCluster", "CREATE_FAILED", "DBSubnetGroup doesn't meet AZ coverage requirement"
    )
    poll(cfn, "ROLLBACK_COMPLETE", [e3])
    argv = [
        "aurora",
        "create",
        "dev",
        "--cluster",
        "lims",
        "--vpc-id",
        "vpc-0123456789abcdef0",
        "--subnet-ids",
        "subnet-1,subnet-2",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "AZ coverage requirement" in err
    assert "tapdb: error: stack tapdb-lims is ROLLBACK_COMPLETE" in err


def test_cli_list_shows_in_progress_and_failed_stacks_across_pages(
    stubbed_cli: dict[str, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    cfn = stubbed_cli["cloudformation"]
    first = [
        stack("CREATE_IN_PROGRESS", "User Initiated", StackName="tapdb-a"),
        {**stack("CREATE_COMPLETE"), "StackName": "someone-else", "Tags": []},
    ]
    second = [
        stack(
            "ROLLBACK_COMPLETE",
            "The following resource(s) failed to create: [AuroraCluster]",
            StackName="tapdb-b",
        ),
        stack("CREATE_COMPLETE", StackName="tapdb-c"),
    ]
    cfn.add_response("describe_stacks", {"Stacks": first, "NextToken": "page2"}, {})
    cfn.add_response("describe_stacks", {"Stacks": second}, {"NextToken": "page2"})
    assert main(["aurora", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["stacks"]
    assert [(s["stack"], s["status"]) for s in listed] == [
        ("tapdb-a", "CREATE_IN_PROGRESS"),
        ("tapdb-b", "ROLLBACK_COMPLETE"),
        ("tapdb-c", "CREATE_COMPLETE"),
    ]
    assert "failed to create" in listed[1]["reason"]
