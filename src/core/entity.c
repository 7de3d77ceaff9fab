/*-------------------------------------------------------------------------
 *
 * entity.c
 *	  The entity catalog (table ccrm.entity): built-in entities (user,
 *	  account, contact, lead, activity) and user tables plugged in with
 *	  ccrm.register_entity().
 *
 *	  A registered entity is validated against the system catalogs when it
 *	  is registered: the key must be an integer column with a unique,
 *	  non-partial index of its own; link columns must be integers; the
 *	  created column a date or timestamp.  Every lookup re-reads the
 *	  catalogs, so a later ALTER TABLE is noticed at the next use.
 *
 *	  Lookups return structures allocated in the caller's memory context;
 *	  SPI is used only inside the functions here and never leaks out.  The
 *	  lookups run under the caller's search_path, so every type, function
 *	  and operator in their SQL is schema-qualified (pg_catalog.oid,
 *	  OPERATOR(pg_catalog.=)): a schema put in front of pg_catalog cannot
 *	  redirect them.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "tuple_util.h"
#include "quote.h"
#include "spi_debug.h"
#include "entity.h"
#include "sequence.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ccrm_register_entity);
PG_FUNCTION_INFO_V1(ccrm_unregister_entity);

static const char *const maintained_columns[] = {"created_at", "updated_at"};

Oid
CcrmCustomTypeOid(const char *type)
{
	if (strcmp(type, "text") == 0)
		return TEXTOID;
	if (strcmp(type, "integer") == 0)
		return INT8OID;
	if (strcmp(type, "numeric") == 0)
		return NUMERICOID;
	if (strcmp(type, "boolean") == 0)
		return BOOLOID;
	if (strcmp(type, "date") == 0)
		return DATEOID;
	if (strcmp(type, "timestamptz") == 0)
		return TIMESTAMPTZOID;
	return InvalidOid;
}

/* Column fields of a relation in attnum order, skipping attrs. */
static List *
column_fields(CcrmEntity *ent)
{
	Relation	rel = table_open(ent->relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *fields = NIL;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		CcrmField  *f;

		if (att->attisdropped)
			continue;
		if (ent->has_attrs && strcmp(NameStr(att->attname), "attrs") == 0)
			continue;
		f = palloc0(sizeof(CcrmField));
		f->name = pstrdup(NameStr(att->attname));
		f->attnum = att->attnum;
		f->typid = att->atttypid;
		f->typmod = att->atttypmod;
		f->collid = att->attcollation;
		f->notnull = att->attnotnull;
		f->readonly = att->attidentity != '\0' || att->attgenerated != '\0' ||
			strcmp(f->name, ent->key_column) == 0;
		if (ent->builtin)
		{
			for (size_t j = 0; j < lengthof(maintained_columns); j++)
				if (strcmp(f->name, maintained_columns[j]) == 0)
					f->readonly = true;
		}
		fields = lappend(fields, f);
	}
	table_close(rel, AccessShareLock);
	return fields;
}

/*
 * Look an entity up by name.  With missing_ok, returns NULL for an unknown
 * name; otherwise raises an error listing the known entities.
 */
