/*-------------------------------------------------------------------------
 *
 * channel_config.c
 *	  The delivery configuration of a channel (endpoint, credentials,
 *	  sender, CA file, limits), checked whenever a row of ccrm.channel is
 *	  written, and ccrm.resume_channel().
 *
 * What can be known when a row is saved is an ERROR then, and the row is
 * not saved: an endpoint that is not a URL, a scheme the medium cannot use
 * (email: smtp:// with STARTTLS or smtps://; SMS: https://), credentials
 * that are half there, a password that would cross the network in clear
 * (smtp:// without require_tls), an SMS channel without sender or format,
 * a CA file that does not exist or cannot be read by the server.  What
 * shows only when sending (a host that does not answer, a certificate that
 * does not verify, a password the server refuses) is a failure of the
 * message with the reason, counted against the channel (delivery_worker.c).
 *
 * A channel delivered by ccrm without an endpoint is allowed: it is "not
 * configured", its messages wait, and ccrm.delivery_stats() says why.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "privilege.h"
#include "spi_debug.h"
#include "delivery.h"

#include <curl/curl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(ccrm_channel_delivery_check);
PG_FUNCTION_INFO_V1(ccrm_resume_channel);

/* A column of the new row as text, NULL when it is null or empty. */
static char *
column(HeapTuple tup, TupleDesc desc, const char *name)
{
	int			attno = SPI_fnumber(desc, name);
	char	   *value;

	if (attno <= 0)
		elog(ERROR, "ccrm.channel has no column \"%s\"", name);
	value = SPI_getvalue(tup, desc, attno);
	if (value != NULL && value[0] == '\0')
		return NULL;
	return value;
}

static void
bad_config(const char *channel, int code, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(code),
			 errmsg("channel \"%s\": %s", channel, msg),
			 hint ? errhint("%s", hint) : 0));
}

/* Scheme and host of an endpoint URL, parsed by libcurl as it will be when sending. */
static void
check_endpoint(const char *channel, const char *medium, const char *endpoint)
{
	CURLU	   *url = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	CURLUcode	rc;
	bool		email = strcmp(medium, "email") == 0;
	char	   *msg = NULL;

	if (url == NULL)
		elog(ERROR, "out of memory");
	rc = curl_url_set(url, CURLUPART_URL, endpoint, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(url, CURLUPART_SCHEME, &scheme, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(url, CURLUPART_HOST, &host, 0);
	if (rc != CURLUE_OK)
		msg = psprintf("endpoint \"%s\" is not a URL (%s)", endpoint, curl_url_strerror(rc));
	else if (email && strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0)
		msg = psprintf("endpoint scheme \"%s\" cannot deliver email", scheme);
	else if (!email && strcmp(scheme, "https") != 0)
		msg = psprintf("endpoint scheme \"%s\" cannot deliver SMS", scheme);
	if (scheme)
		curl_free(scheme);
	if (host)
		curl_free(host);
	curl_url_cleanup(url);
	if (msg != NULL)
		bad_config(channel, ERRCODE_INVALID_PARAMETER_VALUE, msg,
				   email ? "Use smtp://host:587 (STARTTLS) or smtps://host:465 (TLS from the start)."
				   : "Use the provider's https:// URL; SMS credentials never go over plain HTTP.");
}

static void
check_ca_file(const char *channel, const char *path)
{
	struct stat st;

	if (!is_absolute_path(path))
		bad_config(channel, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("CA file \"%s\" is not an absolute path", path),
				   "The delivery worker does not run in the client's directory: give the full path.");
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("channel \"%s\": CA file \"%s\" cannot be used: %m", channel, path),
				 errhint("The file must exist on the database server and be readable by its operating system user.")));
	if (!S_ISREG(st.st_mode) || access(path, R_OK) != 0)
		bad_config(channel, ERRCODE_INSUFFICIENT_PRIVILEGE,
				   psprintf("CA file \"%s\" is not a file the server can read", path),
				   "The file must exist on the database server and be readable by its operating system user.");
}

/*
 * BEFORE INSERT OR UPDATE ON ccrm.channel: the delivery configuration of
 * the new row is usable, or the statement fails.
 */
