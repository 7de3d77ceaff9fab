/*-------------------------------------------------------------------------
 *
 * setting.h
 *	  Settings (ccrm.setting over ccrm.setting_definition) as C code reads
 *	  them, and time zone lookup shared by everything that plans in local
 *	  time.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_SETTING_H
#define CCRM_SETTING_H

#include "postgres.h"

#include "pgtime.h"

extern char *CcrmSettingGet(const char *name);
extern Datum CcrmSettingValue(const char *name, Oid typid);
extern pg_tz *CcrmTimeZone(const char *name, bool missing_ok);
extern pg_tz *CcrmSettingTimeZone(void);
extern int	CcrmSettingWorkingDays(void);	/* bit (1 << isodow) per working day */

#endif							/* CCRM_SETTING_H */
