-- The clock rule: every function whose result or effect depends on the clock
-- takes the instant it acts at (at timestamptz DEFAULT now()).  Each is called
-- here at fixed instants, and what it does depends on the instant given, not
-- on when the test runs; an infinite or NULL instant is an error.
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
SELECT ccrm.define_field('account', 'last_contacted', 'date');
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna');
INSERT INTO ccrm.account (id, name, owner_id) VALUES (1, 'Acme Oy', 1);
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, city, created_at) VALUES
 (1, 1, 1, 'Aino',  'Helsinki', '2026-01-10 12:00+02'),
 (2, 1, 1, 'Eino',  'Helsinki', '2026-03-01 12:00+02'),
 (3, 1, 1, 'Liisa', 'Helsinki', '2026-05-20 12:00+03');
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, starts_at, ends_at, status) VALUES
 ('call', 'c1', 1, 1, '2026-05-25 10:00+03', '2026-05-25 10:30+03', 'done');

-- (The filter functions and refresh_target_group take at too: sql/filter.sql.)
-- The one check of every instant, for functions written in SQL
SELECT ccrm.check_instant('2026-03-29 03:00 Europe/Helsinki') AT TIME ZONE 'UTC' AS checked;
SELECT * FROM pg_temp.err($$SELECT ccrm.check_instant('infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_instant(NULL)$$);
-- the functions written in C refuse the same way
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('contact', '{"field": "city", "op": "eq", "value": "x"}', '-infinity')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.next_runs('@daily', 1, after => 'infinity')$$);

-- Target groups: a refresh evaluates the filter at at
SELECT ccrm.create_target_group('Old', 'contact', '{"field": "created_at", "op": "older_than", "value": "90 days"}');
SELECT * FROM ccrm.refresh_target_group('Old', at => '2026-05-01 00:00+03');
SELECT * FROM ccrm.refresh_target_group('Old', at => '2026-07-01 00:00+03');
SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Old') ORDER BY 1;
-- the membership stamps stay the clock's (monotonic per group), whatever at was
SELECT bool_and(entered_at <= now() AND entered_at > now() - interval '1 day') AS entered_by_the_clock
  FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Old');

-- A scheduled refresh evaluates the filter at its slot, also when a missed
-- slot is caught up later: at the slot of 2026-05-29 11:00 contact 2 is 89
-- days old, at the run a week later it would be 96 days old.
SELECT * FROM ccrm.refresh_target_group('Old', at => '2026-05-01 00:00+03');
SELECT ccrm.schedule_job('Old refresh', 'refresh_group', '0 11 * * *', 'Old', at => '2026-05-28 12:00+03');
SELECT next_run AT TIME ZONE 'Europe/Helsinki' AS next_run FROM ccrm.job WHERE name = 'Old refresh';
CALL ccrm.run_due_jobs(at => '2026-06-05 12:00+03');
SELECT trigger, status, action_time AT TIME ZONE 'Europe/Helsinki' AS action_time, counts
  FROM ccrm.job_run WHERE job_id = ccrm.job_id('Old refresh');
SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Old') ORDER BY 1;
-- run by hand at an instant: the filter is evaluated there
SELECT status, counts FROM ccrm.run_job('Old refresh', at => '2026-06-05 12:00+03');

-- Jobs: next_run is the first slot after at
SELECT ccrm.schedule_job('Daily', 'refresh_group', '0 11 * * *', 'Old', time_zone => 'Europe/Helsinki',
                         at => '2026-12-05 23:59:50 Europe/Helsinki');
SELECT next_run AT TIME ZONE 'Europe/Helsinki' AS next_run FROM ccrm.job WHERE name = 'Daily';
SELECT ccrm.alter_job('Daily', schedule => '0 9 * * mon', at => '2026-12-08 10:00 Europe/Helsinki');
SELECT next_run AT TIME ZONE 'Europe/Helsinki' AS next_run FROM ccrm.job WHERE name = 'Daily';
-- what does not change the timing keeps the next run (the same schedule too)
SELECT ccrm.alter_job('Daily', schedule => '0 9 * * mon', params => '{}', at => '2027-06-01 00:00 Europe/Helsinki');
SELECT next_run AT TIME ZONE 'Europe/Helsinki' AS next_run FROM ccrm.job WHERE name = 'Daily';
SELECT ccrm.alter_job('Daily', time_zone => 'UTC', at => '2026-12-31 23:59:50 UTC');
SELECT next_run AT TIME ZONE 'UTC' AS next_run_utc FROM ccrm.job WHERE name = 'Daily';
SELECT ccrm.deactivate_job('Daily');
SELECT next_run FROM ccrm.job WHERE name = 'Daily';
SELECT ccrm.activate_job('Daily', at => '2027-03-28 02:59:59 Europe/Helsinki');
SELECT next_run AT TIME ZONE 'UTC' AS next_run_utc FROM ccrm.job WHERE name = 'Daily';
-- activating an active job keeps its next run
SELECT ccrm.activate_job('Daily', at => '2030-01-01 00:00 UTC');
SELECT next_run AT TIME ZONE 'UTC' AS next_run_utc FROM ccrm.job WHERE name = 'Daily';
-- without at, the next run is after now
SELECT ccrm.alter_job('Daily', schedule => '*/5 * * * *');
SELECT next_run > now() AND next_run <= now() + interval '5 minutes' AS after_now FROM ccrm.job WHERE name = 'Daily';
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('Never', 'refresh_group', '@daily', 'Old', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Daily', schedule => '@hourly', at => '-infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('Never', 'refresh_group', '@daily', 'Old', at => NULL)$$);
SELECT count(*) AS never FROM ccrm.job WHERE name = 'Never';
SELECT ccrm.deactivate_job('Daily');
SELECT * FROM pg_temp.err($$SELECT ccrm.activate_job('Daily', at => 'infinity')$$);
SELECT active FROM ccrm.job WHERE name = 'Daily';

-- Direct runs: the action time and date are at's
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT added FROM ccrm.refresh_target_group('Helsinki', at => '2026-07-01 00:00+03');
SELECT ccrm.mass_update('Helsinki', 'account', '{"last_contacted": {"action": "date"}}', at => '2026-12-31 23:30 UTC') AS run \gset
SELECT attrs->>'last_contacted' AS last_contacted FROM ccrm.account WHERE id = 1;
SELECT trigger, action_time AT TIME ZONE 'UTC' AS action_time, counts->>'action_date' AS action_date FROM ccrm.job_run WHERE id = :run;
SELECT ccrm.create_formula('upper city', 'contact', 'city', 'upper(city)');
SELECT ccrm.run_formulas('Helsinki', at => '2026-06-15 09:00+03') AS run \gset
SELECT trigger, action_time AT TIME ZONE 'Europe/Helsinki' AS action_time FROM ccrm.job_run WHERE id = :run;
SELECT ccrm.run_tool('Helsinki', 'contact_create_task', '{"subject": "Call back", "due_in_days": 2}',
                     at => '2026-02-27 12:00+02') AS run \gset
SELECT contact_id, to_char(due_on, 'YYYY-MM-DD') AS due_on FROM ccrm.activity WHERE kind = 'task' ORDER BY contact_id;
SELECT trigger, action_time AT TIME ZONE 'Europe/Helsinki' AS action_time FROM ccrm.job_run WHERE id = :run;
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Helsinki', 'account', '{"last_contacted": null}', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Helsinki', 'account', '{"last_contacted": null}', at => NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('Helsinki', at => '-infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Helsinki', 'contact_create_task', '{"subject": "x"}', 'infinity')$$);
-- nothing of the refused runs stays
SELECT attrs->>'last_contacted' AS last_contacted FROM ccrm.account WHERE id = 1;
SELECT count(*) AS tasks FROM ccrm.activity WHERE kind = 'task';

