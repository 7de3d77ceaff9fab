/*-------------------------------------------------------------------------
 *
 * tuple_util.c
 *	  Small readers of rows shared by every file that reads SPI results or
 *	  writes row triggers: a column as text that outlives SPI_finish, and
 *	  whether an UPDATE changed a column.
 *
 *	  Invariant: CcrmColumnCString copies into the context it is given, so
 *	  a value read inside SPI stays valid after SPI_finish when that
 *	  context is the caller's.
 *
 *-------------------------------------------------------------------------
 */
#include "tuple_util.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "utils/datum.h"

char *
CcrmColumnCString(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	char	   *val = SPI_getvalue(tup, desc, col);

	return val ? MemoryContextStrdup(cxt, val) : NULL;
}

bool
CcrmColumnChanged(HeapTuple newtup, HeapTuple oldtup, TupleDesc desc, const char *name)
{
	int			attno = SPI_fnumber(desc, name);
	Form_pg_attribute att;
	bool		n1,
				n2;
	Datum		d1,
				d2;

	if (attno <= 0)
		elog(ERROR, "table has no column \"%s\"", name);
	if (oldtup == NULL)
		return true;
	att = TupleDescAttr(desc, attno - 1);
	d1 = heap_getattr(newtup, attno, desc, &n1);
	d2 = heap_getattr(oldtup, attno, desc, &n2);
	if (n1 || n2)
		return n1 != n2;
	return !datumIsEqual(d1, d2, att->attbyval, att->attlen);
}
