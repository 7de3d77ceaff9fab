/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The outbox (ccrm.outbox): messages waiting to be sent, and the fenced
 *	  claims by which senders take them.
 *
 *	  Lifecycle of a row:
 *		queued --claim--> sending --mark_sent--> sent
 *		                          --mark_failed(retry)--> queued (later: backoff)
 *		                          --mark_failed(no retry)--> failed
 *		                          --mark_failed, attempts used up--> dead
 *		                          --lease expires--> claimable again (a new token)
 *		enqueue or claim: opted out / no address / invalid address --> suppressed
 *		SMS in quiet hours: defer (available_at = their end) or drop --> dropped
 *	  sent, failed, dead, dropped and suppressed are final; each says why.
 *
 *	  Invariants:
 *	  - Enqueue runs in the caller's transaction; the idempotency key is
 *	    unique, so the same key twice is one message (ON CONFLICT DO
 *	    NOTHING: the first one's id comes back).  Keys outlive retention:
 *	    a purge empties a finished row's texts but keeps the row, so a
 *	    retried step or re-added member never sends again.
 *	  - A claim takes rows with FOR UPDATE SKIP LOCKED, so two claimers
 *	    never get the same message; it stamps them with a new claim token
 *	    and moves available_at to the end of the lease.  A lease that ends
 *	    makes the row claimable again under a new token; mark_sent and
 *	    mark_failed change a row only while it is "sending" with the token
 *	    they pass, so a sender whose lease expired can never complete a
 *	    message someone else has taken since.  Repeating mark_sent with
 *	    the token that completed it changes nothing and says so (false).
 *	  - Claims re-check what may have changed since enqueue: opt-outs, an
 *	    emptied address (suppressed), quiet hours (deferred or dropped).
 *	  - Queue order is (available_at, id) over a partial index of the rows
 *	    that are queued or sending.  Rows taken leave dead index entries at
 *	    the front until vacuum; a claim that always scanned from the front
 *	    would walk them all (quadratic).  So each backend remembers, per
 *	    channel, where its last claim ended (a high-water mark) and starts
 *	    there; it scans from the front when that finds too few rows, and at
 *	    least once a second, so retries, expired leases and rows whose
 *	    claim rolled back are always found again.  The mark is a hint
 *	    only: correctness never depends on it.
 *	  - At most one NOTIFY ccrm_outbox per transaction that queued
 *	    something (ccrm.outbox_notify turns it off); senders also poll.
 *	  - Rows are written as the catalog's owner: callers may read their own
 *	    rows (row level security) but not write the table.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "instant.h"
#include "execute_as_owner.h"
#include "spi_debug.h"
#include "messaging.h"
#include "delivery.h"
#include "privilege.h"
#include "setting.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "catalog/pg_collation.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(ccrm_enqueue_message);
PG_FUNCTION_INFO_V1(ccrm_enqueue_template);
PG_FUNCTION_INFO_V1(ccrm_claim_messages);
PG_FUNCTION_INFO_V1(ccrm_mark_sent);
PG_FUNCTION_INFO_V1(ccrm_mark_sent_many);
PG_FUNCTION_INFO_V1(ccrm_mark_failed);
PG_FUNCTION_INFO_V1(ccrm_purge_outbox);

/*---- GUC variables ----*/
static bool ccrm_outbox_notify = true;
static int	ccrm_outbox_retention = 30 * SECS_PER_DAY;
static int	ccrm_outbox_max_attempts = 5;
static int	ccrm_outbox_retry_delay = 60;

#define MAX_CLAIM		10000
#define MAX_BACKOFF		SECS_PER_DAY
#define FULL_SCAN_MS	1000
#define NOTIFY_CHANNEL	"ccrm_outbox"

void
MsgOutboxInit(void)
{
	DefineCustomBoolVariable("ccrm.outbox_notify",
							 "Send NOTIFY ccrm_outbox when a transaction queues messages.",
							 "At most one per transaction.  Senders must also poll.",
							 &ccrm_outbox_notify, true, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.outbox_retention",
							"How long finished messages keep their texts in ccrm.outbox (0: for ever).",
							"The scheduler empties older rows hourly; their idempotency keys stay.",
							&ccrm_outbox_retention, 30 * SECS_PER_DAY, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.outbox_max_attempts",
							"Claims of a message after which a failure or an expired lease makes it dead.",
							NULL, &ccrm_outbox_max_attempts, 5, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.outbox_retry_delay",
							"Wait before the first retry of a failed message; it doubles with every attempt (at most a day).",
							NULL, &ccrm_outbox_retry_delay, 60, 0, SECS_PER_DAY,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	MsgRightsInit();
}

/* ----------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------- */

/* Run a prepared plan (or SQL) as the catalog's owner (execute_as_owner.c); SPI connected. */
static int
execute_as_owner(SPIPlanPtr plan, const char *sql, int nargs, Oid *types, Datum *values,
				 const char *nulls)
{
	return plan ? CcrmExecutePlanAsOwner(plan, values, nulls, 0)
		: CcrmExecuteAsOwner(sql, nargs, types, values, nulls, 0);
}

/*
 * A plan prepared once per backend as the catalog's owner and kept
 * (SPI_keepplan); the plan cache re-plans it when the tables change, with
 * the search_path it was made under.  SPI connected.
 */
static SPIPlanPtr
kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = CcrmPrepareAsOwner(sql, nargs, types);

		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep an outbox plan");
		*slot = plan;
	}
	return *slot;
}

static Datum
column(Datum *values, bool *nulls, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type, len, byval, align));
}

static char *
text_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static void
check_origin(const char *origin)
{
	if (strcmp(origin, "manual") != 0 && strcmp(origin, "campaign") != 0 && strcmp(origin, "sequence") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source \"%s\" is not known", origin),
				 errhint("A message comes from manual, campaign or sequence.")));
}

/* At most one NOTIFY per transaction. */
static void
notify_senders(void)
{
	static LocalTransactionId notified = InvalidLocalTransactionId;

	if (!ccrm_outbox_notify || notified == MyProc->lxid)
		return;
	Async_Notify(NOTIFY_CHANNEL, NULL);
	notified = MyProc->lxid;
}

/* ----------------------------------------------------------------
 * Enqueue
 * ---------------------------------------------------------------- */