CcrmEntity *
CcrmEntityLookup(const char *name, bool missing_ok)
{
	MemoryContext cxt = CurrentMemoryContext;
	CcrmEntity *ent = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	AttrNumber	attrs_attnum;

	args[0] = CStringGetTextDatum(name);
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT relid::pg_catalog.oid, key_column, contact_column, account_column,"
							  "       owner_column, created_column, builtin"
							  "  FROM ccrm.entity WHERE name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.entity");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		ent = MemoryContextAllocZero(cxt, sizeof(CcrmEntity));
		ent->name = MemoryContextStrdup(cxt, name);
		ent->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		ent->key_column = CcrmColumnCString(tup, desc, 2, cxt);
		ent->contact_column = CcrmColumnCString(tup, desc, 3, cxt);
		ent->account_column = CcrmColumnCString(tup, desc, 4, cxt);
		ent->owner_column = CcrmColumnCString(tup, desc, 5, cxt);
		ent->created_column = CcrmColumnCString(tup, desc, 6, cxt);
		ent->builtin = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	}
	SPI_finish();

	if (ent == NULL)
	{
		if (missing_ok)
			return NULL;
		CcrmReportUnknownEntity(name);
	}

	if (get_rel_name(ent->relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table of entity \"%s\" no longer exists", name),
				 errhint("Unregister it with ccrm.unregister_entity('%s').", name)));

	ent->qualname = CcrmQualifiedRelName(ent->relid);
	attrs_attnum = get_attnum(ent->relid, "attrs");
	ent->has_attrs = ent->builtin && attrs_attnum != InvalidAttrNumber &&
		get_atttype(ent->relid, attrs_attnum) == JSONBOID;
	ent->fields = column_fields(ent);

	if (ent->has_attrs)
	{
		CcrmSPIConnect();
		if (SPI_execute_with_args("SELECT name, type FROM ccrm.custom_field"
								  " WHERE entity OPERATOR(pg_catalog.=) $1 ORDER BY name",
								  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.custom_field");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MemoryContext old = MemoryContextSwitchTo(cxt);
			CcrmField  *f = palloc0(sizeof(CcrmField));

			f->name = CcrmColumnCString(tup, desc, 1, cxt);
			f->custom_type = CcrmColumnCString(tup, desc, 2, cxt);
			f->is_custom = true;
			f->attnum = attrs_attnum;
			f->typid = CcrmCustomTypeOid(f->custom_type);
			f->typmod = -1;
			f->collid = f->typid == TEXTOID ? DEFAULT_COLLATION_OID : InvalidOid;
			ent->fields = lappend(ent->fields, f);
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}
	return ent;
}

/*
 * A field catalogue for a table that is not an entity (e.g. ccrm.target_group
 * for $targetgroup-name$ tags): its columns, no custom fields, no links.
 */
CcrmEntity *
CcrmEntityForRelation(const char *name, Oid relid, const char *key_column)
{
	CcrmEntity *ent = palloc0(sizeof(CcrmEntity));

	ent->name = pstrdup(name);
	ent->relid = relid;
	ent->qualname = CcrmQualifiedRelName(relid);
	ent->key_column = pstrdup(key_column);
	ent->fields = column_fields(ent);
	return ent;
}

List *
CcrmEntityNames(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names = NIL;

	CcrmSPIConnect();
	if (SPI_execute("SELECT name FROM ccrm.entity ORDER BY name", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.entity");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		names = lappend(names, CcrmColumnCString(SPI_tuptable->vals[i],
											  SPI_tuptable->tupdesc, 1, cxt));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return names;
}

void
CcrmReportUnknownEntity(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("entity \"%s\" does not exist", name),
			 errhint("Valid entities are: %s.  Plug in a table of your own with ccrm.register_entity().",
					 CcrmJoinNames(CcrmEntityNames()))));
}

const CcrmField *
CcrmFieldLookup(const CcrmEntity *ent, const char *field)
{
	ListCell   *lc;

	foreach(lc, ent->fields)
	{
		CcrmField  *f = lfirst(lc);

		if (strcmp(f->name, field) == 0)
			return f;
	}
	return NULL;
}

List *
CcrmFieldNames(const CcrmEntity *ent)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, ent->fields)
		names = lappend(names, ((CcrmField *) lfirst(lc))->name);
	return names;
}

void
CcrmReportUnknownField(const CcrmEntity *ent, const char *field, const char *where)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 where ? errmsg("%s: entity \"%s\" has no field \"%s\"", where, ent->name, field)
			 : errmsg("entity \"%s\" has no field \"%s\"", ent->name, field),
			 errhint("Fields of %s are: %s.", ent->name, CcrmJoinNames(CcrmFieldNames(ent)))));
}

