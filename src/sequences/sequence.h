/*-------------------------------------------------------------------------
 *
 * sequence.h
 *	  Follow-up sequences: definitions and their checks (sequence.c), and
 *	  the enrolment passes and step processing (sequence_run.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SEQUENCE_H
#define CCRM_SEQUENCE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/date.h"
#include "utils/jsonb.h"

/*---- GUC variables ----*/
extern int	ccrm_sequence_reconcile_interval;	/* seconds */
extern int	ccrm_sequence_batch_size;

/* A sequence as stored; allocated in the caller's memory context. */
typedef struct SeqDef
{
	int64		id;
	char	   *name;
	char	   *entity;
	Jsonb	   *filter;
	Jsonb	   *exit_filter;	/* NULL: none */
	bool		exit_when_unmatched;
	char	   *reenrol;		/* never, after_end, after_cooldown */
	char	   *cooldown;		/* interval as text, or NULL */
	bool		active;
	bool		only_new;
	char	   *snapshot;		/* pg_snapshot as text, or NULL */
	bool		has_reconciled;
	TimestampTz reconciled_at;
	Oid			owner;
} SeqDef;

/* One step, checked. */
typedef struct SeqStep
{
	int64		id;
	int			position;
	char	   *action;			/* email_customer, sms_customer, email_user, task_user */
	int			delay_days;
	char	   *day_rule;
	bool		has_not_before;
	TimeADT		not_before;
	int64		template_id;
	char	   *template_name;
	char	   *recipient;		/* record, owner, user */
	bool		has_user;
	int64		user_id;
	bool		has_sender;		/* the step's or the template's sender */
	int64		sender_id;
	int			task_due_days;
	const char *medium;			/* "email", "sms", or NULL for a task */
} SeqStep;

/* sequence.c; SPI connected */
extern SeqDef *SeqLoad(const char *name, int64 id, bool lock);
extern List *SeqLoadSteps(const SeqDef *seq, bool check);	/* SeqStep *, by position */
extern void SeqCheckDefinition(const SeqDef *seq, List *steps);

/* sequence_run.c; SPI connected, run confined to the sequence's owner */
extern int64 SeqEnrolPass(const SeqDef *seq, List *steps, bool full, TimestampTz at);
extern void SeqSchedulerPass(TimestampTz at);
extern void SeqRunInit(void);
extern void SeqWatchTable(const char *entity, Oid relid, const char *key, bool install);

#endif							/* CCRM_SEQUENCE_H */
