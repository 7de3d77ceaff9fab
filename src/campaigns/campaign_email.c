/*-------------------------------------------------------------------------
 *
 * campaign_email.c
 *	  Join emails of campaigns: members added to an active campaign from the
 *	  moment its email template was set get that email through the outbox,
 *	  once per address.
 *
 *	  ccrm.campaign_insert (the SQL that adds members) marks the new members
 *	  it owes an email 'pending' (or 'campaign ended' when they join after
 *	  the estimated end date) and calls ccrm.campaign_send_join_emails,
 *	  which, under the campaign's lock the caller already holds:
 *	  1. marks the pending members that get nothing: 'opted out', 'no
 *		 address', and 'same address' for all but the first (added first,
 *		 then contacts before leads, then the lowest id) of the pending
 *		 members sharing an address (trimmed, lower-case);
 *	  2. renders the template for the rest and enqueues it, confined to the
 *		 campaign's owner (run_as_owner.c): the template, the records it
 *		 reads and the sender it may send as are the owner's, whoever adds
 *		 the members.  Contacts are rendered as the contact template says;
 *		 leads through the same template in the shape of a contact
 *		 (message_render.c), so lead fields resolve and a lead's account
 *		 tags fall back.  $campaign-…$ tags come from the campaign;
 *	  3. records each member's outcome: 'queued' with message_id and
 *		 emailed_at, 'already emailed' when the address had its email
 *		 from this campaign before (a member removed and added again, or
 *		 a member with the same address earlier), 'not sent' when the
 *		 outbox suppressed it (an invalid address).
 *
 *	  Exactly once: the idempotency key is "campaign:<id>:<address>", so the
 *	  outbox holds one message per campaign and address whatever the
 *	  retries, removals or concurrent adds (the campaign lock orders adds;
 *	  the unique key settles the rest).  Each step is a fixed number of
 *	  set-based statements; rendering is batched by the outbox.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "spi_debug.h"
#include "entity.h"
#include "messaging.h"
#include "run_as_owner.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_campaign_send_join_emails);

/* What a confined send needs and gives back. */
typedef struct JoinSend
{
	int64		campaign_id;
	int64		template_id;
	TimestampTz at;
	Datum		contact_ids;	/* int8[] of the members to email */
	Datum		lead_ids;
	List	   *contacts;		/* MsgEnqueued * */
	List	   *leads;
} JoinSend;

static void
exec(const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expect)
		elog(ERROR, "campaign email statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* Render and enqueue as the campaign's owner (the caller confines it). */
static Datum
send_confined(void *arg)
{
	JoinSend   *s = arg;
	Oid			type = INT8OID;
	Datum		value = Int64GetDatum(s->template_id);
	MsgTemplate *t;
	MsgEnqueue	req;
	CcrmEntity *contact = CcrmEntityLookup("contact", false);
	int			nestlevel;

	exec("SELECT name FROM ccrm.message_template WHERE id OPERATOR(pg_catalog.=) $1", 1, &type, &value,
		 SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the campaign's owner cannot use its email template"),
				 errhint("Set a template the campaign's owner may use: ccrm.alter_campaign(campaign, email_template => ...).")));
	t = MsgTemplateLookup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	if (strcmp(t->kind, "email") != 0 || strcmp(t->entity, "contact") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("message template \"%s\" is not an email template for contacts", t->name),
				 errhint("Campaigns send email templates of entity contact (leads get them too).")));

	memset(&req, 0, sizeof(req));
	req.channel = MsgChannelLookup(t->channel, "email");
	req.reply_to = t->reply_to;
	req.origin = "campaign";
	req.has_origin_id = true;
	req.origin_id = s->campaign_id;
	req.has_template = true;
	req.template_id = t->id;
	req.key_prefix = psprintf("campaign:" INT64_FORMAT ":", s->campaign_id);
	req.key_by_address = true;
	req.not_before = DT_NOBEGIN;
	req.at = s->at;

	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	req.source = MsgSourceCreate(contact, t->subject, t->body, t->html_body, false, "email",
								 MSG_TO_RECORD, 0, t->has_sender, t->sender_id);
	MsgSourceSetCampaign(req.source, s->campaign_id);
	s->contacts = MsgEnqueueMessages(&req, DatumGetArrayTypeP(s->contact_ids));
	req.source = MsgSourceCreateForLeads(contact, t->subject, t->body, t->html_body,
										 t->has_sender, t->sender_id);
	MsgSourceSetCampaign(req.source, s->campaign_id);
	s->leads = MsgEnqueueMessages(&req, DatumGetArrayTypeP(s->lead_ids));
	CcrmPopSearchPath(nestlevel);
	return (Datum) 0;
}

