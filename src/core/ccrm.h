/*-------------------------------------------------------------------------
 *
 * ccrm.h
 *	  What every part of ccrm shares: the schema its objects live in.
 *
 * Everything else has the header of its concept: quote.h (quoting and
 * type names for generated SQL), guc_level.h (search_path and time zone
 * pinned while ccrm's SQL runs), json_util.h, execute_as_owner.h,
 * privilege.h (including the restore policy), entity.h, filter.h ...
 * Each file includes the headers of what it uses.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_H
#define CCRM_H

#include "postgres.h"

/* Schema every ccrm object lives in (fixed: the extension is not relocatable). */
#define CCRM_SCHEMA "ccrm"

#endif							/* CCRM_H */
