/*-------------------------------------------------------------------------
 *
 * executor_pool.c
 *	  The pool of long-lived background workers ("ccrm executor") that run
 *	  due jobs, and the shared-memory queue the scheduler hands jobs on.
 *
 * The scheduler (scheduler.c) only finds due jobs and hands them on; it never
 * runs a job's action itself, so a long run holds nothing back.  Executors
 * are dynamic background workers in the scheduler's database, started on
 * demand up to ccrm.max_parallel_jobs.  Each takes the oldest queued job,
 * runs it with the same code as ccrm.run_due_jobs() (job_run.c, which
 * claims the slot under the job's lock, so a job handed on twice still runs
 * once), then waits on its latch for the next one; after
 * ccrm.executor_idle_timeout without work it exits.  Keeping them alive
 * spares a process start and a database connection per run.
 *
 * Invariants (all under PoolShared.mutex, a spinlock held for a few
 * instructions, never across a call that can fail):
 *	- A slot is FREE, STARTING (registered, not attached yet), IDLE or BUSY.
 *	- The queue never holds more jobs than there are IDLE and STARTING
 *	  executors to take them: the scheduler queues a job only then, and an
 *	  executor leaves (IDLE -> FREE) only while the queue is empty.  So a
 *	  queued job is taken without delay, and a job the pool has no room for
 *	  stays due in ccrm.job and is offered again when an executor is done.
 *	- An executor that ends while BUSY (terminated, FATAL) sets died_busy
 *	  once its locks are gone (on_shmem_exit), and the scheduler then marks
 *	  the run interrupted.  A job whose bookkeeping failed is reported in
 *	  broken_job, and the scheduler leaves it alone for a while.
 *	- Executors serve the database named in dboid; one that finds another
 *	  there (the scheduler moved) exits.  A slot counts its registrations
 *	  (generation): an executor that starts after the scheduler gave up on
 *	  it finds another generation in its slot and exits.
 * A crash of any process resets shared memory, and with it the pool.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "executor_pool.h"
#include "job.h"
#include "scheduler.h"
#include "spi_debug.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ccrm_executor_main(Datum arg);

int			ccrm_executor_idle_timeout = 60;

/* a registered executor that has not attached by then failed to start */
#define START_TIMEOUT_MS 10000

typedef enum ExecState
{
	EXEC_FREE = 0,
	EXEC_STARTING,
	EXEC_IDLE,
	EXEC_BUSY
} ExecState;

typedef struct ExecSlot
{
	ExecState	state;
	pid_t		pid;			/* IDLE, BUSY: the executor's */
	Latch	   *latch;			/* IDLE, BUSY: the executor's */
	int64		job_id;			/* BUSY: the job it runs */
	TimestampTz since;			/* STARTING: registered at */
	uint32		generation;		/* counts registrations, so a late starter knows it is not wanted */
	int64		broken_job;		/* a job it could not record a run of; 0: none */
} ExecSlot;

/* what an executor is told at its start */
typedef struct ExecutorArgs
{
	Oid			dboid;
	uint32		generation;
} ExecutorArgs;

typedef struct QueuedJob
{
	int64		job_id;
	TimestampTz slot;
} QueuedJob;

typedef struct PoolShared
{
	slock_t		mutex;
	Oid			dboid;			/* the scheduler's database */
	bool		died_busy;		/* an executor ended while running a job */
	int			qhead;			/* index of the oldest queued job */
	int			qcount;
	QueuedJob	queue[CCRM_POOL_MAX];
	ExecSlot	slots[CCRM_POOL_MAX];
} PoolShared;

static PoolShared *pool = NULL;

/* the scheduler's handles of the executors it registered, by slot */
static BackgroundWorkerHandle *handles[CCRM_POOL_MAX];
static bool said_no_worker = false;

/* the executor's own slot */
static int	my_slot = -1;

/* ---------------------------------------------------------------------- */

Size
CcrmPoolShmemSize(void)
{
	return MAXALIGN(sizeof(PoolShared));
}

void
CcrmPoolShmemInit(void)
{
	bool		found;

	pool = ShmemInitStruct("ccrm executor pool", sizeof(PoolShared), &found);
	if (!found)
	{
		memset(pool, 0, sizeof(PoolShared));
		SpinLockInit(&pool->mutex);
	}
}

int
CcrmPoolSize(void)
{
	return Max(1, Min(ccrm_max_parallel_jobs, CCRM_POOL_MAX));
}

/* Caller holds the mutex. */
static void
count_slots(int *idle, int *starting, int *live)
{
	*idle = *starting = *live = 0;
	for (int i = 0; i < CCRM_POOL_MAX; i++)
	{
		ExecState	s = pool->slots[i].state;

		if (s == EXEC_IDLE)
			(*idle)++;
		else if (s == EXEC_STARTING)
			(*starting)++;
		if (s != EXEC_FREE)
			(*live)++;
	}
}

