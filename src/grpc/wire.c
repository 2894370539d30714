/*
 * wire.c - the parts of the gRPC HTTP/2 protocol that are not HTTP/2: status
 * names, metadata lists, grpc-timeout, grpc-message percent-encoding, base64 for
 * binary metadata and the 5-byte length-prefixed message framing. Pure data
 * transformations, used by both the server (server*.c) and the client
 * (client*.c).
 */
#include "autoconf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "util.h"

static const char *status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *
grpc_status_name(int s)
{
	if (s < 0 || s > GRPC_STATUS_MAX)
		return "UNKNOWN";
	return status_names[s];
}

int
grpc_status_from_name(const char *name)
{
	for (int i = 0; i <= GRPC_STATUS_MAX; i++)
		if (strcasecmp(name, status_names[i]) == 0)
			return i;
	return -1;
}

void
grpc_md_addn(struct grpc_metadata *md, const char *key, size_t keylen,
    const void *value, size_t len)
{
	struct grpc_md *m;

	if (md->n == md->cap) {
		md->cap = md->cap ? md->cap * 2 : 8;
		md->items = util_xrealloc(md->items, md->cap * sizeof(*m));
	}
	m = &md->items[md->n++];
	m->key = util_xcalloc(1, keylen + 1);
	for (size_t i = 0; i < keylen; i++)
		m->key[i] = (char)tolower((unsigned char)key[i]);
	m->value = util_xcalloc(1, len + 1);	/* NUL-terminated for text use */
	if (len > 0)
		memcpy(m->value, value, len);
	m->len = len;
}

void
grpc_md_add(struct grpc_metadata *md, const char *key, const void *value,
    size_t len)
{
	grpc_md_addn(md, key, strlen(key), value, len);
}

const struct grpc_md *
grpc_md_get(const struct grpc_metadata *md, const char *key)
{
	for (size_t i = 0; i < md->n; i++)
		if (strcasecmp(md->items[i].key, key) == 0)
			return &md->items[i];
	return NULL;
}

void
grpc_md_clear(struct grpc_metadata *md)
{
	for (size_t i = 0; i < md->n; i++) {
		free(md->items[i].key);
		free(md->items[i].value);
	}
	free(md->items);
	md->items = NULL;
	md->n = md->cap = 0;
}

int
grpc_md_is_reserved(const char *key, size_t keylen)
{
	static const char *reserved[] = {
		"te", "content-type", "user-agent", "grpc-timeout",
		"grpc-encoding", "grpc-accept-encoding", "grpc-status",
		"grpc-message", "grpc-status-details-bin", "content-length",
		"connection", "host", "accept-encoding",
	};

	if (keylen == 0 || key[0] == ':')
		return 1;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strlen(reserved[i]) == keylen &&
		    strncasecmp(reserved[i], key, keylen) == 0)
			return 1;
	return 0;
}

int
grpc_md_is_bin(const char *key, size_t keylen)
{
	return keylen > 4 && memcmp(key + keylen - 4, "-bin", 4) == 0;
}

