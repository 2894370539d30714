/*
 * trace.c - W3C trace context (https://www.w3.org/TR/trace-context/): the
 * traceparent header read and written, ids, sampling. See trace.h. No I/O
 * but the clock.
 */
#include "autoconf.h"

#include <string.h>
#include <time.h>

#include "trace.h"
#include "util.h"

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;		/* upper case is not allowed either */
}

/* n bytes from 2n lower-case hex digits; -1 if one is not, or all zero. */
static int
unhex(const char *s, uint8_t *out, size_t n)
{
	uint8_t any = 0;

	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
		any |= out[i];
	}
	return any ? 0 : -1;
}

int
trace_parse(const char *s, uint8_t tid[TRACE_ID_LEN],
    uint8_t sid[TRACE_SPAN_LEN], uint8_t *flags)
{
	uint8_t	ver, fl;
	size_t	len;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (len < TRACE_PARENT_LEN || s[2] != '-' || s[35] != '-' ||
	    s[52] != '-')
		return -1;
	if (hexval(s[0]) < 0 || hexval(s[1]) < 0)
		return -1;
	ver = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
	if (ver == 0xff)
		return -1;
	/* Version 00 is exactly 55; a later one may add "-..." after it. */
	if (ver == 0 && len != TRACE_PARENT_LEN)
		return -1;
	if (ver != 0 && len > TRACE_PARENT_LEN && s[55] != '-')
		return -1;
	if (unhex(s + 3, tid, TRACE_ID_LEN) == -1 ||
	    unhex(s + 36, sid, TRACE_SPAN_LEN) == -1)
		return -1;
	if (hexval(s[53]) < 0 || hexval(s[54]) < 0)
		return -1;
	fl = (uint8_t)(hexval(s[53]) << 4 | hexval(s[54]));
	*flags = fl;
	return 0;
}

void
trace_format(char *out, const uint8_t tid[TRACE_ID_LEN],
    const uint8_t sid[TRACE_SPAN_LEN], uint8_t flags)
{
	static const char hx[] = "0123456789abcdef";
	char *p = out;

	*p++ = '0';
	*p++ = '0';
	*p++ = '-';
	for (size_t i = 0; i < TRACE_ID_LEN; i++) {
		*p++ = hx[tid[i] >> 4];
		*p++ = hx[tid[i] & 15];
	}
	*p++ = '-';
	for (size_t i = 0; i < TRACE_SPAN_LEN; i++) {
		*p++ = hx[sid[i] >> 4];
		*p++ = hx[sid[i] & 15];
	}
	*p++ = '-';
	*p++ = hx[flags >> 4];
	*p++ = hx[flags & 15];
	*p = '\0';
}

void
trace_new_id(uint8_t *id, size_t len, uint64_t *rng)
{
	uint64_t	v = 0;
	uint8_t		any = 0;

	do {
		for (size_t i = 0; i < len; i++) {
			if (i % 8 == 0)
				v = util_rng_next(rng);
			id[i] = (uint8_t)(v >> (8 * (i % 8)));
			any |= id[i];
		}
	} while (!any);
}

uint8_t
trace_sample(double ratio, uint64_t *rng)
{
	if (ratio >= 1.0)
		return TRACE_SAMPLED;
	if (ratio <= 0.0)
		return 0;
	return (double)(util_rng_next(rng) >> 11) * 0x1p-53 < ratio ?
	    TRACE_SAMPLED : 0;
}

int64_t
trace_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* FNV-1a over s, from basis: a spread of a saga id, not a secret. */
static uint64_t
fnv(const char *s, uint64_t basis)
{
	uint64_t h = basis;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

int
trace_ctx_from(struct trace_ctx *tc, const char *tp, const uint8_t *parent,
    double ratio, const char *seed, uint64_t *rng)
{
	memset(tc, 0, sizeof(*tc));
	tc->on = 1;
	if (trace_parse(tp, tc->trace_id, tc->span_id, &tc->flags) == 0) {
		tc->flags &= TRACE_SAMPLED;
		if (parent != NULL) {
			memcpy(tc->parent_id, parent, TRACE_SPAN_LEN);
			tc->has_parent = 1;
		}
		return 0;
	}
	if (seed != NULL) {
		/* splitmix64 over the id's hashes: a stream of its own. */
		uint64_t s = fnv(seed, 0xcbf29ce484222325ULL);

		trace_new_id(tc->trace_id, TRACE_ID_LEN, &s);
		trace_new_id(tc->span_id, TRACE_SPAN_LEN, &s);
		tc->flags = trace_sample(ratio, &s);
		return 1;
	}
	trace_new_id(tc->trace_id, TRACE_ID_LEN, rng);
	trace_new_id(tc->span_id, TRACE_SPAN_LEN, rng);
	tc->flags = trace_sample(ratio, rng);
	return 1;
}

void
trace_call_begin(struct trace_ctx *tc, uint64_t *rng)
{
	if (!tc->on)
		return;
	trace_new_id(tc->call_id, TRACE_SPAN_LEN, rng);
	tc->call_start_ns = trace_now_ns();
}
