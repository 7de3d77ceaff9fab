/*-------------------------------------------------------------------------
 *
 * privilege.c
 *	  ccrm's privilege model (README "Security"), in one place:
 *
 *	  - Every definition (target group, activity plan, formula, tool, job)
 *	    has an owner, a role stored as its oid (regrole), so a new role
 *	    that reuses a dropped role's name inherits nothing.
 *	  - A definition may be USED (run, named by a job, depended on) by its
 *	    owner and by members of the owner role, i.e. roles that could
 *	    SET ROLE to it.  Being a superuser or a ccrm admin does not count:
 *	    nothing a role defines is run with rights its owner could not get.
 *	  - ccrm admins are superusers and roles with the privileges of the
 *	    role named by ccrm.admin_role (PGC_SUSET; '' = superusers only).
 *	    They may see and MANAGE every definition (row level security
 *	    policies call ccrm.is_admin()), give definitions to other roles
 *	    (never to a superuser unless they are one) and grant the right to
 *	    act as CRM users.  Inside a run (a security-restricted operation)
 *	    nobody but a superuser is an admin: a run has its owner's rights
 *	    as a plain role.
 *	  - A role may ACT AS a CRM user (send as, on behalf of) when it has
 *	    the privileges of that user's database role (crm_user.role), of a
 *	    role an admin granted it to (ccrm.act_as_grant), or is an admin.
 *	  - Owner changes and crm_user.role changes are made by admins only;
 *	    these checks apply during a restore too.
 *
 *	  Reads of ccrm's tables here run as the catalog's owner
 *	  (CcrmExecuteAsOwner), so row level security never hides the row a
 *	  check is about; the decision is made here, for the role asked about.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "tuple_util.h"
#include "execute_as_owner.h"
#include "spi_debug.h"
#include "privilege.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ccrm_is_admin);
PG_FUNCTION_INFO_V1(ccrm_may_use);
PG_FUNCTION_INFO_V1(ccrm_may_act_as);
PG_FUNCTION_INFO_V1(ccrm_grant_act_as);
PG_FUNCTION_INFO_V1(ccrm_revoke_act_as);
PG_FUNCTION_INFO_V1(ccrm_owner_trigger);
PG_FUNCTION_INFO_V1(ccrm_group_dependency_trigger);
PG_FUNCTION_INFO_V1(ccrm_crm_user_role_trigger);

/*---- GUC variables ----*/
char	   *ccrm_admin_role = NULL;

void
CcrmPrivilegeInit(void)
{
	DefineCustomStringVariable("ccrm.admin_role",
							   "Role whose members manage every ccrm definition.",
							   "Empty: superusers only.  Roles with the privileges of this role see and change "
							   "every group, plan, formula, tool and job, give them to other roles and grant "
							   "the right to act as CRM users.",
							   &ccrm_admin_role, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
}

char *
CcrmRoleName(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("%u", role);
}

static bool
role_exists(Oid role)
{
	return SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role));
}

bool
CcrmIsAdmin(Oid role)
{
	Oid			admin;

	if (superuser_arg(role))
		return true;
	if (InSecurityRestrictedOperation())
		return false;
	if (ccrm_admin_role == NULL || ccrm_admin_role[0] == '\0')
		return false;
	admin = get_role_oid(ccrm_admin_role, true);
	return OidIsValid(admin) && has_privs_of_role(role, admin);
}

bool
CcrmMayUse(Oid role, Oid owner)
{
	return role == owner || (OidIsValid(owner) && is_member_of_role_nosuper(role, owner));
}

bool
CcrmMayManage(Oid owner)
{
	return CcrmMayUse(GetUserId(), owner) || CcrmIsAdmin(GetUserId());
}

