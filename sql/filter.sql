-- The filter compiler: every op, path and node kind, with the SQL it makes
-- and the records it selects on small data checked by hand.
CREATE EXTENSION ccrm;
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'ratio', 'numeric');
SELECT ccrm.define_field('contact', 'vip', 'boolean');
SELECT ccrm.define_field('contact', 'birthday', 'date');
SELECT ccrm.define_field('contact', 'seen_at', 'timestamptz');
SELECT ccrm.define_field('contact', 'note', 'text');

INSERT INTO ccrm.crm_user (id, username, email) VALUES (1, 'anna', 'anna@example.com'), (2, 'ben', NULL);
INSERT INTO ccrm.account (id, name, city, country, owner_id) VALUES
    (1, 'Acme Oy', 'Helsinki', 'FI', 1), (2, 'Beta AB', 'Stockholm', 'SE', 2), (3, 'Gamma GmbH', NULL, 'DE', NULL);
-- ten contacts; created_at spread over the past, some values missing on purpose
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, lastname, city, email, email_opt_out, attrs, created_at)
VALUES
 (1, 1, 1, 'Aino',  'Laine',   'Helsinki', 'aino@acme.example',  false, '{"score": 10, "ratio": 0.5, "vip": true,  "birthday": "1990-01-05", "note": "likes golf"}', now() - interval '400 days'),
 (2, 1, 1, 'Eino',  'Lehto',   'Espoo',    'eino@acme.example',  true,  '{"score": 20, "ratio": 1.5, "vip": false, "birthday": "1985-06-30"}', now() - interval '100 days'),
 (3, 1, 2, 'Liisa', 'Laine',   NULL,       NULL,                 false, '{"score": 30}', now() - interval '10 days'),
 (4, 2, 2, 'Lars',  'Berg',    'Stockholm','lars@beta.example',  false, '{"vip": true, "note": "50% off"}', now() - interval '2 days'),
 (5, 2, NULL, 'Karin', 'Ström', 'Stockholm','karin@beta.example', false, '{}', now() - interval '1 day'),
 (6, 3, NULL, 'Jonas', 'Fischer','Berlin',  'jonas@gamma.example',true,  '{"score": 5, "note": "a_b"}', now() - interval '800 days'),
 (7, NULL, 1, 'Matti', 'Laine', 'Helsinki', 'matti@example.com',  false, '{"seen_at": "2024-05-01 12:00+03"}', now() - interval '50 days'),
 (8, NULL, NULL, NULL, 'Nobody', NULL,      NULL,                 false, '{}', now() - interval '5 hours'),
 (9, 1, 1, 'aino',  'LAINE',   'helsinki', 'AINO2@ACME.EXAMPLE', false, '{"score": 10}', now() - interval '200 days'),
 (10, 3, NULL, 'Ion', 'Popescu', 'Bucharest', 'ion@gamma.example', false, '{"ratio": -2}', now() - interval '30 days');
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, account_id, starts_at, ends_at, status, created_at) VALUES
 ('call',    'c1', 1, 1, 1, now() - interval '3 days', now() - interval '3 days' + interval '30 minutes', 'done', now() - interval '4 days'),
 ('call',    'c2', 1, 2, 1, now() - interval '60 days', now() - interval '60 days' + interval '30 minutes', 'done', now() - interval '61 days'),
 ('meeting', 'm1', 2, 4, 2, now() - interval '5 days', now() - interval '5 days' + interval '1 hour', 'planned', now() - interval '6 days'),
 ('call',    'c3', 2, 5, 2, now() + interval '5 days', now() + interval '5 days' + interval '30 minutes', 'planned', now() - interval '1 day'),
 ('task',    't1', 1, 3, NULL, NULL, NULL, 'open', now() - interval '2 days');

-- ids a filter selects
CREATE FUNCTION pg_temp.ids(entity text, f jsonb) RETURNS text LANGUAGE sql AS
$$ SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '-') FROM ccrm.filter_preview(entity, f, 100) $$;

