/*-------------------------------------------------------------------------
 *
 * code_trust.c
 *	  Whose code ccrm lets run with whose rights.
 *
 *	  ccrm runs definitions written by one role (formulas, tools, filters
 *	  over tables and types of others) with the rights of another: the
 *	  caller of ccrm.run_formulas, the owner of a job.  Code reaches a run
 *	  in three ways, and each is checked where it is used, as the role the
 *	  run executes as (GetUserId() at that moment), never only when saved:
 *
 *	  - Functions a formula calls must be pure built-ins
 *		(CcrmFunctionPurity): functions of pg_catalog owned by PostgreSQL's
 *		bootstrap superuser, immutable or stable, not set-returning, not
 *		security definer, and not one of the stable functions that read
 *		more than their arguments.  The rule for the last part: immutable
 *		built-ins compute from their arguments by contract; stable ones
 *		also depend on the formatting settings (TimeZone, DateStyle, ...),
 *		which is fine, except these families, which read the server's
 *		state: names starting with pg_ (activity and statistics of other
 *		sessions, catalog and object introspection, files, the server),
 *		has_ (privileges), txid_ and mxid_age (transactions of others),
 *		inet_client_ / inet_server_ (connections), to_reg and the reg*
 *		input and output functions (catalog lookups), current_setting
 *		(settings may hold secrets), row_security_active, obj_description,
 *		col_description, shobj_description, format_type, oidvectortypes,
 *		ts_stat, ts_rewrite and the *_to_xml* family (they run SQL text or
 *		read whole tables).  A few pg_ functions that only look at their
 *		argument are allowed: pg_typeof, pg_column_size, pg_collation_for,
 *		pg_client_encoding, pg_encoding_to_char, pg_char_to_encoding.
 *
 *	  - Code in types: input and output functions run whenever a value is
 *		written as a literal or converted through text; a domain's CHECK
 *		constraints run whenever a value is coerced into it
 *		(CcrmTypeCodeProblem).  Base types can only be made by superusers;
 *		domains, ranges, enums and composite types by anyone.  A domain's
 *		constraints may run as the runner when they only call pure
 *		built-ins, or when the domain's owner may act as the runner.
 *
 *	  - A function run as a whole (a module tool, a type's I/O function):
 *		its owner must be able to act as the runner (CcrmAuthorMayActAs):
 *		the same role, a superuser, or a role with the runner's privileges
 *		(has_privs_of_role).  Such an author gains nothing by having the
 *		code run as the runner: they could do it themselves.
 *
 *	  Everything here reads the system caches only; nothing is cached
 *	  between calls, so a CREATE OR REPLACE, ALTER DOMAIN or owner change
 *	  is seen at the next use.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "code_trust.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_range.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

/* Stable built-ins that read the server's state rather than their arguments. */
static const char *const state_prefixes[] = {
	"pg_", "has_", "txid_", "inet_client_", "inet_server_", "to_reg", NULL
};
static const char *const state_suffixes[] = {
	"_to_xml", "_to_xmlschema", "_to_xml_and_xmlschema", NULL
};
static const char *const state_names[] = {
	"current_setting", "row_security_active", "mxid_age", "obj_description",
	"col_description", "shobj_description", "format_type", "oidvectortypes",
	"ts_stat", "ts_rewrite", "regclass", NULL
};
static const char *const harmless_pg_names[] = {
	"pg_typeof", "pg_column_size", "pg_collation_for", "pg_client_encoding",
	"pg_encoding_to_char", "pg_char_to_encoding", NULL
};

