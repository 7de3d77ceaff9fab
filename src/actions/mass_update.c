/*-------------------------------------------------------------------------
 *
 * mass_update.c
 *	  Mass updates (seed: "Massamuokkaa kohderyhmää"): set fields of a
 *	  target group's members, or of the contacts / accounts they link to,
 *	  to a literal, NULL, or the action date / action time.
 *
 *	  Parameters (a job's params; ccrm.mass_update() builds the same):
 *
 *		{"set": {"account": {"description": "Contacted",
 *							 "last_contacted": {"action": "date"}},
 *				 "contact": {"title": null}},
 *		 "audit": true}
 *
 *	  Keys of "set" are targets (the group's entity, "contact",
 *	  "account"), their values assignments of fields (columns or custom
 *	  fields).  A value is a JSON literal converted with the field type's
 *	  input function, null, {"action": "date"} (the run's day in the job's
 *	  time zone; date and timestamp fields) or {"action": "time"} (the
 *	  run's moment; timestamp fields).  JSON and jsonb fields take any JSON
 *	  value as it is.
 *
 *	  Everything is checked when a job is saved (the validator) and again at
 *	  each run, because fields may have changed since: unknown targets and
 *	  fields, read-only fields (keys, identity and generated columns,
 *	  created_at/updated_at), NULL for NOT NULL columns, values that do not
 *	  convert or do not fit the type.  An error changes nothing.
 *
 *	  The update itself (batched, audited, one statement per entity per
 *	  batch) is CcrmRunUpdate() in action_run.c.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "quote.h"
#include "guc_level.h"
#include "json_util.h"
#include "spi_debug.h"
#include "action_run.h"
#include "instant.h"
#include "target_group.h"
#include "type_input.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(ccrm_mass_update);
PG_FUNCTION_INFO_V1(ccrm_job_mass_update);
PG_FUNCTION_INFO_V1(ccrm_job_check_mass_update);

static const char *const param_keys[] = {"set", "audit", NULL};

/*
 * A literal converted with the field type's input function
 * (CcrmTypeInput); an error keeps its SQLSTATE and names the field.
 */
static Datum
convert_literal(const CcrmEntity *ent, const CcrmField *f, const char *str)
{
	return CcrmTypeInput(f->typid, f->is_custom ? -1 : f->typmod, str,
						 psprintf("invalid mass update: value \"%s\" does not fit field \"%s\" of %s",
								  str, f->name, ent->name),
						 psprintf("Give a value of type %s%s.", format_type_be(f->typid),
								  f->typid == DATEOID || f->typid == TIMESTAMPTZOID
								  ? " in ISO 8601 (2026-01-31), or {\"action\": \"date\"}" : ""));
}

static char *
jsonb_scalar_cstring(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/* Writable fields of an entity, for hints. */
static char *
writable_fields(const CcrmEntity *ent)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, ent->fields)
	{
		CcrmField  *f = lfirst(lc);

		if (!f->readonly)
			names = lappend(names, f->name);
	}
	return CcrmJoinNames(names);
}

/* Is v exactly {"action": "<what>"}?  Sets *what. */
static bool
action_value(JsonbValue *v, char **what)
{
	Jsonb	   *obj;
	JsonbValue *a;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return false;
	obj = JsonbValueToJsonb(v);
	if (JB_ROOT_COUNT(obj) != 1 || (a = CcrmJsonbGet(obj, "action")) == NULL)
		return false;
	*what = a->type == jbvString ? pnstrdup(a->val.string.val, a->val.string.len) : pstrdup("?");
	return true;
}

/*
 * The update of one target from its assignments; run is NULL when only
 * checking (a job being saved).
 */
