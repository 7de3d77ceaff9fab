# Fuzz the filter compiler from a fixed seed (printed; CCRM_FUZZ_SEED=n
# reproduces a run).
#
# 1. Valid random filters over contacts and accounts -- every op on every
#    type it fits, links, custom fields, in_group, has_activity, nested
#    all/any/not -- must select exactly the records that the same condition
#    selects when the test writes it as SQL itself.  The test's translator
#    is its own: it follows the documented semantics (two-valued logic:
#    ne, not_in, is_null and not also match a missing value; through a link
#    a condition needs the linked record; contains and friends are
#    case-insensitive with % and _ literal; relative ops count in the
#    time_zone setting) with other SQL constructs than the compiler's
#    (scalar subqueries instead of EXISTS, strpos/left/right instead of
#    ILIKE, comparisons in local time).  ccrm.filter_preview's ids and
#    ccrm.filter_count are compared with it in one transaction, so now()
#    is the same on both sides.
# 2. Random filters, valid and broken: every one either compiles to SQL
#    that runs, or fails with a user-facing error (a SQLSTATE outside class
#    XX, never a crash).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{CCRM_FUZZ_SEED} // 20261122;
my $valid_n = $ENV{CCRM_FUZZ_VALID} // 400;
my $broken_n = $ENV{CCRM_FUZZ_ITERATIONS} // 1000;
srand($seed);
note("filter fuzz seed $seed: CCRM_FUZZ_SEED=$seed reproduces this run");

my $zone = 'Europe/Helsinki';
my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->start;
# Times are relative to now with odd hours and minutes, so that no record
# sits exactly on the limit of a relative op (whole days, weeks, months).
$node->safe_psql('postgres', qq{
CREATE EXTENSION ccrm;
SELECT ccrm.set_setting('time_zone', '$zone');
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'since', 'date');
SELECT ccrm.define_field('contact', 'vip', 'boolean');
SELECT ccrm.define_field('contact', 'nick', 'text');
SELECT ccrm.define_field('account', 'rating', 'numeric');
INSERT INTO ccrm.crm_user (username, active) VALUES ('anna', true), ('o''brien', false), ('Bo_%', true);
INSERT INTO ccrm.account (name, city, owner_id, created_at, attrs) VALUES
    ('Acme Oy', 'Helsinki', 1, now() - interval '400 days 5 hours', '{"rating": 4.5}'),
    ('50%_off AB', 'Turku', 2, now() - interval '20 days 3 hours', '{"rating": -1}'),
    ('Back\\slash Ltd', NULL, NULL, now() - interval '2 days 7 hours', '{}'),
    ('ÄÖ Oy', 'helsinki', 3, now() + interval '3 days 2 hours', '{"rating": 0}');
INSERT INTO ccrm.contact (account_id, owner_id, firstname, city, email_opt_out, created_at, attrs)
SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE 1 + i % 4 END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 1 + i % 3 END,
       (ARRAY['Aino', 'aino', 'Eino', 'O''Neil', '50%', 'a_b', 'back\\slash', 'Ärrä', '', NULL])[1 + i % 10],
       (ARRAY['Helsinki', 'Espoo', NULL, 'HELSINKI', 'Turku', 'Espoo'])[1 + i % 6],
       i % 4 = 0,
       now() - make_interval(days => (i * 37) % 400 - 20, hours => 7, mins => 13),
       jsonb_strip_nulls(jsonb_build_object(
           'score', CASE WHEN i % 8 = 0 THEN NULL ELSE i % 13 - 3 END,
           'since', CASE WHEN i % 6 = 0 THEN NULL ELSE (now() AT TIME ZONE '$zone')::date - ((i * 11) % 500 - 10) END,
           'vip', CASE WHEN i % 5 = 1 THEN NULL ELSE i % 3 = 0 END,
           'nick', (ARRAY['Ace', 'ace%', NULL, 'Zed'])[1 + i % 4]))
  FROM generate_series(1, 40) i;
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, account_id, status, starts_at, ends_at, created_at)
SELECT (ARRAY['call', 'meeting', 'task', 'email'])[1 + i % 4], 'a' || i, 1 + i % 3,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + (i * 7) % 40 END, 1 + i % 4,
       (ARRAY['planned', 'done', 'cancelled'])[1 + i % 3],
       CASE WHEN i % 4 = 2 THEN NULL ELSE now() - make_interval(days => (i * 13) % 120 - 10, hours => 5, mins => 17) END,
       CASE WHEN i % 4 = 2 THEN NULL ELSE now() - make_interval(days => (i * 13) % 120 - 10, hours => 4, mins => 17) END,
       now() - make_interval(days => (i * 5) % 60, hours => 3, mins => 11)
  FROM generate_series(1, 50) i;
