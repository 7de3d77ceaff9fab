/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Cron schedules and intervals: parsing, and the next firing time in an
 *	  IANA time zone with defined behaviour across DST changes.
 *
 * A schedule is either five cron fields (minute hour day-of-month month
 * day-of-week) with lists, ranges, steps and month/weekday names, one of the
 * macros @hourly @daily @weekly @monthly @yearly (alone), or "N seconds".
 * As in Vixie cron (and pg_cron), when both day fields are restricted a day
 * matches either, and a day field that starts with "*" (also with a step)
 * is unrestricted; a weekday range ending in Sunday (mon-sun, sat-0) ends
 * at 7.
 *
 * Next-fire walks local calendar days and maps each matching wall-clock time
 * to an instant with the zone's own rules (pg_localtime), so the answer is
 * what a person reading the schedule in that zone expects: a time in a DST
 * gap fires at the end of the gap; a time that occurs twice fires at its
 * first occurrence, or, when the hour field starts with "*", at both, so
 * that such a job keeps its beat in elapsed time (as Vixie cron runs
 * wildcard jobs when clocks go back).
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "instant.h"
#include "schedule.h"
#include "setting.h"

#include <ctype.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_next_runs);

#define SCHEDULE_HINT \
	"A schedule is five cron fields \"minute hour day-of-month month day-of-week\" such as \"0 11 * * thu\", " \
	"one of @hourly @daily @weekly @monthly @yearly, or an interval such as \"30 seconds\"."

/* how far ahead a cron expression is searched (covers Feb 29 on a weekday) */
#define SEARCH_DAYS (366 * 28)

typedef struct CronField
{
	const char *name;
	int			min;
	int			max;
	const char *const *names;	/* names for min.. (NULL: numbers only) */
} CronField;

static const char *const month_names[] =
{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] =
{"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const CronField cron_fields[5] = {
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day of month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day of week", 0, 7, day_names},	/* 7 is Sunday too */
};

static void
bad_field(const char *spec, int fieldno, const char *fmt, const char *item)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid schedule \"%s\": %s field: %s \"%s\"",
					spec, cron_fields[fieldno].name, fmt, item),
			 errdetail("The %s is field %d of 5.", cron_fields[fieldno].name, fieldno + 1),
			 errhint(SCHEDULE_HINT)));
}

/* A number or a name in a field; advances *p.  -1 when there is neither. */
static int
field_value(const CronField *f, const char **p)
{
	const char *s = *p;

	if (isdigit((unsigned char) *s))
	{
		int			v = 0;

		while (isdigit((unsigned char) *s) && v < 10000)
			v = v * 10 + (*s++ - '0');
		*p = s;
		return v;
	}
	if (f->names != NULL && isalpha((unsigned char) s[0]) && isalpha((unsigned char) s[1]) &&
		isalpha((unsigned char) s[2]))
	{
		for (int i = 0; f->names[i] != NULL; i++)
		{
			if (pg_strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char) s[3]))
			{
				*p = s + 3;
				return f->min + i;
			}
		}
	}
	return -1;
}

/*
 * One cron field ("1-5,10/2" …) into a bit set; true when it starts with
 * "*" (a bare star, or a star with a step), which for the day fields
 * means unrestricted, as in Vixie cron and pg_cron.
 */
static bool
parse_field(const char *spec, int fieldno, const char *text_in, uint64 *bits)
{
	const CronField *f = &cron_fields[fieldno];
	char	   *copy = pstrdup(text_in);
	char	   *save = NULL;
	bool		star = (text_in[0] == '*');

	*bits = 0;
	if (copy[0] == ',' || copy[strlen(copy) - 1] == ',' || strstr(copy, ",,") != NULL)
		bad_field(spec, fieldno, "empty item in", text_in);
	for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save))
	{
		const char *p = item;
		int			lo,
					hi,
					step = 1;

		if (*p == '*')
		{
			lo = f->min;
			hi = (fieldno == 4) ? 6 : f->max;
			p++;
		}
		else
		{
			lo = field_value(f, &p);
			if (lo < 0)
				bad_field(spec, fieldno, "not a value in", item);
			hi = lo;
			if (*p == '-')
			{
				p++;
				hi = field_value(f, &p);
				if (hi < 0)
					bad_field(spec, fieldno, "no end of range in", item);
				/* "mon-sun", "sat-0": a weekday range ending in Sunday ends at 7 */
				if (fieldno == 4 && hi == 0 && lo > 0)
					hi = 7;
			}
			else if (*p == '/')
				hi = (fieldno == 4) ? 6 : f->max;	/* "a/n": from a to the end */
		}
		if (*p == '/')
		{
			p++;
			if (!isdigit((unsigned char) *p))
				bad_field(spec, fieldno, "no step in", item);
			step = field_value(f, &p);
			if (step < 1 || step > f->max)
				bad_field(spec, fieldno, "step out of range in", item);
		}
		if (*p != '\0')
			bad_field(spec, fieldno, "unexpected text in", item);
		if (lo < f->min || lo > f->max || hi < f->min || hi > f->max)
		{
			char	   *msg = psprintf("value out of range %d-%d in", f->min, f->max);

			bad_field(spec, fieldno, msg, item);
		}
		if (lo > hi)
			bad_field(spec, fieldno, "range runs backwards in", item);
		for (int v = lo; v <= hi; v += step)
			*bits |= UINT64CONST(1) << (fieldno == 4 && v == 7 ? 0 : v);
	}
	if (*bits == 0)
		bad_field(spec, fieldno, "empty list", text_in);
	pfree(copy);
	return star;
}

