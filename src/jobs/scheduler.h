/*-------------------------------------------------------------------------
 *
 * scheduler.h
 *	  The scheduler background worker, its launcher, its GUCs and its
 *	  wake-up call.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SCHEDULER_H
#define CCRM_SCHEDULER_H

#include "postgres.h"

extern char *ccrm_database_name;
extern bool ccrm_enable_scheduler;
extern int	ccrm_max_parallel_jobs;
extern int	ccrm_max_job_failures;
extern int	ccrm_job_history_retention;

/* _PG_init: GUCs, and with shared_preload_libraries the worker and its shmem */
extern void CcrmSchedulerInit(void);

/* Ask the scheduler to look at ccrm.job again when this transaction commits. */
extern void CcrmSchedulerWakeAtCommit(void);

/* Wake the scheduler now (an executor is done, a job changed). */
extern void CcrmSchedulerWake(void);

/* Whether a scheduler process runs (it announces itself in shared memory). */
extern bool CcrmSchedulerRunning(void);

/* launcher.c: register the process that starts the scheduler in its database */
extern void CcrmLauncherRegister(void);

#endif							/* CCRM_SCHEDULER_H */
