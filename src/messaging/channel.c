/*-------------------------------------------------------------------------
 *
 * channel.c
 *	  Channels (ccrm.channel): a named way to send one medium, email or
 *	  sms, either delivered by ccrm itself (delivery 'ccrm': the delivery
 *	  issue adds endpoint, credentials and limits to the same table) or
 *	  claimed by outside senders (delivery 'external', through
 *	  ccrm.claim_messages).  A message belongs to one channel: the one its
 *	  template, step or campaign names, else the medium's default.  At most
 *	  one default per medium (a unique partial index); making a channel the
 *	  default takes the flag from the previous one in the same statement
 *	  sequence, under the table's row locks.
 *
 *	  The table will hold secrets, so only admins write it (these functions,
 *	  which write as the catalog's owner) and it is read by everyone only
 *	  through the view ccrm.channels, which lists the columns that are not
 *	  secret.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "execute_as_owner.h"
#include "spi_debug.h"
#include "messaging.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(ccrm_create_channel);
PG_FUNCTION_INFO_V1(ccrm_alter_channel);
PG_FUNCTION_INFO_V1(ccrm_drop_channel);

void
MsgCheckMedium(const char *medium, const char *what)
{
	if (medium == NULL || (strcmp(medium, "email") != 0 && strcmp(medium, "sms") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is not a medium", what, medium ? medium : "NULL"),
				 errhint("The media are email and sms.")));
}

static void
check_delivery(const char *delivery)
{
	if (strcmp(delivery, "ccrm") != 0 && strcmp(delivery, "external") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delivery \"%s\" is not known", delivery),
				 errhint("Use external (outside senders claim the messages) or ccrm (ccrm delivers them).")));
}

static void
check_name(const char *name)
{
	bool		ok = name[0] >= 'a' && name[0] <= 'z' && strlen(name) <= 63;

	for (const char *p = name; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid channel name \"%s\"", name),
				 errhint("A channel name is a lower-case word: letters, digits and _, starting with a letter (e.g. sms_main).")));
}

/* SPI connected: the row of a channel by name, or by default of a medium. */
static bool
read_channel(const char *name, const char *medium, MsgChannel *ch, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	args[0] = CStringGetTextDatum(name ? name : medium);
	CcrmExecuteAsOwner(name
					   ? "SELECT id, name, medium, delivery, enabled FROM ccrm.channel WHERE name OPERATOR(pg_catalog.=) $1"
					   : "SELECT id, name, medium, delivery, enabled FROM ccrm.channel"
					   " WHERE medium OPERATOR(pg_catalog.=) $1 AND is_default",
					   1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	ch->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	ch->name = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 2));
	ch->medium = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 3));
	ch->delivery = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 4));
	ch->enabled = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	return true;
}

MsgChannel *
MsgChannelLookup(const char *name, const char *medium)
{
	MemoryContext cxt = CurrentMemoryContext;
	MsgChannel *ch = palloc0(sizeof(MsgChannel));
	bool		found;

	CcrmSPIConnect();
	found = read_channel(name, medium, ch, cxt);
	SPI_finish();
	if (!found && name)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("channel \"%s\" does not exist", name),
				 errhint("See ccrm.channels; an admin creates one with ccrm.create_channel.")));
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("there is no default %s channel", medium),
				 errhint("Name a channel, or have an admin make one the default: "
						 "SELECT ccrm.create_channel('%s', '%s', is_default => true).", medium, medium)));
	if (medium && strcmp(ch->medium, medium) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("channel \"%s\" sends %s, not %s", ch->name, ch->medium, medium),
				 errhint("Choose a channel of medium %s (see ccrm.channels).", medium)));
	return ch;
}

/* SPI connected: clear the default of a medium (but keep that of keep_id). */
static void
clear_default(const char *medium, int32 keep_id)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {CStringGetTextDatum(medium), Int32GetDatum(keep_id)};

	CcrmExecuteAsOwner("UPDATE ccrm.channel SET is_default = false, updated_at = pg_catalog.now()"
					   " WHERE medium OPERATOR(pg_catalog.=) $1 AND is_default AND id OPERATOR(pg_catalog.<>) $2",
					   2, types, args, NULL, SPI_OK_UPDATE);
}

/*
 * ccrm.create_channel(name, medium, delivery DEFAULT 'external',
 *   is_default DEFAULT false, enabled DEFAULT true, description DEFAULT NULL)
 */
