/*
 * server.c - the gRPC server: HTTP/2 (nghttp2) over libevent bufferevents,
 * the gRPC request and response shapes of grpc/grpc doc/PROTOCOL-HTTP2.md,
 * unary and server-streaming calls dispatched through a method table. It does
 * not log: what goes wrong on the wire goes back to the peer as a gRPC status
 * or an HTTP/2 error, and the process layer sees only its handlers' calls.
 *
 * I/O discipline: nghttp2 is fed from the bufferevent's read callback and
 * asked for output only from conn_flush(), which runs after input was
 * processed or from a per-connection event that replies made pending. Nothing
 * calls nghttp2_session_send() from inside an nghttp2 callback, so handlers
 * may reply synchronously (inside on_frame_recv) or later from the loop.
 *
 * Memory is bounded: request headers by max_header_list, request messages by
 * max_recv_msg and per connection by conn_in_max, queued replies per stream
 * by stream_queue_max (grpc_call_send says EAGAIN above it), and unsent bytes
 * per connection by conn_out_max, above which the connection stops reading.
 * Above all of these, one budget (memory_max) covers what every connection
 * buffers, requests and replies alike, with a quarter of it at most for one
 * connection: past it a new stream or a reply is RESOURCE_EXHAUSTED, so a
 * client that never reads (a zero flow-control window) cannot make the
 * server queue without end. Per-stream state is freed in stream_free() only,
 * reached from nghttp2's on_stream_close or, when a connection dies, from
 * conn_free().
 *
 * Connections are bounded too: in number, in number per client address, in
 * time to finish the HTTP/2 handshake and in time left idle (one sweep a
 * second checks both). At the cap, a connection still in its handshake
 * makes room for a new one. accept() failing for want of descriptors
 * (EMFILE, ENFILE) pauses the listener instead of spinning on it.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#include "grpc/grpc.h"
#include "grpc/h2.h"
#include "grpc/server.h"
#include "util.h"

#define DEF_MAX_STREAMS		1000
#define DEF_MAX_HEADER_LIST	(16 * 1024)
#define DEF_STREAM_QUEUE	(1024 * 1024)
#define DEF_CONN_OUT		(1024 * 1024)
#define DEF_CONN_IN		(64 * 1024 * 1024)
#define DEF_MAX_CONNS		10000
#define STREAM_WINDOW		(1024 * 1024)
#define CONN_WINDOW		(2 * 1024 * 1024)
#define GOAWAY_GRACE_MS		1000	/* final GOAWAY if the PING is not answered */
#define MAX_RESETS_PER_SEC	1000	/* more is a rapid-reset attack: GOAWAY */
#define DEF_MEMORY_MAX		((size_t)1024 * 1024 * 1024)
#define DEF_MAX_PER_IP		1000
#define DEF_STREAMING_PER_IP	256
#define DEF_HANDSHAKE_MS	10000
#define DEF_IDLE_MS		300000
#define PEER_BUCKETS		1024
#define ACCEPT_PAUSE_MS		100	/* after EMFILE/ENFILE with nothing to evict */
#define EVICT_ON_EMFILE		16	/* handshaking connections closed to make room */
#define STREAM_SMALL_MSG	4096	/* always queued on an empty stream */

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
	struct event		 timer;
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
	struct peer		*peers[PEER_BUCKETS];
	struct event		*sweep_ev;	/* timeouts, once a second */
	struct event		*accept_ev;	/* resumes a paused listener */
	int			 accept_paused;
	unsigned long		 ev_count[2];	/* on_event: since the last report */
	int64_t			 ev_last[2];
};

static void	conn_schedule_flush(struct conn *);
static int	conn_flush(struct conn *);
static void	conn_free(struct conn *);
static void	call_fail(struct grpc_call *, int, const char *);

/* --- resource accounting ---------------------------------------------------- */

/* Tells the process layer, at most once a second per kind. */
static void
server_event(struct grpc_server *srv, int kind, const char *what)
{
	int64_t now = util_mono_ms();

	srv->ev_count[kind]++;
	if (srv->opts.on_event == NULL || (srv->ev_last[kind] != 0 &&
	    now - srv->ev_last[kind] < 1000))
		return;
	srv->ev_last[kind] = now;
	srv->opts.on_event(kind, what, srv->ev_count[kind],
	    srv->opts.event_arg);
	srv->ev_count[kind] = 0;
}

/* Would more bytes take the server or this connection past its budget? */
static int
mem_over(const struct conn *conn, size_t more)
{
	const struct grpc_server *srv = conn->srv;
	size_t max = srv->opts.memory_max;

	/*
	 * One connection may hold a quarter of the budget, one client
	 * address half of it: others keep room to be served.
	 */
	return srv->mem + more > max || conn->in_buffered +
	    conn->out_queued + conn->out_acct + more > max / 4 ||
	    (conn->addr != NULL && conn->addr->mem + more > max / 2);
}

static void
mem_add(struct conn *conn, size_t *what, size_t n)
{
	*what += n;
	conn->srv->mem += n;
	if (conn->addr != NULL)
		conn->addr->mem += n;
}

static void
mem_sub(struct conn *conn, size_t *what, size_t n)
{
	*what -= n;
	conn->srv->mem -= n;
	if (conn->addr != NULL)
		conn->addr->mem -= n;
}

/* Counts what waits in the connection's output buffers. */
static void
conn_account_out(struct conn *conn)
{
	size_t now = evbuffer_get_length(bufferevent_get_output(conn->bev)) +
	    evbuffer_get_length(conn->wbuf);

	conn->srv->mem = conn->srv->mem - conn->out_acct + now;
	if (conn->addr != NULL)
		conn->addr->mem = conn->addr->mem - conn->out_acct + now;
	conn->out_acct = now;
}

static unsigned
peer_hash(int family, const uint8_t *addr)
{
	unsigned h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 16777619u;
	return (h ^ (unsigned)family) % PEER_BUCKETS;
}

/* The entry of sa's address, made if need be; NULL for other families. */
static struct peer *
peer_get(struct grpc_server *srv, const struct sockaddr *sa)
{
	uint8_t addr[16];
	struct peer *p;
	unsigned h;

	memset(addr, 0, sizeof(addr));
	if (sa == NULL)
		return NULL;
	if (sa->sa_family == AF_INET)
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr, 16);
	else
		return NULL;
	h = peer_hash(sa->sa_family, addr);
	for (p = srv->peers[h]; p != NULL; p = p->next)
		if (p->family == sa->sa_family &&
		    memcmp(p->addr, addr, 16) == 0)
			return p;
	p = util_xcalloc(1, sizeof(*p));
	p->family = sa->sa_family;
	memcpy(p->addr, addr, 16);
	p->next = srv->peers[h];
	srv->peers[h] = p;
	return p;
}

