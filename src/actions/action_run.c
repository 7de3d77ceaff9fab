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
 *	  current user, action_time the instant the caller gives, at => now()
 *	  by default) and marks it succeeded with its
 *	  counts at the end, all in the caller's transaction.  ccrm.job_run is
 *	  not writable by ordinary roles, so those two statements run as the
 *	  owner of ccrm's catalog (the local user id is switched for them only,
 *	  SECURITY_LOCAL_USERID_CHANGE; an error restores it with the
 *	  (sub)transaction).  Everything else runs as the caller.
 *
 *	  Updates.  Members are read in key order through a cursor and handled
 *	  in batches of ccrm.mass_update_batch_size keys.  Each batch is ONE
 *	  statement per entity, so it is all-or-none on its own: with audit it
 *	  reads the rows whose values would change with their old values, updates
 *	  exactly those row versions (found again by tableoid and ctid) and
 *	  inserts old and new values into ccrm.run_audit, in one data-modifying
 *	  WITH; rows other sessions changed meanwhile are locked and done again
 *	  (CcrmRunUpdate), and what cannot be changed is counted by reason.
 *	  Without audit it is a plain UPDATE.  The plan is generic (keys are a
 *	  parameter), so every batch walks the key index, never the whole
 *	  table.  Rows that already hold the new values are not touched (IS
 *	  DISTINCT FROM), so a re-run changes nothing and audits nothing.
 *	  Triggers on the tables fire as usual.
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
#include "quote.h"
#include "execute_as_owner.h"
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
#include "utils/json.h"
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

/*
 * A run of an action called from SQL, acting at the instant at (its action
 * time; the action date is its day in the configured zone): a new
 * ccrm.job_run row; SPI connected.
 */
