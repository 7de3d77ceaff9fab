/*-------------------------------------------------------------------------
 *
 * slots.h
 *	  The per-user slot allocator for generated calendar events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SLOTS_H
#define CCRM_SLOTS_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "pgtime.h"
#include "utils/date.h"

/* An event already in a user's calendar. */
typedef struct CcrmBusy
{
	TimestampTz start;
	TimestampTz end;
	bool		same_plan;		/* counts toward the plan's per-day cap */
} CcrmBusy;

/* The rules of a plan, the same for every user. */
typedef struct CcrmSlotRules
{
	TimeADT		first;			/* first start of a day: max(day start, earliest) */
	TimeADT		latest_end;		/* no event ends later */
	int64		duration;		/* microseconds, less than a day */
	int			per_day;		/* at most this many of the plan's events a day */
	int			working_days;	/* bit (1 << isodow) per working day */
	DateADT    *holidays;		/* sorted */
	int			nholidays;
} CcrmSlotRules;

/* Where one user's next event can go. */
typedef struct CcrmSlotCursor
{
	pg_tz	   *tz;				/* the user's zone */
	DateADT		day;			/* local day being filled */
	bool		day_open;		/* day, next and count are set up */
	TimestampTz next;			/* no earlier start on this day */
	TimestampTz day_end;		/* latest end on this day */
	int			count;			/* the plan's events on this day */
	CcrmBusy   *busy;			/* sorted by start */
	int			nbusy;
	int			pos;			/* first busy entry not starting before the day */
	int			scan;			/* first busy entry not absorbed yet */
	TimestampTz absorbed_end;	/* latest end of the entries before scan */
	DateADT		busy_until;		/* local day the last (finite) busy entry ends */
} CcrmSlotCursor;

extern void CcrmSlotRulesCheck(const CcrmSlotRules *rules);
extern void CcrmSlotCursorInit(CcrmSlotCursor *cur, pg_tz *tz, DateADT first_day,
							   CcrmBusy *busy, int nbusy);
extern void CcrmSlotNext(const CcrmSlotRules *rules, CcrmSlotCursor *cur,
						 TimestampTz *start, TimestampTz *end);
extern TimestampTz CcrmLocalTimestamp(DateADT day, TimeADT time, pg_tz *tz);
extern DateADT CcrmLocalDate(TimestampTz ts, pg_tz *tz);
extern bool CcrmIsWorkingDay(const CcrmSlotRules *rules, DateADT day);
/* the working_days setting and the days of ccrm.holiday (sorted), in the caller's memory */
extern void CcrmLoadWorkingDays(CcrmSlotRules *rules);

#endif							/* CCRM_SLOTS_H */
