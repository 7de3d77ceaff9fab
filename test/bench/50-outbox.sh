#!/usr/bin/env bash
# The outbox (issue 11): 200,000 emails enqueued set-based from a group, then
# claimed and marked sent in batches of 100 (each batch its own
# transaction), with 1 consumer and with 4.  Compared in the same run with
#   - a competent hand-written SKIP LOCKED queue in SQL: the same unique
#     idempotency index, the same suppression (opt-outs and empty addresses
#     at enqueue, and joined again at claim time), per-message state
#     (status, token, attempts, lease, times, reason), a claim that returns
#     what a sender needs and fills its batch past suppressed rows, a
#     completion that checks the token and that every message completed,
#     and a high-water mark kept in the session so claims do not walk the
#     index entries of rows already taken (the dead-entry trap), with a
#     scan from the front when the mark finds too few, so that retries,
#     expired leases and rolled-back claims are found;
#   - PgQ (pgq3): insert_event for the same 200,000 messages (recipient,
#     subject, body, key), ticks driven here (pgq.ticker()), and a consumer
#     that records every event's completion in a table.
# Lines:
#   outbox_enqueue                 ccrm / baseline, best of BENCH_REPEAT (target 1.3)
#   outbox_drain_1, outbox_drain_4 claim + mark_sent of the whole queue (target 1.3)
#   outbox_msgs_per_s_1/_4         ccrm's messages sent per second; target_min is
#                                  the baseline's rate / 1.3 in this run
#   outbox_claim_flat              ccrm's median claim time in the last tenth
#                                  of the 1-consumer drain over that in the
#                                  first tenth (the trap makes it grow with
#                                  the queue); outbox_claim_flat_baseline alike
#   outbox_end_to_end_vs_pgq       ccrm enqueue + 1-consumer drain, against PgQ
#                                  insert + ticks + consume (target 1.0)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=200000

now() { date +%s.%N; }
# SQL from stdin, each statement in its own transaction (VACUUM may run).
psql_script() {
	as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" PGOPTIONS="-c client_min_messages=warning" "$INST/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$PGDATABASE"
}

cleanup_objects() {
	psql_script >/dev/null <<'SQL'
DROP TABLE IF EXISTS public.bench_q, public.bench_claim_time, public.bench_pgq_done CASCADE;
DROP FUNCTION IF EXISTS public.bench_q_claim(integer, interval);
DROP PROCEDURE IF EXISTS public.bench_q_drain(text), public.bench_ccrm_drain(text), public.bench_pgq_consume(bigint);
DROP EXTENSION IF EXISTS pgq CASCADE;
TRUNCATE ccrm.outbox;
DELETE FROM ccrm.message_template WHERE name = 'bench mail';
DO $$ BEGIN PERFORM ccrm.drop_channel('bench_mail'); EXCEPTION WHEN OTHERS THEN NULL; END $$;
DO $$ BEGIN PERFORM ccrm.drop_target_group('bench outbox'); EXCEPTION WHEN OTHERS THEN NULL; END $$;
SQL
}
cleanup_objects
trap cleanup_objects EXIT

psql_script >/dev/null <<SQL
SELECT ccrm.create_target_group('bench outbox', 'contact', '{"field": "id", "op": "lte", "value": $N}');
SELECT added FROM ccrm.refresh_target_group('bench outbox');
SELECT ccrm.create_channel('bench_mail', 'email');
SELECT ccrm.create_message_template('bench mail', 'email', subject => 'News for \$contact-firstname\$',
    body => 'Dear \$contact-firstname\$ \$contact-lastname\$, news from \$account-name\$.', channel => 'bench_mail');
CREATE TABLE public.bench_claim_time (tag text, pid integer, batch integer, seconds float8);
SQL

