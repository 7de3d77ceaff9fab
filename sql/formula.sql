-- Field formulas: the expression checker (allowed and refused constructs),
-- saving, running for a group in order, audit and undo, the job kind.
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
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'segment', 'text');
SELECT ccrm.define_field('contact', 'checked_on', 'date');
INSERT INTO ccrm.account (id, name) VALUES (1, 'Acme Oy');
INSERT INTO ccrm.contact (id, account_id, firstname, lastname, email, title, attrs) VALUES
    (1, 1, 'Aino', 'Laine', 'AINO@Example.com', NULL, '{"score": 70}'),
    (2, 1, 'Bert', 'Berg', '', 'CTO', '{"score": 20}'),
    (3, NULL, 'Cleo', NULL, 'cleo@example.org', NULL, '{}');
SELECT ccrm.create_target_group('All', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('All');
CREATE FUNCTION public.shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) || '!' $$;
CREATE TYPE public.mood AS ENUM ('happy', 'sad');
CREATE SEQUENCE public.seq;

-- allowed: fields (columns and custom fields), constants, operators, CASE,
-- COALESCE, NULLIF, GREATEST, immutable and stable pg_catalog functions
SELECT ccrm.check_formula('contact', 'upper(lastname)', 'description');
SELECT ccrm.check_formula('contact', $$coalesce(title, 'n/a')$$, 'title');
SELECT ccrm.check_formula('contact', $$firstname || ' ' || coalesce(lastname, '')$$);
SELECT ccrm.check_formula('contact', $$CASE WHEN score >= 50 THEN 'hot' WHEN score IS NULL THEN NULL ELSE 'cold' END$$, 'segment');
SELECT ccrm.check_formula('contact', $$nullif(lower(email), '')$$, 'email');
SELECT ccrm.check_formula('contact', 'greatest(score, 10) * 2', 'score');
SELECT ccrm.check_formula('contact', 'now()::date', 'checked_on');
SELECT ccrm.check_formula('contact', $$lower(email) LIKE '%@example.com'$$, 'email_opt_out');
SELECT ccrm.check_formula('contact', 'extract(year FROM created_at)::integer', 'score');
SELECT ccrm.check_formula('contact', $$account_id IN (1, 2) AND NOT email_opt_out$$, 'sms_opt_out');
SELECT ccrm.check_formula('contact', $$title -- a comment$$, 'title');

-- refused, each naming what is not allowed
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'pg_sleep(1)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'random() * 100', 'score')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', '(SELECT max(id) FROM ccrm.contact)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'EXISTS (SELECT 1 FROM pg_authid)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname IN (SELECT rolname FROM pg_roles)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'public.shout(firstname)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'shout(firstname)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$set_config('ccrm.x', firstname, false)$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$nextval('public.seq')$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$query_to_xml('select 1', true, true, '')$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$current_setting('search_path')$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'count(*)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'row_number() OVER ()')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'generate_series(1, score)')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $q$'happy'::public.mood$q$)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 't.firstname')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'contact.*')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstnme')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'attrs')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname FROM ccrm.contact')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname WHERE true')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname, lastname')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname AS x')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname; DROP TABLE ccrm.contact')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'upper(firstname')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', '  ')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname', 'checked_on')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'now()', 'score')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname', 'id')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', 'firstname', 'nickname')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('deal', 'firstname')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.check_formula('contact', $1)$$);

-- saving checks too, however the row is written
SELECT ccrm.create_formula('full name', 'contact', 'description', $$firstname || ' ' || coalesce(lastname, '?')$$);
SELECT ccrm.create_formula('clean email', 'contact', 'email', $$nullif(lower(email), '')$$);
SELECT ccrm.create_formula('score up', 'contact', 'score', 'coalesce(score, 0) + 5');
SELECT ccrm.create_formula('segment', 'contact', 'segment',
    $$CASE WHEN score >= 50 THEN 'hot' ELSE 'cold' END$$, description => 'after score up');
