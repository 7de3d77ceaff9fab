-- Module tools: registration rules, running with the caller's privileges,
-- built-in tools, the job kind's validator and runner.
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
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
INSERT INTO ccrm.crm_user (id, username, active) VALUES (1, 'anna', true), (2, 'ben', true), (3, 'carl', false);
INSERT INTO ccrm.account (id, name, owner_id) VALUES (1, 'Acme Oy', 1), (2, 'Beta AB', NULL);
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname) VALUES
    (1, 1, 1, 'Aino'), (2, 1, NULL, 'Bert'), (3, 2, 2, 'Cleo'), (4, NULL, 2, 'Dino');
SELECT ccrm.create_target_group('Contacts', 'contact', '{"field": "id", "op": "lte", "value": 3}');
SELECT ccrm.create_target_group('Accounts', 'account', '{"field": "id", "op": "gt", "value": 0}');
SELECT ccrm.create_target_group('Fair visitors', 'contact');
SELECT added FROM ccrm.refresh_target_group('Contacts');
SELECT added FROM ccrm.refresh_target_group('Accounts');

-- built-in tools
SELECT name, entity, function, builtin FROM ccrm.tool ORDER BY name;
SELECT ccrm.run_tool('Contacts', 'contact_set_owner', '{"owner": "ben"}') AS run \gset
SELECT kind, trigger, status, counts, detail FROM ccrm.job_run WHERE id = :run;
SELECT id, owner_id FROM ccrm.contact ORDER BY id;
SELECT ccrm.run_tool('Accounts', 'account_set_owner', '{"owner": 1}') AS run1 \gset
SELECT counts->'result' AS result FROM ccrm.job_run WHERE id = :run1;
SELECT id, owner_id FROM ccrm.account ORDER BY id;
SELECT ccrm.run_tool('Contacts', 'contact_create_task',
    '{"subject": "Call back", "due_in_days": 3, "priority": "high"}') AS run2 \gset
SELECT counts->'result' AS result FROM ccrm.job_run WHERE id = :run2;
SELECT a.kind, a.subject, a.user_id, a.contact_id, a.due_on = (r.action_time AT TIME ZONE 'Europe/Helsinki')::date + 3 AS in_3_days, a.priority
  FROM ccrm.activity a, ccrm.job_run r WHERE r.id = :run2 ORDER BY a.contact_id;
