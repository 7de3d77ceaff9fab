/*-------------------------------------------------------------------------
 *
 * formula.c
 *	  Field formulas (ccrm.formula, seed: "dynaamiset kenttäkaavat"): a SQL
 *	  expression over an entity's fields whose value is written into one
 *	  field of the members of a group.
 *
 *	  The expression checker.  A formula is parsed and analysed with
 *	  PostgreSQL's own parser when it is saved (trigger), when it is
 *	  checked (ccrm.check_formula) and again at every run:
 *
 *	  - it must be ONE expression: the text is parsed the way PL/pgSQL
 *		parses an expression and anything besides a single target (FROM,
 *		WHERE, an alias, a second statement) is refused;
 *	  - names are resolved by a column-reference hook, not by the
 *		relation's namespace: a bare name must be a field of the entity
 *		(columns read as Vars, custom fields as (attrs ->> 'name')::type);
 *		qualified names and * are refused;
 *	  - subqueries are refused on the raw tree, before analysis, so that
 *		nothing they name is ever looked up; so are casts (x::t, t(x)) to
 *		types that are not allowed, before the parser converts a literal
 *		with the type's input function;
 *	  - the analysed tree is walked: only Vars, constants, operators,
 *		CASE / COALESCE / NULLIF / GREATEST / LEAST, boolean and null
 *		tests, casts and calls of pure built-in functions are allowed
 *		(code_trust.c: pg_catalog functions of the bootstrap superuser,
 *		immutable or stable, not reading more than their arguments, so
 *		none of pg_stat_*, current_setting, query_to_xml ...);
 *		aggregates, window functions, set-returning, volatile and user
 *		functions are not;
 *	  - every type met (of fields, constants, casts, results) must be a
 *		pg_catalog type or the type of one of the entity's fields, not a
 *		catalog lookup (regclass ...), and the code its values run through
 *		— input and output functions, a domain's CHECK constraints where
 *		a value is coerced into it — may run as the current user
 *		(CcrmTypeCodeProblem: pure built-ins, or written by a role that
 *		can act as the current user); otherwise 42501;
 *	  - the result must be assignable to the target field's type
 *		(assignment coercion, as an UPDATE would do).
 *	  The current user is whoever saves, checks or runs the formula, so a
 *	  domain changed after a formula was saved, or a formula row written
 *	  behind the trigger's back, is caught when the formula runs.
 *
 *	  The analysed expression is turned back into SQL by PostgreSQL's
 *	  deparser (ruleutils), with every column qualified by the alias "t";
 *	  that text — never the user's — is what runs, under search_path
 *	  pg_catalog, pg_temp.
 *
 *	  Runs: ccrm.run_formulas() and the job kind run_formulas apply the
 *	  chosen formulas (or all active ones of the group's entity), one after
 *	  the other in that order, each as a batched, audited update of the
 *	  members (CcrmRunUpdate in action_run.c); a formula sees what the
 *	  previous ones wrote.  The updates run confined to the current user
 *	  (run_as_owner.c): the caller, or the job's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "quote.h"
#include "guc_level.h"
#include "json_util.h"
#include "privilege.h"
#include "spi_debug.h"
#include "action_run.h"
#include "instant.h"
#include "code_trust.h"
#include "run_as_owner.h"
#include "target_group.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_oper.h"
#include "parser/parse_relation.h"
#include "parser/parse_type.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(ccrm_formula_trigger);
PG_FUNCTION_INFO_V1(ccrm_check_formula);
PG_FUNCTION_INFO_V1(ccrm_run_formulas);
PG_FUNCTION_INFO_V1(ccrm_job_run_formulas);
PG_FUNCTION_INFO_V1(ccrm_job_check_formulas);

typedef struct FormulaCheck
{
	const CcrmEntity *ent;
	const char *what;			/* "formula \"x\"" for messages */
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
} FormulaCheck;

static void
formula_error(FormulaCheck *fc, int location, const char *msg, const char *hint) pg_attribute_noreturn();

