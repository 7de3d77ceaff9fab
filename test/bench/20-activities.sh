#!/usr/bin/env bash
# Activities: 100,000 events for a group's members, six tags in subject and
# description, slotted 8 a day into each owner's calendar (owner's zone,
# working days), against
#   activities_sql      one hand-written INSERT … SELECT with replace() and
#                       row_number() slotting doing the same;
#   activities_plpgsql  the row-by-row PL/pgSQL function a competent DBA
#                       would write for the feature: the plan's templates are
#                       data, their tags replaced with replace() on the row
#                       fetched once per member, each user's calendar read
#                       once and slotted by ccrm's rule (target: ccrm at
#                       least 10 times faster).
# All three are timed alike (one warm-up, best of BENCH_REPEAT), and the
# baselines must create exactly the activities ccrm creates.  It also times
# inserting the same rows alone, the part of the work every side pays.
source "$BENCH_DIR/lib.sh"

psql_bench "
SELECT ccrm.create_target_group('bench calls', 'contact', '{\"field\": \"id\", \"op\": \"lte\", \"value\": 100000}',
                                responsible_user_id => 1);
SELECT added FROM ccrm.refresh_target_group('bench calls');
SELECT ccrm.create_activity_plan('bench calls', 'calls',
       'Call \$contact-firstname\$ \$contact-lastname\$ (\$account-name\$)',
       'call', events_per_day => 8, duration => '30 minutes',
       description => 'For \$user-firstname\$ \$user-lastname\$: \$contact-email\$');" >/dev/null
PLAN=$(psql_bench "SELECT ccrm.activity_plan_id('bench calls', 'calls')")
DAY=2027-03-01	# a Monday
CLEAN="TRUNCATE ccrm.activity;"
# what a run created, independent of ids and run rows
DIGEST="SELECT count(*) || ' ' || md5(string_agg(concat_ws('|', kind, subject, description, user_id, contact_id,
            account_id, starts_at, ends_at, status, priority, plan_id, plan_day, member_id), E'\n' ORDER BY member_id))
          FROM ccrm.activity"

ccrm=$(time_sql "SELECT * FROM ccrm.create_activities($PLAN, '$DAY');" "" "$CLEAN")
n=$(psql_bench "SELECT created FROM ccrm.create_activities($PLAN, '$DAY')")
want=$(psql_bench "$DIGEST")
say "ccrm created $n activities"
# where the time goes: inserting the same rows alone, in one INSERT … SELECT,
# is the part of the work every side does (constraints, indexes)
COLS="kind, subject, description, user_id, contact_id, account_id, starts_at, ends_at, status, priority,
      plan_id, plan_run_id, plan_day, member_id"
psql_bench "CREATE TABLE bench_rows AS SELECT $COLS FROM ccrm.activity; $CLEAN"
insert_only=$(time_sql "INSERT INTO ccrm.activity ($COLS) SELECT $COLS FROM bench_rows;" "" "$CLEAN")
# and without the foreign key checks (their triggers off): what those cost
no_fk=$(time_sql "INSERT INTO ccrm.activity ($COLS) SELECT $COLS FROM bench_rows;" \
	"SET session_replication_role = replica;" "$CLEAN")
psql_bench "DROP TABLE bench_rows"
say "inserting the same $n rows alone takes $insert_only s of ccrm's $ccrm s ($no_fk s without foreign key checks)"

# same_result name sql: the baseline must create what ccrm created
same_result() {
	local got
	psql_bench "$2" >/dev/null
	got=$(psql_bench "$DIGEST")
	psql_bench "$CLEAN"
	if [ "$got" = "$want" ]; then say "$1 creates the same activities as ccrm"
	else echo "BENCH name=$1 error=different_activities ccrm=\"$want\" baseline=\"$got\""; return 1; fi
}

# the same in one statement: owner (else the responsible user), k-th event of
# the owner -> working day k / 8 and slot k % 8 from 08:00 local time
psql_bench "
CREATE OR REPLACE FUNCTION bench_working_days(first date, n integer) RETURNS TABLE (i bigint, day date)
LANGUAGE sql STABLE AS \$\$
    SELECT row_number() OVER (ORDER BY d) - 1, d::date
      FROM generate_series(first, first + n * 2 + 14, interval '1 day') d
     WHERE extract(isodow FROM d) < 6
       AND d::date NOT IN (SELECT day FROM ccrm.holiday)
     LIMIT n \$\$;" >/dev/null
BASE_SQL="
INSERT INTO ccrm.activity (kind, subject, description, user_id, contact_id, account_id,
                           starts_at, ends_at, status, priority, plan_id, plan_day, member_id)
