/*
 * util.c - helpers shared by every module. Nothing here logs or exits but the
 * allocation wrappers, which abort: a daemon that cannot allocate a few bytes
 * has no sound way to go on, and checking every small strdup hides real errors.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "util.h"

int64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *
util_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (p == NULL)
		abort();
	return p;
}

void *
util_xrealloc(void *p, size_t sz)
{
	void *q = realloc(p, sz ? sz : 1);

	if (q == NULL)
		abort();
	return q;
}

char *
util_xstrdup(const char *s)
{
	char *p = strdup(s != NULL ? s : "");

	if (p == NULL)
		abort();
	return p;
}

void
util_rng_seed(uint64_t *state)
{
	if (getrandom(state, sizeof(*state), 0) != sizeof(*state))
		*state = (uint64_t)util_now_ms() * 2654435761u ^
		    (uint64_t)util_mono_ms();
}

uint64_t
util_rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int
util_parse_hostport(const char *s, char *host, size_t hostlen, int *port,
    char *err, size_t errlen)
{
	const char	*colon, *h;
	size_t		 hl;
	char		*end;
	long		 p;

	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "expected host:port, got an empty string");
		return -1;
	}
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':') {
			snprintf(err, errlen,
			    "expected [ipv6]:port, got \"%s\"", s);
			return -1;
		}
		h = s + 1;
		hl = rb - h;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || colon == s) {
			snprintf(err, errlen, "expected host:port, got \"%s\"", s);
			return -1;
		}
		h = s;
		hl = colon - s;
		if (memchr(h, ':', hl) != NULL) {
			snprintf(err, errlen, "expected host:port (write an "
			    "IPv6 address as [addr]:port), got \"%s\"", s);
			return -1;
		}
	}
	if (hl == 0 || hl >= hostlen) {
		snprintf(err, errlen, "expected a host name of 1 to %zu "
		    "characters in \"%s\"", hostlen - 1, s);
		return -1;
	}
	for (size_t i = 0; i < hl; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		    c == '_' || c == ':')) {
			snprintf(err, errlen, "expected a host name or address, "
			    "got \"%.*s\"", (int)hl, h);
			return -1;
		}
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 ||
	    p > 65535) {
		snprintf(err, errlen, "expected a port from 1 to 65535, got "
		    "\"%s\"", colon + 1);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

const char *
util_url_redact(const char *url, char *buf, size_t len)
{
	const char	*auth, *at, *colon;

	if ((auth = strstr(url, "://")) == NULL) {
		snprintf(buf, len, "%s", url);
		return buf;
	}
	auth += 3;
	/* The last '@' ends the user info; a password may hold anything. */
	at = strrchr(auth, '@');
	colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	/* NATS takes a token as the whole user info: nats://TOKEN@host. */
	if (colon == NULL && at != NULL && (strncmp(url, "nats://", 7) == 0 ||
	    strncmp(url, "tls://", 6) == 0))
		snprintf(buf, len, "%.*s***%s", (int)(auth - url), url, at);
	else if (colon == NULL)
		snprintf(buf, len, "%s", url);
	else
		snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - url), url, at);
	return buf;
}

int
util_edit_distance(const char *a, const char *b)
{
	size_t	 la = strlen(a), lb = strlen(b);
	int	*prev, *cur, *tmp, d;

	prev = util_xcalloc(lb + 1, sizeof(int));
	cur = util_xcalloc(lb + 1, sizeof(int));
	for (size_t j = 0; j <= lb; j++)
		prev[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] == b[j - 1] ? 0 : 1;
			int v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			cur[j] = v;
		}
		tmp = prev; prev = cur; cur = tmp;
	}
	d = prev[lb];
	free(prev);
	free(cur);
	return d;
}

/* --- a saga's end, for the log ----------------------------------------------- */

static util_end_fn end_fn;

void
util_set_end_fn(util_end_fn fn)
{
	end_fn = fn;
}

void
util_saga_end(const struct util_saga_end *e)
{
	if (end_fn != NULL)
		end_fn(e);
}