void
CcrmScheduleParse(const char *spec, CcrmSchedule *out)
{
	static const struct
	{
		const char *macro;
		const char *cron;
	}			macros[] = {
		{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
		{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"}, {"@midnight", "0 0 * * *"},
		{"@hourly", "0 * * * *"},
	};
	char	   *s;
	char	   *fields[5];
	int			nfields = 0;
	char	   *save = NULL;
	uint64		bits;

	memset(out, 0, sizeof(*out));
	if (spec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a schedule is required"),
				 errhint(SCHEDULE_HINT)));
	s = pstrdup(spec);
	for (char *c = s; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);

	/* "N seconds" */
	{
		char	   *end;
		long		n;

		errno = 0;
		n = strtol(s, &end, 10);
		if (end != s && isdigit((unsigned char) *s))
		{
			while (isspace((unsigned char) *end))
				end++;
			if (strcmp(end, "seconds") == 0 || strcmp(end, "second") == 0 ||
				strcmp(end, "secs") == 0 || strcmp(end, "sec") == 0 || strcmp(end, "s") == 0)
			{
				if (errno != 0 || n < 1 || n > 86400)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid schedule \"%s\": an interval must be 1 to 86400 seconds", spec),
							 errhint(SCHEDULE_HINT)));
				out->interval_secs = (int) n;
				return;
			}
		}
	}

	if (s[0] == '@')
	{
		char	   *t = s;
		char	   *rest;

		while (*t && !isspace((unsigned char) *t))
			t++;
		rest = t;
		while (*rest && isspace((unsigned char) *rest))
			rest++;
		*t = '\0';
		for (size_t i = 0; i < lengthof(macros); i++)
			if (strcmp(s, macros[i].macro) == 0)
			{
				s = pstrdup(macros[i].cron);
				break;
			}
		if (s[0] == '@')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid schedule \"%s\": unknown macro \"%s\"", spec, s),
					 errhint(SCHEDULE_HINT)));
		if (*rest != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid schedule \"%s\": unexpected text after the macro", spec),
					 errdetail("A macro such as @daily is the whole schedule."),
					 errhint(SCHEDULE_HINT)));
	}

	for (char *tok = strtok_r(s, " \t\n", &save); tok != NULL; tok = strtok_r(NULL, " \t\n", &save))
	{
		if (nfields == 5)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid schedule \"%s\": more than five fields", spec),
					 errdetail("Fields for seconds or years are not supported."),
					 errhint(SCHEDULE_HINT)));
		fields[nfields++] = tok;
	}
	if (nfields != 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule \"%s\": %d field%s where a cron schedule has five",
						spec, nfields, nfields == 1 ? "" : "s"),
				 errhint(SCHEDULE_HINT)));

	parse_field(spec, 0, fields[0], &bits);
	out->minutes = bits;
	out->hours_any = parse_field(spec, 1, fields[1], &bits);
	out->hours = (uint32) bits;
	out->days_any = parse_field(spec, 2, fields[2], &bits);
	out->days = (uint32) bits;
	parse_field(spec, 3, fields[3], &bits);
	out->months = (uint32) bits;
	out->weekdays_any = parse_field(spec, 4, fields[4], &bits);
	out->weekdays = (uint32) bits;

	if (CcrmScheduleNext(out, GetCurrentTimestamp(), pg_tzset("UTC")) == DT_NOEND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule \"%s\": it never fires", spec),
				 errdetail("No month it names has the days it names."),
				 errhint(SCHEDULE_HINT)));
}

static long
utc_offset(pg_time_t t, pg_tz *tz)
{
	struct pg_tm *tm = pg_localtime(&t, tz);

	return tm ? tm->tm_gmtoff : 0;
}

/*
 * The instants of a wall-clock time, given as seconds since 1970-01-01
 * 00:00 local time: *first, and *second, which differs from it only for a
 * time that occurs twice (clocks going back).  A time inside a gap (clocks
 * going forward) is the first instant after the gap.
 */
