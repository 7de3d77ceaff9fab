/*-------------------------------------------------------------------------
 *
 * sequence_due.c
 *	  The instant a step of a follow-up sequence is due.
 *
 *	  From the instant the step counts from (the previous step's execution,
 *	  or for the first step the match), delay_days calendar days are added
 *	  in the recipient's zone: the local date moves, the local wall time
 *	  stays, whatever DST changes lie between (a delay of 0 keeps the
 *	  instant itself).  The step is due at the first instant at or after
 *	  that which satisfies together
 *		- the day rule: any day; working days (the working_days setting
 *		  minus ccrm.holiday, the test of slots.c); the weekend (Saturday
 *		  and Sunday); or one weekday (holidays do not matter to these);
 *		- not_before: no earlier than that local time on its local day;
 *		- for SMS steps: outside the recipient's quiet hours (quiet_hours.c:
 *		  the window of the recipient's country, else the default one), as
 *		  if the policy were defer -- a step is never dropped, it is
 *		  scheduled after the quiet hours.  A NULL or empty country is the
 *		  phone_country setting, as the outbox reads it, so the outbox never
 *		  finds inside quiet hours a message this put outside them.
 *	  Local times become instants as PostgreSQL reads a local timestamp in
 *	  the zone: a time the clocks skip counts as the time before the
 *	  change (an hour later on the clock), a time they repeat as its second
 *	  occurrence (the offset after the change).
 *
 *	  Search.  Starting at the delayed instant t, each round tests t and,
 *	  when one condition fails, moves t to the earliest later instant where
 *	  that condition can hold: the next local midnight (a day the rule
 *	  forbids), the day's not_before, or the end of the quiet window
 *	  containing t.  Every instant passed over fails the condition that
 *	  moved t, so the first instant found satisfying all three is the
 *	  earliest one; a quiet-hours end that lands on a forbidden day or
 *	  before not_before is simply moved on by the next round.  Every move
 *	  goes strictly forward (a move that would not is a can't-happen
 *	  error).
 *
 *	  Termination.  Each day takes at most five rounds (the day, not_before,
 *	  two quiet windows, the move to the next day), and the search gives up
 *	  with an error after 14 days, or for working days 7 * (holidays + 2)
 *	  days: by then every weekday the rule allows has come round at least
 *	  once past every holiday, so a day with no instant left (a not_before
 *	  inside quiet hours that last until midnight) is no accident of the
 *	  calendar: the error (22023) says so.  A rule that names no day (a working_days setting with no
 *	  ISO weekday, which only a restore can store) is an error up front.
 *	  Every round checks for interrupts.
 *
 *	  Settings.  Called once per row of set-based UPDATEs over hundreds of
 *	  thousands of enrolments, so nothing here runs SPI per call.  What is
 *	  read (the time_zone, working_days, phone_country and quiet-hours
 *	  settings, ccrm.holiday) is kept in a cache, each part read the first
 *	  time a call needs it.  The cache lives in a memory context under
 *	  TopTransactionContext (its reset callback forgets it when the
 *	  transaction ends) and holds for as long as the active snapshot sees
 *	  the same data: the same local transaction and subtransaction (a
 *	  rolled back one takes its writes along), command id, xmin, xmax and
 *	  number of running (sub)transactions.  Two snapshots of a
 *	  transaction that agree on these see the same rows (transactions
 *	  running at the first one can only have finished by the second if
 *	  their count changed; new ones start at or after xmax), so a change
 *	  to ccrm.setting or ccrm.holiday, by this transaction (a new command)
 *	  or by another one committed in between (a new snapshot), is read
 *	  again.  One statement reads the settings once.
 *
 *	  ccrm.step_due_time is PARALLEL SAFE: a parallel worker keeps its own
 *	  cache, and reading typed settings there needs no subtransaction
 *	  (type_input.c). *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"
#include "sequence_due.h"
#include "setting.h"
#include "slots.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_step_due_time);

/* days searched before giving up (see the file header) */
#define DUE_SEARCH_DAYS		14
/* rounds of the search a day can take, with room to spare */
#define DUE_ROUNDS_PER_DAY	6

static const char *const weekday_names[7] = {
	"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"
};