/* Forgets an address nothing counts any more. */
static void
peer_release(struct grpc_server *srv, struct peer *p)
{
	struct peer **pp;

	if (p == NULL || p->nconns > 0 || p->nstreaming > 0)
		return;
	for (pp = &srv->peers[peer_hash(p->family, p->addr)]; *pp != NULL;
	    pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
}

/* Literals live forever: nghttp2 need not copy them. */
static void
nv_set_static(nghttp2_nv *nv, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	grpc_nv_set(nv, name, namelen, value, valuelen);
	nv->flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
}

#define NV_LIT(nv, n, v) \
	nv_set_static((nv), (n), sizeof(n) - 1, (v), sizeof(v) - 1)

/* grpc-status values without a printf per call; statuses are clamped. */
static const char *
status_str(int status)
{
	static const char *codes[] = { "0", "1", "2", "3", "4", "5", "6",
	    "7", "8", "9", "10", "11", "12", "13", "14", "15", "16" };

	if (status < 0 || status > GRPC_STATUS_MAX)
		status = GRPC_STATUS_UNKNOWN;
	return codes[status];
}

/* --- metadata out --------------------------------------------------------- */

static int
md_add_checked(struct grpc_metadata *md, const char *key, const void *value,
    size_t len)
{
	if (!grpc_md_sendable(key, strlen(key), value, len))
		return GRPC_CALL_EINVAL;
	grpc_md_add(md, key, value, len);
	return GRPC_CALL_OK;
}

/*
 * Appends md to nva; -bin values are base64-encoded into strings the caller
 * frees with nv_free_b64(). Returns the new count.
 */
static size_t
nv_add_md(nghttp2_nv *nva, size_t n, const struct grpc_metadata *md,
    char **b64s, size_t *nb64)
{
	for (size_t i = 0; i < md->n; i++) {
		const struct grpc_md *m = &md->items[i];
		size_t klen = strlen(m->key);

		if (grpc_md_is_bin(m->key, klen)) {
			size_t blen;
			char *b = grpc_b64_encode(m->value, m->len, &blen);
			b64s[(*nb64)++] = b;
			grpc_nv_set(&nva[n++], m->key, klen, b, blen);
		} else
			grpc_nv_set(&nva[n++], m->key, klen, m->value, m->len);
	}
	return n;
}

static void
nv_free_b64(char **b64s, size_t nb64)
{
	for (size_t i = 0; i < nb64; i++)
		free(b64s[i]);
}

/* --- responses ------------------------------------------------------------ */

static ssize_t
data_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
    uint32_t *flags, nghttp2_data_source *src, void *user SAGAD_UNUSED)
{
	struct grpc_call *c = src->ptr;
	struct conn *conn = c->conn;
	size_t have = evbuffer_get_length(c->out);
	size_t n = have < length ? have : length;
	size_t cap = conn->srv->opts.stream_queue_max;

	if (n > 0) {
		evbuffer_remove(c->out, buf, n);
		mem_sub(conn, &conn->out_queued, n);
	}
	if (c->want_writable && have - n <= cap / 2) {
		/* The callback runs from conn_flush, outside nghttp2. */
		c->want_writable = 0;
		c->writable_pending = 1;
		conn->writable_pending = 1;
	}
	if (have - n > 0)
		return (ssize_t)n;
	if (!c->finished) {
		if (n > 0)
			return (ssize_t)n;
		c->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	/* The end: trailers carry the status, so DATA does not end the stream. */
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	{
		const char *code = status_str(c->status);
		char *pmsg = NULL, *b64s[64];
		size_t nb64 = 0, n_nv = 0, max = 2 + c->trls_out.n;
		nghttp2_nv stack_nv[16], *nva;

		if (c->trls_out.n > 64)
			max = 2 + 64;
		nva = max <= 16 ? stack_nv : util_xcalloc(max, sizeof(*nva));
		nv_set_static(&nva[n_nv++], "grpc-status", 11, code,
		    strlen(code));
		if (c->message != NULL && c->message[0] != '\0') {
			pmsg = grpc_percent_encode(c->message, strlen(c->message));
			grpc_nv_set(&nva[n_nv++], "grpc-message", 12, pmsg,
			    strlen(pmsg));
		}
		if (c->trls_out.n <= 64)
			n_nv = nv_add_md(nva, n_nv, &c->trls_out, b64s, &nb64);
		if (nghttp2_submit_trailer(h2, id, nva, n_nv) != 0)
			*flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nv_free_b64(b64s, nb64);
		free(pmsg);
		if (nva != stack_nv)
			free(nva);
	}
	return (ssize_t)n;
}

/* HEADERS that open the response; DATA follows from c->out. */
static int
call_send_headers(struct grpc_call *c)
{
	char *b64s[64];
	size_t nb64 = 0, n = 0, max = 2 + c->hdrs_out.n;
	nghttp2_nv stack_nv[16], *nva;
	nghttp2_data_provider dp;
	int rv;

	if (c->hdrs_out.n > 64)
		return GRPC_CALL_EINVAL;
	nva = max <= 16 ? stack_nv : util_xcalloc(max, sizeof(*nva));
	NV_LIT(&nva[n++], ":status", "200");
	NV_LIT(&nva[n++], "content-type", "application/grpc");
	n = nv_add_md(nva, n, &c->hdrs_out, b64s, &nb64);
	dp.source.ptr = c;
	dp.read_callback = data_read_cb;
	rv = nghttp2_submit_response(c->conn->h2, c->id, nva, n, &dp);
	nv_free_b64(b64s, nb64);
	if (nva != stack_nv)
		free(nva);
	if (rv != 0)
		return GRPC_CALL_EDONE;
	c->headers_sent = 1;
	return GRPC_CALL_OK;
}

/* A response of one HEADERS frame with END_STREAM: Trailers-Only. */
static void
call_trailers_only(struct grpc_call *c, int status, const char *msg)
{
	const char *code = status_str(status);
	char *pmsg = NULL, *b64s[128];
	size_t nb64 = 0, n = 0, max = 4 + c->hdrs_out.n + c->trls_out.n;
	nghttp2_nv stack_nv[16], *nva;

	nva = max <= 16 ? stack_nv : util_xcalloc(max, sizeof(*nva));
	NV_LIT(&nva[n++], ":status", "200");
	NV_LIT(&nva[n++], "content-type", "application/grpc");
	nv_set_static(&nva[n++], "grpc-status", 11, code, strlen(code));
	if (msg != NULL && msg[0] != '\0') {
		pmsg = grpc_percent_encode(msg, strlen(msg));
		grpc_nv_set(&nva[n++], "grpc-message", 12, pmsg, strlen(pmsg));
	}
	if (c->hdrs_out.n + c->trls_out.n <= 128) {
		n = nv_add_md(nva, n, &c->hdrs_out, b64s, &nb64);
		n = nv_add_md(nva, n, &c->trls_out, b64s, &nb64);
	}
	nghttp2_submit_response(c->conn->h2, c->id, nva, n, NULL);
	nv_free_b64(b64s, nb64);
	free(pmsg);
	if (nva != stack_nv)
		free(nva);
	c->headers_sent = 1;
	c->finished = 1;
	conn_schedule_flush(c->conn);
}

/* A plain HTTP error, for requests that are not gRPC at all. */
static void
call_http_error(struct grpc_call *c, const char *status)
{
	nghttp2_nv nva[1];

	grpc_nv_set(&nva[0], ":status", 7, status, strlen(status));
	nghttp2_submit_response(c->conn->h2, c->id, nva, 1, NULL);
	c->headers_sent = 1;
	c->finished = 1;
	c->state = CALL_DONE;
	if (nghttp2_session_get_stream_remote_close(c->conn->h2, c->id) == 0)
		c->rst_after = 1;
	conn_schedule_flush(c->conn);
}

/*
 * Ends a call that the handler does not own (yet or any more) with a status.
 * If the client is still sending, the stream is reset with NO_ERROR once the
 * response is out, as RFC 9113 8.1 allows.
 */
static void
call_fail(struct grpc_call *c, int status, const char *msg)
{
	c->state = CALL_DONE;
	if (c->finished)
		return;
	if (nghttp2_session_get_stream_remote_close(c->conn->h2, c->id) == 0)
		c->rst_after = 1;
	if (!c->headers_sent && evbuffer_get_length(c->out) == 0) {
		call_trailers_only(c, status, msg);
		return;
	}
	c->status = status;
	free(c->message);
	c->message = msg != NULL ? util_xstrdup(msg) : NULL;
	c->finished = 1;
	if (!c->headers_sent)
		call_send_headers(c);
	else if (c->deferred) {
		c->deferred = 0;
		nghttp2_session_resume_data(c->conn->h2, c->id);
	}
	conn_schedule_flush(c->conn);
}

/* --- the call API --------------------------------------------------------- */

const char *
grpc_call_path(const struct grpc_call *c)
{
	return c->path;
}

const ProtobufCMessage *
grpc_call_request(const struct grpc_call *c)
{
	return c->reqmsg;
}

const uint8_t *
grpc_call_request_raw(const struct grpc_call *c, size_t *len)
{
	*len = c->reqlen;
	return c->req != NULL ? c->req : (const uint8_t *)"";
}

const struct grpc_metadata *
grpc_call_metadata(const struct grpc_call *c)
{
	return &c->md;
}

int64_t
grpc_call_deadline(const struct grpc_call *c)
{
	return c->deadline;
}

const char *
grpc_call_peer(const struct grpc_call *c)
{
	return c->conn->peer;
}

struct grpc_server *
grpc_call_server(const struct grpc_call *c)
{
	return c->conn->srv;
}

int
grpc_call_add_header(struct grpc_call *c, const char *key, const void *value,
    size_t len)
{
	if (c->state == CALL_DONE || c->headers_sent)
		return GRPC_CALL_EDONE;
	return md_add_checked(&c->hdrs_out, key, value, len);
}

int
grpc_call_add_trailer(struct grpc_call *c, const char *key, const void *value,
    size_t len)
{
	if (c->state == CALL_DONE || c->finished)
		return GRPC_CALL_EDONE;
	return md_add_checked(&c->trls_out, key, value, len);
}

void
grpc_call_on_cancel(struct grpc_call *c, grpc_call_cb fn, void *arg)
{
	c->cancel_cb = fn;
	c->cancel_arg = arg;
}

void
grpc_call_on_writable(struct grpc_call *c, grpc_call_cb fn, void *arg)
{
	c->writable_cb = fn;
	c->writable_arg = arg;
}

size_t
grpc_call_queued(const struct grpc_call *c)
{
	return evbuffer_get_length(c->out);
}

static int
call_queue_check(struct grpc_call *c, size_t len)
{
	if (c->state != CALL_ACTIVE || c->finished)
		return GRPC_CALL_EDONE;
	if (!c->method->server_streaming && c->nmsgs >= 1)
		return GRPC_CALL_EINVAL;	/* a unary call has one reply */
	if (evbuffer_get_length(c->out) > c->conn->srv->opts.stream_queue_max) {
		c->want_writable = 1;
		return GRPC_CALL_EAGAIN;
	}
	if (len > UINT32_MAX)
		return GRPC_CALL_EINVAL;
	if (mem_over(c->conn, len + 5)) {
		if (!c->method->server_streaming)
			return GRPC_CALL_ENOMEM;
		/*
		 * A stream with nothing queued still gets one small message:
		 * with an empty queue no writable callback would ever come,
		 * and a Health watcher would wait forever. That is one
		 * message per stream, and streams are bounded.
		 */
		if (evbuffer_get_length(c->out) > 0 ||
		    len > STREAM_SMALL_MSG) {
			c->want_writable = 1;
			return GRPC_CALL_EAGAIN;
		}
	}
	return GRPC_CALL_OK;
}

static int
call_queued(struct grpc_call *c, size_t len)
{
	mem_add(c->conn, &c->conn->out_queued, len + 5);
	c->nmsgs++;
	if (!c->headers_sent) {
		if (call_send_headers(c) != GRPC_CALL_OK)
			return GRPC_CALL_EDONE;
	} else if (c->deferred) {
		c->deferred = 0;
		nghttp2_session_resume_data(c->conn->h2, c->id);
	}
	conn_schedule_flush(c->conn);
	return GRPC_CALL_OK;
}

int
grpc_call_send_raw(struct grpc_call *c, const void *data, size_t len)
{
	uint8_t pfx[5];
	int rv;

	if ((rv = call_queue_check(c, len)) != GRPC_CALL_OK)
		return rv;
	grpc_frame_prefix(pfx, len);
	evbuffer_add(c->out, pfx, 5);
	if (len > 0)
		evbuffer_add(c->out, data, len);
	return call_queued(c, len);
}

int
grpc_call_send(struct grpc_call *c, const ProtobufCMessage *msg)
{
	struct evbuffer_iovec v;
	uint8_t stack[512];
	size_t len;
	int rv;

	if (c->method->resp == NULL || msg->descriptor != c->method->resp)
		return GRPC_CALL_EINVAL;
	if (c->state != CALL_ACTIVE || c->finished)
		return GRPC_CALL_EDONE;
	len = protobuf_c_message_get_packed_size(msg);
	if ((rv = call_queue_check(c, len)) != GRPC_CALL_OK)
		return rv;
	if (len <= sizeof(stack) - 5) {
		grpc_frame_prefix(stack, len);
		protobuf_c_message_pack(msg, stack + 5);
		evbuffer_add(c->out, stack, len + 5);
	} else {
		/* Pack straight into the queue's own memory. */
		if (evbuffer_reserve_space(c->out, len + 5, &v, 1) < 1)
			return GRPC_CALL_EINVAL;
		grpc_frame_prefix(v.iov_base, len);
		protobuf_c_message_pack(msg, (uint8_t *)v.iov_base + 5);
		v.iov_len = len + 5;
		evbuffer_commit_space(c->out, &v, 1);
	}
	return call_queued(c, len);
}

int
grpc_call_finish(struct grpc_call *c, int status, const char *message)
{
	if (c->state != CALL_ACTIVE || c->finished)
		return GRPC_CALL_EDONE;
	if (status < 0 || status > GRPC_STATUS_MAX)
		status = GRPC_STATUS_UNKNOWN;
	if (c->has_timer) {
		evtimer_del(&c->timer);
		c->has_timer = 0;
	}
	c->cancel_cb = NULL;
	c->writable_cb = NULL;
	if (!c->headers_sent && evbuffer_get_length(c->out) == 0) {
		c->state = CALL_DONE;
		call_trailers_only(c, status, message);
		return GRPC_CALL_OK;
	}
	c->status = status;
	c->message = message != NULL ? util_xstrdup(message) : NULL;
	c->finished = 1;
	c->state = CALL_DONE;
	if (!c->headers_sent)
		call_send_headers(c);
	else if (c->deferred) {
		c->deferred = 0;
		nghttp2_session_resume_data(c->conn->h2, c->id);
	}
	conn_schedule_flush(c->conn);
	return GRPC_CALL_OK;
}

int
grpc_call_reply(struct grpc_call *c, const ProtobufCMessage *msg)
{
	int rv;

	if ((rv = grpc_call_send(c, msg)) == GRPC_CALL_ENOMEM) {
		grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "the reply would exceed the server's memory budget");
		return rv;
	}
	if (rv != GRPC_CALL_OK)
		return rv;
	return grpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

int
grpc_call_reply_raw(struct grpc_call *c, const void *data, size_t len)
{
	int rv;

	if ((rv = grpc_call_send_raw(c, data, len)) == GRPC_CALL_ENOMEM) {
		grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "the reply would exceed the server's memory budget");
		return rv;
	}
	if (rv != GRPC_CALL_OK)
		return rv;
	return grpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

/* --- the life of a stream ------------------------------------------------- */

/* The handler loses the call: tell it once, and never again. */
static void
call_cancel(struct grpc_call *c)
{
	grpc_call_cb fn = c->cancel_cb;
	int was_active = c->state == CALL_ACTIVE && !c->finished;

	c->state = CALL_DONE;
	c->cancel_cb = NULL;
	c->writable_cb = NULL;
	if (was_active && fn != NULL)
		fn(c, c->cancel_arg);
}

static void
deadline_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct grpc_call *c = arg;
	struct conn *conn = c->conn;

	c->has_timer = 0;
	if (c->state == CALL_DONE)
		return;
	call_cancel(c);
	call_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
	conn_schedule_flush(conn);
}

