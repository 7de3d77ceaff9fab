/*-------------------------------------------------------------------------
 *
 * json_util.c
 *	  Small helpers for the jsonb arguments ccrm takes (definitions and
 *	  parameters): how a JSON value is named in a message, and the check
 *	  that a parameters object holds only known keys.  Both only read the
 *	  jsonb they are given.
 *
 *-------------------------------------------------------------------------
 */
#include "json_util.h"
#include "quote.h"

#include "nodes/pg_list.h"

/* How a JSON value reads in a message: "a string", "an array" ... */
const char *
CcrmJsonbTypeName(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a JSON value";
	}
}

/*
 * Keys of a JSON object of parameters that are not in "allowed" (NULL
 * terminated): an ERROR naming the key and what it is a parameter of
 * ("a mass update", "tool contact_set_owner" ...).  The caller has checked
 * that params is an object.
 */
void
CcrmCheckParamKeys(Jsonb *params, const char *const *allowed, const char *what)
{
	JsonbIterator *it = JsonbIteratorInit(&params->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		List	   *names = NIL;
		bool		ok = false;
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (int i = 0; allowed[i] != NULL; i++)
		{
			names = lappend(names, (char *) allowed[i]);
			ok |= (strcmp(key, allowed[i]) == 0);
		}
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown parameter \"%s\" of %s", key, what),
					 names ? errhint("Parameters of %s are: %s.", what, CcrmJoinNames(names))
					 : errhint("It takes no parameters: pass '{}'.")));
		(void) JsonbIteratorNext(&it, &v, true);	/* its value */
	}
}
