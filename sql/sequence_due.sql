-- When a step of a follow-up sequence is due (ccrm.step_due_time): the delay
-- in local calendar days, each day rule with holidays and the working_days
-- setting, the earliest local time, SMS quiet hours by zone and country, all
-- three together, DST changes in Europe/Helsinki, and bad input.  Every
-- instant is fixed; results are shown as local times in the zone.
CREATE EXTENSION ccrm;
-- err(sql): run a statement and show how it failed (SQLSTATE, message, detail, hint).
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                            hint = PG_EXCEPTION_HINT;
END $$;
-- an instant as local weekday, date and time in a zone
CREATE FUNCTION pg_temp.local(t timestamptz, zone text) RETURNS text LANGUAGE sql AS $$
    SELECT to_char(t AT TIME ZONE zone, 'Dy YYYY-MM-DD HH24:MI:SS') $$;
-- the due time of a step counting from a local time in a zone, shown there
CREATE FUNCTION pg_temp.due(after timestamp, delay integer, rule text DEFAULT 'any', not_before time DEFAULT NULL,
    zone text DEFAULT 'Europe/Helsinki', sms boolean DEFAULT false, country text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.local(ccrm.step_due_time(after AT TIME ZONE zone, delay, rule, not_before, zone, sms, country), zone) $$;
-- a safety net: a search that never ends fails here instead of hanging the suite
SET statement_timeout = '60s';

-- delay 0 keeps the instant; N days keep the local time of day
SELECT pg_temp.due('2026-06-03 10:15:30.25', 0) AS same, pg_temp.due('2026-06-03 10:15', 1) AS one_day,
       pg_temp.due('2026-06-03 10:15', 30) AS thirty_days;
SELECT ccrm.step_due_time('2026-06-03 07:15:30.25+00', 0) = '2026-06-03 07:15:30.25+00' AS delay_0_is_after;
-- the seed's example: a step 1 day after the match, the next 4 days after
-- that one runs 5 days after the match
SELECT pg_temp.local(ccrm.step_due_time(ccrm.step_due_time(m, 1, time_zone => 'Europe/Helsinki'), 4,
                                        time_zone => 'Europe/Helsinki'), 'Europe/Helsinki') AS second_step,
       pg_temp.local(m, 'Europe/Helsinki') AS matched,
       ccrm.step_due_time(ccrm.step_due_time(m, 1), 4) - m AS after_match
  FROM (VALUES ('2026-06-03 14:20+03'::timestamptz)) v(m);

-- every day rule from Wednesday 2026-06-03 10:00 and from Saturday 2026-06-06 10:00:
-- an allowed day keeps the instant, otherwise the next allowed day from its midnight
SELECT rule, pg_temp.due('2026-06-03 10:00', 0, rule) AS from_wednesday,
       pg_temp.due('2026-06-06 10:00', 0, rule) AS from_saturday
  FROM unnest(ARRAY['any', 'working_days', 'weekend', 'monday', 'tuesday', 'wednesday', 'thursday',
                    'friday', 'saturday', 'sunday']) rule;

-- holidays: Thursday 2026-12-24 to Saturday 2026-12-26, Thursday 2026-12-31
-- and Friday 2027-01-01; working days skip them, the weekday and weekend
-- rules do not
INSERT INTO ccrm.holiday VALUES ('2026-12-24', 'Christmas Eve'), ('2026-12-25', 'Christmas'),
    ('2026-12-31', 'New Year''s Eve'), ('2027-01-01', 'New Year'), ('2026-12-26', 'Boxing Day');
SELECT pg_temp.due('2026-12-23 16:00', 1, 'working_days') AS working_after_christmas,
       pg_temp.due('2026-12-30 16:00', 1, 'working_days', '09:00') AS working_after_new_year,
       pg_temp.due('2026-12-23 16:00', 1, 'thursday') AS thursday_holiday,
       pg_temp.due('2026-12-23 16:00', 3, 'weekend') AS saturday_holiday;
-- the working_days setting: with Saturday a working day, Saturday 2026-12-26
-- is still a holiday, 2027-01-02 is not
SELECT ccrm.set_setting('working_days', '{1,2,3,4,5,6}');
SELECT pg_temp.due('2026-12-23 16:00', 1, 'working_days') AS dec_24,
       pg_temp.due('2026-12-30 16:00', 1, 'working_days') AS dec_31;
-- Sundays only
SELECT ccrm.set_setting('working_days', '{7}');
SELECT pg_temp.due('2026-12-23 16:00', 1, 'working_days') AS sundays_only;
SELECT ccrm.reset_setting('working_days');
DELETE FROM ccrm.holiday;

-- not_before: the same day when the instant is earlier, kept when later,
-- and on the next allowed day that day's not_before
SELECT pg_temp.due('2026-06-03 07:00', 1, 'any', '09:30') AS earlier,
       pg_temp.due('2026-06-03 11:00', 1, 'any', '09:30') AS later,
       pg_temp.due('2026-06-05 11:00', 1, 'working_days', '09:30') AS next_monday,
       pg_temp.due('2026-06-03 09:30', 0, 'any', '09:30') AS exactly;

-- SMS quiet hours (default 23:00-07:30 in the recipient's zone): a step
-- due inside them waits for their end; outside, it keeps its time
SELECT pg_temp.due('2026-06-02 23:30', 1, sms => true) AS late_evening,
       pg_temp.due('2026-06-03 05:00', 0, sms => true) AS early_morning,
       pg_temp.due('2026-06-03 22:59:59', 0, sms => true) AS before_them,
       pg_temp.due('2026-06-03 23:30', 0, sms => false) AS email_step;
-- the zone decides: 20:30 UTC is 23:30 in Helsinki but 16:30 in New York
SELECT pg_temp.local(ccrm.step_due_time('2026-06-03 20:30+00', 0, time_zone => 'Europe/Helsinki', sms => true),
                     'Europe/Helsinki') AS helsinki,
       pg_temp.local(ccrm.step_due_time('2026-06-03 20:30+00', 0, time_zone => 'America/New_York', sms => true),
                     'America/New_York') AS new_york;
-- a country window: in the US quiet 21:00-08:00, for US recipients only;
-- a country that has no window of its own gets the default one
SELECT pg_temp.due('2026-06-03 21:30', 0, zone => 'America/New_York', sms => true, country => 'US') AS us,
       pg_temp.due('2026-06-03 21:30', 0, zone => 'America/New_York', sms => true) AS no_country,
       pg_temp.due('2026-06-03 07:45', 0, zone => 'America/New_York', sms => true, country => 'us') AS us_morning,
       pg_temp.due('2026-06-03 07:45', 0, zone => 'America/New_York', sms => true, country => 'Romania') AS unknown;
-- no country: the phone_country setting's, as the outbox reads it
SELECT ccrm.set_setting('phone_country', 'US');
SELECT pg_temp.due('2026-06-03 21:30', 0, zone => 'America/New_York', sms => true) AS phone_country_us;
SELECT ccrm.reset_setting('phone_country');
-- another window setting, read in the same session
SELECT ccrm.set_setting('sms_quiet_hours', '12:00-13:00');
SELECT pg_temp.due('2026-06-03 12:10', 0, sms => true) AS lunch, pg_temp.due('2026-06-03 23:30', 0, sms => true) AS night;
SELECT ccrm.set_setting('sms_quiet_hours', '');
SELECT pg_temp.due('2026-06-03 03:00', 0, sms => true) AS no_quiet_hours;
SELECT ccrm.reset_setting('sms_quiet_hours');
-- the policy drop does not apply: a step is scheduled after the quiet hours
SELECT ccrm.set_setting('sms_quiet_policy', 'drop');
SELECT pg_temp.due('2026-06-03 23:30', 0, sms => true) AS with_drop_policy;
SELECT ccrm.reset_setting('sms_quiet_policy');

-- all three together: the end of the quiet hours of Friday night falls on
-- Saturday, which working days forbid: Monday 07:30, the end of Monday's
-- quiet hours, or Monday 09:00 with not_before; a holiday on that Monday
-- moves it to Tuesday
SELECT pg_temp.due('2026-06-05 23:30', 0, 'working_days', sms => true) AS monday,
       pg_temp.due('2026-06-05 23:30', 0, 'working_days', '09:00', sms => true) AS monday_nine,
       pg_temp.due('2026-06-05 23:30', 0, 'working_days', '06:00', sms => true) AS not_before_in_quiet;
INSERT INTO ccrm.holiday VALUES ('2026-06-08', 'a Monday off');
SELECT pg_temp.due('2026-06-05 23:30', 0, 'working_days', sms => true) AS tuesday;
-- a weekday: Tuesday 22:00 + 1 day is Wednesday 22:00, not a Thursday; the
-- next Thursday, then its not_before 23:15 inside the quiet hours (US
-- window 21:00-08:00 in New York) leaves no instant that day, nor any day
SELECT pg_temp.due('2026-06-02 22:00', 1, 'thursday', sms => true) AS thursday,
       pg_temp.due('2026-06-02 22:00', 1, 'thursday', '20:00', 'America/New_York', true, 'US') AS thursday_us;
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-02 22:00+00', 1, 'thursday', '23:15',
                                                      'America/New_York', true, 'US')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-02 22:00+00', 1, 'working_days', '23:30',
                                                      sms => true)$$);