psql_script >/dev/null <<'SQL'
-- the baseline queue
CREATE TABLE public.bench_q (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status text NOT NULL, available_at timestamptz NOT NULL, recipient text, contact_id bigint,
    subject text, body text, idempotency_key text UNIQUE, attempts integer NOT NULL DEFAULT 0,
    claim_token uuid, claimed_at timestamptz, sent_at timestamptz, finished_at timestamptz, reason text,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON public.bench_q (available_at, id) WHERE status IN ('queued', 'sending');

-- claim up to n sendable messages; the session remembers where the last claim ended
CREATE FUNCTION public.bench_q_claim(n integer, lease interval)
RETURNS TABLE (id bigint, recipient text, subject text, body text, claim_token uuid)
LANGUAGE plpgsql AS $$
DECLARE
    t uuid := gen_random_uuid();
    mark_at timestamptz := coalesce(nullif(current_setting('bench_q.mark_at', true), ''), '-infinity');
    mark_id bigint := coalesce(nullif(current_setting('bench_q.mark_id', true), ''), '0');
    from_front boolean := mark_at = '-infinity';
    got integer := 0;
    rows integer;
    lim integer;
    r record;
BEGIN
    LOOP
        lim := n - got;
        IF from_front THEN mark_at := '-infinity'; mark_id := 0; END IF;
        rows := 0;
        FOR r IN
            WITH c AS (SELECT q.id, q.available_at, q.contact_id FROM public.bench_q q
                        WHERE q.status IN ('queued', 'sending') AND q.available_at <= now()
                          AND (q.available_at, q.id) >= (mark_at, mark_id)
                        ORDER BY q.available_at, q.id LIMIT lim FOR UPDATE SKIP LOCKED),
                 x AS (SELECT c.id, c.available_at AS was,
                              coalesce(ct.email_opt_out OR coalesce(btrim(ct.email), '') = '', false) AS sup
                         FROM c LEFT JOIN ccrm.contact ct ON ct.id = c.contact_id)
            UPDATE public.bench_q q
               SET status = CASE WHEN x.sup THEN 'suppressed' ELSE 'sending' END,
                   reason = CASE WHEN x.sup THEN 'opted out or no address' END,
                   finished_at = CASE WHEN x.sup THEN now() END,
                   claim_token = CASE WHEN x.sup THEN q.claim_token ELSE t END,
                   claimed_at = CASE WHEN x.sup THEN q.claimed_at ELSE now() END,
                   available_at = CASE WHEN x.sup THEN q.available_at ELSE now() + lease END,
                   attempts = q.attempts + CASE WHEN x.sup THEN 0 ELSE 1 END
              FROM x WHERE q.id = x.id
            RETURNING q.id, q.recipient, q.subject, q.body, x.sup, x.was
        LOOP
            rows := rows + 1;
            IF (r.was, r.id) > (mark_at, mark_id) THEN mark_at := r.was; mark_id := r.id; END IF;
            CONTINUE WHEN r.sup;
            id := r.id; recipient := r.recipient; subject := r.subject; body := r.body; claim_token := t;
            RETURN NEXT;
            got := got + 1;
        END LOOP;
        PERFORM set_config('bench_q.mark_at', mark_at::text, false), set_config('bench_q.mark_id', mark_id::text, false);
        EXIT WHEN got >= n;
        IF rows < lim THEN
            EXIT WHEN from_front;
            from_front := true;     -- what the mark skipped: rolled back, late
        ELSE
            from_front := false;    -- go on after what was suppressed
        END IF;
    END LOOP;
END $$;

CREATE PROCEDURE public.bench_q_drain(tag text)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    tok uuid;
    n bigint;
    t0 timestamptz;
    times float8[] := '{}';
BEGIN
    LOOP
        t0 := clock_timestamp();
        SELECT array_agg(c.id), min(c.claim_token::text)::uuid INTO ids, tok
          FROM public.bench_q_claim(100, '5 minutes') c;
        times := times || extract(epoch FROM clock_timestamp() - t0)::float8;
        EXIT WHEN ids IS NULL;
        UPDATE public.bench_q SET status = 'sent', sent_at = now(), finished_at = now()
         WHERE id = ANY (ids) AND claim_token = tok AND status = 'sending';
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> cardinality(ids) THEN RAISE EXCEPTION 'the claim token no longer holds'; END IF;
        COMMIT;
    END LOOP;
    INSERT INTO public.bench_claim_time SELECT tag, pg_backend_pid(), i, times[i] FROM generate_subscripts(times, 1) i;
END $$;

CREATE PROCEDURE public.bench_ccrm_drain(tag text)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    tok uuid;
    t0 timestamptz;
    times float8[] := '{}';
BEGIN
    LOOP
        t0 := clock_timestamp();
        SELECT array_agg(c.id), min(c.claim_token::text)::uuid INTO ids, tok
          FROM ccrm.claim_messages('bench_mail', 100, '5 minutes') c;
        times := times || extract(epoch FROM clock_timestamp() - t0)::float8;
        EXIT WHEN ids IS NULL;
        PERFORM ccrm.mark_sent(ids, tok);
        COMMIT;
    END LOOP;
    INSERT INTO public.bench_claim_time SELECT tag, pg_backend_pid(), i, times[i] FROM generate_subscripts(times, 1) i;
END $$;
SQL

GROUP_IDS="ARRAY(SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('bench outbox'))"
ENQ_CCRM="SELECT count(*) FROM ccrm.enqueue_template('bench mail', $GROUP_IDS, key_prefix => 'b:');"
ENQ_BASE="INSERT INTO public.bench_q (status, available_at, recipient, contact_id, subject, body, idempotency_key, finished_at, reason)
SELECT CASE WHEN c.email_opt_out OR coalesce(btrim(c.email), '') = '' THEN 'suppressed' ELSE 'queued' END, now(),
       btrim(c.email), c.id, 'News for ' || coalesce(c.firstname, ''),
       'Dear ' || coalesce(c.firstname, '') || ' ' || coalesce(c.lastname, '') || ', news from ' || coalesce(a.name, '') || '.',
       'b:' || c.id, CASE WHEN c.email_opt_out OR coalesce(btrim(c.email), '') = '' THEN now() END,
       CASE WHEN c.email_opt_out THEN 'opted out' WHEN coalesce(btrim(c.email), '') = '' THEN 'no address' END
  FROM ccrm.target_group_member m JOIN ccrm.contact c ON c.id = m.member_id LEFT JOIN ccrm.account a ON a.id = c.account_id
 WHERE m.group_id = ccrm.target_group_id('bench outbox')
ON CONFLICT (idempotency_key) DO NOTHING;"
RESET_CCRM="TRUNCATE ccrm.outbox;
VACUUM ANALYZE ccrm.outbox;"
RESET_BASE="TRUNCATE public.bench_q;
VACUUM ANALYZE public.bench_q;"

drain() {	# procedure consumers tag: wall seconds until all are done
	local t0 t1 i pids=() rc=0
	t0=$(now)
	for ((i = 0; i < $2; i++)); do psql_bench "CALL $1('$3')" >/dev/null & pids+=($!); done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	t1=$(now)
	[ "$rc" = 0 ] || { echo "outbox bench: a consumer of $1 failed" >&2; exit 1; }
	calc '%.4f' "$t1 - $t0"
}
best() {	# a b: the smaller
	awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'
}
check_drained() {	# what: every message ended sent or suppressed
	local left
	left=$(psql_bench "SELECT (SELECT count(*) FROM ccrm.outbox WHERE status NOT IN ('sent', 'suppressed'))
	                        + (SELECT count(*) FROM public.bench_q WHERE status NOT IN ('sent', 'suppressed'))")
	[ "$left" = 0 ] || { echo "outbox bench: $left messages left unsent ($1)" >&2; exit 1; }
}

# enqueue, each from an empty queue
enq_c=$(time_sql "$ENQ_CCRM" "$RESET_CCRM")
enq_b=$(time_sql "$ENQ_BASE" "$RESET_BASE")
bench_line outbox_enqueue "$enq_c" "$enq_b" 1.3

# drains: each side enqueued right before its own drain; the best of BENCH_REPEAT
e2e_c=""
for consumers in 1 4; do
	d_c="" d_b=""
	for ((rep = 0; rep < BENCH_REPEAT; rep++)); do
		psql_script >/dev/null <<<"$RESET_BASE $RESET_CCRM CHECKPOINT;"
		t0=$(now)
		psql_bench "$ENQ_CCRM" >/dev/null
		t=$(drain public.bench_ccrm_drain "$consumers" "ccrm_${consumers}_$rep")
		t1=$(now)
		d_c=$(best "$t" "$d_c")
		[ "$consumers" = 1 ] && e2e_c=$(best "$(calc '%.4f' "$t1 - $t0")" "$e2e_c")
		check_drained "ccrm, $consumers consumers"
		sent_c=$(psql_bench "SELECT count(*) FROM ccrm.outbox WHERE status = 'sent'")
		psql_script >/dev/null <<<"$RESET_CCRM CHECKPOINT;"
		psql_bench "$ENQ_BASE" >/dev/null
		t=$(drain public.bench_q_drain "$consumers" "base_${consumers}_$rep")
		d_b=$(best "$t" "$d_b")
		check_drained "baseline, $consumers consumers"
		sent_b=$(psql_bench "SELECT count(*) FROM public.bench_q WHERE status = 'sent'")
	done
	bench_line "outbox_drain_$consumers" "$d_c" "$d_b" 1.3
	bench_value_min "outbox_msgs_per_s_$consumers" "$(calc '%.0f' "$sent_c / $d_c")" msgs_per_s \
		"$(calc '%.0f' "$sent_b / $d_b / 1.3")"
done

# the dead-entry trap: claim time must not grow as the taken rows pile up
flat() {	# tag prefix: median claim time of the last tenth over the first tenth (1 consumer, each run)
	psql_bench "
	WITH t AS (SELECT tag, seconds, ntile(10) OVER (PARTITION BY tag ORDER BY batch) AS tenth
	             FROM public.bench_claim_time WHERE tag LIKE '$1%'),
	     r AS (SELECT tag, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE tenth = 10)
	                     / percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE tenth = 1) AS ratio
	             FROM t GROUP BY tag)
	SELECT round(min(ratio)::numeric, 3) FROM r"
}
psql_bench "SELECT tag, round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds))::numeric, 3) AS median_ms,
                   round(1000 * max(seconds)::numeric, 3) AS max_ms, count(*) AS claims
              FROM public.bench_claim_time GROUP BY tag ORDER BY tag" | sed 's/^/claim times (tag|median ms|max ms|claims): /' >&2
