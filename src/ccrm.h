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
#include "utils/guc.h"
#include "utils/jsonb.h"

/* Schema every ccrm object lives in (fixed: the extension is not relocatable). */
#define CCRM_SCHEMA "ccrm"

/*
 * True while a dump is being restored by someone trusted to restore it
 * (privilege.c): check_function_bodies off, as pg_dump scripts set it, AND
 * the current user a superuser or ccrm admin; or session_replication_role
 * = replica, which only superusers may set.  ccrm's validation triggers
 * then trust the dumped data, which was checked when written.  Any other
 * role turning check_function_bodies off still has its rows checked.
 */
extern bool CcrmRestoring(void);

/* privilege.c: ccrm.admin_role */
extern void CcrmPrivilegeInit(void);

/* action_run.c: GUCs of mass updates, formulas and their audit */
extern void CcrmActionInit(void);

/* sqlutil.c */
extern char *CcrmQualifiedRelName(Oid relid);
extern char *CcrmQualifiedTypeName(Oid typid, int32 typmod);
extern void CcrmAppendLiteral(StringInfo buf, const char *value, Oid typid, int32 typmod);
extern char *CcrmJoinNames(List *names);
extern int	CcrmPushSafeSearchPath(void);
extern void CcrmPopSearchPath(int nestlevel);
extern void CcrmUseConfiguredTimeZone(void);
extern const char *CcrmJsonbTypeName(const JsonbValue *v);
extern void CcrmCheckParamKeys(Jsonb *params, const char *const *allowed, const char *what);
extern Oid	CcrmCatalogOwner(void);
extern int	CcrmExecuteAsOwner(const char *sql, int nargs, Oid *types, Datum *values,
							   const char *nulls, int expect);

#endif							/* CCRM_H */
