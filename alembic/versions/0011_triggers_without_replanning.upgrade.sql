-- tapdb_core revision 0011: triggers that neither re-plan nor walk when nothing can be found.
-- Like every landed revision, this file is never edited once landed.
--
-- Measured on a single-instance INSERT + COMMIT and on a 96-well plate
-- (docs/performance.md, "Per-statement cost"):
--
-- * Plan thrash. plpgsql keeps each statement's plan with the search_path it
--   was planned under, and plans it again whenever it runs under another one.
--   tapdb_euid_format computes every stored EUID: under the caller's
--   search_path for the row being written, under the audit trigger's pinned
--   one for that row's audit row. So every writing statement planned all of
--   its expressions twice over: a single instance 1.12 -> 0.71 ms when the
--   session's search_path was made equal to the trigger's. The function now
--   pins its own (it uses built-ins only, so nothing in a caller's path can
--   change an EUID either); the SET costs ~0.5 us a call.
-- * The audit triggers' set-up read the prefix through tapdb_identity_prefix()
--   and the sequence through the SECURITY DEFINER tapdb_ensure_euid_sequence()
--   on every statement. The new insert and update audit functions read the
--   prefix directly and call tapdb_ensure_euid_sequence() only when the
--   prefix's sequence does not exist yet. What they write is unchanged.
-- * The cycle walk ran for every new edge, a plate's 96 edges into new,
--   childless wells included (~0.35x of the plate's no-trigger floor). A new
--   edge parent -> child closes a cycle only through a path from child back
--   to parent, whose first edge leaves child. When no new child has a live
--   edge out of it, nothing can close and the walk is skipped. The check
--   comes after the guard row is taken, so a writer that waited for another
--   sees what that one committed (docs/schema.md). The edge trigger probes by
--   index whatever the transition table's frozen row estimate (no sequential
--   scans, hash or merge joins: revisions 0008 and 0009).
ALTER FUNCTION tapdb_euid_format(text, bigint, text) SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION tapdb_audit_insert_trg_v3() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    prefix text := (SELECT c.euid_prefix FROM tapdb_identity_prefix_config c WHERE c.entity = 'audit_log');
    seq regclass := coalesce(to_regclass(tapdb_euid_sequence_name(prefix)), tapdb_ensure_euid_sequence(prefix));
    who text := tapdb_audit_user();
BEGIN
    -- one aggregate per statement: supplied sequence values never get ahead
    PERFORM tapdb_bump_euid_sequence_v2(m.euid_prefix, m.max_seq)
       FROM (SELECT euid_prefix, max(euid_seq) AS max_seq FROM new_rows GROUP BY euid_prefix) m
      WHERE m.max_seq > coalesce(pg_sequence_last_value(tapdb_euid_sequence_name(m.euid_prefix)::regclass), 0);
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, operation_type, changed_by)
    SELECT prefix, nextval(seq), TG_TABLE_NAME, r.uuid, r.euid, 'INSERT', who
      FROM new_rows r;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_audit_update_trg_v5() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET jit = off SET enable_nestloop = off AS $$
DECLARE
    prefix text := (SELECT c.euid_prefix FROM tapdb_identity_prefix_config c WHERE c.entity = 'audit_log');
    seq regclass := coalesce(to_regclass(tapdb_euid_sequence_name(prefix)), tapdb_ensure_euid_sequence(prefix));
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