int
grpc_md_key_ok(const char *key, size_t keylen)
{
	if (keylen == 0 || grpc_md_is_reserved(key, keylen))
		return 0;
	for (size_t i = 0; i < keylen; i++) {
		char c = key[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

int
grpc_md_sendable(const char *key, size_t keylen, const uint8_t *value,
    size_t len)
{
	if (!grpc_md_key_ok(key, keylen))
		return 0;
	if (!grpc_md_is_bin(key, keylen))
		for (size_t i = 0; i < len; i++)
			if (value[i] < 0x20 || value[i] > 0x7e)
				return 0;
	return 1;
}

int
grpc_timeout_parse(const char *s, size_t len, int64_t *ms)
{
	int64_t	v = 0;
	size_t	i;

	/* TimeoutValue is at most 8 ASCII digits, then one unit letter. */
	if (len < 2 || len > 9)
		return -1;
	for (i = 0; i < len - 1; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	switch (s[len - 1]) {
	case 'H':	*ms = v * 3600 * 1000; break;
	case 'M':	*ms = v * 60 * 1000; break;
	case 'S':	*ms = v * 1000; break;
	case 'm':	*ms = v; break;
	case 'u':	*ms = (v + 999) / 1000; break;
	case 'n':	*ms = (v + 999999) / 1000000; break;
	default:	return -1;
	}
	return 0;
}

void
grpc_timeout_format(int64_t ms, char *buf, size_t buflen)
{
	if (ms < 0)
		ms = 0;
	if (ms > GRPC_MAX_TIMEOUT_MS)
		ms = GRPC_MAX_TIMEOUT_MS;	/* and no overflow below */
	/*
	 * Eight digits at most: pick the finest unit whose value, rounded up
	 * so that the peer never sees a shorter deadline, still fits.
	 */
	if (ms <= 99999999)
		snprintf(buf, buflen, "%lldm", (long long)ms);
	else if ((ms + 999) / 1000 <= 99999999)
		snprintf(buf, buflen, "%lldS", (long long)((ms + 999) / 1000));
	else if ((ms + 59999) / 60000 <= 99999999)
		snprintf(buf, buflen, "%lldM", (long long)((ms + 59999) / 60000));
	else
		snprintf(buf, buflen, "%lldH", (long long)99999999);
}

char *
grpc_percent_encode(const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	char	*out = util_xcalloc(1, len * 3 + 1), *p = out;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		/* Printable ASCII but '%' stays as is; all else is %XX. */
		if (c >= 0x20 && c <= 0x7e && c != '%') {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = '\0';
	return out;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
grpc_percent_decode(const char *s, size_t len)
{
	char	*out = util_xcalloc(1, len + 1), *p = out;

	for (size_t i = 0; i < len; i++) {
		int hi, lo;
		/* A malformed escape is kept verbatim, as the spec asks. */
		if (s[i] == '%' && i + 2 < len &&
		    (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			*p++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*p++ = s[i];
		}
	}
	*p = '\0';
	return out;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
grpc_b64_encode(const uint8_t *in, size_t len, size_t *outlen)
{
	char	*out = util_xcalloc(1, (len + 2) / 3 * 4 + 1), *p = out;
	size_t	 i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		*p++ = b64[v >> 18 & 63];
		*p++ = b64[v >> 12 & 63];
		*p++ = b64[v >> 6 & 63];
		*p++ = b64[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		*p++ = b64[v >> 18 & 63];
		*p++ = b64[v >> 12 & 63];
		*p++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
		*p++ = '=';
	}
	*p = '\0';
	if (outlen != NULL)
		*outlen = p - out;
	return out;
}

static int
b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int
grpc_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t		*o, *p;
	uint32_t	 acc = 0;
	int		 bits = 0;

	/* Padding is optional, but at most two '=' and only where due. */
	if (len > 0 && s[len - 1] == '=') {
		if (len % 4 != 0)
			return -1;
		len--;
		if (s[len - 1] == '=')
			len--;
	}
	if (len % 4 == 1)
		return -1;
	o = p = util_xcalloc(1, len * 3 / 4 + 1);
	for (size_t i = 0; i < len; i++) {
		int v = b64val(s[i]);
		if (v < 0) {
			free(o);
			return -1;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*p++ = (uint8_t)(acc >> bits);
		}
	}
	*out = o;
	*outlen = p - o;
	return 0;
}

void
grpc_framer_init(struct grpc_framer *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	f->max = max ? max : GRPC_DEFAULT_MAX_RECV;
}

void
grpc_framer_reset(struct grpc_framer *f)
{
	free(f->msg);
	f->msg = NULL;
	f->hdrlen = f->have = f->msglen = 0;
}

/*
 * The buffer of a large message holding have bytes: the next power of two
 * from 64 KiB up, capped at the message length. It is a function of have so
 * that the framer needs no capacity field, and it grows geometrically, so a
 * 4 MiB message arriving in 16 KiB DATA frames is copied a few times, not
 * 256 times.
 */
static size_t
framer_cap(size_t have, size_t msglen)
{
	size_t cap = 65536;

	if (have == 0)
		return 0;
	while (cap < have)
		cap *= 2;
	return cap < msglen ? cap : msglen;
}

size_t
grpc_framer_held(const struct grpc_framer *f)
{
	if (f->msg == NULL)
		return 0;
	return f->msglen <= 65536 ? f->msglen : framer_cap(f->have, f->msglen);
}

int
grpc_framer_feed(struct grpc_framer *f, const uint8_t *data, size_t len,
    grpc_framer_cb cb, void *arg)
{
	int rc;

	if (f->failed)
		return f->failed;
	while (len > 0) {
		if (f->hdrlen < 5) {
			size_t n = 5 - f->hdrlen < len ? 5 - f->hdrlen : len;
			memcpy(f->hdr + f->hdrlen, data, n);
			f->hdrlen += n;
			data += n;
			len -= n;
			if (f->hdrlen < 5)
				break;
			if (f->hdr[0] != 0)
				return f->failed = GRPC_STATUS_INTERNAL;
			f->msglen = (size_t)f->hdr[1] << 24 |
			    (size_t)f->hdr[2] << 16 | (size_t)f->hdr[3] << 8 |
			    f->hdr[4];
			if (f->msglen > f->max)
				return f->failed =
				    GRPC_STATUS_RESOURCE_EXHAUSTED;
			f->have = 0;
			/* Grow with the data, not with the claimed length. */
			free(f->msg);
			f->msg = NULL;
		}
		if (f->msglen > 0 && len > 0) {
			size_t n = f->msglen - f->have < len ?
			    f->msglen - f->have : len;
			/*
			 * Small messages get their whole buffer at once; big
			 * ones grow with the data that really arrived, so a
			 * peer cannot reserve 4 MiB with a 5-byte prefix.
			 */
			if (f->msglen <= 65536) {
				if (f->msg == NULL)
					f->msg = util_xcalloc(1, f->msglen);
			} else if (f->have + n > framer_cap(f->have, f->msglen))
				f->msg = util_xrealloc(f->msg,
				    framer_cap(f->have + n, f->msglen));
			memcpy(f->msg + f->have, data, n);
			f->have += n;
			data += n;
			len -= n;
		}
		if (f->have == f->msglen) {
			rc = cb(arg, f->msg != NULL ? f->msg : (const uint8_t *)"",
			    f->msglen);
			free(f->msg);
			f->msg = NULL;
			f->hdrlen = f->have = f->msglen = 0;
			if (rc != 0)
				return f->failed = rc;
		}
	}
	return 0;
}

void
grpc_frame_prefix(uint8_t out[5], size_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}