/* Caller holds the mutex: drop the newest queued jobs beyond room. */
static void
trim_queue(void)
{
	int			idle,
				starting,
				live;

	count_slots(&idle, &starting, &live);
	if (pool->qcount > idle + starting)
		pool->qcount = idle + starting;
}

void
CcrmPoolAttachScheduler(void)
{
	Latch	   *latches[CCRM_POOL_MAX];
	int			n = 0;

	SpinLockAcquire(&pool->mutex);
	pool->dboid = MyDatabaseId;
	pool->qcount = 0;			/* what a previous scheduler queued is due still */
	pool->died_busy = true;		/* look for runs left running once */
	for (int i = 0; i < CCRM_POOL_MAX; i++)
		if (pool->slots[i].state == EXEC_IDLE || pool->slots[i].state == EXEC_BUSY)
			latches[n++] = pool->slots[i].latch;
	SpinLockRelease(&pool->mutex);
	/* executors of another database look and leave */
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

int
CcrmPoolPendingJobs(int64 *ids)
{
	int			n = 0;

	SpinLockAcquire(&pool->mutex);
	for (int i = 0; i < pool->qcount; i++)
		ids[n++] = pool->queue[(pool->qhead + i) % CCRM_POOL_MAX].job_id;
	for (int i = 0; i < CCRM_POOL_MAX; i++)
		if (pool->slots[i].state == EXEC_BUSY)
			ids[n++] = pool->slots[i].job_id;
	SpinLockRelease(&pool->mutex);
	return n;
}

/* Caller holds the mutex and made sure there is room. */
static void
push_job(int64 job_id, TimestampTz slot)
{
	QueuedJob  *q = &pool->queue[(pool->qhead + pool->qcount) % CCRM_POOL_MAX];

	q->job_id = job_id;
	q->slot = slot;
	pool->qcount++;
}

static bool
start_executor(int slot, uint32 generation)
{
	ExecutorArgs args = {MyDatabaseId, generation};
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ccrm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ccrm_executor_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ccrm executor %d", slot + 1);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ccrm executor");
	worker.bgw_main_arg = Int32GetDatum(slot);
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;
	if (handles[slot] != NULL)
		pfree(handles[slot]);
	handles[slot] = handle;
	return true;
}

bool
CcrmPoolSubmit(int64 job_id, TimestampTz slot)
{
	Latch	   *latches[CCRM_POOL_MAX];
	int			nlatches = 0;
	int			idle,
				starting,
				live;
	int			free_slot = -1;
	uint32		generation;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&pool->mutex);
	count_slots(&idle, &starting, &live);
	if (idle + starting > pool->qcount)
	{
		push_job(job_id, slot);
		for (int i = 0; i < CCRM_POOL_MAX; i++)
			if (pool->slots[i].state == EXEC_IDLE)
				latches[nlatches++] = pool->slots[i].latch;
		SpinLockRelease(&pool->mutex);
		/* every idle one looks; the first takes it */
		for (int i = 0; i < nlatches; i++)
			SetLatch(latches[i]);
		return true;
	}
	if (live < CcrmPoolSize())
	{
		for (int i = 0; i < CCRM_POOL_MAX && free_slot < 0; i++)
			if (pool->slots[i].state == EXEC_FREE)
				free_slot = i;
	}
	if (free_slot < 0)
	{
		SpinLockRelease(&pool->mutex);
		return false;
	}
	pool->slots[free_slot].state = EXEC_STARTING;
	pool->slots[free_slot].since = now;
	pool->slots[free_slot].broken_job = 0;
	generation = ++pool->slots[free_slot].generation;
	push_job(job_id, slot);
	SpinLockRelease(&pool->mutex);

	if (start_executor(free_slot, generation))
	{
		said_no_worker = false;
		return true;
	}

	SpinLockAcquire(&pool->mutex);
	pool->slots[free_slot].state = EXEC_FREE;
	trim_queue();
	SpinLockRelease(&pool->mutex);
	if (!said_no_worker)
		ereport(LOG,
				(errmsg("ccrm scheduler could not start an executor; due jobs wait for a running one"),
				 errhint("Raise max_worker_processes, or lower ccrm.max_parallel_jobs.")));
	said_no_worker = true;
	return false;
}

bool
CcrmPoolReap(int64 *broken, int *nbroken)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		stopped[CCRM_POOL_MAX];
	bool		died;

	/* ask the postmaster first: no spinlock around that */
	for (int i = 0; i < CCRM_POOL_MAX; i++)
	{
		pid_t		pid;

		stopped[i] = handles[i] != NULL &&
			GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED;
	}

	*nbroken = 0;
	SpinLockAcquire(&pool->mutex);
	for (int i = 0; i < CCRM_POOL_MAX; i++)
	{
		ExecSlot   *s = &pool->slots[i];

		/* registered but never attached: it failed to start */
		if (s->state == EXEC_STARTING &&
			(stopped[i] ||
			 (handles[i] == NULL && TimestampDifferenceExceeds(s->since, now, START_TIMEOUT_MS))))
			s->state = EXEC_FREE;
		if (s->broken_job != 0)
		{
			broken[(*nbroken)++] = s->broken_job;
			s->broken_job = 0;
		}
	}
	trim_queue();
	died = pool->died_busy;
	pool->died_busy = false;
	SpinLockRelease(&pool->mutex);

	for (int i = 0; i < CCRM_POOL_MAX; i++)
		if (stopped[i])
		{
			pfree(handles[i]);
			handles[i] = NULL;
		}
	return died;
}