SELECT 'call',
       replace(replace(replace('Call \$contact-firstname\$ \$contact-lastname\$ (\$account-name\$)',
               '\$contact-firstname\$', coalesce(c.firstname, '')),
               '\$contact-lastname\$', coalesce(c.lastname, '')),
               '\$account-name\$', coalesce(a.name, '')),
       replace(replace(replace('For \$user-firstname\$ \$user-lastname\$: \$contact-email\$',
               '\$user-firstname\$', coalesce(u.firstname, '')),
               '\$user-lastname\$', coalesce(u.lastname, '')),
               '\$contact-email\$', coalesce(c.email, '')),
       x.user_id, c.id, c.account_id,
       ((w.day + time '08:00' + (x.k % 8) * interval '30 minutes') AT TIME ZONE coalesce(u.timezone, 'UTC')),
       ((w.day + time '08:00' + (x.k % 8 + 1) * interval '30 minutes') AT TIME ZONE coalesce(u.timezone, 'UTC')),
       'planned', 'normal', $PLAN, date '$DAY', c.id
  FROM (SELECT m.member_id, coalesce(ct.owner_id, 1) AS user_id,
               row_number() OVER (PARTITION BY coalesce(ct.owner_id, 1) ORDER BY m.member_id) - 1 AS k
          FROM ccrm.target_group_member m JOIN ccrm.contact ct ON ct.id = m.member_id
         WHERE m.group_id = ccrm.target_group_id('bench calls')) x
  JOIN ccrm.contact c ON c.id = x.member_id
  LEFT JOIN ccrm.account a ON a.id = c.account_id
  JOIN ccrm.crm_user u ON u.id = x.user_id
  JOIN bench_working_days(date '$DAY', 400) w ON w.i = x.k / 8;"
same_result activities_sql "$BASE_SQL" || true
base=$(time_sql "$BASE_SQL" "" "$CLEAN")
bench_line activities_sql "$ccrm" "$base" 1.3

# Row by row, as a DBA writes the feature without ccrm.  The plan is data:
# its templates get the tags of contact, account and assignee replaced on
# the row fetched for the member (one query for all members, ordered by
# assignee, so each user's slotting state lives in a few variables); each
# user's calendar is read once, and events are slotted by ccrm's rule: from
# the later of day start and earliest start in the user's zone, duration
# long, at most events_per_day of the plan a day, none ending after the
# latest end, on working days that are not holidays, never over an event
# already there; what does not fit rolls to the next working day.
psql_bench "
CREATE OR REPLACE FUNCTION bench_activities_rowwise(plan bigint, run_day date) RETURNS integer
LANGUAGE plpgsql AS \$\$
DECLARE
    p ccrm.activity_plan;
    responsible bigint;
    run_id bigint;
    default_zone text := (SELECT value FROM ccrm.settings WHERE name = 'time_zone');
    working smallint[] := (SELECT value FROM ccrm.settings WHERE name = 'working_days')::smallint[];
    holidays date[] := ARRAY(SELECT day FROM ccrm.holiday);
    dur interval;
    first_start time;
    last_end time;
    per_day integer;
    r record;
    cur_user bigint;
    b_start timestamptz[];
    b_end timestamptz[];
    b_same boolean[];
    nb integer;
    bpos integer;
    i integer;
    slot_day date;
    day_open boolean;
    midnight timestamptz;
    next_midnight timestamptz;
    next_start timestamptz;
    day_end timestamptz;
    n_today integer;
    s timestamptz;
    n_created integer := 0;
