#!/usr/bin/env bash
# Campaigns against the same work written by hand, on the same tables:
#  campaign_add_group        — a 250,000-contact group into a campaign, against
#                              INSERT … SELECT … ON CONFLICT DO NOTHING of the
#                              group's members into ccrm.campaign_member;
#  campaign_prune_account    — one contact per account (about 230,000 of the
#                              members share their account with another one);
#  campaign_prune_email      — one member per address, trimmed and lower-case
#                              (12,500 addresses are written twice here);
#  campaign_prune_opt_outs   — the opted-out members (every seventh);
#  campaign_summary          — the summary's counts in one query.
# Each prune and its baseline write the same ccrm.campaign_removal rows.
# Members are refilled (untimed) before every timed run.
source "$BENCH_DIR/lib.sh"

GROUP_FILTER='{"field": "id", "op": "lte", "value": 250000}'
psql_bench "
SELECT ccrm.create_target_group('bench 250k', 'contact', '$GROUP_FILTER');
SELECT added FROM ccrm.refresh_target_group('bench 250k');
SELECT ccrm.create_campaign('bench', number => 'BENCH-1');
-- email duplicates: every 20th contact of the group gets its neighbour's address, padded and in capitals
CREATE TABLE bench_email AS SELECT id, email FROM ccrm.contact WHERE id <= 250000 AND id % 20 = 0;
UPDATE ccrm.contact SET email = ' ' || upper('contact' || (id - 1) || '@example.com') || ' '
 WHERE id <= 250000 AND id % 20 = 0;
ANALYZE ccrm.contact, ccrm.target_group_membership;" >/dev/null
cid=$(psql_bench "SELECT ccrm.campaign_id('bench')")
gid=$(psql_bench "SELECT ccrm.target_group_id('bench 250k')")
members=$(psql_bench "SELECT count(*) FROM ccrm.target_group_member WHERE group_id = $gid")
say "group 'bench 250k' has $members members"

EMPTY="TRUNCATE ccrm.campaign_member, ccrm.campaign_removal;"
FILL="$EMPTY
INSERT INTO ccrm.campaign_member (campaign_id, contact_id, added_at, added_how, added_from)
SELECT $cid, m.member_id, now(), 'group', 'bench 250k' FROM ccrm.target_group_member m WHERE m.group_id = $gid;
VACUUM ANALYZE ccrm.campaign_member;"
# FILL as separate statements (VACUUM cannot run in the one transaction of psql -c)
fill() { psql_file <(echo "$FILL") >/dev/null; }

# adding the group
ccrm=$(time_sql "SELECT ccrm.add_group_to_campaign('bench', 'bench 250k');" "$EMPTY" "")
base=$(time_sql "
INSERT INTO ccrm.campaign_member (campaign_id, contact_id, added_at, added_how, added_from)
SELECT $cid, m.member_id, now(), 'group', 'bench 250k' FROM ccrm.target_group_member m WHERE m.group_id = $gid
ON CONFLICT DO NOTHING;" "$EMPTY" "")
bench_line campaign_add_group "$ccrm" "$base" 1.2

# the three prunes: ccrm's function against the same DELETE … INSERT by hand
LOG="INSERT INTO ccrm.campaign_removal (campaign_id, contact_id, lead_id, reason, detail, removed_at,
      added_at, added_how, added_from, added_by, email_status, emailed_at, message_id)
 SELECT $cid, d.contact_id, d.lead_id, d.reason, d.detail, now(), d.added_at, d.added_how, d.added_from,
        d.added_by, d.email_status, d.emailed_at, d.message_id FROM del d"
check_same() {	# name kind baseline: the log ccrm wrote equals the baseline's (run both once more, compare)
	local a b
	a=$(fill; psql_bench "SELECT count(*) FROM ccrm.prune_campaign('bench', '$2');
	      SELECT md5(string_agg(concat_ws(',', contact_id, lead_id, reason, detail), ';' ORDER BY contact_id, lead_id))
	        FROM ccrm.campaign_removal" | tail -1)
	b=$(fill; psql_bench "$3;
	      SELECT md5(string_agg(concat_ws(',', contact_id, lead_id, reason, detail), ';' ORDER BY contact_id, lead_id))
	        FROM ccrm.campaign_removal" | tail -1)
	[ "$a" = "$b" ] || die "$1: ccrm and the baseline wrote different removal logs"
	say "$1: removes $(psql_bench "SELECT count(*) FROM ccrm.campaign_removal") members, the same rows on both sides"
}

ACCOUNT_BASE="WITH v AS MATERIALIZED (
  SELECT contact_id, 'account duplicate'::text AS reason, 'contact ' || kept AS detail FROM (
    SELECT m.contact_id, first_value(m.contact_id) OVER w AS kept, row_number() OVER w AS n
      FROM ccrm.campaign_member m JOIN ccrm.contact t ON t.id = m.contact_id
     WHERE m.campaign_id = $cid AND t.account_id IS NOT NULL
    WINDOW w AS (PARTITION BY t.account_id ORDER BY m.added_at, m.contact_id)) x WHERE n > 1),
del AS (DELETE FROM ccrm.campaign_member m USING v WHERE m.campaign_id = $cid AND m.contact_id = v.contact_id
        RETURNING m.*, v.reason, v.detail)
$LOG"
EMAIL_BASE="WITH v AS MATERIALIZED (
  SELECT contact_id, lead_id, 'email duplicate'::text AS reason, kept AS detail FROM (
    SELECT e.contact_id, e.lead_id,
           first_value(CASE WHEN e.contact_id IS NOT NULL THEN 'contact ' || e.contact_id
                            ELSE 'lead ' || e.lead_id END) OVER w AS kept,
           row_number() OVER w AS n
      FROM (SELECT m.contact_id, m.lead_id, m.added_at,
                   nullif(lower(btrim(coalesce(t.email, l.email), E' \t\r\n')), '') AS k
              FROM ccrm.campaign_member m
              LEFT JOIN ccrm.contact t ON t.id = m.contact_id
              LEFT JOIN ccrm.lead l ON l.id = m.lead_id
             WHERE m.campaign_id = $cid) e
     WHERE e.k IS NOT NULL
    WINDOW w AS (PARTITION BY e.k ORDER BY e.added_at, e.contact_id IS NULL, coalesce(e.contact_id, e.lead_id))) x
   WHERE n > 1),
