/*-------------------------------------------------------------------------
 *
 * json_util.h
 *	  Helpers for jsonb arguments: type names for messages and parameter
 *	  key checks (json_util.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_JSON_UTIL_H
#define CCRM_JSON_UTIL_H

#include "postgres.h"

#include "utils/jsonb.h"

/* how a JSON value reads in a message: "a string", "an array" ... */
extern const char *CcrmJsonbTypeName(const JsonbValue *v);

/*
 * ERROR 22023 naming the first key of the params object that is not in
 * allowed (NULL terminated); what: "a mass update", "tool x" ...
 */
extern void CcrmCheckParamKeys(Jsonb *params, const char *const *allowed, const char *what);

#endif							/* CCRM_JSON_UTIL_H */
