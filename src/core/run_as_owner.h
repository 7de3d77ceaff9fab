/*-------------------------------------------------------------------------
 *
 * run_as_owner.h
 *	  Runs of definitions confined to one role (run_as_owner.c), as
 *	  REFRESH MATERIALIZED VIEW runs its query: as that role, in a
 *	  security-restricted operation, with settings rolled back at the end
 *	  and search_path pinned to pg_catalog, pg_temp.  Nothing a run does
 *	  outlives it except its data changes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_RUN_AS_OWNER_H
#define CCRM_RUN_AS_OWNER_H

#include "postgres.h"

#include "fmgr.h"

/* State of one confined run, kept by the caller between Begin and End/Abort. */
typedef struct CcrmConfinement
{
	bool		active;
	Oid			role;			/* the run executes as this role */
	Oid			save_user;		/* restored at the end */
	int			save_sec;
	int			nestlevel;		/* GUC nest level rolled back at the end */
	int			ntemp;			/* objects of the session's temporary schema */
	uint64	   *temp;			/* at the start: (classid << 32 | objid), sorted */
} CcrmConfinement;

typedef Datum (*CcrmConfinedFunc) (void *arg);

/* _PG_init: the utility hook that keeps runs from changing their session. */
extern void CcrmRunAsOwnerInit(void);

/*
 * Begin a run as role; End checks that it left nothing in the session
 * (an ERROR otherwise, after which Abort must still be called) and
 * restores the caller's user, security context and settings.  After an
 * error, call Abort BEFORE rolling back the (sub)transaction; it never
 * fails.
 */
extern void CcrmConfineBegin(CcrmConfinement *c, Oid role);
extern void CcrmConfineEnd(CcrmConfinement *c);
extern void CcrmConfineAbort(CcrmConfinement *c);

/* fn(arg), confined to role; errors pass through after the run is undone. */
extern Datum CcrmRunConfined(Oid role, CcrmConfinedFunc fn, void *arg);

/* Is a confined run in progress in this backend? */
extern bool CcrmInConfinedRun(void);

#endif							/* CCRM_RUN_AS_OWNER_H */