/*
 * SQL expression reading a field of the row aliased "alias", typed as the
 * field: a quoted column reference, or the attrs value cast to its type.
 */
char *
CcrmFieldSql(const CcrmField *field, const char *alias)
{
	if (!field->is_custom)
		return psprintf("%s.%s", quote_identifier(alias), quote_identifier(field->name));
	if (field->typid == TEXTOID)
		return psprintf("(%s.attrs OPERATOR(pg_catalog.->>) %s)",
						quote_identifier(alias), quote_literal_cstr(field->name));
	return psprintf("((%s.attrs OPERATOR(pg_catalog.->>) %s)::%s)",
					quote_identifier(alias), quote_literal_cstr(field->name),
					CcrmQualifiedTypeName(field->typid, -1));
}

/*
 * Follow a link ("account", "owner", "contact") from an entity.  Returns
 * the linked entity and sets *fk_column to the column of ent holding its
 * key; NULL when ent has no such link.
 */
CcrmEntity *
CcrmEntityLink(const CcrmEntity *ent, const char *link, const char **fk_column)
{
	const char *col = NULL;
	const char *target = link;

	if (strcmp(link, "account") == 0)
		col = ent->account_column;
	else if (strcmp(link, "contact") == 0)
		col = ent->contact_column;
	else if (strcmp(link, "owner") == 0)
	{
		col = ent->owner_column;
		target = "user";
	}
	if (col == NULL)
		return NULL;
	if (fk_column)
		*fk_column = col;
	return CcrmEntityLookup(target, false);
}

List *
CcrmEntityLinkNames(const CcrmEntity *ent)
{
	List	   *names = NIL;

	if (ent->account_column)
		names = lappend(names, "account");
	if (ent->contact_column)
		names = lappend(names, "contact");
	if (ent->owner_column)
		names = lappend(names, "owner");
	return names;
}

/* ----------------------------------------------------------------
 * ccrm.register_entity / ccrm.unregister_entity
 * ---------------------------------------------------------------- */

static bool
is_integer_type(Oid typid)
{
	return typid == INT2OID || typid == INT4OID || typid == INT8OID;
}

/* Check a column exists and has one of the accepted types. */
static AttrNumber
check_column(Oid relid, const char *relname, const char *role, const char *column,
			 bool (*type_ok) (Oid), const char *expected)
{
	AttrNumber	attnum = get_attnum(relid, column);
	Oid			typid;

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s column \"%s\" does not exist in table %s", role, column, relname)));
	typid = get_atttype(relid, attnum);
	if (!type_ok(typid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s column \"%s\" of table %s has type %s", role, column, relname,
						format_type_be(typid)),
				 errhint("The %s column must be of type %s.", role, expected)));
	return attnum;
}

static bool
is_time_type(Oid typid)
{
	return typid == DATEOID || typid == TIMESTAMPOID || typid == TIMESTAMPTZOID;
}

/* The key needs a unique, non-partial, single-column index of its own. */
static bool
has_unique_index_on(Oid relid, AttrNumber attnum)
{
	Relation	rel = table_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisunique && idx->indnkeyatts == 1 &&
			idx->indkey.values[0] == attnum &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL))
			found = true;
		ReleaseSysCache(tup);
		if (found)
			break;
	}
	table_close(rel, AccessShareLock);
	return found;
}

