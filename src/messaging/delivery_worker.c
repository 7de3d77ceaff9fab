/*-------------------------------------------------------------------------
 *
 * delivery_worker.c
 *	  The background worker that sends the outbox of channels delivered by
 *	  ccrm: email over SMTP, SMS over HTTPS, many at once through one
 *	  libcurl multi handle.
 *
 * Started by the launcher (launcher.c) in ccrm.database_name once recovery
 * has finished (a standby sends nothing; a promoted one starts it), the
 * worker waits for CREATE EXTENSION ccrm, then loops:
 *
 *	1. one transaction: complete what finished (ccrm.mark_sent /
 *	   ccrm.mark_failed), add the counters to ccrm.channel_delivery and
 *	   pause a channel that keeps failing, then claim new messages through
 *	   ccrm.claim_messages for every channel that has a free slot
 *	   (parallelism), a token (rate limit) and is not paused;
 *	2. after that commit, and only then, queue the claimed transfers and
 *	   start those their channel has a free slot for; a healthy channel
 *	   without a rate limit claims ahead (prefetch_depth), and a slot that
 *	   frees starts the next queued transfer at once, without a pass;
 *	3. wait on one WaitEventSet for the latch, postmaster death and an epoll
 *	   set that holds libcurl's sockets (CURLMOPT_SOCKETFUNCTION), with
 *	   libcurl's timer as the timeout, and drive libcurl with
 *	   curl_multi_socket_action.
 *
 * Claims go through the outbox API like any outside sender's, so quiet
 * hours and suppression are applied when a message is claimed, that is
 * just before it is sent, and a lease that expires (a worker that died)
 * gives the message to the next claim.
 *
 * Invariants:
 *	- A message is handed to a server only after its claim committed, and
 *	  marked sent only after the server accepted it: at-least-once.  A crash
 *	  between the two sends it again with the same bytes (same Message-ID,
 *	  same Idempotency-Key), never loses it.
 *	- Completions that could not be written (an error in the pass) are kept
 *	  and written by the next pass while their lease holds.
 *	- libcurl callbacks never raise a PostgreSQL error and never allocate
 *	  with palloc: they copy into fixed buffers of the transfer.  Every
 *	  transfer lives in its own memory context, deleted when it is complete.
 *	- A pass's memory is its transaction's and SPI's, gone at its end.
 *	- At most one delivery worker runs: it announces itself in shared memory.
 *
 * Failure classes (ccrm.channel_delivery counters): permanent (SMTP 5xx,
 * HTTP 4xx but 408 and 429: the message ends failed with the server's
 * answer), temporary (SMTP 4xx, HTTP 5xx, 408, 429), timeout, connect,
 * tls and auth.  All but permanent are retried with the outbox's backoff
 * and count as failures of the channel: after ccrm.delivery_pause_after in
 * a row the channel is paused for ccrm.delivery_pause_time with the reason,
 * then tried again with one message; a success ends the pause, as does
 * ccrm.resume_channel().
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "spi_debug.h"
#include "delivery.h"
#include "worker_slot.h"
#include "scheduler.h"

#include <ctype.h>
#include <curl/curl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ccrm_delivery_main(Datum arg);
PG_FUNCTION_INFO_V1(ccrm_delivery_wake);

bool		ccrm_enable_delivery = true;
int			ccrm_delivery_pause_after = 10;
int			ccrm_delivery_pause_time = 300;
int			ccrm_delivery_poll_interval = 1000;
static char *ccrm_delivery_proxy = NULL;

/* how often the channel configuration is read again without a wake-up */
#define RELOAD_MS 1000
/* pause after a pass that failed */
#define ERROR_PAUSE_MS 1000
/* claimed at most at once per channel */
#define MAX_CLAIM 100
/* a healthy fast channel claims ahead what its transfers end in about this long */
#define PREFETCH_WAIT_MS 500
/* a claimed message starts only while its lease outlasts its timeouts by this much */
#define START_MARGIN_MS 5000
/* lease beyond the channel's timeouts */
#define LEASE_SLACK_S 30
/* bytes of an answer kept */
#define RESPONSE_MAX 2048

typedef enum FailClass
{
	FAIL_NONE,
	FAIL_PERMANENT,
	FAIL_TEMPORARY,
	FAIL_TIMEOUT,
	FAIL_CONNECT,
	FAIL_TLS,
	FAIL_AUTH,
	NUM_FAIL_CLASSES
} FailClass;

static const char *const fail_class_names[NUM_FAIL_CLASSES] =
{"", "permanent", "temporary", "timeout", "connect", "tls", "auth"};

typedef struct Channel
{
	int32		id;
	char	   *name;
	bool		email;
	char	   *endpoint;		/* NULL: not configured, nothing is claimed */
	bool		require_tls;
	char	   *username;
	char	   *secret;
	char	   *sender;
	char	   *ca_file;
	double		rate;			/* messages per second, 0: no limit */
	int			parallelism;
	long		connect_ms;
	long		send_ms;
	CcrmSmsFormat sms_format;
	char	   *msgid_domain;
	bool		paused;			/* paused_until is in the future */
	int			failures_in_row;
	bool		seen;			/* still in ccrm.channel at the last load */

	/* the worker's own state */
	int			inflight;		/* started, not complete */
	int			queued;			/* claimed, waiting for a free slot */
	double		avg_us;			/* moving average of a successful transfer's time, 0: none yet */
	double		tokens;
	TimestampTz refilled;
	TimestampTz idle_until;		/* the last claim found less than asked */

	/* counters of the transfers completed since the last pass */
	int64		n_sent;
	int64		n_failed[NUM_FAIL_CLASSES];
	int			fails_since_success;
	bool		any_success;
	char	   *last_error;
	FailClass	last_class;
} Channel;

typedef struct Transfer
{
	MemoryContext cxt;
	CURL	   *easy;
	int32		channel_id;
	int64		id;
	char	   *token;
	char	   *key;
	StringInfoData payload;
	size_t		offset;			/* bytes of payload read by libcurl (SMTP) */
	struct curl_slist *list;	/* recipients (SMTP) or headers (HTTP) */
	char		errbuf[CURL_ERROR_SIZE];
	char		response[RESPONSE_MAX];	/* HTTP body, or the last SMTP reply line */
	size_t		response_len;
	bool		smtp;
	bool		smtp_error;		/* response holds the first error reply */
	bool		started;
	bool		written;		/* its completion is written in this pass */
	TimestampTz lease_until;	/* the claim holds until then */
	/* outcome */
	bool		done;
	bool		ok;
	FailClass	fail;
	bool		retry;
	char	   *error;
	char	   *provider_id;
	struct Transfer *next;
} Transfer;

