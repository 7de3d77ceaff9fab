/*-------------------------------------------------------------------------
 *
 * job_run.c
 *	  Running one job: claim its slot, record the run, execute the kind's
 *	  runner as the job's owner, record how it ended, then run what follows.
 *
 * The same code serves the background worker, CALL ccrm.run_due_jobs()
 * (pg_cron) and ccrm.run_job(); they may all be used at once:
 *
 *	- A job never overlaps itself: a run holds an advisory lock on the job
 *	  (pg_locks: classid 1667461741, objid = job id) from before its slot is
 *	  claimed until its outcome is recorded.  Whoever finds it taken leaves
 *	  the job alone (run_job reports it).
 *	- A scheduled run claims its slot by moving next_run to the first time
 *	  after now, so slots missed while nothing was running are caught up by
 *	  one run, not one per slot.
 *	- Outside ccrm.run_job the "running" row is committed before the action
 *	  starts; a run whose process died is found by its free lock and marked
 *	  interrupted.  The action runs in a subtransaction: its errors roll back
 *	  only what it did and are recorded with the run.
 *
 * Bookkeeping on ccrm.job and ccrm.job_run is done as the catalog's owner
 * (CcrmExecuteAsOwner; callers were checked before); the action runs as
 * the job's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "tuple_util.h"
#include "execute_as_owner.h"
#include "spi_debug.h"
#include "job.h"
#include "privilege.h"
#include "run_as_owner.h"
#include "schedule.h"
#include "scheduler.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_run_job);
PG_FUNCTION_INFO_V1(ccrm_run_due_jobs);

/* advisory lock space of ccrm jobs: 'ccrm' */
#define CCRM_JOB_LOCK_CLASS 1667461741

typedef struct JobRow
{
	int64		id;
	char	   *name;
	char	   *kind;
	bool		group_null;
	int64		group_id;
	Datum		params;			/* jsonb, in the run's context */
	char	   *schedule;
	char	   *time_zone;		/* effective zone name */
	char	   *own_time_zone;	/* the job's own, or NULL */
	char	   *owner;			/* its name, for messages and lookups */
	Oid			owner_id;		/* ccrm.job.owner */
	int64		after_job;		/* 0: none */
	bool		active;
	bool		next_run_null;
	TimestampTz next_run;
	Oid			runner;
	int			failures;
} JobRow;

typedef struct RunOutcome
{
	const char *status;
	Datum		counts;			/* jsonb or 0 */
	char	   *error;
	char	   *detail;
} RunOutcome;

static const char *const trigger_names[] = {"schedule", "manual", "chain"};

/* ---------------------------------------------------------------------- */

static List *
lappend_int64(List *list, int64 value, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int64	   *p = palloc(sizeof(int64));

	*p = value;
	list = lappend(list, p);
	MemoryContextSwitchTo(old);
	return list;
}

static void
job_locktag(LOCKTAG *tag, int64 job_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, CCRM_JOB_LOCK_CLASS, (uint32) job_id, 2);
}

static bool
lock_job(CcrmRunMode *mode, int64 job_id, bool wait)
{
	LOCKTAG		tag;

	job_locktag(&tag, job_id);
	return LockAcquire(&tag, ExclusiveLock, !mode->atomic, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

static void
unlock_job(CcrmRunMode *mode, int64 job_id)
{
	LOCKTAG		tag;

	if (mode->atomic)
		return;					/* a transaction lock: goes with it */
	job_locktag(&tag, job_id);
	LockRelease(&tag, ExclusiveLock, true);
}

/* End the transaction and start the next one (non-atomic modes only). */
static void
commit_step(CcrmRunMode *mode)
{
	if (mode->atomic)
		return;
	if (mode->in_worker)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		StartTransactionCommand();
		CcrmSPIConnect();
		PushActiveSnapshot(GetTransactionSnapshot());
	}
	else
	{
		SPI_commit();
		SPI_start_transaction();
	}
}

/* Read a job; false when it is gone. */
static bool
read_job(int64 job_id, JobRow *job, MemoryContext cxt)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(job_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	CcrmExecuteAsOwner("SELECT j.name, j.kind, j.group_id, j.params, j.schedule,"
				       "       COALESCE(j.time_zone, ccrm.get_setting('time_zone')), j.time_zone,"
				       "       pg_catalog.pg_get_userbyid(j.owner), j.after_job, j.active, j.next_run,"
				       "       k.runner::pg_catalog.oid, j.failures, j.owner::pg_catalog.oid"
				       "  FROM ccrm.job j JOIN ccrm.job_kind k ON k.name OPERATOR(pg_catalog.=) j.kind"
				       " WHERE j.id OPERATOR(pg_catalog.=) $1",
				       1, types, args, NULL, 0);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	job->id = job_id;
	job->name = CcrmColumnCString(tup, desc, 1, cxt);
	job->kind = CcrmColumnCString(tup, desc, 2, cxt);
	job->group_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &job->group_null));
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		job->params = datumCopy(SPI_getbinval(tup, desc, 4, &isnull), false, -1);
		MemoryContextSwitchTo(old);
	}
	job->schedule = CcrmColumnCString(tup, desc, 5, cxt);
	job->time_zone = CcrmColumnCString(tup, desc, 6, cxt);
	job->own_time_zone = CcrmColumnCString(tup, desc, 7, cxt);
	job->owner = CcrmColumnCString(tup, desc, 8, cxt);
	job->after_job = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
	if (isnull)
		job->after_job = 0;
	job->active = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	job->next_run = DatumGetTimestampTz(SPI_getbinval(tup, desc, 11, &job->next_run_null));
	job->runner = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
	job->failures = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
	job->owner_id = DatumGetObjectId(SPI_getbinval(tup, desc, 14, &isnull));
	return true;
}

