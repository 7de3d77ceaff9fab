/*-------------------------------------------------------------------------
 *
 * entity.h
 *	  The entity catalog: what an entity name ("contact", "invoice") means,
 *	  which fields it has (columns and custom fields alike), how to read a
 *	  field in SQL, and how entities link to each other (account, owner,
 *	  contact).  Filters, templates, mass updates and formulas all resolve
 *	  names through here, so that "a field" means the same thing everywhere.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_ENTITY_H
#define CCRM_ENTITY_H

#include "postgres.h"

#include "access/attnum.h"
#include "nodes/pg_list.h"

typedef struct CcrmField
{
	char	   *name;			/* field name as users write it */
	bool		is_custom;		/* custom field kept in attrs jsonb */
	const char *custom_type;	/* custom: "text", "integer", ...; else NULL */
	AttrNumber	attnum;			/* column number (custom: that of attrs) */
	Oid			typid;			/* SQL type of the value */
	int32		typmod;
	Oid			collid;
	bool		notnull;		/* column is NOT NULL */
	bool		readonly;		/* key, identity, generated or maintained */
} CcrmField;

typedef struct CcrmEntity
{
	char	   *name;			/* "contact", "invoice", ... */
	Oid			relid;
	char	   *qualname;		/* quoted schema-qualified table name */
	char	   *key_column;		/* integer key, unique */
	char	   *contact_column; /* link columns; NULL where there is none */
	char	   *account_column;
	char	   *owner_column;
	char	   *created_column;
	bool		builtin;
	bool		has_attrs;		/* keeps custom fields in an attrs column */
	List	   *fields;			/* CcrmField *: columns by attnum, then custom
								 * fields by name */
} CcrmEntity;

/* Lookups; results are allocated in the caller's memory context. */
extern CcrmEntity *CcrmEntityLookup(const char *name, bool missing_ok);
extern CcrmEntity *CcrmEntityForRelation(const char *name, Oid relid, const char *key_column);
extern List *CcrmEntityNames(void);
extern const CcrmField *CcrmFieldLookup(const CcrmEntity *ent, const char *field);
extern List *CcrmFieldNames(const CcrmEntity *ent);
extern char *CcrmFieldSql(const CcrmField *field, const char *alias);
extern CcrmEntity *CcrmEntityLink(const CcrmEntity *ent, const char *link,
								  const char **fk_column);
extern List *CcrmEntityLinkNames(const CcrmEntity *ent);

/* Errors with the standard hints. */
extern void CcrmReportUnknownEntity(const char *name) pg_attribute_noreturn();
extern void CcrmReportUnknownField(const CcrmEntity *ent, const char *field,
								   const char *where) pg_attribute_noreturn();

/* Custom field types ("integer" -> int8, ...); InvalidOid if unknown. */
extern Oid	CcrmCustomTypeOid(const char *type);

#endif							/* CCRM_ENTITY_H */
