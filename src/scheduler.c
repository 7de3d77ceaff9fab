/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  The background worker that fires due jobs, and its dynamic helpers.
 *
 * Started by the launcher (launcher.c) once ccrm.database_name exists, the
 * scheduler waits there for CREATE EXTENSION ccrm (looking again every
 * second, logging once), marks runs a crash left "running" as
 * interrupted, then loops: run what is due, sleep on its latch until the
 * next due time.  Saving a job sets the latch when the transaction commits,
 * so a changed schedule is seen at once.  Shared memory names the running
 * scheduler (its pid and latch), so there is never a second one.
 *
 * When several jobs are due at once the scheduler runs the first itself and
 * hands others to dynamic background workers, at most
 * ccrm.max_parallel_jobs at a time; each one runs a single job with the
 * same code as ccrm.run_due_jobs() (job_run.c).
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "spi_debug.h"
#include "job.h"
#include "scheduler.h"

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
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ccrm_scheduler_main(Datum arg);
PGDLLEXPORT void ccrm_job_worker_main(Datum arg);

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
/* how often old runs are purged (ccrm.job_history_retention) */
#define PURGE_EVERY_MS (3600 * 1000)

typedef struct SchedulerShared
{
	slock_t		mutex;
	pid_t		pid;			/* the scheduler's, while it runs; else 0 */
	Latch	   *latch;			/* the scheduler's, while it runs */
} SchedulerShared;

/* what a dynamic worker is told */
typedef struct JobWorkerArgs
{
	Oid			dboid;
	int64		job_id;
	TimestampTz slot;
} JobWorkerArgs;

typedef struct InFlight
{
	int64		job_id;
	BackgroundWorkerHandle *handle;
} InFlight;

static SchedulerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;

static InFlight *inflight = NULL;
static TimestampTz last_purge = 0;
static int	ninflight = 0;
static int	ready = -1;		/* extension seen: 1 yes, 0 no, -1 not looked yet */

/* ---------------------------------------------------------------------- */

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SchedulerShared)));
}

static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("ccrm scheduler", sizeof(SchedulerShared), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		shared->pid = 0;
		shared->latch = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit && shared != NULL)
	{
		Latch	   *latch;

		SpinLockAcquire(&shared->mutex);
		latch = shared->latch;
		SpinLockRelease(&shared->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
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
	pid_t		pid;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	pid = shared->pid;
	SpinLockRelease(&shared->mutex);
	return pid != 0;
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
							"Dynamic background workers the scheduler may use for jobs due at the same time.",
							"0 runs every job in the scheduler itself, one after another.",
							&ccrm_max_parallel_jobs, 2, 0, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
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

static void
forget_stopped_workers(void)
{
	for (int i = 0; i < ninflight;)
	{
		pid_t		pid;

		if (GetBackgroundWorkerPid(inflight[i].handle, &pid) == BGWH_STOPPED)
		{
			pfree(inflight[i].handle);
			inflight[i] = inflight[--ninflight];
		}
		else
			i++;
	}
}

static bool
start_job_worker(int64 job_id, TimestampTz slot)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	JobWorkerArgs args = {MyDatabaseId, job_id, slot};
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ccrm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ccrm_job_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ccrm job %lld", (long long) job_id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ccrm job");
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;
	inflight[ninflight].job_id = job_id;
	inflight[ninflight].handle = handle;
	ninflight++;
	return true;
}

static bool
ccrm_is_ready(void)
{
	return OidIsValid(get_extension_oid("ccrm", true)) &&
		OidIsValid(get_relname_relid("job", get_namespace_oid(CCRM_SCHEMA, true)));
}

/*
 * One pass: run or hand out what is due; return how long to sleep (ms).
 */