static void
formula_error(FormulaCheck *fc, int location, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("%s: %s", fc->what, msg),
			 errhint("%s", hint ? hint
					 : "A formula may use the entity's fields, constants, operators, CASE, COALESCE, NULLIF "
					 "and immutable or stable functions from pg_catalog."),
			 fc->pstate ? parser_errposition(fc->pstate, location) : 0));
}

/* Column references: a bare field name of the entity, nothing else. */
static Node *
formula_columnref(ParseState *pstate, ColumnRef *cref)
{
	FormulaCheck *fc = pstate->p_ref_hook_state;
	const CcrmField *f;
	const char *name;
	Node	   *attrs;
	Node	   *expr;

	if (list_length(cref->fields) != 1 || !IsA(linitial(cref->fields), String))
		formula_error(fc, cref->location,
					  psprintf("\"%s\" is not allowed: name fields of %s alone, without a table or *",
							   NameListToString(cref->fields), fc->ent->name),
					  psprintf("Fields of %s are: %s.", fc->ent->name, CcrmJoinNames(CcrmFieldNames(fc->ent))));
	name = strVal(linitial(cref->fields));
	f = CcrmFieldLookup(fc->ent, name);
	if (f == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s: %s has no field \"%s\"", fc->what, fc->ent->name, name),
				 errhint("Fields of %s are: %s.", fc->ent->name, CcrmJoinNames(CcrmFieldNames(fc->ent))),
				 parser_errposition(pstate, cref->location)));
	if (!f->is_custom)
		return scanNSItemForColumn(pstate, fc->nsitem, 0, f->name, cref->location);

	attrs = scanNSItemForColumn(pstate, fc->nsitem, 0, "attrs", cref->location);
	expr = (Node *) make_op(pstate, list_make2(makeString("pg_catalog"), makeString("->>")), attrs,
							(Node *) makeConst(TEXTOID, -1, DEFAULT_COLLATION_OID, -1,
											   CStringGetTextDatum(f->name), false, false),
							NULL, cref->location);
	if (f->typid != TEXTOID)
		expr = coerce_to_target_type(pstate, expr, TEXTOID, f->typid, -1, COERCION_EXPLICIT,
									 COERCE_EXPLICIT_CAST, cref->location);
	return expr;
}

static void check_type(FormulaCheck *fc, Oid typid, int location, bool constraints);

/*
 * The raw tree, before analysis: no subqueries, so that nothing they name is
 * ever looked up; and the types of casts are checked before the parser
 * converts a literal with the type's input function (which runs a domain's
 * CHECK constraints).
 */
static bool
raw_check_walker(Node *node, FormulaCheck *fc)
{
	if (node == NULL)
		return false;
	if (IsA(node, SubLink))
		formula_error(fc, ((SubLink *) node)->location, "subqueries are not allowed",
					  "Compute it from the record's own fields.");
	if (IsA(node, TypeCast))
	{
		TypeCast   *tc = (TypeCast *) node;
		Oid			typid = LookupTypeNameOid(NULL, tc->typeName, true);

		if (!OidIsValid(typid))
			formula_error(fc, tc->location, psprintf("type %s does not exist", TypeNameToString(tc->typeName)),
						  "Use the built-in types of pg_catalog.");
		check_type(fc, typid, tc->location, true);
	}
	if (IsA(node, FuncCall) && list_length(((FuncCall *) node)->args) == 1)
	{
		/* type_name(value) is a cast too when such a type exists */
		FuncCall   *fn = (FuncCall *) node;
		Oid			typid = LookupTypeNameOid(NULL, makeTypeNameFromNameList(fn->funcname), true);

		if (OidIsValid(typid))
			check_type(fc, typid, fn->location, true);
	}
	return raw_expression_tree_walker(node, raw_check_walker, (void *) fc);
}

static Oid
type_namespace(Oid typid)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	Oid			nsp;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	nsp = ((Form_pg_type) GETSTRUCT(tup))->typnamespace;
	ReleaseSysCache(tup);
	return nsp;
}

static Oid
operator_namespace(Oid opno)
{
	HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Oid			nsp;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	nsp = ((Form_pg_operator) GETSTRUCT(tup))->oprnamespace;
	ReleaseSysCache(tup);
	return nsp;
}

