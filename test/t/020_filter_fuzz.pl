# Fuzz the filter compiler with random filters, valid and broken, from a
# fixed seed: every one must either compile to SQL that runs, or fail with a
# user-facing error (a SQLSTATE outside class XX, never a crash).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $iterations = $ENV{CCRM_FUZZ_ITERATIONS} // 1500;
srand($ENV{CCRM_FUZZ_SEED} // 20261122);

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ccrm;
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'since', 'date');
SELECT ccrm.define_field('contact', 'vip', 'boolean');
INSERT INTO ccrm.crm_user (username) VALUES ('anna'), ('o''brien');
INSERT INTO ccrm.account (name, city, owner_id) VALUES ('Acme Oy', 'Helsinki', 1), ('50%_off AB', 'Turku', 2);
INSERT INTO ccrm.contact (account_id, owner_id, firstname, city, email_opt_out, attrs)
SELECT 1 + i % 2, 1 + i % 2, 'c' || i, (ARRAY['Helsinki', 'Espoo', NULL])[1 + i % 3], i % 4 = 0,
       jsonb_build_object('score', i, 'since', '2020-01-01'::date + i, 'vip', i % 2 = 0)
  FROM generate_series(1, 30) i;
SELECT ccrm.create_target_group('g1', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_target_group('acc', 'account', '{"field": "name", "op": "contains", "value": "Oy"}');
});

my @fields = qw(id firstname city email_opt_out created_at score since vip
  account.name account.city owner.username account.owner.username
  nosuch account.nosuch nolink.x . a..b);
my @ops = qw(eq ne lt lte gt gte in not_in between contains starts_with
  ends_with is_null not_null is_true is_false older_than within_last bogus);
my @scalars = (
	'"Helsinki"', '"x\'; DROP TABLE ccrm.contact; --"', '"%_\\\\"', '42', '-1',
	'1.5', 'true', 'null', '"2024-02-29"', '"2023-02-29"', '"30 days"',
	'"-3 days"', '"yesterday-ish"', '"$$"', '""', '"\\u00e4\\u00f6"',
	'9999999999999999999999');

sub pick { return $_[ int(rand(@_)) ]; }

sub value
{
	my $r = rand();
	return pick(@scalars) if $r < 0.6;
	return '[' . join(', ', map { pick(@scalars) } 1 .. int(rand(3))) . ']' if $r < 0.9;
	return '{"a": 1}';
}

sub node
{
	my ($depth) = @_;
	my $r = rand();
	if ($depth < 3 && $r < 0.25)
	{
		my $k = pick('all', 'any');
		return "{\"$k\": [" . join(', ', map { node($depth + 1) } 0 .. int(rand(3))) . ']}';
	}
	return '{"not": ' . node($depth + 1) . '}' if $depth < 3 && $r < 0.35;
	return '{"in_group": ' . pick('"g1"', '"acc"', '"nope"', '1', '2', '3.5', 'true') . '}'
	  if $r < 0.42;
	if ($r < 0.48)
	{
		my @keys = map { pick('"kind": "call"', '"status": ["done", "planned"]',
			'"within_last": "7 days"', '"within_last": "-1 days"', '"bogus": 1') } 0 .. int(rand(3));
		return '{"has_activity": {' . join(', ', @keys) . '}}';
	}
	return pick('[]', '42', '"x"', '{}', '{"field": "city", "op": "eq", "value": 1, "extra": 2}',
		'{"all": []}', '{"field": "city"}', '{"any": [], "all": []}') if $r < 0.53;
	my $n = '{"field": "' . pick(@fields) . '", "op": "' . pick(@ops) . '"';
	$n .= ', "value": ' . value() if rand() < 0.8;
	return $n . '}';
}

my ($compiled, $rejected, $bad) = (0, 0, 0);
for my $i (1 .. $iterations)
{
	my $filter = node(0);
	(my $lit = $filter) =~ s/'/''/g;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT ccrm.filter_count('contact', '$lit');");
	if ($ret == 0)
	{
		$compiled++;
		next;
	}
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	if (defined $state && $state !~ /^XX/ && $err !~ /server closed the connection/)
	{
		$rejected++;
		next;
	}
	$bad++;
	diag("filter $i: $filter\n$err");
	last if $bad > 5;
}

ok($node->safe_psql('postgres', 'SELECT 1') eq '1', 'server survived the fuzzing');
is($bad, 0, "no internal errors or crashes in $iterations filters");
ok($compiled > $iterations / 20, "a share of random filters compiled and ran ($compiled)");
ok($rejected > $iterations / 4, "most broken filters were rejected cleanly ($rejected)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM ccrm.contact'), '30', 'data untouched');

$node->stop;
done_testing();
