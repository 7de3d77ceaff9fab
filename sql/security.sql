-- Security: the privilege model, attacked.  An unprivileged role, sec_mallory,
-- with CREATE on a schema of its own, tries to see, run, change, chain to,
-- re-own and borrow other roles' jobs, runs, audit, groups, plans and
-- formulas, to create definitions for others, to switch validation off and
-- to act as another CRM user.  Every attempt is a clean error (42501, or
-- 42704 for what it cannot see) or affects no row, and nothing changes.

-- Updating from 0.4.0: owners named by text become role oids; a job whose
-- owner is gone keeps no owner and is switched off, with the reason.
CREATE ROLE sec_gone_later;
CREATE EXTENSION ccrm VERSION '0.4.0';
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'u');
SELECT ccrm.create_target_group('Old group', 'contact');
ALTER TABLE ccrm.job DISABLE TRIGGER ccrm_job;   -- 0.4.0 rows, written as 0.4.0 would
INSERT INTO ccrm.job (name, kind, group_id, schedule, owner, next_run)
VALUES ('kept', 'refresh_group', ccrm.target_group_id('Old group'), '@daily', 'sec_gone_later', now()),
       ('orphan', 'refresh_group', ccrm.target_group_id('Old group'), '@daily', 'sec_never_was', now());
INSERT INTO ccrm.job_run (kind, trigger, action_time, run_as)
VALUES ('refresh_group', 'manual', now(), 'sec_gone_later'), ('refresh_group', 'manual', now(), 'sec_never_was');
ALTER TABLE ccrm.job ENABLE TRIGGER ccrm_job;
ALTER EXTENSION ccrm UPDATE TO '0.5.0';
SELECT name, owner, active, next_run IS NOT NULL AS next_run, inactive_reason FROM ccrm.job ORDER BY name;
SELECT run_as FROM ccrm.job_run ORDER BY id;
SELECT name, pg_typeof(owner), owner = (SELECT extowner FROM pg_extension WHERE extname = 'ccrm') AS extension_owner
  FROM ccrm.target_group;
-- a role dropped and created again under the same name inherits nothing
DROP ROLE sec_gone_later;
CREATE ROLE sec_gone_later;
SET ROLE sec_gone_later;
SELECT count(*) AS jobs_seen, (SELECT count(*) FROM ccrm.job_run) AS runs_seen FROM ccrm.job;
RESET ROLE;
SELECT name, owner::oid <> 'sec_gone_later'::regrole::oid AS other_role FROM ccrm.job WHERE name = 'kept';
DROP ROLE sec_gone_later;
DROP EXTENSION ccrm;

CREATE EXTENSION ccrm;
-- err(sql): run a statement and show how it failed (SQLSTATE, message).
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