/*
 * Code of other roles may not run with the runner's rights: a clean 42501
 * naming what would have run.
 */
static void
trust_error(FormulaCheck *fc, int location, const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s: %s", fc->what, msg),
			 errhint("A formula runs with the rights of whoever runs it; the code of the types it uses must be "
					 "built in, or written by a role that can act as %s.", GetUserNameFromId(GetUserId(), false)),
			 fc->pstate ? parser_errposition(fc->pstate, location) : 0));
}

/*
 * Only types from pg_catalog, or those of the entity's own fields; and the
 * code their values run through (input and output functions, with
 * constraints also a domain's CHECK constraints) must be allowed to run as
 * the current user.
 */
static void
check_type(FormulaCheck *fc, Oid typid, int location, bool constraints)
{
	ListCell   *lc;
	bool		ok = false;
	char	   *problem;
	Oid			typinput;
	Oid			typioparam;

	if (!OidIsValid(typid) || get_typ_typrelid(typid) != InvalidOid)
		formula_error(fc, location, psprintf("values of type %s are not allowed", format_type_be(typid)), NULL);
	if (type_namespace(typid) == PG_CATALOG_NAMESPACE)
		ok = true;
	foreach(lc, fc->ent->fields)
		if (((CcrmField *) lfirst(lc))->typid == typid)
			ok = true;
	if (!ok)
		formula_error(fc, location, psprintf("type %s is not allowed", format_type_be(typid)),
					  "Use the built-in types of pg_catalog.");
	/* regclass, regrole, ...: reading or writing one is a catalog lookup */
	getTypeInputInfo(typid, &typinput, &typioparam);
	if (CcrmFunctionPurity(typinput) == CCRM_READS_STATE)
		formula_error(fc, location,
					  psprintf("type %s is not allowed: its values are looked up in the catalogs", format_type_be(typid)),
					  "Functions and types that read other sessions, settings, the catalogs or files are not allowed in formulas.");
	problem = CcrmTypeCodeProblem(typid, GetUserId(), constraints);
	if (problem)
		trust_error(fc, location, psprintf("type %s is not allowed: %s", format_type_be(typid), problem));
}

/* A pure built-in (code_trust.c): pg_catalog, immutable or stable, reading only its arguments. */
static void
check_function(FormulaCheck *fc, Oid funcid, int location)
{
	char	   *sig = format_procedure(funcid);

	switch (CcrmFunctionPurity(funcid))
	{
		case CCRM_PURE:
			return;
		case CCRM_NOT_BUILTIN:
			formula_error(fc, location,
						  get_func_namespace(funcid) == PG_CATALOG_NAMESPACE
						  ? psprintf("function %s is not allowed: it is not one of PostgreSQL's own", sig)
						  : psprintf("function %s is not allowed: only functions from pg_catalog are", sig),
						  NULL);
		case CCRM_VOLATILE:
			formula_error(fc, location, psprintf("function %s is not allowed: it is volatile", sig),
						  "Formulas may only call immutable or stable functions, so that they compute a value and do nothing else.");
		case CCRM_RETURNS_SET:
			formula_error(fc, location, psprintf("function %s is not allowed: it returns a set", sig), NULL);
		case CCRM_SECURITY_DEFINER:
			formula_error(fc, location, psprintf("function %s is not allowed: it is security definer", sig), NULL);
		case CCRM_READS_STATE:
			formula_error(fc, location,
						  psprintf("function %s is not allowed: it reads more than the record's fields", sig),
						  "Functions and types that read other sessions, settings, the catalogs or files are not allowed in formulas.");
	}
}
static void
check_operator(FormulaCheck *fc, Oid opno, Oid funcid, int location)
{
	if (operator_namespace(opno) != PG_CATALOG_NAMESPACE)
		formula_error(fc, location, psprintf("operator %s is not allowed: only operators from pg_catalog are",
											 format_operator(opno)), NULL);
	check_function(fc, funcid, location);
}

