/*
 * client_int.h - what the files of the gRPC client share, and nothing
 * outside them includes: the client, its channels, their connections and
 * the calls, and the functions that cross between the files. The client is
 * split by concern, each file one role:
 *
 *   client.c       connections and channels: connecting (evdns, timeouts,
 *                  backoff), the HTTP/2 session of each connection and its
 *                  frames, keepalive, draining; the channels that pick a
 *                  connection for a call; the client and its one run
 *   client_call.c  a call's life: made in one allocation, queued on its
 *                  channel, submitted on a stream, its response read
 *                  (headers, messages, trailers, the status of a reset
 *                  stream), retried when refused, finished and delivered
 *
 * The public interface is client.h; the names here are internal although
 * they carry the module's prefix.
 */
#ifndef SAGAD_GRPC_CLIENT_INT_H
#define SAGAD_GRPC_CLIENT_INT_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "grpc/client.h"
#include "grpc/grpc.h"
#include "util.h"

struct bufferevent;
struct event;
struct event_base;
struct evdns_base;

#define CLIENT_MAX_RETRIES	3		/* transparent retries of refused streams */
#define CLIENT_MAX_HDR_BYTES	(64 * 1024)	/* response headers + trailers */
#define CLIENT_NFIXED_NV	8		/* pseudo-headers and gRPC headers */

enum conn_state {
	CONN_IDLE,		/* no socket; connects when calls need it */
	CONN_CONNECTING,	/* TCP connect under way */
	CONN_HANDSHAKE,		/* connected, waiting for the server's SETTINGS */
	CONN_READY,		/* takes new streams */
	CONN_BACKOFF,		/* failed to connect; waits before the next try */
};

enum call_state {
	CALL_NEW,
	CALL_QUEUED,		/* on its channel's queue */
	CALL_ACTIVE,		/* on a connection's list, with a stream */
	CALL_DONE,		/* on the client's done list, to be delivered */
};

TAILQ_HEAD(call_list, grpc_client_call);
TAILQ_HEAD(conn_list, conn);

struct conn {
	struct grpc_channel	*ch;
	enum conn_state		 state;
	int			 draining;	/* GOAWAY seen or ids spent: no new streams */
	int			 dirty;		/* on the client's dirty list */
	TAILQ_ENTRY(conn)	 dirty_entry;
	TAILQ_ENTRY(conn)	 drain_entry;
	struct bufferevent	*bev;
	nghttp2_session		*h2;
	struct event		*timer;		/* connect timeout, backoff or keepalive */
	struct call_list	 calls;		/* calls attached to a stream here */
	size_t			 nstreams;	/* streams not closed yet, attached or not */
	int			 failures;	/* failed connects in a row */
	int			 ping_out;	/* keepalive PING without ACK */
	int64_t			 last_rx;
};

struct grpc_channel {
	struct grpc_client	*cli;
	TAILQ_ENTRY(grpc_channel) entry;
	char			*host;
	int			 port;
	char			*authority;
	struct tls		*tls;		/* NULL: h2c */
	char			*server_name;	/* TLS: the name to check; NULL: host */
	struct conn		**slots;
	int			 nslots;
	int			 rr;
	struct conn_list	 draining;
	struct call_list	 queue;
	size_t			 nqueued;
	uint64_t		 connects;
	char			 lasterr[SAGAD_ERRLEN];
};

struct grpc_client {
	struct event_base	*base;
	struct grpc_client_opts	 opts;
	char			 ua[64];
	struct event		*run_ev;
	TAILQ_HEAD(, grpc_channel) channels;
	struct conn_list	 dirty;
	struct call_list	 done;
	nghttp2_session_callbacks *cbs;
	nghttp2_option		*h2opt;
	struct evdns_base	*dns;		/* made for the first name */
	uint64_t		 rng;
};

struct grpc_client_call {
	TAILQ_ENTRY(grpc_client_call) entry;	/* queue, conn->calls or done */
	struct grpc_channel	*ch;
	struct conn		*conn;
	enum call_state		 state;
	int32_t			 sid;
	int			 cancelled;
	int			 streaming;
	int			 retries;
	int			 submitted;	/* a stream ever carried it */
	int			 got_headers;
	int			 got_trailers;
	int			 have_status;
	int			 http_status;
	int			 status;
	int			 nmsgs;
	char			*message;	/* percent-decoded grpc-message */
	int64_t			 deadline;	/* monotonic ms, 0: none */
	struct event		*timer;		/* lives inside this allocation */
	grpc_client_cb		 cb;
	grpc_client_msg_cb	 on_msg;
	void			*arg;
	nghttp2_nv		*nv;		/* CLIENT_NFIXED_NV + nmd entries */
	size_t			 nmd;
	const char		*path;
	const uint8_t		*req;		/* prefix and message */
	size_t			 reqlen;
	size_t			 sent;
	char			 tmo[16];
	struct grpc_framer	 framer;
	uint8_t			*resp;
	size_t			 resplen;
	size_t			 hdrbytes;
	struct grpc_metadata	 headers;
	struct grpc_metadata	 trailers;
};

/* client.c: the run */
void	 grpc_client_schedule(struct grpc_client *);

/* client_call.c: a call's life */
void	 grpc_client_call_submit(struct grpc_client_call *, struct conn *);
void	 grpc_client_call_finish(struct grpc_client_call *, int,
	    const char *, ...) __attribute__((format(printf, 3, 4)));
void	 grpc_client_call_deliver(struct grpc_client_call *);
int	 grpc_client_on_header(nghttp2_session *, const nghttp2_frame *,
	    const uint8_t *name, size_t namelen, const uint8_t *value,
	    size_t valuelen, uint8_t flags, void *arg);
int	 grpc_client_on_data(nghttp2_session *, uint8_t flags, int32_t sid,
	    const uint8_t *data, size_t len, void *arg);
int	 grpc_client_on_stream_close(nghttp2_session *, int32_t sid,
	    uint32_t error, void *arg);

#endif
