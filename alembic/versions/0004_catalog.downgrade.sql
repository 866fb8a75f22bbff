-- Undoes revision 0004.
DROP TRIGGER tapdb_95_generation ON generic_template;
DROP TABLE tapdb_template_generation;
DROP FUNCTION tapdb_template_generation_trg();
DROP FUNCTION tapdb_template_generation_keep_trg();

ALTER TABLE generic_instance_lineage
    RENAME CONSTRAINT fk_generic_instance_lineage_parent
    TO fk_generic_instance_lineage_parent_instance_uuid_generic_instan;
ALTER TABLE generic_instance_lineage
    RENAME CONSTRAINT fk_generic_instance_lineage_child
    TO fk_generic_instance_lineage_child_instance_uuid_generic_instanc;
