/*
 * json.c - JSON string escaping (see json.h). One writer so that every JSON
 * sagad and sagactl print escapes the same way; the structure around the
 * strings stays with each caller, which knows its message's shape.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "json.h"

void
json_write_stringn(FILE *fp, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	fputc('"', fp);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			fputc('\\', fp);
			fputc(c, fp);
		} else if (c == '\n')
			fputs("\\n", fp);
		else if (c < 0x20) {
			fputs("\\u00", fp);
			fputc(hex[c >> 4], fp);
			fputc(hex[c & 0xf], fp);
		} else
			fputc(c, fp);	/* UTF-8 passes through */
	}
	fputc('"', fp);
}

void
json_write_string(FILE *fp, const char *s)
{
	json_write_stringn(fp, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}
