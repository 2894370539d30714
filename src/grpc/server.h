/*
 * server.h - a gRPC server on libevent and nghttp2: cleartext HTTP/2 with
 * prior knowledge (h2c), one bufferevent per connection, unary and
 * server-streaming methods from a method table; or, once
 * grpc_server_set_tls() gave it a context, HTTP/2 over TLS (ALPN h2 required,
 * client certificates when the context asks for them). It does not do client
 * streaming nor compression.
 *
 * Ownership of a call: the server owns every struct grpc_call. A handler may
 * use the call it was given, now or later from the event loop, until either
 * it finishes the call (grpc_call_finish, grpc_call_reply*) or the call's
 * cancel callback returns; after that the pointer is dead. The cancel
 * callback runs when the client resets the stream, the deadline passes or the
 * connection drops, and only for calls the handler has not finished. A
 * handler that answers later must therefore set a cancel callback. The
 * server frees the call in one place, when its HTTP/2 stream closes.
 *
 * The process must ignore SIGPIPE: a peer that goes away mid-write must cost
 * a connection, not the process.
 */
#ifndef SAGAD_GRPC_SERVER_H
#define SAGAD_GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <protobuf-c/protobuf-c.h>

#include "grpc/grpc.h"

struct event_base;
struct bufferevent;
struct tls;
struct grpc_server;
struct grpc_call;

/* Every field 0 means its default. */
struct grpc_server_opts {
	size_t		 max_recv_msg;		/* 4 MiB: larger is RESOURCE_EXHAUSTED */
	uint32_t	 max_concurrent_streams; /* 1000 per connection */
	uint32_t	 max_header_list;	/* 16 KiB of request headers */
	size_t		 stream_queue_max;	/* 1 MiB queued output per stream */
	size_t		 conn_out_max;		/* 1 MiB unsent output per connection */
	size_t		 conn_in_max;		/* 64 MiB of buffered requests per connection */
	int		 max_connections;	/* 10000 */
	int		 require_te;		/* refuse requests without "te: trailers" */
	/*
	 * Resource control (sagad.conf(5) limits). memory_max bounds what every
	 * connection buffers together: request data, queued replies and unsent
	 * output. Past it new streams and replies are RESOURCE_EXHAUSTED, never
	 * queued. A connection's own share is memory_max / 4.
	 */
	size_t		 memory_max;		/* 1 GiB */
	int		 max_connections_per_ip; /* 1000 */
	int		 max_streaming_per_ip;	/* open server-streaming calls; 256 */
	int		 handshake_timeout_ms;	/* preface and SETTINGS: 10000 */
	int		 idle_timeout_ms;	/* no stream open: 300000; -1 never */
	/*
	 * What the process layer may want to log: the server never logs. Called
	 * at most once a second per kind, with how many happened since.
	 */
	void		(*on_event)(int kind, const char *what, unsigned long n,
			    void *arg);
	void		*event_arg;
	/*
	 * Checks a call once its headers are in and its method is known,
	 * before its request is read (sagad's tokens, auth.h): returns 0, or
	 * a gRPC status with a sentence in msg, and the call ends with it.
	 * It may name the caller (grpc_call_set_caller). NULL: every call.
	 */
	int		(*authorize)(struct grpc_call *, void *arg, char *msg,
			    size_t msglen);
	void		*authorize_arg;
};

/* Kinds of on_event. */
enum grpc_server_event {
	GRPC_SERVER_EV_ACCEPT,		/* accept() failed (EMFILE...): paused */
	GRPC_SERVER_EV_REFUSED,		/* a connection refused by a cap */
	GRPC_SERVER_EV_TLS,		/* a client's TLS handshake failed */
};

typedef void (*grpc_handler_fn)(struct grpc_call *, void *arg);
typedef void (*grpc_call_cb)(struct grpc_call *, void *arg);
typedef void (*grpc_server_done_cb)(struct grpc_server *, void *arg);

