/*-------------------------------------------------------------------------
 *
 * quiet_hours.c
 *	  When no SMS is sent: a window of local times in the recipient's time
 *	  zone (the contact's, else the time_zone setting), by default
 *	  23:00-07:30 (setting sms_quiet_hours), replaced for recipients of a
 *	  country listed in sms_quiet_hours_by_country (by default the US,
 *	  where texts may only be sent 08:00-21:00, i.e. quiet 21:00-08:00).
 *	  The policy (sms_quiet_policy) says what happens to a message due
 *	  inside the window: "defer" (the default) makes it wait for the end of
 *	  the window, "drop" (the seed's product) records it as dropped.
 *
 *	  A window "S-E" holds the local times t with S <= t < E, or, when it
 *	  crosses midnight (S > E), t >= S or t < E; its end is the next local
 *	  E, turned into an instant with the zone's rules of that day, so the
 *	  window keeps its local times across a DST change.
 *
 *	  The outbox checks quiet hours when a message is enqueued and again
 *	  when it is claimed, so a retry or a late claim never sends inside
 *	  them.  Settings are read once per call into a MsgQuietHours.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"
#include "setting.h"
#include "slots.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_quiet_hours_end);

typedef struct Window
{
	bool		none;			/* no quiet hours */
	TimeADT		start;
	TimeADT		end;
} Window;

typedef struct CountryWindow
{
	char		iso[3];
	Window		window;
} CountryWindow;

struct MsgQuietHours
{
	bool		drop;
	Window		window;
	int			ncountries;
	CountryWindow *countries;
	char	   *default_zone;
};

/* "HH:MM" or "HH:MM:SS" (hours 0-24, 24:00 only as an end); false if not */
static bool
parse_time(const char *s, int len, TimeADT *out)
{
	int			h = 0,
				m = 0,
				sec = 0;
	int			fields[3] = {0, 0, 0};
	int			nf = 0;
	int			digits = 0;

	for (int i = 0; i <= len; i++)
	{
		if (i < len && s[i] >= '0' && s[i] <= '9')
		{
			fields[nf] = fields[nf] * 10 + (s[i] - '0');
			if (++digits > 2)
				return false;
		}
		else if (i == len || s[i] == ':')
		{
			if (digits == 0 || (nf > 0 && digits != 2))
				return false;
			if (i < len && ++nf > 2)
				return false;
			digits = 0;
		}
		else
			return false;
	}
	if (nf < 1)
		return false;
	h = fields[0];
	m = fields[1];
	sec = fields[2];
	if (h > 24 || m > 59 || sec > 59 || (h == 24 && (m || sec)))
		return false;
	*out = ((int64) (h * 60 + m) * 60 + sec) * USECS_PER_SEC;
	return true;
}

/* Parse a window; NULL when fine, else why not. */
static const char *
parse_window(const char *value, Window *w)
{
	const char *dash;

	memset(w, 0, sizeof(*w));
	while (*value == ' ')
		value++;
	if (*value == '\0')
	{
		w->none = true;
		return NULL;
	}
	dash = strchr(value, '-');
	if (dash == NULL)
		return "it is not of the form HH:MM-HH:MM";
	if (!parse_time(value, dash - value, &w->start) ||
		!parse_time(dash + 1, strlen(dash + 1), &w->end))
		return "it is not of the form HH:MM-HH:MM with times from 00:00 to 24:00";
	if (w->start == w->end)
		return "it starts and ends at the same time";
	if (w->start == USECS_PER_DAY)
		return "it starts at 24:00";
	return NULL;
}

static char *
format_time(TimeADT t)
{
	int64		secs = t / USECS_PER_SEC;

	if (secs % 60)
		return psprintf("%02d:%02d:%02d", (int) (secs / 3600), (int) (secs / 60 % 60), (int) (secs % 60));
	return psprintf("%02d:%02d", (int) (secs / 3600), (int) (secs / 60 % 60));
}

static void
report_bad(const char *name, const char *value, const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s \"%s\": %s", name, value, why),
			 errhint("%s", hint)));
}

#define WINDOW_HINT "Write quiet hours as local times HH:MM-HH:MM, e.g. '23:00-07:30', or '' for none."

/* The countries of sms_quiet_hours_by_country; ERROR when malformed. */
static void
parse_countries(const char *value, MsgQuietHours *qh)
{
	Jsonb	   *j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(value)));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			cap = 8;

	if (!JB_ROOT_IS_OBJECT(j))
		report_bad("sms_quiet_hours_by_country", value, "it is not a JSON object",
				   "Map ISO country codes to windows, e.g. '{\"US\": \"21:00-08:00\"}'.");
	qh->countries = palloc0(sizeof(CountryWindow) * cap);
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			if (strlen(key) != 2 || !AddressIsCountryCode(key) ||
				key[0] < 'A' || key[0] > 'Z' || key[1] < 'A' || key[1] > 'Z')
				report_bad("sms_quiet_hours_by_country", value,
						   psprintf("\"%s\" is not a known ISO 3166 country code in capitals", key),
						   "Use two capital letters such as US or RO.");
		}
		else if (tok == WJB_VALUE)
		{
			const char *why;
			char	   *w;

			if (v.type != jbvString)
				report_bad("sms_quiet_hours_by_country", value,
						   psprintf("the window of %s is not a string", key), WINDOW_HINT);
			w = pnstrdup(v.val.string.val, v.val.string.len);
			if (qh->ncountries == cap)
			{
				cap *= 2;
				qh->countries = repalloc(qh->countries, sizeof(CountryWindow) * cap);
			}
			why = parse_window(w, &qh->countries[qh->ncountries].window);
			if (why)
				report_bad("sms_quiet_hours_by_country", value,
						   psprintf("the window of %s: %s", key, why), WINDOW_HINT);
			memcpy(qh->countries[qh->ncountries].iso, key, 3);
			qh->ncountries++;
		}
	}
}

