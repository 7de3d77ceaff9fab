#!/usr/bin/env bash
# Follow-up sequences (issue 13), on the 1,000,000 contacts of dataset.sql,
# with the scheduler's own sequence pass switched off (ccrm.enable_scheduler)
# except for the lag measurement.
#   sequence_steps          200,000 due step executions (render, outbox,
#                           advance) by CALL ccrm.process_sequences(), batches
#                           of 1000 each committed, against the same work in
#                           hand-written set-based SQL: a procedure that claims
#                           1000 due enrolments FOR UPDATE SKIP LOCKED, renders
#                           the same subject and body with joins, inserts into
#                           ccrm.outbox with an idempotency key, records the
#                           executions and advances with ccrm.step_due_time,
#                           into copies of ccrm's tables with the same indexes
#                           (target 1.5)
#   sequence_steps_per_s    ccrm's step executions per second (target_min 20000)
#   sequence_enrol_full     activation enrolling 1,000,000 matching contacts,
#                           against INSERT ... SELECT of the same rows (first due
#                           time included) into a copy of the enrolment table
#                           (target 1.3)
#   sequence_enrol_incremental
#                           an enrolment pass after 1% of the contacts changed
#                           (10,000 updated), against a full re-evaluation that
#                           enrols nothing new; filter: city in (Helsinki, Espoo,
#                           Tampere, Turku, Oulu), i.e. every contact (target 0.1)
#   sequence_lag_p50/_p99   commit of an inserted contact to its enrolment, while
#                           an application inserts 100 contacts/s for 20 s and
#                           the worker processes a 200,000-step batch (p99 target 2 s)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=200000

psql_script() {
	as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" PGOPTIONS="-c client_min_messages=warning" "$INST/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$PGDATABASE"
}
scheduler() {	# on|off
	psql_bench "ALTER SYSTEM SET ccrm.enable_scheduler = $1" >/dev/null
	psql_bench "SELECT pg_reload_conf()" >/dev/null
	sleep 1
}
cleanup_objects() {
	psql_script >/dev/null <<'SQL'
DO $$ DECLARE s text; BEGIN
    FOR s IN SELECT name FROM ccrm.sequence WHERE name LIKE 'bench %' LOOP PERFORM ccrm.drop_sequence(s); END LOOP;
END $$;
DROP TRIGGER IF EXISTS bench_lag ON ccrm.sequence_enrolment;
DROP TABLE IF EXISTS public.bench_enrolment, public.bench_step_run, public.bench_lag CASCADE;
DROP FUNCTION IF EXISTS public.bench_lag_mark();
DROP PROCEDURE IF EXISTS public.bench_steps_baseline(timestamptz, integer);
DROP PROCEDURE IF EXISTS public.bench_app_inserts(integer);
DELETE FROM ccrm.contact WHERE title = 'bench lag';
TRUNCATE ccrm.outbox;
DELETE FROM ccrm.message_template WHERE name = 'bench seq';
DO $$ BEGIN PERFORM ccrm.drop_channel('bench_seq_mail'); EXCEPTION WHEN OTHERS THEN NULL; END $$;
SQL
	scheduler on
}
cleanup_objects
trap cleanup_objects EXIT
scheduler off

psql_script >/dev/null <<'SQL'
SELECT ccrm.create_channel('bench_seq_mail', 'email');
SELECT ccrm.create_message_template('bench seq', 'email', subject => 'Hello $contact-firstname$',
    body => 'Dear $contact-firstname$ $contact-lastname$, news from $account-name$.', channel => 'bench_seq_mail',
    sender_id => 1);
CREATE TABLE public.bench_enrolment (LIKE ccrm.sequence_enrolment INCLUDING ALL);
CREATE TABLE public.bench_step_run (LIKE ccrm.sequence_step_run INCLUDING ALL);
-- the hand-written processing of due steps: batches of n, each committed
CREATE PROCEDURE public.bench_steps_baseline(at timestamptz, n integer)
LANGUAGE plpgsql AS $$
DECLARE
    done integer;
    ch integer := (SELECT id FROM ccrm.channel WHERE name = 'bench_seq_mail');
