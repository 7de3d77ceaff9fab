/*-------------------------------------------------------------------------
 *
 * executor_pool.h
 *	  The pool of long-lived background workers that run due jobs for the
 *	  scheduler, and the shared-memory queue the scheduler hands jobs on.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_EXECUTOR_POOL_H
#define CCRM_EXECUTOR_POOL_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* most executors there can be (the upper bound of ccrm.max_parallel_jobs) */
#define CCRM_POOL_MAX 64

extern int	ccrm_executor_idle_timeout;

/* shared memory: size to request, and attach/initialise */
extern Size CcrmPoolShmemSize(void);
extern void CcrmPoolShmemInit(void);

/* ccrm.max_parallel_jobs, at least 1: how many executors may run at once */
extern int	CcrmPoolSize(void);

/* The scheduler: take charge of the pool for this database (at start). */
extern void CcrmPoolAttachScheduler(void);

/*
 * Jobs handed on and not yet finished (queued or running in an executor);
 * fills ids (room for CCRM_POOL_MAX * 2) and returns how many.
 */
extern int	CcrmPoolPendingJobs(int64 *ids);

/*
 * Hand a due job on: queue it for an idle executor, starting one when none
 * is idle and the pool is not full.  False when the pool is full (or no
 * worker could be started); the job then stays due and is offered again.
 */
extern bool CcrmPoolSubmit(int64 job_id, TimestampTz slot);

/*
 * The scheduler's housekeeping at each pass: forget executors that failed
 * to start.  Returns true when an executor died while running a job (its
 * run must be marked interrupted), and fills broken (room for
 * CCRM_POOL_MAX) with the jobs executors could not even record a run of,
 * *nbroken with their number.
 */
extern bool CcrmPoolReap(int64 *broken, int *nbroken);

#endif							/* CCRM_EXECUTOR_POOL_H */