static long
scheduler_pass(bool *first)
{
	CcrmRunMode mode = {false, true};
	long		sleep_ms = MAX_SLEEP_MS;
	bool		any_busy = false;
	List	   *busy = NIL;

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

	if (*first)
	{
		int			n = CcrmMarkInterrupted();

		if (n > 0)
			ereport(LOG,
					(errmsg("ccrm scheduler marked %d run%s interrupted", n, n == 1 ? "" : "s")));
		*first = false;
	}
	if (TimestampDifferenceExceeds(last_purge, GetCurrentTimestamp(), PURGE_EVERY_MS))
	{
		CcrmPurgeJobHistory();
		last_purge = GetCurrentTimestamp();
	}

	for (;;)
	{
		Oid			types[2] = {TIMESTAMPTZOID, INT8ARRAYOID};
		Datum		args[2];
		Datum	   *skip;
		int			nskip = 0;
		ListCell   *lc;
		int			ndue;
		int64		job_id = 0;
		TimestampTz slot = 0;
		bool		isnull;
		bool		job_busy;

		forget_stopped_workers();
		skip = palloc(sizeof(Datum) * (ninflight + list_length(busy) + 1));
		for (int i = 0; i < ninflight; i++)
			skip[nskip++] = Int64GetDatum(inflight[i].job_id);
		foreach(lc, busy)
			skip[nskip++] = Int64GetDatum(*(int64 *) lfirst(lc));
		args[0] = TimestampTzGetDatum(GetCurrentTimestamp());
		args[1] = PointerGetDatum(construct_array(skip, nskip, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_with_args("SELECT id, next_run FROM ccrm.job"
								  " WHERE active AND next_run OPERATOR(pg_catalog.<=) $1"
								  "   AND id OPERATOR(pg_catalog.<>) ALL ($2)"
								  " ORDER BY next_run, id LIMIT 65",
								  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.job");
		ndue = (int) SPI_processed;
		if (ndue == 0)
			break;

		/* the first runs here; others go to dynamic workers while there are some */
		for (int i = 0; i < ndue; i++)
		{
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			TimestampTz at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

			if (i == 0)
			{
				job_id = id;
				slot = at;
			}
			else if (ninflight >= ccrm_max_parallel_jobs || !start_job_worker(id, at))
				break;
		}

		pgstat_report_activity(STATE_RUNNING, psprintf("ccrm scheduler: running job %lld", (long long) job_id));
		(void) CcrmRunJob(&mode, job_id, slot, CCRM_RUN_SCHEDULE, &job_busy);
		if (job_busy)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
			int64	   *p = palloc(sizeof(int64));

			*p = job_id;
			busy = lappend(busy, p);
			MemoryContextSwitchTo(old);
			any_busy = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			break;
	}

	/* sleep until the next due time of a job nobody is running */
	{
		bool		isnull;
		Datum		next;

		if (SPI_execute("SELECT pg_catalog.min(next_run) FROM ccrm.job WHERE active", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.job");
		next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz at = DatumGetTimestampTz(next);

			if (at <= now)
				sleep_ms = (ninflight > 0 || any_busy) ? BUSY_POLL_MS : 0;
			else
				sleep_ms = Min((long) ((at - now + 999) / 1000), (long) MAX_SLEEP_MS);
		}
	}
	if (any_busy)
		sleep_ms = Min(sleep_ms, BUSY_POLL_MS);
	list_free_deep(busy);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(true);
	return sleep_ms;
}

static void
scheduler_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->pid == MyProcPid)
	{
		shared->pid = 0;
		shared->latch = NULL;
	}
	SpinLockRelease(&shared->mutex);
}

void
ccrm_scheduler_main(Datum arg)
{
	bool		first = true;
	char	   *dbname;
	pid_t		other = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* the launcher found the database; if it was dropped since, this fails */
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	inflight = MemoryContextAllocZero(TopMemoryContext, sizeof(InFlight) * 65);

	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		if (shared->pid == 0)
		{
			shared->pid = MyProcPid;
			shared->latch = MyLatch;
		}
		else
			other = shared->pid;
		SpinLockRelease(&shared->mutex);
		if (other != 0)
		{
			ereport(LOG, (errmsg("ccrm scheduler is running already (PID %d)", (int) other)));
			proc_exit(0);
		}
		before_shmem_exit(scheduler_detach, (Datum) 0);
	}
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
		sleep_ms = scheduler_pass(&first);
		if (sleep_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * A dynamic worker: run one job's due slot, then exit.
 */
void
ccrm_job_worker_main(Datum arg pg_attribute_unused())
{
	JobWorkerArgs args;
	CcrmRunMode mode = {false, true};
	bool		busy;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	CcrmSPIConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, psprintf("ccrm: running job %lld", (long long) args.job_id));
	(void) CcrmRunJob(&mode, args.job_id, args.slot, CCRM_RUN_SCHEDULE, &busy);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
