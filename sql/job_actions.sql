-- Jobs running the actions of 0.4.0 through the scheduler: the seed's Friday
-- mass update fired for its slot (the action date is the slot's day in the
-- job's zone), undone afterwards; formulas and tools as jobs; bad parameters.
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
SELECT ccrm.set_setting('time_zone', 'UTC');
SELECT ccrm.define_field('account', 'last_contacted', 'date');
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna'), (2, 'ben');
INSERT INTO ccrm.account (id, name, owner_id) VALUES (1, 'Acme Oy', 1), (2, 'Beta AB', 1), (3, 'Gamma AS', 2);
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, lastname, city)
VALUES (1, 1, 1, 'Aino', 'Aalto', 'Helsinki'), (2, 2, 1, 'Eino', 'Esko', 'Helsinki'), (3, 3, 2, 'Olli', 'Oja', 'Oslo');
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT added FROM ccrm.refresh_target_group('Helsinki');

-- the seed: Fridays 16:00 (Helsinki) set the accounts' description and the action date
SELECT ccrm.schedule_job('Friday contacted', 'mass_update', '0 16 * * fri', 'Helsinki',
    '{"set": {"account": {"description": "Contacted", "last_contacted": {"action": "date"}}}}',
    time_zone => 'Europe/Helsinki');
SELECT to_char(next_run AT TIME ZONE 'Europe/Helsinki', 'Dy HH24:MI') FROM ccrm.job WHERE name = 'Friday contacted';
-- it was due last Friday at 16:00 Helsinki time (a slot missed): it runs once, for that day
UPDATE ccrm.job SET next_run = '2026-11-27 16:00 Europe/Helsinki' WHERE name = 'Friday contacted';
CALL ccrm.run_due_jobs();
SELECT trigger, status, scheduled_for AT TIME ZONE 'Europe/Helsinki' AS slot, counts FROM ccrm.job_run;
SELECT id, description, attrs->>'last_contacted' AS last_contacted FROM ccrm.account ORDER BY id;
-- a slot at 22:30 UTC on the 26th is already the 27th in Helsinki: the action date follows the job's zone
UPDATE ccrm.job SET next_run = '2026-11-26 22:30 UTC' WHERE name = 'Friday contacted';
UPDATE ccrm.account SET attrs = '{}';
CALL ccrm.run_due_jobs();
SELECT attrs->>'last_contacted' AS last_contacted FROM ccrm.account WHERE id = 1;
SELECT count(*) FILTER (WHERE trigger = 'schedule') AS scheduled_runs FROM ccrm.job_run;

-- undo the scheduled run: where nobody changed the account since
UPDATE ccrm.account SET description = 'Called back' WHERE id = 2;
SELECT * FROM ccrm.undo_run((SELECT max(id) FROM ccrm.job_run));
SELECT id, description, attrs->>'last_contacted' AS last_contacted FROM ccrm.account ORDER BY id;

-- formulas and tools as jobs
SELECT ccrm.create_formula('full name', 'contact', 'description', $$firstname || ' ' || lastname$$);
SELECT ccrm.schedule_job('Names', 'run_formulas', '@daily', 'Helsinki', '{"formulas": ["full name"]}');
SELECT status, counts FROM ccrm.run_job('Names');
SELECT id, description FROM ccrm.contact ORDER BY id;
SELECT ccrm.schedule_job('Hand to ben', 'run_tool', '@daily', 'Helsinki',
                         '{"tool": "contact_set_owner", "params": {"owner": "ben"}}');
SELECT status, counts, error FROM ccrm.run_job('Hand to ben');
SELECT id, owner_id FROM ccrm.contact ORDER BY id;
-- a tool checks its own parameters when it runs: the run fails, recorded, nothing changed
SELECT ccrm.alter_job('Hand to ben', params => '{"tool": "contact_set_owner", "params": {"user_id": 1}}');
SELECT status, counts, error FROM ccrm.run_job('Hand to ben');
SELECT id, owner_id FROM ccrm.contact ORDER BY id;

-- bad parameters are refused when the job is saved
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'mass_update', '@daily', 'Helsinki', '{"set": {"account": {"nope": 1}}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'mass_update', '@daily', 'Helsinki', '{"set": {"account": {"id": 5}}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'mass_update', '@daily', 'Helsinki', '{"set": {"contact": {"created_at": "soon"}}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'run_formulas', '@daily', 'Helsinki', '{"formulas": ["nope"]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('x', 'run_tool', '@daily', 'Helsinki', '{"tool": "nope"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_job('Names', params => '{"formulas": "full name"}')$$);
SELECT count(*) AS jobs FROM ccrm.job;

DROP EXTENSION ccrm;
