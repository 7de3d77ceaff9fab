/*-------------------------------------------------------------------------
 *
 * spi_debug.h
 *	  How ccrm connects to SPI.  Every ccrm function that uses SPI connects
 *	  with CcrmSPIConnect() (or CcrmSPIConnectExt()) instead of SPI_connect(),
 *	  and finishes with SPI_finish() as usual.
 *
 *	  In a normal build these are SPI_connect()/SPI_connect_ext().  Built with
 *	  -DCCRM_POISON_SPI (bin/test does), memory that SPI hands out to the
 *	  connection -- everything palloc'd in the SPI procedure context and the
 *	  tuples of its result tables -- is overwritten with 0x7F bytes when SPI
 *	  frees it (SPI_finish, or an error), so that code reading such a value
 *	  after SPI_finish fails visibly instead of reading memory that merely
 *	  happens to be intact.  See spi_debug.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SPI_DEBUG_H
#define CCRM_SPI_DEBUG_H

#include "postgres.h"

#include "executor/spi.h"

#ifdef CCRM_POISON_SPI
extern int	CcrmSPIConnectExt(int options);
extern void CcrmSPIDebugInit(void);
#else
#define CcrmSPIConnectExt(options) SPI_connect_ext(options)
#define CcrmSPIDebugInit() ((void) 0)
#endif

#define CcrmSPIConnect() CcrmSPIConnectExt(0)

#endif							/* CCRM_SPI_DEBUG_H */
