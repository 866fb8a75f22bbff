-- Undoes revision 0010: revision 0007's body again.
CREATE OR REPLACE FUNCTION tapdb_euid_format(p_prefix text, p_seq bigint, p_domain text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $body$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    rest bigint := p_seq;
    digit int;
    digits int := 0;
    body text := '';
    weight_two boolean := true;
    total int := 0;
    tail text;
BEGIN
    IF p_seq IS NULL OR p_prefix IS NULL THEN
        RETURN NULL;
    END IF;
    -- Crockford base 32 and Luhn mod 32 from the right: weight 2 on the last
    -- body digit, then 1, 2, ... (13 digits at most; a negative value, which
    -- never ends in zero, takes all 13)
    LOOP
        digit := (rest & 31)::int;
        body := substr(alphabet, digit + 1, 1) || body;
        IF weight_two THEN
            total := total + 2 * digit - 31 * (digit >> 4);
        ELSE
            total := total + digit;
        END IF;
        weight_two := NOT weight_two;
        rest := rest >> 5;
        digits := digits + 1;
        EXIT WHEN rest = 0 OR digits = 13;
    END LOOP;
    IF p_seq <= 0 THEN
        body := ltrim(body, '0');
    END IF;
    -- DOMAIN+PREFIX continue to the left; only their last 7 characters count
    tail := coalesce(p_domain, '') || p_prefix;
    FOR i IN REVERSE length(tail) .. greatest(length(tail) - 6, 1) LOOP
        digit := strpos(alphabet, substr(tail, i, 1)) - 1;
        IF weight_two THEN
            total := total + 2 * digit - 31 * (digit >> 4);
        ELSE
            total := total + digit;
        END IF;
        weight_two := NOT weight_two;
    END LOOP;
    RETURN coalesce(p_domain || '-', '') || p_prefix || '-' || body
        || substr(alphabet, ((32 - total % 32) % 32) + 1, 1);
END
$body$;
