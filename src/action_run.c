/*-------------------------------------------------------------------------
 *
 * action_run.c
 *	  The machinery shared by the actions on a target group — mass updates
 *	  (mass_update.c), field formulas (formula.c) and module tools
 *	  (tool.c): the run an action belongs to, and the batched, audited,
 *	  set-based update of member fields.
 *
 *	  Runs.  Every action works for one row of ccrm.job_run.  Called by the
 *	  scheduler, an action gets that row's id; called directly from SQL, it
 *	  inserts its own row (job_id NULL, trigger 'direct', run_as the
 *	  current user, action_time now()) and marks it succeeded with its
 *	  counts at the end, all in the caller's transaction.  ccrm.job_run is
 *	  not writable by ordinary roles, so those two statements run as the
 *	  owner of ccrm's catalog (the local user id is switched for them only,
 *	  SECURITY_LOCAL_USERID_CHANGE; an error restores it with the
 *	  (sub)transaction).  Everything else runs as the caller.
 *
 *	  Updates.  Members are read in key order through a cursor and handled
 *	  in batches of ccrm.mass_update_batch_size keys.  Each batch is ONE
 *	  statement per entity, so it is all-or-none on its own: with audit it
 *	  updates the rows whose values would change, reading their old values
 *	  from the same row version (a TID self-join), and inserts old and new
 *	  values into ccrm.run_audit, in one data-modifying WITH; without audit
 *	  it is a plain UPDATE.  The plan is generic (keys are a parameter), so
 *	  every batch walks the key index, never the whole table.  Rows that already hold the
 *	  new values are not touched (IS DISTINCT FROM), so a re-run changes
 *	  nothing and audits nothing.  Triggers on the tables fire as usual.
 *	  The whole run is the caller's transaction: killed mid-way, none of it
 *	  stays.  Progress shows in pg_stat_activity.application_name
 *	  ("ccrm run 12: mass_update 30000/250000"), restored at the end.
 *
 *	  Memory: the statement texts and plans live in the caller's context
 *	  (the function call); the batch arrays in a context reset per batch.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "action_run.h"
#include "setting.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/*---- GUC variables ----*/
int			ccrm_batch_size = 10000;
int			ccrm_audit_retention = 30;

void
CcrmActionInit(void)
{
	DefineCustomIntVariable("ccrm.mass_update_batch_size",
							"Rows of a target group a mass update or formula run handles per statement.",
							"Each batch is one statement: all of it or none of it is applied.",
							&ccrm_batch_size, 10000, 1, 100000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.audit_retention",
							"Days the old values of mass updates and formula runs are kept for ccrm.undo_run().",
							"0 keeps them until purged by hand; ccrm.purge_audit() deletes older ones.",
							&ccrm_audit_retention, 30, 0, 36500,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* ----------------------------------------------------------------
 * jsonb helpers
 * ---------------------------------------------------------------- */

Jsonb *
CcrmJsonbFromCString(const char *json)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

/* The value under key of a JSON object, or NULL (also when obj is not one). */
JsonbValue *
CcrmJsonbGet(Jsonb *obj, const char *key)
{
	JsonbValue	k;

	if (obj == NULL || !JB_ROOT_IS_OBJECT(obj))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k);
}

bool
CcrmJsonbBool(Jsonb *obj, const char *key, bool dflt, const char *what)
{
	JsonbValue *v = CcrmJsonbGet(obj, key);

	if (v == NULL || v->type == jbvNull)
		return dflt;
	if (v->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid parameters of %s: \"%s\" must be true or false", what, key)));
	return v->val.boolean;
}

/* ----------------------------------------------------------------
 * Groups and targets
 * ---------------------------------------------------------------- */

/* A group's name, entity and size; SPI must be connected. */
CcrmGroup *
CcrmGroupLoad(int64 group_id)
{
	CcrmGroup  *g = palloc0(sizeof(CcrmGroup));
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(group_id);
	bool		isnull;
	char	   *entity;

	if (SPI_execute_with_args("SELECT name, entity, member_count FROM ccrm.target_group"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.target_group");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target group with id " INT64_FORMAT " does not exist", group_id)));
	g->id = group_id;
	g->name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	entity = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	g->member_count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	g->entity = CcrmEntityLookup(entity, false);
	return g;
}

