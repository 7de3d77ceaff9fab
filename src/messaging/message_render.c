/*-------------------------------------------------------------------------
 *
 * message_render.c
 *	  What a message can say and where it goes: the tag context of message
 *	  templates, and rendering them for records, many at a time.
 *
 *	  Tags, for a template of entity E (template.c parses them):
 *		$E-field$						the record (contact, account, lead, a
 *										registered entity such as $invoice-amount$)
 *		$contact-…$, $account-…$		its contact and account, where E links to them
 *		$user-…$						the receiving user of a message to a user;
 *										of a message to a record, the record's owner
 *		$sender-…$						the sending user
 *		$campaign-…$					the campaign of a join email (campaign_email.c); NULL,
 *										so the fallback, in other messages
 *	  with fallbacks ($contact-firstname|Customer$).  HTML bodies escape
 *	  values; subjects and text bodies do not.
 *
 *	  Where a message goes (MsgRecipient): the record itself, i.e. its
 *	  contact (email / mobile), else the lead, else its account (email /
 *	  phone); or a CRM user (email / mobile): the record's owner, or one
 *	  given user.  Together with the address each row carries what the
 *	  outbox needs to suppress it (opt-out, which field the address came
 *	  from) and to place it in time (time zone, country).
 *
 *	  Records are read by one query per call with the caller's privileges,
 *	  through a cursor, a batch at a time; values are rendered in C without
 *	  re-parsing.  Records that do not exist are skipped.
 *
 *	  Campaigns send one contact template to contacts and leads alike: for
 *	  leads (lead_as_contact) the record query reads the lead in the shape
 *	  of a contact, the fields a lead lacks (and its account) being NULL.
 *
 *	  Also ccrm.render_message, the preview of a message for one record.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "spi_debug.h"
#include "messaging.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(ccrm_render_message);

#define RENDER_BATCH 2000

/* The columns of the record query before the slots. */
enum
{
	COL_KEY = 1, COL_CONTACT, COL_LEAD, COL_USER, COL_ADDRESS, COL_OPT_OUT, COL_TZ, COL_COUNTRY,
	COL_FIRST_SLOT
};

/*
 * The message context of an entity: the activity context's record, contact
 * and account sources, the receiving user (u, read with the record) and
 * the sender (s, read once).
 */
CcrmTemplateContext *
MsgTemplateContext(CcrmEntity *ent, CcrmActivityContext **acp)
{
	CcrmActivityContext *ac;
	CcrmTemplateContext *ctx;
	ListCell   *lc;

	if (ent->builtin && strcmp(ent->name, "contact") != 0 && strcmp(ent->name, "account") != 0 &&
		strcmp(ent->name, "lead") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("messages cannot be written for records of %s", ent->name),
				 errhint("Message templates are for contacts, accounts, leads and registered entities.")));
	ac = CcrmActivityContextBuild(ent);
	ctx = CcrmTemplateContextCreate(psprintf("message templates of %s", ent->name));
	foreach(lc, ac->tpl->sources)
	{
		CcrmTemplateSource *src = lfirst(lc);

		if (strcmp(src->name, "targetgroup") == 0 || strcmp(src->name, "user") == 0)
			continue;
		CcrmTemplateAddSource(ctx, src->name, src->entity, src->alias, MSG_SRC_ROW);
	}
	CcrmTemplateAddSource(ctx, "user", CcrmEntityLookup("user", false), "u", MSG_SRC_ROW);
	CcrmTemplateAddSource(ctx, "sender", CcrmEntityLookup("user", false), "s", MSG_SRC_SENDER);
	{
		Oid			campaign = get_relname_relid("campaign", get_namespace_oid(CCRM_SCHEMA, false));

		if (OidIsValid(campaign))
			CcrmTemplateAddSource(ctx, "campaign", CcrmEntityForRelation("campaign", campaign, "id"), "k",
								  MSG_SRC_CAMPAIGN);
	}
	ac->tpl = ctx;
	if (acp)
		*acp = ac;
	return ctx;
}

/* A template that is only its text (messages written without tags). */
static CcrmTemplate *
literal_template(const char *text, bool html)
{
	CcrmTemplate *tpl = palloc0(sizeof(CcrmTemplate));

	tpl->html = html;
	tpl->nparts = 1;
	tpl->parts = palloc0(sizeof(CcrmTemplatePart));
	tpl->parts[0].text = pstrdup(text);
	tpl->parts[0].len = strlen(text);
	tpl->parts[0].slot = -1;
	return tpl;
}

static char *
qcol(const char *alias, const char *column)
{
	return psprintf("%s.%s", alias, quote_identifier(column));
}

/*
 * A lead in the shape of ccrm.contact: what a lead has, NULL for the rest
 * (no account, no custom fields), for contact templates sent to leads.
 */