/* What the due-time arithmetic reads, for the data one snapshot sees. */
typedef struct DueCache
{
	MemoryContext cxt;			/* owns this and everything below */
	MemoryContextCallback reset;	/* forgets the cache when cxt goes */

	/* the snapshot the cache was read under (see the file header) */
	LocalTransactionId lxid;
	SubTransactionId subid;
	CommandId	curcid;
	TransactionId xmin;
	TransactionId xmax;
	uint32		xcnt;
	int32		subxcnt;
	bool		suboverflowed;

	/* each part is read the first time a call needs it */
	bool		have_zone;
	char	   *default_zone;	/* the time_zone setting */
	pg_tz	   *default_tz;
	bool		have_days;
	CcrmSlotRules days;			/* working_days and holidays only */
	bool		have_quiet;
	MsgQuietHours *qh;
	char	   *phone_country;	/* "" for none */

	/* the last zone asked for by name */
	char		zone_name[TZ_STRLEN_MAX + 1];
	pg_tz	   *zone_tz;
} DueCache;

static DueCache *due_cache = NULL;

static void
due_cache_forget(void *arg)
{
	if (due_cache == (DueCache *) arg)
		due_cache = NULL;
}

/* The cache for the active snapshot; an empty one when it does not hold. */
static DueCache *
due_cache_get(void)
{
	Snapshot	snap = ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;
	LocalTransactionId lxid = snap ? MyProc->lxid : InvalidLocalTransactionId;
	SubTransactionId subid = GetCurrentSubTransactionId();
	DueCache   *c = due_cache;
	MemoryContext cxt;

	if (c && lxid != InvalidLocalTransactionId && c->lxid == lxid && c->subid == subid &&
		c->curcid == snap->curcid && c->xmin == snap->xmin && c->xmax == snap->xmax &&
		c->xcnt == snap->xcnt && c->subxcnt == snap->subxcnt &&
		c->suboverflowed == snap->suboverflowed)
		return c;

	if (c)
		MemoryContextDelete(c->cxt);	/* the callback clears due_cache */
	Assert(due_cache == NULL);
	cxt = AllocSetContextCreate(TopTransactionContext, "ccrm step due time", ALLOCSET_SMALL_SIZES);
	c = MemoryContextAllocZero(cxt, sizeof(DueCache));
	c->cxt = cxt;
	c->reset.func = due_cache_forget;
	c->reset.arg = c;
	MemoryContextRegisterResetCallback(cxt, &c->reset);
	c->lxid = lxid;
	c->subid = subid;
	if (snap)
	{
		c->curcid = snap->curcid;
		c->xmin = snap->xmin;
		c->xmax = snap->xmax;
		c->xcnt = snap->xcnt;
		c->subxcnt = snap->subxcnt;
		c->suboverflowed = snap->suboverflowed;
	}
	due_cache = c;
	return c;
}

/* The time_zone setting, read into the cache once. */
static void
load_zone(DueCache *c)
{
	MemoryContext old = MemoryContextSwitchTo(c->cxt);

	c->default_zone = CcrmSettingGet("time_zone");
	c->default_tz = CcrmTimeZone(c->default_zone, false);
	MemoryContextSwitchTo(old);
	c->have_zone = true;
}

static void
load_days(DueCache *c)
{
	MemoryContext old = MemoryContextSwitchTo(c->cxt);

	CcrmLoadWorkingDays(&c->days);
	MemoryContextSwitchTo(old);
	c->have_days = true;
}

static void
load_quiet(DueCache *c)
{
	MemoryContext old = MemoryContextSwitchTo(c->cxt);

	c->qh = MsgQuietHoursLoad();
	c->phone_country = CcrmSettingGet("phone_country");
	MemoryContextSwitchTo(old);
	c->have_quiet = true;
}

/* A zone by name (ERROR 22023 when there is none), the last one kept. */
static pg_tz *
lookup_zone(DueCache *c, const char *name)
{
	pg_tz	   *tz;

	if (c->zone_tz && strcmp(c->zone_name, name) == 0)
		return c->zone_tz;
	c->zone_tz = NULL;
	tz = CcrmTimeZone(name, false);
	strlcpy(c->zone_name, name, sizeof(c->zone_name));
	c->zone_tz = tz;
	return c->zone_tz;
}

/* Whether text names a day rule; if so, which (and the weekday, 0 = Sunday). */
bool
CcrmLookupDayRule(const char *text, CcrmDayRule *rule, int *weekday)
{
	*weekday = 0;
	if (strcmp(text, "any") == 0)
		*rule = CCRM_DAY_ANY;
	else if (strcmp(text, "working_days") == 0)
		*rule = CCRM_DAY_WORKING;
	else if (strcmp(text, "weekend") == 0)
		*rule = CCRM_DAY_WEEKEND;
	else
	{
		for (int i = 0; i < 7; i++)
			if (strcmp(text, weekday_names[i]) == 0)
			{
				*rule = CCRM_DAY_WEEKDAY;
				*weekday = i;
				return true;
			}
		return false;
	}
	return true;
}

