/*-------------------------------------------------------------------------
 *
 * template.h
 *	  Tag templates: text with $entity-field$ tags, parsed once against a
 *	  context (which entities a tag may name and where their values come
 *	  from), rendered per row without re-parsing.
 *
 *	  A context lists sources.  Each source is a set of fields (an entity, or
 *	  a table such as ccrm.target_group) whose values are fetched by the
 *	  caller's own query under a SQL alias.  Parsing a template registers
 *	  every distinct (source, field) it uses as a slot; the caller selects
 *	  the slots' SQL expressions (CcrmTemplateSlotSql) in its query and
 *	  passes the resulting strings, indexed by slot, to the renderer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CCRM_TEMPLATE_H
#define CCRM_TEMPLATE_H

#include "postgres.h"

#include "entity.h"
#include "lib/stringinfo.h"

typedef struct CcrmTemplateSource
{
	const char *name;			/* the tag's entity part: "contact", "user" */
	CcrmEntity *entity;			/* its fields */
	const char *alias;			/* SQL alias the caller's query gives it */
	int			group;			/* caller-defined: which query fetches it */
} CcrmTemplateSource;

typedef struct CcrmTemplateSlot
{
	CcrmTemplateSource *source;
	const CcrmField *field;
	int			index;			/* position in the values array */
} CcrmTemplateSlot;

typedef struct CcrmTemplateContext
{
	const char *description;	/* for messages: "target groups of account" */
	List	   *sources;		/* CcrmTemplateSource * */
	List	   *slots;			/* CcrmTemplateSlot *, in index order */
} CcrmTemplateContext;

typedef struct CcrmTemplatePart
{
	const char *text;			/* literal text (slot < 0) */
	int			len;
	int			slot;			/* value index, or -1 for literal text */
	const char *fallback;		/* used when the value is NULL or empty */
	const char *tag;			/* the tag as written, for listings */
} CcrmTemplatePart;

typedef struct CcrmTemplate
{
	int			nparts;
	CcrmTemplatePart *parts;
	bool		html;			/* escape values for HTML */
} CcrmTemplate;

extern CcrmTemplateContext *CcrmTemplateContextCreate(const char *description);
extern CcrmTemplateSource *CcrmTemplateAddSource(CcrmTemplateContext *ctx, const char *name,
												 CcrmEntity *entity, const char *alias, int group);
extern CcrmTemplate *CcrmTemplateParse(CcrmTemplateContext *ctx, const char *text, bool html,
									   const char *label);
extern char *CcrmTemplateSlotSql(const CcrmTemplateSlot *slot);
extern void CcrmTemplateRender(const CcrmTemplate *tpl, char *const *values, StringInfo out);

#endif							/* CCRM_TEMPLATE_H */