Datum
ccrm_create_channel(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *medium;
	char	   *delivery;
	bool		is_default;
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID, BOOLOID, TEXTOID};
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	MsgChannel	existing;
	bool		isnull;
	int32		id;

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("name, medium, delivery, is_default and enabled of a channel must not be null")));
	MsgCheckAdmin("create a channel");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	medium = text_to_cstring(PG_GETARG_TEXT_PP(1));
	delivery = text_to_cstring(PG_GETARG_TEXT_PP(2));
	is_default = PG_GETARG_BOOL(3);
	check_name(name);
	MsgCheckMedium(medium, "medium");
	check_delivery(delivery);

	CcrmSPIConnect();
	if (read_channel(name, NULL, &existing, CurrentMemoryContext))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("channel \"%s\" already exists", name)));
	if (is_default)
		clear_default(medium, 0);
	args[0] = CStringGetTextDatum(name);
	args[1] = CStringGetTextDatum(medium);
	args[2] = CStringGetTextDatum(delivery);
	args[3] = BoolGetDatum(is_default);
	args[4] = PG_GETARG_DATUM(4);
	if (PG_ARGISNULL(5))
		nulls[5] = 'n';
	else
		args[5] = PG_GETARG_DATUM(5);
	CcrmExecuteAsOwner("INSERT INTO ccrm.channel (name, medium, delivery, is_default, enabled, description)"
					   " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
					   6, types, args, nulls, SPI_OK_INSERT_RETURNING);
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT32(id);
}

/*
 * ccrm.alter_channel(channel, enabled, is_default, delivery, description,
 *   new_name): change what is given (NULL: unchanged; description '' clears).
 */
Datum
ccrm_alter_channel(PG_FUNCTION_ARGS)
{
	MsgChannel	ch;
	Oid			types[6] = {INT4OID, BOOLOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("channel must not be null")));
	MsgCheckAdmin("change a channel");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(3))
		check_delivery(text_to_cstring(PG_GETARG_TEXT_PP(3)));
	if (!PG_ARGISNULL(5))
		check_name(text_to_cstring(PG_GETARG_TEXT_PP(5)));

	CcrmSPIConnect();
	if (!read_channel(name, NULL, &ch, CurrentMemoryContext))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("channel \"%s\" does not exist", name)));
	if (!PG_ARGISNULL(2) && PG_GETARG_BOOL(2))
		clear_default(ch.medium, ch.id);
	args[0] = Int32GetDatum(ch.id);
	for (int i = 1; i < 6; i++)
	{
		if (PG_ARGISNULL(i))
			nulls[i] = 'n';
		else
			args[i] = PG_GETARG_DATUM(i);
	}
	CcrmExecuteAsOwner("UPDATE ccrm.channel SET enabled = COALESCE($2, enabled), is_default = COALESCE($3, is_default),"
					   "       delivery = COALESCE($4, delivery),"
					   "       description = CASE WHEN $5 IS NULL THEN description ELSE NULLIF($5, '') END,"
					   "       name = COALESCE($6, name), updated_at = pg_catalog.now()"
					   " WHERE id OPERATOR(pg_catalog.=) $1",
					   6, types, args, nulls, SPI_OK_UPDATE);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ccrm.drop_channel(channel): only while no message or template uses it */
Datum
ccrm_drop_channel(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MsgChannel	ch;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	int64		messages;
	int64		templates;
	bool		isnull;

	MsgCheckAdmin("drop a channel");
	CcrmSPIConnect();
	if (!read_channel(name, NULL, &ch, CurrentMemoryContext))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("channel \"%s\" does not exist", name)));
	args[0] = Int32GetDatum(ch.id);
	args[1] = CStringGetTextDatum(ch.name);
	CcrmExecuteAsOwner("SELECT (SELECT pg_catalog.count(*) FROM ccrm.outbox WHERE channel_id OPERATOR(pg_catalog.=) $1),"
					   "       (SELECT pg_catalog.count(*) FROM ccrm.message_template WHERE channel OPERATOR(pg_catalog.=) $2)",
					   2, types, args, NULL, SPI_OK_SELECT);
	messages = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	templates = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (messages > 0 || templates > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("channel \"%s\" is still in use", ch.name),
				 errdetail(INT64_FORMAT " messages in the outbox and " INT64_FORMAT " message templates use it.",
						   messages, templates),
				 errhint("Disable it instead: SELECT ccrm.alter_channel('%s', enabled => false).", ch.name)));
	CcrmExecuteAsOwner("DELETE FROM ccrm.channel WHERE id OPERATOR(pg_catalog.=) $1", 1, types, args, NULL,
					   SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}