void
CcrmParseDayRule(const char *text, CcrmDayRule *rule, int *weekday)
{
	if (!CcrmLookupDayRule(text, rule, weekday))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown day rule \"%s\"", text),
				 errhint(CCRM_DAY_RULE_HINT)));
}

static const char *
rule_name(const CcrmStepTiming *timing)
{
	switch (timing->rule)
	{
		case CCRM_DAY_ANY:
			return "any";
		case CCRM_DAY_WORKING:
			return "working_days";
		case CCRM_DAY_WEEKEND:
			return "weekend";
		case CCRM_DAY_WEEKDAY:
			return weekday_names[timing->weekday];
	}
	return "?";
}

/* Whether the rule lets the step run on a local day. */
static bool
day_allowed(const DueCache *c, const CcrmStepTiming *timing, DateADT day)
{
	int			wd = j2day(day + POSTGRES_EPOCH_JDATE);	/* 0 = Sunday */

	switch (timing->rule)
	{
		case CCRM_DAY_ANY:
			return true;
		case CCRM_DAY_WORKING:
			return CcrmIsWorkingDay(&c->days, day);
		case CCRM_DAY_WEEKEND:
			return wd == 0 || wd == 6;
		case CCRM_DAY_WEEKDAY:
			return wd == timing->weekday;
	}
	return false;
}

/* The local date and time of day of an instant in a zone. */
static void
local_parts(TimestampTz t, pg_tz *tz, DateADT *day, TimeADT *time)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;

	if (timestamp2tm(t, &offset, &tm, &fsec, NULL, tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	*day = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - POSTGRES_EPOCH_JDATE;
	*time = ((((int64) tm.tm_hour * MINS_PER_HOUR + tm.tm_min) * SECS_PER_MINUTE) + tm.tm_sec)
		* USECS_PER_SEC + fsec;
}

/* A local date as YYYY-MM-DD, whatever DateStyle says. */
static char *
format_day(DateADT day)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return psprintf("%04d-%02d-%02d", y, m, d);
}

/*
 * Whether t, on its local day, fails the step's timing; if so *next is the
 * earliest later instant where the condition that failed can hold.
 */
static bool
move_on(const DueCache *c, const CcrmStepTiming *timing, TimestampTz t, DateADT day, pg_tz *tz,
		const char *zone_name, const char *country, TimestampTz *next)
{
	if (!day_allowed(c, timing, day))
	{
		*next = CcrmLocalTimestamp(day + 1, 0, tz);	/* the next local midnight */
		return true;
	}
	if (timing->has_not_before)
	{
		*next = CcrmLocalTimestamp(day, timing->not_before, tz);
		if (t < *next)
			return true;
	}
	return timing->sms && MsgQuietHoursCheck(c->qh, t, zone_name, country, next, NULL);
}

static void
report_no_due_time(const CcrmStepTiming *timing, int ndays, DateADT first_day, const char *zone_name)
{
	char	   *not_before = timing->has_not_before ?
		psprintf(", at or after %s",
				 DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(timing->not_before)))) : "";

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("no due time satisfies the step's timing"),
			 errdetail("No instant in the %d days from %s in %s is on a day the rule %s allows%s%s.",
					   ndays, format_day(first_day), zone_name, rule_name(timing), not_before,
					   timing->sms ? " and outside the SMS quiet hours" : ""),
			 errhint("Choose an earliest time outside the quiet hours, or another day rule.")));
}

static void
check_timing(const CcrmStepTiming *timing)
{
	if (timing->delay_days < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay_days must not be negative, not %d", timing->delay_days),
				 errhint("A step runs 0 or more days after the previous one.")));
	if (timing->rule == CCRM_DAY_WEEKDAY && (timing->weekday < 0 || timing->weekday > 6))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weekday %d is not a day of the week", timing->weekday),
				 errhint("Use 0 (Sunday) to 6 (Saturday).")));
	if ((int) timing->rule < (int) CCRM_DAY_ANY || (int) timing->rule > (int) CCRM_DAY_WEEKDAY)
		elog(ERROR, "unknown day rule %d", (int) timing->rule);
	if (timing->has_not_before && (timing->not_before < 0 || timing->not_before >= USECS_PER_DAY))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("not_before must be a time of day before 24:00"),
				 errhint("Give the earliest local time the step may run at, such as 09:00.")));
}

