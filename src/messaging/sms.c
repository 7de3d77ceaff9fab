/*-------------------------------------------------------------------------
 *
 * sms.c
 *	  How an SMS text is encoded and into how many segments it is cut
 *	  (ccrm.sms_info), as a provider bills it.
 *
 *	  GSM 03.38 (7-bit): the basic table costs one septet a character, the
 *	  extension table (form feed, ^ { } \ [ ~ ] | €) two, an escape and the
 *	  character.  A text of at most 160 septets is one segment; a longer one
 *	  is sent in parts of at most 153 septets (the rest of 160 carries the
 *	  concatenation header), and an escape pair is never split across two
 *	  parts: a character that does not fit whole starts the next part.
 *
 *	  UCS-2: one character outside both tables makes the whole message
 *	  UTF-16.  At most 70 units is one segment, else parts of at most 67;
 *	  a character outside the Basic Multilingual Plane (an emoji) is a
 *	  surrogate pair, two units, and a pair is never split either.
 *
 *	  Pure functions of the text: the SQL function is IMMUTABLE.  The text
 *	  is read as Unicode whatever the server encoding.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(ccrm_sms_info);

#define GSM_SINGLE	160
#define GSM_PART	153
#define UCS2_SINGLE 70
#define UCS2_PART	67

/* The GSM 03.38 basic character set, as Unicode code points (escape excluded). */
static const uint16 gsm_basic[] = {
	0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC,
	0x00F2, 0x00C7, 0x000A, 0x00D8, 0x00F8, 0x000D, 0x00C5, 0x00E5,
	0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8,
	0x03A3, 0x0398, 0x039E, 0x00C6, 0x00E6, 0x00DF, 0x00C9,
	0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025, 0x0026, 0x0027,
	0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F,
	0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037,
	0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F,
	0x00A1, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, 0x00BF,
	0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
};

/* The extension table: two septets each. */
static const uint16 gsm_extension[] = {
	0x000C, 0x005E, 0x007B, 0x007D, 0x005C, 0x005B, 0x007E, 0x005D, 0x007C, 0x20AC,
};

/* Septets of a code point in GSM-7: 1, 2, or 0 when it has none. */
static int
gsm_septets(pg_wchar c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
		return 1;
	for (size_t i = 0; i < lengthof(gsm_basic); i++)
		if (gsm_basic[i] == c)
			return 1;
	for (size_t i = 0; i < lengthof(gsm_extension); i++)
		if (gsm_extension[i] == c)
			return 2;
	return 0;
}

/* Parts of at most "part" units, no character split; costs[i] units each. */
static int
count_parts(const int *costs, int n, int total, int single, int part)
{
	int			parts = 1;
	int			used = 0;

	if (total == 0)
		return 0;
	if (total <= single)
		return 1;
	for (int i = 0; i < n; i++)
	{
		if (used + costs[i] > part)
		{
			parts++;
			used = 0;
		}
		used += costs[i];
	}
	return parts;
}

/* Measure a NUL-terminated text in the server encoding. */
void
SmsMeasure(const char *text, SmsInfo *info)
{
	char	   *utf8 = pg_server_to_any(text, strlen(text), PG_UTF8);
	int			ulen = strlen(utf8);
	int		   *gsm_costs = palloc(sizeof(int) * (ulen + 1));
	int		   *ucs_costs = palloc(sizeof(int) * (ulen + 1));
	int			n = 0;
	int			gsm_total = 0;
	int			ucs_total = 0;
	bool		gsm = true;

	for (const unsigned char *p = (const unsigned char *) utf8; *p; p += pg_utf_mblen(p))
	{
		pg_wchar	c = utf8_to_unicode(p);
		int			septets = gsm_septets(c);

		if (septets == 0)
			gsm = false;
		gsm_costs[n] = septets;
		ucs_costs[n] = c > 0xFFFF ? 2 : 1;
		gsm_total += septets;
		ucs_total += ucs_costs[n];
		n++;
	}
	info->gsm7 = gsm;
	info->characters = n;
	if (gsm)
	{
		info->units = gsm_total;
		info->segments = count_parts(gsm_costs, n, gsm_total, GSM_SINGLE, GSM_PART);
	}
	else
	{
		info->units = ucs_total;
		info->segments = count_parts(ucs_costs, n, ucs_total, UCS2_SINGLE, UCS2_PART);
	}
	pfree(gsm_costs);
	pfree(ucs_costs);
	if (utf8 != text)
		pfree(utf8);
}

/* ccrm.sms_info(message text) -> (encoding, characters, units, segments) */
Datum
ccrm_sms_info(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	SmsInfo		info;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ccrm.sms_info must return a record");
	SmsMeasure(text_to_cstring(t), &info);
	values[0] = CStringGetTextDatum(info.gsm7 ? "gsm7" : "ucs2");
	values[1] = Int32GetDatum(info.characters);
	values[2] = Int32GetDatum(info.units);
	values[3] = Int32GetDatum(info.segments);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
