/*-------------------------------------------------------------------------
 *
 * filter.c
 *	  The filter compiler: a JSON filter over an entity becomes one SQL
 *	  query, checked against the catalogs before anything runs.
 *
 *	  Grammar (every node is a JSON object with exactly one of these forms):
 *		{"all": [node, ...]}  {"any": [node, ...]}  {"not": node}
 *		{"field": "path", "op": "...", "value": ...}
 *		{"in_group": "name" | id}
 *		{"in_campaign": "name" | id}
 *		{"has_activity": {"kind": ..., "status": ..., "within_last": "30 days"}}
 *	  A field path is a field of the entity (column or custom field) or a
 *	  chain of links ending in one: "account.name", "owner.email",
 *	  "account.owner.username".
 *
 *	  Safety: identifiers go through quote_identifier, values are converted
 *	  with the field type's input function when compiling (a bad value fails
 *	  here, naming its path) and re-emitted as quoted literals with an
 *	  explicit schema-qualified cast; operators are written OPERATOR(ns.op)
 *	  with the namespace of the operator the type's btree opclass provides.
 *	  The code a condition runs through its field's type (input and output
 *	  functions, domain CHECK constraints, the comparison operator, the cast
 *	  to text) must be allowed to run as the current user, the role that
 *	  compiles the filter to refresh, count or preview (code_trust.c);
 *	  filters are compiled at every use, so this is checked at every use.
 *	  Values are read and written with DateStyle ISO, IntervalStyle postgres
 *	  and the configured ccrm time zone, so the compiled SQL means the same
 *	  whatever the session that later runs it.
 *
 *	  Semantics are two-valued, as a CRM user expects: "ne", "not_in",
 *	  "is_null" and "not" match records whose value is missing; every other
 *	  condition needs a value.  Through a link, a condition holds when the
 *	  linked record exists and satisfies it ("ne" and friends: when no linked
 *	  record has the excluded value).
 *
 *	  Every error names the path of the offending part of the filter, e.g.
 *	  "all[2].not.field".
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "quote.h"
#include "guc_level.h"
#include "json_util.h"
#include "code_trust.h"
#include "spi_debug.h"
#include "filter.h"
#include "instant.h"
#include "setting.h"
#include "target_group.h"
#include "type_input.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(ccrm_filter_sql);
PG_FUNCTION_INFO_V1(ccrm_filter_count);
PG_FUNCTION_INFO_V1(ccrm_filter_preview);

typedef enum FilterOp
{
	OP_EQ, OP_NE, OP_LT, OP_LTE, OP_GT, OP_GTE, OP_IN, OP_NOT_IN, OP_BETWEEN,
	OP_CONTAINS, OP_STARTS_WITH, OP_ENDS_WITH, OP_IS_NULL, OP_NOT_NULL,
	OP_IS_TRUE, OP_IS_FALSE, OP_OLDER_THAN, OP_WITHIN_LAST
} FilterOp;

typedef enum ValueShape
{
	V_NONE,						/* no "value" allowed */
	V_SCALAR,					/* one value of the field's type */
	V_LIST,						/* non-empty array of values */
	V_PAIR,						/* [low, high] */
	V_TEXT,						/* a string to search for */
	V_INTERVAL					/* a positive interval */
} ValueShape;

/* What an op needs from the field's type. */
typedef enum TypeNeed
{
	NEED_EQ,					/* an equality operator */
	NEED_ORDER,					/* btree ordering */
	NEED_STRING,				/* a string type */
	NEED_BOOL,					/* boolean */
	NEED_TIME,					/* date, timestamp or timestamptz */
	NEED_ANY
} TypeNeed;

typedef struct OpInfo
{
	const char *name;
	FilterOp	op;
	ValueShape	shape;
	TypeNeed	need;
	bool		negated;		/* true also where the value is missing */
} OpInfo;

static const OpInfo ops[] = {
	{"eq", OP_EQ, V_SCALAR, NEED_EQ, false},
	{"ne", OP_NE, V_SCALAR, NEED_EQ, true},
	{"lt", OP_LT, V_SCALAR, NEED_ORDER, false},
	{"lte", OP_LTE, V_SCALAR, NEED_ORDER, false},
	{"gt", OP_GT, V_SCALAR, NEED_ORDER, false},
	{"gte", OP_GTE, V_SCALAR, NEED_ORDER, false},
	{"in", OP_IN, V_LIST, NEED_EQ, false},
	{"not_in", OP_NOT_IN, V_LIST, NEED_EQ, true},
	{"between", OP_BETWEEN, V_PAIR, NEED_ORDER, false},
	{"contains", OP_CONTAINS, V_TEXT, NEED_STRING, false},
	{"starts_with", OP_STARTS_WITH, V_TEXT, NEED_STRING, false},
	{"ends_with", OP_ENDS_WITH, V_TEXT, NEED_STRING, false},
	{"is_null", OP_IS_NULL, V_NONE, NEED_ANY, true},
	{"not_null", OP_NOT_NULL, V_NONE, NEED_ANY, false},
	{"is_true", OP_IS_TRUE, V_NONE, NEED_BOOL, false},
	{"is_false", OP_IS_FALSE, V_NONE, NEED_BOOL, false},
	{"older_than", OP_OLDER_THAN, V_INTERVAL, NEED_TIME, false},
	{"within_last", OP_WITHIN_LAST, V_INTERVAL, NEED_TIME, false},
};

static const char *const node_keys = "all, any, not, field (with op and value), in_group, in_campaign, has_activity";

