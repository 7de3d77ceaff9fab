/*-------------------------------------------------------------------------
 *
 * job.h
 *	  The job catalog (ccrm.job) and the runs of jobs (ccrm.job_run).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_JOB_H
#define CCRM_JOB_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "pgtime.h"
#include "utils/jsonb.h"

/* job.c */
extern pg_tz *CcrmJobTimeZone(const char *name);
extern void CcrmJobRecheck(int64 job_id);	/* ERROR when the job may not run any more */

/* job_run.c */
typedef enum CcrmRunTrigger
{
	CCRM_RUN_SCHEDULE,			/* due by its schedule */
	CCRM_RUN_MANUAL,			/* ccrm.run_job */
	CCRM_RUN_CHAIN				/* before or after another job */
} CcrmRunTrigger;

/*
 * How runs are wrapped in transactions.  Atomic: all in the caller's
 * transaction (ccrm.run_job).  Otherwise each run commits its "running"
 * row first and its outcome after, by SPI_commit in a procedure or by
 * ending and starting transactions in a background worker.
 */
typedef struct CcrmRunMode
{
	bool		atomic;
	bool		in_worker;
	TimestampTz at;			/* the instant runs act at (ccrm.run_job and
								 * ccrm.run_due_jobs take it); 0: the clock */
} CcrmRunMode;

extern int64 CcrmRunJob(CcrmRunMode *mode, int64 job_id, TimestampTz slot,
						CcrmRunTrigger trigger, bool *busy);
extern bool CcrmJobLockedElsewhere(int64 job_id);
extern int	CcrmMarkInterrupted(void);
extern void CcrmPurgeJobHistory(void);

#endif							/* CCRM_JOB_H */
