"""Python EUIDs agree exactly with the SQL functions, over the whole BIGINT range."""

from __future__ import annotations

from collections.abc import Iterator

import meridian_euid
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import euid

PREFIX = st.text(alphabet="ABCDEFGHJKMNPQRSTVWXYZ", min_size=2, max_size=3)
DOMAIN = st.text(alphabet=euid.ALPHABET, min_size=1, max_size=4)
SEQ = st.integers(min_value=1, max_value=2**63 - 1)
SMALL_SEQ = st.integers(min_value=1, max_value=40_000)


@pytest.fixture(scope="module")
def sql(template_url: URL) -> Iterator[Connection]:
    engine: Engine = create_engine(template_url)
    conn = engine.connect()
    try:
        yield conn
    finally:
        conn.close()
        engine.dispose()


def _sql_format(conn: Connection, prefix: str, seq: int, domain: str | None) -> str:
    return str(
        conn.execute(
            text("SELECT tapdb_euid_format(:p, :s, :d)"), {"p": prefix, "s": seq, "d": domain}
        ).scalar_one()
    )


@settings(max_examples=300, deadline=None)
@given(prefix=PREFIX, seq=st.one_of(SEQ, SMALL_SEQ), domain=st.one_of(st.none(), DOMAIN))
def test_python_and_sql_format_agree(
    sql: Connection, prefix: str, seq: int, domain: str | None
) -> None:
    ours = euid.encode(prefix, seq, domain=domain)
    assert _sql_format(sql, prefix, seq, domain) == ours
    payload = (domain or "") + prefix + euid.encode_body(seq)
    assert ours[-1] == meridian_euid.compute_check_character(payload)
    if domain is not None:
        assert meridian_euid.validate(ours) == ours
        assert meridian_euid.encode(seq, prefix, domain_code=domain) == ours
    parsed = sql.execute(
        text(
            "SELECT (p).domain_code, (p).prefix, (p).seq FROM (SELECT tapdb_euid_parse(:e) AS p) x"
        ),
        {"e": ours},
    ).one()
    assert tuple(parsed) == (domain, prefix, seq)
    assert euid.parse(ours) == euid.ParsedEUID(prefix=prefix, seq=seq, domain=domain)


@settings(max_examples=200, deadline=None)
@given(
    prefix=PREFIX,
    seq=SEQ,
    position=st.integers(min_value=0),
    replacement=st.sampled_from(euid.ALPHABET),
)
def test_single_character_corruption_is_detected_by_both(
    sql: Connection, prefix: str, seq: int, position: int, replacement: str
) -> None:
    good = euid.encode(prefix, seq)
    body_start = len(prefix) + 1
    index = body_start + position % (len(good) - body_start)
    bad = good[:index] + replacement + good[index + 1 :]
    if bad == good:
        return
    python_ok = euid.is_valid(bad)
    sql_ok = sql.execute(text("SELECT tapdb_euid_is_valid(:e)"), {"e": bad}).scalar_one()
    assert python_ok == sql_ok
    if index == len(good) - 1:  # a wrong check character is always caught
        assert not python_ok


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "TX-1",
        "tx-1C",
        "TX-01C",
        "TX-1C ",
        "TU-1C",
        "TX_1C",
        "TX-1I",
        "X-Y-TX-1C",
        "TX-8000000000000Z",
    ],
)
def test_invalid_euids_rejected_by_both(sql: Connection, bad: str) -> None:
    assert not euid.is_valid(bad)
    assert sql.execute(text("SELECT tapdb_euid_is_valid(:e)"), {"e": bad}).scalar_one() is False


def test_extremes(sql: Connection) -> None:
    assert euid.encode("TX", 1) == "TX-1C" == _sql_format(sql, "TX", 1, None)
    top = 2**63 - 1
    assert _sql_format(sql, "GX", top, None) == euid.encode("GX", top)
    with pytest.raises(euid.EUIDError):
        euid.encode("GX", 2**63)
    with pytest.raises(euid.EUIDError):
        euid.encode("GX", 0)


# Revision 0005's expression, from the helper functions revision 0001 created
_COMPOSED = (
    "coalesce(:d || '-', '') || :p || '-' || tapdb_euid_body(s)"
    " || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((32 - (tapdb_euid_body_sum(s)"
    " + tapdb_euid_tail_sum(coalesce(:d, '') || :p, tapdb_euid_digits(s) % 2)) % 32) % 32)::int"
    " + 1, 1)"
)


@pytest.mark.parametrize(
    ("prefix", "domain"), [("CX", None), ("GX", "R7"), ("ABC", "Z1Y2"), ("ABCD", "ZZZZZZ")]
)
def test_the_digit_loop_equals_the_composed_expression_for_every_value(
    sql: Connection, prefix: str, domain: str | None
) -> None:
    """Revision 0007's loop, over ranges and extremes (0 and negative values too,
    which no sequence issues but a row may still hold)."""
    mismatches = sql.execute(
        text(
            "SELECT count(*) FROM (SELECT g AS s FROM generate_series(-40000, 120000) g"
            " UNION ALL SELECT unnest(ARRAY[9223372036854775807, -9223372036854775808,"
            " 33554431, 33554432, 1099511627775, 1099511627776]::bigint[])) v"
            f" WHERE tapdb_euid_format(:p, s, :d) IS DISTINCT FROM {_COMPOSED}"
        ),
        {"p": prefix, "d": domain},
    ).scalar_one()
    assert mismatches == 0
    assert sql.execute(text("SELECT tapdb_euid_format(NULL, 5, NULL)")).scalar_one() is None