/* Record the outcomes of one kind of member (column "contact_id" or "lead_id"). */
static void
record_outcomes(int64 campaign_id, TimestampTz at, List *sent, const char *column)
{
	int			n = list_length(sent);
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *mids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *states = palloc(sizeof(Datum) * Max(n, 1));
	Oid			types[5] = {INT8OID, TIMESTAMPTZOID, INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID};
	Datum		values[5];
	ListCell   *lc;
	int			k = 0;

	if (n == 0)
		return;
	foreach(lc, sent)
	{
		MsgEnqueued *e = lfirst(lc);

		if (e->record_null || !e->created)
			continue;		/* found by its key: see "already emailed" */
		ids[k] = Int64GetDatum(e->record_id);
		mids[k] = Int64GetDatum(e->id);
		states[k] = CStringGetTextDatum(strcmp(e->status, "queued") == 0 ? "queued" : "not sent");
		k++;
	}
	values[0] = Int64GetDatum(campaign_id);
	values[1] = TimestampTzGetDatum(at);
	values[2] = PointerGetDatum(construct_array(ids, k, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(mids, k, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_array(states, k, TEXTOID, -1, false, TYPALIGN_INT));
	exec(psprintf("UPDATE ccrm.campaign_member m SET email_status = x.st, message_id = x.mid,"
				  "       emailed_at = CASE WHEN x.st OPERATOR(pg_catalog.=) 'queued' THEN $2 END"
				  "  FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5))"
				  "       AS x(id, mid, st)"
				  " WHERE m.campaign_id OPERATOR(pg_catalog.=) $1 AND m.%s OPERATOR(pg_catalog.=) x.id"
				  "   AND m.email_status OPERATOR(pg_catalog.=) 'pending'", column),
		 5, types, values, SPI_OK_UPDATE);
}

/*
 * ccrm.campaign_send_join_emails(campaign_id bigint, at timestamptz) → bigint:
 * the join emails of the campaign's pending members; returns how many
 * were queued.  Called by ccrm.campaign_insert under the campaign's lock.
 */
Datum
ccrm_campaign_send_join_emails(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2];
	JoinSend	s;
	Oid			owner;
	bool		isnull;
	int64		queued = 0;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("campaign_id and at must not be null")));
	memset(&s, 0, sizeof(s));
	s.campaign_id = PG_GETARG_INT64(0);
	s.at = PG_GETARG_TIMESTAMPTZ(1);
	values[0] = Int64GetDatum(s.campaign_id);
	values[1] = TimestampTzGetDatum(s.at);

	CcrmSPIConnect();
	exec("SELECT owner::pg_catalog.oid, email_template_id FROM ccrm.campaign"
		 " WHERE id OPERATOR(pg_catalog.=) $1 AND active AND email_template_id IS NOT NULL FOR NO KEY UPDATE",
		 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		SPI_finish();
		PG_RETURN_INT64(0);
	}
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	s.template_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

	/* 1. who gets nothing, and why */
	exec("WITH p AS MATERIALIZED ("
		 "  SELECT m.ctid AS row, m.added_at, m.contact_id, m.lead_id,"
		 "         ccrm.campaign_email_key(COALESCE(t.email, l.email)) AS k,"
		 "         COALESCE(t.email_opt_out, l.email_opt_out, false) AS opt_out"
		 "    FROM ccrm.campaign_member m"
		 "    LEFT JOIN ccrm.contact t ON t.id OPERATOR(pg_catalog.=) m.contact_id"
		 "    LEFT JOIN ccrm.lead l ON l.id OPERATOR(pg_catalog.=) m.lead_id"
		 "   WHERE m.campaign_id OPERATOR(pg_catalog.=) $1 AND m.email_status OPERATOR(pg_catalog.=) 'pending'),"
		 " r AS (SELECT p.row, CASE WHEN p.opt_out THEN 'opted out' WHEN p.k IS NULL THEN 'no address'"
		 "              WHEN pg_catalog.row_number() OVER (PARTITION BY p.k, p.opt_out"
		 "                   ORDER BY p.added_at, p.contact_id IS NULL, COALESCE(p.contact_id, p.lead_id))"
		 "                   OPERATOR(pg_catalog.>) 1 THEN 'same address' END AS why FROM p)"
		 " UPDATE ccrm.campaign_member m SET email_status = r.why FROM r"
		 "  WHERE m.ctid OPERATOR(pg_catalog.=) r.row AND r.why IS NOT NULL",
		 1, types, values, SPI_OK_UPDATE);

	/* 2. the rest: render and enqueue as the owner */
	exec("SELECT ARRAY(SELECT m.contact_id FROM ccrm.campaign_member m"
		 "              WHERE m.campaign_id OPERATOR(pg_catalog.=) $1 AND m.contact_id IS NOT NULL"
		 "                AND m.email_status OPERATOR(pg_catalog.=) 'pending' ORDER BY m.contact_id),"
		 "       ARRAY(SELECT m.lead_id FROM ccrm.campaign_member m"
		 "              WHERE m.campaign_id OPERATOR(pg_catalog.=) $1 AND m.lead_id IS NOT NULL"
		 "                AND m.email_status OPERATOR(pg_catalog.=) 'pending' ORDER BY m.lead_id)",
		 1, types, values, SPI_OK_SELECT);
	s.contact_ids = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull), false, -1);
	s.lead_ids = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull), false, -1);
	(void) CcrmRunConfined(owner, send_confined, &s);

	/* 3. what became of each */
	record_outcomes(s.campaign_id, s.at, s.contacts, "contact_id");
	record_outcomes(s.campaign_id, s.at, s.leads, "lead_id");
	/*
	 * addresses this campaign had emailed before: the message found by its
	 * key (the caller may read it: it may use the campaign's owner)
	 */
	values[1] = CStringGetTextDatum(psprintf("campaign:" INT64_FORMAT ":", s.campaign_id));
	types[1] = TEXTOID;
	exec("WITH p AS MATERIALIZED ("
		 "  SELECT m.ctid AS row, $2 OPERATOR(pg_catalog.||) ccrm.campaign_email_key(COALESCE(t.email, l.email)) AS key"
		 "    FROM ccrm.campaign_member m"
		 "    LEFT JOIN ccrm.contact t ON t.id OPERATOR(pg_catalog.=) m.contact_id"
		 "    LEFT JOIN ccrm.lead l ON l.id OPERATOR(pg_catalog.=) m.lead_id"
		 "   WHERE m.campaign_id OPERATOR(pg_catalog.=) $1 AND m.email_status OPERATOR(pg_catalog.=) 'pending')"
		 " UPDATE ccrm.campaign_member m SET email_status = 'already emailed', message_id = o.id"
		 "   FROM p JOIN ccrm.outbox o ON o.idempotency_key OPERATOR(pg_catalog.=) p.key"
		 "  WHERE m.ctid OPERATOR(pg_catalog.=) p.row",
		 2, types, values, SPI_OK_UPDATE);
	/* members the owner could not read (or gone since) */
	exec("UPDATE ccrm.campaign_member m SET email_status = 'not sent'"
		 " WHERE m.campaign_id OPERATOR(pg_catalog.=) $1 AND m.email_status OPERATOR(pg_catalog.=) 'pending'",
		 1, types, values, SPI_OK_UPDATE);
	foreach(lc, s.contacts)
		queued += ((MsgEnqueued *) lfirst(lc))->created && strcmp(((MsgEnqueued *) lfirst(lc))->status, "queued") == 0;
	foreach(lc, s.leads)
		queued += ((MsgEnqueued *) lfirst(lc))->created && strcmp(((MsgEnqueued *) lfirst(lc))->status, "queued") == 0;
	SPI_finish();
	PG_RETURN_INT64(queued);
}
