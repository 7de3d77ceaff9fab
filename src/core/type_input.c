/*-------------------------------------------------------------------------
 *
 * type_input.c
 *	  The one way ccrm turns user text into a typed value: filter values,
 *	  mass update literals, custom field values and settings all convert
 *	  through CcrmTypeInput(), so a bad value fails the same way wherever
 *	  it is given.
 *
 *	  Invariants:
 *	  - the input function runs in an internal subtransaction.  PostgreSQL
 *		15 has no soft input errors, and an input function may be any
 *		type's (a domain's CHECK runs expressions, an extension's type may
 *		take locks or open relations), so catching its error is only sound
 *		when the subtransaction is rolled back: that releases whatever it
 *		acquired.  On success the subtransaction is released and the value
 *		lives in the caller's memory context;
 *	  - the error raised keeps the input function's SQLSTATE (22P02, 22007,
 *		22008, 22003, 23514 ...), message and detail; the message is
 *		prefixed by the caller's "where" (filter path, field, setting) and
 *		the caller's hint replaces the input function's when given;
 *	  - the caller's memory context and resource owner are current again
 *		on return and when the error is raised;
 *	  - in parallel mode (a parallel query's worker or its leader, where no
 *		subtransaction can start) the input function is called directly and
 *		its error raised as it is (its own message and hint), "where" shown
 *		as the error's context: raising, unlike catching, needs no
 *		subtransaction.
 *		This lets PARALLEL SAFE functions read typed settings.
 *
 *-------------------------------------------------------------------------
 */
#include "type_input.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

static void
input_error_context(void *arg)
{
	errcontext("%s", (const char *) arg);
}

Datum
CcrmTypeInput(Oid typid, int32 typmod, const char *str, const char *where, const char *hint)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			infunc;
	Oid			ioparam;
	volatile Datum result = (Datum) 0;

	getTypeInputInfo(typid, &infunc, &ioparam);
	if (IsInParallelMode())
	{
		ErrorContextCallback errcb;

		errcb.callback = input_error_context;
		errcb.arg = (void *) (where ? where : "converting a value");
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		result = OidInputFunctionCall(infunc, (char *) str, ioparam, typmod);
		error_context_stack = errcb.previous;
		return result;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = OidInputFunctionCall(infunc, (char *) str, ioparam, typmod);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 where ? errmsg("%s: %s", where, edata->message) : errmsg("%s", edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 hint ? errhint("%s", hint) : edata->hint ? errhint("%s", edata->hint) : 0));
	}
	PG_END_TRY();
	return result;
}
