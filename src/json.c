/*
 * json.c - JSON string escaping (see json.h). One writer so that every JSON
 * sagad and sagactl print escapes the same way; the structure around the
 * strings stays with each caller, which knows its message's shape.
 */
#include "autoconf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

static void
json_buf_grow(struct json_buf *b, size_t more)
{
	size_t cap = b->cap > 0 ? b->cap : 256;

	if (b->len + more < b->cap)
		return;
	while (cap <= b->len + more)
		cap *= 2;
	b->p = util_xrealloc(b->p, cap);
	b->cap = cap;
}

void
json_buf_put(struct json_buf *b, const char *s, size_t len)
{
	json_buf_grow(b, len);
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = '\0';
}

void
json_buf_puts(struct json_buf *b, const char *s)
{
	json_buf_put(b, s, strlen(s));
}

void
json_buf_int(struct json_buf *b, long long v)
{
	char			 tmp[24], *q = tmp + sizeof(tmp);
	unsigned long long	 u = v < 0 ? 0ULL - (unsigned long long)v :
				    (unsigned long long)v;

	do
		*--q = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--q = '-';
	json_buf_put(b, q, (size_t)(tmp + sizeof(tmp) - q));
}

void
json_buf_string(struct json_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *q;

	if (s == NULL)
		len = 0;
	json_buf_grow(b, 6 * len + 2);	/* at worst \u00XX a byte */
	q = b->p + b->len;
	*q++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			*q++ = '\\';
			*q++ = (char)c;
		} else if (c == '\n') {
			*q++ = '\\';
			*q++ = 'n';
		} else if (c < 0x20) {
			memcpy(q, "\\u00", 4);
			q[4] = hex[c >> 4];
			q[5] = hex[c & 0xf];
			q += 6;
		} else
			*q++ = (char)c;	/* UTF-8 passes through */
	}
	*q++ = '"';
	b->len = (size_t)(q - b->p);
	b->p[b->len] = '\0';
}

void
json_buf_str(struct json_buf *b, const char *s)
{
	json_buf_string(b, s, s != NULL ? strlen(s) : 0);
}

void
json_write_stringn(FILE *fp, const char *s, size_t len)
{
	struct json_buf b = { NULL, 0, 0 };

	json_buf_string(&b, s, len);
	fwrite(b.p, 1, b.len, fp);
	free(b.p);
}

void
json_write_string(FILE *fp, const char *s)
{
	json_write_stringn(fp, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* --- the reader -------------------------------------------------------------- */

struct jp {
	const char	*p, *end, *start;
	char		*err;
	size_t		 errlen;
	int		 failed;
};

static void
jp_fail(struct jp *jp, const char *what)
{
	if (jp->failed)
		return;
	jp->failed = 1;
	snprintf(jp->err, jp->errlen, "invalid JSON at byte %zu: %s",
	    (size_t)(jp->p - jp->start), what);
}

static void
jp_ws(struct jp *jp)
{
	while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' ||
	    *jp->p == '\n' || *jp->p == '\r'))
		jp->p++;
}

static int
jp_hex4(struct jp *jp, unsigned *out)
{
	unsigned v = 0;

	if (jp->end - jp->p < 4) {
		jp_fail(jp, "truncated \\u escape");
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		char c = *jp->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else {
			jp_fail(jp, "bad hex digit in \\u escape");
			return -1;
		}
	}
	*out = v;
	return 0;
}

static size_t
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The length of a valid UTF-8 sequence at p (RFC 3629), or 0. */
static size_t
utf8_valid(const unsigned char *p, const unsigned char *end)
{
	size_t n;
	unsigned cp, min;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
		min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
		min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
		min = 0x10000;
	} else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A string at jp->p (its opening quote); the decoded bytes into *out. */