/* The analysed expression: allow-list of node types. */
static bool
check_walker(Node *node, FormulaCheck *fc)
{
	int			location;

	if (node == NULL)
		return false;
	location = exprLocation(node);
	switch (nodeTag(node))
	{
		case T_List:
			return expression_tree_walker(node, check_walker, (void *) fc);
		case T_Var:
			if (((Var *) node)->varattno <= 0)
				formula_error(fc, location, "whole-row and system columns are not allowed", NULL);
			check_type(fc, ((Var *) node)->vartype, location, false);
			break;
		case T_Const:
			check_type(fc, ((Const *) node)->consttype, location, true);
			break;
		case T_FuncExpr:
			check_function(fc, ((FuncExpr *) node)->funcid, location);
			check_type(fc, ((FuncExpr *) node)->funcresulttype, location, false);
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			check_operator(fc, ((OpExpr *) node)->opno, ((OpExpr *) node)->opfuncid, location);
			check_type(fc, exprType(node), location, false);
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			check_operator(fc, ((ScalarArrayOpExpr *) node)->opno,
						   ((ScalarArrayOpExpr *) node)->opfuncid, location);
			break;
		case T_CoerceViaIO:
			/* the output function of the value's type, the input function of the result */
			check_type(fc, exprType((Node *) ((CoerceViaIO *) node)->arg), location, false);
			check_type(fc, exprType(node), location, true);
			break;
		case T_CoerceToDomain:
			/* the domain's CHECK constraints run */
			check_type(fc, exprType(node), location, true);
			break;
		case T_MinMaxExpr:
			{
				/* GREATEST and LEAST call the type's comparison function */
				TypeCacheEntry *tc = lookup_type_cache(exprType(node), TYPECACHE_CMP_PROC);
				char	   *problem = OidIsValid(tc->cmp_proc) ? CcrmFunctionCodeProblem(tc->cmp_proc, GetUserId()) : NULL;

				if (problem)
					trust_error(fc, location, psprintf("GREATEST and LEAST of type %s are not allowed: %s",
													   format_type_be(exprType(node)), problem));
				check_type(fc, exprType(node), location, false);
				break;
			}
		case T_RelabelType:
		case T_ArrayCoerceExpr:
		case T_ArrayExpr:
		case T_CoalesceExpr:
			check_type(fc, exprType(node), location, false);
			break;
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CollateExpr:
		case T_SQLValueFunction:
			break;
		case T_Aggref:
			formula_error(fc, location, "aggregate functions are not allowed",
						  "A formula computes a value from one record's fields.");
		case T_WindowFunc:
			formula_error(fc, location, "window functions are not allowed",
						  "A formula computes a value from one record's fields.");
		case T_SubLink:
		case T_SubPlan:
			formula_error(fc, location, "subqueries are not allowed", "Compute it from the record's own fields.");
		case T_Param:
			formula_error(fc, location, "parameters are not allowed", NULL);
		default:
			formula_error(fc, location, psprintf("this kind of expression is not allowed (node %d)", (int) nodeTag(node)),
						  NULL);
	}
	return expression_tree_walker(node, check_walker, (void *) fc);
}

/* Error positions point into the formula, not into the statement that holds it. */
static void
formula_errcontext(void *arg)
{
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
}

/*
 * Check a formula expression over an entity; with target, that its value
 * fits the field.  Returns the SQL that computes it over alias "t" (cast to
 * the field's type when there is a target).  Run under the safe search path.
 */