DELETE FROM ccrm.holiday;

-- DST in Helsinki: on the last Sunday of March (2026-03-29) 03:00 EET
-- becomes 04:00 EEST, on the last Sunday of October (2026-10-25) 04:00 EEST
-- becomes 03:00 EET.  A step keeps its local time: one day is 23 or 25 hours.
SELECT pg_temp.due('2026-03-28 10:00', 1) AS march_local,
       ccrm.step_due_time('2026-03-28 10:00+02', 1, time_zone => 'Europe/Helsinki') - '2026-03-28 10:00+02' AS march,
       pg_temp.due('2026-10-24 10:00', 1) AS october_local,
       ccrm.step_due_time('2026-10-24 10:00+03', 1, time_zone => 'Europe/Helsinki') - '2026-10-24 10:00+03' AS october;
-- across the change, a week of working days at 09:00 stays at 09:00 local
SELECT d, pg_temp.due('2026-03-26 09:00', d, 'working_days', '09:00') AS march,
       pg_temp.due('2026-10-22 09:00', d, 'working_days', '09:00') AS october
  FROM generate_series(1, 5) d;
-- a local time the clocks skip (03:30 on 2026-03-29) is read as PostgreSQL
-- reads it, 04:30 EEST; one they repeat (03:30 on 2026-10-25) as its second
-- occurrence, 03:30 EET
SELECT pg_temp.due('2026-03-28 03:30', 1) AS skipped,
       ccrm.step_due_time('2026-03-28 03:30+02', 1, time_zone => 'Europe/Helsinki') AT TIME ZONE 'UTC' AS skipped_utc,
       pg_temp.due('2026-10-24 03:30', 1) AS repeated,
       ccrm.step_due_time('2026-10-24 03:30+03', 1, time_zone => 'Europe/Helsinki') AT TIME ZONE 'UTC' AS repeated_utc;
