/*-------------------------------------------------------------------------
 *
 * spi_debug.c
 *	  ccrm's test build (-DCCRM_POISON_SPI): memory that SPI frees is
 *	  overwritten, so a value used after SPI_finish fails visibly.
 *
 *	  The bug class.  A value taken from SPI -- SPI_getvalue's string,
 *	  anything palloc'd while connected (the SPI procedure context is the
 *	  current one), a by-reference Datum from SPI_getbinval pointing into a
 *	  result tuple -- is read after SPI_finish.  SPI_finish deletes the
 *	  procedure context and the result tables' contexts under it, but
 *	  Debian's server is built without CLOBBER_FREED_MEMORY and keeps
 *	  deleted contexts of the default size on a free list with their first
 *	  block untouched, so such a read usually returns the old bytes and no
 *	  test notices.
 *
 *	  The mechanism.  CcrmSPIConnectExt() connects, then takes over the
 *	  memory context methods of the new procedure context (the current
 *	  context after SPI_connect): the context gets a method table of its
 *	  own (PoisonContext, malloc'd) whose alloc gives every chunk its own
 *	  malloc'd block, with the header every context type must have (the
 *	  owning context in the word just before the chunk) so that pfree,
 *	  repalloc and GetMemoryChunkSpace come back here, and links it into
 *	  the context's list.  When a chunk is pfree'd, or its context reset or
 *	  deleted, it is overwritten with 0x7F bytes (as CLOBBER_FREED_MEMORY
 *	  does in an assert-enabled server) and kept in a quarantine of bounded
 *	  size before it is really freed, so the poison stays in place well
 *	  after SPI_finish.  A pointer read from poisoned memory is
 *	  0x7F7F7F7F7F7F7F7F, not an address: following it crashes the backend;
 *	  a string reads as 0x7F bytes; a pfree of a poisoned chunk crashes.
 *	  Built with -DUSE_VALGRIND as well, quarantined chunks are marked
 *	  no-access, so valgrind reports the read where it happens.
 *
 *	  Result tables.  SPI makes a result table's context, a child of the
 *	  procedure context, in its DestReceiver's startup when the executor
 *	  begins to send rows.  An ExecutorRun hook puts a forwarding receiver
 *	  in front of SPI's; right after SPI's startup has made the table's
 *	  context under the innermost of our procedure contexts, that context
 *	  is taken over too, so the tuples, and the Datums SPI_getbinval
 *	  returns into them, are poisoned with it (also by SPI_freetuptable).
 *
 *	  Invariants.
 *	  - Only AllocSet contexts made by ccrm's own SPI connections are taken
 *	    over; connections of other code (PL/pgSQL that ccrm calls) are not.
 *	  - A taken-over context keeps its type and its own allocator for the
 *	    chunks made before the takeover (a result table's header and row
 *	    array); our methods pass those to the original ones.  Our chunks
 *	    are told apart by the word before the context pointer: ours holds
 *	    CHUNK_MAGIC, an odd number above SIZE_MAX / 2, where aset.c's chunk
 *	    header holds a size (a MAXALIGN multiple, or the requested size,
 *	    which is at most MaxAllocHugeSize).
 *	  - The PoisonContext belongs to its context: it is freed when the
 *	    context is deleted, after the original methods are put back, so a
 *	    context reused from aset.c's free list starts clean.
 *	  - Nothing here throws once a context is taken over, except an
 *	    out-of-memory from palloc's own callers when malloc fails.
 *
 *	  Not covered: rows of utility statements (no executor run), memory of
 *	  child contexts ccrm code creates itself under the procedure context,
 *	  and chunks allocated before the takeover.  This is a test aid: it
 *	  costs a malloc per palloc while connected.  Normal builds compile none
 *	  of it (spi_debug.h maps the calls to SPI_connect_ext).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "spi_debug.h"

#ifdef CCRM_POISON_SPI

#include <stddef.h>

#include "executor/executor.h"
#include "lib/ilist.h"
#include "nodes/memnodes.h"
#include "tcop/dest.h"
#include "utils/memdebug.h"
#include "utils/memutils.h"

#define POISON_BYTE 0x7F
#define CHUNK_MAGIC UINT64CONST(0xC0DEC0DE5A5A5A5B)
#define FREED_MAGIC UINT64CONST(0xF7EEF7EEF7EEF7EF)
#define QUARANTINE_BYTES ((Size) 64 * 1024 * 1024)

/* A context we took over: its method table comes first (context->methods). */
typedef struct PoisonContext
{
	MemoryContextMethods methods;
	const MemoryContextMethods *orig;
	MemoryContext context;
	dlist_head	chunks;			/* our live chunks */
	bool		is_proc;		/* an SPI procedure context (in proc_contexts) */
	dlist_node	proc_node;
} PoisonContext;