static int
jp_string(struct jp *jp, char **out, size_t *outlen)
{
	const char	*q;
	char		*buf, *o;

	jp->p++;	/* the quote */
	/* The decoded string is never longer than its source. */
	for (q = jp->p; q < jp->end && *q != '"'; q++)
		if (*q == '\\' && q + 1 < jp->end)
			q++;
	if (q >= jp->end) {
		jp_fail(jp, "unterminated string");
		return -1;
	}
	o = buf = util_xcalloc(1, (size_t)(q - jp->p) + 1);
	while (*jp->p != '"') {
		unsigned char c = (unsigned char)*jp->p;

		if (c < 0x20) {
			jp_fail(jp, "control character in string");
			goto bad;
		}
		if (c == '\\') {
			unsigned cp, lo;

			jp->p++;
			switch (*jp->p++) {
			case '"': *o++ = '"'; break;
			case '\\': *o++ = '\\'; break;
			case '/': *o++ = '/'; break;
			case 'b': *o++ = '\b'; break;
			case 'f': *o++ = '\f'; break;
			case 'n': *o++ = '\n'; break;
			case 'r': *o++ = '\r'; break;
			case 't': *o++ = '\t'; break;
			case 'u':
				if (jp_hex4(jp, &cp) == -1)
					goto bad;
				if (cp >= 0xdc00 && cp <= 0xdfff) {
					jp_fail(jp, "lone low surrogate");
					goto bad;
				}
				if (cp >= 0xd800 && cp <= 0xdbff) {
					if (jp->end - jp->p < 6 || jp->p[0] !=
					    '\\' || jp->p[1] != 'u') {
						jp_fail(jp, "lone high surrogate");
						goto bad;
					}
					jp->p += 2;
					if (jp_hex4(jp, &lo) == -1)
						goto bad;
					if (lo < 0xdc00 || lo > 0xdfff) {
						jp_fail(jp, "bad surrogate pair");
						goto bad;
					}
					cp = 0x10000 + ((cp - 0xd800) << 10) +
					    (lo - 0xdc00);
				}
				o += utf8_put(o, cp);
				break;
			default:
				jp->p--;
				jp_fail(jp, "unknown escape");
				goto bad;
			}
			continue;
		}
		{
			size_t n = utf8_valid((const unsigned char *)jp->p,
			    (const unsigned char *)jp->end);

			if (n == 0) {
				jp_fail(jp, "invalid UTF-8 in string");
				goto bad;
			}
			memcpy(o, jp->p, n);
			o += n;
			jp->p += n;
		}
	}
	jp->p++;
	*o = '\0';
	*out = buf;
	*outlen = (size_t)(o - buf);
	return 0;
bad:
	free(buf);
	return -1;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
jp_number(struct jp *jp, struct json_value *v)
{
	const char *s = jp->p;

	if (jp->p < jp->end && *jp->p == '-')
		jp->p++;
	if (jp->p >= jp->end || !is_digit(*jp->p)) {
		jp_fail(jp, "expected a digit");
		return -1;
	}
	if (*jp->p == '0')
		jp->p++;
	else
		while (jp->p < jp->end && is_digit(*jp->p))
			jp->p++;
	if (jp->p < jp->end && *jp->p == '.') {
		jp->p++;
		if (jp->p >= jp->end || !is_digit(*jp->p)) {
			jp_fail(jp, "expected a digit after '.'");
			return -1;
		}
		while (jp->p < jp->end && is_digit(*jp->p))
			jp->p++;
	}
	if (jp->p < jp->end && (*jp->p == 'e' || *jp->p == 'E')) {
		jp->p++;
		if (jp->p < jp->end && (*jp->p == '+' || *jp->p == '-'))
			jp->p++;
		if (jp->p >= jp->end || !is_digit(*jp->p)) {
			jp_fail(jp, "expected a digit in the exponent");
			return -1;
		}
		while (jp->p < jp->end && is_digit(*jp->p))
			jp->p++;
	}
	v->type = JSON_NUMBER;
	v->slen = (size_t)(jp->p - s);
	v->s = util_xcalloc(1, v->slen + 1);
	memcpy(v->s, s, v->slen);
	return 0;
}

static int
jp_lit(struct jp *jp, const char *lit, enum json_type t, struct json_value *v)
{
	size_t n = strlen(lit);

	if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, lit, n) != 0) {
		jp_fail(jp, "unexpected character");
		return -1;
	}
	jp->p += n;
	v->type = t;
	return 0;
}

static void	json_clear(struct json_value *);

static int	jp_value(struct jp *, struct json_value *, int depth);

/* Appends an element to v's items, growing by doubling. */
static struct json_value *
jp_push(struct json_value *v, size_t *cap)
{
	if (v->n == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		v->items = util_xrealloc(v->items, *cap * sizeof(*v->items));
	}
	memset(&v->items[v->n], 0, sizeof(v->items[0]));
	return &v->items[v->n++];
}