-- quiet hours across the change end at 07:30 local
SELECT pg_temp.due('2026-03-28 23:30', 0, sms => true) AS march_sms,
       pg_temp.due('2026-10-24 23:30', 0, sms => true) AS october_sms;

-- no zone: the time_zone setting's
SELECT pg_temp.local(ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days', '09:00'), 'UTC') AS utc_default;
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT pg_temp.local(ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days', '09:00'), 'Europe/Helsinki') AS helsinki_default;

-- settings and holidays are read once per statement, not once per row (the
-- scans of a transaction, counted by the statistics system, before and after
-- 1000 rows), and again after a change
CREATE FUNCTION pg_temp.scans(t regclass) RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(pg_stat_get_xact_numscans(c)) FROM (SELECT t UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = t) i(c) $$;
BEGIN;
CREATE TEMP TABLE scans_before AS
    SELECT pg_temp.scans('ccrm.holiday') AS holiday, pg_temp.scans('ccrm.setting') AS setting;
SELECT count(DISTINCT ccrm.step_due_time('2026-06-05 12:00+00', d % 3, 'working_days', '09:00', sms => true))
  FROM generate_series(1, 1000) d;
SELECT pg_temp.scans('ccrm.holiday') - holiday AS holiday_scans,
       pg_temp.scans('ccrm.setting') - setting BETWEEN 1 AND 10 AS few_setting_scans
  FROM scans_before;
CREATE FUNCTION pg_temp.after_change() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    before timestamptz;
BEGIN
    before := ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days', '09:00');
    INSERT INTO ccrm.holiday VALUES ('2026-06-08');
    RETURN pg_temp.local(before, 'Europe/Helsinki') || ' then ' ||
           pg_temp.local(ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days', '09:00'), 'Europe/Helsinki');
END $$;
SELECT pg_temp.after_change();
ROLLBACK;

-- a change rolled back with its subtransaction is forgotten as well
DO $$
BEGIN
    BEGIN
        PERFORM ccrm.set_setting('working_days', '{1,2,3,4,5,6}');
        RAISE NOTICE 'inside: %', pg_temp.local(ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days', '09:00'),
                                                'Europe/Helsinki');
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
    RAISE NOTICE 'rolled back: %', pg_temp.local(ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days', '09:00'),
                                                 'Europe/Helsinki');
END $$;

-- in a parallel query, where no subtransaction can start (in a worker, or in
-- the leader in parallel mode), settings are read all the same
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF)
SELECT ccrm.step_due_time('2026-06-05 12:00+00', d, 'working_days', '09:00', 'Europe/Helsinki', true)
  FROM generate_series(0, 2) d;
SELECT d, to_char(ccrm.step_due_time('2026-06-05 12:00+00', d, 'working_days', '09:00', 'Europe/Helsinki', true)
                  AT TIME ZONE 'Europe/Helsinki', 'Dy YYYY-MM-DD HH24:MI') AS due
  FROM generate_series(0, 2) d;
RESET force_parallel_mode;

-- bad input
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', -1)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, 'Monday')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, 'holidays')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, time_zone => 'Europe/Atlantis')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, time_zone => '')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('infinity', 1)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('-infinity', 0)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, not_before => '24:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 200000000)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time(NULL, 1)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, sms => NULL)$$);
-- a restore writes what the dump holds, unchecked: working_days with no
-- weekday leaves the working-days rule no day, the other rules still work
SET check_function_bodies = off;
INSERT INTO ccrm.setting (name, value) VALUES ('working_days', '{}');
RESET check_function_bodies;
SELECT * FROM pg_temp.err($$SELECT ccrm.step_due_time('2026-06-05 12:00+00', 1, 'working_days')$$);
SELECT pg_temp.due('2026-06-05 12:00', 1, 'monday') AS monday_still;
DELETE FROM ccrm.setting WHERE name = 'working_days';

DROP EXTENSION ccrm;