-- rows(sql): how many rows a statement affected
CREATE FUNCTION pg_temp.rows(sql text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The roles a DBA creates (README "Security"): an application role with the
-- CRM data, an admin role named in ccrm.admin_role, and people in them.
CREATE ROLE sec_app NOLOGIN;
CREATE ROLE sec_admins NOLOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON ccrm.crm_user, ccrm.account, ccrm.contact, ccrm.lead, ccrm.activity
   TO sec_app;
GRANT sec_app TO sec_admins;
CREATE ROLE sec_alice IN ROLE sec_app;
CREATE ROLE sec_mallory IN ROLE sec_app;
CREATE ROLE sec_boss IN ROLE sec_admins;
CREATE SCHEMA sec_mallory AUTHORIZATION sec_mallory;
SET ccrm.admin_role = 'sec_admins';

INSERT INTO ccrm.crm_user (id, username, role) VALUES (1, 'alice', 'sec_alice'), (2, 'mallory', 'sec_mallory'),
    (3, 'ceo', NULL);
INSERT INTO ccrm.contact (id, owner_id, firstname, city)
SELECT i, 1, 'C' || i, CASE WHEN i <= 3 THEN 'Helsinki' ELSE 'Turku' END FROM generate_series(1, 5) i;

-- alice's definitions, a run with audit
SET ROLE sec_alice;
SELECT ccrm.create_target_group('Alice VIP', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}') AS alice_group \gset
SELECT ccrm.create_activity_plan('Alice VIP', 'calls', 'Call $contact-firstname$', start_date => '2026-12-07') AS alice_plan \gset
SELECT ccrm.create_formula('alice title', 'contact', 'title', $$'Dear ' || firstname$$) > 0 AS formula;
SELECT ccrm.schedule_job('Alice refresh', 'refresh_group', '@daily', 'Alice VIP') AS alice_job \gset
SELECT ccrm.schedule_job('Alice calls', 'create_activities', NULL, 'Alice VIP', after_job => 'Alice refresh') > 0 AS chained;
SELECT status FROM ccrm.run_job('Alice refresh');
SELECT ccrm.mass_update('Alice VIP', 'contact', '{"title": "VIP"}') AS alice_run \gset
SELECT count(*) AS alice_sees_audit FROM ccrm.run_audit;
RESET ROLE;

-- mallory's own job and group, to attack from
SET ROLE sec_mallory;
SELECT ccrm.create_target_group('Mallory group', 'contact') AS mallory_group \gset
SELECT ccrm.schedule_job('Mallory job', 'refresh_group', '@daily', 'Mallory group') AS mallory_job \gset
RESET ROLE;

-- what there is, to compare with after the attacks
CREATE TEMP TABLE before AS
SELECT 'job' AS t, row_to_json(x)::text AS r FROM ccrm.job x
UNION ALL SELECT 'job_run', row_to_json(x)::text FROM ccrm.job_run x
UNION ALL SELECT 'run_audit', row_to_json(x)::text FROM ccrm.run_audit x
UNION ALL SELECT 'target_group', row_to_json(x)::text FROM ccrm.target_group x
UNION ALL SELECT 'membership', row_to_json(x)::text FROM ccrm.target_group_membership x
UNION ALL SELECT 'override', row_to_json(x)::text FROM ccrm.target_group_override x
UNION ALL SELECT 'dependency', row_to_json(x)::text FROM ccrm.target_group_dependency x
UNION ALL SELECT 'activity_plan', row_to_json(x)::text FROM ccrm.activity_plan x
UNION ALL SELECT 'formula', row_to_json(x)::text FROM ccrm.formula x
UNION ALL SELECT 'crm_user', row_to_json(x)::text FROM ccrm.crm_user x
UNION ALL SELECT 'act_as_grant', row_to_json(x)::text FROM ccrm.act_as_grant x
UNION ALL SELECT 'contact', row_to_json(x)::text FROM ccrm.contact x
UNION ALL SELECT 'activity', row_to_json(x)::text FROM ccrm.activity x;
SELECT t, count(*) FROM before GROUP BY t ORDER BY t;

SET ROLE sec_mallory;
-- see: nothing of alice's is visible, by table, view, name or id
SELECT (SELECT count(*) FROM ccrm.job) AS jobs, (SELECT count(*) FROM ccrm.jobs) AS jobs_view,
       (SELECT count(*) FROM ccrm.job_run) AS runs, (SELECT count(*) FROM ccrm.run_audit) AS audit,
       (SELECT count(*) FROM ccrm.target_group) AS groups, (SELECT count(*) FROM ccrm.target_groups) AS groups_view,
       (SELECT count(*) FROM ccrm.target_group_member) AS members,
       (SELECT count(*) FROM ccrm.target_group_history) AS history,
       (SELECT count(*) FROM ccrm.target_group_refresh) AS refreshes,
       (SELECT count(*) FROM ccrm.activity_plan) AS plans, (SELECT count(*) FROM ccrm.activity_plans) AS plans_view,
       (SELECT count(*) FROM ccrm.activity_plan_run) AS plan_runs, (SELECT count(*) FROM ccrm.formula) AS formulas,
       (SELECT count(*) FROM ccrm.act_as_grant) AS act_as_grants;
SELECT name FROM ccrm.jobs;
SELECT * FROM pg_temp.err($$SELECT ccrm.job_id('Alice refresh')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.target_group_id('Alice VIP')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.activity_plan_id('Alice VIP', 'calls')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('contact', '{"in_group": "Alice VIP"}')$$);
SELECT * FROM pg_temp.err(format('SELECT ccrm.filter_count(%L, %L)', 'contact', json_build_object('in_group', :alice_group)));
-- run: alice's job, group, plan, formula, audit
SELECT * FROM pg_temp.err(format('SELECT ccrm.run_job(%s)', :alice_job));
SELECT * FROM pg_temp.err($$SELECT ccrm.run_job('Alice refresh')$$);
SELECT * FROM pg_temp.err(format('SELECT ccrm.refresh_target_group(%s::bigint)', :alice_group));
SELECT * FROM pg_temp.err($$SELECT ccrm.refresh_target_group('Alice VIP')$$);
SELECT * FROM pg_temp.err(format('SELECT ccrm.create_activities(%s::bigint)', :alice_plan));
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('Alice VIP')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('Mallory group', ARRAY['alice title'])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Alice VIP', 'contact', '{"title": "pwned"}')$$);
SELECT * FROM pg_temp.err(format('SELECT ccrm.undo_run(%s)', :alice_run));
SELECT * FROM pg_temp.err($$CALL ccrm.run_due_jobs()$$);
-- change: plain statements reach no row of alice's; the functions find nothing
SELECT pg_temp.rows(statement) AS rows, statement FROM (VALUES
    ($$UPDATE ccrm.job SET active = false, params = '{}' WHERE name <> 'Mallory job'$$),
    ($$UPDATE ccrm.job SET next_run = now() WHERE name = 'Alice refresh'$$),
    ($$DELETE FROM ccrm.job WHERE name <> 'Mallory job'$$),
    ($$SELECT 1 FROM ccrm.job WHERE name <> 'Mallory job' FOR UPDATE$$),
    ($$UPDATE ccrm.target_group SET filter = NULL WHERE name = 'Alice VIP'$$),
    ($$DELETE FROM ccrm.target_group WHERE name = 'Alice VIP'$$),
    ($$DELETE FROM ccrm.target_group_membership$$),
    ($$UPDATE ccrm.target_group_membership SET left_at = now()$$),
    ($$DELETE FROM ccrm.target_group_refresh$$),
    ($$UPDATE ccrm.activity_plan SET subject = 'pwned'$$),
    ($$UPDATE ccrm.activity_plan_run SET created = 0$$),
    ($$UPDATE ccrm.formula SET expression = '''pwned'''$$),
    ($$DELETE FROM ccrm.formula$$),
    ($$UPDATE ccrm.run_audit SET undone_at = now()$$)) v(statement);
SELECT * FROM pg_temp.err($$UPDATE ccrm.job_run SET status = 'failed'$$);
SELECT * FROM pg_temp.err($$DELETE FROM ccrm.job_run$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.deactivate_job('Alice refresh')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Alice refresh', schedule => '* * * * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.delete_job('Alice refresh')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Alice VIP', filter => 'null')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_target_group('Alice VIP')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.include_in_group('Alice VIP', ARRAY[5]::bigint[])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.exclude_from_group('Alice VIP', ARRAY[1]::bigint[])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_activity_plan('Alice VIP', 'calls')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_job_history('0 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_audit('0 seconds')$$);
-- insert rows into alice's groups and runs
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.target_group_membership VALUES (%s, 5, now())', :alice_group));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.target_group_override (group_id, member_id, include) VALUES (%s, 5, true)', :alice_group));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.target_group_refresh (group_id, refreshed_at, duration, added, removed, total) VALUES (%s, now(), %L, 0, 0, 0)', :alice_group, '1s'));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.run_audit VALUES (%s, 9, %L, 1, %L, %L)', :alice_run, 'contact', '{"title": "x"}', '{}'));
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.job_run (kind, trigger, action_time, run_as) VALUES ('refresh_group', 'manual', now(), 'sec_alice')$$);
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.activity_plan (group_id, name, subject, kind, events_per_day) VALUES (%s, %L, %L, %L, 1)', :alice_group, 'mine', 'Hi', 'call'));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.activity_plan_run (plan_id, run_day) VALUES (%s, %L)', :alice_plan, '2026-12-07'));
-- create definitions owned by someone else
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('For alice', 'refresh_group', '@daily', 'Mallory group', owner => 'sec_alice')$$);
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.job (name, kind, group_id, schedule, owner) VALUES (%L, %L, %s, %L, %L)', 'For alice', 'refresh_group', :mallory_group, '@daily', 'sec_alice'));
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.target_group (name, entity, owner) VALUES ('For alice', 'contact', 'sec_alice')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.formula (name, entity, field, expression, owner) VALUES ('For alice', 'contact', 'title', '''x''', 'sec_alice')$$);
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.activity_plan (group_id, name, subject, kind, events_per_day, owner) VALUES (%s, %L, %L, %L, 1, %L)', :mallory_group, 'For alice', 'Hi', 'call', 'sec_alice'));
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.job_kind (name, runner) VALUES ('mine', 'ccrm.job_refresh_group(bigint, bigint, bigint, jsonb, timestamptz, text)')$$);
-- re-own: give own definitions away, take alice's
SELECT * FROM pg_temp.err($$UPDATE ccrm.job SET owner = 'sec_alice' WHERE name = 'Mallory job'$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.target_group SET owner = 'sec_alice' WHERE name = 'Mallory group'$$);
UPDATE ccrm.job SET owner = 'sec_mallory' WHERE name = 'Alice refresh';
UPDATE ccrm.target_group SET owner = 'sec_mallory' WHERE name = 'Alice VIP';
-- chain to alice's job (attack 2), use alice's group, plan or formula
SELECT * FROM pg_temp.err(format('UPDATE ccrm.job SET after_job = %s WHERE name = %L', :alice_job, 'Mallory job'));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.job (name, kind, group_id, after_job) VALUES (%L, %L, %s, %s)', 'Chained', 'refresh_group', :mallory_group, :alice_job));
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Mallory job', after_job => 'Alice refresh')$$);
SELECT * FROM pg_temp.err(format('UPDATE ccrm.job SET group_id = %s WHERE name = %L', :alice_group, 'Mallory job'));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.job (name, kind, group_id, schedule, params) VALUES (%L, %L, %s, %L, %L)', 'Calls', 'create_activities', :alice_group, '@daily', '{"plan": "calls"}'));
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('Formulas', 'run_formulas', '@daily', 'Mallory group', '{"formulas": ["alice title"]}')$$);
-- depend on alice's group (in_group), by name, by id, by a plain insert
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('Mallory group', filter => '{"in_group": "Alice VIP"}')$$);
SELECT * FROM pg_temp.err(format('SELECT ccrm.alter_target_group(%L, filter => %L)', 'Mallory group', json_build_object('in_group', :alice_group)));
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.target_group_dependency VALUES (%s, %s)', :mallory_group, :alice_group));
-- switch validation off (attack 3): a plain role is still checked
SET check_function_bodies = off;
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.job (name, kind, group_id, schedule) VALUES (%L, %L, %s, %L)', 'Bogus', 'refresh_group', :mallory_group, 'bogus schedule'));
SELECT * FROM pg_temp.err($$UPDATE ccrm.job SET schedule = 'bogus schedule' WHERE name = 'Mallory job'$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.target_group SET filter = '{"field": "nosuch", "op": "eq", "value": 1}' WHERE name = 'Mallory group'$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.formula (name, entity, field, expression) VALUES ('Sleepy', 'contact', 'title', 'pg_sleep(1)::text')$$);
RESET check_function_bodies;
SELECT * FROM pg_temp.err($$SET session_replication_role = replica$$);
-- make oneself an admin
SELECT * FROM pg_temp.err($$SET ccrm.admin_role = 'sec_mallory'$$);
SELECT * FROM pg_temp.err($$SELECT set_config('ccrm.admin_role', 'sec_app', false)$$);
SELECT ccrm.is_admin() AS mallory_is_admin, ccrm.is_admin('sec_boss') AS boss_is_admin;
-- act as another CRM user
SELECT ccrm.may_act_as(1) AS as_alice, ccrm.may_act_as(2) AS as_herself, ccrm.may_act_as(3) AS as_ceo;
SELECT * FROM pg_temp.err($$UPDATE ccrm.crm_user SET role = 'sec_mallory' WHERE username = 'ceo'$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.crm_user SET role = NULL WHERE username = 'alice'$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.crm_user (username, role) VALUES ('fake ceo', 'sec_mallory')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.grant_act_as(3, 'sec_mallory')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.act_as_grant VALUES (3, 'sec_mallory', 'sec_boss', now())$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.revoke_act_as(1, 'sec_alice')$$);
RESET ROLE;

