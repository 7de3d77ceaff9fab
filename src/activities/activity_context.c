/*-------------------------------------------------------------------------
 *
 * activity_context.c
 *	  The context of activities generated for a target group's members:
 *	  which $entity-field$ tags exist, and how a member reaches its contact,
 *	  account and owners.
 *
 *	  For a group of			tags							links
 *	  contact					contact, account				the contact, its account
 *	  account					account							the account
 *	  lead						lead							the lead
 *	  registered entity E		E, contact and account when E	E's contact and account
 *								links to them					columns (or the contact's
 *																account)
 *	  and always targetgroup (the group) and user (the assignee).
 *
 *	  Also the SQL functions that check and preview templates in this
 *	  context: ccrm.template_tags and ccrm.render_template.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "spi_debug.h"
#include "activity_context.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(ccrm_template_tags);
PG_FUNCTION_INFO_V1(ccrm_render_template);

CcrmActivityContext *
CcrmActivityContextBuild(CcrmEntity *ent)
{
	CcrmActivityContext *ac = palloc0(sizeof(CcrmActivityContext));
	StringInfoData joins;
	const char *contact = NULL;		/* alias of the contact, if any */
	const char *account = NULL;
	Oid			tg = get_relname_relid("target_group", get_namespace_oid(CCRM_SCHEMA, false));

	if (ent->builtin && strcmp(ent->name, "contact") != 0 && strcmp(ent->name, "account") != 0 &&
		strcmp(ent->name, "lead") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("activities cannot be planned for groups of %s", ent->name),
				 errhint("Activity plans work on groups of contacts, accounts, leads and registered entities.")));

	ac->entity = ent;
	ac->tpl = CcrmTemplateContextCreate(psprintf("target groups of %s", ent->name));
	CcrmTemplateAddSource(ac->tpl, "targetgroup", CcrmEntityForRelation("targetgroup", tg, "id"),
						  "g", ACTIVITY_SRC_GROUP);
	CcrmTemplateAddSource(ac->tpl, "user", CcrmEntityLookup("user", false), "u", ACTIVITY_SRC_USER);
	CcrmTemplateAddSource(ac->tpl, ent->name, ent, "e", ACTIVITY_SRC_ROW);

	initStringInfo(&joins);
	if (strcmp(ent->name, "contact") == 0)
		contact = "e";
	else if (strcmp(ent->name, "account") == 0)
		account = "e";
	else if (!ent->builtin && ent->contact_column)
	{
		contact = "c";
		appendStringInfo(&joins, " LEFT JOIN ccrm.contact c ON c.id OPERATOR(pg_catalog.=) e.%s",
						 quote_identifier(ent->contact_column));
		CcrmTemplateAddSource(ac->tpl, "contact", CcrmEntityLookup("contact", false), "c", ACTIVITY_SRC_ROW);
	}
	if (account == NULL && (ent->account_column || contact))
	{
		account = "a";
		appendStringInfo(&joins, " LEFT JOIN ccrm.account a ON a.id OPERATOR(pg_catalog.=) %s.%s",
						 ent->account_column ? "e" : contact,
						 quote_identifier(ent->account_column ? ent->account_column : "account_id"));
		CcrmTemplateAddSource(ac->tpl, "account", CcrmEntityLookup("account", false), "a", ACTIVITY_SRC_ROW);
	}

	ac->joins = joins.data;
	ac->key = psprintf("e.%s::pg_catalog.int8", quote_identifier(ent->key_column));
	ac->contact_id = contact ? psprintf("%s.id", contact) : "NULL::pg_catalog.int8";
	ac->account_id = account ? psprintf("%s.id", account) : "NULL::pg_catalog.int8";
	ac->lead_id = strcmp(ent->name, "lead") == 0 ? "e.id" : "NULL::pg_catalog.int8";
	ac->contact_owner = contact ? psprintf("%s.owner_id", contact) : NULL;
	ac->account_owner = account ? psprintf("%s.owner_id", account) : NULL;
	return ac;
}

