/*
 * client.c - the gRPC client on libevent and nghttp2 (protocol: grpc/grpc
 * doc/PROTOCOL-HTTP2.md). A client holds channels, one per target; a channel
 * holds a few HTTP/2 connections (slots) and a bounded queue of calls waiting
 * for a stream. A call is one allocation holding its path, its framed
 * request and its metadata, plus its deadline timer.
 *
 * The loop of control: API calls and nghttp2 callbacks only change state and
 * ask for a "run" (one deferred event per client). The run dispatches queued
 * calls onto ready connections, serializes what nghttp2 wants to send (once
 * per loop iteration for all the calls started meanwhile, so sends are
 * batched and nghttp2_session_send is never reached from inside an nghttp2
 * callback), then delivers completed calls to their callbacks and frees
 * them: call_deliver() is the only place a call is freed, and no user
 * callback of a final status runs inside nghttp2.
 *
 * Host names resolve asynchronously through libevent's evdns (the system's
 * resolv.conf and hosts file, read once when the first name is looked up),
 * never with a getaddrinfo that would stop the loop: a slow DNS server
 * delays the connections that need it and nothing else. Each (re)connect
 * looks the name up again, so a service that moves is found. What it is
 * not: no TLS yet (the transport is a bufferevent so that a TLS one can
 * slot in), no compression, no client streaming.
 */
#include "autoconf.h"

#include <sys/queue.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "grpc/client.h"
#include "grpc/h2.h"
#include "util.h"

#define CLIENT_MAX_RETRIES	3		/* transparent retries of refused streams */
#define CLIENT_MAX_HDR_BYTES	(64 * 1024)	/* response headers + trailers */
#define CLIENT_STREAM_WINDOW	(1024 * 1024)
#define CLIENT_CONN_WINDOW	(16 * 1024 * 1024)
#define CLIENT_LAST_STREAM_ID	(INT32_C(0x7fffffff) - 1024)
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

