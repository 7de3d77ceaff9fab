-- ccrm demo, part 7: the seed's follow-up sequence.  Contacts in Helsinki
-- and Espoo get a welcome email one day after they match, and their owner a
-- call task four days later, on a working day from 09:00.  The worker would
-- run each step when it is due; here ccrm.process_sequences(at) is called at
-- those instants, the way a test or pg_cron does.
\echo
\echo '== follow-up sequences =='
\o /dev/null
SELECT ccrm.create_message_template('Welcome mail', 'email', 'contact',
    subject => 'Welcome, $contact-firstname|friend$',
    body => 'Glad to have $account-name|you$ with us.',
    sender_id => (SELECT id FROM ccrm.crm_user WHERE username = 'anna'));
SELECT ccrm.create_message_template('Welcome call', 'task', 'contact',
    subject => 'Call $contact-firstname$ $contact-lastname$',
    body => 'Ask how the first week went.');
SELECT ccrm.create_sequence('Welcome series', 'contact',
    '{"field": "city", "op": "in", "value": ["Helsinki", "Espoo"]}',
    '[{"action": "email_customer", "delay_days": 1, "template": "Welcome mail"},
      {"action": "task_user", "delay_days": 4, "day_rule": "working_days", "not_before": "09:00",
       "template": "Welcome call", "task_due_days": 2}]');
-- the demo runs the steps itself, at instants of its choosing
SELECT now() + interval '1 day 1 minute' AS day_after, now() + interval '10 days' AS ten_days_after \gset
SELECT ccrm.activate_sequence('Welcome series');
\o
\echo 'Enrolled at activation (every contact that matches):'
SELECT name, active, enrolled, active_enrolments, next_due > now() AS next_due_ahead FROM ccrm.sequences;

\echo 'A day and a minute later the welcome emails are queued; ten days later the call tasks exist:'
\o /dev/null
CALL ccrm.process_sequences(:'day_after');
CALL ccrm.process_sequences(:'ten_days_after');
\o
SELECT h.step, h.outcome, h.reason, count(*) AS records
  FROM ccrm.sequence_history h WHERE h.sequence = 'Welcome series'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT o.recipient, o.subject FROM ccrm.outbox o
 WHERE o.idempotency_key LIKE 'ccrm-sequence:%' ORDER BY o.id LIMIT 3;
SELECT u.username, a.subject, a.record_id IS NOT NULL AS linked_to_its_contact
  FROM ccrm.activity a JOIN ccrm.crm_user u ON u.id = a.user_id
 WHERE a.sequence_enrolment_id IS NOT NULL ORDER BY a.id LIMIT 3;
SELECT name, enrolled, completed FROM ccrm.sequences;