BEGIN
    LOOP
        WITH c AS (
            SELECT e.id, e.record_id, e.round, e.step, e.next_due FROM public.bench_enrolment e
             WHERE e.sequence_id = 0 AND e.status = 'active' AND e.next_due <= at
             ORDER BY e.next_due LIMIT n FOR UPDATE SKIP LOCKED),
        r AS MATERIALIZED (
            SELECT c.*, t.email, t.email_opt_out, t.timezone, t.account_id,
                   'Hello ' || coalesce(t.firstname, '') AS subject,
                   'Dear ' || coalesce(t.firstname, '') || ' ' || coalesce(t.lastname, '') || ', news from '
                       || coalesce(a.name, '') || '.' AS body
              FROM c JOIN ccrm.contact t ON t.id = c.record_id
              LEFT JOIN ccrm.account a ON a.id = t.account_id),
        m AS (
            INSERT INTO ccrm.outbox (channel_id, status, available_at, recipient, entity, record_id, contact_id,
                                     user_id, address_field, time_zone, sender_id, subject, body, template_id,
                                     source, source_id, idempotency_key, reason, owner, created_at, finished_at)
            SELECT ch, CASE WHEN r.email_opt_out THEN 'suppressed' ELSE 'queued' END, at, r.email, 'contact',
                   r.record_id, r.record_id, NULL, 'email', r.timezone, 1, r.subject, r.body, NULL, 'sequence', 0,
                   'bench-base:' || r.round || ':' || r.step || ':' || r.record_id,
                   CASE WHEN r.email_opt_out THEN 'the recipient opted out of email' END, 'postgres', at,
                   CASE WHEN r.email_opt_out THEN at END
              FROM r
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id, record_id, status),
        s AS (
            INSERT INTO public.bench_step_run (enrolment_id, step, sequence_id, record_id, step_id, due_at, ran_at,
                                               outcome, message_id, reason)
            SELECT r.id, r.step, 0, r.record_id, 0, r.next_due, at,
                   CASE WHEN m.status = 'queued' THEN 'message' ELSE 'skipped' END, m.id,
                   CASE WHEN m.status <> 'queued' THEN 'the message was ' || m.status END
              FROM r JOIN m ON m.record_id = r.record_id
            RETURNING 1),
        u AS (
            UPDATE public.bench_enrolment e
               SET step = e.step + 1,
                   next_due = ccrm.step_due_time(at, 3, 'any', NULL, NULLIF(r.timezone, ''), false, NULL)
              FROM r WHERE e.id = r.id
            RETURNING 1)
        SELECT (SELECT count(*) FROM u) + 0 * (SELECT count(*) FROM s) INTO done;
        COMMIT;
        EXIT WHEN done < n;
    END LOOP;
END $$;
SELECT ccrm.create_sequence('bench steps', 'contact', '{"field": "id", "op": "lte", "value": 200000}',
    '[{"action": "email_customer", "template": "bench seq"},
      {"action": "email_customer", "delay_days": 3, "template": "bench seq"}]');
SELECT ccrm.create_sequence('bench enrol', 'contact',
    '{"field": "city", "op": "in", "value": ["Helsinki", "Espoo", "Tampere", "Turku", "Oulu"]}',
    '[{"action": "email_customer", "delay_days": 1, "template": "bench seq"}]');
SQL

# -- 200,000 due step executions --------------------------------------------------
# setup: the 200,000 enrolled and due (both sides), the outbox empty
steps_setup="
SELECT ccrm.deactivate_sequence('bench steps') WHERE (SELECT active FROM ccrm.sequence WHERE name = 'bench steps');
DELETE FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('bench steps');
DELETE FROM ccrm.sequence_step_run WHERE sequence_id = ccrm.sequence_id('bench steps');
TRUNCATE ccrm.outbox, public.bench_enrolment, public.bench_step_run;
SELECT ccrm.activate_sequence('bench steps', at => now() - interval '1 hour') \\g /dev/null
UPDATE ccrm.sequence SET reconciled_at = now() + interval '1 day' WHERE name = 'bench steps';
INSERT INTO public.bench_enrolment (sequence_id, record_id, round, matched_at, step, next_due)
SELECT 0, record_id, 1, matched_at, 1, next_due FROM ccrm.sequence_enrolment
 WHERE sequence_id = ccrm.sequence_id('bench steps');
VACUUM ANALYZE ccrm.sequence_enrolment, public.bench_enrolment, ccrm.outbox;
CHECKPOINT;"
REPEAT=${BENCH_REPEAT} t_ccrm=$(time_sql "CALL ccrm.process_sequences(now());" "$steps_setup")
ran=$(psql_bench "SELECT count(*) FROM ccrm.sequence_step_run WHERE sequence_id = ccrm.sequence_id('bench steps')")
t_base=$(time_sql "CALL public.bench_steps_baseline(now(), 1000);" "$steps_setup")
ran_base=$(psql_bench "SELECT count(*) FROM public.bench_step_run")
[ "$ran" = "$N" ] || echo "BENCH name=sequence_steps error=ran_$ran"
[ "$ran_base" = "$N" ] || echo "BENCH name=sequence_steps error=baseline_ran_$ran_base"
bench_line sequence_steps "$t_ccrm" "$t_base" 1.5
bench_value_min sequence_steps_per_s "$(calc '%.0f' "$N / $t_ccrm")" steps/s 20000
psql_script >/dev/null <<'SQL'
SELECT ccrm.deactivate_sequence('bench steps');
DELETE FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('bench steps');
DELETE FROM ccrm.sequence_step_run WHERE sequence_id = ccrm.sequence_id('bench steps');
TRUNCATE ccrm.outbox, public.bench_enrolment, public.bench_step_run;
SQL