static void	client_schedule(struct grpc_client *);
static void	client_run(evutil_socket_t, short, void *);
static void	channel_dispatch(struct grpc_channel *);
static void	conn_connect(struct conn *);
static void	conn_timer(evutil_socket_t, short, void *);
static void	conn_fail(struct conn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	conn_close(struct conn *);
static void	conn_retire(struct conn *);
static void	call_finish(struct grpc_client_call *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static void	call_abort(struct grpc_client_call *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static void	call_deliver(struct grpc_client_call *);

static double
client_random(struct grpc_client *cli)
{
	/* xorshift64*: jitter only needs to differ between processes. */
	cli->rng ^= cli->rng >> 12;
	cli->rng ^= cli->rng << 25;
	cli->rng ^= cli->rng >> 27;
	return (double)((cli->rng * UINT64_C(2685821657736338717)) >> 11) /
	    (double)(UINT64_C(1) << 53);
}

int
grpc_client_backoff_ms(int failures, int min_ms, int max_ms, double rnd)
{
	double	d = min_ms;

	for (int i = 1; i < failures && d < max_ms; i++)
		d *= 1.6;
	if (d > max_ms)
		d = max_ms;
	d *= 0.8 + 0.4 * rnd;
	return d < 1 ? 1 : (int)d;
}

/* --- status mapping (PROTOCOL-HTTP2.md) ------------------------------------ */

static int
status_from_http(int http)
{
	switch (http) {
	case 400:	return GRPC_STATUS_INTERNAL;
	case 401:	return GRPC_STATUS_UNAUTHENTICATED;
	case 403:	return GRPC_STATUS_PERMISSION_DENIED;
	case 404:	return GRPC_STATUS_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:	return GRPC_STATUS_UNAVAILABLE;
	default:	return GRPC_STATUS_UNKNOWN;
	}
}

static int
status_from_rst(uint32_t code)
{
	switch (code) {
	case NGHTTP2_REFUSED_STREAM:	return GRPC_STATUS_UNAVAILABLE;
	case NGHTTP2_CANCEL:		return GRPC_STATUS_CANCELLED;
	case NGHTTP2_ENHANCE_YOUR_CALM:	return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case NGHTTP2_INADEQUATE_SECURITY: return GRPC_STATUS_PERMISSION_DENIED;
	default:			return GRPC_STATUS_INTERNAL;
	}
}

/* --- calls ------------------------------------------------------------------ */

static void
call_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct grpc_client_call *call = arg;

	(void)fd;
	(void)ev;
	call_abort(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
}

static struct grpc_client_call *
call_new(struct grpc_channel *ch, const char *path, const uint8_t *req,
    size_t len, const struct grpc_metadata *md, int64_t timeout_ms,
    grpc_client_msg_cb on_msg, grpc_client_cb cb, void *arg)
{
	struct grpc_client	*cli = ch->cli;
	struct grpc_client_call	*call;
	const char		*bad = NULL;
	size_t			 nmd = md != NULL ? md->n : 0;
	size_t			 evsz, evoff, nvoff, pathoff, reqoff, mdoff, total;
	size_t			 pathlen = strlen(path);
	char			*p;

	/* One allocation: the call, its timer, nv, path, request, metadata. */
	evsz = event_get_struct_event_size();
	evoff = (sizeof(*call) + 15) & ~(size_t)15;
	nvoff = (evoff + evsz + 15) & ~(size_t)15;
	pathoff = nvoff + (CLIENT_NFIXED_NV + nmd) * sizeof(nghttp2_nv);
	reqoff = pathoff + pathlen + 1;
	mdoff = reqoff + 5 + len;
	total = mdoff;
	for (size_t i = 0; i < nmd; i++) {
		const struct grpc_md *m = &md->items[i];
		size_t kl = strlen(m->key);
		total += kl + 1;
		total += grpc_md_is_bin(m->key, kl) ? (m->len + 2) / 3 * 4 + 1 :
		    m->len + 1;
	}
	call = util_xcalloc(1, total);
	call->ch = ch;
	call->state = CALL_NEW;
	call->cb = cb;
	call->on_msg = on_msg;
	call->streaming = on_msg != NULL;
	call->arg = arg;
	call->timer = (struct event *)(void *)((char *)call + evoff);
	call->nv = (nghttp2_nv *)(void *)((char *)call + nvoff);
	p = (char *)call + pathoff;
	memcpy(p, path, pathlen + 1);
	call->path = p;
	p = (char *)call + reqoff;
	grpc_frame_prefix((uint8_t *)p, len);
	if (len > 0)
		memcpy(p + 5, req, len);
	call->req = (const uint8_t *)p;
	call->reqlen = 5 + len;
	grpc_framer_init(&call->framer, cli->opts.max_recv);
	event_assign(call->timer, cli->base, -1, 0, call_timeout, call);

	p = (char *)call + mdoff;
	for (size_t i = 0; i < nmd; i++) {
		const struct grpc_md *m = &md->items[i];
		nghttp2_nv *nv = &call->nv[CLIENT_NFIXED_NV + call->nmd];
		size_t kl = strlen(m->key), vl;
		char *k = p;

		if (!grpc_md_sendable(m->key, kl, m->value, m->len)) {
			bad = m->key;
			break;
		}
		memcpy(k, m->key, kl + 1);
		p += kl + 1;
		if (grpc_md_is_bin(m->key, kl)) {
			/* Unpadded base64, as the spec asks senders to emit. */
			char *b = grpc_b64_encode(m->value, m->len, &vl);
			while (vl > 0 && b[vl - 1] == '=')
				vl--;
			memcpy(p, b, vl);
			free(b);
		} else {
			vl = m->len;
			memcpy(p, m->value, vl);
		}
		grpc_nv_set(nv, k, kl, p, vl);
		p += vl + 1;
		call->nmd++;
	}

	if (timeout_ms > 0) {
		struct timeval tv;
		if (timeout_ms > GRPC_MAX_TIMEOUT_MS)
			timeout_ms = GRPC_MAX_TIMEOUT_MS;
		call->deadline = util_mono_ms() + timeout_ms;
		tv.tv_sec = (time_t)(timeout_ms / 1000);
		tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
		evtimer_add(call->timer, &tv);
	}
	if (bad != NULL)
		call_finish(call, GRPC_STATUS_INTERNAL,
		    "metadata %s: reserved or invalid key, or a text value "
		    "that is not printable ASCII", bad);
	return call;
}

/* Puts a new or refused call where it can get a stream. */
static void
call_enqueue(struct grpc_client_call *call, int front)
{
	struct grpc_channel *ch = call->ch;

	if (!front && ch->nqueued >= ch->cli->opts.max_queued) {
		call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "%s: %zu calls already wait for a stream", ch->authority,
		    ch->nqueued);
		return;
	}
	call->state = CALL_QUEUED;
	if (front)
		TAILQ_INSERT_HEAD(&ch->queue, call, entry);
	else
		TAILQ_INSERT_TAIL(&ch->queue, call, entry);
	ch->nqueued++;
	client_schedule(ch->cli);
}

struct grpc_client_call *
grpc_client_call_start(struct grpc_channel *ch, const char *path,
    const uint8_t *req, size_t len, const struct grpc_metadata *md,
    int64_t timeout_ms, grpc_client_cb cb, void *arg)
{
	struct grpc_client_call *call;

	call = call_new(ch, path, req, len, md, timeout_ms, NULL, cb, arg);
	if (call->state == CALL_NEW)
		call_enqueue(call, 0);
	return call;
}

struct grpc_client_call *
grpc_client_stream_start(struct grpc_channel *ch, const char *path,
    const uint8_t *req, size_t len, const struct grpc_metadata *md,
    int64_t timeout_ms, grpc_client_msg_cb on_msg, grpc_client_cb cb,
    void *arg)
{
	struct grpc_client_call *call;

	call = call_new(ch, path, req, len, md, timeout_ms, on_msg, cb, arg);
	if (call->state == CALL_NEW)
		call_enqueue(call, 0);
	return call;
}

void
grpc_client_call_cancel(struct grpc_client_call *call)
{
	call->cancelled = 1;
	if (call->state != CALL_DONE)
		call_abort(call, GRPC_STATUS_CANCELLED, "cancelled");
}

/*
 * Ends a call that is on no list: it waits on the done list for the run to
 * deliver it. A message given here replaces the server's.
 */
static void
call_finish(struct grpc_client_call *call, int status, const char *fmt, ...)
{
	struct grpc_client *cli = call->ch->cli;
	va_list	ap;
	char	buf[SAGAD_ERRLEN];

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		free(call->message);
		call->message = util_xstrdup(buf);
	}
	call->status = status;
	call->state = CALL_DONE;
	evtimer_del(call->timer);
	TAILQ_INSERT_TAIL(&cli->done, call, entry);
	client_schedule(cli);
}

/*
 * Ends a call on our side: deadline, cancel, oversized response. A stream it
 * has gets RST_STREAM CANCEL and forgets the call; nghttp2 closes it later.
 */
static void
call_abort(struct grpc_client_call *call, int status, const char *fmt, ...)
{
	struct conn	*c = call->conn;
	va_list		 ap;
	char		 buf[SAGAD_ERRLEN];

	switch (call->state) {
	case CALL_DONE:
		return;
	case CALL_QUEUED:
		TAILQ_REMOVE(&call->ch->queue, call, entry);
		call->ch->nqueued--;
		break;
	case CALL_ACTIVE:
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->sid,
		    NGHTTP2_CANCEL);
		nghttp2_session_set_stream_user_data(c->h2, call->sid, NULL);
		TAILQ_REMOVE(&c->calls, call, entry);
		call->conn = NULL;
		if (!c->dirty) {
			c->dirty = 1;
			TAILQ_INSERT_TAIL(&c->ch->cli->dirty, c, dirty_entry);
		}
		break;
	case CALL_NEW:
		break;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	call_finish(call, status, "%s", buf);
}

/* The only place a call is freed. */
static void
call_deliver(struct grpc_client_call *call)
{
	struct grpc_client_result r;

	if (!call->cancelled && call->cb != NULL) {
		r.status = call->status;
		r.message = call->message != NULL ? call->message : "";
		r.data = call->resp;
		r.len = call->resplen;
		r.headers = &call->headers;
		r.trailers = &call->trailers;
		call->cb(call->arg, &r);
	}
	evtimer_del(call->timer);
	grpc_framer_reset(&call->framer);
	grpc_md_clear(&call->headers);
	grpc_md_clear(&call->trailers);
	free(call->resp);
	free(call->message);
	free(call);
}

/* Clears what a refused attempt left, so a retry starts clean. */
static void
call_reset_response(struct grpc_client_call *call)
{
	call->got_headers = call->got_trailers = call->have_status = 0;
	call->http_status = call->nmsgs = 0;
	call->sent = call->hdrbytes = 0;
	free(call->message);
	call->message = NULL;
	free(call->resp);
	call->resp = NULL;
	call->resplen = 0;
	grpc_framer_reset(&call->framer);
	grpc_md_clear(&call->headers);
	grpc_md_clear(&call->trailers);
}

static ssize_t
call_read_request(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct grpc_client_call *call;
	size_t	n;

	(void)src;
	(void)arg;
	/* A call that went away (deadline, cancel) is looked up, not kept. */
	call = nghttp2_session_get_stream_user_data(h2, sid);
	if (call == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = call->reqlen - call->sent;
	if (n > len)
		n = len;
	memcpy(buf, call->req + call->sent, n);
	call->sent += n;
	if (call->sent == call->reqlen)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static void
call_submit(struct grpc_client_call *call, struct conn *c)
{
	struct grpc_channel	*ch = call->ch;
	nghttp2_data_provider	 prd;
	nghttp2_nv		*nv = call->nv;
	size_t			 n = 0;
	int32_t			 sid;

	if (call->deadline != 0) {
		int64_t left = call->deadline - util_mono_ms();
		if (left <= 0) {
			call_finish(call, GRPC_STATUS_DEADLINE_EXCEEDED,
			    "deadline exceeded while waiting for a stream");
			return;
		}
		grpc_timeout_format(left, call->tmo, sizeof(call->tmo));
	}
	grpc_nv_set(&nv[n++], ":method", 7, "POST", 4);
	grpc_nv_set(&nv[n++], ":scheme", 7, "http", 4);
	grpc_nv_set(&nv[n++], ":path", 5, call->path, strlen(call->path));
	grpc_nv_set(&nv[n++], ":authority", 10, ch->authority,
	    strlen(ch->authority));
	grpc_nv_set(&nv[n++], "te", 2, "trailers", 8);
	grpc_nv_set(&nv[n++], "content-type", 12, "application/grpc", 16);
	grpc_nv_set(&nv[n++], "user-agent", 10, ch->cli->ua, strlen(ch->cli->ua));
	if (call->deadline != 0)
		grpc_nv_set(&nv[n++], "grpc-timeout", 12, call->tmo,
		    strlen(call->tmo));
	/* Custom metadata sits right after the fixed slots. */
	if (n < CLIENT_NFIXED_NV)
		memmove(&nv[n], &nv[CLIENT_NFIXED_NV],
		    call->nmd * sizeof(*nv));
	n += call->nmd;

	memset(&prd, 0, sizeof(prd));
	prd.read_callback = call_read_request;
	sid = nghttp2_submit_request(c->h2, NULL, nv, n, &prd, call);
	/* Put the metadata back where the next attempt expects it. */
	if (n - call->nmd < CLIENT_NFIXED_NV)
		memmove(&nv[CLIENT_NFIXED_NV], &nv[n - call->nmd],
		    call->nmd * sizeof(*nv));
	if (sid < 0) {
		call_finish(call, GRPC_STATUS_INTERNAL, "%s: submit: %s",
		    ch->authority, nghttp2_strerror(sid));
		return;
	}
	call->state = CALL_ACTIVE;
	call->conn = c;
	call->sid = sid;
	TAILQ_INSERT_TAIL(&c->calls, call, entry);
	c->nstreams++;
	if (!c->dirty) {
		c->dirty = 1;
		TAILQ_INSERT_TAIL(&ch->cli->dirty, c, dirty_entry);
	}
}

/* --- nghttp2 callbacks -------------------------------------------------------- */

static int
h2_on_header(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags, void *arg)
{
	struct grpc_client_call	*call;
	struct grpc_metadata	*md;
	const char		*k = (const char *)name;
	int			 trailers;

	(void)flags;
	(void)arg;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL || call->state != CALL_ACTIVE)
		return 0;
	call->hdrbytes += namelen + valuelen + 32;
	if (call->hdrbytes > CLIENT_MAX_HDR_BYTES) {
		call_abort(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "response metadata larger than %d bytes",
		    CLIENT_MAX_HDR_BYTES);
		return 0;
	}
	trailers = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
	if (namelen > 0 && k[0] == ':') {
		if (!trailers && namelen == 7 && memcmp(k, ":status", 7) == 0) {
			call->http_status = 0;
			for (size_t i = 0; i < valuelen && i < 3; i++)
				call->http_status = call->http_status * 10 +
				    (value[i] - '0');
		}
		return 0;
	}
	if (namelen == 11 && memcmp(k, "grpc-status", 11) == 0) {
		int s = 0;
		for (size_t i = 0; i < valuelen; i++) {
			if (value[i] < '0' || value[i] > '9' || s > 1000) {
				s = GRPC_STATUS_UNKNOWN;
				break;
			}
			s = s * 10 + (value[i] - '0');
		}
		/* Codes we do not know are UNKNOWN, as the spec says. */
		call->status = valuelen == 0 || s > GRPC_STATUS_MAX ?
		    GRPC_STATUS_UNKNOWN : s;
		call->have_status = 1;
		return 0;
	}
	if (namelen == 12 && memcmp(k, "grpc-message", 12) == 0) {
		free(call->message);
		call->message = grpc_percent_decode((const char *)value,
		    valuelen);
		return 0;
	}
	if (!trailers && namelen == 12 && memcmp(k, "content-type", 12) == 0)
		return 0;
	md = trailers ? &call->trailers : &call->headers;
	if (grpc_md_is_bin(k, namelen)) {
		uint8_t	*bin;
		size_t	 binlen;
		if (grpc_b64_decode((const char *)value, valuelen, &bin,
		    &binlen) == 0) {
			grpc_md_addn(md, k, namelen, bin, binlen);
			free(bin);
			return 0;
		}
	}
	grpc_md_addn(md, k, namelen, value, valuelen);
	return 0;
}

static int
call_on_message(void *arg, const uint8_t *msg, size_t len)
{
	struct grpc_client_call *call = arg;

	if (call->state != CALL_ACTIVE)
		return 1;
	if (call->streaming) {
		call->on_msg(call->arg, msg, len);
		/* The callback may have cancelled the call. */
		return call->state != CALL_ACTIVE;
	}
	if (call->nmsgs++ > 0) {
		call_abort(call, GRPC_STATUS_INTERNAL,
		    "more than one response message to a unary call");
		return 1;
	}
	call->resp = util_xcalloc(1, len + 1);
	if (len > 0)
		memcpy(call->resp, msg, len);
	call->resplen = len;
	return 0;
}

static int
h2_on_data(nghttp2_session *h2, uint8_t flags, int32_t sid,
    const uint8_t *data, size_t len, void *arg)
{
	struct grpc_client_call *call;
	int	rc;

	(void)flags;
	(void)arg;
	call = nghttp2_session_get_stream_user_data(h2, sid);
	if (call == NULL || call->state != CALL_ACTIVE)
		return 0;
	/* Not a gRPC response (an HTTP error page): its status tells. */
	if (call->http_status != 200)
		return 0;
	rc = grpc_framer_feed(&call->framer, data, len, call_on_message, call);
	if (rc == 0 || call->state != CALL_ACTIVE)
		return 0;
	if (rc == GRPC_STATUS_RESOURCE_EXHAUSTED)
		call_abort(call, rc, "received message larger than max "
		    "(%zu vs. %zu)", call->framer.msglen, call->framer.max);
	else
		call_abort(call, GRPC_STATUS_INTERNAL, "compressed message "
		    "but no grpc-encoding was negotiated");
	return 0;
}

static void
conn_ready(struct conn *c)
{
	struct grpc_client *cli = c->ch->cli;

	c->state = CONN_READY;
	c->failures = 0;
	c->ch->connects++;
	evtimer_del(c->timer);
	if (cli->opts.keepalive_ms > 0) {
		struct timeval tv = { cli->opts.keepalive_ms / 1000,
		    (cli->opts.keepalive_ms % 1000) * 1000 };
		evtimer_add(c->timer, &tv);
	}
	client_schedule(cli);
}

static int
h2_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct conn		*c = arg;
	struct grpc_client_call	*call;

	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
		    c->state == CONN_HANDSHAKE)
			conn_ready(c);
		break;
	case NGHTTP2_GOAWAY:
		/*
		 * nghttp2 closes the streams above last_stream_id with
		 * REFUSED_STREAM, which retries them elsewhere.
		 */
		conn_retire(c);
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_out = 0;
		break;
	case NGHTTP2_HEADERS:
		call = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (call == NULL || call->state != CALL_ACTIVE)
			break;
		if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
			call->got_headers = 1;
			/* Trailers-Only: its metadata is trailing metadata. */
			if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
				struct grpc_metadata t = call->trailers;
				call->trailers = call->headers;
				call->headers = t;
				call->got_trailers = 1;
			}
		} else if (frame->headers.cat == NGHTTP2_HCAT_HEADERS)
			call->got_trailers = 1;
		break;
	}
	return 0;
}

