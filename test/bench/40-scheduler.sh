#!/usr/bin/env bash
# The scheduler worker: how late it fires, what it costs while nothing is
# due, and whether its memory stays flat over many runs.
#   scheduler_lag_p50/p99   start minus scheduled time over >= 200 firings (ms)
#   scheduler_idle_cpu      CPU seconds of all ccrm processes (launcher,
#                           scheduler, executors) in 30 s with 10,000 jobs not due
#   scheduler_memory_growth memory after 10,000 runs / after 1,000 runs, of
#                           the executor that ran them and of the scheduler
#                           that handed them on (the larger ratio)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

worker_pid() {
	psql_bench "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm scheduler'"
}
ccrm_pids() {	# every ccrm process
	psql_bench "SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'ccrm %'"
}
executor_pid() {
	psql_bench "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ccrm executor'"
}
cpu_seconds() {	# pid...: user+system CPU time from /proc, summed (a process gone meanwhile counts 0)
	local pid total=0 ticks
	for pid in "$@"; do
		[ -r "/proc/$pid/stat" ] || continue
		ticks=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
		total=$((total + ticks))
	done
	awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f\n", t / hz }'
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

# idle: 10,000 jobs on New Year's Day, CPU of every ccrm process over 30 s
psql_bench "
INSERT INTO ccrm.job (name, kind, schedule)
SELECT 'idle ' || i, 'bench_noop', '0 0 1 1 *' FROM generate_series(1, 10000) i;" >/dev/null
sleep 2
mapfile -t pids < <(ccrm_pids)
c0=$(cpu_seconds "${pids[@]}")
sleep 30
c1=$(cpu_seconds "${pids[@]}")
echo "idle ccrm processes: ${#pids[@]}"
bench_value scheduler_idle_cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')" cpu_s_per_30s 0.05

# memory: run 1,000 of them, then all 10,000, in one executor (0 counts as 1)
psql_bench "ALTER SYSTEM SET ccrm.max_parallel_jobs = 0" >/dev/null
psql_bench "SELECT pg_reload_conf()" >/dev/null
sleep 1
psql_bench "UPDATE ccrm.job SET next_run = now() WHERE name IN (SELECT 'idle ' || i FROM generate_series(1, 1000) i)" >/dev/null
wait_runs 1000
epid=$(executor_pid)
[ -n "$epid" ] && [ "$(echo "$epid" | wc -l)" -eq 1 ] || { echo "expected one ccrm executor, found: $epid" >&2; exit 1; }
m0=$(memory_bytes "$epid")
s0=$(memory_bytes "$pid")
start=$(date +%s.%N)
psql_bench "UPDATE ccrm.job SET next_run = now()" >/dev/null
wait_runs 11000
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
m1=$(memory_bytes "$epid")
s1=$(memory_bytes "$pid")
echo "executor memory after 1,000 runs: $m0 bytes; after 11,000 runs: $m1 bytes; 10,000 runs took $secs s"
echo "scheduler memory after 1,000 runs: $s0 bytes; after 11,000 runs: $s1 bytes"
bench_value scheduler_memory_growth \
	"$(awk -v m0="$m0" -v m1="$m1" -v s0="$s0" -v s1="$s1" 'BEGIN { e = m1 / m0; s = s1 / s0; printf "%.3f", (e > s ? e : s) }')" \
	after_over_before 1.10

psql_bench "ALTER SYSTEM RESET ccrm.max_parallel_jobs" >/dev/null
psql_bench "SELECT pg_reload_conf();
            DELETE FROM ccrm.job; DELETE FROM ccrm.job_run; DELETE FROM ccrm.job_kind WHERE name = 'bench_noop';
            DROP FUNCTION public.bench_noop(bigint,bigint,bigint,jsonb,timestamptz,text);" >/dev/null
