/*-------------------------------------------------------------------------
 *
 * target_group.c
 *	  Target groups: saved segments of an entity.  Members are kept as
 *	  membership spans (ccrm.target_group_membership): a row per stay in the
 *	  group from entered_at until left_at.  Open spans are the members, closed
 *	  ones the history of joins and leaves, so recording history costs no
 *	  extra row when someone joins.
 *
 *	  A refresh computes the wanted set once --- the filter's matches, minus
 *	  manual excludes, plus manual includes of records that still exist ---
 *	  and applies only the difference in one statement: new members get a
 *	  span, members no longer wanted get their span closed, members who stay
 *	  are not touched and keep entered_at.  A group with no members yet is
 *	  filled by a plain INSERT … SELECT of the matches.
 *
 *	  Membership rows carry no foreign key to their group (a per-row check
 *	  would cost as much as the insert itself); only this file writes them,
 *	  always under the group's lock, and deleting a group deletes its spans
 *	  through a trigger.
 *
 *	  Locking: every change to a group's members (refresh, include, exclude)
 *	  first takes FOR NO KEY UPDATE on the group's row, so they serialise per
 *	  group; member_count is kept under that lock.  Other groups are not
 *	  blocked, and neither are readers.
 *
 *	  Stamps: the entered_at, left_at and refreshed_at a change writes are
 *	  one time taken under that lock (group_stamp), so within a group they
 *	  never go back, and a span never ends before it begins, whenever the
 *	  transactions that made them began.
 *
 *	  The AFTER trigger on ccrm.target_group checks every definition change
 *	  however it is made: the filter must compile, in_group references are
 *	  recorded in ccrm.target_group_dependency, and a reference cycle is an
 *	  error.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "tuple_util.h"
#include "guc_level.h"
#include "privilege.h"
#include "spi_debug.h"
#include "entity.h"
#include "filter.h"
#include "execute_as_owner.h"
#include "target_group.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_target_group_trigger);
PG_FUNCTION_INFO_V1(ccrm_target_group_id);
PG_FUNCTION_INFO_V1(ccrm_drop_target_group);
PG_FUNCTION_INFO_V1(ccrm_refresh_target_group);
PG_FUNCTION_INFO_V1(ccrm_refresh_target_group_by_id);
PG_FUNCTION_INFO_V1(ccrm_include_in_group);
PG_FUNCTION_INFO_V1(ccrm_exclude_from_group);
PG_FUNCTION_INFO_V1(ccrm_clear_group_override);

typedef struct GroupRow
{
	int64		id;
	char	   *name;
	char	   *entity;
	Jsonb	   *filter;			/* NULL for a static group */
	int64		member_count;
	Datum		refreshed_at;	/* timestamptz, or 0 when never refreshed */
} GroupRow;

/* Run a statement through SPI with int8/text/... arguments; check the result. */
static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed (%d): %s", rc, sql);
}

static int64
spi_int8(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * For hints: up to 30 names of the target groups the current user can see,
 * quoted and comma-separated, in the current memory context; NULL when
 * there are none.  SPI connected.
 */
char *
CcrmExistingGroupNames(void)
{
	if (SPI_execute("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
					"  FROM (SELECT name FROM ccrm.target_group ORDER BY name LIMIT 30) g",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return NULL;
}

static void
report_unknown_group(const char *name)
{
	char	   *names = CcrmExistingGroupNames();

	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("target group \"%s\" does not exist", name),
			 names ? errhint("Existing groups: %s.", names)
			 : errhint("Create one with ccrm.create_target_group().")));
}

/*
 * Read (and lock, FOR NO KEY UPDATE) a group by name or id.  Must be called
 * inside SPI; the result lives in the SPI procedure context.
 */
static GroupRow *
lock_group(const char *name, int64 id)
{
	Oid			types[1];
	Datum		values[1];
	GroupRow   *g;
	bool		isnull;
	Datum		filter;

	if (name)
	{
		types[0] = TEXTOID;
		values[0] = CStringGetTextDatum(name);
	}
	else
	{
		types[0] = INT8OID;
		values[0] = Int64GetDatum(id);
	}
	spi_exec(name
			 ? "SELECT id, name, entity, filter, member_count, refreshed_at FROM ccrm.target_group"
			 " WHERE name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE"
			 : "SELECT id, name, entity, filter, member_count, refreshed_at FROM ccrm.target_group"
			 " WHERE id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
			 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (name)
			report_unknown_group(name);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target group with id " INT64_FORMAT " does not exist", id)));
	}
	g = palloc0(sizeof(GroupRow));
	g->id = spi_int8(0, 1);
	g->name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	g->entity = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	filter = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
	g->filter = isnull ? NULL : DatumGetJsonbPCopy(filter);
	g->member_count = spi_int8(0, 5);
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull);

		g->refreshed_at = isnull ? (Datum) 0 : d;
	}
	return g;
}

