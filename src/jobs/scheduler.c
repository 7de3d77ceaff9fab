/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  The background worker that finds due jobs and hands them to the
 *	  executor pool.
 *
 * Started by the launcher (launcher.c) once ccrm.database_name exists, the
 * scheduler waits there for CREATE EXTENSION ccrm (looking again every
 * second, logging once), marks runs a crash left "running" as
 * interrupted, then loops: hand on what is due, sleep on its latch until the
 * next due time.  Saving a job sets the latch when the transaction commits,
 * so a changed schedule is seen at once; an executor that finishes a job
 * sets it too, so a job the pool had no room for goes out at once.
 *
 * The scheduler never runs a job's action, nor any code of a job's owner:
 * it reads ccrm.job as the bootstrap superuser with ccrm's own queries,
 * takes and drops a job's lock to see whether it runs elsewhere, and queues
 * job ids for the executors (executor_pool.c), which run them as
 * ccrm.run_due_jobs() does (job_run.c).  So one long or broken job does not
 * hold back the others.  Errors of a pass are logged and the pass is
 * tried again a second later, without a restart.
 *
 * Follow-up sequences are the exception (sequence_pass): their due steps and
 * enrolments are processed here about every second, with no job to create,
 * each sequence confined to its owner (run_as_owner.c) as the executors
 * confine jobs, in bounded batches that commit one by one.
 *
 * Shared memory names the running scheduler (its pid and latch), so there
 * is never a second one.  Local state (jobs running elsewhere, jobs an
 * executor could not record) lives in TopMemoryContext for the life of
 * the process; each pass runs in a transaction of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "spi_debug.h"
#include "executor_pool.h"
#include "job.h"
#include "scheduler.h"
#include "worker_slot.h"
#include "sequence.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ccrm_scheduler_main(Datum arg);

/*---- GUC variables ----*/
char	   *ccrm_database_name = NULL;
bool		ccrm_enable_scheduler = true;
int			ccrm_max_parallel_jobs = 2;
int			ccrm_max_job_failures = 5;
int			ccrm_job_history_retention = 30 * SECS_PER_DAY;

/* longest sleep */
#define MAX_SLEEP_MS 60000
/* how often a database without the extension is looked at again */
#define EXTENSION_POLL_MS 1000
/* how often a due job that is running elsewhere is looked at again */
#define BUSY_POLL_MS 1000
/* how long a job whose run could not even be recorded is left alone */
#define BROKEN_RETRY_MS 60000
/* how often follow-up sequences are processed */
#define SEQUENCE_POLL_MS 1000
/* pause after a pass that failed */
#define ERROR_PAUSE_MS 1000
/* how often old runs are purged (ccrm.job_history_retention) */
#define PURGE_EVERY_MS (3600 * 1000)
/* due jobs read per query */
#define DUE_BATCH 64

/* a due job not to hand on before retry_at */
typedef struct HeldBack
{
	int64		job_id;
	TimestampTz retry_at;
} HeldBack;

static CcrmWorkerSlot *shared = NULL;	/* the scheduler's slot */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;

static TimestampTz last_purge = 0;
static int	ready = -1;			/* extension seen: 1 yes, 0 no, -1 not looked yet */
static HeldBack *held = NULL;	/* CCRM_POOL_MAX * 4 entries */
static int	nheld = 0;

#define MAX_HELD (CCRM_POOL_MAX * 4)

/* ---------------------------------------------------------------------- */

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(CcrmWorkerSlotSize());
	RequestAddinShmemSpace(CcrmPoolShmemSize());
}

static void
shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = CcrmWorkerSlotAttach("ccrm scheduler");
	CcrmPoolShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

void
CcrmSchedulerWake(void)
{
	CcrmWorkerSlotWake(shared);
}

static void
xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
		CcrmSchedulerWake();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = false;
}

void
CcrmSchedulerWakeAtCommit(void)
{
	wake_at_commit = true;
}

/* Whether a scheduler runs (announced in shared memory). */
bool
CcrmSchedulerRunning(void)
{
	return CcrmWorkerSlotHolder(shared) != 0;
}

