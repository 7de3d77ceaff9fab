-- Custom fields: typed values in attrs, checked and canonicalised on write.
CREATE EXTENSION ccrm;
-- err(sql): run a statement and show how it failed (SQLSTATE, message, hint).
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;

SELECT ccrm.define_field('contact', 'note', 'text');
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'ratio', 'numeric');
SELECT ccrm.define_field('contact', 'vip', 'boolean');
SELECT ccrm.define_field('contact', 'birthday', 'date');
SELECT ccrm.define_field('contact', 'seen_at', 'timestamptz');
SELECT ccrm.define_field('account', 'score', 'integer');
SELECT entity, name, type FROM ccrm.custom_field ORDER BY entity, name;

-- canonical forms, whatever the session's DateStyle and the JSON type given
SET datestyle = 'German, DMY';
SET timezone = 'Europe/Helsinki';
INSERT INTO ccrm.contact (firstname, attrs) VALUES
    ('a', '{"note": "hello", "score": "42", "ratio": "1.50", "vip": "yes", "birthday": "5.1.1990", "seen_at": "1.2.2024 10:00"}'),
    ('b', '{"note": 7, "score": 7, "ratio": 2, "vip": false, "birthday": null}'),
    ('c', '{}');
RESET datestyle;
SELECT firstname, attrs FROM ccrm.contact ORDER BY id;
-- values read back typed, independent of DateStyle
SET datestyle = 'SQL, MDY';
SELECT firstname, (attrs->>'birthday')::date AS birthday, (attrs->>'score')::bigint + 1 AS score_plus_one
  FROM ccrm.contact ORDER BY id;
RESET datestyle;
RESET timezone;

-- bad values: nothing is written
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"score": "forty"}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"score": 1.5}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"score": 99999999999999999999}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"ratio": "NaN"}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"vip": "perhaps"}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"birthday": "2023-02-29"}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"seen_at": "whenever"}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"note": ["a", "b"]}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"nosuch": 1}')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '[1, 2]')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.contact SET attrs = attrs || '{"score": "x"}' WHERE firstname = 'a'$$);
-- the account's field is not the contact's
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.lead (firstname, attrs) VALUES ('x', '{"score": 1}')$$);
SELECT count(*) FROM ccrm.contact;
SELECT attrs->'score' FROM ccrm.contact WHERE firstname = 'a';

-- updated_at is kept by the trigger; an unchanged attrs is not re-checked
SELECT updated_at = created_at AS untouched FROM ccrm.contact WHERE firstname = 'a';
BEGIN;
UPDATE ccrm.contact SET updated_at = '2000-01-01', title = 'CEO' WHERE firstname = 'a';
SELECT updated_at = now() AS stamped FROM ccrm.contact WHERE firstname = 'a';
ROLLBACK;

-- define_field: bad input
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', 'Bad Name', 'text')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', '1st', 'text')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', 'x', 'varchar')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', 'email', 'text')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', 'attrs', 'text')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', 'score', 'text')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('nosuch', 'x', 'text')$$);
CREATE TABLE public.invoice (id int PRIMARY KEY, attrs jsonb);
SELECT ccrm.register_entity('invoice', 'public.invoice');
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('invoice', 'x', 'text')$$);
-- the same definition again is a no-op
SELECT ccrm.define_field('contact', 'score', 'integer');

-- defining a field over values already stored checks and canonicalises them
ALTER TABLE ccrm.contact DISABLE TRIGGER ccrm_row;
UPDATE ccrm.contact SET attrs = attrs || '{"since": "2024-3-1"}' WHERE firstname = 'b';
UPDATE ccrm.contact SET attrs = attrs || '{"level": "high"}' WHERE firstname = 'c';
ALTER TABLE ccrm.contact ENABLE TRIGGER ccrm_row;
SELECT ccrm.define_field('contact', 'since', 'date');
SELECT * FROM pg_temp.err($$SELECT ccrm.define_field('contact', 'level', 'integer')$$);
SELECT firstname, attrs->'since' AS since, attrs->'level' AS level FROM ccrm.contact ORDER BY id;
SELECT count(*) FROM ccrm.custom_field WHERE name = 'level';
-- a row holding an undefined key cannot be written until the key is defined or removed
SELECT * FROM pg_temp.err($$UPDATE ccrm.contact SET attrs = attrs || '{"vip": true}' WHERE firstname = 'c'$$);
SELECT ccrm.define_field('contact', 'level', 'text');
SELECT ccrm.drop_field('contact', 'level');
SELECT firstname, attrs ? 'level' AS has_level FROM ccrm.contact ORDER BY id;

-- drop_field removes the definition and the values
SELECT ccrm.drop_field('contact', 'score');
SELECT firstname, attrs ? 'score' AS has_score FROM ccrm.contact ORDER BY id;
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_field('contact', 'score')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_field('contact', 'email')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"score": 1}')$$);
-- the account's field of the same name is untouched
SELECT entity, name FROM ccrm.custom_field WHERE name = 'score';

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.invoice;
