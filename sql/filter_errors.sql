-- Bad filters: each is an error with a SQLSTATE, a message naming the path
-- of the bad part, and a hint listing what is valid.  Nothing runs.
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
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'birthday', 'date');
INSERT INTO ccrm.contact (firstname) VALUES ('a');
SELECT ccrm.create_target_group('Existing', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT ccrm.create_target_group('Accounts', 'account', '{"field": "id", "op": "gt", "value": 0}');
CREATE TABLE public.offer (id int PRIMARY KEY, title text, note jsonb);
SELECT ccrm.register_entity('offer', 'public.offer');

SELECT f, e.* FROM (VALUES
 -- unknown entity, field, link, op
 ('nosuch', '{"field": "id", "op": "eq", "value": 1}'),
 ('contact', '{"field": "nme", "op": "eq", "value": 1}'),
 ('contact', '{"all": [{"field": "id", "op": "gt", "value": 0}, {"field": "id", "op": "gt", "value": 0}, {"not": {"field": "emial", "op": "not_null"}}]}'),
 ('contact', '{"field": "account.nme", "op": "eq", "value": 1}'),
 ('contact', '{"field": "acount.name", "op": "eq", "value": 1}'),
 ('contact', '{"field": "owner.account.name", "op": "eq", "value": 1}'),
 ('offer', '{"field": "owner.username", "op": "eq", "value": 1}'),
 ('contact', '{"field": "city", "op": "like", "value": "x"}'),
 ('contact', '{"field": "city", "op": 5, "value": "x"}'),
 ('contact', '{"field": "city"}'),
 ('contact', '{"field": 7, "op": "eq", "value": "x"}'),
 ('contact', '{"field": "", "op": "eq", "value": "x"}'),
 ('contact', '{"field": "account..name", "op": "eq", "value": "x"}'),
 ('contact', '{"field": ".name", "op": "eq", "value": "x"}'),
 -- ops that do not fit the type
 ('contact', '{"field": "city", "op": "is_true"}'),
 ('contact', '{"field": "score", "op": "contains", "value": "1"}'),
 ('contact', '{"field": "email_opt_out", "op": "lt", "value": true}'),
 ('contact', '{"field": "city", "op": "older_than", "value": "1 day"}'),
 ('offer', '{"field": "note", "op": "gt", "value": "{}"}'),
 -- values that do not convert
 ('contact', '{"field": "created_at", "op": "gt", "value": "yesterday-ish"}'),
 ('contact', '{"field": "birthday", "op": "eq", "value": "2023-02-29"}'),
 ('contact', '{"field": "score", "op": "eq", "value": "ten"}'),
 ('contact', '{"field": "score", "op": "in", "value": [1, "two", 3]}'),
 ('contact', '{"field": "id", "op": "eq", "value": 99999999999999999999}'),
 ('contact', '{"field": "email_opt_out", "op": "eq", "value": "perhaps"}'),
 ('contact', '{"field": "created_at", "op": "older_than", "value": "a while"}'),
 ('contact', '{"field": "created_at", "op": "older_than", "value": "-3 days"}'),
 ('contact', '{"field": "created_at", "op": "older_than", "value": 30}'),
 ('contact', '{"field": "city", "op": "eq", "value": null}'),
 ('contact', '{"field": "city", "op": "eq", "value": ["a"]}'),
 ('contact', '{"field": "city", "op": "eq", "value": {"a": 1}}'),
 ('contact', '{"field": "city", "op": "contains", "value": 5}'),
 -- wrong shapes
 ('contact', '42'),
 ('contact', '"city"'),
 ('contact', '[{"field": "id", "op": "gt", "value": 0}]'),
 ('contact', '{}'),
 ('contact', '{"all": []}'),
 ('contact', '{"any": []}'),
 ('contact', '{"all": {"field": "id", "op": "gt", "value": 0}}'),
 ('contact', '{"all": [42]}'),
 ('contact', '{"not": [{"field": "id", "op": "gt", "value": 0}]}'),
 ('contact', '{"all": [{"field": "id", "op": "gt", "value": 0}], "any": []}'),
 ('contact', '{"field": "id", "op": "gt", "value": 0, "valeu": 1}'),
 ('contact', '{"all": [{"field": "id", "op": "gt", "value": 0}], "op": "eq"}'),
 ('contact', '{"field": "city", "op": "is_null", "value": "x"}'),
 ('contact', '{"field": "city", "op": "eq"}'),
 ('contact', '{"field": "city", "op": "in", "value": "Helsinki"}'),
 ('contact', '{"field": "city", "op": "in", "value": []}'),
 ('contact', '{"field": "id", "op": "between", "value": [1]}'),
 ('contact', '{"field": "id", "op": "between", "value": [1, 2, 3]}'),
 ('contact', '{"field": "id", "op": "between", "value": 1}'),
 -- groups and activities
 ('contact', '{"in_group": "Nope"}'),
 ('contact', '{"in_group": 999}'),
 ('contact', '{"in_group": 1.5}'),
 ('contact', '{"in_group": true}'),
 ('lead', '{"in_group": "Accounts"}'),
 ('contact', '{"has_activity": true}'),
 ('contact', '{"has_activity": {"kind": 5}}'),
 ('contact', '{"has_activity": {"kind": []}}'),
 ('contact', '{"has_activity": {"when": "today"}}'),
 ('contact', '{"has_activity": {"within_last": "soon"}}'),
 ('offer', '{"has_activity": {}}')
) v(entity, f), LATERAL pg_temp.err(format('SELECT ccrm.filter_count(%L, %L)', entity, f)) e;

-- the same checks guard target groups: nothing is saved
SELECT * FROM pg_temp.err($$SELECT ccrm.create_target_group('Bad', 'contact', '{"field": "nme", "op": "eq", "value": 1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_target_group('Bad', 'contact', '"just a string"')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_target_group('Bad', 'nosuch')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.target_group SET filter = '{"all": []}' WHERE name = 'Existing'$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_preview('contact', '{"field": "id", "op": "gt", "value": 0}', -1)$$);
SELECT name, filter FROM ccrm.target_group ORDER BY id;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.offer;
