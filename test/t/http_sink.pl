#!/usr/bin/perl
# An HTTPS server on loopback standing in for an SMS provider, for the
# delivery tests and the benchmark.  Built on HTTP::Daemon; each accepted
# connection is wrapped in TLS (IO::Socket::SSL) and served by its own
# process (fork), keep-alive included.
#
#   http_sink.pl --port N --dir DIR --cert F --key F
#                [--user U --password P | --token T] [--count-only]
#
# Every request answered 2xx becomes DIR/sms/<n>.req: the request line, the
# headers and the body.  With --count-only only a line per request is
# appended to DIR/count (the benchmark).  Answers: 201 with {"sid": ...}
# for a path ending in Messages.json (Twilio), else 200 with {"id": ...};
# 401 when the credentials are not the ones given.  A body that contains
# "#CODExN" (e.g. #503x2, #429x1) is answered CODE the first N times for its
# Idempotency-Key; "#CODE" alone (e.g. #400) always; "#slowN" answers N
# seconds late.  Prints "ready PORT" once it listens.
use strict;
use warnings;
use Getopt::Long;
use HTTP::Daemon;
use HTTP::Response;
use IO::Socket::SSL;
use MIME::Base64;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);

my %o = (port => 0, dir => '.');
GetOptions(\%o, 'port=i', 'dir=s', 'cert=s', 'key=s', 'user=s', 'password=s', 'token=s', 'count-only')
  or die "bad options\n";
mkdir "$o{dir}/sms";
mkdir "$o{dir}/state";

# a TLS connection that HTTP::Daemon can still read requests from
package CcrmTlsConn;
our @ISA = ('IO::Socket::SSL', 'HTTP::Daemon::ClientConn');

package main;

sub bump
{
	my ($key) = @_;
	$key =~ s/[^A-Za-z0-9_.@-]/_/g;
	my $f = "$o{dir}/state/$key";
	open my $fh, '>>', $f or die "$f: $!";
	print $fh "x\n";
	close $fh;
	return (-s $f) >> 1;
}

my $seq = 0;
sub answer
{
	my ($req) = @_;
	my $auth = $req->header('Authorization') // '';
	if (defined $o{user})
	{
		my $want = 'Basic ' . encode_base64("$o{user}:" . ($o{password} // ''), '');
		return HTTP::Response->new(401, 'Unauthorized', ['Content-Type' => 'application/json'],
			'{"message":"Authenticate"}') if $auth ne $want;
	}
	if (defined $o{token})
	{
		return HTTP::Response->new(401, 'Unauthorized', ['Content-Type' => 'application/json'],
			'{"error":"bad token"}') if $auth ne "Bearer $o{token}";
	}
	my $body = $req->content // '';
	my $key = $req->header('Idempotency-Key') // '';
	(my $plain = $body) =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	sleep $1 if $plain =~ /#slow(\d+)/;
	if ($plain =~ /#(\d{3})x(\d+)/)
	{
		my ($code, $times) = ($1, $2);
		return HTTP::Response->new($code, 'Scripted', ['Content-Type' => 'application/json', 'Retry-After' => '1'],
			qq({"error":"scripted $code"})) if bump("key-$key-$code") <= $times;
	}
	elsif ($plain =~ /#(\d{3})\b/)
	{
		return HTTP::Response->new($1, 'Scripted', ['Content-Type' => 'application/json'],
			qq({"error":"scripted $1 for this message"}));
	}
	$seq++;
	my $id = "$$-$seq";
	if ($o{'count-only'})
	{
		open my $fh, '>>', "$o{dir}/count" or die $!;
		syswrite $fh, "$id\n";
		close $fh;
	}
	else
	{
		my $tmp = "$o{dir}/sms/.$id.tmp";
		open my $fh, '>', $tmp or die "$tmp: $!";
		binmode $fh;
		print $fh $req->method . ' ' . $req->uri . "\n" . $req->headers->as_string . "\n" . $body;
		close $fh;
		rename $tmp, "$o{dir}/sms/$id.req" or die $!;
	}
	return $req->uri->path =~ /Messages\.json$/
	  ? HTTP::Response->new(201, 'Created', ['Content-Type' => 'application/json'], qq({"sid":"SM$id","status":"queued"}))
	  : HTTP::Response->new(200, 'OK', ['Content-Type' => 'application/json'], qq({"id":"$id"}));
}

my $d = HTTP::Daemon->new(LocalAddr => '127.0.0.1', LocalPort => $o{port}, Listen => 128, ReuseAddr => 1)
  or die "listen on $o{port}: $!\n";
$SIG{CHLD} = sub { 1 while waitpid(-1, POSIX::WNOHANG()) > 0 };
$| = 1;
print "ready " . $d->sockport . "\n";
while (1)
{
	my $c = $d->accept or next;
	my $pid = fork;
	if (defined $pid && $pid == 0)
	{
		$SIG{CHLD} = 'DEFAULT';
		# the header and the body of an answer are two writes: without this the
		# second waits for the client's delayed ACK (40 ms an answer)
		setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
		IO::Socket::SSL->start_SSL($c, SSL_server => 1, SSL_cert_file => $o{cert}, SSL_key_file => $o{key})
		  or POSIX::_exit(1);
		bless $c, 'CcrmTlsConn';
		while (my $req = $c->get_request)
		{
			$c->send_response(answer($req));
		}
		POSIX::_exit(0);
	}
	$c->close;
}