/* Header of one of our chunks; the data follows it. */
typedef struct PoisonChunk
{
	dlist_node	node;			/* in its context's list, then in the quarantine */
	Size		size;			/* bytes asked for */
	uint64		magic;			/* CHUNK_MAGIC while allocated */
	MemoryContext context;		/* owner, just before the data, as for every chunk */
} PoisonChunk;

StaticAssertDecl(sizeof(PoisonChunk) % MAXIMUM_ALIGNOF == 0,
				 "chunk data must stay MAXALIGNed");
StaticAssertDecl(offsetof(PoisonChunk, context) + sizeof(MemoryContext) == sizeof(PoisonChunk),
				 "the owning context must be the word just before the data");

#define ChunkData(c)	((void *) ((c) + 1))
#define ChunkOf(p)		((PoisonChunk *) ((char *) (p) - sizeof(PoisonChunk)))
#define IsOurChunk(p)	(((const uint64 *) (p))[-2] == CHUNK_MAGIC)
#define ChunkBytes(c)	(sizeof(PoisonChunk) + (c)->size)

/* Our live procedure contexts, innermost connection first. */
static dlist_head proc_contexts = DLIST_STATIC_INIT(proc_contexts);

/* Poisoned chunks waiting to be freed, oldest first. */
static dlist_head quarantine = DLIST_STATIC_INIT(quarantine);
static Size quarantine_bytes = 0;

static ExecutorRun_hook_type prev_ExecutorRun = NULL;

/* Overwrite a chunk that was freed and keep it for a while. */
static void
quarantine_chunk(MemoryContext context, PoisonChunk *chunk)
{
	context->mem_allocated -= ChunkBytes(chunk);
	memset(ChunkData(chunk), POISON_BYTE, chunk->size);
	chunk->magic = FREED_MAGIC;
	memset(&chunk->context, POISON_BYTE, sizeof(chunk->context));
	VALGRIND_MAKE_MEM_NOACCESS(&chunk->magic, sizeof(chunk->magic) + sizeof(chunk->context) + chunk->size);
	dlist_push_tail(&quarantine, &chunk->node);
	quarantine_bytes += ChunkBytes(chunk);
	while (quarantine_bytes > QUARANTINE_BYTES)
	{
		PoisonChunk *old = dlist_container(PoisonChunk, node, dlist_pop_head_node(&quarantine));

		quarantine_bytes -= ChunkBytes(old);
		free(old);
	}
}

/* Poison every chunk of ours the context still has. */
static void
release_all(PoisonContext *pc)
{
	while (!dlist_is_empty(&pc->chunks))
	{
		PoisonChunk *chunk = dlist_container(PoisonChunk, node, dlist_pop_head_node(&pc->chunks));

		quarantine_chunk(pc->context, chunk);
	}
}

static void *
poison_alloc(MemoryContext context, Size size)
{
	PoisonContext *pc = (PoisonContext *) context->methods;
	PoisonChunk *chunk = malloc(sizeof(PoisonChunk) + size);

	if (chunk == NULL)
		return NULL;			/* palloc reports the error */
	chunk->size = size;
	chunk->magic = CHUNK_MAGIC;
	chunk->context = context;
	dlist_push_tail(&pc->chunks, &chunk->node);
	context->mem_allocated += ChunkBytes(chunk);
	return ChunkData(chunk);
}

static void
poison_free(MemoryContext context, void *pointer)
{
	PoisonContext *pc = (PoisonContext *) context->methods;
	PoisonChunk *chunk;

	if (!IsOurChunk(pointer))
	{
		pc->orig->free_p(context, pointer);
		return;
	}
	chunk = ChunkOf(pointer);
	dlist_delete(&chunk->node);
	quarantine_chunk(context, chunk);
}

static void *
poison_realloc(MemoryContext context, void *pointer, Size size)
{
	PoisonContext *pc = (PoisonContext *) context->methods;
	void	   *copy;

	if (!IsOurChunk(pointer))
		return pc->orig->realloc(context, pointer, size);
	copy = poison_alloc(context, size);
	if (copy == NULL)
		return NULL;
	memcpy(copy, pointer, Min(ChunkOf(pointer)->size, size));
	poison_free(context, pointer);
	return copy;
}

static void
poison_reset(MemoryContext context)
{
	PoisonContext *pc = (PoisonContext *) context->methods;

	release_all(pc);
	pc->orig->reset(context);
}

static void
poison_delete(MemoryContext context)
{
	PoisonContext *pc = (PoisonContext *) context->methods;

	release_all(pc);
	if (pc->is_proc)
		dlist_delete(&pc->proc_node);
	context->methods = pc->orig;
	free(pc);
	context->methods->delete_context(context);
}

static Size
poison_get_chunk_space(MemoryContext context, void *pointer)
{
	PoisonContext *pc = (PoisonContext *) context->methods;

	if (!IsOurChunk(pointer))
		return pc->orig->get_chunk_space(context, pointer);
	return ChunkBytes(ChunkOf(pointer));
}

