-- Reverses revision 0003: the functions run with the caller's rights again and
-- PUBLIC may execute them (their search_path, set by 0002, stays). Roles granted by
-- `tapdb db roles` are left alone: they are cluster-wide, not part of the schema.
DO $$
DECLARE
    f text;
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
        EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER', f::regprocedure);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f::regprocedure);
    END LOOP;
END
$$;
