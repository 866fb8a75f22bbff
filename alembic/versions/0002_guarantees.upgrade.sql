-- tapdb_core revision 0002: guarantees that hold under every isolation level.
-- Like every landed revision, this file is never edited once landed.
--
-- * The lineage cycle guard materialises its conflict in a row
--   (tapdb_lineage_guard) instead of an advisory lock, so REPEATABLE READ and
--   SERIALIZABLE transactions that missed a guarded change get 40001.
-- * EUIDs are never reissued: sequence high-water marks outlive a downgrade
--   (tapdb_euid_high_water), and moving a sequence forward is atomic.
-- * Secrets are never audited: password hashes are redacted, and the hashes
--   earlier audit rows captured are scrubbed.
-- * Every function that calls another tapdb object either has a SQL-standard
--   body (bound at creation, so pg_dump/pg_restore and pg_upgrade work with an
--   empty search_path, and the planner still inlines it) or a fixed search_path.
-- * Templates carry row_version, bumped by every update, so writers can prove
--   the template they validated against is still the live one.
-- * TRUNCATE of tapdb_user and deleting identity-prefix rows are refused.
--
-- Functions whose behaviour changes get a new _vN name; the triggers are
-- re-pointed, and the downgrade points them back. Exceptions (same name,
-- body replaced, 0001's body restored by the downgrade) are the functions
-- referenced by name from generated columns or many callers:
-- tapdb_euid_format, tapdb_euid_is_valid, tapdb_identity_prefix and
-- tapdb_ensure_euid_sequence.

------------------------------------------------------------------------------
-- EUID functions: SQL-standard bodies, bound to their callees at creation
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION tapdb_euid_format(p_prefix text, p_seq bigint, p_domain text DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(p_domain || '-', '') || p_prefix || '-' || tapdb_euid_body(p_seq)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
              ((32 - (tapdb_euid_body_sum(p_seq)
                      + tapdb_euid_tail_sum(coalesce(p_domain, '') || p_prefix,
                                            tapdb_euid_digits(p_seq) % 2)) % 32) % 32)::int + 1,
              1);

CREATE OR REPLACE FUNCTION tapdb_euid_is_valid(p_euid text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (tapdb_euid_parse(p_euid)).seq IS NOT NULL;

CREATE OR REPLACE FUNCTION tapdb_identity_prefix(p_entity text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT euid_prefix FROM tapdb_identity_prefix_config WHERE entity = p_entity;
END;

------------------------------------------------------------------------------
-- EUID high-water marks: survive a downgrade, so EUIDs are never reissued
------------------------------------------------------------------------------
-- Deliberately outlives a downgrade of this revision (and of 0001): it is the
-- memory that lets a re-created sequence continue where the dropped one was.
-- alembic/env.py records every tapdb sequence here before each migration run.
CREATE TABLE IF NOT EXISTS tapdb_euid_high_water (
    euid_prefix text NOT NULL,
    last_value bigint NOT NULL,
    recorded_dt timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_tapdb_euid_high_water PRIMARY KEY (euid_prefix)
);

-- Creates the sequence of a prefix if it is missing, starting past anything
-- that prefix ever issued in this database.
CREATE OR REPLACE FUNCTION tapdb_ensure_euid_sequence(p_prefix text) RETURNS regclass
LANGUAGE plpgsql AS $$
DECLARE
    seq regclass;
    issued bigint;
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
    SELECT h.last_value INTO issued FROM tapdb_euid_high_water h WHERE h.euid_prefix = p_prefix;
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I.%I AS bigint START %s',
                   current_schema(), tapdb_euid_sequence_name(p_prefix), coalesce(issued, 0) + 1);
    RETURN to_regclass(tapdb_euid_sequence_name(p_prefix));
END
$$;

-- Sequences that exist now (0001 creates GT, GN, TDA and ADT) continue past
-- what was issued before a downgrade.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT h.euid_prefix, h.last_value, to_regclass(tapdb_euid_sequence_name(h.euid_prefix)) AS seq
               FROM tapdb_euid_high_water h
    LOOP
        IF r.seq IS NOT NULL AND r.last_value > coalesce(pg_sequence_last_value(r.seq), 0) THEN
            PERFORM setval(r.seq, r.last_value);
        END IF;
    END LOOP;
END
$$;

-- Moves a prefix's sequence past a caller-supplied value, atomically and only
-- forwards. ALTER SEQUENCE takes the lock nextval() conflicts with, so while
-- the value is read and set nobody draws; the lock is held to the end of the
-- transaction, which is why this runs only when a supplied value is ahead.
CREATE FUNCTION tapdb_bump_euid_sequence_v2(p_prefix text, p_max_seq bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    seq regclass := tapdb_ensure_euid_sequence(p_prefix);
BEGIN
    IF p_max_seq <= coalesce(pg_sequence_last_value(seq), 0) THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', seq);
    IF p_max_seq > coalesce(pg_sequence_last_value(seq), 0) THEN
        PERFORM setval(seq, p_max_seq);
    END IF;
END
$$;

CREATE FUNCTION tapdb_user_euid_trg_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('tapdb_user');
BEGIN
    IF prefix IS NULL THEN
        RAISE EXCEPTION 'no EUID prefix configured for tapdb_user: call tapdb_set_identity_prefix(''tapdb_user'', ''XYZ'')'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    NEW.euid_prefix := coalesce(NEW.euid_prefix, prefix);
    IF NEW.euid_seq IS NULL THEN
        NEW.euid_seq := nextval(tapdb_ensure_euid_sequence(NEW.euid_prefix));
    ELSE
        PERFORM tapdb_bump_euid_sequence_v2(NEW.euid_prefix, NEW.euid_seq);
    END IF;
    RETURN NEW;
END
$$;

------------------------------------------------------------------------------
-- Templates: a version that every update bumps
------------------------------------------------------------------------------
ALTER TABLE generic_template ADD COLUMN row_version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION tapdb_template_row_version_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_version := OLD.row_version + 1;
    RETURN NEW;
END
$$;

------------------------------------------------------------------------------
-- Audit, v2: password hashes redacted, row_version is noise, atomic bumps
------------------------------------------------------------------------------
-- What the audit trail stores for a secret column: whether it was set, never
-- the value.
CREATE FUNCTION tapdb_audit_redact(p_table text, p_column text, p_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_table = 'tapdb_user' AND p_column = 'password_hash'
         AND p_value IS NOT NULL AND p_value <> 'null'::jsonb THEN '"[redacted]"'::jsonb
    ELSE p_value END;

CREATE FUNCTION tapdb_audit_insert_trg_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    -- one aggregate per statement: supplied sequence values never get ahead
    PERFORM tapdb_bump_euid_sequence_v2(m.euid_prefix, m.max_seq)
       FROM (SELECT euid_prefix, max(euid_seq) AS max_seq FROM new_rows GROUP BY euid_prefix) m
      WHERE m.max_seq > coalesce(pg_sequence_last_value(tapdb_euid_sequence_name(m.euid_prefix)::regclass), 0);
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, operation_type, changed_by)
    SELECT prefix, nextval(seq), TG_TABLE_NAME, r.uuid, r.euid, 'INSERT', who
      FROM new_rows r;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_audit_update_trg_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
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
                     CROSS JOIN LATERAL (SELECT to_jsonb(o) AS oj, to_jsonb(n) AS nj) j
                     CROSS JOIN LATERAL jsonb_each(j.nj) kv
                     WHERE kv.key NOT IN ('modified_dt', 'created_xid', 'euid', 'row_version')
                       AND kv.value IS DISTINCT FROM j.oj -> kv.key
                     ORDER BY n.uuid, kv.key) c) s;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_audit_delete_trg_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, operation_type, old_value, changed_by)
    SELECT prefix, s.n, TG_TABLE_NAME, s.uuid, s.euid, 'DELETE', s.old_value, who
      FROM (SELECT r.uuid, r.euid, nextval(seq) AS n,
                   CASE WHEN to_jsonb(r) ? 'password_hash'
                        THEN jsonb_set(to_jsonb(r), '{password_hash}',
                                       tapdb_audit_redact(TG_TABLE_NAME, 'password_hash',
                                                          to_jsonb(r) -> 'password_hash'))
                        ELSE to_jsonb(r) END AS old_value
              FROM old_rows r) s;
    RETURN NULL;
