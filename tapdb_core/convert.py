"""tapdb_core's own cattrs converter: rows into values, values into JSON.

Private to the package (never the global cattrs converter): datetimes become
ISO 8601 strings in JSON and come back as datetimes; unknown keys in untrusted
input are refused by :func:`structure_strict`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from tapdb_core.errors import ValidationError, Violation

T = TypeVar("T")


def _make(forbid_extra_keys: bool) -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_unstructure_hook(dt.datetime, lambda value: value.isoformat())
    converter.register_structure_hook(
        dt.datetime,
        lambda value, _: (
            value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        ),
    )
    converter.register_unstructure_hook(Path, str)
    # JSON documents (json_addl, old/new audit values) pass through untouched
    converter.register_structure_hook(Any, lambda value, _: value)
    return converter


_rows = _make(forbid_extra_keys=False)
_strict = _make(forbid_extra_keys=True)


def structure_row(cls: type[T], row: Any) -> T:
    """A value of ``cls`` from a database row (or mapping); extra columns are ignored."""
    mapping = getattr(row, "_mapping", row)
    if not isinstance(mapping, Mapping):
        raise TypeError(f"expected a row or mapping, got {type(row).__name__}")
    names = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
    return _rows.structure({k: v for k, v in mapping.items() if k in names}, cls)


def structure_strict(cls: type[T], data: Mapping[str, Any]) -> T:
    """A value of ``cls`` from untrusted input: unknown or missing keys are a
    :class:`ValidationError` naming each problem."""
    try:
        return _strict.structure(dict(data), cls)
    except (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError) as exc:
        problems = cattrs.transform_error(exc)
        raise ValidationError(
            f"invalid {cls.__name__}",
            [Violation(path="/", message=message) for message in problems],
        ) from exc


def to_json(value: Any) -> Any:
    """JSON-ready data (dicts, lists, strings, numbers) for a value or a list of them."""
    return _rows.unstructure(value)
