/*-------------------------------------------------------------------------
 *
 * tool.c
 *	  Module tools (seed: "Aja moduulityökalu kohderyhmälle"): functions
 *	  registered under a name that do something with the members of a
 *	  target group, run from SQL (ccrm.run_tool) or by the job kind
 *	  run_tool.
 *
 *	  A tool is a function f(member_ids bigint[], params jsonb) returning a
 *	  count (bigint or integer), registered for one entity or for any.  It
 *	  is code written by the function's owner, and it runs with the rights
 *	  of whoever runs it: the caller of ccrm.run_tool, or the job's owner.
 *	  So, checked again at every use (run and job validation), not only
 *	  when registered, because CREATE OR REPLACE, ALTER FUNCTION and owner
 *	  changes happen behind ccrm's back:
 *
 *	  - the function still exists, still has a tool's signature and is not
 *		SECURITY DEFINER;
 *	  - the role that registered it still owns it (or is a member of its
 *		owner): an owner change makes the tool unusable until its new owner
 *		registers it;
 *	  - the function's owner can act as the runner (code_trust.c): the
 *		runner itself, a superuser (ccrm's built-in tools, functions of
 *		extensions), or a role that has the runner's privileges.  A tool of
 *		another role never runs with your rights; its author gains nothing
 *		from a run they could not do themselves;
 *	  - the runner may EXECUTE it.
 *	  The function is then called by its OID (no name lookup that another
 *	  overload could win), confined to the runner (run_as_owner.c).
 *
 *	  Names are first come, first served and global: a name refers to one
 *	  tool.  Taking a name gains nothing but the name, since a tool only
 *	  runs for roles its author can act as; the registrant or a ccrm admin
 *	  unregisters it.
 *
 *	  ccrm.tool is written as the owner of ccrm's catalog (ordinary roles
 *	  only read it); the checks above happen first, as the caller.
 *
 *	  Built-in tools (for what ccrm does already): <entity>_set_owner
 *	  {"owner": username or id} and <entity>_create_task {"subject",
 *	  "description", "user", "due_in_days", "priority"} for contacts,
 *	  accounts and leads, add_to_group {"group": name} for any entity, and
 *	  add_to_campaign / remove_from_campaign {"campaign": name} for groups of
 *	  contacts, accounts (their contacts) and leads; those two names are
 *	  reserved (the 0.8.0 update stops when a tool has one of them).
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "guc_level.h"
#include "json_util.h"
#include "execute_as_owner.h"
#include "spi_debug.h"
#include "action_run.h"
#include "code_trust.h"
#include "instant.h"
#include "privilege.h"
#include "run_as_owner.h"
#include "setting.h"
#include "slots.h"
#include "target_group.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ccrm_register_tool);
PG_FUNCTION_INFO_V1(ccrm_unregister_tool);
PG_FUNCTION_INFO_V1(ccrm_run_tool);
PG_FUNCTION_INFO_V1(ccrm_job_run_tool);
PG_FUNCTION_INFO_V1(ccrm_job_check_tool);
PG_FUNCTION_INFO_V1(ccrm_tool_set_owner);
PG_FUNCTION_INFO_V1(ccrm_tool_create_task);
PG_FUNCTION_INFO_V1(ccrm_tool_group_entity);

/* The entity of the group a tool is running for (NULL outside a tool run). */
static const char *running_entity = NULL;

typedef struct Tool
{
	char	   *name;
	char	   *entity;			/* NULL: any */
	Oid			funcid;
	Oid			owner;			/* who registered it (ccrm.tool.owner) */
} Tool;

static char *
tool_names(void)
{
	char	   *names;

	if (SPI_execute("SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM ccrm.tool", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.tool");
	names = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return names ? names : "(none)";
}

/* A tool by name, its function checked to still exist; SPI connected. */
static Tool *
tool_lookup(const char *name)
{
	Tool	   *t = palloc0(sizeof(Tool));
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(name);
	bool		isnull;

	if (SPI_execute_with_args("SELECT name, entity, function::pg_catalog.oid, owner::pg_catalog.oid FROM ccrm.tool"
							  " WHERE name OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.tool");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tool \"%s\" does not exist", name),
				 errhint("Registered tools: %s.", tool_names())));
	t->name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	t->entity = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	t->funcid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	t->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	if (get_func_name(t->funcid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the function of tool \"%s\" no longer exists", name),
				 errhint("Unregister the tool with ccrm.unregister_tool('%s') and register it again.", name)));
	return t;
}

/*
 * A function that can be a tool: (bigint[], jsonb) returning a count, not
 * a procedure, not returning a set, not SECURITY DEFINER.  Checked when it
 * is registered and whenever the tool is used.
 */