static bool
poison_is_empty(MemoryContext context)
{
	PoisonContext *pc = (PoisonContext *) context->methods;

	return dlist_is_empty(&pc->chunks) && pc->orig->is_empty(context);
}

/* Statistics: the original allocator's, plus our chunks as used space. */
static void
poison_stats(MemoryContext context, MemoryStatsPrintFunc printfunc, void *passthru,
			 MemoryContextCounters *totals, bool print_to_stderr)
{
	PoisonContext *pc = (PoisonContext *) context->methods;
	dlist_iter	it;

	pc->orig->stats(context, printfunc, passthru, totals, print_to_stderr);
	if (totals)
		dlist_foreach(it, &pc->chunks)
			totals->totalspace += ChunkBytes(dlist_container(PoisonChunk, node, it.cur));
}

#ifdef MEMORY_CONTEXT_CHECKING
/*
 * Only when ccrm is built with assertions: this server's method tables have
 * no check member and it never calls one, so there is nothing to forward.
 */
static void
poison_check(MemoryContext context pg_attribute_unused())
{
}
#endif

/* Make a context allocate through us from now on. */
static void
take_over(MemoryContext context, bool is_proc)
{
	PoisonContext *pc;

	if (!IsA(context, AllocSetContext) || context->methods->alloc == poison_alloc)
		return;
	pc = malloc(sizeof(PoisonContext));
	if (pc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	memset(pc, 0, sizeof(PoisonContext));
	/* member by member: the server's tables may be shorter than ours */
	pc->methods.alloc = poison_alloc;
	pc->methods.free_p = poison_free;
	pc->methods.realloc = poison_realloc;
	pc->methods.reset = poison_reset;
	pc->methods.delete_context = poison_delete;
	pc->methods.get_chunk_space = poison_get_chunk_space;
	pc->methods.is_empty = poison_is_empty;
	pc->methods.stats = poison_stats;
#ifdef MEMORY_CONTEXT_CHECKING
	pc->methods.check = poison_check;
#endif
	pc->orig = context->methods;
	pc->context = context;
	dlist_init(&pc->chunks);
	pc->is_proc = is_proc;
	if (is_proc)
		dlist_push_head(&proc_contexts, &pc->proc_node);
	context->methods = &pc->methods;
}

int
CcrmSPIConnectExt(int options)
{
	int			rc = SPI_connect_ext(options);

	if (rc == SPI_OK_CONNECT)
	{
		if (strcmp(CurrentMemoryContext->name, "SPI Proc") != 0)
			elog(ERROR, "SPI_connect did not switch to the SPI procedure context");
		take_over(CurrentMemoryContext, true);
	}
	return rc;
}

/*---- the receiver in front of SPI's ----*/

typedef struct PoisonDest
{
	DestReceiver pub;
	DestReceiver *spi;
} PoisonDest;

static void
poison_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	PoisonDest *dest = (PoisonDest *) self;
	PoisonContext *innermost = NULL;
	MemoryContext before = NULL;

	if (!dlist_is_empty(&proc_contexts))
	{
		innermost = dlist_head_element(PoisonContext, proc_node, &proc_contexts);
		before = innermost->context->firstchild;
	}
	dest->spi->rStartup(dest->spi, operation, typeinfo);
	/* SPI made the table's context under ours: the newest child */
	if (innermost && innermost->context->firstchild != before &&
		strcmp(innermost->context->firstchild->name, "SPI TupTable") == 0)
		take_over(innermost->context->firstchild, false);
}

static bool
poison_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	PoisonDest *dest = (PoisonDest *) self;

	return dest->spi->receiveSlot(slot, dest->spi);
}

static void
poison_dest_shutdown(DestReceiver *self)
{
	PoisonDest *dest = (PoisonDest *) self;

	dest->spi->rShutdown(dest->spi);
}

static void
poison_dest_destroy(DestReceiver *self)
{
	PoisonDest *dest = (PoisonDest *) self;

	dest->spi->rDestroy(dest->spi);
}

static void
run_executor(QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once)
{
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}

static void
poison_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once)
{
	DestReceiver *const spi = queryDesc->dest;
	PoisonDest	wrapper;

	if (spi == NULL || spi->mydest != DestSPI || dlist_is_empty(&proc_contexts))
	{
		run_executor(queryDesc, direction, count, execute_once);
		return;
	}
	wrapper.pub = *spi;
	wrapper.pub.rStartup = poison_dest_startup;
	wrapper.pub.receiveSlot = poison_dest_receive;
	wrapper.pub.rShutdown = poison_dest_shutdown;
	wrapper.pub.rDestroy = poison_dest_destroy;
	wrapper.spi = spi;
	queryDesc->dest = &wrapper.pub;
	PG_TRY();
	{
		run_executor(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		queryDesc->dest = spi;
	}
	PG_END_TRY();
}

void
CcrmSPIDebugInit(void)
{
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = poison_executor_run;
}

#endif							/* CCRM_POISON_SPI */
