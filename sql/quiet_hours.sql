-- SMS quiet hours: the window's edges in the recipient's zone across DST
-- changes, per-country rules, the defer and drop policies, and the check at
-- enqueue and again at claim time.
CREATE EXTENSION ccrm;
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
-- local time in a zone, for reading results
CREATE FUNCTION pg_temp.local(t timestamptz, zone text) RETURNS text LANGUAGE sql AS $$
    SELECT to_char(t AT TIME ZONE zone, 'YYYY-MM-DD HH24:MI:SS') || ' ' || zone $$;
-- quiet_hours_end for a local time in a zone, shown in that zone
CREATE FUNCTION pg_temp.qh(local timestamp, zone text, country text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(pg_temp.local(ccrm.quiet_hours_end(local AT TIME ZONE zone, zone, country), zone), 'not quiet') $$;

SELECT name, value FROM ccrm.settings WHERE name LIKE 'sms%' OR name = 'phone_country' ORDER BY name;

-- the edges of 23:00-07:30 on the night the clocks go forward in Bucharest
-- (2026-03-29 03:00 EET -> 04:00 EEST): the window ends at 07:30 local,
-- which is 04:30 UTC that morning, not 05:30
SELECT l, pg_temp.qh(l, 'Europe/Bucharest') FROM unnest(ARRAY[
    '2026-03-28 22:59:59', '2026-03-28 23:00:00', '2026-03-29 02:59:59', '2026-03-29 04:00:00',
    '2026-03-29 07:29:59', '2026-03-29 07:30:00']::timestamp[]) l;
SELECT ccrm.quiet_hours_end('2026-03-28 21:00:00+00', 'Europe/Bucharest') AS ends_utc;
-- and the night they go back (2026-10-25 04:00 EEST -> 03:00 EET): 07:30 EET
SELECT l, pg_temp.qh(l, 'Europe/Bucharest') FROM unnest(ARRAY[
    '2026-10-24 22:59:59', '2026-10-24 23:00:00', '2026-10-25 07:29:59', '2026-10-25 07:30:00']::timestamp[]) l;
SELECT ccrm.quiet_hours_end('2026-10-24 20:00:00+00', 'Europe/Bucharest') AS ends_utc;
-- after midnight the window ends the same morning
SELECT pg_temp.qh('2026-06-01 00:00:01', 'Europe/Helsinki');
-- no zone: the time_zone setting's
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT pg_temp.local(ccrm.quiet_hours_end('2026-06-01 20:00:00+00'), 'Europe/Helsinki');
SELECT ccrm.quiet_hours_end('2026-06-01 19:59:59+00') IS NULL AS not_quiet_at_22_59_59;

-- per country: in the US only 08:00-21:00 (quiet 21:00-08:00), across the US
-- change to summer time (2026-03-08 02:00 -> 03:00 in New York)
SELECT l, pg_temp.qh(l, 'America/New_York', 'US') FROM unnest(ARRAY[
    '2026-03-07 20:59:59', '2026-03-07 21:00:00', '2026-03-08 07:59:59', '2026-03-08 08:00:00']::timestamp[]) l;
-- the same recipient without a country has the default window
SELECT l, pg_temp.qh(l, 'America/New_York') FROM unnest(ARRAY[
    '2026-03-07 21:00:00', '2026-03-07 23:00:00']::timestamp[]) l;
-- lower-case codes work; a country with '' has no quiet hours
SELECT ccrm.set_setting('sms_quiet_hours_by_country', '{"US": "21:00-08:00", "FI": ""}');
SELECT pg_temp.qh('2026-06-01 23:30', 'Europe/Helsinki', 'fi'), pg_temp.qh('2026-06-01 22:00', 'America/Chicago', 'us');
-- another default window, one that does not cross midnight, and 24:00
SELECT ccrm.set_setting('sms_quiet_hours', '12:00-13:00');
SELECT l, pg_temp.qh(l, 'UTC') FROM unnest(ARRAY['2026-06-01 11:59:59', '2026-06-01 12:00:00', '2026-06-01 13:00:00']::timestamp[]) l;
SELECT ccrm.set_setting('sms_quiet_hours', '22:00-24:00');
SELECT pg_temp.qh('2026-06-01 23:00', 'UTC');
SELECT ccrm.set_setting('sms_quiet_hours', '');
SELECT pg_temp.qh('2026-06-01 03:00', 'UTC');
SELECT ccrm.reset_setting('sms_quiet_hours'), ccrm.reset_setting('sms_quiet_hours_by_country');

-- bad settings and arguments
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours', '23-07:30')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours', '23:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours', '25:00-07:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours', '07:00-07:00')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_policy', 'later')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours_by_country', '["US"]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours_by_country', '{"XX": "21:00-08:00"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours_by_country', '{"US": 21}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours_by_country', '{"US": "9pm-8am"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('sms_quiet_hours_by_country', 'not json')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_setting('phone_country', 'Romania')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.quiet_hours_end('2026-06-01', 'Mars/Olympus')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.quiet_hours_end('2026-06-01', 'UTC', 'ZZ')$$);
SELECT name, value FROM ccrm.settings WHERE name LIKE 'sms%' ORDER BY name;