-- the shape of the compiled SQL
SELECT ccrm.filter_sql('contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.filter_sql('contact', '{"all": [{"field": "city", "op": "in", "value": ["Helsinki", "Espoo"]}, {"not": {"field": "email_opt_out", "op": "is_true"}}]}');
SELECT ccrm.filter_sql('contact', '{"field": "score", "op": "between", "value": [10, 20]}');
SELECT ccrm.filter_sql('contact', '{"field": "account.owner.username", "op": "ne", "value": "anna"}');
SELECT ccrm.filter_sql('contact', '{"field": "created_at", "op": "older_than", "value": "90 days"}');
SELECT ccrm.filter_sql('contact', '{"field": "birthday", "op": "within_last", "value": "1 year"}');
SELECT ccrm.filter_sql('contact', '{"has_activity": {"kind": ["call", "meeting"], "status": "done", "within_last": "30 days"}}');

-- every op
SELECT op, f, pg_temp.ids('contact', f::jsonb) AS ids FROM (VALUES
 ('eq',          '{"field": "city", "op": "eq", "value": "Helsinki"}'),
 ('eq custom',   '{"field": "score", "op": "eq", "value": "10"}'),
 ('ne',          '{"field": "city", "op": "ne", "value": "Helsinki"}'),
 ('lt',          '{"field": "score", "op": "lt", "value": 20}'),
 ('lte',         '{"field": "score", "op": "lte", "value": 20}'),
 ('gt',          '{"field": "ratio", "op": "gt", "value": 0}'),
 ('gte',         '{"field": "id", "op": "gte", "value": 9}'),
 ('in',          '{"field": "city", "op": "in", "value": ["Helsinki", "Berlin"]}'),
 ('not_in',      '{"field": "city", "op": "not_in", "value": ["Helsinki", "Stockholm"]}'),
 ('between',     '{"field": "birthday", "op": "between", "value": ["1985-01-01", "1989-12-31"]}'),
 ('contains',    '{"field": "lastname", "op": "contains", "value": "AIN"}'),
 ('starts_with', '{"field": "email", "op": "starts_with", "value": "aino"}'),
 ('ends_with',   '{"field": "email", "op": "ends_with", "value": ".EXAMPLE"}'),
 ('contains %',  '{"field": "note", "op": "contains", "value": "50%"}'),
 ('contains _',  '{"field": "note", "op": "contains", "value": "a_b"}'),
 ('contains _2', '{"field": "note", "op": "contains", "value": "l_kes"}'),
 ('is_null',     '{"field": "city", "op": "is_null"}'),
 ('not_null',    '{"field": "score", "op": "not_null"}'),
 ('is_true',     '{"field": "vip", "op": "is_true"}'),
 ('is_false',    '{"field": "email_opt_out", "op": "is_false"}'),
 ('is_false c',  '{"field": "vip", "op": "is_false"}'),
 ('older_than',  '{"field": "created_at", "op": "older_than", "value": "90 days"}'),
 ('within_last', '{"field": "created_at", "op": "within_last", "value": "7 days"}'),
 ('older date',  '{"field": "birthday", "op": "older_than", "value": "35 years"}'),
 ('ts custom',   '{"field": "seen_at", "op": "lt", "value": "2024-05-01 10:00+01"}')
) v(op, f);

-- logic: all, any, not (not also matches missing values), nesting
SELECT op, f, pg_temp.ids('contact', f::jsonb) AS ids FROM (VALUES
 ('all',      '{"all": [{"field": "lastname", "op": "eq", "value": "Laine"}, {"field": "score", "op": "gte", "value": 20}]}'),
 ('any',      '{"any": [{"field": "city", "op": "eq", "value": "Berlin"}, {"field": "score", "op": "eq", "value": 30}]}'),
 ('not',      '{"not": {"field": "city", "op": "eq", "value": "Helsinki"}}'),
 ('not not',  '{"not": {"not": {"field": "city", "op": "eq", "value": "Helsinki"}}}'),
 ('nested',   '{"all": [{"any": [{"field": "account.country", "op": "eq", "value": "FI"}, {"field": "owner.username", "op": "eq", "value": "ben"}]}, {"not": {"any": [{"field": "email_opt_out", "op": "is_true"}, {"field": "city", "op": "is_null"}]}}]}'),
 ('one-item', '{"all": [{"field": "id", "op": "eq", "value": 4}]}')
) v(op, f);

-- links: account.x, owner.x, chains; ne/is_null through a link also match records without the linked one
SELECT op, f, pg_temp.ids('contact', f::jsonb) AS ids FROM (VALUES
 ('account eq',         '{"field": "account.name", "op": "eq", "value": "Acme Oy"}'),
 ('account ne',         '{"field": "account.country", "op": "ne", "value": "FI"}'),
 ('account is_null',    '{"field": "account.city", "op": "is_null"}'),
 ('account not_null',   '{"field": "account.city", "op": "not_null"}'),
 ('owner',              '{"field": "owner.email", "op": "contains", "value": "@example"}'),
 ('owner is_null',      '{"field": "owner.email", "op": "is_null"}'),
 ('chain',              '{"field": "account.owner.username", "op": "eq", "value": "ben"}'),
 ('chain not_in',       '{"field": "account.owner.username", "op": "not_in", "value": ["ben"]}')
) v(op, f);

-- has_activity: events count at their start (not in the future), tasks when created
SELECT op, f, pg_temp.ids('contact', f::jsonb) AS ids FROM (VALUES
 ('any activity', '{"has_activity": {}}'),
 ('call',         '{"has_activity": {"kind": "call"}}'),
 ('call 30 days', '{"has_activity": {"kind": "call", "within_last": "30 days"}}'),
 ('status list',  '{"has_activity": {"status": ["planned", "open"]}}'),
 ('task recent',  '{"has_activity": {"kind": "task", "within_last": "7 days"}}'),
 ('no call',      '{"not": {"has_activity": {"kind": "call", "within_last": "30 days"}}}')
) v(op, f);
SELECT pg_temp.ids('account', '{"has_activity": {"kind": "meeting"}}') AS accounts_with_meeting,
       pg_temp.ids('user', '{"has_activity": {"kind": "task"}}') AS users_with_task;

-- other entities
SELECT pg_temp.ids('account', '{"field": "owner.username", "op": "eq", "value": "anna"}') AS accounts,
       pg_temp.ids('user', '{"field": "email", "op": "is_null"}') AS users,
       pg_temp.ids('activity', '{"all": [{"field": "contact.lastname", "op": "eq", "value": "Laine"}, {"field": "kind", "op": "eq", "value": "call"}]}') AS activities;
INSERT INTO ccrm.lead (id, firstname, company, owner_id, email_opt_out) VALUES (1, 'Leo', 'Lead Oy', 1, false), (2, 'Lea', NULL, 2, true);
SELECT pg_temp.ids('lead', '{"all": [{"field": "company", "op": "ends_with", "value": "oy"}, {"field": "owner.username", "op": "eq", "value": "anna"}]}') AS leads;

-- registered entities and their links
CREATE TABLE public.invoice (
    no integer PRIMARY KEY, customer bigint, firm integer, seller smallint,
    amount numeric(10,2), paid boolean, due date, issued timestamptz DEFAULT now());
INSERT INTO public.invoice VALUES
 (100, 1, 1, 1, 120.00, false, current_date - 10, now() - interval '40 days'),
 (101, 4, 2, 2, 80.50,  true,  current_date - 5,  now() - interval '20 days'),
 (102, 3, 1, NULL, 999.99, false, current_date + 10, now() - interval '1 day'),
 (103, NULL, NULL, NULL, 10, NULL, NULL, now());
SELECT ccrm.register_entity('invoice', 'public.invoice', 'no', 'customer', 'firm', 'seller', 'issued');
SELECT op, f, pg_temp.ids('invoice', f::jsonb) AS ids FROM (VALUES
 ('unpaid',        '{"field": "paid", "op": "is_false"}'),
 ('overdue',       '{"all": [{"field": "paid", "op": "is_false"}, {"field": "due", "op": "older_than", "value": "1 day"}]}'),
 ('contact link',  '{"field": "contact.lastname", "op": "eq", "value": "Laine"}'),
 ('contact chain', '{"field": "contact.account.country", "op": "eq", "value": "SE"}'),
 ('account link',  '{"field": "account.name", "op": "starts_with", "value": "acme"}'),
 ('owner link',    '{"field": "owner.username", "op": "eq", "value": "ben"}'),
 ('amount',        '{"field": "amount", "op": "between", "value": [50, 150]}')
) v(op, f);
SELECT ccrm.filter_sql('invoice', '{"field": "contact.account.country", "op": "eq", "value": "SE"}');

-- in_group: same entity by name or id; a linked entity's group; membership, not the filter, decides
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT ccrm.create_target_group('Finnish accounts', 'account', '{"field": "country", "op": "eq", "value": "FI"}');
SELECT ccrm.create_target_group('Anna', 'user', '{"field": "username", "op": "eq", "value": "anna"}');
SELECT pg_temp.ids('contact', '{"in_group": "Helsinki"}') AS before_refresh;
SELECT added FROM ccrm.refresh_target_group('Helsinki');
SELECT added FROM ccrm.refresh_target_group('Finnish accounts');
SELECT added FROM ccrm.refresh_target_group('Anna');
SELECT pg_temp.ids('contact', '{"in_group": "Helsinki"}') AS by_name,
       pg_temp.ids('contact', format('{"in_group": %s}', ccrm.target_group_id('Helsinki'))::jsonb) AS by_id,
       pg_temp.ids('contact', '{"in_group": "Finnish accounts"}') AS via_account,
       pg_temp.ids('contact', '{"in_group": "Anna"}') AS via_owner,
       pg_temp.ids('invoice', '{"in_group": "Helsinki"}') AS invoices_via_contact,
       pg_temp.ids('contact', '{"not": {"in_group": "Helsinki"}}') AS not_in_group;

-- counts agree with the previews; the preview's limit and record
SELECT ccrm.filter_count('contact', '{"field": "lastname", "op": "contains", "value": "laine"}');
SELECT id, record->>'firstname' AS firstname FROM ccrm.filter_preview('contact', '{"field": "lastname", "op": "contains", "value": "laine"}', 2);
SELECT count(*) FROM ccrm.filter_preview('contact', '{"field": "id", "op": "not_null"}', 0);

-- values are read the same whatever the session's DateStyle and time zone
SET datestyle = 'German, DMY';
SET timezone = 'America/New_York';
SELECT pg_temp.ids('contact', '{"field": "birthday", "op": "eq", "value": "1990-01-05"}') AS iso_date,
       pg_temp.ids('contact', '{"field": "seen_at", "op": "eq", "value": "2024-05-01 12:00"}') AS local_time_in_setting_zone;
RESET datestyle;
RESET timezone;

-- a hostile search_path does not change what compiled SQL means
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '1900-01-01'::timestamptz $$;
CREATE TABLE evil.contact (id bigint);
SET search_path = evil, public;
SELECT pg_temp.ids('contact', '{"field": "created_at", "op": "within_last", "value": "7 days"}') AS with_evil_path;
RESET search_path;

-- relative conditions count from the instant a filter is evaluated at (default now())
SELECT ccrm.filter_count('contact', '{"field": "created_at", "op": "older_than", "value": "90 days"}') AS now_older,
       ccrm.filter_count('contact', '{"field": "created_at", "op": "older_than", "value": "90 days"}',
                         at => now() + interval '300 days') AS later_older,
       ccrm.filter_count('contact', '{"field": "created_at", "op": "within_last", "value": "3 days"}',
                         at => now() - interval '12 hours') AS earlier_recent,
       ccrm.filter_count('contact', '{"has_activity": {"kind": "call", "within_last": "7 days"}}',
                         at => now() - interval '60 days') AS calls_then;
SELECT id FROM ccrm.filter_preview('contact', '{"field": "created_at", "op": "within_last", "value": "1 day"}',
                                   at => now() - interval '10 days');
SELECT ccrm.filter_sql('contact', '{"field": "created_at", "op": "older_than", "value": "1 day"}',
                       at => '2026-12-07 10:00 Europe/Helsinki') LIKE '%2026-12-07 10:00:00+02%' AS instant_written_out;
SELECT ccrm.create_target_group('Old', 'contact', '{"field": "created_at", "op": "older_than", "value": "90 days"}');
SELECT * FROM ccrm.refresh_target_group('Old', at => now() + interval '300 days');
SELECT * FROM ccrm.refresh_target_group('Old');
SELECT * FROM ccrm.refresh_target_group(ccrm.target_group_id('Old'), now() + interval '300 days');
SELECT ccrm.drop_target_group('Old');
-- the instant must be finite, the other arguments are required
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('contact', '{"field": "id", "op": "gt", "value": 0}', at => 'infinity')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count(NULL, '{"field": "id", "op": "gt", "value": 0}')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.refresh_target_group(NULL::text, now())$$);

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.invoice;
DROP SCHEMA evil CASCADE;
