/*-------------------------------------------------------------------------
 *
 * address.c
 *	  Recipient addresses: whether an email address can be valid, and phone
 *	  numbers in E.164 (+<country code><number>, at most 15 digits), the
 *	  form SMS providers take.
 *
 *	  A phone number is normalised before it is queued: spaces, dots,
 *	  dashes, slashes and parentheses go; "+" or an international prefix
 *	  (00, or 011 in the North American plan) starts an international
 *	  number; anything else is national, read in the recipient's country
 *	  (the contact's country, else the phone_country setting): its trunk
 *	  prefix (0 in most countries, 1 in North America, 8 in a few) is
 *	  dropped and the country's calling code put in front.  What cannot be
 *	  a number (letters, too short or too long, a national number without
 *	  a country) is refused with the reason, and the outbox suppresses the
 *	  message rather than hand it to a provider.
 *
 *	  The table of countries is the ITU assignment of calling codes by
 *	  ISO 3166-1 alpha-2 code, with each country's trunk prefix.  Pure
 *	  functions: nothing here reads the database.
 *
 *-------------------------------------------------------------------------
 */
#include "ccrm.h"
#include "messaging.h"
#include "setting.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(ccrm_normalize_phone);
PG_FUNCTION_INFO_V1(ccrm_is_valid_email);

typedef struct Country
{
	const char *iso;			/* ISO 3166-1 alpha-2 */
	const char *code;			/* calling code, digits */
	const char *trunk;			/* national trunk prefix, "" when none */
} Country;

static const Country countries[] = {
	{"AD", "376", ""}, {"AE", "971", "0"}, {"AF", "93", "0"}, {"AL", "355", "0"},
	{"AM", "374", "0"}, {"AO", "244", ""}, {"AR", "54", "0"}, {"AT", "43", "0"},
	{"AU", "61", "0"}, {"AZ", "994", "0"}, {"BA", "387", "0"}, {"BD", "880", "0"},
	{"BE", "32", "0"}, {"BG", "359", "0"}, {"BH", "973", ""}, {"BO", "591", "0"},
	{"BR", "55", "0"}, {"BY", "375", "8"}, {"CA", "1", "1"}, {"CH", "41", "0"},
	{"CI", "225", ""}, {"CL", "56", ""}, {"CM", "237", ""}, {"CN", "86", "0"},
	{"CO", "57", ""}, {"CR", "506", ""}, {"CU", "53", "0"}, {"CY", "357", ""},
	{"CZ", "420", ""}, {"DE", "49", "0"}, {"DK", "45", ""}, {"DO", "1", "1"},
	{"DZ", "213", "0"}, {"EC", "593", "0"}, {"EE", "372", ""}, {"EG", "20", "0"},
	{"ES", "34", ""}, {"ET", "251", "0"}, {"FI", "358", "0"}, {"FO", "298", ""},
	{"FR", "33", "0"}, {"GB", "44", "0"}, {"GE", "995", "0"}, {"GH", "233", "0"},
	{"GI", "350", ""}, {"GL", "299", ""}, {"GR", "30", ""}, {"GT", "502", ""},
	{"HK", "852", ""}, {"HN", "504", ""}, {"HR", "385", "0"}, {"HU", "36", "06"},
	{"ID", "62", "0"}, {"IE", "353", "0"}, {"IL", "972", "0"}, {"IN", "91", "0"},
	{"IQ", "964", "0"}, {"IR", "98", "0"}, {"IS", "354", ""}, {"IT", "39", ""},
	{"JM", "1", "1"}, {"JO", "962", "0"}, {"JP", "81", "0"}, {"KE", "254", "0"},
	{"KG", "996", "0"}, {"KH", "855", "0"}, {"KR", "82", "0"}, {"KW", "965", ""},
	{"KZ", "7", "8"}, {"LB", "961", "0"}, {"LI", "423", ""}, {"LK", "94", "0"},
	{"LT", "370", "0"}, {"LU", "352", ""}, {"LV", "371", ""}, {"LY", "218", "0"},
	{"MA", "212", "0"}, {"MC", "377", ""}, {"MD", "373", "0"}, {"ME", "382", "0"},
	{"MK", "389", "0"}, {"MM", "95", "0"}, {"MN", "976", "0"}, {"MT", "356", ""},
	{"MX", "52", ""}, {"MY", "60", "0"}, {"NG", "234", "0"}, {"NI", "505", ""},
	{"NL", "31", "0"}, {"NO", "47", ""}, {"NP", "977", "0"}, {"NZ", "64", "0"},
	{"OM", "968", ""}, {"PA", "507", ""}, {"PE", "51", "0"}, {"PH", "63", "0"},
	{"PK", "92", "0"}, {"PL", "48", ""}, {"PR", "1", "1"}, {"PT", "351", ""},
	{"PY", "595", "0"}, {"QA", "974", ""}, {"RO", "40", "0"}, {"RS", "381", "0"},
	{"RU", "7", "8"}, {"SA", "966", "0"}, {"SE", "46", "0"}, {"SG", "65", ""},
	{"SI", "386", "0"}, {"SK", "421", "0"}, {"SM", "378", ""}, {"SN", "221", ""},
	{"SV", "503", ""}, {"SY", "963", "0"}, {"TH", "66", "0"}, {"TJ", "992", "8"},
	{"TM", "993", "8"}, {"TN", "216", ""}, {"TR", "90", "0"}, {"TT", "1", "1"},
	{"TW", "886", "0"}, {"TZ", "255", "0"}, {"UA", "380", "0"}, {"UG", "256", "0"},
	{"US", "1", "1"}, {"UY", "598", "0"}, {"UZ", "998", ""}, {"VA", "39", ""},
	{"VE", "58", "0"}, {"VN", "84", "0"}, {"YE", "967", "0"}, {"ZA", "27", "0"},
	{"ZM", "260", "0"}, {"ZW", "263", "0"},
};

