-- Follow-up sequences: every definition error, the locked filter (also
-- through in_group), lifecycle, enrolment (all / only_new, re-enrolment,
-- exits), each action with its recipient, a registered entity (invoices),
-- isolated per-record failures, run-time checks and rights.  Fixed instants
-- only; due times are printed in local time.
CREATE EXTENSION ccrm;
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
CREATE FUNCTION pg_temp.enrolments(seq text) RETURNS TABLE (record_id bigint, round integer, step integer,
    matched text, next_due text, status text, exit_reason text)
LANGUAGE sql AS $$
    SELECT e.record_id, e.round, e.step, to_char(e.matched_at AT TIME ZONE 'Europe/Helsinki', 'Dy DD.MM HH24:MI'),
           to_char(e.next_due AT TIME ZONE 'Europe/Helsinki', 'Dy DD.MM HH24:MI'), e.status, e.exit_reason
      FROM ccrm.sequence_enrolment e WHERE e.sequence_id = ccrm.sequence_id(seq)
     ORDER BY e.record_id, e.round $$;
CREATE FUNCTION pg_temp.run(at timestamptz) RETURNS TABLE (sequence text, enrolled bigint, executed bigint,
    exited bigint, error text)
LANGUAGE sql AS $$
    SELECT s.name, r.enrolled, r.executed, r.exited, r.error
      FROM ccrm.run_sequences(at) r JOIN ccrm.sequence s ON s.id = r.sequence_id ORDER BY s.name $$;
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');

INSERT INTO ccrm.crm_user (id, username, firstname, email, mobile, timezone) VALUES
    (1, 'anna', 'Anna', 'anna@example.com', '+358 50 123 4567', 'Europe/Helsinki'),
    (2, 'bert', 'Bert', 'bert@example.com', NULL, 'America/New_York');
INSERT INTO ccrm.account (id, name, email, country) VALUES (1, 'Aalto Oy', 'info@aalto.example', 'FI');
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, email, mobile, city, country, timezone) VALUES
    (1, 1, 1, 'Aino', 'aino@example.com', '040 123 4567', 'Helsinki', 'FI', NULL),
    (2, 1, 1, 'Eino', 'eino@example.com', NULL, 'Turku', 'FI', NULL),
    (3, NULL, 2, 'Karin', NULL, '+46 70 111 2222', 'Helsinki', 'SE', 'Europe/Stockholm');
SELECT ccrm.create_channel('mail', 'email', is_default => true);
SELECT ccrm.create_message_template('welcome', 'email', 'contact', subject => 'Hello $contact-firstname$',
    body => 'Welcome, $contact-firstname$', sender_id => 1);
SELECT ccrm.create_message_template('nosender', 'email', 'contact', subject => 'Hi', body => 'Hi');
SELECT ccrm.create_message_template('call', 'task', 'contact', subject => 'Call $contact-firstname$',
    body => 'No answer to the offer yet');
SELECT ccrm.create_message_template('text', 'sms', 'contact', body => 'Your order has shipped, $contact-firstname$');
SELECT ccrm.create_message_template('owner note', 'email', 'contact', subject => 'New contact $contact-firstname$',
    body => 'Have a look, $user-firstname$', sender_id => 1);
SELECT ccrm.create_message_template('account mail', 'email', 'account', subject => 'Hello $account-name$',
    body => 'Welcome', sender_id => 1);

-- Definition errors: nothing is saved
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'nosuch', '{"field": "city", "op": "eq", "value": "x"}', '[]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "nosuch", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '[1]', '[{"action": "email_customer", "template": "welcome"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', NULL, '[]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}', '[]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}', '[1]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "fax_customer", "template": "welcome"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome", "delay": 1}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome", "delay_days": -1}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome", "delay_days": "1"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome", "day_rule": "someday"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "nosuch"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "call"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "account mail"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "nosender"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome", "recipient": "owner"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "task_user", "template": "call", "recipient": "user"}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "task_user", "template": "call", "recipient": "user", "user_id": 99}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "task_user", "template": "call", "sender_id": 1}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome", "task_due_days": 3}]')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome"}]', reenrol => 'sometimes')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome"}]', reenrol => 'after_cooldown')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome"}]', reenrol => 'after_cooldown', cooldown => '-1 day')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome"}]', exit_filter => '{"field": "nosuch", "op": "is_null"}')$$);
-- SMS steps need an enabled SMS channel (the seed: the action is off until the SMS service is on)
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "sms_customer", "template": "text"}]')$$);
SELECT ccrm.create_channel('sms', 'sms', is_default => true);
SELECT ccrm.alter_channel('sms', enabled => false);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('s', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "sms_customer", "template": "text"}]')$$);
SELECT count(*) AS saved FROM ccrm.sequence;

