/*-------------------------------------------------------------------------
 *
 * custom_field.c
 *	  Typed custom fields of the built-in entities.  Values live in the
 *	  row's attrs jsonb under the field's name; ccrm.define_field() declares
 *	  the name and type, and the row trigger ccrm.entity_row_trigger()
 *	  checks every write:
 *
 *	  - a key that is not a declared field is an error;
 *	  - a value must convert with its type's input function (JSON null is
 *		SQL NULL);
 *	  - values are stored in one canonical JSON form per type, so that
 *		reading them back (attrs->>'f')::type never depends on DateStyle:
 *		integer/numeric as JSON numbers, boolean as JSON booleans, text as
 *		strings, date and timestamptz as ISO 8601 strings.
 *
 *	  The same trigger maintains updated_at.
 *
 *	  Field definitions are read once per statement and kept in the
 *	  trigger's fn_extra (which lives as long as the statement), so bulk
 *	  loads pay one catalog lookup, and a definition changed by an earlier
 *	  statement is always seen.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "quote.h"
#include "privilege.h"
#include "spi_debug.h"
#include "entity.h"
#include "type_input.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ccrm_define_field);
PG_FUNCTION_INFO_V1(ccrm_drop_field);
PG_FUNCTION_INFO_V1(ccrm_entity_row_trigger);

/* Field definitions of one entity, cached for the statement in fn_extra. */
typedef struct FieldDefs
{
	int			n;
	char	  **names;
	Oid		   *types;
} FieldDefs;

static const char *
custom_type_name(Oid typid)
{
	switch (typid)
	{
		case TEXTOID:
			return "text";
		case INT8OID:
			return "integer";
		case NUMERICOID:
			return "numeric";
		case BOOLOID:
			return "boolean";
		case DATEOID:
			return "date";
		case TIMESTAMPTZOID:
			return "timestamptz";
	}
	return "?";
}

/*
 * Convert one JSON value to the canonical form for a field of type typid.
 * Returns true when the canonical form differs from the input.
 */
static bool
canonical_value(const char *entity, const char *field, Oid typid,
				const JsonbValue *in, JsonbValue *out)
{
	char	   *str;
	char	   *where;

	switch (in->type)
	{
		case jbvNull:
			*out = *in;
			return false;
		case jbvString:
			str = pnstrdup(in->val.string.val, in->val.string.len);
			break;
		case jbvNumeric:
			str = DatumGetCString(DirectFunctionCall1(numeric_out,
													  NumericGetDatum(in->val.numeric)));
			break;
		case jbvBool:
			str = in->val.boolean ? "true" : "false";
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("custom field \"%s\" of %s takes a single %s value, not a JSON array or object",
							field, entity, custom_type_name(typid))));
	}

	where = psprintf("custom field \"%s\" (%s) of %s", field, custom_type_name(typid), entity);
	switch (typid)
	{
		case TEXTOID:
			out->type = jbvString;
			out->val.string.val = str;
			out->val.string.len = strlen(str);
			break;
		case INT8OID:
			{
				Datum		i = CcrmTypeInput(INT8OID, -1, str, where, NULL);

				out->type = jbvNumeric;
				out->val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, i));
				break;
			}
		case NUMERICOID:
			{
				Numeric		n = DatumGetNumeric(CcrmTypeInput(NUMERICOID, -1, str, where, NULL));

				if (numeric_is_nan(n) || numeric_is_inf(n))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
							 errmsg("custom field \"%s\" of %s cannot hold \"%s\"", field, entity, str),
							 errhint("Numeric custom fields take finite numbers.")));
				out->type = jbvNumeric;
				out->val.numeric = n;
				break;
			}
		case BOOLOID:
			out->type = jbvBool;
			out->val.boolean = DatumGetBool(CcrmTypeInput(BOOLOID, -1, str, where, NULL));
			break;
		case DATEOID:
		case TIMESTAMPTZOID:
			{
				Datum		d = CcrmTypeInput(typid, -1, str, where, NULL);
				char	   *iso = JsonEncodeDateTime(NULL, d, typid, NULL);

				out->type = jbvString;
				out->val.string.val = iso;
				out->val.string.len = strlen(iso);
				break;
			}
		default:
			elog(ERROR, "unexpected custom field type %u", typid);
	}
	if (out->type != in->type)
		return true;
	if (out->type == jbvString)
		return out->val.string.len != in->val.string.len ||
			memcmp(out->val.string.val, in->val.string.val, in->val.string.len) != 0;
	if (out->type == jbvNumeric)
		return strcmp(str, DatumGetCString(DirectFunctionCall1(numeric_out,
															   NumericGetDatum(out->val.numeric)))) != 0;
	return false;
}