int64
CcrmGroupIdByName(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int64		id;

	values[0] = CStringGetTextDatum(name);
	CcrmSPIConnect();
	spi_exec("SELECT id FROM ccrm.target_group WHERE name OPERATOR(pg_catalog.=) $1",
			 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		report_unknown_group(name);
	id = spi_int8(0, 1);
	SPI_finish();
	return id;
}

static void
set_member_count(int64 group_id, int64 count)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];

	values[0] = Int64GetDatum(group_id);
	values[1] = Int64GetDatum(count);
	spi_exec("UPDATE ccrm.target_group SET member_count = $2 WHERE id OPERATOR(pg_catalog.=) $1",
			 2, types, values, SPI_OK_UPDATE);
}

/*
 * The time a change to a locked group's members is stamped with: the clock
 * now, under the group's lock, so after the stamps of every earlier change
 * (their transactions committed before the lock was granted, whenever they
 * began), and never before the group's latest recorded stamps (its last
 * refresh, the last span closed) should the clock have gone back.  The
 * transaction's start time would not do: a transaction that began before
 * another refreshed the group would close spans before they were opened.
 */
static Datum
group_stamp(GroupRow *g)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;

	values[0] = Int64GetDatum(g->id);
	values[1] = g->refreshed_at;
	if (SPI_execute_with_args("SELECT GREATEST(pg_catalog.clock_timestamp(), $2,"
							  "       (SELECT pg_catalog.max(left_at) FROM ccrm.target_group_membership"
							  "         WHERE group_id OPERATOR(pg_catalog.=) $1 AND left_at IS NOT NULL))",
							  2, types, values, g->refreshed_at == (Datum) 0 ? " n" : NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the stamps of group " INT64_FORMAT, g->id);
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/* ----------------------------------------------------------------
 * Refresh
 * ---------------------------------------------------------------- */

static CcrmRefreshResult
refresh_locked(GroupRow *g, const TimestampTz *at)
{
	CcrmEntity *ent = CcrmEntityLookup(g->entity, false);
	TimestampTz start = GetCurrentTimestamp();
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2];
	StringInfoData sql;
	char	   *filter_query = NULL;
	bool		overrides;
	bool		empty;
	CcrmRefreshResult r;
	int			nestlevel;

	values[0] = Int64GetDatum(g->id);
	values[1] = group_stamp(g);

	if (g->filter)
		filter_query = CcrmFilterQuery(ent, g->filter, NULL, at);
	spi_exec("SELECT 1 FROM ccrm.target_group_override WHERE group_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
			 1, types, values, SPI_OK_SELECT);
	overrides = SPI_processed > 0;

	spi_exec("SELECT 1 FROM ccrm.target_group_membership WHERE group_id OPERATOR(pg_catalog.=) $1"
			 " AND left_at IS NULL LIMIT 1", 1, types, values, SPI_OK_SELECT);
	empty = SPI_processed == 0;

	initStringInfo(&sql);
	if (filter_query && !overrides && empty)
	{
		/* nobody to keep or remove: every match is an addition */
		appendStringInfo(&sql,
						 "WITH ins AS (INSERT INTO ccrm.target_group_membership (group_id, member_id, entered_at)"
						 " SELECT $1, f.id, $2 FROM (%s) f RETURNING 1)"
						 " SELECT pg_catalog.count(*), 0::pg_catalog.int8 FROM ins", filter_query);
	}
	else
	{
		/* the wanted members: matches minus excludes, plus includes that exist */
		appendStringInfoString(&sql, "WITH d(id) AS MATERIALIZED (");
		if (filter_query && !overrides)
			appendStringInfoString(&sql, filter_query);
		else
		{
			if (filter_query)
				appendStringInfo(&sql,
								 "SELECT f.id FROM (%s) f WHERE NOT EXISTS ("
								 "SELECT 1 FROM ccrm.target_group_override o"
								 " WHERE o.group_id OPERATOR(pg_catalog.=) $1"
								 " AND o.member_id OPERATOR(pg_catalog.=) f.id AND NOT o.include) UNION ",
								 filter_query);
			appendStringInfo(&sql,
							 "SELECT o.member_id FROM ccrm.target_group_override o"
							 " WHERE o.group_id OPERATOR(pg_catalog.=) $1 AND o.include"
							 " AND EXISTS (SELECT 1 FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) o.member_id)",
							 ent->qualname, quote_identifier(ent->key_column));
		}
		/* apply the difference */
		appendStringInfoString(&sql,
							   "), ins AS (INSERT INTO ccrm.target_group_membership (group_id, member_id, entered_at)"
							   " SELECT $1, d.id, $2 FROM d WHERE NOT EXISTS ("
							   "SELECT 1 FROM ccrm.target_group_membership m"
							   " WHERE m.group_id OPERATOR(pg_catalog.=) $1 AND m.member_id OPERATOR(pg_catalog.=) d.id"
							   " AND m.left_at IS NULL) RETURNING 1),"
							   " del AS (UPDATE ccrm.target_group_membership m SET left_at = GREATEST($2, m.entered_at)"
							   " WHERE m.group_id OPERATOR(pg_catalog.=) $1 AND m.left_at IS NULL"
							   " AND NOT EXISTS (SELECT 1 FROM d WHERE d.id OPERATOR(pg_catalog.=) m.member_id)"
							   " RETURNING 1)"
							   " SELECT (SELECT pg_catalog.count(*) FROM ins), (SELECT pg_catalog.count(*) FROM del)");
	}

	nestlevel = CcrmPushSafeSearchPath();

	/*
	 * Both anti-joins compare whole sets.  A nested loop would rescan the
	 * membership table --- which this very statement appends to --- once per
	 * row when its statistics are stale (right after a first big refresh), so
	 * only hash or merge joins are allowed here.
	 */
	(void) set_config_option("enable_nestloop", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	spi_exec(sql.data, 2, types, values, SPI_OK_SELECT);
	CcrmPopSearchPath(nestlevel);
	r.added = spi_int8(0, 1);
	r.removed = spi_int8(0, 2);
	r.total = g->member_count + r.added - r.removed;

	{
		Oid			ltypes[6] = {INT8OID, TIMESTAMPTZOID, INTERVALOID, INT8OID, INT8OID, INT8OID};
		Datum		lvalues[6];

		lvalues[0] = values[0];
		lvalues[1] = values[1];
		lvalues[2] = DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(GetCurrentTimestamp()),
										 TimestampTzGetDatum(start));
		lvalues[3] = Int64GetDatum(r.added);
		lvalues[4] = Int64GetDatum(r.removed);
		lvalues[5] = Int64GetDatum(r.total);
		spi_exec("INSERT INTO ccrm.target_group_refresh (group_id, refreshed_at, duration, added, removed, total)"
				 " VALUES ($1, $2, $3, $4, $5, $6)", 6, ltypes, lvalues, SPI_OK_INSERT);
		spi_exec("UPDATE ccrm.target_group SET member_count = $6, refreshed_at = $2"
				 " WHERE id OPERATOR(pg_catalog.=) $1", 6, ltypes, lvalues, SPI_OK_UPDATE);
	}
	return r;
}

CcrmRefreshResult
CcrmRefreshGroup(int64 group_id, const TimestampTz *at)
{
	CcrmRefreshResult r;

	CcrmSPIConnect();
	r = refresh_locked(lock_group(NULL, group_id), at);
	SPI_finish();
	return r;
}

static Datum
refresh_result(FunctionCallInfo fcinfo, CcrmRefreshResult r)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(r.added);
	values[1] = Int64GetDatum(r.removed);
	values[2] = Int64GetDatum(r.total);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

Datum
ccrm_refresh_target_group(PG_FUNCTION_ARGS)
{
	TimestampTz at;
	const TimestampTz *atp = CcrmFilterInstantArg(fcinfo, 1, &at);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CcrmRefreshResult r;

	CcrmSPIConnect();
	r = refresh_locked(lock_group(name, 0), atp);
	SPI_finish();
	return refresh_result(fcinfo, r);
}

Datum
ccrm_refresh_target_group_by_id(PG_FUNCTION_ARGS)
{
	TimestampTz at;
	const TimestampTz *atp = CcrmFilterInstantArg(fcinfo, 1, &at);

	return refresh_result(fcinfo, CcrmRefreshGroup(PG_GETARG_INT64(0), atp));
}

/* ----------------------------------------------------------------
 * Manual includes and excludes
 * ---------------------------------------------------------------- */

/* The distinct non-null ids of an int8[]; NULL elements are an error. */
static Datum
member_array(ArrayType *ids)
{
	if (ARR_NDIM(ids) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("member ids must be a one-dimensional array")));
	if (array_contains_nulls(ids))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("member ids must not contain NULL")));
	return PointerGetDatum(ids);
}

