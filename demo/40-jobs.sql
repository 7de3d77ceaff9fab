-- ccrm demo, part 4: scheduled jobs, fired by ccrm's background worker.
\echo
\echo '== scheduled jobs =='
\o /dev/null
-- (the worker connects to ccrm.database_name once the database exists: wait for it)
DO $$
BEGIN
    FOR i IN 1..150 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity
                           WHERE backend_type = 'ccrm scheduler' AND datname = current_database());
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
-- the seed's examples: refresh the payment-plan group every day at 11:00, and every
-- Thursday at 11:00 create its calls -- always right after a fresh refresh
SELECT ccrm.schedule_job('Payment plan refresh', 'refresh_group', '0 11 * * *', 'Payment plan');
SELECT ccrm.schedule_job('Payment plan calls', 'create_activities', '0 11 * * thu', 'Payment plan',
                         '{"plan": "Payment plan calls"}', after_job => 'Payment plan refresh');
-- and one the worker fires while we watch: the Helsinki group every 2 seconds
SELECT ccrm.schedule_job('Helsinki every 2 s', 'refresh_group', '2 seconds', 'Helsinki region, not called');
\o

\echo
\echo 'What runs next (times in the job''s zone, from setting time_zone):'
SELECT name, kind, "group", schedule, after_job,
       to_char(next_run AT TIME ZONE time_zone, 'Dy DD.MM HH24:MI:SS') AS next_run, time_zone
  FROM ccrm.jobs;

\echo
\echo 'The Thursday job run now by hand: within its run the refresh it follows runs first (trigger chain).'
SELECT r.trigger, r.status, r.counts FROM ccrm.run_job('Payment plan calls') r;

\echo
\echo 'Five seconds later, the worker has fired the 2-second job on its beat:'
SELECT pg_sleep(5) \g /dev/null
SELECT ccrm.deactivate_job('Helsinki every 2 s') \g /dev/null
SELECT j.name AS job, r.trigger, to_char(r.scheduled_for, 'HH24:MI:SS.MS') AS due,
       round(1000 * extract(epoch FROM r.started_at - r.scheduled_for), 1) AS late_ms,
       r.status, r.counts
  FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
 ORDER BY r.id;