static FieldDefs *
load_field_defs(const char *entity, MemoryContext cxt)
{
	FieldDefs  *defs = MemoryContextAllocZero(cxt, sizeof(FieldDefs));
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(entity);
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT name, type FROM ccrm.custom_field"
							  " WHERE entity OPERATOR(pg_catalog.=) $1 ORDER BY name",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.custom_field");
	defs->n = SPI_processed;
	defs->names = MemoryContextAlloc(cxt, sizeof(char *) * (defs->n + 1));
	defs->types = MemoryContextAlloc(cxt, sizeof(Oid) * (defs->n + 1));
	for (int i = 0; i < defs->n; i++)
	{
		defs->names[i] = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 1));
		defs->types[i] = CcrmCustomTypeOid(SPI_getvalue(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 2));
	}
	SPI_finish();
	return defs;
}

static char *
field_def_names(const FieldDefs *defs)
{
	List	   *names = NIL;

	for (int i = 0; i < defs->n; i++)
		names = lappend(names, defs->names[i]);
	return names ? CcrmJoinNames(names) : pstrdup("(none)");
}

/*
 * Check an attrs document against the definitions.  Returns NULL when it is
 * already canonical, else the canonical document.
 */
static Jsonb *
check_attrs(const char *entity, const FieldDefs *defs, Jsonb *attrs)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;
	bool		changed = false;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(attrs))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("attrs of %s must be a JSON object", entity)));
	if (JB_ROOT_COUNT(attrs) == 0)
		return NULL;

	it = JsonbIteratorInit(&attrs->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_END_OBJECT:
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_KEY:
				key = pnstrdup(v.val.string.val, v.val.string.len);
				pushJsonbValue(&state, WJB_KEY, &v);
				break;
			case WJB_VALUE:
				{
					int			i;
					JsonbValue	out;

					for (i = 0; i < defs->n; i++)
						if (strcmp(defs->names[i], key) == 0)
							break;
					if (i == defs->n)
						ereport(ERROR,
								(errcode(ERRCODE_UNDEFINED_COLUMN),
								 errmsg("custom field \"%s\" is not defined for entity \"%s\"", key, entity),
								 errdetail("Defined custom fields of %s: %s.", entity, field_def_names(defs)),
								 errhint("Declare it first with ccrm.define_field('%s', '%s', type).",
										 entity, key)));
					if (canonical_value(entity, key, defs->types[i], &v, &out))
						changed = true;
					pushJsonbValue(&state, WJB_VALUE, &out);
					break;
				}
			default:
				elog(ERROR, "unexpected jsonb token %d", tok);
		}
	}
	return changed ? JsonbValueToJsonb(res) : NULL;
}

Datum
ccrm_entity_row_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	const char *entity;
	int			attrs_att;
	int			updated_att;
	int			cols[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			ncols = 0;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event) ||
		td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.entity_row_trigger() must be a BEFORE INSERT OR UPDATE row trigger with the entity name as argument")));

	entity = td->tg_trigger->tgargs[0];
	desc = RelationGetDescr(td->tg_relation);
	tuple = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : td->tg_newtuple;
	attrs_att = SPI_fnumber(desc, "attrs");
	updated_att = SPI_fnumber(desc, "updated_at");

	if (attrs_att > 0 && !CcrmRestoring())
	{
		Datum		attrs = heap_getattr(tuple, attrs_att, desc, &isnull);
		bool		check = !isnull;

		if (check && TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		{
			bool		oldnull;
			Datum		old = heap_getattr(td->tg_trigtuple, attrs_att, desc, &oldnull);

			check = oldnull || !datumIsEqual(old, attrs, false, -1);
		}
		if (check)
		{
			Jsonb	   *jb = DatumGetJsonbP(attrs);

			if (JB_ROOT_COUNT(jb) > 0 || !JB_ROOT_IS_OBJECT(jb))
			{
				FieldDefs  *defs = fcinfo->flinfo->fn_extra;
				Jsonb	   *fixed;

				if (defs == NULL)
					defs = fcinfo->flinfo->fn_extra = load_field_defs(entity, fcinfo->flinfo->fn_mcxt);
				fixed = check_attrs(entity, defs, jb);
				if (fixed)
				{
					cols[ncols] = attrs_att;
					values[ncols++] = JsonbPGetDatum(fixed);
				}
			}
		}
	}

	if (updated_att > 0 && TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		cols[ncols] = updated_att;
		values[ncols++] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	}

	if (ncols > 0)
		tuple = heap_modify_tuple_by_cols(tuple, desc, ncols, cols, values, nulls);
	return PointerGetDatum(tuple);
}

/* ----------------------------------------------------------------
 * ccrm.define_field / ccrm.drop_field
 * ---------------------------------------------------------------- */

static CcrmEntity *
entity_with_attrs(const char *entity)
{
	CcrmEntity *ent = CcrmEntityLookup(entity, false);

	if (!ent->has_attrs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("entity \"%s\" has no custom fields", entity),
				 errhint("Custom fields exist for the built-in entities; a registered table's columns are its fields.")));
	return ent;
}