#define ENQ_COLS 18
enum
{
	E_STATUS, E_AVAILABLE, E_RECIPIENT, E_RECORD, E_CONTACT, E_LEAD, E_USER, E_FIELD, E_TZ,
	E_COUNTRY, E_SUBJECT, E_BODY, E_HTML, E_ENCODING, E_SEGMENTS, E_KEY, E_REASON, E_FINISHED
};
static const Oid enq_types[ENQ_COLS] = {
	TEXTOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TIMESTAMPTZOID
};

typedef struct EnqBatch
{
	MsgEnqueue *req;
	MsgQuietHours *qh;
	char	   *phone_country;
	bool		sms;
	SPIPlanPtr	insert;
	int			n;
	int			cap;
	Datum	   *values[ENQ_COLS];
	bool	   *nulls[ENQ_COLS];
	int			nkeys;
	List	   *result;			/* MsgEnqueued *, in result_cxt */
	MemoryContext result_cxt;
	bool		queued;
} EnqBatch;

static void
set_col(EnqBatch *b, int col, Datum v, bool isnull)
{
	b->values[col][b->n] = v;
	b->nulls[col][b->n] = isnull;
}

static void
set_text(EnqBatch *b, int col, const char *s)
{
	set_col(b, col, s ? CStringGetTextDatum(s) : (Datum) 0, s == NULL);
}

static char *
trimmed(const char *s)
{
	const char *end;

	if (s == NULL)
		return NULL;
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		end--;
	return pnstrdup(s, end - s);
}

/* Decide a message's fate and add it to the batch. */
static void
enqueue_row(MsgRow *row, void *arg)
{
	EnqBatch   *b = arg;
	MsgEnqueue *req = b->req;
	const char *status = "queued";
	char	   *reason = NULL;
	char	   *recipient = trimmed(req->recipient ? req->recipient : row->address);
	const char *field = req->recipient ? NULL : row->address_field;
	const char *country = row->country && row->country[0] ? row->country : b->phone_country;
	TimestampTz available = Max(req->at, req->not_before);
	SmsInfo		info;
	char	   *key = NULL;

	if (b->n == b->cap)
	{
		b->cap *= 2;
		for (int c = 0; c < ENQ_COLS; c++)
		{
			b->values[c] = repalloc(b->values[c], sizeof(Datum) * b->cap);
			b->nulls[c] = repalloc(b->nulls[c], sizeof(bool) * b->cap);
		}
	}

	if (b->sms && row->body)
		SmsMeasure(row->body, &info);
	if (row->opted_out)
	{
		status = "suppressed";
		reason = b->sms ? "the recipient opted out of sms" : "the recipient opted out of email";
	}
	else if (recipient == NULL || recipient[0] == '\0')
	{
		status = "suppressed";
		reason = b->sms ? "the recipient has no mobile number" : "the recipient has no email address";
	}
	else if (!b->sms)
	{
		const char *why = AddressCheckEmail(recipient);

		if (why)
		{
			status = "suppressed";
			reason = psprintf("invalid email address \"%s\": %s", recipient, why);
		}
	}
	else
	{
		char	   *e164;
		const char *why = AddressNormalizePhone(recipient, country, &e164);

		if (why)
		{
			status = "suppressed";
			reason = psprintf("invalid phone number \"%s\": %s", recipient, why);
		}
		else
			recipient = e164;
	}
	if (strcmp(status, "queued") == 0 && (row->body == NULL || row->body[0] == '\0') &&
		(row->html == NULL || row->html[0] == '\0'))
	{
		status = "suppressed";
		reason = "the message is empty";
	}
	if (strcmp(status, "queued") == 0 && b->sms)
	{
		TimestampTz end;
		char	   *why;

		if (MsgQuietHoursCheck(b->qh, available, row->time_zone, country, &end, &why))
		{
			if (MsgQuietHoursDrop(b->qh))
			{
				status = "dropped";
				reason = why;
			}
			else
				available = end;
		}
	}
	if (req->key)
		key = (char *) req->key;
	else if (req->key_prefix && req->key_by_address)
		key = recipient && recipient[0]
			? psprintf("%s%s", req->key_prefix, str_tolower(recipient, strlen(recipient), DEFAULT_COLLATION_OID))
			: NULL;
	else if (req->key_prefix && req->source->entity)
		key = psprintf("%s" INT64_FORMAT, req->key_prefix, row->record_id);
	if (key)
		b->nkeys++;

	set_text(b, E_STATUS, status);
	set_col(b, E_AVAILABLE, TimestampTzGetDatum(available), false);
	set_text(b, E_RECIPIENT, recipient);
	set_col(b, E_RECORD, Int64GetDatum(row->record_id), req->source->entity == NULL);
	set_col(b, E_CONTACT, Int64GetDatum(row->contact_id), row->contact_null);
	set_col(b, E_LEAD, Int64GetDatum(row->lead_id), row->lead_null);
	set_col(b, E_USER, Int64GetDatum(row->user_id), row->user_null);
	set_text(b, E_FIELD, field);
	set_text(b, E_TZ, row->time_zone && row->time_zone[0] ? row->time_zone : NULL);
	set_text(b, E_COUNTRY, country && country[0] ? country : NULL);
	set_text(b, E_SUBJECT, row->subject);
	set_text(b, E_BODY, row->body);
	set_text(b, E_HTML, row->html);
	set_text(b, E_ENCODING, b->sms && row->body ? (info.gsm7 ? "gsm7" : "ucs2") : NULL);
	set_col(b, E_SEGMENTS, Int32GetDatum(b->sms && row->body ? info.segments : 0), !(b->sms && row->body));
	set_text(b, E_KEY, key);
	set_text(b, E_REASON, reason);
	set_col(b, E_FINISHED, TimestampTzGetDatum(req->at), strcmp(status, "queued") == 0);
	if (strcmp(status, "queued") == 0)
		b->queued = true;
	b->n++;
}

static void
add_result(EnqBatch *b, HeapTuple tup, TupleDesc desc, bool created)
{
	MemoryContext old = MemoryContextSwitchTo(b->result_cxt);
	MsgEnqueued *e = palloc0(sizeof(MsgEnqueued));
	bool		isnull;

	e->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	e->record_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &e->record_null));
	e->status = pstrdup(SPI_getvalue(tup, desc, 3));
	e->created = created;
	b->result = lappend(b->result, e);
	MemoryContextSwitchTo(old);
}