void
CcrmSchedulerInit(void)
{
	DefineCustomStringVariable("ccrm.database_name",
							   "Database the ccrm scheduler runs jobs in.",
							   "On a change the scheduler moves to the new database; until it exists, it waits.",
							   &ccrm_database_name, "postgres",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("ccrm.enable_scheduler",
							 "Whether the ccrm scheduler fires due jobs.",
							 "Off pauses the worker; CALL ccrm.run_due_jobs() still works.",
							 &ccrm_enable_scheduler, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.max_parallel_jobs",
							"Executor processes that run the scheduler's jobs side by side.",
							"0 counts as 1: jobs run one after another in one executor.",
							&ccrm_max_parallel_jobs, 2, 0, CCRM_POOL_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.executor_idle_timeout",
							"How long an executor without work stays before it exits.",
							NULL, &ccrm_executor_idle_timeout, 60, 1, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.max_job_failures",
							"Failed runs in a row after which a job is deactivated (0: never).",
							NULL, &ccrm_max_job_failures, 5, 0, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.job_history_retention",
							"How long finished runs are kept in ccrm.job_run (0: for ever).",
							NULL, &ccrm_job_history_retention, 30 * SECS_PER_DAY, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	RegisterXactCallback(xact_callback, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = shmem_startup;
		CcrmLauncherRegister();
	}
}

/* ---------------------------------------------------------------------- */

static bool
ccrm_is_ready(void)
{
	return OidIsValid(get_extension_oid("ccrm", true)) &&
		OidIsValid(get_relname_relid("job", get_namespace_oid(CCRM_SCHEMA, true)));
}

/* Leave a job alone until retry_at (the later time wins). */
static void
hold_back(int64 job_id, TimestampTz retry_at)
{
	for (int i = 0; i < nheld; i++)
		if (held[i].job_id == job_id)
		{
			held[i].retry_at = Max(held[i].retry_at, retry_at);
			return;
		}
	if (nheld < MAX_HELD)
		held[nheld++] = (HeldBack) {job_id, retry_at};
}

/* Forget what may be retried by now; returns the next retry time, or 0. */
static TimestampTz
expire_held(TimestampTz now)
{
	TimestampTz next = 0;

	for (int i = 0; i < nheld;)
	{
		if (held[i].retry_at <= now)
			held[i] = held[--nheld];
		else
		{
			if (next == 0 || held[i].retry_at < next)
				next = held[i].retry_at;
			i++;
		}
	}
	return next;
}

/* Jobs not to hand on now: queued or running in the pool, or held back. */
static ArrayType *
skip_array(void)
{
	int64		ids[CCRM_POOL_MAX * 2];
	Datum	   *elems = palloc(sizeof(Datum) * (CCRM_POOL_MAX * 2 + MAX_HELD));
	int			n = CcrmPoolPendingJobs(ids);
	int			nelems = 0;

	for (int i = 0; i < n; i++)
		elems[nelems++] = Int64GetDatum(ids[i]);
	for (int i = 0; i < nheld; i++)
		elems[nelems++] = Int64GetDatum(held[i].job_id);
	return construct_array(elems, nelems, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static void
mark_interrupted(void)
{
	int			n = CcrmMarkInterrupted();

	if (n > 0)
		ereport(LOG,
				(errmsg("ccrm scheduler marked %d run%s interrupted", n, n == 1 ? "" : "s")));
}

/*
 * Housekeeping (ccrm's own SQL) in a subtransaction: a failure is logged
 * and does not stop the pass.  False when it failed.
 */
static bool
isolated(void (*fn) (void), const char *what)
{
	volatile bool ok = true;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		CcrmSPIConnect();
		fn();
		SPI_finish();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(LOG,
				(errmsg("ccrm scheduler could not %s: %s", what, edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return ok;
}

/*
 * One pass: hand on what is due; return how long to sleep (ms).
 */
static long
scheduler_pass(bool *first)
{
	long		sleep_ms = MAX_SLEEP_MS;
	bool		full = false;
	int64		broken[CCRM_POOL_MAX];
	int			nbroken;
	TimestampTz now;
	TimestampTz retry;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	CcrmSPIConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "ccrm scheduler: looking for due jobs");

	/* log each change between "waiting for the extension" and "started" once */
	if (!ccrm_is_ready())
	{
		if (ready != 0)
			ereport(LOG,
					(errmsg("ccrm scheduler is waiting for CREATE EXTENSION ccrm in database \"%s\"",
							get_database_name(MyDatabaseId))));
		ready = 0;
		*first = true;
	}
	else if (ready != 1)
	{
		ereport(LOG,
				(errmsg("ccrm scheduler started in database \"%s\"", get_database_name(MyDatabaseId))));
		ready = 1;
	}
	if (ready == 0 || !ccrm_enable_scheduler)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		return ready == 0 ? EXTENSION_POLL_MS : MAX_SLEEP_MS;
	}

	/*
	 * An executor that died while running a job, or could not record how
	 * its run ended, left the run "running"
	 */
	if ((CcrmPoolReap(broken, &nbroken) || nbroken > 0 || *first) &&
		isolated(mark_interrupted, "mark interrupted runs"))
		*first = false;
	for (int i = 0; i < nbroken; i++)
		hold_back(broken[i], TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BROKEN_RETRY_MS));
	if (TimestampDifferenceExceeds(last_purge, GetCurrentTimestamp(), PURGE_EVERY_MS))
	{
		(void) isolated(CcrmPurgeJobHistory, "purge old runs");
		last_purge = GetCurrentTimestamp();
	}

	(void) expire_held(GetCurrentTimestamp());
	while (!full)
	{
		Oid			types[2] = {TIMESTAMPTZOID, INT8ARRAYOID};
		Datum		args[2];
		int			ndue;
		int			handed = 0;

		args[0] = TimestampTzGetDatum(GetCurrentTimestamp());
		args[1] = PointerGetDatum(skip_array());
		if (SPI_execute_with_args("SELECT id, next_run FROM ccrm.job"
								  " WHERE active AND next_run OPERATOR(pg_catalog.<=) $1"
								  "   AND id OPERATOR(pg_catalog.<>) ALL ($2)"
								  " ORDER BY next_run, id LIMIT " CppAsString2(DUE_BATCH),
								  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.job");
		ndue = (int) SPI_processed;
		if (ndue == 0)
			break;

		for (int i = 0; i < ndue; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			TimestampTz at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

			/* running elsewhere (ccrm.run_job, pg_cron, a chain): look later */
			if (CcrmJobLockedElsewhere(id))
			{
				hold_back(id, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BUSY_POLL_MS));
				continue;
			}
			if (!CcrmPoolSubmit(id, at))
			{
				full = true;	/* an executor that is done wakes us */
				break;
			}
			handed++;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending || (handed == 0 && (ndue < DUE_BATCH || nheld >= MAX_HELD)))
			break;
	}

	/* sleep until the next due time of a job that can be handed on */
	now = GetCurrentTimestamp();
	{
		Oid			types[1] = {INT8ARRAYOID};
		Datum		args[1] = {PointerGetDatum(skip_array())};
		bool		isnull;
		Datum		next;

		if (SPI_execute_with_args("SELECT pg_catalog.min(next_run) FROM ccrm.job"
								  " WHERE active AND id OPERATOR(pg_catalog.<>) ALL ($1)",
								  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.job");
		next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			TimestampTz at = DatumGetTimestampTz(next);

			if (at <= now)
				sleep_ms = full ? BUSY_POLL_MS : 1;
			else
				sleep_ms = Min((long) ((at - now + 999) / 1000), (long) MAX_SLEEP_MS);
		}
	}
	retry = expire_held(now);
	if (retry != 0)
		sleep_ms = Min(sleep_ms, Max((long) ((retry - now + 999) / 1000), 1L));

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
	return sleep_ms;
}

/*
 * Follow-up sequences: due steps and enrolment of every active sequence,
 * each batch in a transaction of its own, each sequence confined to its
 * owner (sequence_run.c).  This is the one kind of work the scheduler does
 * itself rather than hand to the executors: batches are bounded
 * (ccrm.sequence_batch_size) and run about every second, with no job to
 * create.  An error ends the pass; the next one comes a second later.
 */
static void
sequence_pass(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	CcrmSPIConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "ccrm scheduler: follow-up sequences");
	if (OidIsValid(get_relname_relid("sequence_step_run", get_namespace_oid(CCRM_SCHEMA, true))))
		SeqSchedulerPass(GetCurrentTimestamp());
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

static void
scheduler_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	CcrmWorkerSlotLeave(shared);
}

void
ccrm_scheduler_main(Datum arg)
{
	static bool first = true;	/* static: kept across the longjmp of an error */
	char	   *dbname;
	pid_t		other = 0;
	MemoryContext pass_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* the launcher found the database; if it was dropped since, this fails */
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	held = MemoryContextAllocZero(TopMemoryContext, sizeof(HeldBack) * MAX_HELD);
	pass_cxt = AllocSetContextCreate(TopMemoryContext, "ccrm scheduler pass", ALLOCSET_DEFAULT_SIZES);

	if (shared == NULL)
		proc_exit(0);			/* not from shared_preload_libraries */
	other = CcrmWorkerSlotTake(shared);
	if (other != 0)
	{
		ereport(LOG, (errmsg("ccrm scheduler is running already (PID %d)", (int) other)));
		proc_exit(0);
	}
	before_shmem_exit(scheduler_detach, (Datum) 0);
	CcrmPoolAttachScheduler();

	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(dbname, ccrm_database_name) != 0)
			{
				/* the launcher starts the next one there (exit 0: no restart) */
				ereport(LOG,
						(errmsg("ccrm scheduler leaves database \"%s\" for \"%s\"", dbname, ccrm_database_name)));
				proc_exit(0);
			}
		}

		MemoryContextSwitchTo(pass_cxt);
		PG_TRY();
		{
			sleep_ms = scheduler_pass(&first);
			if (ready == 1 && ccrm_enable_scheduler)
			{
				MemoryContextSwitchTo(pass_cxt);
				sequence_pass();
				sleep_ms = Min(sleep_ms, SEQUENCE_POLL_MS);
			}
		}
		PG_CATCH();
		{
			/* as PostgresMain does after an error: report, abort, go on */
			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(pass_cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			RESUME_INTERRUPTS();
			pgstat_report_activity(STATE_IDLE, NULL);
			sleep_ms = ERROR_PAUSE_MS;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(pass_cxt);

		if (sleep_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
