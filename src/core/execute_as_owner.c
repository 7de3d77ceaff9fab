/*-------------------------------------------------------------------------
 *
 * execute_as_owner.c
 *	  ccrm's own bookkeeping on its catalog tables (runs, tools, outbox
 *	  rows), executed as the catalog's owner, the extension's owner: these
 *	  tables are not writable by the roles that cause the bookkeeping.
 *	  Security critical: this is the one place where ccrm raises rights.
 *
 *	  Invariants:
 *	  - only fixed SQL text written in ccrm's C code is run here, with
 *		user values passed as parameters, never spliced in; callers check
 *		first that the current user may ask for what the statement does;
 *	  - the statement runs under search_path = pg_catalog, pg_temp (a GUC
 *		level of its own, whatever the session or a run set), so no object
 *		of another role can be picked up by name;
 *	  - the caller's security context flags are kept and only
 *		SECURITY_LOCAL_USERID_CHANGE is added: inside a confined run
 *		(run_as_owner.c) the bookkeeping stays security-restricted;
 *	  - the caller's user id, security context and settings come back on
 *		success and on error (PG_CATCH restores them before re-throwing);
 *	  - never read-only, so it sees what this transaction wrote a moment
 *		ago.
 *
 *	  This is the opposite direction of run_as_owner.c, which lowers the
 *	  rights of a run to those of a definition's owner; the two are kept
 *	  apart so that the one raising rights is small and read alone.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "execute_as_owner.h"
#include "guc_level.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The role owning ccrm's catalog tables (the extension's owner). */
Oid
CcrmCatalogOwner(void)
{
	Oid			nsp = get_namespace_oid(CCRM_SCHEMA, false);
	Oid			relid = get_relname_relid("job_run", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		elog(ERROR, "table ccrm.job_run is missing");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run one statement as the catalog's owner: ccrm's own bookkeeping on its
 * tables (runs, tools), which callers may not write themselves; they check
 * first who may ask.  Never read-only, so it sees what this transaction
 * wrote a moment ago.  It runs under search_path = pg_catalog, pg_temp
 * (whatever the session or a run set), keeping a security-restricted
 * context it is called in.  The caller's user id and settings come back
 * even on error.  An ERROR when the SPI result is not "expect" (0: any
 * success).
 */
static int
execute_as_owner(SPIPlanPtr plan, const char *sql, int nargs, Oid *types, Datum *values,
				 const char *nulls, int expect)
{
	Oid			save_user;
	int			save_sec;
	int			rc;
	int			nestlevel;

	GetUserIdAndSecContext(&save_user, &save_sec);
	nestlevel = CcrmPushSafeSearchPath();
	SetUserIdAndSecContext(CcrmCatalogOwner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		rc = plan ? SPI_execute_plan(plan, values, nulls, false, 0)
			: SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(save_user, save_sec);
		AtEOXact_GUC(false, nestlevel);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SetUserIdAndSecContext(save_user, save_sec);
	CcrmPopSearchPath(nestlevel);
	if (rc < 0 || (expect != 0 && rc != expect))
		elog(ERROR, "ccrm bookkeeping failed (%s): %s", SPI_result_code_string(rc),
			 sql ? sql : "a prepared statement");
	return rc;
}

int
CcrmExecuteAsOwner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
				   int expect)
{
	return execute_as_owner(NULL, sql, nargs, types, values, nulls, expect);
}

/* The same for a plan of CcrmPrepareAsOwner. */
int
CcrmExecutePlanAsOwner(SPIPlanPtr plan, Datum *values, const char *nulls, int expect)
{
	return execute_as_owner(plan, NULL, 0, NULL, values, nulls, expect);
}

/*
 * Prepare a statement as the catalog's owner, under the same pinned
 * search_path, for CcrmExecutePlanAsOwner (hot paths keep such plans).
 */
SPIPlanPtr
CcrmPrepareAsOwner(const char *sql, int nargs, Oid *types)
{
	Oid			save_user;
	int			save_sec;
	SPIPlanPtr	plan;
	int			nestlevel;

	GetUserIdAndSecContext(&save_user, &save_sec);
	nestlevel = CcrmPushSafeSearchPath();
	SetUserIdAndSecContext(CcrmCatalogOwner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		plan = SPI_prepare(sql, nargs, types);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(save_user, save_sec);
		AtEOXact_GUC(false, nestlevel);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SetUserIdAndSecContext(save_user, save_sec);
	CcrmPopSearchPath(nestlevel);
	if (plan == NULL)
		elog(ERROR, "could not prepare ccrm bookkeeping (%s): %s",
			 SPI_result_code_string(SPI_result), sql);
	return plan;
}