static CcrmWorkerSlot *shared = NULL;	/* the delivery worker's slot */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;

/* the worker's state */
static CURLM *multi = NULL;
static int	epfd = -1;
static TimestampTz curl_deadline = 0;	/* 0: no libcurl timer */
static Channel *channels = NULL;
static int	nchannels = 0;
static MemoryContext channel_cxt = NULL;
static TimestampTz loaded_at = 0;
static Transfer *running = NULL;	/* started, not complete */
static Transfer *completed = NULL;	/* complete, not yet written */
static Transfer *claimed = NULL;	/* claimed in this pass, queued after commit */
static Transfer *queue_head = NULL;	/* claimed, committed, waiting for a slot (FIFO) */
static Transfer *queue_tail = NULL;
static int	nqueued = 0;
static int	nrunning = 0;
static int	ncompleted = 0;
static TimestampTz completed_since = 0;	/* when completed became non-empty */
static TimestampTz last_pass = 0;
static Oid	token_type = InvalidOid;
static int	ready = -1;
static bool woken = false;
static bool released = false;	/* claims of a dead predecessor ended */
static TimestampTz worker_started = 0;

static void start_queued(void);

/* ---------------------------------------------------------------------- */
/* registration, shared memory, wake-up */

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(CcrmWorkerSlotSize());
}

static void
shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = CcrmWorkerSlotAttach("ccrm delivery");
	LWLockRelease(AddinShmemInitLock);
}

static void
xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
		CcrmWorkerSlotWake(shared);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = false;
}

void
CcrmDeliveryWakeAtCommit(void)
{
	wake_at_commit = true;
}

bool
CcrmDeliveryRunning(void)
{
	return CcrmWorkerSlotHolder(shared) != 0;
}

/* AFTER INSERT ... FOR EACH STATEMENT ON ccrm.outbox: new messages wake the worker. */
Datum
ccrm_delivery_wake(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ccrm_delivery_wake must be called as a trigger");
	CcrmDeliveryWakeAtCommit();
	return PointerGetDatum(NULL);
}

void
CcrmDeliveryInit(void)
{
	DefineCustomBoolVariable("ccrm.enable_delivery",
							 "Whether the delivery worker sends the messages of channels delivered by ccrm.",
							 "Off leaves them queued; outside senders are not affected.",
							 &ccrm_enable_delivery, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.delivery_pause_after",
							"Failures of a channel in a row (timeouts, connection, TLS, authentication, temporary answers) after which delivery pauses it (0: never).",
							NULL, &ccrm_delivery_pause_after, 10, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.delivery_pause_time",
							"How long a channel that keeps failing is paused before delivery tries it again.",
							NULL, &ccrm_delivery_pause_time, 300, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ccrm.delivery_poll_interval",
							"How often the delivery worker looks for due messages when nothing woke it.",
							"New messages wake it at once; this finds retries and deferred messages that became due.",
							&ccrm_delivery_poll_interval, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("ccrm.delivery_proxy",
							   "The proxy every delivery connection goes through, e.g. http://proxy.example:3128 (empty: none).",
							   "The server's environment (http_proxy, https_proxy, all_proxy) is never used: mail and SMS go only where this setting says.",
							   &ccrm_delivery_proxy, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);

	RegisterXactCallback(xact_callback, NULL);
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = shmem_startup;
	}
}

/* ---------------------------------------------------------------------- */
/* libcurl glue: sockets in our epoll set, the timer as a deadline */

static int
socket_cb(CURL *easy pg_attribute_unused(), curl_socket_t s, int what,
		  void *userp pg_attribute_unused(), void *socketp pg_attribute_unused())
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		(void) epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int
timer_cb(CURLM *m pg_attribute_unused(), long timeout_ms, void *userp pg_attribute_unused())
{
	curl_deadline = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/* libcurl reads the message from here (SMTP upload) */
static size_t
read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = Min(size * nitems, t->payload.len - t->offset);

	memcpy(buf, t->payload.data + t->offset, n);
	t->offset += n;
	return n;
}

/* the answer's body (HTTP), cut at RESPONSE_MAX */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nmemb;
	size_t		room = sizeof(t->response) - 1 - t->response_len;

	if (!t->smtp)
	{
		memcpy(t->response + t->response_len, ptr, Min(n, room));
		t->response_len += Min(n, room);
		t->response[t->response_len] = '\0';
	}
	return n;
}

/*
 * SMTP: keep the reply that decided: the first error (4xx, 5xx), else the
 * last positive one (the answer to the message, not the one to QUIT).
 */
static size_t
header_cb(char *ptr, size_t size, size_t nitems, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nitems;
	bool		final = n >= 4 && ptr[3] == ' ' && isdigit((unsigned char) ptr[0]);

	if (t->smtp && final && !t->smtp_error && strncmp(ptr, "221", 3) != 0)
	{
		size_t		len = Min(n, sizeof(t->response) - 1);

		while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
			len--;
		memcpy(t->response, ptr, len);
		t->response_len = len;
		t->response[len] = '\0';
		t->smtp_error = ptr[0] == '4' || ptr[0] == '5';
	}
	return n;
}

/* ---------------------------------------------------------------------- */
/* channels */

static Channel *
find_channel(int32 id)
{
	for (int i = 0; i < nchannels; i++)
		if (channels[i].id == id)
			return &channels[i];
	return NULL;
}

static char *
get_text(HeapTuple tup, TupleDesc desc, const char *col)
{
	int			attno = SPI_fnumber(desc, col);
	char	   *v = attno > 0 ? SPI_getvalue(tup, desc, attno) : NULL;

	if (v == NULL || v[0] == '\0')
		return NULL;
	return MemoryContextStrdup(channel_cxt, v);
}

/*
 * Read the channels delivered by ccrm, keeping the worker's own state of
 * those it knew.  The old copies are freed with their context.
 */
