/*-------------------------------------------------------------------------
 *
 * tuple_util.h
 *	  Reading columns of SPI result rows and trigger rows (tuple_util.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_TUPLE_UTIL_H
#define CCRM_TUPLE_UTIL_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"

/* column col (1-based) in its text form, copied into cxt; NULL for SQL NULL */
extern char *CcrmColumnCString(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt);

/*
 * Whether column "name" differs between two versions of a row (binary
 * comparison; NULL equals only NULL).  oldtup NULL (an insert): true.
 */
extern bool CcrmColumnChanged(HeapTuple newtup, HeapTuple oldtup, TupleDesc desc, const char *name);

#endif							/* CCRM_TUPLE_UTIL_H */
