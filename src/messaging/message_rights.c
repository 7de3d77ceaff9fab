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
 *	  is privilege.c's; this file adds only what is particular to messages.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"
#include "privilege.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"

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

/* ERROR unless the current user may use a definition of owner. */
void
MsgCheckMayUse(Oid role, Oid owner, const char *what, const char *name)
{
	if (CcrmMayUse(role, owner) || superuser_arg(role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\" may not use %s \"%s\"", CcrmRoleName(role), what, name),
			 errdetail("The %s belongs to role \"%s\".", what, CcrmRoleName(owner)),
			 errhint("A role may use what it owns, or what a role it is a member of owns.")));
}

/* ERROR unless the current user may claim and complete messages. */
void
MsgCheckMaySend(const char *channel)
{
	Oid			me = GetUserId();
	Oid			sender;

	if (CcrmIsAdmin(me))
		return;
	if (ccrm_sender_role && ccrm_sender_role[0])
	{
		sender = get_role_oid(ccrm_sender_role, true);
		if (OidIsValid(sender) && has_privs_of_role(me, sender))
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 channel ? errmsg("permission denied to send messages of channel \"%s\"", channel)
			 : errmsg("permission denied to complete messages"),
			 errdetail("Claiming and completing messages is for outside senders: superusers, ccrm admins "
					   "and members of the role named by ccrm.sender_role."),
			 errhint("A superuser may set ccrm.sender_role and grant that role to the sender.")));
}

void
MsgCheckAdmin(const char *action)
{
	if (CcrmIsAdmin(GetUserId()))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s", action),
			 errdetail("Only ccrm admins (ccrm.admin_role) and superusers may do this.")));
}
