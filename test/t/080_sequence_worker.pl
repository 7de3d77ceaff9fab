# Follow-up sequences run by the scheduler worker, with no job to create:
# a record an application inserts is enrolled within seconds and its first
# step's message reaches the outbox; the server killed with SIGKILL in the
# middle of a big batch comes back with no step executed twice and none lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('seq');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.sequence_batch_size = 500
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->safe_psql('crm', q{
CREATE EXTENSION ccrm;
INSERT INTO ccrm.crm_user (id, username, firstname, email) VALUES (1, 'anna', 'Anna', 'anna@example.com');
SELECT ccrm.create_channel('mail', 'email', is_default => true);
SELECT ccrm.create_message_template('hello', 'email', 'contact', subject => 'Hello $contact-firstname$',
    body => 'Welcome', sender_id => 1);
SELECT ccrm.create_message_template('again', 'email', 'contact', subject => 'Again $contact-firstname$',
    body => 'Still there?', sender_id => 1);
SELECT ccrm.create_sequence('oulu', 'contact', '{"field": "city", "op": "eq", "value": "Oulu"}',
    '[{"action": "email_customer", "template": "hello"}]');
SELECT ccrm.activate_sequence('oulu', only_new => true);
});
ok($node->poll_query_until('crm',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler' AND datname = 'crm'}),
	'the scheduler runs');

# -- an application inserts a matching record ---------------------------------
my $t0 = time();
$node->safe_psql('crm', q{INSERT INTO ccrm.contact (owner_id, firstname, email, city)
    VALUES (1, 'Aino', 'aino@example.com', 'Oulu'), (1, 'Eino', 'eino@example.com', 'Turku')});
ok($node->poll_query_until('crm',
	q{SELECT count(*) = 1 FROM ccrm.outbox WHERE source = 'sequence' AND subject = 'Hello Aino'}),
	'the first step of the enrolled record reaches the outbox');
my $lag = time() - $t0;
cmp_ok($lag, '<', 15, sprintf('enrolled and sent within seconds of the commit (%.1f s)', $lag));
is($node->safe_psql('crm', q{SELECT string_agg(c.firstname || ':' || e.status, ',')
    FROM ccrm.sequence_enrolment e JOIN ccrm.contact c ON c.id = e.record_id}),
	'Aino:completed', 'only the matching record was enrolled, and it went through the sequence');

# -- SIGKILL in the middle of a big batch --------------------------------------
# 20,000 records, two steps each due at once; every batch of 500 is slowed
# down so that the kill lands while the worker is busy.
$node->safe_psql('crm', q{
INSERT INTO ccrm.contact (owner_id, firstname, email, city)
SELECT 1, 'c' || i, 'c' || i || '@example.com', 'Kemi' FROM generate_series(1, 20000) i;
CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.1); RETURN NULL; END $$;
CREATE TRIGGER slow AFTER INSERT ON ccrm.sequence_step_run FOR EACH STATEMENT EXECUTE FUNCTION public.slow();
SELECT ccrm.create_sequence('kemi', 'contact', '{"field": "city", "op": "eq", "value": "Kemi"}',
    '[{"action": "email_customer", "template": "hello"}, {"action": "email_customer", "template": "again"}]');
SELECT ccrm.activate_sequence('kemi');
});
ok($node->poll_query_until('crm', q{SELECT count(*) >= 3000 FROM ccrm.sequence_step_run r
    JOIN ccrm.sequence s ON s.id = r.sequence_id WHERE s.name = 'kemi'}),
	'the worker is processing the big batch');
my $done = $node->safe_psql('crm', q{SELECT count(*) FROM ccrm.sequence_step_run r
    JOIN ccrm.sequence s ON s.id = r.sequence_id WHERE s.name = 'kemi'});
cmp_ok($done, '<', 40000, "killed in the middle ($done of 40000 step executions done)");
my $pid = $node->safe_psql('crm',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler' AND datname = 'crm'});
ok(kill('KILL', $pid), "the worker (PID $pid) killed with SIGKILL: the server resets every backend");
ok($node->poll_query_until('crm', 'SELECT true'), 'the server is back after crash recovery');
ok($node->poll_query_until('crm', q{SELECT count(*) = 0 FROM ccrm.sequence_enrolment e
    JOIN ccrm.sequence s ON s.id = e.sequence_id WHERE s.name = 'kemi' AND e.status = 'active'}, 't'),
	'after the restart the worker finishes every enrolment');
is($node->safe_psql('crm', q{
SELECT count(*) || ' ' || count(DISTINCT (r.enrolment_id, r.step)) || ' ' ||
       count(*) FILTER (WHERE r.outcome = 'message')
  FROM ccrm.sequence_step_run r JOIN ccrm.sequence s ON s.id = r.sequence_id WHERE s.name = 'kemi'}),
	'40000 40000 40000', 'every step ran exactly once for every record: 0 duplicate, 0 missing');
is($node->safe_psql('crm', q{
SELECT count(*) || ' ' || count(DISTINCT (o.record_id, o.subject)) || ' ' || count(DISTINCT o.idempotency_key)
  FROM ccrm.outbox o WHERE o.source = 'sequence' AND o.source_id = ccrm.sequence_id('kemi')}),
	'40000 40000 40000', 'and the outbox holds exactly one message per record and step');
is($node->safe_psql('crm', q{
SELECT count(*) FROM ccrm.sequence_step_run r
  LEFT JOIN ccrm.outbox o ON o.id = r.message_id
 WHERE r.sequence_id = ccrm.sequence_id('kemi') AND (o.id IS NULL OR o.record_id <> r.record_id)}),
	'0', 'each execution points at its own message');

$node->stop;
done_testing();
