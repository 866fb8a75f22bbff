"""The CloudFormation template of a tapdb Aurora stack and the typed parameters it takes.

The template is data (``stack.json`` beside this module, shipped in the wheel);
this module only fills it in:

* :func:`render` sets each parameter's ``Default`` to the given value, so the
  printed template stands alone (``tapdb aurora template`` prints it);
* :func:`literal` substitutes parameter values as literals and evaluates the
  conditions, so that a linter checks the engine version, instance class and
  CIDR actually used (cfn-lint cannot check a ``Ref`` against those rules);
* :func:`standin` keeps only resources that moto's CloudFormation can create and
  replaces references to the others with placeholder values: the stack
  lifecycle is tested offline with the same parameters and outputs.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any, Final

import attrs

from tapdb_core.errors import ConfigurationError

TEMPLATE_FILE: Final = "stack.json"
STACK_PREFIX: Final = "tapdb-"
#: resources of the real stack that moto's CloudFormation provisions
STANDIN_TYPES: Final = frozenset(
    {
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::RDS::DBSubnetGroup",
        "AWS::IAM::ManagedPolicy",
    }
)
MAX_READERS: Final = 3
_NO_VALUE: Final = object()


class TemplateError(ConfigurationError):
    """Bad stack parameters (exit code 2)."""


def load_template() -> dict[str, Any]:
    """A fresh copy of the template as shipped."""
    text = resources.files("tapdb_core.aurora").joinpath(TEMPLATE_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def stack_name(cluster_identifier: str) -> str:
    return f"{STACK_PREFIX}{cluster_identifier}"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _tuple(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@attrs.frozen(kw_only=True)
class StackParameters:
    """Every parameter of ``stack.json``; each one reaches the stack (:meth:`as_cfn`)."""

    cluster_identifier: str
    vpc_id: str = ""
    subnet_ids: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    engine_version: str = "17"
    instance_class: str = "db.r6g.large"
    reader_count: int = 0
    master_username: str = "tapdb_admin"
    app_username: str = "tapdb_app"
    database_name: str = "tapdb"
    ingress_cidr: str = "10.0.0.0/8"
    source_security_group_id: str = ""
    publicly_accessible: bool = False
    deletion_protection: bool = True
    iam_auth: bool = True
    iam_role_names: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    cost_center: str = "global"
    project: str = ""

    def as_template_values(self) -> dict[str, str | list[str]]:
        """Parameter name -> value as CloudFormation sees it."""
        return {
            "ClusterIdentifier": self.cluster_identifier,
            "VpcId": self.vpc_id,
            "SubnetIds": list(self.subnet_ids),
            "EngineVersion": self.engine_version,
            "InstanceClass": self.instance_class,
            "ReaderCount": str(self.reader_count),
            "MasterUsername": self.master_username,
            "AppUsername": self.app_username,
            "DatabaseName": self.database_name,
            "IngressCIDR": self.ingress_cidr,
            "SourceSecurityGroupId": self.source_security_group_id,
            "PubliclyAccessible": _bool(self.publicly_accessible),
            "DeletionProtection": _bool(self.deletion_protection),
            "IamAuth": _bool(self.iam_auth),
            "IamRoleNames": list(self.iam_role_names),
            "CostCenter": self.cost_center,
            "Project": self.project,
        }

    def as_cfn(self) -> list[dict[str, str]]:
        """``Parameters`` of CreateStack: all of them, explicitly (no silent defaults)."""
        return [
            {"ParameterKey": key, "ParameterValue": ",".join(v) if isinstance(v, list) else v}
            for key, v in self.as_template_values().items()
        ]

    def validate(self) -> None:
        """Check the values against the template's AllowedPattern/AllowedValues."""
        declared = load_template()["Parameters"]
        for key, value in self.as_template_values().items():
            spec = declared[key]
            values = value if isinstance(value, list) else [value]
            for item in values:
                allowed = spec.get("AllowedValues")
                if allowed is not None and item not in [str(a) for a in allowed]:
                    raise TemplateError(
                        f"parameter {key}={item!r} is not one of {', '.join(map(str, allowed))}"
                    )
                pattern = spec.get("AllowedPattern")
                if pattern is not None and not re.fullmatch(pattern, item):
                    hint = spec.get("ConstraintDescription", f"pattern {pattern}")
                    raise TemplateError(f"parameter {key}={item!r}: expected {hint}")


