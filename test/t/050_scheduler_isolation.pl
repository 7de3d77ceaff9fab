# The scheduler's isolation (issue 9): the scheduler never runs a job's
# action; a small pool of long-lived executors does, so one long job holds
# no other back; a job whose owner was dropped, whose row was changed
# behind the trigger's back, or that is chained to another role's job is
# deactivated with the reason while the others keep running; a per-job
# time limit; an executor terminated mid-run leaves an interrupted run and
# nothing else; idle executors leave.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = PostgreSQL::Test::Cluster->new('isolation');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.max_parallel_jobs = 2
ccrm.executor_idle_timeout = 5s
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->safe_psql('crm', q{
CREATE EXTENSION ccrm;
CREATE TABLE public.fired (run_id bigint, job_id bigint, at timestamptz DEFAULT clock_timestamp());
GRANT SELECT, INSERT ON public.fired TO PUBLIC;
CREATE FUNCTION public.tick(job_id bigint, run_id bigint, group_id bigint, params jsonb,
                            action_time timestamptz, time_zone text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fired (run_id, job_id) VALUES (run_id, job_id);
    PERFORM pg_sleep(COALESCE((params->>'sleep')::float8, 0));
    RETURN jsonb_build_object('fired', 1);
END $$;
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('tick', 'public.tick(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'test: record a firing');
CREATE ROLE secs_gone;
CREATE ROLE secs_alice;
CREATE ROLE secs_bob;
});

sub wait_for
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('crm', $sql), $what);
}

sub sql
{
	return $node->safe_psql('crm', $_[0]);
}

sub exits
{
	my ($type) = @_;
	my @lines = grep { /"ccrm $type.*exited with exit code/ } split /\n/, slurp_file($node->logfile);
	return scalar @lines;
}

wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'},
	'the scheduler runs');
my $scheduler = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'});

# -- one long job holds back nothing; the scheduler runs no action ----------
sql(q{
SELECT ccrm.schedule_job('tick', 'tick', '1 seconds');
SELECT ccrm.schedule_job('long', 'tick', '@yearly', params => '{"sleep": 8}');
UPDATE ccrm.job SET next_run = now() - interval '1 minute' WHERE name = 'long';
});
wait_for(q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
            WHERE j.name = 'long' AND r.status = 'running'}, 'the long job is running');
my $executors = 0;
for (1 .. 12)
{
	my $n = sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ccrm executor'});
	$executors = $n if $n > $executors;
	sleep 0.5;
}
wait_for(q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
            WHERE j.name = 'long' AND r.status = 'succeeded'}, 'the long job ends');
is(sql(q{
	SELECT count(*) >= 5 AND max(r.started_at - r.scheduled_for) < interval '1 s'
	  FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id, ccrm.job_run l JOIN ccrm.job lj ON lj.id = l.job_id
	 WHERE j.name = 'tick' AND lj.name = 'long'
	   AND r.started_at BETWEEN l.started_at AND l.finished_at}), 't',
	'while the long job ran, the 1-second job kept firing on time');
is(sql(qq{SELECT count(*) FROM ccrm.job_run WHERE pid = $scheduler}), '0',
	'the scheduler itself ran no job');
ok($executors >= 1 && $executors <= 2, "at most ccrm.max_parallel_jobs executors ($executors)");
my ($runs, $pids) = split /\|/, sql(q{SELECT count(*), count(DISTINCT pid) FROM ccrm.job_run});
ok($runs >= 6 && $pids <= 2, "the executors live on: $runs runs in $pids processes");

# -- a job whose owner is dropped is deactivated; the others go on ----------
sql(q{SELECT ccrm.schedule_job('gone', 'tick', '1 seconds', owner => 'secs_gone')});
wait_for(q{SELECT count(*) >= 2 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
            WHERE j.name = 'gone' AND r.status = 'succeeded'}, 'the job of secs_gone runs');
