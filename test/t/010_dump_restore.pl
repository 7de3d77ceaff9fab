# Users' data in ccrm's tables survives pg_dump and pg_restore, table by
# table, and the restored rows work: a job runs, a run is undone, a group
# refreshes, a plan, a formula and a tool run again, identity sequences go
# on without collisions.
#
# Also: every ccrm table that holds users' data is registered with
# pg_extension_config_dump (a new table without it fails here), and what a
# non-superuser's pg_dump can and cannot dump: ccrm.job, ccrm.job_run and
# ccrm.run_audit have row level security, so pg_dump (row_security off)
# refuses to dump them for a role that is subject to it, and with
# --enable-row-security dumps only that role's own rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
CREATE DATABASE crm; CREATE DATABASE restored; CREATE DATABASE partial;
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
});

# Every kind of users' data, with fixed days so that nothing depends on today.
$node->safe_psql('crm', q{
CREATE EXTENSION ccrm;
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT ccrm.set_setting('working_days', '{1,2,3,4}');
INSERT INTO ccrm.holiday VALUES ('2026-12-24', 'Christmas Eve');
SELECT ccrm.define_field('contact', 'birthday', 'date');
SELECT ccrm.define_field('account', 'last_contacted', 'date');
INSERT INTO ccrm.crm_user (username, firstname, timezone) VALUES ('anna', 'Anna', 'Europe/Helsinki'), ('ben', 'Ben', NULL);
INSERT INTO ccrm.account (name, owner_id) VALUES ('Acme Oy', 1), ('Beta AB', 2);
INSERT INTO ccrm.contact (account_id, owner_id, firstname, lastname, city, attrs)
SELECT 1 + i % 2, 1 + i % 2, 'c' || i, 'L' || i, CASE WHEN i % 2 = 0 THEN 'Helsinki' ELSE 'Turku' END,
       jsonb_build_object('birthday', '1990-01-01'::date + i)
  FROM generate_series(1, 20) i;
INSERT INTO ccrm.lead (firstname, company) VALUES ('Leo', 'Lead Oy');
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, starts_at, ends_at)
VALUES ('call', 'hello', 1, 1, '2026-01-05 10:00+02', '2026-01-05 10:30+02');
CREATE TABLE public.invoice (id int PRIMARY KEY, contact_id bigint, paid boolean);
INSERT INTO public.invoice VALUES (1, 1, false), (2, 2, true);
SELECT ccrm.register_entity('invoice', 'public.invoice', 'id', contact_column => 'contact_id');

-- groups: filters, a static one, a dependency, overrides, spans that closed
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_target_group('Unpaid', 'invoice', '{"field": "paid", "op": "is_false"}');
SELECT ccrm.create_target_group('Sub', 'contact', '{"in_group": "Helsinki"}');
SELECT ccrm.create_target_group('Fair', 'contact');
SELECT * FROM ccrm.refresh_target_group('Helsinki');
UPDATE ccrm.contact SET city = 'Turku' WHERE id = 2;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT ccrm.include_in_group('Helsinki', ARRAY[3]::bigint[]);
SELECT ccrm.exclude_from_group('Helsinki', ARRAY[4]::bigint[]);
SELECT ccrm.include_in_group('Fair', ARRAY[1, 5]::bigint[]);
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT * FROM ccrm.refresh_target_group('Unpaid');
SELECT * FROM ccrm.refresh_target_group('Sub');
SELECT * FROM ccrm.refresh_target_group('Fair');

-- a plan and a run of it on a fixed day
SELECT ccrm.create_activity_plan('Helsinki', 'calls', 'Call $contact-firstname$', 'call',
                                 events_per_day => 4, duration => '30 minutes');
SELECT created FROM ccrm.create_activities('Helsinki', 'calls', '2026-12-07');

-- formulas, a tool of the user's, a job kind of the user's
SELECT ccrm.create_formula('full name', 'contact', 'description', $$firstname || ' ' || lastname$$);
SELECT ccrm.run_formulas('Helsinki');
CREATE FUNCTION public.flag_vip(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE sql AS $$
    WITH u AS (UPDATE ccrm.contact SET title = coalesce(params->>'title', 'VIP')
                WHERE id = ANY (member_ids) RETURNING 1)
    SELECT count(*) FROM u $$;
SELECT ccrm.register_tool('flag_vip', 'contact', 'public.flag_vip(bigint[], jsonb)', 'mark contacts as VIPs');
SELECT ccrm.run_tool('Fair', 'flag_vip', '{"title": "Fair VIP"}');
CREATE FUNCTION public.count_runner(job_id bigint, run_id bigint, group_id bigint, params jsonb,
    action_time timestamptz, time_zone text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('accounts', (SELECT count(*) FROM ccrm.account)) $$;
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('count_accounts', 'public.count_runner(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'count');

-- jobs with runs; a mass update whose audit is undone after the restore
SELECT ccrm.schedule_job('Helsinki refresh', 'refresh_group', '0 11 * * *', 'Helsinki');
SELECT ccrm.schedule_job('Counter', 'count_accounts', '@daily');
SELECT ccrm.schedule_job('Names', 'run_formulas', '@daily', 'Helsinki', after_job => 'Helsinki refresh');
SELECT status FROM ccrm.run_job('Helsinki refresh');
SELECT status FROM ccrm.run_job('Counter');
SELECT ccrm.mass_update('Helsinki', 'account', '{"last_contacted": "2026-11-27"}');
SELECT ccrm.mass_update('Helsinki', 'contact', '{"title": "Customer"}');

-- messages: a channel, a template, queued messages; a right to act as a CRM user
SELECT ccrm.grant_act_as(1, 'alice');
SELECT ccrm.create_channel('mail', 'email', is_default => true);
SELECT ccrm.create_message_template('hello', 'email', subject => 'Hello $contact-firstname$', body => 'Hi!');
UPDATE ccrm.contact SET email = firstname || '@example.com';
SELECT count(*) FROM ccrm.enqueue_template('hello', ARRAY[1, 2]::bigint[], key_prefix => 'hello:', at => '2026-11-27 10:00+02');
-- a campaign with members, a join email and a removal
SELECT ccrm.create_campaign('Evening', email_template => 'hello', at => '2026-11-27 09:00+02');
SELECT ccrm.add_group_to_campaign('Evening', 'Helsinki', '2026-11-27 11:00+02');
SELECT count(*) FROM ccrm.prune_campaign('Evening', 'account duplicates', '2026-11-27 12:00+02');

-- follow-up sequences: one enrolled and run (with an in_group exit filter), one only_new with a captured insert
SELECT ccrm.create_message_template('seq hello', 'email', subject => 'Hi $contact-firstname$', body => 'Hi!', sender_id => 1);
SELECT ccrm.create_sequence('Welcome', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}',
    '[{"action": "email_customer", "template": "seq hello"},
      {"action": "email_customer", "delay_days": 2, "template": "seq hello"}]', exit_filter => '{"in_group": "Fair"}');
SELECT ccrm.activate_sequence('Welcome', at => '2026-11-27 10:00+02');
SELECT count(*) FROM ccrm.run_sequences('2026-11-27 10:00+02');
SELECT ccrm.create_sequence('Newcomers', 'contact', '{"field": "city", "op": "eq", "value": "Oulu"}',
    '[{"action": "email_customer", "template": "seq hello"}]');
SELECT ccrm.activate_sequence('Newcomers', only_new => true, at => '2026-11-27 10:00+02');
INSERT INTO ccrm.contact (account_id, owner_id, firstname, city, email) VALUES (1, 1, 'Uusi', 'Oulu', 'uusi@example.com');

-- alice: a role of the application, with jobs, runs and audit of her own
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ccrm, public TO alice;
GRANT SELECT, USAGE ON ALL SEQUENCES IN SCHEMA ccrm TO alice;
GRANT SELECT ON public.invoice TO bob;
-- the group alice mass-updates is hers (a role uses only definitions it may use)
UPDATE ccrm.target_group SET owner = 'alice' WHERE name = 'Fair';
});
$node->safe_psql('crm', q{
SET ROLE alice;
SELECT ccrm.schedule_job('Alice counts', 'count_accounts', '@daily');
SELECT status FROM ccrm.run_job('Alice counts');
SELECT ccrm.mass_update('Fair', 'contact', '{"lastname": "Fairfield"}');
});

# --- every ccrm table that holds users' data is dumped with the database ---
# Tables and sequences of the extension that pg_dump leaves out: only the
# setting definitions, which the install script writes (not users' data).
# and the delivery worker's counters and pause state, which it keeps as it sends
# (a restored database starts them anew)
my %runtime = ('channel_delivery' => 'delivery counters and pauses of the worker');
my %derived = ('setting_definition' => 'setting definitions shipped by the install script', %runtime);
my $not_dumped = $node->safe_psql('crm', q{
SELECT string_agg(c.relname, ', ' ORDER BY c.relname)
  FROM pg_extension e
  JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
                  AND d.classid = 'pg_class'::regclass
  JOIN pg_class c ON c.oid = d.objid
 WHERE e.extname = 'ccrm' AND c.relkind IN ('r', 'p', 'S')
   AND c.oid <> ALL (coalesce(e.extconfig, '{}'))
});
my @missing = grep { !$derived{$_} } split /, /, $not_dumped;
is("@missing", '', 'every ccrm table and sequence is registered with pg_extension_config_dump (or known to be derived)');
# identity sequences are not extension members of their own: their tables' must be dumped with them
is($node->safe_psql('crm', q{
SELECT string_agg(s.relname, ', ' ORDER BY s.relname)
  FROM pg_class s
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')
  JOIN pg_class t ON t.oid = d.refobjid
  JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'ccrm'
 WHERE s.relkind = 'S'
   AND s.oid <> ALL (coalesce((SELECT extconfig FROM pg_extension WHERE extname = 'ccrm'), '{}'))
}), '', 'every sequence of a ccrm table is registered with pg_extension_config_dump');

# each table with the condition its rows are dumped under (built-in rows
# come from the install script: they are not users' data)
my %cond = map { split /\|/, $_, 2 } split /\n/, $node->safe_psql('crm', q{
SELECT c.relname, coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_extension e
 WHERE n.nspname = 'ccrm' AND c.relkind IN ('r', 'p') AND e.extname = 'ccrm'});
my @tables = sort grep { !$runtime{$_} } keys %cond;
ok(scalar(@tables) >= 23, 'ccrm has its tables (' . scalar(@tables) . ')');

# one line per table: its rows, the rows of users' data (under its dump
# condition) and their digest in a stable order
my $digest_sql = join("\nUNION ALL ",
	(map { "SELECT '$_', (SELECT count(*) FROM ccrm.$_), count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '-') FROM (SELECT * FROM ccrm.$_ $cond{$_}) x" } @tables),
	"SELECT 'public.invoice', count(*), count(*), md5(string_agg(x::text, E'\\n' ORDER BY x::text)) FROM public.invoice x")
  . "\nORDER BY 1";
sub digests
{
	my ($db) = @_;
	my %d;
	foreach (split /\n/, $node->safe_psql($db, $digest_sql))
	{
		my ($t, $all, $n, $md5) = split /\|/;
		$d{$t} = "$all rows, $n compared, $md5";
	}
	return \%d;
}
my $before = digests('crm');
foreach my $t (@tables)
{
	unlike($before->{$t}, qr/ 0 compared/, "the scenario puts rows into ccrm.$t");
}
my $seq_sql = q{SELECT sequencename || '=' || coalesce(last_value::text, 'unused')
  FROM pg_sequences WHERE schemaname = 'ccrm' ORDER BY 1};
my $seq_before = $node->safe_psql('crm', $seq_sql);

# --- a superuser's dump, restored into a new database ---
my $dump = $node->basedir . '/crm.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('crm') ], 'pg_dump');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');

