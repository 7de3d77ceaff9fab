/*-------------------------------------------------------------------------
 *
 * run_as_owner.c
 *	  Every run of a definition (a job's action, a formula run, a module
 *	  tool, whether fired by the scheduler or called from SQL) executes
 *	  confined to one role, the way REFRESH MATERIALIZED VIEW executes its
 *	  query as the view's owner:
 *
 *	  - the current user is that role, in a security-restricted operation
 *		(SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION):
 *		SET ROLE, SET SESSION AUTHORIZATION, temporary tables, WITH HOLD
 *		cursors and deferred triggers are refused by PostgreSQL itself;
 *	  - a GUC nest level is opened, search_path is pinned to
 *		"pg_catalog, pg_temp" within it, and at the end the level is
 *		rolled back (AtEOXact_GUC(false)): SET, SET LOCAL and
 *		set_config(..., false) made by the run never outlive it, in the
 *		scheduler's process, in the rest of run_due_jobs() or in the
 *		caller's session;
 *	  - what PostgreSQL does not restrict there but would outlive the run
 *		in its session is refused: the utility hook below rejects PREPARE,
 *		DEALLOCATE, DISCARD, LISTEN, UNLISTEN, LOAD and SET CONSTRAINTS
 *		while a run is confined (prepared statements and loaded libraries
 *		are not transactional, so they could not be undone), and
 *		CcrmConfineEnd() fails the run when the session's temporary schema
 *		holds other objects than when it began (temporary functions, types,
 *		domains: PostgreSQL only refuses temporary relations).  That error
 *		rolls back the run, which takes the objects with it.
 *
 *	  Invariants: Begin and End (or Abort) pair up in one (sub)transaction.
 *	  After an error, Abort runs before that (sub)transaction is rolled
 *	  back; it restores the caller's user and security context and rolls
 *	  the GUC level back (the abort would do both too, as it does for
 *	  fmgr_security_definer; Abort only makes sure no code after the catch
 *	  runs as the run's role).  confine_depth counts the runs in progress
 *	  in this backend; it is reset at every top-level transaction end, so a
 *	  lost Abort cannot leave the session restricted.
 *
 *	  ccrm's own bookkeeping inside a run (CcrmExecuteAsOwner) keeps the
 *	  security-restricted flag.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "execute_as_owner.h"
#include "run_as_owner.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"

static int	confine_depth = 0;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* ----------------------------------------------------------------
 * Session state a run may not touch
 * ---------------------------------------------------------------- */

static const char *
refused_statement(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_PrepareStmt:
			return "PREPARE";
		case T_DeallocateStmt:
			return "DEALLOCATE";
		case T_DiscardStmt:
			return "DISCARD";
		case T_ListenStmt:
			return "LISTEN";
		case T_UnlistenStmt:
			return "UNLISTEN";
		case T_LoadStmt:
			return "LOAD";
		case T_ConstraintsSetStmt:
			return "SET CONSTRAINTS";
		default:
			return NULL;
	}
}

static void
confined_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				 ProcessUtilityContext context, ParamListInfo params,
				 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (confine_depth > 0)
	{
		const char *what = refused_statement(pstmt->utilityStmt);

		if (what)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s is not allowed in a ccrm run", what),
					 errdetail("A run may change data, not the session it runs in: its prepared statements, "
							   "listened channels, loaded libraries and constraint modes stay as they were."),
					 errhint("Do the work inside the run's own statements.")));
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

static void
confine_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			confine_depth = 0;
			break;
		default:
			break;
	}
}

void
CcrmRunAsOwnerInit(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = confined_utility;
	RegisterXactCallback(confine_xact_callback, NULL);
}

bool
CcrmInConfinedRun(void)
{
	return confine_depth > 0;
}

static int
compare_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* The objects in this session's temporary schema, as sorted (classid << 32 | objid). */
static uint64 *
temp_objects(int *n)
{
	Oid			temp_ns;
	Oid			temp_toast_ns;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key[2];
	HeapTuple	tup;
	int			size = 16;
	uint64	   *objs;

	*n = 0;
	GetTempNamespaceState(&temp_ns, &temp_toast_ns);
	if (!OidIsValid(temp_ns))
		return NULL;
	objs = palloc(sizeof(uint64) * size);
	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(NamespaceRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(temp_ns));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (*n == size)
			objs = repalloc(objs, sizeof(uint64) * (size *= 2));
		objs[(*n)++] = ((uint64) dep->classid << 32) | dep->objid;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	qsort(objs, *n, sizeof(uint64), compare_uint64);
	return objs;
}

/* The first object in one sorted list and not the other, or 0. */
static uint64
first_difference(const uint64 *a, int na, const uint64 *b, int nb, bool *in_a)
{
	int			i = 0;
	int			j = 0;

	while (i < na || j < nb)
	{
		if (j >= nb || (i < na && a[i] < b[j]))
		{
			*in_a = true;
			return a[i];
		}
		if (i >= na || b[j] < a[i])
		{
			*in_a = false;
			return b[j];
		}
		i++;
		j++;
	}
	return 0;
}

/* ----------------------------------------------------------------
 * Confined runs
 * ---------------------------------------------------------------- */

void
CcrmConfineBegin(CcrmConfinement *c, Oid role)
{
	memset(c, 0, sizeof(*c));
	c->role = role;
	GetUserIdAndSecContext(&c->save_user, &c->save_sec);
	c->temp = temp_objects(&c->ntemp);
	c->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(role, c->save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	confine_depth++;
	c->active = true;
}

void
CcrmConfineEnd(CcrmConfinement *c)
{
	int			n;
	uint64	   *now;
	uint64		diff;
	bool		created;

	Assert(c->active);
	now = temp_objects(&n);
	diff = first_difference(now, n, c->temp, c->ntemp, &created);
	if (diff != 0)
	{
		ObjectAddress addr;
		char	   *desc;

		addr.classId = (Oid) (diff >> 32);
		addr.objectId = (Oid) (diff & 0xFFFFFFFF);
		addr.objectSubId = 0;
		desc = getObjectDescription(&addr, true);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a ccrm run may not create or drop temporary objects"),
				 errdetail("The run %s %s.", created ? "created" : "dropped", desc ? desc : "an object of the session's temporary schema"),
				 errhint("Keep what a run needs in a schema of your own: temporary objects would outlive the run in the session it runs in.")));
	}
	if (now)
		pfree(now);
	AtEOXact_GUC(false, c->nestlevel);
	SetUserIdAndSecContext(c->save_user, c->save_sec);
	if (confine_depth > 0)
		confine_depth--;
	c->active = false;
}

void
CcrmConfineAbort(CcrmConfinement *c)
{
	if (!c->active)
		return;
	c->active = false;
	if (confine_depth > 0)
		confine_depth--;
	AtEOXact_GUC(false, c->nestlevel);
	SetUserIdAndSecContext(c->save_user, c->save_sec);
}

Datum
CcrmRunConfined(Oid role, CcrmConfinedFunc fn, void *arg)
{
	CcrmConfinement c;
	Datum		result;

	CcrmConfineBegin(&c, role);
	PG_TRY();
	{
		result = fn(arg);
		CcrmConfineEnd(&c);
	}
	PG_CATCH();
	{
		CcrmConfineAbort(&c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return result;
}
