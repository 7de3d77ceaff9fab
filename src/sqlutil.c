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

#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

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

void
CcrmPopSearchPath(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}
