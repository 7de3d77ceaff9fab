/*-------------------------------------------------------------------------
 *
 * type_input.h
 *	  Text to a value of any type through the type's input function, with
 *	  one error behaviour for every caller (type_input.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_TYPE_INPUT_H
#define CCRM_TYPE_INPUT_H

#include "postgres.h"

/*
 * str converted with the input function of typid (typmod applied, -1 for
 * none).  On failure an ERROR with the input function's SQLSTATE, detail
 * and message, the message prefixed by "where: " (which filter path,
 * field or setting; NULL for none), and hint as its hint when given (else
 * the input function's own).  Nothing the input function did survives
 * the failure: it runs in a subtransaction.  In parallel mode, where no
 * subtransaction can start, its error is raised as it is, with "where" as
 * the error's context.
 */
extern Datum CcrmTypeInput(Oid typid, int32 typmod, const char *str, const char *where,
						   const char *hint);

#endif							/* CCRM_TYPE_INPUT_H */
