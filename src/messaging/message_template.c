/*-------------------------------------------------------------------------
 *
 * message_template.c
 *	  Message templates (ccrm.message_template): the texts of emails, SMS
 *	  and tasks, with tags (message_render.c says which), written for the
 *	  records of one entity.
 *
 *		kind	fields
 *		email	subject, body (text) and/or html_body, sender_id, reply_to, channel
 *		sms		body, channel
 *		task	subject, body (the task's description)
 *
 *	  The BEFORE trigger checks every write, however it is made
 *	  (ccrm.create_message_template, INSERT, UPDATE): the fields of the
 *	  kind and no others, every tag against the entity (an error names the
 *	  field, the tag and where it is), a channel of the kind's medium, a
 *	  reply-to address that can be valid, an owner the writer may give it,
 *	  and that the writer may send as the default sender.  Rendering parses
 *	  the texts again (entities and fields may have changed since), so a
 *	  template that no longer fits fails before anything is queued.
 *
 *	  Row level security: a role sees and changes the templates of roles
 *	  it is a member of; admins all of them.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "tuple_util.h"
#include "spi_debug.h"
#include "messaging.h"
#include "privilege.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_message_template_trigger);

static char *
get_text(HeapTuple tup, TupleDesc desc, const char *column)
{
	return SPI_getvalue(tup, desc, SPI_fnumber(desc, column));
}

static void
not_for_kind(const char *name, const char *kind, const char *field, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("message template \"%s\": a template of kind %s has no %s", name, kind, field),
			 errhint("%s", hint)));
}

static void
required(const char *name, const char *kind, const char *field, const char *value)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("message template \"%s\": a template of kind %s needs a %s", name, kind, field)));
}

Datum
ccrm_message_template_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	HeapTuple	old = NULL;
	bool		is_insert;
	bool		isnull;
	char	   *name;
	char	   *kind;
	char	   *subject;
	char	   *body;
	char	   *html;
	char	   *channel;
	char	   *reply_to;
	Datum		owner;
	Datum		sender;
	CcrmEntity *ent;
	CcrmTemplateContext *ctx;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.message_template_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	is_insert = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	row = is_insert ? td->tg_trigtuple : td->tg_newtuple;
	if (!is_insert)
		old = td->tg_trigtuple;
	if (!is_insert)
	{
		int			attno = SPI_fnumber(desc, "updated_at");
		Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		bool		nonull = false;

		row = heap_modify_tuple_by_cols(row, desc, 1, &attno, &now, &nonull);
	}
	if (CcrmRestoring())
		return PointerGetDatum(row);

	name = get_text(row, desc, "name");
	kind = get_text(row, desc, "kind");
	subject = get_text(row, desc, "subject");
	body = get_text(row, desc, "body");
	html = get_text(row, desc, "html_body");
	channel = get_text(row, desc, "channel");
	reply_to = get_text(row, desc, "reply_to");
	owner = heap_getattr(row, SPI_fnumber(desc, "owner"), desc, &isnull);
	if (isnull || name == NULL || kind == NULL)
		return PointerGetDatum(row);	/* NOT NULL reports it */
	CcrmCheckOwner(DatumGetObjectId(owner), is_insert, CcrmColumnChanged(row, old, desc, "owner"),
				  "message template", name);
	sender = heap_getattr(row, SPI_fnumber(desc, "sender_id"), desc, &isnull);

	if (strcmp(kind, "email") == 0)
	{
		required(name, kind, "subject", subject);
		if ((body == NULL || body[0] == '\0') && (html == NULL || html[0] == '\0'))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("message template \"%s\": an email template needs a body or an html_body", name)));
	}
	else if (strcmp(kind, "sms") == 0)
	{
		required(name, kind, "body", body);
		if (subject)
			not_for_kind(name, kind, "subject", "An SMS is only its body.");
		if (html)
			not_for_kind(name, kind, "html_body", "An SMS is plain text: write it in body.");
		if (reply_to)
			not_for_kind(name, kind, "reply_to", "Replies to an SMS go to the channel's number.");
		if (!isnull)
			not_for_kind(name, kind, "sender_id", "An SMS is sent from the channel's number or name.");
	}
	else if (strcmp(kind, "task") == 0)
	{
		required(name, kind, "subject", subject);
		if (html)
			not_for_kind(name, kind, "html_body", "A task has a subject and a description (body).");
		if (reply_to)
			not_for_kind(name, kind, "reply_to", "A task is not sent: it is created in the user's calendar.");
		if (channel)
			not_for_kind(name, kind, "channel", "A task is not sent: it is created in the user's calendar.");
		if (!isnull)
			not_for_kind(name, kind, "sender_id", "A task is not sent: it is created in the user's calendar.");
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message template \"%s\": kind \"%s\" is not known", name, kind),
				 errhint("The kinds are email, sms and task.")));

	if (reply_to && AddressCheckEmail(reply_to) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message template \"%s\": reply_to \"%s\" is not a valid email address: %s",
						name, reply_to, AddressCheckEmail(reply_to))));
	if (channel)
		(void) MsgChannelLookup(channel, kind);

	ent = CcrmEntityLookup(get_text(row, desc, "entity"), false);
	ctx = MsgTemplateContext(ent, NULL);
	if (subject)
		(void) CcrmTemplateParse(ctx, subject, false, "subject");
	if (body)
		(void) CcrmTemplateParse(ctx, body, false, "body");
	if (html)
		(void) CcrmTemplateParse(ctx, html, true, "html_body");

	if (!isnull && (is_insert || CcrmColumnChanged(row, old, desc, "sender_id") || CcrmColumnChanged(row, old, desc, "owner")))
		CcrmCheckMayActAs(DatumGetInt64(sender), GetUserId(),
						 psprintf("Message template \"%s\", which sends as its default sender,", name));
	return PointerGetDatum(row);
}

/*
 * A template by name, as the current user sees it (row level security),
 * that the current user may use; ERROR otherwise.
 */
MsgTemplate *
MsgTemplateLookup(const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;
	MsgTemplate *t = palloc0(sizeof(MsgTemplate));
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT id, name, kind, entity, subject, body, html_body, sender_id, reply_to,"
							  "       channel, owner::pg_catalog.oid"
							  "  FROM ccrm.message_template WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.message_template");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("message template \"%s\" does not exist", name),
				 errhint("See ccrm.message_template for the templates you may use.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
#define TXT(col) (SPI_getvalue(tup, desc, col) ? MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, col)) : NULL)
	t->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	t->name = TXT(2);
	t->kind = TXT(3);
	t->entity = TXT(4);
	t->subject = TXT(5);
	t->body = TXT(6);
	t->html_body = TXT(7);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	t->has_sender = !isnull;
	t->sender_id = isnull ? 0 : DatumGetInt64(d);
	t->reply_to = TXT(9);
	t->channel = TXT(10);
	t->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 11, &isnull));
#undef TXT
	SPI_finish();
	MsgCheckMayUse(GetUserId(), t->owner, "message template", t->name);
	return t;
}
