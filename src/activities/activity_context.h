/*-------------------------------------------------------------------------
 *
 * activity_context.h
 *	  What activities for a group's members can say and link to: the tag
 *	  sources available for the group's entity, and the SQL that reaches a
 *	  member's contact, account and owners.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_ACTIVITY_CONTEXT_H
#define CCRM_ACTIVITY_CONTEXT_H

#include "postgres.h"

#include "entity.h"
#include "template.h"

/* Which query fetches a tag source's values. */
#define ACTIVITY_SRC_ROW	0	/* the member query (alias e, c, a) */
#define ACTIVITY_SRC_USER	1	/* the assignee (alias u over ccrm.crm_user) */
#define ACTIVITY_SRC_GROUP	2	/* the group (alias g over ccrm.target_group) */

typedef struct CcrmActivityContext
{
	CcrmTemplateContext *tpl;
	CcrmEntity *entity;			/* the group's entity, alias e */
	char	   *joins;			/* LEFT JOINs adding c (contact), a (account) */
	char	   *key;			/* member key as int8 */
	char	   *contact_id;		/* SQL expressions (int8), NULL literal when none */
	char	   *account_id;
	char	   *lead_id;
	char	   *contact_owner;
	char	   *account_owner;
} CcrmActivityContext;

extern CcrmActivityContext *CcrmActivityContextBuild(CcrmEntity *ent);
extern void CcrmActivityFetchSlots(CcrmActivityContext *ac, int group, const char *from,
							   Oid argtype, Datum arg, char **values, MemoryContext cxt);

#endif							/* CCRM_ACTIVITY_CONTEXT_H */
