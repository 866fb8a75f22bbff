"""Stack operations over a CloudFormation (and RDS) client: create, wait, describe,
list, delete. Typed functions; the CLI (``tapdb aurora``) is a thin layer over them.

Waiting polls ``DescribeStacks`` and ``DescribeStackEvents`` (each new event is
handed to ``on_event`` as it arrives) with an injectable clock and sleep; a stack
that ends anywhere but the wanted state raises :class:`StackFailedError` carrying
the failing resource events. An API error while waiting is an error, never
taken for success; only "the stack does not exist" ends a delete-wait.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from tapdb_core.aurora import aws
from tapdb_core.aurora.template import STACK_PREFIX, StackParameters, render, stack_name

#: default for create/delete waits: an Aurora cluster and its instances take 15-30 minutes
DEFAULT_TIMEOUT: Final = 45 * 60.0
DEFAULT_INTERVAL: Final = 15.0
HEALTHY: Final = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
)
#: stacks that cannot be updated or reused: only deleting them helps
DEAD_ENDS: Final = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"})
TAG_CLUSTER: Final = "tapdb-cluster"
TAG_ENV: Final = "tapdb-env"
CAPABILITIES: Final = ("CAPABILITY_NAMED_IAM",)


class StackError(aws.AwsError):
    """A stack operation did not reach the wanted state."""


class StackFailedError(StackError):
    """The stack ended in a failed state; ``events`` are the failing resource events."""

    def __init__(self, message: str, events: Sequence[StackEvent] = ()) -> None:
        super().__init__(message)
        self.events = tuple(events)


class WaitTimeoutError(StackError):
    """The stack was still in progress when the wait ran out (it goes on in AWS)."""


class StackStateError(StackError):
    """The stack is in a state this operation refuses (the message names the fix)."""


class StackNotFoundError(StackError):
    """No such stack."""


@attrs.frozen(kw_only=True)
class StackEvent:
    event_id: str
    timestamp: dt.datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.status.endswith("_FAILED")

    def line(self) -> str:
        when = self.timestamp.strftime("%H:%M:%S")
        reason = f": {self.reason}" if self.reason else ""
        return f"{when} {self.logical_id} ({self.resource_type}) {self.status}{reason}"


@attrs.frozen(kw_only=True)
class StackInfo:
    name: str
    stack_id: str
    status: str
    reason: str = ""
    created: dt.datetime | None = None
    outputs: Mapping[str, str] = attrs.field(factory=dict)
    parameters: Mapping[str, str] = attrs.field(factory=dict)
    tags: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status in HEALTHY

    @property
    def in_progress(self) -> bool:
        return self.status.endswith("_IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return self.status in DEAD_ENDS or self.status.endswith("_FAILED")

    @property
    def cluster_identifier(self) -> str:
        return self.parameters.get("ClusterIdentifier") or self.name.removeprefix(STACK_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.name,
            "stack_id": self.stack_id,
            "status": self.status,
            "reason": self.reason,
            "created": self.created.isoformat() if self.created else None,
            "cluster": self.cluster_identifier,
            "outputs": dict(self.outputs),
            "parameters": dict(self.parameters),
            "tags": dict(self.tags),
        }


@attrs.frozen(kw_only=True)
class Waiting:
    """How long and how often to poll; clock and sleep are injectable for tests."""

    timeout: float = DEFAULT_TIMEOUT
    interval: float = DEFAULT_INTERVAL
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


EventSink = Callable[[StackEvent], None]


def _stack_info(raw: Mapping[str, Any]) -> StackInfo:
    return StackInfo(
        name=raw["StackName"],
        stack_id=raw.get("StackId", raw["StackName"]),
        status=raw["StackStatus"],
        reason=raw.get("StackStatusReason") or "",
        created=raw.get("CreationTime"),
        outputs={o["OutputKey"]: str(o.get("OutputValue", "")) for o in raw.get("Outputs", [])},
        parameters={
            p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in raw.get("Parameters", [])
        },
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
    )


def _event(raw: Mapping[str, Any]) -> StackEvent:
    return StackEvent(
        event_id=raw["EventId"],
        timestamp=raw["Timestamp"],
        logical_id=raw.get("LogicalResourceId", ""),
        resource_type=raw.get("ResourceType", ""),
        status=raw.get("ResourceStatus", ""),
        reason=raw.get("ResourceStatusReason") or "",
    )


def _is_missing(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return aws.error_code(cause) == "ValidationError" and "does not exist" in aws.error_message(
        cause
    )


def describe_stack(
    cfn: Any, name: str, *, sleep: Callable[[float], None] = time.sleep
) -> StackInfo | None:
    """The stack (by name or id), or None when there is none."""
    try:
        response = aws.call("DescribeStacks", cfn.describe_stacks, StackName=name, sleep=sleep)
    except aws.AwsError as exc:
        if _is_missing(exc):
            return None
        raise
    stacks = response.get("Stacks", [])
    return _stack_info(stacks[0]) if stacks else None


def require_stack(cfn: Any, name: str) -> StackInfo:
    info = describe_stack(cfn, name)
    if info is None:
        raise StackNotFoundError(f"no stack {name!r} in this region")
    return info


def is_tapdb_stack(info: StackInfo) -> bool:
    return TAG_CLUSTER in info.tags or info.name.startswith(STACK_PREFIX)


def list_stacks(cfn: Any) -> list[StackInfo]:
    """Every tapdb stack of the region that is not deleted, whatever its state
    (in progress and failed ones included), oldest first."""
    found: list[StackInfo] = []
    pages = cfn.get_paginator("describe_stacks").paginate()
    try:
        for page in pages:
            found.extend(_stack_info(raw) for raw in page.get("Stacks", []))
    except Exception as exc:
        if not aws.is_client_error(exc):
            raise
        raise aws.AwsError(
            f"DescribeStacks failed: {aws.error_code(exc) or type(exc).__name__}: "
            f"{aws.error_message(exc)}"
        ) from exc
    ours = [s for s in found if is_tapdb_stack(s) and s.status != "DELETE_COMPLETE"]
    return sorted(
        ours, key=lambda s: (s.created or dt.datetime.min.replace(tzinfo=dt.timezone.utc), s.name)
    )


def stack_events(
    cfn: Any, name: str, *, sleep: Callable[[float], None] = time.sleep
) -> list[StackEvent]:
    """The stack's events, oldest first (the API returns newest first)."""
    response = aws.call(
        "DescribeStackEvents", cfn.describe_stack_events, StackName=name, sleep=sleep
    )
    return [_event(raw) for raw in reversed(response.get("StackEvents", []))]


