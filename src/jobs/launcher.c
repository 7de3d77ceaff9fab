/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The process that waits for ccrm.database_name and keeps the scheduler
 *	  and the delivery worker running there.
 *
 * Registered from shared_preload_libraries, the launcher starts once
 * recovery has finished (a standby runs nothing; a promoted one starts it).
 * It is connected to no database, only to the shared catalogs, so it can
 * look the database up in pg_database without failing when it does not
 * exist yet: the usual order is to start the server, then create the
 * database and the extension.  While the database is missing it logs once
 * and looks again every second; once it exists it starts the scheduler
 * (scheduler.c) and the delivery worker (delivery_worker.c) there as
 * dynamic background workers and sleeps until one of them stops
 * (bgw_notify_pid wakes it), then looks again.
 *
 * Invariants:
 *	- At most one scheduler and one delivery worker run in the cluster: the
 *	  launcher starts one only while it has none of its own and none has
 *	  announced itself in shared memory (CcrmSchedulerRunning,
 *	  CcrmDeliveryRunning), so a launcher restarted after an error does not
 *	  start a second one next to the first.
 *	- A worker that stopped for another reason than a move to a new
 *	  database is started again after RESTART_DELAY_MS, as the postmaster
 *	  would restart a static worker; nothing here exits while it waits, so
 *	  the log shows no worker exits while the database is missing.
 *	- The launcher holds no locks and no transaction while it sleeps.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "scheduler.h"
#include "delivery.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ccrm_launcher_main(Datum arg);

/* how often a missing database is looked for */
#define POLL_MS 1000
/* pause before starting again a scheduler that stopped by itself */
#define RESTART_DELAY_MS 5000

/* Register the launcher; call from _PG_init under shared_preload_libraries. */
void
CcrmLauncherRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ccrm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ccrm_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ccrm launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ccrm launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * The oid of ccrm.database_name, or InvalidOid while it does not exist.
 * Without a database only a heap scan of the shared catalog is possible
 * (the relcache knows no indexes), as the logical replication launcher does;
 * pg_database is small.
 */
static Oid
lookup_database(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), ccrm_database_name) == 0)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dboid;
}

/* A worker the launcher keeps running in ccrm.database_name. */
typedef struct Managed
{
	const char *function;		/* its main function in ccrm */
	const char *name;			/* bgw_name and bgw_type */
	bool		(*running) (void);	/* whether one announced itself in shared memory */
	BackgroundWorkerHandle *handle;
	char	   *started_for;	/* ccrm.database_name it was started for */
	TimestampTz not_before;
	bool		said_no_slot;
} Managed;

static Managed managed[] = {
	{"ccrm_scheduler_main", "ccrm scheduler", CcrmSchedulerRunning},
	{"ccrm_delivery_main", "ccrm delivery", CcrmDeliveryRunning},
};

static BackgroundWorkerHandle *
start_worker(Managed *m, Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ccrm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", m->function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", m->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", m->name);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

void
ccrm_launcher_main(Datum arg pg_attribute_unused())
{
	bool		said_waiting = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_activity(STATE_IDLE, NULL);

	for (;;)
	{
		long		sleep_ms = -1;	/* woken when a worker stops, or by a reload */
		Oid			dboid = InvalidOid;
		bool		looked = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			said_waiting = false;
		}

		for (size_t i = 0; i < lengthof(managed); i++)
		{
			Managed    *m = &managed[i];

			if (m->handle != NULL)
			{
				pid_t		pid;

				if (GetBackgroundWorkerPid(m->handle, &pid) != BGWH_STOPPED)
					continue;
				else
				{
					bool		moved = strcmp(m->started_for, ccrm_database_name) != 0;

					pfree(m->handle);
					m->handle = NULL;
					pfree(m->started_for);
					m->started_for = NULL;
					/* a move starts at once; anything else as a crashed worker would */
					m->not_before = moved ? 0 :
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RESTART_DELAY_MS);
				}
			}

			if (GetCurrentTimestamp() < m->not_before || m->running())
			{
				sleep_ms = POLL_MS;
				continue;
			}
			if (!looked)
			{
				dboid = lookup_database();
				looked = true;
			}
			if (!OidIsValid(dboid))
			{
				if (!said_waiting)
					ereport(LOG,
							(errmsg("ccrm launcher is waiting for database \"%s\" to be created",
									ccrm_database_name),
							 errdetail("The scheduler and the delivery worker start there once the database exists (ccrm.database_name).")));
				said_waiting = true;
				sleep_ms = POLL_MS;
			}
			else if ((m->handle = start_worker(m, dboid)) == NULL)
			{
				if (!m->said_no_slot)
					ereport(LOG,
							(errmsg("ccrm launcher could not start the %s", m->name + 5),
							 errhint("Raise max_worker_processes.")));
				m->said_no_slot = true;
				sleep_ms = POLL_MS;
			}
			else
			{
				m->started_for = MemoryContextStrdup(TopMemoryContext, ccrm_database_name);
				said_waiting = false;
				m->said_no_slot = false;
			}
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (sleep_ms >= 0 ? WL_TIMEOUT : 0),
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
