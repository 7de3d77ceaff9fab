#!/usr/bin/env bash
# The outbox: 200,000 emails enqueued set-based from a group, then claimed
# and marked sent in batches of 100 (each batch its own transaction), with 1
# consumer and with 4.  Compared in the same run with
#   - a competent hand-written SKIP LOCKED queue in SQL: the same unique
#     idempotency index, the same suppression join (opt-outs at enqueue and
#     at claim), per-message state (status, token, attempts, times), and a
#     high-water mark so claims do not walk the index entries of rows
#     already taken (the dead-entry trap), with a scan from the front when
#     the mark finds too little, so retries and expired leases are found;
#   - PgQ (pgq3): insert_event for all, a tick driven here (pgq.ticker()),
#     and a consumer that records every event's completion in a table.
#   outbox_enqueue, outbox_drain_1, outbox_drain_4: ccrm_s / baseline_s (target 1.3)
#   outbox_end_to_end_vs_pgq: ccrm (enqueue + drain, 1 consumer) / PgQ (target 1.0)
#   outbox_msgs_per_s_1, outbox_msgs_per_s_4: messages per second (more is better)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=200000

now() { date +%s.%N; }

psql_bench "
SELECT ccrm.create_target_group('bench outbox', 'contact', '{\"field\": \"id\", \"op\": \"lte\", \"value\": $N}');
SELECT added FROM ccrm.refresh_target_group('bench outbox');
SELECT ccrm.create_channel('bench_mail', 'email');
SELECT ccrm.create_message_template('bench mail', 'email', subject => 'News for \$contact-firstname\$',
    body => 'Dear \$contact-firstname\$ \$contact-lastname\$, news from \$account-name\$.', channel => 'bench_mail');