static int
h2_on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error,
    void *arg)
{
	struct conn		*c = arg;
	struct grpc_channel	*ch = c->ch;
	struct grpc_client_call	*call;

	c->nstreams--;
	client_schedule(ch->cli);	/* a stream is free: dispatch, drain */
	call = nghttp2_session_get_stream_user_data(h2, sid);
	if (call == NULL || call->state != CALL_ACTIVE)
		return 0;
	TAILQ_REMOVE(&c->calls, call, entry);
	call->conn = NULL;

	/* Refused streams were not processed: try again, elsewhere if need be. */
	if (error == NGHTTP2_REFUSED_STREAM && !call->got_headers &&
	    call->retries < CLIENT_MAX_RETRIES) {
		call->retries++;
		call_reset_response(call);
		call_enqueue(call, 1);
		return 0;
	}
	if (call->have_status) {
		if (!call->streaming && call->status == GRPC_STATUS_OK &&
		    call->nmsgs == 0)
			call_finish(call, GRPC_STATUS_INTERNAL,
			    "no response message to a unary call");
		else
			call_finish(call, call->status, NULL);
	} else if (error != NGHTTP2_NO_ERROR)
		call_finish(call, status_from_rst(error),
		    "%s: stream reset by the server: %s", ch->authority,
		    nghttp2_http2_strerror(error));
	else if (call->http_status != 0 && call->http_status != 200)
		call_finish(call, status_from_http(call->http_status),
		    "%s: HTTP status %d", ch->authority, call->http_status);
	else if (!call->got_trailers)
		call_finish(call, GRPC_STATUS_INTERNAL,
		    "%s: stream ended without trailers", ch->authority);
	else
		call_finish(call, GRPC_STATUS_UNKNOWN,
		    "%s: trailers without grpc-status", ch->authority);
	return 0;
}