END
$$;

-- Hashes that revision 0001 audited are scrubbed: a secret in an append-only
-- log would be there forever. The append-only trigger is lifted for this one
-- statement of the migration only.
ALTER TABLE audit_log DISABLE TRIGGER tapdb_10_append_only;
UPDATE audit_log
   SET old_value = tapdb_audit_redact('tapdb_user', 'password_hash', old_value),
       new_value = tapdb_audit_redact('tapdb_user', 'password_hash', new_value)
 WHERE rel_table_name = 'tapdb_user' AND column_name = 'password_hash' AND operation_type = 'UPDATE';
UPDATE audit_log
   SET old_value = jsonb_set(old_value, '{password_hash}',
                             tapdb_audit_redact('tapdb_user', 'password_hash', old_value -> 'password_hash'))
 WHERE rel_table_name = 'tapdb_user' AND operation_type = 'DELETE' AND old_value ? 'password_hash';
ALTER TABLE audit_log ENABLE TRIGGER tapdb_10_append_only;

------------------------------------------------------------------------------
-- Acyclic lineage, v2: the guard is a row, so snapshots that missed a guarded
-- change are detected
------------------------------------------------------------------------------
-- One row. Every statement that adds (or re-points, or un-deletes) an edge
-- into a node that existed before its transaction updates it before walking:
-- * READ COMMITTED: the update waits for any other such transaction to
--   finish, and the walk that follows (a new statement, a new snapshot) sees
--   that transaction's edges -- the advisory lock of 0001 did the same.
-- * REPEATABLE READ / SERIALIZABLE: updating a row that a transaction
--   committed after our snapshot is a serialization failure (40001), whether
--   or not we had to wait. 0001's advisory lock was free by then, so an old
--   snapshot walked without seeing the other edge and a cycle could commit.
CREATE TABLE tapdb_lineage_guard (
    id smallint NOT NULL DEFAULT 1,
    guarded_changes bigint NOT NULL DEFAULT 0,
    CONSTRAINT pk_tapdb_lineage_guard PRIMARY KEY (id),
    CONSTRAINT ck_tapdb_lineage_guard_one_row CHECK (id = 1)
);
INSERT INTO tapdb_lineage_guard (id) VALUES (1);

