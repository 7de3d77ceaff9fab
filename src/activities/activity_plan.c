/*-------------------------------------------------------------------------
 *
 * activity_plan.c
 *	  Activity plans (ccrm.activity_plan) and ccrm.create_activities():
 *	  calendar events or tasks for every member of a target group, assigned
 *	  to users, written from tag templates, slotted into the users'
 *	  calendars.
 *
 *	  A plan is checked whenever it is written (trigger): its templates
 *	  parse in the group's context, the assign type fits the group's entity,
 *	  selected users exist and are active, events have a day window where at
 *	  least one event fits, tasks a deadline.
 *
 *	  create_activities() is set-based: one query reads every member with
 *	  every value the templates need (streamed through a cursor), users and
 *	  their existing events are read once, rendering and slotting happen in
 *	  C, and rows go in with one INSERT … SELECT FROM unnest(…) per batch.
 *	  A memory context per batch is reset after each insert.
 *
 *	  Idempotency: an activity records its plan, the run's day and the
 *	  member; a unique index allows one per (plan, day, member).  The plan's
 *	  row is locked FOR UPDATE for the whole run, so concurrent runs of one
 *	  plan queue up, and a later run of the same day sees what the earlier
 *	  one created and only adds what is missing (e.g. members who joined
 *	  since).  ON CONFLICT DO NOTHING guards the index in any case.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "privilege.h"
#include "spi_debug.h"
#include "activity_context.h"
#include "setting.h"
#include "slots.h"
#include "target_group.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_activity_plan_trigger);
PG_FUNCTION_INFO_V1(ccrm_activity_plan_id);
PG_FUNCTION_INFO_V1(ccrm_create_activities);

#define INSERT_BATCH 5000

/* A plan as read for a run or a check. */
typedef struct ActivityPlan
{
	int64		id;
	char	   *name;
	int64		group_id;
	char	   *group_name;
	char	   *entity;
	int64		responsible;	/* 0: none */
	char	   *assign_type;
	ArrayType  *user_ids;		/* NULL when none */
	char	   *subject;
	char	   *description;	/* NULL when none */
	bool		html;
	char	   *kind;
	bool		is_task;
	char	   *status;
	char	   *priority;
	bool		has_start_date;
	DateADT		start_date;
	bool		has_events_per_day;
	int			events_per_day;
	bool		has_day_start;
	TimeADT		day_start;
	bool		has_duration;
	Interval	duration;
	bool		has_earliest;
	TimeADT		earliest;
	bool		has_latest;
	TimeADT		latest;
	bool		has_deadline;
	int			deadline_days;
	bool		active;
} ActivityPlan;

/* Read an ActivityPlan from a row with the columns of ccrm.activity_plan. */
static void
plan_from_tuple(ActivityPlan *p, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d;

#define COL(name) SPI_getbinval(tup, desc, SPI_fnumber(desc, name), &isnull)
#define TXT(name) SPI_getvalue(tup, desc, SPI_fnumber(desc, name))
	p->id = DatumGetInt64(COL("id"));
	p->name = TXT("name");
	p->group_id = DatumGetInt64(COL("group_id"));
	p->assign_type = TXT("assign_type");
	d = COL("user_ids");
	p->user_ids = isnull ? NULL : DatumGetArrayTypePCopy(d);
	p->subject = TXT("subject");
	p->description = TXT("description");
	p->html = DatumGetBool(COL("html"));
	p->kind = TXT("kind");
	p->is_task = strcmp(p->kind, "task") == 0;
	p->status = TXT("status");
	p->priority = TXT("priority");
	d = COL("start_date");
	if ((p->has_start_date = !isnull))
		p->start_date = DatumGetDateADT(d);
	d = COL("events_per_day");
	if ((p->has_events_per_day = !isnull))
		p->events_per_day = DatumGetInt32(d);
	d = COL("day_start");
	if ((p->has_day_start = !isnull))
		p->day_start = DatumGetTimeADT(d);
	d = COL("duration");
	if ((p->has_duration = !isnull))
		p->duration = *DatumGetIntervalP(d);
	d = COL("earliest_start");
	if ((p->has_earliest = !isnull))
		p->earliest = DatumGetTimeADT(d);
	d = COL("latest_end");
	if ((p->has_latest = !isnull))
		p->latest = DatumGetTimeADT(d);
	d = COL("deadline_days");
	if ((p->has_deadline = !isnull))
		p->deadline_days = DatumGetInt32(d);
	p->active = DatumGetBool(COL("active"));
#undef COL
#undef TXT
}

