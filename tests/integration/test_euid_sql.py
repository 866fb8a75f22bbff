"""Python EUIDs agree exactly with the SQL functions, over the whole BIGINT range."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import meridian_euid
import psycopg
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
    """The current body (revision 0010's; 0007's before it), over ranges and
    extremes (0 and negative values too, which no sequence issues but a row may
    still hold)."""
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


# --------------------------------------------------------------------------- revision 0010
# Revision 0010's body against revision 0007's, created from its landed file
# under another name (a temporary function: it goes with the connection).

VERSIONS = Path(__file__).resolve().parents[2] / "alembic" / "versions"
OLD = "pg_temp.tapdb_euid_format_0007"
_WORD = 2**64


def _revision_sql(filename: str, name: str) -> str:
    sql = (VERSIONS / filename).read_text(encoding="utf-8")
    head = "CREATE OR REPLACE FUNCTION tapdb_euid_format("
    assert sql.count(head) == 1
    return sql.replace(head, f"CREATE OR REPLACE FUNCTION {name}(")


def _run_file_sql(conn: Connection, sql: str) -> None:
    """Run a revision's SQL as it is written (no placeholder processing), like the migration."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(sql)


@pytest.fixture(scope="module")
def old(sql: Connection) -> str:
    _run_file_sql(sql, _revision_sql("0007_euid_format_digit_loop.upgrade.sql", OLD))
    return OLD


def _signed(value: int) -> int:
    value %= _WORD
    return value - _WORD if value >= 2**63 else value


def _values() -> list[int]:
    values = set(range(-40_000, 120_001))
    for exponent in range(64):  # every power of 2 (so of 32) and its neighbours, both signs
        for base in (2**exponent, -(2**exponent)):
            values.update(_signed(base + d) for d in (-1, 0, 1))
    for chunk in range(1024):  # every 10-bit value at every position, and complemented
        for position in range(7):
            value = _signed(chunk << (10 * position))
            values.update((value, ~value, value | 1, _signed(value + 2**30 - 1)))
    draw = random.Random(20261202)
    values.update(_signed(draw.getrandbits(64)) for _ in range(10_000))
    values.update(draw.getrandbits(draw.randrange(1, 64)) for _ in range(10_000))
    return sorted(values)


def _mismatches(
    conn: Connection, old: str, values: list[int], pairs: list[tuple[str | None, str | None]]
) -> list[tuple[object, ...]]:
    """Up to five (prefix, seq, domain, new, old) whose EUIDs differ, over values x pairs."""
    rows = conn.execute(
        text(
            f"SELECT p, v, d, tapdb_euid_format(p, v, d), {old}(p, v, d)"
            " FROM unnest(CAST(:v AS bigint[])) v,"
            " unnest(CAST(:p AS text[]), CAST(:d AS text[])) AS pd (p, d)"
            f" WHERE tapdb_euid_format(p, v, d) IS DISTINCT FROM {old}(p, v, d) LIMIT 5"
        ),
        {"v": values, "p": [p for p, _ in pairs], "d": [d for _, d in pairs]},
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize(("prefix", "domain"), [("CX", None), ("ADT", "R7"), ("GN", "Z1Y2")])
def test_the_lookup_body_equals_revision_0007_for_every_value(
    sql: Connection, old: str, prefix: str, domain: str | None
) -> None:
    """Ranges, extremes, 0 and negatives, every power-of-32 boundary, every 10-bit
    value at every position (each entry of both tables), random values."""
    values = _values()
    assert {0, -1, 2**63 - 1, -(2**63), 32**6 - 1, 32**6, 2**30 - 1, 2**30} <= set(values)
    assert _mismatches(sql, old, values, [(prefix, domain)]) == []


PREFIXES = [
    "CX", "GN", "GT", "ADT", "TXA", "QX", "", "A", "ABCD", "ABCDEFG", "ABCDEFGHJK",
    "cx", "C-X", "ILOU", "É", "CXé", "日本", "X😀Y", "'", "\\", " Z", "0", "99999",
]  # fmt: skip
DOMAINS = [None, "", "R", "R7", "Z1Y2", "ZZZZZ", "0000000000", "r7", "😀", "é1", "\\", "7 "]


def test_the_lookup_body_equals_revision_0007_for_any_prefix_and_domain(
    sql: Connection, old: str
) -> None:
    """Empty, short, long, lower-case, punctuation and multi-byte prefixes and domains."""
    values = sorted(
        {_signed(2**e + d) for e in range(64) for d in (-1, 0, 1)}
        | {-(2**e) + d for e in range(63) for d in (-1, 0, 1)}
        | {0, 1, 2**63 - 1, -(2**63)}
        | set(range(0, 3000, 7))
    )
    pairs = [(p, d) for p in PREFIXES for d in DOMAINS]
    assert _mismatches(sql, old, values, pairs) == []


def test_every_character_at_every_tail_position_in_both_weights(sql: Connection, old: str) -> None:
    """Each character, alphabet or not, one byte or several, as the k-th character
    from the end of the prefix or of the domain, with odd and even digit counts."""
    characters = [chr(c) for c in range(1, 400)] + ["😀", "\U0010ffff", "日", "ǅ"]
    pairs: list[tuple[str | None, str | None]] = []
    for ch in characters:
        pairs += [("K" * i + ch + "M" * j, None) for i in range(3) for j in range(8)]
        pairs += [("CX", "1" * i + ch + "7" * j) for i in range(2) for j in range(7)]
        pairs += [("Q" * i + ch, ch + "7" * j) for i in range(4) for j in range(4)]
    values = [0, 1, 31, 32, 1023, 1024, 2**20, 2**30 - 1, -1, 2**63 - 1, -(2**63)]
    assert _mismatches(sql, old, values, pairs) == []


def test_null_arguments(sql: Connection) -> None:
    for args in [(None, 5, None), ("CX", None, None), ("CX", None, "R7"), (None, 5, "R7")]:
        assert (
            sql.execute(
                text("SELECT tapdb_euid_format(:p, :s, :d)"),
                {"p": args[0], "s": args[1], "d": args[2]},
            ).scalar_one()
            is None
        )
    assert _sql_format(sql, "CX", 5, None) == euid.encode("CX", 5)


def test_the_format_is_plpgsql_pinned_to_pg_catalog_and_needs_no_search_path(
    template_url: URL,
) -> None:
    """Generated columns evaluate it under any search_path: it names only built-ins.
    Since revision 0011 it runs under its own search_path (pg_catalog), so plpgsql
    does not plan it again each time a caller's path differs from the audit
    trigger's (tests/integration/test_trigger_shortcuts.py)."""
    engine = create_engine(template_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT l.lanname, p.provolatile, p.proparallel, p.proconfig,"
                    " quote_ident(n.nspname) AS schema"
                    " FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE p.oid = 'tapdb_euid_format(text, bigint, text)'::regprocedure"
                )
            ).one()
            assert tuple(row)[:4] == ("plpgsql", "i", "s", ["search_path=pg_catalog, pg_temp"])
            conn.execute(text("SET search_path = ''"))
            for prefix, seq, domain in [("CX", 123_456, None), ("ADT", 2**40, "R7")]:
                got = conn.execute(
                    text(f"SELECT {row.schema}.tapdb_euid_format(:p, :s, :d)"),
                    {"p": prefix, "s": seq, "d": domain},
                ).scalar_one()
                assert got == euid.encode(prefix, seq, domain=domain)
    finally:
        engine.dispose()


