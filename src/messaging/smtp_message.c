/*-------------------------------------------------------------------------
 *
 * smtp_message.c
 *	  The RFC 5322 message ccrm hands to an SMTP server for one outbox row.
 *
 * Headers: Date, From, To, Reply-To (when there is one), Subject,
 * Message-ID, MIME-Version, then the body: one text/plain part, or
 * multipart/alternative with text/plain and text/html when the row has an
 * HTML body.  Bodies are UTF-8, quoted-printable when they are mostly
 * ASCII, else base64; a Subject or display name that is not plain ASCII
 * becomes RFC 2047 encoded-words ("=?UTF-8?B?...?="), never split inside a
 * character.  Lines end in CRLF; dot-stuffing is libcurl's job.
 *
 * Invariants:
 *	- Deterministic: the same row gives the same bytes, on every attempt and
 *	  after any crash.  Message-ID is <sha256(idempotency key)@domain>, the
 *	  MIME boundary is derived from the same hash, and Date is when the row
 *	  was queued, so a repeat is the same message to the receiving side.
 *	- Nothing from a row can add a header: CR and LF in a subject or name
 *	  become spaces, and an address that is not one plain addr-spec is
 *	  refused (CcrmMailBuild returns why) rather than sent.
 *	- The boundary cannot occur in a body: it starts with "=_", which
 *	  quoted-printable always encodes and base64 never produces.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "delivery.h"

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "utils/datetime.h"

/* longest encoded line in a body (RFC 2045) */
#define BODY_LINE 76
/* bytes of text per base64 body line: 57 give 76 characters */
#define B64_CHUNK 57
/* bytes of text per encoded-word: 45 give 60 base64 characters + 12 around */
#define WORD_CHUNK 45

static void
sha256_hex(const char *text, char *hex)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) text, strlen(text)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest");
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	hex[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
}

/*
 * One addr-spec (local@domain) of printable ASCII without spaces, angle
 * brackets, commas or quotes: what the outbox's address check lets through,
 * checked again here because a header is built from it.
 */
bool
CcrmMailAddressOk(const char *address)
{
	const char *at;

	if (address == NULL || address[0] == '\0' || strlen(address) > 320)
		return false;
	for (const char *p = address; *p; p++)
		if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 127 ||
			strchr("<>,;\"()[]\\", *p) != NULL)
			return false;
	at = strrchr(address, '@');
	return at != NULL && at != address && at[1] != '\0' && strchr(address, '@') == at;
}

char *
CcrmMailMessageId(const char *idempotency_key, const char *domain)
{
	char		hex[2 * PG_SHA256_DIGEST_LENGTH + 1];

	sha256_hex(idempotency_key, hex);
	return psprintf("<%s@%s>", hex, domain && domain[0] ? domain : "ccrm.invalid");
}

static bool
is_ascii_text(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s >= 127 || ((unsigned char) *s < ' ' && *s != '\t'))
			return false;
	return true;
}

