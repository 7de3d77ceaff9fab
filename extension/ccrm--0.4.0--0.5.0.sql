/*
 * ccrm 0.4.0 -> 0.5.0 — the privilege model (README "Security").
 *
 * Every definition (target group, activity plan, formula, tool, job) has
 * an owner stored as a role oid (regrole), so a new role that reuses a
 * dropped role's name inherits nothing; runs record the role they ran as
 * the same way.  Row level security shows and lets change only the
 * definitions a role may use (its own and its roles'), and the runs and
 * audit of its own jobs; members of ccrm.admin_role see and manage all.
 * CRM users name their database role, and admins grant roles the right to
 * act as CRM users (send as, on behalf of).
 *
 * Functions that read the clock take the instant as an argument.
 *
 * C: job_run.c (the instant of run_job and run_due_jobs); privilege.c
 * (admins, may_use, act-as, owner triggers), job.c (chains of one owner,
 * what a job uses).
 */
\echo Use "ALTER EXTENSION ccrm UPDATE TO '0.5.0'" to load this file. \quit

-- Functions that read the clock take the instant as an argument (DEFAULT now()),
-- so that callers and tests can pass a fixed one.
DROP FUNCTION ccrm.run_job(text);
DROP FUNCTION ccrm.run_job(bigint);
CREATE FUNCTION ccrm.run_job(job_id bigint, at timestamptz DEFAULT pg_catalog.now()) RETURNS ccrm.job_run
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'ccrm_run_job';
/* run_job(text, timestamptz) follows below, once job_run has its final columns */
COMMENT ON FUNCTION ccrm.run_job(bigint, timestamptz) IS
    'run a job now, in this transaction, as its owner, acting at the instant at (an error when it is running already); its next run stays as planned';

DROP PROCEDURE ccrm.run_due_jobs();
CREATE PROCEDURE ccrm.run_due_jobs(at timestamptz DEFAULT pg_catalog.now())
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'ccrm_run_due_jobs';
COMMENT ON PROCEDURE ccrm.run_due_jobs(timestamptz) IS
    'run every job that is due at the instant at, each in its own transaction (for pg_cron: CALL ccrm.run_due_jobs() every minute)';

/* ------------------------------------------------------------------------
 * privilege.c — who is an admin, who may use a definition
 * ------------------------------------------------------------------------ */
CREATE FUNCTION ccrm.is_admin(role regrole DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole)
    RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ccrm_is_admin';
COMMENT ON FUNCTION ccrm.is_admin(regrole) IS
    'whether the role is a ccrm admin: a superuser, or has the privileges of ccrm.admin_role (never inside a run)';

CREATE FUNCTION ccrm.may_use(owner regrole, role regrole DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole)
    RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ccrm_may_use';
COMMENT ON FUNCTION ccrm.may_use(regrole, regrole) IS
    'whether the role may use a definition of that owner: it is the owner or a member of the owner role (superuser does not count)';

/* BEFORE INSERT OR UPDATE on the definitions: owners exist, only admins give them away */
CREATE FUNCTION ccrm.owner_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'ccrm_owner_trigger';
/* BEFORE INSERT OR UPDATE on ccrm.target_group_dependency: in_group only of usable groups */
CREATE FUNCTION ccrm.group_dependency_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'ccrm_group_dependency_trigger';

/* ------------------------------------------------------------------------
 * Jobs and runs: owner and run_as become role oids
 * ------------------------------------------------------------------------ */
DROP POLICY job_owner ON ccrm.job;
DROP POLICY job_run_owner ON ccrm.job_run;
DROP POLICY run_audit_read ON ccrm.run_audit;
DROP POLICY run_audit_write ON ccrm.run_audit;
DROP POLICY run_audit_undo ON ccrm.run_audit;
DROP VIEW ccrm.jobs;
DROP FUNCTION ccrm.schedule_job(text, text, text, text, jsonb, text, text, boolean, name);

