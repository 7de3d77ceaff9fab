/*-------------------------------------------------------------------------
 *
 * sqlutil.c
 *	  Helpers for building SQL text safely.  Everything ccrm generates goes
 *	  through these: identifiers through quote_identifier, literals through
 *	  quote_literal with an explicit, schema-qualified cast, so no user text
 *	  is ever spliced into a statement unquoted.
 *
 *	  Generated statements are executed under a fixed search_path
 *	  (pg_catalog, pg_temp), so an object a user created in another schema
 *	  can never be picked up in place of the one we meant.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "setting.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* "schema"."relation" for a relation OID, both parts quoted as needed. */
char *
CcrmQualifiedRelName(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;

	if (relname == NULL)
		elog(ERROR, "cache lookup failed for relation %u", relid);
	nspname = get_namespace_name(get_rel_namespace(relid));
	return quote_qualified_identifier(nspname, relname);
}

/* Schema-qualified type name usable in a cast, e.g. pg_catalog.int8. */
char *
CcrmQualifiedTypeName(Oid typid, int32 typmod)
{
	return format_type_extended(typid, typmod,
								FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
}

/* Append 'value'::type with the value quoted as a literal. */
void
CcrmAppendLiteral(StringInfo buf, const char *value, Oid typid, int32 typmod)
{
	appendStringInfo(buf, "%s::%s", quote_literal_cstr(value),
					 CcrmQualifiedTypeName(typid, typmod));
}

/* "a, b, c" from a List of C strings (for hints). */
char *
CcrmJoinNames(List *names)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, names)
	{
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, (const char *) lfirst(lc));
	}
	return buf.data;
}

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

/* How a JSON value reads in a message: "a string", "an array" ... */
const char *
CcrmJsonbTypeName(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a JSON value";
	}
}

/*
 * Keys of a JSON object of parameters that are not in "allowed" (NULL
 * terminated): an ERROR naming the key and what it is a parameter of
 * ("a mass update", "tool contact_set_owner" ...).  The caller has checked
 * that params is an object.
 */
void
CcrmCheckParamKeys(Jsonb *params, const char *const *allowed, const char *what)
{
	JsonbIterator *it = JsonbIteratorInit(&params->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		List	   *names = NIL;
		bool		ok = false;
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (int i = 0; allowed[i] != NULL; i++)
		{
			names = lappend(names, (char *) allowed[i]);
			ok |= (strcmp(key, allowed[i]) == 0);
		}
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown parameter \"%s\" of %s", key, what),
					 names ? errhint("Parameters of %s are: %s.", what, CcrmJoinNames(names))
					 : errhint("It takes no parameters: pass '{}'.")));
		(void) JsonbIteratorNext(&it, &v, true);	/* its value */
	}
}

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
int
CcrmExecuteAsOwner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
				   int expect)
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
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
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
		elog(ERROR, "ccrm bookkeeping failed (%s): %s", SPI_result_code_string(rc), sql);
	return rc;
}
