-- Campaigns: numbers, members from groups, campaigns, filters and single
-- records, removals with their log, restores, prunes, the summary, the
-- active rule, errors, and who may see what.
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
-- members(c): the members of a campaign as c1,c2,l1 (contacts, then leads)
CREATE FUNCTION pg_temp.members(c text) RETURNS text LANGUAGE sql AS
$$ SELECT coalesce(string_agg(CASE WHEN contact_id IS NOT NULL THEN 'c' || contact_id ELSE 'l' || lead_id END, ','
                              ORDER BY lead_id IS NOT NULL, coalesce(contact_id, lead_id)), '-')
     FROM ccrm.campaign_member WHERE campaign_id = ccrm.campaign_id(c) $$;

INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna');
INSERT INTO ccrm.account (id, name) VALUES (1, 'Acme Oy'), (2, 'Beta AB'), (3, 'Gamma Ky');
-- contacts 1-4 at Acme, 5-6 at Beta, 7 without an account; mixed-case,
-- padded, empty and missing addresses; 4 opted out
INSERT INTO ccrm.contact (id, account_id, firstname, city, email, email_opt_out) VALUES
    (1, 1, 'Aino', 'Helsinki', 'aino@acme.fi', false),
    (2, 1, 'Eino', 'Helsinki', '  AINO@Acme.FI ', false),
    (3, 1, 'Ilmari', 'Turku', NULL, false),
    (4, 1, 'Oona', 'Turku', 'oona@acme.fi', true),
    (5, 2, 'Ursula', 'Helsinki', 'ursula@beta.se', false),
    (6, 2, 'Veikko', 'Espoo', '', false),
    (7, NULL, 'Yrjö', 'Helsinki', 'yrjo@example.com', false),
    (8, NULL, 'Äke', 'Oulu', 'ake@example.com', false);
INSERT INTO ccrm.lead (id, firstname, company, email, email_opt_out) VALUES
    (1, 'Lauri', 'X Oy', 'YRJO@example.com', false),
    (2, 'Liisa', 'Y Oy', 'liisa@y.fi', true),
    (3, 'Leena', 'Z Oy', NULL, false);

SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_target_group('Beta', 'account', '{"field": "name", "op": "eq", "value": "Beta AB"}');
SELECT ccrm.create_target_group('Leads', 'lead', '{"field": "company", "op": "ne", "value": "Z Oy"}');
SELECT ccrm.create_target_group('Users', 'user');
SELECT added FROM ccrm.refresh_target_group('Helsinki', '2026-03-01 08:00+00');
SELECT added FROM ccrm.refresh_target_group('Beta', '2026-03-01 08:00+00');
SELECT added FROM ccrm.refresh_target_group('Leads', '2026-03-01 08:00+00');

-- numbers: made from the prefix setting and the id, or given; unique
SELECT ccrm.create_campaign('Spring event', start_date => '2026-04-01', estimated_end_date => '2026-04-30',
                            responsible_user_id => 1, description => 'customer evening') AS spring \gset
SELECT number, name, active, start_date, estimated_end_date, email_template_id, owner = current_user::regrole AS mine
  FROM ccrm.campaign;
SELECT ccrm.set_setting('campaign_number_prefix', 'EV-');
SELECT ccrm.create_campaign('Call round') AS calls \gset
SELECT ccrm.create_campaign('Mailing', number => 'M-2026') AS mailing \gset
SELECT name, number ~ ('^EV-0*' || id || '$') AS from_prefix, number FROM ccrm.campaign ORDER BY id;
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign('Other', number => 'M-2026')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign('Spring event')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign('Bad dates', start_date => '2026-05-01', estimated_end_date => '2026-04-01')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign('No template', email_template => 'nothing')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign(' ')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_campaign('Call round', new_name => 'Mailing')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.alter_campaign('Spring event', estimated_end_date => '2026-03-01')$$);
SELECT ccrm.reset_setting('campaign_number_prefix');

-- a contact group
SELECT ccrm.add_group_to_campaign('Spring event', 'Helsinki', '2026-03-02 09:00+00');
SELECT pg_temp.members('Spring event');
-- adding twice changes nothing
SELECT ccrm.add_group_to_campaign('Spring event', 'Helsinki', '2026-03-02 10:00+00');
SELECT contact_id, added_at, added_how, added_from, added_by = current_user AS by_me, email_status
  FROM ccrm.campaign_member WHERE campaign_id = :spring ORDER BY contact_id;
