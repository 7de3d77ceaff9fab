/*-------------------------------------------------------------------------
 *
 * job_run.c
 *	  Running one job: claim its slot, record the run, execute the kind's
 *	  runner as the job's owner, record how it ended, then run what follows.
 *
 * The same code serves the scheduler's executors (executor_pool.c), CALL
 * ccrm.run_due_jobs() (pg_cron) and ccrm.run_job(); they may all be used at
 * once:
 *
 *	- A job never overlaps itself: a run holds a lock on the job from before
 *	  its slot is claimed until its outcome is recorded.  The lock lives in
 *	  ccrm's own key space (an advisory locktag whose fourth field,
 *	  CCRM_JOB_LOCK_SPACE, is one the pg_advisory_lock functions never use;
 *	  the other fields hold the database and the full 64-bit job id), so no
 *	  role can take it from SQL to hold a job back.  A lock this backend
 *	  holds already counts as taken: a run never re-enters a job it is
 *	  running (a chain back to itself, a run inside a run).  Whoever finds
 *	  it taken leaves the job alone (run_job reports it).
 *	- A scheduled run claims its slot by moving next_run to the first time
 *	  after now, so slots missed while nothing was running are caught up by
 *	  one run, not one per slot.
 *	- Outside ccrm.run_job the "running" row is committed before the action
 *	  starts; a run whose process died is found by its free lock and marked
 *	  interrupted.  The action runs in a subtransaction: its errors roll back
 *	  only what it did and are recorded with the run.
 *	- Every step that touches the job is isolated in a subtransaction of
 *	  its own: reading it and its owner, checking it again
 *	  (CcrmJobRecheck: a row changed behind the trigger's back, an owner
 *	  dropped), claiming the slot, the job it runs after, recording the
 *	  outcome, the jobs that follow.  A job that may not run any more is
 *	  deactivated with the reason (inactive_reason) and a failed run; a
 *	  step that fails otherwise is logged and the job is left alone, so one
 *	  broken job never stops the others.
 *	- A job's time_limit, if it has one, cancels its action when it runs
 *	  longer (a timer of ccrm's own, as statement_timeout works); the run is
 *	  recorded as failed, with that reason.
 *
 * Bookkeeping on ccrm.job and ccrm.job_run is done as the catalog's owner
 * (CcrmExecuteAsOwner; callers were checked before); the action runs as
 * the job's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "spi_debug.h"
#include "execute_as_owner.h"
#include "instant.h"
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
#include "storage/latch.h"
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
#include "utils/timeout.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_run_job);
PG_FUNCTION_INFO_V1(ccrm_run_due_jobs);

/*
 * Fourth field of ccrm's advisory locktags ('cr').  pg_advisory_lock and
 * friends use 1 (one bigint key) and 2 (two integer keys) only.
 */
#define CCRM_JOB_LOCK_SPACE 25458

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
	Oid			owner_id;		/* ccrm.job.owner; InvalidOid when the role is gone */
	int64		after_job;		/* 0: none */
	bool		active;
	bool		next_run_null;
	TimestampTz next_run;
	Oid			runner;
	int			failures;
	int			time_limit_ms;	/* 0: none */
	char	   *time_limit_text;	/* as the interval reads, or NULL */
} JobRow;

typedef struct RunOutcome
{
	const char *status;
	Datum		counts;			/* jsonb or 0 */
	char	   *error;
	char	   *detail;
} RunOutcome;

/* how a run went, for the callers in this file */
typedef enum RunResult
{
	RUN_DONE,					/* ran (or was refused and recorded) */
	RUN_NOTHING,				/* nothing to run: gone, or not due any more */
	RUN_BUSY,					/* its lock is taken */
	RUN_BROKEN					/* a step failed; nothing could be recorded */
} RunResult;

static const char *const trigger_names[] = {"schedule", "manual", "chain"};

/* the time limit timer: registered once per process, nested runs keep the earliest deadline */
static TimeoutId time_limit_timer = MAX_TIMEOUTS;
static TimestampTz time_limit_deadline = 0;
static volatile sig_atomic_t time_limit_fired = false;

/*
 * Errors a run hands back (RUN_BROKEN) live here: they must outlive the
 * transactions the run commits.  Emptied when an outermost run starts; the
 * callers use an error before they start another run.
 */
static MemoryContext run_error_cxt = NULL;
static int	run_depth = 0;