static void
check_tool_function(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	char	   *sig;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", funcid)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	sig = format_procedure(funcid);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset || proc->pronargs != 2 ||
		proc->proargtypes.values[0] != INT8ARRAYOID || proc->proargtypes.values[1] != JSONBOID ||
		(proc->prorettype != INT8OID && proc->prorettype != INT4OID))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s cannot be a tool", sig),
				 errdetail("A tool is a function (member_ids bigint[], params jsonb) that returns a count, bigint or integer."),
				 errhint("Write it as CREATE FUNCTION my_tool(member_ids bigint[], params jsonb) RETURNS bigint ...")));
	if (proc->prosecdef)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s cannot be a tool: it is SECURITY DEFINER", sig),
				 errhint("A tool runs with the privileges of whoever runs it; make the function SECURITY INVOKER.")));
	ReleaseSysCache(tup);
}

/*
 * Everything a use of the tool needs, as the current user (the runner):
 * it fits the group's entity, its function is still a tool's and still
 * owned by whoever registered it, its owner can act as the runner, and
 * the runner may execute it.
 */
static void
check_tool_for_group(Tool *t, CcrmGroup *group)
{
	Oid			runner = GetUserId();
	char	   *problem;

	if (t->entity && strcmp(t->entity, group->entity->name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tool \"%s\" works on %s, and group \"%s\" is a group of %s",
						t->name, t->entity, group->name, group->entity->name),
				 errhint("Choose a tool registered for %s or for any entity.", group->entity->name)));
	check_tool_function(t->funcid);
	if (!pg_proc_ownercheck(t->funcid, t->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tool \"%s\" cannot run: %s, who registered it, no longer owns %s",
						t->name, CcrmRoleName(t->owner), format_procedure(t->funcid)),
				 errhint("The function's owner may register it under a name of their own; unregister this one with ccrm.unregister_tool('%s').",
						 t->name)));
	problem = CcrmFunctionCodeProblem(t->funcid, runner);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tool \"%s\" may not run as %s", t->name, GetUserNameFromId(runner, false)),
				 errdetail("Its %s.", problem),
				 errhint("A tool runs with the rights of whoever runs it, so it only runs for roles its author can act as; "
						 "let its author run it, or make the author a member of %s.", GetUserNameFromId(runner, false))));
	if (pg_proc_aclcheck(t->funcid, runner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to run tool \"%s\"", t->name),
				 errdetail("%s may not execute %s.", GetUserNameFromId(runner, false),
						   format_procedure(t->funcid)),
				 errhint("A tool runs with the privileges of whoever runs it; grant EXECUTE on the function.")));
}

/*
 * ccrm.register_tool(name text, entity text, function regprocedure,
 * description text)
 */
Datum
ccrm_register_tool(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			funcid;
	Oid			types[5] = {TEXTOID, TEXTOID, OIDOID, TEXTOID, OIDOID};
	Datum		values[5];
	char		nulls[6] = "     ";

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name and function of a tool must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	funcid = PG_GETARG_OID(2);
	if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name) ||
		name[0] < 'a' || name[0] > 'z')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid tool name \"%s\"", name),
				 errhint("A tool name starts with a lower-case letter and has only lower-case letters, digits and underscores.")));
	if (!PG_ARGISNULL(1))
		(void) CcrmEntityLookup(text_to_cstring(PG_GETARG_TEXT_PP(1)), false);

	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(funcid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", funcid)));
	if (!pg_proc_ownercheck(funcid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the owner of function %s or a superuser may register it as a tool", format_procedure(funcid)),
				 errhint("Ask the owner of the function to register it.")));
	check_tool_function(funcid);

	CcrmSPIConnect();
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT 1 FROM ccrm.tool WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.tool");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("tool \"%s\" already exists", name),
				 errhint("Choose another name, or unregister the tool first with ccrm.unregister_tool('%s').", name)));
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = ObjectIdGetDatum(funcid);
	values[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[3] = PG_ARGISNULL(3) ? 'n' : ' ';
	values[4] = ObjectIdGetDatum(GetUserId());
	CcrmExecuteAsOwner("INSERT INTO ccrm.tool (name, entity, function, description, owner)"
					   " VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regprocedure, $4, $5::pg_catalog.regrole)",
					   5, types, values, nulls, SPI_OK_INSERT);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ccrm.unregister_tool(name text): its registrant or a superuser; not built-ins. */
Datum
ccrm_unregister_tool(PG_FUNCTION_ARGS)
{
	Oid			type = TEXTOID;
	Datum		arg = PG_GETARG_DATUM(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		isnull;
	Oid			owner;

	CcrmSPIConnect();
	if (SPI_execute_with_args("SELECT owner::pg_catalog.oid, builtin FROM ccrm.tool WHERE name OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.tool");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tool \"%s\" does not exist", name),
				 errhint("Registered tools: %s.", tool_names())));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("built-in tool \"%s\" cannot be unregistered", name)));
	if (!CcrmMayManage(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only %s, who registered tool \"%s\", or a ccrm admin may unregister it",
						CcrmRoleName(owner), name)));
	CcrmExecuteAsOwner("DELETE FROM ccrm.tool WHERE name OPERATOR(pg_catalog.=) $1", 1, &type, &arg, NULL,
					   SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}