#define LEAD_AS_CONTACT \
	"(SELECT l.id, NULL::pg_catalog.int8 AS account_id, l.owner_id, l.firstname, l.lastname," \
	" NULL::pg_catalog.text AS title, l.email, l.phone, l.mobile, NULL::pg_catalog.text AS street," \
	" NULL::pg_catalog.text AS postal_code, NULL::pg_catalog.text AS city, NULL::pg_catalog.text AS country," \
	" NULL::pg_catalog.text AS timezone, l.email_opt_out, false AS sms_opt_out," \
	" NULL::pg_catalog.text AS description, '{}'::pg_catalog.jsonb AS attrs, l.created_at, l.updated_at" \
	" FROM ccrm.lead l)"

/* The record query: links, address, and the row values of the templates. */
static char *
record_query(MsgSource *src)
{
	CcrmEntity *ent = src->entity;
	CcrmActivityContext *ac = src->ac;
	bool		sms = src->medium && strcmp(src->medium, "sms") == 0;
	const char *contact = strcmp(ent->name, "contact") == 0 ? "e"
		: (!ent->builtin && ent->contact_column) ? "c" : NULL;
	const char *account = strcmp(ent->name, "account") == 0 ? "e"
		: (ent->account_column || contact) ? "a" : NULL;
	bool		lead = strcmp(ent->name, "lead") == 0;
	const char *owner = ent->owner_column ? qcol("e", ent->owner_column)
		: ac->contact_owner ? ac->contact_owner : ac->account_owner;
	const char *user = src->recipient == MSG_TO_USER ? "$2" : owner ? owner : "NULL::pg_catalog.int8";
	const char *contact_id = "NULL::pg_catalog.int8";
	const char *lead_id = "NULL::pg_catalog.int8";
	const char *user_id = "NULL::pg_catalog.int8";
	const char *address = "NULL::pg_catalog.text";
	const char *opt_out = "false";
	const char *tz = "NULL::pg_catalog.text";
	const char *country = "NULL::pg_catalog.text";
	StringInfoData sql;
	ListCell   *lc;

	if (src->recipient == MSG_TO_RECORD)
	{
		if (contact && src->lead_as_contact)
		{
			lead_id = "e.id";
			address = qcol(contact, sms ? "mobile" : "email");
			opt_out = sms ? "false" : "e.email_opt_out";
		}
		else if (contact)
		{
			contact_id = ac->contact_id;
			address = qcol(contact, sms ? "mobile" : "email");
			opt_out = qcol(contact, sms ? "sms_opt_out" : "email_opt_out");
			tz = qcol(contact, "timezone");
			country = qcol(contact, "country");
		}
		else if (lead)
		{
			lead_id = "e.id";
			address = qcol("e", sms ? "mobile" : "email");
			opt_out = sms ? "false" : "e.email_opt_out";
		}
		else if (account)
		{
			address = qcol(account, sms ? "phone" : "email");
			country = qcol(account, "country");
		}
		else if (src->medium)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("records of %s have no contact, lead or account to send to", ent->name),
					 errhint("Register the entity with a contact_column or account_column, or send to a user.")));
	}
	else
	{
		if (src->recipient == MSG_TO_OWNER && owner == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("records of %s have no owner to send to", ent->name),
					 errhint("Register the entity with an owner_column, or send to a given user.")));
		user_id = "u.id";
		address = sms ? "u.mobile" : "u.email";
		tz = "u.timezone";
	}

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s, %s, %s, %s, (%s)::pg_catalog.text, COALESCE((%s)::pg_catalog.bool, false),"
					 " (%s)::pg_catalog.text, (%s)::pg_catalog.text",
					 ac->key, contact_id, lead_id, user_id, address, opt_out, tz, country);
	foreach(lc, ac->tpl->slots)
	{
		CcrmTemplateSlot *slot = lfirst(lc);

		if (slot->source->group == MSG_SRC_ROW)
			appendStringInfo(&sql, ", %s", CcrmTemplateSlotSql(slot));
	}
	appendStringInfo(&sql,
					 " FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[])) AS r(id)"
					 " JOIN %s e ON e.%s OPERATOR(pg_catalog.=) r.id%s"
					 " LEFT JOIN ccrm.crm_user u ON u.id OPERATOR(pg_catalog.=) %s",
					 src->lead_as_contact ? LEAD_AS_CONTACT : ent->qualname, quote_identifier(ent->key_column), ac->joins, user);
	return sql.data;
}

/*
 * Prepare messages of an entity: parse the texts (or take them literally),
 * build the record query and read the sender.  The caller has SPI
 * connected, a safe search_path and the configured time zone.
 */