/* The group of a plan: name, entity, responsible user. */
static void
read_group(ActivityPlan *p)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(p->group_id);
	bool		isnull;
	Datum		d;

	if (SPI_execute_with_args("SELECT name, entity, responsible_user_id FROM ccrm.target_group"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.target_group");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("target group with id " INT64_FORMAT " does not exist", p->group_id)));
	p->group_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	p->entity = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	p->responsible = isnull ? 0 : DatumGetInt64(d);
}

static void
plan_error(const ActivityPlan *p, const char *msg, const char *hint) pg_attribute_noreturn();

static void
plan_error(const ActivityPlan *p, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("activity plan \"%s\": %s", p->name, msg),
			 hint ? errhint("%s", hint) : 0));
}

/* The day window rules of an event plan: plan values, else the settings. */
static void
plan_rules(const ActivityPlan *p, CcrmSlotRules *rules)
{
	Interval	duration = p->has_duration ? p->duration
		: *DatumGetIntervalP(CcrmSettingValue("event_duration", INTERVALOID));
	TimeADT		earliest = p->has_earliest ? p->earliest
		: DatumGetTimeADT(CcrmSettingValue("earliest_start", TIMEOID));
	TimeADT		latest = p->has_latest ? p->latest
		: DatumGetTimeADT(CcrmSettingValue("latest_end", TIMEOID));
	TimeADT		day_start = p->has_day_start ? p->day_start : earliest;

	if (duration.month != 0 || duration.day != 0 || duration.time <= 0 ||
		duration.time >= USECS_PER_DAY)
		plan_error(p, "the duration of an event must be longer than zero and shorter than a day",
				   "Write it like '30 minutes'.");
	if (earliest >= latest)
		plan_error(p, psprintf("earliest start %s is not before latest end %s",
							   DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(earliest))),
							   DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(latest)))),
				   "Change the plan's earliest_start or latest_end, or the settings of the same names.");
	memset(rules, 0, sizeof(*rules));
	rules->first = Max(day_start, earliest);
	rules->latest_end = latest;
	rules->duration = duration.time;
	rules->per_day = p->has_events_per_day ? p->events_per_day : 8;
	if (rules->first + rules->duration > rules->latest_end)
		plan_error(p, psprintf("no event of " INT64_FORMAT " minutes fits between %s and %s",
							   (int64) (duration.time / USECS_PER_MINUTE),
							   DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(rules->first))),
							   DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(latest)))),
				   "Start the day earlier, end it later or shorten the events.");
}

