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
#include "privilege.h"
#include "action_run.h"
#include "delivery.h"
#include "messaging.h"
#include "run_as_owner.h"
#include "sequence.h"
#include "scheduler.h"
#include "spi_debug.h"

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
	CcrmSPIDebugInit();		/* test build only: poison what SPI frees */
	CcrmRunAsOwnerInit();
	SeqRunInit();
	MarkGUCPrefixReserved("ccrm");
}
