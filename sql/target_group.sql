-- Target groups: definitions, refresh by difference, overrides, history,
-- dependencies, and the checks that guard them.
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
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna'), (2, 'ben');
INSERT INTO ccrm.account (id, name, country) VALUES (1, 'Acme Oy', 'FI'), (2, 'Beta AB', 'SE');
INSERT INTO ccrm.contact (id, account_id, firstname, city)
SELECT i, 1 + i % 2, 'c' || i, CASE WHEN i <= 6 THEN 'Helsinki' ELSE 'Turku' END FROM generate_series(1, 10) i;
INSERT INTO ccrm.lead (id, firstname, company) VALUES (1, 'l1', 'X Oy'), (2, 'l2', 'Y AB');

CREATE FUNCTION pg_temp.members(g text) RETURNS text LANGUAGE sql AS
$$ SELECT coalesce(string_agg(member_id::text, ',' ORDER BY member_id), '-')
     FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id(g) $$;

SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}',
                                responsible_user_id => 1, description => 'contacts in Helsinki');
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT pg_temp.members('Helsinki');

-- members who stay keep entered_at; the second refresh applies only the difference
CREATE TEMP TABLE before AS SELECT member_id, entered_at FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Helsinki');
UPDATE ccrm.contact SET city = 'Turku' WHERE id IN (1, 2);
UPDATE ccrm.contact SET city = 'Helsinki' WHERE id = 9;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT pg_temp.members('Helsinki');
SELECT count(*) AS kept_entered_at FROM ccrm.target_group_member m JOIN before b USING (member_id)
 WHERE m.group_id = ccrm.target_group_id('Helsinki') AND m.entered_at = b.entered_at;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
-- the history holds the joins and the leaves, and a rejoin is a new stay
UPDATE ccrm.contact SET city = 'Helsinki' WHERE id = 1;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT member_id, event FROM ccrm.target_group_history WHERE group_id = ccrm.target_group_id('Helsinki') AND member_id IN (1, 2, 9)
 ORDER BY member_id, at, event DESC;
SELECT count(*) AS refreshes, sum(added) AS added, sum(removed) AS removed FROM ccrm.target_group_refresh;
SELECT name, entity, is_static, member_count, responsible, description FROM ccrm.target_groups;

-- manual includes and excludes survive refreshes
SELECT ccrm.include_in_group('Helsinki', ARRAY[10, 10, 3]::bigint[]);
SELECT ccrm.exclude_from_group('Helsinki', ARRAY[4]::bigint[]);
SELECT pg_temp.members('Helsinki');
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT pg_temp.members('Helsinki');
UPDATE ccrm.contact SET city = 'Helsinki' WHERE id = 4;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT pg_temp.members('Helsinki'), (SELECT included || '/' || excluded FROM ccrm.target_groups WHERE name = 'Helsinki') AS overrides;
-- clearing them lets the filter decide again, at the next refresh
SELECT ccrm.clear_group_override('Helsinki', ARRAY[4, 10, 7]::bigint[]);
SELECT pg_temp.members('Helsinki');
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT pg_temp.members('Helsinki');
-- an included record that is deleted leaves at the next refresh
SELECT ccrm.include_in_group('Helsinki', ARRAY[8]::bigint[]);
DELETE FROM ccrm.contact WHERE id = 8;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
-- bad ids change nothing
SELECT * FROM pg_temp.err($$SELECT ccrm.include_in_group('Helsinki', ARRAY[7, 99, 98]::bigint[])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.include_in_group('Helsinki', ARRAY[7, NULL]::bigint[])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.exclude_from_group('Helsinki', ARRAY[[1, 2], [3, 4]]::bigint[])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.include_in_group('Nope', ARRAY[1]::bigint[])$$);
SELECT pg_temp.members('Helsinki'), (SELECT member_count FROM ccrm.target_group WHERE name = 'Helsinki');

-- static groups: members by hand only
SELECT ccrm.create_target_group('Fair', 'contact');
SELECT ccrm.include_in_group('Fair', ARRAY[1, 2, 3]::bigint[]);
SELECT * FROM ccrm.refresh_target_group('Fair');
SELECT ccrm.exclude_from_group('Fair', ARRAY[2]::bigint[]);
SELECT * FROM ccrm.refresh_target_group('Fair');
SELECT pg_temp.members('Fair');

-- groups over accounts, leads, users and registered entities
SELECT ccrm.create_target_group('Finnish accounts', 'account', '{"field": "country", "op": "eq", "value": "FI"}');
SELECT ccrm.create_target_group('Oy leads', 'lead', '{"field": "company", "op": "ends_with", "value": "oy"}');
SELECT ccrm.create_target_group('Anna', 'user', '{"field": "username", "op": "eq", "value": "anna"}');
CREATE TABLE public.ticket (no smallint PRIMARY KEY, contact bigint, open boolean);
INSERT INTO public.ticket VALUES (1, 1, true), (2, 2, false), (3, 3, true);
SELECT ccrm.register_entity('ticket', 'public.ticket', 'no', contact_column => 'contact');
SELECT ccrm.create_target_group('Open tickets of Helsinki', 'ticket',
       '{"all": [{"field": "open", "op": "is_true"}, {"in_group": "Helsinki"}]}');
