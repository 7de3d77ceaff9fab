/*-------------------------------------------------------------------------
 *
 * template.c
 *	  Tag templates.  Syntax:
 *		$entity-field$			the field's value
 *		$entity-field|text$		the value, or "text" when it is NULL or empty
 *		$$						a literal $
 *	  The entity part names a source of the context (contact, account, user,
 *	  targetgroup, a registered entity…); the field part any field of it,
 *	  custom fields included ($user-name$ is the username).
 *
 *	  A template is checked when it is parsed — unknown, unavailable or
 *	  malformed tags are errors naming the tag and where it is, with a hint
 *	  listing what is valid — and parsed once: rendering walks the part list
 *	  and never looks at the text again.  HTML templates escape values (not
 *	  the author's own text or fallbacks); plain-text ones do not.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "quote.h"
#include "template.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

/* Tag field names that mean another column. */
static const struct
{
	const char *source;
	const char *alias;
	const char *column;
}			field_aliases[] = {
	{"user", "name", "username"},
};

CcrmTemplateContext *
CcrmTemplateContextCreate(const char *description)
{
	CcrmTemplateContext *ctx = palloc0(sizeof(CcrmTemplateContext));

	ctx->description = pstrdup(description);
	return ctx;
}

CcrmTemplateSource *
CcrmTemplateAddSource(CcrmTemplateContext *ctx, const char *name, CcrmEntity *entity,
					  const char *alias, int group)
{
	CcrmTemplateSource *src = palloc0(sizeof(CcrmTemplateSource));

	src->name = pstrdup(name);
	src->entity = entity;
	src->alias = pstrdup(alias);
	src->group = group;
	ctx->sources = lappend(ctx->sources, src);
	return src;
}

static CcrmTemplateSource *
find_source(CcrmTemplateContext *ctx, const char *name)
{
	ListCell   *lc;

	foreach(lc, ctx->sources)
	{
		CcrmTemplateSource *src = lfirst(lc);

		if (strcmp(src->name, name) == 0)
			return src;
	}
	return NULL;
}

static int
slot_for(CcrmTemplateContext *ctx, CcrmTemplateSource *src, const CcrmField *field)
{
	ListCell   *lc;
	CcrmTemplateSlot *slot;

	foreach(lc, ctx->slots)
	{
		slot = lfirst(lc);
		if (slot->source == src && slot->field == field)
			return slot->index;
	}
	slot = palloc0(sizeof(CcrmTemplateSlot));
	slot->source = src;
	slot->field = field;
	slot->index = list_length(ctx->slots);
	ctx->slots = lappend(ctx->slots, slot);
	return slot->index;
}

/* "user-(name, firstname, …); contact-(…)" for hints. */
static char *
valid_tags(CcrmTemplateContext *ctx)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, ctx->sources)
	{
		CcrmTemplateSource *src = lfirst(lc);
		List	   *names = NIL;

		for (size_t i = 0; i < lengthof(field_aliases); i++)
			if (strcmp(field_aliases[i].source, src->name) == 0)
				names = lappend(names, (char *) field_aliases[i].alias);
		names = list_concat(names, CcrmFieldNames(src->entity));
		appendStringInfo(&buf, "%s$%s-…$ with %s", buf.len ? "; " : "", src->name,
						 CcrmJoinNames(names));
	}
	return buf.data;
}

