#!/usr/bin/env bash
# The scheduler worker: how late it fires, what it costs while nothing is
# due, and whether its memory stays flat over many runs.
#   scheduler_lag_p50/p99   start minus scheduled time over >= 200 firings (ms)
#   scheduler_idle_cpu      worker CPU seconds in 30 s with 10,000 jobs not due
#   scheduler_memory_growth worker memory after 10,000 runs / after 1,000 runs
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

worker_pid() {
	psql_bench "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'"
}
cpu_seconds() {	# pid: user+system CPU time from /proc
	# fields after the command name: 14 and 15 of stat are utime and stime
	sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($12 + $13) / hz }'
}
memory_bytes() {	# pid: the worker's allocated memory, from its own context dump
	local mark
	mark=$(wc -l <"$W/data/server.log")
	psql_bench "SELECT pg_log_backend_memory_contexts($1)" >/dev/null
	for _ in $(seq 50); do
		tail -n +"$mark" "$W/data/server.log" | grep -q "Grand total" && break
		sleep 0.1
	done
	tail -n +"$mark" "$W/data/server.log" | sed -n 's/.*Grand total: \([0-9]*\) bytes.*/\1/p' | tail -1
}
wait_runs() {	# count: until the worker has finished that many runs
	for _ in $(seq 600); do
		[ "$(psql_bench "SELECT count(*) >= $1 FROM ccrm.job_run WHERE status <> 'running'")" = t ] && return 0
		sleep 0.5
	done
	echo "timed out waiting for $1 runs" >&2
	return 1
}

psql_bench "
CREATE OR REPLACE FUNCTION public.bench_noop(job_id bigint, run_id bigint, group_id bigint, params jsonb,
    action_time timestamptz, time_zone text) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
INSERT INTO ccrm.job_kind (name, runner, needs_group, description)
VALUES ('bench_noop', 'public.bench_noop(bigint,bigint,bigint,jsonb,timestamptz,text)', false, 'bench')
ON CONFLICT DO NOTHING;
DELETE FROM ccrm.job; DELETE FROM ccrm.job_run;" >/dev/null
pid=$(worker_pid)
[ -n "$pid" ] || { echo "no ccrm scheduler running" >&2; exit 1; }

# fire lag: 20 jobs every second, 50 ms apart, for 12 seconds
for i in $(seq 20); do
	psql_bench "SELECT ccrm.schedule_job('lag $i', 'bench_noop', '1 seconds')" >/dev/null
	sleep 0.05
done
sleep 12
psql_bench "SELECT ccrm.deactivate_job(name) FROM ccrm.job WHERE name LIKE 'lag %'" >/dev/null
read -r n p50 p99 < <(psql_bench "
SELECT count(*),
       round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY started_at - scheduled_for))::numeric, 2),
       round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - scheduled_for))::numeric, 2)
  FROM ccrm.job_run WHERE trigger = 'schedule'" | tr '|' ' ')
echo "firings measured: $n"
bench_value scheduler_lag_p50 "$p50" ms 20
bench_value scheduler_lag_p99 "$p99" ms 20
psql_bench "DELETE FROM ccrm.job; DELETE FROM ccrm.job_run;" >/dev/null

# idle: 10,000 jobs on New Year's Day, worker CPU over 30 s
psql_bench "
INSERT INTO ccrm.job (name, kind, schedule)
SELECT 'idle ' || i, 'bench_noop', '0 0 1 1 *' FROM generate_series(1, 10000) i;" >/dev/null
sleep 2
c0=$(cpu_seconds "$pid")
sleep 30
c1=$(cpu_seconds "$pid")
bench_value scheduler_idle_cpu "$(calc %.3f "$c1 - $c0")" cpu_s_per_30s 0.05

# memory: run 1,000 of them, then all 10,000, in the worker itself
psql_bench "ALTER SYSTEM SET ccrm.max_parallel_jobs = 0" >/dev/null
psql_bench "SELECT pg_reload_conf()" >/dev/null
sleep 1
psql_bench "UPDATE ccrm.job SET next_run = now() WHERE name IN (SELECT 'idle ' || i FROM generate_series(1, 1000) i)" >/dev/null
wait_runs 1000
m0=$(memory_bytes "$pid")
start=$(date +%s.%N)
psql_bench "UPDATE ccrm.job SET next_run = now()" >/dev/null
wait_runs 11000
secs=$(calc %.1f "$(date +%s.%N) - $start")
m1=$(memory_bytes "$pid")
echo "worker memory after 1,000 runs: $m0 bytes; after 11,000 runs: $m1 bytes; 10,000 runs took $secs s"
bench_value scheduler_memory_growth "$(calc %.3f "$m1 / $m0")" after_over_before 1.10

psql_bench "ALTER SYSTEM RESET ccrm.max_parallel_jobs" >/dev/null
psql_bench "SELECT pg_reload_conf();
            DELETE FROM ccrm.job; DELETE FROM ccrm.job_run; DELETE FROM ccrm.job_kind WHERE name = 'bench_noop';
            DROP FUNCTION public.bench_noop(bigint,bigint,bigint,jsonb,timestamptz,text);" >/dev/null