void
CcrmCheckOwner(Oid owner, bool is_insert, bool changed, const char *what, const char *name)
{
	Oid			me = GetUserId();
	const char *label = name ? psprintf("%s \"%s\"", what, name) : pstrdup(what);

	/* unchanged: a definition whose owner was dropped can still be switched off */
	if (!changed)
		return;
	if (!OidIsValid(owner) || !role_exists(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", owner),
				 errdetail("The owner of %s must be an existing role.", label)));
	if ((is_insert && owner == me) || superuser())
		return;
	if (CcrmIsAdmin(me))
	{
		if (superuser_arg(owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to give %s to superuser \"%s\"", label, CcrmRoleName(owner)),
					 errdetail("Only superusers may make a superuser the owner of a ccrm definition.")));
		return;
	}
	if (is_insert)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create %s owned by role \"%s\"", label, CcrmRoleName(owner)),
				 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may create definitions for other roles."),
				 errhint("Leave the owner out: the %s then belongs to you.", what)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to change the owner of %s", label),
			 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may change owners.")));
}

void
CcrmCheckMayUse(Oid role, Oid owner, const char *user_what, const char *user_name,
				const char *what, const char *name, int64 id)
{
	if (CcrmMayUse(role, owner))
		return;
	if (!CcrmMayManage(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s \"%s\" may not use %s " INT64_FORMAT, user_what, user_name, what, id),
				 errdetail("It belongs to another role."),
				 errhint("A definition may use what its owner owns, or what a role its owner is a member of owns.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s \"%s\" may not use %s \"%s\"", user_what, user_name, what, name),
			 errdetail("The %s belongs to role \"%s\", and the %s to role \"%s\".",
					   what, CcrmRoleName(owner), user_what, CcrmRoleName(role)),
			 errhint("A definition may use what its owner owns, or what a role its owner is a member of owns.")));
}

/* ----------------------------------------------------------------
 * Acting as CRM users
 * ---------------------------------------------------------------- */

/* SPI connected. */
static bool
may_act_as(int64 crm_user_id, Oid role, bool *user_exists)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(crm_user_id)};
	bool		isnull;
	Datum		d;

	*user_exists = false;
	CcrmExecuteAsOwner("SELECT role::pg_catalog.oid FROM ccrm.crm_user WHERE id OPERATOR(pg_catalog.=) $1",
					   1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*user_exists = true;
	if (CcrmIsAdmin(role))
		return true;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && role_exists(DatumGetObjectId(d)) && has_privs_of_role(role, DatumGetObjectId(d)))
		return true;
	CcrmExecuteAsOwner("SELECT grantee::pg_catalog.oid FROM ccrm.act_as_grant"
					   " WHERE crm_user_id OPERATOR(pg_catalog.=) $1",
					   1, types, args, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Oid			grantee = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (role_exists(grantee) && has_privs_of_role(role, grantee))
			return true;
	}
	return false;
}

bool
CcrmMayActAs(int64 crm_user_id, Oid role)
{
	bool		exists;
	bool		result;

	CcrmSPIConnect();
	result = may_act_as(crm_user_id, role, &exists);
	SPI_finish();
	return result;
}

void
CcrmCheckMayActAs(int64 crm_user_id, Oid role, const char *what)
{
	bool		exists;
	bool		ok;

	CcrmSPIConnect();
	ok = may_act_as(crm_user_id, role, &exists);
	SPI_finish();
	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("CRM user " INT64_FORMAT " does not exist", crm_user_id)));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not act as CRM user " INT64_FORMAT, CcrmRoleName(role), crm_user_id),
				 errdetail("%s acts on behalf of a CRM user, which needs that user's database role "
						   "(ccrm.crm_user.role) or a right granted by a ccrm admin.", what),
				 errhint("A ccrm admin may grant it: SELECT ccrm.grant_act_as(" INT64_FORMAT ", '%s').",
						 crm_user_id, quote_identifier(CcrmRoleName(role)))));
}

/* ccrm.is_admin(role regrole DEFAULT current_user) */
Datum
ccrm_is_admin(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CcrmIsAdmin(PG_GETARG_OID(0)));
}