-- nothing changed: every row as it was
CREATE TEMP TABLE after AS
SELECT 'job' AS t, row_to_json(x)::text AS r FROM ccrm.job x
UNION ALL SELECT 'job_run', row_to_json(x)::text FROM ccrm.job_run x
UNION ALL SELECT 'run_audit', row_to_json(x)::text FROM ccrm.run_audit x
UNION ALL SELECT 'target_group', row_to_json(x)::text FROM ccrm.target_group x
UNION ALL SELECT 'membership', row_to_json(x)::text FROM ccrm.target_group_membership x
UNION ALL SELECT 'override', row_to_json(x)::text FROM ccrm.target_group_override x
UNION ALL SELECT 'dependency', row_to_json(x)::text FROM ccrm.target_group_dependency x
UNION ALL SELECT 'activity_plan', row_to_json(x)::text FROM ccrm.activity_plan x
UNION ALL SELECT 'formula', row_to_json(x)::text FROM ccrm.formula x
UNION ALL SELECT 'crm_user', row_to_json(x)::text FROM ccrm.crm_user x
UNION ALL SELECT 'act_as_grant', row_to_json(x)::text FROM ccrm.act_as_grant x
UNION ALL SELECT 'contact', row_to_json(x)::text FROM ccrm.contact x
UNION ALL SELECT 'activity', row_to_json(x)::text FROM ccrm.activity x;
SELECT t, count(*) FROM after GROUP BY t ORDER BY t;
(SELECT 'gone' AS side, * FROM before EXCEPT SELECT 'gone', * FROM after)
UNION ALL
(SELECT 'new', * FROM after EXCEPT SELECT 'new', * FROM before);