SELECT g.name, r.* FROM ccrm.target_group g CROSS JOIN LATERAL ccrm.refresh_target_group(g.id) r
 WHERE g.name IN ('Finnish accounts', 'Oy leads', 'Anna', 'Open tickets of Helsinki') ORDER BY g.id;
SELECT pg_temp.members('Finnish accounts') AS accounts, pg_temp.members('Oy leads') AS leads,
       pg_temp.members('Anna') AS users, pg_temp.members('Open tickets of Helsinki') AS tickets;

-- in_group dependencies: recorded, cycles refused, drop and rename protected
SELECT ccrm.create_target_group('Helsinki in Acme', 'contact',
       '{"all": [{"in_group": "Helsinki"}, {"in_group": "Finnish accounts"}]}');
SELECT g.name AS group_name, d.name AS depends_on
  FROM ccrm.target_group_dependency x JOIN ccrm.target_group g ON g.id = x.group_id JOIN ccrm.target_group d ON d.id = x.depends_on
 ORDER BY 1, 2;
SELECT * FROM ccrm.refresh_target_group('Helsinki in Acme');
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Helsinki', filter => '{"in_group": "Helsinki in Acme"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Helsinki', filter => '{"in_group": "Helsinki"}')$$);
SELECT ccrm.create_target_group('Level 3', 'contact', '{"in_group": "Helsinki in Acme"}');
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Helsinki', filter => '{"any": [{"field": "id", "op": "eq", "value": 1}, {"not": {"in_group": "Level 3"}}]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_target_group('Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Helsinki', new_name => 'Hki')$$);
-- referring by id allows the rename, once every group does
SELECT ccrm.alter_target_group('Helsinki in Acme', filter => jsonb_build_object('all', jsonb_build_array(
       jsonb_build_object('in_group', ccrm.target_group_id('Helsinki')), jsonb_build_object('in_group', 'Finnish accounts'))));
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Helsinki', new_name => 'Hki')$$);
SELECT ccrm.alter_target_group('Open tickets of Helsinki', filter => jsonb_build_object('all', jsonb_build_array(
       '{"field": "open", "op": "is_true"}'::jsonb, jsonb_build_object('in_group', ccrm.target_group_id('Helsinki')))));
SELECT ccrm.alter_target_group('Helsinki', new_name => 'Hki');
SELECT ccrm.alter_target_group('Hki', new_name => 'Helsinki');
SELECT name FROM ccrm.target_group ORDER BY id;

-- alter: what is given changes, 'null' makes a group static, '' clears the description
SELECT ccrm.alter_target_group('Fair', description => 'met at the fair', responsible_user_id => 2);
SELECT ccrm.alter_target_group('Oy leads', filter => 'null', description => '');
SELECT name, filter IS NULL AS static, description, responsible_user_id FROM ccrm.target_group WHERE name IN ('Fair', 'Oy leads') ORDER BY name;
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Fair', responsible_user_id => 99)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Nope', description => 'x')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group(NULL, description => 'x')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.target_group SET entity = 'lead' WHERE name = 'Fair'$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_target_group('Fair', 'contact')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_target_group(' ', 'contact')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.refresh_target_group('Nope')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.refresh_target_group(999::bigint)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.target_group_id('Nope')$$);
-- an empty group can change its entity
SELECT ccrm.create_target_group('Empty', 'contact');
UPDATE ccrm.target_group SET entity = 'lead' WHERE name = 'Empty';
SELECT entity FROM ccrm.target_group WHERE name = 'Empty';

-- drop takes members, overrides and history along
SELECT ccrm.drop_target_group('Level 3');
SELECT ccrm.drop_target_group('Fair');
SELECT count(*) FROM ccrm.target_group_override WHERE group_id NOT IN (SELECT id FROM ccrm.target_group);
SELECT count(*) FROM ccrm.target_group_membership WHERE group_id NOT IN (SELECT id FROM ccrm.target_group);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_target_group('Fair')$$);

-- purge old history: nothing is old enough yet; with a zero interval closed stays go
SELECT ccrm.purge_group_history('1 day');
SELECT ccrm.purge_group_history('0 seconds') > 0 AS purged_closed_stays;
SELECT count(*) FROM ccrm.target_group_membership WHERE left_at IS NOT NULL;
SELECT pg_temp.members('Helsinki');

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.ticket;