-- Purges count older_than back from at
-- (every run finished at a fixed instant, none by the clock)
UPDATE ccrm.job_run SET started_at = '2026-06-01 00:00+00', finished_at = '2026-06-01 00:00+00';
UPDATE ccrm.job_run SET started_at = '2026-01-01 00:00+00', finished_at = '2026-01-01 00:00+00' WHERE id = :run;
UPDATE ccrm.job_run SET started_at = '2026-03-01 00:00+00', finished_at = '2026-03-01 00:00+00'
 WHERE id = (SELECT min(id) FROM ccrm.job_run WHERE kind = 'mass_update');
SELECT count(*) AS audit_rows FROM ccrm.run_audit;
SELECT ccrm.purge_audit('30 days', at => '2026-02-15 00:00+00') AS purged_audit;
SELECT count(*) AS audit_rows FROM ccrm.run_audit;
SELECT ccrm.purge_audit('30 days', at => '2026-04-15 00:00+00') AS purged_audit;
SELECT count(*) AS audit_rows FROM ccrm.run_audit;
SELECT ccrm.purge_job_history('30 days', at => '2026-01-15 00:00+00') AS purged_runs;
SELECT ccrm.purge_job_history('30 days', at => '2026-02-15 00:00+00') AS purged_runs;
SELECT count(*) FILTER (WHERE id = :run) AS tool_run_left FROM ccrm.job_run;
UPDATE ccrm.target_group_membership SET entered_at = '2025-12-01 00:00+00', left_at = '2026-01-01 00:00+00' WHERE left_at IS NOT NULL;
SELECT count(*) AS closed_spans FROM ccrm.target_group_membership WHERE left_at IS NOT NULL;
SELECT ccrm.purge_group_history('30 days', at => '2026-01-15 00:00+00') AS purged_spans;
SELECT ccrm.purge_group_history('30 days', at => '2026-02-15 00:00+00') AS purged_spans;
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_audit('1 day', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_job_history('1 day', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_group_history('1 day', at => '-infinity')$$);
DROP EXTENSION ccrm;
