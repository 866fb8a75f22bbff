"""Racing seeds and upserts of the same new template code (issue 8, low items).

Four writers, two seeding a pack and two upserting the very same template,
start together behind a Barrier. All succeed: exactly one reports "created",
the others "unchanged". At REPEATABLE READ a writer whose snapshot predates
the winner's commit gets the retryable SerializationError, and succeeds as
"unchanged" when it runs its transaction again.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tapdb_core.errors import TapdbError
from tapdb_core.packs.seed import seed_packs, template_spec
from tapdb_core.packs.validate import load_packs
from tapdb_core.templates import TemplateSpec, upsert_templates
from tests.integration.test_seed import tpl, write_pack

WRITERS = 4
CODE = "app/widget/raced/1.0/"


def _one_outcome(
    engine: Engine,
    isolation: str,
    pack: Path,
    spec: TemplateSpec,
    seeding: bool,
    barrier: threading.Barrier | None,
) -> str:
    with engine.connect() as conn:
        conn.execution_options(isolation_level=isolation)
        with conn.begin():
            conn.execute(text("SELECT 1")).scalar()  # the snapshot predates the race
            if barrier is not None:
                barrier.wait()
            if seeding:
                report = seed_packs(conn, [pack])
                outcomes = [
                    o
                    for o in ("created", "updated", "unchanged", "skipped")
                    if CODE in getattr(report, o)
                ]
                assert len(outcomes) == 1
                return outcomes[0]
            (result,) = upsert_templates(conn, [spec])
            assert result.code == CODE
            return result.outcome


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_racing_seeds_and_upserts_create_once(
    engine: Engine, tmp_path: Path, isolation: str
) -> None:
    pack = write_pack(tmp_path / "app", "app/widgets.json", [tpl("raced")]).parent.parent
    (loaded,) = [t for t in load_packs([pack]) if str(template_spec(t).code) == CODE]
    spec = template_spec(loaded)
    barrier = threading.Barrier(WRITERS, timeout=60)
    outcomes: list[str | BaseException] = [""] * WRITERS
    retried: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            try:
                outcomes[i] = _one_outcome(engine, isolation, pack, spec, i % 2 == 0, barrier)
            except TapdbError as exc:
                if not exc.retryable:
                    raise
                retried.append(exc)  # run the whole transaction again, as callers do
                outcomes[i] = _one_outcome(engine, isolation, pack, spec, i % 2 == 0, None)
        except BaseException as exc:  # reported below
            outcomes[i] = exc

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert sorted(map(str, outcomes)) == ["created"] + ["unchanged"] * (WRITERS - 1), outcomes
    if isolation == "READ COMMITTED":
        assert not retried  # the lock alone makes the losers see the winner's row
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM generic_template WHERE subtype = 'raced'")
        ).scalar_one()
        audits = conn.execute(
            text(
                "SELECT count(DISTINCT a.xact_id) FROM audit_log a"
                " JOIN generic_template g ON g.euid = a.rel_table_euid_fk"
                " WHERE g.subtype = 'raced'"
            )
        ).scalar_one()
    assert rows == 1
    assert audits == 1  # "unchanged" writers wrote nothing


def test_a_code_listed_twice_is_still_a_conflict(engine: Engine) -> None:
    from tapdb_core.errors import ConflictError

    spec = TemplateSpec(
        name="twice",
        polymorphic_discriminator="generic_template",
        category="app",
        type="widget",
        subtype="twice",
        version="1.0",
        instance_prefix="QA",
    )
    with pytest.raises(ConflictError, match=r"app/widget/twice/1\.0"), engine.begin() as conn:
        upsert_templates(conn, [spec, spec])
