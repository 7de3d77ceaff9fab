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

-- the objects of the upgraded extension are those of a fresh install
CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ccrm');
DROP EXTENSION ccrm;
CREATE EXTENSION ccrm;
CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ccrm');
SELECT count(*) > 50 AS many_objects FROM fresh;
(SELECT 'only upgraded' AS side, object FROM upgraded EXCEPT SELECT 'only upgraded', object FROM fresh)
UNION ALL
(SELECT 'only fresh', object FROM fresh EXCEPT SELECT 'only fresh', object FROM upgraded);
DROP EXTENSION ccrm;
