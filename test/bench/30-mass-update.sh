#!/usr/bin/env bash
# Mass updates: the seed's example on a large group — set the description and
# a date field (custom field last_contacted, the action date) of ~240,000
# contacts — against a hand-written UPDATE … FROM of the same rows:
#   mass_update        audit off (target: ratio <= 1.1)
#   mass_update_audit  audit on, old and new values of every row kept (<= 1.5)
# Every timed run changes every row: the rows are put back and the table
# vacuumed, untimed, after each run.
source "$BENCH_DIR/lib.sh"

FILTER='{"all": [{"field": "country", "op": "in", "value": ["FI", "SE"]},
                 {"field": "city", "op": "ne", "value": "Oulu"}]}'
psql_bench "SELECT ccrm.create_target_group('bench mass', 'contact', '$FILTER');
            SELECT added FROM ccrm.refresh_target_group('bench mass');" >/dev/null
G=$(psql_bench "SELECT ccrm.target_group_id('bench mass')")
rows=$(psql_bench "SELECT member_count FROM ccrm.target_group WHERE id = $G")
say "mass update of $rows contacts"
SET='{"description": "Contacted on Friday", "last_contacted": {"action": "date"}}'
RESET="UPDATE ccrm.contact SET description = NULL, attrs = attrs - 'last_contacted'
        WHERE description IS NOT NULL OR attrs ? 'last_contacted';
       TRUNCATE ccrm.run_audit;
       VACUUM ANALYZE ccrm.contact;"
reset() { psql_file <(echo "$RESET"); }
reset
BASE="UPDATE ccrm.contact c
         SET description = 'Contacted on Friday',
             attrs = c.attrs || jsonb_build_object('last_contacted', (now() AT TIME ZONE 'UTC')::date)
        FROM ccrm.target_group_member m
       WHERE m.group_id = $G AND c.id = m.member_id;"

base=$(time_sql "$BASE" "" "$RESET")
ccrm=$(time_sql "SELECT ccrm.mass_update('bench mass', 'contact', '$SET', audit => false);" "" "$RESET")
run=$(psql_bench "SELECT ccrm.mass_update('bench mass', 'contact', '$SET', audit => false)")
n=$(psql_bench "SELECT counts->'updated'->>'contact' FROM ccrm.job_run WHERE id = $run")
say "ccrm updated $n contacts"
reset
bench_line mass_update "$ccrm" "$base" 1.1

ccrm=$(time_sql "SELECT ccrm.mass_update('bench mass', 'contact', '$SET');" "" "$RESET")
bench_line mass_update_audit "$ccrm" "$base" 1.5
psql_bench "SELECT ccrm.drop_target_group('bench mass');" >/dev/null
