"""Template codes: ``category/type/subtype/version`` (trailing slash optional)."""

from __future__ import annotations

import re
from typing import Final

import attrs

from tapdb_core.errors import TemplateCodeError

_PART_RE: Final = re.compile(r"^[^/\s]+$")
WILDCARD_VERSION: Final = "*"


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions as version numbers: 1.10 is newer than 1.9."""
    key: list[tuple[int, int | str]] = []
    for piece in re.split(r"[.\-_]", version):
        key.append((1, int(piece)) if piece.isdigit() else (0, piece))
    return tuple(key)


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return _version_key(version)


@attrs.frozen(kw_only=True, order=False)
class TemplateCode:
    """A parsed template code. ``str()`` gives the canonical form with a trailing slash."""

    category: str
    type: str
    subtype: str
    version: str

    @classmethod
    def parse(cls, code: str) -> TemplateCode:
        if isinstance(code, TemplateCode):
            return code
        if not isinstance(code, str):
            raise TemplateCodeError(
                f"template code must be a string, got {type(code).__name__}: {code!r}"
            )
        text = code.strip()
        if text.startswith("/"):
            text = text[1:]
        if text.endswith("/"):
            text = text[:-1]
        parts = text.split("/")
        if len(parts) != 4 or not all(_PART_RE.match(p) for p in parts):
            raise TemplateCodeError(
                f"invalid template code {code!r}: expected category/type/subtype/version "
                "(four non-empty parts, trailing slash optional)"
            )
        return cls(category=parts[0], type=parts[1], subtype=parts[2], version=parts[3])

    @property
    def is_wildcard(self) -> bool:
        """True when the version is ``*``: the newest live version is meant."""
        return self.version == WILDCARD_VERSION

    def __str__(self) -> str:
        return f"{self.category}/{self.type}/{self.subtype}/{self.version}/"