/* The instant a run acts at: the one its caller gave, else the clock. */
static TimestampTz
mode_now(CcrmRunMode *mode)
{
	return mode->at != 0 ? mode->at : GetCurrentTimestamp();
}

/*
 * Move next_run past now (and past the claimed slot).  now is the run's
 * instant, but never earlier than the clock: a claimed job is never left
 * due again at once, whatever instant a caller passed.
 */
static void
claim_slot(JobRow *job, TimestampTz slot, TimestampTz now)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	TimestampTz next = 0;

	now = Max(now, GetCurrentTimestamp());

	if (job->schedule != NULL)
	{
		CcrmSchedule sched;

		CcrmScheduleParse(job->schedule, &sched);
		if (sched.interval_secs > 0 && slot > 0)
		{
			/* keep the beat: the first multiple of the interval after now */
			int64		step = (int64) sched.interval_secs * USECS_PER_SEC;

			next = slot + step * (Max(now - slot, 0) / step + 1);
		}
		else
			next = CcrmScheduleNext(&sched, Max(now, slot), CcrmJobTimeZone(job->own_time_zone));
	}
	if (next == DT_NOEND || next == 0)
		nulls[1] = 'n';
	args[0] = Int64GetDatum(job->id);
	args[1] = TimestampTzGetDatum(next);
	CcrmExecuteAsOwner("UPDATE ccrm.job SET next_run = $2 WHERE id OPERATOR(pg_catalog.=) $1",
				       2, types, args, nulls, 0);
}

static int64
insert_run(JobRow *job, CcrmRunTrigger trigger, TimestampTz slot, TimestampTz action_time)
{
	Oid			types[8] = {INT8OID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, OIDOID, INT4OID};
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	args[0] = Int64GetDatum(job->id);
	args[1] = CStringGetTextDatum(job->kind);
	args[2] = Int64GetDatum(job->group_id);
	nulls[2] = job->group_null ? 'n' : ' ';
	args[3] = CStringGetTextDatum(trigger_names[trigger]);
	args[4] = TimestampTzGetDatum(slot);
	nulls[4] = (trigger == CCRM_RUN_SCHEDULE) ? ' ' : 'n';
	args[5] = TimestampTzGetDatum(action_time);
	args[6] = ObjectIdGetDatum(job->owner_id);
	args[7] = Int32GetDatum(MyProcPid);
	CcrmExecuteAsOwner("INSERT INTO ccrm.job_run (job_id, kind, group_id, trigger, scheduled_for, action_time, run_as, pid)"
				       " VALUES ($1, $2, $3, $4, $5, $6, $7::pg_catalog.regrole, $8) RETURNING id",
				       8, types, args, nulls, 0);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static char *
error_detail(ErrorData *edata)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "SQLSTATE %s", unpack_sql_state(edata->sqlerrcode));
	if (edata->detail)
		appendStringInfo(&buf, "\nDETAIL: %s", edata->detail);
	if (edata->hint)
		appendStringInfo(&buf, "\nHINT: %s", edata->hint);
	if (edata->context)
		appendStringInfo(&buf, "\nCONTEXT: %s", edata->context);
	return buf.data;
}