-- The seed's example: an email 1 day after the match, then a task for the owner 4 days later
SELECT ccrm.create_sequence('welcome', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}',
    '[{"action": "email_customer", "delay_days": 1, "template": "welcome"},
      {"action": "task_user", "delay_days": 4, "template": "call", "task_due_days": 2}]',
    description => 'new customers in Helsinki') > 0 AS created;
SELECT position, action, delay_days, day_rule, recipient, task_due_days FROM ccrm.sequence_step
 WHERE sequence_id = ccrm.sequence_id('welcome') ORDER BY position;
SELECT * FROM pg_temp.err($$SELECT ccrm.sequence_id('nosuch')$$);
-- a plain write of a bad step is refused too
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.sequence_step (sequence_id, position, action, template_id, recipient)
    VALUES (ccrm.sequence_id('welcome'), 3, 'email_customer', (SELECT id FROM ccrm.message_template WHERE name = 'call'), 'record')$$);
-- activation checks the whole definition: steps 1..n
UPDATE ccrm.sequence_step SET position = 5 WHERE position = 2 AND sequence_id = ccrm.sequence_id('welcome');
SELECT * FROM pg_temp.err($$SELECT ccrm.activate_sequence('welcome', at => '2026-03-02 10:00+02')$$);
UPDATE ccrm.sequence_step SET position = 2 WHERE position = 5 AND sequence_id = ccrm.sequence_id('welcome');
-- Monday 2 March 10:00: the two Helsinki contacts enrol, the first step due a day later
SELECT ccrm.activate_sequence('welcome', at => '2026-03-02 10:00+02');
SELECT * FROM pg_temp.err($$SELECT ccrm.activate_sequence('welcome')$$);
SELECT * FROM pg_temp.enrolments('welcome');
-- the locked filter, exit filter and steps
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_sequence('welcome', filter => '{"field": "city", "op": "eq", "value": "Espoo"}')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.sequence SET exit_filter = '{"field": "city", "op": "is_null"}' WHERE name = 'welcome'$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.set_sequence_steps('welcome', '[{"action": "email_customer", "template": "welcome"}]')$$);
SELECT * FROM pg_temp.err($$DELETE FROM ccrm.sequence_step WHERE sequence_id = ccrm.sequence_id('welcome')$$);
SELECT ccrm.alter_sequence('welcome', description => 'still fine while active');
-- nothing is due before Tuesday 10:00
SELECT * FROM pg_temp.run('2026-03-03 09:59+02');
SELECT * FROM pg_temp.run('2026-03-03 10:00+02');
SELECT * FROM pg_temp.enrolments('welcome');
-- Karin (in Stockholm) gets nothing: she has no email address; the message is suppressed, the step recorded
SELECT record_id, status, recipient, subject, body, idempotency_key, source, reason
  FROM ccrm.outbox ORDER BY record_id;
SELECT record_id, step, outcome, reason FROM ccrm.sequence_history WHERE sequence = 'welcome' ORDER BY record_id, step;
-- again at the same instant, or by a second processor: nothing twice
SELECT * FROM pg_temp.run('2026-03-03 10:00+02');
CALL ccrm.process_sequences('2026-03-03 10:00+02');
SELECT count(*) AS messages FROM ccrm.outbox;
-- Saturday 10:00: the tasks, for each contact's owner, due 2 days later in the owner's zone
SELECT * FROM pg_temp.run('2026-03-07 10:00+02');
SELECT a.kind, a.subject, a.description, u.username, a.contact_id, a.due_on, a.entity, a.record_id, a.sequence_step
  FROM ccrm.activity a JOIN ccrm.crm_user u ON u.id = a.user_id ORDER BY a.record_id;
SELECT * FROM pg_temp.enrolments('welcome');
SELECT name, active, steps, enrolled, active_enrolments, completed, exited, exit_reasons, executions_per_step, next_due
  FROM ccrm.sequences;

-- Changes are captured: Eino moves to Helsinki and is enrolled by the next pass
UPDATE ccrm.contact SET city = 'Helsinki' WHERE id = 2;
SELECT count(*) AS pending FROM ccrm.sequence_pending;
SELECT * FROM pg_temp.run('2026-03-09 12:00+02');
SELECT * FROM pg_temp.enrolments('welcome');
SELECT count(*) AS pending FROM ccrm.sequence_pending;

