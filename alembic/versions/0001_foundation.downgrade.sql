-- Removes every object revision 0001 created, including the per-prefix EUID
-- sequences that templates created on demand.
DROP TABLE IF EXISTS audit_log, tapdb_user, generic_instance_lineage, generic_instance,
    generic_template, tapdb_identity_prefix_config CASCADE;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'S' AND c.relname LIKE 'tapdb\_euid\_seq\_%' AND n.nspname = current_schema()
    LOOP
        EXECUTE format('DROP SEQUENCE %I', r.relname);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE p.proname LIKE 'tapdb\_%' AND n.nspname = current_schema()
    LOOP
        EXECUTE format('DROP FUNCTION %s', r.sig);
    END LOOP;
END
$$;
