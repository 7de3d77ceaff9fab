#!/usr/bin/env bash
# Delivery: 20,000 emails through ccrm's delivery worker to the loopback SMTP
# sink (test/t/smtp_sink.pl: STARTTLS, AUTH, one process per connection),
# and 20,000 SMS to the loopback HTTPS sink (test/t/http_sink.pl, the Twilio
# form), both counting only.  In the same run a plain client
# (delivery_client.pl) sends the same messages over the same number of
# connections (the channel's parallelism): the sink's capacity.
#   delivery_email_per_s, delivery_sms_per_s: messages per second, from the
#     commit that configures the channel (the messages are queued before,
#     waiting for an endpoint) to the sent_at of the last one (target_min 500
#     and 1000)
#   delivery_email_vs_sink, delivery_sms_vs_sink: that rate over the plain
#     client's rate (target_min 0.8)
#   delivery_email_cpu_per_msg, delivery_sms_cpu_per_msg: CPU time of the
#     delivery worker (utime + stime from /proc/<pid>/stat) per message, in
#     microseconds (reported)
# BENCH_DELIVERY_N overrides the 20,000; BENCH_DELIVERY_CONNS the 8 connections;
# BENCH_DELIVERY_PERF=FILE records the worker with perf into FILE.smtp, FILE.sms.
# bench: no dataset
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${BENCH_DELIVERY_N:-20000}
CONNS=${BENCH_DELIVERY_CONNS:-8}
T=$BENCH_DIR/../t
D=$W/delivery
mkdir -p "$D/smtp" "$D/sms"
chmod 755 "$D" "$D/smtp" "$D/sms"
[ "$(id -u)" -eq 0 ] && chown -R "$PG_USER" "$D"
SINKS=()
stop_sinks() { local p; for p in "${SINKS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; }
trap stop_sinks EXIT

now() { date +%s.%N; }

# the CA and certificate of the sinks (the server verifies them against ca.pem)
as_pg perl -I"$T" -MCcrmDelivery -e 'make_certs($ARGV[0])' "$D/tls"
CA=$D/tls/ca.pem

start_sink() {	# script dir: starts it in its own session, sets SINK_PORT
	local out=$2/ready i
	setsid perl "$T/$1" --port 0 --dir "$2" --cert "$D/tls/server.pem" --key "$D/tls/server.key" \
		--user crm --password s3cret --count-only >"$out" 2>"$2/sink.log" &
	SINKS+=($!)
	for ((i = 0; i < 100; i++)); do grep -q '^ready' "$out" 2>/dev/null && break; sleep 0.1; done
	SINK_PORT=$(sed -n 's/^ready //p' "$out")
	[ -n "$SINK_PORT" ] || die "$1 did not start"
}

worker_ticks() {	# utime + stime of the delivery worker, in clock ticks
	local pid
	pid=$(psql_bench "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm delivery'")
	[ -n "$pid" ] || die "no delivery worker runs"
	# fields after the command name "(...)": state is 3, utime 14, stime 15
	sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}

# bench_one medium channel endpoint enqueue_sql client_args...: sets RATE (worker,
# messages/s), BASE (plain client, messages/s), RATIO and CPU_US (worker per message)
bench_one() {
	local medium=$1 channel=$2 endpoint=$3 enqueue=$4 t0 t1 c0 c1 sent client_s
	shift 4
	# the sink's capacity, measured by the plain client
	client_s=$(perl "$BENCH_DIR/delivery_client.pl" "$medium" --port "$SINK_PORT" --ca "$CA" \
		--user crm --password s3cret --n "$N" --conns "$CONNS" "$@")
	# the worker: everything queued while the channel has no endpoint, then one commit
	# configures it and wakes the worker (resume_channel)
	psql_bench "SELECT count(*) FROM ($enqueue) q" >/dev/null
	psql_bench "CHECKPOINT" >/dev/null
	c0=$(worker_ticks)
	if [ -n "${BENCH_DELIVERY_PERF:-}" ]; then
		perf record -g -o "$BENCH_DELIVERY_PERF.$medium" -p "$(psql_bench "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm delivery'")" >/dev/null 2>&1 &
		PERF_PID=$!
	fi
	t0=$(now)
	psql_bench "UPDATE ccrm.channel SET endpoint = '$endpoint' WHERE name = '$channel'; SELECT ccrm.resume_channel('$channel')" >/dev/null
	while :; do
		sent=$(psql_bench "SELECT count(*) FILTER (WHERE status = 'sent') || ' ' || count(*) FILTER (WHERE status NOT IN ('queued', 'sending', 'sent'))
		                     FROM ccrm.outbox WHERE channel_id = (SELECT id FROM ccrm.channel WHERE name = '$channel')")
		[ "${sent% *}" -ge "$N" ] && break
		[ "${sent#* }" = 0 ] || die "$channel: messages failed: $(psql_bench "SELECT last_error FROM ccrm.outbox WHERE status NOT IN ('queued', 'sending', 'sent') LIMIT 1")"
		[ "$(calc '%d' "(($(now) - $t0) > 600)")" = 0 ] || die "$channel: not all sent after 600 s ($sent)"
		sleep 0.1
	done
	# when the last one was marked sent, by the same clock
	t1=$(psql_bench "SELECT extract(epoch FROM max(sent_at)) FROM ccrm.outbox WHERE channel_id = (SELECT id FROM ccrm.channel WHERE name = '$channel')")
	if [ -n "${PERF_PID:-}" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=; fi
	c1=$(worker_ticks)
	RATE=$(calc '%.1f' "$N / ($t1 - $t0)")
	BASE=$(calc '%.1f' "$N / $client_s")
	RATIO=$(calc '%.3f' "$RATE / $BASE")
	CPU_US=$(calc '%.1f' "($c1 - $c0) * 1000000 / $(getconf CLK_TCK) / $N")
}

# -- email ---------------------------------------------------------------------
start_sink smtp_sink.pl "$D/smtp"
psql_bench "SELECT ccrm.create_channel('bench_smtp', 'email', 'ccrm');
UPDATE ccrm.channel SET username = 'crm', secret = 's3cret', sender = 'crm@example.com', ca_file = '$CA',
       parallelism = $CONNS WHERE name = 'bench_smtp'" >/dev/null
bench_one smtp bench_smtp "smtp://127.0.0.1:$SINK_PORT" \
	"SELECT ccrm.enqueue_message('email', 'bench' || i || '@example.org',
	        'Dear customer ' || i || ',' || chr(10) || 'your order ' || i || ' has shipped and arrives within three days. Thank you for shopping with us.',
	        subject => 'Your order ' || i, channel => 'bench_smtp', idempotency_key => 'bd-mail-' || i)
	   FROM generate_series(1, $N) i"
got=$(($(wc -l <"$D/smtp/count") - N))
[ "$got" -ge "$N" ] || die "the SMTP sink received $got of the worker's $N emails"
say "email: worker $RATE/s, plain client $BASE/s, sink received $got from the worker"
bench_value_min delivery_email_per_s "$RATE" emails_per_s 500
bench_value_min delivery_email_vs_sink "$RATIO" worker_over_plain_client 0.8
bench_report delivery_email_cpu_per_msg "$CPU_US" worker_cpu_us_per_email

# -- SMS -----------------------------------------------------------------------
start_sink http_sink.pl "$D/sms"
path=/2010-04-01/Accounts/crm/Messages.json
# no quiet hours: the default 23:00-07:30 would hold the SMS back when the benchmark runs at night
psql_bench "SELECT ccrm.set_setting('sms_quiet_hours', '')" >/dev/null
psql_bench "SELECT ccrm.create_channel('bench_sms', 'sms', 'ccrm');
UPDATE ccrm.channel SET sms_format = 'twilio', username = 'crm', secret = 's3cret', sender = '+3584000000', ca_file = '$CA',
       parallelism = $CONNS WHERE name = 'bench_sms'" >/dev/null
bench_one sms bench_sms "https://127.0.0.1:$SINK_PORT$path" \
	"SELECT ccrm.enqueue_message('sms', '+3584' || (10000000 + i), 'Your code is ' || i || '. It is valid for ten minutes.',
	        channel => 'bench_sms', idempotency_key => 'bd-sms-' || i)
	   FROM generate_series(1, $N) i" --path "$path"
got=$(($(wc -l <"$D/sms/count") - N))
[ "$got" -ge "$N" ] || die "the HTTPS sink received $got of the worker's $N SMS"
say "sms: worker $RATE/s, plain client $BASE/s, sink received $got from the worker"
bench_value_min delivery_sms_per_s "$RATE" sms_per_s 1000
bench_value_min delivery_sms_vs_sink "$RATIO" worker_over_plain_client 0.8
bench_report delivery_sms_cpu_per_msg "$CPU_US" worker_cpu_us_per_sms

psql_bench "DELETE FROM ccrm.outbox WHERE channel_id IN (SELECT id FROM ccrm.channel WHERE name IN ('bench_smtp', 'bench_sms'));
UPDATE ccrm.channel SET enabled = false WHERE name IN ('bench_smtp', 'bench_sms')" >/dev/null