dc AS (DELETE FROM ccrm.campaign_member m USING v WHERE m.campaign_id = $cid AND m.contact_id = v.contact_id
       RETURNING m.*, v.reason, v.detail),
dl AS (DELETE FROM ccrm.campaign_member m USING v WHERE m.campaign_id = $cid AND m.lead_id = v.lead_id
       RETURNING m.*, v.reason, v.detail),
del AS (SELECT * FROM dc UNION ALL SELECT * FROM dl)
$LOG"
OPT_BASE="WITH v AS MATERIALIZED (
  SELECT m.contact_id, m.lead_id, 'opted out'::text AS reason, NULL::text AS detail
    FROM ccrm.campaign_member m
    LEFT JOIN ccrm.contact t ON t.id = m.contact_id
    LEFT JOIN ccrm.lead l ON l.id = m.lead_id
   WHERE m.campaign_id = $cid AND coalesce(t.email_opt_out, l.email_opt_out)),
dc AS (DELETE FROM ccrm.campaign_member m USING v WHERE m.campaign_id = $cid AND m.contact_id = v.contact_id
       RETURNING m.*, v.reason, v.detail),
dl AS (DELETE FROM ccrm.campaign_member m USING v WHERE m.campaign_id = $cid AND m.lead_id = v.lead_id
       RETURNING m.*, v.reason, v.detail),
del AS (SELECT * FROM dc UNION ALL SELECT * FROM dl)
$LOG"

prune() {	# bench-name kind baseline-sql
	local ccrm base
	check_same "$1" "$2" "$3"
	ccrm=$(time_sql "SELECT count(*) FROM ccrm.prune_campaign('bench', '$2');" "$FILL" "")
	base=$(time_sql "$3;" "$FILL" "")
	bench_line "$1" "$ccrm" "$base" 1.2
}
prune campaign_prune_account "account duplicates" "$ACCOUNT_BASE"
prune campaign_prune_email "email duplicates" "$EMAIL_BASE"
prune campaign_prune_opt_outs "opt-outs" "$OPT_BASE"

# the summary of the full group
fill
a=$(psql_bench "SELECT concat_ws(',', members, contacts, leads, accounts, with_email, without_email, opted_out,
                                  email_duplicates, account_duplicates) FROM ccrm.campaign_summary('bench')")
SUMMARY_BASE="SELECT count(*), count(e.contact_id), count(e.lead_id), count(DISTINCT e.account_id), count(e.k),
       count(*) FILTER (WHERE e.k IS NULL), count(*) FILTER (WHERE e.opt_out),
       count(e.k) - count(DISTINCT e.k), count(e.account_id) - count(DISTINCT e.account_id),
       count(*) FILTER (WHERE e.email_status = 'queued'), count(*) FILTER (WHERE e.email_status = 'pending'),
       jsonb_strip_nulls(jsonb_build_object(
           'campaign ended', nullif(count(*) FILTER (WHERE e.email_status = 'campaign ended'), 0),
           'opted out', nullif(count(*) FILTER (WHERE e.email_status = 'opted out'), 0),
           'no address', nullif(count(*) FILTER (WHERE e.email_status = 'no address'), 0),
           'same address', nullif(count(*) FILTER (WHERE e.email_status = 'same address'), 0),
           'already emailed', nullif(count(*) FILTER (WHERE e.email_status = 'already emailed'), 0),
           'not sent', nullif(count(*) FILTER (WHERE e.email_status = 'not sent'), 0))),
       (SELECT count(*) FROM ccrm.campaign_removal r WHERE r.campaign_id = $cid AND r.restored_at IS NULL)
  FROM (SELECT m.contact_id, m.lead_id, t.account_id, m.email_status,
               nullif(lower(btrim(coalesce(t.email, l.email), E' \t\r\n')), '') AS k,
               coalesce(t.email_opt_out, l.email_opt_out) AS opt_out
          FROM ccrm.campaign_member m
          LEFT JOIN ccrm.contact t ON t.id = m.contact_id
          LEFT JOIN ccrm.lead l ON l.id = m.lead_id
         WHERE m.campaign_id = $cid) e"
b=$(psql_bench "SELECT concat_ws(',', c, co, le, ac, we, wo, oo, ed, ad) FROM ($SUMMARY_BASE) s(c, co, le, ac, we, wo, oo, ed, ad, q, p, sk, rm)")
[ "$a" = "$b" ] || die "campaign_summary: ccrm says $a, the baseline $b"
say "summary (members, contacts, leads, accounts, with/without email, opted out, email/account duplicates): $a"
ccrm=$(time_sql "SELECT * FROM ccrm.campaign_summary('bench');")
base=$(time_sql "$SUMMARY_BASE;")
bench_line campaign_summary "$ccrm" "$base" 1.2

psql_bench "
UPDATE ccrm.contact c SET email = b.email FROM bench_email b WHERE b.id = c.id;
DROP TABLE bench_email;
SELECT ccrm.drop_campaign('bench');
SELECT ccrm.drop_target_group('bench 250k');" >/dev/null