my $after = digests('restored');
foreach my $t ((map { "$_" } @tables), 'public.invoice')
{
	is($after->{$t}, $before->{$t}, "$t: the same rows after restore");
}
is($node->safe_psql('restored', $seq_sql), $seq_before, 'every sequence goes on where it was');
is($node->safe_psql('restored', q{
SELECT string_agg(format('%s.%s', c.relname, a.attname), ', ')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'ccrm'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attidentity <> ''
 WHERE (xpath('/row/m/text()', query_to_xml(format('SELECT max(%I) AS m FROM ccrm.%I', a.attname, c.relname),
                                             false, true, '')))[1]::text::bigint
       > (SELECT coalesce(last_value, 0) FROM pg_sequences s
           WHERE s.schemaname = 'ccrm' AND format('ccrm.%I', s.sequencename)::regclass
                 = pg_get_serial_sequence(format('ccrm.%I', c.relname), a.attname)::regclass)
}), '', 'no identity sequence is behind its column');

# --- the restored rows work ---
is($node->safe_psql('restored', q{SELECT status || ' ' || (counts->>'total') FROM ccrm.run_job('Helsinki refresh')}),
	'succeeded 9', 'a restored job runs');
is($node->safe_psql('restored', q{SELECT status || ' ' || counts FROM ccrm.run_job('Counter')}),
	'succeeded {"accounts": 2}', "a job of the user's own kind runs");