def failing_events(events: Iterable[StackEvent]) -> list[StackEvent]:
    """Events that explain a failure (not the cascade of 'cancelled' ones)."""
    failed = [e for e in events if e.failed and e.reason]
    useful = [e for e in failed if "cancelled" not in e.reason.lower()]
    return useful or failed


def create_stack(
    cfn: Any,
    params: StackParameters,
    *,
    template: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Start creating the stack; returns its id. ``template`` defaults to the rendered
    template of ``params``; every parameter is passed explicitly."""
    params.validate()
    body = json.dumps(template if template is not None else render(params), separators=(",", ":"))
    all_tags = {
        "tapdb-cost-center": params.cost_center,
        "tapdb-project": params.project or "tapdb",
        TAG_CLUSTER: params.cluster_identifier,
        **(tags or {}),
    }
    response = aws.call(
        "CreateStack",
        cfn.create_stack,
        sleep=sleep,
        StackName=stack_name(params.cluster_identifier),
        TemplateBody=body,
        Parameters=params.as_cfn(),
        Capabilities=list(CAPABILITIES),
        Tags=[{"Key": k, "Value": v} for k, v in all_tags.items()],
    )
    return str(response["StackId"])


def wait_for_stack(
    cfn: Any,
    stack_id: str,
    *,
    success: frozenset[str],
    waiting: Waiting = Waiting(),
    on_event: EventSink | None = None,
    gone_is_success: bool = False,
) -> StackInfo | None:
    """Poll until the stack reaches one of ``success`` (returned), fails
    (:class:`StackFailedError` with the failing events) or ``waiting.timeout``
    passes (:class:`WaitTimeoutError`). With ``gone_is_success`` a stack that no
    longer exists counts as done (None)."""
    start = waiting.clock()
    seen: set[str] = set()
    events: list[StackEvent] = []
    first = True
    while True:
        info = describe_stack(cfn, stack_id, sleep=waiting.sleep)
        if info is None:
            if gone_is_success:
                return None
            raise StackNotFoundError(f"stack {stack_id} disappeared while waiting for it")
        new = [
            e for e in stack_events(cfn, stack_id, sleep=waiting.sleep) if e.event_id not in seen
        ]
        for event in new:
            seen.add(event.event_id)
            events.append(event)
            if on_event is not None and not first:
                on_event(event)
        if first and on_event is not None:
            # only the latest few of the history before this wait
            for event in new[-5:]:
                on_event(event)
        first = False
        if info.status in success:
            return info
        if not info.in_progress:
            bad = failing_events(events)
            detail = "; ".join(e.line() for e in bad[-5:]) or info.reason or "no reason given"
            raise StackFailedError(f"stack {info.name} is {info.status}: {detail}", bad)
        if waiting.clock() - start >= waiting.timeout:
            raise WaitTimeoutError(
                f"stack {info.name} is still {info.status} after {waiting.timeout:g} s; it goes "
                "on in AWS: check with `tapdb aurora status` (or wait longer with --timeout)"
            )
        waiting.sleep(waiting.interval)


def stack_resources(cfn: Any, stack_id: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    try:
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id):
            out.extend(page.get("StackResourceSummaries", []))
    except Exception as exc:
        if not aws.is_client_error(exc):
            raise
        raise aws.AwsError(
            f"ListStackResources failed: {aws.error_code(exc)}: {aws.error_message(exc)}"
        ) from exc
    return out


def owned_cluster(cfn: Any, info: StackInfo) -> str | None:
    """The DB cluster this stack created (its physical id), if any."""
    for res in stack_resources(cfn, info.stack_id):
        if res.get("ResourceType") == "AWS::RDS::DBCluster" and res.get("PhysicalResourceId"):
            if res.get("ResourceStatus") != "DELETE_COMPLETE":
                return res["PhysicalResourceId"]
    return None


def disable_deletion_protection(
    rds: Any, cluster: str, *, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Turn deletion protection off for ``cluster``; False if it was off or is gone."""
    try:
        found = aws.call(
            "DescribeDBClusters", rds.describe_db_clusters, DBClusterIdentifier=cluster, sleep=sleep
        )
    except aws.AwsError as exc:
        if aws.error_code(exc.__cause__ or exc) == "DBClusterNotFoundFault":
            return False
        raise
    clusters = found.get("DBClusters", [])
    if not clusters or not clusters[0].get("DeletionProtection"):
        return False
    aws.call(
        "ModifyDBCluster",
        rds.modify_db_cluster,
        sleep=sleep,
        DBClusterIdentifier=cluster,
        DeletionProtection=False,
        ApplyImmediately=True,
    )
    return True


@attrs.frozen(kw_only=True)
class DeleteResult:
    stack: str
    cluster: str | None
    protection_disabled: bool
    retained: tuple[str, ...]
    waited: bool


def delete_stack(
    cfn: Any,
    rds: Any,
    info: StackInfo,
    *,
    confirm: Callable[[StackInfo, str | None], None],
    wait: bool = True,
    waiting: Waiting = Waiting(),
    on_event: EventSink | None = None,
) -> DeleteResult:
    """Delete the stack. ``confirm(info, cluster)`` must return (or raise to decline)
    before anything changes; only then is deletion protection turned off, and only
    for the cluster this stack owns. ``RetainResources`` is sent only for a stack in
    DELETE_FAILED (the resources that failed to delete); AWS rejects it otherwise."""
    if info.in_progress and info.status != "DELETE_IN_PROGRESS":
        raise StackStateError(
            f"stack {info.name} is {info.status}: wait for it to finish "
            "(`tapdb aurora status`) before deleting it"
        )
    cluster = owned_cluster(cfn, info)
    confirm(info, cluster)
    disabled = False
    retained: tuple[str, ...] = ()
    if info.status != "DELETE_IN_PROGRESS":
        if cluster is not None:
            disabled = disable_deletion_protection(rds, cluster, sleep=waiting.sleep)
        kwargs: dict[str, Any] = {"StackName": info.stack_id}
        if info.status == "DELETE_FAILED":
            retained = tuple(
                r["LogicalResourceId"]
                for r in stack_resources(cfn, info.stack_id)
                if r.get("ResourceStatus") == "DELETE_FAILED"
            )
            if retained:
                kwargs["RetainResources"] = list(retained)
        aws.call("DeleteStack", cfn.delete_stack, sleep=waiting.sleep, **kwargs)
    if wait:
        wait_for_stack(
            cfn,
            info.stack_id,
            success=frozenset({"DELETE_COMPLETE"}),
            waiting=waiting,
            on_event=on_event,
            gone_is_success=True,
        )
    return DeleteResult(
        stack=info.name,
        cluster=cluster,
        protection_disabled=disabled,
        retained=retained,
        waited=wait,
    )


def reusable(info: StackInfo, env: str) -> None:
    """Raise unless ``info`` can be reused by bootstrap (healthy or on its way there)."""
    if info.healthy or info.status in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"):
        return
    reason = f" ({info.reason})" if info.reason else ""
    if info.failed:
        raise StackStateError(
            f"stack {info.name} is {info.status}{reason} and cannot be reused or updated: "
            f"delete it with `tapdb aurora delete {env}` (add --force when not on a terminal) "
            "and run bootstrap again"
        )
    raise StackStateError(
        f"stack {info.name} is {info.status}{reason}: wait until it settles "
        f"(`tapdb aurora status {env}`) and run bootstrap again"
    )
