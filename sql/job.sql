-- Jobs: saving and validating, running now and when due, chains, failures, history, permissions.
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
INSERT INTO ccrm.crm_user (id, username, firstname) VALUES (1, 'anna', 'Anna');
INSERT INTO ccrm.contact (id, owner_id, firstname, city)
SELECT i, 1, 'C' || i, CASE WHEN i <= 6 THEN 'Helsinki' ELSE 'Turku' END FROM generate_series(1, 8) i;
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_activity_plan('Helsinki', 'calls', 'Call $contact-firstname$', start_date => '2026-12-07');
-- a view of the runs without the moving parts
CREATE VIEW pg_temp.runs AS
    SELECT r.id, j.name AS job, r.trigger, r.status, r.counts, r.error
      FROM ccrm.job_run r LEFT JOIN ccrm.job j ON j.id = r.job_id ORDER BY r.id;

-- saving: the seed's examples; next_run is computed in the job's zone
SELECT ccrm.schedule_job('Payment plan refresh', 'refresh_group', '0 11 * * *', 'Helsinki');
SELECT ccrm.schedule_job('Weekly calls', 'create_activities', '0 11 * * thu', 'Helsinki',
                         '{"plan": "calls"}', after_job => 'Payment plan refresh');
SELECT name, kind, "group", schedule, time_zone, after_job, active, owner, failures FROM ccrm.jobs ORDER BY id;
SELECT name, next_run = (SELECT * FROM ccrm.next_runs(schedule, 1, 'Europe/Helsinki', created_at)) AS next_ok
  FROM ccrm.job ORDER BY id;
-- what holds at any instant: the local time, the weekday of the weekly job, and that the slot is the next one
SELECT name, to_char(next_run AT TIME ZONE 'Europe/Helsinki', CASE WHEN schedule LIKE '% thu' THEN 'Dy HH24:MI' ELSE 'HH24:MI' END) AS next_local,
       next_run > now() AND next_run - now() <= CASE WHEN schedule LIKE '% thu' THEN interval '7 days 1 hour' ELSE interval '25 hours' END AS next_slot
  FROM ccrm.job ORDER BY id;
-- a zone of its own
SELECT ccrm.schedule_job('NY refresh', 'refresh_group', '0 9 * * mon-fri', 'Helsinki', time_zone => 'America/New_York');
SELECT to_char(next_run AT TIME ZONE 'America/New_York', 'HH24:MI') FROM ccrm.job WHERE name = 'NY refresh';

-- altering: schedule and zone recompute next_run; '' clears
SELECT ccrm.alter_job('NY refresh', schedule => '30 7 * * *', time_zone => '');
SELECT schedule, time_zone, to_char(next_run AT TIME ZONE 'Europe/Helsinki', 'HH24:MI') FROM ccrm.job WHERE name = 'NY refresh';
SELECT ccrm.alter_job('NY refresh', new_name => 'Morning refresh');
SELECT ccrm.deactivate_job('Morning refresh');
SELECT active, next_run, inactive_reason FROM ccrm.job WHERE name = 'Morning refresh';
SELECT ccrm.activate_job('Morning refresh');
SELECT active, next_run IS NOT NULL AS has_next FROM ccrm.job WHERE name = 'Morning refresh';
SELECT ccrm.delete_job('Morning refresh');

-- bad input: nothing saved
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '0 25 * * *', 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', NULL, 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'mail_merge', '@daily', 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily', 'Nowhere')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily', 'Helsinki', '{"full": true}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily', 'Helsinki', '[]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily', 'Helsinki', time_zone => 'Mars/Base')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily', 'Helsinki', after_job => 'nope')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'refresh_group', '@daily', 'Helsinki', owner => 'no_such_role')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'create_activities', '@daily', 'Helsinki', '{"plan": "visits"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'create_activities', '@daily', 'Helsinki', '{"plan": 7}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('', 'refresh_group', '@daily', 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('Payment plan refresh', 'refresh_group', '@daily', 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Payment plan refresh', after_job => 'Weekly calls')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Payment plan refresh', after_job => 'Payment plan refresh')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Nope', schedule => '@daily')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_job(999)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_job('Weekly calls', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$CALL ccrm.run_due_jobs(at => '-infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_target_group('Helsinki')$$);
SELECT count(*) AS jobs FROM ccrm.job;

-- run now (acting at a fixed instant, a Monday): the job with after_job runs that one first, both recorded
SELECT status, counts FROM ccrm.run_job('Weekly calls', at => '2026-12-07 10:00 Europe/Helsinki');
SELECT * FROM pg_temp.runs;
SELECT count(*) AS activities FROM ccrm.activity;
-- the refresh's own schedule was not moved by a manual run
SELECT to_char(next_run AT TIME ZONE 'Europe/Helsinki', 'HH24:MI') FROM ccrm.job WHERE name = 'Payment plan refresh';

