"""Checks of caller input that PostgreSQL or the JSON encoder would refuse late.

Without them such input fails inside the driver (``PostgreSQL text fields
cannot contain NUL``, ``Token "NaN" is invalid``, ``Object of type set is not
JSON serializable``, ``RecursionError``) with a message that names no field.
Each function here raises :class:`~tapdb_core.errors.ValidationError` whose
violation path is the JSON pointer of the offending value (``/properties/notes``)
and whose message never repeats the value (it may be a password).

The JSON walk is iterative, so no nesting depth can exhaust the Python stack.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import attrs

from tapdb_core.errors import ValidationError, Violation

#: deepest JSON nesting accepted (the encoder and the schema validator recurse)
MAX_JSON_DEPTH: Final = 100
#: largest integer magnitude accepted in JSON: Python refuses to turn longer
#: integers into text (``sys.int_info.default_max_str_digits`` is 4300)
_MAX_INT_BITS: Final = 14_000


def _pointer(field: str) -> str:
    return field if field.startswith("/") else "/" + field


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError("invalid input", [Violation(path=path, message=message)])


def _text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse ``value`` as text, or None."""
    nul = value.find("\x00")
    if nul != -1:
        return f"contains a NUL character (U+0000) at index {nul}, which PostgreSQL cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains a lone surrogate (U+{ord(value[exc.start]):04X}) at index {exc.start}: "
            "not valid Unicode text"
        )
    return None


def check_text(field: str, value: object, *, required: bool = True) -> str:
    """``value`` if it is a string PostgreSQL can store; ``required`` also refuses blank."""
    path = _pointer(field)
    if not isinstance(value, str):
        raise _fail(path, f"must be a string, got {type(value).__name__}")
    problem = _text_problem(value)
    if problem is not None:
        raise _fail(path, problem)
    if required and not value.strip():
        raise _fail(path, "must not be empty")
    return value


def check_optional_text(field: str, value: object, *, required: bool = True) -> str | None:
    """Like :func:`check_text`, but None passes."""
    return None if value is None else check_text(field, value, required=required)


def check_texts(**fields: object) -> None:
    """:func:`check_optional_text` for each keyword (the field name is its key)."""
    for name, value in fields.items():
        check_optional_text(name, value)


