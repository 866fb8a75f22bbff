-- tapdb_core revision 0005: tapdb_euid_format planned once per session.
-- Like every landed revision, this file is never edited once landed.
--
-- Same name and signature (generated columns and callers refer to it), same
-- result for every input; plpgsql instead of an inlinable SQL function, so
-- the nested EUID functions are inlined once when plpgsql first plans the
-- expression in a session, not while every INSERT prepares its generated
-- columns (measured: 0.73 -> 0.25 ms for a one-row INSERT into a table with a
-- generated EUID; 21.5 -> ~40 ms for 5,000 rows). search_path is fixed like
-- the other functions of revision 0002, so callers' search_paths never
-- change what it calls. (%% in the body is format()'s escape of %.)
DO $$
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION tapdb_euid_format(p_prefix text, p_seq bigint, p_domain text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = %I, pg_catalog, pg_temp
AS $body$
BEGIN
    RETURN coalesce(p_domain || '-', '') || p_prefix || '-' || tapdb_euid_body(p_seq)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
                  ((32 - (tapdb_euid_body_sum(p_seq)
                          + tapdb_euid_tail_sum(coalesce(p_domain, '') || p_prefix,
                                                tapdb_euid_digits(p_seq) %% 2)) %% 32) %% 32)::int + 1,
                  1);
END
$body$
$f$, current_schema());
END
$$;