typedef struct FilterCompiler
{
	int			next_alias;		/* for unique subquery aliases */
	char	   *time_zone;		/* configured zone, quoted literal */
	char	   *now;			/* the instant "now" means: SQL text */
	bool		collect_groups; /* record in_group references? */
	List	   *groups;			/* int64 * of groups used by in_group */
} FilterCompiler;

static void compile_node(FilterCompiler *fc, StringInfo out, const CcrmEntity *ent,
						 const char *alias, JsonbContainer *node, const char *path);

/* ----------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------- */

static void
filter_error(int sqlstate, const char *path, const char *msg, const char *hint) pg_attribute_noreturn();

static void
filter_error(int sqlstate, const char *path, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("invalid filter at %s: %s", path, msg),
			 hint ? errhint("%s", hint) : 0));
}

static char *
op_names(void)
{
	List	   *names = NIL;

	for (size_t i = 0; i < lengthof(ops); i++)
		names = lappend(names, (char *) ops[i].name);
	return CcrmJoinNames(names);
}

/* path + "." + key, or key at the root */
static char *
subpath(const char *path, const char *key)
{
	return path[0] ? psprintf("%s.%s", path, key) : pstrdup(key);
}

static char *
jsonb_string(const JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Value of a key of an object container, or NULL. */
static JsonbValue *
get_key(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/* Text form of a scalar JSON value, for a type input function. */
static char *
scalar_text(const JsonbValue *v, const char *path)
{
	switch (v->type)
	{
		case jbvString:
			return jsonb_string(v);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvNull:
			filter_error(ERRCODE_NULL_VALUE_NOT_ALLOWED, path, "value must not be null",
						 "Use the op is_null or not_null to test for a missing value.");
		default:
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, path,
						 psprintf("expected a single value, got %s", CcrmJsonbTypeName(v)), NULL);
	}
}

/* "OPERATOR(ns.op)" for an operator OID. */
static char *
operator_sql(Oid opno)
{
	HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Form_pg_operator op;
	char	   *res;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	op = (Form_pg_operator) GETSTRUCT(tup);
	res = psprintf("OPERATOR(%s.%s)",
				   quote_identifier(get_namespace_name(op->oprnamespace)),
				   NameStr(op->oprname));
	ReleaseSysCache(tup);
	return res;
}

/* The comparison operator of a type for an op, or InvalidOid. */
static Oid
type_operator(Oid typid, FilterOp op)
{
	TypeCacheEntry *tc = lookup_type_cache(typid, TYPECACHE_EQ_OPR | TYPECACHE_BTREE_OPFAMILY);
	int			strategy;

	switch (op)
	{
		case OP_EQ:
		case OP_NE:
		case OP_IN:
		case OP_NOT_IN:
			return tc->eq_opr;
		case OP_LT:
			strategy = BTLessStrategyNumber;
			break;
		case OP_LTE:
			strategy = BTLessEqualStrategyNumber;
			break;
		case OP_GT:
			strategy = BTGreaterStrategyNumber;
			break;
		case OP_GTE:
		case OP_BETWEEN:
			strategy = BTGreaterEqualStrategyNumber;
			break;
		default:
			return InvalidOid;
	}
	if (!OidIsValid(tc->btree_opf))
		return InvalidOid;
	return get_opfamily_member(tc->btree_opf, tc->btree_opintype, tc->btree_opintype, strategy);
}

/*
 * Convert a value with the type's input function (CcrmTypeInput); an error
 * keeps the input function's SQLSTATE and names the filter path.
 */
static Datum
convert_value(const char *text, Oid typid, const char *path)
{
	return CcrmTypeInput(typid, -1, text, psprintf("invalid filter at %s", path),
						 psprintf("Write the value as %s accepts it; dates and times in ISO 8601, e.g. 2024-05-31 or 2024-05-31 14:00+03.",
								  format_type_be(typid)));
}

/*
 * Append a checked value as 'text'::type, in its canonical output form.
 * The cast carries no typmod: a longer value must not be truncated into a
 * match against a varchar(n) column.
 */
static void
append_value(StringInfo out, const JsonbValue *v, Oid typid, const char *path)
{
	Oid			outfunc;
	bool		isvarlena;
	Datum		d = convert_value(scalar_text(v, path), typid, path);

	getTypeOutputInfo(typid, &outfunc, &isvarlena);
	CcrmAppendLiteral(out, OidOutputFunctionCall(outfunc, d), typid, -1);
}

/* A positive interval for older_than / within_last, as a literal. */
static char *
interval_value(const JsonbValue *v, const char *path)
{
	Interval   *iv;
	Interval	zero = {0, 0, 0};

	if (v->type != jbvString)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, path,
					 psprintf("expected an interval such as \"30 days\", got %s", CcrmJsonbTypeName(v)),
					 NULL);
	iv = DatumGetIntervalP(convert_value(jsonb_string(v), INTERVALOID, path));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(iv),
										  IntervalPGetDatum(&zero))) <= 0)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, path, "the interval must be positive",
					 "Write it like \"30 days\" or \"2 months\".");
	return psprintf("%s::pg_catalog.interval",
					quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out,
																		   IntervalPGetDatum(iv)))));
}

/* LIKE pattern with %, _ and the escape character taken literally. */
static char *
like_pattern(const char *text, FilterOp op)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (op != OP_STARTS_WITH)
		appendStringInfoChar(&buf, '%');
	for (const char *p = text; *p; p++)
	{
		if (*p == '%' || *p == '_' || *p == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *p);
	}
	if (op != OP_ENDS_WITH)
		appendStringInfoChar(&buf, '%');
	return buf.data;
}

/* ----------------------------------------------------------------
 * Field conditions
 * ---------------------------------------------------------------- */

