-- Activity plans: every assign type, events and tasks, slot rules, fallbacks, re-runs, bad input.
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
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
INSERT INTO ccrm.crm_user (id, username, firstname, timezone, active) VALUES
    (1, 'anna', 'Anna', 'Europe/Helsinki', true),
    (2, 'ben',  'Ben',  'Europe/Berlin',   true),
    (3, 'carl', 'Carl', NULL,              false),
    (4, 'dana', 'Dana', NULL,              true);
INSERT INTO ccrm.account (id, name, owner_id) VALUES (1, 'Acme Oy', 1), (2, 'Beta GmbH', 2), (3, 'Orphan AB', NULL);
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname) VALUES
    (1, 1, 1, 'Aino'), (2, 1, 2, 'Bert'), (3, 2, 2, 'Cleo'), (4, 2, NULL, 'Dino'),
    (5, 3, 3, 'Eeva'), (6, 3, 1, 'Fred'), (7, NULL, 4, 'Gina'), (8, NULL, NULL, 'Hugo');
SELECT ccrm.create_target_group('Everyone', 'contact', '{"field": "id", "op": "gt", "value": 0}', responsible_user_id => 1);
SELECT ccrm.create_target_group('Accounts', 'account', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Everyone');
SELECT added FROM ccrm.refresh_target_group('Accounts');

-- the activities of a plan, in local time of Helsinki
CREATE FUNCTION pg_temp.show(plan text) RETURNS TABLE (who text, what text, starts text, ends text, due date, contact bigint, account bigint)
LANGUAGE sql AS $$
    SELECT u.username, a.subject,
           to_char(a.starts_at AT TIME ZONE 'Europe/Helsinki', 'Dy DD.MM HH24:MI'),
           to_char(a.ends_at AT TIME ZONE 'Europe/Helsinki', 'HH24:MI'),
           a.due_on, a.contact_id, a.account_id
      FROM ccrm.activity a JOIN ccrm.activity_plan p ON p.id = a.plan_id
      JOIN ccrm.crm_user u ON u.id = a.user_id
     WHERE p.name = plan ORDER BY u.username, a.starts_at, a.due_on, a.member_id $$;

-- contact owners; no owner or an inactive one: the group's responsible user (anna)
-- Friday 2026-11-27, 1-hour calls, 3 a day from 08:00, ben's in Berlin time
SELECT ccrm.create_activity_plan('Everyone', 'owner calls', 'Call $contact-firstname$', 'call',
       events_per_day => 3, duration => '1 hour');
SELECT * FROM ccrm.create_activities('Everyone', 'owner calls', '2026-11-27');
SELECT * FROM pg_temp.show('owner calls');

-- a second run of the same day creates nothing; a new member gets one; another day is new work
SELECT created, skipped FROM ccrm.create_activities('Everyone', 'owner calls', '2026-11-27');
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname) VALUES (9, 1, 2, 'Ilse');
SELECT added FROM ccrm.refresh_target_group('Everyone');
SELECT created FROM ccrm.create_activities('Everyone', 'owner calls', '2026-11-27');
SELECT who, what, starts FROM pg_temp.show('owner calls') WHERE what = 'Call Ilse';
SELECT created FROM ccrm.create_activities('Everyone', 'owner calls', '2026-12-07');
SELECT plan_day, count(*) FROM ccrm.activity WHERE plan_id = ccrm.activity_plan_id('Everyone', 'owner calls') GROUP BY 1 ORDER BY 1;
SELECT run_day, created, skipped FROM ccrm.activity_plan_run ORDER BY id;

-- account owners of an account group; Orphan AB has no owner and the group no responsible user
SELECT ccrm.create_activity_plan('Accounts', 'visits', 'Visit $account-name$', 'meeting',
       assign_type => 'account_owner', events_per_day => 2, day_start => '10:00', duration => '2 hours');
SELECT * FROM ccrm.create_activities('Accounts', 'visits', '2026-11-27');
SELECT * FROM pg_temp.show('visits');

-- selected users share the members evenly, in order; an inactive selected user is left out
SELECT ccrm.create_activity_plan('Everyone', 'shared', '$contact-firstname$ for $user-name$', 'call',
       assign_type => 'selected_users', user_ids => ARRAY[4, 2]::bigint[], events_per_day => 8);
SELECT created FROM ccrm.create_activities('Everyone', 'shared', '2026-11-30');
SELECT who, count(*) FROM pg_temp.show('shared') GROUP BY 1 ORDER BY 1;
SELECT what FROM pg_temp.show('shared') WHERE who = 'dana';

