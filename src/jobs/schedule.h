/*-------------------------------------------------------------------------
 *
 * schedule.h
 *	  Job schedules: cron expressions and intervals of seconds, and the
 *	  next time they fire in a time zone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SCHEDULE_H
#define CCRM_SCHEDULE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "pgtime.h"

typedef struct CcrmSchedule
{
	int			interval_secs;	/* > 0: fires every so many seconds */
	uint64		minutes;		/* bit per minute 0..59 */
	uint32		hours;			/* bit per hour 0..23 */
	uint32		days;			/* bit per day of month 1..31 */
	uint32		months;			/* bit per month 1..12 */
	uint32		weekdays;		/* bit per weekday 0..6, 0 = Sunday */
	bool		days_any;		/* day-of-month field starts with "*" */
	bool		weekdays_any;	/* day-of-week field starts with "*" */
	bool		hours_any;		/* hour field starts with "*": keeps its beat through a repeated hour */
} CcrmSchedule;

/* Parse a schedule; an ERROR naming the bad field when it is not valid. */
extern void CcrmScheduleParse(const char *spec, CcrmSchedule *out);

/*
 * The first time strictly after "after" that the schedule fires, reading
 * cron fields as wall-clock time in tz.  A wall-clock time skipped by a DST
 * change fires at the first instant after the gap; one that occurs twice
 * fires once, at its first occurrence, unless the hour field starts with
 * "*" (hours_any): then at both.  Intervals fire "after" + N seconds.
 * Returns DT_NOEND when a cron expression never fires, when the next time
 * would be past the end of the timestamp range, and for an infinite after.
 */
extern TimestampTz CcrmScheduleNext(const CcrmSchedule *s, TimestampTz after, pg_tz *tz);

#endif							/* CCRM_SCHEDULE_H */