static bool
name_in(const char *name, const char *const *list)
{
	for (int i = 0; list[i] != NULL; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

/* regclassin, regtypeout, ...: catalog lookups through text. */
static bool
is_reg_io(const char *name)
{
	size_t		len = strlen(name);

	if (strncmp(name, "reg", 3) != 0 || strspn(name, "abcdefghijklmnopqrstuvwxyz") != len)
		return false;
	return (len > 5 && strcmp(name + len - 2, "in") == 0) ||
		(len > 6 && strcmp(name + len - 3, "out") == 0);
}

static bool
reads_state(const char *name)
{
	size_t		len = strlen(name);

	if (name_in(name, harmless_pg_names))
		return false;
	if (name_in(name, state_names) || is_reg_io(name))
		return true;
	for (int i = 0; state_prefixes[i] != NULL; i++)
		if (strncmp(name, state_prefixes[i], strlen(state_prefixes[i])) == 0)
			return true;
	for (int i = 0; state_suffixes[i] != NULL; i++)
	{
		size_t		slen = strlen(state_suffixes[i]);

		if (len > slen && strcmp(name + len - slen, state_suffixes[i]) == 0)
			return true;
	}
	return false;
}

static char *
role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("with OID %u", role);
}

bool
CcrmAuthorMayActAs(Oid author, Oid runner)
{
	return has_privs_of_role(author, runner);
}

CcrmPurity
CcrmFunctionPurity(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	CcrmPurity	result = CCRM_PURE;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", funcid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->pronamespace != PG_CATALOG_NAMESPACE || proc->proowner != BOOTSTRAP_SUPERUSERID)
		result = CCRM_NOT_BUILTIN;
	else if (proc->provolatile == PROVOLATILE_VOLATILE)
		result = CCRM_VOLATILE;
	else if (proc->proretset)
		result = CCRM_RETURNS_SET;
	else if (proc->prosecdef)
		result = CCRM_SECURITY_DEFINER;
	else if (proc->provolatile == PROVOLATILE_STABLE && reads_state(NameStr(proc->proname)))
		result = CCRM_READS_STATE;
	ReleaseSysCache(tup);
	return result;
}

char *
CcrmFunctionCodeProblem(Oid funcid, Oid runner)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", funcid);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	if (CcrmAuthorMayActAs(owner, runner))
		return NULL;
	return psprintf("function %s is code of role %s, who cannot act as %s",
					format_procedure_qualified(funcid), role_name(owner), role_name(runner));
}

/* ----------------------------------------------------------------
 * Code in types
 * ---------------------------------------------------------------- */

typedef struct PureCheck
{
	Oid			runner;
	int			depth;
	Oid			bad_function;	/* first function that is not pure */
	char	   *bad_type;		/* or the problem of a type it uses */
} PureCheck;

static char *type_problem(Oid typid, Oid runner, bool constraints, int depth);

static bool
impure_function(Oid funcid, void *context)
{
	PureCheck  *pc = context;

	if (CcrmFunctionPurity(funcid) == CCRM_PURE)
		return false;
	pc->bad_function = funcid;
	return true;
}

/* Does a (constraint) expression call only pure built-ins, with types whose code may run? */
static bool
impure_walker(Node *node, PureCheck *pc)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, impure_function, pc))
		return true;
	if (IsA(node, MinMaxExpr))
	{
		TypeCacheEntry *tc = lookup_type_cache(((MinMaxExpr *) node)->minmaxtype, TYPECACHE_CMP_PROC);

		if (OidIsValid(tc->cmp_proc) && impure_function(tc->cmp_proc, pc))
			return true;
	}
	if (IsA(node, Const) || IsA(node, CoerceToDomain) || IsA(node, CoerceViaIO))
	{
		pc->bad_type = type_problem(exprType(node), pc->runner, true, pc->depth + 1);
		if (pc->bad_type)
			return true;
	}
	return expression_tree_walker(node, impure_walker, (void *) pc);
}

/* The CHECK constraints of a domain may run as runner? */
static char *
domain_problem(Oid typid, Oid owner, Oid runner, int depth)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	char	   *problem = NULL;

	if (CcrmAuthorMayActAs(owner, runner))
		return NULL;
	rel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(typid));
	scan = systable_beginscan(rel, ConstraintTypidIndexId, true, NULL, 1, &key);
	while (problem == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
		bool		isnull;
		Datum		bin;
		PureCheck	pc;

		if (con->contype != CONSTRAINT_CHECK)
			continue;
		bin = heap_getattr(tup, Anum_pg_constraint_conbin, RelationGetDescr(rel), &isnull);
		if (isnull)
			continue;
		memset(&pc, 0, sizeof(pc));
		pc.runner = runner;
		pc.depth = depth;
		if (!impure_walker(stringToNode(TextDatumGetCString(bin)), &pc))
			continue;
		problem = psprintf("constraint %s of domain %s calls %s and is code of role %s, who cannot act as %s",
						   quote_identifier(NameStr(con->conname)), format_type_be(typid),
						   OidIsValid(pc.bad_function) ? format_procedure_qualified(pc.bad_function)
						   : "code of a type that may not run",
						   role_name(owner), role_name(runner));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return problem;
}