BEGIN
    SELECT * INTO p FROM ccrm.activity_plan WHERE id = plan FOR UPDATE;
    SELECT g.responsible_user_id INTO responsible
      FROM ccrm.target_group g JOIN ccrm.crm_user u ON u.id = g.responsible_user_id AND u.active
     WHERE g.id = p.group_id;
    dur := coalesce(p.duration, (SELECT value FROM ccrm.settings WHERE name = 'event_duration')::interval);
    last_end := coalesce(p.latest_end, (SELECT value FROM ccrm.settings WHERE name = 'latest_end')::time);
    first_start := coalesce(p.earliest_start, (SELECT value FROM ccrm.settings WHERE name = 'earliest_start')::time);
    first_start := greatest(coalesce(p.day_start, first_start), first_start);
    per_day := coalesce(p.events_per_day, 8);
    INSERT INTO ccrm.activity_plan_run (plan_id, run_day) VALUES (plan, run_day) RETURNING id INTO run_id;

    FOR r IN
        SELECT c.id, c.account_id, c.firstname, c.lastname, c.email, a.name AS account_name,
               u.id AS user_id, u.firstname AS user_firstname, u.lastname AS user_lastname,
               coalesce(u.timezone, default_zone) AS zone
          FROM ccrm.target_group_member m
          JOIN ccrm.contact c ON c.id = m.member_id
          LEFT JOIN ccrm.account a ON a.id = c.account_id
          LEFT JOIN ccrm.crm_user o ON o.id = c.owner_id AND o.active
          JOIN ccrm.crm_user u ON u.id = coalesce(o.id, responsible)
         WHERE m.group_id = p.group_id
           AND NOT EXISTS (SELECT FROM ccrm.activity d
                            WHERE d.plan_id = plan AND d.plan_day = run_day AND d.member_id = m.member_id)
         ORDER BY u.id, m.member_id
    LOOP
        IF cur_user IS DISTINCT FROM r.user_id THEN
            -- the next user: their calendar from the run's day on (a day early for zones ahead of UTC)
            cur_user := r.user_id;
            SELECT array_agg(starts_at ORDER BY starts_at), array_agg(ends_at ORDER BY starts_at),
                   array_agg(plan_id IS NOT DISTINCT FROM plan ORDER BY starts_at)
              INTO b_start, b_end, b_same
              FROM ccrm.activity
             WHERE user_id = cur_user AND starts_at IS NOT NULL AND ends_at > (run_day - 1)::timestamp AT TIME ZONE 'UTC';
            nb := coalesce(array_length(b_start, 1), 0);
            bpos := 1;
            slot_day := run_day;
            day_open := false;
        END IF;
        LOOP
            IF NOT day_open THEN
                WHILE NOT extract(isodow FROM slot_day)::smallint = ANY (working) OR slot_day = ANY (holidays) LOOP
                    slot_day := slot_day + 1;
                END LOOP;
                midnight := slot_day::timestamp AT TIME ZONE r.zone;
                next_midnight := (slot_day + 1)::timestamp AT TIME ZONE r.zone;
                next_start := (slot_day + first_start) AT TIME ZONE r.zone;
                day_end := (slot_day + last_end) AT TIME ZONE r.zone;
                WHILE bpos <= nb AND b_end[bpos] <= midnight LOOP
                    bpos := bpos + 1;
                END LOOP;
                n_today := 0;
                i := bpos;
                WHILE i <= nb AND b_start[i] < next_midnight LOOP
                    IF b_same[i] AND b_start[i] >= midnight THEN
                        n_today := n_today + 1;
                    END IF;
                    i := i + 1;
                END LOOP;
                day_open := true;
            END IF;
            s := next_start;
            IF n_today < per_day THEN
                -- past the events the slot would overlap
                i := bpos;
                WHILE i <= nb AND b_start[i] < s + dur AND s + dur <= day_end LOOP
                    IF b_end[i] > s THEN
                        s := b_end[i];
                        i := bpos;
                    ELSE
                        i := i + 1;
                    END IF;
                END LOOP;
                EXIT WHEN s + dur <= day_end;
            END IF;
            slot_day := slot_day + 1;
            day_open := false;
        END LOOP;
        next_start := s + dur;
        n_today := n_today + 1;
        INSERT INTO ccrm.activity (kind, subject, description, user_id, contact_id, account_id,
                                   starts_at, ends_at, status, priority, plan_id, plan_run_id, plan_day, member_id)
        VALUES (p.kind,
                replace(replace(replace(replace(replace(replace(p.subject,
                    '\$contact-firstname\$', coalesce(r.firstname, '')), '\$contact-lastname\$', coalesce(r.lastname, '')),
                    '\$contact-email\$', coalesce(r.email, '')), '\$account-name\$', coalesce(r.account_name, '')),
                    '\$user-firstname\$', coalesce(r.user_firstname, '')), '\$user-lastname\$', coalesce(r.user_lastname, '')),
                replace(replace(replace(replace(replace(replace(p.description,
                    '\$contact-firstname\$', coalesce(r.firstname, '')), '\$contact-lastname\$', coalesce(r.lastname, '')),
                    '\$contact-email\$', coalesce(r.email, '')), '\$account-name\$', coalesce(r.account_name, '')),
                    '\$user-firstname\$', coalesce(r.user_firstname, '')), '\$user-lastname\$', coalesce(r.user_lastname, '')),
                r.user_id, r.id, r.account_id, s, s + dur, p.status, p.priority, plan, run_id, run_day, r.id)
        ON CONFLICT (plan_id, plan_day, member_id) WHERE plan_id IS NOT NULL DO NOTHING;
        n_created := n_created + 1;
    END LOOP;
    UPDATE ccrm.activity_plan_run SET created = n_created, finished_at = clock_timestamp()
     WHERE id = run_id;
    RETURN n_created;
END \$\$;" >/dev/null
ROWWISE="SELECT bench_activities_rowwise($PLAN, '$DAY');"
same_result activities_plpgsql "$ROWWISE"
rowwise=$(time_sql "$ROWWISE" "" "$CLEAN")
say "the row-by-row function spends $rowwise s, of which inserting the rows alone takes $insert_only s"
bench_line activities_plpgsql "$ccrm" "$rowwise" 0.1

psql_bench "SELECT ccrm.drop_target_group('bench calls'); DROP FUNCTION bench_activities_rowwise(bigint, date);
            DROP FUNCTION bench_working_days(date, integer);" >/dev/null
