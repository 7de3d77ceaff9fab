/*-------------------------------------------------------------------------
 *
 * filter.h
 *	  The filter compiler: a JSON filter over an entity becomes one SQL
 *	  query, validated against the catalogs before anything runs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_FILTER_H
#define CCRM_FILTER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "entity.h"
#include "fmgr.h"
#include "utils/jsonb.h"

/*
 * Compile a filter into a boolean SQL expression over the row aliased
 * "alias" of the entity's table.  Raises an error naming the path of the
 * first bad condition.  When groups is not NULL, the target group ids the
 * filter refers to through in_group are appended to *groups (as int64 *).
 * Relative conditions (older_than, within_last) count from *at, or from
 * pg_catalog.now() when at is NULL.
 */
extern char *CcrmFilterCompile(const CcrmEntity *ent, Jsonb *filter,
							   const char *alias, List **groups, const TimestampTz *at);

/*
 * The whole query: SELECT t.<key>::pg_catalog.int8 AS id FROM <table> t
 * WHERE <compiled filter>.  Meant to be run under CcrmPushSafeSearchPath().
 */
extern char *CcrmFilterQuery(const CcrmEntity *ent, Jsonb *filter, List **groups,
							 const TimestampTz *at);

/*
 * The instant argument argno (at timestamptz DEFAULT now()) of a SQL function
 * that evaluates filters: NULL when absent (now()), else at, which must be
 * finite.
 */
extern const TimestampTz *CcrmFilterInstantArg(FunctionCallInfo fcinfo, int argno, TimestampTz *at);

#endif							/* CCRM_FILTER_H */