typedef struct ToolCall
{
	Oid			funcid;
	Datum		member_ids;
	Jsonb	   *params;
	bool		isnull;
} ToolCall;

/*
 * The run whose tool is being called (NULL outside call_tool): a tool's
 * signature carries no instant, so the built-in tools read the action date
 * of the run they work for here.
 */
static const CcrmRun *tool_run = NULL;

/* The call itself, by OID: no name lookup another overload could win. */
static Datum
invoke_tool(void *arg)
{
	ToolCall   *call = arg;
	LOCAL_FCINFO(fcinfo, 2);
	FmgrInfo	flinfo;
	Datum		result;

	fmgr_info(call->funcid, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = call->member_ids;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = JsonbPGetDatum(call->params);
	fcinfo->args[1].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	call->isnull = fcinfo->isnull;
	if (fcinfo->isnull)
		return Int64GetDatum(0);
	return get_func_rettype(call->funcid) == INT4OID ? Int64GetDatum(DatumGetInt32(result)) : result;
}

/*
 * Call a tool with the members of the group, confined to the runner;
 * returns the counts.  SPI connected.
 */
static Jsonb *
call_tool(const CcrmRun *run, CcrmGroup *group, Tool *t, Jsonb *params)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(group->id);
	bool		isnull;
	ToolCall	call;
	volatile int64 result;
	StringInfoData counts;

	check_tool_for_group(t, group);
	if (SPI_execute_with_args("SELECT ARRAY(SELECT m.member_id FROM ccrm.target_group_membership m"
							  " WHERE m.group_id OPERATOR(pg_catalog.=) $1 AND m.left_at IS NULL ORDER BY m.member_id)",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the members of group \"%s\"", group->name);
	call.funcid = t->funcid;
	call.member_ids = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
								false, -1);
	call.params = params;
	call.isnull = false;
	SPI_freetuptable(SPI_tuptable);
	{
		const CcrmRun *outer = tool_run;
		const char *outer_entity = running_entity;

		tool_run = run;
		running_entity = group->entity->name;
		PG_TRY();
		{
			result = DatumGetInt64(CcrmRunConfined(GetUserId(), invoke_tool, &call));
		}
		PG_FINALLY();
		{
			tool_run = outer;
			running_entity = outer_entity;
		}
		PG_END_TRY();
	}
	initStringInfo(&counts);
	appendStringInfoString(&counts, "{\"tool\": ");
	escape_json(&counts, t->name);
	appendStringInfo(&counts, ", \"members\": " INT64_FORMAT ", \"result\": " INT64_FORMAT "}",
					 group->member_count, result);
	return CcrmJsonbFromCString(counts.data);
}

static Jsonb *
empty_object(void)
{
	return CcrmJsonbFromCString("{}");
}