/* --- connections ----------------------------------------------------------------- */

static struct conn *
conn_new(struct grpc_channel *ch)
{
	struct conn *c = util_xcalloc(1, sizeof(*c));

	c->ch = ch;
	c->state = CONN_IDLE;
	TAILQ_INIT(&c->calls);
	c->timer = evtimer_new(ch->cli->base, conn_timer, c);
	if (c->timer == NULL)
		abort();	/* as util_xcalloc: no memory, no way on */
	return c;
}

static void
conn_mark_dirty(struct conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		TAILQ_INSERT_TAIL(&c->ch->cli->dirty, c, dirty_entry);
	}
	client_schedule(c->ch->cli);
}

/* Frees the socket and the session, never the calls or the struct. */
static void
conn_close(struct conn *c)
{
	if (c->dirty) {
		TAILQ_REMOVE(&c->ch->cli->dirty, c, dirty_entry);
		c->dirty = 0;
	}
	if (c->h2 != NULL)
		nghttp2_session_del(c->h2);
	c->h2 = NULL;
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->timer != NULL)
		evtimer_del(c->timer);
	c->nstreams = 0;
	c->ping_out = 0;
}

static void
conn_destroy(struct conn *c)
{
	conn_close(c);
	if (c->timer != NULL)
		event_free(c->timer);
	free(c);
}

