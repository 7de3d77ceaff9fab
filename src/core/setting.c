/*-------------------------------------------------------------------------
 *
 * setting.c
 *	  Settings: a definition table (name, type, default) owned by the
 *	  extension, and ccrm.setting holding the values users changed.  Only
 *	  changed values are dumped by pg_dump, so defaults can move between
 *	  versions while users' choices survive dump/restore.
 *
 *	  The BEFORE trigger on ccrm.setting checks every write, whether it comes
 *	  from ccrm.set_setting() or a plain INSERT/UPDATE: the value must
 *	  convert with its type's input function and pass the setting's own rule
 *	  (a usable time zone, weekdays 1-7, a positive duration shorter than a
 *	  day, earliest start before latest end).
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "privilege.h"
#include "spi_debug.h"
#include "setting.h"
#include "messaging.h"
#include "type_input.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_is_time_zone);
PG_FUNCTION_INFO_V1(ccrm_setting_trigger);
PG_FUNCTION_INFO_V1(ccrm_get_setting);

/*
 * A time zone by name, as SET TIME ZONE would accept it (IANA names and
 * POSIX specs; zones with leap seconds are refused like PostgreSQL does).
 */
pg_tz *
CcrmTimeZone(const char *name, bool missing_ok)
{
	pg_tz	   *tz = NULL;

	if (name != NULL && name[0] != '\0' && strlen(name) < TZ_STRLEN_MAX)
		tz = pg_tzset(name);
	if (tz != NULL && !pg_tz_acceptable(tz))
		tz = NULL;
	if (tz == NULL && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" is not recognized", name ? name : ""),
				 errhint("Use an IANA time zone name such as Europe/Helsinki; see pg_timezone_names.")));
	return tz;
}

Datum
ccrm_is_time_zone(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(CcrmTimeZone(name, true) != NULL);
}

/* A setting's text as its type (CcrmTypeInput); an error names the setting. */
static Datum
input_value(const char *name, const char *value, Oid typid)
{
	return CcrmTypeInput(typid, -1, value, psprintf("setting \"%s\"", name), NULL);
}

static char *
setting_names(void)
{
	char	   *names;

	if (SPI_execute("SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM ccrm.setting_definition",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.setting_definition");
	names = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return names ? names : "";
}

/* Effective value of a setting (caller's memory); error for unknown names. */
char *
CcrmSettingGet(const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	char	   *value;

	args[0] = CStringGetTextDatum(name);
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT COALESCE(s.value, d.default_value)"
							  "  FROM ccrm.setting_definition d"
							  "  LEFT JOIN ccrm.setting s ON s.name OPERATOR(pg_catalog.=) d.name"
							  " WHERE d.name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.setting");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("setting \"%s\" does not exist", name),
				 errhint("Valid settings are: %s.", setting_names())));
	value = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	return value;
}

/* Effective value of a setting converted to a type, e.g. TIMEOID. */
Datum
CcrmSettingValue(const char *name, Oid typid)
{
	return input_value(name, CcrmSettingGet(name), typid);
}

pg_tz *
CcrmSettingTimeZone(void)
{
	return CcrmTimeZone(CcrmSettingGet("time_zone"), false);
}

/* Working days as a bit mask over ISO weekdays: bit d set when day d works. */
int
CcrmSettingWorkingDays(void)
{
	ArrayType  *arr = DatumGetArrayTypeP(input_value("working_days", CcrmSettingGet("working_days"),
													 INT2ARRAYOID));
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			mask = 0;

	deconstruct_array(arr, INT2OID, 2, true, TYPALIGN_SHORT, &elems, &nulls, &n);
	/* what is not an ISO weekday (only a restore can store it) works on no day */
	for (int i = 0; i < n; i++)
		if (!nulls[i] && DatumGetInt16(elems[i]) >= 1 && DatumGetInt16(elems[i]) <= 7)
			mask |= 1 << DatumGetInt16(elems[i]);
	return mask;
}

Datum
ccrm_get_setting(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CcrmSettingGet(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

static void
setting_error_callback(void *arg)
{
	errcontext("setting \"%s\"", (const char *) arg);
}

static void
check_working_days(Datum d)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			seen = 0;

	deconstruct_array(arr, INT2OID, 2, true, TYPALIGN_SHORT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("working_days must name at least one day"),
				 errhint("Activities are planned on working days only: name at least one ISO weekday, e.g. '{1,2,3,4,5}'.")));
	for (int i = 0; i < n; i++)
	{
		int			day = nulls[i] ? 0 : DatumGetInt16(elems[i]);

		if (day < 1 || day > 7)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("working_days holds %s, which is not an ISO weekday",
							nulls[i] ? "NULL" : psprintf("%d", day)),
					 errhint("Use 1 (Monday) to 7 (Sunday), e.g. '{1,2,3,4,5}'.")));
		if (seen & (1 << day))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("working_days names day %d twice", day)));
		seen |= 1 << day;
	}
}

/* earliest_start must stay before latest_end, whichever of the two changes. */
static void
check_day_window(const char *name, TimeADT value)
{
	bool		is_start = strcmp(name, "earliest_start") == 0;
	const char *other = is_start ? "latest_end" : "earliest_start";
	TimeADT		other_value = DatumGetTimeADT(input_value(other, CcrmSettingGet(other), TIMEOID));
	TimeADT		start = is_start ? value : other_value;
	TimeADT		end = is_start ? other_value : value;

	if (start >= end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("earliest_start must be before latest_end"),
				 errdetail("earliest_start would be %s and latest_end %s.",
						   DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(start))),
						   DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(end))))));
}

Datum
ccrm_setting_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	char	   *name;
	char	   *value;
	Oid			typid;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	Datum		d;
	bool		isnull;
	ErrorContextCallback errcb;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.setting_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));

	desc = RelationGetDescr(td->tg_relation);
	tuple = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : td->tg_newtuple;
	if (CcrmRestoring())
		return PointerGetDatum(tuple);
	name = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "name"));
	value = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "value"));

	args[0] = CStringGetTextDatum(name);
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT type::pg_catalog.oid FROM ccrm.setting_definition"
							  " WHERE name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.setting_definition");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("setting \"%s\" does not exist", name),
				 errhint("Valid settings are: %s.", setting_names())));
	typid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	errcb.callback = setting_error_callback;
	errcb.arg = name;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	d = input_value(name, value, typid);
	if (strcmp(name, "time_zone") == 0)
		(void) CcrmTimeZone(value, false);
	else if (strcmp(name, "working_days") == 0)
		check_working_days(d);
	else if (strcmp(name, "event_duration") == 0)
	{
		Interval   *iv = DatumGetIntervalP(d);
		Interval	day = {USECS_PER_DAY, 0, 0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(iv),
											  IntervalPGetDatum(&day))) >= 0 ||
			iv->time <= 0 || iv->day != 0 || iv->month != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event_duration must be longer than zero and shorter than a day"),
					 errhint("Write it like '30 minutes' or '1 hour 30 minutes'.")));
	}
	else if (strcmp(name, "earliest_start") == 0 || strcmp(name, "latest_end") == 0)
		check_day_window(name, DatumGetTimeADT(d));
	else
		MsgQuietHoursCheckSetting(name, value);	/* messaging settings (quiet_hours.c) */

	error_context_stack = errcb.previous;
	return PointerGetDatum(tuple);
}