static MsgSource *
source_create(CcrmEntity *ent, const char *subject, const char *body, const char *html,
			  bool literal, const char *medium, MsgRecipient recipient, int64 user_id,
			  bool has_sender, int64 sender_id, bool lead_as_contact)
{
	MsgSource  *src = palloc0(sizeof(MsgSource));
	CcrmTemplateContext *ctx = NULL;
	int			nslots;

	src->entity = ent;
	src->medium = medium;
	src->lead_as_contact = lead_as_contact;
	src->recipient = recipient;
	src->user_id = user_id;
	src->has_sender = has_sender;
	src->sender_id = sender_id;
	if (ent)
		ctx = MsgTemplateContext(ent, &src->ac);
	if (literal || ctx == NULL)
	{
		src->subject = subject ? literal_template(subject, false) : NULL;
		src->body = body ? literal_template(body, false) : NULL;
		src->html = html ? literal_template(html, true) : NULL;
	}
	else
	{
		src->subject = subject ? CcrmTemplateParse(ctx, subject, false, "subject") : NULL;
		src->body = body ? CcrmTemplateParse(ctx, body, false, "body") : NULL;
		src->html = html ? CcrmTemplateParse(ctx, html, true, "html_body") : NULL;
	}
	nslots = ctx ? list_length(ctx->slots) : 0;
	src->sender_values = palloc0(sizeof(char *) * (nslots + 1));
	if (ent)
	{
		src->row_sql = record_query(src);
		if (has_sender)
			CcrmActivityFetchSlots(src->ac, MSG_SRC_SENDER,
							   "ccrm.crm_user s WHERE s.id OPERATOR(pg_catalog.=) $1",
							   INT8OID, Int64GetDatum(sender_id), src->sender_values,
							   GetMemoryChunkContext(src->sender_values));
	}
	return src;
}

MsgSource *
MsgSourceCreate(CcrmEntity *ent, const char *subject, const char *body, const char *html,
				bool literal, const char *medium, MsgRecipient recipient, int64 user_id,
				bool has_sender, int64 sender_id)
{
	return source_create(ent, subject, body, html, literal, medium, recipient, user_id,
						 has_sender, sender_id, false);
}

MsgSource *
MsgSourceCreateForLeads(CcrmEntity *contact, const char *subject, const char *body, const char *html,
						bool has_sender, int64 sender_id)
{
	Assert(strcmp(contact->name, "contact") == 0);
	return source_create(contact, subject, body, html, false, "email", MSG_TO_RECORD, 0,
						 has_sender, sender_id, true);
}

void
MsgSourceSetCampaign(MsgSource *src, int64 campaign_id)
{
	CcrmActivityFetchSlots(src->ac, MSG_SRC_CAMPAIGN,
						   "ccrm.campaign k WHERE k.id OPERATOR(pg_catalog.=) $1",
						   INT8OID, Int64GetDatum(campaign_id), src->sender_values,
						   GetMemoryChunkContext(src->sender_values));
}

static char *
render(const CcrmTemplate *tpl, char **values, StringInfo buf)
{
	if (tpl == NULL)
		return NULL;
	resetStringInfo(buf);
	CcrmTemplateRender(tpl, values, buf);
	return pstrdup(buf->data);
}

/*
 * Render the messages for records (an int8[]): emit(row) for each record
 * found, flush() after each batch; rows live until flush returns.
 */
