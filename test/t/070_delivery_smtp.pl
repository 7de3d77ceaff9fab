# Delivery of email by ccrm's worker to a real SMTP server on loopback
# (smtp_sink.pl: STARTTLS, AUTH, TLS verified against a CA this test makes):
# what the server receives (headers, a stable Message-ID, multipart bodies,
# HTML escaping, UTF-8 subjects), permanent and temporary failures,
# timeouts, the rate limit, suppression at send time, a channel that keeps
# failing is paused and resumed, bad configuration is refused when saved,
# and kill -9 of the SMTP server and of PostgreSQL during a batch: every
# message arrives, and what arrives twice is byte for byte the same message.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Digest::SHA qw(sha256_hex);
use FindBin;
use lib $FindBin::RealBin;
use CcrmDelivery;

my $dir = PostgreSQL::Test::Utils::tempdir;
# proxy variables that lead nowhere: delivery goes direct all the same
dead_proxy_environment();
my ($ca, $cert, $key) = make_certs("$dir/tls");
mkdir "$dir/sink";
my @sink_args = ('--dir', "$dir/sink", '--cert', $cert, '--key', $key, '--user', 'crm', '--password', 's3cret');
my ($sink, $port) = start_sink('smtp_sink.pl', '--port', 0, @sink_args);

my $node = PostgreSQL::Test::Cluster->new('delivery');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ccrm'
ccrm.database_name = 'crm'
ccrm.outbox_retry_delay = 1
ccrm.outbox_max_attempts = 4
ccrm.delivery_poll_interval = 200
ccrm.delivery_pause_after = 6
ccrm.delivery_pause_time = 5
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->safe_psql('crm', 'CREATE EXTENSION ccrm');

sub sql { return $node->safe_psql('crm', $_[0]) }
sub wait_for { my ($q, $what) = @_; ok($node->poll_query_until('crm', $q), $what) or diag(outbox_state($node)) }
sub mails_to { my ($re) = @_; return grep { $_->{envelope}{to} =~ $re } received_mails("$dir/sink") }

# -- bad configuration is an error when saved -------------------------------
sql(q{SELECT ccrm.create_channel('mail', 'email', 'ccrm', is_default => true)});
my %bad = (
	"endpoint = 'ftp://127.0.0.1/'" => qr/endpoint scheme "ftp" cannot deliver email/,
	"endpoint = 'smtp://127.0.0.1:$port', username = 'crm'" => qr/username "crm" is set but the secret is missing/,
	"endpoint = 'smtp://127.0.0.1:$port', require_tls = false, username = 'crm', secret = 'x'" =>
	  qr/the password would be sent in clear/,
	"ca_file = '$dir/no-such-ca.pem'" => qr/CA file ".*no-such-ca.pem" cannot be used: No such file/,
	"ca_file = 'relative.pem'" => qr/is not an absolute path/,
	"sender = 'Crm <crm\@example.com>'" => qr/is not an email address/,
);
for my $set (sort keys %bad)
{
	my ($rc, $out, $err) = $node->psql('crm', "UPDATE ccrm.channel SET $set WHERE name = 'mail'");
	like($err, $bad{$set}, "refused when saved: $set");
}
is(sql(q{SELECT endpoint IS NULL FROM ccrm.channel WHERE name = 'mail'}), 't', 'a refused configuration changed nothing');
is(sql(q{SELECT paused_reason FROM ccrm.delivery_stats WHERE channel = 'mail'}),
	'not configured: the channel has no endpoint', 'a channel without endpoint says so');

sql(qq{UPDATE ccrm.channel SET endpoint = 'smtp://127.0.0.1:$port', username = 'crm', secret = 's3cret',
        sender = 'crm\@example.com', ca_file = '$ca', parallelism = 4, connect_timeout = '2 s', send_timeout = '5 s'
      WHERE name = 'mail'});
is(sql(q{SELECT has_table_privilege('public', 'ccrm.channel', 'SELECT'), has_column_privilege('public', 'ccrm.channels', 'endpoint', 'SELECT')}),
	'f|t', 'the secrets are readable by admins only; ccrm.channels shows the rest');

