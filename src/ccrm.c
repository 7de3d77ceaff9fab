/*-------------------------------------------------------------------------
 *
 * ccrm.c
 *	  Module entry point.  _PG_init only reserves the "ccrm" GUC prefix and
 *	  asks each subsystem that has GUCs, hooks or shared memory to register
 *	  them; everything else happens on demand from SQL calls.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	CcrmActionInit();
	MarkGUCPrefixReserved("ccrm");
}
