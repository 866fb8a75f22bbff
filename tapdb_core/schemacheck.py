"""Instance data against a template's ``json_addl_schema``, checked by jsonschema-rs.

Schemas come from template packs, which are untrusted input, so the engine
must be a complete, maintained implementation: jsonschema-rs (compiled Rust).
``tests/unit/test_schema_validation.py`` checks its verdicts against the
``jsonschema`` library property-based.

* One compiled validator per distinct schema, cached by the schema's canonical
  JSON text (bounded LRU). Content, not ``(uuid, row_version)``: those are
  per database, and one process may talk to several databases (clones,
  restores) whose template rows share ids but not schemas.
* The draft is the one ``$schema`` names, else 2020-12 (as ``jsonschema``'s
  ``validator_for`` decides).
* ``format`` is asserted with exactly the checkers ``jsonschema``'s
  ``FORMAT_CHECKER`` has for that draft (date, email, ipv4, ipv6, uuid, regex,
  ... as installed), so pack validation (``jsonschema``) and instance writes
  (jsonschema-rs) give one verdict. Formats jsonschema does not check (uri
  without its optional packages, ...) are annotations, as there.
* Never any network or file access: a ``$ref`` outside the schema is refused
  when the schema is compiled.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import jsonschema
import jsonschema_rs

__all__ = ["CACHE_SIZE", "SchemaUnusable", "canonical_schema", "compiled", "violations"]

#: distinct schemas kept compiled (least recently used ones are dropped)
CACHE_SIZE: Final = 1024

#: jsonschema-rs validator class name -> the ``jsonschema`` class of the same draft
_DRAFTS: Final[dict[str, Any]] = {
    "Draft4Validator": jsonschema.Draft4Validator,
    "Draft6Validator": jsonschema.Draft6Validator,
    "Draft7Validator": jsonschema.Draft7Validator,
    "Draft201909Validator": jsonschema.Draft201909Validator,
    "Draft202012Validator": jsonschema.Draft202012Validator,
}


class SchemaUnusable(Exception):
    """The schema cannot be compiled: not a valid JSON Schema, or an unresolvable ``$ref``."""

    def __init__(self, path: list[str | int], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def canonical_schema(schema: Mapping[str, Any]) -> str:
    """The schema as canonical JSON text (sorted keys, no spaces): the cache key."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compiled(schema: Mapping[str, Any]) -> jsonschema_rs.Validator:
    """The compiled validator of ``schema`` (cached); :class:`SchemaUnusable` if it has none."""
    try:
        text = canonical_schema(schema)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SchemaUnusable([], f"not JSON: {exc}") from None
    return _compile(text)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(text: str) -> jsonschema_rs.Validator:
    try:
        draft = jsonschema_rs.validator_cls_for(text)
        return jsonschema_rs.validator_for(
            text,
            formats=_formats(draft.__name__),
            validate_formats=True,
            offline=True,
        )
    except jsonschema_rs.ValidationError as exc:  # meta-schema or $ref problem
        raise SchemaUnusable(list(exc.instance_path), exc.message) from None
    except ValueError as exc:  # not parseable, unknown draft, ...
        raise SchemaUnusable([], str(exc)) from None


@functools.cache
def _formats(draft: str) -> dict[str, Callable[[Any], bool]]:
    """jsonschema's checkers for the draft; jsonschema-rs's own checkers of the
    other formats replaced by ones that accept anything."""
    checker = _DRAFTS.get(draft, jsonschema.Draft202012Validator).FORMAT_CHECKER

    def conforms(name: str) -> Callable[[Any], bool]:
        def check(value: Any) -> bool:
            return bool(checker.conforms(value, name))

        return check

    formats: dict[str, Callable[[Any], bool]] = dict.fromkeys(_RS_FORMATS, _annotation)
    formats.update({name: conforms(name) for name in checker.checkers})
    return formats


def _annotation(_value: Any) -> bool:
    return True


#: the formats jsonschema-rs checks itself when asked to assert formats
_RS_FORMATS: Final = (
    "date",
    "date-time",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
    "uuid",
)


def violations(validator: jsonschema_rs.Validator, instance: Any) -> list[tuple[str, str]]:
    """Every violation of ``instance`` as (JSON pointer, message), sorted by pointer;
    [] when it is valid."""
    try:
        return _violations(validator, instance)
    except jsonschema_rs.ValidationError:
        raise
    except ValueError:  # a type jsonschema-rs does not read (a Mapping that is not a dict)
        return _violations(validator, _plain(instance))


def _violations(validator: jsonschema_rs.Validator, instance: Any) -> list[tuple[str, str]]:
    if validator.is_valid(instance):  # stops at the first error: the common case
        return []
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: (_path_key(e.instance_path), e.message)
    )
    return [(pointer(e.instance_path) or "/", e.message) for e in errors]


def pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer: ``["a/b", 0]`` -> ``/a~1b/0``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _path_key(path: Iterable[str | int]) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def _plain(value: Any) -> Any:
    """Mappings as dicts and sequences as lists, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
