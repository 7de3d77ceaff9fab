# The scheduler worker: fires a seconds-interval job on time and never
# overlapping; after downtime a missed job runs once; a run whose backend is
# killed with SIGKILL is marked interrupted, kept nothing, and the job runs
# again later; a streaming standby runs nothing and, promoted, goes on without
# running a slot twice; pg_cron calling ccrm.run_due_jobs() does the same work;
# the worker purges the audit of old runs (through purge_audit of any version).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.max_parallel_jobs = 3
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->safe_psql('crm', q{
CREATE EXTENSION ccrm;
CREATE TABLE public.fired (run_id bigint, job_id bigint, action_time timestamptz,
                           at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.tick(job_id bigint, run_id bigint, group_id bigint, params jsonb,
                            action_time timestamptz, time_zone text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fired (run_id, job_id, action_time) VALUES (run_id, job_id, action_time);
    PERFORM pg_sleep(COALESCE((params->>'sleep')::float8, 0));
    RETURN jsonb_build_object('fired', 1);
END $$;
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('tick', 'public.tick(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'test: record a firing');
});

sub wait_for
{
	my ($node, $sql, $what) = @_;
	ok($node->poll_query_until('crm', $sql), $what);
}

# -- the worker fires a seconds-interval job --------------------------------
wait_for($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler' AND datname = 'crm'},
	'the scheduler connects to ccrm.database_name once it exists');
$node->safe_psql('crm', q{SELECT ccrm.schedule_job('tick', 'tick', '1 seconds')});
wait_for($node, q{SELECT count(*) >= 4 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                   WHERE j.name = 'tick' AND r.status = 'succeeded'},
	'the worker fires a 1-second job');
is($node->safe_psql('crm', q{
	SELECT count(*) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
	 WHERE j.name = 'tick' AND r.trigger = 'schedule'
	   AND r.started_at - r.scheduled_for > interval '2 s'}), '0',
	'each firing starts within 2 seconds of its slot (a generous bound: the lag itself is benchmarked)');
is($node->safe_psql('crm', q{
	SELECT count(*) FROM ccrm.job_run a JOIN ccrm.job_run b
	    ON a.job_id = b.job_id AND a.id < b.id
	   AND a.started_at < b.finished_at AND b.started_at < a.finished_at}), '0',
	'runs of the job never overlap');
is($node->safe_psql('crm', q{SELECT count(*) FROM public.fired f
	JOIN ccrm.job_run r ON r.id = f.run_id WHERE r.status = 'succeeded'})
	> 0 ? 'effects' : 'none', 'effects', 'the runner\'s work is kept');
is($node->safe_psql('crm', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'}),
	'1', 'one scheduler process');

# -- jobs due at the same time run in parallel (ccrm.max_parallel_jobs) -------
$node->safe_psql('crm', q{
	SELECT ccrm.deactivate_job('tick');
	SELECT ccrm.schedule_job('par ' || i, 'tick', '@yearly', params => '{"sleep": 4}') FROM generate_series(1, 3) i;
	UPDATE ccrm.job SET next_run = now() WHERE name LIKE 'par %';
});
wait_for($node, q{SELECT count(*) = 3 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                   WHERE j.name LIKE 'par %' AND r.status = 'succeeded'},
	'three jobs due at once all ran');
is($node->safe_psql('crm', q{
	SELECT max(finished_at) - min(started_at) < interval '10 s' FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
	 WHERE j.name LIKE 'par %'}), 't', 'side by side: the three 4-second runs took less than 10 seconds (12 one after another)');
is($node->safe_psql('crm', q{SELECT count(DISTINCT pid) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                              WHERE j.name LIKE 'par %'}), '3', 'in three processes');
$node->safe_psql('crm', q{SELECT ccrm.delete_job(name) FROM ccrm.job WHERE name LIKE 'par %'});

# -- after downtime, a job whose slots were missed runs once -----------------
$node->safe_psql('crm', q{SELECT ccrm.schedule_job('hourly', 'tick', '@hourly')});
$node->stop;
$node->append_conf('postgresql.conf', "ccrm.enable_scheduler = off\n");
$node->start;
# five hourly slots missed while the server was down
$node->safe_psql('crm', q{UPDATE ccrm.job SET next_run = now() - interval '5 hours' WHERE name = 'hourly'});
# and a mass update that finished long ago, with its audit: the worker's first
# pass purges it (ccrm.purge_audit, found by its 0.7.0 signature (interval, at))
$node->safe_psql('crm', q{
WITH r AS (INSERT INTO ccrm.job_run (kind, trigger, action_time, run_as, status, started_at, finished_at)
           VALUES ('mass_update', 'direct', now() - interval '400 days', 'postgres', 'succeeded',
                   now() - interval '400 days', now() - interval '400 days') RETURNING id)
INSERT INTO ccrm.run_audit (run_id, step, entity, record_id, old_values, new_values)
SELECT id, 1, 'contact', 1, '{}', '{}' FROM r});
$node->stop;
$node->append_conf('postgresql.conf', "ccrm.enable_scheduler = on\n");
$node->start;
wait_for($node, q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                   WHERE j.name = 'hourly' AND r.status = 'succeeded'},
	'the missed job ran after the restart');
wait_for($node, q{SELECT count(*) = 0 FROM ccrm.run_audit},
	'the worker purged the audit of a run older than ccrm.audit_retention');
sleep 2;
is($node->safe_psql('crm', q{SELECT count(*) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                              WHERE j.name = 'hourly'}), '1', 'once, not once per missed slot');
is($node->safe_psql('crm', q{SELECT next_run > now() AND next_run <= now() + interval '1 hour'
                              FROM ccrm.job WHERE name = 'hourly'}), 't', 'and its next run is the next hour');

# -- kill -9 of the backend running a job ------------------------------------
$node->safe_psql('crm', q{
	SELECT ccrm.schedule_job('slow', 'tick', '@hourly', params => '{"sleep": 60}');
	UPDATE ccrm.job SET next_run = now() WHERE name = 'slow';
});
wait_for($node, q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                   WHERE j.name = 'slow' AND r.status = 'running'
                     AND EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = r.pid AND a.wait_event = 'PgSleep')},
	'the slow job is running');
my ($run_id, $pid) = split /\|/, $node->safe_psql('crm', q{
	SELECT r.id, r.pid FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
	 WHERE j.name = 'slow' AND r.status = 'running'});
kill 'KILL', $pid;
wait_for($node, qq{SELECT status = 'interrupted' FROM ccrm.job_run WHERE id = $run_id},
	'after the crash the run is marked interrupted');
is($node->safe_psql('crm', qq{SELECT count(*) FROM public.fired WHERE run_id = $run_id}), '0',
	'nothing the killed run did was kept');
is($node->safe_psql('crm', q{SELECT active AND next_run > now() FROM ccrm.job WHERE name = 'slow'}), 't',
	'the job stays scheduled');
$node->safe_psql('crm', q{
	SELECT ccrm.alter_job('slow', params => '{"sleep": 0}');
	UPDATE ccrm.job SET next_run = now() WHERE name = 'slow';
});
wait_for($node, q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
                   WHERE j.name = 'slow' AND r.status = 'succeeded'},
	'and runs again later');