/* The one place a call's memory goes. */
static void
stream_free(struct grpc_call *c)
{
	struct conn *conn = c->conn;

	call_cancel(c);
	if (c->has_timer)
		evtimer_del(&c->timer);
	TAILQ_REMOVE(&conn->calls, c, entry);
	conn->srv->ncalls--;
	mem_sub(conn, &conn->in_buffered, c->accounted);
	mem_sub(conn, &conn->out_queued, evbuffer_get_length(c->out));
	if (c->streaming && conn->addr != NULL) {
		conn->addr->nstreaming--;
		peer_release(conn->srv, conn->addr);
	}
	grpc_framer_reset(&c->framer);
	grpc_md_clear(&c->md);
	grpc_md_clear(&c->hdrs_out);
	grpc_md_clear(&c->trls_out);
	if (c->reqmsg != NULL)
		protobuf_c_message_free_unpacked(c->reqmsg, NULL);
	evbuffer_free(c->out);
	free(c->req);
	free(c->path);
	free(c->message);
	free(c);
}

static const struct grpc_method *
method_find(struct grpc_server *srv, const char *path)
{
	for (size_t i = 0; i < srv->nmethods; i++)
		if (strcmp(srv->methods[i].path, path) == 0)
			return &srv->methods[i];
	return NULL;
}

