-- tapdb_core revision 0003: an application role cannot forge the audit trail.
-- Like every landed revision, this file is never edited once landed.
--
-- The functions below write audit_log, the lineage guard row or EUID sequences
-- (CREATE SEQUENCE needs CREATE on the schema, ALTER SEQUENCE needs ownership) on
-- behalf of whoever changes a row. They become SECURITY DEFINER: they run as their
-- owner, the schema owner who ran the migrations, so the application role that
-- `tapdb db roles` grants needs no INSERT on audit_log, no CREATE on the schema and
-- no ownership of anything. The roles themselves are cluster-wide and are not part
-- of the schema: `tapdb db roles` (tapdb_core/roles.py) creates and grants them.
--
-- A SECURITY DEFINER function must resolve names in its own schema, never through
-- the caller's search_path (a temporary table named audit_log would otherwise
-- receive the audit rows). Revision 0002 gave each of these functions
-- `search_path = <schema>, pg_catalog, pg_temp` (pg_temp last, so no temporary
-- object shadows ours); this revision checks that and refuses to continue without.
--
-- EXECUTE is revoked from PUBLIC. Trigger functions cannot be called directly
-- anyway; tapdb_ensure_euid_sequence is called by the library, and `tapdb db roles`
-- grants it to the application role; tapdb_set_identity_prefix stays the owner's.
DO $$
DECLARE
    f text;
    config text[];
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'tapdb_audit_insert_trg_v2()',
        'tapdb_audit_update_trg_v2()',
        'tapdb_audit_delete_trg_v2()',
        'tapdb_soft_delete_trg()',
        'tapdb_user_euid_trg_v2()',
        'tapdb_lineage_after_insert_trg_v2()',
        'tapdb_lineage_after_update_trg_v2()',
        'tapdb_ensure_euid_sequence(text)',
        'tapdb_set_identity_prefix(text, text)'
    ] LOOP
        SELECT p.proconfig INTO config FROM pg_proc p WHERE p.oid = f::regprocedure;
        IF NOT EXISTS (SELECT 1 FROM unnest(config) c
                        WHERE c = format('search_path=%I, pg_catalog, pg_temp', current_schema())) THEN
            RAISE EXCEPTION 'revision 0003: % has no fixed search_path (found %); refusing to make it SECURITY DEFINER',
                f, config;
        END IF;
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', f::regprocedure);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f::regprocedure);
    END LOOP;
END
$$;
