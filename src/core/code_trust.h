/*-------------------------------------------------------------------------
 *
 * code_trust.h
 *	  Whose code ccrm lets run with whose rights (code_trust.c): the rule
 *	  that code written by one role runs with another role's rights only
 *	  when its author could act as that role anyway, the "pure built-in"
 *	  functions formulas may call, and the code hidden in types (input and
 *	  output functions, domain constraints).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_CODE_TRUST_H
#define CCRM_CODE_TRUST_H

#include "postgres.h"

/* Why a function is not a pure built-in (CCRM_PURE: it is one). */
typedef enum CcrmPurity
{
	CCRM_PURE = 0,
	CCRM_NOT_BUILTIN,			/* not a pg_catalog function of PostgreSQL's
								 * bootstrap superuser */
	CCRM_VOLATILE,
	CCRM_RETURNS_SET,
	CCRM_SECURITY_DEFINER,
	CCRM_READS_STATE			/* reads more than its arguments: other
								 * sessions, settings, catalogs, files, SQL
								 * text */
} CcrmPurity;

/* May code written (owned) by author run with the rights of runner? */
extern bool CcrmAuthorMayActAs(Oid author, Oid runner);

/* Whether a function only computes a value from its arguments. */
extern CcrmPurity CcrmFunctionPurity(Oid funcid);

/*
 * The code that values of a type run through — input and output functions
 * and, with constraints, domain CHECK constraints — for a run as runner,
 * through base, element, range and attribute types.  NULL when all of it
 * may run as runner (pure built-ins, or written by a role that may act as
 * runner); else a sentence saying which code may not, e.g. "the constraints
 * of domain public.d are code of role mallory, who cannot act as postgres".
 */
extern char *CcrmTypeCodeProblem(Oid typid, Oid runner, bool constraints);

/* A function's code may run as runner (its owner may act as runner); else why not. */
extern char *CcrmFunctionCodeProblem(Oid funcid, Oid runner);

#endif							/* CCRM_CODE_TRUST_H */