-- Lifecycle: deactivation pauses, nothing runs or enrols; activation resumes
SELECT ccrm.deactivate_sequence('welcome');
SELECT * FROM pg_temp.run('2026-03-10 12:00+02');
INSERT INTO ccrm.contact (id, owner_id, firstname, email, city) VALUES (4, 1, 'Lumi', 'lumi@example.com', 'Helsinki');
SELECT count(*) AS pending FROM ccrm.sequence_pending;
-- the filter may change now; then activate for new records only
SELECT ccrm.alter_sequence('welcome', filter => '{"field": "city", "op": "in", "value": ["Helsinki", "Espoo"]}');
SELECT ccrm.activate_sequence('welcome', only_new => true, at => '2026-03-10 13:00+02');
-- Lumi was inserted before this activation: not new.  Eino's paused enrolment resumes.
SELECT * FROM pg_temp.run('2026-03-10 13:00+02');
SELECT * FROM pg_temp.enrolments('welcome');
INSERT INTO ccrm.contact (id, owner_id, firstname, email, city) VALUES (5, 1, 'Sini', 'sini@example.com', 'Espoo'),
    (6, 1, 'Tuuli', 'tuuli@example.com', 'Oulu');
UPDATE ccrm.contact SET firstname = 'Lumi-Maria' WHERE id = 4;
SELECT * FROM pg_temp.run('2026-03-10 14:00+02');
-- Tuuli moves to Espoo later: she was inserted after the activation, so she is new
UPDATE ccrm.contact SET city = 'Espoo' WHERE id = 6;
SELECT * FROM pg_temp.run('2026-03-10 15:00+02');
SELECT * FROM pg_temp.enrolments('welcome');

-- Exits and re-enrolment
SELECT ccrm.create_sequence('nurture', 'contact', '{"field": "city", "op": "eq", "value": "Turku"}',
    '[{"action": "email_customer", "delay_days": 0, "template": "welcome"},
      {"action": "email_customer", "delay_days": 2, "template": "welcome"}]',
    exit_when_unmatched => true, exit_filter => '{"has_activity": {"kind": "call", "within_last": "7 days"}}',
    reenrol => 'after_cooldown', cooldown => '3 days') > 0 AS created;
UPDATE ccrm.contact SET city = 'Turku' WHERE id IN (1, 5);
SELECT ccrm.activate_sequence('nurture', at => '2026-04-01 10:00+03');
SELECT * FROM pg_temp.run('2026-04-01 10:00+03');
-- Aino leaves Turku, Sini gets a call: both leave at their next step
UPDATE ccrm.contact SET city = 'Oulu' WHERE id = 1;
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, starts_at, ends_at)
    VALUES ('call', 'Called', 1, 5, '2026-04-02 09:00+03', '2026-04-02 09:15+03');
SELECT * FROM pg_temp.run('2026-04-03 10:00+03');
SELECT * FROM pg_temp.enrolments('nurture');
-- Aino comes back: within the cooldown she does not re-enrol, after it she does (round 2)
UPDATE ccrm.contact SET city = 'Turku' WHERE id = 1;
SELECT * FROM pg_temp.run('2026-04-04 10:00+03');
SELECT ccrm.deactivate_sequence('nurture');
SELECT ccrm.activate_sequence('nurture', at => '2026-04-07 10:00+03');
SELECT * FROM pg_temp.enrolments('nurture');
SELECT count(*) AS keys, count(DISTINCT idempotency_key) AS distinct_keys FROM ccrm.outbox;
SELECT idempotency_key FROM ccrm.outbox WHERE record_id = 1 AND source_id = ccrm.sequence_id('nurture') ORDER BY id;

-- in_group: an active sequence locks the filter of the groups it uses (an ERROR naming it)
SELECT ccrm.create_target_group('vip', 'contact', '{"field": "firstname", "op": "starts_with", "value": "A"}') > 0 AS created;
SELECT ccrm.create_target_group('vip plus', 'contact', '{"in_group": "vip"}') > 0 AS created;
SELECT ccrm.create_sequence('vip', 'contact', '{"in_group": "vip plus"}',
    '[{"action": "email_user", "template": "owner note"}]') > 0 AS created;
