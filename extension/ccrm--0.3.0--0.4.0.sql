/*
 * ccrm 0.3.0 -> 0.4.0 — actions on a target group besides refreshing it and
 * creating its activities: mass updates with an audit that can be undone,
 * field formulas, and module tools; each callable from SQL and as a job kind.
 *
 * C: action_run.c (runs, the batched audited update, GUCs), mass_update.c,
 * audit.c (undo, purge), formula.c, tool.c.
 */
\echo Use "ALTER EXTENSION ccrm UPDATE TO '0.4.0'" to load this file. \quit

/* ------------------------------------------------------------------------
 * audit.c — old and new values of what a run changed
 * ------------------------------------------------------------------------ */
CREATE TABLE ccrm.run_audit (
    run_id     bigint NOT NULL,
    step       integer NOT NULL,
    entity     text NOT NULL,
    record_id  bigint NOT NULL,
    old_values jsonb NOT NULL,
    new_values jsonb NOT NULL,
    undone_at  timestamptz
);
CREATE INDEX run_audit_run_idx ON ccrm.run_audit (run_id);
COMMENT ON TABLE ccrm.run_audit IS
    'Old and new values of every record a mass update or formula run changed, by run (ccrm.job_run.id) '
    'and step; ccrm.undo_run() restores them';
COMMENT ON COLUMN ccrm.run_audit.step IS 'order of the update within the run (a target, a formula); undo goes backwards';
COMMENT ON COLUMN ccrm.run_audit.undone_at IS 'when ccrm.undo_run() restored the old values';

/* A role sees the audit of its own runs, writes it only for its runs in progress. */
ALTER TABLE ccrm.run_audit ENABLE ROW LEVEL SECURITY;
CREATE POLICY run_audit_read ON ccrm.run_audit FOR SELECT
    USING (run_id IN (SELECT r.id FROM ccrm.job_run r WHERE r.run_as OPERATOR(pg_catalog.=) CURRENT_USER));
CREATE POLICY run_audit_write ON ccrm.run_audit FOR INSERT
    WITH CHECK (run_id IN (SELECT r.id FROM ccrm.job_run r
                            WHERE r.run_as OPERATOR(pg_catalog.=) CURRENT_USER AND r.status OPERATOR(pg_catalog.=) 'running'));
CREATE POLICY run_audit_undo ON ccrm.run_audit FOR UPDATE
    USING (run_id IN (SELECT r.id FROM ccrm.job_run r WHERE r.run_as OPERATOR(pg_catalog.=) CURRENT_USER));
GRANT SELECT, INSERT ON ccrm.run_audit TO PUBLIC;
GRANT UPDATE (undone_at) ON ccrm.run_audit TO PUBLIC;

CREATE FUNCTION ccrm.undo_run(run bigint)
    RETURNS TABLE (entity text, restored bigint, conflicts bigint, conflict_ids bigint[])
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'ccrm_undo_run';
COMMENT ON FUNCTION ccrm.undo_run(bigint) IS
    'restore the old values a run wrote, where nobody changed them since; reports the records it could not restore';

CREATE FUNCTION ccrm.purge_audit(older_than interval DEFAULT NULL) RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_purge_audit';
COMMENT ON FUNCTION ccrm.purge_audit(interval) IS
    'delete the audit of runs that finished longer ago (NULL: ccrm.audit_retention days, 0 = keep) and of runs that are gone';

/* ------------------------------------------------------------------------
 * mass_update.c — set fields of a group's members or their contacts/accounts
 * ------------------------------------------------------------------------ */
CREATE FUNCTION ccrm.mass_update("group" text, target text, assignments jsonb, audit boolean DEFAULT true)
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_mass_update';
COMMENT ON FUNCTION ccrm.mass_update(text, text, jsonb, boolean) IS
    'set fields of the group''s members (target = its entity) or of their contacts or accounts; '
    'values: literals, null, {"action": "date"}, {"action": "time"}; returns the run (ccrm.job_run.id)';

CREATE FUNCTION ccrm.job_mass_update(job_id bigint, run_id bigint, group_id bigint, params jsonb,
    action_time timestamptz, time_zone text) RETURNS jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ccrm_job_mass_update';
CREATE FUNCTION ccrm.job_check_mass_update(group_id bigint, params jsonb) RETURNS jsonb
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'ccrm_job_check_mass_update';

INSERT INTO ccrm.job_kind (name, runner, validator, needs_group, builtin, description) VALUES
    ('mass_update',
     'ccrm.job_mass_update(bigint, bigint, bigint, jsonb, timestamptz, text)',
     'ccrm.job_check_mass_update(bigint, jsonb)', true, true,
     'set fields of the members or their contacts/accounts: {"set": {"account": {"description": "Contacted", '
     '"last_contacted": {"action": "date"}}}, "audit": true}');

SELECT pg_catalog.pg_extension_config_dump('ccrm.run_audit', '');