/* Insert the batch; find the messages that existed already by their key. */
static void
enqueue_flush(void *arg)
{
	EnqBatch   *b = arg;
	MsgEnqueue *req = b->req;
	Datum		args[8 + ENQ_COLS];
	char		nulls[8 + ENQ_COLS];
	uint64		ninserted;
	int			nkeys_inserted = 0;

	if (b->n == 0)
		return;
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(req->channel->id);
	if (req->source->entity)
		args[1] = CStringGetTextDatum(req->source->lead_as_contact ? "lead" : req->source->entity->name);
	else
		nulls[1] = 'n';
	args[2] = Int64GetDatum(req->source->sender_id);
	nulls[2] = req->source->has_sender ? ' ' : 'n';
	if (req->reply_to)
		args[3] = CStringGetTextDatum(req->reply_to);
	else
		nulls[3] = 'n';
	args[4] = Int64GetDatum(req->template_id);
	nulls[4] = req->has_template ? ' ' : 'n';
	args[5] = CStringGetTextDatum(req->origin);
	args[6] = Int64GetDatum(req->origin_id);
	nulls[6] = req->has_origin_id ? ' ' : 'n';
	args[7] = TimestampTzGetDatum(req->at);
	for (int c = 0; c < ENQ_COLS; c++)
		args[8 + c] = column(b->values[c], b->nulls[c], b->n, enq_types[c]);

	execute_as_owner(b->insert, NULL, 0, NULL, args, nulls);
	ninserted = SPI_processed;
	for (uint64 i = 0; i < ninserted; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];

		add_result(b, tup, SPI_tuptable->tupdesc, true);
		if (SPI_getvalue(tup, SPI_tuptable->tupdesc, 4))
			nkeys_inserted++;
	}
	SPI_freetuptable(SPI_tuptable);

	/* keys that were there already: the existing messages */
	if (nkeys_inserted < b->nkeys)
	{
		Oid			types[2] = {TEXTARRAYOID, INT8ARRAYOID};
		Datum		kargs[2];
		Datum	   *ids;
		bool	   *idnulls;
		int			k = 0;

		ids = palloc(sizeof(Datum) * Max(ninserted, 1));
		idnulls = palloc0(sizeof(bool) * Max(ninserted, 1));
		for (uint64 i = 0; i < ninserted; i++)
			ids[k++] = Int64GetDatum(((MsgEnqueued *) list_nth(b->result, list_length(b->result) - ninserted + i))->id);
		kargs[0] = column(b->values[E_KEY], b->nulls[E_KEY], b->n, TEXTOID);
		kargs[1] = column(ids, idnulls, k, INT8OID);
		execute_as_owner(NULL, "SELECT id, record_id, status FROM ccrm.outbox"
						 " WHERE idempotency_key OPERATOR(pg_catalog.=) ANY ($1)"
						 "   AND id OPERATOR(pg_catalog.<>) ALL ($2)",
						 2, types, kargs, NULL);
		for (uint64 i = 0; i < SPI_processed; i++)
			add_result(b, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, false);
		SPI_freetuptable(SPI_tuptable);
	}
	b->n = 0;
	b->nkeys = 0;
}

/*
 * Enqueue messages in the caller's transaction: one per record of
 * record_ids (NULL: one message without a record, to req->recipient).
 * SPI connected, safe search_path.  Returns MsgEnqueued * in the caller's
 * memory context.
 */
List *
MsgEnqueueMessages(MsgEnqueue *req, ArrayType *record_ids)
{
	EnqBatch   *b = palloc0(sizeof(EnqBatch));
	Oid			types[8 + ENQ_COLS] = {INT4OID, TEXTOID, INT8OID, TEXTOID, INT8OID, TEXTOID, INT8OID, TIMESTAMPTZOID};

	if (!req->channel->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("channel \"%s\" is disabled", req->channel->name),
				 errhint("Choose another channel, or have an admin enable it: "
						 "SELECT ccrm.alter_channel('%s', enabled => true).", req->channel->name)));
	if (req->source->has_sender)
		CcrmCheckMayActAs(req->source->sender_id, GetUserId(), "A message with a sender");
	check_origin(req->origin);
	if (req->reply_to && AddressCheckEmail(req->reply_to))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reply_to \"%s\" is not a valid email address: %s", req->reply_to,
						AddressCheckEmail(req->reply_to))));

	b->req = req;
	b->result_cxt = CurrentMemoryContext;
	b->sms = strcmp(req->channel->medium, "sms") == 0;
	if (b->sms)
	{
		b->qh = MsgQuietHoursLoad();
		b->phone_country = CcrmSettingGet("phone_country");
	}
	b->cap = 64;
	for (int c = 0; c < ENQ_COLS; c++)
	{
		b->values[c] = palloc(sizeof(Datum) * b->cap);
		b->nulls[c] = palloc(sizeof(bool) * b->cap);
		types[8 + c] = get_array_type(enq_types[c]);
	}
	b->insert = CcrmPrepareAsOwner(psprintf(
		"INSERT INTO ccrm.outbox AS o (channel_id, status, available_at, recipient, entity, record_id,"
		"       contact_id, lead_id, user_id, address_field, time_zone, country, sender_id, reply_to,"
		"       subject, body, html_body, encoding, segments, template_id, source, source_id,"
		"       idempotency_key, reason, owner, created_at, finished_at)"
		" SELECT $1, x.st, x.av, x.rc, $2, x.rid, x.cid, x.lid, x.uid, x.af, x.tz, x.co, $3, $4,"
		"        x.su, x.bo, x.ht, x.en, x.se, $5, $6, $7, x.k, x.re,"
		"        %u::pg_catalog.oid::pg_catalog.regrole, $8, x.fi"
		"   FROM ROWS FROM (pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11),"
		"        pg_catalog.unnest($12), pg_catalog.unnest($13), pg_catalog.unnest($14), pg_catalog.unnest($15),"
		"        pg_catalog.unnest($16), pg_catalog.unnest($17), pg_catalog.unnest($18), pg_catalog.unnest($19),"
		"        pg_catalog.unnest($20), pg_catalog.unnest($21), pg_catalog.unnest($22), pg_catalog.unnest($23),"
		"        pg_catalog.unnest($24), pg_catalog.unnest($25), pg_catalog.unnest($26))"
		"     AS x(st, av, rc, rid, cid, lid, uid, af, tz, co, su, bo, ht, en, se, k, re, fi)"
		" ON CONFLICT (idempotency_key) DO NOTHING"
		" RETURNING o.id, o.record_id, o.status, o.idempotency_key", GetUserId()),
		8 + ENQ_COLS, types);

	if (record_ids == NULL)
	{
		MsgRow		row;

		MsgRenderLiteral(req->source, &row);
		enqueue_row(&row, b);
		enqueue_flush(b);
	}
	else
		MsgRenderRecords(req->source, record_ids, enqueue_row, enqueue_flush, b);
	if (b->queued)
		notify_senders();
	return b->result;
}