/* Takes a connection out of its slot: it finishes its streams, takes no more. */
static void
conn_retire(struct conn *c)
{
	struct grpc_channel *ch = c->ch;

	if (c->draining)
		return;
	c->draining = 1;
	for (int i = 0; i < ch->nslots; i++)
		if (ch->slots[i] == c) {
			ch->slots[i] = conn_new(ch);
			break;
		}
	TAILQ_INSERT_TAIL(&ch->draining, c, drain_entry);
	conn_mark_dirty(c);
}

static void
channel_fail_queue(struct grpc_channel *ch, int status, const char *msg)
{
	struct grpc_client_call *call;

	while ((call = TAILQ_FIRST(&ch->queue)) != NULL) {
		TAILQ_REMOVE(&ch->queue, call, entry);
		ch->nqueued--;
		call_finish(call, status, "%s", msg);
	}
}

static int
channel_busy(struct grpc_channel *ch)
{
	for (int i = 0; i < ch->nslots; i++)
		if (ch->slots[i]->state == CONN_CONNECTING ||
		    ch->slots[i]->state == CONN_HANDSHAKE ||
		    ch->slots[i]->state == CONN_READY)
			return 1;
	return 0;
}

/*
 * The one way a connection goes down: its calls end UNAVAILABLE with the
 * reason, and a slot connection waits (connect failure) or goes idle.
 */
