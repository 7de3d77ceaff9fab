/*-------------------------------------------------------------------------
 *
 * job.c
 *	  The job catalog: what may be saved in ccrm.job and what it means.
 *
 * The row trigger checks a job as it is written, however it is written
 * (the functions, a plain INSERT or UPDATE): its kind exists and gets the
 * target group it needs, the kind's validator accepts (and normalises) the
 * parameters, the schedule parses, after_job names a job of the same
 * owner and the chain does not loop, the group and the definitions its
 * parameters name are usable by its owner, and only admins give it to
 * another role (privilege.c).  Checks of content are skipped while a
 * trusted restore runs (CcrmRestoring); the owner check never is.  It
 * computes next_run when the schedule, zone or state changes and asks the
 * scheduler to look again once the transaction commits: the first slot
 * after the clock, or after the instant the statement itself wrote into
 * next_run (the at of schedule_job, alter_job and activate_job), so that
 * planning never depends on when it happens.
 *
 * CcrmJobRecheck() checks again, when a job runs, what a restore, a
 * dropped role or a definition given to another role may have changed
 * since it was saved.  Also here: job_id() and the validators of the
 * built-in kinds.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "tuple_util.h"
#include "json_util.h"
#include "execute_as_owner.h"
#include "spi_debug.h"
#include "instant.h"
#include "job.h"
#include "privilege.h"
#include "schedule.h"
#include "scheduler.h"
#include "setting.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_job_trigger);
PG_FUNCTION_INFO_V1(ccrm_job_id);
PG_FUNCTION_INFO_V1(ccrm_job_check_no_params);
PG_FUNCTION_INFO_V1(ccrm_job_check_activities);

static Datum
get_attr(HeapTuple tup, TupleDesc desc, const char *name, bool *isnull)
{
	int			attno = SPI_fnumber(desc, name);

	if (attno <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.job_trigger() fired on a table without column \"%s\"", name),
				 errhint("It is the trigger of ccrm.job only.")));
	return heap_getattr(tup, attno, desc, isnull);
}

static char *
get_text_attr(HeapTuple tup, TupleDesc desc, const char *name)
{
	bool		isnull;
	Datum		d = get_attr(tup, desc, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* The zone a job's schedule is read in: its own or the setting. */
pg_tz *
CcrmJobTimeZone(const char *name)
{
	return name ? CcrmTimeZone(name, false) : CcrmSettingTimeZone();
}

/*
 * The first time a job fires after "after", or 0 when it has no schedule of
 * its own.
 */
static TimestampTz
job_next_run(const char *schedule, const char *time_zone, TimestampTz after)
{
	CcrmSchedule sched;

	if (schedule == NULL)
		return 0;
	CcrmScheduleParse(schedule, &sched);
	return CcrmScheduleNext(&sched, after, CcrmJobTimeZone(time_zone));
}

/* Call a kind's validator; returns the parameters it normalised. */
static Datum
validate_params(Oid validator, const char *kind, bool group_null, Datum group_id, Datum params)
{
	LOCAL_FCINFO(fcinfo, 2);
	FmgrInfo	flinfo;
	Datum		result;

	fmgr_info(validator, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = group_id;
	fcinfo->args[0].isnull = group_null;
	fcinfo->args[1].value = params;
	fcinfo->args[1].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return params;
	if (DatumGetJsonbP(result) == NULL || !JB_ROOT_IS_OBJECT(DatumGetJsonbP(result)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the validator of job kind \"%s\" did not return a jsonb object", kind)));
	return result;
}

/*
 * What a job uses — its group, and the plan or formulas its parameters
 * name — must be usable by its owner (privilege.c).  Tools are shared
 * code whose use tool.c decides when the tool runs.  Read past
 * row level security, so another role's definition is refused, not
 * overlooked.  Definitions a kind takes implicitly (every active plan of
 * the group, every active formula of the entity) are those its owner may
 * use, chosen when it runs.  SPI connected.
 */