Datum
ccrm_register_entity(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			relid;
	char	   *relname;
	char		relkind;
	const char *key;
	const char *cols[4] = {NULL, NULL, NULL, NULL};
	static const char *const roles[4] = {"contact", "account", "owner", "created"};
	Oid			argtypes[7] = {TEXTOID, OIDOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	AttrNumber	keyatt;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, table and key of an entity must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	relid = PG_GETARG_OID(1);
	key = NameStr(*PG_GETARG_NAME(2));
	for (int i = 0; i < 4; i++)
		if (!PG_ARGISNULL(3 + i))
			cols[i] = NameStr(*PG_GETARG_NAME(3 + i));

	if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name) ||
		name[0] < 'a' || name[0] > 'z' || strlen(name) > 63)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid entity name \"%s\"", name),
				 errhint("An entity name starts with a lower-case letter and has only lower-case letters, digits and underscores.")));
	if (CcrmEntityLookup(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("entity \"%s\" already exists", name),
				 errhint("Choose another name, or unregister the existing entity first.")));

	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	relname = CcrmQualifiedRelName(relid);
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relname),
				 errhint("Only ordinary and partitioned tables can be registered as entities.")));
	if (get_rel_namespace(relid) == get_namespace_oid(CCRM_SCHEMA, false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table %s belongs to ccrm and cannot be registered", relname)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind), get_rel_name(relid));

	keyatt = check_column(relid, relname, "key", key, is_integer_type,
						  "smallint, integer or bigint");
	if (!has_unique_index_on(relid, keyatt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("key column \"%s\" of table %s is not unique", key, relname),
				 errhint("Give the key column a primary key or a unique index of its own.")));
	for (int i = 0; i < 3; i++)
		if (cols[i])
			check_column(relid, relname, roles[i], cols[i], is_integer_type,
						 "smallint, integer or bigint");
	if (cols[3])
		check_column(relid, relname, roles[3], cols[3], is_time_type,
					 "date, timestamp or timestamptz");

	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(relid);
	values[2] = PG_GETARG_DATUM(2);
	for (int i = 0; i < 4; i++)
	{
		values[3 + i] = cols[i] ? PG_GETARG_DATUM(3 + i) : (Datum) 0;
		nulls[3 + i] = cols[i] ? ' ' : 'n';
	}

	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT 1 FROM ccrm.entity WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
							  1, &argtypes[1], &values[1], NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.entity");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table %s is already registered as an entity", relname)));
	if (SPI_execute_with_args("INSERT INTO ccrm.entity (name, relid, key_column, contact_column,"
							  " account_column, owner_column, created_column)"
							  " VALUES ($1, $2::pg_catalog.regclass, $3, $4, $5, $6, $7)",
							  7, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into ccrm.entity");
	/* changed keys reach active sequences within seconds (sequence_run.c) */
	SeqWatchTable(name, relid, key, true);
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
ccrm_unregister_entity(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	bool		builtin;
	Oid			relid;
	char	   *groups = NULL;

	args[0] = CStringGetTextDatum(name);
	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT builtin, relid::pg_catalog.oid FROM ccrm.entity"
							  " WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.entity");
	if (SPI_processed == 0)
		CcrmReportUnknownEntity(name);
	builtin = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (builtin)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("built-in entity \"%s\" cannot be unregistered", name)));
	/* A table dropped since registration can be unregistered by anyone allowed to. */
	if (get_rel_name(relid) != NULL && !pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));

	if (SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
							  "  FROM ccrm.target_group WHERE entity OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.target_group");
	if (SPI_processed == 1)
		groups = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (groups != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("entity \"%s\" is used by target groups", name),
				 errdetail("Target groups over %s: %s.", name, groups),
				 errhint("Drop those groups first.")));
	if (SPI_execute("SELECT pg_catalog.to_regclass('ccrm.sequence') IS NOT NULL", true, 1) == SPI_OK_SELECT &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
	{
		if (SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
								  "  FROM ccrm.sequence WHERE entity OPERATOR(pg_catalog.=) $1",
								  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.sequence");
		groups = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (groups != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("entity \"%s\" is used by follow-up sequences", name),
					 errdetail("Sequences over %s: %s.", name, groups),
					 errhint("Drop those sequences first.")));
	}
	SeqWatchTable(name, relid, NULL, false);
	if (SPI_execute_with_args("DELETE FROM ccrm.entity WHERE name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from ccrm.entity");
	SPI_finish();
	PG_RETURN_VOID();
}
