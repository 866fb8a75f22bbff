-- Undoes revision 0008.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'tapdb_lineage_assert_acyclic_v2(bigint[], bigint[])',
        'tapdb_lineage_defaults_trg()',
        'tapdb_instance_defaults_trg()',
        'tapdb_instance_action_set_trg()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s RESET plan_cache_mode', fn);
    END LOOP;
END
$$;
