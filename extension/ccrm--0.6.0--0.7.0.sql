/*
 * ccrm 0.6.0 -> 0.7.0 — the clock rule, last item (README, Development):
 * every function whose result or effect depends on the clock takes the
 * instant it acts at, at timestamptz DEFAULT now().  Calls without it work
 * as before.  Each changed signature is dropped and created anew (its
 * comment with it); the functions written in SQL that call them are
 * redefined after them.
 *
 * C: instant.c (the one check of every instant: ccrm.check_instant); the at
 * of audit.c, mass_update.c, formula.c and tool.c (a direct run acts at
 * at); job.c (next_run is the first slot after the instant the statement
 * wrote into it).
 */
\echo Use "ALTER EXTENSION ccrm UPDATE TO '0.7.0'" to load this file. \quit

/* instant.c — the check of every at argument, for functions written in SQL */
CREATE FUNCTION ccrm.check_instant(at timestamptz) RETURNS timestamptz
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ccrm_check_instant';
COMMENT ON FUNCTION ccrm.check_instant(timestamptz) IS
    'at when it is a finite instant; an error otherwise (what every at argument must be)';

/* target_group.c — purges count back from at; a scheduled refresh
 * evaluates the filter at its action time, the slot it runs for */
DROP FUNCTION ccrm.purge_group_history(interval);
CREATE FUNCTION ccrm.purge_group_history(older_than interval, at timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
    LANGUAGE sql VOLATILE STRICT
    BEGIN ATOMIC
        SELECT ccrm.check_instant(purge_group_history.at);
        WITH gone AS (
            DELETE FROM ccrm.target_group_membership
             WHERE left_at IS NOT NULL
               AND left_at OPERATOR(pg_catalog.<) (purge_group_history.at OPERATOR(pg_catalog.-) purge_group_history.older_than)
            RETURNING 1)
        SELECT pg_catalog.count(*) FROM gone;
    END;
COMMENT ON FUNCTION ccrm.purge_group_history(interval, timestamptz) IS
    'delete closed membership spans that ended longer than the interval before at; returns how many';
CREATE OR REPLACE FUNCTION ccrm.job_refresh_group(job_id bigint, run_id bigint, group_id bigint, params jsonb,
    action_time timestamptz, time_zone text) RETURNS jsonb
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT pg_catalog.jsonb_build_object('added', r.added, 'removed', r.removed, 'total', r.total)
          FROM ccrm.refresh_target_group(job_refresh_group.group_id, job_refresh_group.action_time) r;
    END;

/* job.c — next_run is the first slot after at */
DROP FUNCTION ccrm.schedule_job(text, text, text, text, jsonb, text, text, boolean, regrole);
DROP FUNCTION ccrm.alter_job(text, text, jsonb, text, text, text, text);
DROP FUNCTION ccrm.activate_job(text);
CREATE FUNCTION ccrm.schedule_job(name text, kind text, schedule text,
    "group" text DEFAULT NULL, params jsonb DEFAULT '{}', time_zone text DEFAULT NULL,
    after_job text DEFAULT NULL, active boolean DEFAULT true,
    owner regrole DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole,
    at timestamptz DEFAULT pg_catalog.now())
    RETURNS bigint
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT ccrm.check_instant(schedule_job.at);
        -- next_run carries at to the job trigger, which plans the first slot after it (job.c)
        INSERT INTO ccrm.job (name, kind, group_id, params, schedule, time_zone, after_job, active, owner, next_run)
        VALUES (schedule_job.name, schedule_job.kind,
                CASE WHEN schedule_job."group" IS NOT NULL THEN ccrm.target_group_id(schedule_job."group") END,
                COALESCE(schedule_job.params, '{}'), schedule_job.schedule, schedule_job.time_zone,
                CASE WHEN schedule_job.after_job IS NOT NULL THEN ccrm.job_id(schedule_job.after_job) END,
                schedule_job.active, schedule_job.owner, schedule_job.at)
        RETURNING id;
    END;
COMMENT ON FUNCTION ccrm.schedule_job(text, text, text, text, jsonb, text, text, boolean, regrole, timestamptz) IS
    'save a job: what (kind, group, params), when (schedule, time zone; next_run the first slot after at), after which job, as whom (another role: admins only)';
CREATE FUNCTION ccrm.alter_job(job text, schedule text DEFAULT NULL, params jsonb DEFAULT NULL,
    time_zone text DEFAULT NULL, "group" text DEFAULT NULL, after_job text DEFAULT NULL,
    new_name text DEFAULT NULL, at timestamptz DEFAULT pg_catalog.now())
    RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT ccrm.check_instant(alter_job.at);
        UPDATE ccrm.job j SET
            -- a new schedule, zone or predecessor plans next_run from at (job.c)
            next_run = CASE WHEN NULLIF(COALESCE(alter_job.schedule, j.schedule), '') IS DISTINCT FROM j.schedule
                              OR NULLIF(COALESCE(alter_job.time_zone, j.time_zone), '') IS DISTINCT FROM j.time_zone
                              OR CASE WHEN alter_job.after_job IS NULL THEN j.after_job
                                      WHEN alter_job.after_job OPERATOR(pg_catalog.=) '' THEN NULL
                                      ELSE ccrm.job_id(alter_job.after_job) END IS DISTINCT FROM j.after_job
                            THEN alter_job.at ELSE j.next_run END,
            schedule = CASE WHEN alter_job.schedule IS NULL THEN j.schedule
                            WHEN alter_job.schedule OPERATOR(pg_catalog.=) '' THEN NULL
                            ELSE alter_job.schedule END,
            params = COALESCE(alter_job.params, j.params),
            time_zone = CASE WHEN alter_job.time_zone IS NULL THEN j.time_zone
                             WHEN alter_job.time_zone OPERATOR(pg_catalog.=) '' THEN NULL
                             ELSE alter_job.time_zone END,
            group_id = CASE WHEN alter_job."group" IS NULL THEN j.group_id
                            ELSE ccrm.target_group_id(alter_job."group") END,
            after_job = CASE WHEN alter_job.after_job IS NULL THEN j.after_job
                             WHEN alter_job.after_job OPERATOR(pg_catalog.=) '' THEN NULL
                             ELSE ccrm.job_id(alter_job.after_job) END,
            name = COALESCE(alter_job.new_name, j.name)
         WHERE j.id OPERATOR(pg_catalog.=) ccrm.job_id(alter_job.job);
    END;
COMMENT ON FUNCTION ccrm.alter_job(text, text, jsonb, text, text, text, text, timestamptz) IS
    'change what is given (NULL keeps it); '''' clears schedule, time_zone or after_job; a new timing plans the next run after at';
CREATE FUNCTION ccrm.activate_job(job text, at timestamptz DEFAULT pg_catalog.now()) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT ccrm.check_instant(activate_job.at);
        UPDATE ccrm.job SET active = true, failures = 0, inactive_reason = NULL,
               -- an inactive job plans its next run from at (job.c); an active one keeps it
               next_run = CASE WHEN active THEN next_run ELSE activate_job.at END
         WHERE id OPERATOR(pg_catalog.=) ccrm.job_id(activate_job.job);
    END;
COMMENT ON FUNCTION ccrm.activate_job(text, timestamptz) IS
    'activate a job (its failures forgotten); an inactive one runs next at the first slot after at';
DROP FUNCTION ccrm.purge_job_history(interval);
CREATE FUNCTION ccrm.purge_job_history(older_than interval, at timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
    LANGUAGE sql VOLATILE STRICT
    BEGIN ATOMIC
        SELECT ccrm.check_instant(purge_job_history.at);
        WITH gone AS (
            DELETE FROM ccrm.job_run
             WHERE status OPERATOR(pg_catalog.<>) 'running'
               AND finished_at OPERATOR(pg_catalog.<) (purge_job_history.at OPERATOR(pg_catalog.-) purge_job_history.older_than)
            RETURNING 1)
        SELECT pg_catalog.count(*) FROM gone;
    END;
COMMENT ON FUNCTION ccrm.purge_job_history(interval, timestamptz) IS
    'delete finished runs that finished longer than the interval before at (the scheduler does this by ccrm.job_history_retention)';

/* audit.c, mass_update.c, formula.c, tool.c — a direct run acts at at */
DROP FUNCTION ccrm.purge_audit(interval);
CREATE FUNCTION ccrm.purge_audit(older_than interval DEFAULT NULL, at timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_purge_audit';
COMMENT ON FUNCTION ccrm.purge_audit(interval, timestamptz) IS
    'delete the audit of runs that finished longer before at (NULL: ccrm.audit_retention days, 0 = keep) and of runs that are gone';
DROP FUNCTION ccrm.mass_update(text, text, jsonb, boolean);
CREATE FUNCTION ccrm.mass_update("group" text, target text, assignments jsonb, audit boolean DEFAULT true,
    at timestamptz DEFAULT pg_catalog.now())
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_mass_update';
COMMENT ON FUNCTION ccrm.mass_update(text, text, jsonb, boolean, timestamptz) IS
    'set fields of the group''s members (target = its entity) or of their contacts or accounts; '
    'values: literals, null, {"action": "date"}, {"action": "time"} (of the instant at); returns the run (ccrm.job_run.id)';
DROP FUNCTION ccrm.run_formulas(text, text[], boolean);
CREATE FUNCTION ccrm.run_formulas("group" text, formulas text[] DEFAULT NULL, audit boolean DEFAULT true,
    at timestamptz DEFAULT pg_catalog.now())
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_run_formulas';
COMMENT ON FUNCTION ccrm.run_formulas(text, text[], boolean, timestamptz) IS
    'apply the formulas (NULL: every active formula of the group''s entity) to the group''s members, a run acting at at; returns the run';
DROP FUNCTION ccrm.run_tool(text, text, jsonb);
CREATE FUNCTION ccrm.run_tool("group" text, tool text, params jsonb DEFAULT '{}',
    at timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_run_tool';
COMMENT ON FUNCTION ccrm.run_tool(text, text, jsonb, timestamptz) IS
    'call a tool with the group''s members, with your privileges, a run acting at at; returns the run (ccrm.job_run.id)';
