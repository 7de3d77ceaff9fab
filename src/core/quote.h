/*-------------------------------------------------------------------------
 *
 * quote.h
 *	  Quoting and naming helpers for the SQL text ccrm generates (quote.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_QUOTE_H
#define CCRM_QUOTE_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* "schema"."relation" for a relation OID, both parts quoted as needed */
extern char *CcrmQualifiedRelName(Oid relid);

/* schema-qualified type name usable in a cast, e.g. pg_catalog.int8 */
extern char *CcrmQualifiedTypeName(Oid typid, int32 typmod);

/* append 'value'::type with the value quoted as a literal */
extern void CcrmAppendLiteral(StringInfo buf, const char *value, Oid typid, int32 typmod);

/* "a, b, c" from a List of C strings (for hints) */
extern char *CcrmJoinNames(List *names);

#endif							/* CCRM_QUOTE_H */
