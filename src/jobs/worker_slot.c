/*-------------------------------------------------------------------------
 *
 * worker_slot.c
 *	  The shared-memory slot of a single background worker (worker_slot.h).
 *
 * Invariants: the slot's spinlock protects pid and latch, which are set
 * together by the one process that takes a free slot and cleared together
 * by that process only (CcrmWorkerSlotLeave, from its before_shmem_exit
 * callback).  Every function accepts a NULL slot (the library was not
 * preloaded, so there is no shared memory): nobody holds it then.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "worker_slot.h"

#include "miscadmin.h"
#include "storage/shmem.h"

Size
CcrmWorkerSlotSize(void)
{
	return MAXALIGN(sizeof(CcrmWorkerSlot));
}

CcrmWorkerSlot *
CcrmWorkerSlotAttach(const char *name)
{
	bool		found;
	CcrmWorkerSlot *slot;

	slot = ShmemInitStruct(name, sizeof(CcrmWorkerSlot), &found);
	if (!found)
	{
		SpinLockInit(&slot->mutex);
		slot->pid = 0;
		slot->latch = NULL;
	}
	return slot;
}

pid_t
CcrmWorkerSlotTake(CcrmWorkerSlot *slot)
{
	pid_t		other = 0;

	if (slot == NULL)
		return 0;
	SpinLockAcquire(&slot->mutex);
	if (slot->pid == 0)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
	}
	else
		other = slot->pid;
	SpinLockRelease(&slot->mutex);
	return other;
}

void
CcrmWorkerSlotLeave(CcrmWorkerSlot *slot)
{
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
	}
	SpinLockRelease(&slot->mutex);
}

pid_t
CcrmWorkerSlotHolder(CcrmWorkerSlot *slot)
{
	pid_t		pid;

	if (slot == NULL)
		return 0;
	SpinLockAcquire(&slot->mutex);
	pid = slot->pid;
	SpinLockRelease(&slot->mutex);
	return pid;
}

void
CcrmWorkerSlotWake(CcrmWorkerSlot *slot)
{
	Latch	   *latch;

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	latch = slot->latch;
	SpinLockRelease(&slot->mutex);
	if (latch != NULL)
		SetLatch(latch);
}