/* ccrm.may_use(owner regrole, role regrole DEFAULT current_user) */
Datum
ccrm_may_use(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CcrmMayUse(PG_GETARG_OID(1), PG_GETARG_OID(0)));
}

/* ccrm.may_act_as(crm_user_id bigint, role regrole DEFAULT current_user) */
Datum
ccrm_may_act_as(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CcrmMayActAs(PG_GETARG_INT64(0), PG_GETARG_OID(1)));
}

static void
check_admin(const char *action)
{
	if (!CcrmIsAdmin(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", action),
				 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may do this.")));
}

/* ccrm.grant_act_as(crm_user_id bigint, role regrole): true when it is new */
Datum
ccrm_grant_act_as(PG_FUNCTION_ARGS)
{
	int64		user_id = PG_GETARG_INT64(0);
	Oid			role = PG_GETARG_OID(1);
	Oid			types[3] = {INT8OID, OIDOID, OIDOID};
	Datum		args[3] = {Int64GetDatum(user_id), ObjectIdGetDatum(role), ObjectIdGetDatum(GetUserId())};
	bool		added;

	check_admin("grant the right to act as a CRM user");
	if (!role_exists(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", role)));
	CcrmSPIConnect();
	CcrmExecuteAsOwner("SELECT 1 FROM ccrm.crm_user WHERE id OPERATOR(pg_catalog.=) $1", 1, types, args, NULL,
					   SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("CRM user " INT64_FORMAT " does not exist", user_id)));
	CcrmExecuteAsOwner("INSERT INTO ccrm.act_as_grant (crm_user_id, grantee, granted_by)"
					   " VALUES ($1, $2::pg_catalog.regrole, $3::pg_catalog.regrole)"
					   " ON CONFLICT (crm_user_id, grantee) DO NOTHING",
					   3, types, args, NULL, SPI_OK_INSERT);
	added = SPI_processed > 0;
	SPI_finish();
	PG_RETURN_BOOL(added);
}

/* ccrm.revoke_act_as(crm_user_id bigint, role regrole): true when there was one */
Datum
ccrm_revoke_act_as(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {INT8OID, OIDOID};
	Datum		args[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};
	bool		removed;

	check_admin("revoke the right to act as a CRM user");
	CcrmSPIConnect();
	CcrmExecuteAsOwner("DELETE FROM ccrm.act_as_grant WHERE crm_user_id OPERATOR(pg_catalog.=) $1"
					   "   AND grantee OPERATOR(pg_catalog.=) $2::pg_catalog.regrole",
					   2, types, args, NULL, SPI_OK_DELETE);
	removed = SPI_processed > 0;
	SPI_finish();
	PG_RETURN_BOOL(removed);
}

/* ----------------------------------------------------------------
 * Triggers
 * ---------------------------------------------------------------- */

static Datum
row_attr(HeapTuple tup, TupleDesc desc, const char *name, bool *isnull)
{
	int			attno = SPI_fnumber(desc, name);

	if (attno <= 0)
		elog(ERROR, "table has no column \"%s\"", name);
	return heap_getattr(tup, attno, desc, isnull);
}

/* Owner and name of a target group, read past row level security; SPI connected. */
static bool
group_owner(int64 group_id, Oid *owner, char **name)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(group_id)};
	bool		isnull;

	CcrmExecuteAsOwner("SELECT owner::pg_catalog.oid, name FROM ccrm.target_group WHERE id OPERATOR(pg_catalog.=) $1",
					   1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/*
 * ccrm.owner_trigger(what): BEFORE INSERT OR UPDATE on the tables of
 * definitions that have no trigger of their own for it (target groups,
 * activity plans, formulas, tools).  The owner is an existing role; only
 * admins give a definition to another role.  A plan's group must be usable
 * by the plan's owner.  What uses a definition given to another role is
 * not checked here but when it is next saved or run.
 */
Datum
ccrm_owner_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	HeapTuple	old = NULL;
	bool		is_insert;
	bool		isnull;
	bool		changed;
	Oid			owner;
	char	   *table;
	char	   *name;
	const char *what;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event) ||
		td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.owner_trigger(what) must be a BEFORE INSERT OR UPDATE row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	is_insert = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	row = is_insert ? td->tg_trigtuple : td->tg_newtuple;
	if (!is_insert)
		old = td->tg_trigtuple;
	what = td->tg_trigger->tgargs[0];
	table = RelationGetRelationName(td->tg_relation);
	name = SPI_getvalue(row, desc, SPI_fnumber(desc, "name"));
	owner = DatumGetObjectId(row_attr(row, desc, "owner", &isnull));
	if (isnull)
		return PointerGetDatum(row);	/* NOT NULL reports it */
	changed = is_insert || CcrmColumnChanged(row, old, desc, "owner");
	CcrmCheckOwner(owner, is_insert, changed, what, name);
	if (CcrmRestoring())
		return PointerGetDatum(row);

	if (strcmp(table, "activity_plan") == 0 &&
		(changed || CcrmColumnChanged(row, old, desc, "group_id")))
	{
		Datum		group_id = row_attr(row, desc, "group_id", &isnull);
		Oid			gowner;
		char	   *gname;

		CcrmSPIConnect();
		if (!isnull && group_owner(DatumGetInt64(group_id), &gowner, &gname))
			CcrmCheckMayUse(owner, gowner, what, name, "target group", gname, DatumGetInt64(group_id));
		SPI_finish();
	}
	return PointerGetDatum(row);
}

/*
 * BEFORE INSERT OR UPDATE on ccrm.target_group_dependency: a group's
 * filter may name (in_group) only groups its owner may use, so no role's
 * choice of members steers another role's group.
 */
Datum
ccrm_group_dependency_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	bool		isnull;
	Oid			owner;
	Oid			dep_owner;
	char	   *name;
	char	   *dep_name;
	int64		dep_id;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.group_dependency_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	row = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : td->tg_newtuple;
	if (CcrmRestoring())
		return PointerGetDatum(row);
	CcrmSPIConnect();
	dep_id = DatumGetInt64(row_attr(row, desc, "depends_on", &isnull));
	if (group_owner(DatumGetInt64(row_attr(row, desc, "group_id", &isnull)), &owner, &name) &&
		group_owner(dep_id, &dep_owner, &dep_name))
		CcrmCheckMayUse(owner, dep_owner, "target group", name, "target group", dep_name, dep_id);
	SPI_finish();
	return PointerGetDatum(row);
}

