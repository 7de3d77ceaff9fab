# Helpers of the delivery tests and benchmark: a CA and a server certificate
# made with openssl, the loopback sinks (smtp_sink.pl, http_sink.pl) started
# in their own process group so that kill -9 takes every connection
# process with them, and readers of what they received.
package CcrmDelivery;
use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use MIME::Base64;
use MIME::QuotedPrint;
use POSIX ();

our @EXPORT = qw(dead_proxy_environment outbox_state make_certs start_sink kill_sink received_mails received_sms mail_part decode_header_words);

my $here = dirname(__FILE__);

sub run_openssl
{
	# its progress output is not the test's
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>', '/dev/null';
		open STDERR, '>', '/dev/null';
		exec('openssl', @_) or POSIX::_exit(127);
	}
	waitpid($pid, 0);
	$? == 0 or die "openssl @_ failed\n";
}

# A CA and a certificate for localhost and 127.0.0.1 signed by it, in $dir.
sub make_certs
{
	my ($dir) = @_;
	mkdir $dir;
	open my $fh, '>', "$dir/ext.cnf" or die $!;
	print $fh "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
	close $fh;
	run_openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/ca.key",
		'-out', "$dir/ca.pem", '-days', '2', '-subj', '/CN=ccrm test CA');
	run_openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/server.key",
		'-out', "$dir/server.csr", '-subj', '/CN=localhost');
	run_openssl('x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.pem", '-CAkey', "$dir/ca.key",
		'-CAcreateserial', '-out', "$dir/server.pem", '-days', '2', '-extfile', "$dir/ext.cnf");
	chmod 0644, "$dir/ca.pem", "$dir/server.pem", "$dir/server.key";
	return ("$dir/ca.pem", "$dir/server.pem", "$dir/server.key");
}

# Start smtp_sink.pl or http_sink.pl with options; returns (pid, port).
sub start_sink
{
	my ($script, @args) = @_;
	pipe(my $r, my $w) or die $!;
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		POSIX::setsid();
		close $r;
		open STDOUT, '>&', $w or die $!;
		exec($^X, "$here/$script", @args) or POSIX::_exit(127);
	}
	close $w;
	my $line = <$r>;
	close $r;
	die "$script did not start\n" unless defined $line && $line =~ /^ready (\d+)/;
	return ($pid, $1);
}

# kill -9 of the sink and every connection process it forked.
sub kill_sink
{
	my ($pid, $signal) = @_;
	kill $signal // 'KILL', -$pid;
	waitpid($pid, 0);
}

# The mails in $dir/mail: a list of {file, envelope => {..}, headers => {lc name => value}, raw, body}.
sub received_mails
{
	my ($dir) = @_;
	my @out;
	for my $f (sort glob("$dir/mail/*.eml"))
	{
		open my $fh, '<', $f or next;
		binmode $fh;
		local $/;
		my $all = <$fh>;
		close $fh;
		my ($env, $raw) = split /\r\n\r\n/, $all, 2;
		my %envelope = map { /^X-Sink-(\w+): ?(.*)$/ ? (lc($1) => $2) : () } split /\r\n/, $env;
		my ($head, $body) = split /\r\n\r\n/, $raw, 2;
		$head =~ s/\r\n[ \t]+/ /g;
		my %headers = map { /^([^:]+):\s?(.*)$/ ? (lc($1) => $2) : () } split /\r\n/, $head;
		push @out, { file => $f, envelope => \%envelope, headers => \%headers, raw => $raw, body => $body };
	}
	return @out;
}

# The requests in $dir/sms: a list of {line, headers => {lc name => value}, body}.
sub received_sms
{
	my ($dir) = @_;
	my @out;
	for my $f (sort glob("$dir/sms/*.req"))
	{
		open my $fh, '<', $f or next;
		local $/;
		my $all = <$fh>;
		close $fh;
		my ($head, $body) = split /\n\n/, $all, 2;
		my ($line, @h) = split /\n/, $head;
		my %headers = map { /^([^:]+):\s?(.*)$/ ? (lc($1) => $2) : () } @h;
		push @out, { line => $line, headers => \%headers, body => $body };
	}
	return @out;
}

# The decoded text of the part of a mail with this Content-Type (text/plain, text/html).
# Line ends come back as "\n" (decode_qp makes them so; base64 parts are made alike).
sub mail_part
{
	my ($mail, $type) = @_;
	my @parts;
	if (($mail->{headers}{'content-type'} // '') =~ /boundary="([^"]+)"/)
	{
		my $b = $1;
		@parts = grep { /\S/ && !/^--/ } split /\r\n--\Q$b\E(?:--)?\r\n/, "\r\n" . $mail->{body};
	}
	else
	{
		my $h = join("\r\n", map { "$_: $mail->{headers}{$_}" } grep { /^content-/ } keys %{ $mail->{headers} });
		@parts = ("$h\r\n\r\n$mail->{body}");
	}
	for my $p (@parts)
	{
		my ($h, $b) = split /\r\n\r\n/, $p, 2;
		next unless $h =~ /content-type:\s*\Q$type\E/i;
		my $text = $h =~ /content-transfer-encoding:\s*base64/i ? decode_base64($b)
		  : $h =~ /content-transfer-encoding:\s*quoted-printable/i ? decode_qp($b) : $b;
		$text =~ s/\r\n/\n/g;
		return $text;
	}
	return undef;
}

# A header with RFC 2047 B encoded-words, decoded to UTF-8 bytes.
sub decode_header_words
{
	my ($v) = @_;
	$v =~ s/\?=\s+=\?/?==?/g;
	$v =~ s/=\?UTF-8\?B\?([^?]*)\?=/decode_base64($1)/gie;
	return $v;
}

# Proxy variables that lead nowhere, as on a machine whose environment sends
# web traffic through a proxy: the clusters a test starts inherit them, and
# delivery must go direct all the same (only ccrm.delivery_proxy counts).
sub dead_proxy_environment
{
	$ENV{$_} = 'http://127.0.0.1:9' for qw(http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY);
	delete $ENV{$_} for qw(no_proxy NO_PROXY);
}

# The outbox as the worker left it, for the diagnostics of a failed wait.
sub outbox_state
{
	my ($node) = @_;
	my ($rc, $out) = $node->psql('crm',
		q{SELECT id, channel_id, idempotency_key, status, attempts, last_error FROM ccrm.outbox ORDER BY id DESC LIMIT 20});
	return "outbox (newest first):\n$out";
}

1;
