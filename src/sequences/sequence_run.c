/*-------------------------------------------------------------------------
 *
 * sequence_run.c
 *	  Follow-up sequences at work: enrolment passes and the processing of
 *	  due steps, exactly once per record, step and enrolment round.
 *
 *	  Enrolment (SeqEnrolPass): one INSERT ... SELECT over the entity's
 *	  table with the compiled filter, skipping records that are enrolled
 *	  (or, by the re-enrolment rule, may not enrol again), stamping
 *	  matched_at and the first step's due time.  A full pass looks at every
 *	  record (activation, and reconciliation every
 *	  ccrm.sequence_reconcile_interval); an incremental pass only at the
 *	  records that statement triggers queued in ccrm.sequence_pending
 *	  (taken with DELETE ... RETURNING in the same statement, so a key is
 *	  looked at once after each change), in key order, first probed
 *	  against the enrolments' index so that only keys that may enrol cost a
 *	  look-up of the entity's row: index probes per changed key, no scan.
 *	  only_new enrols only records listed in ccrm.sequence_new_record
 *	  whose inserting transaction is not visible in the activation's
 *	  snapshot.  The sequence row is locked (FOR NO KEY UPDATE) for a
 *	  pass, so passes of one sequence serialise; the partial unique index
 *	  on active enrolments and ON CONFLICT DO NOTHING make a lost race
 *	  harmless anyway.
 *
 *	  Steps (process_batch): one batch is one sequence, confined to its
 *	  owner (run_as_owner.c), in one transaction:
 *		1. claim due active enrolments FOR UPDATE SKIP LOCKED (a second
 *		   processor skips them; once the first commits, their next_due has
 *		   moved, so a re-check of the row excludes them);
 *		2. re-check exit conditions (record gone, no longer matching when
 *		   exit_when_unmatched, exit filter) and end those enrolments;
 *		3. run the step for the rest, grouped by step and round: messages
 *		   through the outbox with the idempotency key
 *		   ccrm-sequence:<sequence>:<step id>:<round>:<record>, or tasks
 *		   (ccrm.activity, unique per enrolment and step);
 *		4. record each execution in ccrm.sequence_step_run (primary key
 *		   (enrolment, step)) and advance the enrolment to its next step and
 *		   due time, or complete it.
 *	  All of it commits or none of it does, so a crash mid-batch leaves the
 *	  enrolments due as before and the batch runs again.  A step that fails
 *	  for a group of records is retried record by record in
 *	  subtransactions: a record that fails alone is recorded with its
 *	  reason ("skipped") and its enrolment ends (exit reason "failed"),
 *	  without blocking the batch.  Data problems the outbox decides
 *	  (no address, opted out) are not failures: the message is recorded
 *	  as suppressed and the enrolment goes on.
 *
 *	  Due times come from ccrm.step_due_time (sequence_due.c), in the
 *	  recipient's time zone for customer steps and the user's for user
 *	  steps, falling back to the time_zone setting; the instant a step ran
 *	  is the "after" of the next.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "entity.h"
#include "execute_as_owner.h"
#include "filter.h"
#include "guc_level.h"
#include "messaging.h"
#include "privilege.h"
#include "run_as_owner.h"
#include "sequence.h"
#include "spi_debug.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_run_sequences);
PG_FUNCTION_INFO_V1(ccrm_process_sequences);

/*---- GUC variables ----*/
int			ccrm_sequence_reconcile_interval = 300;
int			ccrm_sequence_batch_size = 1000;

void
SeqRunInit(void)
{
	DefineCustomIntVariable("ccrm.sequence_reconcile_interval",
							"Seconds between full enrolment passes of an active sequence.",
							"Full passes catch records that start to match without a write the triggers see: "
							"relative dates, TRUNCATE, writes with session_replication_role = replica.",
							&ccrm_sequence_reconcile_interval, 300, 1, 7 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.sequence_batch_size",
							"Due steps a sequence processes per transaction.",
							NULL, &ccrm_sequence_batch_size, 1000, 1, 1000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
}

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed (%d): %s", rc, sql);
}

static char *
qcol(const char *alias, const char *col)
{
	return psprintf("%s.%s", alias, quote_identifier(col));
}

/*
 * SQL over the entity row "t": the time zone and the country of a step's
 * recipient (text, NULL when unknown: the setting applies).
 */
static void
recipient_place(const CcrmEntity *ent, const SeqStep *st, char **zone, char **country)
{
	*zone = "NULL::pg_catalog.text";
	*country = "NULL::pg_catalog.text";
	if (strcmp(st->recipient, "record") == 0)
	{
		if (strcmp(ent->name, "contact") == 0)
		{
			*zone = "t.timezone";
			*country = "t.country";
		}
		else if (strcmp(ent->name, "account") == 0)
			*country = "t.country";
		else if (!ent->builtin && ent->contact_column)
		{
			*zone = psprintf("(SELECT c.timezone FROM ccrm.contact c WHERE c.id OPERATOR(pg_catalog.=) %s)",
							 qcol("t", ent->contact_column));
			*country = psprintf("(SELECT c.country FROM ccrm.contact c WHERE c.id OPERATOR(pg_catalog.=) %s)",
								qcol("t", ent->contact_column));
		}
		else if (!ent->builtin && ent->account_column)
			*country = psprintf("(SELECT a.country FROM ccrm.account a WHERE a.id OPERATOR(pg_catalog.=) %s)",
								qcol("t", ent->account_column));
	}
	else if (strcmp(st->recipient, "owner") == 0 && ent->owner_column)
		*zone = psprintf("(SELECT u.timezone FROM ccrm.crm_user u WHERE u.id OPERATOR(pg_catalog.=) %s)",
						 qcol("t", ent->owner_column));
	else if (strcmp(st->recipient, "user") == 0)
		*zone = psprintf("(SELECT u.timezone FROM ccrm.crm_user u WHERE u.id OPERATOR(pg_catalog.=) "
						 INT64_FORMAT ")", st->user_id);
	*zone = psprintf("NULLIF(%s, '')", *zone);
	*country = psprintf("NULLIF(%s, '')", *country);
}