#: ``--param KEY=VALUE`` names -> StackParameters fields
FIELD_OF: Final = {
    "ClusterIdentifier": "cluster_identifier",
    "VpcId": "vpc_id",
    "SubnetIds": "subnet_ids",
    "EngineVersion": "engine_version",
    "InstanceClass": "instance_class",
    "ReaderCount": "reader_count",
    "MasterUsername": "master_username",
    "AppUsername": "app_username",
    "DatabaseName": "database_name",
    "IngressCIDR": "ingress_cidr",
    "SourceSecurityGroupId": "source_security_group_id",
    "PubliclyAccessible": "publicly_accessible",
    "DeletionProtection": "deletion_protection",
    "IamAuth": "iam_auth",
    "IamRoleNames": "iam_role_names",
    "CostCenter": "cost_center",
    "Project": "project",
}


def _convert(key: str, raw: str) -> Any:
    field = FIELD_OF[key]
    if field in ("publicly_accessible", "deletion_protection", "iam_auth"):
        if raw.lower() not in ("true", "false"):
            raise TemplateError(f"parameter {key} must be true or false, not {raw!r}")
        return raw.lower() == "true"
    if field == "reader_count":
        if not raw.isdigit() or int(raw) > MAX_READERS:
            raise TemplateError(f"parameter {key} must be a number from 0 to {MAX_READERS}")
        return int(raw)
    return raw


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (template parameter names) -> StackParameters keyword values."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in FIELD_OF:
            raise TemplateError(
                f"--param {pair!r}: expected KEY=VALUE with KEY one of {', '.join(FIELD_OF)}"
            )
        out[FIELD_OF[key]] = _convert(key, raw)
    return out


def render(params: StackParameters) -> dict[str, Any]:
    """The template with each parameter's default set to ``params`` (empty ids omitted)."""
    template = load_template()
    for key, value in params.as_template_values().items():
        spec = template["Parameters"][key]
        if key in ("VpcId", "SubnetIds") and not value:
            spec.pop("Default", None)  # to be given when the stack is created
            continue
        spec["Default"] = ",".join(value) if isinstance(value, list) else value
    return template


# ------------------------------------------------------------------ literal


