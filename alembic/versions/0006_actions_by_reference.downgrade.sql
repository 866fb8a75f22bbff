-- Undoes revision 0006. Nothing is lost: every instance that references an
-- action set gets its own copy back first. That rewrite is a storage change,
-- not an edit: the triggers that would stamp modified_dt and audit it are off
-- for this one statement (the effective json_addl does not change).
ALTER TABLE generic_instance DISABLE TRIGGER tapdb_30_modified;
ALTER TABLE generic_instance DISABLE TRIGGER tapdb_90_audit_update;
ALTER TABLE generic_instance DISABLE TRIGGER tapdb_25_action_set;
UPDATE generic_instance g
   SET json_addl = g.json_addl || jsonb_build_object('action_groups', s.action_groups),
       action_set_digest = NULL
  FROM tapdb_action_set s
 WHERE s.digest = g.action_set_digest;
ALTER TABLE generic_instance ENABLE TRIGGER tapdb_30_modified;
ALTER TABLE generic_instance ENABLE TRIGGER tapdb_90_audit_update;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_90_audit_update ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg_v2()', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage'] LOOP
        EXECUTE format('DROP TRIGGER tapdb_40_soft_delete ON %I', t);
        EXECUTE format('CREATE TRIGGER tapdb_40_soft_delete BEFORE DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION tapdb_soft_delete_trg()', t);
    END LOOP;
END
$$;

DROP TRIGGER tapdb_25_action_set ON generic_instance;
ALTER TABLE generic_instance DROP CONSTRAINT ck_generic_instance_action_set;
ALTER TABLE generic_instance DROP CONSTRAINT fk_generic_instance_action_set_digest_tapdb_action_set;
ALTER TABLE generic_instance DROP COLUMN action_set_digest;
DROP FUNCTION tapdb_audit_update_trg_v3();
DROP FUNCTION tapdb_soft_delete_trg_v2();
DROP FUNCTION tapdb_instance_action_set_trg();
DROP FUNCTION tapdb_audit_row(jsonb);
DROP FUNCTION tapdb_instance_json_addl(jsonb, text);
DROP TABLE tapdb_action_set;
DROP FUNCTION tapdb_action_set_keep_trg();