/* Jobs of roles that no longer exist keep no owner (shown as "-") and are switched off. */
ALTER TABLE ccrm.job DISABLE TRIGGER ccrm_job;
UPDATE ccrm.job
   SET active = false, next_run = NULL,
       inactive_reason = pg_catalog.format('its owner, role "%s", did not exist when ccrm was updated to 0.5.0', owner)
 WHERE pg_catalog.to_regrole(pg_catalog.quote_ident(owner)) IS NULL;
ALTER TABLE ccrm.job ALTER COLUMN owner DROP DEFAULT;
ALTER TABLE ccrm.job ALTER COLUMN owner TYPE regrole
    USING COALESCE(pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), 0::pg_catalog.oid::pg_catalog.regrole);
ALTER TABLE ccrm.job ALTER COLUMN owner SET DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole;
ALTER TABLE ccrm.job ENABLE TRIGGER ccrm_job;
COMMENT ON COLUMN ccrm.job.owner IS 'the role a run executes as (only ccrm admins change it)';

/* Runs of roles that no longer exist: run_as "-" (only admins see them). */
ALTER TABLE ccrm.job_run ALTER COLUMN run_as TYPE regrole
    USING COALESCE(pg_catalog.to_regrole(pg_catalog.quote_ident(run_as)), 0::pg_catalog.oid::pg_catalog.regrole);
COMMENT ON COLUMN ccrm.job_run.run_as IS 'the role the run executed as';

CREATE POLICY job_owner ON ccrm.job
    USING (ccrm.may_use(owner) OR ccrm.is_admin())
    WITH CHECK (ccrm.may_use(owner) OR ccrm.is_admin());
CREATE POLICY job_run_owner ON ccrm.job_run
    USING (ccrm.may_use(run_as) OR ccrm.is_admin());
/* The audit of a run is visible with the run; written only by the run itself while it runs. */
CREATE POLICY run_audit_read ON ccrm.run_audit FOR SELECT
    USING (run_id IN (SELECT r.id FROM ccrm.job_run r));
CREATE POLICY run_audit_write ON ccrm.run_audit FOR INSERT
    WITH CHECK (run_id IN (SELECT r.id FROM ccrm.job_run r
                            WHERE ccrm.may_use(r.run_as) AND r.status OPERATOR(pg_catalog.=) 'running'));
CREATE POLICY run_audit_undo ON ccrm.run_audit FOR UPDATE
    USING (run_id IN (SELECT r.id FROM ccrm.job_run r));

CREATE FUNCTION ccrm.schedule_job(name text, kind text, schedule text,
    "group" text DEFAULT NULL, params jsonb DEFAULT '{}', time_zone text DEFAULT NULL,
    after_job text DEFAULT NULL, active boolean DEFAULT true,
    owner regrole DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole)
    RETURNS bigint
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        INSERT INTO ccrm.job (name, kind, group_id, params, schedule, time_zone, after_job, active, owner)
        VALUES (schedule_job.name, schedule_job.kind,
                CASE WHEN schedule_job."group" IS NOT NULL THEN ccrm.target_group_id(schedule_job."group") END,
                COALESCE(schedule_job.params, '{}'), schedule_job.schedule, schedule_job.time_zone,
                CASE WHEN schedule_job.after_job IS NOT NULL THEN ccrm.job_id(schedule_job.after_job) END,
                schedule_job.active, schedule_job.owner)
        RETURNING id;
    END;
COMMENT ON FUNCTION ccrm.schedule_job(text, text, text, text, jsonb, text, text, boolean, regrole) IS
    'save a job: what (kind, group, params), when (schedule, time zone), after which job, as whom (another role: admins only)';

CREATE FUNCTION ccrm.run_job(job text, at timestamptz DEFAULT pg_catalog.now()) RETURNS ccrm.job_run
    LANGUAGE sql VOLATILE STRICT
    BEGIN ATOMIC
        SELECT * FROM ccrm.run_job(ccrm.job_id(run_job.job), run_job.at);
    END;

