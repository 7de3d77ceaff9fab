# An outside sender (Perl with DBD::Pg, as a gateway would be written) claims
# and completes messages while the server is killed with SIGKILL and
# restarted, twice.  Its connection breaks, claims in flight lose their
# leases, marks in flight are lost with their transaction; the sender
# reconnects and goes on.  At the end nothing is lost (every message is
# sent), nothing is completed twice (mark_sent says true once per message,
# and a completion is never overwritten), and no message was queued twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DBI;
use Time::HiRes qw(time sleep);

my $N = 300;
my $node = PostgreSQL::Test::Cluster->new('sender');
$node->init;
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION ccrm;
SELECT ccrm.create_channel('mail', 'email', is_default => true);
SELECT count(*) FROM (SELECT ccrm.enqueue_message('email', 'c' || i || '\@example.com', 'body ' || i,
                      subject => 'hello ' || i, idempotency_key => 'k' || i) FROM generate_series(1, $N) i) q;
});

my $dsn = 'dbi:Pg:' . join(';', 'dbname=postgres', 'host=' . $node->host, 'port=' . $node->port);
# SIGKILL the postmaster, then start again once its children have gone
sub crash_and_restart
{
	$node->kill9;
	for (1 .. 120)
	{
		return if $node->start(fail_ok => 1);
		$node->{_pid} = undef;	# a failed start read the dead postmaster's pid file
		sleep 0.5;
	}
	BAIL_OUT("the server did not start again after SIGKILL");
}

my $dbh;
sub connected
{
	return $dbh if $dbh && $dbh->ping;
	$dbh = DBI->connect($dsn, undef, undef, { AutoCommit => 1, RaiseError => 0, PrintError => 0 });
	return $dbh;
}

my %completed;          # id -> times mark_sent said true
my %provider_sends;     # id -> times the "provider" was asked to send it
my ($claims, $mark_errors, $kills) = (0, 0, 0);
my $deadline = time + 180;

# one batch: claim 20 for a 2-second lease, "send" them, then complete them
# in one transaction; after the 3rd and 9th claims the server is killed
# between the claim and the marks
while (time < $deadline)
{
	my $db = connected() or do { sleep 0.2; next };
	my $rows = $db->selectall_arrayref(
		q{SELECT id, claim_token FROM ccrm.claim_messages('mail', 20, '2 seconds')});
	if (!defined $rows) { sleep 0.2; next }
	if (!@$rows)
	{
		last if $node->safe_psql('postgres', q{SELECT count(*) FROM ccrm.outbox WHERE status <> 'sent'}) eq '0';
		sleep 0.3;      # leases of lost claims still running: poll again
		next;
	}
	$claims++;
	$provider_sends{ $_->[0] }++ for @$rows;
	if ($claims == 3 || $claims == 9)
	{
		crash_and_restart();
		$kills++;
		$dbh = undef;
	}
	$db = connected() or next;
	$db->begin_work;
	my $ok = 1;
	my @done;
	for my $r (@$rows)
	{
		my ($id, $token) = @$r;
		my ($res) = $db->selectrow_array(q{SELECT ccrm.mark_sent(?::bigint, ?::uuid, ?)}, undef, $id, $token, "p-$id");
		if (!defined $res) { $ok = 0; $mark_errors++; last }
		push @done, $id if $res;
	}
	if ($claims == 6)
	{
		# killed after marking, before COMMIT: the marks are lost with the transaction
		crash_and_restart();
		$kills++;
		$dbh = undef;
		next;
	}
	if ($ok && $db->commit)
	{
		$completed{$_}++ for @done;
	}
	else
	{
		$db->rollback if $db->ping;
	}
}

ok($kills == 3, "the server was killed with SIGKILL $kills times while the sender worked");
is($node->safe_psql('postgres', q{SELECT count(*) FROM ccrm.outbox WHERE status = 'sent'}), $N,
	'nothing is lost: every message ends sent');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ccrm.outbox}), $N, 'no message was queued twice');
is(scalar(grep { $completed{$_} != 1 } keys %completed), 0, 'no message was completed twice');
is(scalar(keys %completed), $N, 'each was completed once, by the claim that held it');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ccrm.outbox WHERE provider_id <> 'p-' || id}), '0',
	'every completion is the one of its own claim');
cmp_ok(scalar(grep { $provider_sends{$_} > 1 } keys %provider_sends), '>', 0,
	'messages whose claim was lost in a crash were claimed again');
cmp_ok($node->safe_psql('postgres', q{SELECT max(attempts) FROM ccrm.outbox}), '>', 1,
	'and their attempts say so');
note("claims: $claims, failed marks: $mark_errors");

$dbh->disconnect if $dbh;
$node->stop;
done_testing();
