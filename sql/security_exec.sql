-- Runs confined, and no code of another role running with your rights
-- (issue 9): settings, temporary objects and other session state never
-- outlive a run; ccrm's own SQL names pg_catalog's types; formulas, tools
-- and filters refuse code of roles that cannot act as the role a run
-- executes as, checked at every use.  secx_mallory is the attacker,
-- secx_alice an ordinary application role; both are dropped at the end.
CREATE EXTENSION ccrm;
-- err(sql): run a statement and show how it failed (SQLSTATE, message, hint).
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
SELECT ccrm.set_setting('time_zone', 'UTC');
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna');
INSERT INTO ccrm.contact (id, owner_id, firstname, lastname) VALUES (1, 1, 'Aino', 'Aalto'), (2, 1, 'Bert', 'Berg');
SELECT ccrm.create_target_group('secx all', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('secx all');

CREATE ROLE secx_alice;
CREATE ROLE secx_mallory;
CREATE SCHEMA secx_a AUTHORIZATION secx_alice;
CREATE SCHEMA secx_m AUTHORIZATION secx_mallory;
GRANT SELECT ON ALL TABLES IN SCHEMA ccrm TO secx_alice, secx_mallory;
-- mallory may write formulas and plug in tables, as an application role might
GRANT INSERT, UPDATE ON ccrm.formula, ccrm.entity TO secx_mallory;
GRANT USAGE ON SEQUENCE ccrm.formula_id_seq TO secx_mallory;
-- each uses groups of its own
SET ROLE secx_alice;
SELECT ccrm.create_target_group('secx alice all', 'contact', '{"field": "id", "op": "gt", "value": 0}') IS NOT NULL AS created;
SELECT added FROM ccrm.refresh_target_group('secx alice all');
SET ROLE secx_mallory;
SELECT ccrm.create_target_group('secx mallory all', 'contact', '{"field": "id", "op": "gt", "value": 0}') IS NOT NULL AS created;
SELECT added FROM ccrm.refresh_target_group('secx mallory all');
-- what mallory's code records whenever it runs, and as whom
CREATE TABLE secx_m.spied (who name, what text);
GRANT INSERT ON secx_m.spied TO PUBLIC;
CREATE FUNCTION secx_m.spy(x anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO secx_m.spied VALUES (current_user, pg_catalog.format('%s', x));
    RETURN true;
END $$;
RESET ROLE;

-- 1. Settings a run changes never outlive it: not into the next job of
-- run_due_jobs(), not into the caller's session
CREATE TABLE public.secx_seen (search_path text, leaked text, work_mem text);
CREATE FUNCTION public.secx_leak(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'secx_m, pg_catalog', false);
    PERFORM pg_catalog.set_config('secx.leaked', 'yes', false);
    SET work_mem = '1234kB';
    RETURN pg_catalog.cardinality(member_ids);
END $$;
CREATE FUNCTION public.secx_probe(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.secx_seen VALUES (pg_catalog.current_setting('search_path'),
        COALESCE(NULLIF(pg_catalog.current_setting('secx.leaked', true), ''), 'unset'),
        pg_catalog.current_setting('work_mem'));
    RETURN 0;
END $$;
SELECT ccrm.register_tool('secx_leak', NULL, 'public.secx_leak(bigint[], jsonb)');
SELECT ccrm.register_tool('secx_probe', NULL, 'public.secx_probe(bigint[], jsonb)');
SELECT ccrm.schedule_job('secx 1 leak', 'run_tool', '@daily', 'secx all', '{"tool": "secx_leak"}');
SELECT ccrm.schedule_job('secx 2 probe', 'run_tool', '@daily', 'secx all', '{"tool": "secx_probe"}');
UPDATE ccrm.job SET next_run = '2026-01-01 10:00+00' WHERE name = 'secx 1 leak';
UPDATE ccrm.job SET next_run = '2026-01-01 10:01+00' WHERE name = 'secx 2 probe';
CALL ccrm.run_due_jobs(at => '2026-01-01 12:00+00');
SELECT j.name, r.status, r.counts->'result' AS result
  FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id ORDER BY j.name;
-- the second job ran under the pinned search_path, nothing of the first
SELECT * FROM public.secx_seen;
-- and the session that called run_due_jobs() has its own settings still
SELECT current_setting('search_path') AS search_path,
       coalesce(nullif(current_setting('secx.leaked', true), ''), 'unset') AS leaked,
       current_setting('work_mem') AS work_mem;
-- the same called directly, and through run_job in a transaction
SELECT ccrm.run_tool('secx all', 'secx_leak') IS NOT NULL AS ran;
BEGIN;
SELECT status FROM ccrm.run_job('secx 1 leak');
SELECT current_setting('search_path') AS search_path,
       coalesce(nullif(current_setting('secx.leaked', true), ''), 'unset') AS leaked,
       current_setting('work_mem') AS work_mem;
COMMIT;

-- 2. ccrm's SQL names pg_catalog's types: a session whose search_path puts
-- mallory's schema first (set there, or leaked by a run) cannot make its
-- lookups call her code
SET ROLE secx_mallory;
CREATE DOMAIN secx_m.oid AS pg_catalog.oid CHECK (secx_m.spy(VALUE));
RESET ROLE;
SET search_path = secx_m, pg_catalog;
SELECT ccrm.filter_count('contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT ccrm.check_formula('contact', 'upper(lastname)', 'title');
RESET search_path;
SELECT who, count(*) FROM secx_m.spied GROUP BY who;

-- 3. What PostgreSQL keeps from a security-restricted operation, and what
-- ccrm keeps besides: temporary objects, prepared statements, listened
-- channels, loaded libraries, constraint modes would outlive the run
CREATE FUNCTION public.secx_do(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE params->>'sql';
    RETURN 0;
END $$;
SELECT ccrm.register_tool('secx_do', NULL, 'public.secx_do(bigint[], jsonb)');
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "CREATE TEMP TABLE secx_t (a int)"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "CREATE FUNCTION pg_temp.secx_f() RETURNS int LANGUAGE sql AS ''SELECT 1''"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "CREATE DOMAIN pg_temp.secx_d AS int"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "PREPARE secx_p AS SELECT 1"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "LISTEN secx_channel"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "DISCARD TEMP"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "SET CONSTRAINTS ALL DEFERRED"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "LOAD ''plpgsql''"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do', '{"sql": "SET ROLE secx_mallory"}')$$);
-- temporary objects made and dropped within the run leave nothing: allowed
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_do',
    '{"sql": "CREATE FUNCTION pg_temp.secx_g() RETURNS int LANGUAGE sql AS ''SELECT 1''; DROP FUNCTION pg_temp.secx_g()"}')$$);
SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() ORDER BY 1;
SELECT proname FROM pg_proc WHERE pronamespace = pg_my_temp_schema() ORDER BY 1;
SELECT typname FROM pg_type WHERE typnamespace = pg_my_temp_schema() ORDER BY 1;
SELECT name FROM pg_prepared_statements;
SELECT pg_listening_channels();
-- a deferred trigger queued by alice's job would fire at commit, after the
-- run, as whoever commits: the scheduler's role.  Refused in the run.
SET ROLE secx_alice;
CREATE TABLE secx_a.note (id int);
CREATE FUNCTION secx_a.note_later() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO secx_m.spied VALUES (current_user, 'deferred trigger');
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER note_later AFTER INSERT ON secx_a.note
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION secx_a.note_later();
CREATE FUNCTION secx_a.take_note(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE sql AS $$ INSERT INTO secx_a.note VALUES (1) RETURNING 1::bigint $$;
SELECT ccrm.register_tool('secx_take_note', NULL, 'secx_a.take_note(bigint[], jsonb)');
SELECT ccrm.schedule_job('secx alice notes', 'run_tool', '@daily', 'secx alice all', '{"tool": "secx_take_note"}');
RESET ROLE;
UPDATE ccrm.job SET next_run = '2026-01-01 11:00+00' WHERE name = 'secx alice notes';
CALL ccrm.run_due_jobs(at => '2026-01-01 12:00+00');
SELECT r.status, r.run_as, r.error
  FROM ccrm.job_run r JOIN ccrm.job j ON j.id = r.job_id WHERE j.name = 'secx alice notes';
SELECT count(*) AS notes FROM secx_a.note;
SELECT who, what FROM secx_m.spied ORDER BY 1, 2;

-- 4. Formulas.  The issue's attack: a cast to mallory's domain whose CHECK
-- calls her function, run by a superuser.  Refused when saved ...
SET ROLE secx_mallory;
CREATE DOMAIN secx_m.nosy AS text CHECK (secx_m.spy(VALUE));
SELECT * FROM pg_temp.err($$SELECT ccrm.create_formula('secx nosy', 'contact', 'description', 'firstname::secx_m.nosy')$$);
RESET ROLE;
-- ... before a literal of it is converted while the formula is parsed ...
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$'x'::secx_m.nosy$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$'x'::secx_m.nosy[]$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$secx_m.nosy('x')$q$)$$);
-- ... and when it runs, however the row was written (here: with the
-- checking trigger off, as a restore or a replica might)
SET session_replication_role = replica;
INSERT INTO ccrm.formula (name, entity, field, expression)
VALUES ('secx nosy', 'contact', 'description', 'firstname::secx_m.nosy');
RESET session_replication_role;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('secx all', ARRAY['secx nosy'])$$);
SELECT id, description FROM ccrm.contact ORDER BY id;
SELECT who, count(*) FROM secx_m.spied GROUP BY who ORDER BY 1;
DELETE FROM ccrm.formula WHERE name = 'secx nosy';
-- stable built-ins that read more than the record: other sessions'
-- activity, transactions, connections, privileges, catalogs
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'pg_stat_get_backend_activity(1)')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'pg_backend_pid()::text')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'txid_current_snapshot()::text')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'pg_current_xact_id_if_assigned()::text')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'inet_client_addr()::text')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$has_table_privilege('pg_authid', 'SELECT')$q$)$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$to_regclass('pg_authid')::text$q$)$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$regclass('pg_authid')::text$q$)$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'lastname::regrole::text')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'pg_get_userbyid(10)')$$);
SELECT state, message FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$obj_description(16384)$q$)$$);
-- functions of the record stay allowed
SELECT ccrm.check_formula('contact', 'pg_typeof(firstname)::text');
SELECT ccrm.check_formula('contact', $q$to_char(created_at, 'YYYY') || ' ' || age(created_at)::text$q$);