sql('DROP ROLE secs_gone');
wait_for(q{SELECT NOT active FROM ccrm.job WHERE name = 'gone'}, 'once its owner is dropped it is deactivated');
like(sql(q{SELECT inactive_reason FROM ccrm.jobs WHERE name = 'gone'}),
	qr/^cannot run: role .*the owner of job "gone", does not exist/, 'with the reason, shown in ccrm.jobs');
is(sql(q{SELECT status FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
        WHERE j.name = 'gone' ORDER BY r.id DESC LIMIT 1}), 'failed', 'its last run says it failed');
my $ticks = sql(q{SELECT count(*) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'tick'});
wait_for(qq{SELECT count(*) >= $ticks + 3 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
             WHERE j.name = 'tick' AND r.status = 'succeeded'}, 'the other job keeps running');

# -- rows changed behind the trigger's back are checked when they run --------
sql(q{
SELECT ccrm.schedule_job('bogus', 'tick', '@yearly');
SET ROLE secs_alice;
SELECT ccrm.schedule_job('alice', 'tick', '@yearly');
SET ROLE secs_bob;
SELECT ccrm.schedule_job('bob', 'tick', '@yearly');
RESET ROLE;
ALTER TABLE ccrm.job DISABLE TRIGGER ccrm_job;
UPDATE ccrm.job SET schedule = 'bogus schedule' WHERE name = 'bogus';
UPDATE ccrm.job SET after_job = ccrm.job_id('bob') WHERE name = 'alice';
ALTER TABLE ccrm.job ENABLE TRIGGER ccrm_job;
UPDATE ccrm.job SET next_run = now() WHERE name IN ('bogus', 'alice');
});
wait_for(q{SELECT count(*) = 2 FROM ccrm.job WHERE name IN ('bogus', 'alice') AND NOT active},
	'a job with a bad schedule and a job chained to another role\'s job are deactivated');
like(sql(q{SELECT inactive_reason FROM ccrm.job WHERE name = 'bogus'}), qr/^cannot run: invalid schedule "bogus schedule"/,
	'the bad schedule is the reason');
like(sql(q{SELECT inactive_reason FROM ccrm.job WHERE name = 'alice'}),
	qr/^cannot run: job "alice" may only run after a job of its own owner/, 'the chain across owners is the reason');
is(sql(q{SELECT count(*) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'bob'}), '0',
	'bob\'s job did not run for alice');
is(sql(q{SELECT count(*) FROM public.fired f JOIN ccrm.job j ON j.id = f.job_id WHERE j.name IN ('bogus', 'alice')}),
	'0', 'neither action ran');

# -- a time limit cancels a run that takes too long ---------------------------
sql(q{
SELECT ccrm.deactivate_job('tick');
SELECT ccrm.schedule_job('slowpoke', 'tick', '@yearly', params => '{"sleep": 60}');
SELECT ccrm.set_job_time_limit('slowpoke', '1 second');
UPDATE ccrm.job SET next_run = now() WHERE name = 'slowpoke';
});
wait_for(q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
            WHERE j.name = 'slowpoke' AND r.status = 'failed'}, 'the run over its time limit is cancelled');
my ($error, $took, $pid) = split /\|/, sql(q{
	SELECT r.error, r.finished_at - r.started_at < interval '5 s', r.pid
	  FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'slowpoke'});
is($error, 'job "slowpoke" ran longer than its time limit (00:00:01)', 'with a clear error');
is($took, 't', 'about when the limit passed');
is(sql(q{SELECT time_limit FROM ccrm.jobs WHERE name = 'slowpoke'}), '00:00:01', 'ccrm.jobs shows the limit');
is(sql(qq{SELECT count(*) FROM pg_stat_activity WHERE pid = $pid}), '1', 'the executor lives on');
is(sql(q{SELECT count(*) FROM public.fired f JOIN ccrm.job j ON j.id = f.job_id WHERE j.name = 'slowpoke'}), '0',
	'nothing the cancelled run did was kept');