/*
 * Execute the kind's runner in a subtransaction, as the job's owner, with
 * the job's time zone; catch and describe its errors.
 */
static void
execute_action(JobRow *job, int64 run_id, TimestampTz action_time, RunOutcome *out,
			   MemoryContext cxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			owner = get_role_oid(job->owner, true);
	CcrmConfinement conf = {0};

	if (!OidIsValid(owner))
	{
		out->status = "failed";
		out->error = psprintf("role \"%s\" does not exist", job->owner);
		out->detail = pstrdup("SQLSTATE 42704\nHINT: Give the job an existing owner.");
		return;
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 6);
		FmgrInfo	flinfo;
		Datum		result;

		CcrmConfineBegin(&conf, owner);
		(void) set_config_option("timezone", job->time_zone, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		PushActiveSnapshot(GetTransactionSnapshot());

		fmgr_info(job->runner, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, 6, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = Int64GetDatum(job->id);
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = Int64GetDatum(run_id);
		fcinfo->args[1].isnull = false;
		fcinfo->args[2].value = Int64GetDatum(job->group_id);
		fcinfo->args[2].isnull = job->group_null;
		fcinfo->args[3].value = job->params;
		fcinfo->args[3].isnull = false;
		fcinfo->args[4].value = TimestampTzGetDatum(action_time);
		fcinfo->args[4].isnull = false;
		fcinfo->args[5].value = CStringGetTextDatum(job->time_zone);
		fcinfo->args[5].isnull = false;
		result = FunctionCallInvoke(fcinfo);
		if (!fcinfo->isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			out->counts = datumCopy(result, false, -1);
			MemoryContextSwitchTo(old);
		}

		PopActiveSnapshot();
		CcrmConfineEnd(&conf);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		out->status = "succeeded";
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		CcrmConfineAbort(&conf);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		out->status = "failed";
		out->counts = (Datum) 0;
		out->error = MemoryContextStrdup(cxt, edata->message ? edata->message : "unknown error");
		out->detail = MemoryContextStrdup(cxt, error_detail(edata));
	}
	PG_END_TRY();
}

static void
record_outcome(JobRow *job, int64 run_id, RunOutcome *out)
{
	Oid			types[5] = {INT8OID, TEXTOID, JSONBOID, TEXTOID, TEXTOID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		failed = strcmp(out->status, "failed") == 0;
	bool		succeeded = strcmp(out->status, "succeeded") == 0;

	args[0] = Int64GetDatum(run_id);
	args[1] = CStringGetTextDatum(out->status);
	args[2] = out->counts;
	nulls[2] = out->counts ? ' ' : 'n';
	args[3] = out->error ? CStringGetTextDatum(out->error) : (Datum) 0;
	nulls[3] = out->error ? ' ' : 'n';
	args[4] = out->detail ? CStringGetTextDatum(out->detail) : (Datum) 0;
	nulls[4] = out->detail ? ' ' : 'n';
	CcrmExecuteAsOwner("UPDATE ccrm.job_run SET status = $2, counts = $3, error = $4, detail = $5,"
				       "       finished_at = pg_catalog.clock_timestamp()"
				       " WHERE id OPERATOR(pg_catalog.=) $1",
				       5, types, args, nulls, 0);

	if (failed || succeeded)
	{
		Oid			jtypes[4] = {INT8OID, BOOLOID, INT4OID, TEXTOID};
		Datum		jargs[4];
		char		jnulls[4] = {' ', ' ', ' ', 'n'};

		jargs[0] = Int64GetDatum(job->id);
		jargs[1] = BoolGetDatum(failed);
		jargs[2] = Int32GetDatum(ccrm_max_job_failures);
		jargs[3] = out->error ? CStringGetTextDatum(out->error) : (Datum) 0;
		jnulls[3] = out->error ? ' ' : 'n';
		CcrmExecuteAsOwner("UPDATE ccrm.job SET last_run = pg_catalog.now(),"
					       "       failures = CASE WHEN $2 THEN failures OPERATOR(pg_catalog.+) 1 ELSE 0 END,"
					       "       active = active AND NOT ($2 AND $3 OPERATOR(pg_catalog.>) 0"
					       "                                AND failures OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.>=) $3),"
					       "       inactive_reason = CASE WHEN active AND $2 AND $3 OPERATOR(pg_catalog.>) 0"
					       "                                   AND failures OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.>=) $3"
					       "            THEN pg_catalog.format('failed %s times in a row (ccrm.max_job_failures); last error: %s',"
					       "                                   failures OPERATOR(pg_catalog.+) 1, $4)"
					       "            ELSE inactive_reason END"
					       " WHERE id OPERATOR(pg_catalog.=) $1",
					       4, jtypes, jargs, jnulls, 0);
	}
}

/*
 * Has the job succeeded since then?  A run counts from when it started or
 * from the instant it acted at, whichever is later (run_job and run_due_jobs
 * may act at an instant their caller gave).
 */
static bool
succeeded_since(int64 job_id, TimestampTz since)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2] = {Int64GetDatum(job_id), TimestampTzGetDatum(since)};
	bool		isnull;

	CcrmExecuteAsOwner("SELECT EXISTS (SELECT FROM ccrm.job_run WHERE job_id OPERATOR(pg_catalog.=) $1"
				       "   AND status OPERATOR(pg_catalog.=) 'succeeded'"
				       "   AND GREATEST(started_at, action_time) OPERATOR(pg_catalog.>=) $2)",
				       2, types, args, NULL, 0);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * A scheduled job with after_job: that job must have succeeded since this
 * slot; run it now unless it did.  Waits for it when it is running.
 */
static bool
prerequisite_ok(CcrmRunMode *mode, int64 after_job, TimestampTz since)
{
	bool		busy;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (succeeded_since(after_job, since))
			return true;
		(void) CcrmRunJob(mode, after_job, 0, CCRM_RUN_CHAIN, &busy);
		if (!busy)
			return succeeded_since(after_job, since);
		/* it is running elsewhere: wait for it to end, then look again */
		if (lock_job(mode, after_job, true))
			unlock_job(mode, after_job);
	}
	return succeeded_since(after_job, since);
}

