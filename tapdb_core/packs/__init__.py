"""Template packs: the pack format, the core template library, loading and validation.

* ``pack.schema.json`` (next to this file): the pack format as a JSON Schema.
* :func:`load_packs` / :func:`discover_pack_files`: find and read packs.
* :func:`validate_packs`: structural and semantic checks, every issue at once.
* :func:`core_pack_dirs`: where the packs shipped with tapdb_core are.
* :func:`seed_packs`: validate packs and upsert their templates (:class:`SeedReport`).
"""

from __future__ import annotations

from tapdb_core.packs.load import (
    PACK_SCHEMA_FILE,
    CodeIndex,
    PackDirs,
    PackParseError,
    PackTemplate,
    ParsedPack,
    as_pack_dirs,
    core_pack_dirs,
    deep_merge,
    discover_pack_files,
    json_pointer,
    pack_schema,
    read_pack_file,
    resolve_reference,
    template_code_of,
    templates_of,
)
from tapdb_core.packs.seed import SeedMode, SeedReport, seed_packs
from tapdb_core.packs.validate import (
    INSTANCE_KEYS,
    MAX_LAYOUT_DEPTH,
    NAME_PATTERN_PLACEHOLDERS,
    Level,
    PackIssue,
    PackReport,
    PackValidationError,
    ReservedPrefixes,
    default_reserved_prefixes,
    json_addl_validator,
    load_packs,
    validate_core_packs,
    validate_packs,
)

__all__ = [
    "INSTANCE_KEYS",
    "MAX_LAYOUT_DEPTH",
    "NAME_PATTERN_PLACEHOLDERS",
    "PACK_SCHEMA_FILE",
    "CodeIndex",
    "Level",
    "PackDirs",
    "PackIssue",
    "PackParseError",
    "PackReport",
    "PackTemplate",
    "PackValidationError",
    "ParsedPack",
    "ReservedPrefixes",
    "SeedMode",
    "SeedReport",
    "as_pack_dirs",
    "core_pack_dirs",
    "deep_merge",
    "default_reserved_prefixes",
    "discover_pack_files",
    "json_addl_validator",
    "json_pointer",
    "load_packs",
    "pack_schema",
    "read_pack_file",
    "resolve_reference",
    "seed_packs",
    "template_code_of",
    "templates_of",
    "validate_core_packs",
    "validate_packs",
]