/* Every id must be a record of the group's entity. */
static void
check_members_exist(const CcrmEntity *ent, Datum ids)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	char	   *missing;

	values[0] = ids;
	spi_exec(psprintf("SELECT pg_catalog.string_agg(x::pg_catalog.text, ', ' ORDER BY x)"
					  "  FROM (SELECT DISTINCT pg_catalog.unnest($1) AS x) u"
					  " WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) u.x)",
					  ent->qualname, quote_identifier(ent->key_column)),
			 1, types, values, SPI_OK_SELECT);
	missing = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (missing != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("no %s with %s %s", ent->name, ent->key_column, missing),
				 errhint("Members are keys (%s) of %s.", ent->key_column, ent->qualname)));
}

static Datum
change_override(FunctionCallInfo fcinfo, int mode)	/* 1 include, 0 exclude, -1 clear */
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Datum		ids = member_array(PG_GETARG_ARRAYTYPE_P(1));
	Oid			types[3] = {INT8OID, INT8ARRAYOID, TIMESTAMPTZOID};
	Datum		values[3];
	GroupRow   *g;
	int64		changed;

	CcrmSPIConnect();
	g = lock_group(name, 0);
	values[0] = Int64GetDatum(g->id);
	values[1] = ids;
	values[2] = group_stamp(g);

	if (mode < 0)
	{
		spi_exec("DELETE FROM ccrm.target_group_override WHERE group_id OPERATOR(pg_catalog.=) $1"
				 " AND member_id OPERATOR(pg_catalog.=) ANY ($2)", 2, types, values, SPI_OK_DELETE);
		changed = SPI_processed;
		SPI_finish();
		PG_RETURN_INT64(changed);
	}

	check_members_exist(CcrmEntityLookup(g->entity, false), ids);
	spi_exec(mode
			 ? "INSERT INTO ccrm.target_group_override (group_id, member_id, include)"
			 " SELECT DISTINCT $1, pg_catalog.unnest($2), true"
			 " ON CONFLICT (group_id, member_id) DO UPDATE SET include = true,"
			 " created_at = pg_catalog.now(), created_by = CURRENT_USER"
			 : "INSERT INTO ccrm.target_group_override (group_id, member_id, include)"
			 " SELECT DISTINCT $1, pg_catalog.unnest($2), false"
			 " ON CONFLICT (group_id, member_id) DO UPDATE SET include = false,"
			 " created_at = pg_catalog.now(), created_by = CURRENT_USER",
			 2, types, values, SPI_OK_INSERT);
	if (mode)
		spi_exec("INSERT INTO ccrm.target_group_membership (group_id, member_id, entered_at)"
				 " SELECT $1, u.x, $3 FROM (SELECT DISTINCT pg_catalog.unnest($2) AS x) u"
				 " WHERE NOT EXISTS (SELECT 1 FROM ccrm.target_group_membership m"
				 " WHERE m.group_id OPERATOR(pg_catalog.=) $1 AND m.member_id OPERATOR(pg_catalog.=) u.x"
				 " AND m.left_at IS NULL)", 3, types, values, SPI_OK_INSERT);
	else
		spi_exec("UPDATE ccrm.target_group_membership SET left_at = GREATEST($3, entered_at)"
				 " WHERE group_id OPERATOR(pg_catalog.=) $1 AND left_at IS NULL"
				 " AND member_id OPERATOR(pg_catalog.=) ANY ($2)", 3, types, values, SPI_OK_UPDATE);
	changed = SPI_processed;
	set_member_count(g->id, g->member_count + (mode ? changed : -changed));
	SPI_finish();
	PG_RETURN_INT64(changed);
}

