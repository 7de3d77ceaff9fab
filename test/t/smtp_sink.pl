#!/usr/bin/perl
# An SMTP server on loopback that stores what it receives, for the delivery
# tests and the benchmark.  Built on Net::Server::Mail::ESMTP (with its
# STARTTLS); AUTH PLAIN and LOGIN are added here, since that library has no
# AUTH.  One process per connection (fork), so connections run in parallel.
#
#   smtp_sink.pl --port N --dir DIR [--cert F --key F] [--smtps]
#                [--user U --password P] [--count-only]
#
# Every accepted message becomes DIR/mail/<n>.eml: "X-Sink-" lines with the
# envelope (From, To, TLS, Auth), a blank line, then the data as received.
# With --count-only only a line per message is appended to DIR/count (the
# benchmark).  The recipient's local part scripts the answers:
#   rcpt550-...   RCPT gets "550 5.1.1 <addr>: no such mailbox"
#   rcpt451x2-... RCPT gets "451 4.3.0 try again later" the first 2 times
#   data554-...   the message gets "554 5.6.0 message refused" after DATA
#   slow3-...     the answer after DATA comes 3 seconds late
# Listening starts before the script prints "ready PORT" on stdout (--port 0:
# any free port).
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::INET;
use IO::Socket::SSL;
use MIME::Base64;
use Net::Server::Mail::ESMTP;
use POSIX ();

my %o = (port => 0, dir => '.');
GetOptions(\%o, 'port=i', 'dir=s', 'cert=s', 'key=s', 'smtps', 'user=s', 'password=s', 'count-only')
  or die "bad options\n";
mkdir "$o{dir}/mail";
mkdir "$o{dir}/state";

package CcrmSinkAuth;
our @ISA = (q{Net::Server::Mail::ESMTP::Extension});
use MIME::Base64;
sub new { my ($class, $server) = @_; return bless {}, $class }
sub verb { return (['AUTH' => \&CcrmSinkAuth::auth]) }
sub keyword { 'AUTH' }
sub parameter { 'PLAIN LOGIN' }
sub option { () }
sub reply { () }

sub check
{
	my ($server, $user, $pass) = @_;
	if (defined $o{user} && $user eq $o{user} && $pass eq ($o{password} // ''))
	{
		$server->{ccrm_auth} = $user;
		$server->reply(235, '2.7.0 Authentication successful');
	}
	else { $server->reply(535, '5.7.8 Authentication credentials invalid') }
	return;
}

sub auth
{
	my ($server, $args) = @_;
	my ($mech, $initial) = split ' ', ($args // ''), 2;
	$mech = uc($mech // '');
	if ($mech eq 'PLAIN')
	{
		my $take = sub {
			my ($srv, $line) = @_;
			$line =~ s/\r?\n$//;
			my (undef, $u, $p) = split /\0/, decode_base64($line), 3;
			return check($srv, $u // '', $p // '');
		};
		return $take->($server, $initial) if defined $initial;
		print { $server->{out} } "334 \r\n";
		$server->next_input_to($take);
		return;
	}
	if ($mech eq 'LOGIN')
	{
		my $user;
		my $want_pass = sub {
			my ($srv, $line) = @_;
			$line =~ s/\r?\n$//;
			return check($srv, $user, decode_base64($line));
		};
		my $want_user = sub {
			my ($srv, $line) = @_;
			$line =~ s/\r?\n$//;
			$user = decode_base64($line);
			$srv->reply(334, encode_base64('Password:', ''));
			$srv->next_input_to($want_pass);
			return;
		};
		if (defined $initial) { $user = decode_base64($initial); $server->reply(334, encode_base64('Password:', '')); $server->next_input_to($want_pass); return }
		$server->reply(334, encode_base64('Username:', ''));
		$server->next_input_to($want_user);
		return;
	}
	$server->reply(504, '5.5.4 Unrecognized authentication type');
	return;
}
$INC{'CcrmSinkAuth.pm'} = __FILE__;

package main;

# how many times a key was seen (shared by the connection processes through files)
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
sub session
{
	my ($sock) = @_;
	my $tls = 0;
	if ($o{smtps})
	{
		IO::Socket::SSL->start_SSL($sock, SSL_server => 1, SSL_cert_file => $o{cert},
			SSL_key_file => $o{key}) or return;
		$tls = 1;
	}
	my $smtp = Net::Server::Mail::ESMTP->new(socket => $sock,
		($o{cert} && !$o{smtps} ? (SSL_config => { SSL_cert_file => $o{cert}, SSL_key_file => $o{key} }) : ()));
	$smtp->register('Net::Server::Mail::ESMTP::PIPELINING');
	$smtp->register('Net::Server::Mail::ESMTP::8BITMIME');
	$smtp->register('Net::Server::Mail::ESMTP::STARTTLS') if $o{cert} && !$o{smtps};
	$smtp->register('CcrmSinkAuth') if defined $o{user};
	$smtp->set_callback(STARTTLS => sub { $tls = 1 });
	$smtp->set_callback(RCPT => sub {
		my ($session, $rcpt) = @_;
		return (0, 530, '5.7.0 Authentication required') if defined $o{user} && !$session->{ccrm_auth};
		return (0, 550, "5.1.1 $rcpt: no such mailbox") if $rcpt =~ /<?rcpt550-/;
		if ($rcpt =~ /<?rcpt451x(\d+)-/)
		{
			return (0, 451, '4.3.0 try again later') if bump("rcpt-$rcpt") <= $1;
		}
		return (1);
	});
	$smtp->set_callback(DATA => sub {
		my ($session, $data) = @_;
		my @to = $session->get_recipients;
		my $to = join(',', @to);
		sleep $1 if $to =~ /<?slow(\d+)-/;
		return (0, 554, '5.6.0 message refused') if $to =~ /<?data554-/;
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
			my $tmp = "$o{dir}/mail/.$id.tmp";
			open my $fh, '>', $tmp or die "$tmp: $!";
			binmode $fh;
			print $fh "X-Sink-From: " . $session->get_sender . "\r\n";
			print $fh "X-Sink-To: $to\r\n";
			print $fh "X-Sink-TLS: $tls\r\n";
			print $fh "X-Sink-Auth: " . ($session->{ccrm_auth} // '') . "\r\n\r\n";
			print $fh $$data;
			close $fh;
			rename $tmp, "$o{dir}/mail/$id.eml" or die $!;
		}
		return (1, 250, "2.0.0 Ok: queued as $id");
	});
	$smtp->process;
}

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $o{port}, Listen => 128,
	ReuseAddr => 1) or die "listen on $o{port}: $!\n";
$SIG{CHLD} = sub { 1 while waitpid(-1, POSIX::WNOHANG()) > 0 };
$SIG{TERM} = sub { kill 'TERM', -$$ if getpgrp == $$; exit 0 };
$| = 1;
print "ready " . $listen->sockport . "\n";
while (1)
{
	my $c = $listen->accept or next;
	my $pid = fork;
	if (defined $pid && $pid == 0)
	{
		$SIG{CHLD} = 'DEFAULT';
		$listen->close;
		session($c);
		POSIX::_exit(0);
	}
	$c->close;
}
