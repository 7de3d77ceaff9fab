/*-------------------------------------------------------------------------
 *
 * message_rights.c
 *	  Who may do what with messages, in one place:
 *
 *	  - a message template, like every ccrm definition, has an owner and is
 *	    used (rendered, enqueued) only by its owner and members of the
 *	    owner role; admins manage every template (row level security);
 *	  - a message "From:" a CRM user needs the right to act as that user,
 *	    checked when a template names a default sender and again whenever
 *	    a message is enqueued with a sender;
 *	  - outside senders claim and complete messages of external channels:
 *	    superusers, ccrm admins, and roles with the privileges of the role
 *	    named by ccrm.sender_role;
 *	  - channels are changed by admins only.
 *
 *	  The privilege model itself (admins, ownership, acting as CRM users)
 *	  is privilege.c's.  Until that file is part of the build, the
 *	  fallbacks below are its strict subset: admins are superusers, only a
 *	  superuser may send as a CRM user, definitions belong to whoever
 *	  creates them.  Their messages are those of privilege.c, so nothing
 *	  that callers see changes when the real checks take over.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#if defined(__has_include)
#if __has_include("privilege.h")
#define CCRM_HAVE_PRIVILEGE 1
#include "privilege.h"
#endif
#endif

/*---- GUC variables ----*/
static char *ccrm_sender_role = NULL;

void
MsgRightsInit(void)
{
	DefineCustomStringVariable("ccrm.sender_role",
							   "Role whose members may claim and complete messages of external channels.",
							   "Empty: only superusers and ccrm admins.  Outside senders log in as a member "
							   "of this role and call ccrm.claim_messages, ccrm.mark_sent and ccrm.mark_failed.",
							   &ccrm_sender_role, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
}

static char *
role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("%u", role);
}

bool
MsgIsAdmin(Oid role)
{
#ifdef CCRM_HAVE_PRIVILEGE
	return CcrmIsAdmin(role);
#else
	return superuser_arg(role);
#endif
}

bool
MsgMayUse(Oid role, Oid owner)
{
#ifdef CCRM_HAVE_PRIVILEGE
	return CcrmMayUse(role, owner);
#else
	return role == owner || (OidIsValid(owner) && is_member_of_role_nosuper(role, owner));
#endif
}

void
MsgCheckOwner(Oid owner, bool is_insert, bool changed, const char *what, const char *name)
{
#ifdef CCRM_HAVE_PRIVILEGE
	CcrmCheckOwner(owner, is_insert, changed, what, name);
#else
	const char *label = name ? psprintf("%s \"%s\"", what, name) : pstrdup(what);

	if (!OidIsValid(owner) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", owner),
				 errdetail("The owner of %s must be an existing role.", label)));
	if (!changed || (is_insert && owner == GetUserId()) || superuser())
		return;
	if (is_insert)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create %s owned by role \"%s\"", label, role_name(owner)),
				 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may create definitions for other roles."),
				 errhint("Leave the owner out: the %s then belongs to you.", what)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to change the owner of %s", label),
			 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may change owners.")));
#endif
}

/* ERROR unless the current user may use a definition of owner. */
void
MsgCheckMayUse(Oid role, Oid owner, const char *what, const char *name)
{
	if (MsgMayUse(role, owner) || superuser_arg(role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\" may not use %s \"%s\"", role_name(role), what, name),
			 errdetail("The %s belongs to role \"%s\".", what, role_name(owner)),
			 errhint("A role may use what it owns, or what a role it is a member of owns.")));
}

void
MsgCheckMayActAs(int64 crm_user_id, Oid role, const char *what)
{
#ifdef CCRM_HAVE_PRIVILEGE
	CcrmCheckMayActAs(crm_user_id, role, what);
#else
	if (superuser_arg(role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\" may not act as CRM user " INT64_FORMAT, role_name(role), crm_user_id),
			 errdetail("%s acts on behalf of a CRM user, which needs that user's database role "
					   "(ccrm.crm_user.role) or a right granted by a ccrm admin.", what),
			 errhint("A ccrm admin may grant it: SELECT ccrm.grant_act_as(" INT64_FORMAT ", '%s').",
					 crm_user_id, quote_identifier(role_name(role)))));
#endif
}

/* ERROR unless the current user may claim and complete messages. */
void
MsgCheckMaySend(const char *channel)
{
	Oid			me = GetUserId();
	Oid			sender;

	if (MsgIsAdmin(me))
		return;
	if (ccrm_sender_role && ccrm_sender_role[0])
	{
		sender = get_role_oid(ccrm_sender_role, true);
		if (OidIsValid(sender) && has_privs_of_role(me, sender))
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to send messages of channel \"%s\"", channel),
			 errdetail("Claiming and completing messages is for outside senders: superusers, ccrm admins "
					   "and members of the role named by ccrm.sender_role."),
			 errhint("A superuser may set ccrm.sender_role and grant that role to the sender.")));
}

void
MsgCheckAdmin(const char *action)
{
	if (MsgIsAdmin(GetUserId()))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s", action),
			 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may do this.")));
}