CREATE VIEW ccrm.jobs WITH (security_invoker = true) AS
    SELECT j.id, j.name, j.kind, g.name AS "group", j.schedule,
           COALESCE(j.time_zone, ccrm.get_setting('time_zone')) AS time_zone,
           a.name AS after_job, j.active, j.owner, j.next_run,
           r.started_at AS last_started, r.status AS last_status, r.error AS last_error,
           j.failures, j.inactive_reason, j.params
      FROM ccrm.job j
      LEFT JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) j.group_id
      LEFT JOIN ccrm.job a ON a.id OPERATOR(pg_catalog.=) j.after_job
      LEFT JOIN LATERAL (SELECT r.started_at, r.status, r.error FROM ccrm.job_run r
                          WHERE r.job_id OPERATOR(pg_catalog.=) j.id
                          ORDER BY r.started_at DESC LIMIT 1) r ON true
     ORDER BY j.next_run NULLS LAST, j.id;
COMMENT ON VIEW ccrm.jobs IS 'Jobs in the order they run next, with their last run';
GRANT SELECT ON ccrm.jobs TO PUBLIC;

/* ------------------------------------------------------------------------
 * Tools: owner becomes a role oid
 * ------------------------------------------------------------------------ */
/* a registrant that no longer exists: the tool belongs to its function's owner */
UPDATE ccrm.tool t SET owner = p.proowner::pg_catalog.regrole::pg_catalog.text
  FROM pg_catalog.pg_proc p
 WHERE p.oid OPERATOR(pg_catalog.=) t.function::pg_catalog.oid
   AND pg_catalog.to_regrole(pg_catalog.quote_ident(t.owner)) IS NULL;
ALTER TABLE ccrm.tool ALTER COLUMN owner DROP DEFAULT;
ALTER TABLE ccrm.tool ALTER COLUMN owner TYPE regrole
    USING COALESCE(pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), 0::pg_catalog.oid::pg_catalog.regrole);
ALTER TABLE ccrm.tool ALTER COLUMN owner SET DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole;
COMMENT ON COLUMN ccrm.tool.owner IS 'the role that registered the tool (only ccrm admins change it)';
CREATE TRIGGER ccrm_owner BEFORE INSERT OR UPDATE OF owner ON ccrm.tool
    FOR EACH ROW EXECUTE FUNCTION ccrm.owner_trigger('tool');

/* ------------------------------------------------------------------------
 * Target groups, activity plans, formulas: owners, made before 0.5.0 by
 * roles nobody recorded, go to the extension's owner
 * ------------------------------------------------------------------------ */
ALTER TABLE ccrm.target_group ADD COLUMN owner regrole;
ALTER TABLE ccrm.activity_plan ADD COLUMN owner regrole;
ALTER TABLE ccrm.formula ADD COLUMN owner regrole;
ALTER TABLE ccrm.target_group DISABLE TRIGGER USER;
ALTER TABLE ccrm.activity_plan DISABLE TRIGGER USER;
ALTER TABLE ccrm.formula DISABLE TRIGGER USER;
UPDATE ccrm.target_group SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'ccrm');
UPDATE ccrm.activity_plan SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'ccrm');
UPDATE ccrm.formula SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'ccrm');
ALTER TABLE ccrm.target_group ENABLE TRIGGER USER;
ALTER TABLE ccrm.activity_plan ENABLE TRIGGER USER;
ALTER TABLE ccrm.formula ENABLE TRIGGER USER;
ALTER TABLE ccrm.target_group ALTER COLUMN owner SET NOT NULL,
    ALTER COLUMN owner SET DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole;
ALTER TABLE ccrm.activity_plan ALTER COLUMN owner SET NOT NULL,
    ALTER COLUMN owner SET DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole;
ALTER TABLE ccrm.formula ALTER COLUMN owner SET NOT NULL,
    ALTER COLUMN owner SET DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole;
COMMENT ON COLUMN ccrm.target_group.owner IS 'the role the group belongs to (only ccrm admins change it)';
COMMENT ON COLUMN ccrm.activity_plan.owner IS
    'the role the plan belongs to; it may use the plan''s group (only ccrm admins change it)';
COMMENT ON COLUMN ccrm.formula.owner IS 'the role the formula belongs to (only ccrm admins change it)';

CREATE TRIGGER ccrm_owner BEFORE INSERT OR UPDATE OF owner ON ccrm.target_group
    FOR EACH ROW EXECUTE FUNCTION ccrm.owner_trigger('target group');
