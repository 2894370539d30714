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

/*
 * A growing buffer to write a JSON text into, for the hot path (a callback's
 * body, written once per saga): no stdio stream, no lock per byte. Start it
 * zeroed; p is NUL-ended after any write and is the caller's to free.
 */
struct json_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

void	json_buf_put(struct json_buf *, const char *s, size_t len);
void	json_buf_puts(struct json_buf *, const char *s);
void	json_buf_int(struct json_buf *, long long);
/* s as json_write_stringn writes it (NULL: ""). */
void	json_buf_string(struct json_buf *, const char *s, size_t len);
/* The same for a NUL-ended s, as json_write_string writes it. */
void	json_buf_str(struct json_buf *, const char *s);

/* --- the reader -------------------------------------------------------------- */

enum json_type {
	JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING,
	JSON_ARRAY, JSON_OBJECT,
};

struct json_value {
	enum json_type		 type;
	char			*s;	/* string (decoded) or number (its text); NUL-ended */
	size_t			 slen;
	char			*key;	/* a member of an object: its name */
	size_t			 keylen;
	struct json_value	*items;	/* array elements, object members */
	size_t			 n;
};

#define JSON_MAX_DEPTH	64

/*
 * Parses exactly one JSON text of len bytes (surrounding whitespace
 * allowed). Returns the tree, to free with json_free(), or NULL with a
 * sentence naming the byte offset in err. Strings may hold NUL (\u0000):
 * use slen.
 */
struct json_value	*json_parse(const char *text, size_t len, char *err,
			    size_t errlen);
void			 json_free(struct json_value *);
/* An object's member by name, or NULL. */
const struct json_value	*json_member(const struct json_value *,
			    const char *key);
/*
 * An integer from a number without fraction or exponent, or from a string
 * holding one (protobuf's JSON writes 64-bit integers as strings). Returns
 * 0, or -1 if v is neither or out of [min, max].
 */
int			 json_int(const struct json_value *, long long min,
			    long long max, long long *out);

#endif
