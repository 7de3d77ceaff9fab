-- The outbox: enqueue (single and set-based), idempotency keys, addresses
-- (E.164, email syntax), fenced claims and their completion, every claim and
-- mark error, a stale token, backoff, dead messages, suppression at claim
-- time, retention that keeps keys, statistics and who may do what.
CREATE EXTENSION ccrm;
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
-- claim and keep the tokens in a temp table, to complete them later
CREATE TEMP TABLE claimed (id bigint, claim_token uuid, attempts integer);
CREATE FUNCTION pg_temp.claim(channel text, n integer, at timestamptz, lease interval DEFAULT '5 minutes')
RETURNS SETOF bigint LANGUAGE sql AS $$
    DELETE FROM claimed;
    INSERT INTO claimed SELECT id, claim_token, attempts FROM ccrm.claim_messages(channel, n, lease, at);
    SELECT id FROM claimed ORDER BY id $$;
CREATE FUNCTION pg_temp.token(msg bigint) RETURNS uuid LANGUAGE sql AS $$ SELECT claim_token FROM claimed WHERE id = msg $$;

INSERT INTO ccrm.crm_user (id, username, firstname, lastname, email, mobile) VALUES
    (1, 'anna', 'Anna', 'Korhonen', 'anna@example.com', '+358 50 123 4567');
INSERT INTO ccrm.account (id, name, email, phone, country) VALUES (1, 'Aalto Oy', 'info@aalto.example', '09 123 456', 'FI');
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, email, mobile, country) VALUES
    (1, 1, 1, 'Aino', 'aino@aalto.example', '040 123 4567', 'FI'),
    (2, 1, 1, 'Eino', 'eino@aalto', '+358 40 765 4321', NULL),
    (3, 1, 1, 'Karin', '  karin@bergstrom.example ', '070-123 45 67', 'SE'),
    (4, NULL, 1, 'Nobody', NULL, NULL, NULL),
    (5, NULL, 1, 'Optout', 'optout@example.com', '+46 70 111 2222', 'SE');
UPDATE ccrm.contact SET email_opt_out = true, sms_opt_out = true WHERE id = 5;
INSERT INTO ccrm.lead (id, firstname, email, mobile, owner_id) VALUES (1, 'Lea', 'lea@example.org', '+40 721 000 111', 1);

-- channels: admins only; one default per medium
SELECT ccrm.create_channel('mail', 'email', is_default => true, description => 'transactional mail');
SELECT ccrm.create_channel('newsletter', 'email');
SELECT ccrm.create_channel('sms', 'sms', is_default => true);
SELECT ccrm.alter_channel('newsletter', is_default => true);
SELECT name, medium, delivery, enabled, is_default FROM ccrm.channels ORDER BY id;
SELECT ccrm.alter_channel('mail', is_default => true);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_channel('mail', 'email')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_channel('Mail Out', 'email')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_channel('fax', 'fax')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_channel('fax', 'sms', 'carrier pigeon')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_channel('nosuch', enabled => false)$$);

-- phone numbers and email addresses
SELECT n, c, ccrm.normalize_phone(n, c) FROM (VALUES ('040 123 4567', 'FI'), ('+358 (40) 123-4567', NULL),
    ('0721 234 567', 'RO'), ('0040 721 234 567', 'FI'), ('(212) 555-0100', 'US'), ('1-212-555-0100', 'us'),
    ('011 44 20 7946 0000', 'US'), ('06 30 123 4567', 'HU'), ('8 912 345 67 89', 'RU'), ('02 1234 5678', 'IT')) v(n, c);
