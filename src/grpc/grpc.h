/*
 * grpc.h - what the gRPC server and client share: status codes, metadata,
 * grpc-timeout, percent-encoding of grpc-message, base64 for -bin metadata and
 * the length-prefixed message framer. Protocol: grpc/grpc doc/PROTOCOL-HTTP2.md.
 * Nothing here does I/O.
 */
#ifndef SAGAD_GRPC_H
#define SAGAD_GRPC_H

#include <stddef.h>
#include <stdint.h>

enum grpc_status {
	GRPC_STATUS_OK = 0,
	GRPC_STATUS_CANCELLED = 1,
	GRPC_STATUS_UNKNOWN = 2,
	GRPC_STATUS_INVALID_ARGUMENT = 3,
	GRPC_STATUS_DEADLINE_EXCEEDED = 4,
	GRPC_STATUS_NOT_FOUND = 5,
	GRPC_STATUS_ALREADY_EXISTS = 6,
	GRPC_STATUS_PERMISSION_DENIED = 7,
	GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
	GRPC_STATUS_FAILED_PRECONDITION = 9,
	GRPC_STATUS_ABORTED = 10,
	GRPC_STATUS_OUT_OF_RANGE = 11,
	GRPC_STATUS_UNIMPLEMENTED = 12,
	GRPC_STATUS_INTERNAL = 13,
	GRPC_STATUS_UNAVAILABLE = 14,
	GRPC_STATUS_DATA_LOSS = 15,
	GRPC_STATUS_UNAUTHENTICATED = 16,
};
#define GRPC_STATUS_MAX			16

#define GRPC_DEFAULT_MAX_RECV		(4 * 1024 * 1024)
#define GRPC_MAX_TIMEOUT_MS		(INT64_C(99999999) * 3600 * 1000)

const char	*grpc_status_name(int);		/* "UNAVAILABLE"; "UNKNOWN" if out of range */
int		 grpc_status_from_name(const char *);	/* -1 if unknown */

/* Metadata: keys lower-case ASCII; values binary for keys ending "-bin". */
struct grpc_md {
	char		*key;
	uint8_t		*value;
	size_t		 len;
};
struct grpc_metadata {
	struct grpc_md	*items;
	size_t		 n;
	size_t		 cap;
};
void	grpc_md_add(struct grpc_metadata *, const char *key,
	    const void *value, size_t len);
void	grpc_md_addn(struct grpc_metadata *, const char *key, size_t keylen,
	    const void *value, size_t len);
const struct grpc_md *grpc_md_get(const struct grpc_metadata *,
	    const char *key);
void	grpc_md_clear(struct grpc_metadata *);
int	grpc_md_is_reserved(const char *key, size_t keylen); /* ":x", grpc-*, te, content-type... */
/* Whether key names binary metadata: it ends "-bin" (base64 on the wire). */
int	grpc_md_is_bin(const char *key, size_t keylen);
/*
 * Whether the server and the client may send key as custom metadata: not
 * reserved, and only lower-case letters, digits, '-', '_' and '.'.
 */
int	grpc_md_key_ok(const char *key, size_t keylen);
/* grpc_md_key_ok, and a text (non -bin) value of printable ASCII only. */
int	grpc_md_sendable(const char *key, size_t keylen, const uint8_t *value,
	    size_t len);

/* grpc-timeout: "1234m" etc. Parse returns 0 with milliseconds (rounded up), -1 if malformed. */
int	grpc_timeout_parse(const char *, size_t, int64_t *ms);
void	grpc_timeout_format(int64_t ms, char *buf, size_t buflen);

/* grpc-message percent-encoding. Return the malloc'd, NUL-terminated result. */
char	*grpc_percent_encode(const char *, size_t);
char	*grpc_percent_decode(const char *, size_t);

/* Base64 for -bin values; decode accepts padded and unpadded input. */
char	*grpc_b64_encode(const uint8_t *, size_t, size_t *outlen);
int	 grpc_b64_decode(const char *, size_t, uint8_t **out, size_t *outlen);

/*
 * The length-prefixed message framer: feed it DATA bytes as they arrive, in
 * any split, and it calls back once per whole message. A message above max
 * gives GRPC_STATUS_RESOURCE_EXHAUSTED, a compressed flag (no grpc-encoding is
 * negotiated) GRPC_STATUS_INTERNAL; after an error the framer stays failed.
 */
struct grpc_framer {
	uint8_t		 hdr[5];
	size_t		 hdrlen;
	uint8_t		*msg;
	size_t		 msglen;	/* expected length of current message */
	size_t		 have;
	size_t		 max;
	int		 failed;
};
typedef int (*grpc_framer_cb)(void *arg, const uint8_t *msg, size_t len);
void	grpc_framer_init(struct grpc_framer *, size_t max);
/* Returns 0 or a grpc_status; a callback returning non-zero stops and returns that. */
int	grpc_framer_feed(struct grpc_framer *, const uint8_t *, size_t,
	    grpc_framer_cb, void *arg);
void	grpc_framer_reset(struct grpc_framer *);
/* Bytes the framer holds allocated now (a partial message). */
size_t	grpc_framer_held(const struct grpc_framer *);
/* Writes the 5-byte prefix for a message of len bytes. */
void	grpc_frame_prefix(uint8_t out[5], size_t len);

#endif
