-- tapdb_core revision 0008: trigger functions re-plan their queries on every call.
-- Like every landed revision, this file is never edited once landed.
--
-- plpgsql caches a generic plan per session after a few executions. A plan
-- made while a table was tiny (a sequential scan is the cheapest plan of a
-- one-page table) stayed in use by a long-lived connection while the table
-- grew, until something invalidated it (an ANALYZE): the cycle guard's "is
-- any child older than this transaction" check then scanned all of
-- generic_instance for every link (measured: 4 ms at 6,000 instances, 26 ms
-- at 55,000, linear beyond). With plan_cache_mode = force_custom_plan each
-- call plans its statements with the table as it is now (a few tens of
-- microseconds of planning): the index plans are kept at every size.
-- Functions whose queries touch tables that grow with the data:
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
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_custom_plan', fn);
    END LOOP;
END
$$;
