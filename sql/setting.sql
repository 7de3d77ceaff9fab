-- Settings: typed values checked on every write, defaults otherwise.
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

SELECT name, value, type, default_value, is_set FROM ccrm.settings ORDER BY name;

SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT ccrm.set_setting('working_days', '{1,2,3,4,6}');
SELECT ccrm.set_setting('event_duration', '45 minutes');
SELECT ccrm.set_setting('earliest_start', '07:30');
SELECT ccrm.set_setting('latest_end', '17:00');
SELECT ccrm.set_setting('time_zone', 'America/New_York');   -- change again
SELECT name, value, is_set FROM ccrm.settings ORDER BY name;
SELECT ccrm.get_setting('time_zone'), ccrm.get_setting('working_days');
SELECT updated_by = current_user AS by_me FROM ccrm.setting WHERE name = 'time_zone';

-- every rule
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('time_zone', 'Mars/Olympus')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('time_zone', '')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', '{0,1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', '{1,8}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', '{1,1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', '{1,NULL}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('working_days', 'monday')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('event_duration', '0 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('event_duration', '-5 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('event_duration', '1 day')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('event_duration', '24 hours')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('event_duration', 'a while')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('earliest_start', '18:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('latest_end', '07:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('latest_end', '25:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('nosuch', '1')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.get_setting('nosuch')$$);
-- a direct write is checked the same way
SELECT * FROM pg_temp.err($$UPDATE ccrm.setting SET value = 'Nowhere' WHERE name = 'time_zone'$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.setting (name, value) VALUES ('nosuch', 'x')$$);
-- nothing changed
SELECT name, value FROM ccrm.setting ORDER BY name;

SELECT ccrm.reset_setting('time_zone');
SELECT ccrm.get_setting('time_zone'), (SELECT is_set FROM ccrm.settings WHERE name = 'time_zone');

-- user and contact time zones are checked too
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.crm_user (username, timezone) VALUES ('x', 'Nowhere')$$);
INSERT INTO ccrm.crm_user (username, timezone) VALUES ('x', 'Asia/Tokyo');
SELECT ccrm.is_time_zone('Europe/Berlin'), ccrm.is_time_zone('UTC'), ccrm.is_time_zone('Berlin'), ccrm.is_time_zone('');

DROP EXTENSION ccrm CASCADE;