/* ccrm.run_tool(group text, tool text, params jsonb, at timestamptz) → run id */
Datum
ccrm_run_tool(PG_FUNCTION_ARGS)
{
	int64		group_id;
	CcrmGroup  *group;
	CcrmRun    *run;
	Tool	   *t;
	Jsonb	   *params;
	Jsonb	   *counts;
	int64		run_id;
	TimestampTz at;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("group and tool must not be null")));
	at = CcrmInstantArg(fcinfo, 3);
	params = PG_ARGISNULL(2) ? empty_object() : PG_GETARG_JSONB_P(2);
	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters of a tool must be a JSON object")));
	group_id = CcrmGroupIdByName(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	CcrmSPIConnect();
	group = CcrmGroupLoad(group_id);
	t = tool_lookup(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	check_tool_for_group(t, group);
	run = CcrmRunBeginDirect("run_tool", group_id, psprintf("tool %s", t->name), at);
	counts = call_tool(run, group, t, params);
	CcrmRunFinishDirect(run, counts);
	run_id = run->id;
	SPI_finish();
	PG_RETURN_INT64(run_id);
}

/* Parameters of a run_tool job: {"tool": name, "params": {...}}. */
static Tool *
parse_job_params(Jsonb *params, Jsonb **tool_params)
{
	static const char *const job_keys[] = {"tool", "params", NULL};
	JsonbValue *name;
	JsonbValue *p;

	if (params == NULL || !JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters of a run_tool job must be a JSON object"),
				 errhint("Write {\"tool\": \"name\", \"params\": {...}}.")));
	CcrmCheckParamKeys(params, job_keys, "a run_tool job");
	name = CcrmJsonbGet(params, "tool");
	if (name == NULL || name->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a run_tool job needs \"tool\": the name of a registered tool"),
				 errhint("Registered tools: %s.", tool_names())));
	p = CcrmJsonbGet(params, "params");
	if (p == NULL || p->type == jbvNull)
		*tool_params = empty_object();
	else if (p->type != jbvBinary || !JsonContainerIsObject(p->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"params\" of a run_tool job must be a JSON object")));
	else
		*tool_params = JsonbValueToJsonb(p);
	return tool_lookup(pnstrdup(name->val.string.val, name->val.string.len));
}

/* Runner of job kind run_tool. */
Datum
ccrm_job_run_tool(PG_FUNCTION_ARGS)
{
	CcrmRun    *run;
	CcrmGroup  *group;
	Tool	   *t;
	Jsonb	   *tool_params;
	Datum		result;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a run_tool job needs a run, a target group and an action time")));
	run = CcrmRunForJob(PG_GETARG_INT64(1), PG_GETARG_INT64(2), PG_GETARG_TIMESTAMPTZ(4),
						PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5)));
	CcrmSPIConnect();
	t = parse_job_params(PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3), &tool_params);
	group = CcrmGroupLoad(run->group_id);
	result = SPI_datumTransfer(JsonbPGetDatum(call_tool(run, group, t, tool_params)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* Validator of job kind run_tool. */
Datum
ccrm_job_check_tool(PG_FUNCTION_ARGS)
{
	CcrmGroup  *group;
	Tool	   *t;
	Jsonb	   *tool_params;
	StringInfoData buf;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a run_tool job needs a target group"),
				 errhint("Give the job the group whose members the tool gets.")));
	CcrmSPIConnect();
	t = parse_job_params(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &tool_params);
	group = CcrmGroupLoad(PG_GETARG_INT64(0));
	check_tool_for_group(t, group);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"tool\": ");
	escape_json(&buf, t->name);
	appendStringInfo(&buf, ", \"params\": %s}", JsonbToCString(NULL, &tool_params->root, VARSIZE(tool_params)));
	result = SPI_datumTransfer(JsonbPGetDatum(CcrmJsonbFromCString(buf.data)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* ----------------------------------------------------------------
 * Built-in tools
 * ---------------------------------------------------------------- */

static char *
param_text(Jsonb *params, const char *key)
{
	JsonbValue *v = CcrmJsonbGet(params, key);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("tool parameter \"%s\" must be a string or a number", key)));
	return NULL;
}

/* An active user by username or id (params[key]); SPI connected. */
static int64
param_user(Jsonb *params, const char *key, bool required, const char *tool)
{
	char	   *who = param_text(params, key);
	Oid			type = TEXTOID;
	Datum		arg;
	bool		isnull;

	if (who == NULL)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("tool %s needs \"%s\": a username or user id", tool, key)));
		return 0;
	}
	arg = CStringGetTextDatum(who);
	if (SPI_execute_with_args("SELECT id FROM ccrm.crm_user WHERE active AND (username OPERATOR(pg_catalog.=) $1"
							  " OR id::pg_catalog.text OPERATOR(pg_catalog.=) $1)",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ccrm.crm_user");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("tool %s: no active user \"%s\"", tool, who),
				 errhint("Give the username or id of an active row of ccrm.crm_user.")));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static void
check_params(Jsonb *params, const char *tool, const char *const *keys)
{
	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters of tool %s must be a JSON object", tool)));
	CcrmCheckParamKeys(params, keys, psprintf("tool %s", tool));
}

