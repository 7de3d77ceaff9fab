# Delivery of SMS by ccrm's worker to a real HTTPS server on loopback
# (http_sink.pl, TLS verified against a CA this test makes): the Twilio form
# post with basic auth and the JSON webhook with a bearer token, both with
# an Idempotency-Key; 4xx permanent, 5xx/429 retried; quiet hours and
# suppression at send time; then a streaming standby delivers nothing and,
# promoted, delivers, without sending again what the primary had completed
# when replication was synchronous (remote_apply).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib $FindBin::RealBin;
use CcrmDelivery;

my $dir = PostgreSQL::Test::Utils::tempdir;
# proxy variables that lead nowhere: delivery goes direct all the same
dead_proxy_environment();
my ($ca, $cert, $key) = make_certs("$dir/tls");
mkdir "$dir/tw";
mkdir "$dir/js";
my ($tw, $twport) = start_sink('http_sink.pl', '--port', 0, '--dir', "$dir/tw", '--cert', $cert, '--key', $key,
	'--user', 'AC123', '--password', 'tok');
my ($js, $jsport) = start_sink('http_sink.pl', '--port', 0, '--dir', "$dir/js", '--cert', $cert, '--key', $key,
	'--token', 'bearer-secret');

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.outbox_retry_delay = 1
ccrm.delivery_poll_interval = 200
ccrm.delivery_pause_after = 20
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->safe_psql('crm', 'CREATE EXTENSION ccrm');
# no quiet hours but in the section that tests them: the default 23:00-07:30
# (in the server's zone for a bare number) would hold these SMS back at night
$node->safe_psql('crm', q{SELECT ccrm.set_setting('sms_quiet_hours', '')});
sub sql { my ($n, $q) = @_ == 1 ? ($node, $_[0]) : @_; return $n->safe_psql('crm', $q) }
sub wait_for { my ($q, $what, $n) = @_; ok(($n // $node)->poll_query_until('crm', $q), $what) or diag(outbox_state($n // $node)) }

my ($rc, $out, $err) = $node->psql('crm', q{SELECT ccrm.create_channel('bad', 'sms', 'ccrm');
	UPDATE ccrm.channel SET endpoint = 'http://127.0.0.1/', sender = '+358401', sms_format = 'json' WHERE name = 'bad'});
like($err, qr/endpoint scheme "http" cannot deliver SMS/, 'SMS credentials never go over plain HTTP');
($rc, $out, $err) = $node->psql('crm', q{UPDATE ccrm.channel SET endpoint = 'https://127.0.0.1/', sms_format = 'twilio', sender = '+358401' WHERE name = 'bad'});
like($err, qr/a twilio channel needs username and secret/, 'missing credentials are refused when saved');

sql(q{SELECT ccrm.create_channel('twilio', 'sms', 'ccrm', is_default => true)});
sql(qq{UPDATE ccrm.channel SET endpoint = 'https://127.0.0.1:$twport/2010-04-01/Accounts/AC123/Messages.json',
        sms_format = 'twilio', username = 'AC123', secret = 'tok', sender = '+3584000000', ca_file = '$ca',
        connect_timeout = '2 s', send_timeout = '3 s' WHERE name = 'twilio'});
sql(q{SELECT ccrm.create_channel('hook', 'sms', 'ccrm')});
sql(qq{UPDATE ccrm.channel SET endpoint = 'https://localhost:$jsport/sms', sms_format = 'json', secret = 'bearer-secret',
        sender = 'CCRM', ca_file = '$ca' WHERE name = 'hook'});

# -- the two formats -----------------------------------------------------------
sql(q{SELECT ccrm.enqueue_message('sms', '+358401234567', 'Hei & tervetuloa, ă ș ț', channel => 'twilio', idempotency_key => 'tw-1')});
sql(q{SELECT ccrm.enqueue_message('sms', '+358407654321', 'Your code is 1234', channel => 'hook', idempotency_key => 'js-1')});
wait_for(q{SELECT count(*) = 2 FROM ccrm.outbox WHERE idempotency_key IN ('tw-1', 'js-1') AND status = 'sent'}, 'both SMS are sent');
my @t = received_sms("$dir/tw");
is(scalar @t, 1, 'the Twilio-style provider got one post');
is($t[0]{line}, 'POST /2010-04-01/Accounts/AC123/Messages.json', 'to the configured URL');
is($t[0]{headers}{'content-type'}, 'application/x-www-form-urlencoded', 'as a form');
is($t[0]{body}, 'To=%2B358401234567&From=%2B3584000000&Body=Hei%20%26%20tervetuloa%2C%20%C4%83%20%C8%99%20%C8%9B',
	'To, From and Body, UTF-8 and form-encoded');
is($t[0]{headers}{'idempotency-key'}, 'tw-1', 'with the Idempotency-Key of the message');
like(sql(q{SELECT provider_id FROM ccrm.outbox WHERE idempotency_key = 'tw-1'}), qr/^SM\d+-\d+$/, 'the provider sid is kept');
my @j = received_sms("$dir/js");
is(scalar @j, 1, 'the JSON webhook got one post');
is($j[0]{headers}{authorization}, 'Bearer bearer-secret', 'with the bearer token');
like($j[0]{body}, qr/^\{"id":\d+,"to":"\+358407654321","from":"CCRM","body":"Your code is 1234","encoding":"gsm7","segments":1,"idempotency_key":"js-1"\}$/,
	'a JSON object with encoding and segments');

# -- answers -------------------------------------------------------------------
sql(q{SELECT ccrm.enqueue_message('sms', '+358401111111', 'a #503x2 b', channel => 'twilio', idempotency_key => 'r503')});
sql(q{SELECT ccrm.enqueue_message('sms', '+358401111112', 'a #429x1 b', channel => 'twilio', idempotency_key => 'r429')});
sql(q{SELECT ccrm.enqueue_message('sms', '+358401111113', 'a #400 b', channel => 'twilio', idempotency_key => 'r400')});
sql(q{SELECT ccrm.enqueue_message('sms', '+358401111114', 'a #slow5 b', channel => 'twilio', idempotency_key => 'rslow')});
wait_for(q{SELECT status = 'sent' AND attempts = 3 FROM ccrm.outbox WHERE idempotency_key = 'r503'}, 'HTTP 503 twice, retried, then sent');
wait_for(q{SELECT status = 'sent' AND attempts = 2 FROM ccrm.outbox WHERE idempotency_key = 'r429'}, 'HTTP 429 is retried');
wait_for(q{SELECT status = 'failed' FROM ccrm.outbox WHERE idempotency_key = 'r400'}, 'HTTP 400 is permanent');
like(sql(q{SELECT last_error FROM ccrm.outbox WHERE idempotency_key = 'r400'}), qr/^HTTP 400: \{"error":"scripted 400 for this message"\}$/,
	'with the provider answer');
wait_for(q{SELECT last_error LIKE '%timed out%' FROM ccrm.outbox WHERE idempotency_key = 'rslow'}, 'a provider that does not answer in time is a timeout');
my @keys = map { $_->{headers}{'idempotency-key'} } grep { $_->{body} =~ /503x2/ } received_sms("$dir/tw");
is("@keys", 'r503', 'the retried post arrived once (its failed tries were not accepted)');

# -- ccrm.delivery_proxy is the only proxy delivery uses ---------------------------
$node->append_conf('postgresql.conf', "ccrm.delivery_proxy = 'http://127.0.0.1:1'\n");
$node->reload;
$node->poll_query_until('crm', q{SELECT current_setting('ccrm.delivery_proxy') <> ''}) or die "the reload was not seen";
sql(q{SELECT ccrm.enqueue_message('sms', '+358401111115', 'via the proxy', channel => 'twilio', idempotency_key => 'proxy-1')});
wait_for(q{SELECT status = 'queued' AND last_error LIKE '%127.0.0.1 port 1 %' FROM ccrm.outbox WHERE idempotency_key = 'proxy-1'},
	'with ccrm.delivery_proxy set, delivery goes through that proxy (here one that refuses)');
$node->adjust_conf('postgresql.conf', 'ccrm.delivery_proxy', "''");
$node->reload;
wait_for(q{SELECT status = 'sent' FROM ccrm.outbox WHERE idempotency_key = 'proxy-1'}, 'set back to empty, it goes direct again');
is(scalar(grep { $_->{body} =~ /via%20the%20proxy/ } received_sms("$dir/tw")), 1, 'and arrives once');

# -- quiet hours and suppression when it is sent -------------------------------
sql(q{INSERT INTO ccrm.contact (firstname, mobile, country, timezone) VALUES ('Ion', '+40721000001', 'RO', 'Europe/Bucharest'),
        ('Ana', '+40721000002', 'RO', 'Europe/Bucharest')});
# outside quiet hours when queued (a window hours away from now), inside them when sent
sql(q{SELECT ccrm.set_setting('sms_quiet_hours',
        to_char(now() AT TIME ZONE 'Europe/Bucharest' + interval '3 hours', 'HH24:MI') || '-' ||
        to_char(now() AT TIME ZONE 'Europe/Bucharest' + interval '4 hours', 'HH24:MI'))});
for my $who (['Ion', 'quiet-1'], ['Ana', 'optout-1'])
{
	sql(qq{SELECT ccrm.enqueue_message('sms', NULL, 'Salut', channel => 'twilio', entity => 'contact',
	        record_id => (SELECT id FROM ccrm.contact WHERE firstname = '$who->[0]'), idempotency_key => '$who->[1]',
	        not_before => now() + interval '3 s')});
}
# quiet hours from an hour ago to an hour ahead in Bucharest, the policy drop: the claim drops it
sql(q{SELECT ccrm.set_setting('sms_quiet_policy', 'drop')});
sql(q{SELECT ccrm.set_setting('sms_quiet_hours',
        to_char(now() AT TIME ZONE 'Europe/Bucharest' - interval '1 hour', 'HH24:MI') || '-' ||
        to_char(now() AT TIME ZONE 'Europe/Bucharest' + interval '1 hour', 'HH24:MI'))});
sql(q{UPDATE ccrm.contact SET sms_opt_out = true WHERE firstname = 'Ana'});
wait_for(q{SELECT status = 'dropped' FROM ccrm.outbox WHERE idempotency_key = 'quiet-1'}, 'quiet hours apply when the SMS is sent');
wait_for(q{SELECT status = 'suppressed' FROM ccrm.outbox WHERE idempotency_key = 'optout-1'}, 'an opt-out after enqueue applies when it is sent');
is(scalar(grep { $_->{body} =~ /Salut/ } received_sms("$dir/tw")), 0, 'the provider got neither');
sql(q{SELECT ccrm.set_setting('sms_quiet_hours', ''), ccrm.reset_setting('sms_quiet_policy')});

# -- a standby delivers nothing; promoted, it delivers ---------------------------
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby, 'replay');
# the primary stops sending; the standby sees its queue
$node->append_conf('postgresql.conf', "ccrm.enable_delivery = off\n");
$node->reload;
sleep 1;
sql(q{SELECT ccrm.enqueue_message('sms', '+35840' || (5000000 + i), 'standby ' || i, channel => 'twilio',
        idempotency_key => 'sb-' || i) FROM generate_series(1, 20) i});
$node->wait_for_catchup($standby, 'replay');
sleep 3;
is(sql($standby, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ccrm delivery'}), '0', 'a standby runs no delivery worker');
is(scalar(grep { $_->{body} =~ /standby/ } received_sms("$dir/tw")), 0, 'and sends nothing');
$node->stop('immediate');
$standby->promote;
wait_for(q{SELECT count(*) = 20 FROM ccrm.outbox WHERE idempotency_key LIKE 'sb-%' AND status = 'sent'},
	'the promoted standby delivers', $standby);
my %n;
$n{ $_->{headers}{'idempotency-key'} }++ for grep { $_->{body} =~ /standby/ } received_sms("$dir/tw");
is(scalar(grep { $n{$_} != 1 } keys %n) . '/' . scalar(keys %n), '0/20', 'each once');
$standby->stop;

# -- synchronous replication (remote_apply): what the old primary completed is not sent again
my $p2 = PostgreSQL::Test::Cluster->new('sync_primary');
$p2->init(allows_streaming => 1);
$p2->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.delivery_poll_interval = 200
});
$p2->start;
$p2->safe_psql('postgres', 'CREATE DATABASE crm');
$p2->backup('b2');
my $s2 = PostgreSQL::Test::Cluster->new('sync_standby');
$s2->init_from_backup($p2, 'b2', has_streaming => 1);
$s2->start;
$p2->append_conf('postgresql.conf', "synchronous_standby_names = 'sync_standby'\nsynchronous_commit = remote_apply\n");
$p2->reload;
ok($p2->poll_query_until('postgres', q{SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'sync_standby'}),
	'the standby is synchronous');
$p2->safe_psql('crm', 'CREATE EXTENSION ccrm');
$p2->safe_psql('crm', qq{SELECT ccrm.set_setting('sms_quiet_hours', '');   -- as above: no quiet hours at night
    SELECT ccrm.create_channel('twilio', 'sms', 'ccrm', is_default => true);
    UPDATE ccrm.channel SET endpoint = 'https://127.0.0.1:$twport/2010-04-01/Accounts/AC123/Messages.json',
        sms_format = 'twilio', username = 'AC123', secret = 'tok', sender = '+3584000000', ca_file = '$ca',
        parallelism = 2 WHERE name = 'twilio';
    SELECT ccrm.enqueue_message('sms', '+35840' || (6000000 + i), 'sync ' || i, channel => 'twilio',
        idempotency_key => 'sync-' || i) FROM generate_series(1, 40) i});
ok($p2->poll_query_until('crm', q{SELECT count(*) >= 20 FROM ccrm.outbox WHERE idempotency_key LIKE 'sync-%' AND status = 'sent'}),
	'the synchronous primary delivers');
my $done = $p2->safe_psql('crm', q{SELECT string_agg(idempotency_key, ',' ORDER BY id) FROM ccrm.outbox WHERE idempotency_key LIKE 'sync-%' AND status = 'sent'});
$p2->stop('immediate');
$s2->promote;
ok($s2->poll_query_until('crm', q{SELECT count(*) = 40 FROM ccrm.outbox WHERE idempotency_key LIKE 'sync-%' AND status = 'sent'}),
	'the promoted synchronous standby delivers the rest');
my %m;
$m{ $_->{headers}{'idempotency-key'} }++ for grep { $_->{body} =~ /sync/ } received_sms("$dir/tw");
my @again = grep { ($m{$_} // 0) > 1 } split /,/, $done;
is(scalar @again, 0, 'nothing the old primary had marked sent is sent again (' . scalar(split /,/, $done) . ' were)');
is(scalar(grep { !$m{"sync-$_"} } 1 .. 40), 0, 'nothing is lost');
cmp_ok(scalar(grep { $m{$_} > 1 } keys %m), '<=', 2, 'repeats only among those in flight at the crash (parallelism 2), same Idempotency-Key');
$s2->stop;

kill_sink($tw);
kill_sink($js);
done_testing();