static void
conn_fail(struct conn *c, const char *fmt, ...)
{
	struct grpc_channel	*ch = c->ch;
	struct grpc_client	*cli = ch->cli;
	struct grpc_client_call	*call;
	enum conn_state		 was = c->state;
	va_list			 ap;
	char			 msg[SAGAD_ERRLEN];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
		TAILQ_REMOVE(&c->calls, call, entry);
		call->conn = NULL;
		call_finish(call, GRPC_STATUS_UNAVAILABLE, "%s", msg);
	}
	conn_close(c);
	client_schedule(cli);
	if (c->draining) {
		TAILQ_REMOVE(&ch->draining, c, drain_entry);
		conn_destroy(c);
		return;
	}
	snprintf(ch->lasterr, sizeof(ch->lasterr), "%s", msg);
	if (was == CONN_READY) {
		/* It worked before: the next call reconnects at once. */
		c->state = CONN_IDLE;
		return;
	}
	c->failures++;
	c->state = CONN_BACKOFF;
	{
		int ms = grpc_client_backoff_ms(c->failures,
		    cli->opts.backoff_min_ms, cli->opts.backoff_max_ms,
		    client_random(cli));
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		evtimer_add(c->timer, &tv);
	}
	/* Nothing can carry the waiting calls now: they fail fast. */
	if (!channel_busy(ch))
		channel_fail_queue(ch, GRPC_STATUS_UNAVAILABLE, msg);
}

static void
conn_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct conn		*c = arg;
	struct grpc_client	*cli = c->ch->cli;

	(void)fd;
	(void)ev;
	switch (c->state) {
	case CONN_CONNECTING:
	case CONN_HANDSHAKE:
		conn_fail(c, "connect %s: timed out after %d ms",
		    c->ch->authority, cli->opts.connect_timeout_ms);
		break;
	case CONN_BACKOFF:
		c->state = CONN_IDLE;
		client_schedule(cli);
		break;
	case CONN_READY: {
		struct timeval tv = { cli->opts.keepalive_ms / 1000,
		    (cli->opts.keepalive_ms % 1000) * 1000 };
		if (c->ping_out) {
			conn_fail(c, "%s: keepalive PING not answered in %d ms",
			    c->ch->authority, cli->opts.keepalive_ms);
			break;
		}
		if (util_mono_ms() - c->last_rx >= cli->opts.keepalive_ms) {
			nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
			c->ping_out = 1;
			conn_mark_dirty(c);
		}
		evtimer_add(c->timer, &tv);
		break;
	}
	case CONN_IDLE:
		break;
	}
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct conn	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);

	c->last_rx = util_mono_ms();
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec	v;
		ssize_t			n;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = nghttp2_session_mem_recv(c->h2, v.iov_base, v.iov_len);
		if (n < 0) {
			conn_fail(c, "%s: http2: %s", c->ch->authority,
			    nghttp2_strerror((int)n));
			return;
		}
		evbuffer_drain(in, (size_t)n);
	}
	conn_mark_dirty(c);
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn	*c = arg;
	int		 err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		struct grpc_client	*cli = c->ch->cli;
		nghttp2_settings_entry	 iv[3];
		int			 one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
		if (nghttp2_session_client_new2(&c->h2, cli->cbs, c,
		    cli->h2opt) != 0) {
			conn_fail(c, "%s: cannot make an HTTP/2 session",
			    c->ch->authority);
			return;
		}
		iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
		iv[0].value = 0;
		iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
		iv[1].value = CLIENT_STREAM_WINDOW;
		iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
		iv[2].value = CLIENT_MAX_HDR_BYTES;
		nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 3);
		nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE,
		    0, CLIENT_CONN_WINDOW);
		c->state = CONN_HANDSHAKE;
		c->last_rx = util_mono_ms();
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		conn_mark_dirty(c);
		return;
	}
	if (c->state == CONN_CONNECTING) {
		int dnserr = bufferevent_socket_get_dns_error(bev);
		if (dnserr != 0)
			conn_fail(c, "connect %s: %s", c->ch->authority,
			    evutil_gai_strerror(dnserr));
		else
			conn_fail(c, "connect %s: %s", c->ch->authority,
			    evutil_socket_error_to_string(err));
	} else if (what & BEV_EVENT_EOF)
		conn_fail(c, "%s: connection closed by the server",
		    c->ch->authority);
	else
		conn_fail(c, "%s: connection lost: %s", c->ch->authority,
		    evutil_socket_error_to_string(err));
}

static void
conn_connect(struct conn *c)
{
	struct grpc_channel	*ch = c->ch;
	struct grpc_client	*cli = ch->cli;
	struct sockaddr_storage	 ss;
	int			 sslen = sizeof(ss), rc;
	struct timeval		 tv;

	c->bev = bufferevent_socket_new(cli->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		c->state = CONN_CONNECTING;
		conn_fail(c, "connect %s: cannot make a socket buffer",
		    ch->authority);
		return;
	}
	bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
	c->state = CONN_CONNECTING;
	tv.tv_sec = cli->opts.connect_timeout_ms / 1000;
	tv.tv_usec = (cli->opts.connect_timeout_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	/* Addresses connect directly; names go through evdns. */
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(ch->authority, (struct sockaddr *)&ss,
	    &sslen) == 0)
		rc = bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss,
		    sslen);
	else {
		if (cli->dns == NULL)
			cli->dns = evdns_base_new(cli->base,
			    EVDNS_BASE_INITIALIZE_NAMESERVERS);
		rc = bufferevent_socket_connect_hostname(c->bev, cli->dns,
		    AF_UNSPEC, ch->host, ch->port);
	}
	if (rc != 0 && c->state == CONN_CONNECTING && c->bev != NULL) {
		int dnserr = bufferevent_socket_get_dns_error(c->bev);
		if (dnserr != 0)
			conn_fail(c, "connect %s: %s", ch->authority,
			    evutil_gai_strerror(dnserr));
		else
			conn_fail(c, "connect %s: %s", ch->authority,
			    evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
	}
}

