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
GRANT SELECT ON ccrm.contact, ccrm.lead, ccrm.account TO ccrm_camp_alice, ccrm_camp_bob;
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

DROP EXTENSION ccrm;
DROP ROLE ccrm_camp_alice;
DROP ROLE ccrm_camp_bob;