SELECT ccrm.set_setting('phone_country', 'RO');
SELECT ccrm.normalize_phone('0721 234 567');
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('040 CALL ME', 'FI')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('040 123', 'Finland')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('123', 'FI')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('+1 212 555 01', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('+1234567890123456', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('+0 123 456 789', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('+358 40+1', NULL)$$);
SELECT ccrm.reset_setting('phone_country');
SELECT * FROM pg_temp.err($$SELECT ccrm.normalize_phone('040 123 4567')$$);
SELECT a, ccrm.is_valid_email(a) FROM unnest(ARRAY['aino@aalto.example', 'a.b+c@x-y.fi', 'jürgen@bücher.de',
    'no-at', '@x.fi', 'a@', 'a@b', 'a..b@x.fi', '.a@x.fi', 'a b@x.fi', 'a@-x.fi', 'a@x-.fi', 'a@x..fi',
    'a@x.123', 'a@x_y.fi']) a;

-- one message (texts as written, $ and all); the same key twice is one message
SELECT ccrm.enqueue_message('email', 'boss@example.com', 'Costs $5, see $contact-x$', subject => 'Offer',
                            idempotency_key => 'offer-1', at => '2026-05-04 09:00+00') AS first;
SELECT ccrm.enqueue_message('email', 'boss@example.com', 'another text', subject => 'Offer',
                            idempotency_key => 'offer-1', at => '2026-05-04 09:05+00') AS same_key_same_id;
SELECT ccrm.enqueue_message('sms', NULL, 'Hei Aino', entity => 'contact', record_id => 1, at => '2026-05-04 09:00+00') AS sms_to_contact;
SELECT ccrm.enqueue_message('sms', NULL, 'Salut', entity => 'lead', record_id => 1, at => '2026-05-04 09:00+00') AS sms_to_lead;
SELECT ccrm.enqueue_message('email', NULL, 'Hello', subject => 'Hi', entity => 'account', record_id => 1,
                            channel => 'newsletter', at => '2026-05-04 09:00+00') AS to_account;
SELECT id, channel_id, status, recipient, subject, body, encoding, segments, idempotency_key, source,
       available_at, created_at, attempts
  FROM ccrm.outbox ORDER BY id;
-- enqueue errors change nothing
SELECT count(*) AS before FROM ccrm.outbox;
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message(NULL, 'a@b.fi', 'x', subject => 's')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('fax', 'a@b.fi', 'x')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', NULL, subject => 's')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', 'x')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', '+358401234567', 'x', subject => 's')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', NULL, 'x')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', NULL, 'x', entity => 'contact')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', NULL, 'x', entity => 'contact', record_id => 99)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', '+358401234567', 'x', channel => 'mail')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', '+358401234567', 'x', channel => 'nosuch')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', 'x', subject => 's', reply_to => 'nope')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', 'x', subject => 's', source => 'spam')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', 'x', subject => 's', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', 'x', subject => 's', at => NULL)$$);
SELECT ccrm.alter_channel('newsletter', enabled => false);
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('email', 'a@b.fi', 'x', subject => 's', channel => 'newsletter')$$);
SELECT count(*) AS after FROM ccrm.outbox;

-- set-based from a template: addresses from the records, E.164, invalid ones
-- and opt-outs suppressed with the reason, keys per record
SELECT ccrm.create_message_template('hello', 'sms', body => 'Hei $contact-firstname$, $user-firstname$ täällä!');
SELECT ccrm.create_message_template('news', 'email', subject => 'News for $contact-firstname$',
                                    body => 'Hello $contact-firstname|there$', sender_id => 1);
SELECT * FROM ccrm.enqueue_template('hello', '{1,2,3,4,5,99}', key_prefix => 'hello:', source => 'campaign',
                                    source_id => 7, at => '2026-05-04 10:00+00') ORDER BY record_id;
SELECT * FROM ccrm.enqueue_template('hello', '{1,2,3,4,5}', key_prefix => 'hello:', at => '2026-05-04 11:00+00')
 ORDER BY record_id;
SELECT record_id, status, recipient, body, encoding, segments, reason, source, source_id, idempotency_key
  FROM ccrm.outbox WHERE idempotency_key LIKE 'hello:%' ORDER BY record_id;
SELECT sum(segments) AS segments_to_pay FROM ccrm.outbox WHERE idempotency_key LIKE 'hello:%' AND status = 'queued';
CREATE TEMP TABLE e1 AS SELECT * FROM ccrm.enqueue_template('news', '{1,2,3,5}', key_prefix => 'news:', at => '2026-05-04 10:00+00');
SELECT e.record_id, e.status, recipient, subject, body, sender_id, reason FROM e1 e JOIN ccrm.outbox o ON o.id = e.message_id ORDER BY 1;
-- to users: the record's owner, or one given user
CREATE TEMP TABLE e2 AS SELECT * FROM ccrm.enqueue_template('hello', '{1}', recipient => 'owner', key_prefix => 'owner:', at => '2026-05-04 10:00+00');
SELECT e.status, o.recipient, o.user_id, o.contact_id, o.body FROM e2 e JOIN ccrm.outbox o ON o.id = e.message_id;
CREATE TEMP TABLE e3 AS SELECT * FROM ccrm.enqueue_template('news', '{1}', recipient => 'user', user_id => 1, at => '2026-05-04 10:00+00');
SELECT e.status, o.recipient, o.user_id, o.subject FROM e3 e JOIN ccrm.outbox o ON o.id = e.message_id;
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.enqueue_template('news', '{1}', recipient => 'user')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.enqueue_template('news', '{1}', recipient => 'boss')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.enqueue_template('news', '{1}', channel => 'sms')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.enqueue_template('news', NULL)$$);