/* SQL: the due time of step st after the instant "after" (SQL), for the entity row t. */
static char *
due_sql(const CcrmEntity *ent, const SeqStep *st, const char *after)
{
	char	   *zone;
	char	   *country;
	bool		sms = st->medium && strcmp(st->medium, "sms") == 0;

	recipient_place(ent, st, &zone, &country);
	return psprintf("ccrm.step_due_time(%s, %d, %s, %s, %s, %s, %s)",
					after, st->delay_days, quote_literal_cstr(st->day_rule),
					st->has_not_before
					? psprintf("%s::pg_catalog.time",
							   quote_literal_cstr(DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(st->not_before)))))
					: "NULL::pg_catalog.time",
					zone, sms ? "true" : "false", sms ? country : "NULL::pg_catalog.text");
}

/* ----------------------------------------------------------------
 * Enrolment
 * ---------------------------------------------------------------- */

/*
 * SQL: the record (an int8 expression) may enrol by the sequence's
 * re-enrolment rule: never enrolled (never), no active enrolment
 * (after_end), or none active nor ended within the cool-down ($4).  $1 is
 * the sequence, $2 the pass's instant.
 */
static char *
may_enrol_sql(const SeqDef *seq, const char *record)
{
	if (strcmp(seq->reenrol, "never") == 0)
		return psprintf("NOT EXISTS (SELECT 1 FROM ccrm.sequence_enrolment o"
						" WHERE o.sequence_id OPERATOR(pg_catalog.=) $1"
						" AND o.record_id OPERATOR(pg_catalog.=) %s)", record);
	if (strcmp(seq->reenrol, "after_end") == 0)
		return psprintf("NOT EXISTS (SELECT 1 FROM ccrm.sequence_enrolment o"
						" WHERE o.sequence_id OPERATOR(pg_catalog.=) $1"
						" AND o.record_id OPERATOR(pg_catalog.=) %s"
						" AND o.status OPERATOR(pg_catalog.=) 'active')", record);
	return psprintf("NOT EXISTS (SELECT 1 FROM ccrm.sequence_enrolment o"
					" WHERE o.sequence_id OPERATOR(pg_catalog.=) $1"
					" AND o.record_id OPERATOR(pg_catalog.=) %s"
					" AND (o.status OPERATOR(pg_catalog.=) 'active'"
					"      OR o.ended_at OPERATOR(pg_catalog.>) ($2 OPERATOR(pg_catalog.-) $4)))", record);
}

/*
 * Enrol the records that match and may enrol: all of them (full) or those
 * queued as changed.  SPI connected, confined to the owner, the sequence
 * locked.  Returns how many were enrolled.
 */