CREATE TRIGGER ccrm_owner BEFORE INSERT OR UPDATE OF owner, group_id ON ccrm.activity_plan
    FOR EACH ROW EXECUTE FUNCTION ccrm.owner_trigger('activity plan');
CREATE TRIGGER ccrm_owner BEFORE INSERT OR UPDATE OF owner ON ccrm.formula
    FOR EACH ROW EXECUTE FUNCTION ccrm.owner_trigger('formula');
CREATE TRIGGER ccrm_group_dependency BEFORE INSERT OR UPDATE ON ccrm.target_group_dependency
    FOR EACH ROW EXECUTE FUNCTION ccrm.group_dependency_trigger();

/* The members of a deleted group go with it, whoever may see them. */
ALTER FUNCTION ccrm.target_group_delete_trigger() SECURITY DEFINER;

/* Row level security: a role sees and changes the definitions it may use; admins all. */
ALTER TABLE ccrm.target_group ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_group_owner ON ccrm.target_group
    USING (ccrm.may_use(owner) OR ccrm.is_admin())
    WITH CHECK (ccrm.may_use(owner) OR ccrm.is_admin());
ALTER TABLE ccrm.target_group_membership ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_group_membership_group ON ccrm.target_group_membership
    USING (group_id IN (SELECT g.id FROM ccrm.target_group g))
    WITH CHECK (group_id IN (SELECT g.id FROM ccrm.target_group g));
ALTER TABLE ccrm.target_group_override ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_group_override_group ON ccrm.target_group_override
    USING (group_id IN (SELECT g.id FROM ccrm.target_group g))
    WITH CHECK (group_id IN (SELECT g.id FROM ccrm.target_group g));
ALTER TABLE ccrm.target_group_dependency ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_group_dependency_group ON ccrm.target_group_dependency
    USING (group_id IN (SELECT g.id FROM ccrm.target_group g))
    WITH CHECK (group_id IN (SELECT g.id FROM ccrm.target_group g));
ALTER TABLE ccrm.target_group_refresh ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_group_refresh_group ON ccrm.target_group_refresh
    USING (group_id IN (SELECT g.id FROM ccrm.target_group g))
    WITH CHECK (group_id IN (SELECT g.id FROM ccrm.target_group g));
ALTER TABLE ccrm.activity_plan ENABLE ROW LEVEL SECURITY;
CREATE POLICY activity_plan_owner ON ccrm.activity_plan
    USING (ccrm.may_use(owner) OR ccrm.is_admin())
    WITH CHECK (ccrm.may_use(owner) OR ccrm.is_admin());
ALTER TABLE ccrm.activity_plan_run ENABLE ROW LEVEL SECURITY;
CREATE POLICY activity_plan_run_plan ON ccrm.activity_plan_run
    USING (plan_id IN (SELECT p.id FROM ccrm.activity_plan p))
    WITH CHECK (plan_id IN (SELECT p.id FROM ccrm.activity_plan p));
ALTER TABLE ccrm.formula ENABLE ROW LEVEL SECURITY;
CREATE POLICY formula_owner ON ccrm.formula
    USING (ccrm.may_use(owner) OR ccrm.is_admin())
    WITH CHECK (ccrm.may_use(owner) OR ccrm.is_admin());

/* Views read with the reader's rights, so the policies above apply. */
ALTER VIEW ccrm.target_group_member SET (security_invoker = true);
ALTER VIEW ccrm.target_group_history SET (security_invoker = true);
ALTER VIEW ccrm.target_groups SET (security_invoker = true);
ALTER VIEW ccrm.activity_plans SET (security_invoker = true);

/* Every role may keep definitions of its own; what they touch needs the role's own privileges. */
GRANT SELECT, INSERT, UPDATE, DELETE ON ccrm.target_group, ccrm.target_group_membership,
    ccrm.target_group_override, ccrm.target_group_dependency, ccrm.target_group_refresh,
    ccrm.activity_plan, ccrm.formula TO PUBLIC;
GRANT SELECT, INSERT, UPDATE ON ccrm.activity_plan_run TO PUBLIC;
GRANT SELECT ON ccrm.target_group_member, ccrm.target_group_history, ccrm.target_groups,
    ccrm.activity_plans TO PUBLIC;