def check_text_list(field: str, values: object) -> None:
    """None, or a list (or tuple) of non-blank strings; a bare string is refused."""
    if values is None:
        return
    path = _pointer(field)
    if isinstance(values, str) or not isinstance(values, list | tuple | set | frozenset):
        raise _fail(path, f"must be a list of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        check_text(f"{path}/{i}", value)


def check_int(
    field: str,
    value: object,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    optional: bool = False,
) -> int | None:
    """``value`` if it is an integer (not a bool) within [minimum, maximum]."""
    if value is None and optional:
        return None
    path = _pointer(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise _fail(path, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise _fail(path, f"must be <= {maximum}, got {value}")
    return value


def check_non_negative(field: str, value: object, *, optional: bool = True) -> int | None:
    """None (when ``optional``) or an integer >= 0."""
    return check_int(field, value, minimum=0, optional=optional)


def _scalar_problem(value: object) -> str | None:
    """Why ``value`` is not a storable JSON scalar, or None (containers are not scalars)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return "integer too large for JSON"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a JSON number"
    return f"{type(value).__name__} is not a JSON value"


def check_json(field: str, value: object, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse anything that is not plain JSON PostgreSQL can store as ``jsonb``.

    Accepted: None, bool, int, finite float, str without NUL or lone surrogates,
    lists/tuples and mappings with string keys of these, nested at most
    ``max_depth`` levels. The first bad value is reported by its JSON pointer.
    """
    if _plain_json(value, max_depth):
        return
    # Something is wrong (or unusual, like a tuple or a Mapping that is not a
    # dict): walk again, building pointers, to name the first bad value.
    root = _pointer(field)
    # (pointer, value, depth): a stack, not recursion, so depth cannot overflow
    stack: list[tuple[str, object, int]] = [(root, value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[tuple[str, object]] = _mapping_children(path, item)
        elif isinstance(item, list | tuple):
            children = ((f"{path}/{i}", v) for i, v in enumerate(item))
        else:
            problem = _scalar_problem(item)
            if problem is not None:
                raise _fail(path, problem)
            continue
        if depth >= max_depth:
            raise _fail(path, f"nested deeper than {max_depth} levels")
        # reversed, so the first bad value in document order is found first
        stack.extend((p, v, depth + 1) for p, v in reversed(list(children)))


def _plain_text(value: str) -> bool:
    if value.isascii():
        return "\x00" not in value
    return _text_problem(value) is None


def _plain_json(value: object, max_depth: int) -> bool:
    """True when ``value`` is exact dicts, lists and scalars that :func:`check_json`
    accepts. The fast path: no pointers are built, types are compared exactly."""
    # Any: the exact type tests below narrow more than mypy can see
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is str:
            if not _plain_text(item):
                return False
        elif kind is dict:
            if depth >= max_depth:
                return False
            for key, child in item.items():
                if type(key) is not str or not _plain_text(key):
                    return False
                push((child, depth + 1))
        elif kind is list:
            if depth >= max_depth:
                return False
            for child in item:
                push((child, depth + 1))
        elif kind is int:
            if item.bit_length() > _MAX_INT_BITS:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def _mapping_children(path: str, item: Mapping[Any, Any]) -> Iterator[tuple[str, object]]:
    for key, child in item.items():
        if not isinstance(key, str):
            raise _fail(path, f"object key of type {type(key).__name__}: keys must be strings")
        problem = _text_problem(key)
        if problem is not None:
            raise _fail(path, f"object key {problem}")
        yield f"{path}/{_escape(key)}", child


def check_optional_json(field: str, value: object, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    if value is not None:
        check_json(field, value, max_depth=max_depth)


def check_object(field: str, value: object, *, optional: bool = True) -> None:
    """None (when ``optional``) or a JSON object (a mapping) that :func:`check_json` accepts."""
    if value is None and optional:
        return
    if not isinstance(value, Mapping):
        raise _fail(_pointer(field), f"must be an object, got {type(value).__name__}")
    check_json(field, value)


def check_record(field: str, record: object) -> None:
    """Every field of an attrs instance (e.g. a ``TemplateSpec``) as JSON."""
    if not attrs.has(type(record)):
        raise _fail(_pointer(field), f"must be a record, got {type(record).__name__}")
    check_json(field, attrs.asdict(record, recurse=False))  # type: ignore[arg-type]


def check_records(field: str, records: Iterable[object]) -> None:
    for i, record in enumerate(records):
        check_record(f"{_pointer(field)}/{i}", record)


def checked_rows(rows: Iterable[object]) -> Iterator[Any]:
    """The rows of a bulk create (each a name or ``(name, properties)``), checked one by
    one as they are consumed, so a stream is still read lazily."""
    for i, row in enumerate(rows):
        if type(row) is str:
            if not (_plain_text(row) and row.strip()):
                check_text(f"/rows/{i}/name", row)
        elif isinstance(row, tuple | list) and len(row) == 2:
            name, properties = row
            if not (type(name) is str and _plain_text(name) and name.strip()):
                check_text(f"/rows/{i}/name", name)
            if properties is not None and not (
                type(properties) is dict and _plain_json(properties, MAX_JSON_DEPTH)
            ):
                check_object(f"/rows/{i}/properties", properties)
        elif isinstance(row, str):
            check_text(f"/rows/{i}/name", row)
        else:
            raise _fail(
                f"/rows/{i}",
                f"must be a name or a (name, properties) pair, got {type(row).__name__}",
            )
        yield row


def is_plain_text(value: str) -> bool:
    """The fast check of :func:`check_text` (True: nothing to report)."""
    return _plain_text(value)


def is_plain_json(value: object, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """The fast check of :func:`check_json` (True: nothing to report)."""
    return _plain_json(value, max_depth)