/* What a group's updates may target: its own entity, linked contacts and accounts. */
List *
CcrmUpdateTargets(const CcrmGroup *group)
{
	List	   *targets = list_make1(group->entity->name);

	if (strcmp(group->entity->name, "contact") != 0 &&
		(group->entity->contact_column || strcmp(group->entity->name, "account") == 0))
		targets = lappend(targets, "contact");
	if (strcmp(group->entity->name, "account") != 0 && group->entity->account_column)
		targets = lappend(targets, "account");
	return targets;
}

/*
 * SQL of the int8[] of target keys for the member keys $1 of a batch:
 * the members themselves, the records their link column points to, or
 * (an account group targeting contacts) the contacts of the accounts.
 */
char *
CcrmTargetKeySql(const CcrmGroup *group, const char *target)
{
	const CcrmEntity *ent = group->entity;
	const char *fk = NULL;

	if (strcmp(target, ent->name) == 0)
		return pstrdup("$1");
	if (strcmp(target, "contact") == 0)
		fk = ent->contact_column;
	else if (strcmp(target, "account") == 0)
		fk = ent->account_column;
	if (fk)
		return psprintf("ARRAY(SELECT DISTINCT e.%s::pg_catalog.int8 FROM %s e"
						" WHERE e.%s OPERATOR(pg_catalog.=) ANY ($1) AND e.%s IS NOT NULL)",
						quote_identifier(fk), ent->qualname, quote_identifier(ent->key_column),
						quote_identifier(fk));
	if (strcmp(target, "contact") == 0 && strcmp(ent->name, "account") == 0)
		return pstrdup("ARRAY(SELECT c.id FROM ccrm.contact c"
					   " WHERE c.account_id OPERATOR(pg_catalog.=) ANY ($1))");
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("a group of %s cannot update \"%s\"", ent->name, target),
			 errhint("Groups of %s can update: %s.", ent->name,
					 CcrmJoinNames(CcrmUpdateTargets(group)))));
	return NULL;				/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 * Runs
 * ---------------------------------------------------------------- */

static DateADT
local_date(TimestampTz t, const char *zone)
{
	Datum		local = DirectFunctionCall2(timestamptz_zone, CStringGetTextDatum(zone),
											TimestampTzGetDatum(t));

	return DatumGetDateADT(DirectFunctionCall1(timestamp_date, local));
}

/* A run the scheduler started: its id, the moment it acts for, its zone. */
CcrmRun *
CcrmRunForJob(int64 run_id, int64 group_id, TimestampTz action_time, const char *time_zone)
{
	CcrmRun    *run = palloc0(sizeof(CcrmRun));

	run->id = run_id;
	run->group_id = group_id;
	run->action_time = action_time;
	run->time_zone = pstrdup(time_zone ? time_zone : CcrmSettingGet("time_zone"));
	if (CcrmTimeZone(run->time_zone, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" is not recognized", run->time_zone)));
	run->action_date = local_date(action_time, run->time_zone);
	return run;
}

/* A run of an action called from SQL: a new ccrm.job_run row; SPI connected. */
CcrmRun *
CcrmRunBeginDirect(const char *kind, int64 group_id, const char *detail)
{
	CcrmRun    *run;
	Oid			types[4] = {TEXTOID, INT8OID, NAMEOID, TEXTOID};
	Datum		values[4];
	bool		isnull;

	run = CcrmRunForJob(0, group_id, GetCurrentTransactionStartTimestamp(), NULL);
	run->direct = true;
	values[0] = CStringGetTextDatum(kind);
	values[1] = Int64GetDatum(group_id);
	values[2] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	values[3] = CStringGetTextDatum(detail);
	CcrmExecuteAsOwner("INSERT INTO ccrm.job_run (kind, group_id, trigger, action_time, run_as, status, detail, pid)"
					   " VALUES ($1, $2, 'direct', pg_catalog.now(), $3, 'running', $4, pg_catalog.pg_backend_pid())"
					   " RETURNING id", 4, types, values, NULL, SPI_OK_INSERT_RETURNING);
	run->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return run;
}

void
CcrmRunFinishDirect(CcrmRun *run, Jsonb *counts)
{
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2];

	if (!run->direct)
		return;
	values[0] = Int64GetDatum(run->id);
	values[1] = JsonbPGetDatum(counts);
	CcrmExecuteAsOwner("UPDATE ccrm.job_run SET status = 'succeeded', counts = $2,"
					   " finished_at = pg_catalog.clock_timestamp()"
					   " WHERE id OPERATOR(pg_catalog.=) $1", 2, types, values, NULL, SPI_OK_UPDATE);
}

/* ----------------------------------------------------------------
 * The batched update
 * ---------------------------------------------------------------- */