/*
 * A method: its path ("/pkg.Service/Method"), the request and response
 * descriptors (NULL for raw bytes, passed through as is) and whether the
 * server streams its replies. protobuf-c does not know which methods stream,
 * hence this table.
 */
struct grpc_method {
	const char				*path;
	const ProtobufCMessageDescriptor	*req;
	const ProtobufCMessageDescriptor	*resp;
	int					 server_streaming;
	grpc_handler_fn				 handler;
	void					*arg;
};

/* Results of grpc_call_send and friends. */
enum grpc_call_rc {
	GRPC_CALL_OK = 0,
	GRPC_CALL_EAGAIN = 1,	/* queue full: wait for the writable callback */
	GRPC_CALL_EDONE = -1,	/* finished or cancelled: nothing was sent */
	GRPC_CALL_EINVAL = -2,	/* message could not be encoded, or bad metadata */
	GRPC_CALL_ENOMEM = -3,	/* over the memory budget: reply* already
				   finished the call RESOURCE_EXHAUSTED */
};

struct grpc_server *grpc_server_new(struct event_base *,
	    const struct grpc_server_opts *, char *err, size_t errlen);
/* Copies the method; path must stay valid. Returns -1 if path is taken. */
int	grpc_server_register(struct grpc_server *, const struct grpc_method *,
	    char *err, size_t errlen);
/* host NULL or "*" = all addresses; port 0 = any (see grpc_server_port). */
int	grpc_server_listen(struct grpc_server *, const char *host, int port,
	    char *err, size_t errlen);
/* Listens on a socket already bound (and maybe listening); takes it. */
int	grpc_server_listen_fd(struct grpc_server *, int fd, char *err,
	    size_t errlen);
int	grpc_server_port(const struct grpc_server *);	/* last bound port */
/* Serves one connection on a bufferevent the server then owns (tests, TLS). */
int	grpc_server_adopt(struct grpc_server *, struct bufferevent *,
	    const struct sockaddr *, socklen_t);
/*
 * Graceful shutdown: stop accepting, send GOAWAY (a notice, then the final
 * one after a PING round trip), let calls in flight finish, refuse new
 * streams, close connections as they fall idle and then call cb once.
 */
void	grpc_server_shutdown(struct grpc_server *, grpc_server_done_cb,
	    void *arg);
/* Closes everything now: unfinished calls get their cancel callback. */
void	grpc_server_free(struct grpc_server *);
size_t	grpc_server_nconns(const struct grpc_server *);
size_t	grpc_server_ncalls(const struct grpc_server *);
/* Bytes held in request and reply buffers now, against memory_max. */
size_t	grpc_server_memory(const struct grpc_server *);
/*
 * Applies new limits (SIGHUP): memory_max, the per-IP caps, the timeouts and
 * max_connections; fields 0 keep their value. Connections above a lowered cap
 * stay; new ones are refused until the count is below it.
 */
void	grpc_server_set_limits(struct grpc_server *,
	    const struct grpc_server_opts *);
struct event_base *grpc_server_base(const struct grpc_server *);
/*
 * TLS (tls.h): connections accepted from now on speak TLS over tls (a
 * reference is taken; reloading tls changes the certificate of the next
 * ones); NULL: cleartext h2c again. Connections up keep what they have.
 */
void	grpc_server_set_tls(struct grpc_server *, struct tls *);

/* The request. */
const char	*grpc_call_path(const struct grpc_call *);
const ProtobufCMessage *grpc_call_request(const struct grpc_call *);
const uint8_t	*grpc_call_request_raw(const struct grpc_call *, size_t *len);
/* Custom request metadata; -bin values are already decoded. */
const struct grpc_metadata *grpc_call_metadata(const struct grpc_call *);
int64_t		 grpc_call_deadline(const struct grpc_call *); /* util_mono_ms; 0 none */
const char	*grpc_call_peer(const struct grpc_call *);	/* "ipv4:1.2.3.4:5" */
/* Who the caller is for the logs (a token's name); NULL: nobody said. */
void		 grpc_call_set_caller(struct grpc_call *, const char *);
const char	*grpc_call_caller(const struct grpc_call *);
/* The subject of the client's certificate ("CN=ops,O=Example"), or NULL. */
const char	*grpc_call_peer_name(const struct grpc_call *);
struct grpc_server *grpc_call_server(const struct grpc_call *);

