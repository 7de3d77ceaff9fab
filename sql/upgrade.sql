-- Upgrades: a database created at the first version walks every update script
-- to the current one, keeping its data and ending with what a fresh install has.
CREATE EXTENSION ccrm VERSION '0.1.0';
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna');
INSERT INTO ccrm.contact (id, owner_id, firstname, city) VALUES (1, 1, 'Aino', 'Helsinki'), (2, 1, 'Eino', 'Turku');
SELECT ccrm.define_field('contact', 'score', 'integer');
UPDATE ccrm.contact SET attrs = '{"score": 7}' WHERE id = 1;
SELECT ccrm.create_target_group('Helsinki', 'contact', '{"field": "city", "op": "eq", "value": "Helsinki"}');
SELECT * FROM ccrm.refresh_target_group('Helsinki');

ALTER EXTENSION ccrm UPDATE;
SELECT extversion = default_version AS at_current_version
  FROM pg_extension, pg_available_extensions WHERE extname = 'ccrm' AND name = 'ccrm';
SELECT name, builtin FROM ccrm.job_kind ORDER BY name;
-- the data is still there and still works
SELECT ccrm.get_setting('time_zone');
SELECT id, firstname, attrs FROM ccrm.contact ORDER BY id;
SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('Helsinki');
UPDATE ccrm.contact SET city = 'Helsinki' WHERE id = 2;
SELECT * FROM ccrm.refresh_target_group('Helsinki');
-- and what later versions added works on it
SELECT ccrm.create_activity_plan('Helsinki', 'calls', 'Call $contact-firstname$', start_date => '2026-12-07');
SELECT ccrm.schedule_job('Refresh', 'refresh_group', '@daily', 'Helsinki');
SELECT status, counts FROM ccrm.run_job('Refresh');

-- The upgraded extension must be the one a fresh install creates.  Both are
-- described from the catalogs, object by object, for every member of the
-- extension (pg_depend deptype 'e') and what hangs off its tables: columns by
-- name with type, not-null, default, identity and column ACL; constraints;
-- indexes; triggers; policies; ACLs of the schema, relations and functions;
-- function definitions; views; sequences; types; comments; the tables pg_dump
-- dumps and the built-in rows the scripts insert.  Column ORDER does not
-- count: ADD COLUMN appends, pg_dump's COPY moves data by column name, and
-- ccrm never relies on the order of SELECT *.  The description is a temporary
-- function (its body is a string, so it depends on nothing of ccrm's and
-- survives DROP EXTENSION).
CREATE FUNCTION pg_temp.ccrm_catalog() RETURNS TABLE (kind text, object text, definition text)
    LANGUAGE sql AS $fn$
WITH ext AS (SELECT e.* FROM pg_extension e WHERE e.extname = 'ccrm'),
member AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rel AS (SELECT c.* FROM pg_class c JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid),
owned AS (   -- everything a comment can be on
    SELECT classid, objid FROM member
    UNION ALL SELECT 'pg_constraint'::regclass, k.oid FROM pg_constraint k JOIN rel ON k.conrelid = rel.oid
    UNION ALL SELECT 'pg_class'::regclass, i.indexrelid FROM pg_index i JOIN rel ON i.indrelid = rel.oid
    UNION ALL SELECT 'pg_trigger'::regclass, t.oid FROM pg_trigger t JOIN rel ON t.tgrelid = rel.oid
    UNION ALL SELECT 'pg_policy'::regclass, p.oid FROM pg_policy p JOIN rel ON p.polrelid = rel.oid
    UNION ALL SELECT 'pg_namespace'::regclass, n.oid FROM pg_namespace n WHERE n.nspname = 'ccrm'
    UNION ALL SELECT 'pg_extension'::regclass, ext.oid FROM ext)
SELECT 'extension', extname::text,
       format('version %s, relocatable %s, schema %s', extversion, extrelocatable, extnamespace::regnamespace)
  FROM ext
UNION ALL
SELECT 'member', pg_describe_object(classid, objid, 0), '' FROM member
UNION ALL
SELECT 'schema', n.nspname::text,
       format('owner %s, acl %s', pg_get_userbyid(n.nspowner),
              COALESCE((SELECT string_agg(x::text, ' ' ORDER BY x::text) FROM unnest(n.nspacl) x), 'default'))
  FROM pg_namespace n WHERE n.nspname = 'ccrm'
UNION ALL
SELECT 'relation', c.oid::regclass::text,
       format('kind %s, owner %s, persistence %s, row security %s, forced %s, options %s, acl %s',
              c.relkind, pg_get_userbyid(c.relowner), c.relpersistence, c.relrowsecurity,
              c.relforcerowsecurity, c.reloptions,
              COALESCE((SELECT string_agg(x::text, ' ' ORDER BY x::text) FROM unnest(c.relacl) x), 'default'))
  FROM rel c
UNION ALL
SELECT 'column', c.oid::regclass::text || '.' || quote_ident(a.attname),
       format('%s, not null %s, default %s, identity %s, generated %s, collation %s, acl %s',
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
              a.attidentity, a.attgenerated, a.attcollation::regcollation,
              COALESCE((SELECT string_agg(x::text, ' ' ORDER BY x::text) FROM unnest(a.attacl) x), 'default'))
  FROM rel c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint', c.oid::regclass::text || ' ' || quote_ident(k.conname),
       format('%s, deferrable %s, deferred %s, validated %s',
              pg_get_constraintdef(k.oid), k.condeferrable, k.condeferred, k.convalidated)
  FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM rel c JOIN pg_index i ON i.indrelid = c.oid
