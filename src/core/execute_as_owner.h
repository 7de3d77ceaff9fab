/*-------------------------------------------------------------------------
 *
 * execute_as_owner.h
 *	  ccrm's bookkeeping statements run as the catalog's owner
 *	  (execute_as_owner.c; read its invariants before calling).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_EXECUTE_AS_OWNER_H
#define CCRM_EXECUTE_AS_OWNER_H

#include "postgres.h"

#include "executor/spi.h"

/* the role owning ccrm's catalog tables (the extension's owner) */
extern Oid	CcrmCatalogOwner(void);

/*
 * Run one fixed statement as the catalog's owner; SPI connected.  An
 * ERROR when the SPI result is not "expect" (0: any success).
 */
extern int	CcrmExecuteAsOwner(const char *sql, int nargs, Oid *types, Datum *values,
							   const char *nulls, int expect);

/* The same with a plan prepared as the owner (hot paths keep such plans). */
extern SPIPlanPtr CcrmPrepareAsOwner(const char *sql, int nargs, Oid *types);
extern int	CcrmExecutePlanAsOwner(SPIPlanPtr plan, Datum *values, const char *nulls, int expect);

#endif							/* CCRM_EXECUTE_AS_OWNER_H */