#define E164_MIN_DIGITS 7
#define E164_MAX_DIGITS 15

static const Country *
find_country(const char *iso)
{
	if (iso == NULL || strlen(iso) != 2)
		return NULL;
	for (size_t i = 0; i < lengthof(countries); i++)
		if (pg_toupper((unsigned char) iso[0]) == countries[i].iso[0] &&
			pg_toupper((unsigned char) iso[1]) == countries[i].iso[1])
			return &countries[i];
	return NULL;
}

bool
AddressIsCountryCode(const char *code)
{
	return find_country(code) != NULL;
}

/*
 * Normalise a phone number to E.164 for a country (ISO code, or NULL/""
 * when unknown).  Returns NULL and sets *out when it can be a number, else
 * the reason it cannot (a constant or palloc'd sentence fragment).
 */
const char *
AddressNormalizePhone(const char *number, const char *country, char **out)
{
	StringInfoData digits;
	const Country *c = NULL;
	bool		international = false;
	const char *p = number;
	const char *d;

	*out = NULL;
	if (country != NULL && country[0] != '\0')
		c = find_country(country);	/* an unknown one matters only for national numbers */
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '+')
	{
		international = true;
		p++;
	}
	initStringInfo(&digits);
	for (; *p; p++)
	{
		if (*p >= '0' && *p <= '9')
			appendStringInfoChar(&digits, *p);
		else if (*p == '+')
			return "\"+\" in the middle of the number";
		else if (strchr(" \t-./()", *p) == NULL)
			return "it has characters other than digits, spaces, + - . / ( )";
	}
	d = digits.data;
	if (*d == '\0')
		return "it has no digits";
	if (!international)
	{
		/* an international prefix: 00 almost everywhere, 011 in North America */
		if (c != NULL && strcmp(c->code, "1") == 0 && strncmp(d, "011", 3) == 0)
		{
			d += 3;
			international = true;
		}
		else if (strncmp(d, "00", 2) == 0)
		{
			d += 2;
			international = true;
		}
	}
	if (!international)
	{
		if (c == NULL && country != NULL && country[0] != '\0')
			return psprintf("it is a national number and \"%s\" is not a known ISO 3166 country code", country);
		if (c == NULL)
			return "it is a national number and the recipient's country is unknown";
		if (c->trunk[0] != '\0' && strncmp(d, c->trunk, strlen(c->trunk)) == 0)
			d += strlen(c->trunk);
		d = psprintf("%s%s", c->code, d);
	}
	if (d[0] == '0')
		return "no country code starts with 0";
	if (strlen(d) < E164_MIN_DIGITS)
		return "it is too short";
	if (strlen(d) > E164_MAX_DIGITS)
		return "it has more than 15 digits";
	if (d[0] == '1' && strlen(d) != 11)
		return "a North American number has 10 digits after +1";
	*out = psprintf("+%s", d);
	return NULL;
}