bench_value outbox_claim_flat "$(flat ccrm_1_)" last_over_first_tenth 1.5
bench_value outbox_claim_flat_baseline "$(flat base_1_)" last_over_first_tenth 1.5

# PgQ end to end: insert_event for all, ticks driven here, a consumer recording each completion
if psql_bench "CREATE EXTENSION IF NOT EXISTS pgq" >/dev/null 2>&1; then
	psql_script >/dev/null <<'SQL'
CREATE TABLE public.bench_pgq_done (ev_id bigint PRIMARY KEY, done_at timestamptz NOT NULL DEFAULT now());
CREATE PROCEDURE public.bench_pgq_consume(expected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    b bigint;
    n bigint;
    done bigint := 0;
    idle integer := 0;
BEGIN
    LOOP
        b := pgq.next_batch('bench', 'c');
        IF b IS NULL THEN
            EXIT WHEN done >= expected;
            idle := idle + 1;
            IF idle > 1000 THEN RAISE EXCEPTION 'pgq consumer: % of % events after % empty polls', done, expected, idle; END IF;
            PERFORM pgq.ticker();
            COMMIT;
            CONTINUE;
        END IF;
        INSERT INTO public.bench_pgq_done (ev_id) SELECT ev_id FROM pgq.get_batch_events(b);
        GET DIAGNOSTICS n = ROW_COUNT;
        done := done + n;
        PERFORM pgq.finish_batch(b);
        COMMIT;
    END LOOP;
END $$;
SQL
	PGQ_INSERT="SELECT count(pgq.insert_event('bench', 'email',
	       'Dear ' || coalesce(c.firstname, '') || ' ' || coalesce(c.lastname, '') || ', news from ' || coalesce(a.name, '') || '.',
	       btrim(c.email), 'News for ' || coalesce(c.firstname, ''), 'b:' || c.id, NULL))
	  FROM ccrm.target_group_member m JOIN ccrm.contact c ON c.id = m.member_id LEFT JOIN ccrm.account a ON a.id = c.account_id
	 WHERE m.group_id = ccrm.target_group_id('bench outbox')"
	pgq_s=""
	for ((rep = 0; rep < BENCH_REPEAT; rep++)); do
		psql_script >/dev/null <<SQL
$RESET_CCRM
$RESET_BASE
TRUNCATE public.bench_pgq_done;
SELECT pgq.unregister_consumer('bench', 'c') FROM pgq.queue WHERE queue_name = 'bench';
SELECT pgq.drop_queue('bench') FROM pgq.queue WHERE queue_name = 'bench';
SELECT pgq.create_queue('bench');
SELECT pgq.register_consumer('bench', 'c');
CHECKPOINT;
SQL
		t0=$(now)
		events=$(psql_bench "$PGQ_INSERT")
		psql_bench "CALL public.bench_pgq_consume($events)" >/dev/null
		t1=$(now)
		done_n=$(psql_bench "SELECT count(*) FROM public.bench_pgq_done")
		[ "$events" = "$N" ] && [ "$done_n" = "$N" ] || { echo "outbox bench: pgq consumed $done_n of $events events" >&2; exit 1; }
		pgq_s=$(best "$(calc '%.4f' "$t1 - $t0")" "$pgq_s")
	done
	bench_line outbox_end_to_end_vs_pgq "$e2e_c" "$pgq_s" 1.0
else
	echo "BENCH name=outbox_end_to_end_vs_pgq error=pgq_not_installed"
	exit 1
fi