/* Everything a plan must satisfy to be saved; also rechecked at each run. */
static CcrmActivityContext *
check_plan(ActivityPlan *p, CcrmTemplate **subject, CcrmTemplate **description)
{
	CcrmActivityContext *ac = CcrmActivityContextBuild(CcrmEntityLookup(p->entity, false));
	bool		has_users = p->user_ids && ArrayGetNItems(ARR_NDIM(p->user_ids), ARR_DIMS(p->user_ids)) > 0;

	if (strspn(p->kind, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(p->kind) ||
		p->kind[0] < 'a' || p->kind[0] > 'z')
		plan_error(p, psprintf("invalid kind \"%s\"", p->kind),
				   "A kind is an event type in lower case, such as call or meeting; task makes tasks.");
	if (strcmp(p->assign_type, "selected_users") != 0 && strcmp(p->assign_type, "contact_owner") != 0 &&
		strcmp(p->assign_type, "account_owner") != 0 && strcmp(p->assign_type, "group_responsible") != 0)
		plan_error(p, psprintf("unknown assign type \"%s\"", p->assign_type),
				   "Assign types are selected_users, contact_owner, account_owner and group_responsible.");
	if (p->has_events_per_day && (p->events_per_day < 1 || p->events_per_day > 200))
		plan_error(p, "events_per_day must be between 1 and 200", NULL);
	if (p->subject[strspn(p->subject, " \t\r\n")] == '\0')
		plan_error(p, "the subject is empty", "Write a subject; it may use tags such as $contact-firstname$.");
	*subject = CcrmTemplateParse(ac->tpl, p->subject, p->html, "subject");
	*description = p->description ? CcrmTemplateParse(ac->tpl, p->description, p->html, "description") : NULL;

	if (strcmp(p->assign_type, "contact_owner") == 0 && ac->contact_owner == NULL)
		plan_error(p, psprintf("assign type contact_owner needs contacts, and groups of %s have none", p->entity),
				   "Use account_owner, selected_users or group_responsible.");
	if (strcmp(p->assign_type, "account_owner") == 0 && ac->account_owner == NULL)
		plan_error(p, psprintf("assign type account_owner needs accounts, and groups of %s have none", p->entity),
				   "Use contact_owner, selected_users or group_responsible.");
	if (strcmp(p->assign_type, "group_responsible") == 0 && p->responsible == 0)
		plan_error(p, psprintf("target group \"%s\" has no responsible user", p->group_name),
				   "Set one with ccrm.alter_target_group(group, responsible_user_id => …).");
	if (strcmp(p->assign_type, "selected_users") == 0)
	{
		Oid			type = INT8ARRAYOID;
		Datum		arg;
		char	   *bad;

		if (!has_users)
			plan_error(p, "assign type selected_users needs user_ids", "List the users, e.g. user_ids => ARRAY[1, 2].");
		if (array_contains_nulls(p->user_ids) || ARR_NDIM(p->user_ids) != 1)
			plan_error(p, "user_ids must be a one-dimensional list without NULL", NULL);
		arg = PointerGetDatum(p->user_ids);
		if (SPI_execute_with_args("SELECT pg_catalog.string_agg(x::pg_catalog.text, ', ' ORDER BY x)"
								  "  FROM (SELECT DISTINCT x FROM pg_catalog.unnest($1) x) s"
								  " WHERE NOT EXISTS (SELECT 1 FROM ccrm.crm_user u"
								  "                    WHERE u.id OPERATOR(pg_catalog.=) s.x AND u.active)",
								  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.crm_user");
		bad = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (bad)
			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("activity plan \"%s\": no active user with id %s", p->name, bad),
					 errhint("Selected users are ids of active rows of ccrm.crm_user.")));
		if (SPI_execute_with_args("SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) pg_catalog.count(DISTINCT x)"
								  "  FROM pg_catalog.unnest($1) x",
								  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not check user_ids");
		if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
			plan_error(p, "user_ids names a user twice", NULL);
	}
	else if (has_users)
		plan_error(p, "user_ids apply only to assign type selected_users", "Leave user_ids empty.");

	if (p->is_task)
	{
		if (!p->has_deadline)
			plan_error(p, "a task plan needs deadline_days", "Say how many days after creation a task is due, e.g. deadline_days => 7.");
		if (p->has_events_per_day || p->has_day_start || p->has_duration || p->has_earliest || p->has_latest)
			plan_error(p, "events_per_day, day_start, duration, earliest_start and latest_end apply to events, not tasks",
					   "Leave them empty for kind task.");
	}
	else
	{
		CcrmSlotRules rules;

		if (p->has_deadline)
			plan_error(p, "deadline_days applies to tasks, not events", "Leave it empty, or use kind task.");
		if (!p->has_events_per_day)
			plan_error(p, "an event plan needs events_per_day", "Say how many events a user gets a day, e.g. events_per_day => 8.");
		plan_rules(p, &rules);
	}
	return ac;
}

Datum
ccrm_activity_plan_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	row;
	ActivityPlan p;
	CcrmTemplate *subject;
	CcrmTemplate *description;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.activity_plan_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));
	row = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : td->tg_newtuple;
	if (CcrmRestoring())
		return PointerGetDatum(row);

	plan_from_tuple(&p, row, RelationGetDescr(td->tg_relation));
	CcrmSPIConnect();
	read_group(&p);
	(void) check_plan(&p, &subject, &description);
	SPI_finish();
	return PointerGetDatum(row);
}

Datum
ccrm_activity_plan_id(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int64		id;
	bool		isnull;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("group and plan must not be null")));
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT p.id FROM ccrm.activity_plan p"
							  "  JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) p.group_id"
							  " WHERE g.name OPERATOR(pg_catalog.=) $1 AND p.name OPERATOR(pg_catalog.=) $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.activity_plan");
	if (SPI_processed == 0)
	{
		char	   *names;

		(void) CcrmGroupIdByName(TextDatumGetCString(args[0]));
		if (SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(p.name), ', ' ORDER BY p.name)"
								  "  FROM ccrm.activity_plan p JOIN ccrm.target_group g ON g.id OPERATOR(pg_catalog.=) p.group_id"
								  " WHERE g.name OPERATOR(pg_catalog.=) $1",
								  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.activity_plan");
		names = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target group \"%s\" has no activity plan \"%s\"",
						TextDatumGetCString(args[0]), TextDatumGetCString(args[1])),
				 names ? errhint("Its plans: %s.", names)
				 : errhint("Save one with ccrm.create_activity_plan().")));
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* ----------------------------------------------------------------
 * ccrm.create_activities
 * ---------------------------------------------------------------- */

