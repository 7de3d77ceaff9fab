/*-------------------------------------------------------------------------
 *
 * sequence.c
 *	  Follow-up sequence definitions: ccrm.sequence (an entity, a filter,
 *	  exit conditions, re-enrolment) and ccrm.sequence_step (ordered steps:
 *	  action, delay, day rule, earliest hour, template, recipient, sender),
 *	  their checks, and the lifecycle functions.
 *
 *	  Invariants:
 *	  - Everything a run relies on is checked when it is saved (the row
 *		triggers below, however the row is written) and again at run time
 *		(SeqLoadSteps(check) + SeqCheckDefinition before every batch):
 *		filters compile against the entity, templates are of the step's
 *		medium and the sequence's entity and usable by its owner,
 *		recipients are reachable from the entity, email steps have a
 *		sender the owner may act as, SMS steps an enabled SMS channel,
 *		steps are numbered 1..n.
 *	  - While a sequence is active its entity, filter, exit filter and
 *		steps cannot change (ERROR, hint: deactivate first).  Neither can
 *		the filter of a target group an active sequence uses through
 *		in_group, directly or through other groups (target_group.c asks
 *		SeqGroupUsers()): that too is an ERROR naming the sequences.
 *	  - Lifecycle: deactivation keeps enrolments as they are (paused: no
 *		step runs, nothing enrols); activation resumes them where they
 *		were (overdue steps run at the next pass) and enrols again, all
 *		matching records or only new ones, chosen at each activation.
 *		Deleting a sequence deletes its steps, enrolments and history;
 *		messages already queued stay in the outbox and are sent.
 *	  - Rows are written with the caller's rights under row level
 *		security; the owner trigger keeps owners honest.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "entity.h"
#include "execute_as_owner.h"
#include "filter.h"
#include "guc_level.h"
#include "json_util.h"
#include "messaging.h"
#include "privilege.h"
#include "run_as_owner.h"
#include "sequence.h"
#include "sequence_due.h"
#include "spi_debug.h"
#include "tuple_util.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_sequence_trigger);
PG_FUNCTION_INFO_V1(ccrm_sequence_step_trigger);
PG_FUNCTION_INFO_V1(ccrm_sequence_id);
PG_FUNCTION_INFO_V1(ccrm_set_sequence_steps);
PG_FUNCTION_INFO_V1(ccrm_create_sequence);
PG_FUNCTION_INFO_V1(ccrm_alter_sequence);
PG_FUNCTION_INFO_V1(ccrm_drop_sequence);
PG_FUNCTION_INFO_V1(ccrm_activate_sequence);
PG_FUNCTION_INFO_V1(ccrm_deactivate_sequence);

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed (%d): %s", rc, sql);
}

static char *
col_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static Datum
col_bin(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static char *
existing_sequences(void)
{
	if (SPI_execute("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
					"  FROM (SELECT name FROM ccrm.sequence ORDER BY name LIMIT 30) s",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		return col_text(0, 1);
	return NULL;
}

/*
 * A sequence by name (or id when name is NULL), FOR NO KEY UPDATE when
 * lock; an error when the caller cannot see it.  SPI connected.
 */
SeqDef *
SeqLoad(const char *name, int64 id, bool lock)
{
	Oid			types[1];
	Datum		values[1];
	SeqDef	   *s;
	bool		isnull;
	Datum		d;
	char	   *sql;

	sql = psprintf("SELECT id, name, entity, filter, exit_filter, exit_when_unmatched, reenrol,"
				   "       cooldown::pg_catalog.text, active, only_new, activation_snapshot::pg_catalog.text,"
				   "       reconciled_at, owner::pg_catalog.oid"
				   "  FROM ccrm.sequence WHERE %s OPERATOR(pg_catalog.=) $1%s",
				   name ? "name" : "id", lock ? " FOR NO KEY UPDATE" : "");
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
	spi_exec(sql, 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		char	   *names;

		if (!name)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("sequence with id " INT64_FORMAT " does not exist", id)));
		names = existing_sequences();
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sequence \"%s\" does not exist", name),
				 names ? errhint("Existing sequences: %s.", names)
				 : errhint("Create one with ccrm.create_sequence().")));
	}
	s = palloc0(sizeof(SeqDef));
	s->id = DatumGetInt64(col_bin(0, 1, &isnull));
	s->name = col_text(0, 2);
	s->entity = col_text(0, 3);
	s->filter = DatumGetJsonbPCopy(col_bin(0, 4, &isnull));
	d = col_bin(0, 5, &isnull);
	s->exit_filter = isnull ? NULL : DatumGetJsonbPCopy(d);
	s->exit_when_unmatched = DatumGetBool(col_bin(0, 6, &isnull));
	s->reenrol = col_text(0, 7);
	s->cooldown = col_text(0, 8);
	s->active = DatumGetBool(col_bin(0, 9, &isnull));
	s->only_new = DatumGetBool(col_bin(0, 10, &isnull));
	s->snapshot = col_text(0, 11);
	d = col_bin(0, 12, &isnull);
	s->has_reconciled = !isnull;
	s->reconciled_at = isnull ? 0 : DatumGetTimestampTz(d);
	s->owner = DatumGetObjectId(col_bin(0, 13, &isnull));
	return s;
}