/*
 * ccrm.enqueue_message(medium, recipient, body, subject, html_body, channel,
 *   entity, record_id, sender_id, reply_to, source, source_id,
 *   idempotency_key, not_before, at) -> the message's id
 */
Datum
ccrm_enqueue_message(PG_FUNCTION_ARGS)
{
	char	   *medium = text_arg(fcinfo, 0);
	char	   *recipient = text_arg(fcinfo, 1);
	char	   *body = text_arg(fcinfo, 2);
	char	   *subject = text_arg(fcinfo, 3);
	char	   *html = text_arg(fcinfo, 4);
	char	   *channel = text_arg(fcinfo, 5);
	char	   *entity = text_arg(fcinfo, 6);
	MsgEnqueue	req;
	CcrmEntity *ent = NULL;
	int64		record_id = 0;
	ArrayType  *ids = NULL;
	List	   *result;
	int			nestlevel;
	int64		id;

	memset(&req, 0, sizeof(req));
	req.at = CcrmInstantArg(fcinfo, 14);
	if (medium == NULL && channel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a message needs a medium or a channel"),
				 errhint("Pass medium => 'email' or 'sms' (its default channel), or channel => a channel's name.")));
	if (medium)
		MsgCheckMedium(medium, "medium");
	req.channel = MsgChannelLookup(channel, medium);
	medium = req.channel->medium;
	if (body == NULL && html == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a message needs a body")));
	if (strcmp(medium, "sms") == 0 && (subject || html || !PG_ARGISNULL(9)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an SMS has no subject, html_body or reply_to"),
				 errhint("An SMS is only its body.")));
	if (strcmp(medium, "email") == 0 && (subject == NULL || subject[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("an email needs a subject")));
	if ((entity == NULL) != PG_ARGISNULL(7))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("entity and record_id go together"),
				 errhint("Give both to send to (or about) a record, or neither with a recipient.")));
	if (entity)
	{
		ent = CcrmEntityLookup(entity, false);
		record_id = PG_GETARG_INT64(7);
	}
	else if (recipient == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a message without a record needs a recipient")));
	req.recipient = recipient;
	req.reply_to = text_arg(fcinfo, 9);
	req.origin = PG_ARGISNULL(10) ? "manual" : text_arg(fcinfo, 10);
	req.has_origin_id = !PG_ARGISNULL(11);
	req.origin_id = req.has_origin_id ? PG_GETARG_INT64(11) : 0;
	req.key = text_arg(fcinfo, 12);
	req.not_before = PG_ARGISNULL(13) ? DT_NOBEGIN : PG_GETARG_TIMESTAMPTZ(13);

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	req.source = MsgSourceCreate(ent, subject, body, html, true, medium, MSG_TO_RECORD, 0,
								 !PG_ARGISNULL(8), PG_ARGISNULL(8) ? 0 : PG_GETARG_INT64(8));
	if (ent)
	{
		Datum		d = Int64GetDatum(record_id);

		ids = construct_array(&d, 1, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	}
	result = MsgEnqueueMessages(&req, ids);
	/* the list lives in SPI's memory: take the id before SPI_finish */
	id = result != NIL ? ((MsgEnqueued *) linitial(result))->id : 0;
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	if (result == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s " INT64_FORMAT " does not exist", ent->name, record_id)));
	PG_RETURN_INT64(id);
}

/*
 * ccrm.enqueue_template(template, record_ids, channel, recipient, user_id,
 *   sender_id, source, source_id, key_prefix, not_before, at)
 *   -> table (record_id, message_id, status, created)
 */
Datum
ccrm_enqueue_template(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MsgTemplate *t;
	MsgEnqueue	req;
	CcrmEntity *ent;
	char	   *recipient;
	MsgRecipient to;
	List	   *result;
	ListCell   *lc;
	int			nestlevel;
	int64		sender_id;
	bool		has_sender;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("template and record_ids must not be null")));
	memset(&req, 0, sizeof(req));
	req.at = CcrmInstantArg(fcinfo, 10);
	t = MsgTemplateLookup(text_arg(fcinfo, 0));
	if (strcmp(t->kind, "task") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("message template \"%s\" is a task, not a message", t->name),
				 errhint("Task templates create activities; preview one with ccrm.render_message.")));
	recipient = PG_ARGISNULL(3) ? "record" : text_arg(fcinfo, 3);
	if (strcmp(recipient, "record") == 0)
		to = MSG_TO_RECORD;
	else if (strcmp(recipient, "owner") == 0)
		to = MSG_TO_OWNER;
	else if (strcmp(recipient, "user") == 0)
		to = MSG_TO_USER;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("recipient \"%s\" is not known", recipient),
				 errhint("Send to the record (its contact, lead or account), its owner, or a user (with user_id).")));
	if ((to == MSG_TO_USER) == PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("user_id goes with recipient => 'user', and only with it")));
	req.channel = MsgChannelLookup(PG_ARGISNULL(2) ? t->channel : text_arg(fcinfo, 2), t->kind);
	has_sender = !PG_ARGISNULL(5) || t->has_sender;
	sender_id = !PG_ARGISNULL(5) ? PG_GETARG_INT64(5) : t->sender_id;
	req.reply_to = t->reply_to;
	req.origin = PG_ARGISNULL(6) ? "manual" : text_arg(fcinfo, 6);
	req.has_origin_id = !PG_ARGISNULL(7);
	req.origin_id = req.has_origin_id ? PG_GETARG_INT64(7) : 0;
	req.key_prefix = text_arg(fcinfo, 8);
	req.not_before = PG_ARGISNULL(9) ? DT_NOBEGIN : PG_GETARG_TIMESTAMPTZ(9);
	req.has_template = true;
	req.template_id = t->id;
	ent = CcrmEntityLookup(t->entity, false);

	InitMaterializedSRF(fcinfo, 0);
	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	req.source = MsgSourceCreate(ent, t->subject, t->body, t->html_body, false, t->kind, to,
								 to == MSG_TO_USER ? PG_GETARG_INT64(4) : 0, has_sender, sender_id);
	result = MsgEnqueueMessages(&req, PG_GETARG_ARRAYTYPE_P(1));
	CcrmPopSearchPath(nestlevel);
	foreach(lc, result)
	{
		MsgEnqueued *e = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {e->record_null, false, false, false};

		values[0] = Int64GetDatum(e->record_id);
		values[1] = Int64GetDatum(e->id);
		values[2] = CStringGetTextDatum(e->status);
		values[3] = BoolGetDatum(e->created);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * Claims
 * ---------------------------------------------------------------- */

/* Where this backend's last claim of a channel ended. */
typedef struct ClaimMark
{
	int32		channel_id;
	bool		valid;
	TimestampTz at;
	int64		id;
	TimestampTz last_full;		/* real time of the last scan from the front */
} ClaimMark;

#define NMARKS 16
static ClaimMark claim_marks[NMARKS];

static ClaimMark *
claim_mark(int32 channel_id)
{
	int			free_slot = -1;

	for (int i = 0; i < NMARKS; i++)
	{
		if (claim_marks[i].channel_id == channel_id)
			return &claim_marks[i];
		if (claim_marks[i].channel_id == 0 && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		free_slot = channel_id % NMARKS;
	memset(&claim_marks[free_slot], 0, sizeof(ClaimMark));
	claim_marks[free_slot].channel_id = channel_id;
	return &claim_marks[free_slot];
}

static pg_uuid_t *
new_token(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(uuid, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a claim token")));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;	/* version 4 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	return uuid;
}

#define CLAIM_SQL \
	"WITH c AS (" \
	"  SELECT o.id, o.available_at, o.status FROM ccrm.outbox o" \
	"   WHERE o.channel_id OPERATOR(pg_catalog.=) $1 AND o.status IN ('queued', 'sending')" \
	"     AND o.available_at OPERATOR(pg_catalog.<=) $2" \
	"     AND (o.available_at, o.id) >= ($3, $4)" \
	"   ORDER BY o.available_at, o.id LIMIT $5 FOR UPDATE OF o SKIP LOCKED)," \
	" u AS (" \
	"  UPDATE ccrm.outbox o SET status = 'sending', claim_token = $6, claimed_at = $2," \
	"         available_at = $2 OPERATOR(pg_catalog.+) $7, attempts = o.attempts OPERATOR(pg_catalog.+) 1" \
	"    FROM c WHERE o.id OPERATOR(pg_catalog.=) c.id" \
	"  RETURNING o.id, o.recipient, o.subject, o.body, o.html_body, o.sender_id, o.reply_to, o.encoding," \
	"            o.segments, o.attempts, o.available_at AS lease_until, c.available_at AS was_at," \
	"            c.status AS was_status, o.time_zone, o.country, o.contact_id, o.lead_id, o.user_id," \
	"            o.address_field)" \
	" SELECT u.id, u.recipient, u.subject, u.body, u.html_body, u.sender_id," \
	"        s.name, s.email, u.reply_to, u.encoding, u.segments, u.attempts, u.lease_until," \
	"        u.was_at, u.was_status, u.time_zone, u.country," \
	"        CASE WHEN u.user_id IS NOT NULL AND ru.id IS NULL THEN 'the receiving user no longer exists'" \
	"             WHEN u.contact_id IS NOT NULL AND ct.id IS NULL THEN 'the contact no longer exists'" \
	"             WHEN u.lead_id IS NOT NULL AND l.id IS NULL THEN 'the lead no longer exists'" \
	"             WHEN $8 OPERATOR(pg_catalog.=) 'email' AND (ct.email_opt_out OR l.email_opt_out)" \
	"               THEN 'the recipient opted out of email'" \
	"             WHEN $8 OPERATOR(pg_catalog.=) 'sms' AND ct.sms_opt_out THEN 'the recipient opted out of sms'" \
	"             WHEN u.address_field IS NOT NULL AND pg_catalog.btrim(COALESCE(" \
	"                  CASE WHEN u.user_id IS NOT NULL" \
	"                       THEN CASE u.address_field WHEN 'email' THEN ru.email ELSE ru.mobile END" \
	"                       WHEN u.contact_id IS NOT NULL" \
	"                       THEN CASE u.address_field WHEN 'email' THEN ct.email ELSE ct.mobile END" \
	"                       ELSE CASE u.address_field WHEN 'email' THEN l.email ELSE l.mobile END END," \
	"                  '')) OPERATOR(pg_catalog.=) ''" \
	"               THEN CASE u.address_field WHEN 'email' THEN 'the recipient has no email address any more'" \
	"                    ELSE 'the recipient has no mobile number any more' END" \
	"        END" \
	"   FROM u LEFT JOIN ccrm.contact ct ON ct.id OPERATOR(pg_catalog.=) u.contact_id" \
	"          LEFT JOIN LATERAL (SELECT l.id, l.email, l.mobile, l.email_opt_out FROM ccrm.lead l" \
	"                              WHERE l.id OPERATOR(pg_catalog.=) u.lead_id OFFSET 0) l ON true" \
	"          LEFT JOIN LATERAL (SELECT ru.id, ru.email, ru.mobile FROM ccrm.crm_user ru" \
	"                              WHERE ru.id OPERATOR(pg_catalog.=) u.user_id OFFSET 0) ru ON true" \
	"          LEFT JOIN LATERAL (SELECT NULLIF(pg_catalog.btrim(pg_catalog.concat_ws(' ', s.firstname, s.lastname)), '')" \
	"                                    AS name, s.email FROM ccrm.crm_user s" \
	"                              WHERE s.id OPERATOR(pg_catalog.=) u.sender_id OFFSET 0) s ON true" \
	"  ORDER BY u.was_at, u.id"

enum
{
	C_ID = 1, C_RECIPIENT, C_SUBJECT, C_BODY, C_HTML, C_SENDER, C_SENDER_NAME, C_SENDER_EMAIL,
	C_REPLY_TO, C_ENCODING, C_SEGMENTS, C_ATTEMPTS, C_LEASE, C_WAS_AT, C_WAS_STATUS, C_TZ,
	C_COUNTRY, C_SUPPRESS
};
#define CLAIM_OUT C_LEASE		/* output columns: C_ID .. C_LEASE, then the token */

typedef struct Exceptions
{
	List	   *ids;			/* int64 as Datum lists, in parallel */
	List	   *texts;
	List	   *times;
} Exceptions;

static void
add_exception(Exceptions *x, int64 id, const char *text, TimestampTz t)
{
	int64	   *p = palloc(sizeof(int64));
	TimestampTz *q = palloc(sizeof(TimestampTz));

	*p = id;
	*q = t;
	x->ids = lappend(x->ids, p);
	x->texts = lappend(x->texts, text ? pstrdup(text) : NULL);
	x->times = lappend(x->times, q);
}

/* Apply suppressions, drops, deferrals or deaths to claimed rows. */
static void
apply_exceptions(Exceptions *x, const char *sql, TimestampTz at)
{
	int			n = list_length(x->ids);
	Datum	   *ids;
	Datum	   *texts;
	bool	   *tnulls;
	Datum	   *times;
	Oid			types[4] = {INT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID};
	Datum		args[4];
	int			i = 0;
	ListCell   *a,
			   *b,
			   *c;

	if (n == 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	texts = palloc(sizeof(Datum) * n);
	tnulls = palloc(sizeof(bool) * n);
	times = palloc(sizeof(Datum) * n);
	forthree(a, x->ids, b, x->texts, c, x->times)
	{
		ids[i] = Int64GetDatum(*(int64 *) lfirst(a));
		tnulls[i] = lfirst(b) == NULL;
		texts[i] = tnulls[i] ? (Datum) 0 : CStringGetTextDatum((char *) lfirst(b));
		times[i] = TimestampTzGetDatum(*(TimestampTz *) lfirst(c));
		i++;
	}
	args[0] = column(ids, NULL, n, INT8OID);
	args[1] = column(texts, tnulls, n, TEXTOID);
	args[2] = column(times, NULL, n, TIMESTAMPTZOID);
	args[3] = TimestampTzGetDatum(at);
	execute_as_owner(NULL, sql, 4, types, args, NULL);
}

#define EXCEPTION_FROM \
	"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS x(id, why, t)" \
	" WHERE o.id OPERATOR(pg_catalog.=) x.id"

/*
 * ccrm.claim_messages(channel text, n integer, lease interval, at timestamptz)
 *   -> table (id, recipient, subject, body, html_body, sender_id, sender_name,
 *             sender_email, reply_to, encoding, segments, attempts,
 *             lease_until, claim_token)
 */
Datum
ccrm_claim_messages(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MsgChannel *ch;
	int32		n;
	Interval   *lease;
	TimestampTz at;
	TimestampTz lease_end;
	pg_uuid_t  *token;
	ClaimMark  *mark;
	SPIPlanPtr	plan;
	Oid			types[8] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT4OID, UUIDOID,
	INTERVALOID, TEXTOID};
	Datum		args[8];
	bool		from_front;
	int			got = 0;
	MsgQuietHours *qh = NULL;
	Exceptions	suppress = {0},
				drop = {0},
				defer = {0},
				dead = {0};
	int			nestlevel;
	bool		sms;
	static SPIPlanPtr claim_plan = NULL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("channel, n and lease must not be null")));
	at = CcrmInstantArg(fcinfo, 3);
	n = PG_GETARG_INT32(1);
	lease = PG_GETARG_INTERVAL_P(2);
	if (n < 1 || n > MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("n must be between 1 and %d, not %d", MAX_CLAIM, n),
				 errhint("Claim messages in batches, e.g. 100 at a time.")));
	lease_end = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(at),
														IntervalPGetDatum(lease)));
	if (lease_end <= at || lease_end > at + (int64) SECS_PER_DAY * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be longer than zero and at most a day"),
				 errhint("A lease is how long the sender keeps the messages, e.g. '5 minutes'; "
						 "unfinished ones are claimable again when it ends.")));
	ch = MsgChannelLookup(text_arg(fcinfo, 0), NULL);
	/* ccrm's own delivery worker claims the channels it delivers (delivery_worker.c) */
	if (strcmp(ch->delivery, "external") != 0 && !CcrmIsDeliveryWorker())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("channel \"%s\" is delivered by ccrm", ch->name),
				 errdetail("Outside senders claim only the messages of external channels."),
				 errhint("An admin can change that: SELECT ccrm.alter_channel('%s', delivery => 'external').", ch->name)));
	MsgCheckMaySend(ch->name);

	InitMaterializedSRF(fcinfo, 0);
	if (!ch->enabled)
		return (Datum) 0;
	sms = strcmp(ch->medium, "sms") == 0;
	token = new_token();
	mark = claim_mark(ch->id);

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	if (sms)
		qh = MsgQuietHoursLoad();
	plan = kept_plan(&claim_plan, CLAIM_SQL, 8, types);
	args[0] = Int32GetDatum(ch->id);
	args[1] = TimestampTzGetDatum(at);
	args[5] = UUIDPGetDatum(token);
	args[6] = IntervalPGetDatum(lease);
	args[7] = CStringGetTextDatum(ch->medium);

	from_front = !mark->valid ||
		TimestampDifferenceExceeds(mark->last_full, GetCurrentTimestamp(), FULL_SCAN_MS);
	for (;;)
	{
		int32		limit = n - got;
		uint64		rows;

		if (from_front)
		{
			args[2] = TimestampTzGetDatum(DT_NOBEGIN);
			args[3] = Int64GetDatum(PG_INT64_MIN);
			mark->last_full = GetCurrentTimestamp();
		}
		else
		{
			args[2] = TimestampTzGetDatum(mark->at);
			args[3] = Int64GetDatum(mark->id);
		}
		args[4] = Int32GetDatum(limit);
		execute_as_owner(plan, NULL, 0, NULL, args, NULL);
		rows = SPI_processed;
		for (uint64 i = 0; i < rows; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(tup, desc, C_ID, &isnull));
			char	   *why = SPI_getvalue(tup, desc, C_SUPPRESS);
			int32		attempts = DatumGetInt32(SPI_getbinval(tup, desc, C_ATTEMPTS, &isnull));
			char	   *was_status = SPI_getvalue(tup, desc, C_WAS_STATUS);
			TimestampTz end;
			char	   *quiet;

			if (i == rows - 1)
			{
				mark->valid = true;
				mark->at = DatumGetTimestampTz(SPI_getbinval(tup, desc, C_WAS_AT, &isnull));
				mark->id = id;
			}
			if (why)
				add_exception(&suppress, id, why, at);
			else if (sms && MsgQuietHoursCheck(qh, at, SPI_getvalue(tup, desc, C_TZ),
											 SPI_getvalue(tup, desc, C_COUNTRY), &end, &quiet))
			{
				if (MsgQuietHoursDrop(qh))
					add_exception(&drop, id, quiet, at);
				else
					add_exception(&defer, id, psprintf("deferred: %s", quiet), end);
			}
			else if (strcmp(was_status, "sending") == 0 && attempts > ccrm_outbox_max_attempts)
				add_exception(&dead, id,
							  psprintf("its lease expired %d times without a result", attempts - 1), at);
			else
			{
				Datum		values[CLAIM_OUT + 1];
				bool		nulls[CLAIM_OUT + 1];

				for (int c = 0; c < CLAIM_OUT; c++)
					values[c] = SPI_getbinval(tup, desc, c + 1, &nulls[c]);
				values[CLAIM_OUT] = UUIDPGetDatum(token);
				nulls[CLAIM_OUT] = false;
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
				got++;
			}
		}
		SPI_freetuptable(SPI_tuptable);
		if (got >= n)
			break;
		if (rows < (uint64) limit)
		{
			if (from_front)
				break;
			from_front = true;	/* what the mark skipped: rolled back, late, retried */
			continue;
		}
		from_front = false;		/* go on after what was suppressed or deferred */
	}

	apply_exceptions(&suppress,
					 "UPDATE ccrm.outbox o SET status = 'suppressed', reason = x.why, finished_at = $4,"
					 "       available_at = $4, attempts = o.attempts OPERATOR(pg_catalog.-) 1" EXCEPTION_FROM, at);
	apply_exceptions(&drop,
					 "UPDATE ccrm.outbox o SET status = 'dropped', reason = x.why, finished_at = $4,"
					 "       available_at = $4, attempts = o.attempts OPERATOR(pg_catalog.-) 1" EXCEPTION_FROM, at);
	apply_exceptions(&defer,
					 "UPDATE ccrm.outbox o SET status = 'queued', reason = x.why, available_at = x.t,"
					 "       claim_token = NULL, attempts = o.attempts OPERATOR(pg_catalog.-) 1" EXCEPTION_FROM, at);
	apply_exceptions(&dead,
					 "UPDATE ccrm.outbox o SET status = 'dead', reason = x.why, finished_at = $4,"
					 "       available_at = $4, attempts = o.attempts OPERATOR(pg_catalog.-) 1" EXCEPTION_FROM, at);
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * Completing claims
 * ---------------------------------------------------------------- */