/* A field's value as JSON, for the audit. */
static char *
field_json_sql(const CcrmField *f, const char *alias)
{
	if (f->is_custom)
		return psprintf("(%s.attrs OPERATOR(pg_catalog.->) %s)", alias, quote_literal_cstr(f->name));
	return psprintf("pg_catalog.to_jsonb(%s.%s)", alias, quote_identifier(f->name));
}

/*
 * The new values of an update whose values do not read the row, as the
 * audit records them per row (columns through to_jsonb, custom fields as
 * stored in attrs), built once from the same parameters.
 */
static Datum
constant_new_values(CcrmUpdate *upd, int nargs, Oid *types, Datum *values, const char *nulls)
{
	StringInfoData sql;
	ListCell   *lc;
	bool		isnull;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT pg_catalog.jsonb_build_object(");
	foreach(lc, upd->assigns)
	{
		CcrmAssign *a = lfirst(lc);

		appendStringInfo(&sql, "%s%s, ", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_literal_cstr(a->field->name));
		if (a->field->is_custom)
			appendStringInfoString(&sql, a->value_sql);
		else
			appendStringInfo(&sql, "pg_catalog.to_jsonb(%s)", a->value_sql);
	}
	appendStringInfoString(&sql, ")");
	if (SPI_execute_with_args(sql.data, nargs, types, values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not compute the new values of %s", upd->target->name);
	return datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull), false, -1);
}

/*
 * The statement of one batch; parameters $1 keys, $2 run, $3 entity,
 * $4... values, then (new_param > 0) the new values of the audit when they
 * are the same for every row; the step is a constant.
 */
static char *
update_sql(CcrmUpdate *upd, bool audit, int new_param)
{
	const CcrmEntity *ent = upd->target;
	StringInfoData set;
	StringInfoData custom;
	StringInfoData olds;
	StringInfoData olds_o;
	StringInfoData cur;
	StringInfoData val;
	StringInfoData sql;
	ListCell   *lc;
	const char *key = quote_identifier(ent->key_column);

	initStringInfo(&set);
	initStringInfo(&custom);
	initStringInfo(&olds);
	initStringInfo(&olds_o);
	initStringInfo(&cur);
	initStringInfo(&val);
	foreach(lc, upd->assigns)
	{
		CcrmAssign *a = lfirst(lc);
		const CcrmField *f = a->field;
		const char *sep = foreach_current_index(lc) > 0 ? ", " : "";

		if (f->is_custom)
			appendStringInfo(&custom, "%s%s, %s", custom.len ? ", " : "",
							 quote_literal_cstr(f->name), a->value_sql);
		else
			appendStringInfo(&set, "%s%s = %s", set.len ? ", " : "",
							 quote_identifier(f->name), a->value_sql);
		appendStringInfo(&olds, "%s%s, %s", sep, quote_literal_cstr(f->name), field_json_sql(f, "t"));
		appendStringInfo(&olds_o, "%s%s, %s", sep, quote_literal_cstr(f->name), field_json_sql(f, "o"));
		appendStringInfo(&cur, "%s%s", sep, CcrmFieldSql(ent, f, "t"));
		appendStringInfo(&val, "%s%s", sep, a->value_sql);
	}
	if (custom.len)
		appendStringInfo(&set, "%sattrs = t.attrs OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(%s)",
						 set.len ? ", " : "", custom.data);

	initStringInfo(&sql);
	if (!audit)
	{
		appendStringInfo(&sql,
						 "UPDATE %s t SET %s"
						 " WHERE t.%s OPERATOR(pg_catalog.=) ANY (%s)"
						 "   AND ROW(%s) IS DISTINCT FROM ROW(%s)",
						 ent->qualname, set.data, key, upd->key_sql, cur.data, val.data);
		return sql.data;
	}
	/*
	 * The old values come from the same row version through a TID self-join
	 * (o) on tableoid and ctid (a ctid is unique only within one table, and a
	 * registered entity may be partitioned or have inheritance children): no
	 * second index lookup, no materialised CTE.  Should another
	 * transaction update a row while its batch runs, the re-check after the
	 * wait sees a new ctid and leaves that row alone (neither changed nor
	 * audited), so the audit never holds a wrong old value.
	 */
	appendStringInfo(&sql,
					 "WITH u AS ("
					 "  UPDATE %s t SET %s FROM %s o"
					 "   WHERE t.%s OPERATOR(pg_catalog.=) ANY (%s)"
					 "     AND o.ctid OPERATOR(pg_catalog.=) t.ctid AND o.tableoid OPERATOR(pg_catalog.=) t.tableoid"
					 "     AND ROW(%s) IS DISTINCT FROM ROW(%s)"
					 "  RETURNING t.%s::pg_catalog.int8 AS k, pg_catalog.jsonb_build_object(%s) AS old",
					 ent->qualname, set.data, ent->qualname, key, upd->key_sql, cur.data, val.data,
					 key, olds_o.data);
	if (new_param > 0)
		appendStringInfo(&sql, ")"
						 " INSERT INTO ccrm.run_audit (run_id, step, entity, record_id, old_values, new_values)"
						 " SELECT $2, %d, $3, u.k, u.old, $%d FROM u",
						 upd->step, new_param);
	else
		appendStringInfo(&sql, ", pg_catalog.jsonb_build_object(%s) AS new)"
						 " INSERT INTO ccrm.run_audit (run_id, step, entity, record_id, old_values, new_values)"
						 " SELECT $2, %d, $3, u.k, u.old, u.new FROM u",
						 olds.data, upd->step);
	return sql.data;
}

static void
report_progress(CcrmRun *run, const char *label, int64 done, int64 total)
{
	char		buf[NAMEDATALEN];

	snprintf(buf, sizeof(buf), "ccrm run " INT64_FORMAT ": %s " INT64_FORMAT "/" INT64_FORMAT,
			 run->id, label, done, total);
	(void) set_config_option("application_name", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Apply an update to every member of the group in batches; returns the
 * number of rows changed.  SPI must be connected; the caller has pushed the
 * safe search path.
 */
int64
CcrmRunUpdate(CcrmRun *run, CcrmGroup *group, CcrmUpdate *upd, bool audit)
{
	int			nargs = 3 + upd->nparams;
	int			new_param = 0;
	Oid		   *types = palloc(sizeof(Oid) * (nargs + 1));
	Datum	   *values = palloc0(sizeof(Datum) * (nargs + 1));
	char	   *nulls = palloc(nargs + 2);
	SPIPlanPtr	plan;
	Portal		portal;
	Oid			gtype = INT8OID;
	Datum		garg = Int64GetDatum(group->id);
	MemoryContext batch_cxt;
	int64		changed = 0;
	int64		done = 0;
	int			expect = audit ? SPI_OK_INSERT : SPI_OK_UPDATE;

	types[0] = INT8ARRAYOID;
	types[1] = INT8OID;
	types[2] = TEXTOID;
	memset(nulls, ' ', nargs + 1);
	nulls[nargs + 1] = '\0';
	for (int i = 0; i < upd->nparams; i++)
	{
		types[3 + i] = upd->param_types[i];
		values[3 + i] = upd->param_values[i];
		if (upd->param_nulls && upd->param_nulls[i])
			nulls[3 + i] = 'n';
	}
	values[1] = Int64GetDatum(run->id);
	values[2] = CStringGetTextDatum(upd->target->name);
	nulls[0] = 'n';
	if (audit && upd->constant_values)
	{
		/* the same new values for every row: build them once, not per row */
		values[nargs] = constant_new_values(upd, nargs, types, values, nulls);
		types[nargs] = JSONBOID;
		new_param = ++nargs;
	}
	nulls[0] = ' ';

	plan = SPI_prepare_cursor(update_sql(upd, audit, new_param), nargs, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare the update of %s: %s", upd->target->name,
			 SPI_result_code_string(SPI_result));

	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT member_id FROM ccrm.target_group_membership"
									   " WHERE group_id OPERATOR(pg_catalog.=) $1 AND left_at IS NULL"
									   " ORDER BY member_id",
									   1, &gtype, &garg, NULL, true, 0);
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "ccrm update batch", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext old;
		Datum	   *keys;
		uint64		n;
		bool		isnull;
		int			ret;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, ccrm_batch_size);
		n = SPI_processed;
		if (n == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		keys = palloc(sizeof(Datum) * n);
		for (uint64 i = 0; i < n; i++)
			keys[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		values[0] = PointerGetDatum(construct_array(keys, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);

		ret = SPI_execute_plan(plan, values, nulls, false, 0);
		if (ret != expect)
			elog(ERROR, "could not update %s: %s", upd->target->name, SPI_result_code_string(ret));
		changed += SPI_processed;
		done += n;
		MemoryContextReset(batch_cxt);
		report_progress(run, upd->label, done, Max(group->member_count, done));
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
	SPI_freeplan(plan);
	return changed;
}