CcrmRun *
CcrmRunBeginDirect(const char *kind, int64 group_id, const char *detail, TimestampTz at)
{
	CcrmRun    *run;
	Oid			types[5] = {TEXTOID, INT8OID, OIDOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[5];
	bool		isnull;

	run = CcrmRunForJob(0, group_id, at, NULL);
	run->direct = true;
	values[0] = CStringGetTextDatum(kind);
	values[1] = Int64GetDatum(group_id);
	values[2] = ObjectIdGetDatum(GetUserId());
	values[3] = CStringGetTextDatum(detail);
	values[4] = TimestampTzGetDatum(at);
	CcrmExecuteAsOwner("INSERT INTO ccrm.job_run (kind, group_id, trigger, action_time, run_as, status, detail, pid)"
					   " VALUES ($1, $2, 'direct', $5, $3::pg_catalog.regrole, 'running', $4, pg_catalog.pg_backend_pid())"
					   " RETURNING id", 5, types, values, NULL, SPI_OK_INSERT_RETURNING);
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
 * The statement of one batch; parameters $1 keys (of the members, mapped
 * through key_sql, or the target keys themselves when key_sql is "$1"),
 * $2 run, $3 entity, $4... values, then (new_param > 0) the new values of
 * the audit when they are the same for every row; the step is a constant.
 *
 * Without audit it is a plain UPDATE.  With audit it returns one row: the
 * number of rows changed (and audited), and the keys of the rows it meant
 * to change but could not, NULL when there are none.
 */
static char *
update_sql(CcrmUpdate *upd, const char *key_sql, bool audit, int new_param)
{
	const CcrmEntity *ent = upd->target;
	StringInfoData set;
	StringInfoData custom;
	StringInfoData olds;
	StringInfoData cur;
	StringInfoData val;
	StringInfoData sql;
	ListCell   *lc;
	const char *key = quote_identifier(ent->key_column);

	initStringInfo(&set);
	initStringInfo(&custom);
	initStringInfo(&olds);
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
		appendStringInfo(&cur, "%s%s", sep, CcrmFieldSql(f, "t"));
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
						 ent->qualname, set.data, key, key_sql, cur.data, val.data);
		return sql.data;
	}

	/*
	 * c: the rows to change, with their old values, read once from the
	 * statement's snapshot; u: the update of exactly those row versions,
	 * found again by tableoid and ctid (a ctid is unique only within one
	 * table, and a registered entity may be partitioned or have inheritance
	 * children).  Should another transaction have updated or deleted a row
	 * of c by the time the update reaches it, the re-check after the wait
	 * finds a new ctid (or none) and leaves that row alone, so the audit
	 * never holds old values other than those replaced; such rows are
	 * returned (c minus what was audited) for CcrmRunUpdate to retry.
	 */
	appendStringInfo(&sql,
					 "WITH c AS MATERIALIZED ("
					 "  SELECT t.tableoid AS rel, t.ctid AS tid, t.%s::pg_catalog.int8 AS k,"
					 "         pg_catalog.jsonb_build_object(%s) AS old"
					 "    FROM %s t"
					 "   WHERE t.%s OPERATOR(pg_catalog.=) ANY (%s)"
					 "     AND ROW(%s) IS DISTINCT FROM ROW(%s)),"
					 " u AS ("
					 "  UPDATE %s t SET %s FROM c"
					 "   WHERE t.tableoid OPERATOR(pg_catalog.=) c.rel AND t.ctid OPERATOR(pg_catalog.=) c.tid"
					 "  RETURNING c.k, c.old",
					 key, olds.data, ent->qualname, key, key_sql, cur.data, val.data,
					 ent->qualname, set.data);
	if (new_param > 0)
		appendStringInfo(&sql, "),"
						 " i AS (INSERT INTO ccrm.run_audit (run_id, step, entity, record_id, old_values, new_values)"
						 "  SELECT $2, %d, $3, u.k, u.old, $%d FROM u RETURNING 1)",
						 upd->step, new_param);
	else
		appendStringInfo(&sql, ", pg_catalog.jsonb_build_object(%s) AS new),"
						 " i AS (INSERT INTO ccrm.run_audit (run_id, step, entity, record_id, old_values, new_values)"
						 "  SELECT $2, %d, $3, u.k, u.old, u.new FROM u RETURNING 1)",
						 olds.data, upd->step);
	appendStringInfoString(&sql,
						   " SELECT n.audited,"
						   "        CASE WHEN n.audited OPERATOR(pg_catalog.<) (SELECT pg_catalog.count(*) FROM c)"
						   "             THEN ARRAY(SELECT c.k FROM c EXCEPT SELECT u.k FROM u) END"
						   "   FROM (SELECT pg_catalog.count(*) AS audited FROM i) n");
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

/* Run one audited batch statement; returns the rows changed, sets *missed. */
static int64
audited_batch(SPIPlanPtr plan, Datum *values, const char *nulls, const char *target, ArrayType **missed)
{
	bool		isnull;
	Datum		d;
	int64		n;
	int			ret = SPI_execute_plan(plan, values, nulls, false, 0);

	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not update %s: %s", target, SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*missed = isnull ? NULL : DatumGetArrayTypePCopy(d);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/* The int8[] in column col of the one row SPI returned (NULL: empty), copied. */
static ArrayType *
result_keys(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? construct_empty_array(INT8OID) : DatumGetArrayTypePCopy(d);
}

static int
nkeys(ArrayType *keys)
{
	return keys ? ArrayGetNItems(ARR_NDIM(keys), ARR_DIMS(keys)) : 0;
}

/* Add the keys of an int8[] to a StringInfo list of at most 50 for a NOTICE. */
static void
note_keys(StringInfo buf, int *count, ArrayType *keys)
{
	Datum	   *elems;
	int			n;

	deconstruct_array(keys, INT8OID, 8, true, TYPALIGN_DOUBLE, &elems, NULL, &n);
	for (int i = 0; i < n; i++, (*count)++)
		if (*count < 50)
			appendStringInfo(buf, "%s" INT64_FORMAT, buf->len ? ", " : "", DatumGetInt64(elems[i]));
}

/*
 * Rules rewrite what an UPDATE of the target does: a DO INSTEAD rule makes
 * it something else altogether, and an audited update (a data-modifying
 * WITH) cannot run under any rule.  Say so plainly, before anything runs.
 */
static void
check_rules(const CcrmUpdate *upd, bool audit)
{
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(upd->target->relid);
	bool		isnull;
	bool		instead;

	if (SPI_execute_with_args("SELECT pg_catalog.bool_or(is_instead) FROM pg_catalog.pg_rewrite"
							  " WHERE ev_class OPERATOR(pg_catalog.=) $1 AND ev_type OPERATOR(pg_catalog.=) '2'",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the rules of %s", upd->target->qualname);
	instead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		return;
	if (instead)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot update %s: a DO INSTEAD rule on table %s rewrites its updates",
						upd->target->name, upd->target->qualname),
				 errhint("Updates of an entity must reach its table; use a trigger instead of the rule.")));
	if (audit)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot update %s with audit: table %s has an ON UPDATE rule",
						upd->target->name, upd->target->qualname),
				 errdetail("An audited update reads and writes in one statement, which PostgreSQL does not allow on a table with rules."),
				 errhint("Run it with audit off, or use a trigger instead of the rule.")));
}