SELECT ccrm.run_tool('Contacts', 'add_to_group', '{"group": "Fair visitors"}') AS run3 \gset
SELECT counts->'result' AS result FROM ccrm.job_run WHERE id = :run3;
SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Fair visitors') ORDER BY 1;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'contact_set_owner', '{"owner": "carl"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'contact_set_owner', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'contact_set_owner', '{"owner": "anna", "when": "now"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'contact_create_task', '{"due_in_days": 1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'account_set_owner', '{"owner": "anna"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'no_such_tool')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'contact_set_owner', '[1]')$$);

-- registration: a function (bigint[], jsonb) returning a count, owned by the registrant
CREATE FUNCTION public.flag_vip(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE sql AS $$
    WITH u AS (UPDATE ccrm.contact SET title = coalesce(params->>'title', 'VIP')
                WHERE id = ANY (member_ids) RETURNING 1)
    SELECT count(*) FROM u $$;
SELECT ccrm.register_tool('flag_vip', 'contact', 'public.flag_vip(bigint[], jsonb)', 'mark contacts as VIPs');
SELECT ccrm.run_tool('Contacts', 'flag_vip', '{"title": "Key account"}') AS run4 \gset
SELECT counts FROM ccrm.job_run WHERE id = :run4;
SELECT id, title FROM ccrm.contact ORDER BY id;
CREATE FUNCTION public.wrong_args(ids integer[]) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
CREATE FUNCTION public.wrong_result(ids bigint[], params jsonb) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$;
CREATE FUNCTION public.as_owner(ids bigint[], params jsonb) RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT 0::bigint';
CREATE PROCEDURE public.a_proc(ids bigint[], params jsonb) LANGUAGE sql AS 'SELECT 1';
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('flag_vip', 'contact', 'public.flag_vip(bigint[], jsonb)', 'again')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('wrong_args', NULL, 'public.wrong_args(integer[])')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('wrong_result', NULL, 'public.wrong_result(bigint[], jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('as_owner', NULL, 'public.as_owner(bigint[], jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('a_proc', NULL, 'public.a_proc(bigint[], jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('Bad Name', NULL, 'public.flag_vip(bigint[], jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('for_deals', 'deal', 'public.flag_vip(bigint[], jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_tool('contact_set_owner')$$);

-- only the function's owner (or a superuser) registers; a tool runs with the caller's privileges
CREATE ROLE ccrm_dev;
CREATE ROLE ccrm_clerk;
GRANT CREATE ON SCHEMA public TO ccrm_dev;
GRANT SELECT ON ALL TABLES IN SCHEMA ccrm TO ccrm_dev, ccrm_clerk;
SET ROLE ccrm_dev;
SELECT * FROM pg_temp.err($$SELECT ccrm.register_tool('vip2', 'contact', 'public.flag_vip(bigint[], jsonb)')$$);
CREATE FUNCTION public.count_members(member_ids bigint[], params jsonb) RETURNS integer
LANGUAGE sql AS 'SELECT cardinality(member_ids)';
SELECT ccrm.register_tool('count_members', NULL, 'public.count_members(bigint[], jsonb)');
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_tool('flag_vip')$$);
RESET ROLE;
SELECT name, entity, owner, builtin FROM ccrm.tool WHERE NOT builtin ORDER BY name;
UPDATE ccrm.target_group SET owner = 'ccrm_clerk' WHERE name IN ('Accounts', 'Contacts');  -- a role uses its own groups
SET ROLE ccrm_clerk;
SELECT ccrm.run_tool('Accounts', 'count_members') AS run5 \gset
SELECT run_as, counts->'result' AS result FROM ccrm.job_run WHERE id = :run5;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'flag_vip')$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION public.flag_vip(bigint[], jsonb) FROM PUBLIC;
SET ROLE ccrm_clerk;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'flag_vip')$$);
RESET ROLE;
UPDATE ccrm.target_group SET owner = current_user::regrole WHERE name IN ('Accounts', 'Contacts');

-- the job kind
SELECT name, needs_group, builtin FROM ccrm.job_kind WHERE name = 'run_tool';
SELECT ccrm.job_check_tool(ccrm.target_group_id('Contacts'), '{"tool": "contact_create_task", "params": {"subject": "Hi"}}');
SELECT ccrm.job_check_tool(ccrm.target_group_id('Contacts'), '{"tool": "count_members"}');
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(ccrm.target_group_id('Accounts'), '{"tool": "flag_vip"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(ccrm.target_group_id('Accounts'), '{"tool": "nope"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(ccrm.target_group_id('Accounts'), '{}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(ccrm.target_group_id('Accounts'), '{"tool": "count_members", "params": [1]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(ccrm.target_group_id('Accounts'), '{"tool": "count_members", "args": {}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(NULL, '{"tool": "count_members"}')$$);
INSERT INTO ccrm.job_run (id, kind, group_id, trigger, action_time, run_as)
VALUES (1001, 'run_tool', ccrm.target_group_id('Contacts'), 'schedule', now(), current_user::regrole);
SELECT ccrm.job_run_tool(NULL, 1001, ccrm.target_group_id('Contacts'), '{"tool": "count_members"}', now(), 'UTC');
-- a dropped function leaves its tool unusable until re-registered
DROP FUNCTION public.count_members(bigint[], jsonb);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Contacts', 'count_members')$$);
SELECT ccrm.unregister_tool('count_members');

DROP EXTENSION ccrm CASCADE;
DROP FUNCTION public.flag_vip(bigint[], jsonb), public.wrong_args(integer[]), public.wrong_result(bigint[], jsonb),
    public.as_owner(bigint[], jsonb);
DROP PROCEDURE public.a_proc(bigint[], jsonb);
REVOKE CREATE ON SCHEMA public FROM ccrm_dev;
DROP OWNED BY ccrm_dev;
DROP ROLE ccrm_dev;
DROP OWNED BY ccrm_clerk;
DROP ROLE ccrm_clerk;
