/*-------------------------------------------------------------------------
 *
 * delivery_http.c
 *	  The HTTP requests ccrm sends SMS as, and what it reads in the answers.
 *
 * Two formats, chosen per channel (ccrm.channel.sms_format):
 *	- twilio: an application/x-www-form-urlencoded POST of To, From and Body
 *	  (Twilio's Messages resource and the many providers that copy it),
 *	  authenticated with HTTP basic auth (username = account, secret = token);
 *	- json: a generic webhook, a JSON object {"id", "to", "from", "body",
 *	  "encoding", "segments", "idempotency_key"}, authenticated with
 *	  "Authorization: Bearer <secret>" when the channel has a secret.
 * The worker adds "Idempotency-Key: <key>" to every post, so that a provider
 * that honours it sends a repeated post once (delivery_worker.c).
 *
 * Invariants: the bodies are a pure function of the message (a repeat is
 * the same request), and every value is encoded for its format, never
 * pasted in raw.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "delivery.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

/* application/x-www-form-urlencoded of one value (space as %20, which every parser reads) */
static void
append_form_value(StringInfo out, const char *value)
{
	for (const unsigned char *p = (const unsigned char *) (value ? value : ""); *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '-' || *p == '.' || *p == '_' || *p == '~')
			appendStringInfoChar(out, *p);
		else
			appendStringInfo(out, "%%%02X", *p);
	}
}

static void
append_json_field(StringInfo out, const char *key, const char *value, bool first)
{
	if (!first)
		appendStringInfoChar(out, ',');
	escape_json(out, key);
	appendStringInfoChar(out, ':');
	if (value == NULL)
		appendStringInfoString(out, "null");
	else
		escape_json(out, value);
}

void
CcrmSmsBody(StringInfo out, const char **content_type, CcrmSmsFormat format, const CcrmSms *sms)
{
	if (format == CCRM_SMS_TWILIO)
	{
		*content_type = "application/x-www-form-urlencoded";
		appendStringInfoString(out, "To=");
		append_form_value(out, sms->to);
		appendStringInfoString(out, "&From=");
		append_form_value(out, sms->from);
		appendStringInfoString(out, "&Body=");
		append_form_value(out, sms->body);
		return;
	}
	*content_type = "application/json";
	appendStringInfo(out, "{\"id\":" INT64_FORMAT, sms->outbox_id);
	append_json_field(out, "to", sms->to, false);
	append_json_field(out, "from", sms->from, false);
	append_json_field(out, "body", sms->body, false);
	append_json_field(out, "encoding", sms->encoding, false);
	appendStringInfo(out, ",\"segments\":%d", sms->segments);
	append_json_field(out, "idempotency_key", sms->idempotency_key, false);
	appendStringInfoChar(out, '}');
}

/*
 * A JSON text as jsonb, or NULL when it does not parse.  jsonb_in only
 * parses (it takes no lock, buffer or other resource), so its error can be
 * caught and dropped without a subtransaction.
 */
static Jsonb *
parse_json_or_null(char *text)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile jb = NULL;

	PG_TRY();
	{
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		jb = NULL;
	}
	PG_END_TRY();
	return jb;
}

/*
 * The provider's id of the message in a JSON answer: the top-level "sid"
 * (Twilio), "id" or "message_id", a string or a number.  An answer that is
 * not a JSON object has none; that is not an error, the post was accepted.
 */
char *
CcrmSmsProviderId(const char *response, size_t len)
{
	static const char *const keys[] = {"sid", "id", "message_id"};
	char	   *text;
	Jsonb	   *jb;
	char	   *result = NULL;

	if (response == NULL || len == 0 || len > 1024 * 1024)
		return NULL;
	text = pnstrdup(response, len);
	while (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n')
		text++;
	if (*text != '{')
		return NULL;
	jb = parse_json_or_null(text);
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return NULL;
	for (size_t i = 0; i < lengthof(keys) && result == NULL; i++)
	{
		JsonbValue	k;
		JsonbValue *v;

		k.type = jbvString;
		k.val.string.val = (char *) keys[i];
		k.val.string.len = strlen(keys[i]);
		v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
		if (v == NULL)
			continue;
		if (v->type == jbvString && v->val.string.len > 0)
			result = pnstrdup(v->val.string.val, Min(v->val.string.len, 200));
		else if (v->type == jbvNumeric)
			result = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	}
	return result;
}

/* At most 200 bytes of an answer on one line, control characters as spaces. */
char *
CcrmResponseExcerpt(const char *response, size_t len)
{
	StringInfoData buf;
	size_t		n = Min(len, 200);

	initStringInfo(&buf);
	for (size_t i = 0; i < n && response[i]; i++)
		appendStringInfoChar(&buf, (unsigned char) response[i] < ' ' ? ' ' : response[i]);
	/* do not end inside a UTF-8 character */
	while (buf.len > 0 && n < len && ((unsigned char) buf.data[buf.len - 1] & 0xC0) == 0x80)
		buf.data[--buf.len] = '\0';
	if (buf.len > 0 && n < len && ((unsigned char) buf.data[buf.len - 1] & 0x80))
		buf.data[--buf.len] = '\0';
	while (buf.len > 0 && buf.data[buf.len - 1] == ' ')
		buf.data[--buf.len] = '\0';
	if (n < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}