static void
load_channels(void)
{
	MemoryContext old_cxt = channel_cxt;
	Channel    *old = channels;
	int			nold = nchannels;
	Channel    *fresh;

	if (SPI_execute("SELECT c.id, c.name, c.medium, c.endpoint, c.require_tls, c.username, c.secret,"
					"       c.sender, c.ca_file, c.rate_limit, c.parallelism,"
					"       (pg_catalog.date_part('epoch', c.connect_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 AS connect_ms,"
					"       (pg_catalog.date_part('epoch', c.send_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 AS send_ms,"
					"       c.sms_format, c.message_id_domain,"
					"       COALESCE(d.paused_until OPERATOR(pg_catalog.>) pg_catalog.now(), false) AS paused,"
					"       COALESCE(d.failures_in_row, 0) AS failures_in_row"
					"  FROM ccrm.channel c LEFT JOIN ccrm.channel_delivery d ON d.channel_id OPERATOR(pg_catalog.=) c.id"
					" WHERE c.delivery OPERATOR(pg_catalog.=) 'ccrm' AND c.enabled ORDER BY c.id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.channel");

	channel_cxt = AllocSetContextCreate(TopMemoryContext, "ccrm delivery channels", ALLOCSET_SMALL_SIZES);
	fresh = MemoryContextAllocZero(channel_cxt, sizeof(Channel) * Max(1, SPI_processed));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Channel    *c = &fresh[i];
		char	   *v;
		Channel    *was = NULL;

		c->id = pg_strtoint32(get_text(tup, desc, "id"));
		for (int j = 0; j < nold; j++)
			if (old[j].id == c->id)
				was = &old[j];
		if (was != NULL)
		{
			/* the worker's state and the counters not yet written carry over */
			*c = *was;
			c->last_error = was->last_error ? MemoryContextStrdup(channel_cxt, was->last_error) : NULL;
		}
		else
			c->refilled = GetCurrentTimestamp();
		c->name = get_text(tup, desc, "name");
		c->email = strcmp(get_text(tup, desc, "medium"), "email") == 0;
		c->endpoint = get_text(tup, desc, "endpoint");
		c->require_tls = strcmp(get_text(tup, desc, "require_tls"), "t") == 0;
		c->username = get_text(tup, desc, "username");
		c->secret = get_text(tup, desc, "secret");
		c->sender = get_text(tup, desc, "sender");
		c->ca_file = get_text(tup, desc, "ca_file");
		v = get_text(tup, desc, "rate_limit");
		c->rate = v ? strtod(v, NULL) : 0;
		c->parallelism = pg_strtoint32(get_text(tup, desc, "parallelism"));
		c->connect_ms = strtol(get_text(tup, desc, "connect_ms"), NULL, 10);
		c->send_ms = strtol(get_text(tup, desc, "send_ms"), NULL, 10);
		v = get_text(tup, desc, "sms_format");
		c->sms_format = (v && strcmp(v, "twilio") == 0) ? CCRM_SMS_TWILIO : CCRM_SMS_JSON;
		c->msgid_domain = get_text(tup, desc, "message_id_domain");
		c->paused = strcmp(get_text(tup, desc, "paused"), "t") == 0;
		c->failures_in_row = pg_strtoint32(get_text(tup, desc, "failures_in_row"));
		c->seen = true;
	}

	/* a channel that went away keeps counting its transfers until they end */
	for (int j = 0; j < nold; j++)
	{
		bool		kept = false;

		for (uint64 i = 0; i < SPI_processed; i++)
			kept |= fresh[i].id == old[j].id;
		if (!kept && old[j].inflight > 0)
			elog(LOG, "ccrm delivery: channel \"%s\" is no longer delivered by ccrm; %d messages in flight finish",
				 old[j].name, old[j].inflight);
	}
	channels = fresh;
	nchannels = (int) SPI_processed;
	if (old_cxt != NULL)
		MemoryContextDelete(old_cxt);
	loaded_at = GetCurrentTimestamp();
}

/* ---------------------------------------------------------------------- */
/* transfers */

static void
free_transfer(Transfer *t)
{
	if (t->easy)
		curl_easy_cleanup(t->easy);
	if (t->list)
		curl_slist_free_all(t->list);
	MemoryContextDelete(t->cxt);
}

/* Fail a transfer before it starts (bad data in the row): permanent. */
static void
fail_now(Transfer *t, const char *why)
{
	t->done = true;
	t->ok = false;
	t->fail = FAIL_PERMANENT;
	t->retry = false;
	t->error = MemoryContextStrdup(t->cxt, why);
}

#define SET(opt, val) \
	do { if (curl_easy_setopt(t->easy, opt, val) != CURLE_OK) { fail_now(t, "libcurl refused option " #opt); return; } } while (0)

/* Set up the easy handle of an email. */
static void
prepare_mail(Transfer *t, Channel *c, HeapTuple tup, TupleDesc desc)
{
	CcrmMail	mail;
	char	   *created;
	const char *why;
	char	   *from;

	memset(&mail, 0, sizeof(mail));
	from = SPI_getvalue(tup, desc, SPI_fnumber(desc, "sender_email"));
	mail.from = (from && from[0]) ? from : c->sender;
	if (from && from[0])
		mail.from_name = SPI_getvalue(tup, desc, SPI_fnumber(desc, "sender_name"));
	mail.to = SPI_getvalue(tup, desc, SPI_fnumber(desc, "recipient"));
	mail.reply_to = SPI_getvalue(tup, desc, SPI_fnumber(desc, "reply_to"));
	mail.subject = SPI_getvalue(tup, desc, SPI_fnumber(desc, "subject"));
	mail.text_body = SPI_getvalue(tup, desc, SPI_fnumber(desc, "body"));
	mail.html_body = SPI_getvalue(tup, desc, SPI_fnumber(desc, "html_body"));
	mail.idempotency_key = t->key;
	mail.message_id_domain = c->msgid_domain;
	created = SPI_getvalue(tup, desc, SPI_fnumber(desc, "created_at"));
	mail.date = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(created),
														ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (mail.from == NULL)
	{
		fail_now(t, "the message has no sender and the channel no default sender");
		return;
	}
	if ((why = CcrmMailBuild(&t->payload, &mail)) != NULL)
	{
		fail_now(t, why);
		return;
	}
	t->smtp = true;
	t->list = curl_slist_append(NULL, psprintf("<%s>", mail.to));
	SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	SET(CURLOPT_MAIL_FROM, psprintf("<%s>", mail.from));
	SET(CURLOPT_MAIL_RCPT, t->list);
	SET(CURLOPT_UPLOAD, 1L);
	SET(CURLOPT_READFUNCTION, read_cb);
	SET(CURLOPT_READDATA, t);
	SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t) t->payload.len);
	if (strncmp(c->endpoint, "smtp://", 7) == 0)
		SET(CURLOPT_USE_SSL, (long) (c->require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
	if (c->username)
	{
		SET(CURLOPT_USERNAME, c->username);
		SET(CURLOPT_PASSWORD, c->secret ? c->secret : "");
	}
}

/* Set up the easy handle of an SMS. */
static void
prepare_sms(Transfer *t, Channel *c, HeapTuple tup, TupleDesc desc)
{
	CcrmSms		sms;
	const char *content_type;
	char	   *segments;

	memset(&sms, 0, sizeof(sms));
	sms.outbox_id = t->id;
	sms.to = SPI_getvalue(tup, desc, SPI_fnumber(desc, "recipient"));
	sms.from = c->sender;
	sms.body = SPI_getvalue(tup, desc, SPI_fnumber(desc, "body"));
	sms.idempotency_key = t->key;
	sms.encoding = SPI_getvalue(tup, desc, SPI_fnumber(desc, "encoding"));
	segments = SPI_getvalue(tup, desc, SPI_fnumber(desc, "segments"));
	sms.segments = segments ? atoi(segments) : 0;
	CcrmSmsBody(&t->payload, &content_type, c->sms_format, &sms);

	t->list = curl_slist_append(NULL, psprintf("Content-Type: %s", content_type));
	t->list = curl_slist_append(t->list, psprintf("Idempotency-Key: %s", t->key));
	t->list = curl_slist_append(t->list, "Accept: application/json");
	t->list = curl_slist_append(t->list, "Expect:");
	if (c->sms_format == CCRM_SMS_JSON && c->secret)
		t->list = curl_slist_append(t->list, psprintf("Authorization: Bearer %s", c->secret));
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, t->payload.data);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) t->payload.len);
	SET(CURLOPT_HTTPHEADER, t->list);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_USERAGENT, "ccrm");
	if (c->sms_format == CCRM_SMS_TWILIO)
	{
		SET(CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, c->username ? c->username : "");
		SET(CURLOPT_PASSWORD, c->secret ? c->secret : "");
	}
}

