-- Injection walk: field names, values, group names and custom field values
-- full of SQL syntax are data.  The results prove it: hostile identifiers are
-- unknown fields, hostile values match only themselves, and the tables are
-- still there afterwards.
CREATE EXTENSION ccrm;
SELECT ccrm.define_field('contact', 'note', 'text');
INSERT INTO ccrm.contact (id, firstname, lastname, city, attrs) VALUES
 (1, 'O''Brien; DROP TABLE ccrm.contact; --', 'quote', 'x', '{"note": "Robert''); DROP TABLE ccrm.account;--"}'),
 (2, 'back\slash', 'backslash', 'E''\x''', '{"note": "$$ $1 %s"}'),
 (3, '100% sure', 'percent', 'a_b', '{"note": "/* comment */ -- dash"}'),
 (4, '100 percent', 'plain', 'aXb', '{"note": "SELECT pg_sleep(10)"}'),
 (5, 'OR 1=1', 'keyword', 'Ä Ö ☃', '{"note": "\\u0000-free \" quotes"}');

CREATE FUNCTION pg_temp.ids(f jsonb) RETURNS text LANGUAGE sql AS
$$ SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '-') FROM ccrm.filter_preview('contact', f, 100) $$;

-- hostile values match literally, and only themselves
SELECT label, pg_temp.ids(jsonb_build_object('field', field, 'op', op, 'value', val)) AS ids FROM (VALUES
 ('quote eq',        'firstname', 'eq',          'O''Brien; DROP TABLE ccrm.contact; --'),
 ('quote contains',  'firstname', 'contains',    '''brien; drop'),
 ('semicolon',       'firstname', 'contains',    ';'),
 ('backslash eq',    'firstname', 'eq',          'back\slash'),
 ('backslash cont',  'firstname', 'contains',    '\s'),
 ('percent',         'firstname', 'contains',    '%'),
 ('percent sure',    'firstname', 'starts_with', '100%'),
 ('underscore',      'city',      'contains',    '_'),
 ('underscore eq',   'city',      'eq',          'a_b'),
 ('E-string',        'city',      'eq',          'E''\x'''),
 ('keyword',         'firstname', 'eq',          'OR 1=1'),
 ('always-true try', 'firstname', 'eq',          ''' OR ''1''=''1'),
 ('unicode',         'city',      'ends_with',   '☃'),
 ('dollar quote',    'note',      'eq',          '$$ $1 %s'),
 ('comment',         'note',      'contains',    '/*'),
 ('dash dash',       'note',      'ends_with',   '-- dash'),
 ('custom drop',     'note',      'contains',    'drop table ccrm.account'),
 ('json quote',      'note',      'contains',    '" quotes')
) v(label, field, op, val);

-- the same values inside in-lists
SELECT pg_temp.ids(jsonb_build_object('field', 'firstname', 'op', 'in',
       'value', jsonb_build_array('O''Brien; DROP TABLE ccrm.contact; --', 'back\slash', 'nope'))) AS in_list;
SELECT pg_temp.ids(jsonb_build_object('field', 'firstname', 'op', 'not_in',
       'value', jsonb_build_array('OR 1=1', '100% sure'))) AS not_in_list;

-- hostile identifiers are unknown fields, links or groups: errors, never SQL
CREATE FUNCTION pg_temp.err_state(f jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ccrm.filter_count('contact', f);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
SELECT label, pg_temp.err_state(f) FROM (VALUES
 ('quote field',     jsonb_build_object('field', 'city" = city OR "1', 'op', 'eq', 'value', 'x')),
 ('semicolon field', jsonb_build_object('field', 'id; DROP TABLE ccrm.contact', 'op', 'not_null')),
 ('paren field',     jsonb_build_object('field', 'pg_sleep(1)', 'op', 'not_null')),
 ('keyword field',   jsonb_build_object('field', 'select', 'op', 'not_null')),
 ('star field',      jsonb_build_object('field', '*', 'op', 'not_null')),
 ('link injection',  jsonb_build_object('field', 'account) OR (1=1.name', 'op', 'not_null')),
 ('op injection',    jsonb_build_object('field', 'id', 'op', '= 1 OR 1 =', 'value', 1)),
 ('group injection', jsonb_build_object('in_group', 'x'' OR ''1''=''1')),
 ('kind injection',  jsonb_build_object('has_activity', jsonb_build_object('kind', 'call'' OR ''1''=''1'))),
 ('interval inj.',   jsonb_build_object('field', 'created_at', 'op', 'older_than', 'value', '1 day'') OR true --'))
) v(label, f);

-- group names full of syntax are just names
SELECT ccrm.create_target_group('"; DROP TABLE ccrm.contact; --', 'contact',
       jsonb_build_object('field', 'lastname', 'op', 'eq', 'value', 'quote'));
SELECT added FROM ccrm.refresh_target_group('"; DROP TABLE ccrm.contact; --');
SELECT pg_temp.ids(jsonb_build_object('in_group', '"; DROP TABLE ccrm.contact; --')) AS via_hostile_group;

-- an entity named like a keyword, over a table and columns with awkward names
CREATE TABLE public."Order Lines" ("Line No" integer PRIMARY KEY, "select" text, "from" bigint);
INSERT INTO public."Order Lines" VALUES (1, 'a''b', 1), (2, 'x', 2);
SELECT ccrm.register_entity('order_lines', 'public."Order Lines"', 'Line No', contact_column => 'from');
SELECT ccrm.filter_sql('order_lines', '{"all": [{"field": "select", "op": "eq", "value": "a''b"}, {"field": "contact.lastname", "op": "eq", "value": "quote"}]}');
SELECT id FROM ccrm.filter_preview('order_lines', '{"all": [{"field": "select", "op": "eq", "value": "a''b"}, {"field": "contact.lastname", "op": "eq", "value": "quote"}]}');

-- still all there
SELECT count(*) AS contacts FROM ccrm.contact;
SELECT count(*) AS accounts FROM ccrm.account;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public."Order Lines";