# -- a plain message: TLS, AUTH, headers, stable Message-ID ------------------
wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ccrm delivery' AND datname = 'crm'},
	'the delivery worker runs in ccrm.database_name');
sql(q{SELECT ccrm.enqueue_message('email', 'anna@example.org', 'Hello Anna,' || chr(10) || '.a line with a dot' ||
        chr(10) || 'bye', subject => 'Your order', channel => 'mail', reply_to => 'help@example.com',
        idempotency_key => 'order-1')});
wait_for(q{SELECT status = 'sent' FROM ccrm.outbox WHERE idempotency_key = 'order-1'}, 'a message is sent');
my @m = mails_to(qr/anna\@example\.org/);
is(scalar @m, 1, 'the server received it once');
my $h = $m[0]{headers};
is($h->{'message-id'}, '<' . sha256_hex('order-1') . '@example.com>', 'Message-ID is the SHA-256 of the idempotency key at the sender domain');
is($h->{from}, 'crm@example.com', 'From is the channel sender');
is($h->{'reply-to'}, 'help@example.com', 'Reply-To');
is($h->{subject}, 'Your order', 'an ASCII subject as it is');
like($h->{date}, qr/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/, 'Date in RFC 5322 form');
is($m[0]{envelope}{tls} . '|' . $m[0]{envelope}{auth}, '1|crm', 'sent over STARTTLS after AUTH');
like($m[0]{body}, qr/^Hello Anna,\r\n\.a line with a dot\r\nbye\r\n$/, 'lines end in CRLF, a leading dot arrives (dot-stuffed on the way)');
is(mail_part($m[0], 'text/plain'), "Hello Anna,\n.a line with a dot\nbye\n", 'the text part');
like(sql(q{SELECT provider_id FROM ccrm.outbox WHERE idempotency_key = 'order-1'}), qr/queued as \d+-\d+/,
	'the server answer is kept as provider_id');

# -- a template: HTML escaping, UTF-8 subject, multipart ---------------------
sql(q{INSERT INTO ccrm.contact (firstname, lastname, email) VALUES ('<b>Tom & "Jerry"</b>', 'Mäkinen', 'tom@example.org')});
sql(q{SELECT ccrm.create_message_template('welcome', 'email', subject => 'Tervetuloa, $contact-lastname$ – äö ✓',
        body => 'Hei $contact-firstname$', html_body => '<p>Hei $contact-firstname$</p>', channel => 'mail')});
sql(q{SELECT count(*) FROM ccrm.enqueue_template('welcome', ARRAY(SELECT id FROM ccrm.contact WHERE email = 'tom@example.org'),
        key_prefix => 'welcome-')});
wait_for(q{SELECT count(*) = 1 FROM ccrm.outbox WHERE idempotency_key LIKE 'welcome-%' AND status = 'sent'},
	'a templated message is sent');
@m = mails_to(qr/tom\@example\.org/);
is(scalar @m, 1, 'received once');
like($m[0]{headers}{'content-type'}, qr{^multipart/alternative; boundary="=_[0-9a-f]{32}"$}, 'multipart/alternative with an HTML body');
like($m[0]{headers}{subject}, qr/^=\?UTF-8\?B\?/, 'a UTF-8 subject is an encoded-word');
is(decode_header_words($m[0]{headers}{subject}), 'Tervetuloa, Mäkinen – äö ✓', 'and decodes to the subject');
is(mail_part($m[0], 'text/plain'), "Hei <b>Tom & \"Jerry\"</b>\n", 'the text part does not escape');
is(mail_part($m[0], 'text/html'), "<p>Hei &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;</p>\n", 'the HTML part escapes the values');

# -- answers of the server ---------------------------------------------------
sql(q{SELECT ccrm.enqueue_message('email', 'rcpt550-nobody@example.org', 'x', subject => 's', channel => 'mail', idempotency_key => 'perm-1')});
sql(q{SELECT ccrm.enqueue_message('email', 'rcpt451x2-busy@example.org', 'x', subject => 's', channel => 'mail', idempotency_key => 'temp-1')});
wait_for(q{SELECT status = 'failed' FROM ccrm.outbox WHERE idempotency_key = 'perm-1'}, 'SMTP 5xx is a permanent failure');
like(sql(q{SELECT last_error FROM ccrm.outbox WHERE idempotency_key = 'perm-1'}), qr/550 5\.1\.1 .*no such mailbox/,
	'it ends failed with the server answer');