/*
 * BEFORE INSERT OR UPDATE on ccrm.crm_user: the database role of a CRM
 * user says who may act as that user, so only admins set or change it.
 */
Datum
ccrm_crm_user_role_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	bool		is_insert;
	bool		isnull;
	Datum		role;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ccrm.crm_user_role_trigger() must be a BEFORE INSERT OR UPDATE row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	is_insert = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	row = is_insert ? td->tg_trigtuple : td->tg_newtuple;
	role = row_attr(row, desc, "role", &isnull);
	if (is_insert ? isnull : !CcrmColumnChanged(row, td->tg_trigtuple, desc, "role"))
		return PointerGetDatum(row);
	if (!isnull && !role_exists(DatumGetObjectId(role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", DatumGetObjectId(role))));
	if (!CcrmIsAdmin(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set the database role of CRM user \"%s\"",
						SPI_getvalue(row, desc, SPI_fnumber(desc, "username"))),
				 errdetail("The role of a CRM user may act as that user; only ccrm admins (ccrm.admin_role) "
						   "and superusers set it.")));
	return PointerGetDatum(row);
}

/* ----------------------------------------------------------------
 * Restores
 * ---------------------------------------------------------------- */

bool
CcrmRestoring(void)
{
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return true;
	return !check_function_bodies && CcrmIsAdmin(GetUserId());
}
