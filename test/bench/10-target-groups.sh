#!/usr/bin/env bash
# Target groups: refresh against the same work written by hand.
#  refresh_full   — a new group selecting ~25% of contacts with a 3-condition
#                   filter, against INSERT … SELECT of the same rows into a
#                   table shaped like ccrm's membership table;
#  refresh_noop   — refreshing again when nothing changed, against a
#                   hand-written anti-join diff of the same two tables.
source "$BENCH_DIR/lib.sh"

FILTER='{"all": [{"field": "country", "op": "in", "value": ["FI", "SE"]},
                 {"field": "email_opt_out", "op": "is_false"},
                 {"field": "created_at", "op": "older_than", "value": "30 days"}]}'
WHERE="country IN ('FI', 'SE') AND email_opt_out IS FALSE AND created_at < now() - interval '30 days'"

psql_bench "
DROP TABLE IF EXISTS bench_member;
CREATE TABLE bench_member (LIKE ccrm.target_group_membership INCLUDING ALL);
SELECT ccrm.create_target_group('bench', 'contact', '$FILTER');"

ccrm=$(time_sql "SELECT * FROM ccrm.refresh_target_group('bench');" \
	"" "UPDATE ccrm.target_group SET member_count = 0 WHERE name = 'bench'; TRUNCATE ccrm.target_group_membership;")
base=$(time_sql "INSERT INTO bench_member (group_id, member_id, entered_at)
                 SELECT 1, id, now() FROM ccrm.contact WHERE $WHERE;" \
	"" "TRUNCATE bench_member;")
rows=$(psql_bench "SELECT count(*) FROM ccrm.contact WHERE $WHERE")
say "refresh_full selects $rows of 1000000 contacts"
bench_line refresh_full "$ccrm" "$base" 1.15

# fill both once, then diff with nothing to change
psql_bench "SELECT * FROM ccrm.refresh_target_group('bench');
            INSERT INTO bench_member (group_id, member_id, entered_at)
            SELECT 1, id, now() FROM ccrm.contact WHERE $WHERE;"
psql_bench "VACUUM ANALYZE ccrm.target_group_membership, bench_member;"
ccrm=$(time_sql "SELECT * FROM ccrm.refresh_target_group('bench');")
base=$(time_sql "
WITH d AS MATERIALIZED (SELECT id FROM ccrm.contact WHERE $WHERE),
ins AS (INSERT INTO bench_member (group_id, member_id, entered_at)
        SELECT 1, d.id, now() FROM d
         WHERE NOT EXISTS (SELECT 1 FROM bench_member m
                            WHERE m.group_id = 1 AND m.member_id = d.id AND m.left_at IS NULL)
        RETURNING 1),
del AS (UPDATE bench_member m SET left_at = now()
         WHERE m.group_id = 1 AND m.left_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM d WHERE d.id = m.member_id)
        RETURNING 1)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del);")
bench_line refresh_noop "$ccrm" "$base" 1.15
psql_bench "SELECT ccrm.drop_target_group('bench'); DROP TABLE bench_member;"
