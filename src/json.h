/*
 * json.h - the one JSON string writer of the project: saga_to_json (the
 * callbacks' bodies, `sagactl --json`), sagactl's other JSON lines and the
 * bench report all quote and escape their strings here. It writes strings
 * only; callers print the structure around them. Not a parser.
 */
#ifndef SAGAD_JSON_H
#define SAGAD_JSON_H

#include <stddef.h>
#include <stdio.h>

/*
 * Writes s as a JSON string (RFC 8259), the quotes included: '"' and '\\'
 * backslashed, a newline as \n, every other control character (below 0x20)
 * as \u00XX in lowercase hex; other bytes, UTF-8 included, as they are.
 * NULL writes "". These exact bytes are what saga_to_json has always sent,
 * so callbacks and scripts see no change.
 */
void	json_write_string(FILE *, const char *s);

/* The same for the first len bytes of s, which may hold a NUL (as \u0000). */
void	json_write_stringn(FILE *, const char *s, size_t len);

#endif