-- an account group gives its accounts' contacts (5 is there already)
SELECT ccrm.add_group_to_campaign('Spring event', 'Beta', '2026-03-02 11:00+00');
SELECT pg_temp.members('Spring event');
-- a lead group
SELECT ccrm.add_group_to_campaign('Spring event', 'Leads', '2026-03-02 12:00+00');
SELECT pg_temp.members('Spring event');
-- single contacts and leads; ids that do not exist are ignored
SELECT ccrm.add_to_campaign('Call round', contact_ids => '{3,4,99}', lead_ids => '{3,98}', at => '2026-03-02 12:00+00');
SELECT pg_temp.members('Call round');
-- another campaign's members
SELECT ccrm.add_campaign_to_campaign('Call round', 'Spring event', '2026-03-03 08:00+00');
SELECT pg_temp.members('Call round');
SELECT added_how, added_from, count(*) FROM ccrm.campaign_member WHERE campaign_id = :calls
 GROUP BY 1, 2 ORDER BY 1, 2;
-- filters of contacts, accounts (their contacts) and leads, at an instant
SELECT ccrm.add_filter_to_campaign('Mailing', 'contact', '{"field": "city", "op": "eq", "value": "Oulu"}', '2026-03-03 08:00+00');
SELECT ccrm.add_filter_to_campaign('Mailing', 'account', '{"field": "name", "op": "eq", "value": "Acme Oy"}', '2026-03-03 08:00+00');
SELECT ccrm.add_filter_to_campaign('Mailing', 'lead', '{"field": "firstname", "op": "eq", "value": "Leena"}', '2026-03-03 08:00+00');
SELECT pg_temp.members('Mailing');
SELECT DISTINCT added_from FROM ccrm.campaign_member WHERE campaign_id = :mailing ORDER BY 1;

-- removals: single, a group, another campaign; each logged with its reason
SELECT ccrm.remove_from_campaign('Call round', contact_ids => '{4}', lead_ids => '{3}', at => '2026-03-04 08:00+00');
SELECT ccrm.remove_from_campaign('Call round', contact_ids => '{4}', at => '2026-03-04 08:00+00');
SELECT ccrm.remove_group_from_campaign('Call round', 'Beta', '2026-03-04 09:00+00');
SELECT pg_temp.members('Call round');
SELECT ccrm.remove_campaign_from_campaign('Mailing', 'Call round', '2026-03-04 10:00+00');
SELECT pg_temp.members('Mailing');
SELECT campaign_id = :calls AS calls, contact_id, lead_id, reason, detail, removed_at, added_at, added_how, restored_at
  FROM ccrm.campaign_removal ORDER BY id;
-- keep only: a contact filter leaves the leads alone, a lead filter the contacts
SELECT ccrm.keep_only_in_campaign('Spring event', 'contact', '{"field": "firstname", "op": "ne", "value": "Veikko"}', '2026-03-04 11:00+00');
SELECT pg_temp.members('Spring event');
SELECT ccrm.keep_only_in_campaign('Spring event', 'lead', '{"field": "firstname", "op": "eq", "value": "Lauri"}', '2026-03-04 11:00+00');
SELECT pg_temp.members('Spring event');
-- an account filter keeps the contacts of matching accounts (7 has none)
SELECT ccrm.keep_only_in_campaign('Call round', 'account', '{"field": "name", "op": "eq", "value": "Acme Oy"}', '2026-03-04 11:00+00');
SELECT pg_temp.members('Call round');
-- bring members back from the log, as they were
SELECT ccrm.restore_campaign_members('Spring event',
       ARRAY(SELECT id FROM ccrm.campaign_removal WHERE campaign_id = :spring AND reason = 'keep only'), '2026-03-05 08:00+00');
SELECT pg_temp.members('Spring event');
SELECT contact_id, lead_id, added_at, added_how, added_from FROM ccrm.campaign_member
 WHERE campaign_id = :spring AND (contact_id = 6 OR lead_id = 2);
SELECT count(*) FILTER (WHERE restored_at IS NOT NULL) AS restored FROM ccrm.campaign_removal WHERE campaign_id = :spring;
-- restoring again brings nothing
SELECT ccrm.restore_campaign_members('Spring event',
       ARRAY(SELECT id FROM ccrm.campaign_removal WHERE campaign_id = :spring), '2026-03-05 08:00+00');

