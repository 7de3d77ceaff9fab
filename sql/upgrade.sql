-- Upgrades: the oldest version walks every update script to the current one
-- and ends with the same objects as a fresh install.
CREATE EXTENSION ccrm VERSION '0.1.0';
ALTER EXTENSION ccrm UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'ccrm';
SELECT name, builtin FROM ccrm.job_kind ORDER BY name;
SELECT name, entity FROM ccrm.tool ORDER BY name;
CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ccrm');
DROP EXTENSION ccrm;
CREATE EXTENSION ccrm;
SELECT object AS only_after_upgrade FROM upgraded
EXCEPT SELECT pg_describe_object(classid, objid, objsubid)
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ccrm');
SELECT pg_describe_object(classid, objid, objsubid) AS only_when_fresh
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ccrm')
EXCEPT SELECT object FROM upgraded;
DROP EXTENSION ccrm;