static const OpInfo *
lookup_op(const char *name)
{
	for (size_t i = 0; i < lengthof(ops); i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

static bool
type_fits(const OpInfo *op, Oid typid)
{
	char		category;
	bool		preferred;

	switch (op->need)
	{
		case NEED_ANY:
			return true;
		case NEED_EQ:
		case NEED_ORDER:
			return OidIsValid(type_operator(typid, op->op));
		case NEED_STRING:
			get_type_category_preferred(typid, &category, &preferred);
			return category == TYPCATEGORY_STRING;
		case NEED_BOOL:
			return typid == BOOLOID;
		case NEED_TIME:
			return typid == DATEOID || typid == TIMESTAMPOID || typid == TIMESTAMPTZOID;
	}
	return false;
}

/* Ops a type supports, for hints. */
static char *
ops_for_type(Oid typid)
{
	List	   *names = NIL;

	for (size_t i = 0; i < lengthof(ops); i++)
		if (type_fits(&ops[i], typid))
			names = lappend(names, (char *) ops[i].name);
	return CcrmJoinNames(names);
}

/*
 * The condition on one value expression "expr" of type typid, in its
 * positive form (for a negated op, the condition it negates).
 */
static void
append_positive(FilterCompiler *fc, StringInfo out, const char *expr, Oid typid,
				const OpInfo *op, JsonbValue *value, const char *vpath)
{
	switch (op->op)
	{
		case OP_EQ:
		case OP_NE:
		case OP_LT:
		case OP_LTE:
		case OP_GT:
		case OP_GTE:
			appendStringInfo(out, "%s %s ", expr, operator_sql(type_operator(typid, op->op)));
			append_value(out, value, typid, vpath);
			break;
		case OP_IN:
		case OP_NOT_IN:
			{
				JsonbIterator *it = JsonbIteratorInit(value->val.binary.data);
				JsonbValue	elem;
				JsonbIteratorToken tok;
				int			i = 0;

				appendStringInfo(out, "%s %s ANY (ARRAY[", expr,
								 operator_sql(type_operator(typid, op->op)));
				while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
				{
					if (tok != WJB_ELEM)
						continue;
					if (i > 0)
						appendStringInfoString(out, ", ");
					append_value(out, &elem, typid, psprintf("%s[%d]", vpath, i));
					i++;
				}
				appendStringInfoString(out, "])");
				break;
			}
		case OP_BETWEEN:
			{
				JsonbValue *lo = getIthJsonbValueFromContainer(value->val.binary.data, 0);
				JsonbValue *hi = getIthJsonbValueFromContainer(value->val.binary.data, 1);
				char	   *ge = operator_sql(type_operator(typid, OP_GTE));
				char	   *le = operator_sql(type_operator(typid, OP_LTE));

				appendStringInfo(out, "(%s %s ", expr, ge);
				append_value(out, lo, typid, psprintf("%s[0]", vpath));
				appendStringInfo(out, " AND %s %s ", expr, le);
				append_value(out, hi, typid, psprintf("%s[1]", vpath));
				appendStringInfoChar(out, ')');
				break;
			}
		case OP_CONTAINS:
		case OP_STARTS_WITH:
		case OP_ENDS_WITH:
			appendStringInfo(out, "%s::pg_catalog.text OPERATOR(pg_catalog.~~*) %s", expr,
							 quote_literal_cstr(like_pattern(jsonb_string(value), op->op)));
			break;
		case OP_IS_NULL:
		case OP_NOT_NULL:
			appendStringInfo(out, "%s IS NOT NULL", expr);
			break;
		case OP_IS_TRUE:
			appendStringInfo(out, "%s IS TRUE", expr);
			break;
		case OP_IS_FALSE:
			appendStringInfo(out, "%s IS FALSE", expr);
			break;
		case OP_OLDER_THAN:
		case OP_WITHIN_LAST:
			{
				/* local wall-clock "now" in the configured zone */
				char	   *local_now = psprintf("(%s AT TIME ZONE %s)", fc->now, fc->time_zone);
				char	   *iv = interval_value(value, vpath);
				char	   *limit;
				char	   *upper;

				if (typid == DATEOID)
				{
					limit = psprintf("((%s OPERATOR(pg_catalog.-) %s)::pg_catalog.date)", local_now, iv);
					upper = psprintf("(%s::pg_catalog.date)", local_now);
				}
				else if (typid == TIMESTAMPOID)
				{
					limit = psprintf("(%s OPERATOR(pg_catalog.-) %s)", local_now, iv);
					upper = local_now;
				}
				else
				{
					limit = psprintf("((%s OPERATOR(pg_catalog.-) %s) AT TIME ZONE %s)",
									 local_now, iv, fc->time_zone);
					upper = fc->now;
				}
				if (op->op == OP_OLDER_THAN)
					appendStringInfo(out, "%s OPERATOR(pg_catalog.<) %s", expr, limit);
				else
					appendStringInfo(out, "(%s OPERATOR(pg_catalog.>=) %s AND %s OPERATOR(pg_catalog.<=) %s)",
									 expr, limit, expr, upper);
				break;
			}
	}
}

/*
 * The code a condition on a field runs, as the current user (who refreshes,
 * counts or previews): the input and output functions and CHECK constraints
 * of the field's type (values become literals of that type), its comparison
 * operator, its cast to text for the text ops.  Code of a role that cannot
 * act as the current user is refused (code_trust.c), before any of it runs.
 */
static void
check_field_code(Oid typid, const OpInfo *op, const char *field, const char *fpath)
{
	Oid			runner = GetUserId();
	char	   *problem = CcrmTypeCodeProblem(typid, runner, true);
	Oid			funcs[2] = {InvalidOid, InvalidOid};

	if (problem == NULL)
	{
		switch (op->need)
		{
			case NEED_EQ:
			case NEED_ORDER:
				funcs[0] = get_opcode(type_operator(typid, op->op));
				if (op->op == OP_BETWEEN)
					funcs[1] = get_opcode(type_operator(typid, OP_LTE));
				break;
			case NEED_STRING:
				if (find_coercion_pathway(TEXTOID, typid, COERCION_EXPLICIT, &funcs[0]) != COERCION_PATH_FUNC)
					funcs[0] = InvalidOid;
				break;
			default:
				break;
		}
		for (int i = 0; i < 2 && problem == NULL; i++)
			if (OidIsValid(funcs[i]))
				problem = CcrmFunctionCodeProblem(funcs[i], runner);
	}
	if (problem)
		filter_error(ERRCODE_INSUFFICIENT_PRIVILEGE, fpath,
					 psprintf("field \"%s\" cannot be used as %s: %s", field,
							  GetUserNameFromId(runner, false), problem),
					 "A filter runs with the rights of whoever refreshes or counts it; the code of a field's type "
					 "must be built in, or written by a role that can act as that role.");
}

/* Check the "value" member against what the op expects. */
static void
check_value_shape(const OpInfo *op, JsonbValue *value, const char *vpath, const char *fpath)
{
	int			n;

	if (op->shape == V_NONE)
	{
		if (value != NULL)
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, vpath,
						 psprintf("op %s takes no value", op->name),
						 "Remove \"value\" from this condition.");
		return;
	}
	if (value == NULL)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, fpath,
					 psprintf("op %s needs a \"value\"", op->name), NULL);
	switch (op->shape)
	{
		case V_LIST:
		case V_PAIR:
			if (value->type != jbvBinary || !JsonContainerIsArray(value->val.binary.data))
				filter_error(ERRCODE_INVALID_PARAMETER_VALUE, vpath,
							 psprintf("op %s needs an array, got %s", op->name, CcrmJsonbTypeName(value)),
							 op->shape == V_PAIR ? "Write it like [10, 20]." : "Write it like [\"a\", \"b\"].");
			n = JsonContainerSize(value->val.binary.data);
			if (op->shape == V_LIST && n == 0)
				filter_error(ERRCODE_INVALID_PARAMETER_VALUE, vpath,
							 psprintf("op %s needs at least one value", op->name), NULL);
			if (op->shape == V_PAIR && n != 2)
				filter_error(ERRCODE_INVALID_PARAMETER_VALUE, vpath,
							 psprintf("op between needs exactly two values, got %d", n),
							 "Write it like [low, high]; both ends are included.");
			break;
		case V_TEXT:
			if (value->type != jbvString)
				filter_error(ERRCODE_INVALID_PARAMETER_VALUE, vpath,
							 psprintf("op %s needs a string, got %s", op->name, CcrmJsonbTypeName(value)),
							 NULL);
			break;
		default:
			break;
	}
}