static int64 run_job_isolated(CcrmRunMode *mode, int64 job_id, TimestampTz slot,
							  CcrmRunTrigger trigger, RunResult *result, ErrorData **error);

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
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (((uint64) job_id) >> 32),
						 (uint32) (((uint64) job_id) & 0xFFFFFFFF), CCRM_JOB_LOCK_SPACE);
}

/*
 * Take a job's lock (for the session outside atomic mode, else for the
 * transaction).  False when someone has it, this backend included.
 */
static bool
lock_job(CcrmRunMode *mode, int64 job_id, bool wait)
{
	LOCKTAG		tag;

	job_locktag(&tag, job_id);
	if (LockHeldByMe(&tag, ExclusiveLock))
		return false;			/* never re-entered */
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

/* Whether some process runs the job now (the scheduler asks before handing it on). */
bool
CcrmJobLockedElsewhere(int64 job_id)
{
	CcrmRunMode session = {false, false};

	if (!lock_job(&session, job_id, false))
		return true;
	unlock_job(&session, job_id);
	return false;
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

/*
 * Run step(arg) in a subtransaction: on error roll back what it did and
 * return the error (copied into cxt); NULL when it succeeded.  Never call
 * commit_step inside.
 */
static ErrorData *
isolated(void (*step) (void *arg), void *arg, MemoryContext cxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

static Datum
job_col(HeapTuple tup, TupleDesc desc, const char *name, bool *isnull)
{
	int			col = SPI_fnumber(desc, name);

	if (col <= 0)
	{
		*isnull = true;			/* a column of a later version */
		return (Datum) 0;
	}
	return SPI_getbinval(tup, desc, col, isnull);
}

static char *
job_text(HeapTuple tup, TupleDesc desc, const char *name, MemoryContext cxt)
{
	int			col = SPI_fnumber(desc, name);
	char	   *v = col > 0 ? SPI_getvalue(tup, desc, col) : NULL;

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/*
 * The owner column as a role OID (InvalidOid when that role is gone),
 * whether it holds a role name or a regrole; and its name.
 */
static Oid
job_owner(HeapTuple tup, TupleDesc desc, char **name, MemoryContext cxt)
{
	int			col = SPI_fnumber(desc, "owner");
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Oid			role = InvalidOid;
	char	   *rolname;

	if (isnull)
		role = InvalidOid;
	else if (SPI_gettypeid(desc, col) == NAMEOID)
		role = get_role_oid(NameStr(*DatumGetName(d)), true);
	else
		role = DatumGetObjectId(d);
	rolname = OidIsValid(role) ? GetUserNameFromId(role, true) : NULL;
	if (rolname == NULL)
	{
		role = InvalidOid;
		rolname = isnull ? pstrdup("?") : SPI_getvalue(tup, desc, col);
	}
	*name = MemoryContextStrdup(cxt, rolname);
	return role;
}

/* An interval as milliseconds for a timer (0 for none, at most INT_MAX). */
static int
interval_ms(Interval *span)
{
	double		us = span->time + ((double) span->day + (double) span->month * DAYS_PER_MONTH) * USECS_PER_DAY;

	if (us <= 0)
		return 0;
	return us / 1000.0 >= (double) INT_MAX ? INT_MAX : Max((int) (us / 1000.0), 1);
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
	Datum		d;

	/* j.*: columns by name, so a column a later version adds is read when it is there */
	CcrmExecuteAsOwner("SELECT j.*, COALESCE(j.time_zone, ccrm.get_setting('time_zone')) AS ccrm_zone,"
				       "       k.runner::pg_catalog.oid AS ccrm_runner"
				       "  FROM ccrm.job j JOIN ccrm.job_kind k ON k.name OPERATOR(pg_catalog.=) j.kind"
				       " WHERE j.id OPERATOR(pg_catalog.=) $1",
				       1, types, args, NULL, 0);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	job->id = job_id;
	job->name = job_text(tup, desc, "name", cxt);
	job->kind = job_text(tup, desc, "kind", cxt);
	job->group_id = DatumGetInt64(job_col(tup, desc, "group_id", &job->group_null));
	d = job_col(tup, desc, "params", &isnull);
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		job->params = datumCopy(d, false, -1);
		MemoryContextSwitchTo(old);
	}
	job->schedule = job_text(tup, desc, "schedule", cxt);
	job->time_zone = job_text(tup, desc, "ccrm_zone", cxt);
	job->own_time_zone = job_text(tup, desc, "time_zone", cxt);
	job->owner_id = job_owner(tup, desc, &job->owner, cxt);
	d = job_col(tup, desc, "after_job", &isnull);
	job->after_job = isnull ? 0 : DatumGetInt64(d);
	job->active = DatumGetBool(job_col(tup, desc, "active", &isnull));
	job->next_run = DatumGetTimestampTz(job_col(tup, desc, "next_run", &job->next_run_null));
	job->runner = DatumGetObjectId(job_col(tup, desc, "ccrm_runner", &isnull));
	job->failures = DatumGetInt32(job_col(tup, desc, "failures", &isnull));
	d = job_col(tup, desc, "time_limit", &isnull);
	job->time_limit_ms = isnull ? 0 : interval_ms(DatumGetIntervalP(d));
	job->time_limit_text = job_text(tup, desc, "time_limit", cxt);
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
	Oid			types[7] = {INT8OID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	args[0] = Int64GetDatum(job->id);
	args[1] = CStringGetTextDatum(job->kind);
	args[2] = Int64GetDatum(job->group_id);
	nulls[2] = job->group_null ? 'n' : ' ';
	args[3] = CStringGetTextDatum(trigger_names[trigger]);
	args[4] = TimestampTzGetDatum(slot);
	nulls[4] = (trigger == CCRM_RUN_SCHEDULE) ? ' ' : 'n';
	args[5] = TimestampTzGetDatum(action_time);
	args[6] = Int32GetDatum(MyProcPid);
	/* run_as: the job's owner column as it is stored */
	CcrmExecuteAsOwner("INSERT INTO ccrm.job_run (job_id, kind, group_id, trigger, scheduled_for, action_time, run_as, pid)"
				       " SELECT $1, $2, $3, $4, $5, $6, j.owner, $7 FROM ccrm.job j WHERE j.id OPERATOR(pg_catalog.=) $1"
				       " RETURNING id",
				       7, types, args, nulls, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "job " INT64_FORMAT " vanished while its run was recorded", job->id);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Switch a job off, saying why (its run, if any, is recorded apart). */
static void
deactivate(int64 job_id, const char *reason)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2] = {Int64GetDatum(job_id), CStringGetTextDatum(reason)};

	CcrmExecuteAsOwner("UPDATE ccrm.job SET active = false, inactive_reason = $2"
				       " WHERE id OPERATOR(pg_catalog.=) $1 AND active",
				       2, types, args, NULL, 0);
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

/* ---------------------------------------------------------------------- */

static void
time_limit_handler(void)
{
	time_limit_fired = true;
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
}

/*
 * Start a run's time limit; returns the deadline to restore afterwards (an
 * enclosing run's).  A nested run keeps the earlier deadline.
 */
static TimestampTz
time_limit_begin(int limit_ms)
{
	TimestampTz outer = time_limit_deadline;
	TimestampTz deadline;

	if (limit_ms <= 0)
		return outer;
	if (time_limit_timer == MAX_TIMEOUTS)
		time_limit_timer = RegisterTimeout(USER_TIMEOUT, time_limit_handler);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), limit_ms);
	if (outer != 0 && outer < deadline)
		deadline = outer;
	time_limit_fired = false;
	time_limit_deadline = deadline;
	enable_timeout_at(time_limit_timer, deadline);
	return outer;
}

/*
 * End a run's time limit.  True when it fired while the action ran (the
 * action's cancellation is then the limit's).  A limit that fired only
 * after the action was done cancels nothing.
 */
static bool
time_limit_end(int limit_ms, TimestampTz outer, bool action_failed)
{
	bool		fired;

	if (limit_ms <= 0)
		return false;
	fired = time_limit_fired;
	time_limit_deadline = outer;
	if (outer != 0)
		enable_timeout_at(time_limit_timer, outer);
	else
		disable_timeout(time_limit_timer, false);
	time_limit_fired = false;
	if (fired && !action_failed)
		QueryCancelPending = false;	/* ours, and too late to matter */
	return fired && action_failed;
}

/* ---------------------------------------------------------------------- */

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

/* ---------------------------------------------------------------------- */

/* the steps of a run, each isolated() */
typedef struct RunStep
{
	CcrmRunMode *mode;
	JobRow	   *job;
	MemoryContext cxt;
	CcrmRunTrigger trigger;
	TimestampTz slot;
	TimestampTz action_time;
	bool		found;
	int64		run_id;
	RunOutcome *out;
	ErrorData  *refusal;		/* why the job may not run */
	TimestampTz since;
	bool		ok;
	List	   *followers;
} RunStep;

static void
step_read(void *arg)
{
	RunStep    *s = arg;

	s->found = read_job(s->job->id, s->job, s->cxt);
}

/*
 * What job.c checks again (owner, chain, what it uses), and that its
 * schedule and zone still read: a row restored or changed past the
 * trigger would otherwise fail at every claim.
 */
static void
step_recheck(void *arg)
{
	RunStep    *s = arg;

	CcrmJobRecheck(s->job->id);
	if (s->job->schedule != NULL)
	{
		CcrmSchedule sched;

		CcrmScheduleParse(s->job->schedule, &sched);
	}
	(void) CcrmJobTimeZone(s->job->own_time_zone);
}

/* claim the slot (if any) and record the run as running */
static void
step_claim(void *arg)
{
	RunStep    *s = arg;
	JobRow	   *job = s->job;
	TimestampTz now = mode_now(s->mode);

	if (s->trigger == CCRM_RUN_SCHEDULE)
		claim_slot(job, s->slot, now);
	else if (s->trigger == CCRM_RUN_CHAIN && job->active && !job->next_run_null && job->next_run <= now)
		claim_slot(job, job->next_run, now);	/* run before or after another: this counts for a slot that is due */
	s->run_id = insert_run(job, s->trigger, s->slot, s->action_time);
}

/*
 * The job may not run: record the refusal as a failed run and switch it
 * off (which empties next_run; its schedule may be what does not read).
 */
static void
step_refuse(void *arg)
{
	RunStep    *s = arg;
	RunOutcome	out = {0};

	s->run_id = insert_run(s->job, s->trigger, s->slot, s->action_time);
	out.status = "failed";
	out.error = s->refusal->message ? s->refusal->message : "the job may not run";
	out.detail = error_detail(s->refusal);
	record_outcome(s->job, s->run_id, &out);
	deactivate(s->job->id, psprintf("cannot run: %s", out.error));
}

static void
step_record(void *arg)
{
	RunStep    *s = arg;

	record_outcome(s->job, s->run_id, s->out);
}

static void
step_succeeded_since(void *arg)
{
	RunStep    *s = arg;
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2] = {Int64GetDatum(s->job->after_job), TimestampTzGetDatum(s->since)};
	bool		isnull;

	CcrmExecuteAsOwner("SELECT EXISTS (SELECT FROM ccrm.job_run WHERE job_id OPERATOR(pg_catalog.=) $1"
				       "   AND status OPERATOR(pg_catalog.=) 'succeeded'"
				       "   AND GREATEST(started_at, action_time) OPERATOR(pg_catalog.>=) $2)",
				       2, types, args, NULL, 0);
	s->ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* wait for the job it runs after to end (a deadlock is an error, caught) */
static void
step_wait_prerequisite(void *arg)
{
	RunStep    *s = arg;

	if (lock_job(s->mode, s->job->after_job, true))
		unlock_job(s->mode, s->job->after_job);
}

static void
step_followers(void *arg)
{
	RunStep    *s = arg;
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(s->job->id)};

	CcrmExecuteAsOwner("SELECT id FROM ccrm.job WHERE after_job OPERATOR(pg_catalog.=) $1"
				       "   AND schedule IS NULL AND active ORDER BY id",
				       1, types, args, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		s->followers = lappend_int64(s->followers,
									 DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc, 1, &isnull)),
									 s->cxt);
	}
}

