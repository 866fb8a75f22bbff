"""Finding, reading and indexing template packs.

A pack is a JSON file ``{"templates": [...]}``; packs live in directories laid
out as ``<dir>/<category>/<name>.json``. Every ``*.json`` below a pack
directory is a pack, except paths with a part starting with ``_`` (such as
``_metadata.json``) or ``.``. Several directories may be loaded together (an
application's packs on top of :func:`core_pack_dirs`): template codes must be
unique across all of them.

The rules a pack must follow are in ``pack.schema.json`` (structure) and
:mod:`tapdb_core.packs.validate` (cross-template rules), which imports this
module and never the other way round (then :mod:`~tapdb_core.packs.seed`).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeAlias

import attrs

from tapdb_core.codes import TemplateCode, version_sort_key
from tapdb_core.errors import TapdbError, TemplateCodeError
from tapdb_core.layouts import deep_merge, json_pointer
from tapdb_core.resources import seeds_dir

__all__ = [
    "PACK_SCHEMA_FILE",
    "CodeIndex",
    "PackDirs",
    "PackParseError",
    "PackTemplate",
    "ParsedPack",
    "as_pack_dirs",
    "core_pack_dirs",
    "deep_merge",
    "discover_pack_files",
    "json_pointer",
    "pack_schema",
    "read_pack_file",
    "resolve_reference",
    "template_code_of",
    "templates_of",
]

#: what callers may pass as pack directories: one path or several
PackDirs: TypeAlias = "str | Path | Sequence[str | Path]"

PACK_SCHEMA_FILE: Final = "pack.schema.json"
_CODE_PART_RE: Final = re.compile(r"^[^/\s*]+$")
_CODE_FIELDS: Final = ("category", "type", "subtype", "version")


class PackParseError(TapdbError, ValueError):
    """A pack file cannot be read as JSON (``line``/``column`` are 1-based when known)."""

    exit_code = 2

    def __init__(
        self, path: Path, message: str, *, line: int | None = None, column: int | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        self.reason = f"{message}{where}"
        super().__init__(f"{path}: {self.reason}")


@functools.lru_cache(maxsize=1)
def _pack_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(PACK_SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def pack_schema() -> dict[str, Any]:
    """The pack format as a JSON Schema (draft 2020-12); a fresh copy on each call."""
    return copy.deepcopy(_pack_schema())


def core_pack_dirs() -> list[Path]:
    """The directories of the template packs shipped with tapdb_core (``seeds/``)."""
    return [seeds_dir()]


def as_pack_dirs(dirs: PackDirs) -> list[Path]:
    """Normalise one path or a sequence of paths to a list of :class:`Path`."""
    if isinstance(dirs, (str, Path)):
        return [Path(dirs)]
    return [Path(d) for d in dirs]


def _skipped(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def discover_pack_files(dirs: PackDirs) -> list[Path]:
    """Every pack file under ``dirs`` (``**/*.json``, ``_*``/``.*`` skipped), sorted per dir.

    A path that is itself a ``.json`` file is taken as one pack. Missing
    directories are skipped here; :func:`~tapdb_core.packs.validate.validate_packs`
    reports them.
    """
    found: list[Path] = []
    for root in as_pack_dirs(dirs):
        if root.is_file():
            found.append(root)
            continue
        if not root.is_dir():
            continue
        found.extend(
            sorted(
                (
                    p
                    for p in root.rglob("*.json")
                    if p.is_file() and not _skipped(p.relative_to(root))
                ),
                key=lambda p: p.parts,
            )
        )
    return found


@attrs.frozen(kw_only=True)
class ParsedPack:
    """A pack file read as JSON (not yet validated)."""

    path: Path
    document: Any
    duplicate_keys: tuple[str, ...] = ()
    """Keys that appear twice in one JSON object (the last value wins)."""


def read_pack_file(path: Path) -> ParsedPack:
    """Read and parse one pack file; raise :class:`PackParseError` if it is not JSON."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PackParseError(path, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PackParseError(path, f"not UTF-8 text (byte {exc.start})") from exc
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        document = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise PackParseError(
            path, f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno
        ) from exc
    except RecursionError as exc:
        raise PackParseError(path, "invalid JSON: nested too deeply") from exc
    return ParsedPack(path=path, document=document, duplicate_keys=tuple(duplicates))


def template_code_of(data: object) -> TemplateCode | None:
    """The code of a template dict, or None when its four code fields are not all valid."""
    if not isinstance(data, Mapping):
        return None
    parts = [data.get(field) for field in _CODE_FIELDS]
    if not all(isinstance(p, str) and _CODE_PART_RE.match(p) for p in parts):
        return None
    return TemplateCode(
        category=str(parts[0]), type=str(parts[1]), subtype=str(parts[2]), version=str(parts[3])
    )


@attrs.frozen(kw_only=True)
class PackTemplate:
    """One template of a pack, with where it was found."""

    code: TemplateCode
    data: dict[str, Any]
    """The template as written in the pack."""
    source_file: Path
    pointer: str
    """JSON pointer of the template in its file, e.g. ``/templates/3``."""

    @property
    def code_str(self) -> str:
        """Canonical code, ``category/type/subtype/version/``."""
        return str(self.code)

    def _str(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        return self._str("name")

    @property
    def polymorphic_discriminator(self) -> str | None:
        return self._str("polymorphic_discriminator")

    @property
    def instance_prefix(self) -> str | None:
        return self._str("instance_prefix")

    @property
    def bstatus(self) -> str | None:
        return self._str("bstatus")

    @property
    def instance_polymorphic_identity(self) -> str | None:
        return self._str("instance_polymorphic_identity")

    @property
    def is_singleton(self) -> bool:
        return self.data.get("is_singleton") is True

    @property
    def json_addl(self) -> dict[str, Any]:
        """``json_addl`` (an empty dict when absent or not an object)."""
        value = self.data.get("json_addl")
        return value if isinstance(value, dict) else {}

    @property
    def json_addl_schema(self) -> dict[str, Any] | None:
        value = self.data.get("json_addl_schema")
        return value if isinstance(value, dict) else None

    @property
    def default_properties(self) -> dict[str, Any]:
        """``json_addl.properties`` (an empty dict when absent or not an object)."""
        value = self.json_addl.get("properties")
        return value if isinstance(value, dict) else {}

    @property
    def is_action(self) -> bool:
        """Action templates: discriminator ``action_template`` or category ``action``."""
        return self.polymorphic_discriminator == "action_template" or self.code.category == "action"


def templates_of(parsed: ParsedPack) -> list[PackTemplate]:
    """The templates of a parsed pack whose four code fields are valid (others are skipped)."""
    document = parsed.document
    if not isinstance(document, dict):
        return []
    entries = document.get("templates")
    if not isinstance(entries, list):
        return []
    found: list[PackTemplate] = []
    for index, entry in enumerate(entries):
        code = template_code_of(entry)
        if code is None or not isinstance(entry, dict):
            continue
        found.append(
            PackTemplate(
                code=code,
                data=entry,
                source_file=parsed.path,
                pointer=json_pointer(["templates", index]),
            )
        )
    return found


def _parse_code(code: str | TemplateCode) -> TemplateCode | None:
    if isinstance(code, TemplateCode):
        return code
    try:
        return TemplateCode.parse(code)
    except TemplateCodeError:
        return None


class CodeIndex:
    """Known template codes, for resolving references (``*`` = newest version present)."""

    def __init__(self, codes: Iterable[str | TemplateCode] = ()) -> None:
        self._codes: set[str] = set()
        self._versions: dict[tuple[str, str, str], list[str]] = {}
        for code in codes:
            self.add(code)

    def add(self, code: str | TemplateCode) -> None:
        """Add a code (codes that do not parse, or have a ``*`` version, are ignored)."""
        parsed = _parse_code(code)
        if parsed is None:
            return
        if parsed.is_wildcard:
            return
        canonical = str(parsed)
        if canonical in self._codes:
            return
        self._codes.add(canonical)
        self._versions.setdefault((parsed.category, parsed.type, parsed.subtype), []).append(
            parsed.version
        )

    def __contains__(self, code: object) -> bool:
        return isinstance(code, (str, TemplateCode)) and self.resolve(code) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._codes))

    def __len__(self) -> int:
        return len(self._codes)

    def resolve(self, code: str | TemplateCode) -> str | None:
        """Canonical code that ``code`` refers to, or None (also for malformed codes)."""
        parsed = _parse_code(code)
        if parsed is None:
            return None
        if not parsed.is_wildcard:
            canonical = str(parsed)
            return canonical if canonical in self._codes else None
        versions = self._versions.get((parsed.category, parsed.type, parsed.subtype))
        if not versions:
            return None
        newest = max(versions, key=version_sort_key)
        return str(attrs.evolve(parsed, version=newest))


def resolve_reference(
    code: str | TemplateCode, known_codes: Iterable[str | TemplateCode] | CodeIndex
) -> str | None:
    """The canonical code (trailing slash) that ``code`` refers to among ``known_codes``.

    A ``*`` version means the newest version present (versions compare as
    version numbers, see :func:`tapdb_core.codes.version_sort_key`). None when
    nothing matches or ``code`` is not a template code. For many look-ups build
    one :class:`CodeIndex` and pass it instead of a plain iterable.
    """
    index = known_codes if isinstance(known_codes, CodeIndex) else CodeIndex(known_codes)
    return index.resolve(code)