-- claims: only what is due, oldest first, each with the token of its claim
DELETE FROM ccrm.outbox WHERE (channel_id <> (SELECT id FROM ccrm.channels WHERE name = 'sms') OR status <> 'queued')
   AND idempotency_key IS DISTINCT FROM 'offer-1';
SELECT id, recipient FROM ccrm.outbox WHERE idempotency_key IS DISTINCT FROM 'offer-1' ORDER BY available_at, id;
SELECT pg_temp.claim('sms', 2, '2026-05-04 10:30+00');
SELECT count(DISTINCT claim_token) AS one_token, bool_and(attempts = 1) AS first_attempt FROM claimed;
SELECT id, status, attempts, claimed_at, available_at AS lease_until FROM ccrm.outbox WHERE status = 'sending' ORDER BY id;
-- not yet due: nothing
SELECT count(*) FROM ccrm.claim_messages('sms', 10, '5 minutes', at => '2026-05-04 08:00+00');
-- claim errors
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('sms', 0, '5 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('sms', 10001, '5 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('sms', 10, '0 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('sms', 10, '-1 minute')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('sms', 10, '2 days')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('nosuch', 10, '5 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages(NULL, 10, '5 minutes')$$);
SELECT ccrm.create_channel('smtp', 'email', 'ccrm');
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('smtp', 10, '5 minutes')$$);

-- marks: sent with the token; a repeat of the same completion says false; errors
SELECT ccrm.mark_sent(min(id), pg_temp.token(min(id)), 'provider-1', '2026-05-04 10:31+00') FROM claimed;
SELECT ccrm.mark_sent(min(id), pg_temp.token(min(id)), 'provider-1', '2026-05-04 10:32+00') AS repeated FROM claimed;
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_failed(%s, %L, 'oops')$$, (SELECT min(id) FROM claimed), (SELECT claim_token FROM claimed LIMIT 1)));
SELECT * FROM pg_temp.err($$SELECT ccrm.mark_sent(999999, gen_random_uuid())$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mark_sent(NULL::bigint, gen_random_uuid())$$);
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_sent(%s, NULL)$$, (SELECT max(id) FROM claimed)));
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_sent(%s, gen_random_uuid())$$, (SELECT max(id) FROM claimed)));
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_failed(%s, %L, NULL)$$, (SELECT max(id) FROM claimed), (SELECT claim_token FROM claimed LIMIT 1)));
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_sent(ARRAY[%s], %L, ARRAY['a', 'b'])$$, (SELECT max(id) FROM claimed), (SELECT claim_token FROM claimed LIMIT 1)));
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_sent(ARRAY[%s, NULL], %L)$$, (SELECT max(id) FROM claimed), (SELECT claim_token FROM claimed LIMIT 1)));
SELECT id, status, provider_id, sent_at, finished_at FROM ccrm.outbox WHERE id IN (SELECT id FROM claimed) ORDER BY id;

-- a stale token: the lease expires, another claim takes the message, the old
-- token can no longer complete it (and changes nothing); the new one can
CREATE TEMP TABLE old_claim AS SELECT * FROM claimed WHERE id = (SELECT max(id) FROM claimed);
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 10:36+00');
SELECT attempts AS attempts_of_the_reclaimed FROM claimed WHERE id = (SELECT id FROM old_claim);
DELETE FROM claimed WHERE id <> (SELECT id FROM old_claim);
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_sent(%s, %L)$$, (SELECT id FROM old_claim), (SELECT claim_token FROM old_claim)));
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_failed(%s, %L, 'late')$$, (SELECT id FROM old_claim), (SELECT claim_token FROM old_claim)));
SELECT * FROM pg_temp.err(format($$SELECT ccrm.mark_sent(ARRAY[%s], %L)$$, (SELECT id FROM old_claim), (SELECT claim_token FROM old_claim)));
SELECT status, attempts, last_error FROM ccrm.outbox WHERE id = (SELECT id FROM old_claim);