static int64
run_locked(CcrmRunMode *mode, int64 job_id, TimestampTz slot, CcrmRunTrigger trigger,
		   MemoryContext cxt)
{
	JobRow		job;
	RunOutcome	out = {0};
	TimestampTz now = mode_now(mode);
	TimestampTz action_time;
	int64		run_id;

	if (!read_job(job_id, &job, cxt))
		return 0;
	if (trigger == CCRM_RUN_SCHEDULE)
	{
		/* someone else ran this slot, or the job changed meanwhile */
		if (!job.active || job.next_run_null || job.next_run != slot)
			return 0;
		claim_slot(&job, slot, now);
		action_time = slot;
	}
	else
	{
		/* run before or after another: this counts for a slot that is due */
		if (trigger == CCRM_RUN_CHAIN && job.active && !job.next_run_null && job.next_run <= now)
			claim_slot(&job, job.next_run, now);
		action_time = now;
	}
	run_id = insert_run(&job, trigger, slot, action_time);
	commit_step(mode);

	if (job.after_job != 0 && job.schedule != NULL && trigger != CCRM_RUN_CHAIN &&
		!prerequisite_ok(mode, job.after_job, trigger == CCRM_RUN_SCHEDULE ? slot : now))
	{
		out.status = "skipped";
		out.error = psprintf("the job it runs after (id %lld) did not succeed", (long long) job.after_job);
		out.detail = pstrdup("See that job's runs in ccrm.job_run.");
	}
	else
		execute_action(&job, run_id, action_time, &out, cxt);

	record_outcome(&job, run_id, &out);
	commit_step(mode);

	/* jobs that run right after this one */
	if (strcmp(out.status, "succeeded") == 0)
	{
		Oid			types[1] = {INT8OID};
		Datum		args[1] = {Int64GetDatum(job.id)};
		List	   *followers = NIL;
		ListCell   *lc;

		CcrmExecuteAsOwner("SELECT id FROM ccrm.job WHERE after_job OPERATOR(pg_catalog.=) $1"
					       "   AND schedule IS NULL AND active ORDER BY id",
					       1, types, args, NULL, 0);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			followers = lappend_int64(followers,
									  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 1, &isnull)),
									  cxt);
		}
		foreach(lc, followers)
		{
			bool		busy;

			(void) CcrmRunJob(mode, *(int64 *) lfirst(lc), 0, CCRM_RUN_CHAIN, &busy);
		}
	}
	return run_id;
}

