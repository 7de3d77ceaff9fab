/*
 * ccrm 0.4.0 -> 0.5.0
 *
 * C: job_run.c (the instant of run_job and run_due_jobs).
 */
\echo Use "ALTER EXTENSION ccrm UPDATE TO '0.5.0'" to load this file. \quit

-- Functions that read the clock take the instant as an argument (DEFAULT now()),
-- so that callers and tests can pass a fixed one.
DROP FUNCTION ccrm.run_job(text);
DROP FUNCTION ccrm.run_job(bigint);
CREATE FUNCTION ccrm.run_job(job_id bigint, at timestamptz DEFAULT pg_catalog.now()) RETURNS ccrm.job_run
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'ccrm_run_job';
CREATE FUNCTION ccrm.run_job(job text, at timestamptz DEFAULT pg_catalog.now()) RETURNS ccrm.job_run
    LANGUAGE sql VOLATILE STRICT
    BEGIN ATOMIC
        SELECT * FROM ccrm.run_job(ccrm.job_id(run_job.job), run_job.at);
    END;
COMMENT ON FUNCTION ccrm.run_job(bigint, timestamptz) IS
    'run a job now, in this transaction, as its owner, acting at the instant at (an error when it is running already); its next run stays as planned';

DROP PROCEDURE ccrm.run_due_jobs();
CREATE PROCEDURE ccrm.run_due_jobs(at timestamptz DEFAULT pg_catalog.now())
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'ccrm_run_due_jobs';
COMMENT ON PROCEDURE ccrm.run_due_jobs(timestamptz) IS
    'run every job that is due at the instant at, each in its own transaction (for pg_cron: CALL ccrm.run_due_jobs() every minute)';