# -- job locks: ccrm's own key space, 64-bit ids, no re-entry ---------------
sql(q{
INSERT INTO ccrm.job (id, name, kind, schedule, params) VALUES
    (107, 'seven', 'tick', '@yearly', '{"sleep": 3}'),
    (4294967403, 'seven above 2^32', 'tick', '@yearly', '{"sleep": 3}');
UPDATE ccrm.job SET next_run = now() WHERE id IN (107, 4294967403);
});
wait_for(q{SELECT count(*) = 2 FROM ccrm.job_run WHERE job_id IN (107, 4294967403) AND status = 'succeeded'},
	'jobs 107 and 2^32 + 107 both ran');
is(sql(q{SELECT a.started_at < b.finished_at AND b.started_at < a.finished_at
        FROM ccrm.job_run a, ccrm.job_run b WHERE a.job_id = 107 AND b.job_id = 4294967403}), 't',
	'side by side: their locks differ (the full 64-bit id)');

my $psql = $node->background_psql('crm');
$psql->query_safe('SELECT pg_advisory_lock(1667461741, 107)');
$psql->query_safe('SELECT pg_advisory_lock(0, 107)');
sql(q{UPDATE ccrm.job SET params = '{}', next_run = now() WHERE id = 107});
wait_for(q{SELECT count(*) = 2 FROM ccrm.job_run WHERE job_id = 107 AND status = 'succeeded'},
	'pg_advisory_lock on the old key of the job does not hold it back');
$psql->quit;

sql(q{
CREATE FUNCTION public.reenter(job_id bigint, run_id bigint, group_id bigint, params jsonb,
                               action_time timestamptz, time_zone text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ccrm.run_job(job_id);
    RETURN '{}';
END $$;
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('reenter', 'public.reenter(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'test: run itself');
SELECT ccrm.schedule_job('reenter', 'reenter', '@yearly');
});
my ($status, $reerror) = split /\|/, sql(q{SELECT status, error FROM ccrm.run_job('reenter')});
is("$status|$reerror", 'failed|job "reenter" is running already',
	'a run that runs its own job finds it taken: no re-entry (ccrm.run_job)');
sql(q{UPDATE ccrm.job SET next_run = now() WHERE name = 'reenter'});
wait_for(q{SELECT count(*) = 2 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'reenter'},
	'and in an executor');
is(sql(q{SELECT string_agg(status || ': ' || error, ', ') FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
        WHERE j.name = 'reenter' AND r.trigger = 'schedule'}),
	'failed: job "reenter" is running already', 'the same there');

# -- an executor terminated mid-run ------------------------------------------
sql(q{
SELECT ccrm.schedule_job('victim', 'tick', '@yearly', params => '{"sleep": 60}');
UPDATE ccrm.job SET next_run = now() WHERE name = 'victim';
});
wait_for(q{SELECT count(*) = 1 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
            WHERE j.name = 'victim' AND r.status = 'running'
              AND EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = r.pid AND a.wait_event = 'PgSleep')},
	'the victim runs');
sql(q{SELECT pg_terminate_backend(r.pid) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
     WHERE j.name = 'victim' AND r.status = 'running'});
wait_for(q{SELECT status = 'interrupted' FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'victim'},
	'its run is marked interrupted');
is(sql(q{SELECT count(*) FROM public.fired f JOIN ccrm.job j ON j.id = f.job_id WHERE j.name = 'victim'}), '0',
	'and kept nothing');
sql(q{SELECT ccrm.alter_job('tick', schedule => '1 seconds'); SELECT ccrm.activate_job('tick')});
$ticks = sql(q{SELECT count(*) FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'tick'});
wait_for(qq{SELECT count(*) >= $ticks + 2 FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id
             WHERE j.name = 'tick' AND r.status = 'succeeded'}, 'jobs go on in another executor');

# -- idle executors leave ------------------------------------------------------
sql(q{UPDATE ccrm.job SET active = false});
wait_for(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'ccrm executor'},
	'executors without work exit (ccrm.executor_idle_timeout)');

is(sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'}), $scheduler,
	'the same scheduler process all along');
is(exits('scheduler') + exits('launcher'), 0, 'no scheduler or launcher exit in the log');
is(exits('executor'), 1, 'one executor exit: the terminated one');

sql('DROP ROLE secs_alice; DROP ROLE secs_bob');
$node->stop;
done_testing();