is($node->safe_psql('crm', q{SELECT count(*) FROM public.fired f JOIN ccrm.job j ON j.id = f.job_id
                              WHERE j.name = 'slow'}), '1', 'with one effect in all');

# -- a streaming standby runs nothing; promoted, it goes on -------------------
$node->safe_psql('crm', q{SELECT ccrm.activate_job('tick')});
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
sleep 2;
is($standby->safe_psql('crm', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'ccrm%'}),
	'0', 'no scheduler on the standby');
$node->wait_for_catchup($standby);
my $before = $standby->safe_psql('crm', q{SELECT count(*) FROM ccrm.job_run});
ok($before > 0, 'the standby has the primary\'s runs');
$node->stop('immediate');
$standby->promote;
wait_for($standby, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'},
	'the promoted standby starts the scheduler');
wait_for($standby, qq{SELECT count(*) > $before + 2 FROM ccrm.job_run WHERE status = 'succeeded'},
	'and fires jobs');
is($standby->safe_psql('crm', q{SELECT count(*) FROM ccrm.job_run WHERE status = 'running'
                                  AND pid NOT IN (SELECT pid FROM pg_stat_activity)}), '0',
	'no run is left running by the old primary');
is($standby->safe_psql('crm', q{SELECT count(*) FROM (SELECT job_id, scheduled_for FROM ccrm.job_run
                                  WHERE trigger = 'schedule' AND job_id IS NOT NULL
                                  GROUP BY 1, 2 HAVING count(*) > 1) d}), '0',
	'no slot ran twice across the failover');
$standby->stop;

# -- pg_cron instead of the worker --------------------------------------------
SKIP:
{
	my $cron_available = -e $node->config_data('--pkglibdir') . '/pg_cron.so';
	skip 'pg_cron is not installed', 3 unless $cron_available;
	my $cron = PostgreSQL::Test::Cluster->new('cron');
	$cron->init;
	$cron->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm,pg_cron'
cron.database_name = 'crm'
cron.use_background_workers = on
ccrm.database_name = 'crm'
ccrm.enable_scheduler = off
});
	$cron->start;
	$cron->safe_psql('postgres', 'CREATE DATABASE crm');
	$cron->restart;
	$cron->safe_psql('crm', q{
CREATE EXTENSION ccrm;
CREATE EXTENSION pg_cron;
INSERT INTO ccrm.crm_user (username) VALUES ('anna');
INSERT INTO ccrm.contact (owner_id, firstname) SELECT 1, 'c' || i FROM generate_series(1, 5) i;
SELECT ccrm.create_target_group('all', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT ccrm.schedule_job('refresh all', 'refresh_group', '1 seconds', 'all');
SELECT cron.schedule('ccrm', '* * * * *', 'CALL ccrm.run_due_jobs()');
});
	# the next minute: the job due every second since runs once
	wait_for($cron, q{SELECT count(*) >= 1 FROM ccrm.job_run WHERE status = 'succeeded'},
		'pg_cron runs due jobs with the worker off');
	is($cron->safe_psql('crm', q{SELECT member_count FROM ccrm.target_group}), '5', 'the group was refreshed');
	is($cron->safe_psql('crm', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'
	                              AND state = 'active'}), '0', 'the paused worker did nothing');
	$cron->stop;
}

done_testing();