-- failures: retry with a backoff that doubles (60 s, 120 s, ...), then dead
SET ccrm.outbox_max_attempts = 3;
SELECT ccrm.mark_failed(id, claim_token, 'provider timeout', at => '2026-05-04 10:37+00') FROM claimed;
SELECT status, attempts, available_at, last_error, claim_token IS NULL AS unclaimed FROM ccrm.outbox WHERE id = (SELECT id FROM old_claim);
SELECT count(*) AS not_before_backoff FROM pg_temp.claim('sms', 10, '2026-05-04 10:37:59+00');
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 10:38+00');
SELECT ccrm.mark_failed(id, claim_token, 'provider timeout', at => '2026-05-04 10:38+00') FROM claimed;
SELECT status, attempts, available_at FROM ccrm.outbox WHERE id = (SELECT id FROM old_claim);
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 10:40+00');
SELECT ccrm.mark_failed(id, claim_token, 'provider timeout', at => '2026-05-04 10:40+00') FROM claimed;
SELECT status, attempts, reason, last_error, finished_at FROM ccrm.outbox WHERE id = (SELECT id FROM old_claim);
SELECT count(*) AS dead_is_never_claimed FROM ccrm.claim_messages('sms', 10, '5 minutes', at => '2026-06-01 00:00+00');
-- a failure that cannot be retried is final at once
SELECT ccrm.enqueue_message('sms', '+358401112223', 'x', at => '2026-05-04 11:00+00') AS fresh \gset
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 11:00+00');
SELECT ccrm.mark_failed(id, claim_token, 'number does not exist', retry => false, at => '2026-05-04 11:01+00') FROM claimed;
-- leases that keep expiring: dead after max_attempts claims
SELECT ccrm.enqueue_message('sms', '+358401112224', 'y', at => '2026-05-04 12:00+00') AS lost \gset
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 12:00+00', '1 minute');
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 12:02+00', '1 minute');
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 12:04+00', '1 minute');
SELECT count(*) FROM pg_temp.claim('sms', 10, '2026-05-04 12:06+00', '1 minute');
SELECT status, attempts, reason FROM ccrm.outbox WHERE id IN (:fresh, :lost) ORDER BY id;
RESET ccrm.outbox_max_attempts;

-- suppression at claim time: opted out or address emptied after enqueue
SELECT ccrm.alter_channel('newsletter', enabled => true);
SELECT record_id, status FROM ccrm.enqueue_template('news', '{1,3}', channel => 'newsletter', key_prefix => 'late:',
       at => '2026-05-05 09:00+00') ORDER BY 1;
SELECT e.status FROM ccrm.enqueue_template('news', '{1}', recipient => 'user', user_id => 1, channel => 'newsletter',
       at => '2026-05-05 09:00+00') e;
UPDATE ccrm.contact SET email_opt_out = true WHERE id = 1;
UPDATE ccrm.contact SET email = '' WHERE id = 3;
SELECT o.record_id, o.recipient FROM ccrm.claim_messages('newsletter', 10, '5 minutes', at => '2026-05-05 09:01+00') c
  JOIN ccrm.outbox o USING (id);
SELECT record_id, user_id, status, reason, attempts, finished_at FROM ccrm.outbox
 WHERE channel_id = (SELECT id FROM ccrm.channels WHERE name = 'newsletter') ORDER BY id;
-- a disabled channel gives nothing to claim (and is no error for a polling sender)
SELECT ccrm.alter_channel('sms', enabled => false);
SELECT count(*) FROM ccrm.claim_messages('sms', 10, '5 minutes', at => '2026-06-01 00:00+00');
SELECT ccrm.alter_channel('sms', enabled => true);

-- statistics per channel and status
SELECT * FROM ccrm.outbox_statistics('2026-05-05 09:30+00') ORDER BY channel, status;
SELECT count(*) > 0 AS view_works FROM ccrm.outbox_stats;

-- the first message is sent
SELECT ccrm.mark_sent(id, claim_token, at => '2026-05-04 10:00+00') FROM ccrm.claim_messages('mail', 10, '5 minutes', '2026-05-04 10:00+00');
-- retention: finished rows lose their texts, keep their key, so the same key
-- is still the same message and nothing is sent again
SELECT ccrm.purge_outbox('1 day', at => '2026-05-05 12:00+00') AS purged;
SELECT ccrm.purge_outbox('1 day', at => '2026-05-05 12:00+00') AS purged_again;
SELECT id, status, recipient IS NULL AS no_recipient, body IS NULL AS no_body, idempotency_key, purged_at
  FROM ccrm.outbox WHERE idempotency_key = 'offer-1' OR purged_at IS NOT NULL ORDER BY id;