int64
SeqEnrolPass(const SeqDef *seq, List *steps, bool full, TimestampTz at)
{
	CcrmEntity *ent = CcrmEntityLookup(seq->entity, false);
	SeqStep    *first = linitial(steps);
	const char *key = qcol("t", ent->key_column);
	char	   *filter = CcrmFilterCompile(ent, seq->filter, "t", NULL, &at);
	StringInfoData sql;
	Oid			types[4] = {INT8OID, TIMESTAMPTZOID, TEXTOID, INTERVALOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', 'n', 'n'};
	int64		n;
	bool		never = strcmp(seq->reenrol, "never") == 0;

	values[0] = Int64GetDatum(seq->id);
	values[1] = TimestampTzGetDatum(at);
	if (seq->snapshot)
	{
		values[2] = CStringGetTextDatum(seq->snapshot);
		nulls[2] = ' ';
	}
	if (seq->cooldown)
	{
		values[3] = DirectFunctionCall3(interval_in, CStringGetDatum(seq->cooldown),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		nulls[3] = ' ';
	}

	initStringInfo(&sql);
	if (!full)
	{
		/*
		 * The changed keys, consumed: distinct already (the primary key of
		 * ccrm.sequence_pending), in key order so that the index probes below
		 * walk the indexes forward, and first kept to those that may enrol
		 * (one probe of the enrolments' index), so that a record that is
		 * enrolled costs no look-up of the entity's row at all.
		 */
		appendStringInfo(&sql,
						 "WITH p AS (DELETE FROM ccrm.sequence_pending"
						 " WHERE sequence_id OPERATOR(pg_catalog.=) $1 RETURNING record_id), "
						 "pk AS MATERIALIZED (SELECT s.record_id FROM (SELECT record_id FROM p ORDER BY record_id) s"
						 " WHERE %s), ",
						 may_enrol_sql(seq, "s.record_id"));
	}
	else
		appendStringInfoString(&sql, "WITH ");
	appendStringInfo(&sql,
					 "ins AS (INSERT INTO ccrm.sequence_enrolment (sequence_id, record_id, round, matched_at, step, next_due)"
					 " SELECT $1, %s::pg_catalog.int8, %s, $2, 1, %s FROM ",
					 key,
					 never ? "1"
					 : psprintf("COALESCE((SELECT pg_catalog.max(o.round) FROM ccrm.sequence_enrolment o"
								" WHERE o.sequence_id OPERATOR(pg_catalog.=) $1"
								" AND o.record_id OPERATOR(pg_catalog.=) %s::pg_catalog.int8), 0) OPERATOR(pg_catalog.+) 1", key),
					 due_sql(ent, first, "$2"));
	if (full)
		appendStringInfo(&sql, "%s t", ent->qualname);
	else
	{
		/*
		 * Driven by the keys, whatever the statistics say: each one fetches
		 * its row by the key (OFFSET 0 keeps the subquery a parameterised
		 * scan on the inner side), so that no key means no read of the table.
		 */
		appendStringInfo(&sql, "pk CROSS JOIN LATERAL (SELECT t0.* FROM %s t0"
						 " WHERE %s::pg_catalog.int8 OPERATOR(pg_catalog.=) pk.record_id OFFSET 0) t",
						 ent->qualname, qcol("t0", ent->key_column));
	}
	appendStringInfo(&sql, " WHERE (%s)", filter);
	if (seq->exit_filter)
		appendStringInfo(&sql, " AND NOT COALESCE((%s), false)",
						 CcrmFilterCompile(ent, seq->exit_filter, "t", NULL, &at));
	if (seq->only_new)
		appendStringInfo(&sql,
						 " AND EXISTS (SELECT 1 FROM ccrm.sequence_new_record nr"
						 " WHERE nr.sequence_id OPERATOR(pg_catalog.=) $1"
						 " AND nr.record_id OPERATOR(pg_catalog.=) %s::pg_catalog.int8"
						 " AND NOT pg_catalog.pg_visible_in_snapshot(nr.xid, $3::pg_catalog.pg_snapshot))", key);
	if (full)
		appendStringInfo(&sql, " AND %s", may_enrol_sql(seq, psprintf("%s::pg_catalog.int8", key)));
	appendStringInfoString(&sql, " ON CONFLICT DO NOTHING RETURNING 1)"
						   " SELECT pg_catalog.count(*) FROM ins");
	if (full)
	{
		/*
		 * A full pass compares every match with the enrolments, which this very
		 * statement appends to: a nested loop would scan them once per row when
		 * their statistics are stale (right after a first activation), so only
		 * hash or merge joins here, as in a group refresh (target_group.c).  An
		 * incremental pass looks up a few keys, where an index nested loop is
		 * right.
		 */
		int			nestlevel = NewGUCNestLevel();

		(void) set_config_option("enable_nestloop", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		spi_exec(sql.data, 4, types, values, nulls, SPI_OK_SELECT);
		AtEOXact_GUC(true, nestlevel);
	}
	else
	{
		/* a few changed keys: index lookups, not a scan of the table or the enrolments */
		int			nestlevel = NewGUCNestLevel();

		(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		spi_exec(sql.data, 4, types, values, nulls, SPI_OK_SELECT);
		AtEOXact_GUC(true, nestlevel);
	}
	{
		bool		isnull;

		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (full)
		spi_exec("UPDATE ccrm.sequence SET reconciled_at = $2 WHERE id OPERATOR(pg_catalog.=) $1",
				 2, types, values, NULL, SPI_OK_UPDATE);
	return n;
}

/* ----------------------------------------------------------------
 * Steps
 * ---------------------------------------------------------------- */

/* What one step did for one enrolment. */
typedef struct Exec
{
	int64		enrolment_id;
	int64		record_id;
	int32		round;
	int32		step;			/* position */
	TimestampTz due;
	const char *exit_reason;	/* not NULL: the enrolment ends here */
	bool		ran;			/* a step execution is recorded */
	const char *outcome;		/* message, task, skipped */
	bool		has_message;
	int64		message_id;
	bool		has_activity;
	int64		activity_id;
	char	   *reason;
} Exec;

typedef struct Batch
{
	const SeqDef *seq;
	List	   *steps;
	CcrmEntity *ent;
	TimestampTz at;
	int			n;
	Exec	   *ex;
	MemoryContext cxt;			/* outlives subtransactions */
} Batch;

static ArrayType *
int8_array(Datum *d, int n)
{
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static Datum
array_of(Datum *d, bool *nulls, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, type, len, byval, align));
}

/* Records of a group: members[] index into b->ex */
typedef struct StepGroup
{
	int32		step;
	int32		round;
	int			n;
	int		   *members;
} StepGroup;

typedef struct TaskRow
{
	int64		record_id;
	bool		user_null;
	int64		user_id;
	bool		contact_null;
	int64		contact_id;
	bool		lead_null;
	int64		lead_id;
	char	   *subject;
	char	   *body;
} TaskRow;

typedef struct TaskCollect
{
	MemoryContext cxt;
	List	   *rows;
} TaskCollect;

static void
task_row(MsgRow *row, void *arg)
{
	TaskCollect *c = arg;
	MemoryContext old = MemoryContextSwitchTo(c->cxt);
	TaskRow    *t = palloc0(sizeof(TaskRow));

	t->record_id = row->record_id;
	t->user_null = row->user_null;
	t->user_id = row->user_id;
	t->contact_null = row->contact_null;
	t->contact_id = row->contact_id;
	t->lead_null = row->lead_null;
	t->lead_id = row->lead_id;
	t->subject = row->subject ? pstrdup(row->subject) : NULL;
	t->body = row->body ? pstrdup(row->body) : NULL;
	c->rows = lappend(c->rows, t);
	MemoryContextSwitchTo(old);
}

static void
task_flush(void *arg pg_attribute_unused())
{
}

static Exec *
find_exec(Batch *b, StepGroup *g, int64 record_id)
{
	for (int i = 0; i < g->n; i++)
		if (b->ex[g->members[i]].record_id == record_id)
			return &b->ex[g->members[i]];
	return NULL;
}

static MsgRecipient
recipient_of(const SeqStep *st)
{
	if (strcmp(st->recipient, "owner") == 0)
		return MSG_TO_OWNER;
	if (strcmp(st->recipient, "user") == 0)
		return MSG_TO_USER;
	return MSG_TO_RECORD;
}

/* Run one step for the members of a group (all, or only member "only" when >= 0). */
static void
run_group(Batch *b, StepGroup *g, int only)
{
	const SeqStep *st = list_nth(b->steps, g->step - 1);
	MsgTemplate *t = MsgTemplateLookup(st->template_name);
	Datum	   *ids = palloc(sizeof(Datum) * g->n);
	int			n = 0;
	ArrayType  *arr;
	int			nestlevel;
	List	   *found;
	ListCell   *lc;
	StepGroup		sub;

	if (only >= 0)
	{
		sub.step = g->step;
		sub.round = g->round;
		sub.n = 1;
		sub.members = &g->members[only];
		g = &sub;
	}
	for (int i = 0; i < g->n; i++)
		ids[n++] = Int64GetDatum(b->ex[g->members[i]].record_id);
	arr = int8_array(ids, n);

	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	if (st->medium)
	{
		MsgEnqueue	req;

		memset(&req, 0, sizeof(req));
		req.channel = MsgChannelLookup(t->channel, st->medium);
		req.source = MsgSourceCreate(b->ent, t->subject, t->body, t->html_body, false, st->medium,
									 recipient_of(st), st->user_id, st->has_sender, st->sender_id);
		req.reply_to = t->reply_to;
		req.origin = "sequence";
		req.has_origin_id = true;
		req.origin_id = b->seq->id;
		req.has_template = true;
		req.template_id = t->id;
		req.key_prefix = psprintf("ccrm-sequence:" INT64_FORMAT ":" INT64_FORMAT ":%d:",
								  b->seq->id, st->id, g->round);
		req.not_before = DT_NOBEGIN;
		req.at = b->at;
		found = MsgEnqueueMessages(&req, arr);
		foreach(lc, found)
		{
			MsgEnqueued *e = lfirst(lc);
			Exec	   *x = find_exec(b, g, e->record_id);
			MemoryContext old;

			if (x == NULL)
				continue;
			old = MemoryContextSwitchTo(b->cxt);
			x->ran = true;
			x->has_message = true;
			x->message_id = e->id;
			if (strcmp(e->status, "suppressed") == 0 || strcmp(e->status, "dropped") == 0)
			{
				x->outcome = "skipped";
				x->reason = psprintf("the message was %s (see ccrm.outbox.reason)", e->status);
			}
			else
				x->outcome = "message";
			MemoryContextSwitchTo(old);
		}
	}
	else
	{
		TaskCollect c;
		MsgSource  *src;
		int			k = 0;
		int			m;
		Datum	   *a[7];
		bool	   *an[7];
		Oid			types[11] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, INT4OID, INT4OID};
		Datum		values[11];
		static const Oid etypes[7] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID};

		c.cxt = CurrentMemoryContext;
		c.rows = NIL;
		src = MsgSourceCreate(b->ent, t->subject, t->body, NULL, false, NULL, recipient_of(st),
							  st->user_id, false, 0);
		MsgRenderRecords(src, arr, task_row, task_flush, &c);
		m = list_length(c.rows);
		for (int i = 0; i < 7; i++)
		{
			a[i] = palloc0(sizeof(Datum) * Max(m, 1));
			an[i] = palloc0(sizeof(bool) * Max(m, 1));
		}
		foreach(lc, c.rows)
		{
			TaskRow    *r = lfirst(lc);
			Exec	   *x = find_exec(b, g, r->record_id);

			if (x == NULL)
				continue;
			if (r->user_null)
			{
				MemoryContext old = MemoryContextSwitchTo(b->cxt);

				x->ran = true;
				x->outcome = "skipped";
				x->reason = pstrdup(strcmp(st->recipient, "owner") == 0 ? "the record has no owner"
									: "the user does not exist");
				MemoryContextSwitchTo(old);
				continue;
			}
			a[0][k] = Int64GetDatum(r->record_id);
			a[1][k] = Int64GetDatum(x->enrolment_id);
			a[2][k] = Int64GetDatum(r->user_id);
			a[3][k] = Int64GetDatum(r->contact_id);
			an[3][k] = r->contact_null;
			a[4][k] = Int64GetDatum(r->lead_id);
			an[4][k] = r->lead_null;
			a[5][k] = CStringGetTextDatum(r->subject && r->subject[0] ? r->subject : "(no subject)");
			a[6][k] = r->body ? CStringGetTextDatum(r->body) : (Datum) 0;
			an[6][k] = r->body == NULL;
			k++;
		}
		if (k > 0)
		{
			/* a registered record's contact, for the task's contact link */
			const char *contact_sql = (!b->ent->builtin && b->ent->contact_column)
				? psprintf("(SELECT t.%s::pg_catalog.int8 FROM %s t WHERE t.%s::pg_catalog.int8 OPERATOR(pg_catalog.=) x.rid)",
						   quote_identifier(b->ent->contact_column), b->ent->qualname,
						   quote_identifier(b->ent->key_column))
				: "NULL::pg_catalog.int8";

			for (int i = 0; i < 7; i++)
				values[i] = array_of(a[i], an[i], k, etypes[i]);
			values[7] = CStringGetTextDatum(b->ent->name);
			values[8] = TimestampTzGetDatum(b->at);
			values[9] = Int32GetDatum(Max(st->task_due_days, 0));
			values[10] = Int32GetDatum(g->step);
			spi_exec(psprintf("INSERT INTO ccrm.activity (kind, subject, description, user_id, contact_id, account_id,"
					 "       lead_id, due_on, entity, record_id, sequence_enrolment_id, sequence_step)"
					 " SELECT 'task', x.su, x.bo, x.uid,"
					 "        CASE WHEN $8 OPERATOR(pg_catalog.=) 'contact' THEN x.rid ELSE COALESCE(x.cid, %s) END,"
					 "        CASE WHEN $8 OPERATOR(pg_catalog.=) 'account' THEN x.rid END,"
					 "        CASE WHEN $8 OPERATOR(pg_catalog.=) 'lead' THEN x.rid ELSE x.lid END,"
					 "        (pg_catalog.timezone(COALESCE(NULLIF(u.timezone, ''),"
					 "                                      pg_catalog.current_setting('TimeZone')), $9))::pg_catalog.date"
					 "          OPERATOR(pg_catalog.+) $10,"
					 "        $8, x.rid, x.eid, $11"
					 "   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
					 "        pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7))"
					 "        AS x(rid, eid, uid, cid, lid, su, bo)"
					 "   LEFT JOIN ccrm.crm_user u ON u.id OPERATOR(pg_catalog.=) x.uid"
					 " ON CONFLICT (sequence_enrolment_id, sequence_step) WHERE sequence_enrolment_id IS NOT NULL"
					 " DO NOTHING RETURNING record_id, id",
							  contact_sql),
					 11, types, values, NULL, SPI_OK_INSERT_RETURNING);
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				bool		isnull;
				int64		rid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
				Exec	   *x = find_exec(b, g, rid);

				if (x == NULL)
					continue;
				x->ran = true;
				x->outcome = "task";
				x->has_activity = true;
				x->activity_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			}
		}
	}
	CcrmPopSearchPath(nestlevel);

	/* members the renderer did not find: deleted meanwhile */
	for (int i = 0; i < g->n; i++)
	{
		Exec	   *x = &b->ex[g->members[i]];

		if (!x->ran)
		{
			MemoryContext old = MemoryContextSwitchTo(b->cxt);

			x->ran = true;
			x->outcome = "skipped";
			x->reason = pstrdup("the record no longer exists");
			x->exit_reason = "deleted";
			MemoryContextSwitchTo(old);
		}
	}
}

/* run_group in a subtransaction: the error message, or NULL. */
static char *
run_group_isolated(Batch *b, StepGroup *g, int only)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile msg = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		run_group(b, g, only);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(b->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		msg = edata->message ? edata->message : "unknown error";
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return msg;
}

static void
reset_group(Batch *b, StepGroup *g)
{
	for (int i = 0; i < g->n; i++)
	{
		Exec	   *x = &b->ex[g->members[i]];

		x->ran = false;
		x->outcome = NULL;
		x->has_message = x->has_activity = false;
		x->reason = NULL;
		x->exit_reason = NULL;
	}
}

/*
 * One batch of due steps of a sequence; SPI connected, confined to its
 * owner.  Returns how many enrolments it claimed; *executed and *exited
 * count what it did.
 */
static int
process_batch(const SeqDef *seq, List *steps, TimestampTz at, int limit, int64 *executed, int64 *exited)
{
	CcrmEntity *ent = CcrmEntityLookup(seq->entity, false);
	Oid			types[3] = {INT8OID, TIMESTAMPTZOID, INT4OID};
	Datum		values[3];
	Batch		b;
	int			nsteps = list_length(steps);
	List	   *groups = NIL;
	ListCell   *lc;
	int			nrun = 0;

	memset(&b, 0, sizeof(b));
	b.seq = seq;
	b.steps = steps;
	b.ent = ent;
	b.at = at;
	b.cxt = CurrentMemoryContext;

	/* 1. claim */
	values[0] = Int64GetDatum(seq->id);
	values[1] = TimestampTzGetDatum(at);
	values[2] = Int32GetDatum(limit);
	spi_exec("SELECT e.id, e.record_id, e.round, e.step, e.next_due FROM ccrm.sequence_enrolment e"
			 " WHERE e.sequence_id OPERATOR(pg_catalog.=) $1 AND e.status OPERATOR(pg_catalog.=) 'active'"
			 "   AND e.next_due OPERATOR(pg_catalog.<=) $2"
			 " ORDER BY e.next_due LIMIT $3 FOR UPDATE SKIP LOCKED",
			 3, types, values, NULL, SPI_OK_SELECT);
	b.n = (int) SPI_processed;
	if (b.n == 0)
		return 0;
	b.ex = palloc0(sizeof(Exec) * b.n);
	for (int i = 0; i < b.n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		b.ex[i].enrolment_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		b.ex[i].record_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		b.ex[i].round = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		b.ex[i].step = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		b.ex[i].due = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	/* 2. exit conditions (a deleted record is also found by the step itself) */
	if (seq->exit_when_unmatched || seq->exit_filter)
	{
		Datum	   *rids = palloc(sizeof(Datum) * b.n);
		Oid			t1[1] = {INT8ARRAYOID};
		Datum		v1[1];
		StringInfoData sql;
		const char *key = qcol("t", ent->key_column);

		for (int i = 0; i < b.n; i++)
			rids[i] = Int64GetDatum(b.ex[i].record_id);
		v1[0] = PointerGetDatum(int8_array(rids, b.n));
		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT u.i, CASE WHEN %s IS NULL THEN 'deleted'", key);
		if (seq->exit_when_unmatched)
			appendStringInfo(&sql, " WHEN NOT COALESCE((%s), false) THEN 'unmatched'",
							 CcrmFilterCompile(ent, seq->filter, "t", NULL, &at));
		if (seq->exit_filter)
			appendStringInfo(&sql, " WHEN COALESCE((%s), false) THEN 'exit_filter'",
							 CcrmFilterCompile(ent, seq->exit_filter, "t", NULL, &at));
		appendStringInfo(&sql, " END FROM pg_catalog.unnest($1) WITH ORDINALITY u(rid, i)"
						 " LEFT JOIN %s t ON %s::pg_catalog.int8 OPERATOR(pg_catalog.=) u.rid",
						 ent->qualname, key);
		spi_exec(sql.data, 1, t1, v1, NULL, SPI_OK_SELECT);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			int			i = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull)) - 1;
			char	   *why = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);

			if (why)
				b.ex[i].exit_reason = why;
		}
	}

	/* 3. run the steps, grouped by step and round */
	for (int i = 0; i < b.n; i++)
	{
		StepGroup	   *g = NULL;

		if (b.ex[i].exit_reason)
			continue;
		if (b.ex[i].step > nsteps)
			continue;			/* steps were removed while inactive: completes below */
		foreach(lc, groups)
		{
			StepGroup	   *c = lfirst(lc);

			if (c->step == b.ex[i].step && c->round == b.ex[i].round)
			{
				g = c;
				break;
			}
		}
		if (g == NULL)
		{
			g = palloc0(sizeof(StepGroup));
			g->step = b.ex[i].step;
			g->round = b.ex[i].round;
			g->members = palloc(sizeof(int) * b.n);
			groups = lappend(groups, g);
		}
		g->members[g->n++] = i;
	}
	foreach(lc, groups)
	{
		StepGroup	   *g = lfirst(lc);

		if (run_group_isolated(&b, g, -1) == NULL)
			continue;
		reset_group(&b, g);
		for (int m = 0; m < g->n; m++)
		{
			char	   *err = run_group_isolated(&b, g, m);

			if (err)
			{
				Exec	   *x = &b.ex[g->members[m]];

				x->ran = true;
				x->outcome = "skipped";
				x->has_message = x->has_activity = false;
				x->reason = err;
				x->exit_reason = "failed";
			}
		}
	}

	/* 4. record the executions, end or advance the enrolments */
	{
		Datum	   *c[10];
		bool	   *cn[10];
		static const Oid ct[10] = {INT8OID, INT4OID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, TEXTOID,
		INT8OID, INT8OID, TEXTOID};
		Oid			types2[12];
		Datum		v[12];

		for (int k = 0; k < 10; k++)
		{
			c[k] = palloc0(sizeof(Datum) * b.n);
			cn[k] = palloc0(sizeof(bool) * b.n);
			types2[k] = get_array_type(ct[k]);
		}
		for (int i = 0; i < b.n; i++)
		{
			Exec	   *x = &b.ex[i];
			const SeqStep *st;

			if (!x->ran)
				continue;
			st = list_nth(steps, x->step - 1);
			c[0][nrun] = Int64GetDatum(x->enrolment_id);
			c[1][nrun] = Int32GetDatum(x->step);
			c[2][nrun] = Int64GetDatum(x->record_id);
			c[3][nrun] = Int64GetDatum(st->id);
			c[4][nrun] = Int64GetDatum(0);
			cn[4][nrun] = true;
			c[5][nrun] = TimestampTzGetDatum(x->due);
			c[6][nrun] = CStringGetTextDatum(x->outcome);
			c[7][nrun] = Int64GetDatum(x->message_id);
			cn[7][nrun] = !x->has_message;
			c[8][nrun] = Int64GetDatum(x->activity_id);
			cn[8][nrun] = !x->has_activity;
			c[9][nrun] = x->reason ? CStringGetTextDatum(x->reason) : (Datum) 0;
			cn[9][nrun] = x->reason == NULL;
			nrun++;
		}
		if (nrun > 0)
		{
			for (int k = 0; k < 10; k++)
				v[k] = array_of(c[k], cn[k], nrun, ct[k]);
			types2[10] = INT8OID;
			v[10] = Int64GetDatum(seq->id);
			types2[11] = TIMESTAMPTZOID;
			v[11] = TimestampTzGetDatum(at);
			spi_exec("INSERT INTO ccrm.sequence_step_run (enrolment_id, step, sequence_id, record_id, step_id,"
					 "       due_at, ran_at, outcome, message_id, activity_id, reason)"
					 " SELECT x.eid, x.st, $11, x.rid, x.sid, x.due, $12, x.oc, x.mid, x.aid, x.re"
					 "   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
					 "        pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
					 "        pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9),"
					 "        pg_catalog.unnest($10)) AS x(eid, st, rid, sid, unused, due, oc, mid, aid, re)",
					 12, types2, v, NULL, SPI_OK_INSERT);
		}
	}
	{
		/* ended: exited with a reason; completed: past the last step */
		Datum	   *eids = palloc(sizeof(Datum) * b.n);
		Datum	   *why = palloc(sizeof(Datum) * b.n);
		int			ne = 0;
		Oid			t3[3] = {INT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID};
		Datum		v3[3];

		for (int i = 0; i < b.n; i++)
			if (b.ex[i].exit_reason)
			{
				eids[ne] = Int64GetDatum(b.ex[i].enrolment_id);
				why[ne++] = CStringGetTextDatum(b.ex[i].exit_reason);
			}
		if (ne > 0)
		{
			v3[0] = PointerGetDatum(int8_array(eids, ne));
			v3[1] = array_of(why, NULL, ne, TEXTOID);
			v3[2] = TimestampTzGetDatum(at);
			spi_exec("UPDATE ccrm.sequence_enrolment e SET status = 'exited', exit_reason = x.r, ended_at = $3,"
					 "       next_due = NULL"
					 "  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS x(id, r)"
					 " WHERE e.id OPERATOR(pg_catalog.=) x.id",
					 3, t3, v3, NULL, SPI_OK_UPDATE);
			*exited += ne;
		}
		/* advance, per step: the next one's due time, or completion */
		for (int p = 1; p <= nsteps + 1; p++)
		{
			int			na = 0;
			Oid			t2[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
			Datum		v2[2];

			for (int i = 0; i < b.n; i++)
				if (!b.ex[i].exit_reason &&
					(b.ex[i].step == p || (p == nsteps + 1 && b.ex[i].step > nsteps)))
					eids[na++] = Int64GetDatum(b.ex[i].enrolment_id);
			if (na == 0)
				continue;
			v2[0] = PointerGetDatum(int8_array(eids, na));
			v2[1] = TimestampTzGetDatum(at);
			if (p >= nsteps)
				spi_exec("UPDATE ccrm.sequence_enrolment e SET step = e.step OPERATOR(pg_catalog.+) 1,"
						 "       status = 'completed', ended_at = $2, next_due = NULL"
						 " WHERE e.id OPERATOR(pg_catalog.=) ANY ($1)",
						 2, t2, v2, NULL, SPI_OK_UPDATE);
			else
			{
				const SeqStep *next = list_nth(steps, p);
				SeqStep		fallback = *next;

				fallback.recipient = "none";
				spi_exec(psprintf("UPDATE ccrm.sequence_enrolment e SET step = e.step OPERATOR(pg_catalog.+) 1,"
								  "       next_due = COALESCE((SELECT %s FROM %s t"
								  "                            WHERE %s::pg_catalog.int8 OPERATOR(pg_catalog.=) e.record_id), %s)"
								  " WHERE e.id OPERATOR(pg_catalog.=) ANY ($1)",
								  due_sql(ent, next, "$2"), ent->qualname, qcol("t", ent->key_column),
								  due_sql(ent, &fallback, "$2")),
						 2, t2, v2, NULL, SPI_OK_UPDATE);
			}
		}
	}
	*executed += nrun;
	return b.n;
}