/* A user as the run sees them: zone, tag values, calendar cursor. */
typedef struct RunUser
{
	int64		id;
	bool		active;
	pg_tz	   *tz;
	char	  **values;			/* user slot values, by slot index */
	CcrmBusy   *busy;			/* existing events, by start */
	int			nbusy;
	int			maxbusy;
	bool		cursor_ready;
	CcrmSlotCursor cursor;
} RunUser;

typedef struct Run
{
	ActivityPlan plan;
	CcrmActivityContext *ac;
	CcrmTemplate *subject;
	CcrmTemplate *description;
	DateADT		day;
	int64		run_id;
	CcrmSlotRules rules;
	RunUser    *users;			/* sorted by id */
	int			nusers;
	RunUser   **selected;		/* active selected users, in the plan's order */
	int			nselected;
	RunUser    *responsible;	/* active responsible user of the group, or NULL */
	char	  **group_values;	/* group slot values */
	int64		created;
	int64		skipped_no_user;	/* no owner and no responsible user */
	int64		skipped_inactive;	/* inactive owner and no responsible user */
	int64		skipped_no_selected;	/* none of the selected users is active */
	int64		skipped_no_responsible; /* group_responsible, and there is none */
	SPIPlanPtr	insert;
} Run;

static RunUser *
find_user(Run *run, int64 id)
{
	int			lo = 0;
	int			hi = run->nusers - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (run->users[mid].id == id)
			return &run->users[mid];
		if (run->users[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* Every user, with zone and the values of $user-…$ tags. */
static void
load_users(Run *run)
{
	StringInfoData sql;
	ListCell   *lc;
	pg_tz	   *default_tz = CcrmSettingTimeZone();
	int			nslots = list_length(run->ac->tpl->slots);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT u.id, u.timezone, u.active");
	foreach(lc, run->ac->tpl->slots)
	{
		CcrmTemplateSlot *slot = lfirst(lc);

		if (slot->source->group == ACTIVITY_SRC_USER)
			appendStringInfo(&sql, ", %s", CcrmTemplateSlotSql(slot));
	}
	appendStringInfoString(&sql, " FROM ccrm.crm_user u ORDER BY u.id");
	if (SPI_execute(sql.data, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.crm_user");

	run->nusers = SPI_processed;
	run->users = palloc0(sizeof(RunUser) * Max(run->nusers, 1));
	for (int i = 0; i < run->nusers; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RunUser    *u = &run->users[i];
		bool		isnull;
		char	   *zone = SPI_getvalue(tup, desc, 2);
		int			col = 4;

		u->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		u->active = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		u->tz = zone ? CcrmTimeZone(zone, true) : NULL;
		if (u->tz == NULL)
			u->tz = default_tz;
		u->values = palloc0(sizeof(char *) * Max(nslots, 1));
		foreach(lc, run->ac->tpl->slots)
		{
			CcrmTemplateSlot *slot = lfirst(lc);

			if (slot->source->group == ACTIVITY_SRC_USER)
				u->values[slot->index] = SPI_getvalue(tup, desc, col++);
		}
	}
	SPI_freetuptable(SPI_tuptable);
}

/* The users who may get events in this run, as an int8[] literal. */
static Datum
involved_users(Run *run)
{
	ArrayBuildState *ab = initArrayResult(INT8OID, CurrentMemoryContext, false);
	const char *owner = strcmp(run->plan.assign_type, "contact_owner") == 0 ? run->ac->contact_owner
		: strcmp(run->plan.assign_type, "account_owner") == 0 ? run->ac->account_owner : NULL;

	for (int i = 0; i < run->nselected; i++)
		accumArrayResult(ab, Int64GetDatum(run->selected[i]->id), false, INT8OID, CurrentMemoryContext);
	if (run->responsible)
		accumArrayResult(ab, Int64GetDatum(run->responsible->id), false, INT8OID, CurrentMemoryContext);
	if (owner)
	{
		Oid			type = INT8OID;
		Datum		arg = Int64GetDatum(run->plan.group_id);

		if (SPI_execute_with_args(psprintf("SELECT DISTINCT %s FROM ccrm.target_group_member m"
										   " JOIN %s e ON e.%s OPERATOR(pg_catalog.=) m.member_id%s"
										   " WHERE m.group_id OPERATOR(pg_catalog.=) $1 AND %s IS NOT NULL",
										   owner, run->ac->entity->qualname,
										   quote_identifier(run->ac->entity->key_column), run->ac->joins, owner),
								  1, &type, &arg, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the owners of the group's members");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			accumArrayResult(ab, SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull),
							 false, INT8OID, CurrentMemoryContext);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	return makeArrayResult(ab, CurrentMemoryContext);
}

/* Events already in the calendars of the users involved, from the run's day on. */
static void
load_busy(Run *run)
{
	Oid			types[3] = {INT8ARRAYOID, INT8OID, TIMESTAMPTZOID};
	Datum		args[3];

	args[0] = involved_users(run);
	args[1] = Int64GetDatum(run->plan.id);
	/* a day early: the day starts earlier in some users' zones than in UTC */
	args[2] = TimestampTzGetDatum(((TimestampTz) run->day - 1) * USECS_PER_DAY);
	if (SPI_execute_with_args("SELECT user_id, starts_at, ends_at, plan_id IS NOT DISTINCT FROM $2"
							  "  FROM ccrm.activity"
							  " WHERE user_id OPERATOR(pg_catalog.=) ANY ($1) AND starts_at IS NOT NULL"
							  "   AND ends_at OPERATOR(pg_catalog.>) $3"
							  " ORDER BY user_id, starts_at",
							  3, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.activity");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		RunUser    *u = find_user(run, DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)));
		CcrmBusy   *b;

		if (u == NULL)
			continue;
		if (u->nbusy == u->maxbusy)
		{
			u->maxbusy = Max(16, u->maxbusy * 2);
			u->busy = u->busy ? repalloc(u->busy, sizeof(CcrmBusy) * u->maxbusy)
				: palloc(sizeof(CcrmBusy) * u->maxbusy);
		}
		b = &u->busy[u->nbusy++];
		b->start = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		b->end = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		b->same_plan = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Who gets the activity of member number n: a user, or NULL (skipped). */
static RunUser *
assignee(Run *run, uint64 n, bool owner_null, int64 owner)
{
	const char *type = run->plan.assign_type;
	RunUser    *u;

	if (strcmp(type, "selected_users") == 0)
	{
		if (run->nselected == 0)
		{
			run->skipped_no_selected++;
			return NULL;
		}
		return run->selected[n % run->nselected];
	}
	if (strcmp(type, "group_responsible") == 0)
	{
		if (run->responsible == NULL)
			run->skipped_no_responsible++;
		return run->responsible;
	}
	else
	{
		u = owner_null ? NULL : find_user(run, owner);
		if (u && u->active)
			return u;
	}
	if (run->responsible)
		return run->responsible;
	if (u)
		run->skipped_inactive++;
	else
		run->skipped_no_user++;
	return NULL;
}

/* Column buffers of one insert batch. */
typedef struct Batch
{
	int			n;
	Datum		subject[INSERT_BATCH];
	Datum		description[INSERT_BATCH];
	bool		description_null[INSERT_BATCH];
	Datum		user_id[INSERT_BATCH];
	Datum		contact_id[INSERT_BATCH];
	bool		contact_null[INSERT_BATCH];
	Datum		account_id[INSERT_BATCH];
	bool		account_null[INSERT_BATCH];
	Datum		lead_id[INSERT_BATCH];
	bool		lead_null[INSERT_BATCH];
	Datum		starts[INSERT_BATCH];
	Datum		ends[INSERT_BATCH];
	Datum		due[INSERT_BATCH];
	bool		event_null[INSERT_BATCH];
	bool		task_null[INSERT_BATCH];
	Datum		member[INSERT_BATCH];
} Batch;

static Datum
column(Datum *values, bool *nulls, int n, Oid type, int16 len, bool byval, char align)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	bool		nonnull[INSERT_BATCH];

	if (nulls == NULL)
	{
		memset(nonnull, 0, sizeof(bool) * n);
		nulls = nonnull;
	}
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type, len, byval, align));
}

static void
flush(Run *run, Batch *b)
{
	Datum		args[16];
	char		nulls[16];

	if (b->n == 0)
		return;
	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(run->plan.kind);
	args[1] = CStringGetTextDatum(run->plan.status);
	args[2] = CStringGetTextDatum(run->plan.priority);
	args[3] = Int64GetDatum(run->plan.id);
	args[4] = Int64GetDatum(run->run_id);
	args[5] = DateADTGetDatum(run->day);
	args[6] = column(b->subject, NULL, b->n, TEXTOID, -1, false, TYPALIGN_INT);
	args[7] = column(b->description, b->description_null, b->n, TEXTOID, -1, false, TYPALIGN_INT);
	args[8] = column(b->user_id, NULL, b->n, INT8OID, 8, true, TYPALIGN_DOUBLE);
	args[9] = column(b->contact_id, b->contact_null, b->n, INT8OID, 8, true, TYPALIGN_DOUBLE);
	args[10] = column(b->account_id, b->account_null, b->n, INT8OID, 8, true, TYPALIGN_DOUBLE);
	args[11] = column(b->lead_id, b->lead_null, b->n, INT8OID, 8, true, TYPALIGN_DOUBLE);
	args[12] = column(b->starts, b->event_null, b->n, TIMESTAMPTZOID, 8, true, TYPALIGN_DOUBLE);
	args[13] = column(b->ends, b->event_null, b->n, TIMESTAMPTZOID, 8, true, TYPALIGN_DOUBLE);
	args[14] = column(b->due, b->task_null, b->n, DATEOID, 4, true, TYPALIGN_INT);
	args[15] = column(b->member, NULL, b->n, INT8OID, 8, true, TYPALIGN_DOUBLE);

	if (SPI_execute_plan(run->insert, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert activities");
	run->created += SPI_processed;
	b->n = 0;
}

static void
prepare_insert(Run *run)
{
	Oid			types[16] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, DATEOID,
		TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, DATEARRAYOID, INT8ARRAYOID};

	run->insert = SPI_prepare("INSERT INTO ccrm.activity (kind, subject, description, user_id, contact_id,"
							  " account_id, lead_id, starts_at, ends_at, due_on, status, priority,"
							  " plan_id, plan_run_id, plan_day, member_id)"
							  " SELECT $1, x.s, x.d, x.u, x.c, x.a, x.l, x.st, x.en, x.du, $2, $3, $4, $5, $6, x.m"
							  "   FROM ROWS FROM (pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9),"
							  "        pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12),"
							  "        pg_catalog.unnest($13), pg_catalog.unnest($14), pg_catalog.unnest($15),"
							  "        pg_catalog.unnest($16)) AS x(s, d, u, c, a, l, st, en, du, m)"
							  " ON CONFLICT (plan_id, plan_day, member_id) WHERE plan_id IS NOT NULL DO NOTHING",
							  16, types);
	if (run->insert == NULL)
		elog(ERROR, "could not prepare the activity insert: %s", SPI_result_code_string(SPI_result));
}

/* The member query: keys, links, owner and every row value the templates need. */
static char *
member_query(Run *run, int *first_slot_col)
{
	CcrmActivityContext *ac = run->ac;
	const char *owner = strcmp(run->plan.assign_type, "contact_owner") == 0 ? ac->contact_owner
		: strcmp(run->plan.assign_type, "account_owner") == 0 ? ac->account_owner : NULL;
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s, %s, %s, %s, %s", ac->key, ac->contact_id, ac->account_id,
					 ac->lead_id, owner ? owner : "NULL::pg_catalog.int8");
	*first_slot_col = 6;
	foreach(lc, ac->tpl->slots)
	{
		CcrmTemplateSlot *slot = lfirst(lc);

		if (slot->source->group == ACTIVITY_SRC_ROW)
			appendStringInfo(&sql, ", %s", CcrmTemplateSlotSql(slot));
	}
	appendStringInfo(&sql,
					 " FROM ccrm.target_group_member m JOIN %s e ON e.%s OPERATOR(pg_catalog.=) m.member_id%s"
					 " WHERE m.group_id OPERATOR(pg_catalog.=) $1"
					 " ORDER BY m.member_id",
					 ac->entity->qualname, quote_identifier(ac->entity->key_column), ac->joins);
	return sql.data;
}

/*
 * Members that already have their activity of this plan and day (an earlier
 * or concurrent run).  Kept in a hash table and skipped while reading the
 * members, rather than anti-joined in the member query: a plan chosen on
 * stale statistics could otherwise rescan the activities this very run adds.
 */
static HTAB *
members_done(Run *run)
{
	Oid			types[2] = {INT8OID, DATEOID};
	Datum		args[2] = {Int64GetDatum(run->plan.id), DateADTGetDatum(run->day)};
	HASHCTL		ctl;
	HTAB	   *done;

	if (SPI_execute_with_args("SELECT member_id FROM ccrm.activity"
							  " WHERE plan_id OPERATOR(pg_catalog.=) $1 AND plan_day OPERATOR(pg_catalog.=) $2"
							  "   AND member_id IS NOT NULL",
							  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.activity");
	if (SPI_processed == 0)
		return NULL;
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = CurrentMemoryContext;
	done = hash_create("ccrm members done", SPI_processed, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		member = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		(void) hash_search(done, &member, HASH_ENTER, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	return done;
}

static void
create_all(Run *run)
{
	int			nslots = list_length(run->ac->tpl->slots);
	char	  **values = palloc0(sizeof(char *) * Max(nslots, 1));
	Oid			types[1] = {INT8OID};
	Datum		args[1];
	int			first_slot_col;
	char	   *sql = member_query(run, &first_slot_col);
	HTAB	   *done = members_done(run);
	Portal		portal;
	Batch	   *batch = palloc0(sizeof(Batch));
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "ccrm activity batch",
													ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	uint64		n = 0;
	StringInfoData text;

	args[0] = Int64GetDatum(run->plan.group_id);
	portal = SPI_cursor_open_with_args(NULL, sql, 1, types, args, NULL, true, 0);
	initStringInfo(&text);

	for (;;)
	{
		SPI_cursor_fetch(portal, true, INSERT_BATCH);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		member = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			Datum		owner;
			RunUser    *u;
			int			col = first_slot_col;
			ListCell   *lc;
			int			k = batch->n;

			if (done && hash_search(done, &member, HASH_FIND, NULL))
				continue;
			owner = SPI_getbinval(tup, desc, 5, &isnull);
			u = assignee(run, n++, isnull, isnull ? 0 : DatumGetInt64(owner));
			if (u == NULL)
				continue;
			foreach(lc, run->ac->tpl->slots)
			{
				CcrmTemplateSlot *slot = lfirst(lc);

				values[slot->index] = slot->source->group == ACTIVITY_SRC_ROW ? SPI_getvalue(tup, desc, col++)
					: slot->source->group == ACTIVITY_SRC_USER ? u->values[slot->index]
					: run->group_values[slot->index];
			}
			resetStringInfo(&text);
			CcrmTemplateRender(run->subject, values, &text);
			batch->subject[k] = PointerGetDatum(cstring_to_text_with_len(text.data, text.len));
			batch->description_null[k] = run->description == NULL;
			if (run->description)
			{
				resetStringInfo(&text);
				CcrmTemplateRender(run->description, values, &text);
				batch->description[k] = PointerGetDatum(cstring_to_text_with_len(text.data, text.len));
			}
			batch->user_id[k] = Int64GetDatum(u->id);
			batch->member[k] = SPI_getbinval(tup, desc, 1, &isnull);
			batch->contact_id[k] = SPI_getbinval(tup, desc, 2, &batch->contact_null[k]);
			batch->account_id[k] = SPI_getbinval(tup, desc, 3, &batch->account_null[k]);
			batch->lead_id[k] = SPI_getbinval(tup, desc, 4, &batch->lead_null[k]);
			batch->event_null[k] = run->plan.is_task;
			batch->task_null[k] = !run->plan.is_task;
			if (run->plan.is_task)
				batch->due[k] = DateADTGetDatum(run->day + run->plan.deadline_days);
			else
			{
				TimestampTz s;
				TimestampTz e;

				if (!u->cursor_ready)
				{
					CcrmSlotCursorInit(&u->cursor, u->tz, run->day, u->busy, u->nbusy);
					u->cursor_ready = true;
				}
				CcrmSlotNext(&run->rules, &u->cursor, &s, &e);
				batch->starts[k] = TimestampTzGetDatum(s);
				batch->ends[k] = TimestampTzGetDatum(e);
			}
			batch->n++;
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		flush(run, batch);
		MemoryContextReset(batch_cxt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
}

Datum
ccrm_create_activities(PG_FUNCTION_ARGS)
{
	Run		   *run = palloc0(sizeof(Run));
	Oid			types[2] = {INT8OID, DATEOID};
	Datum		args[2];
	int			nestlevel;
	TupleDesc	desc;
	Datum		result[4];
	bool		nulls[4] = {false, false, false, false};
	StringInfoData reasons;
	int64		skipped;
	MemoryContext caller;
	char	   *plan_name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("plan must not be null")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	caller = CurrentMemoryContext;
	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();

	/* the plan, locked: runs of one plan queue up */
	args[0] = PG_GETARG_DATUM(0);
	if (SPI_execute_with_args("SELECT * FROM ccrm.activity_plan WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.activity_plan");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("activity plan with id " INT64_FORMAT " does not exist", PG_GETARG_INT64(0))));
	plan_from_tuple(&run->plan, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	if (!run->plan.active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("activity plan \"%s\" is not active", run->plan.name),
				 errhint("Activate it with UPDATE ccrm.activity_plan SET active = true WHERE id = " INT64_FORMAT ".",
						 run->plan.id)));
	read_group(&run->plan);
	run->ac = check_plan(&run->plan, &run->subject, &run->description);

	/* the run's day: the given date, the plan's start date, else today */
	if (!PG_ARGISNULL(1))
		run->day = PG_GETARG_DATEADT(1);
	else if (run->plan.has_start_date)
		run->day = run->plan.start_date;
	else
		run->day = CcrmLocalDate(GetCurrentTransactionStartTimestamp(), CcrmSettingTimeZone());
	if (DATE_NOT_FINITE(run->day))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the day of a run must be a finite date")));

	args[0] = Int64GetDatum(run->plan.id);
	args[1] = DateADTGetDatum(run->day);
	if (SPI_execute_with_args("INSERT INTO ccrm.activity_plan_run (plan_id, run_day) VALUES ($1, $2) RETURNING id",
							  2, types, args, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into ccrm.activity_plan_run");
	run->run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &nulls[0]));

	run->group_values = palloc0(sizeof(char *) * Max(list_length(run->ac->tpl->slots), 1));
	CcrmActivityFetchSlots(run->ac, ACTIVITY_SRC_GROUP, "ccrm.target_group g WHERE g.id OPERATOR(pg_catalog.=) $1",
					   INT8OID, Int64GetDatum(run->plan.group_id), run->group_values, CurrentMemoryContext);
	load_users(run);
	run->responsible = run->plan.responsible ? find_user(run, run->plan.responsible) : NULL;
	if (run->responsible && !run->responsible->active)
		run->responsible = NULL;
	if (run->plan.user_ids)
	{
		Datum	   *ids;
		bool	   *idnulls;
		int			nids;

		deconstruct_array(run->plan.user_ids, INT8OID, 8, true, TYPALIGN_DOUBLE, &ids, &idnulls, &nids);
		run->selected = palloc(sizeof(RunUser *) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
		{
			RunUser    *u = idnulls[i] ? NULL : find_user(run, DatumGetInt64(ids[i]));

			if (u && u->active)
				run->selected[run->nselected++] = u;
		}
	}
	if (!run->plan.is_task)
	{
		plan_rules(&run->plan, &run->rules);
		CcrmLoadWorkingDays(&run->rules);
		load_busy(run);
	}
	prepare_insert(run);
	create_all(run);

	/* what happened, on the run's row and to the caller */
	skipped = run->skipped_no_user + run->skipped_inactive + run->skipped_no_selected +
		run->skipped_no_responsible;
	/* the result and the NOTICE outlive SPI: build them in the caller's memory */
	MemoryContextSwitchTo(caller);
	plan_name = pstrdup(run->plan.name);
	initStringInfo(&reasons);
	appendStringInfoChar(&reasons, '{');
	if (run->skipped_no_user)
		appendStringInfo(&reasons, "\"no owner and no responsible user\": " INT64_FORMAT, run->skipped_no_user);
	if (run->skipped_inactive)
		appendStringInfo(&reasons, "%s\"inactive owner and no responsible user\": " INT64_FORMAT,
						 reasons.len > 1 ? ", " : "", run->skipped_inactive);
	if (run->skipped_no_selected)
		appendStringInfo(&reasons, "%s\"no active selected user\": " INT64_FORMAT,
						 reasons.len > 1 ? ", " : "", run->skipped_no_selected);
	if (run->skipped_no_responsible)
		appendStringInfo(&reasons, "%s\"no active responsible user\": " INT64_FORMAT,
						 reasons.len > 1 ? ", " : "", run->skipped_no_responsible);
	appendStringInfoChar(&reasons, '}');
	result[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(reasons.data));
	{
		Oid			utypes[4] = {INT8OID, INT8OID, INT8OID, JSONBOID};
		Datum		uargs[4];

		uargs[0] = Int64GetDatum(run->run_id);
		uargs[1] = Int64GetDatum(run->created);
		uargs[2] = Int64GetDatum(skipped);
		uargs[3] = result[2];
		if (SPI_execute_with_args("UPDATE ccrm.activity_plan_run SET created = $2, skipped = $3,"
								  " skipped_reasons = $4, finished_at = pg_catalog.clock_timestamp()"
								  " WHERE id OPERATOR(pg_catalog.=) $1",
								  4, utypes, uargs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update ccrm.activity_plan_run");
	}
	CcrmPopSearchPath(nestlevel);
	SPI_finish();

	if (skipped > 0)
		ereport(NOTICE,
				(errmsg("activity plan \"%s\": " INT64_FORMAT " created, " INT64_FORMAT " skipped",
						plan_name, run->created, skipped),
				 errdetail("Skipped: %s.", reasons.data)));
	result[0] = Int64GetDatum(run->created);
	result[1] = Int64GetDatum(skipped);
	result[3] = Int64GetDatum(run->run_id);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls));
}