is($node->safe_psql('restored', q{
SELECT string_agg(entity || ' ' || restored || ' ' || conflicts, ', ')
  FROM ccrm.undo_run((SELECT max(id) FROM ccrm.job_run WHERE kind = 'mass_update' AND run_as = 'postgres'::regrole));
SELECT count(*) FILTER (WHERE title = 'Customer') || '/' || count(*) FILTER (WHERE title = 'Fair VIP')
  FROM ccrm.contact;
}), "contact 9 0\n0/2", 'a run audited before the dump is undone after the restore');
is($node->safe_psql('restored', q{
UPDATE ccrm.contact SET city = 'Helsinki' WHERE id = 1;
SELECT added || '/' || removed || '/' || total FROM ccrm.refresh_target_group('Helsinki')}),
	'1/0/10', 'a refresh after restore applies only the new difference');
is($node->safe_psql('restored', q{
SELECT created || '/' || skipped FROM ccrm.create_activities('Helsinki', 'calls', '2026-12-07');
SELECT created || '/' || skipped FROM ccrm.create_activities('Helsinki', 'calls', '2026-12-08')}),
	"1/0\n10/0", 'a restored plan knows what it created: only the new member gets a call that day, all on the next');
is($node->safe_psql('restored', q{
DO $$BEGIN PERFORM ccrm.run_formulas('Helsinki', ARRAY['full name']); END$$;
SELECT counts->'formulas' FROM ccrm.job_run ORDER BY id DESC LIMIT 1;
SELECT description FROM ccrm.contact WHERE id = 1}),
	qq{{"full name": 1}\nc1 Fairfield}, 'a restored formula runs');