CREATE FUNCTION tapdb_lineage_guard_keep_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tapdb_lineage_guard keeps exactly one row: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION tapdb_lineage_assert_acyclic_v2(p_parents bigint[], p_children bigint[]) RETURNS void
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    bad record;
BEGIN
    IF cardinality(p_parents) = 0 THEN
        RETURN;
    END IF;
    -- Edges into nodes created by this transaction cannot be part of a cycle
    -- with anyone else's edges (docs/schema.md); a plate's edges into its new
    -- wells never touch the guard.
    IF EXISTS (SELECT 1
                 FROM unnest(p_children) AS n(child)
                 JOIN generic_instance c ON c.uuid = n.child
                WHERE c.created_xid <> pg_current_xact_id()) THEN
        UPDATE tapdb_lineage_guard SET guarded_changes = guarded_changes + 1 WHERE id = 1;
    END IF;

    -- Walk down from every new child; reaching that edge's parent means a cycle.
    WITH RECURSIVE walk (target, node) AS (
        SELECT n.parent, n.child FROM unnest(p_parents, p_children) AS n(parent, child)
        UNION
        SELECT w.target, l.child_instance_uuid
          FROM walk w
          CROSS JOIN LATERAL (SELECT c.child_instance_uuid
                                FROM generic_instance_lineage c
                               WHERE c.parent_instance_uuid = w.node AND NOT c.is_deleted
                              OFFSET 0) l
    )
    SELECT w.target INTO bad FROM walk w WHERE w.node = w.target LIMIT 1;
    IF FOUND THEN
        SELECT e.euid, p.euid AS parent_euid, c.euid AS child_euid
          INTO bad
          FROM unnest(p_parents, p_children) AS n(parent, child)
          JOIN generic_instance_lineage e
            ON e.parent_instance_uuid = n.parent AND e.child_instance_uuid = n.child AND NOT e.is_deleted
          JOIN generic_instance p ON p.uuid = e.parent_instance_uuid
          JOIN generic_instance c ON c.uuid = e.child_instance_uuid
         WHERE n.parent = bad.target
         LIMIT 1;
        RAISE EXCEPTION 'lineage cycle refused: edge % (% -> %) would close a cycle, % already descends from %',
            bad.euid, bad.parent_euid, bad.child_euid, bad.parent_euid, bad.child_euid
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_generic_instance_lineage_acyclic';
    END IF;
END
$$;

CREATE FUNCTION tapdb_lineage_after_insert_trg_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parents bigint[];
    children bigint[];
BEGIN
    SELECT array_agg(parent_instance_uuid), array_agg(child_instance_uuid)
      INTO parents, children
      FROM new_rows WHERE NOT is_deleted;
    PERFORM tapdb_lineage_assert_acyclic_v2(coalesce(parents, '{}'), coalesce(children, '{}'));
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_lineage_after_update_trg_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parents bigint[];
    children bigint[];
BEGIN
    SELECT array_agg(n.parent_instance_uuid), array_agg(n.child_instance_uuid)
      INTO parents, children
      FROM new_rows n JOIN old_rows o ON o.uuid = n.uuid
     WHERE NOT n.is_deleted
       AND (o.is_deleted OR n.parent_instance_uuid <> o.parent_instance_uuid
            OR n.child_instance_uuid <> o.child_instance_uuid);
    PERFORM tapdb_lineage_assert_acyclic_v2(coalesce(parents, '{}'), coalesce(children, '{}'));
    RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- Updating an instance must not block linking to it