/*
 * {"field": path, "op": op, "value": v}.  Follows links through EXISTS
 * subqueries; negated ops become NOT EXISTS of their positive form.
 */
static void
compile_field(FilterCompiler *fc, StringInfo out, const CcrmEntity *ent, const char *alias,
			  JsonbContainer *node, const char *path)
{
	JsonbValue *fieldv = get_key(node, "field");
	JsonbValue *opv = get_key(node, "op");
	JsonbValue *value = get_key(node, "value");
	char	   *fpath = subpath(path, "field");
	char	   *opath = subpath(path, "op");
	char	   *vpath = subpath(path, "value");
	const char *here = path[0] ? path : "(root)";
	char	   *field;
	char	   *opname;
	const OpInfo *op;
	List	   *segments = NIL;
	const CcrmEntity *cur = ent;
	const char *cur_alias = alias;
	const CcrmField *f;
	StringInfoData pos;
	int			nlinks;
	char	   *expr;

	if (fieldv->type != jbvString)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, fpath,
					 psprintf("expected a field name, got %s", CcrmJsonbTypeName(fieldv)), NULL);
	if (fieldv->val.string.len == 0)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, fpath, "the field name is empty", NULL);
	if (opv == NULL)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, here, "a field condition needs an \"op\"",
					 psprintf("Valid ops are: %s.", op_names()));
	if (opv->type != jbvString)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, opath,
					 psprintf("expected an op name, got %s", CcrmJsonbTypeName(opv)),
					 psprintf("Valid ops are: %s.", op_names()));
	field = jsonb_string(fieldv);
	opname = jsonb_string(opv);
	op = lookup_op(opname);
	if (op == NULL)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, opath,
					 psprintf("unknown op \"%s\"", opname),
					 psprintf("Valid ops are: %s.", op_names()));

	/* walk the links: every segment but the last names a link */
	{
		char	   *copy = pstrdup(field);
		char	   *save;

		for (char *s = strtok_r(copy, ".", &save); s; s = strtok_r(NULL, ".", &save))
			segments = lappend(segments, s);
		if (segments == NIL || field[0] == '.' || field[strlen(field) - 1] == '.' || strstr(field, ".."))
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, fpath,
						 psprintf("malformed field path \"%s\"", field),
						 "Write a field name, or links and a field separated by dots, e.g. account.name.");
	}
	nlinks = list_length(segments) - 1;

	initStringInfo(&pos);
	for (int i = 0; i < nlinks; i++)
	{
		const char *link = list_nth(segments, i);
		const char *fk;
		CcrmEntity *next = CcrmEntityLink(cur, link, &fk);
		char	   *next_alias;

		if (next == NULL)
		{
			List	   *links = CcrmEntityLinkNames(cur);

			filter_error(ERRCODE_UNDEFINED_COLUMN, fpath,
						 psprintf("%s has no link \"%s\"", cur->name, link),
						 links ? psprintf("Links of %s are: %s.", cur->name, CcrmJoinNames(links))
						 : psprintf("%s has no links to other entities.", cur->name));
		}
		next_alias = psprintf("l%d", ++fc->next_alias);
		appendStringInfo(&pos, "EXISTS (SELECT 1 FROM %s %s WHERE %s.%s OPERATOR(pg_catalog.=) %s.%s AND ",
						 next->qualname, next_alias, next_alias, quote_identifier(next->key_column),
						 quote_identifier(cur_alias), quote_identifier(fk));
		cur = next;
		cur_alias = next_alias;
	}

	f = CcrmFieldLookup(cur, llast(segments));
	if (f == NULL)
		filter_error(ERRCODE_UNDEFINED_COLUMN, fpath,
					 psprintf("%s has no field \"%s\"", cur->name, (char *) llast(segments)),
					 psprintf("Fields of %s are: %s.%s", cur->name, CcrmJoinNames(CcrmFieldNames(cur)),
							  CcrmEntityLinkNames(cur)
							  ? psprintf("  Follow a link with a dot (links: %s).", CcrmJoinNames(CcrmEntityLinkNames(cur)))
							  : ""));
	if (!type_fits(op, f->typid))
		filter_error(ERRCODE_DATATYPE_MISMATCH, opath,
					 psprintf("op %s does not apply to field \"%s\" of type %s",
							  op->name, field, format_type_be(f->typid)),
					 psprintf("Ops for %s are: %s.", format_type_be(f->typid), ops_for_type(f->typid)));
	check_value_shape(op, value, vpath, here);
	check_field_code(f->typid, op, field, fpath);

	expr = CcrmFieldSql(f, cur_alias);
	if (nlinks == 0)
	{
		if (op->negated)
		{
			appendStringInfoString(out, "(");
			append_positive(fc, out, expr, f->typid, op, value, vpath);
			appendStringInfoString(out, ") IS NOT TRUE");
		}
		else
		{
			appendStringInfoString(out, "(");
			append_positive(fc, out, expr, f->typid, op, value, vpath);
			appendStringInfoString(out, ")");
		}
		return;
	}

	if (op->negated)
		appendStringInfoString(out, "NOT ");
	appendStringInfoString(out, pos.data);
	append_positive(fc, out, expr, f->typid, op, value, vpath);
	for (int i = 0; i < nlinks; i++)
		appendStringInfoChar(out, ')');
}