/* Check a messaging setting's value (called by the setting trigger). */
void
MsgQuietHoursCheckSetting(const char *name, const char *value)
{
	if (strcmp(name, "sms_quiet_hours") == 0)
	{
		Window		w;
		const char *why = parse_window(value, &w);

		if (why)
			report_bad(name, value, why, WINDOW_HINT);
	}
	else if (strcmp(name, "sms_quiet_policy") == 0)
	{
		if (strcmp(value, "defer") != 0 && strcmp(value, "drop") != 0)
			report_bad(name, value, "the policy is defer or drop",
					   "defer sends the message when quiet hours end; drop records it as dropped.");
	}
	else if (strcmp(name, "sms_quiet_hours_by_country") == 0)
	{
		MsgQuietHours	qh;

		memset(&qh, 0, sizeof(qh));
		parse_countries(value, &qh);
	}
	else if (strcmp(name, "phone_country") == 0)
	{
		if (value[0] != '\0' && !AddressIsCountryCode(value))
			report_bad(name, value, "it is not a known ISO 3166 country code",
					   "Use two letters such as RO or FI, or '' for none.");
	}
}

MsgQuietHours *
MsgQuietHoursLoad(void)
{
	MsgQuietHours *qh = palloc0(sizeof(MsgQuietHours));
	const char *why;
	char	   *value = CcrmSettingGet("sms_quiet_hours");

	why = parse_window(value, &qh->window);
	if (why)
		report_bad("sms_quiet_hours", value, why, WINDOW_HINT);
	qh->drop = strcmp(CcrmSettingGet("sms_quiet_policy"), "drop") == 0;
	parse_countries(CcrmSettingGet("sms_quiet_hours_by_country"), qh);
	qh->default_zone = CcrmSettingGet("time_zone");
	return qh;
}

bool
MsgQuietHoursDrop(const MsgQuietHours *qh)
{
	return qh->drop;
}

const char *
MsgQuietHoursDefaultZone(const MsgQuietHours *qh)
{
	return qh->default_zone;
}

bool
MsgQuietHoursCheck(const MsgQuietHours *qh, TimestampTz t, const char *time_zone, const char *country,
				TimestampTz *end, char **why)
{
	const Window *w = &qh->window;
	const char *rules = NULL;
	const char *zone = time_zone;
	pg_tz	   *tz = NULL;
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	TimeADT		local;
	DateADT		day;

	if (country && country[0])
		for (int i = 0; i < qh->ncountries; i++)
			if (pg_strcasecmp(qh->countries[i].iso, country) == 0)
			{
				w = &qh->countries[i].window;
				rules = qh->countries[i].iso;
				break;
			}
	if (w->none || TIMESTAMP_NOT_FINITE(t))
		return false;
	if (zone && zone[0])
		tz = CcrmTimeZone(zone, true);
	if (tz == NULL)
	{
		zone = qh->default_zone;
		tz = CcrmTimeZone(zone, false);
	}
	if (timestamp2tm(t, &offset, &tm, &fsec, NULL, tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	local = ((int64) (tm.tm_hour * 60 + tm.tm_min) * 60 + tm.tm_sec) * USECS_PER_SEC + fsec;
	day = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - POSTGRES_EPOCH_JDATE;

	if (w->start < w->end)
	{
		if (local < w->start || local >= w->end)
			return false;
	}
	else
	{
		if (local < w->start && local >= w->end)
			return false;
		if (local >= w->start)
			day++;
	}
	*end = w->end == USECS_PER_DAY ? CcrmLocalTimestamp(day + 1, 0, tz)
		: CcrmLocalTimestamp(day, w->end, tz);
	if (why)
		*why = psprintf("quiet hours %s-%s in %s%s%s", format_time(w->start), format_time(w->end), zone,
						rules ? " (rules of " : "", rules ? psprintf("%s)", rules) : "");
	return true;
}

/*
 * ccrm.quiet_hours_end(at timestamptz DEFAULT now(), time_zone text, country text)
 * -> when the quiet hours around "at" end for such a recipient, NULL
 * when "at" is outside them.
 */
Datum
ccrm_quiet_hours_end(PG_FUNCTION_ARGS)
{
	MsgQuietHours *qh;
	TimestampTz end;
	char	   *zone = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *country = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (zone)
		(void) CcrmTimeZone(zone, false);
	if (country && country[0] && !AddressIsCountryCode(country))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a known ISO 3166 country code", country),
				 errhint("Use two letters such as US or RO.")));
	qh = MsgQuietHoursLoad();
	if (!MsgQuietHoursCheck(qh, PG_GETARG_TIMESTAMPTZ(0), zone, country, &end, NULL))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(end);
}