-- the baseline queue
CREATE TABLE public.bench_q (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status text NOT NULL, available_at timestamptz NOT NULL, recipient text, contact_id bigint,
    subject text, body text, idempotency_key text UNIQUE, attempts integer NOT NULL DEFAULT 0,
    claim_token uuid, claimed_at timestamptz, sent_at timestamptz, finished_at timestamptz, reason text,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON public.bench_q (available_at, id) WHERE status IN ('queued', 'sending');
CREATE FUNCTION public.bench_q_claim(n integer, lease interval, INOUT mark_at timestamptz, INOUT mark_id bigint,
                                     OUT ids bigint[], OUT token uuid)
LANGUAGE plpgsql AS \$\$
DECLARE
    t uuid := gen_random_uuid();
    got bigint[];
    sup bigint[];
BEGIN
    FOR pass IN 1..2 LOOP
        WITH c AS (SELECT q.id, q.available_at FROM public.bench_q q
                    WHERE q.status IN ('queued', 'sending') AND q.available_at <= now()
                      AND (q.available_at, q.id) >= (mark_at, mark_id)
                    ORDER BY q.available_at, q.id LIMIT n FOR UPDATE SKIP LOCKED),
             u AS (UPDATE public.bench_q q SET status = 'sending', claim_token = t, claimed_at = now(),
                          available_at = now() + lease, attempts = q.attempts + 1
                     FROM c WHERE q.id = c.id RETURNING q.id, q.contact_id, c.available_at AS was)
        SELECT array_agg(u.id ORDER BY u.was, u.id) FILTER (WHERE NOT coalesce(ct.email_opt_out, false)),
               array_agg(u.id) FILTER (WHERE ct.email_opt_out),
               max(u.was), max(u.id)
          INTO got, sup, mark_at, mark_id
          FROM u LEFT JOIN ccrm.contact ct ON ct.id = u.contact_id;
        IF sup IS NOT NULL THEN
            UPDATE public.bench_q SET status = 'suppressed', reason = 'opted out', finished_at = now()
             WHERE id = ANY (sup);
        END IF;
        ids := got; token := t;
        IF coalesce(cardinality(got), 0) > 0 OR pass = 2 THEN RETURN; END IF;
        mark_at := '-infinity'; mark_id := 0;   -- too little from the mark: from the front
    END LOOP;
END \$\$;
CREATE PROCEDURE public.bench_q_drain()
LANGUAGE plpgsql AS \$\$
DECLARE
    r record;
    ma timestamptz := '-infinity';
    mi bigint := 0;
BEGIN
    LOOP
        SELECT * INTO r FROM public.bench_q_claim(100, '5 minutes', ma, mi);
        ma := coalesce(r.mark_at, '-infinity'); mi := coalesce(r.mark_id, 0);
        EXIT WHEN r.ids IS NULL;
        UPDATE public.bench_q SET status = 'sent', sent_at = now(), finished_at = now()
         WHERE id = ANY (r.ids) AND claim_token = r.token AND status = 'sending';
        COMMIT;
    END LOOP;
END \$\$;
CREATE PROCEDURE public.bench_ccrm_drain()
LANGUAGE plpgsql AS \$\$
DECLARE
    ids bigint[];
    tok uuid;
BEGIN
    LOOP
        SELECT array_agg(id), min(claim_token::text)::uuid INTO ids, tok
          FROM ccrm.claim_messages('bench_mail', 100, '5 minutes');
        EXIT WHEN ids IS NULL;
        PERFORM ccrm.mark_sent(ids, tok);
        COMMIT;
    END LOOP;
END \$\$;" >/dev/null

GROUP_IDS="ARRAY(SELECT member_id FROM ccrm.target_group_member WHERE group_id = ccrm.target_group_id('bench outbox'))"
ENQ_CCRM="SELECT count(*) FROM ccrm.enqueue_template('bench mail', $GROUP_IDS, key_prefix => 'b:');"
ENQ_BASE="INSERT INTO public.bench_q (status, available_at, recipient, contact_id, subject, body, idempotency_key, finished_at, reason)
SELECT CASE WHEN c.email_opt_out OR coalesce(btrim(c.email), '') = '' THEN 'suppressed' ELSE 'queued' END, now(),
       btrim(c.email), c.id, 'News for ' || coalesce(c.firstname, ''),
       'Dear ' || coalesce(c.firstname, '') || ' ' || coalesce(c.lastname, '') || ', news from ' || coalesce(a.name, '') || '.',
       'b:' || c.id, CASE WHEN c.email_opt_out OR coalesce(btrim(c.email), '') = '' THEN now() END,
       CASE WHEN c.email_opt_out THEN 'opted out' END
  FROM ccrm.target_group_member m JOIN ccrm.contact c ON c.id = m.member_id LEFT JOIN ccrm.account a ON a.id = c.account_id
 WHERE m.group_id = ccrm.target_group_id('bench outbox')
ON CONFLICT (idempotency_key) DO NOTHING;"
RESET_CCRM="TRUNCATE ccrm.outbox; VACUUM ANALYZE ccrm.outbox;"
RESET_BASE="TRUNCATE public.bench_q; VACUUM ANALYZE public.bench_q;"

drain() {	# procedure consumers: wall seconds until all are done
	local t0 t1 i pids=()
	t0=$(now)
	for ((i = 0; i < $2; i++)); do psql_bench "CALL $1()" & pids+=($!); done
	for i in "${pids[@]}"; do wait "$i"; done
	t1=$(now)
	calc '%.4f' "$t1 - $t0"
}

# enqueue, each from an empty queue
enq_c=$(REPEAT=${BENCH_REPEAT} time_sql "$ENQ_CCRM" "$RESET_CCRM")
enq_b=$(REPEAT=${BENCH_REPEAT} time_sql "$ENQ_BASE" "$RESET_BASE")
bench_line outbox_enqueue "$enq_c" "$enq_b" 1.3

for consumers in 1 4; do
	psql_bench "$RESET_CCRM $ENQ_CCRM" >/dev/null
	psql_bench "$RESET_BASE $ENQ_BASE" >/dev/null
	d_c=$(drain public.bench_ccrm_drain $consumers)
	d_b=$(drain public.bench_q_drain $consumers)
	left=$(psql_bench "SELECT (SELECT count(*) FROM ccrm.outbox WHERE status NOT IN ('sent', 'suppressed'))
	                        + (SELECT count(*) FROM public.bench_q WHERE status NOT IN ('sent', 'suppressed'))")
	[ "$left" = 0 ] || echo "outbox bench: $left messages left unsent with $consumers consumers" >&2
	sent=$(psql_bench "SELECT count(*) FROM ccrm.outbox WHERE status = 'sent'")
	bench_line "outbox_drain_$consumers" "$d_c" "$d_b" 1.3
	bench_value_min "outbox_msgs_per_s_$consumers" "$(calc '%.0f' "$sent / $d_c")" msgs_per_s 10000
	[ "$consumers" = 1 ] && drain1=$d_c
done

# PgQ end to end: insert_event for all, one tick, a consumer recording each completion
if psql_bench "CREATE EXTENSION IF NOT EXISTS pgq" >/dev/null 2>&1; then
	psql_bench "SELECT pgq.create_queue('bench'); SELECT pgq.register_consumer('bench', 'c');
	            CREATE TABLE public.bench_pgq_done (ev_id bigint PRIMARY KEY, done_at timestamptz NOT NULL DEFAULT now());" >/dev/null
	t0=$(now)
	psql_bench "SELECT count(pgq.insert_event('bench', 'email', c.email || '|News for ' || coalesce(c.firstname, '')))
	              FROM ccrm.target_group_member m JOIN ccrm.contact c ON c.id = m.member_id
	             WHERE m.group_id = ccrm.target_group_id('bench outbox') AND NOT c.email_opt_out" >/dev/null
	psql_bench "SELECT pgq.ticker()" >/dev/null
	psql_bench "
	DO \$\$ DECLARE b bigint; BEGIN
	    LOOP
	        b := pgq.next_batch('bench', 'c');
	        EXIT WHEN b IS NULL;
	        INSERT INTO public.bench_pgq_done (ev_id) SELECT ev_id FROM pgq.get_batch_events(b);
	        PERFORM pgq.finish_batch(b);
	    END LOOP;
	END \$\$;" >/dev/null
	t1=$(now)
	pgq_s=$(calc '%.4f' "$t1 - $t0")
	bench_line outbox_end_to_end_vs_pgq "$(calc '%.4f' "$enq_c + $drain1")" "$pgq_s" 1.0
else
	echo "BENCH name=outbox_end_to_end_vs_pgq error=pgq_not_installed"
fi
psql_bench "TRUNCATE ccrm.outbox; DROP TABLE public.bench_q CASCADE;" >/dev/null