static const char *
action_medium(const char *action)
{
	if (strcmp(action, "email_customer") == 0 || strcmp(action, "email_user") == 0)
		return "email";
	if (strcmp(action, "sms_customer") == 0)
		return "sms";
	return NULL;
}

static bool
to_customer(const char *action)
{
	return strcmp(action, "email_customer") == 0 || strcmp(action, "sms_customer") == 0;
}

/*
 * Check one step of a sequence (see the file header); SPI connected.
 * Fills in the template's name, the sender a template gives, the medium.
 */
static void
check_step(const char *seq_name, const char *entity, Oid owner, SeqStep *st)
{
	CcrmEntity *ent = CcrmEntityLookup(entity, false);
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	char	   *kind;
	char	   *tentity;
	char	   *channel;
	Oid			towner;
	const char *want;
	CcrmDayRule rule;
	int			weekday;

	st->medium = action_medium(st->action);
	if (!CcrmLookupDayRule(st->day_rule, &rule, &weekday))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step %d of sequence \"%s\": day rule \"%s\" is not known", st->position, seq_name,
						st->day_rule),
				 errhint(CCRM_DAY_RULE_HINT)));

	/* the template: of the step's kind, for the sequence's entity, usable by the owner */
	values[0] = Int64GetDatum(st->template_id);
	spi_exec("SELECT name, kind, entity, sender_id, channel, owner::pg_catalog.oid"
			 "  FROM ccrm.message_template WHERE id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step %d of sequence \"%s\": message template with id " INT64_FORMAT " does not exist",
						st->position, seq_name, st->template_id),
				 errhint("See ccrm.message_template for the templates you may use.")));
	st->template_name = col_text(0, 1);
	kind = col_text(0, 2);
	tentity = col_text(0, 3);
	if (!st->has_sender)
	{
		Datum		d = col_bin(0, 4, &isnull);

		st->has_sender = !isnull;
		st->sender_id = isnull ? 0 : DatumGetInt64(d);
	}
	channel = col_text(0, 5);
	towner = DatumGetObjectId(col_bin(0, 6, &isnull));
	want = st->medium ? st->medium : "task";
	if (strcmp(kind, want) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("step %d of sequence \"%s\": message template \"%s\" is of kind %s, but action %s needs a template of kind %s",
						st->position, seq_name, st->template_name, kind, st->action, want)));
	if (strcmp(tentity, entity) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step %d of sequence \"%s\": message template \"%s\" is for records of %s, not %s",
						st->position, seq_name, st->template_name, tentity, entity),
				 errhint("A step's template must be written for the sequence's entity.")));
	CcrmCheckMayUse(owner, towner, "sequence", seq_name, "message template", st->template_name,
					st->template_id);

	/* the recipient, reachable from the entity */
	if (to_customer(st->action))
	{
		if (strcmp(st->recipient, "record") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of sequence \"%s\": action %s goes to the customer, not to recipient \"%s\"",
							st->position, seq_name, st->action, st->recipient),
					 errhint("Use recipient \"record\" (the record, or the contact or account it links to), "
							 "or action email_user / task_user for users.")));
		if (!ent->builtin && ent->contact_column == NULL && ent->account_column == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of sequence \"%s\": records of %s have no contact or account to send to",
							st->position, seq_name, entity),
					 errhint("Register the entity with a contact_column or account_column.")));
		if (st->has_user)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of sequence \"%s\": user_id goes with recipient \"user\" only",
							st->position, seq_name)));
	}
	else
	{
		if (strcmp(st->recipient, "owner") == 0)
		{
			if (ent->owner_column == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("step %d of sequence \"%s\": records of %s have no owner", st->position,
								seq_name, entity),
						 errhint("Choose a user (recipient \"user\" with user_id), or register the entity with an owner_column.")));
			if (st->has_user)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("step %d of sequence \"%s\": user_id goes with recipient \"user\" only",
								st->position, seq_name)));
		}
		else if (strcmp(st->recipient, "user") == 0)
		{
			if (!st->has_user)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("step %d of sequence \"%s\": recipient \"user\" needs a user_id", st->position,
								seq_name)));
			values[0] = Int64GetDatum(st->user_id);
			spi_exec("SELECT 1 FROM ccrm.crm_user WHERE id OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL, SPI_OK_SELECT);
			if (SPI_processed == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
						 errmsg("step %d of sequence \"%s\": user with id " INT64_FORMAT " does not exist",
								st->position, seq_name, st->user_id)));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of sequence \"%s\": action %s goes to a user, not to recipient \"%s\"",
							st->position, seq_name, st->action, st->recipient),
					 errhint("Use recipient \"owner\" (the record's owner) or \"user\" with user_id.")));
	}

	/* email: a sender the owner may act as; sms: an enabled channel */
	if (st->medium && strcmp(st->medium, "email") == 0)
	{
		if (!st->has_sender)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("step %d of sequence \"%s\": an email step needs a sender", st->position, seq_name),
					 errhint("Give the step a sender_id, or the template \"%s\" a sender.", st->template_name)));
		CcrmCheckMayActAs(st->sender_id, owner, "A sequence's email");
		(void) MsgChannelLookup(channel, "email");
	}
	if (st->medium && strcmp(st->medium, "sms") == 0)
	{
		Oid			ctypes[1] = {TEXTOID};
		Datum		cvalues[1];
		bool		found;
		bool		enabled = false;
		char	   *cname = NULL;

		cvalues[0] = channel ? CStringGetTextDatum(channel) : (Datum) 0;
		spi_exec("SELECT name, enabled FROM ccrm.channels WHERE medium OPERATOR(pg_catalog.=) 'sms'"
				 " AND CASE WHEN $1 IS NULL THEN is_default ELSE name OPERATOR(pg_catalog.=) $1 END",
				 1, ctypes, cvalues, channel ? NULL : "n", SPI_OK_SELECT);
		found = SPI_processed > 0;
		if (found)
		{
			cname = col_text(0, 1);
			enabled = DatumGetBool(col_bin(0, 2, &isnull));
		}
		if (!found || !enabled)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("step %d of sequence \"%s\": SMS steps need an enabled SMS channel", st->position,
							seq_name),
					 found ? errdetail("Channel \"%s\" is disabled.", cname)
					 : errdetail("There is no %s.", channel ? psprintf("channel \"%s\"", channel) : "default SMS channel"),
					 errhint("Have an admin activate the SMS service: ccrm.create_channel(name, 'sms', is_default => true) or ccrm.alter_channel(name, enabled => true).")));
	}
	if (st->task_due_days >= 0 && strcmp(st->action, "task_user") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step %d of sequence \"%s\": task_due_days goes with action task_user only",
						st->position, seq_name)));
}