/* A transfer for one claimed row (in SPI's memory), not started yet. */
static Transfer *
make_transfer(Channel *c, HeapTuple tup, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "ccrm delivery transfer",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Transfer   *t = palloc0(sizeof(Transfer));

	t->cxt = cxt;
	t->channel_id = c->id;
	t->id = pg_strtoint64(SPI_getvalue(tup, desc, SPI_fnumber(desc, "id")));
	t->token = SPI_getvalue(tup, desc, SPI_fnumber(desc, "claim_token"));
	t->key = SPI_getvalue(tup, desc, SPI_fnumber(desc, "idempotency_key"));
	{
		bool		isnull;
		Datum		lease = SPI_getbinval(tup, desc, SPI_fnumber(desc, "lease_until"), &isnull);

		t->lease_until = isnull ? 0 : DatumGetTimestampTz(lease);
	}
	initStringInfo(&t->payload);
	t->easy = curl_easy_init();
	if (t->easy == NULL)
		fail_now(t, "libcurl could not create a transfer");
	else
	{
		if (c->email)
			prepare_mail(t, c, tup, desc);
		else
			prepare_sms(t, c, tup, desc);
		if (!t->done)
		{
			curl_easy_setopt(t->easy, CURLOPT_URL, c->endpoint);
			curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
			curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
			curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
			/* "" turns off libcurl's reading of the proxy environment variables */
			curl_easy_setopt(t->easy, CURLOPT_PROXY, ccrm_delivery_proxy ? ccrm_delivery_proxy : "");
			curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
			curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, c->send_ms);
			curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 1L);
			curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 2L);
			if (c->ca_file)
				curl_easy_setopt(t->easy, CURLOPT_CAINFO, c->ca_file);
			curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, write_cb);
			curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
			curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, header_cb);
			curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
		}
	}
	MemoryContextSwitchTo(old);
	return t;
}

/* What a finished transfer means: sent, or which failure, retried or not. */
static void
judge_transfer(Transfer *t, CURLcode rc)
{
	long		code = 0;
	MemoryContext old = MemoryContextSwitchTo(t->cxt);
	const char *detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
	t->done = true;
	t->retry = true;
	if (t->smtp)
	{
		if (rc == CURLE_OK)
		{
			t->ok = true;
			/* "250 2.0.0 Ok: queued as X": the server's words are its id of the message */
			t->provider_id = t->response_len > 4 ? pstrdup(t->response + 4) : NULL;
		}
		else if (rc == CURLE_OPERATION_TIMEDOUT)
			t->fail = FAIL_TIMEOUT;
		else if (rc == CURLE_LOGIN_DENIED || rc == CURLE_AUTH_ERROR)
			t->fail = FAIL_AUTH;
		else if (rc == CURLE_USE_SSL_FAILED || rc == CURLE_SSL_CONNECT_ERROR ||
				 rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
				 rc == CURLE_SSL_CERTPROBLEM)
			t->fail = FAIL_TLS;
		else if (code >= 500 && code < 600)
		{
			t->fail = FAIL_PERMANENT;
			t->retry = false;
		}
		else if (code >= 400 && code < 500)
			t->fail = FAIL_TEMPORARY;
		else
			t->fail = FAIL_CONNECT;
		if (!t->ok)
			t->error = t->response_len > 0 && code >= 400 ?
				psprintf("%s: the server answered \"%s\"", detail, t->response) :
				psprintf("%s", detail);
	}
	else
	{
		if (rc == CURLE_OK && code >= 200 && code < 300)
		{
			t->ok = true;
			t->provider_id = CcrmSmsProviderId(t->response, t->response_len);
		}
		else if (rc == CURLE_OK)
		{
			if (code == 401 || code == 403)
				t->fail = FAIL_AUTH;
			else if (code >= 500 || code == 408 || code == 429)
				t->fail = FAIL_TEMPORARY;
			else
			{
				t->fail = FAIL_PERMANENT;
				t->retry = false;
			}
			t->error = psprintf("HTTP %ld: %s", code, CcrmResponseExcerpt(t->response, t->response_len));
		}
		else
		{
			if (rc == CURLE_OPERATION_TIMEDOUT)
				t->fail = FAIL_TIMEOUT;
			else if (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
					 rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM)
				t->fail = FAIL_TLS;
			else
				t->fail = FAIL_CONNECT;
			t->error = psprintf("%s", detail);
		}
	}
	MemoryContextSwitchTo(old);
}

/* Put a transfer on the completed list. */
static void
note_completed(Transfer *t)
{
	if (completed == NULL)
		completed_since = GetCurrentTimestamp();
	t->next = completed;
	completed = t;
	ncompleted++;
}

/* Move what libcurl finished from running to completed. */
static void
collect_finished(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Transfer   *t;
		Transfer  **pp;
		Channel    *c;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		judge_transfer(t, msg->data.result);
		if ((c = find_channel(t->channel_id)) != NULL)
		{
			curl_off_t	us = 0;

			c->inflight--;
			if (t->ok && curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK)
				c->avg_us = c->avg_us <= 0 ? (double) us : 0.9 * c->avg_us + 0.1 * (double) us;
		}
		t->started = false;		/* no longer counted in flight */
		curl_multi_remove_handle(multi, t->easy);
		for (pp = &running; *pp; pp = &(*pp)->next)
			if (*pp == t)
			{
				*pp = t->next;
				break;
			}
		nrunning--;
		note_completed(t);
	}
	start_queued();
}

