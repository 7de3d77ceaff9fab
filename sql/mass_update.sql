-- Mass updates: targets, literals, null, the action date and time, batches,
-- audit and undo (with conflicts), the job kind's validator and runner, errors.
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
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT ccrm.define_field('account', 'last_contacted', 'date');
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'seen_at', 'timestamptz');
INSERT INTO ccrm.crm_user (id, username) VALUES (1, 'anna'), (2, 'ben');
INSERT INTO ccrm.account (id, name, owner_id, description) VALUES
    (1, 'Acme Oy', 1, 'old'), (2, 'Beta GmbH', 2, NULL), (3, 'Gamma AB', NULL, 'keep');
INSERT INTO ccrm.contact (id, account_id, owner_id, firstname, title) VALUES
    (1, 1, 1, 'Aino', 'CEO'), (2, 1, 2, 'Bert', NULL), (3, 2, 2, 'Cleo', 'CTO'),
    (4, NULL, 1, 'Dino', NULL), (5, 3, NULL, 'Eeva', 'Buyer');
SELECT ccrm.create_target_group('Some contacts', 'contact', '{"field": "id", "op": "lte", "value": 4}');
SELECT ccrm.create_target_group('Accounts', 'account', '{"field": "id", "op": "lte", "value": 2}');
SELECT added FROM ccrm.refresh_target_group('Some contacts');
SELECT added FROM ccrm.refresh_target_group('Accounts');
-- a user trigger on contacts sees every change
CREATE TABLE public.contact_log (id bigint, title text);
CREATE FUNCTION public.log_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.contact_log VALUES (NEW.id, NEW.title); RETURN NEW; END $$;
CREATE TRIGGER log_contact AFTER UPDATE ON ccrm.contact FOR EACH ROW EXECUTE FUNCTION public.log_contact();

-- the seed's example: the accounts of a group's contacts were contacted today
SELECT ccrm.mass_update('Some contacts', 'account',
    '{"description": "Contacted by phone", "last_contacted": {"action": "date"}}') AS run \gset
SELECT kind, group_id, trigger, run_as = current_user::regrole AS me, status, counts - 'action_date' AS counts,
       (counts->>'action_date')::date = (action_time AT TIME ZONE 'Europe/Helsinki')::date AS action_date_today,
       action_time <= now() AS earlier, finished_at IS NOT NULL AS finished, detail
  FROM ccrm.job_run WHERE id = :run;
SELECT a.id, a.description, (a.attrs->>'last_contacted')::date = (r.action_time AT TIME ZONE 'Europe/Helsinki')::date AS today
  FROM ccrm.account a, ccrm.job_run r WHERE r.id = :run ORDER BY a.id;
SELECT entity, step, record_id, old_values, new_values - 'last_contacted' AS new_values, undone_at
  FROM ccrm.run_audit WHERE run_id = :run ORDER BY record_id;
-- the same again changes nothing and audits nothing
SELECT ccrm.mass_update('Some contacts', 'account',
    '{"description": "Contacted by phone", "last_contacted": {"action": "date"}}') AS run2 \gset
SELECT counts->'updated' AS updated FROM ccrm.job_run WHERE id = :run2;
SELECT count(*) FROM ccrm.run_audit WHERE run_id = :run2;
SELECT * FROM ccrm.undo_run(:run2);

-- the members themselves: literal, null, a number into an integer custom field; triggers fire
SELECT ccrm.mass_update('Some contacts', 'contact', '{"title": "Lead buyer", "owner_id": null, "score": "42"}') AS run3 \gset
SELECT id, title, owner_id, attrs, updated_at > created_at AS touched FROM ccrm.contact ORDER BY id;
SELECT * FROM public.contact_log ORDER BY id;
SELECT record_id, old_values, new_values FROM ccrm.run_audit WHERE run_id = :run3 ORDER BY record_id;

-- undo: contact 2 was changed since (conflict), the others come back
UPDATE ccrm.contact SET title = 'Boss' WHERE id = 2;
SELECT * FROM ccrm.undo_run(:run3);
SELECT id, title, owner_id, attrs FROM ccrm.contact ORDER BY id;
-- undo again: nothing left but the conflict; put back what the run wrote and it undoes
SELECT * FROM ccrm.undo_run(:run3);
UPDATE ccrm.contact SET title = 'Lead buyer' WHERE id = 2;
SELECT * FROM ccrm.undo_run(:run3);
SELECT id, title, owner_id, attrs FROM ccrm.contact WHERE id = 2;
SELECT count(*) FILTER (WHERE undone_at IS NULL) AS left, count(*) FROM ccrm.run_audit WHERE run_id = :run3;

-- undo of the account update restores the description and removes the custom field again
SELECT * FROM ccrm.undo_run(:run);
SELECT id, description, attrs FROM ccrm.account ORDER BY id;

-- an account group updates its accounts' contacts; no audit
SELECT ccrm.mass_update('Accounts', 'contact', '{"title": "Customer"}', audit => false) AS run4 \gset
SELECT id, title FROM ccrm.contact ORDER BY id;
SELECT counts->'updated' AS updated, counts->'audit' AS audit FROM ccrm.job_run WHERE id = :run4;
SELECT count(*) FROM ccrm.run_audit WHERE run_id = :run4;
SELECT * FROM ccrm.undo_run(:run4);

-- batches of 2: every member updated; progress in application_name, restored at the end
SET ccrm.mass_update_batch_size = 2;
SET application_name = 'regress';
SELECT ccrm.mass_update('Some contacts', 'contact', '{"title": "Batched", "seen_at": {"action": "time"}}') AS run5 \gset
SHOW application_name;
SELECT c.id, c.title, (c.attrs->>'seen_at')::timestamptz = r.action_time AS seen_at_action_time
  FROM ccrm.contact c, ccrm.job_run r WHERE r.id = :run5 ORDER BY c.id;
