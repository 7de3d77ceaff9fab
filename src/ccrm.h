/*-------------------------------------------------------------------------
 *
 * ccrm.h
 *	  Declarations shared by every part of ccrm: module initialisation
 *	  hooks and small SQL-building helpers.
 *
 * Each concept has its own header (entity.h, filter.h, ...); this one only
 * holds what does not belong to any single concept.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_H
#define CCRM_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* Schema every ccrm object lives in (fixed: the extension is not relocatable). */
#define CCRM_SCHEMA "ccrm"

/* sqlutil.c */
extern char *CcrmQualifiedRelName(Oid relid);
extern char *CcrmQualifiedTypeName(Oid typid, int32 typmod);
extern void CcrmAppendLiteral(StringInfo buf, const char *value, Oid typid, int32 typmod);
extern char *CcrmJoinNames(List *names);
extern int	CcrmPushSafeSearchPath(void);
extern void CcrmPopSearchPath(int nestlevel);

#endif							/* CCRM_H */
