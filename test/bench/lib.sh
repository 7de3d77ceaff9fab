# Helpers for the bench scripts (sourced).  Environment from test/bench/run:
# INST (bindir), PGHOST, PGPORT, PGDATABASE=bench, BENCH_REPEAT, BENCH_DIR, W.
set -euo pipefail
source "$BENCH_DIR/../../bin/common.sh"

# Run SQL in the bench database; stops at the first error.
psql_bench() {
	as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$INST/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$PGDATABASE" -c "$1"
}

# Run a SQL file (read by us, so any path works).
psql_file() {
	as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$INST/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$PGDATABASE" <"$1"
}

# Seconds one statement takes, measured by the server-side clock around it
# in the same session: setup and cleanup run untimed before and after.
_time_once() {	# sql setup cleanup
	local out
	out=$(as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$INST/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$PGDATABASE" <<SQL
${2:-}
SELECT set_config('bench.t0', clock_timestamp()::text, false) \\g /dev/null
$1
SELECT 'ELAPSED ' || extract(epoch FROM clock_timestamp() - current_setting('bench.t0')::timestamptz);
${3:-}
SQL
)
	echo "$out" | sed -n 's/^ELAPSED //p' | tail -1
}

# Best of BENCH_REPEAT runs (after one warm-up run), in seconds.  REPEAT=n
# overrides the count for a slow baseline; REPEAT=1 also skips the warm-up.
time_sql() {	# sql [setup] [cleanup]
	local best="" t i n=${REPEAT:-$BENCH_REPEAT}
	[ "$n" -gt 1 ] && _time_once "$@" >/dev/null
	for ((i = 0; i < n; i++)); do
		t=$(_time_once "$@")
		best=$(awk -v a="$t" -v b="$best" 'BEGIN { if (b == "" || a + 0 < b + 0) b = a; printf "%.4f\n", b }')
	done
	echo "$best"
}

# BENCH name=<id> ccrm_s=<s> baseline_s=<s> ratio=<ccrm/baseline> target=<max ratio>
bench_line() {	# name ccrm_s baseline_s target
	awk -v name="$1" -v c="$2" -v b="$3" -v target="$4" 'BEGIN {
		ratio = b > 0 ? c / b : 1e308
		printf "BENCH name=%s ccrm_s=%.4f baseline_s=%.4f ratio=%.3f target=%s %s\n", name, c, b, ratio, target, (ratio <= target + 0 ? "ok" : "MISSED")
	}'
}

# BENCH name=<id> value=<v> unit=<u> target=<max>  (absolute measurements)
bench_value() {	# name value unit target
	awk -v name="$1" -v v="$2" -v unit="$3" -v target="$4" 'BEGIN {
		printf "BENCH name=%s value=%g unit=%s target=%s %s\n", name, v, unit, target, (v + 0 <= target + 0 ? "ok" : "MISSED")
	}'
}

# BENCH name=<id> value=<v> unit=<u> target_min=<min>  (more is better, e.g. messages/s)
bench_value_min() {	# name value unit target_min
	awk -v name="$1" -v v="$2" -v unit="$3" -v target="$4" 'BEGIN {
		printf "BENCH name=%s value=%g unit=%s target_min=%s %s\n", name, v, unit, target, (v + 0 >= target + 0 ? "ok" : "MISSED")
	}'
}

# Arithmetic on decimals, e.g. calc '%.3f' '1.5 / 3'
calc() {	# format expression
	awk "BEGIN { printf \"$1\\n\", $2 }"
}

# BENCH name=<id> value=<v> unit=<u> report  (a figure reported, with no target)
bench_report() {	# name value unit
	awk -v name="$1" -v v="$2" -v unit="$3" 'BEGIN { printf "BENCH name=%s value=%g unit=%s report\n", name, v, unit }'
}