static CcrmUpdate *
build_update(CcrmGroup *group, const char *target, JsonbValue *assignments, CcrmRun *run)
{
	CcrmUpdate *upd = palloc0(sizeof(CcrmUpdate));
	Jsonb	   *set;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			maxparams;
	const CcrmEntity *ent;

	upd->key_sql = CcrmTargetKeySql(group, target);
	upd->target = CcrmEntityLookup(target, false);
	upd->label = "mass_update";
	upd->constant_values = true;
	ent = upd->target;
	if (assignments->type != jbvBinary || !JsonContainerIsObject(assignments->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mass update of %s: assignments must be a JSON object, not %s",
						target, CcrmJsonbTypeName(assignments)),
				 errhint("Write {\"field\": value, ...}, e.g. {\"description\": \"Contacted\", \"last_contacted\": {\"action\": \"date\"}}.")));
	set = JsonbValueToJsonb(assignments);
	if (JB_ROOT_COUNT(set) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mass update of %s: no fields to set", target),
				 errhint("Fields of %s that can be set: %s.", target, writable_fields(ent))));
	maxparams = JB_ROOT_COUNT(set);
	upd->param_types = palloc0(sizeof(Oid) * maxparams);
	upd->param_values = palloc0(sizeof(Datum) * maxparams);
	upd->param_nulls = palloc0(sizeof(bool) * maxparams);

	it = JsonbIteratorInit(&set->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *name;
		const CcrmField *f;
		CcrmAssign *a;
		char	   *what;
		char	   *typname;
		int			p;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		name = pnstrdup(k.val.string.val, k.val.string.len);
		f = CcrmFieldLookup(ent, name);
		if (f == NULL)
			CcrmReportUnknownField(ent, name, "invalid mass update");
		if (f->readonly)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid mass update: field \"%s\" of %s is read-only", name, ent->name),
					 errdetail("Keys, identity and generated columns and the maintained created_at and updated_at cannot be set."),
					 errhint("Fields of %s that can be set: %s.", ent->name, writable_fields(ent))));
		a = palloc0(sizeof(CcrmAssign));
		a->field = f;
		typname = CcrmQualifiedTypeName(f->typid, f->is_custom ? -1 : f->typmod);
		p = upd->nparams++;
		upd->param_types[p] = f->typid;
		a->value_sql = psprintf("$%d::%s", 4 + p, typname);

		if (v.type == jbvNull)
		{
			if (f->notnull)
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("invalid mass update: field \"%s\" of %s cannot be set to null", name, ent->name),
						 errhint("Give it a value.")));
			upd->param_nulls[p] = true;
		}
		else if (f->typid == JSONBOID || f->typid == JSONOID)
		{
			Jsonb	   *j = JsonbValueToJsonb(&v);

			upd->param_values[p] = f->typid == JSONBOID ? JsonbPGetDatum(j)
				: CStringGetTextDatum(JsonbToCString(NULL, &j->root, VARSIZE(j)));
			if (f->typid == JSONOID)
				upd->param_types[p] = TEXTOID;
		}
		else if (action_value(&v, &what))
		{
			bool		is_date = strcmp(what, "date") == 0;
			bool		is_time = strcmp(what, "time") == 0;

			if (!is_date && !is_time)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid mass update of field \"%s\" of %s: unknown action value \"%s\"",
								name, ent->name, what),
						 errhint("Use {\"action\": \"date\"} for the day of the run or {\"action\": \"time\"} for its moment.")));
			if (!(f->typid == TIMESTAMPTZOID || f->typid == TIMESTAMPOID || (is_date && f->typid == DATEOID)))
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("invalid mass update: field \"%s\" of %s has type %s and cannot take the action %s",
								name, ent->name, format_type_be(f->typid), what),
						 errhint("The action date fits date and timestamp fields, the action time timestamp fields.")));
			upd->param_types[p] = is_date ? DATEOID : TIMESTAMPTZOID;
			if (run)
				upd->param_values[p] = is_date ? DateADTGetDatum(run->action_date)
					: TimestampTzGetDatum(run->action_time);
			else
				upd->param_nulls[p] = true;
		}
		else if (v.type == jbvBinary)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("invalid mass update: field \"%s\" of %s takes a single %s value, not %s",
							name, ent->name, format_type_be(f->typid), CcrmJsonbTypeName(&v)),
					 errhint("Give a string, number, boolean or null, or {\"action\": \"date\"} for a date field.")));
		else
		{
			char	   *str = jsonb_scalar_cstring(&v);

			upd->param_values[p] = convert_literal(ent, f, str);
		}
		upd->assigns = lappend(upd->assigns, a);
	}
	return upd;
}

/* Check params against the group; returns the updates (values bound when run is given). */
static List *
parse_params(CcrmGroup *group, Jsonb *params, CcrmRun *run, bool *audit)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *set;
	List	   *updates = NIL;

	if (params == NULL || !JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters of a mass update must be a JSON object"),
				 errhint("Write {\"set\": {\"account\": {\"description\": \"Contacted\"}}, \"audit\": true}.")));
	CcrmCheckParamKeys(params, param_keys, "a mass update");
	*audit = CcrmJsonbBool(params, "audit", true, "a mass update");
	set = CcrmJsonbGet(params, "set");
	if (set == NULL || set->type != jbvBinary || !JsonContainerIsObject(set->val.binary.data) ||
		JsonContainerSize(set->val.binary.data) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a mass update needs \"set\": an object of targets and their assignments"),
				 errhint("Targets of groups of %s: %s.  Write {\"set\": {\"%s\": {\"field\": value}}}.",
						 group->entity->name, CcrmJoinNames(CcrmUpdateTargets(group)), group->entity->name)));

	it = JsonbIteratorInit(set->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *target;

		if (tok != WJB_KEY)
			continue;
		target = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		(void) CcrmTargetKeySql(group, target);	/* an error for what the group cannot update */
		{
			CcrmUpdate *upd = build_update(group, target, &v, run);

			upd->step = list_length(updates);
			updates = lappend(updates, upd);
		}
	}
	return updates;
}