/* The steps of a sequence by position, each checked when check.  SPI connected. */
List *
SeqLoadSteps(const SeqDef *seq, bool check)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	List	   *steps = NIL;
	uint64		n;
	SPITupleTable *tt;

	values[0] = Int64GetDatum(seq->id);
	spi_exec("SELECT s.id, s.position, s.action, s.delay_days, s.day_rule, s.not_before, s.template_id, s.recipient,"
			 "       s.user_id, COALESCE(s.sender_id, CASE WHEN s.action IN ('email_customer', 'email_user') THEN t.sender_id END),"
			 "       s.task_due_days, t.name"
			 "  FROM ccrm.sequence_step s LEFT JOIN ccrm.message_template t ON t.id OPERATOR(pg_catalog.=) s.template_id"
			 " WHERE s.sequence_id OPERATOR(pg_catalog.=) $1 ORDER BY s.position",
			 1, types, values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	tt = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		SeqStep    *st = palloc0(sizeof(SeqStep));
		bool		isnull;
		Datum		d;

		SPI_tuptable = tt;
		st->id = DatumGetInt64(col_bin(i, 1, &isnull));
		st->position = DatumGetInt32(col_bin(i, 2, &isnull));
		st->action = col_text(i, 3);
		st->delay_days = DatumGetInt32(col_bin(i, 4, &isnull));
		st->day_rule = col_text(i, 5);
		d = col_bin(i, 6, &isnull);
		st->has_not_before = !isnull;
		st->not_before = isnull ? 0 : DatumGetTimeADT(d);
		st->template_id = DatumGetInt64(col_bin(i, 7, &isnull));
		st->recipient = col_text(i, 8);
		d = col_bin(i, 9, &isnull);
		st->has_user = !isnull;
		st->user_id = isnull ? 0 : DatumGetInt64(d);
		d = col_bin(i, 10, &isnull);
		st->has_sender = !isnull;
		st->sender_id = isnull ? 0 : DatumGetInt64(d);
		d = col_bin(i, 11, &isnull);
		st->task_due_days = isnull ? -1 : DatumGetInt32(d);
		st->template_name = col_text(i, 12);
		steps = lappend(steps, st);
	}
	if (check)
	{
		ListCell   *lc;

		foreach(lc, steps)
			check_step(seq->name, seq->entity, seq->owner, lfirst(lc));
	}
	else
	{
		ListCell   *lc;

		foreach(lc, steps)
		{
			SeqStep    *st = lfirst(lc);

			st->medium = action_medium(st->action);
		}
	}
	return steps;
}

/* Compile a filter of a sequence (ERROR naming the bad part); the groups it uses go to *groups. */
static void
check_filter(const char *seq_name, const CcrmEntity *ent, Jsonb *filter, const char *what, List **groups)
{
	if (!JB_ROOT_IS_OBJECT(filter))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s of sequence \"%s\" must be a JSON object", what, seq_name),
				 errhint("Write it in the filter language of target groups, e.g. {\"field\": \"city\", \"op\": \"eq\", \"value\": \"Helsinki\"}.")));
	(void) CcrmFilterCompile(ent, filter, "t", groups, NULL);
}

/* Steps non-empty and numbered 1..n, filters compile (run time and activation). */
void
SeqCheckDefinition(const SeqDef *seq, List *steps)
{
	CcrmEntity *ent = CcrmEntityLookup(seq->entity, false);
	ListCell   *lc;
	int			expect = 1;

	if (steps == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sequence \"%s\" has no steps", seq->name),
				 errhint("Give it steps with ccrm.set_sequence_steps() or ccrm.alter_sequence(steps => ...).")));
	foreach(lc, steps)
	{
		SeqStep    *st = lfirst(lc);

		if (st->position != expect)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the steps of sequence \"%s\" are not numbered 1 to %d in order", seq->name,
							list_length(steps)),
					 errdetail("Position %d is missing.", expect),
					 errhint("Set the steps again with ccrm.set_sequence_steps(), which numbers them.")));
		expect++;
	}
	check_filter(seq->name, ent, seq->filter, "filter", NULL);
	if (seq->exit_filter)
		check_filter(seq->name, ent, seq->exit_filter, "exit filter", NULL);
}