def _condition(expr: Any, conditions: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    if isinstance(expr, Mapping) and len(expr) == 1:
        ((fn, arg),) = expr.items()
        if fn == "Condition":
            return _condition(conditions[arg], conditions, values)
        if fn == "Fn::Not":
            return not _condition(arg[0], conditions, values)
        if fn == "Fn::And":
            return all(_condition(a, conditions, values) for a in arg)
        if fn == "Fn::Or":
            return any(_condition(a, conditions, values) for a in arg)
        if fn == "Fn::Equals":
            left, right = (_static(a, values) for a in arg)
            return str(left) == str(right)
    raise TemplateError(f"cannot evaluate condition {expr!r}")


def _static(expr: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(expr, Mapping) and "Ref" in expr:
        return values[expr["Ref"]]
    if isinstance(expr, Mapping) and "Fn::Join" in expr:
        sep, items = expr["Fn::Join"]
        items = _static(items, values)
        return sep.join(str(_static(i, values)) for i in items)
    return expr


_SUB_REF: Final = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def _substitute(node: Any, values: Mapping[str, Any], truth: Mapping[str, bool]) -> Any:
    if isinstance(node, list):
        items = [_substitute(n, values, truth) for n in node]
        return [i for i in items if i is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref" and arg == "AWS::NoValue":
            return _NO_VALUE
        if fn == "Ref" and arg in values:
            return values[arg]
        if fn == "Fn::If":
            name, yes, no = arg
            return _substitute(yes if truth[name] else no, values, truth)
        if fn == "Fn::Sub" and isinstance(arg, str):
            text = _SUB_REF.sub(
                lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), arg
            )
            return {"Fn::Sub": text} if "${" in text else text
    out = {k: _substitute(v, values, truth) for k, v in node.items()}
    return {k: v for k, v in out.items() if v is not _NO_VALUE}


def literal(params: StackParameters) -> dict[str, Any]:
    """The template with parameters substituted as literals and conditions evaluated:
    what CloudFormation would build, in a form a linter can check value by value."""
    template = load_template()
    values = params.as_template_values()
    if not params.vpc_id or not params.subnet_ids:
        raise TemplateError("a literal template needs VpcId and SubnetIds")
    conditions = template.pop("Conditions", {})
    truth = {name: _condition(expr, conditions, values) for name, expr in conditions.items()}
    template.pop("Parameters", None)
    for section in ("Resources", "Outputs"):
        kept = {}
        for name, body in template[section].items():
            condition = body.pop("Condition", None)
            if condition is None or truth[condition]:
                kept[name] = body
        template[section] = kept
    for section in ("Resources", "Outputs"):
        template[section] = _substitute(template[section], values, truth)
    return template


# ------------------------------------------------------------------ stand-in


def _standin_values(endpoints: Mapping[str, str]) -> dict[tuple[str, str | None], Any]:
    def given(output: str, default: Any) -> Any:
        return endpoints.get(output, default)

    region_sub = "${ClusterIdentifier}.cluster%s-standin.${AWS::Region}.rds.amazonaws.com"
    return {
        ("AuroraCluster", "Endpoint.Address"): given(
            "WriterEndpoint", {"Fn::Sub": region_sub % ""}
        ),
        ("AuroraCluster", "ReadEndpoint.Address"): given(
            "ReaderEndpoint", {"Fn::Sub": region_sub % "-ro"}
        ),
        ("AuroraCluster", "Endpoint.Port"): given("Port", "5432"),
        ("AuroraCluster", "DBClusterResourceId"): given(
            "ClusterResourceId", "cluster-STANDIN0000000000000000"
        ),
        ("AuroraCluster", None): {"Ref": "ClusterIdentifier"},
        ("MasterSecret", None): given(
            "SecretArn",
            {
                "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                "${AWS::AccountId}:secret:${ClusterIdentifier}-master-password-STANDIN"
            },
        ),
    }


def _replace_removed(node: Any, removed: set[str], stand: Mapping[Any, Any]) -> Any:
    if isinstance(node, list):
        return [_replace_removed(n, removed, stand) for n in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref" and arg in removed:
            return copy.deepcopy(stand[(arg, None)])
        if fn == "Fn::GetAtt" and arg[0] in removed:
            return copy.deepcopy(stand[(arg[0], arg[1])])
        if fn == "Fn::Sub" and isinstance(arg, str):

            def swap(m: re.Match[str]) -> str:
                res, _, attr = m.group(1).partition(".")
                if res not in removed:
                    return m.group(0)
                value = stand[(res, attr or None)]
                if not isinstance(value, str):
                    raise TemplateError(f"stand-in for {m.group(0)} must be a literal")
                return value

            return {"Fn::Sub": re.sub(r"\$\{([A-Za-z0-9.]+)\}", swap, arg)}
    return {k: _replace_removed(v, removed, stand) for k, v in node.items()}


def standin(params: StackParameters, endpoints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The rendered template reduced to what moto's CloudFormation provisions (security
    group, subnet group, IAM policy), with the same parameters and outputs; references
    to the cluster and its secret become placeholders (``endpoints`` overrides them by
    output name: WriterEndpoint, ReaderEndpoint, Port, SecretArn, ClusterResourceId)."""
    template = render(params)
    removed = {n for n, r in template["Resources"].items() if r["Type"] not in STANDIN_TYPES}
    template["Resources"] = {n: r for n, r in template["Resources"].items() if n not in removed}
    stand = _standin_values(endpoints or {})
    template["Resources"] = _replace_removed(template["Resources"], removed, stand)
    template["Outputs"] = _replace_removed(template["Outputs"], removed, stand)
    template["Description"] = "STAND-IN for offline tests: " + template["Description"]
    return template