-- in the outbox: checked at enqueue ...
SELECT ccrm.create_channel('sms', 'sms', is_default => true);
INSERT INTO ccrm.contact (id, firstname, mobile, country, timezone) VALUES
    (1, 'Ion', '0721 234 567', 'RO', 'Europe/Bucharest'),
    (2, 'Bob', '(212) 555-0100', 'US', 'America/New_York');
SELECT ccrm.create_message_template('delivered', 'sms', body => 'Comanda ta a fost livrată, $contact-firstname$.');
-- 23:30 in Bucharest (21:30 UTC): deferred to 07:30; 16:30 in New York: sent now
SELECT record_id, status FROM ccrm.enqueue_template('delivered', '{1,2}', key_prefix => 'd1:',
                                                    at => '2026-03-28 21:30:00+00') ORDER BY 1;
SELECT record_id, status, pg_temp.local(available_at, time_zone) AS available, reason
  FROM ccrm.outbox ORDER BY record_id;
-- ... and at claim time: Bob's message, claimed late (21:00 in New York), waits
-- for 08:00; Ion's becomes claimable at 07:30 his time, not a second earlier
SELECT id FROM ccrm.claim_messages('sms', 10, '1 minute', at => '2026-03-29 01:00:00+00');
SELECT record_id, status, attempts, pg_temp.local(available_at, time_zone) AS available, reason
  FROM ccrm.outbox ORDER BY record_id;
SELECT count(*) FROM ccrm.claim_messages('sms', 10, '1 minute', at => '2026-03-29 04:29:59+00');
SELECT o.record_id, c.attempts, c.segments FROM ccrm.claim_messages('sms', 10, '1 minute', at => '2026-03-29 04:30:00+00') c
  JOIN ccrm.outbox o USING (id);
-- a retry of Ion's message (its lease expired) claimed at midnight in Bucharest is
-- deferred again, not sent; Bob's (17:00 in New York) is claimed
SELECT o.record_id FROM ccrm.claim_messages('sms', 10, '1 minute', at => '2026-03-29 21:00:00+00') c JOIN ccrm.outbox o USING (id);
SELECT record_id, status, attempts, pg_temp.local(available_at, time_zone) AS available FROM ccrm.outbox ORDER BY record_id, id;

-- drop instead of defer (the seed's product): recorded as dropped with the reason
SELECT ccrm.set_setting('sms_quiet_policy', 'drop');
SELECT record_id, status FROM ccrm.enqueue_template('delivered', '{1,2}', key_prefix => 'd2:',
                                                    at => '2026-03-28 21:30:00+00') ORDER BY 1;
SELECT record_id, status, reason, finished_at IS NOT NULL AS finished FROM ccrm.outbox
 WHERE idempotency_key LIKE 'd2:%' ORDER BY record_id;
-- and at claim time: Bob's message claimed at 21:00 New York time is dropped
SELECT count(*) FROM ccrm.claim_messages('sms', 10, '1 minute', at => '2026-03-29 01:00:00+00');
SELECT record_id, status, attempts, reason FROM ccrm.outbox WHERE idempotency_key LIKE 'd2:%' ORDER BY record_id;

DROP EXTENSION ccrm;