void
MsgRenderRecords(MsgSource *src, ArrayType *record_ids, MsgRowCallback emit, MsgFlushCallback flush,
				 void *arg)
{
	int			nslots = list_length(src->ac->tpl->slots);
	char	  **values = palloc0(sizeof(char *) * (nslots + 1));
	Oid			types[2] = {INT8ARRAYOID, INT8OID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	Portal		portal;
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "ccrm message batch",
													ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	StringInfoData buf;

	args[0] = PointerGetDatum(record_ids);
	args[1] = Int64GetDatum(src->user_id);
	if (src->recipient != MSG_TO_USER)
		nulls[1] = 'n';
	portal = SPI_cursor_open_with_args(NULL, src->row_sql, 2, types, args, nulls, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RENDER_BATCH);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		initStringInfo(&buf);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MsgRow		row;
			bool		isnull;
			int			col = COL_FIRST_SLOT;
			ListCell   *lc;

			memset(&row, 0, sizeof(row));
			row.record_id = DatumGetInt64(SPI_getbinval(tup, desc, COL_KEY, &isnull));
			row.contact_id = DatumGetInt64(SPI_getbinval(tup, desc, COL_CONTACT, &row.contact_null));
			row.lead_id = DatumGetInt64(SPI_getbinval(tup, desc, COL_LEAD, &row.lead_null));
			row.user_id = DatumGetInt64(SPI_getbinval(tup, desc, COL_USER, &row.user_null));
			row.address = SPI_getvalue(tup, desc, COL_ADDRESS);
			row.opted_out = DatumGetBool(SPI_getbinval(tup, desc, COL_OPT_OUT, &isnull));
			row.time_zone = SPI_getvalue(tup, desc, COL_TZ);
			row.country = SPI_getvalue(tup, desc, COL_COUNTRY);
			if (src->medium == NULL)
				row.address_field = NULL;
			else if (!row.user_null)
				row.address_field = strcmp(src->medium, "sms") == 0 ? "mobile" : "email";
			else if (!row.contact_null || !row.lead_null)
				row.address_field = strcmp(src->medium, "sms") == 0 ? "mobile" : "email";
			foreach(lc, src->ac->tpl->slots)
			{
				CcrmTemplateSlot *slot = lfirst(lc);

				values[slot->index] = slot->source->group == MSG_SRC_ROW
					? SPI_getvalue(tup, desc, col++) : src->sender_values[slot->index];
			}
			row.subject = render(src->subject, values, &buf);
			row.body = render(src->body, values, &buf);
			row.html = render(src->html, values, &buf);
			emit(&row, arg);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		flush(arg);
		MemoryContextReset(batch_cxt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
}

/* A message without a record: only the literal texts. */
void
MsgRenderLiteral(MsgSource *src, MsgRow *row)
{
	StringInfoData buf;

	memset(row, 0, sizeof(*row));
	row->contact_null = row->lead_null = row->user_null = true;
	initStringInfo(&buf);
	row->subject = render(src->subject, src->sender_values, &buf);
	row->body = render(src->body, src->sender_values, &buf);
	row->html = render(src->html, src->sender_values, &buf);
}

typedef struct RenderOne
{
	bool		found;
	MsgRow		row;
	MemoryContext cxt;
} RenderOne;

static void
keep_row(MsgRow *row, void *arg)
{
	RenderOne  *one = arg;
	MemoryContext old = MemoryContextSwitchTo(one->cxt);

	one->found = true;
	one->row.subject = row->subject ? pstrdup(row->subject) : NULL;
	one->row.body = row->body ? pstrdup(row->body) : NULL;
	one->row.html = row->html ? pstrdup(row->html) : NULL;
	MemoryContextSwitchTo(old);
}

static void
no_flush(void *arg pg_attribute_unused())
{
}

/*
 * ccrm.render_message(template text, entity text, record_id bigint,
 *   user_id bigint DEFAULT NULL, sender_id bigint DEFAULT NULL)
 *   -> (kind, subject, body, html_body, encoding, segments)
 */
Datum
ccrm_render_message(PG_FUNCTION_ARGS)
{
	MsgTemplate *t;
	CcrmEntity *ent;
	MsgSource  *src;
	RenderOne	one;
	int			nestlevel;
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	Datum		ids;
	int64		record_id;
	MemoryContext cxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("template and record_id must not be null")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ccrm.render_message must return a record");
	record_id = PG_GETARG_INT64(2);
	t = MsgTemplateLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (!PG_ARGISNULL(1) && strcmp(text_to_cstring(PG_GETARG_TEXT_PP(1)), t->entity) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("message template \"%s\" is for records of %s, not %s", t->name, t->entity,
						text_to_cstring(PG_GETARG_TEXT_PP(1))),
				 errhint("Pass entity => '%s', or NULL.", t->entity)));
	ent = CcrmEntityLookup(t->entity, false);

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	src = MsgSourceCreate(ent, t->subject, t->body, t->html_body, false, NULL,
						  PG_ARGISNULL(3) ? MSG_TO_RECORD : MSG_TO_USER,
						  PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3),
						  !PG_ARGISNULL(4) || t->has_sender,
						  !PG_ARGISNULL(4) ? PG_GETARG_INT64(4) : t->sender_id);
	memset(&one, 0, sizeof(one));
	one.cxt = cxt;
	{
		Datum		id = Int64GetDatum(record_id);

		ids = PointerGetDatum(construct_array(&id, 1, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	MsgRenderRecords(src, DatumGetArrayTypeP(ids), keep_row, no_flush, &one);
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	if (!one.found)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s " INT64_FORMAT " does not exist", ent->name, record_id)));

	values[0] = CStringGetTextDatum(t->kind);
	nulls[1] = one.row.subject == NULL;
	if (one.row.subject)
		values[1] = CStringGetTextDatum(one.row.subject);
	nulls[2] = one.row.body == NULL;
	if (one.row.body)
		values[2] = CStringGetTextDatum(one.row.body);
	nulls[3] = one.row.html == NULL;
	if (one.row.html)
		values[3] = CStringGetTextDatum(one.row.html);
	if (strcmp(t->kind, "sms") == 0 && one.row.body)
	{
		SmsInfo		info;

		SmsMeasure(one.row.body, &info);
		values[4] = CStringGetTextDatum(info.gsm7 ? "gsm7" : "ucs2");
		values[5] = Int32GetDatum(info.segments);
	}
	else
		nulls[4] = nulls[5] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
