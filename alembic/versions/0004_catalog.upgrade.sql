-- tapdb_core revision 0004: names the code can state, and a template generation.
-- Like every landed revision, this file is never edited once landed.
--
-- * The lineage foreign keys had names longer than PostgreSQL's 63 characters,
--   silently truncated (tables.py could not even emit CREATE TABLE for them).
-- * tapdb_template_generation: one counter, moved by every statement that
--   writes generic_template. A process keeps its template cache while the
--   counter it read at the start of a transaction is unchanged, so a template
--   changed by another process (or psql) is never served stale from the cache.

ALTER TABLE generic_instance_lineage
    RENAME CONSTRAINT fk_generic_instance_lineage_parent_instance_uuid_generic_instan
    TO fk_generic_instance_lineage_parent;
ALTER TABLE generic_instance_lineage
    RENAME CONSTRAINT fk_generic_instance_lineage_child_instance_uuid_generic_instanc
    TO fk_generic_instance_lineage_child;

CREATE TABLE tapdb_template_generation (
    id smallint NOT NULL DEFAULT 1,
    generation bigint NOT NULL DEFAULT 0,
    CONSTRAINT pk_tapdb_template_generation PRIMARY KEY (id),
    CONSTRAINT ck_tapdb_template_generation_one_row CHECK (id = 1)
);
INSERT INTO tapdb_template_generation (id) VALUES (1);

-- SECURITY DEFINER with a fixed search_path (revision 0003's rule): the
-- application role writes templates but cannot write the counter itself.
CREATE FUNCTION tapdb_template_generation_trg() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    UPDATE tapdb_template_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_template_generation_keep_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tapdb_template_generation keeps exactly one row: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tapdb_template_generation_trg() SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
    REVOKE EXECUTE ON FUNCTION tapdb_template_generation_trg() FROM PUBLIC;
END
$$;

CREATE TRIGGER tapdb_95_generation AFTER INSERT OR UPDATE OR DELETE ON generic_template
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_template_generation_trg();
CREATE TRIGGER tapdb_10_keep BEFORE DELETE ON tapdb_template_generation
    FOR EACH ROW EXECUTE FUNCTION tapdb_template_generation_keep_trg();
CREATE TRIGGER tapdb_10_no_truncate BEFORE TRUNCATE ON tapdb_template_generation
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_template_generation_keep_trg();