SELECT ccrm.create_formula('checked', 'contact', 'checked_on', 'current_date', active => false);
SELECT * FROM pg_temp.err($$SELECT ccrm.create_formula('sleepy', 'contact', 'title', 'pg_sleep(1)::text')$$);
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.formula (name, entity, field, expression) VALUES ('r', 'contact', 'score', 'random()')$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.formula SET expression = '(SELECT 1)' WHERE name = 'score up'$$);
SELECT * FROM pg_temp.err($$UPDATE ccrm.formula SET field = 'checked_on' WHERE name = 'full name'$$);
SELECT name, entity, field, expression, active FROM ccrm.formula ORDER BY id;

-- every active formula, by name: clean email, full name, score up, segment
SELECT ccrm.run_formulas('All') AS run \gset
SELECT status, counts FROM ccrm.job_run WHERE id = :run;
SELECT id, email, description, attrs FROM ccrm.contact ORDER BY id;
-- chosen formulas in the given order, a passive one included; segment sees the new score
SELECT ccrm.run_formulas('All', ARRAY['score up', 'segment', 'checked']) AS run2 \gset
SELECT counts->'formulas' AS formulas FROM ccrm.job_run WHERE id = :run2;
SELECT id, attrs->>'score' AS score, attrs->>'segment' AS segment,
       (attrs->>'checked_on')::date BETWEEN current_date - 1 AND current_date + 1 AS checked_today FROM ccrm.contact ORDER BY id;
SELECT step, record_id, old_values, new_values - 'checked_on' AS new_values FROM ccrm.run_audit WHERE run_id = :run2 ORDER BY step, record_id;
-- undo goes backwards through the steps
SELECT * FROM ccrm.undo_run(:run2);
SELECT id, attrs FROM ccrm.contact ORDER BY id;
SELECT * FROM ccrm.undo_run(:run);
SELECT id, email, description, attrs FROM ccrm.contact ORDER BY id;

-- the job kind
SELECT name, needs_group, builtin FROM ccrm.job_kind WHERE name = 'run_formulas';
SELECT ccrm.job_check_formulas(ccrm.target_group_id('All'), '{}');
SELECT ccrm.job_check_formulas(ccrm.target_group_id('All'), '{"formulas": ["segment", "checked"], "audit": false}');
INSERT INTO ccrm.job_run (id, kind, group_id, trigger, action_time, run_as)
VALUES (1001, 'run_formulas', ccrm.target_group_id('All'), 'schedule', '2026-03-01 23:30+00', current_user::regrole);
SELECT ccrm.job_run_formulas(NULL, 1001, ccrm.target_group_id('All'), '{"formulas": ["checked"]}',
                             '2026-03-01 23:30+00', 'Europe/Helsinki');
SELECT id, (attrs->>'checked_on')::date BETWEEN current_date - 1 AND current_date + 1 AS checked_today FROM ccrm.contact ORDER BY id;
SELECT count(*) FROM ccrm.run_audit WHERE run_id = 1001;

-- errors of runs
SELECT ccrm.create_target_group('Accounts', 'account');
SELECT ccrm.create_formula('account name', 'account', 'description', 'upper(name)');
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('All', ARRAY['score up', 'nope'])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('All', ARRAY['account name'])$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('Nobody')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_formulas(ccrm.target_group_id('All'), '{"formulas": []}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_formulas(ccrm.target_group_id('All'), '{"formulas": [1]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_formulas(ccrm.target_group_id('All'), '{"formula": ["segment"]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_formulas(ccrm.target_group_id('Accounts'), '{"formulas": ["segment"]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_formulas(NULL, '{}')$$);
-- a formula broken since it was saved (its field dropped) fails the run, changing nothing
SELECT ccrm.drop_field('contact', 'segment');
SELECT * FROM pg_temp.err($$SELECT ccrm.run_formulas('All')$$);
SELECT ccrm.run_formulas('Accounts') IS NOT NULL AS empty_group_runs;

DROP EXTENSION ccrm CASCADE;
DROP FUNCTION public.shout(text);
DROP TYPE public.mood;
DROP SEQUENCE public.seq;