/* Why mark_* found no row to change: an ERROR, or false for a harmless repeat. */
static bool
explain_mark(int64 id, pg_uuid_t *token, const char *done_status, const char *action)
{
	Oid			types[2] = {INT8OID, UUIDOID};
	Datum		args[2] = {Int64GetDatum(id), UUIDPGetDatum(token)};
	bool		isnull;
	bool		same;
	char	   *status;

	execute_as_owner(NULL, "SELECT status, COALESCE(claim_token OPERATOR(pg_catalog.=) $2, false)"
					 "  FROM ccrm.outbox WHERE id OPERATOR(pg_catalog.=) $1",
					 2, types, args, NULL);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("message " INT64_FORMAT " does not exist", id)));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	same = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (same && done_status && strcmp(status, done_status) == 0)
		return false;			/* this claim completed it already */
	if (same)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s message " INT64_FORMAT ": this claim already ended it as %s", action, id, status)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s message " INT64_FORMAT ": the claim token no longer holds", action, id),
			 strcmp(status, "sending") == 0
			 ? errdetail("The lease expired and another sender has claimed the message since.")
			 : strcmp(status, "queued") == 0
			 ? errdetail("The lease expired or the message was deferred; it is queued to be claimed again.")
			 : errdetail("The message is %s, by another claim or by ccrm.", status),
			 errhint("Do not send it: claim messages again for current tokens.")));
	return false;
}

