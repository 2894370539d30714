/*
 * server_int.h - what the files of the gRPC server share, and nothing
 * outside them includes: the server, its connections, its calls and the
 * per-address counts, and the functions that cross between the files. The
 * server is split by concern, each file one role:
 *
 *   server.c         connections and HTTP/2: the nghttp2 session of each
 *                    connection, its frames, flushing its output; the
 *                    server object, its methods and its listener
 *   server_call.c    a call's life: its request arriving (headers, data),
 *                    its checks and dispatch to the handler, the grpc_call_*
 *                    API, its response on the wire and its one free path
 *   server_limits.c  the resource accounting and limits: the memory budget,
 *                    the counts per client address, accepting or refusing a
 *                    connection (the caps, backoff on EMFILE), and the
 *                    sweep of handshake and idle timeouts
 *
 * The public interface is server.h; the names here are internal although
 * they carry the module's prefix.
 */
#ifndef SAGAD_GRPC_SERVER_INT_H
#define SAGAD_GRPC_SERVER_INT_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#include "grpc/grpc.h"
#include "grpc/server.h"

struct bufferevent;

#define GRPC_SERVER_PEER_BUCKETS	1024	/* hash of client addresses */

enum call_state {
	CALL_RECV,		/* reading the request */
	CALL_ACTIVE,		/* the handler owns it */
	CALL_DONE,		/* finished, failed or cancelled */
};

struct conn;

/* Connections and streaming calls of one client address. */
struct peer {
	struct peer		*next;
	int			 family;
	uint8_t			 addr[16];
	int			 nconns;
	int			 nstreaming;
	size_t			 mem;		/* its connections' share of srv->mem */
};

struct grpc_call {
	TAILQ_ENTRY(grpc_call)	 entry;
	struct conn		*conn;
	int32_t			 id;
	enum call_state		 state;
	const struct grpc_method *method;
	char			*path;
	size_t			 hdr_bytes;
	unsigned		 bad_method:1, bad_ctype:1, te_ok:1,
				 hdr_overflow:1, bad_timeout:1, bad_encoding:1,
				 headers_sent:1, finished:1, deferred:1,
				 want_writable:1, writable_pending:1,
				 rst_after:1, has_timer:1, streaming:1;
	int64_t			 deadline;
	struct grpc_metadata	 md;
	struct grpc_framer	 framer;
	uint8_t			*req;
	size_t			 reqlen;
	int			 nmsgs;
	size_t			 accounted;	/* bytes counted in conn->in_buffered */
	ProtobufCMessage	*reqmsg;
	struct evbuffer		*out;
	int			 status;
	char			*message;
	struct grpc_metadata	 hdrs_out;
	struct grpc_metadata	 trls_out;
	grpc_call_cb		 cancel_cb;
	void			*cancel_arg;
	grpc_call_cb		 writable_cb;
	void			*writable_arg;
	grpc_call_done_cb	 done_cb;
	void			*done_arg;
	struct event		 timer;
	char			*caller;	/* grpc_call_set_caller */
	/* An in-process call (server_local.c): conn is NULL. */
	struct grpc_server	*lsrv;
	const struct grpc_local_ops *local;
	void			*local_arg;
	char			*lpeer;
};

struct conn {
	TAILQ_ENTRY(conn)	 entry;
	struct grpc_server	*srv;
	struct bufferevent	*bev;
	struct evbuffer		*wbuf;		/* nghttp2's output of this flush */
	evutil_socket_t		 fd;		/* for direct writes; -1 none */
	nghttp2_session		*h2;
	TAILQ_HEAD(, grpc_call)	 calls;
	char			 peer[64];
	char			*subject;	/* TLS: the client's certificate's; or NULL */
	int			 tls;		/* the bufferevent is TLS */
	size_t			 in_buffered;
	int			 in_io;		/* inside nghttp2: do not send or free */
	int			 read_paused;
	int			 goaway;	/* 0 none, 1 notice sent, 2 final sent */
	int			 writable_pending;
	int			 dead;
	int64_t			 rst_window;	/* start of this second, mono ms */
	int			 rst_count;	/* client resets in it */
	int			 handshaken;	/* the client's SETTINGS arrived */
	int			 send_blocked;	/* send_cb said WOULDBLOCK */
	int64_t			 born;		/* accepted, mono ms */
	int64_t			 last_active;	/* last read or open stream */
	size_t			 out_queued;	/* reply bytes in its calls' queues */
	size_t			 out_acct;	/* unsent bytes counted in srv->mem */
	struct peer		*addr;		/* NULL: not counted per address */
	TAILQ_ENTRY(conn)	 hs_entry;	/* in srv->handshaking until handshaken */
	struct event		 flush_ev;
	struct event		 goaway_ev;
};

