-- Undoes revision 0007: revision 0005's body again.
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
