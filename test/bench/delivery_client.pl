#!/usr/bin/perl
# The plain client of the delivery benchmark (60-delivery.sh): measures what
# the loopback sinks (test/t/smtp_sink.pl, http_sink.pl) can take.  It sends
# the same messages the benchmark queues for ccrm's worker, over the same
# number of connections, each connection one process that sends its share
# one message after the other on that connection (SMTP: STARTTLS, AUTH
# PLAIN, then MAIL/RCPT/DATA per message; HTTPS: keep-alive, one POST per
# message).  Prints the seconds from before the first connection to the
# last answer, and fails if any message is not accepted.
#
#   delivery_client.pl smtp --port P --ca F --user U --password S --n N --conns C
#   delivery_client.pl sms  --port P --ca F --user U --password S --n N --conns C --path /...
#
# The messages (recipient, subject, body of message i) follow the formulas
# of 60-delivery.sh; change both together.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::SSL;
use MIME::Base64;
use Digest::SHA qw(sha256_hex);
use POSIX ();
use Time::HiRes qw(time);

my $mode = shift // die "usage: delivery_client.pl smtp|sms options\n";
my %o = (conns => 1);
GetOptions(\%o, 'port=i', 'ca=s', 'user=s', 'password=s', 'n=i', 'conns=i', 'path=s') or die "bad options\n";

sub body_of { my ($i) = @_; return "Dear customer $i,\r\nyour order $i has shipped and arrives within three days. " .
	  "Thank you for shopping with us.\r\n" }

sub fail { print STDERR "delivery_client: $_[0]\n"; POSIX::_exit(1) }

# read one SMTP reply (all its lines); returns the code of the last line
sub smtp_reply
{
	my ($s) = @_;
	while (defined(my $line = <$s>))
	{
		return substr($line, 0, 3) if $line =~ /^\d{3} /;
	}
	fail('the SMTP server closed the connection');
}

sub smtp_cmd
{
	my ($s, $cmd, $want) = @_;
	print $s "$cmd\r\n";
	my $code = smtp_reply($s);
	fail("\"$cmd\" got $code") unless $code =~ $want;
}

sub smtp_conn
{
	my (@ids) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $o{port}) or fail("connect: $!");
	smtp_reply($s);
	smtp_cmd($s, 'EHLO client', qr/^250/);
	smtp_cmd($s, 'STARTTLS', qr/^220/);
	IO::Socket::SSL->start_SSL($s, SSL_ca_file => $o{ca}, SSL_verifycn_name => 'localhost',
		SSL_verify_mode => SSL_VERIFY_PEER) or fail("TLS: $SSL_ERROR");
	smtp_cmd($s, 'EHLO client', qr/^250/);
	smtp_cmd($s, 'AUTH PLAIN ' . encode_base64("\0$o{user}\0$o{password}", ''), qr/^235/);
	for my $i (@ids)
	{
		my $to = "bench$i\@example.org";
		my $key = "bd-mail-$i";
		my $msg = "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nFrom: crm\@example.com\r\nTo: $to\r\n" .
		  "Subject: Your order $i\r\nMessage-ID: <" . sha256_hex($key) . "\@example.com>\r\nMIME-Version: 1.0\r\n" .
		  "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" . body_of($i);
		smtp_cmd($s, 'MAIL FROM:<crm@example.com>', qr/^250/);
		smtp_cmd($s, "RCPT TO:<$to>", qr/^250/);
		smtp_cmd($s, 'DATA', qr/^354/);
		print $s $msg . ".\r\n";
		my $code = smtp_reply($s);
		fail("the message got $code") unless $code eq '250';
	}
	smtp_cmd($s, 'QUIT', qr/^221/);
}

sub uri_escape { my ($v) = @_; $v =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge; return $v }

sub sms_conn
{
	my (@ids) = @_;
	my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $o{port}, SSL_ca_file => $o{ca},
		SSL_verifycn_name => 'localhost', SSL_verify_mode => SSL_VERIFY_PEER) or fail("connect: $SSL_ERROR");
	my $auth = encode_base64("$o{user}:$o{password}", '');
	for my $i (@ids)
	{
		my $body = 'To=' . uri_escape('+3584' . (10000000 + $i)) . '&From=' . uri_escape('+3584000000') .
		  '&Body=' . uri_escape("Your code is $i. It is valid for ten minutes.");
		print $s "POST $o{path} HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\nAuthorization: Basic $auth\r\n" .
		  "User-Agent: ccrm\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n" .
		  "Idempotency-Key: bd-sms-$i\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
		my $status = <$s>;
		fail('the HTTP server closed the connection') unless defined $status;
		my $len = 0;
		while (defined(my $h = <$s>))
		{
			last if $h eq "\r\n";
			$len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
		}
		my $got = '';
		while (length($got) < $len) { my $n = read($s, $got, $len - length($got), length($got)); fail('short answer') unless $n }
		fail("the request got $status") unless $status =~ m{^HTTP/1\.\d 2\d\d };
	}
	close $s;
}

my $t0 = time;
my @pids;
for my $c (0 .. $o{conns} - 1)
{
	my @ids = grep { $_ % $o{conns} == $c } 1 .. $o{n};
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		$mode eq 'smtp' ? smtp_conn(@ids) : sms_conn(@ids);
		POSIX::_exit(0);
	}
	push @pids, $pid;
}
my $bad = 0;
for (@pids) { waitpid($_, 0); $bad++ if $? != 0 }
die "delivery_client: $bad connections failed\n" if $bad;
printf "%.4f\n", time - $t0;