/* Headers are complete: is this a gRPC call we serve? */
static void
call_headers_done(struct grpc_call *c)
{
	struct grpc_server *srv = c->conn->srv;
	char buf[256];

	if (c->state != CALL_RECV)
		return;
	if (c->bad_method) {
		call_http_error(c, "405");
		return;
	}
	if (c->bad_ctype) {
		call_http_error(c, "415");
		return;
	}
	if (c->hdr_overflow) {
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "request header list too large");
		return;
	}
	/*
	 * Like grpc-go, a missing "te: trailers" is tolerated unless the
	 * options say otherwise; nghttp2 itself refuses any other te value.
	 */
	if (!c->te_ok && srv->opts.require_te) {
		call_fail(c, GRPC_STATUS_INTERNAL, "missing te: trailers");
		return;
	}
	if (c->bad_timeout) {
		call_fail(c, GRPC_STATUS_INTERNAL, "malformed grpc-timeout");
		return;
	}
	if (c->path == NULL || (c->method = method_find(srv, c->path)) ==
	    NULL) {
		const char *p = c->path != NULL ? c->path : "";
		const char *slash = p[0] == '/' ? strchr(p + 1, '/') : NULL;
		int known = 0;

		/* Name the service if nobody serves it, else the method. */
		if (slash != NULL) {
			size_t slen = (size_t)(slash - p) + 1;
			for (size_t i = 0; i < srv->nmethods && !known; i++)
				known = strncmp(srv->methods[i].path, p,
				    slen) == 0;
		}
		if (slash == NULL || !known)
			snprintf(buf, sizeof(buf), "unknown service %.*s",
			    slash != NULL ? (int)(slash - p - 1) : 200,
			    p[0] == '/' ? p + 1 : p);
		else
			snprintf(buf, sizeof(buf),
			    "unknown method %.200s for service %.*s", slash + 1,
			    (int)(slash - p - 1), p + 1);
		call_fail(c, GRPC_STATUS_UNIMPLEMENTED, buf);
		return;
	}
	if (c->bad_encoding) {
		grpc_md_add(&c->trls_out, "grpc-accept-encoding", "identity",
		    8);
		call_fail(c, GRPC_STATUS_UNIMPLEMENTED,
		    "unsupported grpc-encoding");
		return;
	}
	if (mem_over(c->conn, 0)) {
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "the server's memory budget is spent; try again later");
		return;
	}
	if (c->method->server_streaming && c->conn->addr != NULL) {
		if (c->conn->addr->nstreaming >= srv->opts.max_streaming_per_ip) {
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "too many streaming calls open from this address");
			return;
		}
		c->conn->addr->nstreaming++;
		c->streaming = 1;
	}
	if (c->deadline != 0) {
		int64_t left = c->deadline - util_mono_ms();
		struct timeval tv;

		if (left < 0)
			left = 0;
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		evtimer_assign(&c->timer, srv->base, deadline_cb, c);
		evtimer_add(&c->timer, &tv);
		c->has_timer = 1;
	}
}

/* The request is complete: decode it and hand it to the handler. */
static void
call_dispatch(struct grpc_call *c)
{
	const struct grpc_method *m = c->method;

	if (c->state != CALL_RECV)
		return;
	if (c->framer.hdrlen != 0) {
		call_fail(c, GRPC_STATUS_INTERNAL, "truncated request message");
		return;
	}
	if (c->nmsgs != 1) {
		call_fail(c, GRPC_STATUS_INTERNAL, "missing request message");
		return;
	}
	if (c->deadline != 0 && util_mono_ms() >= c->deadline) {
		call_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED,
		    "deadline exceeded");
		return;
	}
	if (m->req != NULL) {
		c->reqmsg = protobuf_c_message_unpack(m->req, NULL, c->reqlen,
		    c->req != NULL ? c->req : (const uint8_t *)"");
		if (c->reqmsg == NULL) {
			call_fail(c, GRPC_STATUS_INTERNAL,
			    "could not parse request message");
			return;
		}
	}
	c->state = CALL_ACTIVE;
	c->nmsgs = 0;		/* from now on: replies sent */
	m->handler(c, m->arg);
}