static void
check_uses(const char *job_name, Oid owner, const char *kind, bool group_null, Datum group_id,
		   Datum params)
{
	Oid			types[3] = {INT8OID, TEXTOID, JSONBOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;

	args[0] = group_id;
	nulls[0] = group_null ? 'n' : ' ';
	args[1] = CStringGetTextDatum(kind);
	args[2] = params;
	CcrmExecuteAsOwner("SELECT 'target group', g.name, g.owner::pg_catalog.oid, g.id FROM ccrm.target_group g"
					   " WHERE g.id OPERATOR(pg_catalog.=) $1"
					   " UNION ALL "
					   "SELECT 'activity plan', p.name, p.owner::pg_catalog.oid, p.id FROM ccrm.activity_plan p"
					   " WHERE $2 OPERATOR(pg_catalog.=) 'create_activities' AND p.group_id OPERATOR(pg_catalog.=) $1"
					   "   AND p.name OPERATOR(pg_catalog.=) ($3 OPERATOR(pg_catalog.->>) 'plan')"
					   " UNION ALL "
					   "SELECT 'formula', f.name, f.owner::pg_catalog.oid, f.id FROM ccrm.formula f"
					   " WHERE $2 OPERATOR(pg_catalog.=) 'run_formulas'"
					   "   AND f.name OPERATOR(pg_catalog.=) ANY (CASE WHEN pg_catalog.jsonb_typeof($3 OPERATOR(pg_catalog.->) 'formulas')"
					   "         OPERATOR(pg_catalog.=) 'array' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text("
					   "         $3 OPERATOR(pg_catalog.->) 'formulas')) END)",
					   3, types, args, nulls, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	tdesc = SPI_tuptable->tupdesc;

		CcrmCheckMayUse(owner, DatumGetObjectId(SPI_getbinval(tup, tdesc, 3, &isnull)), "job", job_name,
						SPI_getvalue(tup, tdesc, 1), SPI_getvalue(tup, tdesc, 2),
						DatumGetInt64(SPI_getbinval(tup, tdesc, 4, &isnull)));
	}
}

/*
 * after_job must name a job of the same owner (running a job runs the
 * jobs chained to it, each as its own owner: across owners one role would
 * make another role's code run), and following the chain must not loop.
 * Read past row level security.  SPI connected.
 */
static void
check_chain(int64 job_id, const char *job_name, Oid owner, int64 after_job)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1];
	int64		at = after_job;

	for (int depth = 0; depth < 1000; depth++)
	{
		bool		isnull;
		Datum		next;

		if (at == job_id)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("job chain would loop"),
					 errdetail("Following after_job from this job leads back to it."),
					 errhint("A job may run after another, but not (even indirectly) after itself.")));
		args[0] = Int64GetDatum(at);
		CcrmExecuteAsOwner("SELECT after_job, owner::pg_catalog.oid FROM ccrm.job WHERE id OPERATOR(pg_catalog.=) $1",
						   1, types, args, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			return;				/* the foreign key reports a missing job */
		if (depth == 0 &&
			DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) != owner)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("job \"%s\" may only run after a job of its own owner", job_name),
					 errdetail("Job " INT64_FORMAT ", which it would run after, does not belong to role \"%s\".",
							   after_job, CcrmRoleName(owner)),
					 errhint("Chain jobs of one owner; a ccrm admin can give the job it runs after to that role first.")));
		next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			return;
		at = DatumGetInt64(next);
	}
}

/*
 * Re-check at run time what the trigger checked when the job was saved,
 * since a restore, a role dropped, or a definition given to another role
 * may have changed it behind ccrm's back: the owner exists, the job runs
 * after a job of the same owner, and what it uses is usable by its owner.
 * ERROR (42704 owner gone, 42501 not usable / chained across owners) when
 * it no longer holds; the caller records it with the run.
 */