TimestampTz
CcrmStepDueTime(TimestampTz after, const CcrmStepTiming *timing, const char *zone, const char *country)
{
	DueCache   *c;
	pg_tz	   *tz;
	const char *zone_name;
	TimestampTz t = after;
	DateADT		day;
	TimeADT		time;
	DateADT		first_day;
	int			ndays;
	int			max_rounds;

	check_timing(timing);
	if (TIMESTAMP_NOT_FINITE(after))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the instant a step counts from must be finite"),
				 errhint("Give the previous step's execution time, or for the first step when the record matched.")));

	c = due_cache_get();
	if (zone == NULL)
	{
		if (!c->have_zone)
			load_zone(c);
		zone_name = c->default_zone;
		tz = c->default_tz;
	}
	else
	{
		zone_name = zone;
		tz = lookup_zone(c, zone);
	}
	if (timing->rule == CCRM_DAY_WORKING)
	{
		if (!c->have_days)
			load_days(c);
		if ((c->days.working_days & 0xFE) == 0)	/* bits 1 to 7: ISO weekdays */
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("day rule working_days allows no day"),
					 errdetail("The working_days setting names no ISO weekday."),
					 errhint("Name at least one, e.g. SELECT ccrm.set_setting('working_days', '{1,2,3,4,5}').")));
	}
	if (timing->sms)
	{
		if (!c->have_quiet)
			load_quiet(c);
		if (country == NULL || country[0] == '\0')
			country = c->phone_country;
	}

	/* the delay, in local calendar days at the same local time */
	local_parts(after, tz, &day, &time);
	if (timing->delay_days > 0)
	{
		if ((int64) day + timing->delay_days >= (int64) TIMESTAMP_END_JULIAN - POSTGRES_EPOCH_JDATE)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("the due time %d days after %s is out of range", timing->delay_days,
							format_day(day))));
		t = CcrmLocalTimestamp(day + timing->delay_days, time, tz);
		local_parts(t, tz, &day, &time);
	}

	/* the earliest instant from t on satisfying the three conditions */
	ndays = timing->rule == CCRM_DAY_WORKING ? 7 * (c->days.nholidays + 2) : DUE_SEARCH_DAYS;
	first_day = day;
	max_rounds = DUE_ROUNDS_PER_DAY * (ndays + 1);
	for (int round = 0;; round++)
	{
		TimestampTz next;

		CHECK_FOR_INTERRUPTS();
		if (round > 0)
			local_parts(t, tz, &day, &time);
		if (day >= first_day + ndays)
			report_no_due_time(timing, ndays, first_day, zone_name);
		if (round > max_rounds)
			elog(ERROR, "no due time found in %d rounds", round);
		if (!move_on(c, timing, t, day, tz, zone_name, country, &next))
			return t;
		if (next <= t)
			elog(ERROR, "due time search does not advance at %s", timestamptz_to_str(t));
		t = next;
	}
}

static void
null_arg(FunctionCallInfo fcinfo, int argno, const char *name, const char *hint)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name),
				 errhint("%s", hint)));
}

/*
 * ccrm.step_due_time(after timestamptz, delay_days integer,
 *     day_rule text DEFAULT 'any', not_before time DEFAULT NULL,
 *     time_zone text DEFAULT NULL, sms boolean DEFAULT false,
 *     country text DEFAULT NULL) -> timestamptz
 */
Datum
ccrm_step_due_time(PG_FUNCTION_ARGS)
{
	CcrmStepTiming timing;
	char	   *zone;
	char	   *country;

	null_arg(fcinfo, 0, "after", "Give the instant the step counts from.");
	null_arg(fcinfo, 1, "delay_days", "Give the days after the previous step, 0 or more.");
	null_arg(fcinfo, 2, "day_rule", CCRM_DAY_RULE_HINT);
	null_arg(fcinfo, 5, "sms", "Say whether the step sends an SMS (true or false).");

	memset(&timing, 0, sizeof(timing));
	timing.delay_days = PG_GETARG_INT32(1);
	CcrmParseDayRule(text_to_cstring(PG_GETARG_TEXT_PP(2)), &timing.rule, &timing.weekday);
	timing.has_not_before = !PG_ARGISNULL(3);
	if (timing.has_not_before)
		timing.not_before = PG_GETARG_TIMEADT(3);
	zone = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	timing.sms = PG_GETARG_BOOL(5);
	country = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));

	PG_RETURN_TIMESTAMPTZ(CcrmStepDueTime(PG_GETARG_TIMESTAMPTZ(0), &timing, zone, country));
}
