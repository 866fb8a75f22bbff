-- tapdb_core foundation schema (revision 0001).
-- Everything the database guarantees to plain SQL users: EUIDs, audit trail,
-- soft deletes, modified_dt and an acyclic lineage graph. This file belongs to
-- revision 0001 and, like the revision, is never edited once landed.

------------------------------------------------------------------------------
-- EUID encoding
------------------------------------------------------------------------------
-- Crockford Base32 of a sequence value: 13 five-bit digits, leading zeros trimmed.
-- Written as one expression (no loop, no FROM) so the planner inlines it: about
-- 100x cheaper per row than a plpgsql loop.
CREATE FUNCTION tapdb_euid_body(p_seq bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT ltrim(
    substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 60) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 55) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 50) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 45) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 40) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 35) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 30) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 25) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 20) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 15) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 10) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 5) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((p_seq >> 0) & 31)::int + 1, 1),
    '0')
$$;

-- Sum of the Luhn mod-32 terms of the body digits (weight 2 on even positions
-- counted from the right); f(2d) = 2d - 31 when 2d >= 32.
CREATE FUNCTION tapdb_euid_body_sum(p_seq bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT (2 * ((p_seq >> 0) & 31) - 31 * (((p_seq >> 0) & 31) >> 4))
    + ((p_seq >> 5) & 31)
    + (2 * ((p_seq >> 10) & 31) - 31 * (((p_seq >> 10) & 31) >> 4))
    + ((p_seq >> 15) & 31)
    + (2 * ((p_seq >> 20) & 31) - 31 * (((p_seq >> 20) & 31) >> 4))
    + ((p_seq >> 25) & 31)
    + (2 * ((p_seq >> 30) & 31) - 31 * (((p_seq >> 30) & 31) >> 4))
    + ((p_seq >> 35) & 31)
    + (2 * ((p_seq >> 40) & 31) - 31 * (((p_seq >> 40) & 31) >> 4))
    + ((p_seq >> 45) & 31)
    + (2 * ((p_seq >> 50) & 31) - 31 * (((p_seq >> 50) & 31) >> 4))
    + ((p_seq >> 55) & 31)
    + (2 * ((p_seq >> 60) & 31) - 31 * (((p_seq >> 60) & 31) >> 4))
$$;

-- Number of Base32 digits of a sequence value. Not STRICT: CASE is not strict
-- and a STRICT SQL function with a non-strict body is never inlined.
CREATE FUNCTION tapdb_euid_digits(p_seq bigint) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
    WHEN p_seq < 32 THEN 1
    WHEN p_seq < 1024 THEN 2
    WHEN p_seq < 32768 THEN 3
    WHEN p_seq < 1048576 THEN 4
    WHEN p_seq < 33554432 THEN 5
    WHEN p_seq < 1073741824 THEN 6
    WHEN p_seq < 34359738368 THEN 7
    WHEN p_seq < 1099511627776 THEN 8
    WHEN p_seq < 35184372088832 THEN 9
    WHEN p_seq < 1125899906842624 THEN 10
    WHEN p_seq < 36028797018963968 THEN 11
    WHEN p_seq < 1152921504606846976 THEN 12
    ELSE 13 END
$$;

-- Luhn mod-32 terms of DOMAIN+PREFIX (at most 7 characters), which sit to the
-- left of the body: their weights depend on the parity of the body length.
-- Positions past the start of the string read as '' which strpos maps to 0.
CREATE FUNCTION tapdb_euid_tail_sum(p_tail text, p_body_parity int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN p_body_parity = 0 THEN
      (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 0, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 0, 1)) - 1) >> 4))
      + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 1, 1)) - 1)
      + (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 2, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 2, 1)) - 1) >> 4))
      + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 3, 1)) - 1)
      + (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 4, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 4, 1)) - 1) >> 4))
      + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 5, 1)) - 1)
      + (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 6, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 6, 1)) - 1) >> 4))
    ELSE
      (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 0, 1)) - 1)
      + (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 1, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 1, 1)) - 1) >> 4))
      + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 2, 1)) - 1)
      + (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 3, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 3, 1)) - 1) >> 4))
      + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 4, 1)) - 1)
      + (2 * (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 5, 1)) - 1) - 31 * ((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 5, 1)) - 1) >> 4))
      + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(p_tail, length(p_tail) - 6, 1)) - 1)
    END
$$;