SELECT ccrm.alter_target_group('vip', filter => '{"field": "firstname", "op": "starts_with", "value": "E"}');
SELECT ccrm.activate_sequence('vip', only_new => true, at => '2026-04-07 10:00+03');
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_target_group('vip', filter => '{"field": "firstname", "op": "starts_with", "value": "K"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_target_group('vip plus')$$);
SELECT ccrm.deactivate_sequence('vip');
SELECT ccrm.alter_target_group('vip', filter => '{"field": "firstname", "op": "starts_with", "value": "K"}');

-- Each action with its recipient: email to a chosen user, an SMS outside quiet hours
SELECT ccrm.alter_channel('sms', enabled => true);
SELECT ccrm.create_sequence('shipped', 'contact', '{"field": "firstname", "op": "eq", "value": "Karin"}',
    '[{"action": "sms_customer", "delay_days": 0, "day_rule": "working_days", "not_before": "09:00", "template": "text"},
      {"action": "email_user", "delay_days": 1, "template": "owner note", "recipient": "user", "user_id": 2}]') > 0 AS created;
-- Friday 3 April 23:30 in Stockholm: quiet hours, then the weekend: Monday 09:00 Stockholm time
SELECT ccrm.activate_sequence('shipped', at => '2026-04-03 23:30+02');
SELECT record_id, step, to_char(next_due AT TIME ZONE 'Europe/Stockholm', 'Dy DD.MM HH24:MI') AS due_stockholm
  FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('shipped');
SELECT * FROM pg_temp.run('2026-04-06 09:00+02');
SELECT record_id, step, to_char(next_due AT TIME ZONE 'America/New_York', 'Dy DD.MM HH24:MI') AS due_new_york
  FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('shipped');
SELECT * FROM pg_temp.run('2026-04-07 09:00-04');
SELECT o.record_id, c.medium, o.status, o.recipient, o.body, o.segments
  FROM ccrm.outbox o JOIN ccrm.channel c ON c.id = o.channel_id
 WHERE o.source_id = ccrm.sequence_id('shipped') ORDER BY o.id;

-- A registered entity: an email to the customer when a new invoice is issued
CREATE TABLE public.invoice (
    id bigint PRIMARY KEY, contact_id bigint REFERENCES ccrm.contact, owner_id bigint, number text,
    amount numeric, status text, issued_on date);
SELECT ccrm.register_entity('invoice', 'public.invoice', contact_column => 'contact_id', owner_column => 'owner_id');
SELECT ccrm.create_message_template('invoice mail', 'email', 'invoice', subject => 'Invoice $invoice-number$',
    body => 'Dear $contact-firstname$, invoice $invoice-number$ of $invoice-amount$ EUR', sender_id => 1);
SELECT ccrm.create_message_template('invoice task', 'task', 'invoice', subject => 'Check payment of $invoice-number$');
SELECT ccrm.create_sequence('invoices', 'invoice', '{"field": "status", "op": "eq", "value": "issued"}',
    '[{"action": "email_customer", "template": "invoice mail"},
      {"action": "task_user", "delay_days": 14, "day_rule": "working_days", "template": "invoice task"}]') > 0 AS created;
SELECT ccrm.activate_sequence('invoices', only_new => true, at => '2026-05-04 08:00+03');
INSERT INTO public.invoice VALUES (1, 1, 2, 'F-1', 120.50, 'draft', NULL);
SELECT * FROM pg_temp.run('2026-05-04 09:00+03');
UPDATE public.invoice SET status = 'issued', issued_on = '2026-05-04' WHERE id = 1;
SELECT * FROM pg_temp.run('2026-05-04 09:01+03');
SELECT o.status, o.recipient, o.subject, o.body, o.entity, o.record_id FROM ccrm.outbox o
 WHERE o.source_id = ccrm.sequence_id('invoices');
SELECT * FROM pg_temp.run('2026-05-18 09:01+03');
SELECT a.subject, a.user_id, a.contact_id, a.entity, a.record_id, a.due_on FROM ccrm.activity a
 WHERE a.entity = 'invoice';

-- An incremental pass looks up only the changed records that may enrol: an enrolled invoice
-- changed again costs no read of the invoice table (nor of its index)
BEGIN;
UPDATE public.invoice SET amount = amount WHERE id = 1;
SELECT count(*) AS pending FROM ccrm.sequence_pending WHERE sequence_id = ccrm.sequence_id('invoices');
SELECT pg_stat_get_xact_numscans('public.invoice'::regclass)
     + pg_stat_get_xact_numscans('public.invoice_pkey'::regclass) AS scans \gset
-- at the instant of the last pass, so that no reconciliation (a full pass) is due
SELECT * FROM pg_temp.run('2026-05-18 09:01+03') WHERE sequence = 'invoices';
SELECT pg_stat_get_xact_numscans('public.invoice'::regclass)
     + pg_stat_get_xact_numscans('public.invoice_pkey'::regclass) - :scans AS invoice_scans,
       (SELECT count(*) FROM ccrm.sequence_pending WHERE sequence_id = ccrm.sequence_id('invoices')) AS pending;
ROLLBACK;

-- A value that cannot be rendered fails that record only: recorded, its enrolment ends
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.create_message_template('score', 'email', 'contact', subject => 'Score $contact-score$', body => 'x', sender_id => 1);
SELECT ccrm.create_sequence('scores', 'contact', '{"field": "city", "op": "eq", "value": "Espoo"}',
    '[{"action": "email_customer", "template": "score"}]') > 0 AS created;
ALTER TABLE ccrm.contact DISABLE TRIGGER ccrm_row;
UPDATE ccrm.contact SET attrs = '{"score": "lots"}' WHERE id = 6;
UPDATE ccrm.contact SET city = 'Espoo' WHERE id = 4;
ALTER TABLE ccrm.contact ENABLE TRIGGER ccrm_row;
SELECT ccrm.activate_sequence('scores', at => '2026-06-01 10:00+03');
SELECT * FROM pg_temp.run('2026-06-01 10:00+03');
SELECT record_id, step, outcome, message_id IS NOT NULL AS has_message, reason, enrolment_status, exit_reason
  FROM ccrm.sequence_history WHERE sequence = 'scores' ORDER BY record_id;

-- Checked again at run time: a template changed behind the sequence's back stops it (last_error)
UPDATE ccrm.message_template SET sender_id = NULL WHERE name = 'score';
UPDATE ccrm.contact SET city = 'Espoo' WHERE id = 1;
SELECT * FROM pg_temp.run('2026-06-02 10:00+03');
SELECT name, last_error FROM ccrm.sequences WHERE name = 'scores';

-- Rights: another role sees none of these sequences, and its own runs with its rights only
CREATE ROLE seq_other;
GRANT USAGE ON SCHEMA ccrm TO seq_other;
GRANT SELECT ON ccrm.contact, ccrm.account, ccrm.crm_user TO seq_other;
SET ROLE seq_other;
SELECT ccrm.create_message_template('other task', 'task', 'contact', subject => 'Visit $contact-firstname$') > 0 AS created;
SELECT ccrm.create_sequence('other', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}',
    '[{"action": "task_user", "template": "other task"}]') > 0 AS created;