static char *
formula_sql(const CcrmEntity *ent, const char *expression, const CcrmField *target, const char *what)
{
	FormulaCheck fc;
	List	   *raw;
	RawStmt    *rs;
	SelectStmt *sel;
	ResTarget  *rt;
	Relation	rel;
	Node	   *expr;
	Oid			type;
	char	   *sql;
	ErrorContextCallback errcb;

	memset(&fc, 0, sizeof(fc));
	fc.ent = ent;
	fc.what = what;
	errcb.callback = formula_errcontext;
	errcb.arg = (void *) expression;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (expression[strspn(expression, " \t\r\n")] == '\0')
		formula_error(&fc, -1, "the expression is empty", "Write a SQL expression such as upper(lastname).");
	raw = raw_parser(expression, RAW_PARSE_PLPGSQL_EXPR);
	rs = linitial_node(RawStmt, raw);
	sel = (SelectStmt *) rs->stmt;
	if (list_length(raw) != 1 || !IsA(sel, SelectStmt) || list_length(sel->targetList) != 1 ||
		sel->distinctClause || sel->fromClause || sel->whereClause || sel->groupClause ||
		sel->havingClause || sel->windowClause || sel->sortClause || sel->limitCount ||
		sel->limitOffset || sel->lockingClause || sel->intoClause || sel->withClause ||
		sel->valuesLists || sel->op != SETOP_NONE)
		formula_error(&fc, -1, "a formula is one expression, without FROM, WHERE or other clauses",
					  "Write a single SQL expression such as coalesce(title, 'n/a').");
	rt = linitial_node(ResTarget, sel->targetList);
	if (rt->name)
		formula_error(&fc, -1, "a formula has no alias", "Remove \"AS ...\".");
	(void) raw_check_walker(rt->val, &fc);

	fc.pstate = make_parsestate(NULL);
	fc.pstate->p_sourcetext = expression;
	fc.pstate->p_pre_columnref_hook = formula_columnref;
	fc.pstate->p_ref_hook_state = &fc;
	rel = table_open(ent->relid, AccessShareLock);
	fc.nsitem = addRangeTableEntryForRelation(fc.pstate, rel, AccessShareLock,
											  makeAlias("t", NIL), false, false);
	expr = transformExpr(fc.pstate, rt->val, EXPR_KIND_SELECT_TARGET);
	type = exprType(expr);
	if (target)
	{
		Node	   *coerced;

		/* assigning a literal converts it: the target type's code runs */
		check_type(&fc, target->typid, -1, true);
		coerced = coerce_to_target_type(fc.pstate, expr, type, target->typid,
													target->is_custom ? -1 : target->typmod,
													COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);

		if (coerced == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("%s: its value has type %s and cannot be assigned to field \"%s\" of type %s",
							what, format_type_be(type), target->name, format_type_be(target->typid)),
					 errhint("Cast the expression, e.g. (...)::%s.", format_type_be(target->typid))));
		expr = coerced;
		type = target->typid;
	}
	else if (type == UNKNOWNOID)
		expr = coerce_to_target_type(fc.pstate, expr, type, TEXTOID, -1, COERCION_IMPLICIT,
									 COERCE_IMPLICIT_CAST, -1);
	assign_expr_collations(fc.pstate, expr);
	(void) check_walker(expr, &fc);

	error_context_stack = errcb.previous;
	sql = deparse_expression(expr, deparse_context_for("t", ent->relid), true, true);
	table_close(rel, NoLock);
	free_parsestate(fc.pstate);
	if (target)
		sql = psprintf("(%s)::%s", sql, CcrmQualifiedTypeName(target->typid, target->is_custom ? -1 : target->typmod));
	return sql;
}

/* The target field of a formula: must exist and be writable. */
static const CcrmField *
formula_target(const CcrmEntity *ent, const char *field, const char *what)
{
	const CcrmField *f = CcrmFieldLookup(ent, field);

	if (f == NULL)
		CcrmReportUnknownField(ent, field, what);
	if (f->readonly)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: field \"%s\" of %s is read-only", what, field, ent->name),
				 errhint("Keys, identity and generated columns and the maintained created_at and updated_at cannot be set.")));
	return f;
}

Datum
ccrm_formula_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	row;
	TupleDesc	desc;
	char	   *name;
	char	   *entity;
	char	   *field;
	char	   *expression;
	CcrmEntity *ent;
	int			nestlevel;
	const char *what;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.formula_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));
	row = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : td->tg_newtuple;
	if (CcrmRestoring())
		return PointerGetDatum(row);
	desc = RelationGetDescr(td->tg_relation);
	name = SPI_getvalue(row, desc, SPI_fnumber(desc, "name"));
	entity = SPI_getvalue(row, desc, SPI_fnumber(desc, "entity"));
	field = SPI_getvalue(row, desc, SPI_fnumber(desc, "field"));
	expression = SPI_getvalue(row, desc, SPI_fnumber(desc, "expression"));
	if (!name || !entity || !field || !expression)
		return PointerGetDatum(row);	/* NOT NULL constraints report it */
	what = psprintf("invalid formula \"%s\"", name);
	ent = CcrmEntityLookup(entity, false);
	nestlevel = CcrmPushSafeSearchPath();
	(void) formula_sql(ent, expression, formula_target(ent, field, what), what);
	CcrmPopSearchPath(nestlevel);
	return PointerGetDatum(row);
}

