/*-------------------------------------------------------------------------
 *
 * privilege.h
 *	  ccrm's privilege model as C code asks it: who is a ccrm admin, who
 *	  may use a definition, who may give it to another role, who may act
 *	  as which CRM user, and whether a dump is being restored.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_PRIVILEGE_H
#define CCRM_PRIVILEGE_H

#include "postgres.h"

/*---- GUC variables ----*/
extern char *ccrm_admin_role;

/* _PG_init: ccrm.admin_role */
extern void CcrmPrivilegeInit(void);

/*
 * True while a dump is being restored by someone trusted to restore it:
 * check_function_bodies off, as pg_dump scripts set it, AND the current
 * user a superuser or ccrm admin; or session_replication_role = replica,
 * which only superusers may set.  ccrm's validation triggers then trust
 * the dumped data, which was checked when written.  Any other role turning
 * check_function_bodies off still has its rows checked.
 */
extern bool CcrmRestoring(void);

/* superuser, or has the privileges of ccrm.admin_role (never inside a run) */
extern bool CcrmIsAdmin(Oid role);

/* role is the owner or a member of the owner role (superuser does not count) */
extern bool CcrmMayUse(Oid role, Oid owner);

/* the current user may see and change a definition of this owner */
extern bool CcrmMayManage(Oid owner);

/*
 * The current user may store "owner" as the owner of a new definition
 * (is_insert) or change it to that (changed); ERROR 42501 / 42704 if not.
 * what: "job", "target group" ...; name: the definition's name or NULL.
 */
extern void CcrmCheckOwner(Oid owner, bool is_insert, bool changed, const char *what,
						   const char *name);

/*
 * ERROR 42501 unless "role" may use the definition (what, name, id) owned
 * by "owner", for the definition (user_what, user_name) that uses it.  A
 * definition the current user may not see is named by its id only.
 */
extern void CcrmCheckMayUse(Oid role, Oid owner, const char *user_what, const char *user_name,
							const char *what, const char *name, int64 id);

/* a role's name for messages (its OID, as regrole shows it, when it is gone) */
extern char *CcrmRoleName(Oid role);

/* role may send as / act on behalf of CRM user crm_user_id */
extern bool CcrmMayActAs(int64 crm_user_id, Oid role);
extern void CcrmCheckMayActAs(int64 crm_user_id, Oid role, const char *what);

#endif							/* CCRM_PRIVILEGE_H */
