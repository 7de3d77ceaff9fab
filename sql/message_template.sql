-- Message templates: every error when saved (however written) and again at
-- render time, tags of the record, its contact and account, registered
-- entities, the receiving and sending user, fallbacks, HTML escaping, and
-- who may use whose template and send as whom.
CREATE EXTENSION ccrm;
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
INSERT INTO ccrm.crm_user (id, username, firstname, lastname, email, mobile) VALUES
    (1, 'anna', 'Anna', 'Korhonen', 'anna@example.com', '+358 50 111'),
    (2, 'ben', 'Ben <b>', 'Berg', 'ben@example.com', NULL);
INSERT INTO ccrm.account (id, name, email, country) VALUES (1, 'Aalto & Co', 'info@aalto.example', 'FI');
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, lastname, email, mobile) VALUES
    (1, 1, 2, 'Aino', 'O''Brien', 'aino@aalto.example', '040 123'),
    (2, NULL, NULL, '', NULL, NULL, NULL);
CREATE TABLE public.invoice (id integer PRIMARY KEY, contact_id bigint, amount numeric(12,2));
INSERT INTO public.invoice VALUES (7, 1, 120.50);
SELECT ccrm.register_entity('invoice', 'public.invoice', 'id', contact_column => 'contact_id');
SELECT ccrm.create_channel('mail', 'email', is_default => true);
SELECT ccrm.create_channel('sms', 'sms', is_default => true);

-- a template of each kind
SELECT ccrm.create_message_template('welcome', 'email',
    subject => 'Welcome, $contact-firstname|friend$',
    body => 'Dear $contact-firstname$ $contact-lastname$ of $account-name|your company$, $user-firstname$ is your contact. $sender-firstname$ <$sender-email$>. 100$$ off.',
    html_body => '<p>Dear $contact-firstname$ $contact-lastname$ of $account-name$ ($user-firstname$)</p>',
    sender_id => 1, reply_to => 'sales@example.com') AS welcome;
SELECT ccrm.create_message_template('reminder', 'sms', 'invoice',
    body => 'Invoice $invoice-id$: $invoice-amount$ EUR, $contact-firstname|Customer$.') AS reminder;
SELECT ccrm.create_message_template('call back', 'task', subject => 'Call $contact-firstname$',
    body => 'About $account-name|nothing$') AS task;
SELECT name, kind, entity, channel, owner FROM ccrm.message_template ORDER BY id;

-- previews: text is not escaped, HTML is; fallbacks; $user-…$ is the record's
-- owner for a message to the record, the given user otherwise
SELECT * FROM ccrm.render_message('welcome', 'contact', 1);
SELECT * FROM ccrm.render_message('welcome', NULL, 2);
SELECT subject, body FROM ccrm.render_message('welcome', NULL, 1, user_id => 1, sender_id => 2);
SELECT * FROM ccrm.render_message('reminder', 'invoice', 7);
SELECT * FROM ccrm.render_message('call back', NULL, 1);

-- errors when saved: kind, fields of the kind, tags, channel, addresses
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'fax', body => 'hi')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', body => 'hi')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 'hi')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', subject => 's', body => 'b')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', body => 'b', html_body => '<b>')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', body => 'b', reply_to => 'a@b.fi')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', body => 'b', sender_id => 1)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'task', body => 'b')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'task', subject => 's', channel => 'mail')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'task', subject => 's', html_body => 'h')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 'Hi $contact-firstname', body => 'b')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 's', body => 'Hi $contact-emial$')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 's', body => 'b', html_body => '<p>$invoice-amount$</p>')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 's', body => 'Hi $targetgroup-name$')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 's', body => '$contact firstname$')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', 'account', body => 'Hi $contact-firstname$')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', 'user', body => 'Hi')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', 'nosuch', body => 'Hi')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', body => 'Hi', channel => 'mail')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'sms', body => 'Hi', channel => 'pigeon')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 's', body => 'b', reply_to => 'no at sign')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('x', 'email', subject => 's', body => 'b', sender_id => 99)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('welcome', 'sms', body => 'b')$$);
-- a plain UPDATE is checked the same way, and changes nothing when refused
SELECT * FROM pg_temp.err($$UPDATE ccrm.message_template SET body = 'Hi $contact-nick$' WHERE name = 'reminder'$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.message_template SET kind = 'sms' WHERE name = 'welcome'$$);
SELECT body FROM ccrm.message_template WHERE name = 'reminder';
UPDATE ccrm.message_template SET body = 'Invoice $invoice-id$ is due.' WHERE name = 'reminder';
SELECT body, updated_at >= created_at AS touched FROM ccrm.message_template WHERE name = 'reminder';

-- checked again at render time: a custom field that a template uses is dropped
SELECT ccrm.define_field('contact', 'nickname', 'text');
SELECT ccrm.create_message_template('nick', 'sms', body => 'Hi $contact-nickname|you$') IS NOT NULL AS created;
SELECT body FROM ccrm.render_message('nick', NULL, 1);
SELECT ccrm.drop_field('contact', 'nickname');
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.render_message('nick', NULL, 1)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.enqueue_template('nick', '{1}')$$);
-- render errors
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.render_message('nosuch', NULL, 1)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.render_message('welcome', 'account', 1)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.render_message('welcome', NULL, 99)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.render_message('welcome', NULL, NULL)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.enqueue_template('call back', '{1}')$$);

-- another role sees and uses only its own templates, and may not send as a CRM user
-- (until it is given that right), nor make a template another role's
CREATE ROLE ccrm_msg_clerk;
GRANT SELECT ON ccrm.contact, ccrm.account, ccrm.crm_user, ccrm.entity, ccrm.custom_field TO ccrm_msg_clerk;
SET ROLE ccrm_msg_clerk;
SELECT count(*) AS templates_seen FROM ccrm.message_template;
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.render_message('welcome', NULL, 1)$$);
SELECT ccrm.create_message_template('mine', 'sms', body => 'Hi $contact-firstname$') IS NOT NULL AS created;
SELECT body FROM ccrm.render_message('mine', NULL, 1);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_message_template('as anna', 'email', subject => 's', body => 'b', sender_id => 1)$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.message_template SET owner = 'postgres' WHERE name = 'mine'$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.message_template (name, kind, body, owner) VALUES ('theirs', 'sms', 'b', 'postgres')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.message_template SET body = 'x' WHERE name = 'welcome'$$);
RESET ROLE;
SELECT name, owner FROM ccrm.message_template WHERE owner <> 'postgres'::regrole;
SELECT body FROM ccrm.message_template WHERE name = 'welcome' AND body LIKE 'Dear%';
DELETE FROM ccrm.message_template WHERE owner = 'ccrm_msg_clerk'::regrole;
REVOKE ALL ON ccrm.contact, ccrm.account, ccrm.crm_user, ccrm.entity, ccrm.custom_field FROM ccrm_msg_clerk;
DROP ROLE ccrm_msg_clerk;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.invoice;