/*
 * Start queued transfers while their channel has a free slot.  A transfer
 * whose lease would not outlast its timeouts is not started: it is dropped
 * here and its message comes back to the queue when the lease ends (no
 * completion is written for it, and nothing was sent).
 */
static void
start_queued(void)
{
	Transfer  **pp = &queue_head;
	Transfer   *prev = NULL;
	TimestampTz now = 0;

	while (*pp != NULL)
	{
		Transfer   *t = *pp;
		Channel    *c = find_channel(t->channel_id);

		if (c != NULL && c->inflight >= c->parallelism)
		{
			prev = t;
			pp = &t->next;
			continue;
		}
		/* off the queue */
		*pp = t->next;
		if (queue_tail == t)
			queue_tail = prev;
		nqueued--;
		if (c != NULL)
			c->queued--;
		if (now == 0)
			now = GetCurrentTimestamp();
		if (c == NULL || (t->lease_until != 0 &&
						  TimestampTzPlusMilliseconds(now, c->connect_ms + c->send_ms + START_MARGIN_MS) >= t->lease_until))
		{
			ereport(DEBUG1, (errmsg("ccrm delivery leaves message " INT64_FORMAT " to the end of its lease", t->id)));
			free_transfer(t);
			continue;
		}
		if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
		{
			fail_now(t, "libcurl could not start the transfer");
			t->retry = true;
			t->fail = FAIL_CONNECT;
			note_completed(t);
			continue;
		}
		t->started = true;
		t->next = running;
		running = t;
		nrunning++;
		c->inflight++;
	}
}

/* After the claims committed: queue them (in the order claimed) and start what has a slot. */
static void
start_claimed(void)
{
	Transfer   *rev = NULL;

	while (claimed != NULL)
	{
		Transfer   *t = claimed;

		claimed = t->next;
		t->next = rev;
		rev = t;
	}
	while (rev != NULL)
	{
		Transfer   *t = rev;
		Channel    *c = find_channel(t->channel_id);

		rev = t->next;
		t->next = NULL;
		if (t->done)
		{
			/* refused before it started: complete it in the next pass */
			note_completed(t);
			continue;
		}
		if (queue_tail)
			queue_tail->next = t;
		else
			queue_head = t;
		queue_tail = t;
		nqueued++;
		if (c)
			c->queued++;
	}
	start_queued();
}

/* ---------------------------------------------------------------------- */
/* the pass: write completions, claim */

static SPIPlanPtr plan_sent = NULL;
static SPIPlanPtr plan_failed = NULL;