static void
check_token_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the message and its claim token must not be null"),
				 errhint("Pass the id and claim_token that ccrm.claim_messages returned.")));
	MsgCheckMaySend(NULL);
}

/* ccrm.mark_sent(id, token, provider_id, at) -> true, or false when already done by this claim */
Datum
ccrm_mark_sent(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {INT8OID, UUIDOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	TimestampTz at;
	bool		done;

	check_token_arg(fcinfo);
	at = CcrmInstantArg(fcinfo, 3);
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	args[3] = TimestampTzGetDatum(at);
	CcrmSPIConnect();
	execute_as_owner(kept_plan(&plan, "UPDATE ccrm.outbox SET status = 'sent', provider_id = $3, sent_at = $4, finished_at = $4,"
					 "       reason = NULL"
					 " WHERE id OPERATOR(pg_catalog.=) $1 AND claim_token OPERATOR(pg_catalog.=) $2"
					 "   AND status OPERATOR(pg_catalog.=) 'sending'",
					 4, types), NULL, 0, NULL, args, nulls);
	done = SPI_processed == 1 ? true : explain_mark(PG_GETARG_INT64(0), PG_GETARG_UUID_P(1), "sent", "mark as sent");
	SPI_finish();
	PG_RETURN_BOOL(done);
}

/*
 * ccrm.mark_sent(ids bigint[], token, provider_ids text[], at) -> how many
 * were completed now; all or nothing: one that does not hold is an ERROR.
 */
Datum
ccrm_mark_sent_many(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {INT8ARRAYOID, UUIDOID, TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	ArrayType  *ids;
	TimestampTz at;
	int			nids;
	uint64		done;

	check_token_arg(fcinfo);
	at = CcrmInstantArg(fcinfo, 3);
	ids = PG_GETARG_ARRAYTYPE_P(0);
	nids = ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids));
	if (array_contains_nulls(ids))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("ids must not contain nulls")));
	if (!PG_ARGISNULL(2))
	{
		ArrayType  *p = PG_GETARG_ARRAYTYPE_P(2);

		if (ArrayGetNItems(ARR_NDIM(p), ARR_DIMS(p)) != nids)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("provider_ids must have one element per id (%d), not %d", nids,
							ArrayGetNItems(ARR_NDIM(p), ARR_DIMS(p)))));
	}
	args[0] = PointerGetDatum(ids);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	args[3] = TimestampTzGetDatum(at);
	CcrmSPIConnect();
	execute_as_owner(kept_plan(&plan, "UPDATE ccrm.outbox o SET status = 'sent', provider_id = x.p, sent_at = $4, finished_at = $4,"
					 "       reason = NULL"
					 "  FROM (SELECT i.id, CASE WHEN $3 IS NOT NULL THEN ($3)[i.n] END AS p"
					 "          FROM ROWS FROM (pg_catalog.unnest($1)) WITH ORDINALITY AS i(id, n)) x"
					 " WHERE o.id OPERATOR(pg_catalog.=) x.id AND o.claim_token OPERATOR(pg_catalog.=) $2"
					 "   AND o.status OPERATOR(pg_catalog.=) 'sending'",
					 4, types), NULL, 0, NULL, args, nulls);
	done = SPI_processed;
	if (done < (uint64) nids)
	{
		/* the ones not completed now: each repeated, or an ERROR */
		execute_as_owner(NULL, "SELECT DISTINCT i FROM pg_catalog.unnest($1) i"
						 " WHERE NOT EXISTS (SELECT FROM ccrm.outbox o WHERE o.id OPERATOR(pg_catalog.=) i"
						 "   AND o.claim_token OPERATOR(pg_catalog.=) $2 AND o.status OPERATOR(pg_catalog.=) 'sent')",
						 2, types, args, NULL);
		if (SPI_processed > 0)
		{
			bool		isnull;
			int64		bad = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

			(void) explain_mark(bad, PG_GETARG_UUID_P(1), NULL, "mark as sent");
		}
	}
	SPI_finish();
	PG_RETURN_INT64((int64) done);
}