void
CcrmJobRecheck(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(job_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bool		group_null;
	bool		after_null;
	char	   *name;
	char	   *kind;
	Oid			owner;
	Datum		group_id;
	Datum		params;
	Datum		after_job;
	Datum		after_owner;

	CcrmSPIConnect();
	CcrmExecuteAsOwner("SELECT j.name, j.kind, j.owner::pg_catalog.oid, j.group_id, j.params, j.after_job,"
					   "       a.owner::pg_catalog.oid"
					   "  FROM ccrm.job j LEFT JOIN ccrm.job a ON a.id OPERATOR(pg_catalog.=) j.after_job"
					   " WHERE j.id OPERATOR(pg_catalog.=) $1",
					   1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		SPI_finish();
		return;					/* gone: nothing runs */
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	name = SPI_getvalue(tup, desc, 1);
	kind = SPI_getvalue(tup, desc, 2);
	owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	group_id = SPI_getbinval(tup, desc, 4, &group_null);
	params = SPI_datumTransfer(SPI_getbinval(tup, desc, 5, &isnull), false, -1);
	after_job = SPI_getbinval(tup, desc, 6, &after_null);
	after_owner = SPI_getbinval(tup, desc, 7, &isnull);

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u, the owner of job \"%s\", does not exist", owner, name),
				 errhint("A ccrm admin can give the job to an existing role (UPDATE ccrm.job SET owner = ...), or delete it.")));
	if (!after_null && !isnull && DatumGetObjectId(after_owner) != owner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("job \"%s\" may only run after a job of its own owner", name),
				 errdetail("Job " INT64_FORMAT ", which it runs after, does not belong to role \"%s\".",
						   DatumGetInt64(after_job), CcrmRoleName(owner)),
				 errhint("Chain jobs of one owner; a ccrm admin can give both jobs to one role.")));
	check_uses(name, owner, kind, group_null, group_id, params);
	SPI_finish();
}

/*
 * BEFORE INSERT OR UPDATE on ccrm.job.
 */
