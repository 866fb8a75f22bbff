"""Meridian EUIDs: ``PREFIX-BODYCHECK`` and the domain form ``DOMAIN-PREFIX-BODYCHECK``.

BODY is the sequence value in Crockford Base32 (no padding, no leading zero);
CHECK is the Luhn-style mod-32 character over DOMAIN+PREFIX+BODY. The SQL
functions installed by the migrations (``tapdb_euid_format`` and friends)
implement the same rules; tests compare the two over the whole BIGINT range.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from tapdb_core.errors import EUIDError

ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUES: Final = {ch: i for i, ch in enumerate(ALPHABET)}
SEQ_MIN: Final = 1
SEQ_MAX: Final = 2**63 - 1

# Python's ``$`` also matches before a trailing newline, so ``"CX-19\n"`` would
# pass where the SQL functions refuse it: patterns are applied with fullmatch,
# and the exported ones are anchored with ``\A...\Z`` for callers using ``match``.

#: prefixes tapdb allows for its own objects (2-3 letters, no I, L, O, U)
PREFIX_RE: Final = re.compile(r"\A[A-HJ-KMNP-TV-Z]{2,3}\Z")
#: Meridian domain codes: 1-4 Crockford Base32 characters
DOMAIN_RE: Final = re.compile(r"\A[0-9A-HJ-KMNP-TV-Z]{1,4}\Z")
_EUID_RE: Final = re.compile(
    r"(?:(?P<domain>[0-9A-HJ-KMNP-TV-Z]{1,4})-)?"
    r"(?P<prefix>[A-HJ-KMNP-TV-Z]{2,3})-"
    r"(?P<body>[1-9A-HJ-KMNP-TV-Z][0-9A-HJ-KMNP-TV-Z]*)"
    r"(?P<check>[0-9A-HJ-KMNP-TV-Z])"
)

#: prefixes the schema reserves: templates and lineage edges
TEMPLATE_PREFIX: Final = "GT"
LINEAGE_PREFIX: Final = "GN"
#: defaults for the configurable prefixes of users and audit rows
DEFAULT_USER_PREFIX: Final = "TDA"
DEFAULT_AUDIT_PREFIX: Final = "ADT"


@attrs.frozen(kw_only=True)
class ParsedEUID:
    """The parts of a valid EUID."""

    prefix: str
    seq: int
    domain: str | None = None

    def __str__(self) -> str:
        return encode(self.prefix, self.seq, domain=self.domain)


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid tapdb EUID prefix, else raise."""
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
        raise EUIDError(
            f"invalid EUID prefix {prefix!r}: must be 2-3 uppercase letters "
            "A-Z without I, L, O or U (^[A-HJ-KMNP-TV-Z]{2,3}$)"
        )
    return prefix


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is a valid Meridian domain code, else raise."""
    if not isinstance(domain, str) or not DOMAIN_RE.fullmatch(domain):
        raise EUIDError(
            f"invalid Meridian domain code {domain!r}: must be 1-4 characters "
            "of 0-9 and A-Z without I, L, O or U"
        )
    return domain


def encode_body(seq: int) -> str:
    """Crockford Base32 of a sequence value, most significant digit first."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not SEQ_MIN <= seq <= SEQ_MAX:
        raise EUIDError(f"EUID sequence value must be an integer in 1..2^63-1, got {seq!r}")
    digits = []
    while seq:
        seq, digit = divmod(seq, 32)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def decode_body(body: str) -> int:
    value = 0
    for ch in body:
        value = value * 32 + _VALUES[ch]
    return value


def check_character(payload: str) -> str:
    """Luhn mod-32 check character: weights 2,1,2,... from the right."""
    total = 0
    weight = 2
    for ch in reversed(payload):
        product = _VALUES[ch] * weight
        total += product // 32 + product % 32
        weight = 3 - weight
    return ALPHABET[(32 - total % 32) % 32]


def encode(prefix: str, seq: int, *, domain: str | None = None) -> str:
    """Format the EUID of sequence value ``seq`` under ``prefix`` (and ``domain``)."""
    check_prefix(prefix)
    body = encode_body(seq)
    if domain is None:
        return f"{prefix}-{body}{check_character(prefix + body)}"
    check_domain(domain)
    return f"{domain}-{prefix}-{body}{check_character(domain + prefix + body)}"


def parse(euid: str) -> ParsedEUID:
    """Split a valid EUID into prefix, sequence value and domain; raise if invalid."""
    if not isinstance(euid, str):
        raise EUIDError(f"EUID must be a string, got {type(euid).__name__}")
    match = _EUID_RE.fullmatch(euid)
    if match is None:
        raise EUIDError(
            f"invalid EUID {euid!r}: expected PREFIX-BODYCHECK or DOMAIN-PREFIX-BODYCHECK "
            "in uppercase Crockford Base32"
        )
    domain, prefix, body = match["domain"], match["prefix"], match["body"]
    seq = decode_body(body)
    if seq > SEQ_MAX:
        raise EUIDError(f"invalid EUID {euid!r}: body exceeds the BIGINT range")
    expected = check_character((domain or "") + prefix + body)
    if match["check"] != expected:
        raise EUIDError(f"invalid EUID {euid!r}: check character should be {expected!r}")
    return ParsedEUID(prefix=prefix, seq=seq, domain=domain)


def is_valid(euid: str) -> bool:
    try:
        parse(euid)
    except EUIDError:
        return False
    return True


def validate(euid: str) -> str:
    """Return ``euid`` unchanged if valid, else raise :class:`EUIDError`."""
    parse(euid)
    return euid
