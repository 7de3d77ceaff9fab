/*-------------------------------------------------------------------------
 *
 * messaging.h
 *	  The messaging layer: channels, message templates, the outbox, SMS
 *	  encoding, quiet hours and recipient addresses.  What one part asks of
 *	  another is declared here; each part's own invariants are in its C
 *	  file's header:
 *
 *		message_rights.c	who may send as whom, claim, own (privilege.h)
 *		channel.c			ccrm.channel: a named way to send a medium
 *		message_template.c	ccrm.message_template, checked on every write
 *		message_render.c	the tag context of messages, rendering records
 *		outbox.c			ccrm.outbox: enqueue, claim, mark, purge
 *		sms.c				GSM 03.38 / UCS-2 segments (ccrm.sms_info)
 *		quiet_hours.c		when no SMS is sent, per zone and country
 *		address.c			email syntax and E.164 phone numbers
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_MESSAGING_H
#define CCRM_MESSAGING_H

#include "postgres.h"

#include "activity_context.h"
#include "datatype/timestamp.h"
#include "template.h"
#include "utils/array.h"
#include "utils/date.h"

/* ---- message_rights.c ---- */
extern void MsgCheckMayUse(Oid role, Oid owner, const char *what, const char *name);
extern void MsgCheckMaySend(const char *channel);
extern void MsgCheckAdmin(const char *action);
extern void MsgRightsInit(void);

/* ---- channel.c ---- */
typedef struct MsgChannel
{
	int32		id;
	char	   *name;
	char	   *medium;			/* "email" or "sms" */
	char	   *delivery;		/* "ccrm" or "external" */
	bool		enabled;
} MsgChannel;

/* by name, or (name NULL) the medium's default; ERROR when there is none */
extern MsgChannel *MsgChannelLookup(const char *name, const char *medium);
extern void MsgCheckMedium(const char *medium, const char *what);

/* ---- sms.c ---- */
typedef struct SmsInfo
{
	bool		gsm7;			/* else UCS-2 */
	int			characters;		/* Unicode code points */
	int			units;			/* septets (GSM-7) or UTF-16 code units */
	int			segments;
} SmsInfo;

extern void SmsMeasure(const char *text, SmsInfo *info);

/* ---- address.c ---- */
/* NULL when valid (*out: the E.164 form), else why not (for the reason) */
extern const char *AddressNormalizePhone(const char *number, const char *country, char **out);
extern const char *AddressCheckEmail(const char *address);
extern bool AddressIsCountryCode(const char *code);

/* ---- quiet_hours.c ---- */
typedef struct MsgQuietHours MsgQuietHours;

extern MsgQuietHours *MsgQuietHoursLoad(void);
extern bool MsgQuietHoursDrop(const MsgQuietHours *qh);
extern const char *MsgQuietHoursDefaultZone(const MsgQuietHours *qh);
/* true when t is inside quiet hours: *end is when they end, *why says which */
extern bool MsgQuietHoursCheck(const MsgQuietHours *qh, TimestampTz t, const char *time_zone,
							const char *country, TimestampTz *end, char **why);
extern void MsgQuietHoursCheckSetting(const char *name, const char *value);

/* ---- message_render.c ---- */

/* Where a message goes. */
typedef enum MsgRecipient
{
	MSG_TO_RECORD,				/* the record (its contact, lead or account) */
	MSG_TO_OWNER,				/* the record's owner (a CRM user) */
	MSG_TO_USER					/* one given CRM user */
} MsgRecipient;

/* Which query fetches a tag source of a message. */
#define MSG_SRC_ROW		0		/* the record query: e, c, a and the receiving user u */
#define MSG_SRC_SENDER	3		/* the sender (alias s over ccrm.crm_user) */
#define MSG_SRC_CAMPAIGN	4	/* the campaign (alias k over ccrm.campaign), read once */