-- 5. A registered entity whose field has mallory's domain: fine while its
-- constraint only calls built-ins; after she changes it behind ccrm's back,
-- every use by another role is refused before her code runs
SET ROLE secx_mallory;
CREATE DOMAIN secx_m.code AS text CHECK (VALUE <> '');
CREATE TABLE secx_m.deal (id int PRIMARY KEY, contact_id bigint, code secx_m.code);
INSERT INTO secx_m.deal VALUES (1, 1, 'a'), (2, 2, 'b');
GRANT SELECT, UPDATE ON secx_m.deal TO PUBLIC;
SELECT ccrm.register_entity('secx_deal', 'secx_m.deal', 'id', contact_column => 'contact_id');
RESET ROLE;
SELECT ccrm.create_target_group('secx deals', 'secx_deal', '{"field": "code", "op": "ne", "value": "z"}') IS NOT NULL AS created;
SELECT added FROM ccrm.refresh_target_group('secx deals');
SELECT ccrm.create_formula('secx deal code', 'secx_deal', 'code', 'upper(code)') IS NOT NULL AS saved;
SELECT ccrm.run_formulas('secx deals') AS run \gset
SELECT status, counts->'formulas' AS formulas FROM ccrm.job_run WHERE id = :run;
SELECT id, code FROM secx_m.deal ORDER BY id;
SET ROLE secx_mallory;
ALTER DOMAIN secx_m.code ADD CONSTRAINT watch CHECK (secx_m.spy(VALUE)) NOT VALID;
RESET ROLE;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('secx deals')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('secx_deal', 'lower(code)', 'code')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.refresh_target_group('secx deals')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('secx_deal', '{"field": "code", "op": "eq", "value": "A"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('secx_deal', '{"field": "code", "op": "in", "value": ["A", "B"]}')$$);
-- a condition on another field does not touch the domain's code
SELECT ccrm.filter_count('secx_deal', '{"field": "id", "op": "gt", "value": 0}');
SELECT id, code FROM secx_m.deal ORDER BY id;
SELECT who, count(*) FROM secx_m.spied GROUP BY who ORDER BY 1;
-- mallory herself may: her own code, with her own rights
SET ROLE secx_mallory;
SELECT ccrm.filter_count('secx_deal', '{"field": "code", "op": "eq", "value": "A"}');
RESET ROLE;
SELECT DISTINCT who FROM secx_m.spied ORDER BY 1;
TRUNCATE secx_m.spied;

-- 6. Tools are code of their author and run with the runner's rights:
-- only for roles the author can act as, checked at every use
SET ROLE secx_mallory;
CREATE FUNCTION secx_m.grab(member_ids bigint[], params jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO secx_m.spied VALUES (current_user, 'tool');
    RETURN 0;
END $$;
-- names are first come, first served: taking one gains nothing but the name
SELECT ccrm.register_tool('secx_vip', NULL, 'secx_m.grab(bigint[], jsonb)');
RESET ROLE;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx all', 'secx_vip')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_tool(ccrm.target_group_id('secx all'), '{"tool": "secx_vip"}')$$);
SET ROLE secx_alice;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx alice all', 'secx_vip')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.schedule_job('secx alice vip', 'run_tool', '@daily', 'secx alice all', '{"tool": "secx_vip"}')$$);
RESET ROLE;
SELECT who, what FROM secx_m.spied;
-- her own run runs her code with her rights
SET ROLE secx_mallory;
SELECT ccrm.run_tool('secx mallory all', 'secx_vip') IS NOT NULL AS ran;
-- made SECURITY DEFINER after registration: refused when used
ALTER FUNCTION secx_m.grab(bigint[], jsonb) SECURITY DEFINER;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx mallory all', 'secx_vip')$$);
RESET ROLE;
SELECT who, what FROM secx_m.spied;
-- alice's tool, given to mallory after registration: no longer alice's code
SET ROLE secx_alice;
CREATE FUNCTION secx_a.count_them(member_ids bigint[], params jsonb) RETURNS integer
LANGUAGE sql AS 'SELECT pg_catalog.cardinality(member_ids)';
SELECT ccrm.register_tool('secx_count', NULL, 'secx_a.count_them(bigint[], jsonb)');
SELECT ccrm.run_tool('secx alice all', 'secx_count') AS run \gset
SELECT run_as, counts->'result' AS result FROM ccrm.job_run WHERE id = :run;
RESET ROLE;
ALTER FUNCTION secx_a.count_them(bigint[], jsonb) OWNER TO secx_mallory;
SET ROLE secx_alice;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx alice all', 'secx_count')$$);
RESET ROLE;
-- a superuser's tool may run for anyone; it runs with their rights, confined
SET ROLE secx_alice;
SELECT * FROM pg_temp.err($$SELECT ccrm.run_tool('secx alice all', 'secx_probe')$$);
RESET ROLE;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.secx_seen;
DROP FUNCTION public.secx_leak(bigint[], jsonb), public.secx_probe(bigint[], jsonb), public.secx_do(bigint[], jsonb);
DROP SCHEMA secx_a, secx_m CASCADE;
DROP OWNED BY secx_alice, secx_mallory;
DROP ROLE secx_alice, secx_mallory;