/* ccrm.check_formula(entity text, expression text, field text) → the SQL it runs */
Datum
ccrm_check_formula(PG_FUNCTION_ARGS)
{
	CcrmEntity *ent;
	const CcrmField *target = NULL;
	char	   *sql;
	int			nestlevel;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("entity and expression must not be null")));
	ent = CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	if (!PG_ARGISNULL(2))
		target = formula_target(ent, text_to_cstring(PG_GETARG_TEXT_PP(2)), "invalid formula");
	nestlevel = CcrmPushSafeSearchPath();
	sql = formula_sql(ent, text_to_cstring(PG_GETARG_TEXT_PP(1)), target, "invalid formula");
	CcrmPopSearchPath(nestlevel);
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}

/* ----------------------------------------------------------------
 * Running formulas
 * ---------------------------------------------------------------- */

typedef struct FormulaRow
{
	char	   *name;
	char	   *field;
	char	   *expression;
} FormulaRow;

/*
 * The formulas a run applies, in order: the named ones (in the order
 * given; active or not), else every active formula of the group's entity
 * that the running role may use (privilege.c: its own and its roles'; not
 * every formula a superuser or admin can see) by name.  SPI connected.
 */
static List *
select_formulas(CcrmGroup *group, ArrayType *names)
{
	List	   *rows = NIL;
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		args[2];
	char		nulls[2] = {' ', names ? ' ' : 'n'};

	args[0] = CStringGetTextDatum(group->entity->name);
	args[1] = names ? PointerGetDatum(names) : (Datum) 0;
	if (names)
	{
		char	   *missing;
		char	   *other;

		if (SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(n), ', ')"
								  "  FROM pg_catalog.unnest($2) n"
								  " WHERE n IS NULL OR NOT EXISTS (SELECT 1 FROM ccrm.formula f WHERE f.name OPERATOR(pg_catalog.=) n)",
								  2, types, args, nulls, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.formula");
		missing = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (missing)
		{
			char	   *valid;

			if (SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(name), ', ' ORDER BY name)"
									  "  FROM ccrm.formula WHERE entity OPERATOR(pg_catalog.=) $1",
									  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not read ccrm.formula");
			valid = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("formula %s does not exist", missing),
					 valid ? errhint("Formulas of %s: %s.", group->entity->name, valid)
					 : errhint("Define one with ccrm.create_formula().")));
		}
		if (SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.quote_literal(f.name) OPERATOR(pg_catalog.||) ' (' OPERATOR(pg_catalog.||) f.entity OPERATOR(pg_catalog.||) ')', ', ')"
								  "  FROM ccrm.formula f WHERE f.name OPERATOR(pg_catalog.=) ANY ($2)"
								  "   AND f.entity OPERATOR(pg_catalog.<>) $1",
								  2, types, args, nulls, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.formula");
		other = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (other)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("formula %s is not a formula of %s, the entity of group \"%s\"",
							other, group->entity->name, group->name),
					 errhint("Choose formulas of %s.", group->entity->name)));
		if (SPI_execute_with_args("SELECT f.name, f.field, f.expression"
								  "  FROM ROWS FROM (pg_catalog.unnest($2)) WITH ORDINALITY AS n(name, i)"
								  "  JOIN ccrm.formula f ON f.name OPERATOR(pg_catalog.=) n.name"
								  " WHERE $1 IS NOT NULL ORDER BY n.i",
								  2, types, args, nulls, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read ccrm.formula");
	}
	else if (SPI_execute_with_args("SELECT name, field, expression FROM ccrm.formula"
								   " WHERE entity OPERATOR(pg_catalog.=) $1 AND active"
								   "   AND ccrm.may_use(owner) ORDER BY name",
								   1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.formula");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		FormulaRow *r = palloc(sizeof(FormulaRow));

		r->name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		r->field = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		r->expression = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		rows = lappend(rows, r);
	}
	return rows;
}

/* Parameters of a formula run: {"formulas": [names], "audit": bool}; returns the names or NULL. */
static ArrayType *
parse_params(Jsonb *params, bool *audit)
{
	static const char *const keys[] = {"formulas", "audit", NULL};
	JsonbValue *list;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *names = NIL;
	Datum	   *elems;
	int			n = 0;

	*audit = true;
	if (params == NULL)
		return NULL;
	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters of a formula run must be a JSON object"),
				 errhint("Write {\"formulas\": [\"name\", ...], \"audit\": true}; without \"formulas\" every active formula runs.")));
	CcrmCheckParamKeys(params, keys, "a formula run");
	*audit = CcrmJsonbBool(params, "audit", true, "a formula run");
	list = CcrmJsonbGet(params, "formulas");
	if (list == NULL || list->type == jbvNull)
		return NULL;
	if (list->type != jbvBinary || !JsonContainerIsArray(list->val.binary.data) ||
		JsonContainerSize(list->val.binary.data) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"formulas\" must be a non-empty list of formula names"),
				 errhint("Write {\"formulas\": [\"name\", ...]}, or leave it out to run every active formula.")));
	it = JsonbIteratorInit(list->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"formulas\" must list formula names as strings")));
		names = lappend(names, pnstrdup(v.val.string.val, v.val.string.len));
	}
	elems = palloc(sizeof(Datum) * list_length(names));
	{
		ListCell   *lc;

		foreach(lc, names)
			elems[n++] = CStringGetTextDatum(lfirst(lc));
	}
	return construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/* Run formulas for a run; returns the counts.  SPI connected. */