static int
framer_msg_cb(void *arg, const uint8_t *msg, size_t len)
{
	struct grpc_call *c = arg;

	if (c->nmsgs++ > 0)
		return GRPC_STATUS_INTERNAL;
	c->req = len > 0 ? util_xcalloc(1, len) : NULL;
	if (len > 0)
		memcpy(c->req, msg, len);
	c->reqlen = len;
	return 0;
}

/* --- nghttp2 callbacks ---------------------------------------------------- */

static ssize_t
send_cb(nghttp2_session *h2 SAGAD_UNUSED, const uint8_t *data, size_t len,
    int flags SAGAD_UNUSED, void *user)
{
	struct conn *conn = user;
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(out) + evbuffer_get_length(conn->wbuf) >=
	    conn->srv->opts.conn_out_max) {
		conn->send_blocked = 1;
		return NGHTTP2_ERR_WOULDBLOCK;
	}
	evbuffer_add(conn->wbuf, data, len);
	return (ssize_t)len;
}

static int
on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = util_xcalloc(1, sizeof(*c));
	c->conn = conn;
	c->id = frame->hd.stream_id;
	c->out = evbuffer_new();
	grpc_framer_init(&c->framer, conn->srv->opts.max_recv_msg);
	TAILQ_INSERT_TAIL(&conn->calls, c, entry);
	conn->srv->ncalls++;
	nghttp2_session_set_stream_user_data(h2, c->id, c);
	return 0;
}

static int
hdr_is(const uint8_t *name, size_t len, const char *lit, size_t litlen)
{
	return len == litlen && memcmp(name, lit, len) == 0;
}

#define HDR_IS(n, l, lit)	hdr_is((n), (l), (lit), sizeof(lit) - 1)

static int
on_header(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags SAGAD_UNUSED, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;	/* request trailers carry nothing we use */
	c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (c == NULL || c->hdr_overflow)
		return 0;
	c->hdr_bytes += namelen + valuelen + 32;
	if (c->hdr_bytes > conn->srv->opts.max_header_list) {
		/*
		 * Answer now and make nghttp2 skip the rest of the block: it
		 * still has to inflate it for HPACK's sake, but no longer
		 * validates and hands over every field, which a block of
		 * references to one large table entry makes very costly.
		 * nghttp2 resets the stream after our answer.
		 */
		c->hdr_overflow = 1;
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "request header list too large");
		c->rst_after = 0;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (namelen > 0 && name[0] == ':') {
		if (HDR_IS(name, namelen, ":method"))
			c->bad_method = !HDR_IS(value, valuelen, "POST");
		else if (HDR_IS(name, namelen, ":path") && c->path == NULL) {
			c->path = util_xcalloc(1, valuelen + 1);
			memcpy(c->path, value, valuelen);
		}
		return 0;
	}
	if (HDR_IS(name, namelen, "content-type")) {
		/* application/grpc, application/grpc+proto, ...;charset */
		c->bad_ctype = !(valuelen >= 16 &&
		    memcmp(value, "application/grpc", 16) == 0 &&
		    (valuelen == 16 || value[16] == '+' || value[16] == ';'));
	} else if (HDR_IS(name, namelen, "te")) {
		c->te_ok = HDR_IS(value, valuelen, "trailers");
	} else if (HDR_IS(name, namelen, "grpc-timeout")) {
		int64_t ms;

		if (grpc_timeout_parse((const char *)value, valuelen, &ms) != 0)
			c->bad_timeout = 1;
		else
			c->deadline = util_mono_ms() + ms;
	} else if (HDR_IS(name, namelen, "grpc-encoding")) {
		c->bad_encoding = !HDR_IS(value, valuelen, "identity");
	} else if (!grpc_md_is_reserved((const char *)name, namelen)) {
		if (grpc_md_is_bin((const char *)name, namelen)) {
			uint8_t *bin;
			size_t blen;

			/* A bad -bin value is dropped, not the call. */
			if (grpc_b64_decode((const char *)value, valuelen,
			    &bin, &blen) == 0) {
				grpc_md_addn(&c->md, (const char *)name,
				    namelen, bin, blen);
				free(bin);
			}
		} else
			grpc_md_addn(&c->md, (const char *)name, namelen,
			    value, valuelen);
	}
	return 0;
}

static int
on_data_chunk_recv(nghttp2_session *h2, uint8_t flags SAGAD_UNUSED, int32_t id,
    const uint8_t *data, size_t len, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;
	size_t before;
	int rv;

	c = nghttp2_session_get_stream_user_data(h2, id);
	if (c == NULL || c->state != CALL_RECV)
		return 0;
	before = grpc_framer_held(&c->framer) + c->reqlen;
	rv = grpc_framer_feed(&c->framer, data, len, framer_msg_cb, c);
	if (rv != 0) {
		const char *why = rv == GRPC_STATUS_RESOURCE_EXHAUSTED ?
		    "request message larger than the limit" :
		    c->nmsgs > 1 ? "too many request messages" :
		    "compressed or malformed request message";
		call_fail(c, rv, why);
		return 0;
	}
	/* Count what the framer and the request now hold. */
	if (grpc_framer_held(&c->framer) + c->reqlen > before) {
		size_t grew = grpc_framer_held(&c->framer) + c->reqlen - before;
		c->accounted += grew;
		mem_add(conn, &conn->in_buffered, grew);
		if (conn->in_buffered > conn->srv->opts.conn_in_max) {
			grpc_framer_reset(&c->framer);
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "too much request data buffered on the connection");
		} else if (mem_over(conn, 0)) {
			grpc_framer_reset(&c->framer);
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "the server's memory budget is spent; try again later");
		}
	}
	return 0;
}

static void
conn_final_goaway(struct conn *conn)
{
	if (conn->goaway >= 2)
		return;
	conn->goaway = 2;
	event_del(&conn->goaway_ev);
	nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE,
	    nghttp2_session_get_last_proc_stream_id(conn->h2),
	    NGHTTP2_NO_ERROR, NULL, 0);
	conn_schedule_flush(conn);
}