/*
 * Run one job.  slot is the due time being fired (CCRM_RUN_SCHEDULE) and
 * must still be the job's next_run.  Returns the run's id, or 0 with *busy
 * set when the job is running elsewhere, or 0 when there was nothing to run.
 */
int64
CcrmRunJob(CcrmRunMode *mode, int64 job_id, TimestampTz slot, CcrmRunTrigger trigger, bool *busy)
{
	MemoryContext cxt;
	volatile int64 run_id = 0;

	*busy = false;
	if (!lock_job(mode, job_id, false))
	{
		*busy = true;
		return 0;
	}
	cxt = AllocSetContextCreate(mode->in_worker ? TopMemoryContext : CurrentMemoryContext,
								"ccrm job run", ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		run_id = run_locked(mode, job_id, slot, trigger, cxt);
	}
	PG_FINALLY();
	{
		unlock_job(mode, job_id);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
	return run_id;
}

/*
 * Run every job due by the mode's instant (of one owner, or of everybody with InvalidOid);
 * jobs running elsewhere are left for later.
 */
static void
run_due_jobs(CcrmRunMode *mode, Oid only_owner)
{
	TimestampTz until = mode_now(mode);
	List	   *busy_jobs = NIL;
	MemoryContext cxt = AllocSetContextCreate(mode->in_worker ? TopMemoryContext : CurrentMemoryContext,
											  "ccrm due jobs", ALLOCSET_SMALL_SIZES);

	for (;;)
	{
		Oid			types[3] = {TIMESTAMPTZOID, OIDOID, INT8ARRAYOID};
		Datum		args[3];
		char		nulls[3] = {' ', ' ', ' '};
		int64		job_id;
		TimestampTz slot;
		bool		isnull;
		bool		busy;
		MemoryContext old;
		Datum	   *elems;
		int			n = 0;
		ListCell   *lc;

		old = MemoryContextSwitchTo(cxt);
		elems = palloc(sizeof(Datum) * (list_length(busy_jobs) + 1));
		foreach(lc, busy_jobs)
			elems[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
		MemoryContextSwitchTo(old);

		args[0] = TimestampTzGetDatum(until);
		args[1] = ObjectIdGetDatum(only_owner);
		nulls[1] = OidIsValid(only_owner) ? ' ' : 'n';
		args[2] = PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		CcrmExecuteAsOwner("SELECT id, next_run FROM ccrm.job"
					       " WHERE active AND next_run OPERATOR(pg_catalog.<=) $1"
					       "   AND ($2 IS NULL OR owner::pg_catalog.oid OPERATOR(pg_catalog.=) $2)"
					       "   AND id OPERATOR(pg_catalog.<>) ALL ($3)"
					       " ORDER BY next_run, id LIMIT 1",
					       3, types, args, nulls, 0);
		if (SPI_processed == 0)
			break;
		job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		slot = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

		(void) CcrmRunJob(mode, job_id, slot, CCRM_RUN_SCHEDULE, &busy);
		if (busy)
			busy_jobs = lappend_int64(busy_jobs, job_id, cxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(cxt);
}

/*
 * Runs left "running" whose job nobody holds any more ended with their
 * process (a crash, a kill, a restart): mark them interrupted.  Call only
 * while holding no job lock.
 */
int
CcrmMarkInterrupted(void)
{
	CcrmRunMode session = {false, false};
	List	   *dead = NIL;
	ListCell   *lc;
	int			n = 0;

	CcrmExecuteAsOwner("SELECT id, job_id FROM ccrm.job_run"
				       " WHERE status OPERATOR(pg_catalog.=) 'running' AND job_id IS NOT NULL",
				       0, NULL, NULL, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		if (lock_job(&session, job_id, false))
		{
			unlock_job(&session, job_id);
			dead = lappend_int64(dead,
								 DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)),
								 CurrentMemoryContext);
		}
	}
	foreach(lc, dead)
	{
		Oid			types[1] = {INT8OID};
		Datum		args[1] = {Int64GetDatum(*(int64 *) lfirst(lc))};

		/* recheck: it may have finished since it was read */
		CcrmExecuteAsOwner("UPDATE ccrm.job_run SET status = 'interrupted', finished_at = pg_catalog.clock_timestamp(),"
					       "       error = 'the process running it ended before the run finished',"
					       "       detail = 'The server crashed or restarted, or the backend was terminated; nothing of the run was kept.'"
					       " WHERE id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'running'",
					       1, types, args, NULL, 0);
		n += SPI_processed;
	}
	return n;
}

/*
 * Delete finished runs older than ccrm.job_history_retention, and audit
 * older than ccrm.audit_retention (ccrm.purge_audit, from 0.4.0 on).
 */
void
CcrmPurgeJobHistory(void)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(ccrm_job_history_retention)};

	CcrmExecuteAsOwner("SELECT pg_catalog.to_regprocedure('ccrm.purge_audit(interval)') IS NOT NULL",
				       0, NULL, NULL, NULL, 0);
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
		CcrmExecuteAsOwner("SELECT ccrm.purge_audit()", 0, NULL, NULL, NULL, 0);
	/* finished messages lose their texts, keep their keys (outbox.c, from 0.6.0 on) */
	CcrmExecuteAsOwner("SELECT pg_catalog.to_regprocedure('ccrm.purge_outbox(interval,timestamptz)') IS NOT NULL",
				       0, NULL, NULL, NULL, 0);
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
		CcrmExecuteAsOwner("SELECT ccrm.purge_outbox()", 0, NULL, NULL, NULL, 0);
	if (ccrm_job_history_retention <= 0)
		return;
	CcrmExecuteAsOwner("DELETE FROM ccrm.job_run WHERE status OPERATOR(pg_catalog.<>) 'running'"
				       "   AND finished_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
				       "       OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
				       1, types, args, NULL, 0);
}