/* ----------------------------------------------------------------
 * in_group and has_activity
 * ---------------------------------------------------------------- */

/*
 * A reference to a definition by name (a JSON string) or id (a JSON number):
 * the parameter and the WHERE clause of the query that finds it; what names
 * the kind of definition in the error.
 */
static const char *
name_or_id_param(JsonbValue *ref, const char *path, const char *what, Oid *argtype, Datum *arg)
{
	if (ref->type == jbvString)
	{
		*argtype = TEXTOID;
		*arg = PointerGetDatum(cstring_to_text(jsonb_string(ref)));
		return "name OPERATOR(pg_catalog.=) $1";
	}
	if (ref->type != jbvNumeric)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, path,
					 psprintf("expected a %s name or id, got %s", what, CcrmJsonbTypeName(ref)), NULL);
	*argtype = INT8OID;
	*arg = convert_value(scalar_text(ref, path), INT8OID, path);
	return "id OPERATOR(pg_catalog.=) $1";
}

static void
compile_in_group(FilterCompiler *fc, StringInfo out, const CcrmEntity *ent, const char *alias,
				 JsonbValue *ref, const char *path)
{
	char	   *gpath = subpath(path, "in_group");
	Oid			argtypes[1];
	Datum		args[1];
	const char *where;
	int64		group_id;
	char	   *group_name;
	char	   *group_entity;
	const char *column = NULL;
	char	   *galias;
	MemoryContext cxt = CurrentMemoryContext;
	bool		found;

	where = name_or_id_param(ref, gpath, "group", &argtypes[0], &args[0]);

	CcrmSPIConnect();
	if (SPI_execute_with_args(psprintf("SELECT id, name, entity FROM ccrm.target_group WHERE %s", where),
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.target_group");
	found = SPI_processed == 1;
	if (found)
	{
		bool		isnull;

		group_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		group_name = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		group_entity = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
	}
	else
	{
		char	   *names = CcrmExistingGroupNames();

		names = names ? MemoryContextStrdup(cxt, names) : NULL;
		SPI_finish();
		filter_error(ERRCODE_UNDEFINED_OBJECT, gpath,
					 ref->type == jbvString
					 ? psprintf("target group \"%s\" does not exist", jsonb_string(ref))
					 : psprintf("target group with id %s does not exist", scalar_text(ref, gpath)),
					 names ? psprintf("Existing groups: %s.", names) : "No target groups exist yet.");
	}
	SPI_finish();

	if (strcmp(group_entity, ent->name) == 0)
		column = ent->key_column;
	else if (strcmp(group_entity, "account") == 0)
		column = ent->account_column;
	else if (strcmp(group_entity, "contact") == 0)
		column = ent->contact_column;
	else if (strcmp(group_entity, "user") == 0)
		column = ent->owner_column;
	if (column == NULL)
		filter_error(ERRCODE_DATATYPE_MISMATCH, gpath,
					 psprintf("target group \"%s\" is a group of %s, which %s does not link to",
							  group_name, group_entity, ent->name),
					 psprintf("A filter over %s can use groups of %s%s.", ent->name, ent->name,
							  CcrmEntityLinkNames(ent)
							  ? psprintf(" or of what it links to (%s)", CcrmJoinNames(CcrmEntityLinkNames(ent)))
							  : ""));

	if (fc->collect_groups)
	{
		int64	   *id = palloc(sizeof(int64));

		*id = group_id;
		fc->groups = lappend(fc->groups, id);
	}
	galias = psprintf("g%d", ++fc->next_alias);
	appendStringInfo(out,
					 "EXISTS (SELECT 1 FROM ccrm.target_group_membership %s"
					 " WHERE %s.group_id OPERATOR(pg_catalog.=) " INT64_FORMAT
					 " AND %s.member_id OPERATOR(pg_catalog.=) %s.%s AND %s.left_at IS NULL)",
					 galias, galias, group_id, galias, quote_identifier(alias),
					 quote_identifier(column), galias);
}

/*
 * {"in_campaign": "name" | id}: the record is a member of the campaign (a
 * contact or lead member; an account: one of its contacts is; an entity
 * linking to contacts: its contact is).  The campaign is looked up as the
 * compiling role, so only campaigns it may see can be named.
 */
static void
compile_in_campaign(StringInfo out, const CcrmEntity *ent, const char *alias, JsonbValue *ref,
					const char *path)
{
	char	   *cpath = subpath(path, "in_campaign");
	Oid			argtypes[1];
	Datum		args[1];
	const char *where;
	int64		campaign_id = 0;
	bool		found;
	char	   *names = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	const char *a = quote_identifier(alias);

	where = name_or_id_param(ref, cpath, "campaign", &argtypes[0], &args[0]);

	CcrmSPIConnect();
	if (SPI_execute_with_args(psprintf("SELECT id FROM ccrm.campaign WHERE %s", where),
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.campaign");
	found = SPI_processed == 1;
	if (found)
	{
		bool		isnull;

		campaign_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	else if (SPI_execute("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
						 "  FROM (SELECT name FROM ccrm.campaign ORDER BY name LIMIT 30) c",
						 true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		names = v ? MemoryContextStrdup(cxt, v) : NULL;
	}
	SPI_finish();
	if (!found)
		filter_error(ERRCODE_UNDEFINED_OBJECT, cpath,
					 ref->type == jbvString
					 ? psprintf("campaign \"%s\" does not exist", jsonb_string(ref))
					 : psprintf("campaign with id %s does not exist", scalar_text(ref, cpath)),
					 names ? psprintf("Existing campaigns: %s.", names) : "No campaigns exist yet.");

	if (strcmp(ent->name, "contact") == 0 || strcmp(ent->name, "lead") == 0)
		appendStringInfo(out,
						 "EXISTS (SELECT 1 FROM ccrm.campaign_member cm WHERE cm.campaign_id OPERATOR(pg_catalog.=) "
						 INT64_FORMAT " AND cm.%s OPERATOR(pg_catalog.=) %s.%s)",
						 campaign_id, strcmp(ent->name, "lead") == 0 ? "lead_id" : "contact_id",
						 a, quote_identifier(ent->key_column));
	else if (strcmp(ent->name, "account") == 0)
		appendStringInfo(out,
						 "EXISTS (SELECT 1 FROM ccrm.campaign_member cm JOIN ccrm.contact cc"
						 " ON cc.id OPERATOR(pg_catalog.=) cm.contact_id"
						 " WHERE cm.campaign_id OPERATOR(pg_catalog.=) " INT64_FORMAT
						 " AND cc.account_id OPERATOR(pg_catalog.=) %s.%s)",
						 campaign_id, a, quote_identifier(ent->key_column));
	else if (!ent->builtin && ent->contact_column)
		appendStringInfo(out,
						 "EXISTS (SELECT 1 FROM ccrm.campaign_member cm WHERE cm.campaign_id OPERATOR(pg_catalog.=) "
						 INT64_FORMAT " AND cm.contact_id OPERATOR(pg_catalog.=) %s.%s)",
						 campaign_id, a, quote_identifier(ent->contact_column));
	else
		filter_error(ERRCODE_DATATYPE_MISMATCH, cpath,
					 psprintf("campaigns have contacts and leads as members, which %s does not link to", ent->name),
					 "Use in_campaign in filters of contacts, accounts, leads or entities linked to contacts.");
}

/* kind/status: a string or a non-empty array of strings. */
static void
append_text_match(StringInfo out, const char *column, JsonbValue *v, const char *path)
{
	if (v->type == jbvString)
	{
		appendStringInfo(out, " AND %s OPERATOR(pg_catalog.=) %s", column,
						 quote_literal_cstr(jsonb_string(v)));
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
		JsonContainerSize(v->val.binary.data) > 0)
	{
		int			n = JsonContainerSize(v->val.binary.data);

		appendStringInfo(out, " AND %s OPERATOR(pg_catalog.=) ANY (ARRAY[", column);
		for (int i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);

			if (e->type != jbvString)
				filter_error(ERRCODE_INVALID_PARAMETER_VALUE, psprintf("%s[%d]", path, i),
							 psprintf("expected a string, got %s", CcrmJsonbTypeName(e)), NULL);
			appendStringInfo(out, "%s%s::pg_catalog.text", i > 0 ? ", " : "",
							 quote_literal_cstr(jsonb_string(e)));
		}
		appendStringInfoString(out, "])");
		return;
	}
	filter_error(ERRCODE_INVALID_PARAMETER_VALUE, path,
				 psprintf("expected a string or a non-empty array of strings, got %s", CcrmJsonbTypeName(v)),
				 NULL);
}

static void
compile_has_activity(FilterCompiler *fc, StringInfo out, const CcrmEntity *ent, const char *alias,
					 JsonbValue *spec, const char *path)
{
	char	   *hpath = subpath(path, "has_activity");
	const char *column;
	char	   *a;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (!ent->builtin || strcmp(ent->name, "activity") == 0)
		filter_error(ERRCODE_FEATURE_NOT_SUPPORTED, hpath,
					 psprintf("has_activity does not apply to %s", ent->name),
					 "has_activity is available for contact, account, lead and user.");
	column = strcmp(ent->name, "contact") == 0 ? "contact_id"
		: strcmp(ent->name, "account") == 0 ? "account_id"
		: strcmp(ent->name, "lead") == 0 ? "lead_id" : "user_id";
	if (spec->type != jbvBinary || !JsonContainerIsObject(spec->val.binary.data))
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, hpath,
					 psprintf("expected an object, got %s", CcrmJsonbTypeName(spec)),
					 "Write it like {\"kind\": \"call\", \"status\": \"done\", \"within_last\": \"30 days\"}; every key is optional.");

	a = psprintf("a%d", ++fc->next_alias);
	appendStringInfo(out, "EXISTS (SELECT 1 FROM ccrm.activity %s WHERE %s.%s OPERATOR(pg_catalog.=) %s.%s",
					 a, a, column, quote_identifier(alias), quote_identifier(ent->key_column));

	it = JsonbIteratorInit(spec->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		char	   *kpath;
		JsonbValue	v;

		if (tok != WJB_KEY)
			continue;
		key = jsonb_string(&k);
		kpath = psprintf("%s.%s", hpath, key);
		tok = JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "kind") == 0 || strcmp(key, "status") == 0)
			append_text_match(out, psprintf("%s.%s", a, key), &v, kpath);
		else if (strcmp(key, "within_last") == 0)
		{
			/* an event counts at its start, a task when it was created */
			char	   *when = psprintf("COALESCE(%s.starts_at, %s.created_at)", a, a);

			appendStringInfo(out, " AND %s OPERATOR(pg_catalog.>=) ((%s AT TIME ZONE %s)"
							 " OPERATOR(pg_catalog.-) %s) AT TIME ZONE %s"
							 " AND %s OPERATOR(pg_catalog.<=) %s",
							 when, fc->now, fc->time_zone, interval_value(&v, kpath), fc->time_zone, when, fc->now);
		}
		else
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, kpath,
						 psprintf("unknown key \"%s\" in has_activity", key),
						 "has_activity takes kind, status and within_last.");
	}
	appendStringInfoChar(out, ')');
}

/* ----------------------------------------------------------------
 * Logic nodes
 * ---------------------------------------------------------------- */

static void
compile_list(FilterCompiler *fc, StringInfo out, const CcrmEntity *ent, const char *alias,
			 JsonbValue *list, const char *key, const char *path)
{
	char	   *lpath = subpath(path, key);
	int			n;

	if (list->type != jbvBinary || !JsonContainerIsArray(list->val.binary.data))
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, lpath,
					 psprintf("expected an array of conditions, got %s", CcrmJsonbTypeName(list)), NULL);
	n = JsonContainerSize(list->val.binary.data);
	if (n == 0)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, lpath,
					 psprintf("\"%s\" needs at least one condition", key), NULL);
	appendStringInfoChar(out, '(');
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(list->val.binary.data, i);
		char	   *epath = psprintf("%s[%d]", lpath, i);

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, epath,
						 psprintf("expected a condition object, got %s", CcrmJsonbTypeName(elem)),
						 psprintf("A condition is an object with one of: %s.", node_keys));
		if (i > 0)
			appendStringInfoString(out, strcmp(key, "all") == 0 ? " AND " : " OR ");
		compile_node(fc, out, ent, alias, elem->val.binary.data, epath);
	}
	appendStringInfoChar(out, ')');
}

