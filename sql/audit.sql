-- Audit and undo of runs that change fields: partitioned and inherited
-- registered entities, undo in another time zone than the run's.
CREATE EXTENSION ccrm;

-- A partitioned entity: rows of two partitions share ctids, and every row
-- must be audited with its own old values and restored to them.
CREATE TABLE public.ticket (id bigint PRIMARY KEY, status text, due timestamptz) PARTITION BY RANGE (id);
CREATE TABLE public.ticket_low PARTITION OF public.ticket FOR VALUES FROM (1) TO (100);
CREATE TABLE public.ticket_high PARTITION OF public.ticket FOR VALUES FROM (100) TO (200);
INSERT INTO public.ticket VALUES (1, 'open', NULL), (100, 'pending', NULL), (2, 'new', NULL), (101, 'waiting', NULL);
SELECT id, tableoid::regclass AS partition, ctid FROM public.ticket ORDER BY ctid, id;
SELECT ccrm.register_entity('ticket', 'public.ticket', 'id');
SELECT ccrm.create_target_group('Tickets', 'ticket', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Tickets');
SELECT ccrm.mass_update('Tickets', 'ticket', '{"status": "closed"}') AS run \gset
SELECT counts->'updated' AS updated FROM ccrm.job_run WHERE id = :run;
SELECT record_id, old_values, new_values FROM ccrm.run_audit WHERE run_id = :run ORDER BY record_id;
SELECT * FROM ccrm.undo_run(:run);
SELECT id, status FROM public.ticket ORDER BY id;

-- An entity with an inheritance child: the parent's and the child's rows
-- share ctids too.
CREATE TABLE public.asset (id bigint PRIMARY KEY, label text);
CREATE TABLE public.asset_archived (PRIMARY KEY (id)) INHERITS (public.asset);
INSERT INTO public.asset VALUES (1, 'desk'), (2, 'lamp');
INSERT INTO public.asset_archived VALUES (11, 'old desk'), (12, 'old lamp');
SELECT id, tableoid::regclass AS table, ctid FROM public.asset ORDER BY ctid, id;
SELECT ccrm.register_entity('asset', 'public.asset', 'id');
SELECT ccrm.create_target_group('Assets', 'asset', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Assets');
SELECT ccrm.mass_update('Assets', 'asset', '{"label": "sold"}') AS run \gset
SELECT record_id, old_values FROM ccrm.run_audit WHERE run_id = :run ORDER BY record_id;
SELECT * FROM ccrm.undo_run(:run);
SELECT id, label FROM public.asset ORDER BY id;

-- Undo in another time zone than the run's: timestamptz values, columns
-- and custom fields, are compared as instants, however they are rendered.
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');
SELECT ccrm.define_field('contact', 'seen_at', 'timestamptz');
INSERT INTO ccrm.contact (id, firstname, attrs) VALUES
    (1, 'Aino', '{"seen_at": "2026-01-05 10:00+00"}'), (2, 'Bert', '{}');
SELECT ccrm.create_target_group('Contacts', 'contact', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Contacts');
SET TimeZone = 'UTC';
SELECT ccrm.mass_update('Tickets', 'ticket', '{"due": "2026-03-01 12:00+00"}') AS due_run \gset
SELECT ccrm.mass_update('Contacts', 'contact', '{"seen_at": "2026-03-02 08:30+00"}') AS seen_run \gset
-- the run wrote in its own zone (the setting), whatever the session's was
SELECT record_id, old_values, new_values FROM ccrm.run_audit WHERE run_id IN (:due_run, :seen_run)
 ORDER BY run_id, record_id;
SET TimeZone = 'America/New_York';
-- ticket 2 was changed since (another instant): the only conflict
UPDATE public.ticket SET due = '2026-03-01 12:00:01+00' WHERE id = 2;
-- contact 1 got the same instant again, written in this zone
UPDATE ccrm.contact SET attrs = jsonb_set(attrs, '{seen_at}', to_jsonb('2026-03-02 08:30+00'::timestamptz)) WHERE id = 1;
SELECT attrs FROM ccrm.contact ORDER BY id;
SELECT * FROM ccrm.undo_run(:due_run);
SELECT * FROM ccrm.undo_run(:seen_run);
SET TimeZone = 'UTC';
SELECT id, due FROM public.ticket ORDER BY id;
SELECT id, (attrs->>'seen_at')::timestamptz AS seen_at FROM ccrm.contact ORDER BY id;
RESET TimeZone;

-- What an audited update cannot change is counted by reason, in the run's
-- counts and a NOTICE: rows a BEFORE UPDATE trigger skips, rows that row
-- level security shows but does not let the caller update.  (Rows deleted
-- or updated by other sessions during the run: isolation spec
-- mass_update_concurrent.)
CREATE TABLE public.note (id bigint PRIMARY KEY, owner name NOT NULL, body text);
INSERT INTO public.note VALUES (1, 'ccrm_audit_clerk', 'a'), (2, 'ccrm_audit_clerk', 'frozen'),
    (3, 'someone_else', 'b'), (4, 'ccrm_audit_clerk', 'c');
CREATE FUNCTION public.keep_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF OLD.body = 'frozen' THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TRIGGER keep_frozen BEFORE UPDATE ON public.note FOR EACH ROW EXECUTE FUNCTION public.keep_frozen();
ALTER TABLE public.note ENABLE ROW LEVEL SECURITY;
CREATE POLICY note_read ON public.note FOR SELECT USING (true);
CREATE POLICY note_edit ON public.note FOR UPDATE USING (owner = current_user);
SELECT ccrm.register_entity('note', 'public.note', 'id');
SELECT ccrm.create_target_group('Notes', 'note', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Notes');
CREATE ROLE ccrm_audit_clerk;
GRANT SELECT, UPDATE ON public.note TO ccrm_audit_clerk;
GRANT SELECT ON ALL TABLES IN SCHEMA ccrm TO ccrm_audit_clerk;
SET ROLE ccrm_audit_clerk;
SELECT ccrm.mass_update('Notes', 'note', '{"body": "done"}') AS note_run \gset
SELECT counts->'updated' AS updated, counts->'skipped' AS skipped FROM ccrm.job_run WHERE id = :note_run;
SELECT record_id, old_values FROM ccrm.run_audit WHERE run_id = :note_run ORDER BY record_id;
SELECT * FROM ccrm.undo_run(:note_run);
-- without audit the same rows are left alone, as by any UPDATE, uncounted
SELECT ccrm.mass_update('Notes', 'note', '{"body": "done"}', audit => false) AS note_run2 \gset
SELECT counts->'updated' AS updated, counts->'skipped' AS skipped FROM ccrm.job_run WHERE id = :note_run2;
RESET ROLE;
SELECT id, owner, body FROM public.note ORDER BY id;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.ticket, public.asset, public.note CASCADE;
DROP FUNCTION public.keep_frozen();
DROP OWNED BY ccrm_audit_clerk;
DROP ROLE ccrm_audit_clerk;