static int
on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		c = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (c == NULL)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			call_headers_done(c);
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			call_dispatch(c);
		break;
	case NGHTTP2_DATA:
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			break;
		c = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (c != NULL)
			call_dispatch(c);
		break;
	case NGHTTP2_RST_STREAM:
		/* Opening and resetting streams costs us more than the peer. */
		if (util_mono_ms() - conn->rst_window >= 1000) {
			conn->rst_window = util_mono_ms();
			conn->rst_count = 0;
		}
		if (++conn->rst_count > MAX_RESETS_PER_SEC)
			nghttp2_session_terminate_session(h2,
			    NGHTTP2_ENHANCE_YOUR_CALM);
		break;
	case NGHTTP2_PING:
		if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && conn->goaway == 1)
			conn_final_goaway(conn);
		break;
	case NGHTTP2_SETTINGS:
		/* The preface and the client's first SETTINGS: handshaken. */
		if (!conn->handshaken) {
			conn->handshaken = 1;
			TAILQ_REMOVE(&conn->srv->handshaking, conn, hs_entry);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int
on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame,
    void *user SAGAD_UNUSED)
{
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (c != NULL && c->rst_after &&
	    nghttp2_session_get_stream_remote_close(h2, c->id) == 0) {
		c->rst_after = 0;
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, c->id,
		    NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int
on_stream_close(nghttp2_session *h2, int32_t id,
    uint32_t error_code SAGAD_UNUSED, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	if (conn->dead)
		return 0;
	c = nghttp2_session_get_stream_user_data(h2, id);
	if (c != NULL) {
		nghttp2_session_set_stream_user_data(h2, id, NULL);
		stream_free(c);
	}
	return 0;
}

/* --- connections ---------------------------------------------------------- */

static void
server_check_done(struct grpc_server *srv)
{
	if (srv->shutting_down && srv->nconns == 0 && srv->done_ev != NULL)
		event_active(srv->done_ev, EV_TIMEOUT, 0);
}

static void
conn_free(struct conn *conn)
{
	struct grpc_server *srv = conn->srv;
	struct grpc_call *c;

	/* nghttp2 must not call back into streams we are about to free. */
	conn->dead = 1;
	nghttp2_session_del(conn->h2);
	conn->h2 = NULL;
	while ((c = TAILQ_FIRST(&conn->calls)) != NULL)
		stream_free(c);
	event_del(&conn->flush_ev);
	event_del(&conn->goaway_ev);
	mem_sub(conn, &conn->out_acct, conn->out_acct);
	bufferevent_free(conn->bev);
	evbuffer_free(conn->wbuf);
	TAILQ_REMOVE(&srv->conns, conn, entry);
	if (!conn->handshaken)
		TAILQ_REMOVE(&srv->handshaking, conn, hs_entry);
	if (conn->addr != NULL) {
		conn->addr->nconns--;
		peer_release(srv, conn->addr);
	}
	srv->nconns--;
	free(conn);
	server_check_done(srv);
}

static void
conn_schedule_flush(struct conn *conn)
{
	if (conn->in_io || conn->dead)
		return;
	if (!event_pending(&conn->flush_ev, EV_TIMEOUT, NULL))
		event_active(&conn->flush_ev, EV_TIMEOUT, 0);
}

/*
 * Hands a flush's output to the socket. When nothing waits in the
 * bufferevent, a socket gets it by a direct write: a reply then costs no
 * epoll_ctl to arm and disarm the write event. What the kernel does not take
 * goes to the bufferevent, in order.
 */
static void
conn_push(struct conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(conn->wbuf) == 0)
		return;
	if (conn->fd >= 0 && evbuffer_get_length(out) == 0)
		evbuffer_write(conn->wbuf, conn->fd);
	if (evbuffer_get_length(conn->wbuf) > 0)
		bufferevent_write_buffer(conn->bev, conn->wbuf);
}

/*
 * Sends what nghttp2 has, up to conn_out_max unsent bytes, runs writable
 * callbacks, and closes the connection when HTTP/2 is done with it. Returns
 * -1 if the connection is gone.
 */
static int
conn_flush(struct conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	size_t max = conn->srv->opts.conn_out_max;
	struct grpc_call *c;

	for (;;) {
		conn->in_io = 1;
		conn->send_blocked = 0;
		if (nghttp2_session_send(conn->h2) != 0) {
			conn->in_io = 0;
			conn_free(conn);
			return -1;
		}
		conn->in_io = 0;
		conn_push(conn);
		if (conn->writable_pending) {
			conn->writable_pending = 0;
			TAILQ_FOREACH(c, &conn->calls, entry) {
				if (!c->writable_pending)
					continue;
				c->writable_pending = 0;
				if (c->state == CALL_ACTIVE &&
				    c->writable_cb != NULL)
					c->writable_cb(c, c->writable_arg);
			}
			continue;
		}
		/*
		 * send_cb stopped at conn_out_max and the socket took it all
		 * directly: no write callback will come, so go on now. When
		 * the kernel refuses some, the rest waits in the bufferevent
		 * and its write callback (at half of conn_out_max) resumes.
		 */
		if (conn->send_blocked && evbuffer_get_length(out) == 0)
			continue;
		break;
	}
	conn_account_out(conn);
	if (evbuffer_get_length(out) >= max) {
		if (!conn->read_paused) {
			conn->read_paused = 1;
			bufferevent_disable(conn->bev, EV_READ);
		}
	} else if (conn->read_paused) {
		conn->read_paused = 0;
		bufferevent_enable(conn->bev, EV_READ);
	}
	if (!nghttp2_session_want_read(conn->h2) &&
	    !nghttp2_session_want_write(conn->h2) &&
	    evbuffer_get_length(out) == 0) {
		conn_free(conn);
		return -1;
	}
	if (conn->goaway == 2 && TAILQ_EMPTY(&conn->calls) &&
	    !nghttp2_session_want_write(conn->h2) &&
	    evbuffer_get_length(out) == 0) {
		conn_free(conn);
		return -1;
	}
	return 0;
}

static void
conn_flush_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	conn_flush(arg);
}

static void
conn_goaway_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct conn *conn = arg;

	conn_final_goaway(conn);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[16];
	int n;

	conn->last_active = util_mono_ms();
	while ((n = evbuffer_peek(in, -1, NULL, v, 16)) > 0) {
		size_t total = 0;

		if (n > 16)
			n = 16;
		conn->in_io = 1;
		for (int i = 0; i < n; i++) {
			ssize_t rv = nghttp2_session_mem_recv(conn->h2,
			    v[i].iov_base, v[i].iov_len);
			if (rv < 0) {
				conn->in_io = 0;
				conn_free(conn);
				return;
			}
			total += v[i].iov_len;
		}
		conn->in_io = 0;
		evbuffer_drain(in, total);
	}
	conn_flush(conn);
}

static void
conn_write_cb(struct bufferevent *bev SAGAD_UNUSED, void *arg)
{
	conn_flush(arg);
}

static void
conn_event_cb(struct bufferevent *bev SAGAD_UNUSED, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_free(arg);
}

static void
format_peer(char *buf, size_t len, const struct sockaddr *sa, socklen_t salen)
{
	char host[INET6_ADDRSTRLEN] = "";

	if (sa == NULL || salen == 0) {
		snprintf(buf, len, "unknown");
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)
		    (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "ipv4:%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)
		    (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "ipv6:[%s]:%u", host,
		    ntohs(in6->sin6_port));
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "unix:");
	} else
		snprintf(buf, len, "unknown");
}