is(sql(q{SELECT attempts FROM ccrm.outbox WHERE idempotency_key = 'perm-1'}), '1', 'a permanent failure is not retried');
wait_for(q{SELECT status = 'sent' FROM ccrm.outbox WHERE idempotency_key = 'temp-1'}, 'SMTP 4xx is retried until it is sent');
is(sql(q{SELECT attempts FROM ccrm.outbox WHERE idempotency_key = 'temp-1'}), '3', 'two 451 answers, then sent');

# -- timeouts ----------------------------------------------------------------
sql(q{UPDATE ccrm.channel SET send_timeout = '2 s' WHERE name = 'mail'});
sleep 2;	# the worker reads the configuration again every second
sql(q{SELECT ccrm.enqueue_message('email', 'slow6-late@example.org', 'x', subject => 's', channel => 'mail', idempotency_key => 'slow-1')});
wait_for(q{SELECT last_error LIKE '%timed out%' FROM ccrm.outbox WHERE idempotency_key = 'slow-1'}, 'a server that answers too late is a timeout');
is(sql(q{SELECT failed_timeout >= 1 AND last_error_class IS NOT NULL FROM ccrm.delivery_stats WHERE channel = 'mail'}), 't',
	'counted as a timeout');
sql(q{UPDATE ccrm.channel SET send_timeout = '5 s' WHERE name = 'mail'});

# -- suppression at send time ------------------------------------------------
sql(q{INSERT INTO ccrm.contact (firstname, email) VALUES ('Olga', 'olga@example.org')});
sql(q{SELECT ccrm.enqueue_message('email', NULL, 'later', subject => 's', channel => 'mail', entity => 'contact',
        record_id => (SELECT id FROM ccrm.contact WHERE email = 'olga@example.org'), idempotency_key => 'optout-1',
        not_before => now() + interval '2 s')});
sql(q{UPDATE ccrm.contact SET email_opt_out = true WHERE email = 'olga@example.org'});
wait_for(q{SELECT status = 'suppressed' FROM ccrm.outbox WHERE idempotency_key = 'optout-1'},
	'a contact who opted out after the message was queued gets nothing');
is(scalar(mails_to(qr/olga/)), 0, 'the server received nothing for them');

# -- the rate limit ------------------------------------------------------------
sql(q{UPDATE ccrm.channel SET rate_limit = 10 WHERE name = 'mail'});
sql(q{SELECT ccrm.enqueue_message('email', 'rate' || i || '@example.org', 'x', subject => 's', channel => 'mail',
        idempotency_key => 'rate-' || i) FROM generate_series(1, 30) i});
wait_for(q{SELECT count(*) = 30 FROM ccrm.outbox WHERE idempotency_key LIKE 'rate-%' AND status = 'sent'}, 'a rate-limited batch is sent');
my $spread = sql(q{SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM ccrm.outbox WHERE idempotency_key LIKE 'rate-%'});
# 10 at once (a second of tokens), then 10 a second: about 2 s; generous bounds
cmp_ok($spread, '>=', 1.5, "30 messages at 10/s take at least 1.5 s ($spread s)");
sql(q{UPDATE ccrm.channel SET rate_limit = NULL WHERE name = 'mail'});

# -- kill -9 of the SMTP server during a batch ------------------------------
sub batch_check
{
	my ($prefix, $n, $max_repeats, $what) = @_;
	my %by_id;
	push @{ $by_id{ $_->{headers}{'message-id'} } }, $_ for mails_to(qr/^<?\Q$prefix\E/);
	my @want = map { '<' . sha256_hex("$prefix-$_") . '@example.com>' } 1 .. $n;
	is(scalar(grep { !$by_id{$_} } @want), 0, "$what: every message arrived");
	my @twice = grep { @{ $by_id{$_} } > 1 } keys %by_id;
	cmp_ok(scalar @twice, '<=', $max_repeats, "$what: " . scalar(@twice) . " arrived more than once (at most $max_repeats, those in flight)");
	is(scalar(grep { my $r = $by_id{$_}; grep { $_->{raw} ne $r->[0]{raw} } @$r } @twice), 0,
		"$what: a repeat is byte for byte the same message (same Message-ID)");
}

