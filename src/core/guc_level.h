/*-------------------------------------------------------------------------
 *
 * guc_level.h
 *	  A GUC nest level with search_path (and optionally the time zone)
 *	  pinned while ccrm's own SQL runs (guc_level.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_GUC_LEVEL_H
#define CCRM_GUC_LEVEL_H

#include "postgres.h"

/* open a level with search_path = pg_catalog, pg_temp; returns its nest level */
extern int	CcrmPushSafeSearchPath(void);

/* leave the level: everything set within it is rolled back */
extern void CcrmPopSearchPath(int nestlevel);

/* within a pushed level: times read and written in ccrm's configured zone */
extern void CcrmUseConfiguredTimeZone(void);

#endif							/* CCRM_GUC_LEVEL_H */