# Characters each server encoding can hold beyond ASCII, built on the server.
_EXTRA_CHARACTERS = {
    "LATIN1": "SELECT chr(c) FROM generate_series(128, 255) c",
    "SQL_ASCII": "SELECT chr(c) FROM generate_series(128, 255) c",
    "EUC_JP": "SELECT convert_from(decode(h, 'hex'), 'EUC_JP')"
    " FROM unnest(ARRAY['c6fc', 'a4a2', '8ea1', '8fb0a1']) h",
}


@pytest.mark.parametrize("encoding", sorted(_EXTRA_CHARACTERS))
def test_the_same_in_other_server_encodings(
    server_url: URL, admin_engine: Engine, encoding: str
) -> None:
    """In a single-byte encoding every byte is a character (ascii() up to 255);
    in another multi-byte one a character of several bytes takes 0007's loop."""
    name = f"tapdb_test_{os.getpid()}_euid_{encoding.lower()}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(
            text(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING '{encoding}'"
                " LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        )
    # psycopg itself: SQLAlchemy's dialect cannot initialise on a SQL_ASCII database
    url = server_url.set(drivername="postgresql", database=name)
    try:
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(
                (VERSIONS / "0010_euid_format_lookup_tables.upgrade.sql").read_text(
                    encoding="utf-8"
                )
            )
            conn.execute(_revision_sql("0007_euid_format_digit_loop.upgrade.sql", OLD))
            bad = conn.execute(
                "WITH ch AS (SELECT chr(c) AS c FROM generate_series(1, 127) c"
                f" UNION ALL {_EXTRA_CHARACTERS[encoding]}),"
                " pd AS (SELECT repeat('K', i) || c || repeat('M', j) AS p, NULL AS d"
                "          FROM ch, generate_series(0, 2) i, generate_series(0, 7) j"
                "        UNION ALL SELECT 'CX', repeat('1', i) || c || repeat('7', j)"
                "          FROM ch, generate_series(0, 1) i, generate_series(0, 6) j"
                "        UNION ALL SELECT repeat('Q', i) || c, c || repeat('7', j)"
                "          FROM ch, generate_series(0, 3) i, generate_series(0, 3) j)"
                " SELECT count(*) FILTER (WHERE tapdb_euid_format(p, v, d)"
                f"                          IS DISTINCT FROM {OLD}(p, v, d)),"
                "        count(*)"
                " FROM pd, unnest(%(v)s::bigint[]) v",
                {"v": [0, 1, 31, 32, 1024, 2**20, -1, 2**63 - 1]},
            ).fetchone()
            assert bad is not None
            assert bad[0] == 0 and bad[1] > 10_000
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
