/*-------------------------------------------------------------------------
 *
 * target_group.h
 *	  Target groups: saved segments of an entity, refreshed by difference.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_TARGET_GROUP_H
#define CCRM_TARGET_GROUP_H

#include "postgres.h"

typedef struct CcrmRefreshResult
{
	int64		added;
	int64		removed;
	int64		total;
} CcrmRefreshResult;

/* Id of a group by name; an error listing groups when there is none. */
extern int64 CcrmGroupIdByName(const char *name);

/* For hints: names of the groups the current user can see, or NULL; SPI connected. */
extern char *CcrmExistingGroupNames(void);

/* Bring a group's members in line with its filter and overrides. */
extern CcrmRefreshResult CcrmRefreshGroup(int64 group_id, const TimestampTz *at);

#endif							/* CCRM_TARGET_GROUP_H */