Datum
ccrm_include_in_group(PG_FUNCTION_ARGS)
{
	return change_override(fcinfo, 1);
}

Datum
ccrm_exclude_from_group(PG_FUNCTION_ARGS)
{
	return change_override(fcinfo, 0);
}

Datum
ccrm_clear_group_override(PG_FUNCTION_ARGS)
{
	return change_override(fcinfo, -1);
}

/* ----------------------------------------------------------------
 * Definition: alter, drop, and the checking trigger
 * ---------------------------------------------------------------- */

/* Names of the groups whose filters use group_id, or NULL. */
static char *
dependent_groups(int64 group_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(group_id);
	spi_exec("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(g.name), ', ' ORDER BY g.name)"
			 "  FROM ccrm.target_group_dependency d JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) d.group_id"
			 " WHERE d.depends_on OPERATOR(pg_catalog.=) $1 AND d.group_id OPERATOR(pg_catalog.<>) $1",
			 1, types, values, SPI_OK_SELECT);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

Datum
ccrm_target_group_id(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target group name must not be null")));
	PG_RETURN_INT64(CcrmGroupIdByName(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

Datum
ccrm_drop_target_group(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	GroupRow   *g;
	char	   *users;

	CcrmSPIConnect();
	g = lock_group(text_to_cstring(PG_GETARG_TEXT_PP(0)), 0);
	users = dependent_groups(g->id);
	if (users)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("target group \"%s\" is used by other groups' filters", g->name),
				 errdetail("Groups using it through in_group: %s.", users),
				 errhint("Change or drop those groups first.")));
	values[0] = Int64GetDatum(g->id);
	/* scheduled jobs on it (ccrm.job exists from 0.3.0 on) */
	if (SPI_execute("SELECT pg_catalog.to_regclass('ccrm.job') IS NOT NULL", true, 1) == SPI_OK_SELECT &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
	{
		spi_exec("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
				 "  FROM ccrm.job WHERE group_id OPERATOR(pg_catalog.=) $1",
				 1, types, values, SPI_OK_SELECT);
		users = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (users)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("target group \"%s\" has scheduled jobs", g->name),
					 errdetail("Jobs on it: %s.", users),
					 errhint("Delete them or move them to another group first (ccrm.delete_job, ccrm.alter_job).")));
	}
	/* follow-up sequences using it (ccrm.sequence exists from 0.9.0 on), read as the catalog's owner */
	if (SPI_execute("SELECT pg_catalog.to_regclass('ccrm.sequence_dependency') IS NOT NULL", true, 1) == SPI_OK_SELECT &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
	{
		CcrmExecuteAsOwner("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(s.name), ', ' ORDER BY s.name)"
						   "  FROM ccrm.sequence s JOIN ccrm.sequence_dependency d ON d.sequence_id OPERATOR(pg_catalog.=) s.id"
						   " WHERE d.group_id OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, SPI_OK_SELECT);
		users = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (users)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("target group \"%s\" is used by follow-up sequences", g->name),
					 errdetail("Sequences using it through in_group: %s.", users),
					 errhint("Change their filters or drop them first.")));
	}
	spi_exec("DELETE FROM ccrm.target_group WHERE id OPERATOR(pg_catalog.=) $1",
			 1, types, values, SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * The filter of a group that an active follow-up sequence uses (through
 * in_group, directly or through other groups) cannot change: it would act
 * on the whole database at once, as changing the sequence's own filter
 * would (sequence.c).  The sequences are read as the catalog's owner, so
 * the error names them even when they belong to other roles.  SPI
 * connected.
 */
static void
check_sequence_users(int64 group_id, const char *name)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	char	   *users;

	if (SPI_execute("SELECT pg_catalog.to_regclass('ccrm.sequence_dependency') IS NOT NULL", true, 1) != SPI_OK_SELECT ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
		return;
	values[0] = Int64GetDatum(group_id);
	CcrmExecuteAsOwner("WITH RECURSIVE up(id) AS (SELECT $1::pg_catalog.int8"
					   "  UNION SELECT d.group_id FROM ccrm.target_group_dependency d"
					   "         JOIN up ON d.depends_on OPERATOR(pg_catalog.=) up.id)"
					   " SELECT pg_catalog.string_agg(DISTINCT pg_catalog.quote_literal(s.name), ', ')"
					   "   FROM ccrm.sequence s JOIN ccrm.sequence_dependency sd ON sd.sequence_id OPERATOR(pg_catalog.=) s.id"
					   "  WHERE s.active AND sd.group_id IN (SELECT id FROM up)",
					   1, types, values, NULL, SPI_OK_SELECT);
	users = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (users)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the filter of target group \"%s\" cannot change while active sequences use it", name),
				 errdetail("Active sequences using it through in_group: %s.", users),
				 errhint("Deactivate those sequences first (ccrm.deactivate_sequence), change the filter, then activate them again.")));
}

