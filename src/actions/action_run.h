/*-------------------------------------------------------------------------
 *
 * action_run.h
 *	  What the actions on a target group (mass updates, field formulas,
 *	  module tools) share: the run they belong to (a ccrm.job_run row),
 *	  the action date, and the batched, audited, set-based update that
 *	  writes new field values for the members of a group.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_ACTION_RUN_H
#define CCRM_ACTION_RUN_H

#include "postgres.h"

#include "entity.h"
#include "utils/jsonb.h"
#include "utils/date.h"
#include "utils/timestamp.h"

/* GUC variables (action_run.c) */
extern int	ccrm_batch_size;
extern int	ccrm_audit_retention;

/* The run an action works for. */
typedef struct CcrmRun
{
	int64		id;				/* ccrm.job_run.id */
	int64		group_id;
	TimestampTz action_time;
	char	   *time_zone;		/* IANA zone the action date is read in */
	DateADT		action_date;	/* (action_time AT TIME ZONE time_zone)::date */
	bool		direct;			/* started by a direct SQL call */
} CcrmRun;

/* A group as actions see it. */
typedef struct CcrmGroup
{
	int64		id;
	char	   *name;
	CcrmEntity *entity;
	int64		member_count;
} CcrmGroup;

/* Why an audited update could not change a row (CcrmUpdate.skipped). */
typedef enum CcrmSkipReason
{
	CCRM_SKIP_DELETED,			/* deleted by another transaction during the run */
	CCRM_SKIP_ROW_SECURITY,		/* readable, but row level security forbids updating it */
	CCRM_SKIP_TRIGGER,			/* a BEFORE UPDATE trigger returned NULL */
	CCRM_SKIP_REASONS
} CcrmSkipReason;

/* One field an update writes, with the SQL of its new value (over alias t). */
typedef struct CcrmAssign
{
	const CcrmField *field;
	char	   *value_sql;
} CcrmAssign;

/*
 * An update of one entity for the members of a group: target keys come
 * from the member keys of a batch ($1, int8[]) through key_sql; the values
 * may use parameters $4 ... (param_types/param_values, 0-based from $4).
 */
typedef struct CcrmUpdate
{
	CcrmEntity *target;
	char	   *key_sql;		/* SELECT of target keys as column "id" */
	List	   *assigns;		/* CcrmAssign * */
	int			nparams;
	Oid		   *param_types;
	Datum	   *param_values;
	bool	   *param_nulls;
	const char *label;			/* for progress: "mass_update", a formula name */
	int			step;			/* order within the run (undo goes backwards) */
	bool		constant_values;	/* no value reads the row (mass updates):
									 * the audit's new values are computed once */
	/* set by CcrmRunUpdate: rows it meant to change but could not, by reason */
	int64		skipped[CCRM_SKIP_REASONS];
} CcrmUpdate;

extern void CcrmActionInit(void);

/* Groups */
extern CcrmGroup *CcrmGroupLoad(int64 group_id);
extern List *CcrmUpdateTargets(const CcrmGroup *group);
extern char *CcrmTargetKeySql(const CcrmGroup *group, const char *target);

/* Runs */
extern CcrmRun *CcrmRunBeginDirect(const char *kind, int64 group_id, const char *detail,
								   TimestampTz at);
extern CcrmRun *CcrmRunForJob(int64 run_id, int64 group_id, TimestampTz action_time,
							  const char *time_zone);
extern void CcrmRunFinishDirect(CcrmRun *run, Jsonb *counts);

/* The batched update: returns the number of rows changed. */
extern int64 CcrmRunUpdate(CcrmRun *run, CcrmGroup *group, CcrmUpdate *upd, bool audit);
extern void CcrmAppendSkipped(StringInfo buf, List *names, List *updates);

/* Small jsonb helpers */
extern Jsonb *CcrmJsonbFromCString(const char *json);
extern JsonbValue *CcrmJsonbGet(Jsonb *obj, const char *key);
extern bool CcrmJsonbBool(Jsonb *obj, const char *key, bool dflt, const char *what);

#endif							/* CCRM_ACTION_RUN_H */
