/*-------------------------------------------------------------------------
 *
 * delivery.h
 *	  Delivery of the outbox by ccrm itself: the RFC 5322 messages it sends
 *	  over SMTP (smtp_message.c), the HTTP posts it sends SMS as
 *	  (delivery_http.c), the channel configuration check
 *	  (channel_config.c) and the background worker that sends
 *	  (delivery_worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_DELIVERY_H
#define CCRM_DELIVERY_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

/* ---- smtp_message.c ---- */

/* One email as the outbox holds it; NULL for what it lacks. */
typedef struct CcrmMail
{
	const char *from;			/* address */
	const char *from_name;		/* display name, or NULL */
	const char *to;				/* address */
	const char *to_name;		/* display name, or NULL */
	const char *reply_to;		/* address, or NULL */
	const char *subject;
	const char *text_body;
	const char *html_body;		/* NULL: a single text/plain part */
	const char *idempotency_key;	/* gives Message-ID and the MIME boundary */
	const char *message_id_domain;	/* NULL: the From address's domain */
	TimestampTz date;			/* Date: (when the message was queued) */
} CcrmMail;

/* "<sha256hex@domain>" for an idempotency key. */
extern char *CcrmMailMessageId(const char *idempotency_key, const char *domain);

/*
 * The whole message (headers and body, CRLF line ends, not dot-stuffed) into
 * out.  The same CcrmMail always gives the same bytes.  Returns NULL, or an
 * error text when an address cannot go into a header as it is.
 */
extern const char *CcrmMailBuild(StringInfo out, const CcrmMail *mail);

/* Whether an address is one addr-spec that may go into a header unchanged. */
extern bool CcrmMailAddressOk(const char *address);

/* ---- delivery_http.c ---- */

typedef enum CcrmSmsFormat
{
	CCRM_SMS_TWILIO,			/* form post To, From, Body; basic auth */
	CCRM_SMS_JSON				/* JSON webhook; bearer token when a secret is set */
} CcrmSmsFormat;

typedef struct CcrmSms
{
	int64		outbox_id;
	const char *to;
	const char *from;
	const char *body;
	const char *idempotency_key;
	const char *encoding;		/* gsm7 or ucs2, or NULL */
	int			segments;
} CcrmSms;

/* The request body and its Content-Type for one SMS. */
extern void CcrmSmsBody(StringInfo out, const char **content_type, CcrmSmsFormat format,
						const CcrmSms *sms);

/* The provider's message id in a response body (JSON "sid", "id" or "message_id"), or NULL. */
extern char *CcrmSmsProviderId(const char *response, size_t len);

/* A short, single-line excerpt of a response body for an error text. */
extern char *CcrmResponseExcerpt(const char *response, size_t len);

/* ---- delivery_worker.c ---- */

extern bool ccrm_enable_delivery;
extern int	ccrm_delivery_pause_after;
extern int	ccrm_delivery_pause_time;
extern int	ccrm_delivery_poll_interval;

/* _PG_init: GUCs, and with shared_preload_libraries the shared memory */
extern void CcrmDeliveryInit(void);

/* Wake the delivery worker when this transaction commits (new or resumed work). */
extern void CcrmDeliveryWakeAtCommit(void);

/* Whether a delivery worker runs (it announces itself in shared memory). */
extern bool CcrmDeliveryRunning(void);

/* Whether this process is the delivery worker (it may claim channels delivered by ccrm). */
extern bool CcrmIsDeliveryWorker(void);

#endif							/* CCRM_DELIVERY_H */