struct grpc_server {
	struct event_base	*base;
	struct grpc_server_opts	 opts;
	struct grpc_method	*methods;
	size_t			 nmethods;
	struct evconnlistener	*lev;
	int			 port;
	struct tls		*tls;		/* NULL: h2c */
	TAILQ_HEAD(, conn)	 conns;
	TAILQ_HEAD(, conn)	 handshaking;	/* oldest first */
	size_t			 nconns;
	size_t			 ncalls;
	int			 shutting_down;
	grpc_server_done_cb	 done_cb;
	void			*done_arg;
	struct event		*done_ev;
	nghttp2_session_callbacks *cbs;
	nghttp2_option		*h2opt;
	size_t			 mem;		/* bytes against opts.memory_max */
	struct peer		*peers[GRPC_SERVER_PEER_BUCKETS];
	struct event		*sweep_ev;	/* timeouts, once a second */
	struct event		*accept_ev;	/* resumes a paused listener */
	int			 accept_paused;
	unsigned long		 ev_count[3];	/* on_event: since the last report */
	int64_t			 ev_last[3];
};

/* server.c: connections */
int	 grpc_server_conn_new(struct grpc_server *, struct bufferevent *,
	    const struct sockaddr *, socklen_t, evutil_socket_t);
void	 grpc_server_conn_free(struct conn *);
void	 grpc_server_conn_schedule_flush(struct conn *);
void	 grpc_server_conn_final_goaway(struct conn *);

/* server_call.c: a call's life */
const struct grpc_method *grpc_server_method_find(struct grpc_server *,
	    const char *path);
void	 grpc_server_call_headers_done(struct grpc_call *);
void	 grpc_server_call_dispatch(struct grpc_call *);
void	 grpc_server_stream_free(struct grpc_call *);
int	 grpc_server_on_begin_headers(nghttp2_session *,
	    const nghttp2_frame *, void *user);
int	 grpc_server_on_header(nghttp2_session *, const nghttp2_frame *,
	    const uint8_t *name, size_t namelen, const uint8_t *value,
	    size_t valuelen, uint8_t flags, void *user);
int	 grpc_server_on_data_chunk_recv(nghttp2_session *, uint8_t flags,
	    int32_t id, const uint8_t *data, size_t len, void *user);

/* server_local.c: in-process calls */
int	 grpc_server_local_send(struct grpc_call *, const ProtobufCMessage *);
int	 grpc_server_local_finish(struct grpc_call *, int status,
	    const char *message);

/* server_limits.c: accounting, admission, timeouts */
void	 grpc_server_event(struct grpc_server *, int kind, const char *what);
int	 grpc_server_mem_over(const struct conn *, size_t more);
void	 grpc_server_mem_add(struct conn *, size_t *what, size_t n);
void	 grpc_server_mem_sub(struct conn *, size_t *what, size_t n);
void	 grpc_server_conn_account_out(struct conn *);
struct peer *grpc_server_peer_get(struct grpc_server *,
	    const struct sockaddr *);
void	 grpc_server_peer_release(struct grpc_server *, struct peer *);
void	 grpc_server_accept_cb(struct evconnlistener *, evutil_socket_t,
	    struct sockaddr *, int salen, void *arg);
void	 grpc_server_accept_error_cb(struct evconnlistener *, void *arg);
void	 grpc_server_accept_resume_cb(evutil_socket_t, short, void *arg);
void	 grpc_server_sweep_cb(evutil_socket_t, short, void *arg);

/* The call's done callback (grpc_call_on_done), once: its final status. */
void	grpc_server_call_done(struct grpc_call *, int status);

#endif
