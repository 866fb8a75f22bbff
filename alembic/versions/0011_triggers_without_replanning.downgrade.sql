-- Undoes revision 0011: the audit functions of revisions 0002 (insert) and
-- 0009 (update), the edge triggers of revisions 0002 (insert) and 0009
-- (update) with their cycle check, and tapdb_euid_format without a
-- search_path of its own.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_insert ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_insert AFTER INSERT ON %I
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_insert_trg_v2()', t);
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg_v4()', t);
    END LOOP;
END
$$;
DROP TRIGGER tapdb_50_acyclic_insert ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_insert AFTER INSERT ON generic_instance_lineage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_insert_trg_v2();
DROP FUNCTION tapdb_lineage_after_insert_trg_v3();
DROP FUNCTION tapdb_audit_insert_trg_v3();
DROP FUNCTION tapdb_audit_update_trg_v5();

DROP TRIGGER tapdb_50_acyclic_update ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_update AFTER UPDATE ON generic_instance_lineage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_update_trg_v3();
DROP FUNCTION tapdb_lineage_after_update_trg_v4();
DROP FUNCTION tapdb_lineage_assert_acyclic_v3(bigint[], bigint[]);
ALTER FUNCTION tapdb_euid_format(text, bigint, text) RESET search_path;