static void
compile_node(FilterCompiler *fc, StringInfo out, const CcrmEntity *ent, const char *alias,
			 JsonbContainer *node, const char *path)
{
	static const char *const forms[] = {"all", "any", "not", "field", "in_group", "in_campaign", "has_activity"};
	const char *form = NULL;
	const char *here = path[0] ? path : "(root)";
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	JsonbValue *v;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	/* exactly one form; for "field", only op and value besides */
	it = JsonbIteratorInit(node);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		bool		known = false;

		if (tok != WJB_KEY)
			continue;
		key = jsonb_string(&k);
		for (size_t i = 0; i < lengthof(forms); i++)
			if (strcmp(key, forms[i]) == 0)
			{
				if (form != NULL)
					filter_error(ERRCODE_INVALID_PARAMETER_VALUE, here,
								 psprintf("a condition has one form, found both \"%s\" and \"%s\"", form, key),
								 "Combine conditions with all or any.");
				form = forms[i];
				known = true;
			}
		if (!known && strcmp(key, "op") != 0 && strcmp(key, "value") != 0)
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, here,
						 psprintf("unknown key \"%s\"", key),
						 psprintf("A condition is an object with one of: %s.", node_keys));
	}
	if (form == NULL)
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, here,
					 JsonContainerSize(node) == 0 ? "empty condition" : "a condition needs a form",
					 psprintf("A condition is an object with one of: %s.", node_keys));
	if (strcmp(form, "field") != 0 && (get_key(node, "op") || get_key(node, "value")))
		filter_error(ERRCODE_INVALID_PARAMETER_VALUE, here,
					 psprintf("\"op\" and \"value\" belong to field conditions, not to \"%s\"", form), NULL);

	v = get_key(node, form);
	if (strcmp(form, "all") == 0 || strcmp(form, "any") == 0)
		compile_list(fc, out, ent, alias, v, form, path);
	else if (strcmp(form, "not") == 0)
	{
		char	   *npath = subpath(path, "not");

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			filter_error(ERRCODE_INVALID_PARAMETER_VALUE, npath,
						 psprintf("expected a condition object, got %s", CcrmJsonbTypeName(v)), NULL);
		appendStringInfoString(out, "(");
		compile_node(fc, out, ent, alias, v->val.binary.data, npath);
		appendStringInfoString(out, ") IS NOT TRUE");
	}
	else if (strcmp(form, "field") == 0)
		compile_field(fc, out, ent, alias, node, path);
	else if (strcmp(form, "in_group") == 0)
		compile_in_group(fc, out, ent, alias, v, path);
	else if (strcmp(form, "in_campaign") == 0)
		compile_in_campaign(out, ent, alias, v, path);
	else
		compile_has_activity(fc, out, ent, alias, v, path);
}