/* ----------------------------------------------------------------
 * Triggers
 * ---------------------------------------------------------------- */

static Datum
row_attr(HeapTuple row, TupleDesc desc, const char *name, bool *isnull)
{
	return heap_getattr(row, SPI_fnumber(desc, name), desc, isnull);
}

/*
 * ccrm.sequence, BEFORE INSERT OR UPDATE: the entity, the filters,
 * re-enrolment, the lock on an active sequence, the checks of activation.
 * AFTER: the in_group dependencies (rows need the sequence in place).
 */
Datum
ccrm_sequence_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	HeapTuple	old = NULL;
	bool		isnull;
	bool		active;
	bool		was_active = false;
	char	   *name;
	char	   *entity;
	CcrmEntity *ent;
	Datum		d;
	Jsonb	   *filter;
	Jsonb	   *exit_filter;
	char	   *reenrol;
	bool		has_cooldown;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.sequence_trigger() must be an INSERT OR UPDATE row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		row = td->tg_newtuple;
		old = td->tg_trigtuple;
	}
	else
		row = td->tg_trigtuple;
	if (CcrmRestoring())
		return PointerGetDatum(TRIGGER_FIRED_BEFORE(td->tg_event) ? row : NULL);

	name = SPI_getvalue(row, desc, SPI_fnumber(desc, "name"));
	entity = SPI_getvalue(row, desc, SPI_fnumber(desc, "entity"));
	ent = CcrmEntityLookup(entity, false);
	d = row_attr(row, desc, "filter", &isnull);
	filter = isnull ? NULL : DatumGetJsonbP(d);
	d = row_attr(row, desc, "exit_filter", &isnull);
	exit_filter = isnull ? NULL : DatumGetJsonbP(d);

	if (TRIGGER_FIRED_AFTER(td->tg_event))
	{
		int64		id = DatumGetInt64(row_attr(row, desc, "id", &isnull));
		Oid			owner = DatumGetObjectId(row_attr(row, desc, "owner", &isnull));
		List	   *groups = NIL;
		ListCell   *lc;
		Oid			types[2] = {INT8OID, INT8OID};
		Datum		values[2];

		if (old && !CcrmColumnChanged(row, old, desc, "filter") &&
			!CcrmColumnChanged(row, old, desc, "exit_filter") && !CcrmColumnChanged(row, old, desc, "owner"))
			return PointerGetDatum(NULL);
		if (filter)
			(void) CcrmFilterCompile(ent, filter, "t", &groups, NULL);
		if (exit_filter)
			(void) CcrmFilterCompile(ent, exit_filter, "t", &groups, NULL);
		values[0] = Int64GetDatum(id);
		CcrmSPIConnect();
		spi_exec("DELETE FROM ccrm.sequence_dependency WHERE sequence_id OPERATOR(pg_catalog.=) $1",
				 1, types, values, NULL, SPI_OK_DELETE);
		foreach(lc, groups)
		{
			int64		gid = *(int64 *) lfirst(lc);

			values[1] = Int64GetDatum(gid);
			spi_exec("SELECT name, owner::pg_catalog.oid FROM ccrm.target_group WHERE id OPERATOR(pg_catalog.=) $2"
					 " AND $1 IS NOT NULL", 2, types, values, NULL, SPI_OK_SELECT);
			if (SPI_processed > 0)
				CcrmCheckMayUse(owner, DatumGetObjectId(col_bin(0, 2, &isnull)), "sequence", name,
								"target group", col_text(0, 1), gid);
			spi_exec("INSERT INTO ccrm.sequence_dependency (sequence_id, group_id) VALUES ($1, $2)"
					 " ON CONFLICT DO NOTHING", 2, types, values, NULL, SPI_OK_INSERT);
		}
		SPI_finish();
		return PointerGetDatum(NULL);
	}

	/* BEFORE */
	active = DatumGetBool(row_attr(row, desc, "active", &isnull));
	if (old)
		was_active = DatumGetBool(row_attr(old, desc, "active", &isnull));
	if (old && was_active && active)
	{
		const char *locked = NULL;

		if (CcrmColumnChanged(row, old, desc, "filter"))
			locked = "filter";
		else if (CcrmColumnChanged(row, old, desc, "exit_filter"))
			locked = "exit filter";
		else if (CcrmColumnChanged(row, old, desc, "entity"))
			locked = "entity";
		if (locked)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the %s of sequence \"%s\" cannot change while it is active", locked, name),
					 errdetail("A changed filter would act on the whole database at once."),
					 errhint("Deactivate it first (SELECT ccrm.deactivate_sequence('%s')), change it, then activate it again.",
							 name)));
	}
	if (old && CcrmColumnChanged(row, old, desc, "entity"))
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1];

		values[0] = row_attr(row, desc, "id", &isnull);
		CcrmSPIConnect();
		spi_exec("SELECT 1 FROM ccrm.sequence_enrolment WHERE sequence_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
				 1, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("the entity of sequence \"%s\" cannot change once records have been enrolled", name),
					 errhint("Create a new sequence for the other entity.")));
		SPI_finish();
	}
	if (filter == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sequence \"%s\" needs a filter", name),
				 errhint("Write it in the filter language of target groups; {\"field\": \"id\", \"op\": \"not_null\"} matches every record.")));
	if (!old || CcrmColumnChanged(row, old, desc, "filter") || CcrmColumnChanged(row, old, desc, "entity"))
		check_filter(name, ent, filter, "filter", NULL);
	if (exit_filter && (!old || CcrmColumnChanged(row, old, desc, "exit_filter") ||
						CcrmColumnChanged(row, old, desc, "entity")))
		check_filter(name, ent, exit_filter, "exit filter", NULL);

	reenrol = SPI_getvalue(row, desc, SPI_fnumber(desc, "reenrol"));
	d = row_attr(row, desc, "cooldown", &isnull);
	has_cooldown = !isnull;
	if (strcmp(reenrol, "never") != 0 && strcmp(reenrol, "after_end") != 0 &&
		strcmp(reenrol, "after_cooldown") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("re-enrolment \"%s\" of sequence \"%s\" is not known", reenrol, name),
				 errhint("Use never, after_end (once the earlier enrolment has ended) or after_cooldown (with a cooldown).")));
	if ((strcmp(reenrol, "after_cooldown") == 0) != has_cooldown)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a cooldown goes with re-enrolment after_cooldown, and only with it (sequence \"%s\")", name),
				 errhint("Pass reenrol => 'after_cooldown' with cooldown => '30 days', or neither.")));
	if (has_cooldown)
	{
		Interval   *iv = DatumGetIntervalP(d);

		if (iv->month < 0 || iv->day < 0 || iv->time < 0 ||
			(iv->month == 0 && iv->day == 0 && iv->time == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the cooldown of sequence \"%s\" must be positive", name)));
	}

	/* activation: everything a run needs */
	if (active && !was_active)
	{
		SeqDef		s;
		List	   *steps;

		memset(&s, 0, sizeof(s));
		s.id = DatumGetInt64(row_attr(row, desc, "id", &isnull));
		s.name = name;
		s.entity = entity;
		s.filter = filter;
		s.exit_filter = exit_filter;
		s.owner = DatumGetObjectId(row_attr(row, desc, "owner", &isnull));
		CcrmSPIConnect();
		steps = SeqLoadSteps(&s, true);
		SeqCheckDefinition(&s, steps);
		SPI_finish();
	}
	return PointerGetDatum(row);
}

