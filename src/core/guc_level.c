/*-------------------------------------------------------------------------
 *
 * guc_level.c
 *	  Settings ccrm pins while its own SQL runs, in a GUC nest level of
 *	  their own: search_path = pg_catalog, pg_temp for every generated
 *	  statement, and ccrm's configured time zone where times are read or
 *	  written in local time.
 *
 *	  Invariants: a Push pairs with a Pop in the same (sub)transaction; the
 *	  Pop rolls back everything set within the level (AtEOXact_GUC(false)),
 *	  also what code called meanwhile set with SET or set_config(..., false),
 *	  so a setting changed while ccrm ran never outlives the call.  An error
 *	  between the two unwinds the level with the (sub)transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "guc_level.h"
#include "setting.h"

#include "utils/guc.h"

/*
 * Run generated SQL under search_path = pg_catalog, pg_temp.  Returns the
 * GUC nest level to hand to CcrmPopSearchPath(); an error unwinds it with
 * the transaction.
 */
int
CcrmPushSafeSearchPath(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* Within a pushed level: times read and written in ccrm's configured zone. */
void
CcrmUseConfiguredTimeZone(void)
{
	(void) set_config_option("timezone", CcrmSettingGet("time_zone"),
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Leave a pushed level.  Everything set within it is rolled back, also
 * what code called meanwhile set with SET or set_config(..., false): a
 * change made while ccrm ran never outlives the call.
 */
void
CcrmPopSearchPath(int nestlevel)
{
	AtEOXact_GUC(false, nestlevel);
}