CREATE FUNCTION tapdb_lineage_assert_acyclic_v3(p_parents bigint[], p_children bigint[]) RETURNS void
LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    bad record;
BEGIN
    IF cardinality(p_parents) = 0 THEN
        RETURN;
    END IF;
    -- Edges into nodes created by this transaction cannot be part of a cycle
    -- with anyone else's edges (docs/schema.md); a plate's edges into its new
    -- wells never touch the guard.
    IF EXISTS (SELECT 1
                 FROM unnest(p_children) AS n(child)
                 JOIN generic_instance c ON c.uuid = n.child
                WHERE c.created_xid <> pg_current_xact_id()) THEN
        UPDATE tapdb_lineage_guard SET guarded_changes = guarded_changes + 1 WHERE id = 1;
    END IF;

    -- A path back to a new edge's parent starts with an edge out of its child:
    -- children without one (new wells) leave nothing to walk.
    IF NOT EXISTS (SELECT 1
                     FROM unnest(p_children) AS n(child)
                     JOIN generic_instance_lineage l
                       ON l.parent_instance_uuid = n.child AND NOT l.is_deleted) THEN
        RETURN;
    END IF;

    -- Walk down from every new child; reaching that edge's parent means a cycle.
    WITH RECURSIVE walk (target, node) AS (
        SELECT n.parent, n.child FROM unnest(p_parents, p_children) AS n(parent, child)
        UNION
        SELECT w.target, l.child_instance_uuid
          FROM walk w
          CROSS JOIN LATERAL (SELECT c.child_instance_uuid
                                FROM generic_instance_lineage c
                               WHERE c.parent_instance_uuid = w.node AND NOT c.is_deleted
                              OFFSET 0) l
    )
    SELECT w.target INTO bad FROM walk w WHERE w.node = w.target LIMIT 1;
    IF FOUND THEN
        SELECT e.euid, p.euid AS parent_euid, c.euid AS child_euid
          INTO bad
          FROM unnest(p_parents, p_children) AS n(parent, child)
          JOIN generic_instance_lineage e
            ON e.parent_instance_uuid = n.parent AND e.child_instance_uuid = n.child AND NOT e.is_deleted
          JOIN generic_instance p ON p.uuid = e.parent_instance_uuid
          JOIN generic_instance c ON c.uuid = e.child_instance_uuid
         WHERE n.parent = bad.target
         LIMIT 1;
        RAISE EXCEPTION 'lineage cycle refused: edge % (% -> %) would close a cycle, % already descends from %',
            bad.euid, bad.parent_euid, bad.child_euid, bad.parent_euid, bad.child_euid
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_generic_instance_lineage_acyclic';
    END IF;
END
$$;

CREATE FUNCTION tapdb_lineage_after_update_trg_v4() RETURNS trigger
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
    PERFORM tapdb_lineage_assert_acyclic_v3(coalesce(parents, '{}'), coalesce(children, '{}'));
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_lineage_after_insert_trg_v3() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET jit = off SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    parents bigint[];
    children bigint[];
BEGIN
    IF EXISTS (SELECT 1
                 FROM new_rows n
                 JOIN generic_instance c ON c.uuid = n.child_instance_uuid
                WHERE NOT n.is_deleted AND c.created_xid <> pg_current_xact_id()) THEN
        UPDATE tapdb_lineage_guard SET guarded_changes = guarded_changes + 1 WHERE id = 1;
    END IF;
    IF EXISTS (SELECT 1
                 FROM new_rows n
                 JOIN generic_instance_lineage l
                   ON l.parent_instance_uuid = n.child_instance_uuid AND NOT l.is_deleted
                WHERE NOT n.is_deleted) THEN
        SELECT array_agg(parent_instance_uuid), array_agg(child_instance_uuid)
          INTO parents, children
          FROM new_rows WHERE NOT is_deleted;
        PERFORM tapdb_lineage_assert_acyclic_v3(parents, children);
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    fn text;
    t text;
BEGIN
    EXECUTE format('ALTER FUNCTION tapdb_lineage_assert_acyclic_v3(bigint[], bigint[])
                    SET search_path = %I, pg_catalog, pg_temp', current_schema());
    FOREACH fn IN ARRAY ARRAY['tapdb_audit_insert_trg_v3()', 'tapdb_audit_update_trg_v5()',
                              'tapdb_lineage_after_insert_trg_v3()', 'tapdb_lineage_after_update_trg_v4()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog, pg_temp', fn, current_schema());
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_insert ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_insert AFTER INSERT ON %I
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_insert_trg_v3()', t);
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg_v5()', t);
    END LOOP;
END
$$;
DROP TRIGGER tapdb_50_acyclic_insert ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_insert AFTER INSERT ON generic_instance_lineage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_insert_trg_v3();
DROP TRIGGER tapdb_50_acyclic_update ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_update AFTER UPDATE ON generic_instance_lineage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_update_trg_v4();
