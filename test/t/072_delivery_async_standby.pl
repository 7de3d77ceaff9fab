# Delivery across the promotion of an asynchronous standby: the standby has
# the queue but none of the old primary's completions (its WAL receiver is
# stopped before the primary sends), so once promoted it sends again what
# the old primary sent.  Nothing is lost, and every repeat is the same post
# with the same Idempotency-Key (README, Delivery, What is guaranteed).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use CcrmDelivery;

my $dir = PostgreSQL::Test::Utils::tempdir;
# proxy variables that lead nowhere: delivery goes direct all the same
dead_proxy_environment();
my ($ca, $cert, $key) = make_certs("$dir/tls");
mkdir "$dir/tw";
my ($tw, $twport) = start_sink('http_sink.pl', '--port', 0, '--dir', "$dir/tw", '--cert', $cert, '--key', $key,
	'--user', 'AC123', '--password', 'tok');

my $node = PostgreSQL::Test::Cluster->new('async_primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.delivery_poll_interval = 200
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('async_standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;

# the primary holds its delivery until the standby has the queue
$node->append_conf('postgresql.conf', "ccrm.enable_delivery = off\n");
$node->reload;
$node->safe_psql('crm', qq{CREATE EXTENSION ccrm;
    -- no quiet hours: the default 23:00-07:30 would hold these SMS back at night
    SELECT ccrm.set_setting('sms_quiet_hours', '');
    SELECT ccrm.create_channel('twilio', 'sms', 'ccrm', is_default => true);
    UPDATE ccrm.channel SET endpoint = 'https://127.0.0.1:$twport/2010-04-01/Accounts/AC123/Messages.json',
        sms_format = 'twilio', username = 'AC123', secret = 'tok', sender = '+3584000000', ca_file = '$ca',
        parallelism = 2 WHERE name = 'twilio';
    SELECT ccrm.enqueue_message('sms', '+35840' || (7000000 + i), 'async ' || i, channel => 'twilio',
        idempotency_key => 'async-' || i) FROM generate_series(1, 20) i});
$node->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('crm', q{SELECT count(*) FROM ccrm.outbox WHERE idempotency_key LIKE 'async-%' AND status = 'queued'}),
	'20', 'the standby has the queue');

# the standby stops receiving WAL: what the primary commits from now on does not reach it
$standby->safe_psql('postgres', q{ALTER SYSTEM SET primary_conninfo = ''});
$standby->reload;
ok($standby->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_wal_receiver}),
	'the standby receives no more WAL');

$node->append_conf('postgresql.conf', "ccrm.enable_delivery = on\n");
$node->reload;
ok($node->poll_query_until('crm', q{SELECT count(*) = 20 FROM ccrm.outbox WHERE idempotency_key LIKE 'async-%' AND status = 'sent'}),
	'the primary sends all and marks them sent') or diag(outbox_state($node));
is(scalar(grep { $_->{body} =~ /async/ } received_sms("$dir/tw")), 20, 'the provider got each once from the primary');
is($standby->safe_psql('crm', q{SELECT count(*) FROM ccrm.outbox WHERE idempotency_key LIKE 'async-%' AND status = 'queued'}),
	'20', 'the standby has none of the completions (the mark_sent never reached it)');
$node->stop('immediate');

$standby->promote;
ok($standby->poll_query_until('crm', q{SELECT count(*) = 20 FROM ccrm.outbox WHERE idempotency_key LIKE 'async-%' AND status = 'sent'}),
	'the promoted standby delivers') or diag(outbox_state($standby));

my %by_key;
push @{ $by_key{ $_->{headers}{'idempotency-key'} // '' } }, $_ for grep { $_->{body} =~ /async/ } received_sms("$dir/tw");
is(scalar(grep { !$by_key{"async-$_"} } 1 .. 20), 0, 'nothing is lost');
is(scalar(grep { @{ $by_key{"async-$_"} // [] } == 2 } 1 .. 20), 20,
	'what the old primary sent last is sent again by the promoted standby, once');
is(scalar(keys %by_key), 20, 'every post carries the Idempotency-Key of its message');
is(scalar(grep { my $p = $by_key{$_}; grep { $_->{body} ne $p->[0]{body} || $_->{line} ne $p->[0]{line} } @$p } keys %by_key), 0,
	'a repeat is the same post as the first (same body, same URL, same Idempotency-Key)');
$standby->stop;
kill_sink($tw);
done_testing();