-- A superuser's implicit choices take only its own definitions: mallory's
-- active formula on contacts is not applied by a superuser's run (before
-- 0.5.0 it was, with the superuser's rights).
SET ROLE sec_mallory;
SELECT ccrm.create_formula('mallory title', 'contact', 'title', $$'owned by mallory'$$) > 0 AS formula;
RESET ROLE;
SELECT ccrm.create_formula('root description', 'contact', 'description', $$'by root'$$) > 0 AS formula;
SELECT ccrm.create_target_group('Everyone', 'contact', '{"field": "id", "op": "gt", "value": 0}') > 0 AS created;
SELECT total FROM ccrm.refresh_target_group('Everyone');
SELECT ccrm.run_formulas('Everyone') > 0 AS ran;
SELECT count(*) FILTER (WHERE description = 'by root') AS roots, count(*) FILTER (WHERE title = 'owned by mallory') AS mallorys,
       count(*) FILTER (WHERE title LIKE 'Dear %') AS alices
  FROM ccrm.contact;
SELECT ccrm.drop_target_group('Everyone');
-- a superuser's job may not use mallory's group either
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('Borrow', 'refresh_group', '@daily', 'Mallory group')$$);

-- Restores: trusted only for a superuser (or admin) with check_function_bodies off
SET check_function_bodies = off;
INSERT INTO ccrm.job (name, kind, group_id, schedule, owner)
VALUES ('Restored', 'refresh_group', :mallory_group, 'restored as dumped', 'sec_mallory');
RESET check_function_bodies;
SELECT name, schedule FROM ccrm.job WHERE name = 'Restored';
DELETE FROM ccrm.job WHERE name = 'Restored';
-- the owner is never trusted: an admin's restore cannot make a superuser the owner
SET ROLE sec_boss;
SET check_function_bodies = off;
SELECT * FROM pg_temp.err(format('INSERT INTO ccrm.job (name, kind, group_id, schedule, owner) VALUES (%L, %L, %s, %L, %L)', 'As root', 'refresh_group', :mallory_group, '@daily', (SELECT rolname FROM pg_roles WHERE oid = 10)));
RESET check_function_bodies;
RESET ROLE;