/*
 * ccrm.mark_failed(id, token, error, retry DEFAULT true, at) -> the new
 * status: queued (retried after a backoff), failed (no retry) or dead
 * (attempts used up).
 */
Datum
ccrm_mark_failed(PG_FUNCTION_ARGS)
{
	Oid			types[7] = {INT8OID, UUIDOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, INT4OID, INT4OID};
	Datum		args[7];
	TimestampTz at;
	char	   *status;
	MemoryContext caller = CurrentMemoryContext;

	check_token_arg(fcinfo);
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("error and retry must not be null"),
				 errhint("Say what went wrong, and whether sending it again may work.")));
	at = CcrmInstantArg(fcinfo, 4);
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = PG_GETARG_DATUM(2);
	args[3] = PG_GETARG_DATUM(3);
	args[4] = TimestampTzGetDatum(at);
	args[5] = Int32GetDatum(ccrm_outbox_max_attempts);
	args[6] = Int32GetDatum(ccrm_outbox_retry_delay);
	CcrmSPIConnect();
	execute_as_owner(NULL, "UPDATE ccrm.outbox SET"
					 "   status = CASE WHEN NOT $4 THEN 'failed' WHEN attempts OPERATOR(pg_catalog.>=) $6 THEN 'dead'"
					 "                 ELSE 'queued' END,"
					 "   available_at = CASE WHEN $4 AND attempts OPERATOR(pg_catalog.<) $6"
					 "        THEN $5 OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => LEAST("
					 "             $7::pg_catalog.float8 OPERATOR(pg_catalog.*) pg_catalog.power(2, attempts OPERATOR(pg_catalog.-) 1),"
					 "             " CppAsString2(MAX_BACKOFF) "::pg_catalog.float8))"
					 "        ELSE $5 END,"
					 "   claim_token = CASE WHEN $4 AND attempts OPERATOR(pg_catalog.<) $6 THEN NULL ELSE claim_token END,"
					 "   finished_at = CASE WHEN NOT $4 OR attempts OPERATOR(pg_catalog.>=) $6 THEN $5 END,"
					 "   reason = CASE WHEN $4 AND attempts OPERATOR(pg_catalog.>=) $6"
					 "            THEN pg_catalog.format('it failed %s times', attempts) END,"
					 "   last_error = $3"
					 " WHERE id OPERATOR(pg_catalog.=) $1 AND claim_token OPERATOR(pg_catalog.=) $2"
					 "   AND status OPERATOR(pg_catalog.=) 'sending'"
					 " RETURNING status",
					 7, types, args, NULL);
	if (SPI_processed == 1)
		status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	else
	{
		(void) explain_mark(PG_GETARG_INT64(0), PG_GETARG_UUID_P(1), NULL, "mark as failed");
		status = NULL;
	}
	status = MemoryContextStrdup(caller, status);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(status));
}