Datum
ccrm_channel_delivery_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *name,
			   *medium,
			   *delivery,
			   *endpoint,
			   *username,
			   *secret,
			   *sender,
			   *ca_file,
			   *sms_format,
			   *require_tls;
	bool		email;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "ccrm_channel_delivery_check must be a BEFORE ROW trigger");
	tup = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	if (CcrmRestoring())
		return PointerGetDatum(tup);

	name = column(tup, desc, "name");
	medium = column(tup, desc, "medium");
	delivery = column(tup, desc, "delivery");
	endpoint = column(tup, desc, "endpoint");
	username = column(tup, desc, "username");
	secret = column(tup, desc, "secret");
	sender = column(tup, desc, "sender");
	ca_file = column(tup, desc, "ca_file");
	sms_format = column(tup, desc, "sms_format");
	require_tls = column(tup, desc, "require_tls");
	if (name == NULL || medium == NULL)
		return PointerGetDatum(tup);	/* the table's own constraints say what is wrong */
	email = strcmp(medium, "email") == 0;

	if (!email && sms_format == NULL && delivery != NULL && strcmp(delivery, "ccrm") == 0 && endpoint != NULL)
		bad_config(name, ERRCODE_NOT_NULL_VIOLATION, "an SMS channel delivered by ccrm needs sms_format",
				   "Set sms_format to 'twilio' (form post with basic auth) or 'json' (a JSON webhook).");
	if (email && sms_format != NULL)
		bad_config(name, ERRCODE_INVALID_PARAMETER_VALUE, "sms_format applies to SMS channels only",
				   "Set sms_format to NULL for an email channel.");
	if (endpoint != NULL)
		check_endpoint(name, medium, endpoint);
	if (ca_file != NULL)
		check_ca_file(name, ca_file);

	/* credentials: all or nothing, and never in clear */
	if (username != NULL && secret == NULL)
		bad_config(name, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("username \"%s\" is set but the secret is missing", username),
				   email ? "Set secret to the SMTP password, or clear username to send without AUTH."
				   : "Set secret to the provider's auth token.");
	if (email && secret != NULL && username == NULL)
		bad_config(name, ERRCODE_INVALID_PARAMETER_VALUE, "a secret is set but the username is missing",
				   "SMTP AUTH needs both: set username, or clear secret.");
	if (email && username != NULL && endpoint != NULL && strncmp(endpoint, "smtp://", 7) == 0 &&
		require_tls != NULL && strcmp(require_tls, "f") == 0)
		bad_config(name, ERRCODE_INVALID_PARAMETER_VALUE,
				   "the password would be sent in clear: smtp:// without require_tls",
				   "Set require_tls to true (STARTTLS), use smtps://, or send without AUTH.");
	if (!email && sms_format != NULL && strcmp(sms_format, "twilio") == 0 && endpoint != NULL &&
		(username == NULL || secret == NULL))
		bad_config(name, ERRCODE_INVALID_PARAMETER_VALUE, "a twilio channel needs username and secret",
				   "Set username to the account SID and secret to its auth token.");
	if (!email && endpoint != NULL && sender == NULL)
		bad_config(name, ERRCODE_NOT_NULL_VIOLATION, "an SMS channel delivered by ccrm needs a sender",
				   "Set sender to the number (E.164) or sender id the provider sends from.");
	if (sender != NULL && email && !CcrmMailAddressOk(sender))
		bad_config(name, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("sender \"%s\" is not an email address", sender),
				   "Give one address such as crm@example.com, without a display name.");
	return PointerGetDatum(tup);
}

/*
 * ccrm.resume_channel(channel): end a pause now; the failure count starts
 * again, so the channel is used at its full parallelism.  Admins only
 * (EXECUTE is revoked from PUBLIC).
 */
Datum
ccrm_resume_channel(PG_FUNCTION_ARGS)
{
	text	   *channel = PG_GETARG_TEXT_PP(0);
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(channel)};
	bool		resumed;

	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT 1 FROM ccrm.channel WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.channel");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("channel \"%s\" does not exist", text_to_cstring(channel)),
				 errhint("See ccrm.delivery_status for the channels.")));
	if (SPI_execute_with_args("UPDATE ccrm.channel_delivery d"
							  "   SET paused_until = NULL, paused_reason = NULL, failures_in_row = 0"
							  "  FROM ccrm.channel c"
							  " WHERE c.id OPERATOR(pg_catalog.=) d.channel_id AND c.name OPERATOR(pg_catalog.=) $1"
							  "   AND (d.paused_until IS NOT NULL OR d.failures_in_row OPERATOR(pg_catalog.>) 0)",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update ccrm.channel_delivery");
	resumed = SPI_processed > 0;
	SPI_finish();
	CcrmDeliveryWakeAtCommit();
	PG_RETURN_BOOL(resumed);
}
