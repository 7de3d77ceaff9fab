/*
 * Schema changes of the scheduler part of issue 9 (secsched), to be folded
 * into the next update script (after 0.6.0) and extension/ccrm.sql.
 * Statements as they would appear there; each with a comment.  C code
 * (job_run.c) reads ccrm.job by column name and works with or without
 * time_limit.
 */

/* A per-job time limit: a run whose action takes longer is cancelled and
 * recorded as failed.  Timer milliseconds are an int, hence at most 24 days. */
ALTER TABLE ccrm.job ADD COLUMN time_limit interval
    CHECK (time_limit IS NULL OR (time_limit > interval '0' AND time_limit <= interval '24 days'));
COMMENT ON COLUMN ccrm.job.time_limit IS
    'a run whose action takes longer is cancelled and recorded as failed; NULL: no limit';

/* Setting it: NULL clears it.  (Not a parameter of schedule_job/alter_job,
 * so their signatures stay as they are.) */
CREATE FUNCTION ccrm.set_job_time_limit(job text, time_limit interval) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        UPDATE ccrm.job SET time_limit = set_job_time_limit.time_limit
         WHERE id OPERATOR(pg_catalog.=) ccrm.job_id(set_job_time_limit.job);
    END;
COMMENT ON FUNCTION ccrm.set_job_time_limit(text, interval) IS
    'cancel runs of the job whose action takes longer than this (NULL: no limit)';

/* ccrm.jobs shows the limit (a new last column; the rest as in 0.6.0) */
CREATE OR REPLACE VIEW ccrm.jobs WITH (security_invoker = true) AS
    SELECT j.id, j.name, j.kind, g.name AS "group", j.schedule,
           COALESCE(j.time_zone, ccrm.get_setting('time_zone')) AS time_zone,
           a.name AS after_job, j.active, j.owner, j.next_run,
           r.started_at AS last_started, r.status AS last_status, r.error AS last_error,
           j.failures, j.inactive_reason, j.params, j.time_limit
      FROM ccrm.job j
      LEFT JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) j.group_id
      LEFT JOIN ccrm.job a ON a.id OPERATOR(pg_catalog.=) j.after_job
      LEFT JOIN LATERAL (SELECT r.started_at, r.status, r.error FROM ccrm.job_run r
                          WHERE r.job_id OPERATOR(pg_catalog.=) j.id
                          ORDER BY r.started_at DESC LIMIT 1) r ON true
     ORDER BY j.next_run NULLS LAST, j.id;