/*
 * ccrm.sequence_step, BEFORE INSERT, UPDATE or DELETE: no change while
 * the sequence is active; a new or changed step is checked.
 */
Datum
ccrm_sequence_step_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	bool		isnull;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	char	   *seq_name;
	char	   *entity;
	bool		active;
	Oid			owner;
	SeqStep		st;
	Datum		d;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.sequence_step_trigger() must be a BEFORE row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	if (CcrmRestoring())
		return PointerGetDatum(row);

	values[0] = row_attr(row, desc, "sequence_id", &isnull);
	CcrmSPIConnect();
	spi_exec("SELECT name, entity, active, owner::pg_catalog.oid FROM ccrm.sequence WHERE id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		/* the sequence is being deleted (cascade), or not visible: RLS / the key decide */
		SPI_finish();
		return PointerGetDatum(row);
	}
	seq_name = col_text(0, 1);
	entity = col_text(0, 2);
	active = DatumGetBool(col_bin(0, 3, &isnull));
	owner = DatumGetObjectId(col_bin(0, 4, &isnull));
	if (active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the steps of sequence \"%s\" cannot change while it is active", seq_name),
				 errhint("Deactivate it first (SELECT ccrm.deactivate_sequence('%s')), change them, then activate it again.",
						 seq_name)));
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		SPI_finish();
		return PointerGetDatum(row);
	}
	memset(&st, 0, sizeof(st));
	st.position = DatumGetInt32(row_attr(row, desc, "position", &isnull));
	st.action = SPI_getvalue(row, desc, SPI_fnumber(desc, "action"));
	st.delay_days = DatumGetInt32(row_attr(row, desc, "delay_days", &isnull));
	st.day_rule = SPI_getvalue(row, desc, SPI_fnumber(desc, "day_rule"));
	st.template_id = DatumGetInt64(row_attr(row, desc, "template_id", &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("step %d of sequence \"%s\" needs a template", st.position, seq_name)));
	st.recipient = SPI_getvalue(row, desc, SPI_fnumber(desc, "recipient"));
	d = row_attr(row, desc, "user_id", &isnull);
	st.has_user = !isnull;
	st.user_id = isnull ? 0 : DatumGetInt64(d);
	d = row_attr(row, desc, "sender_id", &isnull);
	st.has_sender = !isnull;
	st.sender_id = isnull ? 0 : DatumGetInt64(d);
	d = row_attr(row, desc, "task_due_days", &isnull);
	st.task_due_days = isnull ? -1 : DatumGetInt32(d);
	if (st.action == NULL || st.recipient == NULL || st.day_rule == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("step %d of sequence \"%s\" needs an action, a recipient and a day rule", st.position,
						seq_name)));
	if (st.has_sender && action_medium(st.action) && strcmp(action_medium(st.action), "email") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step %d of sequence \"%s\": only email steps have a sender", st.position, seq_name)));
	if (st.has_sender && action_medium(st.action) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step %d of sequence \"%s\": only email steps have a sender", st.position, seq_name)));
	check_step(seq_name, entity, owner, &st);
	SPI_finish();
	return PointerGetDatum(row);
}

