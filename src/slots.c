/*-------------------------------------------------------------------------
 *
 * slots.c
 *	  The per-user slot allocator: where the next generated event of a user
 *	  goes.  Events are placed in the user's local time, one after the
 *	  other from the day's first start (the later of the plan's day start
 *	  and the earliest start), each `duration` long, none ending after the
 *	  latest end, at most `per_day` of the plan's events a day (those a
 *	  previous run already placed count too), only on working days that are
 *	  not holidays, and never overlapping an event already in the calendar.
 *	  What does not fit rolls to the next working day.
 *
 *	  Local wall-clock times become instants through the zone's rules for
 *	  that day (DetermineTimeZoneOffset), so a day across a DST change still
 *	  starts at its local day start.  The cursor only moves forward; busy
 *	  events are visited once each, so placing n events costs O(n + busy).
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "slots.h"

#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/* The instant a local date and time of a zone stand for. */
TimestampTz
CcrmLocalTimestamp(DateADT day, TimeADT time, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	Timestamp	result;

	memset(&tm, 0, sizeof(tm));
	j2date(day + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	time2tm(time, &tm, &fsec);
	offset = DetermineTimeZoneOffset(&tm, tz);
	if (tm2timestamp(&tm, fsec, &offset, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return result;
}

/* The local date of an instant in a zone. */
DateADT
CcrmLocalDate(TimestampTz ts, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;

	if (timestamp2tm(ts, &offset, &tm, &fsec, NULL, tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - POSTGRES_EPOCH_JDATE;
}

bool
CcrmIsWorkingDay(const CcrmSlotRules *rules, DateADT day)
{
	int			wd = j2day(day + POSTGRES_EPOCH_JDATE);	/* 0 = Sunday */
	int			lo = 0;
	int			hi = rules->nholidays - 1;

	if ((rules->working_days & (1 << (wd == 0 ? 7 : wd))) == 0)
		return false;
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (rules->holidays[mid] == day)
			return false;
		if (rules->holidays[mid] < day)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return true;
}

void
CcrmSlotCursorInit(CcrmSlotCursor *cur, pg_tz *tz, DateADT first_day, CcrmBusy *busy, int nbusy)
{
	memset(cur, 0, sizeof(*cur));
	cur->tz = tz;
	cur->day = first_day;
	cur->busy = busy;
	cur->nbusy = nbusy;
}

/* Set the cursor up on its day: window, and the plan's events already there. */
static void
open_day(const CcrmSlotRules *rules, CcrmSlotCursor *cur)
{
	TimestampTz midnight = CcrmLocalTimestamp(cur->day, 0, cur->tz);
	TimestampTz next_midnight = CcrmLocalTimestamp(cur->day + 1, 0, cur->tz);

	cur->next = CcrmLocalTimestamp(cur->day, rules->first, cur->tz);
	cur->day_end = CcrmLocalTimestamp(cur->day, rules->latest_end, cur->tz);
	cur->count = 0;
	while (cur->pos < cur->nbusy && cur->busy[cur->pos].end <= midnight)
		cur->pos++;
	for (int i = cur->pos; i < cur->nbusy && cur->busy[i].start < next_midnight; i++)
		if (cur->busy[i].same_plan && cur->busy[i].start >= midnight)
			cur->count++;
	cur->day_open = true;
}

/* The next free slot of this user; the cursor moves past it. */
void
CcrmSlotNext(const CcrmSlotRules *rules, CcrmSlotCursor *cur, TimestampTz *start, TimestampTz *end)
{
	for (;;)
	{
		TimestampTz s;
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (!cur->day_open)
		{
			while (!CcrmIsWorkingDay(rules, cur->day))
				cur->day++;
			open_day(rules, cur);
		}
		s = cur->next;
		if (cur->count < rules->per_day)
		{
			/* skip past events in the calendar that the slot would overlap */
			for (i = cur->pos; i < cur->nbusy && cur->busy[i].start < s + rules->duration; i++)
			{
				if (cur->busy[i].end > s)
				{
					s = cur->busy[i].end;
					i = cur->pos - 1;	/* rescan: a later event may overlap now */
				}
				if (s + rules->duration > cur->day_end)
					break;
			}
			if (s + rules->duration <= cur->day_end)
			{
				*start = s;
				*end = s + rules->duration;
				cur->next = *end;
				cur->count++;
				return;
			}
		}
		cur->day++;
		cur->day_open = false;
	}
}