SELECT count(*) FROM ccrm.run_audit WHERE run_id = :run5;
RESET ccrm.mass_update_batch_size;

-- the job kind: validator normalises, runner uses the given run and its time zone
SELECT name, needs_group, builtin FROM ccrm.job_kind WHERE name = 'mass_update';
SELECT ccrm.job_check_mass_update(ccrm.target_group_id('Some contacts'),
    '{"set": {"account": {"description": "Contacted", "last_contacted": {"action": "date"}}}}');
-- 23:30 UTC on Jan 2 is Jan 3 in Helsinki but still Jan 2 in New York
INSERT INTO ccrm.job_run (id, kind, group_id, trigger, action_time, run_as)
VALUES (1001, 'mass_update', ccrm.target_group_id('Accounts'), 'manual', '2026-01-02 23:30+00', current_user::regrole),
       (1002, 'mass_update', ccrm.target_group_id('Accounts'), 'manual', '2026-01-02 23:30+00', current_user::regrole);
SELECT ccrm.job_mass_update(NULL, 1001, ccrm.target_group_id('Accounts'),
    '{"set": {"account": {"last_contacted": {"action": "date"}}}}', '2026-01-02 23:30+00', 'Europe/Helsinki');
SELECT id, attrs->>'last_contacted' AS last_contacted FROM ccrm.account ORDER BY id;
SELECT ccrm.job_mass_update(NULL, 1002, ccrm.target_group_id('Accounts'),
    '{"set": {"account": {"last_contacted": {"action": "date"}}}, "audit": true}', '2026-01-02 23:30+00', 'America/New_York');
SELECT id, attrs->>'last_contacted' AS last_contacted FROM ccrm.account ORDER BY id;
SELECT run_id, record_id, old_values, new_values FROM ccrm.run_audit WHERE run_id IN (1001, 1002) ORDER BY 1, 2;
UPDATE ccrm.job_run SET status = 'succeeded' WHERE id IN (1001, 1002);
SELECT * FROM ccrm.undo_run(1002);
SELECT id, attrs->>'last_contacted' AS last_contacted FROM ccrm.account ORDER BY id;

-- errors: nothing is changed, no run is left behind
SELECT count(*) AS runs_before FROM ccrm.job_run \gset
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '{"descripton": "x"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '{"last_contacted": "someday"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '{"last_contacted": "2026-02-30"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"score": "many"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"email_opt_out": "perhaps"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"title": {"action": "date"}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '{"last_contacted": {"action": "time"}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"seen_at": {"action": "tomorrow"}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"title": ["a", "b"]}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"id": 7}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'contact', '{"updated_at": "2026-01-01"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '{"name": null}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'account', '"x"')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Some contacts', 'lead', '{"company": "x"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Accounts', 'user', '{"firstname": "x"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Nobody', 'contact', '{"title": "x"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_mass_update(ccrm.target_group_id('Accounts'), '{"set": {"account": {"name": "x"}}, "dry_run": true}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_mass_update(ccrm.target_group_id('Accounts'), '{"audit": true}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_mass_update(ccrm.target_group_id('Accounts'), '{"set": {"account": {"name": "x"}}, "audit": "yes"}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_mass_update(NULL, '{"set": {"account": {"name": "x"}}}')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.job_check_mass_update(ccrm.target_group_id('Accounts'), '{"set": {"account": {"industry": "retail"}, "contact": {"emial": "x"}}}')$$);
SELECT count(*) = :runs_before AS no_new_runs FROM ccrm.job_run;
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.undo_run(424242)$$);
INSERT INTO ccrm.job_run (id, kind, trigger, action_time, run_as) VALUES (1003, 'mass_update', 'manual', now(), current_user::regrole);
SELECT * FROM pg_temp.err($$SELECT * FROM ccrm.undo_run(1003)$$);

-- another role: runs as itself, sees only its own runs and audit
CREATE ROLE ccrm_clerk;
GRANT SELECT, UPDATE ON ccrm.account, ccrm.contact TO ccrm_clerk;
GRANT SELECT ON ALL TABLES IN SCHEMA ccrm TO ccrm_clerk;
UPDATE ccrm.target_group SET owner = 'ccrm_clerk' WHERE name = 'Accounts';  -- a role uses its own groups
SET ROLE ccrm_clerk;
SELECT ccrm.mass_update('Accounts', 'account', '{"industry": "retail"}') AS run6 \gset
SELECT kind, run_as, status FROM ccrm.job_run ORDER BY id;
SELECT count(*) FROM ccrm.run_audit;
SELECT * FROM pg_temp.err(format('SELECT * FROM ccrm.undo_run(%s)', :run));
SELECT * FROM pg_temp.err($$INSERT INTO ccrm.run_audit VALUES (1, 0, 'account', 1, '{}', '{}')$$);
SELECT * FROM ccrm.undo_run(:run6);
SELECT * FROM pg_temp.err($$SELECT ccrm.purge_audit()$$);
RESET ROLE;
UPDATE ccrm.target_group SET owner = current_user::regrole WHERE name = 'Accounts';

-- purge: by age, by ccrm.audit_retention (0 keeps everything)
SET ccrm.audit_retention = 0;
SELECT ccrm.purge_audit();
RESET ccrm.audit_retention;
SHOW ccrm.audit_retention;
SELECT ccrm.purge_audit();
SELECT ccrm.purge_audit('0 seconds') > 0 AS purged;
SELECT count(*) FROM ccrm.run_audit;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.contact_log;
DROP FUNCTION public.log_contact();
DROP OWNED BY ccrm_clerk;
DROP ROLE ccrm_clerk;
