/*-------------------------------------------------------------------------
 *
 * quote.c
 *	  Helpers for building SQL text safely.  Everything ccrm generates goes
 *	  through these: identifiers through quote_identifier, literals through
 *	  quote_literal with an explicit, schema-qualified cast, so no user text
 *	  is ever spliced into a statement unquoted.  Type names are always
 *	  schema-qualified, so a type a user created in another schema can
 *	  never be picked up in place of the one we meant.
 *
 *-------------------------------------------------------------------------
 */
#include "quote.h"

#include "utils/builtins.h"
#include "utils/lsyscache.h"

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
