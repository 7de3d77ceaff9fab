#!/usr/bin/env bash
# Activities: 100,000 events for a group's members, six tags in subject and
# description, slotted 8 a day into each owner's calendar (owner's zone,
# working days), against
#   activities_sql      one hand-written INSERT … SELECT with replace() and
#                       row_number() slotting doing the same;
#   activities_plpgsql  a row-by-row PL/pgSQL function of the kind a DBA
#                       would write (target: ccrm at least 10 times faster).
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

ccrm=$(time_sql "SELECT * FROM ccrm.create_activities($PLAN, '$DAY');" "" "$CLEAN")
n=$(psql_bench "SELECT created FROM ccrm.create_activities($PLAN, '$DAY')")
say "ccrm created $n activities"
psql_bench "$CLEAN"

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
base=$(time_sql "$BASE_SQL" "" "$CLEAN")
bench_line activities_sql "$ccrm" "$base" 1.3

# row by row: what a DBA writes without ccrm — the same feature, so the plan's
# templates are data and each $entity-field$ tag is looked up when rendered
psql_bench "
CREATE OR REPLACE FUNCTION bench_render(tpl text, contact_id bigint, account_id bigint, user_id bigint)
RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE m text[]; v text; tbl text; id bigint; out text := tpl;
BEGIN
    FOR m IN SELECT regexp_matches(tpl, '\\\$([a-z]+)-([a-z_]+)(?:\\|([^\$]*))?\\\$', 'g') LOOP
        tbl := CASE m[1] WHEN 'contact' THEN 'contact' WHEN 'account' THEN 'account' ELSE 'crm_user' END;
        id := CASE m[1] WHEN 'contact' THEN contact_id WHEN 'account' THEN account_id ELSE user_id END;
        EXECUTE format('SELECT %I::text FROM ccrm.%I WHERE id = \$1',
                       CASE WHEN m[1] = 'user' AND m[2] = 'name' THEN 'username' ELSE m[2] END, tbl)
           INTO v USING id;
        out := replace(out, '\$' || m[1] || '-' || m[2] || coalesce('|' || m[3], '') || '\$',
                       coalesce(nullif(v, ''), m[3], ''));
    END LOOP;
    RETURN out;
END \$\$;
CREATE OR REPLACE FUNCTION bench_activities_rowwise(plan bigint, run_day date) RETURNS integer
LANGUAGE plpgsql AS \$\$
DECLARE
    p ccrm.activity_plan; r record; usr record; last_end timestamptz; slot_day date; n_today integer;
    starts timestamptz; created integer := 0;
BEGIN
    SELECT * INTO p FROM ccrm.activity_plan WHERE id = plan;
    FOR r IN SELECT c.id, c.owner_id, c.account_id
               FROM ccrm.target_group_member m JOIN ccrm.contact c ON c.id = m.member_id
              WHERE m.group_id = p.group_id ORDER BY m.member_id
    LOOP
        SELECT * INTO usr FROM ccrm.crm_user WHERE id = coalesce(r.owner_id, 1);
        -- the owner's last event from the run's day on, and how many are on its day
        -- (both through the calendar index on user_id, starts_at)
        SELECT ends_at INTO last_end FROM ccrm.activity
         WHERE user_id = usr.id AND starts_at >= run_day::timestamp AT TIME ZONE coalesce(usr.timezone, 'UTC')
         ORDER BY starts_at DESC LIMIT 1;
        IF last_end IS NULL THEN
            slot_day := run_day;
            n_today := 0;
        ELSE
            slot_day := (last_end AT TIME ZONE coalesce(usr.timezone, 'UTC'))::date;
            SELECT count(*) INTO n_today FROM ccrm.activity
             WHERE user_id = usr.id
               AND starts_at >= slot_day::timestamp AT TIME ZONE coalesce(usr.timezone, 'UTC')
               AND starts_at < (slot_day + 1)::timestamp AT TIME ZONE coalesce(usr.timezone, 'UTC');
        END IF;
        IF n_today >= p.events_per_day THEN
            slot_day := slot_day + 1;
            n_today := 0;
        END IF;
        WHILE extract(isodow FROM slot_day) > 5 OR slot_day IN (SELECT day FROM ccrm.holiday) LOOP
            slot_day := slot_day + 1;
            n_today := 0;
        END LOOP;
        starts := (slot_day + time '08:00' + n_today * p.duration) AT TIME ZONE coalesce(usr.timezone, 'UTC');
        INSERT INTO ccrm.activity (kind, subject, description, user_id, contact_id, account_id,
                                   starts_at, ends_at, status, priority, plan_id, plan_day, member_id)
        VALUES (p.kind, bench_render(p.subject, r.id, r.account_id, usr.id),
                bench_render(p.description, r.id, r.account_id, usr.id), usr.id, r.id, r.account_id,
                starts, starts + p.duration, p.status, p.priority, plan, run_day, r.id);
        created := created + 1;
    END LOOP;
    RETURN created;
END \$\$;" >/dev/null
rowwise=$(REPEAT=1 time_sql "SELECT bench_activities_rowwise($PLAN, '$DAY');" "" "$CLEAN")
bench_line activities_plpgsql "$ccrm" "$rowwise" 0.1

psql_bench "SELECT ccrm.drop_target_group('bench calls'); DROP FUNCTION bench_activities_rowwise(bigint, date); DROP FUNCTION bench_render(text, bigint, bigint, bigint);
            DROP FUNCTION bench_working_days(date, integer);" >/dev/null