SELECT ccrm.activate_sequence('other', at => '2026-06-03 10:00+03');
SELECT count(*) AS visible FROM ccrm.sequences;
SELECT count(*) AS visible FROM ccrm.sequence_enrolment;
SELECT * FROM pg_temp.err($$SELECT ccrm.deactivate_sequence('welcome')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_sequence('mine', 'contact', '{"field": "city", "op": "eq", "value": "x"}',
    '[{"action": "email_customer", "template": "welcome"}]')$$);
RESET ROLE;
-- run by a superuser, the sequence still runs as seq_other, which may not create activities
SELECT * FROM pg_temp.run('2026-06-03 10:00+03') WHERE sequence = 'other';
SELECT record_id, outcome, reason, exit_reason FROM ccrm.sequence_history WHERE sequence = 'other' ORDER BY record_id;

-- Deleting a sequence deletes its enrolments and history; queued messages stay
SELECT count(*) AS queued_before FROM ccrm.outbox WHERE source_id = ccrm.sequence_id('welcome');
SELECT ccrm.drop_sequence('welcome');
SELECT count(*) AS enrolments FROM ccrm.sequence_enrolment e
 WHERE NOT EXISTS (SELECT 1 FROM ccrm.sequence s WHERE s.id = e.sequence_id);
SELECT count(*) AS queued_after FROM ccrm.outbox WHERE source = 'sequence' AND subject LIKE 'Hello%';
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_sequence('welcome')$$);
DROP TABLE public.invoice CASCADE;
SELECT ccrm.drop_sequence('other');
DELETE FROM ccrm.message_template WHERE name = 'other task';
DROP OWNED BY seq_other;
DROP ROLE seq_other;
DROP EXTENSION ccrm;