# -- full enrolment of 1,000,000 ----------------------------------------------------
enrol_setup="
SELECT ccrm.deactivate_sequence('bench enrol') WHERE (SELECT active FROM ccrm.sequence WHERE name = 'bench enrol');
DELETE FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('bench enrol');
DELETE FROM ccrm.sequence_step_run WHERE sequence_id = ccrm.sequence_id('bench enrol');
TRUNCATE public.bench_enrolment;
VACUUM ANALYZE ccrm.sequence_enrolment, public.bench_enrolment;
CHECKPOINT;"
REPEAT=2 t_ccrm=$(time_sql "SELECT ccrm.activate_sequence('bench enrol', at => now());" "$enrol_setup")
enrolled=$(psql_bench "SELECT count(*) FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('bench enrol')")
REPEAT=2 t_base=$(time_sql "SET enable_nestloop = off;
INSERT INTO public.bench_enrolment (sequence_id, record_id, round, matched_at, step, next_due)
SELECT 0, t.id, 1, now(), 1, ccrm.step_due_time(now(), 1, 'any', NULL, NULLIF(t.timezone, ''), false, NULL)
  FROM ccrm.contact t
 WHERE t.city = ANY ('{Helsinki,Espoo,Tampere,Turku,Oulu}')
   AND NOT EXISTS (SELECT 1 FROM public.bench_enrolment o WHERE o.sequence_id = 0 AND o.record_id = t.id)
ON CONFLICT DO NOTHING;" "$enrol_setup")
[ "$enrolled" = "1000000" ] || echo "BENCH name=sequence_enrol_full error=enrolled_$enrolled"
bench_line sequence_enrol_full "$t_ccrm" "$t_base" 1.3

# -- incremental pass after 1% changed, against a full re-evaluation ---------------------
psql_script >/dev/null <<'SQL'
SELECT ccrm.activate_sequence('bench enrol', at => now()) WHERE NOT (SELECT active FROM ccrm.sequence WHERE name = 'bench enrol');
UPDATE ccrm.sequence SET reconciled_at = now() + interval '1 day' WHERE name = 'bench enrol';
VACUUM ANALYZE ccrm.sequence_enrolment;
SQL
incr_setup="UPDATE ccrm.contact SET title = title WHERE id % 100 = 7;"
t_incr=$(time_sql "SELECT enrolled FROM ccrm.run_sequences(now()) \\g /dev/null" "$incr_setup")
t_full=$(time_sql "SELECT enrolled FROM ccrm.run_sequences(now(), full_pass => true) \\g /dev/null" "")
psql_bench "UPDATE ccrm.sequence SET reconciled_at = now() + interval '1 day' WHERE name = 'bench enrol'" >/dev/null
bench_line sequence_enrol_incremental "$t_incr" "$t_full" 0.1
psql_bench "SELECT ccrm.drop_sequence('bench enrol')" >/dev/null

# -- lag while the worker processes 200,000 steps -------------------------------------
psql_script >/dev/null <<'SQL'
DELETE FROM ccrm.sequence_enrolment WHERE sequence_id = ccrm.sequence_id('bench steps');
DELETE FROM ccrm.sequence_step_run WHERE sequence_id = ccrm.sequence_id('bench steps');
SELECT ccrm.activate_sequence('bench steps', at => now() - interval '1 hour') WHERE NOT (SELECT active FROM ccrm.sequence WHERE name = 'bench steps');
SELECT ccrm.create_sequence('bench lag', 'contact', '{"field": "title", "op": "eq", "value": "bench lag"}',
    '[{"action": "email_customer", "delay_days": 1, "template": "bench seq"}]');
SELECT ccrm.activate_sequence('bench lag', only_new => true);
-- when each enrolment was written (a row trigger for this sequence only)
CREATE TABLE public.bench_lag (record_id bigint, at timestamptz);
CREATE FUNCTION public.bench_lag_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.bench_lag VALUES (NEW.record_id, clock_timestamp()); RETURN NULL; END $$;
DO $$ BEGIN
    EXECUTE format('CREATE TRIGGER bench_lag AFTER INSERT ON ccrm.sequence_enrolment FOR EACH ROW'
                   ' WHEN (NEW.sequence_id = %s) EXECUTE FUNCTION public.bench_lag_mark()', ccrm.sequence_id('bench lag'));
END $$;
CREATE PROCEDURE public.bench_app_inserts(n integer)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO ccrm.contact (owner_id, firstname, title, email, description)
        VALUES (1, 'lag' || i, 'bench lag', 'lag' || i || '@example.com', clock_timestamp()::text);
        COMMIT;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SQL
scheduler on
psql_bench "CALL public.bench_app_inserts(2000)" >/dev/null
sleep 5
lag=$(psql_bench "
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 3) || ' ' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 3) || ' ' || count(*)
  FROM (SELECT extract(epoch FROM b.at - c.description::timestamptz) AS l
          FROM public.bench_lag b JOIN ccrm.contact c ON c.id = b.record_id) x")
busy=$(psql_bench "SELECT count(*) FROM ccrm.sequence_step_run WHERE sequence_id = ccrm.sequence_id('bench steps')")
read -r p50 p99 nlag <<<"$lag"
[ "$nlag" = "2000" ] || echo "BENCH name=sequence_lag error=enrolled_$nlag"
bench_report sequence_lag_steps_done_meanwhile "$busy" steps
bench_value sequence_lag_p50 "$p50" s 2
bench_value sequence_lag_p99 "$p99" s 2