/* Length of the UTF-8 character starting at s (1 for a stray byte). */
static int
utf8_len(const unsigned char *s)
{
	int			n = (*s < 0x80) ? 1 : (*s >> 5) == 6 ? 2 : (*s >> 4) == 14 ? 3 : (*s >> 3) == 30 ? 4 : 1;

	for (int i = 1; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 1;
	return n;
}

/* A copy with CR, LF and other control characters turned into spaces. */
static char *
one_line(const char *s)
{
	char	   *copy = pstrdup(s ? s : "");

	for (char *p = copy; *p; p++)
		if ((unsigned char) *p < ' ')
			*p = ' ';
	return copy;
}

/*
 * Append "Name: value" where value is free text: as it is when it is plain
 * ASCII, else as UTF-8 B encoded-words folded onto continuation lines.
 */
static void
append_text_header(StringInfo out, const char *name, const char *value)
{
	char	   *text = one_line(value);
	const char *p = text;
	bool		first = true;

	appendStringInfo(out, "%s: ", name);
	if (is_ascii_text(text))
	{
		appendStringInfo(out, "%s\r\n", text);
		return;
	}
	while (*p || first)
	{
		const char *start = p;
		int			len = 0;
		char		enc[128];
		int			n;

		/* whole characters up to WORD_CHUNK bytes */
		while (*p)
		{
			int			c = utf8_len((const unsigned char *) p);

			if (len + c > WORD_CHUNK && len > 0)
				break;
			len += c;
			p += c;
		}
		n = pg_b64_encode(start, len, enc, sizeof(enc));
		if (n < 0)
			elog(ERROR, "could not encode a header in base64");
		appendStringInfo(out, "%s=?UTF-8?B?%.*s?=", first ? "" : "\r\n ", n, enc);
		first = false;
	}
	appendStringInfoString(out, "\r\n");
}

/* A display name as an RFC 5322 phrase: a quoted-string, or encoded-words. */
static void
append_phrase(StringInfo out, const char *name)
{
	char	   *text = one_line(name);

	if (is_ascii_text(text))
	{
		appendStringInfoChar(out, '"');
		for (const char *p = text; *p; p++)
		{
			if (*p == '"' || *p == '\\')
				appendStringInfoChar(out, '\\');
			appendStringInfoChar(out, *p);
		}
		appendStringInfoChar(out, '"');
	}
	else
	{
		const char *p = text;

		while (*p)
		{
			const char *start = p;
			int			len = 0;
			char		enc[128];
			int			n;

			while (*p)
			{
				int			c = utf8_len((const unsigned char *) p);

				if (len + c > WORD_CHUNK && len > 0)
					break;
				len += c;
				p += c;
			}
			n = pg_b64_encode(start, len, enc, sizeof(enc));
			if (n < 0)
				elog(ERROR, "could not encode a header in base64");
			appendStringInfo(out, "%s=?UTF-8?B?%.*s?=", start == text ? "" : "\r\n ", n, enc);
		}
	}
}

static void
append_address_header(StringInfo out, const char *name, const char *address, const char *display)
{
	appendStringInfo(out, "%s: ", name);
	if (display != NULL && display[0] != '\0')
	{
		append_phrase(out, display);
		appendStringInfo(out, " <%s>\r\n", address);
	}
	else
		appendStringInfo(out, "%s\r\n", address);
}

/* RFC 5322 date-time in UTC: "Tue, 01 Dec 2026 20:21:00 +0000". */
static void
append_date(StringInfo out, TimestampTz at)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(at) || timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range for a Date header");
	appendStringInfo(out, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
					 days[j2day(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday))],
					 tm.tm_mday, months[tm.tm_mon - 1], tm.tm_year,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Lines of a body as CRLF-separated units: CRLF, lone CR and lone LF all end a line. */
static const char *
next_line(const char *p, int *len)
{
	const char *e = p;

	while (*e && *e != '\r' && *e != '\n')
		e++;
	*len = e - p;
	if (*e == '\r' && e[1] == '\n')
		return e + 2;
	if (*e)
		return e + 1;
	return e;
}

/* Quoted-printable (RFC 2045 6.7) of a text, its line breaks as CRLF. */
static void
append_qp(StringInfo out, const char *text)
{
	const char *p = text;

	while (*p)
	{
		int			len;
		const char *line = p;
		int			col = 0;

		p = next_line(p, &len);
		for (int i = 0; i < len; i++)
		{
			unsigned char c = (unsigned char) line[i];
			bool		last = (i == len - 1);
			bool		literal = (c >= 33 && c <= 126 && c != '=') ||
				((c == ' ' || c == '\t') && !last);
			int			width = literal ? 1 : 3;

			/* a soft break keeps every line within BODY_LINE, "=" included */
			if (col + width > BODY_LINE - 1)
			{
				appendStringInfoString(out, "=\r\n");
				col = 0;
			}
			if (literal)
				appendStringInfoChar(out, c);
			else
				appendStringInfo(out, "=%02X", c);
			col += width;
		}
		appendStringInfoString(out, "\r\n");
	}
}

/* base64 of a text in lines of 76 characters, its line breaks as CRLF first. */
static void
append_base64(StringInfo out, const char *text)
{
	StringInfoData crlf;
	const char *p = text;
	char		enc[128];

	initStringInfo(&crlf);
	while (*p)
	{
		int			len;
		const char *line = p;

		p = next_line(p, &len);
		appendBinaryStringInfo(&crlf, line, len);
		appendStringInfoString(&crlf, "\r\n");
	}
	for (int off = 0; off < crlf.len; off += B64_CHUNK)
	{
		int			n = pg_b64_encode(crlf.data + off, Min(B64_CHUNK, crlf.len - off), enc, sizeof(enc));

		if (n < 0)
			elog(ERROR, "could not encode a body in base64");
		appendBinaryStringInfo(out, enc, n);
		appendStringInfoString(out, "\r\n");
	}
	pfree(crlf.data);
}

/* Content-Type and -Transfer-Encoding of one text part, a blank line, the part. */
static void
append_part(StringInfo out, const char *subtype, const char *text)
{
	int			plain = 0;
	int			total = 0;

	for (const char *p = text; *p; p++, total++)
		if ((unsigned char) *p < 127)
			plain++;
	appendStringInfo(out, "Content-Type: text/%s; charset=UTF-8\r\n", subtype);
	/* quoted-printable triples every other byte: base64 is shorter past a third */
	if (total - plain <= total / 3)
	{
		appendStringInfoString(out, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
		append_qp(out, text);
	}
	else
	{
		appendStringInfoString(out, "Content-Transfer-Encoding: base64\r\n\r\n");
		append_base64(out, text);
	}
}

const char *
CcrmMailBuild(StringInfo out, const CcrmMail *mail)
{
	char		hex[2 * PG_SHA256_DIGEST_LENGTH + 1];
	const char *domain = mail->message_id_domain;
	const char *text = mail->text_body ? mail->text_body : "";

	if (!CcrmMailAddressOk(mail->from))
		return psprintf("sender address \"%s\" cannot be used in a header", mail->from ? mail->from : "");
	if (!CcrmMailAddressOk(mail->to))
		return psprintf("recipient address \"%s\" cannot be used in a header", mail->to ? mail->to : "");
	if (mail->reply_to != NULL && mail->reply_to[0] != '\0' && !CcrmMailAddressOk(mail->reply_to))
		return psprintf("reply-to address \"%s\" cannot be used in a header", mail->reply_to);
	if (domain == NULL || domain[0] == '\0')
		domain = strrchr(mail->from, '@') + 1;

	append_date(out, mail->date);
	append_address_header(out, "From", mail->from, mail->from_name);
	append_address_header(out, "To", mail->to, mail->to_name);
	if (mail->reply_to != NULL && mail->reply_to[0] != '\0')
		append_address_header(out, "Reply-To", mail->reply_to, NULL);
	append_text_header(out, "Subject", mail->subject ? mail->subject : "");
	appendStringInfo(out, "Message-ID: %s\r\n", CcrmMailMessageId(mail->idempotency_key, domain));
	appendStringInfoString(out, "MIME-Version: 1.0\r\n");

	if (mail->html_body == NULL)
	{
		append_part(out, "plain", text);
		return NULL;
	}

	/* a boundary of the key's hash, salted so that it is not the Message-ID */
	sha256_hex(psprintf("boundary:%s", mail->idempotency_key), hex);
	hex[32] = '\0';
	appendStringInfo(out, "Content-Type: multipart/alternative; boundary=\"=_%s\"\r\n\r\n", hex);
	appendStringInfoString(out, "This is a multi-part message in MIME format.\r\n");
	appendStringInfo(out, "\r\n--=_%s\r\n", hex);
	append_part(out, "plain", text);
	appendStringInfo(out, "\r\n--=_%s\r\n", hex);
	append_part(out, "html", mail->html_body);
	appendStringInfo(out, "\r\n--=_%s--\r\n", hex);
	return NULL;
}