/* ----------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------- */

char *
CcrmFilterCompile(const CcrmEntity *ent, Jsonb *filter, const char *alias, List **groups,
				  const TimestampTz *at)
{
	FilterCompiler fc;
	StringInfoData out;
	int			nestlevel;
	char	   *zone = CcrmSettingGet("time_zone");

	if (!JB_ROOT_IS_OBJECT(filter) || JB_ROOT_IS_SCALAR(filter))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid filter at (root): expected a condition object"),
				 errhint("A condition is an object with one of: %s.", node_keys)));

	memset(&fc, 0, sizeof(fc));
	fc.time_zone = quote_literal_cstr(zone);
	fc.collect_groups = groups != NULL;
	fc.groups = groups ? *groups : NIL;

	/* read and write values in one fixed style, whatever this session's */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", zone, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* a given instant is written out in the fixed style just set */
	fc.now = at ? psprintf("%s::pg_catalog.timestamptz",
								quote_literal_cstr(timestamptz_to_str(*at))) : "pg_catalog.now()";

	initStringInfo(&out);
	compile_node(&fc, &out, ent, alias, &filter->root, "");

	AtEOXact_GUC(false, nestlevel);
	if (groups)
		*groups = fc.groups;
	return out.data;
}

char *
CcrmFilterQuery(const CcrmEntity *ent, Jsonb *filter, List **groups, const TimestampTz *at)
{
	char	   *where = CcrmFilterCompile(ent, filter, "t", groups, at);

	return psprintf("SELECT t.%s::pg_catalog.int8 AS id FROM %s t WHERE %s",
					quote_identifier(ent->key_column), ent->qualname, where);
}