/* Say what went wrong with a job's step where someone will read it. */
static void
report_step_error(CcrmRunMode *mode, int64 job_id, const char *what, ErrorData *edata)
{
	ereport(mode->in_worker ? LOG : WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("ccrm could not %s of job " INT64_FORMAT ": %s", what, job_id, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
}

/*
 * A scheduled job with after_job: that job must have succeeded since this
 * slot; run it now unless it did.  Waits for it when it is running.
 * Errors of these steps count as "did not succeed".
 */
static bool
prerequisite_ok(RunStep *s)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		RunResult	result;
		ErrorData  *error;

		if (isolated(step_succeeded_since, s, s->cxt) != NULL)
			return false;
		if (s->ok)
			return true;
		(void) run_job_isolated(s->mode, s->job->after_job, 0, CCRM_RUN_CHAIN, &result, &error);
		if (result == RUN_BROKEN)
			report_step_error(s->mode, s->job->after_job, "run the job before", error);
		if (result != RUN_BUSY)
			break;
		/* it is running elsewhere: wait for it to end, then look again */
		if (isolated(step_wait_prerequisite, s, s->cxt) != NULL)
			return false;
	}
	if (isolated(step_succeeded_since, s, s->cxt) != NULL)
		return false;
	return s->ok;
}

/* Run the action under the job's time limit. */
static void
execute_limited(JobRow *job, int64 run_id, TimestampTz action_time, RunOutcome *out, MemoryContext cxt)
{
	int			limit_ms = job->time_limit_ms;
	TimestampTz outer = time_limit_begin(limit_ms);
	bool		failed;

	PG_TRY();
	{
		execute_action(job, run_id, action_time, out, cxt);
	}
	PG_CATCH();
	{
		(void) time_limit_end(limit_ms, outer, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	failed = strcmp(out->status, "failed") == 0;
	if (time_limit_end(limit_ms, outer, failed) &&
		out->detail != NULL && strncmp(out->detail, "SQLSTATE 57014", 14) == 0)
	{
		out->error = MemoryContextStrdup(cxt, psprintf("job \"%s\" ran longer than its time limit (%s)",
														job->name, job->time_limit_text));
		out->detail = MemoryContextStrdup(cxt, "SQLSTATE 57014\nHINT: Give the job more time"
										  " (ccrm.set_job_time_limit), or let its action do less per run.");
	}
}

/*
 * Run a job whose lock is held: the steps, each isolated.  *result says how
 * it went; with RUN_BROKEN, *error (in errcxt) says why.
 */
static int64
run_locked(CcrmRunMode *mode, int64 job_id, TimestampTz slot, CcrmRunTrigger trigger,
		   MemoryContext cxt, MemoryContext errcxt, RunResult *result, ErrorData **error)
{
	JobRow		job = {0};
	RunOutcome	out = {0};
	RunStep		s = {0};
	ErrorData  *e;

	*result = RUN_NOTHING;
	job.id = job_id;
	s.mode = mode;
	s.job = &job;
	s.cxt = cxt;
	s.trigger = trigger;
	s.slot = slot;
	s.out = &out;

	/* the job and its owner */
	if ((e = isolated(step_read, &s, errcxt)) != NULL)
	{
		*result = RUN_BROKEN;
		*error = e;
		return 0;
	}
	if (!s.found)
		return 0;
	/* someone else ran this slot, or the job changed meanwhile */
	if (trigger == CCRM_RUN_SCHEDULE &&
		(!job.active || job.next_run_null || job.next_run != slot))
		return 0;
	s.action_time = trigger == CCRM_RUN_SCHEDULE ? slot : mode_now(mode);

	/* may it still run?  (changed behind the trigger's back, owner gone...) */
	if ((s.refusal = isolated(step_recheck, &s, cxt)) != NULL)
	{
		if ((e = isolated(step_refuse, &s, errcxt)) != NULL)
		{
			*result = RUN_BROKEN;
			*error = e;
			return 0;
		}
		commit_step(mode);
		if (mode->in_worker)
			ereport(LOG,
					(errmsg("ccrm deactivated job \"%s\": %s", job.name, s.refusal->message)));
		*result = RUN_DONE;
		return s.run_id;
	}

	if ((e = isolated(step_claim, &s, errcxt)) != NULL)
	{
		*result = RUN_BROKEN;
		*error = e;
		return 0;
	}
	commit_step(mode);

	if (job.after_job != 0 && job.schedule != NULL && trigger != CCRM_RUN_CHAIN)
	{
		s.since = trigger == CCRM_RUN_SCHEDULE ? slot : s.action_time;
		if (!prerequisite_ok(&s))
		{
			out.status = "skipped";
			out.error = psprintf("the job it runs after (id %lld) did not succeed", (long long) job.after_job);
			out.detail = pstrdup("See that job's runs in ccrm.job_run.");
		}
	}
	if (out.status == NULL)
		execute_limited(&job, s.run_id, s.action_time, &out, cxt);

	if ((e = isolated(step_record, &s, errcxt)) != NULL)
	{
		/* say so in the run at least; else it stays "running" until marked interrupted */
		RunOutcome	failed = {"failed", (Datum) 0, NULL, NULL};

		failed.error = psprintf("could not record how the run ended: %s", e->message);
		failed.detail = error_detail(e);
		s.out = &failed;
		if (isolated(step_record, &s, errcxt) != NULL)
		{
			commit_step(mode);
			*result = RUN_BROKEN;
			*error = e;
			return s.run_id;
		}
	}
	commit_step(mode);
	*result = RUN_DONE;

	/* jobs that run right after this one */
	if (strcmp(out.status, "succeeded") == 0)
	{
		ListCell   *lc;

		if ((e = isolated(step_followers, &s, errcxt)) != NULL)
			report_step_error(mode, job.id, "find the jobs that follow", e);
		foreach(lc, s.followers)
		{
			int64		follower = *(int64 *) lfirst(lc);
			RunResult	fresult;
			ErrorData  *ferror;

			(void) run_job_isolated(mode, follower, 0, CCRM_RUN_CHAIN, &fresult, &ferror);
			if (fresult == RUN_BROKEN)
				report_step_error(mode, follower, "run the job after", ferror);
		}
	}
	return s.run_id;
}

/*
 * Run one job under its lock; errors of its steps are caught and come back
 * in *result / *error (in run_error_cxt).
 */
static int64
run_job_isolated(CcrmRunMode *mode, int64 job_id, TimestampTz slot, CcrmRunTrigger trigger,
				 RunResult *result, ErrorData **error)
{
	MemoryContext cxt;
	volatile int64 run_id = 0;

	*result = RUN_NOTHING;
	*error = NULL;
	if (run_error_cxt == NULL)
		run_error_cxt = AllocSetContextCreate(TopMemoryContext, "ccrm job run errors",
											  ALLOCSET_SMALL_SIZES);
	else if (run_depth == 0)
		MemoryContextReset(run_error_cxt);
	if (!lock_job(mode, job_id, false))
	{
		*result = RUN_BUSY;
		return 0;
	}
	cxt = AllocSetContextCreate(mode->in_worker ? TopMemoryContext : CurrentMemoryContext,
								"ccrm job run", ALLOCSET_SMALL_SIZES);
	run_depth++;
	PG_TRY();
	{
		run_id = run_locked(mode, job_id, slot, trigger, cxt, run_error_cxt, result, error);
	}
	PG_FINALLY();
	{
		run_depth--;
		unlock_job(mode, job_id);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
	return run_id;
}

/*
 * Run one job.  slot is the due time being fired (CCRM_RUN_SCHEDULE) and
 * must still be the job's next_run.  Returns the run's id, or 0 with *busy
 * set when the job is running elsewhere, or 0 when there was nothing to run.
 * A step that failed so that not even a run could be recorded is an ERROR
 * (its lock is released first).
 */
int64
CcrmRunJob(CcrmRunMode *mode, int64 job_id, TimestampTz slot, CcrmRunTrigger trigger, bool *busy)
{
	RunResult	result;
	ErrorData  *error;
	int64		run_id = run_job_isolated(mode, job_id, slot, trigger, &result, &error);

	*busy = result == RUN_BUSY;
	if (result == RUN_BROKEN)
		ReThrowError(error);
	return run_id;
}

/*
 * Run every job due by the mode's instant (of one owner, or of everybody
 * with InvalidOid); jobs running elsewhere, or whose steps fail, are left
 * for later.
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
		RunResult	result;
		ErrorData  *error;
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

		(void) run_job_isolated(mode, job_id, slot, CCRM_RUN_SCHEDULE, &result, &error);
		if (result == RUN_BROKEN)
			report_step_error(mode, job_id, "run a due slot", error);
		if (result == RUN_BUSY || result == RUN_BROKEN)
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

	/* purge_audit(interval) before 0.7.0, purge_audit(interval, timestamptz) since */
	CcrmExecuteAsOwner("SELECT pg_catalog.to_regprocedure('ccrm.purge_audit(interval)') IS NOT NULL"
				       "    OR pg_catalog.to_regprocedure('ccrm.purge_audit(interval,timestamptz)') IS NOT NULL",
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

	mode.at = CcrmInstantArg(fcinfo, 1);
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

	mode.at = CcrmInstantArg(fcinfo, 0);

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