/* ----------------------------------------------------------------
 * Passes over the sequences
 * ---------------------------------------------------------------- */

typedef struct SeqWork
{
	int64		id;
	TimestampTz at;
	int			limit;
	bool		enrol;			/* look at changed records */
	bool		full;			/* and at every record (else: when reconciliation is due) */
	bool		all_batches;	/* keep going until nothing is due (one transaction) */
	bool		checked;		/* checked earlier in this pass: skip the run-time checks */
	/* out */
	int64		enrolled;
	int64		executed;
	int64		exited;
	int			claimed;		/* by the last batch */
} SeqWork;

/* The work on one sequence, confined to its owner; SPI connected by the caller. */
static Datum
sequence_work(void *arg)
{
	SeqWork    *w = arg;
	SeqDef	   *seq;
	List	   *steps;

	CcrmSPIConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
	seq = SeqLoad(NULL, w->id, false);
	if (!seq->active)
	{
		PopActiveSnapshot();
		SPI_finish();
		return (Datum) 0;
	}
	/* checked again at run time, once a pass: templates, recipients, senders, channels, filters */
	steps = SeqLoadSteps(seq, !w->checked);
	if (!w->checked)
		SeqCheckDefinition(seq, steps);
	if (w->enrol)
	{
		Oid			type = INT8OID;
		Datum		id = Int64GetDatum(seq->id);
		bool		full = w->full ||
			!seq->has_reconciled ||
			seq->reconciled_at <= w->at - (int64) ccrm_sequence_reconcile_interval * USECS_PER_SEC;

		/* one pass at a time per sequence; a busy sequence is left to the other pass */
		spi_exec("SELECT 1 FROM ccrm.sequence WHERE id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE SKIP LOCKED",
				 1, &type, &id, NULL, SPI_OK_SELECT);
		if (SPI_processed > 0)
		{
			if (!full)
			{
				spi_exec("SELECT 1 FROM ccrm.sequence_pending WHERE sequence_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
						 1, &type, &id, NULL, SPI_OK_SELECT);
				if (SPI_processed > 0)
					w->enrolled += SeqEnrolPass(seq, steps, false, w->at);
			}
			else
			{
				/* the pending keys are covered by the full pass */
				spi_exec("DELETE FROM ccrm.sequence_pending WHERE sequence_id OPERATOR(pg_catalog.=) $1",
						 1, &type, &id, NULL, SPI_OK_DELETE);
				w->enrolled += SeqEnrolPass(seq, steps, true, w->at);
			}
		}
	}
	do
	{
		CHECK_FOR_INTERRUPTS();
		w->claimed = process_batch(seq, steps, w->at, w->limit, &w->executed, &w->exited);
	} while (w->all_batches && w->claimed >= w->limit);
	PopActiveSnapshot();
	SPI_finish();
	return (Datum) 0;
}