-- the group's responsible user gets everything
SELECT ccrm.create_activity_plan('Everyone', 'mine', 'Check $contact-firstname$', 'call',
       assign_type => 'group_responsible', events_per_day => 4, duration => '90 minutes');
SELECT created FROM ccrm.create_activities('Everyone', 'mine', '2026-11-30');
SELECT who, what, starts, ends FROM pg_temp.show('mine');

-- tasks: no slots, a deadline N days after the run's day
SELECT ccrm.create_activity_plan('Everyone', 'follow up', 'Follow up $contact-firstname$', 'task',
       deadline_days => 5, status => 'open', priority => 'high');
SELECT created FROM ccrm.create_activities('Everyone', 'follow up', '2026-11-27');
SELECT who, what, starts, due FROM pg_temp.show('follow up') LIMIT 3;
SELECT DISTINCT kind, status, priority, starts_at IS NULL AS no_time FROM ccrm.activity
 WHERE plan_id = ccrm.activity_plan_id('Everyone', 'follow up');

-- slot rules: latest end cuts the day (3 x 3 hours do not fit between 08:00 and 16:00),
-- events already in the calendar are avoided, non-working days and holidays skipped
SELECT ccrm.set_setting('working_days', '{1,2,3,4}');
INSERT INTO ccrm.holiday VALUES ('2026-12-07', 'test holiday');
INSERT INTO ccrm.activity (kind, subject, user_id, starts_at, ends_at) VALUES
    ('meeting', 'busy', 1, '2026-12-03 11:00+02', '2026-12-03 12:30+02');
SELECT ccrm.create_target_group('Two', 'contact', '{"field": "id", "op": "in", "value": [1, 6, 8, 4, 5, 7]}', responsible_user_id => 1);
SELECT added FROM ccrm.refresh_target_group('Two');
SELECT ccrm.create_activity_plan('Two', 'long', 'Workshop $contact-firstname$', 'meeting',
       assign_type => 'group_responsible', events_per_day => 3, duration => '3 hours',
       earliest_start => '08:00', latest_end => '16:00');
-- Thursday 03.12: 08:00-11:00, then the busy 11:00-12:30 pushes the next to 12:30-15:30;
-- Friday is no working day now, Monday 07.12 a holiday: the rest goes to Tuesday
SELECT created FROM ccrm.create_activities('Two', 'long', '2026-12-03');
SELECT who, what, starts, ends FROM pg_temp.show('long');
SELECT ccrm.reset_setting('working_days');
DELETE FROM ccrm.holiday;

-- the cap counts this plan's events already on a day, from earlier runs
SELECT ccrm.create_activity_plan('Two', 'capped', 'Capped $contact-firstname$', 'call',
       assign_type => 'group_responsible', events_per_day => 2, duration => '30 minutes');
SELECT created FROM ccrm.create_activities('Two', 'capped', '2026-12-01');
UPDATE ccrm.activity SET plan_day = '2026-11-01' WHERE plan_id = ccrm.activity_plan_id('Two', 'capped');
SELECT created FROM ccrm.create_activities('Two', 'capped', '2026-12-01');
SELECT to_char(starts_at AT TIME ZONE 'Europe/Helsinki', 'DD.MM') AS day, count(*)
  FROM ccrm.activity WHERE plan_id = ccrm.activity_plan_id('Two', 'capped') GROUP BY 1 ORDER BY 1;

-- across the start of summer time in Helsinki (Sunday 29.03.2026): 08:00 local on both sides
SELECT ccrm.create_activity_plan('Two', 'dst', 'DST $contact-firstname$', 'call',
       assign_type => 'group_responsible', events_per_day => 2);
SELECT created FROM ccrm.create_activities('Two', 'dst', '2026-03-27');
SELECT to_char(starts_at AT TIME ZONE 'UTC', 'Dy DD.MM HH24:MI "UTC"') AS utc,
       to_char(starts_at AT TIME ZONE 'Europe/Helsinki', 'HH24:MI') AS helsinki
  FROM ccrm.activity WHERE plan_id = ccrm.activity_plan_id('Two', 'dst') ORDER BY starts_at;

-- a plan's start date is used when the run gives none
SELECT ccrm.create_activity_plan('Two', 'dated', 'Dated', 'call', assign_type => 'group_responsible',
       start_date => '2027-01-05', events_per_day => 10);
SELECT created FROM ccrm.create_activities('Two', 'dated');
SELECT DISTINCT plan_day, to_char(starts_at AT TIME ZONE 'Europe/Helsinki', 'DD.MM.YYYY') AS day
  FROM ccrm.activity WHERE plan_id = ccrm.activity_plan_id('Two', 'dated');