/* ----------------------------------------------------------------
 * Functions
 * ---------------------------------------------------------------- */

static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static char *
required_name(FunctionCallInfo fcinfo, int n)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sequence name must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

Datum
ccrm_sequence_id(PG_FUNCTION_ARGS)
{
	char	   *name = required_name(fcinfo, 0);
	SeqDef	   *s;
	int64		id;

	CcrmSPIConnect();
	s = SeqLoad(name, 0, false);
	id = s->id;
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* A text member of a step object, or NULL. */
static char *
step_text(Jsonb *step, const char *key, int pos, bool integer)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&step->root, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (integer)
	{
		if (v->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("steps[%d].%s must be a number, not %s", pos, key, CcrmJsonbTypeName(v))));
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	}
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("steps[%d].%s must be a string, not %s", pos, key, CcrmJsonbTypeName(v))));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static int32
step_int(Jsonb *step, const char *key, int pos, int32 dflt, int32 min, int32 max, bool *given)
{
	char	   *s = step_text(step, key, pos, true);
	char	   *end;
	long		v;

	if (given)
		*given = s != NULL;
	if (s == NULL)
		return dflt;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("steps[%d].%s must be a whole number from %d to %d, not %s", pos, key, min, max, s)));
	return (int32) v;
}

static int64
step_user(Jsonb *step, const char *key, int pos, bool *given)
{
	char	   *s = step_text(step, key, pos, true);
	char	   *end;
	long long	v;

	*given = s != NULL;
	if (s == NULL)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("steps[%d].%s must be the id of a CRM user, not %s", pos, key, s)));
	return (int64) v;
}

/* Replace the steps of the (locked, inactive) sequence; SPI connected.  Returns how many. */
static int
set_steps(SeqDef *seq, Jsonb *steps)
{
	static const char *const keys[] = {
		"action", "delay_days", "day_rule", "not_before", "template", "recipient", "user_id",
		"sender_id", "task_due_days", NULL
	};
	Oid			types[11] = {INT8OID, INT4OID, TEXTOID, INT4OID, TEXTOID, TIMEOID, INT8OID, TEXTOID,
	INT8OID, INT8OID, INT4OID};
	Datum		values[11];
	char		nulls[11];
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			pos = 0;
	Datum		idv = Int64GetDatum(seq->id);
	Oid			idt = INT8OID;

	if (seq->active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the steps of sequence \"%s\" cannot change while it is active", seq->name),
				 errhint("Deactivate it first (SELECT ccrm.deactivate_sequence('%s')), change them, then activate it again.",
						 seq->name)));
	if (!JB_ROOT_IS_ARRAY(steps) || JB_ROOT_IS_SCALAR(steps))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the steps of sequence \"%s\" must be a JSON array of step objects", seq->name),
				 errhint("For example [{\"action\": \"email_customer\", \"delay_days\": 1, \"template\": \"welcome\"}].")));
	if (JsonContainerSize(&steps->root) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequence \"%s\" needs at least one step", seq->name)));
	spi_exec("DELETE FROM ccrm.sequence_step WHERE sequence_id OPERATOR(pg_catalog.=) $1",
			 1, &idt, &idv, NULL, SPI_OK_DELETE);

	it = JsonbIteratorInit(&steps->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		Jsonb	   *step;
		char	   *action;
		char	   *tname;
		char	   *recipient;
		char	   *not_before;
		bool		given;
		int64		uid;
		MsgTemplate *t;

		if (tok != WJB_ELEM)
			continue;
		pos++;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("steps[%d] must be a JSON object, not %s", pos, CcrmJsonbTypeName(&v))));
		step = JsonbValueToJsonb(&v);
		CcrmCheckParamKeys(step, keys, psprintf("steps[%d]", pos));
		memset(nulls, ' ', sizeof(nulls));
		action = step_text(step, "action", pos, false);
		if (action == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("steps[%d] needs an action", pos),
					 errhint("Actions: email_customer, sms_customer, email_user, task_user.")));
		if (strcmp(action, "email_customer") != 0 && strcmp(action, "sms_customer") != 0 &&
			strcmp(action, "email_user") != 0 && strcmp(action, "task_user") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("steps[%d].action \"%s\" is not known", pos, action),
					 errhint("Actions: email_customer, sms_customer, email_user, task_user.")));
		tname = step_text(step, "template", pos, false);
		if (tname == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("steps[%d] needs a template", pos),
					 errhint("Name a message template of the step's kind (email, sms or task).")));
		t = MsgTemplateLookup(tname);
		recipient = step_text(step, "recipient", pos, false);
		if (recipient == NULL)
			recipient = to_customer(action) ? "record" : "owner";
		not_before = step_text(step, "not_before", pos, false);

		values[0] = idv;
		values[1] = Int32GetDatum(pos);
		values[2] = CStringGetTextDatum(action);
		values[3] = Int32GetDatum(step_int(step, "delay_days", pos, 0, 0, 3650, NULL));
		{
			char	   *rule = step_text(step, "day_rule", pos, false);

			values[4] = CStringGetTextDatum(rule ? rule : "any");
		}
		if (not_before)
			values[5] = DirectFunctionCall1(time_in, CStringGetDatum(not_before));
		else
			nulls[5] = 'n';
		values[6] = Int64GetDatum(t->id);
		values[7] = CStringGetTextDatum(recipient);
		uid = step_user(step, "user_id", pos, &given);
		values[8] = Int64GetDatum(uid);
		nulls[8] = given ? ' ' : 'n';
		uid = step_user(step, "sender_id", pos, &given);
		values[9] = Int64GetDatum(uid);
		nulls[9] = given ? ' ' : 'n';
		values[10] = Int32GetDatum(step_int(step, "task_due_days", pos, 0, 0, 3650, &given));
		nulls[10] = given ? ' ' : 'n';
		if (!given && strcmp(action, "task_user") == 0)
		{
			values[10] = Int32GetDatum(0);
			nulls[10] = ' ';
		}
		spi_exec("INSERT INTO ccrm.sequence_step (sequence_id, position, action, delay_days, day_rule,"
				 "       not_before, template_id, recipient, user_id, sender_id, task_due_days)"
				 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
				 11, types, values, nulls, SPI_OK_INSERT);
	}
	return pos;
}