/*
 * sequence_work as the sequence's owner, in a subtransaction: the error
 * message (in cxt) or NULL.  The error is kept in ccrm.sequence.last_error
 * (bookkeeping, as the catalog's owner); a success clears it.
 */
static char *
work_isolated(SeqWork *w, Oid owner, MemoryContext cxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile msg = NULL;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		(void) CcrmRunConfined(owner, sequence_work, w);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		msg = edata->message ? edata->message : "unknown error";
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	if (msg == NULL && w->checked)
		return NULL;		/* last_error was cleared by the first batch of the pass */

	values[0] = Int64GetDatum(w->id);
	values[1] = msg ? CStringGetTextDatum(msg) : (Datum) 0;
	CcrmExecuteAsOwner(msg ? "UPDATE ccrm.sequence SET last_error = $2 WHERE id OPERATOR(pg_catalog.=) $1"
					   : "UPDATE ccrm.sequence SET last_error = NULL WHERE id OPERATOR(pg_catalog.=) $1"
					   " AND last_error IS NOT NULL AND $2 IS NULL",
					   2, types, values, msg ? NULL : " n", 0);
	return msg;
}

/* The active sequences the current user may see: ids and owners, in cxt.  SPI connected. */
static int
active_sequences(int64 **ids, Oid **owners, MemoryContext cxt)
{
	int			n;

	spi_exec("SELECT id, owner::pg_catalog.oid FROM ccrm.sequence WHERE active ORDER BY id",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*ids = MemoryContextAlloc(cxt, sizeof(int64) * Max(n, 1));
	*owners = MemoryContextAlloc(cxt, sizeof(Oid) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		(*ids)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		(*owners)[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	return n;
}

static TimestampTz
at_arg(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz at;

	if (CcrmFilterInstantArg(fcinfo, argno, &at) == NULL)
		at = GetCurrentTimestamp();
	return at;
}

/*
 * ccrm.run_sequences(at, batch_size, full_pass): every active sequence the
 * caller may use, in the caller's transaction, each in a subtransaction of
 * its own confined to its owner.
 */
Datum
ccrm_run_sequences(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz at = at_arg(fcinfo, 0);
	int			limit = PG_ARGISNULL(1) ? ccrm_sequence_batch_size : PG_GETARG_INT32(1);
	bool		full = PG_ARGISNULL(2) ? false : PG_GETARG_BOOL(2);
	MemoryContext cxt = CurrentMemoryContext;
	int64	   *ids;
	Oid		   *owners;
	int			n;

	if (limit < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));
	InitMaterializedSRF(fcinfo, 0);
	CcrmSPIConnect();
	n = active_sequences(&ids, &owners, cxt);
	for (int i = 0; i < n; i++)
	{
		SeqWork		w;
		char	   *err;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		memset(&w, 0, sizeof(w));
		w.id = ids[i];
		w.at = at;
		w.limit = limit;
		w.enrol = true;
		w.full = full;
		w.all_batches = true;
		err = work_isolated(&w, owners[i], cxt);
		values[0] = Int64GetDatum(w.id);
		values[1] = Int64GetDatum(err ? 0 : w.enrolled);
		values[2] = Int64GetDatum(err ? 0 : w.executed);
		values[3] = Int64GetDatum(err ? 0 : w.exited);
		values[4] = err ? CStringGetTextDatum(err) : (Datum) 0;
		nulls[4] = err == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * Every sequence (of the current user's, or all for superusers and the
 * worker), each batch in a transaction of its own when commit is possible
 * (commit_fn != NULL), until nothing is due at "at".
 */
typedef void (*CommitFn) (void);

static void
process_all(TimestampTz at0, bool clock, CommitFn commit_fn)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "ccrm sequences", ALLOCSET_DEFAULT_SIZES);
	int64	   *ids;
	Oid		   *owners;
	int			n;

	PG_TRY();
	{
		bool		more = true;
		TimestampTz at = at0;
		bool	   *checked;

		n = active_sequences(&ids, &owners, cxt);
		checked = MemoryContextAllocZero(cxt, sizeof(bool) * Max(n, 1));

		/*
		 * Round robin, one batch of each sequence per round, so that a big
		 * batch of one sequence does not hold back the enrolment and steps of
		 * the others; rounds go on while some sequence filled its batch.
		 */
		while (more)
		{
			more = false;
			if (clock)
				at = GetCurrentTimestamp();
			for (int i = 0; i < n; i++)
			{
				SeqWork		w;

				CHECK_FOR_INTERRUPTS();
				memset(&w, 0, sizeof(w));
				w.id = ids[i];
				w.at = at;
				w.limit = ccrm_sequence_batch_size;
				w.enrol = true;
				w.all_batches = commit_fn == NULL;
				w.checked = checked[i];
				if (work_isolated(&w, owners[i], cxt) != NULL)
					w.claimed = 0;
				else
					checked[i] = true;
				if (commit_fn)
					commit_fn();
				if (commit_fn && w.claimed >= w.limit)
					more = true;
			}
		}
	}
	PG_FINALLY();
	{
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
}

static void
spi_commit_fn(void)
{
	SPI_commit();
	SPI_start_transaction();
}

/* CALL ccrm.process_sequences(at): each batch commits on its own outside a transaction block. */
Datum
ccrm_process_sequences(PG_FUNCTION_ARGS)
{
	TimestampTz at = at_arg(fcinfo, 0);
	bool		atomic = !(fcinfo->context && IsA(fcinfo->context, CallContext) &&
						   !((CallContext *) fcinfo->context)->atomic);

	CcrmSPIConnectExt(atomic ? 0 : SPI_OPT_NONATOMIC);
	process_all(at, false, atomic ? NULL : spi_commit_fn);
	SPI_finish();
	PG_RETURN_VOID();
}

static void
worker_commit_fn(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	StartTransactionCommand();
	CcrmSPIConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/*
 * The scheduler's pass (scheduler.c), in a transaction it started, with
 * SPI connected and a snapshot pushed: every sequence, each batch
 * committed on its own.
 */
void
SeqSchedulerPass(TimestampTz at)
{
	process_all(at, true, worker_commit_fn);
}

/* ----------------------------------------------------------------
 * Change capture on registered entities
 * ---------------------------------------------------------------- */

/*
 * register_entity / unregister_entity: install (or drop) the statement
 * triggers that queue changed keys of the table for active sequences
 * (ccrm.sequence_capture_trigger).  The caller owns the table (checked)
 * and has SPI connected.  Nothing happens on a schema older than 0.9.0.
 */
void
SeqWatchTable(const char *entity, Oid relid, const char *key, bool install)
{
	char	   *rel;
	char	   *nsp;
	char	   *qual;

	if (SPI_execute("SELECT pg_catalog.to_regprocedure('ccrm.sequence_capture_trigger()') IS NOT NULL",
					true, 1) != SPI_OK_SELECT ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
		return;
	rel = get_rel_name(relid);
	if (rel == NULL)
		return;					/* the table is gone, and its triggers with it */
	nsp = get_namespace_name(get_rel_namespace(relid));
	qual = quote_qualified_identifier(nsp, rel);
	if (install)
	{
		for (int i = 0; i < 2; i++)
			if (SPI_execute(psprintf("CREATE TRIGGER %s AFTER %s ON %s REFERENCING NEW TABLE AS new_rows"
									 " FOR EACH STATEMENT EXECUTE FUNCTION ccrm.sequence_capture_trigger(%s, %s)",
									 i ? "ccrm_sequence_update" : "ccrm_sequence_insert",
									 i ? "UPDATE" : "INSERT", qual,
									 quote_literal_cstr(entity), quote_literal_cstr(key)),
							false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "could not create the sequence triggers of %s", qual);
	}
	else
	{
		if (SPI_execute(psprintf("DROP TRIGGER IF EXISTS ccrm_sequence_insert ON %s", qual), false, 0) != SPI_OK_UTILITY ||
			SPI_execute(psprintf("DROP TRIGGER IF EXISTS ccrm_sequence_update ON %s", qual), false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not drop the sequence triggers of %s", qual);
	}
}