static void
prepare_plans(void)
{
	Oid			st[3] = {INT8ARRAYOID, token_type, TEXTARRAYOID};
	Oid			ft[4] = {INT8OID, token_type, TEXTOID, BOOLOID};

	if (plan_sent != NULL)
		return;
	plan_sent = SPI_prepare("SELECT ccrm.mark_sent($1, $2, $3)", 3, st);	/* the array form */
	plan_failed = SPI_prepare("SELECT ccrm.mark_failed($1, $2, $3, $4)", 4, ft);
	if (plan_sent == NULL || plan_failed == NULL)
		elog(ERROR, "could not prepare the completion of messages: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan_sent);
	SPI_keepplan(plan_failed);
}

/*
 * Write one completion.  The sent ones of one claim (one token) go together
 * in one call of the array form of ccrm.mark_sent, with t the first of them
 * on the completed list: one statement per claim, not per message.
 */
static void
write_completion(Transfer *t)
{
	Oid			in;
	Oid			ioparam;
	Datum		v[4];
	char		n[4] = {' ', ' ', ' ', ' '};
	int			rc;

	if (t->written)
		return;
	getTypeInputInfo(token_type, &in, &ioparam);
	v[1] = OidInputFunctionCall(in, t->token, ioparam, -1);
	if (t->ok)
	{
		int			k = 0;
		int			dims[1];
		int			lbs[1] = {1};
		Datum	   *ids;
		Datum	   *pids;
		bool	   *pnulls;

		for (Transfer *u = t; u; u = u->next)
			k += (u->ok && !u->written && strcmp(u->token, t->token) == 0);
		ids = palloc(sizeof(Datum) * k);
		pids = palloc(sizeof(Datum) * k);
		pnulls = palloc(sizeof(bool) * k);
		k = 0;
		for (Transfer *u = t; u; u = u->next)
			if (u->ok && !u->written && strcmp(u->token, t->token) == 0)
			{
				ids[k] = Int64GetDatum(u->id);
				pnulls[k] = u->provider_id == NULL;
				pids[k] = u->provider_id ? CStringGetTextDatum(u->provider_id) : (Datum) 0;
				u->written = true;
				k++;
			}
		dims[0] = k;
		v[0] = PointerGetDatum(construct_array(ids, k, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[2] = PointerGetDatum(construct_md_array(pids, pnulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
		rc = SPI_execute_plan(plan_sent, v, n, false, 0);
	}
	else
	{
		v[0] = Int64GetDatum(t->id);
		t->written = true;
		v[2] = CStringGetTextDatum(t->error ? t->error : "unknown failure");
		v[3] = BoolGetDatum(t->retry);
		rc = SPI_execute_plan(plan_failed, v, n, false, 0);
	}
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not complete message " INT64_FORMAT ": %s", t->id, SPI_result_code_string(rc));
}

/*
 * write_completion in a subtransaction.  A completion that fails (its claim
 * token no longer holds because the lease ran out and another sender took
 * the message, or any other error) is logged and given up: the message
 * stays claimed until its lease ends and is then sent again with the same
 * Message-ID / Idempotency-Key, so nothing is lost, and one bad completion
 * never makes every later pass fail.
 */
static void
write_completion_isolated(Transfer *t)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		write_completion(t);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(WARNING,
				(errmsg("ccrm delivery could not complete message " INT64_FORMAT ": %s",
						t->id, edata->message),
				 errdetail("The message stays claimed until its lease ends, then it is sent again "
						   "with the same Message-ID or Idempotency-Key.")));
		FreeErrorData(edata);
		t->written = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

/* Add what this pass completed to the channel's counters; pause or resume it. */
static void
account(Transfer *t)
{
	Channel    *c = find_channel(t->channel_id);

	if (c == NULL)
		return;
	if (t->ok)
	{
		c->n_sent++;
		c->any_success = true;
		c->fails_since_success = 0;
		return;
	}
	c->n_failed[t->fail]++;
	if (t->fail != FAIL_PERMANENT)
		c->fails_since_success++;
	c->last_class = t->fail;
	if (c->last_error)
		pfree(c->last_error);
	c->last_error = MemoryContextStrdup(channel_cxt, t->error ? t->error : "");
}

static void
write_counters(Channel *c)
{
	Oid			types[12] = {INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	INT4OID, TEXTOID, TEXTOID, BOOLOID};
	Datum		v[12];
	char		n[12];
	bool		isnull;
	int			in_row;
	bool		paused_now;
	Datum		pauseargs[3];
	Oid			pausetypes[3] = {INT4OID, INT4OID, TEXTOID};

	if (c->n_sent == 0 && c->fails_since_success == 0 && !c->any_success &&
		c->last_error == NULL)
		return;
	memset(n, ' ', sizeof(n));
	v[0] = Int32GetDatum(c->id);
	v[1] = Int64GetDatum(c->n_sent);
	for (int k = FAIL_PERMANENT; k < NUM_FAIL_CLASSES; k++)
		v[1 + k] = Int64GetDatum(c->n_failed[k]);
	v[8] = Int32GetDatum(c->fails_since_success);
	v[9] = c->last_error ? CStringGetTextDatum(c->last_error) : (Datum) 0;
	n[9] = c->last_error ? ' ' : 'n';
	v[10] = c->last_error ? CStringGetTextDatum(fail_class_names[c->last_class]) : (Datum) 0;
	n[10] = n[9];
	v[11] = BoolGetDatum(c->any_success);
	if (SPI_execute_with_args(
							  "INSERT INTO ccrm.channel_delivery AS d (channel_id, sent, failed_permanent, failed_temporary,"
							  "       failed_timeout, failed_connect, failed_tls, failed_auth, failures_in_row,"
							  "       last_error, last_error_class, last_error_at, last_sent_at)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
							  "         CASE WHEN $10 IS NOT NULL THEN pg_catalog.now() END,"
							  "         CASE WHEN $2 OPERATOR(pg_catalog.>) 0 THEN pg_catalog.now() END)"
							  " ON CONFLICT (channel_id) DO UPDATE SET"
							  "   sent = d.sent OPERATOR(pg_catalog.+) EXCLUDED.sent,"
							  "   failed_permanent = d.failed_permanent OPERATOR(pg_catalog.+) EXCLUDED.failed_permanent,"
							  "   failed_temporary = d.failed_temporary OPERATOR(pg_catalog.+) EXCLUDED.failed_temporary,"
							  "   failed_timeout = d.failed_timeout OPERATOR(pg_catalog.+) EXCLUDED.failed_timeout,"
							  "   failed_connect = d.failed_connect OPERATOR(pg_catalog.+) EXCLUDED.failed_connect,"
							  "   failed_tls = d.failed_tls OPERATOR(pg_catalog.+) EXCLUDED.failed_tls,"
							  "   failed_auth = d.failed_auth OPERATOR(pg_catalog.+) EXCLUDED.failed_auth,"
							  "   failures_in_row = CASE WHEN $12 THEN EXCLUDED.failures_in_row"
							  "                     ELSE d.failures_in_row OPERATOR(pg_catalog.+) EXCLUDED.failures_in_row END,"
							  "   last_error = COALESCE(EXCLUDED.last_error, d.last_error),"
							  "   last_error_class = COALESCE(EXCLUDED.last_error_class, d.last_error_class),"
							  "   last_error_at = COALESCE(EXCLUDED.last_error_at, d.last_error_at),"
							  "   last_sent_at = COALESCE(EXCLUDED.last_sent_at, d.last_sent_at),"
							  "   paused_until = CASE WHEN $12 THEN NULL ELSE d.paused_until END,"
							  "   paused_reason = CASE WHEN $12 THEN NULL ELSE d.paused_reason END"
							  " RETURNING failures_in_row, COALESCE(paused_until OPERATOR(pg_catalog.>) pg_catalog.now(), false)",
							  12, types, v, n, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not update ccrm.channel_delivery");
	in_row = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	paused_now = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (c->paused && c->any_success)
		ereport(LOG, (errmsg("ccrm delivery resumes channel \"%s\"", c->name)));
	c->failures_in_row = in_row;
	c->paused = paused_now;

	if (ccrm_delivery_pause_after > 0 && in_row >= ccrm_delivery_pause_after && !paused_now &&
		c->fails_since_success > 0)
	{
		char	   *reason = psprintf("%d failures in a row; the last one: %s", in_row,
									  c->last_error ? c->last_error : "");

		pauseargs[0] = Int32GetDatum(c->id);
		pauseargs[1] = Int32GetDatum(ccrm_delivery_pause_time);
		pauseargs[2] = CStringGetTextDatum(reason);
		if (SPI_execute_with_args("UPDATE ccrm.channel_delivery"
								  "   SET paused_until = pg_catalog.now() OPERATOR(pg_catalog.+)"
								  "                      pg_catalog.make_interval(secs => $2),"
								  "       paused_reason = $3"
								  " WHERE channel_id OPERATOR(pg_catalog.=) $1",
								  3, pausetypes, pauseargs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not pause a channel");
		ereport(LOG,
				(errmsg("ccrm delivery pauses channel \"%s\" for %d s", c->name, ccrm_delivery_pause_time),
				 errdetail("%s", reason)));
		c->paused = true;
	}
}

static void
reset_counters(Channel *c)
{
	c->n_sent = 0;
	memset(c->n_failed, 0, sizeof(c->n_failed));
	c->fails_since_success = 0;
	c->any_success = false;
	if (c->last_error)
		pfree(c->last_error);
	c->last_error = NULL;
	c->last_class = FAIL_NONE;
}

/*
 * How many messages a channel claims beyond its free slots, to start them
 * as slots free up without waiting for a pass: none for a channel with a
 * rate limit (its tokens are spent at the claim: claiming ahead would let
 * the starts bunch up), one
 * that failed lately, or before a transfer succeeded; else as many as its
 * transfers end in PREFETCH_WAIT_MS by the average time of one, at most
 * MAX_CLAIM.  A queued message starts well within its lease (start_queued).
 */
static int
prefetch_depth(Channel *c)
{
	if (c->rate > 0 || c->avg_us <= 0 || c->failures_in_row > 0 || c->fails_since_success > 0 || c->paused)
		return 0;
	return (int) Min((double) MAX_CLAIM, c->parallelism * (PREFETCH_WAIT_MS * 1000.0 / c->avg_us));
}

static SPIPlanPtr plan_claim = NULL;

/* Claim for one channel what its slots and tokens allow; the rows become transfers. */
static void
claim_for(Channel *c, TimestampTz now)
{
	int			n;
	Oid			types[3] = {TEXTOID, INT4OID, INTERVALOID};
	Datum		v[3];
	long		lease_s;

	if (c->endpoint == NULL || c->paused || now < c->idle_until)
		return;
	if (c->rate > 0)
	{
		double		burst = Max(1.0, c->rate);

		c->tokens = Min(burst, c->tokens + c->rate * (double) (now - c->refilled) / USECS_PER_SEC);
		c->refilled = now;
	}
	n = c->parallelism + prefetch_depth(c) - c->inflight - c->queued;
	/* after a pause, one message tries the channel */
	if (ccrm_delivery_pause_after > 0 && c->failures_in_row >= ccrm_delivery_pause_after)
		n = c->inflight + c->queued > 0 ? 0 : 1;
	if (c->rate > 0)
		n = Min(n, (int) c->tokens);
	n = Min(n, MAX_CLAIM);
	if (n <= 0)
		return;

	lease_s = (c->connect_ms + c->send_ms) / 1000 + LEASE_SLACK_S;
	v[0] = CStringGetTextDatum(c->name);
	v[1] = Int32GetDatum(n);
	v[2] = DirectFunctionCall3(interval_in, CStringGetDatum(psprintf("%ld seconds", lease_s)),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (plan_claim == NULL)
	{
		/*
		 * The claimed rows' keys by their primary key, one at a time (OFFSET
		 * 0 keeps the subquery apart): a join would be planned for the
		 * function's default 1000 rows, as a hash of the whole outbox.
		 */
		plan_claim = SPI_prepare("SELECT c.*, o.idempotency_key, o.created_at"
								 "  FROM ccrm.claim_messages($1, $2, $3) c,"
								 "       LATERAL (SELECT COALESCE(x.idempotency_key, 'ccrm-outbox-' OPERATOR(pg_catalog.||) x.id) AS idempotency_key,"
								 "                       x.created_at"
								 "                  FROM ccrm.outbox x WHERE x.id OPERATOR(pg_catalog.=) c.id OFFSET 0) o",
								 3, types);
		if (plan_claim == NULL || SPI_keepplan(plan_claim) != 0)
			elog(ERROR, "could not prepare the claim of messages: %s", SPI_result_code_string(SPI_result));
	}
	if (SPI_execute_plan(plan_claim, v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim messages of channel \"%s\"", c->name);
	if (!OidIsValid(token_type) && SPI_processed > 0)
	{
		token_type = SPI_gettypeid(SPI_tuptable->tupdesc, SPI_fnumber(SPI_tuptable->tupdesc, "claim_token"));
		prepare_plans();
	}
	if ((int) SPI_processed < n)
		c->idle_until = TimestampTzPlusMilliseconds(now, ccrm_delivery_poll_interval);
	if (c->rate > 0)
		c->tokens -= SPI_processed;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Transfer   *t = make_transfer(c, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);

		t->next = claimed;
		claimed = t;
	}
}

/*
 * Claims of channels delivered by ccrm that were made before this worker
 * started belong to a worker that is gone (only one runs at a time): end
 * their leases now instead of waiting for them, so a restart after a crash
 * sends at once what was in flight.  Those messages may have reached the
 * server already: they go again with the same Message-ID / Idempotency-Key.
 */
static void
release_dead_claims(void)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		v[1] = {TimestampTzGetDatum(worker_started)};

	if (SPI_execute_with_args("UPDATE ccrm.outbox o SET available_at = pg_catalog.now()"
							  "  FROM ccrm.channel c"
							  " WHERE c.id OPERATOR(pg_catalog.=) o.channel_id AND c.delivery OPERATOR(pg_catalog.=) 'ccrm'"
							  "   AND o.status OPERATOR(pg_catalog.=) 'sending' AND o.claimed_at OPERATOR(pg_catalog.<) $1"
							  "   AND o.available_at OPERATOR(pg_catalog.>) pg_catalog.now()",
							  1, types, v, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not end the claims of a previous delivery worker");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("ccrm delivery takes back %llu message%s a previous worker had in flight",
						(unsigned long long) SPI_processed, SPI_processed == 1 ? "" : "s"),
				 errdetail("They may have reached the server; they are sent again with the same Message-ID or Idempotency-Key.")));
	released = true;
}

static bool
ccrm_is_ready(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("ccrm", true)))
		return false;
	nsp = get_namespace_oid(CCRM_SCHEMA, true);
	return OidIsValid(get_relname_relid("channel_delivery", nsp)) &&
		OidIsValid(get_relname_relid("outbox", nsp));
}

/*
 * One transaction: write the completions, then claim.  On an error nothing
 * claimed is started, and the completions stay for the next pass.
 */
static bool
delivery_pass(void)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		TimestampTz now;

		CcrmSPIConnect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "ccrm delivery: completing and claiming messages");

		if (!ccrm_is_ready())
		{
			if (ready != 0)
				ereport(LOG,
						(errmsg("ccrm delivery is waiting for CREATE EXTENSION ccrm in database \"%s\"",
								get_database_name(MyDatabaseId))));
			ready = 0;
		}
		else
		{
			if (ready != 1)
				ereport(LOG, (errmsg("ccrm delivery started in database \"%s\"",
									 get_database_name(MyDatabaseId))));
			ready = 1;
			if (!released && !RecoveryInProgress())
				release_dead_claims();
			if (woken || channels == NULL ||
				TimestampDifferenceExceeds(loaded_at, GetCurrentTimestamp(), RELOAD_MS))
				load_channels();

			if (completed != NULL)
			{
				if (!OidIsValid(token_type))
					elog(ERROR, "completions without a claim");
				prepare_plans();
				for (Transfer *t = completed; t; t = t->next)
					write_completion_isolated(t);
			}
			for (Transfer *t = completed; t; t = t->next)
				account(t);
			for (int i = 0; i < nchannels; i++)
				write_counters(&channels[i]);

			now = GetCurrentTimestamp();
			if (ccrm_enable_delivery && !RecoveryInProgress())
				for (int i = 0; i < nchannels; i++)
				{
					if (woken)
						channels[i].idle_until = 0;
					claim_for(&channels[i], now);
				}
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	pgstat_report_activity(STATE_IDLE, NULL);

	last_pass = GetCurrentTimestamp();
	for (Transfer *t = completed; t; t = t->next)
		t->written = false;
	if (ok)
	{
		woken = false;
		/* written: forget them */
		while (completed != NULL)
		{
			Transfer   *t = completed;

			completed = t->next;
			free_transfer(t);
		}
		ncompleted = 0;
		for (int i = 0; i < nchannels; i++)
			reset_counters(&channels[i]);
		start_claimed();
	}
	else
	{
		/* not committed: what was claimed was not claimed; the counts are added again next time */
		while (claimed != NULL)
		{
			Transfer   *t = claimed;

			claimed = t->next;
			free_transfer(t);
		}
		for (int i = 0; i < nchannels; i++)
			reset_counters(&channels[i]);
		/* in-flight counts: recount from what runs */
		for (int i = 0; i < nchannels; i++)
			channels[i].inflight = channels[i].queued = 0;
		for (Transfer *t = running; t; t = t->next)
		{
			Channel    *c = find_channel(t->channel_id);

			if (c)
				c->inflight++;
		}
		for (Transfer *t = queue_head; t; t = t->next)
		{
			Channel    *c = find_channel(t->channel_id);

			if (c)
				c->queued++;
		}
	}
	return ok;
}

/* ---------------------------------------------------------------------- */

static void
delivery_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	CcrmWorkerSlotLeave(shared);
}

/* completions are written together: up to this long after the first */
#define COMPLETION_BATCH_MS 10

/*
 * When the next pass is due: at once after a wake-up or with completions
 * enough to batch; else when a channel can claim again (a free slot, its
 * next token, the end of an idle wait) or the configuration is read again.
 */
static TimestampTz
next_pass_at(TimestampTz now)
{
	TimestampTz until = TimestampTzPlusMilliseconds(loaded_at, RELOAD_MS);

	if (ready != 1)
		return woken ? now : TimestampTzPlusMilliseconds(last_pass, ccrm_delivery_poll_interval);
	if (woken || channels == NULL)
		return now;
	if (completed != NULL)
	{
		/*
		 * half of what runs (what may repeat after a crash stays small), or
		 * everything when nothing else runs, or a channel that claims ahead
		 * ran low, or after a short wait
		 */
		if (nrunning == 0 || ncompleted >= Max(1, nrunning / 2))
			return now;
		for (int i = 0; i < nchannels; i++)
			if (channels[i].queued < channels[i].parallelism && prefetch_depth(&channels[i]) > 0 &&
				now >= channels[i].idle_until)
				return now;
		until = Min(until, TimestampTzPlusMilliseconds(completed_since, COMPLETION_BATCH_MS));
	}
	for (int i = 0; i < nchannels && completed == NULL; i++)
	{
		Channel    *c = &channels[i];
		TimestampTz next;

		if (c->endpoint == NULL || c->paused || !ccrm_enable_delivery ||
			c->inflight + c->queued >= c->parallelism + prefetch_depth(c))
			continue;
		if (ccrm_delivery_pause_after > 0 && c->failures_in_row >= ccrm_delivery_pause_after &&
			c->inflight + c->queued > 0)
			continue;
		next = c->idle_until;
		if (c->rate > 0)
		{
			double		have = Min(Max(1.0, c->rate),
								   c->tokens + c->rate * (double) (now - c->refilled) / USECS_PER_SEC);

			if (have < 1)
				next = Max(next, now + (TimestampTz) ((1 - have) / c->rate * USECS_PER_SEC) + 1);
		}
		until = Min(until, next);
	}
	return until;
}

/* How long to wait (ms): until the next pass or libcurl's timer. */
static long
wait_time(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = next_pass_at(now);

	if (curl_deadline != 0 && curl_deadline < until)
		until = curl_deadline;
	if (until <= now)
		return 0;
	return Min((long) ((until - now + 999) / 1000), (long) ccrm_delivery_poll_interval);
}

/* Let libcurl work on what is ready (sockets, or its timer). */
static void
drive_curl(bool socket_ready)
{
	int			still;

	if (socket_ready)
	{
		struct epoll_event evs[64];
		int			n = epoll_wait(epfd, evs, lengthof(evs), 0);

		for (int i = 0; i < n; i++)
		{
			int			flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
				((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
				((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);

			curl_multi_socket_action(multi, evs[i].data.fd, flags, &still);
		}
	}
	if (curl_deadline != 0 && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}
	collect_finished();
}

/* SIGTERM or a move: abort what runs and give it back to the queue, then exit. */
static void
delivery_stop(const char *why)
{
	for (Transfer *t = running; t;)
	{
		Transfer   *next = t->next;

		curl_multi_remove_handle(multi, t->easy);
		t->done = true;
		t->ok = false;
		t->retry = true;
		t->fail = FAIL_CONNECT;
		t->error = MemoryContextStrdup(t->cxt, why);
		note_completed(t);
		t = next;
	}
	running = NULL;
	nrunning = 0;
	if (completed != NULL && ready == 1)
		(void) delivery_pass();
}

void
ccrm_delivery_main(Datum arg)
{
	WaitEventSet *wes;
	char	   *dbname;
	pid_t		other = 0;
	bool		socket_ready = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);

	if (shared != NULL)
	{
		other = CcrmWorkerSlotTake(shared);
		if (other != 0)
		{
			ereport(LOG, (errmsg("ccrm delivery is running already (PID %d)", (int) other)));
			proc_exit(0);
		}
		before_shmem_exit(delivery_detach, (Datum) 0);
	}
	worker_started = GetCurrentTimestamp();
	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (multi = curl_multi_init()) == NULL)
		ereport(ERROR, (errcode(ERRCODE_SYSTEM_ERROR), errmsg("ccrm delivery could not initialise libcurl")));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR, (errcode_for_socket_access(), errmsg("ccrm delivery could not create an epoll set: %m")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 1024L);

	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, epfd, NULL, NULL);
	woken = true;

	for (;;)
	{
		WaitEvent	ev[3];
		int			nev;
		long		timeout;
		bool		pass_ok = true;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
		{
			delivery_stop("delivery stopped before the server answered (shutdown)");
			proc_exit(0);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			woken = true;
			if (strcmp(dbname, ccrm_database_name) != 0)
			{
				ereport(LOG, (errmsg("ccrm delivery leaves database \"%s\" for \"%s\"", dbname, ccrm_database_name)));
				delivery_stop("delivery moved to another database before the server answered");
				proc_exit(0);
			}
		}

		drive_curl(socket_ready);
		socket_ready = false;
		if (next_pass_at(GetCurrentTimestamp()) <= GetCurrentTimestamp())
		{
			pass_ok = delivery_pass();
			/* a new transfer sets libcurl's timer to 0: let it start at once */
			drive_curl(false);
		}
		timeout = pass_ok ? wait_time() : ERROR_PAUSE_MS;
		nev = WaitEventSetWait(wes, timeout, ev, lengthof(ev), PG_WAIT_EXTENSION);
		for (int i = 0; i < nev; i++)
		{
			if (ev[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				woken = true;
			}
			if (ev[i].events & WL_SOCKET_READABLE)
				socket_ready = true;
		}
	}
}

/* Whether this process is the one delivery worker that announced itself. */
bool
CcrmIsDeliveryWorker(void)
{
	if (shared == NULL || MyBgworkerEntry == NULL ||
		strcmp(MyBgworkerEntry->bgw_type, "ccrm delivery") != 0)
		return false;
	return CcrmWorkerSlotHolder(shared) == MyProcPid;
}