/*
 * The instant argument argno of the SQL functions (at timestamptz DEFAULT
 * now()): NULL when absent, meaning pg_catalog.now() in the compiled SQL.
 */
const TimestampTz *
CcrmFilterInstantArg(FunctionCallInfo fcinfo, int argno, TimestampTz *at)
{
	/* the functions that take an instant are not strict: the other arguments are required */
	for (int i = 0; i < argno; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d must not be null", i + 1)));
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	*at = PG_GETARG_TIMESTAMPTZ(argno);
	CcrmCheckInstant(*at, "at");
	return at;
}

Datum
ccrm_filter_sql(PG_FUNCTION_ARGS)
{
	TimestampTz at;
	const TimestampTz *atp = CcrmFilterInstantArg(fcinfo, 2, &at);
	CcrmEntity *ent = CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);

	PG_RETURN_TEXT_P(cstring_to_text(CcrmFilterQuery(ent, PG_GETARG_JSONB_P(1), NULL, atp)));
}

Datum
ccrm_filter_count(PG_FUNCTION_ARGS)
{
	TimestampTz at;
	const TimestampTz *atp = CcrmFilterInstantArg(fcinfo, 2, &at);
	CcrmEntity *ent = CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	char	   *query = CcrmFilterQuery(ent, PG_GETARG_JSONB_P(1), NULL, atp);
	int			nestlevel;
	int64		count;
	bool		isnull;

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	if (SPI_execute(psprintf("SELECT pg_catalog.count(*) FROM (%s) q", query), true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count filter matches");
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	PG_RETURN_INT64(count);
}

Datum
ccrm_filter_preview(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz at;
	const TimestampTz *atp = CcrmFilterInstantArg(fcinfo, 3, &at);
	CcrmEntity *ent = CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	int32		limit = PG_GETARG_INT32(2);
	char	   *where;
	char	   *query;
	int			nestlevel;
	ListCell   *lc;

	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit must not be negative")));
	where = CcrmFilterCompile(ent, PG_GETARG_JSONB_P(1), "t", NULL, atp);
	/* to_jsonb(t) runs the output function of every column's type */
	foreach(lc, ent->fields)
	{
		char	   *problem = CcrmTypeCodeProblem(((CcrmField *) lfirst(lc))->typid, GetUserId(), false);

		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("records of %s cannot be shown as %s: %s", ent->name,
							GetUserNameFromId(GetUserId(), false), problem),
					 errhint("Count them with ccrm.filter_count(), or let a role that can act as you show them.")));
	}
	query = psprintf("SELECT t.%s::pg_catalog.int8, pg_catalog.to_jsonb(t) FROM %s t WHERE %s"
					 " ORDER BY t.%s LIMIT %d",
					 quote_identifier(ent->key_column), ent->qualname, where,
					 quote_identifier(ent->key_column), limit);

	InitMaterializedSRF(fcinfo, 0);
	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	if (SPI_execute(query, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not preview filter matches");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[2];
		bool		nulls[2];

		values[0] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &nulls[0]);
		values[1] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &nulls[1]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	return (Datum) 0;
}