/* Reject a chain of in_group references that leads back to the group. */
static void
check_cycle(int64 group_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	char	   *cycle;

	values[0] = Int64GetDatum(group_id);
	spi_exec("WITH RECURSIVE walk(id, path) AS ("
			 "  SELECT d.depends_on, ARRAY[d.group_id, d.depends_on]"
			 "    FROM ccrm.target_group_dependency d WHERE d.group_id OPERATOR(pg_catalog.=) $1"
			 "  UNION ALL"
			 "  SELECT d.depends_on, w.path OPERATOR(pg_catalog.||) d.depends_on"
			 "    FROM walk w JOIN ccrm.target_group_dependency d ON d.group_id OPERATOR(pg_catalog.=) w.id"
			 "   WHERE w.id OPERATOR(pg_catalog.<>) $1"
			 "     AND NOT d.depends_on OPERATOR(pg_catalog.=) ANY (w.path[2:]))"
			 " SELECT (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(g.name), ' -> ' ORDER BY p.n)"
			 "           FROM pg_catalog.unnest(w.path) WITH ORDINALITY p(id, n)"
			 "           JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) p.id)"
			 "   FROM walk w WHERE w.id OPERATOR(pg_catalog.=) $1 LIMIT 1",
			 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	cycle = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_RECURSION),
			 errmsg("target groups would refer to each other in a cycle: %s", cycle),
			 errhint("A group's filter cannot depend, through in_group, on the group itself.")));
}