/* what definitions are checked against: the entities, their custom fields, the holidays */
GRANT SELECT ON ccrm.entity, ccrm.custom_field, ccrm.holiday TO PUBLIC;

/* Implicitly chosen plans are those the job's owner may use (named ones are checked when saved and run). */
CREATE OR REPLACE FUNCTION ccrm.job_create_activities(job_id bigint, run_id bigint, group_id bigint, params jsonb,
    action_time timestamptz, time_zone text) RETURNS jsonb
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT pg_catalog.jsonb_build_object('plan_id', p.id, 'created', r.created, 'skipped', r.skipped,
                                             'skipped_reasons', r.skipped_reasons, 'plan_run_id', r.run_id)
          FROM ccrm.activity_plan p,
               LATERAL ccrm.create_activities(p.id,
                   (job_create_activities.action_time AT TIME ZONE job_create_activities.time_zone)::date) r
         WHERE p.group_id OPERATOR(pg_catalog.=) job_create_activities.group_id
           AND p.active
           AND (NOT (job_create_activities.params ? 'plan') AND ccrm.may_use(p.owner)
                OR p.name OPERATOR(pg_catalog.=) (job_create_activities.params OPERATOR(pg_catalog.->>) 'plan'))
         ORDER BY p.id;
    END;

/* ------------------------------------------------------------------------
 * CRM users and database roles: who may act as which CRM user
 * ------------------------------------------------------------------------ */
ALTER TABLE ccrm.crm_user ADD COLUMN role regrole UNIQUE;
COMMENT ON COLUMN ccrm.crm_user.role IS
    'the database role of this CRM user: it (and roles with its privileges) may act as the user; set by ccrm admins';
CREATE FUNCTION ccrm.crm_user_role_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'ccrm_crm_user_role_trigger';
CREATE TRIGGER ccrm_user_role BEFORE INSERT OR UPDATE OF role ON ccrm.crm_user
    FOR EACH ROW EXECUTE FUNCTION ccrm.crm_user_role_trigger();

CREATE TABLE ccrm.act_as_grant (
    crm_user_id bigint NOT NULL REFERENCES ccrm.crm_user ON DELETE CASCADE,
    grantee     regrole NOT NULL,
    granted_by  regrole NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (crm_user_id, grantee)
);
COMMENT ON TABLE ccrm.act_as_grant IS
    'Rights ccrm admins granted: the grantee (and roles with its privileges) may act as (send as, on behalf of) the CRM user';
ALTER TABLE ccrm.act_as_grant ENABLE ROW LEVEL SECURITY;
CREATE POLICY act_as_grant_grantee ON ccrm.act_as_grant FOR SELECT
    USING (pg_catalog.pg_has_role(grantee, 'USAGE') OR ccrm.is_admin());
GRANT SELECT ON ccrm.act_as_grant TO PUBLIC;

CREATE FUNCTION ccrm.may_act_as(crm_user_id bigint,
    role regrole DEFAULT pg_catalog.quote_ident(CURRENT_USER)::pg_catalog.regrole)
    RETURNS boolean
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'ccrm_may_act_as';
COMMENT ON FUNCTION ccrm.may_act_as(bigint, regrole) IS
    'whether the role may act as (send as, on behalf of) the CRM user: its own role, a grant, or a ccrm admin';
CREATE FUNCTION ccrm.grant_act_as(crm_user_id bigint, role regrole) RETURNS boolean
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'ccrm_grant_act_as';
COMMENT ON FUNCTION ccrm.grant_act_as(bigint, regrole) IS
    'let the role act as the CRM user (ccrm admins only); false when it already could by a grant';
CREATE FUNCTION ccrm.revoke_act_as(crm_user_id bigint, role regrole) RETURNS boolean
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'ccrm_revoke_act_as';
COMMENT ON FUNCTION ccrm.revoke_act_as(bigint, regrole) IS
    'take back a grant of ccrm.grant_act_as (ccrm admins only); false when there was none';

SELECT pg_catalog.pg_extension_config_dump('ccrm.act_as_grant', '');