sql(q{UPDATE ccrm.channel SET parallelism = 4 WHERE name = 'mail'});
sql(q{SELECT ccrm.enqueue_message('email', 'kill' || i || '@example.org', 'x', subject => 's', channel => 'mail',
        idempotency_key => 'kill-' || i) FROM generate_series(1, 300) i});
my $t0 = time;
usleep(20_000) while scalar(mails_to(qr/^<?kill/)) < 30 && time - $t0 < 60;
kill_sink($sink);
note('SMTP server killed after ' . scalar(mails_to(qr/^<?kill/)) . ' messages');
sleep 1;
($sink, $port) = start_sink('smtp_sink.pl', '--port', $port, @sink_args);
wait_for(q{SELECT count(*) = 300 FROM ccrm.outbox WHERE idempotency_key LIKE 'kill-%' AND status = 'sent'},
	'after the SMTP server comes back every message is sent (the channel, paused while it was down, resumes by itself)');
batch_check('kill', 300, 4, 'SMTP server killed');

# -- a crash of PostgreSQL (kill -9 of the sending process) during a batch ----
sql(q{SELECT ccrm.enqueue_message('email', 'crash' || i || '@example.org', 'x', subject => 's', channel => 'mail',
        idempotency_key => 'crash-' || i) FROM generate_series(1, 300) i});
$t0 = time;
usleep(20_000) while scalar(mails_to(qr/^<?crash/)) < 40 && time - $t0 < 60;
my $worker = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm delivery'});
kill 'KILL', $worker;	# the postmaster takes a crashed process for a crash of the server and restarts it
note('PostgreSQL crashed after ' . scalar(mails_to(qr/^<?crash/)) . ' messages');
$node->poll_query_until('crm', 'SELECT true');
wait_for(q{SELECT count(*) = 300 FROM ccrm.outbox WHERE idempotency_key LIKE 'crash-%' AND status = 'sent'},
	'after a crash and restart every message is sent');
# in flight at the crash: up to parallelism transfers plus those whose completion was not yet committed
batch_check('crash', 300, 8, 'PostgreSQL killed');

# -- a channel that keeps failing is paused, and resumed by hand -------------
sql(q{SELECT ccrm.create_channel('deadmail', 'email', 'ccrm')});
sql(qq{UPDATE ccrm.channel SET endpoint = 'smtp://127.0.0.1:1', sender = 'crm\@example.com', ca_file = '$ca',
        connect_timeout = '1 s' WHERE name = 'deadmail'});
sql(q{SELECT ccrm.enqueue_message('email', 'x' || i || '@example.org', 'x', subject => 's', channel => 'deadmail',
        idempotency_key => 'dead-' || i) FROM generate_series(1, 8) i});
wait_for(q{SELECT paused FROM ccrm.delivery_stats WHERE channel = 'deadmail'}, 'a channel that keeps failing is paused');
like(sql(q{SELECT paused_reason FROM ccrm.delivery_stats WHERE channel = 'deadmail'}),
	qr/^\d+ failures in a row; the last one: .*(connect|Connection refused)/i, 'with the reason shown');
is(sql(q{SELECT failed_connect >= 6 AND in_flight = 0 FROM ccrm.delivery_stats WHERE channel = 'deadmail'}), 't',
	'counted as connection failures; nothing is in flight while it is paused');
is(sql(q{SELECT ccrm.resume_channel('deadmail')}), 't', 'resume_channel ends the pause');
is(sql(q{SELECT paused FROM ccrm.delivery_stats WHERE channel = 'deadmail'}), 'f', 'the channel is not paused');
my ($rc, $out, $err) = $node->psql('crm', q{SELECT ccrm.resume_channel('nope')});
like($err, qr/channel "nope" does not exist/, 'resume_channel of an unknown channel is an error');
is(sql(q{SELECT count(*) FROM ccrm.delivery_stats WHERE channel = 'mail' AND sent >= 600 AND failed_permanent >= 1}), '1',
	'the statistics count what was sent and failed');

kill_sink($sink);
$node->stop;
done_testing();