-- due jobs: both due at a slot an hour before that instant, the same day; one call
-- runs each once (no activity twice for that day) and moves them on past the clock
UPDATE ccrm.job SET next_run = '2026-12-07 09:00 Europe/Helsinki';
CALL ccrm.run_due_jobs(at => '2026-12-07 10:00 Europe/Helsinki');
SELECT * FROM pg_temp.runs WHERE id > 2;
SELECT name, next_run > now() AS moved_on FROM ccrm.job ORDER BY id;
SELECT trigger, action_time = scheduled_for AS acts_for_the_slot FROM ccrm.job_run WHERE trigger = 'schedule';
-- nothing due: nothing runs
CALL ccrm.run_due_jobs();
SELECT count(*) FROM ccrm.job_run;

-- a job that runs right after another, without a schedule of its own
SELECT ccrm.schedule_job('After refresh', 'refresh_group', NULL, 'Helsinki', after_job => 'Payment plan refresh');
SELECT next_run FROM ccrm.job WHERE name = 'After refresh';
SELECT status FROM ccrm.run_job('Payment plan refresh');
SELECT job, trigger, status FROM pg_temp.runs WHERE id > 4;
SELECT ccrm.delete_job('After refresh');

-- failures are recorded, not raised; in a row they deactivate the job
CREATE FUNCTION public.failing_runner(job_id bigint, run_id bigint, group_id bigint, params jsonb,
    action_time timestamptz, time_zone text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ccrm.account (name) VALUES ('never kept');
    RAISE EXCEPTION 'no mail server' USING DETAIL = 'smtp down', ERRCODE = '08006';
END $$;
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('send_mail', 'public.failing_runner(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'test kind');
SET ccrm.max_job_failures = 2;
SELECT ccrm.schedule_job('Mailer', 'send_mail', '@daily');
SELECT status, error, detail FROM ccrm.run_job('Mailer');
SELECT count(*) FROM ccrm.account WHERE name = 'never kept';
SELECT active, failures FROM ccrm.job WHERE name = 'Mailer';
SELECT status FROM ccrm.run_job('Mailer');
SELECT active, failures, next_run, inactive_reason FROM ccrm.job WHERE name = 'Mailer';
-- a prerequisite that fails skips the job after it
SELECT ccrm.activate_job('Mailer');
SELECT ccrm.schedule_job('After mail', 'refresh_group', '@daily', 'Helsinki', after_job => 'Mailer');
SELECT status, error FROM ccrm.run_job('After mail');
SELECT ccrm.delete_job('After mail');
SELECT ccrm.delete_job('Mailer');
RESET ccrm.max_job_failures;

-- a run left "running" by a process that died is marked interrupted
INSERT INTO ccrm.job_run (job_id, kind, trigger, action_time, run_as, started_at)
SELECT id, kind, 'schedule', now(), '-', now() - interval '1 minute' FROM ccrm.job WHERE name = 'Weekly calls';
CALL ccrm.run_due_jobs();
SELECT status, error FROM ccrm.job_run WHERE run_as = '-'::regrole;

-- history retention
UPDATE ccrm.job_run SET finished_at = now() - interval '40 days' WHERE run_as = '-'::regrole;
SELECT ccrm.purge_job_history('30 days');

-- permissions: a non-superuser sees and changes only their own jobs, on groups of their own
CREATE ROLE ccrm_rep;
CREATE ROLE ccrm_other;
SET ROLE ccrm_rep;
SELECT ccrm.create_target_group('Rep group', 'contact', '{"field": "city", "op": "eq", "value": "Turku"}') > 0 AS created;
SELECT ccrm.schedule_job('Rep refresh', 'refresh_group', '@daily', 'Rep group') > 0 AS scheduled;
SELECT name, owner FROM ccrm.jobs;
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('As other', 'refresh_group', '@daily', 'Rep group', owner => 'ccrm_other')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('Borrowed', 'refresh_group', '@daily', 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_job('Payment plan refresh')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_job(1)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_job_history('1 day')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.job SET owner = 'ccrm_other'$$);
UPDATE ccrm.job SET active = false WHERE name = 'Payment plan refresh';  -- not visible: nothing happens
-- the run executes as the owner, who may not read contacts: recorded as failed
SELECT status, run_as, error FROM ccrm.run_job('Rep refresh');
SELECT count(*) AS runs_visible FROM ccrm.job_run;
RESET ROLE;
SELECT name, owner, active FROM ccrm.job ORDER BY id;
-- a superuser may schedule as another role, on a group that role may use
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('For other', 'refresh_group', '@daily', 'Helsinki', owner => 'ccrm_other')$$);
INSERT INTO ccrm.target_group (name, entity, owner) VALUES ('Other group', 'contact', 'ccrm_other');
SELECT ccrm.schedule_job('For other', 'refresh_group', '@daily', 'Other group', owner => 'ccrm_other') > 0 AS scheduled;
SELECT ccrm.delete_job('For other');
SELECT ccrm.delete_job('Rep refresh');
SELECT ccrm.drop_target_group('Rep group');
SELECT ccrm.drop_target_group('Other group');
DROP ROLE ccrm_rep;
DROP ROLE ccrm_other;

DROP VIEW pg_temp.runs;
DROP EXTENSION ccrm;
DROP FUNCTION public.failing_runner;