static bool
is_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		strchr("!#$%&'*+/=?^_`{|}~-", ch) != NULL || ch >= 0x80;
}

/*
 * NULL when the email address can be valid (dot-atom local part, a domain
 * of at least two labels of letters, digits and hyphens, or non-ASCII
 * letters of an internationalised name), else the reason.
 */
const char *
AddressCheckEmail(const char *address)
{
	const char *at = strrchr(address, '@');
	const char *p;
	int			label = 0;
	int			labels = 0;
	bool		tld_digits = true;

	if (address[0] == '\0')
		return "it is empty";
	if (strlen(address) > 254)
		return "it is longer than 254 characters";
	if (at == NULL)
		return "it has no @";
	if (at == address)
		return "nothing comes before the @";
	if (at - address > 64)
		return "the part before the @ is longer than 64 characters";
	for (p = address; p < at; p++)
	{
		if (*p == '.')
		{
			if (p == address || p + 1 == at || p[1] == '.')
				return "a dot starts or ends the part before the @, or two dots follow each other";
		}
		else if (!is_atext((unsigned char) *p))
			return "the part before the @ has a space, @ or another character not allowed there";
	}
	if (at[1] == '\0')
		return "nothing comes after the @";
	for (p = at + 1;; p++)
	{
		if (*p == '.' || *p == '\0')
		{
			if (label == 0)
				return "the domain has an empty label";
			if (p[-1] == '-')
				return "a label of the domain ends with -";
			labels++;
			if (*p == '\0')
				break;
			label = 0;
			tld_digits = true;
			continue;
		}
		if (!(((unsigned char) *p >= 0x80) || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-'))
			return "the domain has a character other than letters, digits, - and .";
		if (label == 0 && *p == '-')
			return "a label of the domain starts with -";
		if (!(*p >= '0' && *p <= '9'))
			tld_digits = false;
		if (++label > 63)
			return "a label of the domain is longer than 63 characters";
	}
	if (labels < 2)
		return "the domain has no dot";
	if (tld_digits)
		return "the domain's last label is a number";
	return NULL;
}

/* ccrm.normalize_phone(number text, country text DEFAULT NULL) -> E.164 */
Datum
ccrm_normalize_phone(PG_FUNCTION_ARGS)
{
	char	   *number;
	char	   *country;
	char	   *out;
	const char *why;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	number = text_to_cstring(PG_GETARG_TEXT_PP(0));
	country = PG_ARGISNULL(1) ? CcrmSettingGet("phone_country") : text_to_cstring(PG_GETARG_TEXT_PP(1));
	why = AddressNormalizePhone(number, country, &out);
	if (why)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a valid phone number: %s", number, why),
				 errhint("Write it internationally (+40 721 234 567) or give the country of a national number (ISO code such as RO).")));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* ccrm.is_valid_email(address text) */
Datum
ccrm_is_valid_email(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(AddressCheckEmail(text_to_cstring(PG_GETARG_TEXT_PP(0))) == NULL);
}
