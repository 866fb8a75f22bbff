-- Undoes revision 0002 except tapdb_euid_high_water, which deliberately
-- outlives downgrades: it is how a re-created sequence knows what was issued.
-- Audit rows whose password hashes 0002 scrubbed stay scrubbed.

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'tapdb_euid_parse(text)',
        'tapdb_set_identity_prefix(text, text)',
        'tapdb_set_meridian_domain(text)',
        'tapdb_bump_euid_sequence(text, bigint)',
        'tapdb_instance_defaults_trg()',
        'tapdb_user_euid_trg()',
        'tapdb_template_prefix_trg()',
        'tapdb_lineage_defaults_trg()',
        'tapdb_audit_insert_trg()',
        'tapdb_audit_update_trg()',
        'tapdb_audit_delete_trg()',
        'tapdb_soft_delete_trg()',
        'tapdb_lineage_assert_acyclic(bigint[], bigint[])',
        'tapdb_lineage_after_insert_trg()',
        'tapdb_lineage_after_update_trg()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s RESET search_path', fn);
    END LOOP;
END
$$;

DROP INDEX uq_generic_instance_euid;
ALTER TABLE generic_instance ADD CONSTRAINT uq_generic_instance_euid UNIQUE (euid);

DROP TRIGGER tapdb_10_keep ON tapdb_identity_prefix_config;
DROP TRIGGER tapdb_10_no_truncate ON tapdb_identity_prefix_config;
DROP TRIGGER tapdb_40_no_truncate ON tapdb_user;
DROP TRIGGER tapdb_35_row_version ON generic_template;

DROP TRIGGER tapdb_90_audit_delete ON tapdb_user;
CREATE TRIGGER tapdb_90_audit_delete AFTER DELETE ON tapdb_user
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_delete_trg();
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_insert ON %I', t);
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_insert AFTER INSERT ON %I
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_insert_trg()', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg()', t);
    END LOOP;
END
$$;

DROP TRIGGER tapdb_10_euid ON tapdb_user;
CREATE TRIGGER tapdb_10_euid BEFORE INSERT ON tapdb_user
    FOR EACH ROW EXECUTE FUNCTION tapdb_user_euid_trg();

DROP TRIGGER tapdb_50_acyclic_insert ON generic_instance_lineage;
DROP TRIGGER tapdb_50_acyclic_update ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_insert AFTER INSERT ON generic_instance_lineage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_insert_trg();
CREATE TRIGGER tapdb_50_acyclic_update AFTER UPDATE ON generic_instance_lineage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_update_trg();

DROP FUNCTION tapdb_identity_prefix_keep_trg();
DROP FUNCTION tapdb_lineage_after_insert_trg_v2();
DROP FUNCTION tapdb_lineage_after_update_trg_v2();
DROP FUNCTION tapdb_lineage_assert_acyclic_v2(bigint[], bigint[]);
DROP TABLE tapdb_lineage_guard;
DROP FUNCTION tapdb_lineage_guard_keep_trg();
DROP FUNCTION tapdb_audit_insert_trg_v2();
DROP FUNCTION tapdb_audit_update_trg_v2();
DROP FUNCTION tapdb_audit_delete_trg_v2();
DROP FUNCTION tapdb_audit_redact(text, text, jsonb);
DROP FUNCTION tapdb_template_row_version_trg();
ALTER TABLE generic_template DROP COLUMN row_version;
DROP FUNCTION tapdb_user_euid_trg_v2();
DROP FUNCTION tapdb_bump_euid_sequence_v2(text, bigint);

-- 0001's bodies, as 0001 wrote them.
CREATE OR REPLACE FUNCTION tapdb_ensure_euid_sequence(p_prefix text) RETURNS regclass
LANGUAGE plpgsql AS $$
DECLARE
    seq regclass;
BEGIN
    IF p_prefix IS NULL OR NOT tapdb_prefix_is_valid(p_prefix) THEN
        RAISE EXCEPTION 'invalid EUID prefix %: must match ^[A-HJ-KMNP-TV-Z]{2,3}$ (2-3 letters, no I, L, O or U)', quote_nullable(p_prefix)
            USING ERRCODE = 'check_violation';
    END IF;
    seq := to_regclass(tapdb_euid_sequence_name(p_prefix));
    IF seq IS NOT NULL THEN
        RETURN seq;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('tapdb_euid_sequence'), hashtext(p_prefix));
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I AS bigint START 1', tapdb_euid_sequence_name(p_prefix));
    RETURN to_regclass(tapdb_euid_sequence_name(p_prefix));
END
$$;
ALTER FUNCTION tapdb_ensure_euid_sequence(text) RESET search_path;

CREATE OR REPLACE FUNCTION tapdb_identity_prefix(p_entity text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT euid_prefix FROM tapdb_identity_prefix_config WHERE entity = p_entity
$$;

CREATE OR REPLACE FUNCTION tapdb_euid_is_valid(p_euid text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT (tapdb_euid_parse(p_euid)).seq IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION tapdb_euid_format(p_prefix text, p_seq bigint, p_domain text DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT coalesce(p_domain || '-', '') || p_prefix || '-' || tapdb_euid_body(p_seq)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
              ((32 - (tapdb_euid_body_sum(p_seq)
                      + tapdb_euid_tail_sum(coalesce(p_domain, '') || p_prefix,
                                            tapdb_euid_digits(p_seq) % 2)) % 32) % 32)::int + 1,
              1)
$$;