-- PREFIX-BODYCHECK, or DOMAIN-PREFIX-BODYCHECK when a Meridian domain is given.
CREATE FUNCTION tapdb_euid_format(p_prefix text, p_seq bigint, p_domain text DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT coalesce(p_domain || '-', '') || p_prefix || '-' || tapdb_euid_body(p_seq)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
              ((32 - (tapdb_euid_body_sum(p_seq)
                      + tapdb_euid_tail_sum(coalesce(p_domain, '') || p_prefix,
                                            tapdb_euid_digits(p_seq) % 2)) % 32) % 32)::int + 1,
              1)
$$;

-- Splits an EUID into its parts; NULL when the text is not a valid EUID
-- (bad shape, bad character, leading zero, out of BIGINT range, wrong check).
CREATE FUNCTION tapdb_euid_parse(p_euid text,
                                 OUT domain_code text, OUT prefix text, OUT seq bigint)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m text[];
    body text;
    ch text;
    value numeric := 0;
BEGIN
    m := regexp_match(p_euid,
        '^(?:([0-9A-HJKMNP-TV-Z]{1,4})-)?([A-HJKMNP-TV-Z]{2,3})-([1-9A-HJKMNP-TV-Z][0-9A-HJKMNP-TV-Z]*)([0-9A-HJKMNP-TV-Z])$');
    IF m IS NULL THEN
        RETURN;
    END IF;
    body := m[3];
    IF length(body) > 13 THEN
        RETURN;
    END IF;
    FOREACH ch IN ARRAY regexp_split_to_array(body, '') LOOP
        value := value * 32 + (strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ch) - 1);
    END LOOP;
    IF value > 9223372036854775807 THEN
        RETURN;
    END IF;
    IF tapdb_euid_format(m[2], value::bigint, m[1]) <> p_euid THEN
        RETURN;
    END IF;
    domain_code := m[1];
    prefix := m[2];
    seq := value::bigint;
END
$$;

