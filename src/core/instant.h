/*-------------------------------------------------------------------------
 *
 * instant.h
 *	  The clock rule: the instant an SQL function acts at is an argument
 *	  (at timestamptz DEFAULT now()), checked here, the one way for all.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_INSTANT_H
#define CCRM_INSTANT_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

/*
 * The instant argument argno (named at) of an SQL function: a finite
 * timestamptz.  NULL is an error (leaving the argument out gives now()); a
 * declaration without the argument (an older version's SQL on a newer
 * library) gives the transaction's start, now(), as that version did.
 */
extern TimestampTz CcrmInstantArg(FunctionCallInfo fcinfo, int argno);

/*
 * An error unless at is finite; name is the argument (or column) it came
 * from, for the message.
 */
extern void CcrmCheckInstant(TimestampTz at, const char *name);

#endif							/* CCRM_INSTANT_H */