static bool
is_word(const char *s, int len)
{
	if (len == 0)
		return false;
	for (int i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static void
add_literal(List **parts, const char *text, int len)
{
	CcrmTemplatePart *p;

	if (len == 0)
		return;
	p = palloc0(sizeof(CcrmTemplatePart));
	p->text = pnstrdup(text, len);
	p->len = len;
	p->slot = -1;
	*parts = lappend(*parts, p);
}

/*
 * Parse a template for a context.  label names the template in messages
 * ("subject", "description").
 */
CcrmTemplate *
CcrmTemplateParse(CcrmTemplateContext *ctx, const char *text, bool html, const char *label)
{
	List	   *parts = NIL;
	const char *p = text;
	const char *lit = text;
	CcrmTemplate *tpl;
	ListCell   *lc;
	int			i;

	while (*p)
	{
		const char *end;
		const char *bar;
		const char *dash;
		char	   *tag;
		char	   *srcname;
		char	   *fieldname;
		CcrmTemplateSource *src;
		const CcrmField *field;
		CcrmTemplatePart *part;
		int			pos;

		if (*p != '$')
		{
			p++;
			continue;
		}
		if (p[1] == '$')
		{
			/* $$: keep one $ with the literal text before it */
			add_literal(&parts, lit, p - lit + 1);
			p += 2;
			lit = p;
			continue;
		}
		add_literal(&parts, lit, p - lit);
		pos = pg_mbstrlen_with_len(text, p - text) + 1;
		end = strchr(p + 1, '$');
		if (end == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: unterminated tag at character %d", label, pos),
					 errhint("End every tag with $, as in $contact-firstname$; write a literal $ as $$.")));
		tag = pnstrdup(p, end - p + 1);
		bar = memchr(p + 1, '|', end - p - 1);
		dash = memchr(p + 1, '-', (bar ? bar : end) - p - 1);
		if (dash == NULL || !is_word(p + 1, dash - p - 1) ||
			!is_word(dash + 1, (bar ? bar : end) - dash - 1))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: malformed tag %s at character %d", label, tag, pos),
					 errhint("A tag is $entity-field$ or $entity-field|fallback$, e.g. $contact-firstname|Customer$; write a literal $ as $$.")));
		srcname = pnstrdup(p + 1, dash - p - 1);
		fieldname = pnstrdup(dash + 1, (bar ? bar : end) - dash - 1);

		src = find_source(ctx, srcname);
		if (src == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("%s: tag %s at character %d names \"%s\", which is not available for %s",
							label, tag, pos, srcname, ctx->description),
					 errhint("Tags here: %s.", valid_tags(ctx))));
		for (size_t k = 0; k < lengthof(field_aliases); k++)
			if (strcmp(field_aliases[k].source, srcname) == 0 &&
				strcmp(field_aliases[k].alias, fieldname) == 0)
				fieldname = (char *) field_aliases[k].column;
		field = CcrmFieldLookup(src->entity, fieldname);
		if (field == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("%s: tag %s at character %d: %s has no field \"%s\"",
							label, tag, pos, srcname, fieldname),
					 errhint("Tags here: %s.", valid_tags(ctx))));

		part = palloc0(sizeof(CcrmTemplatePart));
		part->slot = slot_for(ctx, src, field);
		part->fallback = bar ? pnstrdup(bar + 1, end - bar - 1) : NULL;
		part->tag = tag;
		parts = lappend(parts, part);
		p = end + 1;
		lit = p;
	}
	add_literal(&parts, lit, p - lit);

	tpl = palloc0(sizeof(CcrmTemplate));
	tpl->html = html;
	tpl->nparts = list_length(parts);
	tpl->parts = palloc0(sizeof(CcrmTemplatePart) * Max(tpl->nparts, 1));
	i = 0;
	foreach(lc, parts)
		tpl->parts[i++] = *(CcrmTemplatePart *) lfirst(lc);
	return tpl;
}

/*
 * The slot's value as text, read under the source's alias.  Dates and times
 * come out in one form whatever the session's DateStyle: YYYY-MM-DD and
 * YYYY-MM-DD HH24:MI (times in the session's zone, which callers set to the
 * configured one).
 */
char *
CcrmTemplateSlotSql(const CcrmTemplateSlot *slot)
{
	char	   *expr = CcrmFieldSql(slot->field, slot->source->alias);

	switch (slot->field->typid)
	{
		case DATEOID:
			return psprintf("pg_catalog.to_char(%s, 'YYYY-MM-DD')", expr);
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return psprintf("pg_catalog.to_char(%s, 'YYYY-MM-DD HH24:MI')", expr);
		default:
			return psprintf("(%s)::pg_catalog.text", expr);
	}
}

static void
append_html(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '&':
				appendStringInfoString(out, "&amp;");
				break;
			case '<':
				appendStringInfoString(out, "&lt;");
				break;
			case '>':
				appendStringInfoString(out, "&gt;");
				break;
			case '"':
				appendStringInfoString(out, "&quot;");
				break;
			case '\'':
				appendStringInfoString(out, "&#39;");
				break;
			default:
				appendStringInfoChar(out, *s);
		}
	}
}

/* Render with values[slot] (NULL for SQL NULL) appended to out. */
void
CcrmTemplateRender(const CcrmTemplate *tpl, char *const *values, StringInfo out)
{
	for (int i = 0; i < tpl->nparts; i++)
	{
		const CcrmTemplatePart *part = &tpl->parts[i];
		const char *v;

		if (part->slot < 0)
		{
			appendBinaryStringInfo(out, part->text, part->len);
			continue;
		}
		v = values[part->slot];
		if (v == NULL || v[0] == '\0')
		{
			if (part->fallback)
				appendStringInfoString(out, part->fallback);
		}
		else if (tpl->html)
			append_html(out, v);
		else
			appendStringInfoString(out, v);
	}
}