Datum
ccrm_set_sequence_steps(PG_FUNCTION_ARGS)
{
	char	   *name = required_name(fcinfo, 0);
	SeqDef	   *s;
	int			n;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("steps must not be null")));
	CcrmSPIConnect();
	s = SeqLoad(name, 0, true);
	n = set_steps(s, PG_GETARG_JSONB_P(1));
	SPI_finish();
	PG_RETURN_INT32(n);
}

/*
 * ccrm.create_sequence(name, entity, filter, steps, exit_when_unmatched,
 *   exit_filter, reenrol, cooldown, description) -> id
 */
Datum
ccrm_create_sequence(PG_FUNCTION_ARGS)
{
	Oid			types[8] = {TEXTOID, TEXTOID, JSONBOID, BOOLOID, JSONBOID, TEXTOID, INTERVALOID, TEXTOID};
	Datum		values[8];
	char		nulls[8];
	SeqDef	   *s;
	int64		id;
	bool		isnull;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(required_name(fcinfo, 0));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a sequence needs an entity, a filter and steps")));
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = BoolGetDatum(PG_ARGISNULL(4) ? false : PG_GETARG_BOOL(4));
	values[4] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
	nulls[4] = PG_ARGISNULL(5) ? 'n' : ' ';
	values[5] = PG_ARGISNULL(6) ? CStringGetTextDatum("never") : PG_GETARG_DATUM(6);
	values[6] = PG_ARGISNULL(7) ? (Datum) 0 : PG_GETARG_DATUM(7);
	nulls[6] = PG_ARGISNULL(7) ? 'n' : ' ';
	values[7] = PG_ARGISNULL(8) ? (Datum) 0 : PG_GETARG_DATUM(8);
	nulls[7] = PG_ARGISNULL(8) ? 'n' : ' ';

	CcrmSPIConnect();
	spi_exec("INSERT INTO ccrm.sequence (name, entity, filter, exit_when_unmatched, exit_filter, reenrol,"
			 "       cooldown, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
			 8, types, values, nulls, SPI_OK_INSERT_RETURNING);
	id = DatumGetInt64(col_bin(0, 1, &isnull));
	s = SeqLoad(NULL, id, true);
	(void) set_steps(s, PG_GETARG_JSONB_P(3));
	SPI_finish();
	PG_RETURN_INT64(id);
}

/*
 * ccrm.alter_sequence(sequence, new_name, filter, steps, exit_when_unmatched,
 *   exit_filter, reenrol, cooldown, description)
 */
