-- Errors a user can reach have their own SQLSTATE, not XX000 (internal):
-- ccrm's trigger functions used elsewhere, a rule that rewrites the update
-- of a registered entity.  (Infinite times for schedules: schedule.sql.)
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

-- ccrm.job_trigger() on another table, or as an AFTER trigger
CREATE TABLE public.not_a_job (id bigint, note text);
CREATE TRIGGER borrowed BEFORE INSERT ON public.not_a_job FOR EACH ROW EXECUTE FUNCTION ccrm.job_trigger();
SELECT * FROM pg_temp.err($$INSERT INTO public.not_a_job VALUES (1, 'x')$$);
DROP TRIGGER borrowed ON public.not_a_job;
CREATE TRIGGER borrowed AFTER INSERT ON public.not_a_job FOR EACH ROW EXECUTE FUNCTION ccrm.job_trigger();
SELECT * FROM pg_temp.err($$INSERT INTO public.not_a_job VALUES (1, 'x')$$);
SELECT count(*) FROM public.not_a_job;

-- a DO INSTEAD rule on a registered entity's table: the update is not what it seems
CREATE TABLE public.ticket (id bigint PRIMARY KEY, status text);
CREATE TABLE public.ticket_log (id bigint, status text);
INSERT INTO public.ticket VALUES (1, 'open'), (2, 'open');
SELECT ccrm.register_entity('ticket', 'public.ticket', 'id');
SELECT ccrm.create_target_group('Tickets', 'ticket', '{"field": "id", "op": "gt", "value": 0}');
SELECT added FROM ccrm.refresh_target_group('Tickets');
CREATE RULE log_instead AS ON UPDATE TO public.ticket DO INSTEAD INSERT INTO public.ticket_log VALUES (NEW.id, NEW.status);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Tickets', 'ticket', '{"status": "closed"}', audit => false)$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Tickets', 'ticket', '{"status": "closed"}')$$);
SELECT (SELECT count(*) FROM public.ticket_log) AS logged, (SELECT count(*) FROM ccrm.job_run) AS runs,
       (SELECT string_agg(status, ',' ORDER BY id) FROM public.ticket) AS statuses;
-- a DO ALSO rule: the update runs without audit (the rule logs it), not with
DROP RULE log_instead ON public.ticket;
CREATE RULE log_also AS ON UPDATE TO public.ticket DO ALSO INSERT INTO public.ticket_log VALUES (NEW.id, NEW.status);
SELECT * FROM pg_temp.err($$SELECT ccrm.mass_update('Tickets', 'ticket', '{"status": "closed"}')$$);
SELECT ccrm.mass_update('Tickets', 'ticket', '{"status": "closed"}', audit => false) > 0 AS ran;
SELECT (SELECT count(*) FROM public.ticket_log) AS logged, (SELECT count(*) FROM ccrm.job_run) AS runs,
       (SELECT string_agg(status, ',' ORDER BY id) FROM public.ticket) AS statuses;

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.not_a_job, public.ticket, public.ticket_log;