/* ---------------------------------------------------------------------- */

/*
 * The instant argument argno of run_job and run_due_jobs: a finite
 * timestamptz (now() when the caller left it out).
 */
static TimestampTz
run_instant(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz at;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return GetCurrentTransactionStartTimestamp();
	at = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the instant to run at must be finite"),
				 errhint("Pass a timestamptz such as now(), or leave the argument out.")));
	return at;
}

/*
 * ccrm.run_job(id, at): run a job now in the caller's transaction, acting at
 * the instant at (now() by default).
 */
Datum
ccrm_run_job(PG_FUNCTION_ARGS)
{
	int64		job_id = PG_GETARG_INT64(0);
	CcrmRunMode mode = {true, false};
	Oid			types[1] = {INT8OID};
	Datum		args[1];
	int64		run_id;
	bool		busy;
	Oid			owner;
	bool		isnull;
	char	   *name;
	HeapTupleHeader result;

	mode.at = run_instant(fcinfo, 1);
	CcrmSPIConnect();
	args[0] = Int64GetDatum(job_id);
	/* as the caller: row level security shows only their own jobs */
	if (SPI_execute_with_args("SELECT owner::pg_catalog.oid, name FROM ccrm.job WHERE id OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.job");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job %lld does not exist", (long long) job_id),
				 errhint("See ccrm.jobs for the jobs you can run.")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!CcrmMayManage(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to run job \"%s\"", name),
				 errdetail("It belongs to role \"%s\".", CcrmRoleName(owner))));

	run_id = CcrmRunJob(&mode, job_id, 0, CCRM_RUN_MANUAL, &busy);
	if (busy)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("job \"%s\" is running already", name),
				 errdetail("A job never runs twice at the same time."),
				 errhint("Wait for the run to finish; see ccrm.job_run.")));
	if (run_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" was deleted while it was being started", name)));

	args[0] = Int64GetDatum(run_id);
	CcrmExecuteAsOwner("SELECT * FROM ccrm.job_run WHERE id OPERATOR(pg_catalog.=) $1",
				       1, types, args, NULL, 0);
	result = SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	SPI_finish();
	PG_RETURN_HEAPTUPLEHEADER(result);
}

/*
 * CALL ccrm.run_due_jobs(): what the worker does, for pg_cron.  Each run
 * commits on its own when called outside a transaction block.
 */
Datum
ccrm_run_due_jobs(PG_FUNCTION_ARGS)
{
	CcrmRunMode mode = {true, false};

	mode.at = run_instant(fcinfo, 0);

	if (fcinfo->context && IsA(fcinfo->context, CallContext) &&
		!((CallContext *) fcinfo->context)->atomic)
		mode.atomic = false;

	CcrmSPIConnectExt(mode.atomic ? 0 : SPI_OPT_NONATOMIC);
	(void) CcrmMarkInterrupted();
	run_due_jobs(&mode, superuser() ? InvalidOid : GetUserId());
	if (superuser())
		CcrmPurgeJobHistory();
	SPI_finish();
	PG_RETURN_VOID();
}
