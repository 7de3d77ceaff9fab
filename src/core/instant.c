/*-------------------------------------------------------------------------
 *
 * instant.c
 *	  The clock rule (README, Development): every SQL function whose result
 *	  or effect depends on the clock takes the instant it acts at as an
 *	  argument, at timestamptz DEFAULT now(), and passes it down instead of
 *	  reading the clock.  Here is the one check every such instant goes
 *	  through, in C (CcrmInstantArg, CcrmCheckInstant) and for functions
 *	  written in SQL (ccrm.check_instant), so that they all refuse the same
 *	  inputs the same way.
 *
 *	  Invariant: an instant that passed the check is finite, so adding or
 *	  subtracting an interval, reading its local date and finding a slot
 *	  after it are defined.  ±infinity is refused (SQLSTATE 22023); NULL is
 *	  refused for the functions that are not STRICT (SQLSTATE 22004), except
 *	  where a function documents NULL as now() (the filter functions, whose
 *	  compiled SQL then reads now() when it runs).  Called through the
 *	  declaration of an older version that has no such argument (the library
 *	  is new, ALTER EXTENSION UPDATE not run yet), a function acts at now(),
 *	  as it did then.
 *
 *-------------------------------------------------------------------------
 */
#include "instant.h"

#include "access/xact.h"
#include "utils/builtins.h"

void
CcrmCheckInstant(TimestampTz at, const char *name)
{
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite instant, not %s", name, timestamptz_to_str(at)),
				 errhint("Pass a timestamptz such as '2026-01-01 00:00+00', or leave %s out for now().", name)));
}

TimestampTz
CcrmInstantArg(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz at;

	if (PG_NARGS() <= argno)
		return GetCurrentTransactionStartTimestamp();
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("at must not be null"),
				 errhint("Leave it out for now().")));
	at = PG_GETARG_TIMESTAMPTZ(argno);
	CcrmCheckInstant(at, "at");
	return at;
}

PG_FUNCTION_INFO_V1(ccrm_check_instant);

/*
 * ccrm.check_instant(at timestamptz) → at: the same check for functions
 * written in SQL (their first statement), so that they refuse what the C
 * functions refuse.
 */
Datum
ccrm_check_instant(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(CcrmInstantArg(fcinfo, 0));
}