CREATE FUNCTION tapdb_euid_is_valid(p_euid text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT (tapdb_euid_parse(p_euid)).seq IS NOT NULL
$$;

CREATE FUNCTION tapdb_prefix_is_valid(p_prefix text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT p_prefix ~ '^[A-HJ-KMNP-TV-Z]{2,3}$'
$$;

------------------------------------------------------------------------------
-- EUID configuration: prefixes of non-template identities, Meridian domain
------------------------------------------------------------------------------
CREATE TABLE tapdb_identity_prefix_config (
    uuid bigint GENERATED BY DEFAULT AS IDENTITY,
    entity text NOT NULL,
    euid_prefix text NOT NULL,
    created_dt timestamptz NOT NULL DEFAULT now(),
    modified_dt timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_tapdb_identity_prefix_config PRIMARY KEY (uuid),
    CONSTRAINT uq_tapdb_identity_prefix_config_entity UNIQUE (entity),
    CONSTRAINT ck_tapdb_identity_prefix_config_entity CHECK (entity IN ('tapdb_user', 'audit_log')),
    CONSTRAINT ck_tapdb_identity_prefix_config_prefix CHECK (tapdb_prefix_is_valid(euid_prefix)),
    CONSTRAINT ck_tapdb_identity_prefix_config_reserved CHECK (euid_prefix NOT IN ('GT', 'GN'))
);

-- The database-wide Meridian domain code (NULL: plain PREFIX-BODYCHECK EUIDs).
-- Kept as the body of an IMMUTABLE function so that column defaults fold it to
-- a constant at plan time; tapdb_set_meridian_domain() redefines it. Rows keep
-- the domain they were created with in euid_domain, so changing it never
-- rewrites existing EUIDs.
CREATE FUNCTION tapdb_meridian_domain() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT NULL::text $$;

-- Name of the sequence behind a prefix; one sequence per prefix.
CREATE FUNCTION tapdb_euid_sequence_name(p_prefix text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT 'tapdb_euid_seq_' || lower(p_prefix)
$$;

-- Creates the sequence of a prefix if it is missing. Serialised per prefix with
-- a transaction-level advisory lock so that two transactions introducing the
-- same prefix do not collide on CREATE SEQUENCE.
CREATE FUNCTION tapdb_ensure_euid_sequence(p_prefix text) RETURNS regclass
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

CREATE FUNCTION tapdb_identity_prefix(p_entity text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT euid_prefix FROM tapdb_identity_prefix_config WHERE entity = p_entity
$$;

CREATE FUNCTION tapdb_set_identity_prefix(p_entity text, p_prefix text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM generic_template WHERE instance_prefix = p_prefix AND NOT is_deleted) THEN
        RAISE EXCEPTION 'prefix % is already the instance prefix of a template', p_prefix
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM tapdb_ensure_euid_sequence(p_prefix);
    INSERT INTO tapdb_identity_prefix_config (entity, euid_prefix) VALUES (p_entity, p_prefix)
    ON CONFLICT (entity) DO UPDATE SET euid_prefix = EXCLUDED.euid_prefix, modified_dt = now();
END
$$;

CREATE FUNCTION tapdb_set_meridian_domain(p_domain text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_domain IS NOT NULL AND p_domain !~ '^[0-9A-HJ-KMNP-TV-Z]{1,4}$' THEN
        RAISE EXCEPTION 'invalid Meridian domain code %: 1-4 characters of 0-9 and A-Z without I, L, O, U',
            quote_literal(p_domain) USING ERRCODE = 'check_violation';
    END IF;
    EXECUTE format('CREATE OR REPLACE FUNCTION tapdb_meridian_domain() RETURNS text '
                   'LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT %s::text $f$',
                   quote_nullable(p_domain));
END
$$;

------------------------------------------------------------------------------
-- Audit user: transaction-local setting, falling back to the database role
------------------------------------------------------------------------------
CREATE FUNCTION tapdb_audit_user() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT coalesce(nullif(current_setting('tapdb.audit_user', true), ''), session_user::text)
$$;

CREATE FUNCTION tapdb_set_audit_user(p_user text) RETURNS text
LANGUAGE sql AS $$
SELECT set_config('tapdb.audit_user', coalesce(p_user, ''), true)
$$;

------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------
SELECT tapdb_ensure_euid_sequence('GT');
SELECT tapdb_ensure_euid_sequence('GN');

CREATE TABLE generic_template (
    uuid bigint GENERATED BY DEFAULT AS IDENTITY,
    euid_prefix text NOT NULL DEFAULT 'GT',
    euid_seq bigint NOT NULL DEFAULT nextval('tapdb_euid_seq_gt'),
    euid_domain text DEFAULT tapdb_meridian_domain(),
    euid text NOT NULL GENERATED ALWAYS AS (tapdb_euid_format(euid_prefix, euid_seq, euid_domain)) STORED,
    name text NOT NULL,
    polymorphic_discriminator text NOT NULL DEFAULT 'generic_template',
    category text NOT NULL,
    type text NOT NULL,
    subtype text NOT NULL,
    version text NOT NULL,
    instance_prefix text NOT NULL,
    instance_polymorphic_identity text,
    json_addl jsonb NOT NULL DEFAULT '{}'::jsonb,
    json_addl_schema jsonb,
    bstatus text NOT NULL DEFAULT 'active',
    is_singleton boolean NOT NULL DEFAULT false,
    is_deleted boolean NOT NULL DEFAULT false,
    created_dt timestamptz NOT NULL DEFAULT now(),
    modified_dt timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_generic_template PRIMARY KEY (uuid),
    CONSTRAINT uq_generic_template_euid UNIQUE (euid),
    CONSTRAINT uq_generic_template_code UNIQUE (category, type, subtype, version),
    -- target of the instances' (template_uuid, euid_prefix) foreign key
    CONSTRAINT uq_generic_template_uuid_instance_prefix UNIQUE (uuid, instance_prefix),
    CONSTRAINT ck_generic_template_instance_prefix CHECK (tapdb_prefix_is_valid(instance_prefix)),
    CONSTRAINT ck_generic_template_json_addl CHECK (jsonb_typeof(json_addl) = 'object')
);

CREATE TABLE generic_instance (
    uuid bigint GENERATED BY DEFAULT AS IDENTITY,
    euid_prefix text NOT NULL,
    euid_seq bigint NOT NULL,
    euid_domain text DEFAULT tapdb_meridian_domain(),
    euid text NOT NULL GENERATED ALWAYS AS (tapdb_euid_format(euid_prefix, euid_seq, euid_domain)) STORED,
    name text NOT NULL,
    polymorphic_discriminator text NOT NULL,
    category text NOT NULL,
    type text NOT NULL,
    subtype text NOT NULL,
    version text NOT NULL,
    template_uuid bigint NOT NULL,
    json_addl jsonb NOT NULL DEFAULT '{}'::jsonb,
    bstatus text NOT NULL DEFAULT 'created',
    is_singleton boolean NOT NULL DEFAULT false,
    is_deleted boolean NOT NULL DEFAULT false,
    created_dt timestamptz NOT NULL DEFAULT now(),
    modified_dt timestamptz NOT NULL DEFAULT now(),
    -- Top-level transaction that inserted the row. The cycle guard uses it to
    -- know which nodes nobody else can see yet; the check keeps anyone from
    -- claiming a transaction id that has not happened (updates keep the value).
    created_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT pk_generic_instance PRIMARY KEY (uuid),
    CONSTRAINT uq_generic_instance_euid UNIQUE (euid),
    CONSTRAINT fk_generic_instance_template_uuid_generic_template
        FOREIGN KEY (template_uuid, euid_prefix) REFERENCES generic_template (uuid, instance_prefix),
    CONSTRAINT ck_generic_instance_created_xid CHECK (created_xid <= pg_current_xact_id()),
    CONSTRAINT ck_generic_instance_json_addl CHECK (jsonb_typeof(json_addl) = 'object')
);
CREATE INDEX ix_generic_instance_template_uuid ON generic_instance (template_uuid);
CREATE INDEX ix_generic_instance_code ON generic_instance (category, type, subtype, version);
-- Containment queries are on properties; indexing the whole json_addl would
-- also index every materialised action definition of every instance.
CREATE INDEX ix_generic_instance_properties ON generic_instance
    USING gin ((json_addl -> 'properties') jsonb_path_ops);
CREATE UNIQUE INDEX uq_generic_instance_live_singleton ON generic_instance (template_uuid)
    WHERE is_singleton AND NOT is_deleted;

CREATE TABLE generic_instance_lineage (
    uuid bigint GENERATED BY DEFAULT AS IDENTITY,
    euid_prefix text NOT NULL DEFAULT 'GN',
    euid_seq bigint NOT NULL DEFAULT nextval('tapdb_euid_seq_gn'),
    euid_domain text DEFAULT tapdb_meridian_domain(),
    euid text NOT NULL GENERATED ALWAYS AS (tapdb_euid_format(euid_prefix, euid_seq, euid_domain)) STORED,
    name text NOT NULL DEFAULT '',
    polymorphic_discriminator text NOT NULL DEFAULT 'generic_instance_lineage',
    category text NOT NULL DEFAULT 'lineage',
    type text NOT NULL DEFAULT 'lineage',
    subtype text NOT NULL DEFAULT 'generic',
    version text NOT NULL DEFAULT '1.0',
    parent_instance_uuid bigint NOT NULL,
    child_instance_uuid bigint NOT NULL,
    parent_type text,
    child_type text,
    relationship_type text NOT NULL DEFAULT 'generic',
    json_addl jsonb NOT NULL DEFAULT '{}'::jsonb,
    bstatus text NOT NULL DEFAULT 'active',
    is_singleton boolean NOT NULL DEFAULT false,
    is_deleted boolean NOT NULL DEFAULT false,
    created_dt timestamptz NOT NULL DEFAULT now(),
    modified_dt timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_generic_instance_lineage PRIMARY KEY (uuid),
    CONSTRAINT uq_generic_instance_lineage_euid UNIQUE (euid),
    CONSTRAINT fk_generic_instance_lineage_parent_instance_uuid_generic_instance
        FOREIGN KEY (parent_instance_uuid) REFERENCES generic_instance (uuid),
    CONSTRAINT fk_generic_instance_lineage_child_instance_uuid_generic_instance
        FOREIGN KEY (child_instance_uuid) REFERENCES generic_instance (uuid),
    CONSTRAINT ck_generic_instance_lineage_no_self_loop CHECK (parent_instance_uuid <> child_instance_uuid),
    CONSTRAINT ck_generic_instance_lineage_relationship_type CHECK (btrim(relationship_type) <> ''),
    CONSTRAINT ck_generic_instance_lineage_json_addl CHECK (jsonb_typeof(json_addl) = 'object')
);
-- Walks downwards (descendants) use the unique live-edge index; upwards use the child index.
CREATE UNIQUE INDEX uq_generic_instance_lineage_live_edge
    ON generic_instance_lineage (parent_instance_uuid, child_instance_uuid, relationship_type)
    WHERE NOT is_deleted;
CREATE INDEX ix_generic_instance_lineage_child_live
    ON generic_instance_lineage (child_instance_uuid, parent_instance_uuid)
    WHERE NOT is_deleted;
CREATE INDEX ix_generic_instance_lineage_parent ON generic_instance_lineage (parent_instance_uuid);
CREATE INDEX ix_generic_instance_lineage_child ON generic_instance_lineage (child_instance_uuid);

CREATE TABLE tapdb_user (
    uuid bigint GENERATED BY DEFAULT AS IDENTITY,
    euid_prefix text NOT NULL,
    euid_seq bigint NOT NULL,
    euid_domain text DEFAULT tapdb_meridian_domain(),
    euid text NOT NULL GENERATED ALWAYS AS (tapdb_euid_format(euid_prefix, euid_seq, euid_domain)) STORED,
    username text NOT NULL,
    email text,
    display_name text,
    role text NOT NULL DEFAULT 'user',
    is_active boolean NOT NULL DEFAULT true,
    require_password_change boolean NOT NULL DEFAULT false,
    password_hash text,
    json_addl jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_dt timestamptz NOT NULL DEFAULT now(),
    modified_dt timestamptz NOT NULL DEFAULT now(),
    last_login_dt timestamptz,
    CONSTRAINT pk_tapdb_user PRIMARY KEY (uuid),
    CONSTRAINT uq_tapdb_user_euid UNIQUE (euid),
    CONSTRAINT uq_tapdb_user_username UNIQUE (username),
    CONSTRAINT uq_tapdb_user_email UNIQUE (email),
    CONSTRAINT ck_tapdb_user_role CHECK (role IN ('admin', 'user')),
    CONSTRAINT ck_tapdb_user_username CHECK (btrim(username) <> '')
);

CREATE TABLE audit_log (
    uuid bigint GENERATED BY DEFAULT AS IDENTITY,
    euid_prefix text NOT NULL,
    euid_seq bigint NOT NULL,
    euid_domain text DEFAULT tapdb_meridian_domain(),
    euid text NOT NULL GENERATED ALWAYS AS (tapdb_euid_format(euid_prefix, euid_seq, euid_domain)) STORED,
    rel_table_name text NOT NULL,
    rel_table_uuid_fk bigint NOT NULL,
    rel_table_euid_fk text,
    column_name text,
    operation_type text NOT NULL,
    old_value jsonb,
    new_value jsonb,
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT pk_audit_log PRIMARY KEY (uuid),
    CONSTRAINT ck_audit_log_operation_type CHECK (operation_type IN ('INSERT', 'UPDATE', 'DELETE'))
);
CREATE INDEX ix_audit_log_rel_table_euid_fk ON audit_log (rel_table_euid_fk);

------------------------------------------------------------------------------
-- EUID assignment
--
-- euid is a STORED generated column computed from (euid_prefix, euid_seq,
-- euid_domain): nobody can store a malformed EUID or one whose check character
-- or prefix is wrong. Templates and edges draw euid_seq from a column default,
-- so their inserts run no plpgsql at all; instances and users need a trigger
-- only when the caller leaves the prefix or the sequence value to the database.
-- A caller that supplies euid_seq itself (restores, bulk loaders) is not
-- trusted either: the statement-level audit trigger moves the prefix's
-- sequence past the largest value supplied, so later EUIDs never collide.
------------------------------------------------------------------------------
CREATE FUNCTION tapdb_bump_euid_sequence(p_prefix text, p_max_seq bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    seq regclass := tapdb_ensure_euid_sequence(p_prefix);
BEGIN
    IF p_max_seq > coalesce(pg_sequence_last_value(seq), 0) THEN
        PERFORM setval(seq, p_max_seq);
    END IF;
END
$$;

-- Instances: prefix and type columns come from the template when not supplied.
-- The composite foreign key (template_uuid, euid_prefix) guarantees a supplied
-- prefix is the template's instance_prefix.
CREATE FUNCTION tapdb_instance_defaults_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    SELECT instance_prefix, polymorphic_discriminator, instance_polymorphic_identity,
           category, type, subtype, version
      INTO t
      FROM generic_template WHERE uuid = NEW.template_uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'generic_instance.template_uuid % does not name a template', NEW.template_uuid
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.euid_prefix IS NOT NULL AND NEW.euid_prefix <> t.instance_prefix THEN
        RAISE EXCEPTION 'generic_instance.euid_prefix % differs from the template''s instance_prefix %',
            NEW.euid_prefix, t.instance_prefix USING ERRCODE = 'foreign_key_violation';
    END IF;
    NEW.euid_prefix := t.instance_prefix;
    IF NEW.euid_seq IS NULL THEN
        NEW.euid_seq := nextval(tapdb_euid_sequence_name(NEW.euid_prefix)::regclass);
    END IF;
    NEW.polymorphic_discriminator := coalesce(NEW.polymorphic_discriminator, t.instance_polymorphic_identity,
                                              replace(t.polymorphic_discriminator, '_template', '_instance'));
    NEW.category := coalesce(NEW.category, t.category);
    NEW.type := coalesce(NEW.type, t.type);
    NEW.subtype := coalesce(NEW.subtype, t.subtype);
    NEW.version := coalesce(NEW.version, t.version);
    RETURN NEW;
END
$$;

-- Users: prefix from tapdb_identity_prefix_config.
CREATE FUNCTION tapdb_user_euid_trg() RETURNS trigger
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
        PERFORM tapdb_bump_euid_sequence(NEW.euid_prefix, NEW.euid_seq);
    END IF;
    RETURN NEW;
END
$$;

-- Templates: a new instance prefix gets its sequence now, so instance inserts
-- never fail on a missing sequence; prefixes of users/audit rows are refused.
CREATE FUNCTION tapdb_template_prefix_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.instance_prefix IS DISTINCT FROM OLD.instance_prefix THEN
        IF NEW.instance_prefix IN ('GT', 'GN')
           OR NEW.instance_prefix IN (SELECT euid_prefix FROM tapdb_identity_prefix_config) THEN
            RAISE EXCEPTION 'generic_template.instance_prefix % is reserved (templates GT, lineage GN, users and audit rows use their configured prefixes)',
                NEW.instance_prefix USING ERRCODE = 'check_violation';
        END IF;
        PERFORM tapdb_ensure_euid_sequence(NEW.instance_prefix);
    END IF;
    RETURN NEW;
END
$$;

-- Lineage: parent/child types and the conventional name when not supplied.
CREATE FUNCTION tapdb_lineage_defaults_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    c record;
BEGIN
    IF NEW.parent_type IS NULL OR NEW.child_type IS NULL OR NEW.name = '' THEN
        SELECT euid, polymorphic_discriminator INTO p FROM generic_instance WHERE uuid = NEW.parent_instance_uuid;
        SELECT euid, polymorphic_discriminator INTO c FROM generic_instance WHERE uuid = NEW.child_instance_uuid;
        NEW.parent_type := coalesce(NEW.parent_type, p.polymorphic_discriminator);
        NEW.child_type := coalesce(NEW.child_type, c.polymorphic_discriminator);
        IF NEW.name = '' THEN
            NEW.name := coalesce(p.euid, '?') || '->' || coalesce(c.euid, '?');
        END IF;
    END IF;
    RETURN NEW;
END
$$;

------------------------------------------------------------------------------
-- Updates: identity is immutable, modified_dt maintained
------------------------------------------------------------------------------
CREATE FUNCTION tapdb_before_update_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uuid <> OLD.uuid OR NEW.euid_prefix <> OLD.euid_prefix OR NEW.euid_seq <> OLD.euid_seq
       OR NEW.euid_domain IS DISTINCT FROM OLD.euid_domain THEN
        RAISE EXCEPTION '%: uuid and the EUID (euid_prefix, euid_seq, euid_domain) cannot be changed (row %)',
            TG_TABLE_NAME, OLD.euid
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.created_dt := OLD.created_dt;
    NEW.modified_dt := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION tapdb_instance_before_update_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.template_uuid <> OLD.template_uuid THEN
        RAISE EXCEPTION 'generic_instance %: template_uuid cannot be changed', OLD.euid
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.created_xid := OLD.created_xid;
    RETURN NEW;
END
$$;

------------------------------------------------------------------------------
-- Audit: statement-level triggers over transition tables, one INSERT ... SELECT
-- per statement instead of a plpgsql loop per row.
------------------------------------------------------------------------------
CREATE FUNCTION tapdb_audit_insert_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    -- one aggregate per statement: supplied sequence values never get ahead
    PERFORM tapdb_bump_euid_sequence(m.euid_prefix, m.max_seq)
       FROM (SELECT euid_prefix, max(euid_seq) AS max_seq FROM new_rows GROUP BY euid_prefix) m
      WHERE m.max_seq > coalesce(pg_sequence_last_value(tapdb_euid_sequence_name(m.euid_prefix)::regclass), 0);
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, operation_type, changed_by)
    SELECT prefix, nextval(seq), TG_TABLE_NAME, r.uuid, r.euid, 'INSERT', who
      FROM new_rows r;
    RETURN NULL;
END
$$;

-- One audit row per column whose value really changed; modified_dt is noise.
CREATE FUNCTION tapdb_audit_update_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, column_name, operation_type, old_value, new_value, changed_by)
    SELECT prefix, s.n, TG_TABLE_NAME, s.uuid, s.euid,
           s.key, 'UPDATE', s.old_value, s.new_value, who
      FROM (SELECT c.*, nextval(seq) AS n
              FROM (SELECT n.uuid, n.euid, kv.key, oj -> kv.key AS old_value, kv.value AS new_value
                      FROM new_rows n
                      JOIN old_rows o ON o.uuid = n.uuid
                     CROSS JOIN LATERAL (SELECT to_jsonb(o) AS oj, to_jsonb(n) AS nj) j
                     CROSS JOIN LATERAL jsonb_each(j.nj) kv
                     WHERE kv.key NOT IN ('modified_dt', 'created_xid', 'euid')
                       AND kv.value IS DISTINCT FROM j.oj -> kv.key
                     ORDER BY n.uuid, kv.key) c) s;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_audit_delete_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
    seq regclass := tapdb_ensure_euid_sequence(prefix);
    who text := tapdb_audit_user();
BEGIN
    INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                           rel_table_euid_fk, operation_type, old_value, changed_by)
    SELECT prefix, s.n, TG_TABLE_NAME, s.uuid, s.euid,
           'DELETE', s.old_value, who
      FROM (SELECT r.uuid, r.euid, to_jsonb(r) AS old_value, nextval(seq) AS n FROM old_rows r) s;
    RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- Soft delete: DELETE becomes is_deleted = TRUE plus an audit row holding the
-- whole old record; TRUNCATE is refused.
------------------------------------------------------------------------------
CREATE FUNCTION tapdb_soft_delete_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix text := tapdb_identity_prefix('audit_log');
BEGIN
    IF NOT OLD.is_deleted THEN
        EXECUTE format('UPDATE %I.%I SET is_deleted = TRUE WHERE uuid = $1', TG_TABLE_SCHEMA, TG_TABLE_NAME)
            USING OLD.uuid;
        INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,
                               rel_table_euid_fk, operation_type, old_value, changed_by)
        VALUES (prefix, nextval(tapdb_ensure_euid_sequence(prefix)), TG_TABLE_NAME,
                OLD.uuid, OLD.euid, 'DELETE', to_jsonb(OLD), tapdb_audit_user());
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_refuse_truncate_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of % is refused: tapdb never loses rows (DELETE soft-deletes them)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION tapdb_audit_log_append_only_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

------------------------------------------------------------------------------
-- Acyclic lineage
------------------------------------------------------------------------------
-- Refuses the given live edges if any of them closes a cycle.
--
-- Concurrency: a cycle built by several concurrent transactions must contain,
-- for each of them, an edge whose child existed before that transaction (an
-- edge into a node created by the transaction itself leads only to nodes and
-- edges nobody else can see yet). Such edges take one advisory lock before the
-- check, so those transactions check one after another and the later one sees
-- the earlier one's committed edges. Edges into new nodes (a plate and its new
-- wells) never wait for that lock.
-- SET jit = off: the planner cannot size the recursive walk, overestimates it
-- by orders of magnitude, and JIT-compiles it -- about 8 ms per statement for
-- a walk that takes 0.3 ms.
CREATE FUNCTION tapdb_lineage_assert_acyclic(p_parents bigint[], p_children bigint[]) RETURNS void
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    bad record;
BEGIN
    IF cardinality(p_parents) = 0 THEN
        RETURN;
    END IF;
    -- Edges into nodes that existed before this transaction take the guard
    -- lock first (see above); a plate's edges into its new wells do not.
    IF EXISTS (SELECT 1
                 FROM unnest(p_children) AS n(child)
                 JOIN generic_instance c ON c.uuid = n.child
                WHERE c.created_xid <> pg_current_xact_id()) THEN
        IF NOT pg_try_advisory_xact_lock(hashtext('tapdb_lineage_cycle_guard')) THEN
            PERFORM pg_advisory_xact_lock(hashtext('tapdb_lineage_cycle_guard'));
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                -- our snapshot predates the edges committed while we waited
                RAISE EXCEPTION 'concurrent lineage change: retry the transaction'
                    USING ERRCODE = 'serialization_failure';
            END IF;
        END IF;
    END IF;

    -- Walk down from every new child; reaching that edge's parent means a cycle.
    WITH RECURSIVE walk (target, node) AS (
        SELECT n.parent, n.child FROM unnest(p_parents, p_children) AS n(parent, child)
        UNION
        -- LATERAL ... OFFSET 0 keeps this a nested loop of index probes: the
        -- planner cannot estimate the work table and otherwise picks a hash
        -- join over a sequential scan of the whole edge table.
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

CREATE FUNCTION tapdb_lineage_after_insert_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parents bigint[];
    children bigint[];
BEGIN
    SELECT array_agg(parent_instance_uuid), array_agg(child_instance_uuid)
      INTO parents, children
      FROM new_rows WHERE NOT is_deleted;
    PERFORM tapdb_lineage_assert_acyclic(coalesce(parents, '{}'), coalesce(children, '{}'));
    RETURN NULL;
END
$$;

CREATE FUNCTION tapdb_lineage_after_update_trg() RETURNS trigger
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
    PERFORM tapdb_lineage_assert_acyclic(coalesce(parents, '{}'), coalesce(children, '{}'));
    RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- Triggers. Names sort in firing order within each timing.
------------------------------------------------------------------------------
CREATE TRIGGER tapdb_20_prefix BEFORE INSERT OR UPDATE OF instance_prefix ON generic_template
    FOR EACH ROW EXECUTE FUNCTION tapdb_template_prefix_trg();

CREATE TRIGGER tapdb_10_defaults BEFORE INSERT ON generic_instance
    FOR EACH ROW
    WHEN (NEW.euid_prefix IS NULL OR NEW.euid_seq IS NULL OR NEW.polymorphic_discriminator IS NULL
          OR NEW.category IS NULL OR NEW.type IS NULL OR NEW.subtype IS NULL OR NEW.version IS NULL)
    EXECUTE FUNCTION tapdb_instance_defaults_trg();
CREATE TRIGGER tapdb_20_template_fixed BEFORE UPDATE ON generic_instance
    FOR EACH ROW EXECUTE FUNCTION tapdb_instance_before_update_trg();

CREATE TRIGGER tapdb_20_defaults BEFORE INSERT ON generic_instance_lineage
    FOR EACH ROW
    WHEN (NEW.parent_type IS NULL OR NEW.child_type IS NULL OR NEW.name = '')
    EXECUTE FUNCTION tapdb_lineage_defaults_trg();
CREATE TRIGGER tapdb_50_acyclic_insert AFTER INSERT ON generic_instance_lineage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_insert_trg();
CREATE TRIGGER tapdb_50_acyclic_update AFTER UPDATE ON generic_instance_lineage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_lineage_after_update_trg();

CREATE TRIGGER tapdb_10_euid BEFORE INSERT ON tapdb_user
    FOR EACH ROW EXECUTE FUNCTION tapdb_user_euid_trg();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage', 'tapdb_user'] LOOP
        EXECUTE format('CREATE TRIGGER tapdb_30_modified BEFORE UPDATE ON %I
                        FOR EACH ROW EXECUTE FUNCTION tapdb_before_update_trg()', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_insert AFTER INSERT ON %I
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_insert_trg()', t);
        EXECUTE format('CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON %I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_update_trg()', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['generic_template', 'generic_instance', 'generic_instance_lineage'] LOOP
        EXECUTE format('CREATE TRIGGER tapdb_40_soft_delete BEFORE DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION tapdb_soft_delete_trg()', t);
        EXECUTE format('CREATE TRIGGER tapdb_40_no_truncate BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION tapdb_refuse_truncate_trg()', t);
    END LOOP;
END
$$;

-- Users are really deleted (an account is not lineage), but never silently.
CREATE TRIGGER tapdb_90_audit_delete AFTER DELETE ON tapdb_user
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_audit_delete_trg();

CREATE TRIGGER tapdb_10_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tapdb_audit_log_append_only_trg();
CREATE TRIGGER tapdb_10_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tapdb_refuse_truncate_trg();

------------------------------------------------------------------------------
-- Sequences of the fixed and default prefixes
------------------------------------------------------------------------------
SELECT tapdb_set_identity_prefix('tapdb_user', 'TDA');
SELECT tapdb_set_identity_prefix('audit_log', 'ADT');