/* Serializes what nghttp2 has to send; closes what has nothing left. */
static void
conn_flush(struct conn *c)
{
	struct evbuffer *out;

	if (c->h2 == NULL)
		return;
	out = bufferevent_get_output(c->bev);
	for (;;) {
		const uint8_t	*data;
		ssize_t		 n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0) {
			conn_fail(c, "%s: http2: %s", c->ch->authority,
			    nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			break;
		if (evbuffer_add(out, data, (size_t)n) != 0) {
			conn_fail(c, "%s: out of memory for output",
			    c->ch->authority);
			return;
		}
	}
	if (c->draining && c->nstreams == 0 && TAILQ_EMPTY(&c->calls) &&
	    evbuffer_get_length(out) == 0) {
		TAILQ_REMOVE(&c->ch->draining, c, drain_entry);
		conn_destroy(c);
		return;
	}
	if (!nghttp2_session_want_read(c->h2) &&
	    !nghttp2_session_want_write(c->h2))
		conn_fail(c, "%s: connection closed by the server",
		    c->ch->authority);
}

/* --- channels and the client ----------------------------------------------- */

static struct conn *
channel_pick(struct grpc_channel *ch)
{
	for (int i = 0; i < ch->nslots; i++) {
		int		 idx = (ch->rr + i) % ch->nslots;
		struct conn	*c = ch->slots[idx];
		uint32_t	 max;

		if (c->state != CONN_READY)
			continue;
		/* Stream ids run out after 2^31: move on before they do. */
		if (nghttp2_session_get_next_stream_id(c->h2) >
		    (uint32_t)CLIENT_LAST_STREAM_ID ||
		    !nghttp2_session_check_request_allowed(c->h2)) {
			conn_retire(c);
			continue;
		}
		max = nghttp2_session_get_remote_settings(c->h2,
		    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
		if (c->nstreams >= max)
			continue;
		ch->rr = idx + 1;
		return c;
	}
	return NULL;
}

static void
channel_dispatch(struct grpc_channel *ch)
{
	struct grpc_client_call *call;
	struct conn		*c;

	while ((call = TAILQ_FIRST(&ch->queue)) != NULL) {
		if ((c = channel_pick(ch)) == NULL)
			break;
		TAILQ_REMOVE(&ch->queue, call, entry);
		ch->nqueued--;
		call_submit(call, c);
	}
	if (TAILQ_EMPTY(&ch->queue))
		return;
	for (int i = 0; i < ch->nslots; i++)
		if (ch->slots[i]->state == CONN_IDLE)
			conn_connect(ch->slots[i]);
	if (!channel_busy(ch))
		channel_fail_queue(ch, GRPC_STATUS_UNAVAILABLE,
		    ch->lasterr[0] != '\0' ? ch->lasterr : "no connection");
}

static void
client_schedule(struct grpc_client *cli)
{
	/* Activating an active event does nothing: one run per iteration. */
	event_active(cli->run_ev, EV_TIMEOUT, 0);
}

static void
client_run(evutil_socket_t fd, short ev, void *arg)
{
	struct grpc_client	*cli = arg;
	struct grpc_channel	*ch;
	struct grpc_client_call	*call;
	struct conn		*c;

	(void)fd;
	(void)ev;
	for (int pass = 0; pass < 8; pass++) {
		TAILQ_FOREACH(ch, &cli->channels, entry)
			if (!TAILQ_EMPTY(&ch->queue))
				channel_dispatch(ch);
		while ((c = TAILQ_FIRST(&cli->dirty)) != NULL) {
			TAILQ_REMOVE(&cli->dirty, c, dirty_entry);
			c->dirty = 0;
			conn_flush(c);
		}
		if (TAILQ_EMPTY(&cli->done))
			return;
		/* Callbacks may start calls: the next pass sends them. */
		while ((call = TAILQ_FIRST(&cli->done)) != NULL) {
			TAILQ_REMOVE(&cli->done, call, entry);
			call_deliver(call);
		}
	}
	client_schedule(cli);
}

struct grpc_client *
grpc_client_new(struct event_base *base, const struct grpc_client_opts *opts,
    char *err, size_t errlen)
{
	struct grpc_client	*cli = util_xcalloc(1, sizeof(*cli));

	if (opts != NULL)
		cli->opts = *opts;
	if (cli->opts.max_recv == 0)
		cli->opts.max_recv = GRPC_DEFAULT_MAX_RECV;
	if (cli->opts.connect_timeout_ms <= 0)
		cli->opts.connect_timeout_ms = 5000;
	if (cli->opts.backoff_min_ms <= 0)
		cli->opts.backoff_min_ms = 100;
	if (cli->opts.backoff_max_ms <= 0)
		cli->opts.backoff_max_ms = 5000;
	if (cli->opts.backoff_max_ms < cli->opts.backoff_min_ms)
		cli->opts.backoff_max_ms = cli->opts.backoff_min_ms;
	if (cli->opts.max_queued == 0)
		cli->opts.max_queued = 10000;
	if (cli->opts.conns_per_target <= 0)
		cli->opts.conns_per_target = 1;
	if (cli->opts.conns_per_target > 64)
		cli->opts.conns_per_target = 64;
	snprintf(cli->ua, sizeof(cli->ua), "%s",
	    cli->opts.user_agent != NULL ? cli->opts.user_agent :
	    "sagad/" PACKAGE_VERSION);
	cli->opts.user_agent = NULL;
	cli->base = base;
	cli->rng = (uint64_t)util_mono_ms() ^ (uint64_t)util_now_ms() << 20 ^
	    (uint64_t)(uintptr_t)cli;
	if (cli->rng == 0)
		cli->rng = 1;
	TAILQ_INIT(&cli->channels);
	TAILQ_INIT(&cli->dirty);
	TAILQ_INIT(&cli->done);
	if ((cli->run_ev = event_new(base, -1, 0, client_run, cli)) == NULL) {
		snprintf(err, errlen, "grpc client: cannot make an event");
		free(cli);
		return NULL;
	}
	if (nghttp2_session_callbacks_new(&cli->cbs) != 0 ||
	    nghttp2_option_new(&cli->h2opt) != 0) {
		snprintf(err, errlen, "grpc client: out of memory");
		grpc_client_free(cli);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_header_callback(cli->cbs,
	    h2_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cli->cbs,
	    h2_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cli->cbs,
	    h2_on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cli->cbs,
	    h2_on_stream_close);
	return cli;
}

static void
channel_free(struct grpc_channel *ch)
{
	struct grpc_client_call	*call;
	struct conn		*c;

	for (int i = 0; i < ch->nslots; i++) {
		c = ch->slots[i];
		while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
			TAILQ_REMOVE(&c->calls, call, entry);
			call->cancelled = 1;
			call_deliver(call);
		}
		conn_destroy(c);
	}
	while ((c = TAILQ_FIRST(&ch->draining)) != NULL) {
		TAILQ_REMOVE(&ch->draining, c, drain_entry);
		while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
			TAILQ_REMOVE(&c->calls, call, entry);
			call->cancelled = 1;
			call_deliver(call);
		}
		conn_destroy(c);
	}
	while ((call = TAILQ_FIRST(&ch->queue)) != NULL) {
		TAILQ_REMOVE(&ch->queue, call, entry);
		call->cancelled = 1;
		call_deliver(call);
	}
	free(ch->slots);
	free(ch->host);
	free(ch->authority);
	free(ch);
}

void
grpc_client_free(struct grpc_client *cli)
{
	struct grpc_channel	*ch;
	struct grpc_client_call	*call;

	if (cli == NULL)
		return;
	while ((ch = TAILQ_FIRST(&cli->channels)) != NULL) {
		TAILQ_REMOVE(&cli->channels, ch, entry);
		channel_free(ch);
	}
	while ((call = TAILQ_FIRST(&cli->done)) != NULL) {
		TAILQ_REMOVE(&cli->done, call, entry);
		call->cancelled = 1;
		call_deliver(call);
	}
	if (cli->run_ev != NULL)
		event_free(cli->run_ev);
	/* After the channels: their freed connections cancelled lookups. */
	if (cli->dns != NULL)
		evdns_base_free(cli->dns, 1);
	if (cli->cbs != NULL)
		nghttp2_session_callbacks_del(cli->cbs);
	if (cli->h2opt != NULL)
		nghttp2_option_del(cli->h2opt);
	free(cli);
}

struct grpc_channel *
grpc_client_channel(struct grpc_client *cli, const char *host, int port)
{
	struct grpc_channel	*ch;
	size_t			 len;

	TAILQ_FOREACH(ch, &cli->channels, entry)
		if (ch->port == port && strcmp(ch->host, host) == 0)
			return ch;
	ch = util_xcalloc(1, sizeof(*ch));
	ch->cli = cli;
	ch->host = util_xstrdup(host);
	ch->port = port;
	len = strlen(host) + 16;
	ch->authority = util_xcalloc(1, len);
	if (strchr(host, ':') != NULL)
		snprintf(ch->authority, len, "[%s]:%d", host, port);
	else
		snprintf(ch->authority, len, "%s:%d", host, port);
	TAILQ_INIT(&ch->draining);
	TAILQ_INIT(&ch->queue);
	ch->nslots = cli->opts.conns_per_target;
	ch->slots = util_xcalloc((size_t)ch->nslots, sizeof(*ch->slots));
	for (int i = 0; i < ch->nslots; i++)
		ch->slots[i] = conn_new(ch);
	TAILQ_INSERT_TAIL(&cli->channels, ch, entry);
	return ch;
}

void
grpc_client_channel_stats(const struct grpc_channel *ch,
    struct grpc_channel_stats *st)
{
	const struct conn *c;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < ch->nslots; i++) {
		c = ch->slots[i];
		if (c->h2 != NULL)
			st->conns_open++;
		st->active += c->nstreams;
	}
	TAILQ_FOREACH(c, &ch->draining, drain_entry) {
		if (c->h2 != NULL)
			st->conns_open++;
		st->active += c->nstreams;
	}
	st->connects = ch->connects;
	st->queued = ch->nqueued;
}