static void
local_to_instants(pg_time_t local, pg_tz *tz, pg_time_t *first, pg_time_t *second)
{
	long		before = utc_offset(local - SECS_PER_DAY, tz);
	long		after = utc_offset(local + SECS_PER_DAY, tz);
	pg_time_t	c1 = local - before;
	pg_time_t	c2 = local - after;
	bool		ok1 = utc_offset(c1, tz) == before;
	bool		ok2 = utc_offset(c2, tz) == after;
	pg_time_t	lo,
				hi;
	long		lo_off;

	if (ok1 && ok2)
	{
		*first = Min(c1, c2);
		*second = Max(c1, c2);
		return;
	}
	if (ok1 || ok2)
	{
		*first = *second = ok1 ? c1 : c2;
		return;
	}

	/* in a gap: find the transition, the first instant after it */
	lo = Min(c1, c2);
	hi = Max(c1, c2);
	lo_off = utc_offset(lo, tz);
	while (hi - lo > 1)
	{
		pg_time_t	mid = lo + (hi - lo) / 2;

		if (utc_offset(mid, tz) == lo_off)
			lo = mid;
		else
			hi = mid;
	}
	*first = *second = hi;
}

/*
 * Times are tried in wall-clock order.  The first occurrence of a time is
 * never earlier than that of an earlier time, so the first one after
 * "after" is the answer, except that for a schedule with "*" in the hour
 * field the second occurrences of a repeated hour count too: they come
 * after the first occurrences of that hour and before the times after it,
 * so the earliest candidate seen when the first occurrence after "after"
 * turns up is the answer.  (Across midnight that holds as well: the search
 * goes on into the next day until a first occurrence is found.)
 */
TimestampTz
CcrmScheduleNext(const CcrmSchedule *s, TimestampTz after, pg_tz *tz)
{
	pg_time_t	after_t;
	struct pg_tm *tm;
	pg_time_t	after_local;
	int			jd0;
	TimestampTz best = DT_NOEND;	/* earliest second occurrence after "after" */

	/* an infinite "after" has no next time; nothing fires after the end of time */
	if (TIMESTAMP_NOT_FINITE(after))
		return DT_NOEND;
	if (s->interval_secs > 0)
	{
		TimestampTz next = after + (TimestampTz) s->interval_secs * USECS_PER_SEC;

		return IS_VALID_TIMESTAMP(next) ? next : DT_NOEND;
	}

	after_t = timestamptz_to_time_t(after);
	tm = pg_localtime(&after_t, tz);
	if (tm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("time %s cannot be read in time zone %s", timestamptz_to_str(after), pg_get_timezone_name(tz))));
	after_local = after_t + tm->tm_gmtoff;
	jd0 = date2j(tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday);

	for (int d = 0; d < SEARCH_DAYS; d++)
	{
		int			jd = jd0 + d;
		int			year,
					month,
					mday,
					wday;
		bool		day_ok;
		pg_time_t	day_local;

		CHECK_FOR_INTERRUPTS();
		j2date(jd, &year, &month, &mday);
		if (!(s->months & (1U << month)))
			continue;
		wday = j2day(jd);
		if (s->days_any || s->weekdays_any)
			day_ok = (s->days & (1U << mday)) && (s->weekdays & (1U << wday));
		else
			day_ok = (s->days & (1U << mday)) || (s->weekdays & (1U << wday));
		if (!day_ok)
			continue;

		day_local = (pg_time_t) (jd - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
		for (int h = 0; h < 24; h++)
		{
			if (!(s->hours & (1U << h)))
				continue;
			/* offsets move by less than three hours: skip what is long past */
			if (day_local + (h + 1) * SECS_PER_HOUR < after_local - 3 * SECS_PER_HOUR)
				continue;
			for (int m = 0; m < 60; m++)
			{
				pg_time_t	first;
				pg_time_t	second;
				TimestampTz ts;

				if (!(s->minutes & (UINT64CONST(1) << m)))
					continue;
				local_to_instants(day_local + h * SECS_PER_HOUR + m * SECS_PER_MINUTE, tz, &first, &second);
				if (s->hours_any && second != first)
				{
					ts = time_t_to_timestamptz(second);
					if (ts > after && ts < best && IS_VALID_TIMESTAMP(ts))
						best = ts;
				}
				ts = time_t_to_timestamptz(first);
				if (!IS_VALID_TIMESTAMP(ts))
					return best;	/* past the end of time */
				if (ts > after)
					return Min(ts, best);
			}
		}
	}
	return best;
}

/*
 * ccrm.next_runs(schedule, count, time_zone, after): the next firing times,
 * for checking a schedule before saving it.
 */
Datum
ccrm_next_runs(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CcrmSchedule sched;
	int			count;
	pg_tz	   *tz;
	TimestampTz at;

	if (PG_ARGISNULL(0))
		CcrmScheduleParse(NULL, &sched);
	CcrmScheduleParse(text_to_cstring(PG_GETARG_TEXT_PP(0)), &sched);
	count = PG_ARGISNULL(1) ? 5 : PG_GETARG_INT32(1);
	if (count < 0 || count > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("count must be between 0 and 10000")));
	tz = PG_ARGISNULL(2) ? CcrmSettingTimeZone()
		: CcrmTimeZone(text_to_cstring(PG_GETARG_TEXT_PP(2)), false);
	at = PG_ARGISNULL(3) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(3);
	CcrmCheckInstant(at, "after");

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < count; i++)
	{
		Datum		value;
		bool		isnull = false;

		at = CcrmScheduleNext(&sched, at, tz);
		if (at == DT_NOEND)
			break;
		value = TimestampTzGetDatum(at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