------------------------------------------------------------------------------
-- With BEFORE UPDATE row triggers PostgreSQL recomputes every generated column
-- on UPDATE, and a generated column under a plain unique constraint counts as a
-- key column: every UPDATE then took the FOR UPDATE row lock, which conflicts
-- with the FOR KEY SHARE lock the lineage foreign keys take -- an update and
-- a link to the same instance waited for each other (and deadlocked). A
-- partial unique index is not a key (nothing references euid), serves the
-- same lookups, and lets updates take FOR NO KEY UPDATE.
ALTER TABLE generic_instance DROP CONSTRAINT uq_generic_instance_euid;
CREATE UNIQUE INDEX uq_generic_instance_euid ON generic_instance (euid) WHERE euid IS NOT NULL;

------------------------------------------------------------------------------
-- Identity prefixes: rows can change, never disappear
------------------------------------------------------------------------------
CREATE FUNCTION tapdb_identity_prefix_keep_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tapdb_identity_prefix_config rows cannot be removed (% refused): every user and audit row needs its prefix; change one with tapdb_set_identity_prefix()', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

------------------------------------------------------------------------------
-- Triggers
------------------------------------------------------------------------------
DROP TRIGGER tapdb_50_acyclic_insert ON generic_instance_lineage;
DROP TRIGGER tapdb_50_acyclic_update ON generic_instance_lineage;
CREATE TRIGGER tapdb_50_acyclic_insert AFTER INSERT ON generic_instance_lineage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_insert_trg_v2();
CREATE TRIGGER tapdb_50_acyclic_update AFTER UPDATE ON generic_instance_lineage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_update_trg_v2();

DROP TRIGGER tapdb_10_euid ON tapdb_user;
CREATE TRIGGER tapdb_10_euid BEFORE INSERT ON tapdb_user
    FOR EACH ROW EXECUTE FUNCTION tapdb_user_euid_trg_v2();

CREATE TRIGGER tapdb_35_row_version BEFORE UPDATE ON generic_template
    FOR EACH ROW EXECUTE FUNCTION tapdb_template_row_version_trg();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_insert ON %I', t);
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_insert AFTER INSERT ON %I
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_insert_trg_v2()', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg_v2()', t);
    END LOOP;
END
$$;
DROP TRIGGER tapdb_90_audit_delete ON tapdb_user;
CREATE TRIGGER tapdb_90_audit_delete AFTER DELETE ON tapdb_user
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_delete_trg_v2();

-- Users are deleted one by one, each audited; TRUNCATE would skip the audit.
CREATE TRIGGER tapdb_40_no_truncate BEFORE TRUNCATE ON tapdb_user
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_refuse_truncate_trg();

CREATE TRIGGER tapdb_10_keep BEFORE DELETE ON tapdb_identity_prefix_config
    FOR EACH ROW EXECUTE FUNCTION tapdb_identity_prefix_keep_trg();
CREATE TRIGGER tapdb_10_no_truncate BEFORE TRUNCATE ON tapdb_identity_prefix_config
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_identity_prefix_keep_trg();

CREATE TRIGGER tapdb_10_keep BEFORE DELETE ON tapdb_lineage_guard
    FOR EACH ROW EXECUTE FUNCTION tapdb_lineage_guard_keep_trg();
CREATE TRIGGER tapdb_10_no_truncate BEFORE TRUNCATE ON tapdb_lineage_guard
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_guard_keep_trg();

------------------------------------------------------------------------------
-- A fixed search_path for every plpgsql function that names tapdb objects, so
-- it resolves the same objects whoever calls it with whatever search_path
-- (pg_restore runs with an empty one). SQL functions that name other objects
-- have SQL-standard bodies above instead: a SET clause would stop inlining.
------------------------------------------------------------------------------
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'tapdb_euid_parse(text)',
        'tapdb_ensure_euid_sequence(text)',
        'tapdb_set_identity_prefix(text, text)',
        'tapdb_set_meridian_domain(text)',
        'tapdb_bump_euid_sequence(text, bigint)',
        'tapdb_bump_euid_sequence_v2(text, bigint)',
        'tapdb_instance_defaults_trg()',
        'tapdb_user_euid_trg()',
        'tapdb_user_euid_trg_v2()',
        'tapdb_template_prefix_trg()',
        'tapdb_lineage_defaults_trg()',
        'tapdb_audit_insert_trg()',
        'tapdb_audit_update_trg()',
        'tapdb_audit_delete_trg()',
        'tapdb_audit_insert_trg_v2()',
        'tapdb_audit_update_trg_v2()',
        'tapdb_audit_delete_trg_v2()',
        'tapdb_soft_delete_trg()',
        'tapdb_lineage_assert_acyclic(bigint[], bigint[])',
        'tapdb_lineage_after_insert_trg()',
        'tapdb_lineage_after_update_trg()',
        'tapdb_lineage_assert_acyclic_v2(bigint[], bigint[])',
        'tapdb_lineage_after_insert_trg_v2()',
        'tapdb_lineage_after_update_trg_v2()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog, pg_temp', fn, current_schema());
    END LOOP;
END
$$;