/* Normalised parameters: as given, with the default of "audit" spelled out. */
static Jsonb *
normalised(Jsonb *params, bool audit)
{
	JsonbValue *set = CcrmJsonbGet(params, "set");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"set\": %s, \"audit\": %s}",
					 JsonbToCString(NULL, set->val.binary.data, -1), audit ? "true" : "false");
	return CcrmJsonbFromCString(buf.data);
}

/* Run a mass update for a run; returns its counts.  SPI connected. */
static Jsonb *
run_mass_update(CcrmRun *run, CcrmGroup *group, Jsonb *params)
{
	int			nestlevel = CcrmPushSafeSearchPath();
	bool		audit;
	List	   *updates;
	List	   *targets = NIL;
	ListCell   *lc;
	StringInfoData counts;

	(void) set_config_option("timezone", run->time_zone, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	updates = parse_params(group, params, run, &audit);
	initStringInfo(&counts);
	appendStringInfo(&counts, "{\"members\": " INT64_FORMAT ", \"audit\": %s, \"action_date\": \"%s\", \"updated\": {",
					 group->member_count, audit ? "true" : "false",
					 JsonEncodeDateTime(NULL, DateADTGetDatum(run->action_date), DATEOID, NULL));
	foreach(lc, updates)
	{
		CcrmUpdate *upd = lfirst(lc);
		int64		n = CcrmRunUpdate(run, group, upd, audit);

		if (foreach_current_index(lc) > 0)
			appendStringInfoString(&counts, ", ");
		escape_json(&counts, upd->target->name);
		appendStringInfo(&counts, ": " INT64_FORMAT, n);
		targets = lappend(targets, upd->target->name);
	}
	appendStringInfoChar(&counts, '}');
	CcrmAppendSkipped(&counts, targets, updates);
	appendStringInfoChar(&counts, '}');
	CcrmPopSearchPath(nestlevel);
	return CcrmJsonbFromCString(counts.data);
}

/* ccrm.mass_update(group text, target text, assignments jsonb, audit boolean) → run id */
Datum
ccrm_mass_update(PG_FUNCTION_ARGS)
{
	char	   *group_name;
	char	   *target;
	Jsonb	   *assignments;
	bool		audit;
	int64		group_id;
	CcrmGroup  *group;
	CcrmRun    *run;
	Jsonb	   *params;
	Jsonb	   *counts;
	StringInfoData buf;
	char	   *detail;
	int64		run_id;
	TimestampTz at;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("group, target and assignments of a mass update must not be null")));
	group_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	target = text_to_cstring(PG_GETARG_TEXT_PP(1));
	assignments = PG_GETARG_JSONB_P(2);
	audit = PG_ARGISNULL(3) ? true : PG_GETARG_BOOL(3);
	at = CcrmInstantArg(fcinfo, 4);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"set\": {");
	escape_json(&buf, target);
	appendStringInfo(&buf, ": %s}, \"audit\": %s}", JsonbToCString(NULL, &assignments->root, VARSIZE(assignments)),
					 audit ? "true" : "false");
	params = CcrmJsonbFromCString(buf.data);

	group_id = CcrmGroupIdByName(group_name);
	CcrmSPIConnect();
	group = CcrmGroupLoad(group_id);
	{
		bool		a;

		(void) parse_params(group, params, NULL, &a);	/* check before any write */
	}
	detail = psprintf("mass update of %s: %s", target, JsonbToCString(NULL, &assignments->root, VARSIZE(assignments)));
	run = CcrmRunBeginDirect("mass_update", group_id, detail, at);
	counts = run_mass_update(run, group, params);
	CcrmRunFinishDirect(run, counts);
	run_id = run->id;
	SPI_finish();
	PG_RETURN_INT64(run_id);
}

/* Runner of job kind mass_update. */
Datum
ccrm_job_mass_update(PG_FUNCTION_ARGS)
{
	CcrmRun    *run;
	CcrmGroup  *group;
	Jsonb	   *counts;
	Datum		result;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a mass update job needs a run, a target group and an action time")));
	run = CcrmRunForJob(PG_GETARG_INT64(1), PG_GETARG_INT64(2), PG_GETARG_TIMESTAMPTZ(4),
						PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5)));
	CcrmSPIConnect();
	group = CcrmGroupLoad(run->group_id);
	counts = run_mass_update(run, group, PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3));
	result = SPI_datumTransfer(JsonbPGetDatum(counts), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* Validator of job kind mass_update. */
Datum
ccrm_job_check_mass_update(PG_FUNCTION_ARGS)
{
	CcrmGroup  *group;
	Jsonb	   *params;
	bool		audit;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a mass update job needs a target group"),
				 errhint("Give the job a group whose members (or their contacts or accounts) it updates.")));
	params = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	CcrmSPIConnect();
	group = CcrmGroupLoad(PG_GETARG_INT64(0));
	(void) parse_params(group, params, NULL, &audit);
	result = SPI_datumTransfer(JsonbPGetDatum(normalised(params, audit)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