static int
jp_container(struct jp *jp, struct json_value *v, int depth)
{
	int	obj = *jp->p == '{';
	char	close = obj ? '}' : ']';
	size_t	cap = 0;

	if (depth >= JSON_MAX_DEPTH) {
		jp_fail(jp, "nested too deep");
		return -1;
	}
	v->type = obj ? JSON_OBJECT : JSON_ARRAY;
	jp->p++;
	jp_ws(jp);
	if (jp->p < jp->end && *jp->p == close) {
		jp->p++;
		return 0;
	}
	for (;;) {
		struct json_value *e = jp_push(v, &cap);

		jp_ws(jp);
		if (obj) {
			if (jp->p >= jp->end || *jp->p != '"') {
				jp_fail(jp, "expected a member name");
				return -1;
			}
			if (jp_string(jp, &e->key, &e->keylen) == -1)
				return -1;
			for (size_t i = 0; i + 1 < v->n; i++)
				if (v->items[i].keylen == e->keylen &&
				    memcmp(v->items[i].key, e->key,
				    e->keylen) == 0) {
					jp_fail(jp, "duplicate member name");
					return -1;
				}
			jp_ws(jp);
			if (jp->p >= jp->end || *jp->p != ':') {
				jp_fail(jp, "expected ':'");
				return -1;
			}
			jp->p++;
		}
		if (jp_value(jp, e, depth + 1) == -1)
			return -1;
		jp_ws(jp);
		if (jp->p < jp->end && *jp->p == ',') {
			jp->p++;
			continue;
		}
		if (jp->p < jp->end && *jp->p == close) {
			jp->p++;
			return 0;
		}
		jp_fail(jp, obj ? "expected ',' or '}'" : "expected ',' or ']'");
		return -1;
	}
}

static int
jp_value(struct jp *jp, struct json_value *v, int depth)
{
	jp_ws(jp);
	if (jp->p >= jp->end) {
		jp_fail(jp, "unexpected end");
		return -1;
	}
	switch (*jp->p) {
	case '{':
	case '[':
		return jp_container(jp, v, depth);
	case '"':
		v->type = JSON_STRING;
		return jp_string(jp, &v->s, &v->slen);
	case 't':
		return jp_lit(jp, "true", JSON_TRUE, v);
	case 'f':
		return jp_lit(jp, "false", JSON_FALSE, v);
	case 'n':
		return jp_lit(jp, "null", JSON_NULL, v);
	default:
		return jp_number(jp, v);
	}
}

static void
json_clear(struct json_value *v)
{
	for (size_t i = 0; i < v->n; i++)
		json_clear(&v->items[i]);
	free(v->items);
	free(v->s);
	free(v->key);
}

void
json_free(struct json_value *v)
{
	if (v == NULL)
		return;
	json_clear(v);
	free(v);
}

struct json_value *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct jp		 jp;
	struct json_value	*v = util_xcalloc(1, sizeof(*v));

	jp.p = jp.start = text;
	jp.end = text + len;
	jp.err = err;
	jp.errlen = errlen;
	jp.failed = 0;
	if (jp_value(&jp, v, 0) == 0) {
		jp_ws(&jp);
		if (jp.p == jp.end)
			return v;
		jp_fail(&jp, "trailing characters after the value");
	}
	json_free(v);
	return NULL;
}

const struct json_value *
json_member(const struct json_value *v, const char *key)
{
	size_t n = strlen(key);

	if (v == NULL || v->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (v->items[i].keylen == n &&
		    memcmp(v->items[i].key, key, n) == 0)
			return &v->items[i];
	return NULL;
}

int
json_int(const struct json_value *v, long long min, long long max,
    long long *out)
{
	const char	*s;
	size_t		 i = 0;
	int		 neg = 0;
	unsigned long long acc = 0, lim;

	if (v == NULL || (v->type != JSON_NUMBER && v->type != JSON_STRING))
		return -1;
	s = v->s;
	if (v->slen == 0 || strlen(s) != v->slen)
		return -1;
	if (s[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (s[i] == '\0')
		return -1;
	if (s[i] == '0' && s[i + 1] != '\0')
		return -1;	/* no leading zeros, as JSON numbers */
	lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
	for (; s[i] != '\0'; i++) {
		if (!is_digit(s[i]))
			return -1;
		if (acc > (lim - (unsigned)(s[i] - '0')) / 10)
			return -1;
		acc = acc * 10 + (unsigned)(s[i] - '0');
	}
	if (neg)
		*out = acc == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN :
		    -(long long)acc;
	else
		*out = (long long)acc;
	if (*out < min || *out > max)
		return -1;
	return 0;
}
