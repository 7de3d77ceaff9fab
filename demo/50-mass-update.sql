-- ccrm demo, part 5: scheduled actions on a group besides refreshing it and
-- creating its activities: a mass update (with audit and undo), field
-- formulas and a module tool.
\echo
\echo '== mass updates, formulas, tools =='
\o /dev/null
SELECT ccrm.define_field('account', 'last_contacted', 'date');

-- the seed's example: every Friday at 16:00 the accounts of the payment-plan
-- contacts get a description saying they were contacted, and the action date
SELECT ccrm.schedule_job('Friday: payment plan accounts contacted', 'mass_update', '0 16 * * 5',
    'Payment plan',
    '{"set": {"account": {"description": "Contacted about the payment plan",
                          "last_contacted": {"action": "date"}}}}',
    time_zone => 'Europe/Helsinki');
\o

\echo
\echo 'The job (the scheduler fires it on Fridays at 16:00 Helsinki time):'
SELECT name, kind, schedule, time_zone, params FROM ccrm.job WHERE kind = 'mass_update';

\echo
\echo 'Its last slot, Friday 16:00, was missed (the demo was not running): the worker'
\echo 'catches it up once, acting for that Friday (the action date, in Helsinki):'
\o /dev/null
UPDATE ccrm.job SET next_run = (date_trunc('week', now() AT TIME ZONE 'Europe/Helsinki') - interval '3 days'
                                + interval '16 hours') AT TIME ZONE 'Europe/Helsinki'
 WHERE name = 'Friday: payment plan accounts contacted';
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT FROM ccrm.job_run WHERE kind = 'mass_update' AND status <> 'running');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
\o
SELECT id AS run FROM ccrm.job_run WHERE kind = 'mass_update' \gset
SELECT id, kind, trigger, to_char(scheduled_for AT TIME ZONE 'Europe/Helsinki', 'Dy DD.MM HH24:MI') AS slot,
       status, counts FROM ccrm.job_run WHERE id = :run;
SELECT a.name, a.description, a.attrs->>'last_contacted' AS last_contacted
  FROM ccrm.account a WHERE a.attrs ? 'last_contacted' ORDER BY a.name;

\echo
\echo 'What the audit kept, and an undo after somebody edited one account:'
SELECT entity, record_id, old_values, new_values FROM ccrm.run_audit WHERE run_id = :run ORDER BY record_id LIMIT 3;
UPDATE ccrm.account SET description = 'Called back, new contract'
 WHERE id = (SELECT min(record_id) FROM ccrm.run_audit WHERE run_id = :run);
SELECT * FROM ccrm.undo_run(:run);
SELECT name, description, attrs->>'last_contacted' AS last_contacted FROM ccrm.account ORDER BY name;

\echo
\echo 'Field formulas, checked by PostgreSQL''s parser when saved:'
\o /dev/null
SELECT ccrm.create_formula('contact card', 'contact', 'description',
    $$firstname || ' ' || coalesce(lastname, '') || coalesce(' (' || title || ')', '')$$);
SELECT ccrm.create_formula('contacted this year', 'contact', 'last_contacted',
    $$CASE WHEN last_contacted >= date_trunc('year', now())::date THEN last_contacted END$$, active => false);
\o
SELECT name, field, expression, active FROM ccrm.formula ORDER BY name;
\set ON_ERROR_STOP 0
SELECT ccrm.check_formula('contact', 'random() * 100');
SELECT ccrm.check_formula('contact', '(SELECT count(*) FROM ccrm.contact)');
\set ON_ERROR_STOP 1
SELECT ccrm.run_formulas('Payment plan') AS run \gset
SELECT counts FROM ccrm.job_run WHERE id = :run;
SELECT firstname, description FROM ccrm.contact
 WHERE id IN (SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Payment plan'))
 ORDER BY id LIMIT 5;

\echo
\echo 'Module tools: a built-in one gives the key-account contacts a call-back task:'
SELECT ccrm.run_tool('Key account contacts', 'contact_create_task',
    '{"subject": "Call back about the renewal", "due_in_days": 3, "priority": "high"}') AS run \gset
SELECT counts FROM ccrm.job_run WHERE id = :run;
SELECT name, entity, description FROM ccrm.tool ORDER BY name;
