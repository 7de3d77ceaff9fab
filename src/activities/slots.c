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
 *	  Working days are the working_days setting minus the days of
 *	  ccrm.holiday (CcrmLoadWorkingDays, CcrmIsWorkingDay); the follow-up
 *	  sequences' day rule uses the same test (sequence_due.c).
 *
 *	  Local wall-clock times become instants through the zone's rules for
 *	  that day (DetermineTimeZoneOffset), so a day across a DST change still
 *	  starts at its local day start.
 *
 *	  Termination.  The rules are checked before the first slot: at least
 *	  one ISO weekday works, at least one event a day, and an event fits
 *	  between the first start and the latest end.  Then every week has a
 *	  working weekday, each holiday takes away one day, and after the end of
 *	  the last calendar event every working day has room (but for a day whose
 *	  window a DST gap shortens), so each slot is found within
 *	  7 * (holidays + 3) days after the later of the cursor's day and the
 *	  day the last event ends (cur->busy_until).  The cursor refuses to walk
 *	  further (a can't-happen error), and a calendar event that never ends
 *	  ('infinity') is an error, not an endless search.  Every loop checks
 *	  for interrupts.
 *
 *	  Cost.  The cursor only moves forward, and busy events are sorted by
 *	  start.  Two pointers walk them once each: one counts the plan's events
 *	  on the day they start (for per_day), the other absorbs every event
 *	  that starts before a candidate slot would end and keeps the latest end
 *	  absorbed, past which the slot moves (past_busy).  Placing n events
 *	  over d days for a user with b calendar events costs O(n + b + d), each
 *	  day's working-day test a binary search of the h holidays (O(log h)),
 *	  and walking to a working day at most 7 * (h + 3) days.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "setting.h"
#include "slots.h"
#include "spi_debug.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/* bits of CcrmSlotRules.working_days that are ISO weekdays (1 << 1 ... 1 << 7) */
#define WEEKDAY_BITS 0xFE

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

/*
 * The working days of the rules: the working_days setting, and the days of
 * ccrm.holiday sorted for CcrmIsWorkingDay's binary search, allocated in the
 * caller's memory context.  Reads through its own SPI connection (nested
 * when the caller has one), as the caller under the caller's snapshot.
 */
void
CcrmLoadWorkingDays(CcrmSlotRules *rules)
{
	MemoryContext cxt = CurrentMemoryContext;

	rules->working_days = CcrmSettingWorkingDays();
	CcrmSPIConnect();
	if (SPI_execute("SELECT day FROM ccrm.holiday ORDER BY day", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.holiday");
	rules->nholidays = (int) SPI_processed;
	rules->holidays = MemoryContextAlloc(cxt, sizeof(DateADT) * Max(rules->nholidays, 1));
	for (int i = 0; i < rules->nholidays; i++)
	{
		bool		isnull;

		rules->holidays[i] = DatumGetDateADT(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
}

/*
 * Check that the rules leave room for an event on some day; an error
 * otherwise (the settings and plans are checked when written, but a restore
 * trusts the dumped data).
 */
void
CcrmSlotRulesCheck(const CcrmSlotRules *rules)
{
	if ((rules->working_days & WEEKDAY_BITS) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("setting working_days names no working day"),
				 errhint("Name at least one ISO weekday, e.g. SELECT ccrm.set_setting('working_days', '{1,2,3,4,5}').")));
	if (rules->per_day < 1 || rules->duration <= 0 || rules->first + rules->duration > rules->latest_end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no event fits into a day under these rules"),
				 errhint("A day needs room for at least one event of the plan's duration between its first start and latest end.")));
}

void
CcrmSlotCursorInit(CcrmSlotCursor *cur, pg_tz *tz, DateADT first_day, CcrmBusy *busy, int nbusy)
{
	TimestampTz last_end = DT_NOBEGIN;

	memset(cur, 0, sizeof(*cur));
	cur->tz = tz;
	cur->day = first_day;
	cur->busy = busy;
	cur->nbusy = nbusy;
	cur->absorbed_end = DT_NOBEGIN;
	/* an event that never ends is an error if the search ever reaches it */
	for (int i = 0; i < nbusy; i++)
		if (!TIMESTAMP_NOT_FINITE(busy[i].end) && busy[i].end > last_end)
			last_end = busy[i].end;
	cur->busy_until = last_end == DT_NOBEGIN ? first_day : Max(first_day, CcrmLocalDate(last_end, tz));
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
	/* events are counted on the day they start: earlier ones never again */
	while (cur->pos < cur->nbusy && cur->busy[cur->pos].start < midnight)
		cur->pos++;
	for (int i = cur->pos; i < cur->nbusy && cur->busy[i].start < next_midnight; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (cur->busy[i].same_plan)
			cur->count++;
	}
	cur->day_open = true;
}

/* The next day the cursor may use, past non-working days and holidays. */
static void
next_working_day(const CcrmSlotRules *rules, CcrmSlotCursor *cur, DateADT limit)
{
	while (!CcrmIsWorkingDay(rules, cur->day))
	{
		CHECK_FOR_INTERRUPTS();
		if (cur->day >= limit)
			elog(ERROR, "no working day up to day %d", limit);
		cur->day++;
	}
}

/*
 * The earliest start at or after s whose slot overlaps no calendar event,
 * or one that ends after the day (the caller then tries the next day).
 * Events are taken in start order, each once (cur->scan): every event that
 * starts before the slot would end is absorbed, and the slot moves past the
 * latest end absorbed so far.  Since slots only move forward, an absorbed
 * event starts before every later slot's end too, so staying past its end
 * is all it takes never to overlap it.
 */
static TimestampTz
past_busy(const CcrmSlotRules *rules, CcrmSlotCursor *cur, TimestampTz s)
{
	for (;;)
	{
		if (s < cur->absorbed_end)
			s = cur->absorbed_end;
		if (s + rules->duration > cur->day_end ||
			cur->scan >= cur->nbusy || cur->busy[cur->scan].start >= s + rules->duration)
			return s;
		CHECK_FOR_INTERRUPTS();
		if (TIMESTAMP_NOT_FINITE(cur->busy[cur->scan].end))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no free slot after %s: the calendar has an event that never ends",
							timestamptz_to_str(Max(cur->busy[cur->scan].start, s))),
					 errhint("Give the event an end (ccrm.activity.ends_at).")));
		if (cur->busy[cur->scan].end > cur->absorbed_end)
			cur->absorbed_end = cur->busy[cur->scan].end;
		cur->scan++;
	}
}

/* The next free slot of this user; the cursor moves past it. */
void
CcrmSlotNext(const CcrmSlotRules *rules, CcrmSlotCursor *cur, TimestampTz *start, TimestampTz *end)
{
	/* see the file header: by then some day has room */
	DateADT		limit = Max(cur->day, cur->busy_until) + 7 * (rules->nholidays + 3);

	CcrmSlotRulesCheck(rules);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (!cur->day_open)
		{
			if (cur->day > limit)
				elog(ERROR, "no room for an event up to day %d", limit);
			next_working_day(rules, cur, limit);
			open_day(rules, cur);
		}
		if (cur->count < rules->per_day)
		{
			TimestampTz s = past_busy(rules, cur, cur->next);

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