-- Admins (members of ccrm.admin_role) see and manage everything, give
-- definitions to other roles (not to superusers), grant acting as users.
SET ROLE sec_boss;
SELECT count(*) AS jobs_seen FROM ccrm.job;
SELECT (SELECT count(*) FROM ccrm.target_group) AS groups, (SELECT count(*) FROM ccrm.formula) AS formulas,
       (SELECT count(*) FROM ccrm.job_run) AS runs;
-- admins cannot chain jobs of two owners either
SELECT * FROM pg_temp.err(format('UPDATE ccrm.job SET after_job = %s WHERE name = %L', :alice_job, 'Mallory job'));
-- a job given to alice must use a group alice may use: first the group, then the job
SELECT * FROM pg_temp.err($$UPDATE ccrm.job SET owner = 'sec_alice' WHERE name = 'Mallory job'$$);
UPDATE ccrm.target_group SET owner = 'sec_alice' WHERE name = 'Mallory group';
SELECT * FROM pg_temp.err(format('UPDATE ccrm.job SET owner = %L WHERE name = %L', (SELECT rolname FROM pg_roles WHERE oid = 10), 'Alice refresh'));
UPDATE ccrm.job SET owner = 'sec_alice' WHERE name = 'Mallory job';
UPDATE ccrm.job SET after_job = :alice_job WHERE name = 'Mallory job';   -- one owner now
SELECT j.name, j.owner, a.name AS after_job FROM ccrm.job j LEFT JOIN ccrm.job a ON a.id = j.after_job ORDER BY j.id;
SELECT ccrm.grant_act_as(3, 'sec_alice') AS granted, ccrm.grant_act_as(3, 'sec_alice') AS again;
SELECT * FROM pg_temp.err($$SELECT ccrm.grant_act_as(99, 'sec_alice')$$);
UPDATE ccrm.crm_user SET role = 'sec_boss' WHERE username = 'ceo';
RESET ROLE;
SET ROLE sec_alice;
SELECT ccrm.may_act_as(1) AS as_herself, ccrm.may_act_as(3) AS as_ceo, ccrm.may_act_as(2) AS as_mallory;
SELECT crm_user_id, grantee, granted_by FROM ccrm.act_as_grant;
RESET ROLE;
SELECT ccrm.revoke_act_as(3, 'sec_alice') AS revoked, ccrm.may_act_as(3, 'sec_alice') AS as_ceo_now;
SELECT ccrm.may_act_as(3, 'sec_boss') AS boss_as_ceo, ccrm.may_act_as(1, 'sec_mallory') AS mallory_as_alice;