Datum
ccrm_define_field(PG_FUNCTION_ARGS)
{
	char	   *entity = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	CcrmEntity *ent = entity_with_attrs(entity);
	const CcrmField *existing;
	Oid			typid = CcrmCustomTypeOid(type);
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	StringInfoData sql;

	if (name[0] == '\0' || strlen(name) > 63 ||
		strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name) ||
		(name[0] >= '0' && name[0] <= '9'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid custom field name \"%s\"", name),
				 errhint("A field name has lower-case letters, digits and underscores and does not start with a digit.")));
	if (typid == InvalidOid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid custom field type \"%s\"", type),
				 errhint("Valid types are: text, integer, numeric, boolean, date, timestamptz.")));
	existing = CcrmFieldLookup(ent, name);
	if (strcmp(name, "attrs") == 0 || (existing && !existing->is_custom))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("%s already has a column named \"%s\"", entity, name)));
	if (existing)
	{
		if (strcmp(existing->custom_type, type) == 0)
		{
			ereport(NOTICE,
					(errmsg("custom field \"%s\" of %s is already defined as %s, skipping",
							name, entity, type)));
			PG_RETURN_VOID();
		}
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("custom field \"%s\" of %s is already defined as %s",
						name, entity, existing->custom_type),
				 errhint("To change its type, drop it with ccrm.drop_field() and define it again.")));
	}

	args[0] = CStringGetTextDatum(entity);
	args[1] = CStringGetTextDatum(name);
	args[2] = CStringGetTextDatum(type);
	CcrmSPIConnect();
	if (SPI_execute_with_args("INSERT INTO ccrm.custom_field (entity, name, type) VALUES ($1, $2, $3)",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into ccrm.custom_field");

	/*
	 * Values already stored under this name must fit the type; those that
	 * fit but are not canonical are rewritten (which also bumps updated_at).
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s::pg_catalog.int8, attrs OPERATOR(pg_catalog.->) $1 FROM %s"
					 " WHERE attrs OPERATOR(pg_catalog.?) $1",
					 quote_identifier(ent->key_column), ent->qualname);
	if (SPI_execute_with_args(sql.data, 1, &argtypes[1], &args[1], NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", ent->qualname);
	{
		SPITupleTable *rows = SPI_tuptable;
		uint64		nrows = SPI_processed;

		resetStringInfo(&sql);
		appendStringInfo(&sql, "UPDATE %s SET attrs = pg_catalog.jsonb_set(attrs, ARRAY[$1], $2)"
						 " WHERE %s OPERATOR(pg_catalog.=) $3",
						 ent->qualname, quote_identifier(ent->key_column));
		for (uint64 i = 0; i < nrows; i++)
		{
			bool		isnull;
			int64		key = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			Jsonb	   *val = DatumGetJsonbP(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));
			JsonbValue	in;
			JsonbValue	out;
			char	   *row = psprintf("%s %lld", entity, (long long) key);

			if (!JsonbExtractScalar(&val->root, &in))
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("custom field \"%s\" of %s takes a single %s value, not a JSON array or object",
								name, row, type)));
			if (canonical_value(row, name, typid, &in, &out))
			{
				Oid			uargtypes[3] = {TEXTOID, JSONBOID, INT8OID};
				Datum		uargs[3];

				uargs[0] = args[1];
				uargs[1] = JsonbPGetDatum(JsonbValueToJsonb(&out));
				uargs[2] = Int64GetDatum(key);
				if (SPI_execute_with_args(sql.data, 3, uargtypes, uargs, NULL, false, 0) != SPI_OK_UPDATE)
					elog(ERROR, "could not update %s", ent->qualname);
			}
		}
	}
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
ccrm_drop_field(PG_FUNCTION_ARGS)
{
	char	   *entity = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	CcrmEntity *ent = entity_with_attrs(entity);
	const CcrmField *field = CcrmFieldLookup(ent, name);
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	char	   *sql;
	uint64		removed;

	if (field == NULL || !field->is_custom)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("custom field \"%s\" of %s does not exist", name, entity)));

	args[0] = CStringGetTextDatum(entity);
	args[1] = CStringGetTextDatum(name);
	CcrmSPIConnect();
	if (SPI_execute_with_args("DELETE FROM ccrm.custom_field WHERE entity OPERATOR(pg_catalog.=) $1"
							  " AND name OPERATOR(pg_catalog.=) $2",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from ccrm.custom_field");
	sql = psprintf("UPDATE %s SET attrs = attrs OPERATOR(pg_catalog.-) $1"
				   " WHERE attrs OPERATOR(pg_catalog.?) $1", ent->qualname);
	if (SPI_execute_with_args(sql, 1, &argtypes[1], &args[1], NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update %s", ent->qualname);
	removed = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) removed);
}
