"""Python and SQL give the same verdict on tricky EUID strings (no trailing-newline pass)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import euid
from tapdb_core.errors import EUIDError

VALID = euid.encode("CX", 19)
DOMAIN_VALID = euid.encode("CX", 19, domain="AB")

TRICKY = [
    VALID + "\n",
    VALID + "\n\n",
    VALID + "\r",
    VALID + "\r\n",
    VALID + "\t",
    VALID + " ",
    " " + VALID,
    "\n" + VALID,
    VALID.lower(),
    VALID.replace("-", "\u2011"),  # non-breaking hyphen
    VALID.replace("-", "\uff0d"),  # fullwidth hyphen-minus
    VALID[:-1] + "\uff11",  # fullwidth digit one
    VALID[:-1] + "\u0661",  # Arabic-Indic digit one
    VALID[:-1] + "\U0001d7cf",  # mathematical bold digit one
    "\uff23" + VALID[1:],  # fullwidth C
    VALID + "\u200b",  # zero-width space
    "\ufeff" + VALID,  # byte order mark
    DOMAIN_VALID + "\n",
    "AB\n-" + VALID,
    "CX\n-1",
    euid.encode("TDA", 7) + "\n",
    "",
    "-",
    "CX-",
    "CX-0",
]


@pytest.fixture(scope="module")
def sql_engine(template_url: URL) -> Iterator[Engine]:
    engine = create_engine(template_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("candidate", TRICKY, ids=repr)
def test_python_and_sql_agree_and_refuse(sql_engine: Engine, candidate: str) -> None:
    with sql_engine.connect() as conn:
        in_sql = conn.execute(text("SELECT tapdb_euid_is_valid(:s)"), {"s": candidate}).scalar_one()
    assert euid.is_valid(candidate) is in_sql is False


@pytest.mark.parametrize("candidate", [VALID, DOMAIN_VALID, euid.encode("TDA", 2**63 - 1)])
def test_the_controls_are_valid_in_both(sql_engine: Engine, candidate: str) -> None:
    with sql_engine.connect() as conn:
        in_sql = conn.execute(text("SELECT tapdb_euid_is_valid(:s)"), {"s": candidate}).scalar_one()
    assert euid.is_valid(candidate) is in_sql is True


def test_prefix_and_domain_checks_refuse_a_trailing_newline() -> None:
    for bad in ("CX\n", "CX\r", " CX"):
        with pytest.raises(EUIDError):
            euid.check_prefix(bad)
        assert not euid.PREFIX_RE.match(bad)
    with pytest.raises(EUIDError):
        euid.check_domain("AB\n")
    assert not euid.DOMAIN_RE.match("AB\n")
    with pytest.raises(EUIDError):
        euid.parse(VALID + "\n")
    assert not euid.is_valid("CX-1\x00")
