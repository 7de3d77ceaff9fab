-- Schedules: cron fields, names, steps, macros, intervals; next runs across DST; bad schedules.
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
SET timezone = 'UTC';

-- lists, ranges, steps, names, macros
SELECT * FROM ccrm.next_runs('0 11 * * *', 3, 'UTC', '2026-11-30 10:59:59+00');
SELECT * FROM ccrm.next_runs('0 11 * * thu', 3, 'Europe/Helsinki', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 16 * * FRI', 2, 'Europe/Helsinki', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('*/15 9-10 * * mon-fri', 9, 'UTC', '2026-12-04 09:50+00');
SELECT * FROM ccrm.next_runs('5,35 0 1,15 jan,jul *', 5, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 0 * * 7', 2, 'UTC', '2026-11-30 00:00+00');      -- 7 is Sunday
SELECT * FROM ccrm.next_runs('10/20 * * * *', 4, 'UTC', '2026-11-30 00:00+00');  -- from 10 on
-- day of month and day of week both restricted: either matches (cron's rule)
SELECT * FROM ccrm.next_runs('0 12 13 * fri', 4, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 0 29 2 *', 2, 'UTC', '2026-11-30 00:00+00');
-- a day field that starts with "*" counts as unrestricted (Vixie cron, pg_cron):
-- odd days that are Mondays, not odd days or Mondays; the 1st on every other weekday
SELECT * FROM ccrm.next_runs('0 0 */2 * mon', 4, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 0 1 * */2', 4, 'UTC', '2026-11-30 00:00+00');
-- weekday ranges that end in Sunday end at 7: every day, the weekend, Friday and Sunday
SELECT * FROM ccrm.next_runs('0 9 * * mon-sun', 7, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 9 * * sat-0', 4, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 9 * * fri-sun/2', 4, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('0 9 * * sun-sun', 2, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('@hourly', 2, 'UTC', '2026-11-30 00:30+00');
SELECT * FROM ccrm.next_runs('@daily', 1, 'UTC', '2026-11-30 00:30+00');
SELECT * FROM ccrm.next_runs('@weekly', 1, 'UTC', '2026-11-30 00:30+00');
SELECT * FROM ccrm.next_runs('@monthly', 1, 'UTC', '2026-11-30 00:30+00');
SELECT * FROM ccrm.next_runs('@YEARLY', 1, 'UTC', '2026-11-30 00:30+00');
SELECT * FROM ccrm.next_runs('30 seconds', 3, 'UTC', '2026-11-30 00:00+00');
SELECT * FROM ccrm.next_runs('1 second', 2, 'UTC', '2026-11-30 00:00+00');
-- the zone defaults to the setting
SELECT ccrm.set_setting('time_zone', 'Asia/Tokyo');
SELECT * FROM ccrm.next_runs('0 9 * * *', 1, after => '2026-11-30 00:30+00');

-- DST, Europe/Helsinki: 2026-03-29 03:00 -> 04:00, 2026-10-25 04:00 -> 03:00
SET timezone = 'Europe/Helsinki';
-- a time in the gap runs at the first instant after it (04:00 EEST)
SELECT * FROM ccrm.next_runs('30 3 * * *', 3, 'Europe/Helsinki', '2026-03-28 00:00');
-- a time that occurs twice runs once, the first time
SELECT * FROM ccrm.next_runs('30 3 * * *', 3, 'Europe/Helsinki', '2026-10-24 00:00');
-- ... but with "*" in the hour field the repeated hour runs again, keeping the beat
SELECT * FROM ccrm.next_runs('*/30 * * * *', 6, 'Europe/Helsinki', '2026-10-25 02:10');
-- every 15 minutes through the gap: the skipped hour's slots fold into 04:00
SELECT * FROM ccrm.next_runs('*/15 * * * *', 6, 'Europe/Helsinki', '2026-03-29 02:40');
-- Europe/Athens, 2013-10-27 04:00 EEST -> 03:00 EET: a job with "*" in the hour field
-- keeps its beat through the repeated hour; one with a fixed hour runs once, the first time
SET timezone = 'Europe/Athens';
SELECT * FROM ccrm.next_runs('*/30 * * * *', 6, 'Europe/Athens', '2013-10-27 02:45+03');
SELECT * FROM ccrm.next_runs('15,45 */1 * * *', 5, 'Europe/Athens', '2013-10-27 02:45+03');
SELECT * FROM ccrm.next_runs('*/20 3 * * *', 4, 'Europe/Athens', '2013-10-27 02:45+03');
SELECT * FROM ccrm.next_runs('30 3 * * *', 2, 'Europe/Athens', '2013-10-26 12:00+03');
SELECT * FROM ccrm.next_runs('0 0-23 * * *', 3, 'Europe/Athens', '2013-10-27 02:30+03');
SET timezone = 'Europe/Helsinki';
-- America/New_York: 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00
SET timezone = 'America/New_York';
SELECT * FROM ccrm.next_runs('30 2 * * *', 3, 'America/New_York', '2026-03-07 00:00');
SELECT * FROM ccrm.next_runs('30 1 * * *', 3, 'America/New_York', '2026-10-31 00:00');
-- hourly: 01:00 EDT and 01:00 EST, one hour apart
SELECT * FROM ccrm.next_runs('0 * * * *', 4, 'America/New_York', '2026-11-01 00:30');
-- intervals are elapsed time, not wall clock
SELECT * FROM ccrm.next_runs('1800 seconds', 3, 'America/New_York', '2026-11-01 01:00 EDT');
RESET timezone;

-- bad schedules name the field
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('61 * * * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 24 * * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 0 * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * 13 *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * * 8')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * foo *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * * fri-mon')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('*/0 * * * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('1-/2 * * * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('1,,2 * * * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * * * 2026')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('@often')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('@daily junk')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('@hourly 5')$$);
SELECT ccrm.next_runs('@daily  ', 1, 'UTC', '2026-11-30 00:30+00');
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('90000 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('5 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 30 2 *')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 0 * * *; DROP TABLE ccrm.job')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('@daily', 1, 'Mars/Olympus')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('@daily', -1)$$);
-- "after" must be finite; nothing fires past the end of the timestamp range
SET timezone = 'UTC';
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('0 11 * * *', 2, 'UTC', '-infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.next_runs('30 seconds', 2, 'UTC', 'infinity')$$);
SELECT * FROM ccrm.next_runs('0 11 * * *', 3, 'UTC', '294276-12-31 10:00+00');
SELECT * FROM ccrm.next_runs('30 seconds', 3, 'UTC', '294276-12-31 23:59:00+00');
SELECT * FROM ccrm.next_runs('0 11 * * *', 2, 'UTC', '4713-01-01 00:00+00 BC');
RESET timezone;

DROP EXTENSION ccrm CASCADE;
