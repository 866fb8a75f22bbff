-- tapdb_core revision 0006: action definitions stored once, referenced by instances.
-- Like every landed revision, this file is never edited once landed.
--
-- Every instance used to carry its own copy of the action definitions its
-- template imports (json_addl -> 'action_groups', ~3.5 KB for a DNA sample),
-- identical across the 96 wells of a plate and across every sample of a bulk
-- load: 90% of the bytes written, audited and read. Now:
--
-- * tapdb_action_set holds each distinct action_groups document once, keyed
--   by the SHA-256 of its canonical JSON (the library computes it). Rows are
--   immutable: an instance that references one sees exactly the definitions
--   it was created with, as before, even if an action template changes later.
-- * generic_instance.action_set_digest references the set. A row either
--   references a set (and has no 'action_groups' key of its own) or carries
--   its own copy (NULL digest): rows written before this revision keep theirs.
-- * Copy on write: the first change to an instance's action state (an
--   execution being counted) stores a private copy in its json_addl and drops
--   the reference, in the same UPDATE.
-- * What an instance's json_addl is, for readers: tapdb_instance_json_addl(
--   json_addl, action_set_digest). The audit trail records that effective
--   document, never the storage detail: old and new values of json_addl are
--   what they were before this revision.

CREATE TABLE tapdb_action_set (
    digest text NOT NULL,
    action_groups jsonb NOT NULL,
    created_dt timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT pk_tapdb_action_set PRIMARY KEY (digest),
    CONSTRAINT ck_tapdb_action_set_digest CHECK (digest ~ '^[0-9a-f]{64}$'),
    CONSTRAINT ck_tapdb_action_set_action_groups CHECK (jsonb_typeof(action_groups) = 'object')
);

ALTER TABLE generic_instance ADD COLUMN action_set_digest text;
ALTER TABLE generic_instance ADD CONSTRAINT fk_generic_instance_action_set_digest_tapdb_action_set
    FOREIGN KEY (action_set_digest) REFERENCES tapdb_action_set (digest);
ALTER TABLE generic_instance ADD CONSTRAINT ck_generic_instance_action_set
    CHECK (action_set_digest IS NULL OR NOT json_addl ? 'action_groups');

-- The json_addl an instance row stands for: its own keys plus, when it
-- references a set, that set's action_groups.
CREATE FUNCTION tapdb_instance_json_addl(p_json_addl jsonb, p_action_set_digest text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN p_action_set_digest IS NULL THEN p_json_addl
                ELSE p_json_addl || jsonb_build_object(
                         'action_groups',
                         (SELECT s.action_groups FROM tapdb_action_set s
                           WHERE s.digest = p_action_set_digest)) END;
END;

-- A row as the audit trail records it: an instance's effective json_addl, and
-- no action_set_digest (how it is stored is not a change anyone made).
CREATE FUNCTION tapdb_audit_row(p_row jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN p_row ? 'action_set_digest'
                THEN jsonb_set(p_row, '{json_addl}',
                               tapdb_instance_json_addl(p_row -> 'json_addl',
                                                        p_row ->> 'action_set_digest'))
                     - 'action_set_digest'
                ELSE p_row END;
END;

-- Sets are shared by every instance that references them: never changed or removed.
CREATE FUNCTION tapdb_action_set_keep_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tapdb_action_set rows are immutable and shared: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Whoever writes an instance's whole json_addl back (the library after a
-- property change, an application with plain SQL) writes the effective
-- document. Its action_groups equal to the referenced set's: keep the
-- reference and do not store the copy. Different: the written copy wins and
-- the reference goes.
CREATE FUNCTION tapdb_instance_action_set_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.action_set_digest IS NOT NULL AND NEW.json_addl ? 'action_groups' THEN
        IF NEW.json_addl -> 'action_groups' = (SELECT s.action_groups FROM tapdb_action_set s
                                                WHERE s.digest = NEW.action_set_digest) THEN
            NEW.json_addl := NEW.json_addl - 'action_groups';
        ELSE
            NEW.action_set_digest := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- Revision 0002's audit of updates, comparing rows as tapdb_audit_row shows them.
CREATE FUNCTION tapdb_audit_update_trg_v3() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, column_name, operation_type, old_value, new_value, changed_by)
    SELECT prefix, s.n, TG_TABLE_NAME, s.uuid, s.euid, s.key, 'UPDATE',
           tapdb_audit_redact(TG_TABLE_NAME, s.key, s.old_value),
           tapdb_audit_redact(TG_TABLE_NAME, s.key, s.new_value), who
      FROM (SELECT c.*, nextval(seq) AS n
              FROM (SELECT n.uuid, n.euid, kv.key, oj -> kv.key AS old_value, kv.value AS new_value
                      FROM new_rows n
                      JOIN old_rows o ON o.uuid = n.uuid
                     CROSS JOIN LATERAL (SELECT tapdb_audit_row(to_jsonb(o)) AS oj,
                                                tapdb_audit_row(to_jsonb(n)) AS nj) j
                     CROSS JOIN LATERAL jsonb_each(j.nj) kv
                     WHERE kv.key NOT IN ('modified_dt', 'created_xid', 'euid', 'row_version')
                       AND kv.value IS DISTINCT FROM j.oj -> kv.key
                     ORDER BY n.uuid, kv.key) c) s;
    RETURN NULL;
END
$$;

-- Revision 0001's soft delete, auditing the old record as tapdb_audit_row shows it.
CREATE FUNCTION tapdb_soft_delete_trg_v2() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
BEGIN
    IF NOT OLD.is_deleted THEN
        EXECUTE format('UPDATE %I.%I SET is_deleted = TRUE WHERE uuid = $1', TG_TABLE_SCHEMA, TG_TABLE_NAME)
            USING OLD.uuid;
        INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                               rel_table_euid_fk, operation_type, old_value, changed_by)
        VALUES (prefix, nextval(tapdb_ensure_euid_sequence(prefix)), TG_TABLE_NAME,
                OLD.uuid, OLD.euid, 'DELETE', tapdb_audit_row(to_jsonb(OLD)), tapdb_audit_user());
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'tapdb_action_set_keep_trg()',
        'tapdb_instance_action_set_trg()',
        'tapdb_audit_update_trg_v3()',
        'tapdb_soft_delete_trg_v2()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog, pg_temp', fn, current_schema());
    END LOOP;
    -- revision 0003's rule for functions that write the audit trail
    REVOKE EXECUTE ON FUNCTION tapdb_audit_update_trg_v3() FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION tapdb_soft_delete_trg_v2() FROM PUBLIC;
END
$$;

CREATE TRIGGER tapdb_10_keep BEFORE UPDATE OR DELETE ON tapdb_action_set
    FOR EACH ROW EXECUTE FUNCTION tapdb_action_set_keep_trg();
CREATE TRIGGER tapdb_10_no_truncate BEFORE TRUNCATE ON tapdb_action_set
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_refuse_truncate_trg();

CREATE TRIGGER tapdb_25_action_set BEFORE UPDATE OF json_addl, action_set_digest ON generic_instance
    FOR EACH ROW EXECUTE FUNCTION tapdb_instance_action_set_trg();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg_v3()', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_40_soft_delete ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_40_soft_delete BEFORE DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION tapdb_soft_delete_trg_v2()', t);
    END LOOP;
END
$$;
