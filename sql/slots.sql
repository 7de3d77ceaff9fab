-- The slot allocator always ends: a stored working_days that leaves no
-- working day (a restore trusts the dumped data) is an error, holidays and
-- long or endless calendar events are walked past or reported.
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
-- a safety net: a loop that never ends fails here instead of hanging the suite
SET statement_timeout = '60s';
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
INSERT INTO ccrm.crm_user (id, username, timezone) VALUES (1, 'anna', 'Europe/Helsinki');
INSERT INTO ccrm.contact (id, owner_id, firstname) VALUES (1, 1, 'Aino'), (2, 1, 'Bert');
SELECT ccrm.create_target_group('Both', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Both');
SELECT ccrm.create_activity_plan('Both', 'calls', 'Call $contact-firstname$', 'call',
       events_per_day => 1, duration => '1 hour') > 0 AS saved;
CREATE FUNCTION pg_temp.calls() RETURNS TABLE (contact bigint, starts text)
LANGUAGE sql AS $$
    SELECT a.contact_id, to_char(a.starts_at AT TIME ZONE 'Europe/Helsinki', 'Dy YYYY-MM-DD HH24:MI')
      FROM ccrm.activity a WHERE a.plan_id IS NOT NULL ORDER BY a.starts_at, a.contact_id $$;

-- a setting that leaves no working day is refused when written
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', '{}')$$);
-- a restore writes what the dump holds, unchecked; a run then stops with an error
SET check_function_bodies = off;
INSERT INTO ccrm.setting (name, value) VALUES ('working_days', '{}');
RESET check_function_bodies;
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.create_activities('Both', 'calls', '2026-11-23')$$);
SET check_function_bodies = off;
UPDATE ccrm.setting SET value = '{0,8,-3}' WHERE name = 'working_days';
RESET check_function_bodies;
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.create_activities('Both', 'calls', '2026-11-23')$$);
SELECT count(*) AS activities, (SELECT count(*) FROM ccrm.activity_plan_run) AS runs FROM ccrm.activity;

-- Mondays only, the next three of them holidays: the calls go to the fourth and fifth
SELECT ccrm.set_setting('working_days', '{1}');
INSERT INTO ccrm.holiday VALUES ('2026-11-23'), ('2026-11-30'), ('2026-12-07');
SELECT created FROM ccrm.create_activities('Both', 'calls', '2026-11-23');
SELECT * FROM pg_temp.calls();
DELETE FROM ccrm.activity;
DELETE FROM ccrm.holiday;

-- every day works; anna is away for ten days, and back for one hour at 09:00 on the 3rd
SELECT ccrm.set_setting('working_days', '{1,2,3,4,5,6,7}');
INSERT INTO ccrm.activity (kind, subject, user_id, starts_at, ends_at) VALUES
    ('meeting', 'away', 1, '2026-11-23 00:00+02', '2026-12-03 09:00+02'),
    ('meeting', 'away again', 1, '2026-12-03 10:00+02', '2026-12-04 08:30+02');
SELECT created FROM ccrm.create_activities('Both', 'calls', '2026-11-23');
SELECT * FROM pg_temp.calls();
DELETE FROM ccrm.activity WHERE plan_id IS NOT NULL;

-- an event that never ends leaves no slot after it: an error, not a search without end
INSERT INTO ccrm.activity (kind, subject, user_id, starts_at, ends_at) VALUES
    ('meeting', 'sabbatical', 1, '2026-12-10 08:00+02', 'infinity');
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.create_activities('Both', 'calls', '2026-12-09')$$);

RESET statement_timeout;
DROP EXTENSION ccrm CASCADE;