static Jsonb *
run_formulas(CcrmRun *run, CcrmGroup *group, ArrayType *names, bool audit)
{
	int			nestlevel = CcrmPushSafeSearchPath();
	List	   *rows;
	List	   *done_names = NIL;
	List	   *updates = NIL;
	ListCell   *lc;
	StringInfoData counts;

	(void) set_config_option("timezone", run->time_zone, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rows = select_formulas(group, names);
	initStringInfo(&counts);
	appendStringInfo(&counts, "{\"members\": " INT64_FORMAT ", \"audit\": %s, \"formulas\": {",
					 group->member_count, audit ? "true" : "false");
	foreach(lc, rows)
	{
		FormulaRow *r = lfirst(lc);
		const char *what = psprintf("invalid formula \"%s\"", r->name);
		CcrmUpdate *upd = palloc0(sizeof(CcrmUpdate));
		CcrmAssign *a = palloc0(sizeof(CcrmAssign));
		int64		n;

		upd->target = group->entity;
		upd->key_sql = "$1";
		upd->label = r->name;
		upd->step = foreach_current_index(lc);
		a->field = formula_target(group->entity, r->field, what);
		a->value_sql = formula_sql(group->entity, r->expression, a->field, what);
		upd->assigns = list_make1(a);
		n = CcrmRunUpdate(run, group, upd, audit);
		if (foreach_current_index(lc) > 0)
			appendStringInfoString(&counts, ", ");
		escape_json(&counts, r->name);
		appendStringInfo(&counts, ": " INT64_FORMAT, n);
		done_names = lappend(done_names, r->name);
		updates = lappend(updates, upd);
	}
	appendStringInfoChar(&counts, '}');
	CcrmAppendSkipped(&counts, done_names, updates);
	appendStringInfoChar(&counts, '}');
	CcrmPopSearchPath(nestlevel);
	return CcrmJsonbFromCString(counts.data);
}

typedef struct FormulaRunArgs
{
	CcrmRun    *run;
	CcrmGroup  *group;
	ArrayType  *names;
	bool		audit;
} FormulaRunArgs;

static Datum
run_formulas_confined(void *arg)
{
	FormulaRunArgs *a = arg;

	return PointerGetDatum(run_formulas(a->run, a->group, a->names, a->audit));
}

/*
 * The updates of a run, confined to the current user (run_as_owner.c):
 * the caller of ccrm.run_formulas, or the job's owner.
 */
static Jsonb *
run_formulas_as_runner(CcrmRun *run, CcrmGroup *group, ArrayType *names, bool audit)
{
	FormulaRunArgs a = {run, group, names, audit};

	return (Jsonb *) DatumGetPointer(CcrmRunConfined(GetUserId(), run_formulas_confined, &a));
}

/* ccrm.run_formulas(group text, formulas text[], audit boolean, at timestamptz) → run id */
Datum
ccrm_run_formulas(PG_FUNCTION_ARGS)
{
	int64		group_id;
	CcrmGroup  *group;
	CcrmRun    *run;
	ArrayType  *names = PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1);
	bool		audit = PG_ARGISNULL(2) ? true : PG_GETARG_BOOL(2);
	TimestampTz at = CcrmInstantArg(fcinfo, 3);
	Jsonb	   *counts;
	int64		run_id;
	char	   *detail = "every active formula";

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("group must not be null")));
	if (names && ArrayGetNItems(ARR_NDIM(names), ARR_DIMS(names)) == 0)
		names = NULL;
	group_id = CcrmGroupIdByName(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	CcrmSPIConnect();
	group = CcrmGroupLoad(group_id);
	{
		int			nestlevel = CcrmPushSafeSearchPath();

		(void) select_formulas(group, names);	/* errors before the run starts */
		CcrmPopSearchPath(nestlevel);
	}
	if (names)
	{
		Oid			out;
		bool		varlena;

		getTypeOutputInfo(TEXTARRAYOID, &out, &varlena);
		detail = psprintf("formulas %s", OidOutputFunctionCall(out, PointerGetDatum(names)));
	}
	run = CcrmRunBeginDirect("run_formulas", group_id, detail, at);
	counts = run_formulas_as_runner(run, group, names, audit);
	CcrmRunFinishDirect(run, counts);
	run_id = run->id;
	SPI_finish();
	PG_RETURN_INT64(run_id);
}

