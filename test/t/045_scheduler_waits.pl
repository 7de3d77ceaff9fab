# The scheduler waits quietly for its database: the server starts with
# ccrm.database_name naming a database that does not exist yet; nothing
# exits and restarts meanwhile, the wait is logged once, and once the
# database and the extension exist the scheduler starts within a few seconds
# and fires a 1-second job.  Moving ccrm.database_name to another database
# moves the scheduler there, again without a restart loop.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('waits');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
});
$node->start;

sub log_count
{
	my ($re) = @_;
	my @lines = grep { /$re/ } split /\n/, slurp_file($node->logfile);
	return scalar @lines;
}

# long enough for the old behaviour (exit, restart every 5 s) to show twice
sleep 11;
is(log_count(qr/"ccrm (scheduler|launcher|delivery)".*exited with exit code/), 0,
	'no ccrm worker exited while the database did not exist');
is(log_count(qr/waiting for database "crm"/), 1, 'the wait for the database is logged once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ccrm launcher'}),
	'1', 'the launcher waits');

$node->safe_psql('postgres', 'CREATE DATABASE crm');
ok($node->poll_query_until('crm',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler' AND datname = 'crm'}),
	'the scheduler connects once the database exists');
sleep 3;
is(log_count(qr/ccrm scheduler is waiting for CREATE EXTENSION ccrm in database "crm"/), 1,
	'the wait of the scheduler for the extension is logged once');
is(log_count(qr/ccrm delivery is waiting for CREATE EXTENSION ccrm in database "crm"/), 1,
	'so is the wait of the delivery worker');

my $offset = -s $node->logfile;
my $t0 = time;
$node->safe_psql('crm', q{
CREATE EXTENSION ccrm;
CREATE TABLE public.fired (job_id bigint, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.tick(job_id bigint, run_id bigint, group_id bigint, params jsonb,
                            action_time timestamptz, time_zone text) RETURNS jsonb
LANGUAGE sql AS $$ INSERT INTO public.fired (job_id) VALUES (job_id) RETURNING '{}'::jsonb $$;
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('tick', 'public.tick(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'test: record a firing');
SELECT ccrm.schedule_job('tick', 'tick', '1 seconds');
});
$node->wait_for_log(qr/ccrm scheduler started in database "crm"/, $offset);
my $started = time - $t0;
ok($node->poll_query_until('crm', q{SELECT count(*) >= 1 FROM public.fired}), 'the 1-second job fires');
my $fired = time - $t0;
note(sprintf('scheduler ready %.2f s after CREATE EXTENSION; first firing after %.2f s', $started, $fired));
cmp_ok($started, '<', 5, 'the scheduler notices the extension within a few seconds (target: 2 s)');
cmp_ok($fired, '<', 10, 'the job ran within 10 seconds of CREATE EXTENSION');
is(log_count(qr/"ccrm (scheduler|launcher|delivery)".*exited with exit code/), 0, 'still no ccrm worker exits');
is(log_count(qr/waiting for/), 3, 'no other waiting message');

# moving to a database that does not exist yet: the scheduler leaves, the
# launcher waits, then starts it there
$node->append_conf('postgresql.conf', "ccrm.database_name = 'crm2'\n");
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'}),
	'the scheduler leaves the old database');
$node->wait_for_log(qr/waiting for database "crm2"/, $offset);
$node->safe_psql('postgres', 'CREATE DATABASE crm2');
$node->safe_psql('crm2', 'CREATE EXTENSION ccrm');
ok($node->poll_query_until('crm2',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler' AND datname = 'crm2'}),
	'and starts in the new one once it exists');
sleep 2;
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'}),
	'1', 'one scheduler in all');
is(log_count(qr/"ccrm (scheduler|launcher|delivery)".*exited with exit code/), 0, 'no ccrm worker exited');

$node->stop;
done_testing();