/* ----------------------------------------------------------------
 * Retention
 * ---------------------------------------------------------------- */

/*
 * ccrm.purge_outbox(older_than interval DEFAULT NULL, at DEFAULT now()):
 * empty the texts and addresses of messages finished before at -
 * older_than (NULL: ccrm.outbox_retention; 0 there keeps everything).  The
 * rows, their status and idempotency keys stay.  Returns the rows purged.
 */
Datum
ccrm_purge_outbox(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TIMESTAMPTZOID, INTERVALOID};
	Datum		args[2];
	TimestampTz at = CcrmInstantArg(fcinfo, 1);
	Interval   *older;
	uint64		purged;

	MsgCheckAdmin("purge the outbox");
	if (PG_ARGISNULL(0))
	{
		if (ccrm_outbox_retention <= 0)
			PG_RETURN_INT64(0);
		older = palloc0(sizeof(Interval));
		older->time = (int64) ccrm_outbox_retention * USECS_PER_SEC;
	}
	else
		older = PG_GETARG_INTERVAL_P(0);
	args[0] = TimestampTzGetDatum(at);
	args[1] = IntervalPGetDatum(older);
	CcrmSPIConnect();
	execute_as_owner(NULL, "UPDATE ccrm.outbox SET recipient = NULL, subject = NULL, body = NULL, html_body = NULL,"
					 "       reply_to = NULL, last_error = NULL, purged_at = $1"
					 " WHERE finished_at OPERATOR(pg_catalog.<) ($1 OPERATOR(pg_catalog.-) $2)"
					 "   AND purged_at IS NULL",
					 2, types, args, NULL);
	purged = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) purged);
}