static char *
type_problem(Oid typid, Oid runner, bool constraints, int depth)
{
	static const char *const func_roles[6] = {
		"input function", "output function", "receive function", "send function",
		"typmod input function", "typmod output function"
	};
	HeapTuple	tup;
	Form_pg_type typ;
	Oid			funcs[6];
	Oid			owner;
	Oid			basetype;
	Oid			relid;
	char		typtype;
	char	   *problem = NULL;

	if (depth > 32)
		return psprintf("type %s is nested too deeply to be checked", format_type_be(typid));
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	typ = (Form_pg_type) GETSTRUCT(tup);
	funcs[0] = typ->typinput;
	funcs[1] = typ->typoutput;
	funcs[2] = typ->typreceive;
	funcs[3] = typ->typsend;
	funcs[4] = typ->typmodin;
	funcs[5] = typ->typmodout;
	owner = typ->typowner;
	basetype = typ->typbasetype;
	relid = typ->typrelid;
	typtype = typ->typtype;
	ReleaseSysCache(tup);

	/* the built-in types of PostgreSQL: nothing to look at */
	if (owner == BOOTSTRAP_SUPERUSERID && typid < FirstNormalObjectId)
		return NULL;

	for (size_t i = 0; i < lengthof(funcs); i++)
	{
		if (OidIsValid(funcs[i]) && (problem = CcrmFunctionCodeProblem(funcs[i], runner)) != NULL)
			return psprintf("%s (the %s of type %s)", problem, func_roles[i], format_type_be(typid));
	}

	switch (typtype)
	{
		case TYPTYPE_DOMAIN:
			if (constraints)
				problem = domain_problem(typid, owner, runner, depth);
			if (problem == NULL)
				problem = type_problem(basetype, runner, constraints, depth + 1);
			break;
		case TYPTYPE_RANGE:
			{
				HeapTuple	rtup = SearchSysCache1(RANGETYPE, ObjectIdGetDatum(typid));
				Oid			subtype;
				Oid			canonical;

				if (!HeapTupleIsValid(rtup))
					elog(ERROR, "cache lookup failed for range type %u", typid);
				subtype = ((Form_pg_range) GETSTRUCT(rtup))->rngsubtype;
				canonical = ((Form_pg_range) GETSTRUCT(rtup))->rngcanonical;
				ReleaseSysCache(rtup);
				if (OidIsValid(canonical))
					problem = CcrmFunctionCodeProblem(canonical, runner);
				if (problem == NULL)
					problem = type_problem(subtype, runner, constraints, depth + 1);
				break;
			}
		case TYPTYPE_MULTIRANGE:
			problem = type_problem(get_multirange_range(typid), runner, constraints, depth + 1);
			break;
		case TYPTYPE_COMPOSITE:
			if (OidIsValid(relid))
			{
				TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);

				for (int i = 0; i < desc->natts && problem == NULL; i++)
					if (!TupleDescAttr(desc, i)->attisdropped)
						problem = type_problem(TupleDescAttr(desc, i)->atttypid, runner, constraints, depth + 1);
				ReleaseTupleDesc(desc);
			}
			break;
		default:
			{
				Oid			elem = get_element_type(typid);

				if (OidIsValid(elem))
					problem = type_problem(elem, runner, constraints, depth + 1);
			}
			break;
	}
	return problem;
}

char *
CcrmTypeCodeProblem(Oid typid, Oid runner, bool constraints)
{
	return type_problem(typid, runner, constraints, 0);
}