Datum
ccrm_job_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	newtup;
	HeapTuple	oldtup = NULL;
	bool		is_insert;
	bool		defn_changed;
	bool		timing_changed;
	bool		switching_off;
	char	   *kind;
	char	   *schedule;
	char	   *time_zone;
	char	   *name;
	Oid			owner;
	bool		owner_changed;
	bool		isnull;
	bool		group_null;
	bool		active;
	Datum		group_id;
	Datum		params;
	int			natts;
	int		   *cols;
	Datum	   *vals;
	bool	   *nulls;
	int			ncols = 0;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.job_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));

	desc = RelationGetDescr(trigdata->tg_relation);
	is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
	newtup = is_insert ? trigdata->tg_trigtuple : trigdata->tg_newtuple;
	if (!is_insert)
		oldtup = trigdata->tg_trigtuple;

	/* who owns it is a privilege: checked during restores too */
	name = get_text_attr(newtup, desc, "name");
	owner = DatumGetObjectId(get_attr(newtup, desc, "owner", &isnull));
	if (isnull)
		return PointerGetDatum(newtup);	/* NOT NULL reports it */
	owner_changed = is_insert || CcrmColumnChanged(newtup, oldtup, desc, "owner");
	CcrmCheckOwner(owner, is_insert, owner_changed, "job", name);
	if (CcrmRestoring())
		return PointerGetDatum(newtup);

	defn_changed = is_insert ||
		CcrmColumnChanged(newtup, oldtup, desc, "kind") ||
		CcrmColumnChanged(newtup, oldtup, desc, "group_id") ||
		CcrmColumnChanged(newtup, oldtup, desc, "params");
	timing_changed = is_insert ||
		CcrmColumnChanged(newtup, oldtup, desc, "schedule") ||
		CcrmColumnChanged(newtup, oldtup, desc, "time_zone") ||
		CcrmColumnChanged(newtup, oldtup, desc, "active") ||
		CcrmColumnChanged(newtup, oldtup, desc, "after_job");
	/* only active turned off: it will not run, so when it would is not checked */
	switching_off = !is_insert && !DatumGetBool(get_attr(newtup, desc, "active", &isnull)) &&
		CcrmColumnChanged(newtup, oldtup, desc, "active") &&
		!CcrmColumnChanged(newtup, oldtup, desc, "schedule") &&
		!CcrmColumnChanged(newtup, oldtup, desc, "time_zone") &&
		!CcrmColumnChanged(newtup, oldtup, desc, "after_job") && !owner_changed;

	kind = get_text_attr(newtup, desc, "kind");
	schedule = get_text_attr(newtup, desc, "schedule");
	time_zone = get_text_attr(newtup, desc, "time_zone");
	active = DatumGetBool(get_attr(newtup, desc, "active", &isnull));
	group_id = get_attr(newtup, desc, "group_id", &group_null);
	params = get_attr(newtup, desc, "params", &isnull);

	natts = desc->natts;
	cols = palloc(sizeof(int) * natts);
	vals = palloc(sizeof(Datum) * natts);
	nulls = palloc0(sizeof(bool) * natts);

	CcrmSPIConnect();

	if (defn_changed)
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(kind)};
		bool		needs_group;
		Datum		validator;
		bool		no_validator;

		if (SPI_execute_with_args("SELECT needs_group, validator::pg_catalog.oid FROM ccrm.job_kind"
								  " WHERE name OPERATOR(pg_catalog.=) $1",
								  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.job_kind");
		if (SPI_processed == 0)
		{
			char	   *names;

			SPI_execute("SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM ccrm.job_kind", true, 0);
			names = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job kind \"%s\" does not exist", kind),
					 errhint("Kinds: %s.", names ? names : "(none)")));
		}
		needs_group = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		validator = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &no_validator);
		if (needs_group && group_null)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a job of kind \"%s\" needs a target group", kind),
					 errhint("Pass \"group\" => the name of a target group.")));
		if (!no_validator)
		{
			params = validate_params(DatumGetObjectId(validator), kind, group_null, group_id, params);
			cols[ncols] = SPI_fnumber(desc, "params");
			vals[ncols++] = SPI_datumTransfer(params, false, -1);
		}
	}
	if (defn_changed || owner_changed)
		check_uses(name, owner, kind, group_null, group_id, params);

	if (timing_changed && switching_off)
	{
		/* a job whose schedule no longer reads (restored, say) can still be switched off */
		cols[ncols] = SPI_fnumber(desc, "next_run");
		nulls[ncols] = true;
		vals[ncols++] = (Datum) 0;
	}
	else if (timing_changed)
	{
		bool		after_null;
		Datum		after_job = get_attr(newtup, desc, "after_job", &after_null);
		TimestampTz next = 0;
		TimestampTz from = GetCurrentTimestamp();
		bool		given_null;
		Datum		given = get_attr(newtup, desc, "next_run", &given_null);

		if (schedule == NULL && after_null)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a job needs a schedule or a job to run after"),
					 errhint("Give a schedule such as \"0 11 * * *\", or after_job => the job it follows.")));
		if (!after_null)
		{
			bool		id_null;
			Datum		id = get_attr(newtup, desc, "id", &id_null);

			check_chain(id_null ? 0 : DatumGetInt64(id), name, owner, DatumGetInt64(after_job));
		}

		/*
		 * Planned from the clock, or from the instant the statement wrote
		 * into next_run itself (how schedule_job, alter_job and activate_job
		 * pass their at): the first slot after it.
		 */
		if (!given_null && (is_insert || CcrmColumnChanged(newtup, oldtup, desc, "next_run")))
		{
			from = DatumGetTimestampTz(given);
			CcrmCheckInstant(from, "next_run");
		}
		if (schedule != NULL)
		{
			next = job_next_run(schedule, time_zone, from);
			if (next == DT_NOEND)
				next = 0;
		}
		else
			(void) CcrmJobTimeZone(time_zone);
		cols[ncols] = SPI_fnumber(desc, "next_run");
		nulls[ncols] = (next == 0 || !active);
		vals[ncols++] = TimestampTzGetDatum(next);
		CcrmSchedulerWakeAtCommit();
	}
	else if (owner_changed)
	{
		bool		after_null;
		Datum		after_job = get_attr(newtup, desc, "after_job", &after_null);

		if (!after_null)
			check_chain(DatumGetInt64(get_attr(newtup, desc, "id", &isnull)), name, owner,
						DatumGetInt64(after_job));
	}

	/* someone moved the next run by hand: the scheduler looks again */
	if (!timing_changed && CcrmColumnChanged(newtup, oldtup, desc, "next_run"))
		CcrmSchedulerWakeAtCommit();

	if (!is_insert && (defn_changed || timing_changed || CcrmColumnChanged(newtup, oldtup, desc, "name") ||
					   CcrmColumnChanged(newtup, oldtup, desc, "owner")))
	{
		cols[ncols] = SPI_fnumber(desc, "updated_at");
		vals[ncols++] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	}

	SPI_finish();

	if (ncols > 0)
		newtup = heap_modify_tuple_by_cols(newtup, desc, ncols, cols, vals, nulls);
	return PointerGetDatum(newtup);
}