/* Runner of job kind run_formulas. */
Datum
ccrm_job_run_formulas(PG_FUNCTION_ARGS)
{
	CcrmRun    *run;
	CcrmGroup  *group;
	ArrayType  *names;
	bool		audit;
	Datum		result;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a formula job needs a run, a target group and an action time")));
	run = CcrmRunForJob(PG_GETARG_INT64(1), PG_GETARG_INT64(2), PG_GETARG_TIMESTAMPTZ(4),
						PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5)));
	names = parse_params(PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3), &audit);
	CcrmSPIConnect();
	group = CcrmGroupLoad(run->group_id);
	result = SPI_datumTransfer(JsonbPGetDatum(run_formulas_as_runner(run, group, names, audit)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* Validator of job kind run_formulas. */
Datum
ccrm_job_check_formulas(PG_FUNCTION_ARGS)
{
	CcrmGroup  *group;
	ArrayType  *names;
	bool		audit;
	List	   *rows;
	ListCell   *lc;
	StringInfoData buf;
	Datum		result;
	int			nestlevel;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a formula job needs a target group"),
				 errhint("Give the job the group whose members the formulas update.")));
	names = parse_params(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &audit);
	CcrmSPIConnect();
	group = CcrmGroupLoad(PG_GETARG_INT64(0));
	nestlevel = CcrmPushSafeSearchPath();
	rows = select_formulas(group, names);
	CcrmPopSearchPath(nestlevel);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (names)
	{
		appendStringInfoString(&buf, "\"formulas\": [");
		foreach(lc, rows)
		{
			if (foreach_current_index(lc) > 0)
				appendStringInfoString(&buf, ", ");
			escape_json(&buf, ((FormulaRow *) lfirst(lc))->name);
		}
		appendStringInfoString(&buf, "], ");
	}
	appendStringInfo(&buf, "\"audit\": %s}", audit ? "true" : "false");
	result = SPI_datumTransfer(JsonbPGetDatum(CcrmJsonbFromCString(buf.data)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
