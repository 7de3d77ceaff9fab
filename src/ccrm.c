/*-------------------------------------------------------------------------
 *
 * ccrm.c
 *	  Module entry point.  _PG_init asks each subsystem that has GUCs, hooks,
 *	  shared memory or a background worker to register them, then reserves
 *	  the "ccrm" GUC prefix; everything else happens on demand.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"
#include "scheduler.h"
#include "delivery.h"

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	CcrmSchedulerInit();
	CcrmDeliveryInit();
	CcrmActionInit();
	CcrmPrivilegeInit();
	MsgOutboxInit();
	MarkGUCPrefixReserved("ccrm");
}