Datum
ccrm_alter_sequence(PG_FUNCTION_ARGS)
{
	Oid			types[10] = {INT8OID, TEXTOID, JSONBOID, BOOLOID, JSONBOID, BOOLOID, TEXTOID, INTERVALOID,
	TEXTOID, BOOLOID};
	Datum		values[10];
	char		nulls[10];
	SeqDef	   *s;
	char	   *reenrol = text_arg(fcinfo, 6);

	memset(nulls, ' ', sizeof(nulls));
	CcrmSPIConnect();
	s = SeqLoad(required_name(fcinfo, 0), 0, true);
	values[0] = Int64GetDatum(s->id);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[3] = PG_ARGISNULL(4) ? 'n' : ' ';
	/* exit_filter: NULL keeps, JSON null removes */
	values[5] = BoolGetDatum(!PG_ARGISNULL(5));
	if (!PG_ARGISNULL(5) && JB_ROOT_IS_SCALAR(PG_GETARG_JSONB_P(5)) &&
		strcmp(JsonbToCString(NULL, &PG_GETARG_JSONB_P(5)->root, 0), "null") == 0)
		nulls[4] = 'n';
	else
	{
		values[4] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
		nulls[4] = PG_ARGISNULL(5) ? 'n' : ' ';
	}
	values[6] = PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6);
	nulls[6] = PG_ARGISNULL(6) ? 'n' : ' ';
	values[7] = PG_ARGISNULL(7) ? (Datum) 0 : PG_GETARG_DATUM(7);
	nulls[7] = PG_ARGISNULL(7) ? 'n' : ' ';
	values[8] = PG_ARGISNULL(8) ? (Datum) 0 : PG_GETARG_DATUM(8);
	nulls[8] = PG_ARGISNULL(8) ? 'n' : ' ';
	/* a re-enrolment other than after_cooldown drops the cooldown */
	values[9] = BoolGetDatum(reenrol != NULL && strcmp(reenrol, "after_cooldown") != 0);
	spi_exec("UPDATE ccrm.sequence s SET"
			 "  name = COALESCE($2, s.name),"
			 "  filter = COALESCE($3, s.filter),"
			 "  exit_when_unmatched = COALESCE($4, s.exit_when_unmatched),"
			 "  exit_filter = CASE WHEN $6 THEN $5 ELSE s.exit_filter END,"
			 "  reenrol = COALESCE($7, s.reenrol),"
			 "  cooldown = CASE WHEN $10 THEN NULL ELSE COALESCE($8, s.cooldown) END,"
			 "  description = CASE WHEN $9 IS NULL THEN s.description WHEN $9 OPERATOR(pg_catalog.=) '' THEN NULL"
			 "                     ELSE $9 END,"
			 "  updated_at = pg_catalog.now()"
			 " WHERE s.id OPERATOR(pg_catalog.=) $1",
			 10, types, values, nulls, SPI_OK_UPDATE);
	if (!PG_ARGISNULL(3))
		(void) set_steps(s, PG_GETARG_JSONB_P(3));
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
ccrm_drop_sequence(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	SeqDef	   *s;

	CcrmSPIConnect();
	s = SeqLoad(required_name(fcinfo, 0), 0, true);
	values[0] = Int64GetDatum(s->id);
	/* steps first: they may change only while inactive, so the sequence goes inactive first */
	spi_exec("UPDATE ccrm.sequence SET active = false WHERE id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_UPDATE);
	spi_exec("DELETE FROM ccrm.sequence WHERE id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}

typedef struct ActivateArgs
{
	SeqDef	   *seq;
	List	   *steps;
	TimestampTz at;
} ActivateArgs;

static Datum
activate_enrol(void *arg)
{
	ActivateArgs *a = arg;

	return Int64GetDatum(SeqEnrolPass(a->seq, a->steps, true, a->at));
}

/* ccrm.activate_sequence(sequence, only_new, at) -> records enrolled now */
Datum
ccrm_activate_sequence(PG_FUNCTION_ARGS)
{
	Oid			types[3] = {INT8OID, BOOLOID, TIMESTAMPTZOID};
	Datum		values[3];
	SeqDef	   *s;
	bool		only_new = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	TimestampTz at;
	const TimestampTz *atp = CcrmFilterInstantArg(fcinfo, 2, &at);
	ActivateArgs a;
	int64		enrolled = 0;

	if (atp == NULL)
		at = GetCurrentTransactionStartTimestamp();
	CcrmSPIConnect();
	s = SeqLoad(required_name(fcinfo, 0), 0, true);
	values[0] = Int64GetDatum(s->id);
	values[1] = BoolGetDatum(only_new);
	values[2] = TimestampTzGetDatum(at);
	if (s->active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sequence \"%s\" is already active", s->name),
				 errhint("Deactivate it first to activate it again with another choice of only_new.")));
	/* the trigger checks everything a run needs */
	spi_exec("UPDATE ccrm.sequence SET active = true, only_new = $2, activated_at = $3,"
			 "       activation_snapshot = pg_catalog.pg_current_snapshot(), reconciled_at = $3,"
			 "       last_error = NULL, updated_at = pg_catalog.now()"
			 " WHERE id OPERATOR(pg_catalog.=) $1", 3, types, values, NULL, SPI_OK_UPDATE);
	spi_exec("DELETE FROM ccrm.sequence_pending WHERE sequence_id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_DELETE);
	spi_exec("DELETE FROM ccrm.sequence_new_record WHERE sequence_id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_DELETE);
	s = SeqLoad(NULL, s->id, false);
	if (!only_new)
	{
		a.seq = s;
		a.steps = SeqLoadSteps(s, false);
		a.at = at;
		enrolled = DatumGetInt64(CcrmRunConfined(s->owner, activate_enrol, &a));
	}
	SPI_finish();
	PG_RETURN_INT64(enrolled);
}

Datum
ccrm_deactivate_sequence(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	SeqDef	   *s;

	CcrmSPIConnect();
	s = SeqLoad(required_name(fcinfo, 0), 0, true);
	values[0] = Int64GetDatum(s->id);
	spi_exec("UPDATE ccrm.sequence SET active = false, updated_at = pg_catalog.now()"
			 " WHERE id OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, SPI_OK_UPDATE);
	spi_exec("DELETE FROM ccrm.sequence_pending WHERE sequence_id OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}
