/*
 * client.h - the gRPC client: unary and server-streaming calls over HTTP/2
 * (nghttp2) on a libevent loop, with raw message bytes in and out. It keeps
 * one channel per target (host:port), each a small pool of HTTP/2
 * connections that many calls share; it queues calls when the peer's
 * MAX_CONCURRENT_STREAMS is reached, reconnects with exponential backoff and
 * enforces deadlines on its own. It knows nothing of protobuf: callers encode
 * and decode messages. It never logs: failures reach the caller as gRPC
 * statuses with a message saying what failed.
 *
 * Rules for callers:
 * - Everything runs on the loop thread of the event_base given to
 *   grpc_client_new().
 * - A call's callback fires exactly once, always from the loop and never
 *   from inside grpc_client_call_start() or grpc_client_call_cancel(), unless
 *   the call was cancelled: after grpc_client_call_cancel() returns, the
 *   callback never fires and the handle is gone.
 * - The handle is valid until the callback starts; do not cancel a call from
 *   its own callback.
 * - The result (message, data, metadata) lives only during the callback.
 * - No callback may free the client; grpc_client_free() fires no callbacks.
 * - A streaming call's on_msg runs while the client reads its input: it may
 *   start calls and cancel any call, its own included.
 */
#ifndef SAGAD_GRPC_CLIENT_H
#define SAGAD_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "grpc/grpc.h"

struct event_base;
struct tls;
struct grpc_client;
struct grpc_channel;
struct grpc_client_call;

struct grpc_client_opts {
	size_t		 max_recv;		/* 0: GRPC_DEFAULT_MAX_RECV (4 MiB) */
	int		 connect_timeout_ms;	/* 0: 5000 */
	int		 backoff_min_ms;	/* 0: 100; first reconnect delay */
	int		 backoff_max_ms;	/* 0: 5000 */
	size_t		 max_queued;		/* 0: 10000 waiting calls per channel */
	int		 conns_per_target;	/* 0: 1; calls go round robin */
	int		 keepalive_ms;		/* 0: off; else PING when idle this long */
	const char	*user_agent;		/* NULL: "sagad/VERSION" */
};

/* What a call ended with; valid only while the callback runs. */
struct grpc_client_result {
	int				 status;	/* enum grpc_status */
	const char			*message;	/* percent-decoded; never NULL */
	const uint8_t			*data;		/* unary: the response; NULL if none */
	size_t				 len;
	const struct grpc_metadata	*headers;	/* response headers */
	const struct grpc_metadata	*trailers;	/* trailers (or Trailers-Only) */
	int				 unsent;	/* 1: no connection ever carried
							   the request: it cannot have
							   reached the server */
};

typedef void (*grpc_client_cb)(void *arg, const struct grpc_client_result *);
/* Server streaming: one call per message, before the final grpc_client_cb. */
typedef void (*grpc_client_msg_cb)(void *arg, const uint8_t *msg, size_t len);

/* NULL with a sentence in err if libevent cannot give the client its events. */
struct grpc_client	*grpc_client_new(struct event_base *,
			    const struct grpc_client_opts *, char *err,
			    size_t errlen);
/* Closes every connection and drops every call without callbacks. */
void			 grpc_client_free(struct grpc_client *);

/*
 * The channel for host:port, made on first use and kept until the client is
 * freed; connections open lazily, when calls need them.
 */
struct grpc_channel	*grpc_client_channel(struct grpc_client *,
			    const char *host, int port);
/*
 * The same over TLS (tls.h, a client context; NULL: cleartext h2c): the
 * server's certificate must name server_name (NULL: host). The channel is
 * the one of (host, port, tls, server_name); it holds a reference to tls,
 * whose reloads its new connections follow.
 */
struct grpc_channel	*grpc_client_channel_tls(struct grpc_client *,
			    const char *host, int port, struct tls *tls,
			    const char *server_name);

/*
 * Starts a unary call: path is "/package.Service/Method", req the serialized
 * request message, md extra metadata (keys ending in "-bin" carry binary
 * values, sent base64), timeout_ms the deadline from now (0 or less: none).
 * Everything is copied; the call never fails here, errors reach cb.
 */
struct grpc_client_call	*grpc_client_call_start(struct grpc_channel *,
			    const char *path, const uint8_t *req, size_t len,
			    const struct grpc_metadata *md, int64_t timeout_ms,
			    grpc_client_cb cb, void *arg);
/* The same for a server-streaming method: on_msg per message, then cb. */
struct grpc_client_call	*grpc_client_stream_start(struct grpc_channel *,
			    const char *path, const uint8_t *req, size_t len,
			    const struct grpc_metadata *md, int64_t timeout_ms,
			    grpc_client_msg_cb on_msg, grpc_client_cb cb,
			    void *arg);
/*
 * Cancels a call that has not completed yet: the server gets RST_STREAM
 * CANCEL and the callback is never called.
 */
void			 grpc_client_call_cancel(struct grpc_client_call *);

/* Counters, for tests and stats. */
struct grpc_channel_stats {
	int		 conns_open;	/* connections up, draining ones included */
	uint64_t	 connects;	/* connections established so far */
	size_t		 active;	/* calls on a stream now */
	size_t		 queued;	/* calls waiting for a stream */
};
void	grpc_client_channel_stats(const struct grpc_channel *,
	    struct grpc_channel_stats *);

/*
 * The reconnect delay after `failures` failed connects in a row (1 or more),
 * with +-20% jitter drawn from rnd (0..1); pure, for unit tests.
 */
int	grpc_client_backoff_ms(int failures, int min_ms, int max_ms, double rnd);

#endif
