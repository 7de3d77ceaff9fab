# A mass update killed (SIGKILL) in the middle of a run: every batch is all
# or none, the audit matches the data exactly, earlier runs stay undoable.
# The run shows its progress in pg_stat_activity while it works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('kill');
$node->init;
$node->append_conf('postgresql.conf', "restart_after_crash = on");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ccrm;
INSERT INTO ccrm.contact (firstname, title) SELECT 'c' || i, 'first' FROM generate_series(1, 20000) i;
SELECT ccrm.create_target_group('All', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('All');
});

# run 1 completes: every contact's title, audited
my $run1 = $node->safe_psql('postgres', q{
SET ccrm.mass_update_batch_size = 1000;
SELECT ccrm.mass_update('All', 'contact', '{"title": "second"}');
});
is($node->safe_psql('postgres', "SELECT count(*) FROM ccrm.run_audit WHERE run_id = $run1"),
	'20000', 'a finished run audits every row it changed');

# run 2 is stopped at contact 12345 (batch 13 of 20) by a slow trigger, then killed
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(300); RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE UPDATE ON ccrm.contact FOR EACH ROW WHEN (NEW.id = 12345)
    EXECUTE FUNCTION public.slow();
});
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
	  q{SET ccrm.mass_update_batch_size = 1000; SET application_name = 'killme';
	    SELECT ccrm.mass_update('All', 'contact', '{"title": "third", "description": "killed"}');} ],
	'>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	   WHERE application_name ~ '^ccrm run [0-9]+: mass_update 12000/20000$' AND wait_event = 'PgSleep'}),
	'progress shows in pg_stat_activity.application_name while the run works');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name ~ '^ccrm run'});
ok(kill('KILL', $pid), "backend $pid killed with SIGKILL");
$h->finish;
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server is back after crash recovery');

# every batch of 1000 keys is all or none: here none, as the run was one transaction
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
    SELECT (id - 1) / 1000 AS batch, count(*) FILTER (WHERE title = 'third') AS changed, count(*) AS total
      FROM ccrm.contact GROUP BY 1) b
 WHERE changed NOT IN (0, total)}), '0', 'no batch is half applied');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ccrm.contact WHERE title <> 'second' OR description IS NOT NULL}),
	'0', 'the killed run left no change');
is($node->safe_psql('postgres', "SELECT count(*) FROM ccrm.run_audit WHERE run_id <> $run1"),
	'0', 'and no audit');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM ccrm.run_audit a JOIN ccrm.contact c ON c.id = a.record_id
 WHERE a.new_values <> jsonb_build_object('title', c.title)}), '0',
	'the audit of the finished run matches the data exactly');
is($node->safe_psql('postgres', q{SELECT string_agg(status, ',') FROM ccrm.job_run}),
	'succeeded', 'only the finished run is recorded');

# the finished run can still be undone completely
$node->safe_psql('postgres', 'DROP TRIGGER slow ON ccrm.contact');
is($node->safe_psql('postgres', "SELECT restored || '/' || conflicts FROM ccrm.undo_run($run1)"),
	'20000/0', 'the finished run is undone completely');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ccrm.contact WHERE title = 'first'}),
	'20000', 'every title is back');

$node->stop;
done_testing();