/*
 * ccrm.job_id(name): the id of a job the caller can see.
 */
Datum
ccrm_job_id(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {PG_GETARG_DATUM(0)};
	bool		isnull;
	int64		id;

	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT id FROM ccrm.job WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.job");
	if (SPI_processed == 0)
	{
		char	   *names;

		SPI_execute("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
					"  FROM (SELECT name FROM ccrm.job ORDER BY name LIMIT 20) j", true, 0);
		names = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" does not exist", TextDatumGetCString(args[0])),
				 names ? errhint("Jobs you can see: %s.", names)
				 : errhint("Save one with ccrm.schedule_job().")));
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(id);
}

Datum
ccrm_job_check_no_params(PG_FUNCTION_ARGS)
{
	static const char *const none[] = {NULL};

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	CcrmCheckParamKeys(PG_GETARG_JSONB_P(1), none, "a refresh_group job");
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}

/*
 * create_activities: {"plan": name} names one of the group's plans; without
 * it every active plan of the group runs, so the group needs one.
 */
Datum
ccrm_job_check_activities(PG_FUNCTION_ARGS)
{
	static const char *const allowed[] = {"plan", NULL};
	Jsonb	   *params;
	JsonbValue *plan;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	char		nulls[2] = {' ', 'n'};
	bool		isnull;
	bool		found;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	params = PG_GETARG_JSONB_P(1);
	CcrmCheckParamKeys(params, allowed, "a create_activities job");
	plan = getKeyJsonValueFromContainer(&params->root, "plan", 4, NULL);
	if (plan != NULL && plan->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"plan\" must be the name of an activity plan")));
	args[0] = PG_GETARG_DATUM(0);
	if (plan != NULL)
	{
		args[1] = PointerGetDatum(cstring_to_text_with_len(plan->val.string.val, plan->val.string.len));
		nulls[1] = ' ';
	}
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT EXISTS (SELECT FROM ccrm.activity_plan"
							  " WHERE group_id OPERATOR(pg_catalog.=) $1"
							  "   AND ($2 IS NULL AND active OR name OPERATOR(pg_catalog.=) $2))",
							  2, types, args, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.activity_plan");
	found = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!found)
	{
		char	   *names;

		SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
							  "  FROM ccrm.activity_plan WHERE group_id OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, true, 1);
		names = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (plan != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the job's group has no activity plan \"%s\"",
							TextDatumGetCString(args[1])),
					 names ? errhint("Its plans: %s.", names)
					 : errhint("Save one with ccrm.create_activity_plan().")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the job's group has no active activity plan"),
				 errhint("Save one with ccrm.create_activity_plan(), or name a plan: '{\"plan\": \"…\"}'.")));
	}
	SPI_finish();
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}