UNION ALL   -- internal triggers (of foreign keys) are named by OID; their constraints are compared
SELECT 'trigger', c.oid::regclass::text || ' ' || quote_ident(t.tgname),
       pg_get_triggerdef(t.oid) || ', enabled ' || t.tgenabled::text
  FROM rel c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', c.oid::regclass::text || ' ' || quote_ident(p.policyname),
       format('%s for %s to %s using (%s) with check (%s)', p.permissive, p.cmd, p.roles, p.qual, p.with_check)
  FROM rel c JOIN pg_policies p ON p.schemaname = c.relnamespace::regnamespace::text AND p.tablename = c.relname
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
       pg_get_functiondef(p.oid) || format('owner %s, acl %s', pg_get_userbyid(p.proowner),
              COALESCE((SELECT string_agg(x::text, ' ' ORDER BY x::text) FROM unnest(p.proacl) x), 'default'))
  FROM member m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'view', c.oid::regclass::text, pg_get_viewdef(c.oid, true)
  FROM rel c WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT 'sequence', c.oid::regclass::text,
       format('%s start %s increment %s min %s max %s cache %s cycle %s, owned by %s',
              s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
              (SELECT string_agg(d.refobjid::regclass::text || '.' || a.attname::text || ' (' || d.deptype::text || ')', ', ')
                 FROM pg_depend d
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0))
  FROM rel c JOIN pg_sequence s ON s.seqrelid = c.oid
UNION ALL
SELECT 'type', t.oid::regtype::text,
       format('type %s, owner %s, base %s, not null %s, default %s, labels %s, constraints %s, acl %s',
              t.typtype, pg_get_userbyid(t.typowner), t.typbasetype::regtype, t.typnotnull, t.typdefault,
              (SELECT string_agg(e.enumlabel::text, ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
              (SELECT string_agg(k.conname::text || ' ' || pg_get_constraintdef(k.oid), ', ' ORDER BY k.conname)
                 FROM pg_constraint k WHERE k.contypid = t.oid),
              COALESCE((SELECT string_agg(x::text, ' ' ORDER BY x::text) FROM unnest(t.typacl) x), 'default'))
  FROM member m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'comment', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
  FROM pg_description d JOIN owned o ON o.classid = d.classoid AND o.objid = d.objoid
UNION ALL
SELECT 'dumped', u.cfg::regclass::text, 'condition ' || quote_literal(u.cond)
  FROM ext, unnest(ext.extconfig, ext.extcondition) u(cfg, cond)
UNION ALL   -- rows the scripts insert (the test adds none of these)
SELECT 'row', 'ccrm.setting_definition ' || s.name, to_jsonb(s)::text FROM ccrm.setting_definition s
UNION ALL
SELECT 'row', 'ccrm.entity ' || e.name, (to_jsonb(e) - 'registered_at')::text FROM ccrm.entity e WHERE e.builtin
UNION ALL
SELECT 'row', 'ccrm.job_kind ' || k.name, to_jsonb(k)::text FROM ccrm.job_kind k WHERE k.builtin
UNION ALL
SELECT 'row', 'ccrm.tool ' || t.name, (to_jsonb(t) - 'registered_at')::text FROM ccrm.tool t WHERE t.builtin
$fn$;
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.ccrm_catalog();
DROP EXTENSION ccrm;

-- The fresh install runs the versioned script generated from
-- extension/ccrm.sql, not the update path (PostgreSQL takes a direct install
-- script when there is one), and every shipped version can reach this one.
SELECT format('ccrm--%s.sql', default_version) IN
       (SELECT pg_ls_dir(setting || '/extension') FROM pg_config WHERE name = 'SHAREDIR') AS own_install_script,
       'ccrm--0.1.0.sql' IN
       (SELECT pg_ls_dir(setting || '/extension') FROM pg_config WHERE name = 'SHAREDIR') AS first_install_script
  FROM pg_available_extensions WHERE name = 'ccrm';
SELECT bool_and(u.path IS NOT NULL) AS every_version_upgrades
  FROM pg_available_extensions a, pg_extension_update_paths('ccrm') u
 WHERE a.name = 'ccrm' AND u.target = a.default_version AND u.source <> a.default_version;
CREATE EXTENSION ccrm;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.ccrm_catalog();

-- what was compared (each kind must be there) ...
SELECT kind, count(*) > 0 AS compared FROM fresh GROUP BY kind ORDER BY kind;
-- ... and every difference between the two paths (none)
SELECT d.kind, d.object, d.side, d.definition
  FROM ((SELECT kind, object, definition, 'upgraded' AS side FROM upgraded
         EXCEPT SELECT kind, object, definition, 'upgraded' FROM fresh)
        UNION ALL
        (SELECT kind, object, definition, 'fresh' FROM fresh
         EXCEPT SELECT kind, object, definition, 'fresh' FROM upgraded)) d
 ORDER BY d.kind, d.object, d.side;
DROP EXTENSION ccrm;