/* Metadata out. Headers only before the first message; -bin values are raw. */
int	grpc_call_add_header(struct grpc_call *, const char *key,
	    const void *value, size_t len);
int	grpc_call_add_trailer(struct grpc_call *, const char *key,
	    const void *value, size_t len);

/*
 * Replies. send queues one message (a stream's, or a unary reply before
 * finish); EAGAIN means the per-stream queue is above its cap and the message
 * was not queued: wait for the writable callback. finish ends the call with a
 * status and an optional message (UTF-8, percent-encoded on the wire);
 * reply = send + finish(OK). A streaming send over the server's memory
 * budget says EAGAIN (the reader is too slow for now); a unary reply over it
 * finishes the call RESOURCE_EXHAUSTED itself and says ENOMEM.
 */
int	grpc_call_send(struct grpc_call *, const ProtobufCMessage *);
int	grpc_call_send_raw(struct grpc_call *, const void *, size_t);
int	grpc_call_finish(struct grpc_call *, int status, const char *message);
int	grpc_call_reply(struct grpc_call *, const ProtobufCMessage *);
int	grpc_call_reply_raw(struct grpc_call *, const void *, size_t);

void	grpc_call_on_cancel(struct grpc_call *, grpc_call_cb, void *arg);
/*
 * fn hears the call end once, with the status it was answered (CANCELLED
 * when it never was): the Run's span (issue 14). NULL clears it.
 */
typedef void (*grpc_call_done_cb)(struct grpc_call *, int status, void *arg);
void	grpc_call_on_done(struct grpc_call *, grpc_call_done_cb, void *arg);

/*
 * In-process calls (server_local.c): another front end of the same methods
 * (the HTTP listener's JSON API) calls a registered handler exactly as a
 * gRPC client would, so both share one implementation of every method. The
 * handler sees a grpc_call like any other; what it sends and how it
 * finishes go to these callbacks instead of a stream. on_message returns
 * GRPC_CALL_OK, or GRPC_CALL_EAGAIN when the front end's reader is too slow
 * (the handler then behaves as with a slow gRPC reader). on_finish runs
 * once; the call is freed after it returns, and the front end must forget
 * it then. Both may run before grpc_server_call_local() returns.
 */
struct grpc_local_ops {
	int	(*on_message)(const ProtobufCMessage *, void *arg);
	void	(*on_finish)(int status, const char *message, void *arg);
};
/*
 * Calls the method at path with req, which the call then owns (it is freed
 * with protobuf_c_message_free_unpacked and the default allocator). md (may
 * be NULL) is copied; peer names the caller. *callp is set before the
 * handler runs. Returns 0, or -1 when no method of that path takes req's
 * type (req is freed then too).
 */
int	grpc_server_call_local(struct grpc_server *, const char *path,
	    ProtobufCMessage *req, const struct grpc_metadata *md,
	    const char *peer, const struct grpc_local_ops *, void *arg,
	    struct grpc_call **callp);
/*
 * The front end's caller went away: the handler's cancel callback runs (if
 * the call is not finished) and the call is freed; on_finish does not run.
 */
void	grpc_server_call_local_cancel(struct grpc_call *);
/* Called once the queue has drained to half its cap after an EAGAIN. */
void	grpc_call_on_writable(struct grpc_call *, grpc_call_cb, void *arg);
size_t	grpc_call_queued(const struct grpc_call *);

#endif
