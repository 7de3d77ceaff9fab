/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit of runs that change fields (ccrm.run_audit), undoing a run
 *	  (ccrm.undo_run) and purging old audit (ccrm.purge_audit).
 *
 *	  An audit row holds, for one record changed by one step of a run (a
 *	  target of a mass update, a formula), the old and the new values of
 *	  the fields the step wrote, as JSON objects keyed by field name
 *	  (custom fields: their attrs value; a missing one is null).
 *
 *	  Undo goes through the steps of a run backwards.  A record is restored
 *	  only when every field of the step still holds exactly what the step
 *	  wrote (both rendered as JSON in the undoing session: a column through
 *	  its type, so that a timestamptz audited in one TimeZone matches in
 *	  another; a timestamptz custom field as an instant); otherwise
 *	  somebody changed it since, the record keeps its current values and is
 *	  reported as a conflict.  Restored audit rows are marked undone_at, so
 *	  undoing twice restores nothing twice, and a conflict fixed by hand can
 *	  be undone later.  Undo is set-based: one statement per step, running
 *	  as the caller, with the tables' triggers firing as usual.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "spi_debug.h"
#include "action_run.h"
#include "instant.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_undo_run);
PG_FUNCTION_INFO_V1(ccrm_purge_audit);

/* Undo one step of a run for one entity; returns the rows restored. */
static int64
undo_step(int64 run_id, const CcrmEntity *ent, int step, Jsonb *sample)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	StringInfoData set;
	StringInfoData custom_names;
	StringInfoData custom_old;
	StringInfoData cur;
	StringInfoData wrote;
	StringInfoData sql;
	Oid			types[3] = {INT8OID, TEXTOID, INT4OID};
	Datum		args[3];
	const char *key = quote_identifier(ent->key_column);

	initStringInfo(&set);
	initStringInfo(&custom_names);
	initStringInfo(&custom_old);
	initStringInfo(&cur);
	initStringInfo(&wrote);
	it = JsonbIteratorInit(&sample->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;
		const CcrmField *f;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		f = CcrmFieldLookup(ent, name);
		if (f == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("cannot undo run " INT64_FORMAT ": %s has no field \"%s\" any more",
							run_id, ent->name, name),
					 errhint("The field was dropped or renamed after the run.")));
		/*
		 * What the field holds now and what the step wrote, rendered alike
		 * in this session: a column through its type (the audit's text
		 * read back into the row's type, then to_jsonb like the current
		 * value), a timestamptz custom field as an instant, other custom
		 * fields as stored.  to_jsonb of a timestamptz depends on TimeZone
		 * (and of other types on IntervalStyle, extra_float_digits...), so
		 * comparing the audit's text with the current value's rendering
		 * would see a change wherever the zones differ.
		 */
		if (!f->is_custom)
		{
			appendStringInfo(&cur, "%s%s, pg_catalog.to_jsonb(t.%s)", cur.len ? ", " : "",
							 quote_literal_cstr(name), quote_identifier(name));
			appendStringInfo(&wrote, "%s%s, pg_catalog.to_jsonb((pg_catalog.jsonb_populate_record(t, a.new_values)).%s)",
							 wrote.len ? ", " : "", quote_literal_cstr(name), quote_identifier(name));
		}
		else if (f->typid == TIMESTAMPTZOID)
		{
			appendStringInfo(&cur, "%s%s, pg_catalog.to_jsonb((t.attrs OPERATOR(pg_catalog.->>) %s)::pg_catalog.timestamptz)",
							 cur.len ? ", " : "", quote_literal_cstr(name), quote_literal_cstr(name));
			appendStringInfo(&wrote, "%s%s, pg_catalog.to_jsonb((a.new_values OPERATOR(pg_catalog.->>) %s)::pg_catalog.timestamptz)",
							 wrote.len ? ", " : "", quote_literal_cstr(name), quote_literal_cstr(name));
		}
		else
		{
			appendStringInfo(&cur, "%s%s, (t.attrs OPERATOR(pg_catalog.->) %s)",
							 cur.len ? ", " : "", quote_literal_cstr(name), quote_literal_cstr(name));
			appendStringInfo(&wrote, "%s%s, (a.new_values OPERATOR(pg_catalog.->) %s)",
							 wrote.len ? ", " : "", quote_literal_cstr(name), quote_literal_cstr(name));
		}
		if (f->is_custom)
		{
			appendStringInfo(&custom_names, "%s%s", custom_names.len ? ", " : "", quote_literal_cstr(name));
			appendStringInfo(&custom_old, "%s%s, (a.old_values OPERATOR(pg_catalog.->) %s)",
							 custom_old.len ? ", " : "", quote_literal_cstr(name), quote_literal_cstr(name));
		}
		else
			appendStringInfo(&set, "%s%s = p.%s", set.len ? ", " : "", quote_identifier(name),
							 quote_identifier(name));
	}
	if (custom_names.len)
		appendStringInfo(&set, "%sattrs = (t.attrs OPERATOR(pg_catalog.-) ARRAY[%s]::pg_catalog.text[])"
						 " OPERATOR(pg_catalog.||) pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(%s))",
						 set.len ? ", " : "", custom_names.data, custom_old.data);

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH a AS ("
					 "  SELECT record_id, old_values, new_values FROM ccrm.run_audit"
					 "   WHERE run_id OPERATOR(pg_catalog.=) $1 AND entity OPERATOR(pg_catalog.=) $2"
					 "     AND step OPERATOR(pg_catalog.=) $3 AND undone_at IS NULL),"
					 " r AS ("
					 "  UPDATE %s t SET %s"
					 "    FROM a, LATERAL pg_catalog.jsonb_populate_record(NULL::%s, a.old_values) p"
					 "   WHERE t.%s OPERATOR(pg_catalog.=) a.record_id"
					 "     AND pg_catalog.jsonb_build_object(%s) OPERATOR(pg_catalog.=) pg_catalog.jsonb_build_object(%s)"
					 "  RETURNING a.record_id)"
					 " UPDATE ccrm.run_audit x SET undone_at = pg_catalog.clock_timestamp() FROM r"
					 "  WHERE x.run_id OPERATOR(pg_catalog.=) $1 AND x.entity OPERATOR(pg_catalog.=) $2"
					 "    AND x.step OPERATOR(pg_catalog.=) $3 AND x.record_id OPERATOR(pg_catalog.=) r.record_id",
					 ent->qualname, set.data, ent->qualname, key, cur.data, wrote.data);
	args[0] = Int64GetDatum(run_id);
	args[1] = CStringGetTextDatum(ent->name);
	args[2] = Int32GetDatum(step);
	if (SPI_execute_with_args(sql.data, 3, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not undo run " INT64_FORMAT " for %s", run_id, ent->name);
	return SPI_processed;
}

/*
 * ccrm.undo_run(run bigint) RETURNS TABLE (entity text, restored bigint,
 * conflicts bigint, conflict_ids bigint[])
 */
Datum
ccrm_undo_run(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		run_id;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	char	   *status;
	int			nestlevel;
	SPITupleTable *steps;
	uint64		nsteps;
	List	   *entities = NIL;
	List	   *restored = NIL;
	ListCell   *lc;
	ListCell   *lc2;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run must not be null")));
	run_id = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	args[0] = Int64GetDatum(run_id);
	if (SPI_execute_with_args("SELECT status FROM ccrm.job_run WHERE id OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.job_run");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("run " INT64_FORMAT " does not exist", run_id),
				 errhint("Runs are the ids of ccrm.job_run; you see only runs made as you.")));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(status, "running") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run " INT64_FORMAT " is still running", run_id),
				 errhint("Undo it when it has finished.")));

	/* steps with something left to undo, last first */
	if (SPI_execute_with_args("SELECT entity, step, (pg_catalog.array_agg(old_values))[1]"
							  "  FROM ccrm.run_audit WHERE run_id OPERATOR(pg_catalog.=) $1 AND undone_at IS NULL"
							  " GROUP BY entity, step ORDER BY step DESC, entity",
							  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.run_audit");
	steps = SPI_tuptable;
	nsteps = SPI_processed;
	if (nsteps == 0)
	{
		if (SPI_execute_with_args("SELECT 1 FROM ccrm.run_audit WHERE run_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
								  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.run_audit");
		if (SPI_processed == 0)
			ereport(NOTICE,
					(errmsg("run " INT64_FORMAT " has no audit: nothing to undo", run_id),
					 errdetail("It changed nothing, ran with audit off, or its audit was purged.")));
	}
	for (uint64 i = 0; i < nsteps; i++)
	{
		bool		isnull;
		char	   *entity = SPI_getvalue(steps->vals[i], steps->tupdesc, 1);
		int			step = DatumGetInt32(SPI_getbinval(steps->vals[i], steps->tupdesc, 2, &isnull));
		Jsonb	   *sample = DatumGetJsonbPCopy(SPI_getbinval(steps->vals[i], steps->tupdesc, 3, &isnull));
		CcrmEntity *ent = CcrmEntityLookup(entity, false);
		int64		n = undo_step(run_id, ent, step, sample);
		bool		found = false;

		forboth(lc, entities, lc2, restored)
		{
			if (strcmp(lfirst(lc), entity) == 0)
			{
				*(int64 *) lfirst(lc2) += n;
				found = true;
			}
		}
		if (!found)
		{
			int64	   *cnt = palloc(sizeof(int64));

			*cnt = n;
			entities = lappend(entities, entity);
			restored = lappend(restored, cnt);
		}
	}

	/* per entity: restored, and what could not be restored */
	forboth(lc, entities, lc2, restored)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		bool		isnull;
		int64		conflicts;
		char	   *ids;
		MemoryContext old;

		args[1] = CStringGetTextDatum(lfirst(lc));
		if (SPI_execute_with_args("SELECT pg_catalog.count(*), pg_catalog.array_agg(record_id ORDER BY record_id)"
								  "  FROM (SELECT DISTINCT record_id FROM ccrm.run_audit"
								  "         WHERE run_id OPERATOR(pg_catalog.=) $1 AND entity OPERATOR(pg_catalog.=) $2"
								  "           AND undone_at IS NULL) s",
								  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.run_audit");
		conflicts = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		ids = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (conflicts > 0)
			ereport(NOTICE,
					(errmsg("run " INT64_FORMAT ": " INT64_FORMAT " %s record(s) changed since the run were not restored",
							run_id, conflicts, (char *) lfirst(lc)),
					 errdetail("Keys: %s.", ids),
					 errhint("Fix them by hand, or bring back the values the run wrote and undo again.")));

		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		values[0] = CStringGetTextDatum(lfirst(lc));
		values[1] = Int64GetDatum(*(int64 *) lfirst(lc2));
		values[2] = Int64GetDatum(conflicts);
		if (conflicts > 0)
			values[3] = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull),
								  false, -1);
		else
			values[3] = PointerGetDatum(construct_empty_array(INT8OID));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
	}
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	return (Datum) 0;
}

/*
 * ccrm.purge_audit(older_than interval DEFAULT NULL, at timestamptz DEFAULT
 * now()) → rows deleted: the audit of runs that finished longer before at
 * (NULL: ccrm.audit_retention days; 0 days keeps everything), and audit
 * whose run is gone.
 */
Datum
ccrm_purge_audit(PG_FUNCTION_ARGS)
{
	Interval   *older;
	Oid			types[2] = {INTERVALOID, TIMESTAMPTZOID};
	Datum		args[2];
	int64		n;
	bool		isnull;

	args[1] = TimestampTzGetDatum(CcrmInstantArg(fcinfo, 1));
	if (PG_ARGISNULL(0))
	{
		if (ccrm_audit_retention == 0)
			PG_RETURN_INT64(0);
		older = palloc0(sizeof(Interval));
		older->day = ccrm_audit_retention;
	}
	else
		older = PG_GETARG_INTERVAL_P(0);
	args[0] = IntervalPGetDatum(older);

	CcrmSPIConnect();
	if (SPI_execute_with_args("WITH gone AS ("
							  "  DELETE FROM ccrm.run_audit a"
							  "   WHERE NOT EXISTS (SELECT 1 FROM ccrm.job_run r"
							  "                      WHERE r.id OPERATOR(pg_catalog.=) a.run_id"
							  "                        AND (r.status OPERATOR(pg_catalog.=) 'running'"
							  "                             OR COALESCE(r.finished_at, r.started_at) OPERATOR(pg_catalog.>=)"
							  "                                ($2 OPERATOR(pg_catalog.-) $1)))"
							  "  RETURNING 1)"
							  " SELECT pg_catalog.count(*) FROM gone",
							  2, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not purge ccrm.run_audit");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(n);
}