Datum
ccrm_target_group_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	bool		is_update;
	bool		filter_changed;
	bool		isnull;
	int64		id;
	char	   *entity;
	Datum		filter;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.target_group_trigger() must be an INSERT OR UPDATE row trigger")));

	desc = RelationGetDescr(td->tg_relation);
	is_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	row = is_update ? td->tg_newtuple : td->tg_trigtuple;

	/* a restore brings the dependency rows along; groups may come in any order */
	if (CcrmRestoring())
		return PointerGetDatum(TRIGGER_FIRED_BEFORE(td->tg_event) ? row : NULL);

	/*
	 * BEFORE: only name an unknown entity plainly (the foreign key would
	 * report it without saying what is valid).  Everything else needs the
	 * row in place and happens AFTER.
	 */
	if (TRIGGER_FIRED_BEFORE(td->tg_event))
	{
		bool		unull;
		Datum		user = heap_getattr(row, SPI_fnumber(desc, "responsible_user_id"), desc, &unull);

		(void) CcrmEntityLookup(SPI_getvalue(row, desc, SPI_fnumber(desc, "entity")), false);
		if (!unull)
		{
			values[0] = user;
			CcrmSPIConnect();
			spi_exec("SELECT 1 FROM ccrm.crm_user WHERE id OPERATOR(pg_catalog.=) $1",
					 1, types, values, SPI_OK_SELECT);
			if (SPI_processed == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
						 errmsg("user with id " INT64_FORMAT " does not exist", DatumGetInt64(user)),
						 errhint("The responsible user is an id of ccrm.crm_user.")));
			SPI_finish();
		}
		return PointerGetDatum(row);
	}
	filter_changed = !is_update || CcrmColumnChanged(row, td->tg_trigtuple, desc, "filter") ||
		CcrmColumnChanged(row, td->tg_trigtuple, desc, "entity");
	if (is_update && !filter_changed && !CcrmColumnChanged(row, td->tg_trigtuple, desc, "name"))
		return PointerGetDatum(NULL);

	id = DatumGetInt64(heap_getattr(row, SPI_fnumber(desc, "id"), desc, &isnull));
	entity = SPI_getvalue(row, desc, SPI_fnumber(desc, "entity"));
	filter = heap_getattr(row, SPI_fnumber(desc, "filter"), desc, &isnull);
	values[0] = Int64GetDatum(id);

	CcrmSPIConnect();
	if (is_update && CcrmColumnChanged(row, td->tg_trigtuple, desc, "entity"))
	{
		spi_exec("SELECT 1 FROM ccrm.target_group_membership WHERE group_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
				 1, types, values, SPI_OK_SELECT);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("the entity of target group \"%s\" cannot change once it has had members",
							SPI_getvalue(row, desc, SPI_fnumber(desc, "name"))),
					 errhint("Create a new group for the other entity.")));
	}
	if (filter_changed && is_update)
		check_sequence_users(id, SPI_getvalue(row, desc, SPI_fnumber(desc, "name")));
	if (filter_changed)
	{
		CcrmEntity *ent = CcrmEntityLookup(entity, false);
		List	   *groups = NIL;
		ListCell   *lc;

		if (!isnull)
		{
			Jsonb	   *jb = DatumGetJsonbP(filter);

			if (JB_ROOT_IS_SCALAR(jb) && !JB_ROOT_IS_OBJECT(jb))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the filter of a target group must be a JSON object"),
						 errhint("Use SQL NULL (or filter => 'null' in ccrm.alter_target_group) for a static group.")));
			(void) CcrmFilterCompile(ent, jb, "t", &groups, NULL);
		}
		spi_exec("DELETE FROM ccrm.target_group_dependency WHERE group_id OPERATOR(pg_catalog.=) $1",
				 1, types, values, SPI_OK_DELETE);
		foreach(lc, groups)
		{
			values[1] = Int64GetDatum(*(int64 *) lfirst(lc));
			spi_exec("INSERT INTO ccrm.target_group_dependency (group_id, depends_on) VALUES ($1, $2)"
					 " ON CONFLICT DO NOTHING", 2, types, values, SPI_OK_INSERT);
		}
		if (groups != NIL)
			check_cycle(id);
	}

	if (is_update && CcrmColumnChanged(row, td->tg_trigtuple, desc, "name"))
	{
		Oid			rtypes[2] = {INT8OID, TEXTOID};
		Datum		rvalues[2];
		char	   *broken;

		rvalues[0] = values[0];
		rvalues[1] = PointerGetDatum(cstring_to_text(SPI_getvalue(td->tg_trigtuple, desc,
																  SPI_fnumber(desc, "name"))));
		spi_exec("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(g.name), ', ' ORDER BY g.name)"
				 "  FROM ccrm.target_group_dependency d JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) d.group_id"
				 " WHERE d.depends_on OPERATOR(pg_catalog.=) $1"
				 "   AND pg_catalog.jsonb_path_exists(g.filter, '$.** ? (@.in_group == $n)',"
				 "                                    pg_catalog.jsonb_build_object('n', $2))",
				 2, rtypes, rvalues, SPI_OK_SELECT);
		broken = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (broken)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("target group \"%s\" is referred to by name in other groups' filters",
							TextDatumGetCString(rvalues[1])),
					 errdetail("Groups using it by name: %s.", broken),
					 errhint("Refer to it by id in those filters ({\"in_group\": " INT64_FORMAT "}) or change them first.",
							 id)));
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