typedef struct MsgSource
{
	CcrmEntity *entity;
	CcrmActivityContext *ac;		/* joins and links; ac->tpl is the message context */
	CcrmTemplate *subject;		/* NULL when there is none */
	CcrmTemplate *body;
	CcrmTemplate *html;
	const char *medium;			/* "email", "sms", or NULL (render only) */
	MsgRecipient recipient;
	int64		user_id;		/* MSG_TO_USER */
	bool		has_sender;
	int64		sender_id;
	char	  **sender_values;	/* slot values of the sender, fetched once */
	bool		lead_as_contact;	/* leads rendered with a contact template (campaigns) */
	char	   *row_sql;		/* the record query over $1 (int8[]) and $2 (user) */
	int			first_slot_col;
} MsgSource;

/* One record, rendered. */
typedef struct MsgRow
{
	int64		record_id;
	bool		contact_null;
	int64		contact_id;
	bool		lead_null;
	int64		lead_id;
	bool		user_null;
	int64		user_id;
	char	   *address;		/* raw, as stored on the record */
	const char *address_field;	/* "email", "mobile", "phone"; NULL: not re-checked */
	bool		opted_out;
	char	   *time_zone;
	char	   *country;
	char	   *subject;		/* rendered; NULL when the template has none */
	char	   *body;
	char	   *html;
} MsgRow;

typedef void (*MsgRowCallback) (MsgRow *row, void *arg);
typedef void (*MsgFlushCallback) (void *arg);

extern CcrmTemplateContext *MsgTemplateContext(CcrmEntity *ent, CcrmActivityContext **ac);
extern MsgSource *MsgSourceCreate(CcrmEntity *ent, const char *subject, const char *body,
								  const char *html, bool literal, const char *medium,
								  MsgRecipient recipient, int64 user_id, bool has_sender,
								  int64 sender_id);
extern void MsgRenderRecords(MsgSource *src, ArrayType *record_ids, MsgRowCallback emit,
							 MsgFlushCallback flush, void *arg);
extern void MsgRenderLiteral(MsgSource *src, MsgRow *row);
/* Leads rendered with a contact template: contact fields a lead has come
 * from the lead, the others (and the account) are NULL, so fallbacks apply. */
extern MsgSource *MsgSourceCreateForLeads(CcrmEntity *contact, const char *subject, const char *body,
										  const char *html, bool has_sender, int64 sender_id);
/* Fill the $campaign-...$ tags of a source from one campaign (read as the caller). */
extern void MsgSourceSetCampaign(MsgSource *src, int64 campaign_id);

/* ---- message_template.c ---- */
typedef struct MsgTemplate
{
	int64		id;
	char	   *name;
	char	   *kind;			/* "email", "sms", "task" */
	char	   *entity;
	char	   *subject;
	char	   *body;
	char	   *html_body;
	bool		has_sender;
	int64		sender_id;
	char	   *reply_to;
	char	   *channel;
	Oid			owner;
} MsgTemplate;

extern MsgTemplate *MsgTemplateLookup(const char *name);

/* ---- outbox.c ---- */

/* A request to enqueue messages; the C API of sequences and campaigns. */
typedef struct MsgEnqueue
{
	MsgChannel *channel;
	MsgSource  *source;
	const char *recipient;		/* explicit address (single messages) or NULL */
	const char *reply_to;
	const char *origin;			/* "manual", "campaign", "sequence" */
	bool		has_origin_id;
	int64		origin_id;
	bool		has_template;
	int64		template_id;
	const char *key;			/* idempotency key of a single message */
	const char *key_prefix;		/* batch: key = prefix || record id */
	bool		key_by_address;	/* batch: key = prefix || the address, trimmed, lower-case */
	TimestampTz not_before;		/* DT_NOBEGIN when none */
	TimestampTz at;
} MsgEnqueue;

/* One message enqueued (or found by its key). */
typedef struct MsgEnqueued
{
	int64		record_id;
	bool		record_null;
	int64		id;
	char	   *status;
	bool		created;
} MsgEnqueued;

/* Enqueue for record_ids (NULL: one message without a record); returns MsgEnqueued *. */
extern List *MsgEnqueueMessages(MsgEnqueue *req, ArrayType *record_ids);
extern void MsgOutboxInit(void);

#endif							/* CCRM_MESSAGING_H */
