# Users' data in ccrm's tables survives pg_dump and pg_restore: CRM rows with
# custom fields, a registered entity, groups with members, overrides and
# history, changed settings; identity sequences go on without collisions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE crm; CREATE DATABASE restored;');
$node->safe_psql('crm', q{
CREATE EXTENSION ccrm;
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT ccrm.set_setting('working_days', '{1,2,3,4}');
INSERT INTO ccrm.holiday VALUES ('2026-12-24', 'Christmas Eve');
SELECT ccrm.define_field('contact', 'birthday', 'date');
INSERT INTO ccrm.crm_user (username, timezone) VALUES ('anna', 'Europe/Helsinki'), ('ben', NULL);
INSERT INTO ccrm.account (name, owner_id) VALUES ('Acme Oy', 1);
INSERT INTO ccrm.contact (account_id, owner_id, firstname, city, attrs)
SELECT 1, 1, 'c' || i, CASE WHEN i % 2 = 0 THEN 'Helsinki' ELSE 'Turku' END,
       jsonb_build_object('birthday', '1990-01-01'::date + i)
  FROM generate_series(1, 20) i;
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, starts_at, ends_at)
VALUES ('call', 'hello', 1, 1, '2026-01-05 10:00+02', '2026-01-05 10:30+02');
CREATE TABLE public.invoice (id int PRIMARY KEY, contact_id bigint, paid boolean);
INSERT INTO public.invoice VALUES (1, 1, false), (2, 2, true);
SELECT ccrm.register_entity('invoice', 'public.invoice', 'id', contact_column => 'contact_id');
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_target_group('Unpaid', 'invoice', '{"field": "paid", "op": "is_false"}');
SELECT ccrm.create_target_group('Sub', 'contact', '{"in_group": "Helsinki"}');
SELECT * FROM ccrm.refresh_target_group('Helsinki');
UPDATE ccrm.contact SET city = 'Turku' WHERE id = 2;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
SELECT ccrm.include_in_group('Helsinki', ARRAY[3]::bigint[]);
SELECT ccrm.exclude_from_group('Helsinki', ARRAY[4]::bigint[]);
SELECT * FROM ccrm.refresh_target_group('Unpaid');
});

my $snapshot = q{
SELECT 'settings', string_agg(name || '=' || value, ',' ORDER BY name) FROM ccrm.settings
UNION ALL SELECT 'holidays', string_agg(day || ' ' || name, ',') FROM ccrm.holiday
UNION ALL SELECT 'fields', string_agg(entity || '.' || name || ':' || type, ',' ORDER BY entity, name) FROM ccrm.custom_field
UNION ALL SELECT 'users', string_agg(id || ':' || username, ',' ORDER BY id) FROM ccrm.crm_user
UNION ALL SELECT 'contacts', md5(string_agg(c::text, ',' ORDER BY id)) FROM ccrm.contact c
UNION ALL SELECT 'activities', string_agg(id || ':' || subject || ':' || starts_at, ',') FROM ccrm.activity
UNION ALL SELECT 'entities', string_agg(name || ':' || relid::text, ',' ORDER BY name) FROM ccrm.entity
UNION ALL SELECT 'groups', string_agg(name || ':' || member_count || ':' || coalesce(filter::text, '-'), ',' ORDER BY id) FROM ccrm.target_group
UNION ALL SELECT 'deps', string_agg(group_id || '>' || depends_on, ',') FROM ccrm.target_group_dependency
UNION ALL SELECT 'spans', md5(string_agg(group_id || ':' || member_id || ':' || entered_at || ':' || coalesce(left_at::text, '-'), ',' ORDER BY group_id, member_id, entered_at)) FROM ccrm.target_group_membership
UNION ALL SELECT 'overrides', string_agg(group_id || ':' || member_id || ':' || include, ',' ORDER BY member_id) FROM ccrm.target_group_override
UNION ALL SELECT 'refreshes', count(*)::text FROM ccrm.target_group_refresh
ORDER BY 1;
};
my $before = $node->safe_psql('crm', $snapshot);

my $dump = $node->basedir . '/crm.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('crm') ], 'pg_dump');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');

my $after = $node->safe_psql('restored', $snapshot);
is($after, $before, 'every table of ccrm holds the same data after restore');

# the restored database works: new rows get fresh ids, groups refresh, filters compile
my $ids = $node->safe_psql('restored', q{
INSERT INTO ccrm.contact (firstname, city) VALUES ('new', 'Helsinki') RETURNING id;
});
is($ids, '21', 'identity sequences continue after the restored rows');
is($node->safe_psql('restored', q{
INSERT INTO ccrm.crm_user (username) VALUES ('carl') RETURNING id;
SELECT ccrm.create_target_group('After restore', 'contact') ;
}), "3\n4", 'user and group sequences continue too');
is($node->safe_psql('restored', q{SELECT added || '/' || removed || '/' || total FROM ccrm.refresh_target_group('Helsinki')}),
	'1/0/10', 'a refresh after restore applies only the new difference');
is($node->safe_psql('restored', q{SELECT ccrm.filter_count('invoice', '{"field": "contact.city", "op": "eq", "value": "Turku"}')}),
	'2', 'the registered entity still resolves to its table');
my ($ret, $out, $err) = $node->psql('restored',
	q{INSERT INTO ccrm.contact (firstname, attrs) VALUES ('x', '{"birthday": "not a date"}')});
like($err, qr/invalid input syntax for type date/, 'custom field checks work after restore');

$node->stop;
done_testing();
