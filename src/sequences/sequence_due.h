/*-------------------------------------------------------------------------
 *
 * sequence_due.h
 *	  The instant a step of a follow-up sequence is due: the delay in local
 *	  calendar days, the day rule, the earliest local time and, for SMS, the
 *	  recipient's quiet hours, satisfied together (sequence_due.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SEQUENCE_DUE_H
#define CCRM_SEQUENCE_DUE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/date.h"

typedef enum CcrmDayRule
{
	CCRM_DAY_ANY, CCRM_DAY_WORKING, CCRM_DAY_WEEKEND, CCRM_DAY_WEEKDAY
} CcrmDayRule;

typedef struct CcrmStepTiming
{
	int			delay_days;		/* >= 0 */
	CcrmDayRule rule;
	int			weekday;		/* 0 = Sunday .. 6 = Saturday, only for CCRM_DAY_WEEKDAY */
	bool		has_not_before; /* earliest local time of day */
	TimeADT		not_before;
	bool		sms;			/* also out of SMS quiet hours */
} CcrmStepTiming;

/* parse 'any' | 'working_days' | 'weekend' | 'monday'..'sunday' (ERROR 22023 with hint otherwise) */
#define CCRM_DAY_RULE_HINT "Use any, working_days, weekend, or one weekday from monday to sunday."
extern bool CcrmLookupDayRule(const char *text, CcrmDayRule *rule, int *weekday);
extern void CcrmParseDayRule(const char *text, CcrmDayRule *rule, int *weekday);

/*
 * The due instant: from `after` add delay_days calendar days in `zone` (local
 * wall time kept across DST), then the first instant >= that which is on an
 * allowed day, at or after not_before local time on that day, and (sms)
 * outside the recipient's quiet hours (country may be NULL) -- one instant
 * satisfying all three together.  Errors (22023) for a zone that does not
 * exist, a rule that allows no day (e.g. working_days when the working_days
 * setting plus holidays leave none within a bounded search).  Every loop
 * bounded, with CHECK_FOR_INTERRUPTS.
 */
extern TimestampTz CcrmStepDueTime(TimestampTz after, const CcrmStepTiming *timing, const char *zone,
								   const char *country);

#endif							/* CCRM_SEQUENCE_DUE_H */