static int
conn_new(struct grpc_server *srv, struct bufferevent *bev,
    const struct sockaddr *sa, socklen_t salen, evutil_socket_t fd)
{
	struct conn *conn;
	nghttp2_settings_entry iv[3];

	if (srv->shutting_down || srv->nconns >= (size_t)srv->opts.max_connections) {
		bufferevent_free(bev);
		return -1;
	}
	conn = util_xcalloc(1, sizeof(*conn));
	conn->srv = srv;
	conn->bev = bev;
	conn->fd = fd;
	conn->born = conn->last_active = util_mono_ms();
	TAILQ_INIT(&conn->calls);
	format_peer(conn->peer, sizeof(conn->peer), sa, salen);
	if ((conn->wbuf = evbuffer_new()) == NULL ||
	    nghttp2_session_server_new2(&conn->h2, srv->cbs, conn,
	    srv->h2opt) != 0) {
		if (conn->wbuf != NULL)
			evbuffer_free(conn->wbuf);
		bufferevent_free(bev);
		free(conn);
		return -1;
	}
	event_assign(&conn->flush_ev, srv->base, -1, 0, conn_flush_cb, conn);
	evtimer_assign(&conn->goaway_ev, srv->base, conn_goaway_cb, conn);
	TAILQ_INSERT_TAIL(&srv->conns, conn, entry);
	TAILQ_INSERT_TAIL(&srv->handshaking, conn, hs_entry);
	srv->nconns++;
	if ((conn->addr = peer_get(srv, sa)) != NULL)
		conn->addr->nconns++;
	if (!evtimer_pending(srv->sweep_ev, NULL)) {
		struct timeval tv = { 1, 0 };
		evtimer_add(srv->sweep_ev, &tv);
	}

	iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
	iv[0].value = srv->opts.max_concurrent_streams;
	iv[1].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
	iv[1].value = srv->opts.max_header_list;
	iv[2].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
	iv[2].value = STREAM_WINDOW;
	nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, 3);
	nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
	    CONN_WINDOW);

	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb,
	    conn);
	bufferevent_setwatermark(bev, EV_WRITE, srv->opts.conn_out_max / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	conn_schedule_flush(conn);
	return 0;
}

int
grpc_server_adopt(struct grpc_server *srv, struct bufferevent *bev,
    const struct sockaddr *sa, socklen_t salen)
{
	return conn_new(srv, bev, sa, salen, -1);
}

static void
accept_cb(struct evconnlistener *lev SAGAD_UNUSED, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct grpc_server *srv = arg;
	struct bufferevent *bev;
	struct peer *p;
	int one = 1;

	if ((p = peer_get(srv, sa)) != NULL &&
	    p->nconns >= srv->opts.max_connections_per_ip) {
		close(fd);
		peer_release(srv, p);
		server_event(srv, GRPC_SERVER_EV_REFUSED,
		    "a connection refused: max_connections_per_ip reached");
		return;
	}
	if (srv->nconns >= (size_t)srv->opts.max_connections) {
		/* A connection that has not even said hello makes room. */
		struct conn *old = TAILQ_FIRST(&srv->handshaking);

		if (old == NULL) {
			close(fd);
			peer_release(srv, p);
			server_event(srv, GRPC_SERVER_EV_REFUSED,
			    "a connection refused: max_connections reached");
			return;
		}
		conn_free(old);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		peer_release(srv, p);
		return;
	}
	if (conn_new(srv, bev, sa, (socklen_t)salen, fd) == -1)
		peer_release(srv, p);
}

/*
 * accept() failed. Out of descriptors, accepting again at once would spin
 * (the listening socket stays readable): close a few connections still in
 * their handshake to make room, or pause the listener for a while.
 */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct grpc_server *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };
	struct conn *old;
	char what[160];
	int n = 0;

	if (err != EMFILE && err != ENFILE && err != ENOBUFS &&
	    err != ENOMEM) {
		snprintf(what, sizeof(what), "accept: %s", strerror(err));
		server_event(srv, GRPC_SERVER_EV_ACCEPT, what);
		return;
	}
	while (n < EVICT_ON_EMFILE &&
	    (old = TAILQ_FIRST(&srv->handshaking)) != NULL) {
		conn_free(old);
		n++;
	}
	if (n > 0)
		snprintf(what, sizeof(what), "accept: %s; closed %d "
		    "connections still in their handshake", strerror(err), n);
	else {
		snprintf(what, sizeof(what), "accept: %s; not accepting for "
		    "%d ms", strerror(err), ACCEPT_PAUSE_MS);
		evconnlistener_disable(lev);
		srv->accept_paused = 1;
		evtimer_add(srv->accept_ev, &tv);
	}
	server_event(srv, GRPC_SERVER_EV_ACCEPT, what);
}

static void
accept_resume_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct grpc_server *srv = arg;

	srv->accept_paused = 0;
	if (srv->lev != NULL)
		evconnlistener_enable(srv->lev);
}

/*
 * Once a second while connections exist: close those that did not finish
 * the handshake in time, and send GOAWAY to those idle for too long (no
 * stream open, nothing read); one that ignores it goes after as long again.
 */
static void
sweep_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct grpc_server *srv = arg;
	struct timeval tv = { 1, 0 };
	int64_t now = util_mono_ms(), idle = srv->opts.idle_timeout_ms;
	struct conn *conn, *next;

	while ((conn = TAILQ_FIRST(&srv->handshaking)) != NULL &&
	    now - conn->born >= srv->opts.handshake_timeout_ms)
		conn_free(conn);
	for (conn = TAILQ_FIRST(&srv->conns); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		if (!conn->handshaken)
			continue;
		if (!TAILQ_EMPTY(&conn->calls)) {
			conn->last_active = now;
			continue;
		}
		if (idle <= 0 || now - conn->last_active < idle)
			continue;
		if (conn->goaway < 2)
			conn_final_goaway(conn);
		else if (now - conn->last_active >= 2 * idle)
			conn_free(conn);
	}
	if (srv->nconns > 0)
		evtimer_add(srv->sweep_ev, &tv);
}

/* --- the server ----------------------------------------------------------- */

static void
done_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct grpc_server *srv = arg;
	grpc_server_done_cb cb = srv->done_cb;

	srv->done_cb = NULL;
	if (cb != NULL)
		cb(srv, srv->done_arg);
}

