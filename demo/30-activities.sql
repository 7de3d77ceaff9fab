-- ccrm demo, part 3: an activity plan on a group, and the calendars it fills.
\echo
\echo '== activities from tag templates =='
\o /dev/null
-- the seed's example: calls to the payment-plan contacts, in their owners' calendars,
-- falling back to the group's responsible user (anna) for contacts without an owner
SELECT ccrm.create_activity_plan('Payment plan', 'Payment plan calls',
    subject     => 'Call $contact-firstname$ $contact-lastname|$ ($account-name|no account$)',
    description => 'Hello $user-firstname$: ask $contact-firstname|the customer$ about the payment plan. Phone $contact-phone|unknown$, email $contact-email|unknown$. Group: $targetgroup-name$.',
    kind => 'call', assign_type => 'contact_owner', events_per_day => 3, duration => '45 minutes');
-- and a follow-up task for every key-account contact, due in a week
SELECT ccrm.create_activity_plan('Key account contacts', 'Key account review',
    subject => 'Review $account-name$ with $contact-firstname$', kind => 'task',
    assign_type => 'account_owner', deadline_days => 7, priority => 'high');
\o

\echo
\echo 'A template checked and previewed before it runs:'
SELECT * FROM ccrm.template_tags('Call $contact-firstname$ $contact-lastname|$ ($account-name|no account$)');
SELECT ccrm.render_template('Call $contact-firstname$ $contact-lastname|$ ($account-name|no account$), for $user-name$',
                            'contact', (SELECT min(member_id) FROM ccrm.target_group_member
                                         WHERE group_id = ccrm.target_group_id('Payment plan')),
                            user_id => (SELECT id FROM ccrm.crm_user WHERE username = 'anna')) AS preview;

\echo
\echo 'Creating the activities for Monday 7 December 2026 (three calls a day per user):'
SELECT * FROM ccrm.create_activities('Payment plan', 'Payment plan calls', '2026-12-07');
SELECT * FROM ccrm.create_activities('Key account contacts', 'Key account review', '2026-12-07');
\echo 'A second run for the same day creates nothing twice:'
SELECT created, skipped FROM ccrm.create_activities('Payment plan', 'Payment plan calls', '2026-12-07');

\echo
\echo 'The calendars (each user in their own time zone):'
SELECT u.username AS "user",
       to_char(a.starts_at AT TIME ZONE coalesce(u.timezone, 'Europe/Helsinki'), 'Dy DD.MM HH24:MI') AS starts,
       to_char(a.ends_at AT TIME ZONE coalesce(u.timezone, 'Europe/Helsinki'), 'HH24:MI') AS ends,
       a.subject
  FROM ccrm.activity a JOIN ccrm.crm_user u ON u.id = a.user_id
 WHERE a.plan_id = ccrm.activity_plan_id('Payment plan', 'Payment plan calls')
 ORDER BY u.username, a.starts_at;
\echo 'Tasks:'
SELECT u.username AS "user", a.due_on, a.priority, a.subject
  FROM ccrm.activity a JOIN ccrm.crm_user u ON u.id = a.user_id
 WHERE a.plan_id = ccrm.activity_plan_id('Key account contacts', 'Key account review')
 ORDER BY u.username, a.subject;
