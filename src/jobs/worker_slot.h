/*-------------------------------------------------------------------------
 *
 * worker_slot.h
 *	  The shared-memory slot by which one background worker of a kind (the
 *	  scheduler, the delivery worker) announces itself: at most one holds it,
 *	  and any backend can see whether it runs and set its latch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_WORKER_SLOT_H
#define CCRM_WORKER_SLOT_H

#include "postgres.h"

#include "storage/latch.h"
#include "storage/spin.h"

typedef struct CcrmWorkerSlot
{
	slock_t		mutex;
	pid_t		pid;			/* the holder's, while it runs; else 0 */
	Latch	   *latch;			/* the holder's, while it runs */
} CcrmWorkerSlot;

/* Shared memory one slot needs (for a shmem_request hook). */
extern Size CcrmWorkerSlotSize(void);

/* Find or create the named slot: from a shmem_startup hook, holding AddinShmemInitLock. */
extern CcrmWorkerSlot *CcrmWorkerSlotAttach(const char *name);

/* This process takes the slot: 0 when it did, else the holder's pid. */
extern pid_t CcrmWorkerSlotTake(CcrmWorkerSlot *slot);

/* Let go of the slot if this process holds it. */
extern void CcrmWorkerSlotLeave(CcrmWorkerSlot *slot);

/* The holder's pid, 0 when none (or no slot: not preloaded). */
extern pid_t CcrmWorkerSlotHolder(CcrmWorkerSlot *slot);

/* Set the holder's latch, if any. */
extern void CcrmWorkerSlotWake(CcrmWorkerSlot *slot);

#endif							/* CCRM_WORKER_SLOT_H */