struct grpc_server *
grpc_server_new(struct event_base *base, const struct grpc_server_opts *opts,
    char *err, size_t errlen)
{
	struct grpc_server *srv;

	srv = util_xcalloc(1, sizeof(*srv));
	srv->base = base;
	if (opts != NULL)
		srv->opts = *opts;
	if (srv->opts.max_recv_msg == 0)
		srv->opts.max_recv_msg = GRPC_DEFAULT_MAX_RECV;
	if (srv->opts.max_concurrent_streams == 0)
		srv->opts.max_concurrent_streams = DEF_MAX_STREAMS;
	if (srv->opts.max_header_list == 0)
		srv->opts.max_header_list = DEF_MAX_HEADER_LIST;
	if (srv->opts.stream_queue_max == 0)
		srv->opts.stream_queue_max = DEF_STREAM_QUEUE;
	if (srv->opts.conn_out_max == 0)
		srv->opts.conn_out_max = DEF_CONN_OUT;
	if (srv->opts.conn_in_max == 0)
		srv->opts.conn_in_max = DEF_CONN_IN;
	if (srv->opts.max_connections <= 0)
		srv->opts.max_connections = DEF_MAX_CONNS;
	if (srv->opts.memory_max == 0)
		srv->opts.memory_max = DEF_MEMORY_MAX;
	if (srv->opts.max_connections_per_ip <= 0)
		srv->opts.max_connections_per_ip = DEF_MAX_PER_IP;
	if (srv->opts.max_streaming_per_ip <= 0)
		srv->opts.max_streaming_per_ip = DEF_STREAMING_PER_IP;
	if (srv->opts.handshake_timeout_ms <= 0)
		srv->opts.handshake_timeout_ms = DEF_HANDSHAKE_MS;
	if (srv->opts.idle_timeout_ms == 0)
		srv->opts.idle_timeout_ms = DEF_IDLE_MS;
	TAILQ_INIT(&srv->conns);
	TAILQ_INIT(&srv->handshaking);

	if (nghttp2_session_callbacks_new(&srv->cbs) != 0 ||
	    nghttp2_option_new(&srv->h2opt) != 0) {
		snprintf(err, errlen, "nghttp2: out of memory");
		grpc_server_free(srv);
		return NULL;
	}
	nghttp2_session_callbacks_set_send_callback(srv->cbs, send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(srv->cbs,
	    on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(srv->cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->cbs,
	    on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs,
	    on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(srv->cbs,
	    on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(srv->cbs,
	    on_stream_close);
	/* Our own header blocks are bounded too; nghttp2 enforces it. */
	nghttp2_option_set_max_send_header_block_length(srv->h2opt, 64 * 1024);
	nghttp2_option_set_max_deflate_dynamic_table_size(srv->h2opt, 4096);
	srv->done_ev = event_new(base, -1, 0, done_cb, srv);
	srv->sweep_ev = evtimer_new(base, sweep_cb, srv);
	srv->accept_ev = evtimer_new(base, accept_resume_cb, srv);
	if (srv->done_ev == NULL || srv->sweep_ev == NULL ||
	    srv->accept_ev == NULL) {
		snprintf(err, errlen, "libevent: cannot create an event");
		grpc_server_free(srv);
		return NULL;
	}
	return srv;
}

int
grpc_server_register(struct grpc_server *srv, const struct grpc_method *m,
    char *err, size_t errlen)
{
	if (m->path == NULL || m->path[0] != '/' || m->handler == NULL) {
		snprintf(err, errlen, "method %s: a path \"/pkg.Service/Method\""
		    " and a handler are required", m->path ? m->path : "(null)");
		return -1;
	}
	if (method_find(srv, m->path) != NULL) {
		snprintf(err, errlen, "method %s is registered twice", m->path);
		return -1;
	}
	srv->methods = util_xrealloc(srv->methods,
	    (srv->nmethods + 1) * sizeof(*srv->methods));
	srv->methods[srv->nmethods++] = *m;
	return 0;
}

static int
server_listen_common(struct grpc_server *srv, evutil_socket_t fd, char *err,
    size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (srv->lev != NULL) {
		snprintf(err, errlen, "the server already listens");
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	srv->lev = evconnlistener_new(srv->base, accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024, fd);
	if (srv->lev == NULL) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(srv->lev, accept_error_cb);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			srv->port = ntohs(
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return 0;
}

int
grpc_server_listen(struct grpc_server *srv, const char *host, int port,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char portstr[16];
	int fd, rv, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (host != NULL && (host[0] == '\0' || strcmp(host, "*") == 0))
		host = NULL;
	if ((rv = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s:%d: %s", host ? host : "*", port,
		    gai_strerror(rv));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
	    res->ai_protocol);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 1024) == -1) {
		snprintf(err, errlen, "bind %s:%d: %s", host ? host : "*",
		    port, strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	if (server_listen_common(srv, fd, err, errlen) != 0) {
		close(fd);
		return -1;
	}
	return 0;
}

int
grpc_server_listen_fd(struct grpc_server *srv, int fd, char *err,
    size_t errlen)
{
	/* listen() again is harmless on a listening socket. */
	if (listen(fd, 1024) == -1) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		return -1;
	}
	return server_listen_common(srv, fd, err, errlen);
}

int
grpc_server_port(const struct grpc_server *srv)
{
	return srv->port;
}

size_t
grpc_server_nconns(const struct grpc_server *srv)
{
	return srv->nconns;
}

size_t
grpc_server_ncalls(const struct grpc_server *srv)
{
	return srv->ncalls;
}

size_t
grpc_server_memory(const struct grpc_server *srv)
{
	return srv->mem;
}

void
grpc_server_set_limits(struct grpc_server *srv,
    const struct grpc_server_opts *o)
{
	if (o->memory_max > 0)
		srv->opts.memory_max = o->memory_max;
	if (o->max_connections > 0)
		srv->opts.max_connections = o->max_connections;
	if (o->max_connections_per_ip > 0)
		srv->opts.max_connections_per_ip = o->max_connections_per_ip;
	if (o->max_streaming_per_ip > 0)
		srv->opts.max_streaming_per_ip = o->max_streaming_per_ip;
	if (o->handshake_timeout_ms > 0)
		srv->opts.handshake_timeout_ms = o->handshake_timeout_ms;
	if (o->idle_timeout_ms != 0)
		srv->opts.idle_timeout_ms = o->idle_timeout_ms;
}

struct event_base *
grpc_server_base(const struct grpc_server *srv)
{
	return srv->base;
}

void
grpc_server_shutdown(struct grpc_server *srv, grpc_server_done_cb cb,
    void *arg)
{
	struct conn *conn;
	struct timeval tv = { GOAWAY_GRACE_MS / 1000,
	    (GOAWAY_GRACE_MS % 1000) * 1000 };

	srv->done_cb = cb;
	srv->done_arg = arg;
	if (srv->lev != NULL) {
		evconnlistener_free(srv->lev);
		srv->lev = NULL;
	}
	event_del(srv->accept_ev);
	if (!srv->shutting_down) {
		srv->shutting_down = 1;
		TAILQ_FOREACH(conn, &srv->conns, entry) {
			if (conn->goaway != 0)
				continue;
			conn->goaway = 1;
			nghttp2_submit_shutdown_notice(conn->h2);
			nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL);
			evtimer_add(&conn->goaway_ev, &tv);
			conn_schedule_flush(conn);
		}
	}
	server_check_done(srv);
}

void
grpc_server_free(struct grpc_server *srv)
{
	struct conn *conn;

	if (srv == NULL)
		return;
	if (srv->lev != NULL)
		evconnlistener_free(srv->lev);
	srv->shutting_down = 1;
	srv->done_cb = NULL;
	while ((conn = TAILQ_FIRST(&srv->conns)) != NULL)
		conn_free(conn);
	if (srv->done_ev != NULL)
		event_free(srv->done_ev);
	if (srv->sweep_ev != NULL)
		event_free(srv->sweep_ev);
	if (srv->accept_ev != NULL)
		event_free(srv->accept_ev);
	for (size_t i = 0; i < PEER_BUCKETS; i++)
		while (srv->peers[i] != NULL) {
			struct peer *p = srv->peers[i];

			srv->peers[i] = p->next;
			free(p);
		}
	if (srv->cbs != NULL)
		nghttp2_session_callbacks_del(srv->cbs);
	if (srv->h2opt != NULL)
		nghttp2_option_del(srv->h2opt);
	free(srv->methods);
	free(srv);
}