/* ccrm.template_tags(template, entity): check a template, list its tags */
Datum
ccrm_template_tags(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *source = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CcrmActivityContext *ac = CcrmActivityContextBuild(CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)), false));
	CcrmTemplate *tpl = CcrmTemplateParse(ac->tpl, source, false, "template");

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < tpl->nparts; i++)
	{
		CcrmTemplatePart *part = &tpl->parts[i];
		CcrmTemplateSlot *slot;
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (part->slot < 0)
			continue;
		slot = list_nth(ac->tpl->slots, part->slot);
		values[0] = CStringGetTextDatum(part->tag);
		values[1] = CStringGetTextDatum(slot->source->name);
		values[2] = CStringGetTextDatum(slot->field->name);
		if (part->fallback)
			values[3] = CStringGetTextDatum(part->fallback);
		else
			nulls[3] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Fill values[] for the slots of one source group from a one-row query; the
 * values are copied into cxt (SPI connected: the strings SPI returns go with
 * SPI_finish, so a caller that uses them after it passes its own context).
 */
void
CcrmActivityFetchSlots(CcrmActivityContext *ac, int group, const char *from, Oid argtype, Datum arg,
			char **values, MemoryContext cxt)
{
	StringInfoData sql;
	ListCell   *lc;
	List	   *used = NIL;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT true");
	foreach(lc, ac->tpl->slots)
	{
		CcrmTemplateSlot *slot = lfirst(lc);

		if (slot->source->group != group)
			continue;
		appendStringInfo(&sql, ", %s", CcrmTemplateSlotSql(slot));
		used = lappend(used, slot);
	}
	if (used == NIL)
		return;
	appendStringInfo(&sql, " FROM %s", from);

	if (SPI_execute_with_args(sql.data, 1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read template values");
	if (SPI_processed == 0)
		return;
	foreach(lc, used)
	{
		CcrmTemplateSlot *slot = lfirst(lc);
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 foreach_current_index(lc) + 2);

		values[slot->index] = v ? MemoryContextStrdup(cxt, v) : NULL;
	}
}

/* ccrm.render_template(template, entity, record_id, user_id, group, html) */
Datum
ccrm_render_template(PG_FUNCTION_ARGS)
{
	MemoryContext caller;
	CcrmActivityContext *ac;
	CcrmTemplate *tpl;
	char	  **values;
	StringInfoData out;
	int			nestlevel;
	CcrmEntity *ent;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("template, entity, record_id and html must not be null")));
	ent = CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)), false);
	ac = CcrmActivityContextBuild(ent);
	tpl = CcrmTemplateParse(ac->tpl, text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_BOOL(5), "template");
	values = palloc0(sizeof(char *) * (list_length(ac->tpl->slots) + 1));
	caller = CurrentMemoryContext;

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	{
		char	   *from = psprintf("%s e%s WHERE e.%s OPERATOR(pg_catalog.=) $1", ent->qualname, ac->joins,
									quote_identifier(ent->key_column));
		Oid			argtype = INT8OID;
		Datum		arg = PG_GETARG_DATUM(2);

		if (SPI_execute_with_args(psprintf("SELECT 1 FROM %s", from), 1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read %s", ent->qualname);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("%s " INT64_FORMAT " does not exist", ent->name, PG_GETARG_INT64(2))));
		CcrmActivityFetchSlots(ac, ACTIVITY_SRC_ROW, from, argtype, arg, values, caller);
		if (!PG_ARGISNULL(3))
			CcrmActivityFetchSlots(ac, ACTIVITY_SRC_USER, "ccrm.crm_user u WHERE u.id OPERATOR(pg_catalog.=) $1",
						INT8OID, PG_GETARG_DATUM(3), values, caller);
		if (!PG_ARGISNULL(4))
			CcrmActivityFetchSlots(ac, ACTIVITY_SRC_GROUP, "ccrm.target_group g WHERE g.name OPERATOR(pg_catalog.=) $1",
						TEXTOID, PG_GETARG_DATUM(4), values, caller);
	}
	CcrmPopSearchPath(nestlevel);
	SPI_finish();

	initStringInfo(&out);
	CcrmTemplateRender(tpl, values, &out);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}