-- groups of a registered entity and of leads
CREATE TABLE public.invoice (no int PRIMARY KEY, customer bigint, amount numeric);
INSERT INTO public.invoice VALUES (10, 1, 99.90), (11, 3, 5), (12, 8, 1);
SELECT ccrm.register_entity('invoice', 'public.invoice', 'no', contact_column => 'customer');
SELECT ccrm.create_target_group('Invoices', 'invoice', '{"field": "amount", "op": "gt", "value": 1}');
SELECT added FROM ccrm.refresh_target_group('Invoices');
SELECT ccrm.create_activity_plan('Invoices', 'dunning', 'Invoice $invoice-no$ ($invoice-amount$) of $contact-firstname$ at $account-name|-$',
       'task', assign_type => 'account_owner', deadline_days => 1);
SELECT * FROM ccrm.create_activities('Invoices', 'dunning', '2026-11-27');
SELECT who, what, contact, account FROM pg_temp.show('dunning');
INSERT INTO ccrm.lead (id, firstname) VALUES (1, 'Leo');
SELECT ccrm.create_target_group('Leads', 'lead', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Leads');
SELECT ccrm.create_activity_plan('Leads', 'qualify', 'Qualify $lead-firstname$', 'task',
       assign_type => 'selected_users', user_ids => ARRAY[4]::bigint[], deadline_days => 2);
SELECT created FROM ccrm.create_activities('Leads', 'qualify', '2026-11-27');
SELECT lead_id, user_id, subject FROM ccrm.activity WHERE plan_id = ccrm.activity_plan_id('Leads', 'qualify');
SELECT "group", name, kind, assign_type, users, last_run_day FROM ccrm.activity_plans ORDER BY id;

-- bad plans: nothing is saved
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Nope', 'x', 'x')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi $contact-nosuch$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', description => 'Bye $contact-firstname')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', '  ')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Accounts', 'x', 'Hi', assign_type => 'contact_owner')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Leads', 'x', 'Hi', 'task', assign_type => 'account_owner', deadline_days => 1)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Accounts', 'x', 'Hi', assign_type => 'group_responsible')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', assign_type => 'selected_users')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', assign_type => 'selected_users', user_ids => ARRAY[1, 99]::bigint[])$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', assign_type => 'selected_users', user_ids => ARRAY[3]::bigint[])$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', assign_type => 'selected_users', user_ids => ARRAY[1, 1]::bigint[])$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', user_ids => ARRAY[1]::bigint[])$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', assign_type => 'everyone')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', 'task')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', 'task', deadline_days => 1, events_per_day => 3)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', 'call', deadline_days => 1)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', 'Call')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', events_per_day => 0)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', duration => '0 minutes')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', duration => '1 day')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', earliest_start => '17:00')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'x', 'Hi', day_start => '15:45', duration => '30 minutes')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activity_plan('Everyone', 'owner calls', 'Hi')$q$);
SELECT * FROM pg_temp.err($q$INSERT INTO ccrm.activity_plan (group_id, name, subject, kind) VALUES (ccrm.target_group_id('Everyone'), 'x', 'Hi', 'call')$q$);
SELECT * FROM pg_temp.err($q$UPDATE ccrm.activity_plan SET subject = '$oops' WHERE name = 'owner calls'$q$);
SELECT count(*) AS plans FROM ccrm.activity_plan;
-- bad runs: nothing is created
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activities('Everyone', 'nope')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activities('Nope', 'x')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activities(999)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activities(NULL::bigint)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activities('Everyone', 'owner calls', 'infinity')$q$);
UPDATE ccrm.activity_plan SET active = false WHERE name = 'owner calls';
SELECT * FROM pg_temp.err($q$SELECT ccrm.create_activities('Everyone', 'owner calls', '2026-12-20')$q$);
SELECT count(*) FROM ccrm.activity WHERE plan_day = '2026-12-20';
-- the group's responsible user leaving makes group_responsible runs skip, with the reason
UPDATE ccrm.crm_user SET active = false WHERE id = 1;
SELECT * FROM ccrm.create_activities('Everyone', 'mine', '2026-12-21');
UPDATE ccrm.crm_user SET active = true WHERE id = 1;

-- dropping a plan keeps its activities, without the plan
SELECT ccrm.drop_activity_plan('Two', 'dst');
SELECT count(*), count(plan_id) FROM ccrm.activity WHERE subject LIKE 'DST %';
SELECT * FROM pg_temp.err($q$SELECT ccrm.drop_activity_plan('Two', 'dst')$q$);

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.invoice;