/* ---------------------------------------------------------------------- */

/* on_shmem_exit: after the abort released the job's lock, free the slot. */
static void
executor_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	bool		was_busy = false;

	if (my_slot < 0)
		return;
	SpinLockAcquire(&pool->mutex);
	if (pool->slots[my_slot].pid == MyProcPid)
	{
		was_busy = pool->slots[my_slot].state == EXEC_BUSY;
		if (was_busy)
			pool->died_busy = true;
		pool->slots[my_slot].state = EXEC_FREE;
		pool->slots[my_slot].pid = 0;
		pool->slots[my_slot].latch = NULL;
		trim_queue();
	}
	SpinLockRelease(&pool->mutex);
	if (was_busy)
		CcrmSchedulerWake();
}

/* Run one job in transactions of its own; errors are logged and reported. */
static void
run_one(int64 job_id, TimestampTz slot, MemoryContext cxt)
{
	CcrmRunMode mode = {false, true};
	bool		busy;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	CcrmSPIConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, psprintf("ccrm: running job %lld", (long long) job_id));
	PG_TRY();
	{
		(void) CcrmRunJob(&mode, job_id, slot, CCRM_RUN_SCHEDULE, &busy);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* as PostgresMain does after an error: report, abort, go on */
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();
		ereport(LOG,
				(errmsg("ccrm executor could not run job %lld; the scheduler leaves it alone for a while",
						(long long) job_id)));
		SpinLockAcquire(&pool->mutex);
		pool->slots[my_slot].broken_job = job_id;
		SpinLockRelease(&pool->mutex);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
}

/*
 * An executor: take queued jobs and run them until idle for
 * ccrm.executor_idle_timeout.
 */
void
ccrm_executor_main(Datum arg)
{
	ExecutorArgs args;
	TimestampTz last_work;
	MemoryContext cxt;

	my_slot = DatumGetInt32(arg);
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	cxt = AllocSetContextCreate(TopMemoryContext, "ccrm executor", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	SpinLockAcquire(&pool->mutex);
	if (pool->slots[my_slot].state != EXEC_STARTING ||
		pool->slots[my_slot].generation != args.generation || pool->dboid != MyDatabaseId)
	{
		/* the scheduler gave up on it (and may have used its slot again), or moved */
		SpinLockRelease(&pool->mutex);
		proc_exit(0);
	}
	pool->slots[my_slot].pid = MyProcPid;
	pool->slots[my_slot].latch = MyLatch;
	pool->slots[my_slot].state = EXEC_IDLE;
	SpinLockRelease(&pool->mutex);
	on_shmem_exit(executor_detach, (Datum) 0);
	last_work = GetCurrentTimestamp();

	for (;;)
	{
		QueuedJob	job = {0, 0};
		bool		leave = false;
		long		idle_ms;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		idle_ms = (long) ((now - last_work) / 1000);
		SpinLockAcquire(&pool->mutex);
		if (pool->dboid != MyDatabaseId)
			leave = true;
		else if (pool->qcount > 0)
		{
			job = pool->queue[pool->qhead];
			pool->qhead = (pool->qhead + 1) % CCRM_POOL_MAX;
			pool->qcount--;
			pool->slots[my_slot].state = EXEC_BUSY;
			pool->slots[my_slot].job_id = job.job_id;
		}
		else if (idle_ms >= (long) ccrm_executor_idle_timeout * 1000)
			leave = true;
		else
		{
			int			idle,
						starting,
						live;

			/* ccrm.max_parallel_jobs was lowered: the surplus leaves */
			count_slots(&idle, &starting, &live);
			leave = live > CcrmPoolSize();
		}
		if (leave)
		{
			pool->slots[my_slot].state = EXEC_FREE;
			pool->slots[my_slot].pid = 0;
			pool->slots[my_slot].latch = NULL;
		}
		SpinLockRelease(&pool->mutex);
		if (leave)
			proc_exit(0);

		if (job.job_id != 0)
		{
			run_one(job.job_id, job.slot, cxt);
			MemoryContextReset(cxt);
			SpinLockAcquire(&pool->mutex);
			pool->slots[my_slot].state = EXEC_IDLE;
			pool->slots[my_slot].job_id = 0;
			SpinLockRelease(&pool->mutex);
			CcrmSchedulerWake();
			last_work = GetCurrentTimestamp();
			continue;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max((long) ccrm_executor_idle_timeout * 1000 - idle_ms, 1),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
