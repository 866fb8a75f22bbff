-- tapdb_core revision 0009: the update triggers' plans cannot go wrong with the
-- size of an earlier statement.
-- Like every landed revision, this file is never edited once landed.
--
-- The statement-level UPDATE triggers join their transition tables (old_rows,
-- new_rows). plpgsql keeps each statement's parse-analysed query for the whole
-- session, and parse analysis records the transition tables' row counts in it:
-- every later call -- custom plan or not -- is planned with the row counts of
-- the session's first call (until an invalidation, e.g. an ANALYZE elsewhere).
-- Measured (a 50k-1M instance database):
-- * first call big (a 52,000-row status UPDATE), then a soft DELETE, whose
--   every row runs a one-row UPDATE: the frozen estimate (n^2/200 joined rows)
--   passes the JIT thresholds and each one-row audit statement is JIT-compiled
--   and optimised, 230-400 ms a row (3-6 rows/s) instead of ~1 ms;
-- * first call small, then a big UPDATE: a nested loop over the two
--   tuplestores, quadratic (10,498 rows: 123 s instead of 3 s).
-- The audit function now runs with jit = off and enable_nestloop = off (the
-- old/new join becomes a hash or merge join whatever the estimate; the
-- LATERAL function scans keep their only plan, a nested loop), and evaluates
-- tapdb_audit_row() once per row (OFFSET 0) instead of once per column
-- compared (revision 0006's version: ~2 ms for a one-row UPDATE). The edge
-- trigger finds live or re-pointed edges as a set difference (EXCEPT is
-- hashed or sorted, never a nested loop) with jit = off; it keeps nested loops
-- allowed because the cycle walk it calls needs index nested loops.
CREATE FUNCTION tapdb_audit_update_trg_v4() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET jit = off SET enable_nestloop = off AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, column_name, operation_type, old_value, new_value, changed_by)
    SELECT prefix, s.n, TG_TABLE_NAME, s.uuid, s.euid, s.key, 'UPDATE',
           tapdb_audit_redact(TG_TABLE_NAME, s.key, s.old_value),
           tapdb_audit_redact(TG_TABLE_NAME, s.key, s.new_value), who
      FROM (SELECT c.*, nextval(seq) AS n
              FROM (SELECT n.uuid, n.euid, kv.key, j.oj -> kv.key AS old_value, kv.value AS new_value
                      FROM new_rows n
                      JOIN old_rows o ON o.uuid = n.uuid
                     CROSS JOIN LATERAL (SELECT tapdb_audit_row(to_jsonb(o)) AS oj,
                                                tapdb_audit_row(to_jsonb(n)) AS nj
                                         OFFSET 0) j
                     CROSS JOIN LATERAL jsonb_each(j.nj) kv
                     WHERE kv.key NOT IN ('modified_dt', 'created_xid', 'euid', 'row_version')
                       AND kv.value IS DISTINCT FROM j.oj -> kv.key
                     ORDER BY n.uuid, kv.key) c) s;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_lineage_after_update_trg_v3() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET jit = off AS $$
DECLARE
    parents bigint[];
    children bigint[];
BEGIN
    -- live edges that were deleted before, or whose ends changed
    SELECT array_agg(d.parent_instance_uuid), array_agg(d.child_instance_uuid)
      INTO parents, children
      FROM (SELECT n.uuid, n.parent_instance_uuid, n.child_instance_uuid
              FROM new_rows n WHERE NOT n.is_deleted
            EXCEPT
            SELECT o.uuid, o.parent_instance_uuid, o.child_instance_uuid
              FROM old_rows o WHERE NOT o.is_deleted) d;
    PERFORM tapdb_lineage_assert_acyclic_v2(coalesce(parents, '{}'), coalesce(children, '{}'));
    RETURN NULL;
END
$$;

DO $$
DECLARE
    fn text;
    t text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['tapdb_audit_update_trg_v4()', 'tapdb_lineage_after_update_trg_v3()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog, pg_temp', fn, current_schema());
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg_v4()', t);
    END LOOP;
END
$$;
DROP TRIGGER tapdb_50_acyclic_update ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_update AFTER UPDATE ON generic_instance_lineage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_update_trg_v3();