-- the summary: contacts 1,2,5,6,7 and leads 1,2
SELECT pg_temp.members('Spring event');
SELECT * FROM ccrm.campaign_summary('Spring event');

-- prunes, each returning the log rows it wrote.
-- account duplicates: the contact added first stays (then the lowest id);
-- contacts without an account are never duplicates
SELECT ccrm.add_to_campaign('Spring event', contact_ids => '{3}', at => '2026-03-01 07:00+00');
SELECT contact_id, lead_id, reason, detail FROM ccrm.prune_campaign('Spring event', 'account duplicates', '2026-03-06 08:00+00')
 ORDER BY contact_id;
SELECT pg_temp.members('Spring event');
-- email duplicates: trimmed, case-insensitive, across contacts and leads;
-- the member added first stays; NULL and empty addresses never are
SELECT ccrm.add_to_campaign('Mailing', contact_ids => '{1,2,6,7,8}', lead_ids => '{1,3}', at => '2026-03-06 08:00+00');
UPDATE ccrm.lead SET email = ' Ake@Example.COM' WHERE id = 3;
SELECT pg_temp.members('Mailing');
SELECT * FROM ccrm.campaign_summary('Mailing');
SELECT contact_id, lead_id, reason, detail FROM ccrm.prune_campaign('Mailing', 'email duplicates', '2026-03-06 09:00+00')
 ORDER BY contact_id, lead_id;
SELECT pg_temp.members('Mailing');
-- opt-outs of contacts and leads
SELECT ccrm.add_to_campaign('Mailing', lead_ids => '{2}', at => '2026-03-06 10:00+00');
SELECT contact_id, lead_id, reason, detail FROM ccrm.prune_campaign('Mailing', 'opt-outs', '2026-03-06 11:00+00')
 ORDER BY contact_id, lead_id;
SELECT pg_temp.members('Mailing');
-- a second prune finds nothing
SELECT count(*) FROM ccrm.prune_campaign('Mailing', 'email duplicates', '2026-03-06 12:00+00');
SELECT count(*) FROM ccrm.prune_campaign('Mailing', 'opt-outs', '2026-03-06 12:00+00');
SELECT * FROM ccrm.campaign_summary('Mailing');
-- a pruned member comes back from the log
SELECT ccrm.restore_campaign_members('Mailing',
       ARRAY(SELECT id FROM ccrm.campaign_removal WHERE campaign_id = :mailing AND reason = 'email duplicate' AND contact_id = 2),
       '2026-03-07 08:00+00');
SELECT pg_temp.members('Mailing');