/* ccrm.tool_set_owner(entity text, member_ids bigint[], params jsonb): {"owner": user} */
Datum
ccrm_tool_set_owner(PG_FUNCTION_ARGS)
{
	static const char *const keys[] = {"owner", NULL};
	char	   *entity = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *params = PG_GETARG_JSONB_P(2);
	CcrmEntity *ent = CcrmEntityLookup(entity, false);
	const char *tool = psprintf("%s_set_owner", entity);
	Oid			types[2] = {INT8ARRAYOID, INT8OID};
	Datum		args[2];
	int64		n;
	int			nestlevel;

	if (ent->owner_column == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("entity %s has no owner", entity)));
	check_params(params, tool, keys);
	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	args[0] = PG_GETARG_DATUM(1);
	args[1] = Int64GetDatum(param_user(params, "owner", true, tool));
	if (SPI_execute_with_args(psprintf("UPDATE %s t SET %s = $2 WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1)"
									   " AND t.%s IS DISTINCT FROM $2",
									   ent->qualname, quote_identifier(ent->owner_column),
									   quote_identifier(ent->key_column), quote_identifier(ent->owner_column)),
							  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not set owners");
	n = SPI_processed;
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	PG_RETURN_INT64(n);
}

/*
 * ccrm.tool_create_task(entity text, member_ids bigint[], params jsonb):
 * a task per member for a user (default: the record's owner; records
 * without one are skipped), due N days after the action date of the run
 * that calls it (ccrm.run_tool's at, a job's slot); called outside a run,
 * after the day the transaction began in the time_zone setting.
 */
Datum
ccrm_tool_create_task(PG_FUNCTION_ARGS)
{
	static const char *const keys[] = {"subject", "description", "user", "due_in_days", "priority", NULL};
	char	   *entity = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *params = PG_GETARG_JSONB_P(2);
	const char *tool = psprintf("%s_create_task", entity);
	const char *link;
	char	   *subject;
	char	   *days;
	char	   *priority;
	int64		user;
	Oid			types[8] = {INT8ARRAYOID, TEXTOID, TEXTOID, INT8OID, INT4OID, TEXTOID, TEXTOID, DATEOID};
	Datum		args[8];
	char		nulls[9] = "        ";
	int64		n;
	int			nestlevel;

	if (strcmp(entity, "contact") == 0)
		link = "contact_id";
	else if (strcmp(entity, "account") == 0)
		link = "account_id";
	else if (strcmp(entity, "lead") == 0)
		link = "lead_id";
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tasks can be created for contacts, accounts and leads, not for %s", entity)));
	check_params(params, tool, keys);
	subject = param_text(params, "subject");
	if (subject == NULL || subject[strspn(subject, " \t\r\n")] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tool %s needs \"subject\"", tool),
				 errhint("Write {\"subject\": \"Call back\", \"due_in_days\": 3}.")));
	days = param_text(params, "due_in_days");
	priority = param_text(params, "priority");

	CcrmSPIConnect();
	nestlevel = CcrmPushSafeSearchPath();
	CcrmUseConfiguredTimeZone();
	user = param_user(params, "user", false, tool);
	args[0] = PG_GETARG_DATUM(1);
	args[1] = CStringGetTextDatum(subject);
	args[2] = CStringGetTextDatum("");
	if (param_text(params, "description"))
		args[2] = CStringGetTextDatum(param_text(params, "description"));
	else
		nulls[2] = 'n';
	args[3] = Int64GetDatum(user);
	nulls[3] = user ? ' ' : 'n';
	args[4] = Int32GetDatum(days ? pg_strtoint32(days) : 0);
	args[5] = CStringGetTextDatum(priority ? priority : "normal");
	args[6] = CStringGetTextDatum(entity);
	args[7] = DateADTGetDatum(tool_run ? tool_run->action_date
							  : CcrmLocalDate(GetCurrentTransactionStartTimestamp(), CcrmSettingTimeZone()));
	if (SPI_execute_with_args(psprintf("INSERT INTO ccrm.activity (kind, subject, description, user_id, %s, due_on, priority)"
									   " SELECT 'task', $2, $3, COALESCE($4, e.owner_id), e.id,"
									   "        $8 OPERATOR(pg_catalog.+) $5, $6"
									   "   FROM ccrm.%s e WHERE e.id OPERATOR(pg_catalog.=) ANY ($1)"
									   "    AND COALESCE($4, e.owner_id) IS NOT NULL AND $7 IS NOT NULL"
									   "  ORDER BY e.id",
									   link, quote_identifier(entity)),
							  8, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not create tasks");
	n = SPI_processed;
	CcrmPopSearchPath(nestlevel);
	SPI_finish();
	PG_RETURN_INT64(n);
}

/*
 * ccrm.tool_group_entity() → text: the entity of the group the running tool
 * was called for, so that a tool registered for any entity knows what its
 * member ids are (add_to_campaign: contacts, accounts or leads); NULL
 * outside a tool run.
 */
Datum
ccrm_tool_group_entity(PG_FUNCTION_ARGS)
{
	if (running_entity == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(running_entity));
}