-- Inside a run (a security-restricted operation, as REFRESH MATERIALIZED
-- VIEW and every ccrm run are) an admin is no admin: it has its own rights only.
CREATE MATERIALIZED VIEW public.sec_in_run AS SELECT ccrm.is_admin(to_regrole('sec_boss')) AS boss_is_admin;
SELECT boss_is_admin AS inside_a_run, ccrm.is_admin('sec_boss') AS outside FROM public.sec_in_run;
DROP MATERIALIZED VIEW public.sec_in_run;

-- Members of a role use its definitions: a team role owns, its members run
CREATE ROLE sec_team IN ROLE sec_app;
GRANT sec_team TO sec_mallory;
SET ROLE sec_boss;
UPDATE ccrm.target_group SET owner = 'sec_team' WHERE name = 'Mallory group';
RESET ROLE;
SET ROLE sec_mallory;
SELECT name FROM ccrm.target_groups ORDER BY name;
SELECT ccrm.schedule_job('Team refresh', 'refresh_group', '@daily', 'Mallory group') > 0 AS scheduled;
SELECT status FROM ccrm.run_job('Team refresh');
RESET ROLE;

DROP EXTENSION ccrm;
DROP SCHEMA sec_mallory;
DROP ROLE sec_alice, sec_mallory, sec_boss, sec_team;
DROP ROLE sec_admins, sec_app;