/* What the reasons a row was skipped are called in counts and NOTICEs. */
static const char *const skip_names[CCRM_SKIP_REASONS] = {"deleted", "row security", "trigger"};
static const char *const skip_why[CCRM_SKIP_REASONS] = {
	"deleted by another transaction during the run",
	"row level security lets you read but not update them",
	"a BEFORE UPDATE trigger on the table skipped them",
};

/*
 * Apply an update to every member of the group in batches; returns the
 * number of rows changed and sets upd->skipped.  SPI must be connected;
 * the caller has pushed the safe search path.
 *
 * With audit, the batch statement leaves alone a row that another
 * transaction updated after the statement's snapshot (see update_sql) and
 * returns its key.  Once the batch is done those rows are locked (FOR NO
 * KEY UPDATE, waiting for whoever holds them) and the statement runs again
 * for just them, so they are updated from their latest version and audited
 * with the values they then had, as the unaudited UPDATE updates them.
 * What cannot be updated is counted by reason (upd->skipped) and reported
 * in a NOTICE with its keys: rows deleted meanwhile (the lock finds them
 * gone), rows that row level security shows but does not let the caller
 * update (the lock skips them too, but they are still there), and rows
 * that a BEFORE UPDATE trigger skipped (missed again although locked).
 * The unaudited UPDATE leaves the last two alone too, as any UPDATE does,
 * but cannot tell.
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
	SPIPlanPtr	retry_plan = NULL;
	SPIPlanPtr	lock_plan = NULL;
	SPIPlanPtr	exists_plan = NULL;
	Portal		portal;
	Oid			gtype = INT8OID;
	Datum		garg = Int64GetDatum(group->id);
	MemoryContext batch_cxt;
	int64		changed = 0;
	int64		done = 0;
	StringInfoData skipped_keys[CCRM_SKIP_REASONS];
	int			nskipped[CCRM_SKIP_REASONS] = {0};

	for (int r = 0; r < CCRM_SKIP_REASONS; r++)
		initStringInfo(&skipped_keys[r]);
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

	check_rules(upd, audit);
	plan = SPI_prepare_cursor(update_sql(upd, upd->key_sql, audit, new_param), nargs, types,
							  CURSOR_OPT_GENERIC_PLAN);
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
		ArrayType  *missed = NULL;

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

		if (!audit)
		{
			int			ret = SPI_execute_plan(plan, values, nulls, false, 0);

			if (ret == SPI_OK_REWRITTEN)	/* a rule made since check_rules */
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot update %s: a DO INSTEAD rule on table %s rewrites its updates",
								upd->target->name, upd->target->qualname)));
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "could not update %s: %s", upd->target->name, SPI_result_code_string(ret));
			changed += SPI_processed;
		}
		else
		{
			old = MemoryContextSwitchTo(batch_cxt);
			changed += audited_batch(plan, values, nulls, upd->target->name, &missed);
			MemoryContextSwitchTo(old);
		}

		if (missed != NULL)
		{
			Oid			ktype = INT8ARRAYOID;
			Datum		karg = PointerGetDatum(missed);
			Datum		member_keys = values[0];
			ArrayType  *locked;
			ArrayType  *gone;
			ArrayType  *still = NULL;

			if (lock_plan == NULL)
			{
				const char *key = quote_identifier(upd->target->key_column);

				lock_plan = SPI_prepare(psprintf("WITH l AS (SELECT t.%s::pg_catalog.int8 AS k FROM %s t"
												 "   WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1) FOR NO KEY UPDATE OF t)"
												 " SELECT ARRAY(SELECT l.k FROM l),"
												 "        ARRAY(SELECT m.k FROM pg_catalog.unnest($1) m(k)"
												 "               EXCEPT SELECT l.k FROM l ORDER BY 1)",
												 key, upd->target->qualname, key),
										1, &ktype);
				exists_plan = SPI_prepare(psprintf("SELECT ARRAY(SELECT g.k FROM pg_catalog.unnest($1) g(k)"
												   "  WHERE NOT EXISTS (SELECT FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) g.k)"
												   "  ORDER BY 1),"
												   " ARRAY(SELECT g.k FROM pg_catalog.unnest($1) g(k)"
												   "  WHERE EXISTS (SELECT FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) g.k)"
												   "  ORDER BY 1)",
												   upd->target->qualname, key, upd->target->qualname, key),
										  1, &ktype);
				retry_plan = SPI_prepare(update_sql(upd, "$1", true, new_param), nargs, types);
				if (lock_plan == NULL || exists_plan == NULL || retry_plan == NULL)
					elog(ERROR, "could not prepare the retry of the update of %s: %s",
						 upd->target->name, SPI_result_code_string(SPI_result));
			}

			/* lock what was missed, waiting for its writers */
			if (SPI_execute_plan(lock_plan, &karg, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not lock rows of %s", upd->target->name);
			old = MemoryContextSwitchTo(batch_cxt);
			locked = result_keys(1);
			gone = result_keys(2);
			MemoryContextSwitchTo(old);
			SPI_freetuptable(SPI_tuptable);

			/*
			 * Not locked: deleted, or not updatable under row security (still
			 * readable).  Not read-only, so that the check takes a snapshot of
			 * its own, which sees what was committed while the lock waited.
			 */
			if (nkeys(gone) > 0)
			{
				karg = PointerGetDatum(gone);
				if (SPI_execute_plan(exists_plan, &karg, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
					elog(ERROR, "could not read rows of %s", upd->target->name);
				old = MemoryContextSwitchTo(batch_cxt);
				note_keys(&skipped_keys[CCRM_SKIP_DELETED], &nskipped[CCRM_SKIP_DELETED], result_keys(1));
				note_keys(&skipped_keys[CCRM_SKIP_ROW_SECURITY], &nskipped[CCRM_SKIP_ROW_SECURITY], result_keys(2));
				MemoryContextSwitchTo(old);
				SPI_freetuptable(SPI_tuptable);
			}

			/* locked: nobody else can change them now, so only a trigger can skip them again */
			if (nkeys(locked) > 0)
			{
				values[0] = PointerGetDatum(locked);
				old = MemoryContextSwitchTo(batch_cxt);
				changed += audited_batch(retry_plan, values, nulls, upd->target->name, &still);
				if (still != NULL)
					note_keys(&skipped_keys[CCRM_SKIP_TRIGGER], &nskipped[CCRM_SKIP_TRIGGER], still);
				MemoryContextSwitchTo(old);
				values[0] = member_keys;
			}
		}
		done += n;
		MemoryContextReset(batch_cxt);
		report_progress(run, upd->label, done, Max(group->member_count, done));
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
	SPI_freeplan(plan);
	if (lock_plan)
	{
		SPI_freeplan(lock_plan);
		SPI_freeplan(exists_plan);
		SPI_freeplan(retry_plan);
	}

	for (int r = 0; r < CCRM_SKIP_REASONS; r++)
	{
		upd->skipped[r] = nskipped[r];
		if (nskipped[r] > 0)
			ereport(NOTICE,
					(errmsg("run " INT64_FORMAT ": %s left %d %s record(s) unchanged: %s",
							run->id, upd->label, nskipped[r], upd->target->name, skip_why[r]),
					 errdetail("Keys: %s%s.", skipped_keys[r].data,
							   nskipped[r] > 50 ? psprintf(" and %d more", nskipped[r] - 50) : ""),
					 errhint("The run's counts list them under \"skipped\".")));
	}
	return changed;
}

/*
 * Add "skipped": {name: {reason: n, ...}, ...} to a run's counts (buf: an
 * open JSON object) for the updates that skipped rows; nothing when none
 * did.  names[i] names updates[i].
 */
void
CcrmAppendSkipped(StringInfo buf, List *names, List *updates)
{
	ListCell   *ln;
	ListCell   *lu;
	bool		any = false;

	forboth(ln, names, lu, updates)
	{
		CcrmUpdate *upd = lfirst(lu);
		bool		first = true;

		for (int r = 0; r < CCRM_SKIP_REASONS; r++)
		{
			if (upd->skipped[r] == 0)
				continue;
			if (first)
			{
				appendStringInfoString(buf, any ? ", " : ", \"skipped\": {");
				escape_json(buf, lfirst(ln));
				appendStringInfoString(buf, ": {");
			}
			else
				appendStringInfoString(buf, ", ");
			escape_json(buf, skip_names[r]);
			appendStringInfo(buf, ": " INT64_FORMAT, upd->skipped[r]);
			first = false;
			any = true;
		}
		if (!first)
			appendStringInfoChar(buf, '}');
	}
	if (any)
		appendStringInfoChar(buf, '}');
}