SELECT ccrm.enqueue_message('email', 'boss@example.com', 'again', subject => 'Offer', idempotency_key => 'offer-1',
                            at => '2026-05-06 09:00+00') = 1 AS same_message;
SELECT count(*) AS still_one FROM ccrm.outbox WHERE idempotency_key = 'offer-1';
SET ccrm.outbox_retention = 0;
SELECT ccrm.purge_outbox(at => '2027-01-01') AS retention_off;
RESET ccrm.outbox_retention;
SELECT ccrm.purge_outbox(at => '2026-07-01') > 0 AS by_retention_setting;

-- who may do what: a clerk enqueues and sees only its own messages, may not
-- claim, may not change channels; a member of ccrm.sender_role claims
CREATE ROLE ccrm_clerk;
CREATE ROLE ccrm_sender;
GRANT SELECT ON ccrm.contact, ccrm.crm_user, ccrm.entity, ccrm.custom_field TO ccrm_clerk;
SET ROLE ccrm_clerk;
SELECT ccrm.enqueue_message('sms', '+358401112225', 'from the clerk', idempotency_key => 'clerk-1',
                            at => '2026-05-07 09:00+00') IS NOT NULL AS enqueued;
SELECT body FROM ccrm.outbox;
SELECT * FROM pg_temp.err($$SELECT ccrm.enqueue_message('sms', '+358401112226', 'as anna', sender_id => 1)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.claim_messages('sms', 10, '5 minutes')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mark_sent(1, gen_random_uuid())$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_channel('mine', 'sms')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_channel('sms', enabled => false)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_channel('sms')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_outbox()$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.outbox SET status = 'sent'$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.channel$$);
SELECT name FROM ccrm.channels ORDER BY id;
RESET ROLE;
SET ccrm.sender_role = 'ccrm_sender';
SET ROLE ccrm_sender;
SELECT c.body FROM ccrm.claim_messages('sms', 10, '5 minutes', at => '2026-05-07 09:00+00') c;
RESET ROLE;
RESET ccrm.sender_role;
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_channel('sms')$$);
SELECT ccrm.drop_channel('smtp');
REVOKE ALL ON ccrm.contact, ccrm.crm_user, ccrm.entity, ccrm.custom_field FROM ccrm_clerk;
DROP ROLE ccrm_clerk;
DROP ROLE ccrm_sender;

-- the high-water mark: a claim starts where this session's last one ended, yet
-- finds what lies behind it: a rolled-back claim, a retry, an expired lease
SELECT ccrm.create_channel('hwm', 'email');
SELECT count(*) FROM (SELECT ccrm.enqueue_message('email', 'a' || i || '@example.com', 'b', channel => 'hwm',
       subject => 's', at => '2026-05-08 09:00+00'::timestamptz + i * interval '1 second') FROM generate_series(1, 6) i) q;
BEGIN;
SAVEPOINT s;
SELECT count(*) AS rolled_back FROM ccrm.claim_messages('hwm', 2, '5 minutes', at => '2026-05-08 10:00+00');
ROLLBACK TO s;
SELECT count(*) AS after_the_mark FROM ccrm.claim_messages('hwm', 2, '5 minutes', at => '2026-05-08 10:00+00');
-- too few after the mark: from the front, so the rolled-back two come back
SELECT count(*) AS from_the_front FROM ccrm.claim_messages('hwm', 10, '5 minutes', at => '2026-05-08 10:00+00');
COMMIT;
SELECT status, count(*) FROM ccrm.outbox WHERE channel_id = (SELECT id FROM ccrm.channels WHERE name = 'hwm') GROUP BY 1;
-- expired leases and a retry (its backoff: 120 s after the second claim) lie after the mark; all are found
SELECT count(*) AS expired_leases FROM ccrm.claim_messages('hwm', 10, '5 minutes', at => '2026-05-08 10:06+00');
SELECT ccrm.mark_failed(o.id, o.claim_token, 'busy', at => '2026-05-08 10:07+00')
  FROM ccrm.outbox o WHERE o.channel_id = (SELECT id FROM ccrm.channels WHERE name = 'hwm') ORDER BY o.id LIMIT 1;
SELECT count(*) AS before_backoff FROM ccrm.claim_messages('hwm', 10, '5 minutes', at => '2026-05-08 10:08:59+00');
SELECT count(*) AS retry FROM ccrm.claim_messages('hwm', 10, '5 minutes', at => '2026-05-08 10:09+00');

DROP EXTENSION ccrm;