SELECT ccrm.create_target_group('g1', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_target_group('acc', 'account', '{"field": "name", "op": "contains", "value": "Oy"}');
SELECT ccrm.create_target_group('usr', 'user', '{"field": "username", "op": "starts_with", "value": "a"}');
SELECT ccrm.create_target_group('static', 'contact');
SELECT ccrm.include_in_group('static', ARRAY[2, 3, 5, 7, 11, 13]::bigint[]);
SELECT count(*) FROM (SELECT ccrm.refresh_target_group(name) FROM ccrm.target_group ORDER BY id) r;
-- members who left: closed spans in_group must not count
UPDATE ccrm.contact SET city = 'Turku' WHERE id IN (1, 7);
SELECT ccrm.exclude_from_group('static', ARRAY[3]::bigint[]);
SELECT count(*) FROM (SELECT ccrm.refresh_target_group(name) FROM ccrm.target_group ORDER BY id) r;
});

sub pick { return $_[ int(rand(@_)) ]; }
sub sql_literal { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# ---------------------------------------------------------------------
# Part 1: valid filters against the test's own SQL
# ---------------------------------------------------------------------

# what the entities have: fields (type, SQL over alias %s) and links
my %entities = (
	contact => {
		table => 'ccrm.contact',
		fields => {
			id => [ 'int', '%s.id' ],
			firstname => [ 'text', '%s.firstname' ],
			city => [ 'text', '%s.city' ],
			email_opt_out => [ 'bool', '%s.email_opt_out' ],
			created_at => [ 'tstz', '%s.created_at' ],
			score => [ 'int', q{(%s.attrs->>'score')::bigint} ],
			since => [ 'date', q{(%s.attrs->>'since')::date} ],
			vip => [ 'bool', q{(%s.attrs->>'vip')::boolean} ],
			nick => [ 'text', q{(%s.attrs->>'nick')} ],
		},
		links => { account => [ 'account', 'account_id' ], owner => [ 'user', 'owner_id' ] },
		groups => { g1 => 'id', static => 'id', acc => 'account_id', usr => 'owner_id' },
		activity_column => 'contact_id',
	},
	account => {
		table => 'ccrm.account',
		fields => {
			id => [ 'int', '%s.id' ],
			name => [ 'text', '%s.name' ],
			city => [ 'text', '%s.city' ],
			created_at => [ 'tstz', '%s.created_at' ],
			rating => [ 'num', q{(%s.attrs->>'rating')::numeric} ],
		},
		links => { owner => [ 'user', 'owner_id' ] },
		groups => { acc => 'id', usr => 'owner_id' },
		activity_column => 'account_id',
	},
	user => {
		table => 'ccrm.crm_user',
		fields => {
			id => [ 'int', '%s.id' ],
			username => [ 'text', '%s.username' ],
			active => [ 'bool', '%s.active' ],
		},
		links => {},
	},
);

# Values to compare with: those each field holds (so that equality and
# search hit as well as miss), and others of its type.
my %pool = (
	text => [ 'Aino', "O'Neil", '50%', 'a_b', 'back\\slash', 'Ärrä', '', 'zzz', 'HELSINKI', 'Bo_%' ],
	pattern => [ '%', '_', '\\', "'", 'ä', 'Ä', '', 'a_', '50%', 'x' ],
	int => [ -3, -1, 0, 1, 2, 3, 5, 7, 9, 12, 20, 33, 40, 41, 1000 ],
	num => [ -1, 0, 4.5, 2, '4.50', '-0.5' ],
	date => [ '2025-01-01', '2026-02-28', '2035-12-31' ],
	tstz => [ '2025-06-01 12:00', '2025-06-01 12:00:00+00', '2030-01-01 00:00+02' ],
	interval => [ '1 day', '7 days', '30 days', '2 weeks', '1 month', '3 months', '1 year', '400 days', '2 years' ],
);
my %held;
foreach my $e (sort keys %entities)
{
	foreach my $f (sort keys %{ $entities{$e}{fields} })
	{
		my $x = sprintf($entities{$e}{fields}{$f}[1], 't');
		$held{$e}{$f} = [ split /\n/, $node->safe_psql('postgres',
				"SELECT DISTINCT ($x)::text FROM $entities{$e}{table} t WHERE $x IS NOT NULL") ];
	}
}

my %type_ops = (
	int => [qw(eq ne lt lte gt gte in not_in between is_null not_null)],
	num => [qw(eq ne lt lte gt gte in not_in between is_null not_null)],
	text => [qw(eq ne lt lte gt gte in not_in between contains starts_with ends_with is_null not_null)],
	bool => [qw(eq ne lt gt in not_in is_null not_null is_true is_false)],
	date => [qw(eq ne lt lte gt gte in not_in between is_null not_null older_than within_last)],
	tstz => [qw(eq ne lt lte gt gte in not_in between is_null not_null older_than within_last)],
);
my %sql_type = (int => 'bigint', num => 'numeric', text => 'text', bool => 'boolean', date => 'date',
	tstz => 'timestamptz');
my %negated = (ne => 1, not_in => 1, is_null => 1);

# JSON text of a string (the data has no control characters)
sub json_string { my ($s) = @_; $s =~ s/(["\\])/\\$1/g; return "\"$s\""; }

# A value for a field: [its JSON text, its SQL literal]
sub typed_value
{
	my ($type, $held) = @_;
	if ($type eq 'bool')
	{
		my $b = pick('true', 'false');
		my $w = pick('yes', 'f', 'on');
		return rand() < 0.8 ? [ $b, $b ] : [ json_string($w), sql_literal($w) . '::boolean' ];
	}
	my $v = @$held && rand() < 0.7 ? pick(@$held) : pick(@{ $pool{$type} });
	my $sql = sql_literal($v) . "::$sql_type{$type}";
	# a number as a JSON number or as a string
	return [ $v, $sql ] if ($type eq 'int' || $type eq 'num') && rand() < 0.8;
	return [ json_string($v), $sql ];
}

# A string to search a field for: a piece of a value it holds, mostly in
# another case, or a string of the kind that needs care
sub pattern
{
	my ($held) = @_;
	my @ascii = grep { !/[^\x20-\x7e]/ } @$held;
	return pick(@{ $pool{pattern} }, @$held) if !@ascii || rand() < 0.25;
	my $base = pick(@ascii);
	my $start = int(rand(length($base)));
	my $s = substr($base, $start, 1 + int(rand(length($base) - $start)));
	my $r = rand();
	return $s if $r < 0.1;
	return uc($s) if $r < 0.25;
	return lc($s) if $r < 0.4;
	return join('', map { rand() < 0.5 ? uc($_) : lc($_) } split //, $s);
}

my $alias_no = 0;

# the positive predicate (may be NULL) of op on expression x of a type
sub predicate
{
	my ($x, $type, $op, $value) = @_;
	my $local_now = "(now() AT TIME ZONE '$zone')";
	return "$x = $value->[1]" if $op eq 'eq' || $op eq 'ne';
	return "$x < $value->[1]" if $op eq 'lt';
	return "$x <= $value->[1]" if $op eq 'lte';
	return "$x > $value->[1]" if $op eq 'gt';
	return "$x >= $value->[1]" if $op eq 'gte';
	return "$x IN (" . join(', ', map { $_->[1] } @$value) . ')' if $op eq 'in' || $op eq 'not_in';
	return "$x BETWEEN $value->[0][1] AND $value->[1][1]" if $op eq 'between';
	return "$x IS NOT NULL" if $op eq 'is_null' || $op eq 'not_null';
	return "$x" if $op eq 'is_true';
	return "NOT $x" if $op eq 'is_false';
	my $s = sql_literal($value);
	return "strpos(lower($x), lower($s)) > 0" if $op eq 'contains';
	return "left(lower($x), char_length($s)) = lower($s)" if $op eq 'starts_with';
	return "right(lower($x), char_length($s)) = lower($s)" if $op eq 'ends_with';
	my $iv = "${s}::interval";
	if ($type eq 'date')
	{
		# today in the zone, minus the interval, as a day
		my $from = "(($local_now)::date - $iv)::date";
		return "$x < $from" if $op eq 'older_than';
		return "$x BETWEEN $from AND ($local_now)::date";
	}
	# timestamptz: compared as wall-clock time in the zone
	return "($x AT TIME ZONE '$zone') < $local_now - $iv" if $op eq 'older_than';
	return "(($x AT TIME ZONE '$zone') >= $local_now - $iv AND $x <= now())";
}

# A random valid field condition on entity $e: [JSON text, SQL (never NULL)]
sub field_condition
{
	my ($e, $alias) = @_;
	my (@path, @hops);
	my $cur = $e;
	my $from = $alias;
	# follow up to two links
	while (%{ $entities{$cur}{links} } && rand() < 0.3 && @path < 2)
	{
		my $link = pick(sort keys %{ $entities{$cur}{links} });
		my ($target, $fk) = @{ $entities{$cur}{links}{$link} };
		my $next = 'b' . ++$alias_no;
		push @path, $link;
		push @hops, [ $entities{$target}{table}, $next, $fk, $from ];
		($cur, $from) = ($target, $next);
	}
	my $field = pick(sort keys %{ $entities{$cur}{fields} });
	my ($type, $expr) = @{ $entities{$cur}{fields}{$field} };
	my $held = $held{$cur}{$field};
	my $op = $type eq 'text' && rand() < 0.4
	  ? pick(qw(contains starts_with ends_with)) : pick(@{ $type_ops{$type} });
	my ($value, $vjson);
	if ($op eq 'in' || $op eq 'not_in' || $op eq 'between')
	{
		$value = [ map { typed_value($type, $held) } 0 .. ($op eq 'between' ? 1 : int(rand(3))) ];
		$vjson = '[' . join(', ', map { $_->[0] } @$value) . ']';
	}
	elsif ($op =~ /^(contains|starts_with|ends_with)$/)
	{
		$value = pattern($held);
		$vjson = json_string($value);
	}
	elsif ($op eq 'older_than' || $op eq 'within_last')
	{
		$value = pick(@{ $pool{interval} });
		$vjson = json_string($value);
	}
	elsif ($op !~ /^(is_null|not_null|is_true|is_false)$/)
	{
		$value = typed_value($type, $held);
		$vjson = $value->[0];
	}
	my $json = '{"field": ' . json_string(join('.', @path, $field)) . ', "op": "' . $op . '"'
	  . (defined $vjson ? ", \"value\": $vjson" : '') . '}';

	# the predicate at the end of the links, inside one scalar subquery per link
	my $sql = predicate(sprintf($expr, $from), $type, $op, $value);
	foreach my $hop (reverse @hops)
	{
		my ($table, $a, $fk, $up) = @$hop;
		$sql = "(SELECT $sql FROM $table $a WHERE $a.id = $up.$fk)";
	}
	$sql = "coalesce(($sql), false)";
	$sql = "NOT $sql" if $negated{$op};
	return [ $json, $sql ];
}

sub in_group_condition
{
	my ($e, $alias) = @_;
	my $groups = $entities{$e}{groups};
	my $g = pick(sort keys %$groups);
	my $ref = rand() < 0.7 ? json_string($g) : $node->safe_psql('postgres', "SELECT ccrm.target_group_id('$g')");
	return [ "{\"in_group\": $ref}",
		"coalesce($alias.$groups->{$g} IN (SELECT m.member_id FROM ccrm.target_group_member m"
		  . " JOIN ccrm.target_group g ON g.id = m.group_id WHERE g.name = '$g'), false)" ];
}

sub has_activity_condition
{
	my ($e, $alias) = @_;
	my (@spec, @where);
	my $a = 'h' . ++$alias_no;
	foreach my $key ('kind', 'status')
	{
		next if rand() < 0.5;
		my @choices = $key eq 'kind' ? ('call', 'meeting', 'task', 'visit') : ('planned', 'done', 'cancelled');
		my @v = map { pick(@choices) } 0 .. int(rand(2));
		push @spec, "\"$key\": " . (@v == 1 && rand() < 0.5 ? json_string($v[0])
			: '[' . join(', ', map { json_string($_) } @v) . ']');
		push @where, "$a.$key IN (" . join(', ', map { sql_literal($_) } @v) . ')';
	}
	if (rand() < 0.5)
	{
		my $iv = pick(@{ $pool{interval} });
		my $when = "coalesce($a.starts_at, $a.created_at)";
		push @spec, '"within_last": ' . json_string($iv);
		push @where, "($when AT TIME ZONE '$zone') >= (now() AT TIME ZONE '$zone') - " . sql_literal($iv)
		  . "::interval AND $when <= now()";
	}
	my $col = $entities{$e}{activity_column};
	return [ '{"has_activity": {' . join(', ', @spec) . '}}',
		"EXISTS (SELECT FROM ccrm.activity $a WHERE $a.$col = $alias.id"
		  . join('', map { " AND $_" } @where) . ')' ];
}

sub valid_node
{
	my ($e, $alias, $depth) = @_;
	my $r = rand();
	if ($depth < 3 && $r < 0.25)
	{
		my $k = pick('all', 'any');
		my @kids = map { valid_node($e, $alias, $depth + 1) } 0 .. int(rand(3));
		return [ "{\"$k\": [" . join(', ', map { $_->[0] } @kids) . ']}',
			'(' . join($k eq 'all' ? ' AND ' : ' OR ', map { $_->[1] } @kids) . ')' ];
	}
	if ($depth < 3 && $r < 0.35)
	{
		my $kid = valid_node($e, $alias, $depth + 1);
		return [ "{\"not\": $kid->[0]}", "NOT $kid->[1]" ];
	}
	return in_group_condition($e, $alias) if $r < 0.42;
	return has_activity_condition($e, $alias) if $r < 0.48;
	return field_condition($e, $alias);
}

my ($same, $differ, $failed, $nonempty, $partial) = (0, 0, 0, 0, 0);
my %ops_seen;
for my $i (1 .. $valid_n)
{
	my $e = rand() < 0.75 ? 'contact' : 'account';
	my ($text, $sql) = @{ valid_node($e, 't', 0) };
	$ops_seen{$1}++ while $text =~ /"op": "(\w+)"/g;
	my $lit = sql_literal($text);
	my ($ret, $out, $err) = $node->psql('postgres', qq{
BEGIN;
SET LOCAL TimeZone = '$zone';
SELECT 'ccrm ' || coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ccrm.filter_preview('$e', $lit, 1000000);
SELECT 'test ' || coalesce(string_agg(t.id::text, ',' ORDER BY t.id), '') FROM $entities{$e}{table} t WHERE $sql;
SELECT 'count ' || ccrm.filter_count('$e', $lit);
SELECT 'all ' || count(*) FROM $entities{$e}{table};
COMMIT;});
	my %r = map { /^(\w+) ?(.*)$/ ? ($1 => $2) : () } split /\n/, $out;
	if ($ret != 0 || !defined $r{test} || !defined $r{ccrm} || !defined $r{count})
	{
		$failed++;
		diag("valid filter $i on $e failed (seed $seed): $text\n$err") if $failed <= 5;
		next;
	}
	my $n = $r{test} eq '' ? 0 : scalar(split /,/, $r{test});
	if ($r{ccrm} eq $r{test} && $r{count} == $n)
	{
		$same++;
		$nonempty++ if $n > 0;
		$partial++ if $n > 0 && $n < $r{all};
		next;
	}
	$differ++;
	if ($differ <= 5)
	{
		my $compiled = $node->safe_psql('postgres', "SELECT ccrm.filter_sql('$e', $lit)");
		diag("valid filter $i on $e (seed $seed): $text\n  ccrm: $r{ccrm} (count $r{count})\n  test: $r{test}\n"
			  . "  test SQL: $sql\n  ccrm SQL: $compiled");
	}
}
is($failed, 0, "every valid random filter compiled and ran (seed $seed)");
is($differ, 0, "$same of $valid_n valid random filters select what the test's own SQL selects (seed $seed)");
ok($partial > $valid_n / 4, "many of them select some records but not all ($partial; $nonempty non-empty)");
is(join(' ', grep { !$ops_seen{$_} } sort keys %{ { map { $_ => 1 } map { @$_ } values %type_ops } }), '',
	'every op was tried');

# ---------------------------------------------------------------------
# Part 2: anything, broken or not: never an internal error
# ---------------------------------------------------------------------
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
for my $i (1 .. $broken_n)
{
	my $filter = node(0);
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT ccrm.filter_count('contact', " . sql_literal($filter) . ");");
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
	diag("filter $i (seed $seed): $filter\n$err");
	last if $bad > 5;
}

ok($node->safe_psql('postgres', 'SELECT 1') eq '1', 'server survived the fuzzing');
is($bad, 0, "no internal errors or crashes in $broken_n filters (seed $seed)");
ok($compiled > $broken_n / 20, "a share of random filters compiled and ran ($compiled)");
ok($rejected > $broken_n / 4, "most broken filters were rejected cleanly ($rejected)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM ccrm.contact'), '40', 'data untouched');

$node->stop;
done_testing();