-- inactive campaigns take no members; removing, pruning and the summary still work
SELECT ccrm.alter_campaign('Call round', active => false);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign('Call round', contact_ids => '{1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_group_to_campaign('Call round', 'Helsinki')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.restore_campaign_members('Call round', '{1}')$$);
SELECT ccrm.remove_from_campaign('Call round', contact_ids => '{1}', at => '2026-03-07 08:00+00');
SELECT count(*) FROM ccrm.prune_campaign('Call round', 'opt-outs', '2026-03-07 08:00+00');
SELECT members FROM ccrm.campaign_summary('Call round');
-- the dates do not make a campaign inactive
SELECT ccrm.alter_campaign('Mailing', start_date => '2020-01-01', estimated_end_date => '2020-01-31');
SELECT ccrm.add_to_campaign('Mailing', contact_ids => '{5}', at => '2026-03-07 08:00+00');
-- alter: NULL keeps, '' clears the description; renames
SELECT ccrm.alter_campaign('Mailing', new_name => 'Spring mailing', description => 'April letter');
SELECT ccrm.alter_campaign('Spring mailing', description => '');
SELECT name, number, description FROM ccrm.campaign WHERE id = :mailing;

-- errors: unknown campaign, group, source campaign, filter, wrong entities, bad prune
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign('Nope', contact_ids => '{1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_group_to_campaign('Spring event', 'Nope')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_campaign_to_campaign('Spring event', 'Nope')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_filter_to_campaign('Spring event', 'contact', '{"field": "nope", "op": "eq", "value": 1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_filter_to_campaign('Spring event', 'contact', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_filter_to_campaign('Spring event', 'user', '{"field": "username", "op": "eq", "value": "anna"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_group_to_campaign('Spring event', 'Users')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.keep_only_in_campaign('Spring event', 'activity', '{"field": "kind", "op": "eq", "value": "call"}')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.prune_campaign('Spring event', 'everything')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign('Spring event', contact_ids => '{1}', at => NULL)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign(NULL, contact_ids => '{1}')$$);
-- an error changes nothing
SELECT pg_temp.members('Spring event');

-- owners: a role sees only the campaigns it may use, and their members and log
CREATE ROLE ccrm_camp_alice;
CREATE ROLE ccrm_camp_bob;
GRANT SELECT ON ccrm.contact, ccrm.lead, ccrm.account, ccrm.crm_user TO ccrm_camp_alice, ccrm_camp_bob;
SET ROLE ccrm_camp_alice;
SELECT ccrm.create_campaign('Alice only') IS NOT NULL AS created;
SELECT ccrm.add_to_campaign('Alice only', contact_ids => '{1,2}', at => '2026-03-08 08:00+00');
SELECT name FROM ccrm.campaign ORDER BY name;
SELECT count(*) FROM ccrm.campaign_member;
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign('Spring event', contact_ids => '{1}')$$);
RESET ROLE;
SET ROLE ccrm_camp_bob;
SELECT name FROM ccrm.campaign ORDER BY name;
SELECT count(*) FROM ccrm.campaign_member;
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign('Alice only', contact_ids => '{3}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.drop_campaign('Alice only')$$);
-- nor can a member be slipped into another role's campaign by hand
SELECT * FROM pg_temp.err(format($$INSERT INTO ccrm.campaign_member (campaign_id, contact_id, added_at, added_how)
                                  VALUES (%s, 3, now(), 'single')$$, :spring));
RESET ROLE;
SELECT pg_temp.members('Alice only');

-- drop takes the members and the log along
SELECT ccrm.drop_campaign('Call round');
SELECT count(*) FROM ccrm.campaign_member WHERE campaign_id = :calls;
SELECT count(*) FROM ccrm.campaign_removal WHERE campaign_id = :calls;
-- deleting a contact takes its memberships along
DELETE FROM ccrm.contact WHERE id = 7;
SELECT pg_temp.members('Spring event');

-- join emails: members added after the template was set (and not after
-- the estimated end date) get it through the outbox, once per address
SELECT ccrm.create_channel('mail', 'email', is_default => true);
INSERT INTO ccrm.crm_user (id, username, firstname, email) VALUES (2, 'sanna', 'Sanna', 'sanna@ourfirm.fi');
SELECT ccrm.create_message_template('Invitation', 'email', 'contact',
    subject => 'Invitation: $campaign-name$ ($campaign-number$)',
    body => 'Dear $contact-firstname|guest$ of $account-name|your company$, welcome on $campaign-start_date$. $sender-firstname$',
    sender_id => 2);
SELECT ccrm.create_message_template('Reminder', 'email', 'contact', subject => 'Reminder: $campaign-name$', body => 'See you, $contact-firstname$');
SELECT ccrm.create_message_template('Lead letter', 'email', 'lead', subject => 'x', body => 'y');
SELECT ccrm.create_message_template('A call', 'task', 'contact', subject => 'Call $contact-firstname$');
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign('Bad', email_template => 'Lead letter')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_campaign('Bad', email_template => 'A call')$$);
-- campaign tags are known to every template, empty outside campaigns
SELECT subject FROM ccrm.render_message('Reminder', 'contact', 1);
SELECT ccrm.create_campaign('Gala', number => 'GALA-1', start_date => '2026-06-01', estimated_end_date => '2026-06-10') AS gala \gset
-- members added before the template get nothing
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{1}', at => '2026-05-01 08:00+00');
SELECT ccrm.alter_campaign('Gala', email_template => 'Invitation', at => '2026-05-02 08:00+00');
-- after: contacts 2 (same address as 1, who got nothing), 5, 6 (empty address), 8,
-- 4 (opted out); leads 1 (YRJO@, no contact with it here), 3 (same address as 8)
UPDATE ccrm.lead SET email = ' Ake@Example.COM' WHERE id = 3;
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{2,4,5,6,8}', lead_ids => '{1,3}', at => '2026-05-03 08:00+00');
SELECT contact_id, lead_id, email_status, emailed_at, message_id IS NOT NULL AS has_message
  FROM ccrm.campaign_member WHERE campaign_id = :gala ORDER BY lead_id IS NOT NULL, coalesce(contact_id, lead_id);
SELECT entity, record_id, contact_id, lead_id, recipient, subject, body, source, source_id = :gala AS this_campaign,
       replace(idempotency_key, 'campaign:' || :gala || ':', 'campaign:<gala>:') AS idempotency_key, status,
       owner = current_user::regrole AS owner_is_campaign_owner
  FROM ccrm.outbox ORDER BY id;
-- adding again, removing and re-adding: no second email
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{2,5}', at => '2026-05-04 08:00+00');
SELECT ccrm.remove_from_campaign('Gala', contact_ids => '{5}', at => '2026-05-04 09:00+00');
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{5}', at => '2026-05-04 10:00+00');
SELECT contact_id, email_status, message_id = (SELECT id FROM ccrm.outbox WHERE contact_id = 5) AS same_message
  FROM ccrm.campaign_member WHERE campaign_id = :gala AND contact_id = 5;
-- another member with an address emailed already
UPDATE ccrm.contact SET email = 'URSULA@beta.se ' WHERE id = 3;
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{3}', at => '2026-05-04 11:00+00');
SELECT email_status, message_id = (SELECT id FROM ccrm.outbox WHERE contact_id = 5) AS that_message
  FROM ccrm.campaign_member WHERE campaign_id = :gala AND contact_id = 3;
-- an address the outbox cannot use
INSERT INTO ccrm.contact (id, firstname, email) VALUES (9, 'Kalle', 'kalle at example'), (10, 'Kaisa', 'kaisa@example.com');
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{9}', at => '2026-05-05 08:00+00');
SELECT c.email_status, o.status, o.reason FROM ccrm.campaign_member c JOIN ccrm.outbox o ON o.id = c.message_id
 WHERE c.campaign_id = :gala AND c.contact_id = 9;
SELECT count(*) AS messages FROM ccrm.outbox;
-- after the estimated end date (in the time_zone setting): skipped, "campaign ended"
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{10}', at => '2026-06-10 20:00+00');
SELECT ccrm.add_to_campaign('Gala', lead_ids => '{2}', at => '2026-06-11 08:00+00');
SELECT contact_id, lead_id, email_status FROM ccrm.campaign_member
 WHERE campaign_id = :gala AND (contact_id = 10 OR lead_id = 2);
-- a new template counts from when it is set
SELECT ccrm.alter_campaign('Gala', email_template => 'Reminder', estimated_end_date => '2026-12-31', at => '2026-06-12 08:00+00');
INSERT INTO ccrm.contact (id, firstname, email) VALUES (11, 'Reija', 'reija@example.com');
SELECT ccrm.add_to_campaign('Gala', contact_ids => '{11}', at => '2026-06-12 09:00+00');
SELECT contact_id, subject FROM ccrm.outbox WHERE source_id = :gala ORDER BY id DESC LIMIT 2;
SELECT * FROM ccrm.campaign_summary('Gala');
SELECT count(*) AS messages FROM ccrm.outbox;
-- the summary says how many were emailed and why the others were not
SELECT emailed, email_pending, email_skipped FROM ccrm.campaign_summary('Gala');

-- join emails render and queue with the rights of the campaign's owner,
-- whoever adds the members: a template the owner may not use stops the add
SELECT ccrm.alter_campaign('Alice only', email_template => 'Reminder', at => '2026-06-12 08:00+00');
SELECT * FROM pg_temp.err($$SELECT ccrm.add_to_campaign('Alice only', contact_ids => '{5}', at => '2026-06-12 09:00+00')$$);
SELECT pg_temp.members('Alice only');
SET ROLE ccrm_camp_alice;
SELECT ccrm.create_message_template('Alice letter', 'email', 'contact',
    subject => 'Hello $contact-firstname$', body => 'From $campaign-name$') IS NOT NULL AS created;
RESET ROLE;
SELECT ccrm.alter_campaign('Alice only', email_template => 'Alice letter', at => '2026-06-12 10:00+00');
SELECT ccrm.add_to_campaign('Alice only', contact_ids => '{5}', at => '2026-06-12 11:00+00');
SELECT o.owner, o.subject, o.body, m.email_status FROM ccrm.outbox o
  JOIN ccrm.campaign_member m ON m.message_id = o.id
 WHERE m.campaign_id = ccrm.campaign_id('Alice only');

-- in_campaign in filters: contacts and leads that are members, accounts with a member contact
SELECT ccrm.filter_count('contact', '{"in_campaign": "Gala"}');
SELECT ccrm.filter_count('lead', jsonb_build_object('in_campaign', :gala));
SELECT id FROM ccrm.filter_preview('account', '{"in_campaign": "Spring event"}') ORDER BY id;
SELECT id FROM ccrm.filter_preview('contact', '{"all": [{"in_campaign": "Gala"}, {"not": {"in_campaign": "Spring event"}}]}') ORDER BY id;
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('contact', '{"in_campaign": "Nope"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('contact', '{"in_campaign": ["Gala"]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('user', '{"in_campaign": "Gala"}')$$);
-- a group defined by campaign membership
SELECT ccrm.create_target_group('Gala guests', 'contact', '{"in_campaign": "Gala"}');
SELECT added FROM ccrm.refresh_target_group('Gala guests', '2026-06-13 08:00+00');

-- the built-in tools add_to_campaign and remove_from_campaign, from SQL and as scheduled jobs
SELECT ccrm.create_campaign('Tools') AS tools \gset
SELECT ccrm.run_tool('Helsinki', 'add_to_campaign', '{"campaign": "Tools", "at": "2026-06-13 08:00+00"}') > 0 AS ran;
SELECT status, counts FROM ccrm.job_run ORDER BY id DESC LIMIT 1;
SELECT ccrm.run_tool('Beta', 'add_to_campaign', '{"campaign": "Tools", "at": "2026-06-13 08:00+00"}') > 0 AS ran;
SELECT status, counts FROM ccrm.job_run ORDER BY id DESC LIMIT 1;
SELECT ccrm.run_tool('Leads', 'add_to_campaign', '{"campaign": "Tools", "at": "2026-06-13 08:00+00"}') > 0 AS ran;
SELECT status, counts FROM ccrm.job_run ORDER BY id DESC LIMIT 1;
SELECT pg_temp.members('Tools');
SELECT DISTINCT added_how, added_from, added_at FROM ccrm.campaign_member WHERE campaign_id = :tools;
SELECT ccrm.run_tool('Beta', 'remove_from_campaign', '{"campaign": "Tools", "at": "2026-06-13 09:00+00"}') > 0 AS ran;
SELECT status, counts FROM ccrm.job_run ORDER BY id DESC LIMIT 1;
SELECT pg_temp.members('Tools');
SELECT contact_id, reason, detail FROM ccrm.campaign_removal WHERE campaign_id = :tools ORDER BY contact_id;
SELECT ccrm.schedule_job('Fill tools', 'run_tool', '@daily', 'Beta', '{"tool": "add_to_campaign", "params": {"campaign": "Tools"}}');
SELECT status, counts FROM ccrm.run_job('Fill tools', '2026-06-14 08:00+00');
SELECT pg_temp.members('Tools');
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Users', 'add_to_campaign', '{"campaign": "Tools"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Beta', 'add_to_campaign', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Beta', 'add_to_campaign', '{"campaign": "Tools", "extra": 1}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('Beta', 'add_to_campaign', '{"campaign": "Nope"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.tool_add_to_campaign('{1}', '{"campaign": "Tools"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_tool('add_to_campaign')$$);

DROP EXTENSION ccrm;
DROP ROLE ccrm_camp_alice;
DROP ROLE ccrm_camp_bob;

-- the tool names add_to_campaign and remove_from_campaign are reserved:
-- an update that finds a tool of that name stops and says how to rename it
CREATE EXTENSION ccrm VERSION '0.6.0';
CREATE FUNCTION public.my_campaign_tool(member_ids bigint[], params jsonb) RETURNS bigint
    LANGUAGE sql AS $$ SELECT 0::bigint $$;
SELECT ccrm.register_tool('add_to_campaign', NULL, 'public.my_campaign_tool(bigint[], jsonb)');
SELECT * FROM pg_temp.err($$ALTER EXTENSION ccrm UPDATE$$);
SELECT extversion FROM pg_extension WHERE extname = 'ccrm';
SELECT ccrm.unregister_tool('add_to_campaign');
SELECT ccrm.register_tool('my_add_to_campaign', NULL, 'public.my_campaign_tool(bigint[], jsonb)');
ALTER EXTENSION ccrm UPDATE;
SELECT name, builtin FROM ccrm.tool WHERE name LIKE '%campaign%' ORDER BY name;
DROP EXTENSION ccrm;
DROP FUNCTION public.my_campaign_tool(bigint[], jsonb);