is($node->safe_psql('restored', q{
DO $$BEGIN PERFORM ccrm.run_tool('Helsinki', 'flag_vip', '{}'); END$$;
SELECT counts->>'result' FROM ccrm.job_run ORDER BY id DESC LIMIT 1}),
	'10', "a restored tool of the user's runs its function");
is($node->safe_psql('restored', q{SELECT ccrm.filter_count('invoice', '{"field": "contact.city", "op": "eq", "value": "Turku"}')}),
	'1', 'the registered entity still resolves to its table');
is($node->safe_psql('restored', q{
INSERT INTO ccrm.contact (firstname) VALUES ('new') RETURNING id;
SELECT ccrm.create_target_group('After restore', 'contact');
SELECT ccrm.schedule_job('After restore', 'refresh_group', '@daily', 'After restore');
}), "22\n5\n5", 'contact, group and job ids continue after the restored rows');
my ($ret, $out, $err) = $node->psql('restored',
	q{INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"birthday": "not a date"}')});
like($err, qr/invalid input syntax for type date/, 'custom field checks work after restore');

# --- what a non-superuser's pg_dump can dump ---
# alice may read every table, but row level security applies to her on the
# jobs, runs and audit: pg_dump (row_security = off) refuses to dump those
my $alice_dump = $node->basedir . "/alice.dump";
$node->command_fails_like([ 'pg_dump', '-Fc', '-f', $alice_dump, '-U', 'alice', '-d', $node->connstr('crm') ],
	qr/query would be affected by row-level security policy for table "\w+"/,
	"a non-superuser's pg_dump stops at the tables with row level security");
# with --enable-row-security it dumps what alice can see: her own jobs, runs and audit only
$node->command_ok([ 'pg_dump', '--enable-row-security', '-Fc', '-f', $alice_dump, '-U', 'alice',
		'-d', $node->connstr('crm') ], "a non-superuser's pg_dump --enable-row-security");
# rows of tables without row level security (activities) point at plans she
# cannot see: the partial dump does not restore cleanly (pg_restore goes on)
$node->command_fails_like([ 'pg_restore', '-d', $node->connstr('partial'), $alice_dump ],
	qr/is not present in table "activity_plan"/, 'its restore (by a superuser) reports the rows that point at what it left out');
is($node->safe_psql('partial', q{
SELECT (SELECT string_agg(name, ',') FROM ccrm.job) || ' | ' ||
       (SELECT string_agg(DISTINCT run_as::text, ',') FROM ccrm.job_run) || ' | ' ||
       (SELECT count(*) FROM ccrm.run_audit) || ' | ' || (SELECT count(*) FROM ccrm.contact)}),
	'Alice counts | alice | 2 | 21', 'that dump holds only her jobs, runs and audit, and all other tables');
# bob has no privileges on ccrm's tables: his pg_dump cannot read their data
$node->command_fails_like([ 'pg_dump', '-Fc', '-f', $node->basedir . '/bob.dump', '-U', 'bob', '-d', $node->connstr('crm') ],
	qr/permission denied for (table|sequence) .*\n.*Query was: .*ccrm\./, 'a role without SELECT on ccrm\'s tables cannot dump them');

$node->stop;
done_testing();
